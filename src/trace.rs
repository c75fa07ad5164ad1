//! `edgeplane trace`: what the data plane does with a new flow's first
//! packet, answered from the compiled maps by re-stating bpf/tc.bpf.c's
//! decisions for a new flow in the same order (frontend lookup by scope,
//! source ranges, empty frontends, each backend slot with hairpin, SNAT or
//! DSR, then the policy stage through `compile_policy::sim`), with names and
//! the NetworkPolicy rules behind the verdict (`policy_view`). Pure; checked
//! against BPF_PROG_TEST_RUN of the real program in tests/prog_run_trace.rs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::compile_policy::sim::{self, Flow, Verdict};
use crate::drop_reason::DropReason;
use crate::maps::layout::{
    BE_F_REMOTE, Backend, LBSRC_PREFIX_FRONTEND, LbsrcKey, NODE_F_DSR, NodeConfig, SCOPE_CLUSTER, SCOPE_EXTERNAL,
    SVC_F_DROP_EMPTY, SVC_F_DSR_OK, SVC_F_NODE_ADDR, SVC_F_SOURCE_RANGES, SvcKey, SvcValue, backend_id_key,
};
use crate::maps::{Entries, MapId, proto_name};
use crate::policy_view::{Explanation, PolicyView};

/// The packet asked about: the first packet of a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub dport: u16,
    pub proto: u8,
    /// Arrives on a host (uplink) interface, not a workload (pod) one.
    pub from_host: bool,
}

/// The compiled state the answer is read from.
pub struct State<'a> {
    /// Desired contents of the planned maps (services, backends, source
    /// ranges, policy), as `daemon::desired_state` computes them.
    pub maps: &'a BTreeMap<MapId, Entries>,
    /// ep_cfg_v1: EP_CFG_F_POLICY and the epoch the policy maps are read at.
    pub policy_enabled: bool,
    pub policy_epoch: u32,
    /// ep_node_v1: SNAT address and DSR.
    pub node: NodeConfig,
    pub hairpin_addr: Ipv4Addr,
}

/// What happens to the packet (one backend path, or the flow as a whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Passed on (translated or not).
    Forward,
    /// Dropped silently, counted under `reason`.
    Drop,
    /// Answered with a TCP RST / ICMP port unreachable, counted under `reason`.
    Reject,
}

/// One backend slot's outcome (or the untranslated path).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathTrace {
    /// Where the packet goes: the backend, or the destination unchanged.
    pub to_addr: Ipv4Addr,
    pub to_port: u16,
    /// Backend slots holding this backend: its share of new flows is weight / total.
    pub weight: usize,
    /// On another node (EndpointSlice nodeName is not this node).
    pub remote: bool,
    /// The source the backend sees (the client unless hairpin or SNAT).
    pub source: Ipv4Addr,
    /// `service`, `hairpin`, `snat`, `dsr`, `fib-routed`.
    pub translation: Vec<&'static str>,
    /// `allowed`, `denied-ingress`, `denied-egress`, or `not-evaluated`
    /// (no pod on this node is isolated: the policy stage is off).
    pub policy: &'static str,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// `namespace/name` of the pod at `to_addr`, when the directory has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The NetworkPolicy reasoning (which policies isolate, which rules allow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_rules: Option<Explanation>,
}

/// The frontend the packet hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrontendTrace {
    /// `cluster` (pods, host processes, ClusterIPs) or `external` (from outside).
    pub scope: &'static str,
    pub svc_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub backend_slots: u16,
    pub flags: Vec<&'static str>,
}

/// `edgeplane trace`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub dport: u16,
    pub proto: String,
    /// `workload` or `host`.
    pub ingress: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend: Option<FrontendTrace>,
    /// The flow's action when every path agrees; `forward` when some
    /// backends forward and others are denied (the backend is chosen at random).
    pub action: Action,
    /// Set when the whole flow is dropped or rejected before a backend is chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// One per distinct backend (service flows) or the one untranslated path.
    pub paths: Vec<PathTrace>,
}

fn frontend(maps: &BTreeMap<MapId, Entries>, q: &Query, scope: u8, slot: u16) -> Option<SvcValue> {
    let key = SvcKey::new(q.daddr, q.dport, q.proto, scope, slot);
    maps.get(&MapId::Services)?.get(&key.to_bytes()).and_then(|v| SvcValue::from_bytes(v))
}

