//! The daemon's settings: defaults, then the config file (`--config`, default
//! /etc/edgeplane/edgeplane.yaml when present), then command-line options.
//! Parsing is pure (text in, settings or diagnostics out); the caller reads
//! the file through `source`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::datapath::Capacities;
use crate::datapath::ct_gc::CtTimeouts;
use crate::diag::Diagnostic;
use crate::parse::yaml::{self, Node, Value};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/edgeplane/edgeplane.yaml";
pub const DEFAULT_CONFIG_DIR: &str = "/etc/edgeplane/config.d";
pub const DEFAULT_STATE_DIR: &str = "/sys/fs/bpf/edgeplane";
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9964";

/// `host-routing`: how translated packets leave the node's programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRouting {
    /// BPF redirects: into a local pod with bpf_redirect_peer, elsewhere by
    /// FIB lookup + bpf_redirect(_neigh); the IP stack's forwarding path
    /// (and netfilter FORWARD) does not see these packets.
    Bpf,
    /// Through the IP stack, as a router would (external flows that need
    /// it are FIB-redirected either way).
    Kernel,
}

impl HostRouting {
    pub fn parse(s: &str) -> Result<HostRouting, String> {
        match s {
            "bpf" => Ok(HostRouting::Bpf),
            "kernel" => Ok(HostRouting::Kernel),
            other => Err(format!("expected bpf or kernel, found {other:?}")),
        }
    }
}

/// `socket-lb`: which sockets of the `cgroup` the socket hooks translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketLb {
    /// Every socket of the cgroup: the node's processes and, when their
    /// cgroups are below it, pods (translated once per connection).
    All,
    /// Only sockets of the node's own network namespace; pods' traffic is
    /// translated per packet by the tc program on their veth.
    HostOnly,
    /// None: the hooks stay attached but translate nothing.
    Off,
}

