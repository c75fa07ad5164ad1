//! `edgeplane trace` against the real program (root only): one directory
//! (ClusterIP, empty, LoadBalancer with source ranges and Local policy,
//! NodePort to another node's endpoint; NetworkPolicies allowing and
//! denying) is compiled as the daemon does, written into a freshly loaded
//! tc object, and a table of new-flow packets is run through
//! BPF_PROG_TEST_RUN. For every packet the trace must name the outcome the
//! program produced: the action and drop reason, and for a forwarded packet
//! the backend it went to and the source the backend sees. Each row is run
//! with several client ports, so random backend choices hit several paths.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use common::packet::*;
use edgeplane::compile_policy::PolicyNode;
use edgeplane::config::{self, Settings};
use edgeplane::datapath::{self, Capacities, object_map};
use edgeplane::drop_reason::DropReason;
use edgeplane::maps::layout::{CFG_F_POLICY, Config};
use edgeplane::maps::{Entries, MapId};
use edgeplane::source::{LoadLimits, Snapshot, SourceFile};
use edgeplane::trace::{Action, Query, State, Trace, trace};
use libbpf_rs::{MapCore, MapFlags, Object, ProgramInput};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const WEB1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const DB: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 20);
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 2);
const FAR_OUTSIDER: Ipv4Addr = Ipv4Addr::new(198, 18, 6, 2);
const NODE1: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 11);
const WEB_VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 11);
const DB_VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 12);
const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 5, 1);

fn pod(ns: &str, name: &str, app: &str, ip: Ipv4Addr, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: i, ports: [{{name: http, containerPort: 8080, protocol: TCP}}]}}]\nstatus:\n  podIP: {ip}\n  podIPs: [{{ip: {ip}}}]\n"
    )
}

fn slice(name: &str, svc: &str, port: u16, eps: &[(Ipv4Addr, &str)]) -> String {
    let mut y = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: t\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nports: [{{name: p, protocol: TCP, port: {port}}}]\nendpoints:\n"
    );
    for (ip, node) in eps {
        y.push_str(&format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n  nodeName: {node}\n"));
    }
    y
}

fn directory() -> String {
    let remote = Ipv4Addr::new(198, 18, 2, 10);
    let docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: t, labels: {team: t}}\n".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n".to_string(),
        pod("t", "client", "client", CLIENT, "n1"),
        pod("other", "stranger", "client", STRANGER, "n1"),
        pod("t", "web-1", "web", WEB1, "n1"),
        pod("t", "web-2", "web", Ipv4Addr::new(198, 18, 1, 11), "n1"),
        pod("t", "db", "db", DB, "n1"),
        pod("t", "far", "web", remote, "n2"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: t}}\nspec:\n  clusterIP: {WEB_VIP}\n  ports: [{{name: p, protocol: TCP, port: 80, targetPort: 8080}}]\n"),
        slice("web-1", "web", 8080, &[(WEB1, "n1"), (Ipv4Addr::new(198, 18, 1, 11), "n1")]),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: empty, namespace: t}}\nspec:\n  clusterIP: {EMPTY_VIP}\n  ports: [{{name: p, protocol: TCP, port: 80, targetPort: 8080}}]\n"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: t}}\nspec:\n  clusterIP: {DB_VIP}\n  ports: [{{name: p, protocol: TCP, port: 5432, targetPort: 5432}}]\n"),
        slice("db-1", "db", 5432, &[(DB, "n1")]),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: lb, namespace: t}}\nspec:\n  type: LoadBalancer\n  clusterIP: 198.19.0.13\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n  loadBalancerSourceRanges: [198.18.5.0/24]\n  ports: [{{name: p, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}}]\nstatus:\n  loadBalancer:\n    ingress: [{{ip: {LB_IP}}}]\n"),
        slice("lb-1", "lb", 8080, &[(remote, "n2")]),
        "apiVersion: v1\nkind: Service\nmetadata: {name: np, namespace: t}\nspec:\n  type: NodePort\n  clusterIP: 198.19.0.14\n  ports: [{name: p, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30081}]\n".to_string(),
        slice("np-1", "np", 8080, &[(remote, "n2")]),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-from-client, namespace: t}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{protocol: TCP, port: 8080}]\n".to_string(),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-closed, namespace: t}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n".to_string(),
    ];
    docs.join("---\n")
}

struct Compiled {
    maps: BTreeMap<MapId, Entries>,
    policy_enabled: bool,
    policy_epoch: u32,
    settings: Settings,
}

impl Compiled {
    /// What `edgeplane trace` reads: the same maps, config and node settings.
    fn state(&self) -> State<'_> {
        State {
            maps: &self.maps,
            policy_enabled: self.policy_enabled,
            policy_epoch: self.policy_epoch,
            node: edgeplane::daemon::node_config(&self.settings),
            hairpin_addr: self.settings.hairpin_address,
        }
    }
}