/// ep_lbsrc_v1's LPM lookup: some allowed prefix of this frontend covers the client.
fn source_allowed(maps: &BTreeMap<MapId, Entries>, q: &Query) -> bool {
    let Some(ranges) = maps.get(&MapId::SourceRanges) else { return false };
    ranges.keys().filter_map(|k| LbsrcKey::from_bytes(k)).any(|k| {
        let len = k.prefixlen.saturating_sub(LBSRC_PREFIX_FRONTEND).min(32);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        k.vip == q.daddr.octets()
            && k.port == q.dport.to_be_bytes()
            && k.proto == q.proto
            && u32::from_be_bytes(k.saddr) & mask == u32::from(q.saddr) & mask
    })
}

fn svc_flag_names(flags: u16) -> Vec<&'static str> {
    const NAMES: [(u16, &str); 4] = [
        (SVC_F_DROP_EMPTY, "drop-if-empty"),
        (SVC_F_SOURCE_RANGES, "source-ranges"),
        (SVC_F_NODE_ADDR, "node-address"),
        (SVC_F_DSR_OK, "dsr-ok"),
    ];
    NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, n)| *n).collect()
}

/// The policy stage for the flow's final tuple.
fn policy(state: &State, flow: &Flow) -> (&'static str, Option<DropReason>) {
    if !state.policy_enabled {
        return ("not-evaluated", None);
    }
    match sim::evaluate(state.maps, state.policy_epoch, flow) {
        Verdict::Allow => ("allowed", None),
        Verdict::DenyIngress { .. } => ("denied-ingress", Some(DropReason::PolicyIngress)),
        Verdict::DenyEgress { .. } => ("denied-egress", Some(DropReason::PolicyEgress)),
    }
}

/// One backend of a service flow (ep_new_service_flow's decisions).
fn backend_path(state: &State, q: &Query, svc: &SvcValue, be: &Backend, weight: usize) -> PathTrace {
    let mut path = PathTrace {
        to_addr: be.addr(),
        to_port: be.port(),
        weight,
        remote: be.flags & BE_F_REMOTE != 0,
        source: q.saddr,
        translation: vec!["service"],
        policy: "not-evaluated",
        action: Action::Forward,
        reason: None,
        pod: None,
        policy_rules: None,
    };
    let mut fib = svc.flags & SVC_F_NODE_ADDR != 0;
    if be.addr() == q.saddr && !q.from_host {
        path.translation.push("hairpin");
        path.source = state.hairpin_addr;
    } else if q.from_host && path.remote {
        let dsr = state.node.flags & NODE_F_DSR != 0 && svc.flags & SVC_F_DSR_OK != 0;
        let snat = Ipv4Addr::from(state.node.snat_addr);
        if dsr {
            path.translation.push("dsr");
            fib = true;
        } else if snat.is_unspecified() {
            path.action = Action::Drop;
            path.reason = Some(DropReason::NoSnatAddr.label());
            return path;
        } else {
            path.translation.push("snat");
            path.source = snat;
            fib = true;
        }
    }
    if fib {
        path.translation.push("fib-routed");
    }
    // Policy judges the client (not the hairpin or SNAT address) to the backend.
    let flow = Flow { saddr: q.saddr, daddr: be.addr(), proto: q.proto, dport: Some(be.port()) };
    let (verdict, denied) = policy(state, &flow);
    path.policy = verdict;
    if let Some(r) = denied {
        path.action = Action::Drop;
        path.reason = Some(r.label());
    }
    path
}