impl SocketLb {
    pub fn parse(s: &str) -> Result<SocketLb, String> {
        match s {
            "all" => Ok(SocketLb::All),
            "host-only" => Ok(SocketLb::HostOnly),
            "off" => Ok(SocketLb::Off),
            other => Err(format!("expected all, host-only or off, found {other:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub node_name: Option<String>,
    /// This node's addresses: NodePorts are served on each IPv4 one, the first
    /// IPv4 one is the source of source-NATed external flows.
    pub node_ips: Vec<IpAddr>,
    /// Direct Server Return for external flows to other nodes' endpoints.
    pub dsr: bool,
    /// Translated packets skip the IP stack (BPF redirects) when true (`bpf`).
    pub host_routing: HostRouting,
    /// Which sockets of the hooked cgroup are translated at connect()/sendmsg().
    pub socket_lb: SocketLb,
    /// Valid nodePort values (kube-proxy's --service-node-port-range).
    pub node_port_range: (u16, u16),
    pub workload_interfaces: Vec<String>,
    pub host_interfaces: Vec<String>,
    pub cgroup: Option<PathBuf>,
    pub hairpin_address: Ipv4Addr,
    pub max_file_size: u64,
    pub resync_interval: Duration,
    pub maps: Capacities,
    /// Input younger than this may still be being written: wait until it has
    /// been unchanged this long before applying it (0 turns the wait off).
    pub settle: Duration,
    /// Apply an input that would remove most of the live state (normally held).
    pub allow_mass_delete: bool,
    /// Follow symlinks that leave the config directory (normally refused).
    pub allow_external_symlinks: bool,
    /// Conntrack idle timeouts per protocol and state.
    pub conntrack_timeouts: CtTimeouts,
    /// How often `run` garbage-collects conntrack.
    pub conntrack_gc_interval: Duration,
    /// Where `run` serves /metrics, /healthz and /livez (None: not served).
    pub metrics_address: Option<SocketAddr>,
}

impl Settings {
    /// The IPv4 addresses of `node-ips`, in order (IPv6 ones are not translated yet).
    pub fn node_ipv4s(&self) -> Vec<Ipv4Addr> {
        self.node_ips
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config_dir: PathBuf::from(DEFAULT_CONFIG_DIR),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            node_name: None,
            node_ips: Vec::new(),
            dsr: false,
            host_routing: HostRouting::Bpf,
            socket_lb: SocketLb::All,
            node_port_range: DEFAULT_NODE_PORT_RANGE,
            workload_interfaces: vec!["veth*".into()],
            host_interfaces: Vec::new(),
            cgroup: None,
            // Link-local, never a pod or node address: the source a pod sees when it
            // reaches itself through its own service (as Cilium's service loopback).
            hairpin_address: Ipv4Addr::new(169, 254, 42, 1),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            resync_interval: Duration::from_secs(60),
            maps: Capacities::default(),
            settle: Duration::from_millis(1000),
            allow_mass_delete: false,
            allow_external_symlinks: false,
            conntrack_timeouts: CtTimeouts::default(),
            conntrack_gc_interval: Duration::from_secs(15),
            metrics_address: parse_metrics_address(DEFAULT_METRICS_ADDRESS).unwrap_or_default(),
        }
    }
}

/// Applies the settings found in a config file's text onto `settings`.
/// Every problem is reported; unknown keys are errors (a typo must not be
/// silently ignored in the file that names the uplinks).
pub fn apply_file(settings: &mut Settings, file: &str, text: &str) -> Result<(), Vec<Diagnostic>> {
    let docs = yaml::parse_str(file, text).map_err(|d| vec![d])?;
    let mut errors = Vec::new();
    let Some(root) = docs.first() else { return Ok(()) };
    if root.is_null() {
        return Ok(());
    }
    let Some(entries) = root.as_map() else {
        return Err(vec![err(root, "", format!("expected a mapping of settings, found {}", root.describe()))]);
    };
    for (key, value) in entries {
        let name = key.as_str().unwrap_or_default();
        let result = match name {
            "config-dir" => string(value).map(|s| settings.config_dir = s.into()),
            "state-dir" => string(value).map(|s| settings.state_dir = s.into()),
            "node-name" => string(value).map(|s| settings.node_name = Some(s)),
            "node-ips" => strings(value).and_then(|v| parse_node_ips(&v)).map(|v| settings.node_ips = v),
            "dsr" => boolean(value).map(|b| settings.dsr = b),
            "host-routing" => string(value).and_then(|s| HostRouting::parse(&s)).map(|h| settings.host_routing = h),
            "socket-lb" => string(value).and_then(|s| SocketLb::parse(&s)).map(|v| settings.socket_lb = v),
            "node-port-range" => string(value).and_then(|s| parse_port_range(&s)).map(|r| settings.node_port_range = r),
            "workload-interfaces" => strings(value).map(|v| settings.workload_interfaces = v),
            "host-interfaces" => strings(value).map(|v| settings.host_interfaces = v),
            "cgroup" => string(value).map(|s| settings.cgroup = Some(s.into())),
            "hairpin-address" => string(value)
                .and_then(|s| s.parse::<Ipv4Addr>().map_err(|_| format!("expected an IPv4 address, found {s:?}")))
                .map(|a| settings.hairpin_address = a),
            "max-file-size" => number(value, 1, u64::MAX).map(|n| settings.max_file_size = n),
            "resync-interval-seconds" => {
                number(value, 1, 86_400).map(|n| settings.resync_interval = Duration::from_secs(n))
            }
            "maps" => {
                apply_maps(&mut settings.maps, value, &mut errors);
                Ok(())
            }
            "settle-milliseconds" => number(value, 0, 60_000).map(|n| settings.settle = Duration::from_millis(n)),
            "allow-mass-delete" => boolean(value).map(|b| settings.allow_mass_delete = b),
            "allow-external-symlinks" => boolean(value).map(|b| settings.allow_external_symlinks = b),
            "conntrack-timeouts" => {
                apply_ct_timeouts(&mut settings.conntrack_timeouts, value, &mut errors);
                Ok(())
            }
            "conntrack-gc-interval-seconds" => {
                number(value, 1, 86_400).map(|n| settings.conntrack_gc_interval = Duration::from_secs(n))
            }
            "metrics-address" => {
                string(value).and_then(|s| parse_metrics_address(&s)).map(|a| settings.metrics_address = a)
            }
            _ => Err("unknown setting (expected one of config-dir, state-dir, node-name, node-ips, dsr, \
                 host-routing, socket-lb, node-port-range, workload-interfaces, \
                 host-interfaces, cgroup, hairpin-address, max-file-size, resync-interval-seconds, maps, \
                 settle-milliseconds, allow-mass-delete, allow-external-symlinks, conntrack-timeouts, \
                 conntrack-gc-interval-seconds, metrics-address)"
                .to_string()),
        };
        if let Err(msg) = result {
            errors.push(err(value, name, msg));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// kube-proxy's default --service-node-port-range.
pub const DEFAULT_NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

/// Largest input file read (setting `max-file-size`), 256 MiB: a `kind: List`
/// of 100,000 Services and EndpointSlices as `kubectl get -o yaml` writes it
/// is 107 MB. The limit catches a stray huge file; it does not bound memory
/// (the same bytes split over files need no setting), the parser's budgets do
/// (docs/ARCHITECTURE.md, "Memory and time of a load").
pub const DEFAULT_MAX_FILE_SIZE: u64 = 256 << 20;

/// `node-ips` / `--node-ip`: IP addresses.
pub fn parse_node_ips(values: &[String]) -> Result<Vec<IpAddr>, String> {
    values.iter().map(|v| v.parse::<IpAddr>().map_err(|_| format!("expected an IP address, found {v:?}"))).collect()
}

/// `node-port-range`: `FIRST-LAST`, as kube-proxy's --service-node-port-range.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("expected FIRST-LAST ports such as 30000-32767, found {s:?}");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// `metrics-address` / `--metrics-address`: `ADDRESS:PORT`, or empty to disable.
pub fn parse_metrics_address(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<SocketAddr>().map(Some).map_err(|_| {
        format!(
            "expected ADDRESS:PORT such as {DEFAULT_METRICS_ADDRESS} or [::1]:9964, or \"\" to disable; found {s:?}"
        )
    })
}

/// Command-line options that override the settings file. Kept apart from
/// [`Settings`] so that `run` can rebuild defaults + file + these on SIGHUP
/// and the command line keeps winning over a re-read file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub node_name: Option<String>,
    pub node_ips: Vec<IpAddr>,
    pub dsr: bool,
    pub host_routing: Option<HostRouting>,
    pub socket_lb: Option<SocketLb>,
    pub workload_interfaces: Vec<String>,
    pub host_interfaces: Vec<String>,
    pub cgroup: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
    pub max_file_size: Option<u64>,
    pub allow_mass_delete: bool,
}

impl Overrides {
    pub fn apply(&self, s: &mut Settings) {
        if let Some(v) = &self.state_dir {
            s.state_dir = v.clone();
        }
        if let Some(v) = &self.node_name {
            s.node_name = Some(v.clone());
        }
        if !self.node_ips.is_empty() {
            s.node_ips = self.node_ips.clone();
        }
        if self.dsr {
            s.dsr = true;
        }
        if let Some(h) = self.host_routing {
            s.host_routing = h;
        }
        if let Some(v) = self.socket_lb {
            s.socket_lb = v;
        }
        if !self.workload_interfaces.is_empty() {
            s.workload_interfaces = self.workload_interfaces.clone();
        }
        if !self.host_interfaces.is_empty() {
            s.host_interfaces = self.host_interfaces.clone();
        }
        if let Some(v) = &self.cgroup {
            s.cgroup = Some(v.clone());
        }
        if let Some(v) = &self.config_dir {
            s.config_dir = v.clone();
        }
        if let Some(v) = self.max_file_size {
            s.max_file_size = v;
        }
        if self.allow_mass_delete {
            s.allow_mass_delete = true;
        }
    }
}

/// Defaults, then the settings file's text (`(name, text)`, if any), then the
/// command-line overrides.
pub fn build(file: Option<(&str, &str)>, overrides: &Overrides) -> Result<Settings, Vec<Diagnostic>> {
    let mut s = Settings::default();
    if let Some((name, text)) = file {
        apply_file(&mut s, name, text)?;
    }
    overrides.apply(&mut s);
    Ok(s)
}

/// What a settings reload (SIGHUP) does with `new`: the settings to run with
/// (`new`, except that what only a restart can change keeps its running
/// value), the names of the settings that changed and take effect now, and of
/// those that changed but need a restart.
pub struct Reload {
    pub settings: Settings,
    pub changed: Vec<&'static str>,
    pub needs_restart: Vec<&'static str>,
}

pub fn reload(old: &Settings, new: Settings) -> Reload {
    let mut s = new;
    let mut changed = Vec::new();
    let mut needs_restart = Vec::new();
    // Fixed for the life of the process: the pinned maps' location and sizes,
    // the cgroup the socket programs are attached to, the watched directory.
    macro_rules! fixed {
        ($field:ident, $name:literal) => {
            if s.$field != old.$field {
                needs_restart.push($name);
                s.$field = old.$field.clone();
            }
        };
    }
    fixed!(state_dir, "state-dir");
    fixed!(maps, "maps");
    fixed!(cgroup, "cgroup");
    fixed!(config_dir, "config-dir");
    fixed!(metrics_address, "metrics-address");
    macro_rules! live {
        ($field:ident, $name:literal) => {
            if s.$field != old.$field {
                changed.push($name);
            }
        };
    }
    live!(node_name, "node-name");
    live!(node_ips, "node-ips");
    live!(dsr, "dsr");
    live!(host_routing, "host-routing");
    live!(socket_lb, "socket-lb");
    live!(node_port_range, "node-port-range");
    live!(workload_interfaces, "workload-interfaces");
    live!(host_interfaces, "host-interfaces");
    live!(hairpin_address, "hairpin-address");
    live!(max_file_size, "max-file-size");
    live!(resync_interval, "resync-interval-seconds");
    live!(settle, "settle-milliseconds");
    live!(allow_mass_delete, "allow-mass-delete");
    live!(allow_external_symlinks, "allow-external-symlinks");
    live!(conntrack_timeouts, "conntrack-timeouts");
    live!(conntrack_gc_interval, "conntrack-gc-interval-seconds");
    Reload { settings: s, changed, needs_restart }
}

fn apply_maps(sizes: &mut Capacities, node: &Node, errors: &mut Vec<Diagnostic>) {
    let Some(entries) = node.as_map() else {
        errors.push(err(node, "maps", format!("expected a mapping, found {}", node.describe())));
        return;
    };
    for (key, value) in entries {
        let name = key.as_str().unwrap_or_default();
        let slot = match name {
            "services" => &mut sizes.services,
            "backends" => &mut sizes.backends,
            "conntrack" => &mut sizes.conntrack,
            "affinity" => &mut sizes.affinity,
            "sknat" => &mut sizes.sknat,
            "policy-rules" => &mut sizes.policy_rules,
            "identities" => &mut sizes.identities,
            "policy-endpoints" => &mut sizes.policy_endpoints,
            "lb-source-ranges" => &mut sizes.lb_source_ranges,
            _ => {
                errors.push(err(
                    key,
                    &format!("maps.{name}"),
                    "unknown map (expected services, backends, conntrack, affinity, sknat, policy-rules, \
                     identities, policy-endpoints or lb-source-ranges)"
                        .into(),
                ));
                continue;
            }
        };
        match number(value, 1, u64::from(u32::MAX)) {
            Ok(n) => *slot = u32::try_from(n).unwrap_or(u32::MAX),
            Err(msg) => errors.push(err(value, &format!("maps.{name}"), msg)),
        }
    }
}

fn apply_ct_timeouts(t: &mut CtTimeouts, node: &Node, errors: &mut Vec<Diagnostic>) {
    let Some(entries) = node.as_map() else {
        errors.push(err(node, "conntrack-timeouts", format!("expected a mapping, found {}", node.describe())));
        return;
    };
    for (key, value) in entries {
        let name = key.as_str().unwrap_or_default();
        let field = format!("conntrack-timeouts.{name}");
        let Some(slot) = t.field_mut(name) else {
            errors.push(err(key, &field, format!("unknown timeout (expected one of {})", CtTimeouts::KEYS.join(", "))));
            continue;
        };
        // Seconds, up to a week.
        match number(value, 1, 604_800) {
            Ok(n) => *slot = n,
            Err(msg) => errors.push(err(value, &field, msg)),
        }
    }
}

fn err(node: &Node, field: &str, message: String) -> Diagnostic {
    Diagnostic::error(node.span.clone(), None, field, message)
}

fn string(node: &Node) -> Result<String, String> {
    node.as_str().map(str::to_string).ok_or_else(|| format!("expected a string, found {}", node.describe()))
}

fn strings(node: &Node) -> Result<Vec<String>, String> {
    match &node.value {
        Value::Str(s) => Ok(vec![s.clone()]),
        Value::Seq(items) => items.iter().map(string).collect(),
        _ => Err(format!("expected a list of interface name patterns, found {}", node.describe())),
    }
}

fn boolean(node: &Node) -> Result<bool, String> {
    match &node.value {
        Value::Bool(b) => Ok(*b),
        _ => Err(format!("expected true or false, found {}", node.describe())),
    }
}

fn number(node: &Node, min: u64, max: u64) -> Result<u64, String> {
    match node.as_i64().and_then(|n| u64::try_from(n).ok()) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a number {min}-{max}, found {}", node.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lb_source_ranges_capacity_defaults_and_applies() {
        let mut s = Settings::default();
        assert_eq!(s.maps.lb_source_ranges, 65_536);
        apply_file(&mut s, "edgeplane.yaml", "maps:\n  lb-source-ranges: 1024\n").expect("valid config");
        assert_eq!(s.maps.lb_source_ranges, 1024);
        assert_eq!(s.maps.of(crate::maps::MapId::Services), 1_048_576);
    }

    #[test]
    fn node_settings_for_external_traffic() {
        let mut s = Settings::default();
        assert!(s.node_ips.is_empty() && !s.dsr);
        assert_eq!(s.node_port_range, (30000, 32767));
        let text = "node-ips: [198.18.200.11, '2001:db8::11']\ndsr: true\nnode-port-range: 20000-22767\n";
        apply_file(&mut s, "e.yaml", text).expect("valid");
        assert_eq!(s.node_ips, vec!["198.18.200.11".parse::<IpAddr>().unwrap(), "2001:db8::11".parse().unwrap()]);
        assert!(s.dsr);
        assert_eq!(s.node_port_range, (20000, 22767));
        for (bad, what) in [
            ("node-ips: [198.18.200.300]\n", "expected an IP address"),
            ("dsr: maybe\n", "node-ips"),
            ("node-port-range: 32767-30000\n", "FIRST-LAST"),
        ] {
            let errors = apply_file(&mut Settings::default(), "e.yaml", bad).expect_err(bad);
            let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
            assert!(text.starts_with("e.yaml:1:"), "{text}");
            if what != "node-ips" {
                assert!(text.contains(what), "{text}");
            }
        }
        // The command line (--node-ip, --dsr) overrides the file.
        let o = Overrides { node_ips: vec!["198.18.200.12".parse().unwrap()], dsr: true, ..Overrides::default() };
        let built = build(Some(("e.yaml", "node-ips: [198.18.200.11]\ndsr: false\n")), &o).expect("valid");
        assert_eq!(built.node_ips, vec!["198.18.200.12".parse::<IpAddr>().unwrap()]);
        assert!(built.dsr);
        // SIGHUP: node settings take effect at once.
        let r = reload(&Settings::default(), built);
        assert!(r.changed.contains(&"node-ips") && r.changed.contains(&"dsr"), "{:?}", r.changed);
    }

    #[test]
    fn file_settings_apply() {
        let mut s = Settings::default();
        let text = "host-interfaces: [eth1, 'enp*']\nnode-name: edge-1\nmaps:\n  conntrack: 2000000\n";
        apply_file(&mut s, "edgeplane.yaml", text).expect("valid config");
        assert_eq!(s.host_interfaces, vec!["eth1".to_string(), "enp*".to_string()]);
        assert_eq!(s.node_name.as_deref(), Some("edge-1"));
        assert_eq!(s.maps.conntrack, 2_000_000);
        assert_eq!(s.workload_interfaces, vec!["veth*".to_string()]);
    }

    #[test]
    fn input_safety_settings() {
        let mut s = Settings::default();
        assert_eq!(s.settle, Duration::from_secs(1));
        assert!(!s.allow_mass_delete && !s.allow_external_symlinks);
        let text = "settle-milliseconds: 0\nallow-mass-delete: true\nallow-external-symlinks: true\n";
        apply_file(&mut s, "edgeplane.yaml", text).expect("valid config");
        assert_eq!(s.settle, Duration::ZERO);
        assert!(s.allow_mass_delete && s.allow_external_symlinks);
        let errs = apply_file(&mut s, "e.yaml", "allow-mass-delete: yes please\n").expect_err("not a bool");
        assert!(errs[0].to_string().contains("expected true or false"), "{}", errs[0]);
    }

    #[test]
    fn conntrack_timeouts_and_gc_interval() {
        let mut s = Settings::default();
        assert_eq!(s.conntrack_timeouts.tcp_established, 21_600);
        assert_eq!(s.conntrack_gc_interval, Duration::from_secs(15));
        let text = "conntrack-timeouts:\n  udp: 5\n  tcp-closing: 2\nconntrack-gc-interval-seconds: 3\n";
        apply_file(&mut s, "e.yaml", text).expect("valid config");
        assert_eq!((s.conntrack_timeouts.udp, s.conntrack_timeouts.tcp_closing), (5, 2));
        assert_eq!(s.conntrack_timeouts.udp_stream, 120);
        assert_eq!(s.conntrack_gc_interval, Duration::from_secs(3));
        let bad = "conntrack-timeouts:\n  tcp-fin: 5\n  udp: 0\n";
        let errs = apply_file(&mut s, "e.yaml", bad).expect_err("invalid");
        let rendered: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(rendered.len(), 2, "{rendered:?}");
        let (unknown, zero) = (&rendered[0], &rendered[1]);
        assert!(unknown.contains("conntrack-timeouts.tcp-fin") && unknown.contains("tcp-established"), "{unknown}");
        assert!(zero.starts_with("e.yaml:3:") && zero.contains("conntrack-timeouts.udp"), "{zero}");
    }

    #[test]
    fn metrics_address() {
        let mut s = Settings::default();
        assert_eq!(s.metrics_address, Some(SocketAddr::from(([127, 0, 0, 1], 9964))));
        apply_file(&mut s, "e.yaml", "metrics-address: \"[::1]:9100\"\n").expect("valid");
        assert_eq!(s.metrics_address, "[::1]:9100".parse().ok());
        apply_file(&mut s, "e.yaml", "metrics-address: \"\"\n").expect("valid");
        assert_eq!(s.metrics_address, None);
        let errs = apply_file(&mut s, "e.yaml", "metrics-address: localhost\n").expect_err("not an address");
        assert!(errs[0].to_string().contains("metrics-address") && errs[0].to_string().contains("ADDRESS:PORT"));
    }

    #[test]
    fn every_bad_setting_is_reported_with_its_line() {
        let mut s = Settings::default();
        let text = "hostinterfaces: eth1\nmaps:\n  conntrack: -1\nhairpin-address: nope\n";
        let errs = apply_file(&mut s, "e.yaml", text).expect_err("invalid config");
        let rendered: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(rendered.len(), 3, "{rendered:?}");
        assert!(rendered[0].starts_with("e.yaml:1:"), "{}", rendered[0]);
        assert!(rendered[1].starts_with("e.yaml:3:") && rendered[1].contains("maps.conntrack"), "{}", rendered[1]);
        assert!(rendered[2].starts_with("e.yaml:4:") && rendered[2].contains("hairpin-address"), "{}", rendered[2]);
    }

    #[test]
    fn command_line_overrides_the_file_and_keeps_doing_so_on_reload() {
        let cli = Overrides {
            node_name: Some("cli-node".into()),
            host_interfaces: vec!["up*".into()],
            ..Overrides::default()
        };
        let first =
            build(Some(("e.yaml", "node-name: file-node\nhost-interfaces: eth1\nresync-interval-seconds: 30\n")), &cli)
                .expect("valid");
        assert_eq!(first.node_name.as_deref(), Some("cli-node"));
        assert_eq!(first.host_interfaces, vec!["up*".to_string()]);
        assert_eq!(first.resync_interval, Duration::from_secs(30));
        // The file changes: what it sets takes effect, the command line still wins.
        let text = "node-name: other\nhost-interfaces: eth2\nresync-interval-seconds: 5\nallow-mass-delete: true\n\
                    state-dir: /sys/fs/bpf/elsewhere\nmaps:\n  services: 10\n";
        let second = build(Some(("e.yaml", text)), &cli).expect("valid");
        let r = reload(&first, second);
        assert_eq!(r.settings.node_name.as_deref(), Some("cli-node"));
        assert_eq!(r.settings.host_interfaces, vec!["up*".to_string()]);
        assert_eq!(r.settings.resync_interval, Duration::from_secs(5));
        assert!(r.settings.allow_mass_delete);
        assert_eq!(r.changed, ["resync-interval-seconds", "allow-mass-delete"]);
        assert_eq!(r.needs_restart, ["state-dir", "maps"]);
        // Restart-only settings keep their running value.
        assert_eq!(r.settings.state_dir, first.state_dir);
        assert_eq!(r.settings.maps, first.maps);
        // An unchanged file changes nothing.
        let same = reload(&r.settings, r.settings.clone());
        assert!(same.changed.is_empty() && same.needs_restart.is_empty());
        // An invalid file is an error, not a partial update.
        assert!(build(Some(("e.yaml", "resync-interval-seconds: 0\n")), &cli).is_err());
    }
}
