//! `edgeplane monitor`: the programs' live events (ep_events_v1), decoded,
//! named (interfaces, services, pods from the config dir) and printed as
//! they come: one text line or one JSON object per event. Decoding and
//! formatting are pure; [`monitor`] at the end does the I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Settings;
use crate::drop_reason::DropReason;
use crate::maps::layout::{
    CT_F_DSR, CT_F_FIB, CT_F_HAIRPIN, CT_F_SERVICE, CT_F_SNAT, DIR_EGRESS, EV_DROP, EV_NEW_FLOW, Event,
};
use crate::maps::{MapBackend, MapId, proto_name};

/// One event as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorEvent {
    /// Wall-clock time of the event, UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// `drop` (dropped or rejected) or `flow` (a new tracked flow).
    pub kind: &'static str,
    /// Drops: the drop reason's label (as in `drops` and `status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Flows: the policy verdict: `allowed`, or `not-evaluated` (no policy on this node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<&'static str>,
    pub proto: String,
    pub saddr: Ipv4Addr,
    pub sport: u16,
    /// The destination the client used (a frontend for service flows).
    pub daddr: Ipv4Addr,
    pub dport: u16,
    /// Flows: where the flow goes (the chosen backend when translated).
    /// Drops: the destination when the packet was dropped, if it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_addr: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_port: Option<u16>,
    /// Flows: `service`, `snat`, `dsr`, `hairpin`, `fib-routed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub translation: Vec<&'static str>,
    /// Policy drops: which side's policy denied it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    /// Interface the packet arrived on (its index when the name is unknown).
    pub interface: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_pod: Option<String>,
    /// Policy drops: the local pod whose policy denied it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied_by: Option<String>,
}

/// What the config dir and the node say about addresses, ids and ifindexes.
#[derive(Debug, Default, Clone)]
pub struct Names {
    /// (address, port, proto) of every frontend → `namespace/name:port`.
    pub services: BTreeMap<(Ipv4Addr, u16, u8), String>,
    /// Pod IPv4 → `namespace/name`.
    pub pods: BTreeMap<Ipv4Addr, String>,
    /// Policy endpoint id → `namespace/name` of its pod.
    pub endpoints: BTreeMap<u32, String>,
    pub interfaces: BTreeMap<u32, String>,
}

const TRANSLATION_FLAGS: [(u16, &str); 5] = [
    (CT_F_SERVICE, "service"),
    (CT_F_SNAT, "snat"),
    (CT_F_DSR, "dsr"),
    (CT_F_HAIRPIN, "hairpin"),
    (CT_F_FIB, "fib-routed"),
];

/// RFC 3339 UTC with milliseconds for `unix_ms` milliseconds since the epoch.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let (days, ms_of_day) = (unix_ms / 86_400_000, unix_ms % 86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, ms) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// Decodes `ev`; `mono_now_ns`/`unix_now_ms` (read together) turn its
/// CLOCK_MONOTONIC stamp into wall-clock time. None for an unknown kind.
pub fn decode(ev: &Event, names: &Names, mono_now_ns: u64, unix_now_ms: u64) -> Option<MonitorEvent> {
    let age_ms = mono_now_ns.saturating_sub(ev.ts_ns) / 1_000_000;
    let saddr = Ipv4Addr::from(ev.saddr);
    let daddr = Ipv4Addr::from(ev.daddr);
    let dport = u16::from_be_bytes(ev.dport);
    let to_addr = Ipv4Addr::from(ev.nat_addr);
    let to_port = u16::from_be_bytes(ev.nat_port);
    let moved = (to_addr, to_port) != (daddr, dport) && !to_addr.is_unspecified();
    let mut out = MonitorEvent {
        time: rfc3339_ms(unix_now_ms.saturating_sub(age_ms)),
        kind: "",
        reason: None,
        verdict: None,
        proto: proto_name(ev.proto),
        saddr,
        sport: u16::from_be_bytes(ev.sport),
        daddr,
        dport,
        to_addr: moved.then_some(to_addr),
        to_port: moved.then_some(to_port),
        translation: Vec::new(),
        direction: None,
        interface: names.interfaces.get(&ev.ifindex).cloned().unwrap_or_else(|| format!("if{}", ev.ifindex)),
        service: names.services.get(&(daddr, dport, ev.proto)).cloned(),
        source_pod: names.pods.get(&saddr).cloned(),
        destination_pod: names.pods.get(if moved { &to_addr } else { &daddr }).cloned(),
        denied_by: None,
    };
    match ev.kind {
        EV_DROP => {
            let reason = DropReason::from_u32(u32::from(ev.code));
            out.kind = "drop";
            out.reason = Some(reason.map_or(format!("reason-{}", ev.code), |r| r.label().to_string()));
            if matches!(reason, Some(DropReason::PolicyIngress | DropReason::PolicyEgress)) {
                out.direction = Some(if ev.direction == DIR_EGRESS { "egress" } else { "ingress" });
                if ev.endpoint != 0 {
                    let name = names.endpoints.get(&ev.endpoint).cloned();
                    out.denied_by = Some(name.unwrap_or_else(|| format!("endpoint {}", ev.endpoint)));
                }
            }
        }
        EV_NEW_FLOW => {
            out.kind = "flow";
            out.verdict = Some(if ev.code == 0 { "not-evaluated" } else { "allowed" });
            out.translation =
                TRANSLATION_FLAGS.iter().filter(|(bit, _)| ev.ct_flags & bit != 0).map(|(_, n)| *n).collect();
        }
        _ => return None,
    }
    Some(out)
}