/// The data plane's decision for `q`'s first packet, without names.
pub fn trace(state: &State, q: &Query) -> Trace {
    let mut out = Trace {
        saddr: q.saddr,
        daddr: q.daddr,
        dport: q.dport,
        proto: proto_name(q.proto),
        ingress: if q.from_host { "host" } else { "workload" },
        source_pod: None,
        frontend: None,
        action: Action::Forward,
        reason: None,
        paths: Vec::new(),
    };
    // Host interfaces look the external frontend up first, then the cluster one.
    let hit = [SCOPE_EXTERNAL, SCOPE_CLUSTER]
        .into_iter()
        .filter(|s| q.from_host || *s == SCOPE_CLUSTER)
        .find_map(|scope| frontend(state.maps, q, scope, 0).map(|v| (scope, v)));
    let Some((scope, svc)) = hit else {
        // Not a frontend: untranslated, judged by policy only.
        let flow = Flow { saddr: q.saddr, daddr: q.daddr, proto: q.proto, dport: Some(q.dport) };
        let (verdict, denied) = policy(state, &flow);
        out.paths.push(PathTrace {
            to_addr: q.daddr,
            to_port: q.dport,
            weight: 1,
            remote: false,
            source: q.saddr,
            translation: Vec::new(),
            policy: verdict,
            action: if denied.is_some() { Action::Drop } else { Action::Forward },
            reason: denied.map(DropReason::label),
            pod: None,
            policy_rules: None,
        });
        out.action = out.paths[0].action;
        out.reason = out.paths[0].reason;
        return out;
    };
    out.frontend = Some(FrontendTrace {
        scope: if scope == SCOPE_EXTERNAL { "external" } else { "cluster" },
        svc_id: svc.svc_id,
        service: None,
        backend_slots: svc.count,
        flags: svc_flag_names(svc.flags),
    });
    let whole = |action, r: DropReason| (action, Some(r.label()));
    let refused = if svc.flags & SVC_F_SOURCE_RANGES != 0 && !source_allowed(state.maps, q) {
        Some(whole(Action::Drop, DropReason::SourceRange))
    } else if svc.count == 0 && svc.flags & SVC_F_DROP_EMPTY != 0 {
        Some(whole(Action::Drop, DropReason::NoLocalEndpoints))
    } else if svc.count == 0 {
        Some(whole(Action::Reject, DropReason::NoEndpoints))
    } else {
        None
    };
    if let Some((action, reason)) = refused {
        out.action = action;
        out.reason = reason;
        return out;
    }
    // Backend slots 1..=count, grouped by backend (its weight is its slot count).
    let mut weights: BTreeMap<u32, usize> = BTreeMap::new();
    for slot in 1..=svc.count {
        match frontend(state.maps, q, scope, slot) {
            Some(v) => *weights.entry(v.backend_id).or_default() += 1,
            None => {
                out.action = Action::Drop;
                out.reason = Some(DropReason::SvcInconsistent.label());
                return out;
            }
        }
    }
    let backends = state.maps.get(&MapId::Backends);
    for (id, weight) in weights {
        let be = backends.and_then(|b| b.get(&backend_id_key(id))).and_then(|v| Backend::from_bytes(v));
        match be {
            Some(be) => out.paths.push(backend_path(state, q, &svc, &be, weight)),
            None => {
                out.action = Action::Drop;
                out.reason = Some(DropReason::SvcInconsistent.label());
                return out;
            }
        }
    }
    if out.paths.iter().all(|p| p.action != Action::Forward) {
        out.action = Action::Drop;
        let reasons: Vec<_> = out.paths.iter().filter_map(|p| p.reason).collect();
        if reasons.windows(2).all(|w| w[0] == w[1]) {
            out.reason = reasons.first().copied();
        }
    }
    out
}

/// Adds names (service, pods) and the NetworkPolicy reasoning for each path.
pub fn annotate(t: &mut Trace, view: &PolicyView, services: &BTreeMap<(Ipv4Addr, u16, u8), String>, proto: u8) {
    t.source_pod = view.pod_at(t.saddr).map(crate::policy_view::pod_name);
    if let Some(fe) = &mut t.frontend {
        fe.service = services.get(&(t.daddr, t.dport, proto)).cloned();
    }
    for p in &mut t.paths {
        p.pod = view.pod_at(p.to_addr).map(crate::policy_view::pod_name);
        if p.policy != "not-evaluated" {
            let flow = Flow { saddr: t.saddr, daddr: p.to_addr, proto, dport: Some(p.to_port) };
            p.policy_rules = Some(view.explain(&flow));
        }
    }
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Forward => "forwarded",
        Action::Drop => "dropped",
        Action::Reject => "rejected",
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto, self.saddr)?;
        if let Some(p) = &self.source_pod {
            write!(f, " ({p})")?;
        }
        writeln!(f, " -> {}:{} arriving on a {} interface", self.daddr, self.dport, self.ingress)?;
        match &self.frontend {
            Some(fe) => writeln!(
                f,
                "  frontend: {} ({} scope, service id {}), {} backend slot(s){}",
                fe.service.as_deref().unwrap_or("unnamed service"),
                fe.scope,
                fe.svc_id,
                fe.backend_slots,
                if fe.flags.is_empty() { String::new() } else { format!(", {}", fe.flags.join(", ")) }
            )?,
            None => writeln!(f, "  not a service frontend: not translated")?,
        }
        write!(f, "  verdict: {}", action_word(self.action))?;
        match self.reason {
            Some(r) => writeln!(f, " ({r})")?,
            None => writeln!(f)?,
        }
        let total: usize = self.paths.iter().map(|p| p.weight).sum();
        for p in &self.paths {
            write!(f, "  -> {}:{}", p.to_addr, p.to_port)?;
            if let Some(pod) = &p.pod {
                write!(f, " ({pod})")?;
            }
            if self.frontend.is_some() {
                write!(f, " {}/{} of new flows", p.weight, total)?;
                if p.remote {
                    write!(f, ", on another node")?;
                }
            }
            if !p.translation.is_empty() {
                write!(f, " [{}]", p.translation.join(","))?;
            }
            if p.source != self.saddr {
                write!(f, ", backend sees source {}", p.source)?;
            }
            write!(f, ": {}", action_word(p.action))?;
            if let Some(r) = p.reason {
                write!(f, " ({r})")?;
            }
            writeln!(f, "; policy {}", p.policy)?;
            if let Some(e) = &p.policy_rules {
                for (dir, side) in [("egress", &e.egress), ("ingress", &e.ingress)] {
                    let Some(pod) = &side.pod else { continue };
                    write!(f, "       {dir} of {pod}: {}", side.verdict)?;
                    if !side.isolated_by.is_empty() {
                        write!(f, " (isolated by {})", side.isolated_by.join(", "))?;
                    }
                    if !side.allowed_by.is_empty() {
                        write!(f, ", allowed by {}", side.allowed_by.join(", "))?;
                    }
                    writeln!(f)?;
                }
            }
        }
        Ok(())
    }
}