/// The directory compiled as `edgeplane apply` would on node n1 (no live state).
fn compile(dsr: bool) -> Compiled {
    let settings_text = format!("node-name: n1\nnode-ips: [{NODE1}]\ndsr: {dsr}\n");
    let settings = config::build(Some(("s.yaml", &settings_text)), &config::Overrides::default()).expect("settings");
    let snapshot =
        Snapshot { files: vec![SourceFile { path: Arc::from("dir.yaml"), text: directory() }], ..Snapshot::default() };
    let loaded = edgeplane::model::load_snapshot(snapshot, &LoadLimits::default());
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let node = PolicyNode {
        node_name: Some("n1".into()),
        local_pod_ips: BTreeSet::new(),
        host_ips: BTreeSet::from([IpAddr::V4(NODE1)]),
    };
    let desired = edgeplane::daemon::desired_state(&loaded, &settings, &node, &BTreeMap::new(), 0);
    Compiled {
        maps: desired.maps,
        policy_enabled: desired.policy.enabled,
        policy_epoch: desired.policy.switch_epoch.unwrap_or(0),
        settings,
    }
}

/// A fresh tc object holding exactly the compiled state.
fn load(c: &Compiled) -> Object {
    let caps = Capacities {
        services: 4096,
        backends: 1024,
        conntrack: 4096,
        affinity: 1024,
        sknat: 1024,
        ..Capacities::default()
    };
    let obj = datapath::load_unpinned(&caps).expect("tc object loads");
    for (id, entries) in &c.maps {
        let m = object_map(&obj, id.pin_name()).expect("planned map");
        for (k, v) in entries {
            m.update(k, v, MapFlags::ANY).unwrap_or_else(|e| panic!("{id:?}: {e}"));
        }
    }
    let cfg = Config {
        hairpin_addr: c.settings.hairpin_address.octets(),
        policy_epoch: c.policy_epoch,
        flags: if c.policy_enabled { CFG_F_POLICY } else { 0 },
        applied_objects: 0,
    };
    object_map(&obj, "ep_cfg_v1")
        .expect("cfg")
        .update(&0u32.to_ne_bytes(), &cfg.to_bytes(), MapFlags::ANY)
        .expect("cfg");
    let node = edgeplane::daemon::node_config(&c.settings);
    object_map(&obj, "ep_node_v1")
        .expect("node")
        .update(&0u32.to_ne_bytes(), &node.to_bytes(), MapFlags::ANY)
        .expect("node");
    obj
}

/// What the program did with one packet.
#[derive(Debug, PartialEq)]
enum Outcome {
    Forward { to: Ipv4Addr, port: u16, source: Ipv4Addr },
    Drop { reason: DropReason, to: Ipv4Addr },
    Reject { reason: DropReason },
}

fn drop_counts(obj: &Object) -> Vec<u64> {
    let m = object_map(obj, "ep_drops_v1").expect("drops");
    DropReason::ALL
        .iter()
        .map(|r| {
            let v = m.lookup_percpu(&(*r as u32).to_ne_bytes(), MapFlags::ANY).expect("drops").unwrap_or_default();
            v.iter().map(|b| u64::from_ne_bytes(b[..8].try_into().expect("8 bytes"))).sum()
        })
        .collect()
}

/// The final destination of the most recent drop event (ep_dropev_v1 slot by EP_STAT_DROPEV_SEQ).
fn last_drop_destination(obj: &Object) -> Ipv4Addr {
    let m = object_map(obj, "ep_dropev_v1").expect("dropev");
    let mut newest = (0u64, Ipv4Addr::UNSPECIFIED);
    for slot in 0..m.max_entries() {
        let Some(v) = m.lookup(&slot.to_ne_bytes(), MapFlags::ANY).expect("dropev") else { continue };
        let ts = u64::from_ne_bytes(v[0..8].try_into().expect("8 bytes"));
        if ts > newest.0 {
            newest = (ts, Ipv4Addr::new(v[12], v[13], v[14], v[15]));
        }
    }
    newest.1
}

fn run(obj: &Object, q: &Query, sport: u16) -> Outcome {
    let prog = if q.from_host { "ep_tc_host" } else { "ep_tc_ingress" };
    let before = drop_counts(obj);
    let input = Pkt::tcp(q.saddr, sport, q.daddr, q.dport, SYN).build();
    let p = obj.progs_mut().find(|p| p.name() == prog).expect("program");
    let mut out = vec![0u8; 2048];
    let inp = ProgramInput { data_in: Some(&input), data_out: Some(&mut out), repeat: 1, ..Default::default() };
    let o = p.test_run(inp).expect("test_run");
    let (ret, len) = (o.return_value, o.data.as_ref().map_or(0, |d| d.len()));
    out.truncate(len);
    let after = drop_counts(obj);
    let counted: Vec<DropReason> =
        DropReason::ALL.iter().zip(before.iter().zip(&after)).filter(|(_, (b, a))| a > b).map(|(r, _)| *r).collect();
    match counted.as_slice() {
        [] => {
            assert!(matches!(ret, TC_ACT_OK | TC_ACT_REDIRECT), "ret {} without a drop", ret);
            let parsed = Parsed::parse(&out);
            Outcome::Forward { to: parsed.daddr, port: parsed.dport(), source: parsed.saddr }
        }
        [DropReason::NoEndpoints] => {
            assert_eq!(ret, TC_ACT_REDIRECT, "a reject is sent back");
            Outcome::Reject { reason: DropReason::NoEndpoints }
        }
        [r] => {
            assert_eq!(ret, TC_ACT_SHOT, "{r:?}");
            Outcome::Drop { reason: *r, to: last_drop_destination(obj) }
        }
        many => panic!("one packet counted several drops: {many:?}"),
    }
}