impl fmt::Display for MonitorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self.reason.as_deref().or(self.verdict).unwrap_or("");
        write!(f, "{} {:<4} {:<21} {:<4} {}:{}", self.time, self.kind, what, self.proto, self.saddr, self.sport)?;
        if let Some(p) = &self.source_pod {
            write!(f, " ({p})")?;
        }
        write!(f, " -> {}:{}", self.daddr, self.dport)?;
        if let Some(s) = &self.service {
            write!(f, " ({s})")?;
        }
        if let (Some(a), Some(p)) = (self.to_addr, self.to_port) {
            write!(f, " => {a}:{p}")?;
        }
        if let Some(p) = &self.destination_pod {
            write!(f, " ({p})")?;
        }
        if !self.translation.is_empty() {
            write!(f, " [{}]", self.translation.join(","))?;
        }
        write!(f, " on {}", self.interface)?;
        if let (Some(dir), Some(by)) = (self.direction, &self.denied_by) {
            write!(f, ", {dir} policy of {by}")?;
        }
        Ok(())
    }
}

/// Names from the config dir and the pinned maps (best effort: what cannot
/// be read stays unnamed) and the namespace's interfaces.
fn load_names(settings: &Settings) -> Names {
    let mut names = Names::default();
    let limits = crate::daemon::limits(settings);
    if let Ok(loaded) = crate::model::load_dirs(std::slice::from_ref(&settings.config_dir), &limits) {
        let node = crate::compile::NodeContext::from_settings(settings);
        names.services =
            crate::inspect::names_by_frontend(crate::compile::compile_services(&loaded.cluster, &node).0.services);
        for p in loaded.cluster.pods.iter().filter(|p| !p.host_network) {
            for ip in &p.ips {
                if let IpAddr::V4(v4) = ip {
                    names.pods.entry(*v4).or_insert_with(|| crate::policy_view::pod_name(p));
                }
            }
        }
        if let Ok(Some(maps)) = crate::datapath::open_pinned_maps(&settings.state_dir)
            && let Ok(lep) = maps.dump(MapId::LocalEndpoints)
        {
            names.endpoints = crate::compile_policy::endpoint_names(&loaded.cluster, &lep);
        }
    }
    refresh_interfaces(&mut names);
    names
}

fn refresh_interfaces(names: &mut Names) {
    if let Ok(list) = crate::datapath::interfaces() {
        names.interfaces = list.into_iter().map(|(n, i)| (i, n)).collect();
    }
}

fn unix_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What `edgeplane monitor` follows and for how long.
#[derive(Debug, Clone, Copy)]
pub struct MonitorOptions {
    /// Also new flows (translation, policy verdict), not only drops.
    pub flows: bool,
    pub json: bool,
    /// Exit after this many events.
    pub count: Option<u64>,
    /// Exit after this long.
    pub duration: Option<Duration>,
}