/// Parses `ADDR:PORT[/PROTO]` (protocol tcp, udp or sctp; tcp when left out).
pub fn parse_destination(s: &str) -> Result<(Ipv4Addr, u16, u8), String> {
    let (addr_port, proto) = match s.split_once('/') {
        Some((ap, p)) => (ap, p),
        None => (s, "tcp"),
    };
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        other => return Err(format!("{s}: protocol {other:?} is not tcp, udp or sctp")),
    };
    let (addr, port) = addr_port.rsplit_once(':').ok_or_else(|| format!("{s}: expected ADDR:PORT[/PROTO]"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{s}: {addr:?} is not an IPv4 address"))?;
    let port: u16 = port.parse().map_err(|_| format!("{s}: {port:?} is not a port number"))?;
    Ok((addr, port, proto))
}

/// Where the packet arrives: `auto` = a workload interface when the source
/// is a pod of the directory, a host interface otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    Auto,
    Workload,
    Host,
}

/// `edgeplane trace`: 0 answered, 1 the directory is invalid, 2 usage or I/O error.
pub fn command(settings: &crate::config::Settings, src: Ipv4Addr, dst: &str, ingress: Ingress, json: bool) -> u8 {
    use crate::daemon;
    let (daddr, dport, proto) = match parse_destination(dst) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let Some(loaded) = daemon::load_valid(settings, &std::sync::Arc::default()) else { return 1 };
    // The live maps when a data plane is pinned (same ids and epoch as it uses), else none.
    let (live, epoch) = match crate::datapath::open_pinned_maps(&settings.state_dir) {
        Ok(Some(maps)) => {
            let live = crate::plan::dump_live(&maps, MapId::ALL).unwrap_or_default();
            let epoch =
                crate::datapath::read_pinned_config(&settings.state_dir).ok().flatten().map_or(0, |c| c.policy_epoch);
            (live, epoch)
        }
        _ => (BTreeMap::new(), 0),
    };
    let node = daemon::policy_node(&loaded, settings);
    let desired = daemon::desired_state(&loaded, settings, &node, &live, epoch);
    let view = PolicyView::new(&loaded.cluster, &node);
    let from_host = match ingress {
        Ingress::Workload => false,
        Ingress::Host => true,
        Ingress::Auto => view.pod_at(src).is_none(),
    };
    let state = State {
        maps: &desired.maps,
        policy_enabled: desired.policy.enabled,
        // After the switch a fresh compile may ask for: the state being applied.
        policy_epoch: desired.policy.switch_epoch.unwrap_or(epoch),
        node: daemon::node_config(settings),
        hairpin_addr: settings.hairpin_address,
    };
    let mut t = trace(&state, &Query { saddr: src, daddr, dport, proto, from_host });
    let lb_node = crate::compile::NodeContext::from_settings(settings);
    let names =
        crate::inspect::names_by_frontend(crate::compile::compile_services(&loaded.cluster, &lb_node).0.services);
    annotate(&mut t, &view, &names, proto);
    if json {
        return crate::inspect::print_json(&t);
    }
    print!("{t}");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_with_protocol_defaulting_to_tcp() {
        assert_eq!(parse_destination("198.19.0.10:80"), Ok((Ipv4Addr::new(198, 19, 0, 10), 80, 6)));
        assert_eq!(parse_destination("198.19.0.10:53/UDP"), Ok((Ipv4Addr::new(198, 19, 0, 10), 53, 17)));
        assert_eq!(parse_destination("198.19.0.10:9/sctp"), Ok((Ipv4Addr::new(198, 19, 0, 10), 9, 132)));
        for bad in ["198.19.0.10", "198.19.0.10:80/icmp", "web:80", "198.19.0.10:99999", "2001:db8::1:80"] {
            assert!(parse_destination(bad).is_err(), "{bad}");
        }
    }
}