/// The trace's prediction for the program's `outcome`.
fn agrees(t: &Trace, outcome: &Outcome) -> Result<(), String> {
    let reason_label = |r: &DropReason| r.label();
    match outcome {
        Outcome::Reject { reason } => {
            if t.action == Action::Reject && t.reason == Some(reason_label(reason)) {
                return Ok(());
            }
        }
        Outcome::Drop { reason, to } => {
            // Dropped before a backend was chosen, or on the path to `to`.
            if t.action == Action::Drop && t.reason == Some(reason_label(reason)) && t.paths.is_empty() {
                return Ok(());
            }
            let path = t.paths.iter().find(|p| p.to_addr == *to);
            if path.is_some_and(|p| p.action == Action::Drop && p.reason == Some(reason_label(reason))) {
                return Ok(());
            }
        }
        Outcome::Forward { to, port, source } => {
            let path = t.paths.iter().find(|p| p.to_addr == *to && p.to_port == *port);
            if path.is_some_and(|p| p.action == Action::Forward && p.source == *source) {
                return Ok(());
            }
        }
    }
    Err(format!("program: {outcome:?}\ntrace:\n{t}"))
}

#[test]
fn trace_agrees_with_the_program_on_every_row() {
    in_fresh_netns(|| {
        let c = compile(false);
        let obj = load(&c);
        let state = c.state();
        let q = |saddr, daddr, dport, from_host| Query { saddr, daddr, dport, proto: TCP, from_host };
        // (query, what the row is about): each must also reach the outcome named.
        let rows = [
            (q(CLIENT, WEB_VIP, 80, false), "allowed by web-from-client", "forward"),
            (q(STRANGER, WEB_VIP, 80, false), "other namespace: denied ingress", "drop"),
            (q(CLIENT, EMPTY_VIP, 80, false), "no endpoints: rejected", "reject"),
            (q(CLIENT, DB_VIP, 5432, false), "db-closed isolates db", "drop"),
            (q(CLIENT, WEB1, 8080, false), "pod to pod, untranslated", "forward"),
            (q(STRANGER, WEB1, 8080, false), "pod to pod, denied", "drop"),
            (q(WEB1, WEB_VIP, 80, false), "hairpin to itself, denied to its peer", "any"),
            (q(OUTSIDER, LB_IP, 80, true), "source range ok, no local endpoint", "drop"),
            (q(FAR_OUTSIDER, LB_IP, 80, true), "outside loadBalancerSourceRanges", "drop"),
            (q(OUTSIDER, NODE1, 30081, true), "NodePort to another node: SNAT", "forward"),
            (q(OUTSIDER, NODE1, 30080, true), "NodePort with Local policy, none here", "drop"),
        ];
        let mut seen_paths = BTreeSet::new();
        for (query, about, expected) in rows {
            let t = trace(&state, &query);
            let action = match t.action {
                Action::Forward => "forward",
                Action::Drop => "drop",
                Action::Reject => "reject",
            };
            assert!(expected == "any" || expected == action, "{about}: trace says {action}:\n{t}");
            for sport in 40000..40024 {
                let outcome = run(&obj, &query, sport);
                if let Err(e) = agrees(&t, &outcome) {
                    panic!("{about} (sport {sport}): {e}");
                }
                if let Outcome::Forward { to, .. } | Outcome::Drop { to, .. } = outcome {
                    seen_paths.insert((query.saddr, query.daddr, to));
                }
            }
        }
        // The random choices really took more than one path of a two-backend service.
        let web_paths = seen_paths.iter().filter(|(s, d, _)| *s == WEB1 && *d == WEB_VIP).count();
        assert_eq!(web_paths, 2, "24 new flows from web-1 all took one backend: {seen_paths:?}");
    });
}

#[test]
fn trace_agrees_with_the_program_on_dsr() {
    in_fresh_netns(|| {
        let c = compile(true);
        let obj = load(&c);
        let state = c.state();
        let query = Query { saddr: OUTSIDER, daddr: NODE1, dport: 30081, proto: TCP, from_host: true };
        let t = trace(&state, &query);
        assert!(t.paths.iter().all(|p| p.translation.contains(&"dsr") && p.source == OUTSIDER), "{t}");
        for sport in 40000..40004 {
            let outcome = run(&obj, &query, sport);
            agrees(&t, &outcome).unwrap_or_else(|e| panic!("DSR (sport {sport}): {e}"));
        }
    });
}