/// `edgeplane monitor`: exit 0 after SIGINT/SIGTERM, `count` or `duration`; 2 on errors.
pub fn monitor(settings: &Settings, opts: MonitorOptions) -> u8 {
    use crate::maps::layout::{MON_F_DROPS, MON_F_FLOWS};
    use std::io::Write;

    let flags = MON_F_DROPS | if opts.flows { MON_F_FLOWS } else { 0 };
    let source = match crate::datapath::events::EventSource::open(&settings.state_dir, flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", crate::datapath::explain(&e));
            return 2;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("error: installing a signal handler: {e}");
            return 2;
        }
    }
    let mut names = load_names(settings);
    // On stderr also with -o json: scripts can wait for it before causing traffic.
    let what = if opts.flows { "drops and new flows" } else { "drops" };
    eprintln!("monitoring {what} under {} (Ctrl-C stops)", settings.state_dir.display());
    let started = Instant::now();
    let mut seen = 0u64;
    let mut failed = None;
    let mut out = std::io::stdout().lock();
    let mut on_event = |ev: crate::maps::layout::Event| -> bool {
        if !names.interfaces.contains_key(&ev.ifindex) {
            refresh_interfaces(&mut names);
        }
        let mono = crate::datapath::monotonic_ns();
        let Some(decoded) = decode(&ev, &names, mono, unix_now_ms()) else { return true };
        let written = if opts.json {
            serde_json::to_string(&decoded).map_err(std::io::Error::from).and_then(|s| writeln!(out, "{s}"))
        } else {
            writeln!(out, "{decoded}")
        };
        if let Err(e) = written.and_then(|()| out.flush()) {
            failed = Some(e);
            return false;
        }
        seen += 1;
        opts.count.is_none_or(|n| seen < n)
    };
    let done = || stop.load(Ordering::Relaxed) || opts.duration.is_some_and(|d| started.elapsed() >= d);
    if let Err(e) = source.follow(&done, &mut on_event) {
        eprintln!("error: {}", crate::datapath::explain(&e));
        return 2;
    }
    match failed {
        // A closed pipe (`monitor | head`) is a normal end.
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: writing the output: {e}");
            2
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u8, code: u8) -> Event {
        Event {
            ts_ns: 5_000_000_000,
            saddr: [198, 18, 0, 2],
            daddr: [198, 19, 0, 10],
            sport: 40000u16.to_be_bytes(),
            dport: 80u16.to_be_bytes(),
            proto: 6,
            kind,
            code,
            ifindex: 7,
            nat_addr: [198, 18, 1, 2],
            nat_port: 8080u16.to_be_bytes(),
            ..Event::default()
        }
    }

    fn names() -> Names {
        let mut n = Names::default();
        n.services.insert((Ipv4Addr::new(198, 19, 0, 10), 80, 6), "demo/web:http".into());
        n.pods.insert(Ipv4Addr::new(198, 18, 1, 2), "demo/web-1".into());
        n.pods.insert(Ipv4Addr::new(198, 18, 0, 2), "demo/client".into());
        n.endpoints.insert(3, "demo/web-1".into());
        n.interfaces.insert(7, "veth-c".into());
        n
    }

    #[test]
    fn wall_clock_formatting() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_529_600_123), "2026-12-06T04:00:00.123Z");
    }

    #[test]
    fn new_flow_names_service_backend_pods_and_translation() {
        let mut ev = event(EV_NEW_FLOW, 1);
        ev.ct_flags = CT_F_SERVICE | CT_F_SNAT;
        // Event 2 s before "now".
        let d = decode(&ev, &names(), 7_000_000_000, 1_796_529_602_000).expect("flow");
        assert_eq!(d.time, "2026-12-06T04:00:00.000Z");
        assert_eq!((d.kind, d.verdict), ("flow", Some("allowed")));
        assert_eq!((d.to_addr, d.to_port), (Some(Ipv4Addr::new(198, 18, 1, 2)), Some(8080)));
        assert_eq!(d.translation, ["service", "snat"]);
        assert_eq!(d.service.as_deref(), Some("demo/web:http"));
        assert_eq!(d.destination_pod.as_deref(), Some("demo/web-1"));
        assert_eq!(d.interface, "veth-c");
        let line = d.to_string();
        assert!(
            line.contains("198.18.0.2:40000 (demo/client) -> 198.19.0.10:80 (demo/web:http) => 198.18.1.2:8080 (demo/web-1) [service,snat] on veth-c"),
            "{line}"
        );
        assert_eq!(decode(&event(EV_NEW_FLOW, 0), &names(), 0, 0).expect("flow").verdict, Some("not-evaluated"));
    }

    #[test]
    fn policy_drop_names_the_denying_pod() {
        let mut ev = event(EV_DROP, DropReason::PolicyIngress as u8);
        ev.endpoint = 3;
        let d = decode(&ev, &names(), 0, 0).expect("drop");
        assert_eq!(d.reason.as_deref(), Some("policy-denied-ingress"));
        assert_eq!((d.direction, d.denied_by.as_deref()), (Some("ingress"), Some("demo/web-1")));
        assert!(d.to_string().ends_with("on veth-c, ingress policy of demo/web-1"), "{d}");
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["reason"], "policy-denied-ingress");
        assert_eq!(json["denied_by"], "demo/web-1");
        assert!(json.get("verdict").is_none());
    }

    #[test]
    fn unknown_kinds_and_reasons_are_not_fatal() {
        assert_eq!(decode(&event(9, 0), &names(), 0, 0), None);
        let d = decode(&event(EV_DROP, 200), &Names::default(), 0, 0).expect("drop");
        assert_eq!(d.reason.as_deref(), Some("reason-200"));
        assert_eq!(d.interface, "if7");
    }
}
