//! Pure tests of compile_policy: the compiled maps, evaluated with the same
//! lookups as bpf/lib/policy.h (compile_policy::sim), must agree with the
//! NetworkPolicy semantics read off the model (policy_common::model::Oracle),
//! for hand-written cases and for generated clusters; and numbering must be
//! stable so that unchanged input plans zero writes.

#[path = "policy_common/model.rs"]
mod model;
#[path = "policy_common/yaml.rs"]
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use edgeplane::compile_policy::sim::{Flow, Verdict, evaluate};
use edgeplane::compile_policy::{PolicyCompiled, PolicyNode, compile};
use edgeplane::maps::fake::FakeMaps;
use edgeplane::maps::layout::{IdentValue, LepValue, POL_PREFIX_ALL_PORTS};
use edgeplane::maps::{Entries, MapBackend, MapId};
use edgeplane::model::{Cluster, Protocol, SelectorOp};
use model::*;

const TCP: u8 = 6;
const UDP: u8 = 17;

fn compiled(c: &Cluster) -> PolicyCompiled {
    compile(c, &node_for(c), &BTreeMap::new(), 0)
}

/// Compiles from empty maps and returns the maps with the epoch at which
/// they enforce the compiled policy.
fn fresh(c: &Cluster, node: &PolicyNode) -> (BTreeMap<MapId, Entries>, u32) {
    let out = compile(c, node, &BTreeMap::new(), 0);
    let epoch = out.switch_epoch.unwrap_or(0);
    (out.maps, epoch)
}

/// The whole protocol the daemon follows: compile against live at `epoch`,
/// apply, advance the epoch if asked, compile again and apply the cleanup.
/// Returns the new epoch and the number of writes of each of the two plans.
fn apply_policy(fake: &mut FakeMaps, c: &Cluster, node: &PolicyNode, epoch: u32) -> (u32, usize, usize) {
    let out = compile(c, node, &live_of(fake), epoch);
    let first = apply(fake, &out);
    let epoch = out.switch_epoch.unwrap_or(epoch);
    let cleanup = compile(c, node, &live_of(fake), epoch);
    assert_eq!(cleanup.switch_epoch, None, "the second pass never needs another switch");
    let second = apply(fake, &cleanup);
    (epoch, first, second)
}

fn flow(s: Ipv4Addr, d: Ipv4Addr, proto: u8, port: u16) -> Flow {
    Flow { saddr: s, daddr: d, proto, dport: Some(port) }
}

/// The 9x9 reachability matrix for one port, as the compiled maps decide it.
fn matrix(maps: &BTreeMap<MapId, Entries>, epoch: u32, proto: u8, port: u16) -> BTreeMap<(String, String), bool> {
    let mut out = BTreeMap::new();
    for sn in ["x", "y", "z"] {
        for sp in ["a", "b", "c"] {
            for dn in ["x", "y", "z"] {
                for dp in ["a", "b", "c"] {
                    let f = flow(xyz_ip(sn, sp), xyz_ip(dn, dp), proto, port);
                    out.insert(
                        (format!("{sn}/{sp}"), format!("{dn}/{dp}")),
                        evaluate(maps, epoch, &f) == Verdict::Allow,
                    );
                }
            }
        }
    }
    out
}

/// Expected matrix from a predicate over (from, to) pod names.
fn expect(pred: impl Fn(&str, &str) -> bool) -> BTreeMap<(String, String), bool> {
    let mut out = BTreeMap::new();
    for sn in ["x", "y", "z"] {
        for sp in ["a", "b", "c"] {
            for dn in ["x", "y", "z"] {
                for dp in ["a", "b", "c"] {
                    let (s, d) = (format!("{sn}/{sp}"), format!("{dn}/{dp}"));
                    let v = s == d || pred(&s, &d);
                    out.insert((s, d), v);
                }
            }
        }
    }
    out
}

fn assert_matrix(c: &Cluster, proto: u8, port: u16, want: BTreeMap<(String, String), bool>) {
    let (maps, epoch) = fresh(c, &node_for(c));
    let got = matrix(&maps, epoch, proto, port);
    let diff: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .map(|((s, d), v)| {
            format!("{s} -> {d}: want {}, got {}", if *v { "allow" } else { "deny" }, if *v { "deny" } else { "allow" })
        })
        .collect();
    assert!(diff.is_empty(), "port {port}/{proto}: {} mismatches:\n{}", diff.len(), diff.join("\n"));
    // And the oracle agrees with the hand-written truth table.
    let node = node_for(c);
    let oracle = Oracle::new(c, &node);
    for ((s, d), v) in &want {
        let (sn, sp) = s.split_once('/').expect("name");
        let (dn, dp) = d.split_once('/').expect("name");
        let f = flow(xyz_ip(sn, sp), xyz_ip(dn, dp), proto, port);
        assert_eq!(oracle.allows(&f), *v, "oracle {s} -> {d}");
    }
}

#[test]
fn no_policy_compiles_to_nothing_and_allows_all() {
    let c = xyz_cluster();
    let out = compiled(&c);
    assert!(!out.enabled);
    assert!(out.maps.values().all(Entries::is_empty));
    assert_eq!(out.maps.len(), 3, "all policy maps present so stale entries get removed");
    assert_matrix(&c, TCP, 80, expect(|_, _| true));
}

#[test]
fn default_deny_ingress_in_one_namespace() {
    let mut c = xyz_cluster();
    c.policies.push(Pol::new("x", "deny", sel(&[])).build());
    let out = compiled(&c);
    assert!(out.enabled);
    assert_eq!(out.maps[&MapId::LocalEndpoints].len(), 3);
    assert!(out.maps[&MapId::PolicyAllow].is_empty(), "no rule, no allow entry");
    assert_matrix(&c, TCP, 80, expect(|_, d| !d.starts_with("x/")));
}

#[test]
fn default_deny_egress_only() {
    let mut c = xyz_cluster();
    c.policies.push(Pol::new("x", "deny-egress", sel(&[])).egress_only().build());
    assert_matrix(&c, TCP, 80, expect(|s, _| !s.starts_with("x/")));
    assert_matrix(&c, UDP, 81, expect(|s, _| !s.starts_with("x/")));
}

#[test]
fn allow_from_same_namespace() {
    let mut c = xyz_cluster();
    c.policies
        .push(Pol::new("x", "same-ns", sel(&[])).ingress(rule(vec![pods_peer(Some(sel(&[])), None)], vec![])).build());
    assert_matrix(&c, TCP, 80, expect(|s, d| !d.starts_with("x/") || s.starts_with("x/")));
}

#[test]
fn allow_from_other_namespace_by_label_and_by_metadata_name() {
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("x", "from-y", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(None, Some(sel(&[("ns", "y")])))], vec![]))
            .build(),
    );
    c.policies.push(
        Pol::new("x", "from-z", sel(&[("pod", "b")]))
            .ingress(rule(vec![pods_peer(None, Some(sel(&[("kubernetes.io/metadata.name", "z")])))], vec![]))
            .build(),
    );
    assert_matrix(
        &c,
        TCP,
        80,
        expect(|s, d| match d {
            "x/a" => s.starts_with("y/"),
            "x/b" => s.starts_with("z/"),
            _ => true,
        }),
    );
}

#[test]
fn pod_and_namespace_selector_in_one_peer_is_and() {
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("x", "and", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(Some(sel(&[("pod", "b")])), Some(sel(&[("ns", "y")])))], vec![]))
            .build(),
    );
    assert_matrix(&c, TCP, 80, expect(|s, d| d != "x/a" || s == "y/b"));
}

#[test]
fn pod_and_namespace_selector_in_two_peers_is_or() {
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("x", "or", sel(&[("pod", "a")]))
            .ingress(rule(
                vec![pods_peer(Some(sel(&[("pod", "b")])), None), pods_peer(None, Some(sel(&[("ns", "y")])))],
                vec![],
            ))
            .build(),
    );
    assert_matrix(&c, TCP, 80, expect(|s, d| d != "x/a" || s == "x/b" || s.starts_with("y/")));
}

#[test]
fn match_expressions_select_subjects_and_peers() {
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("y", "expr", expr("pod", SelectorOp::NotIn, &["a"]))
            .ingress(rule(
                vec![pods_peer(Some(expr("pod", SelectorOp::In, &["c"])), Some(expr("ns", SelectorOp::Exists, &[])))],
                vec![],
            ))
            .build(),
    );
    assert_matrix(&c, TCP, 80, expect(|s, d| !(d == "y/b" || d == "y/c") || s.ends_with("/c")));
}

#[test]
fn ipblock_with_except_on_pod_ips() {
    let mut c = xyz_cluster();
    // 198.18.0.0/29 holds x/a .. y/c (1..7 minus .0); except x/b (.2) and z/a (.7).
    c.policies.push(
        Pol::new("x", "cidr", sel(&[("pod", "a")]))
            .ingress(rule(vec![ipblock("198.18.0.0/29", &["198.18.0.2/32", "198.18.0.7/32"])], vec![]))
            .build(),
    );
    assert_matrix(&c, TCP, 80, expect(|s, d| d != "x/a" || ["x/c", "y/a", "y/b", "y/c"].contains(&s)));
    // External addresses: inside the block allowed, the except and outside denied.
    let (maps, epoch) = fresh(&c, &node_for(&c));
    let xa = xyz_ip("x", "a");
    for (src, ok) in [([198, 18, 0, 6], true), ([198, 18, 0, 9], false), ([10, 0, 0, 1], false)] {
        let v = evaluate(&maps, epoch, &flow(Ipv4Addr::from(src), xa, TCP, 80));
        assert_eq!(v == Verdict::Allow, ok, "{:?}", src);
    }
}

#[test]
fn overlapping_ipblocks_from_several_policies_add_up() {
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("x", "wide", sel(&[("pod", "a")]))
            .ingress(rule(vec![ipblock("10.0.0.0/8", &["10.1.0.0/16"])], vec![tcp(80)]))
            .build(),
    );
    c.policies.push(
        Pol::new("x", "narrow", sel(&[("pod", "a")]))
            .ingress(rule(vec![ipblock("10.1.2.0/24", &[])], vec![tcp(81)]))
            .build(),
    );
    let (maps, epoch) = fresh(&c, &node_for(&c));
    let xa = xyz_ip("x", "a");
    let cases = [
        ("10.9.9.9", 80, true),
        ("10.9.9.9", 81, false),
        ("10.1.2.3", 80, false), // in the except of "wide"
        ("10.1.2.3", 81, true),
        ("10.1.3.3", 81, false),
        ("11.0.0.1", 80, false),
    ];
    for (src, port, ok) in cases {
        let v = evaluate(&maps, epoch, &flow(src.parse().expect("ip"), xa, TCP, port));
        assert_eq!(v == Verdict::Allow, ok, "{src}:{port}");
    }
}

#[test]
fn named_ports_resolve_per_destination_pod() {
    let mut c = xyz_cluster();
    // y/a calls its web port "web" on 80, y/b on 81.
    for p in c.pods.iter_mut() {
        if p.meta.namespace == "y" && p.meta.name == "a" {
            p.container_ports.push(port(Some("web"), 80, Protocol::Tcp));
        }
        if p.meta.namespace == "y" && p.meta.name == "b" {
            p.container_ports.push(port(Some("web"), 81, Protocol::Tcp));
        }
    }
    // Ingress: resolved against each selected (local) pod.
    c.policies.push(Pol::new("y", "web-in", sel(&[])).ingress(rule(vec![], vec![named(Protocol::Tcp, "web")])).build());
    assert_matrix(&c, TCP, 80, expect(|_, d| !d.starts_with("y/") || d == "y/a"));
    assert_matrix(&c, TCP, 81, expect(|_, d| !d.starts_with("y/") || d == "y/b"));
    // Egress: resolved against each destination pod.
    let mut c2 = c.clone();
    c2.policies = vec![
        Pol::new("x", "web-out", sel(&[]))
            .egress_only()
            .egress(rule(vec![], vec![named(Protocol::Tcp, "web")]))
            .build(),
    ];
    assert_matrix(&c2, TCP, 80, expect(|s, d| !s.starts_with("x/") || d == "y/a"));
    assert_matrix(&c2, TCP, 81, expect(|s, d| !s.starts_with("x/") || d == "y/b"));
    // The protocol must match the container port's protocol too.
    assert_matrix(&c2, UDP, 80, expect(|s, _| !s.starts_with("x/")));
}

#[test]
fn end_port_ranges() {
    let mut c = xyz_cluster();
    c.policies
        .push(Pol::new("x", "range", sel(&[])).ingress(rule(vec![], vec![range(Protocol::Tcp, 81, 1000)])).build());
    let (maps, epoch) = fresh(&c, &node_for(&c));
    let (s, d) = (xyz_ip("y", "a"), xyz_ip("x", "b"));
    for (p, ok) in [(80, false), (81, true), (82, true), (512, true), (1000, true), (1001, false), (65535, false)] {
        assert_eq!(evaluate(&maps, epoch, &flow(s, d, TCP, p)) == Verdict::Allow, ok, "tcp {p}");
    }
    assert_ne!(evaluate(&maps, epoch, &flow(s, d, UDP, 81)), Verdict::Allow, "udp is another protocol");
}

#[test]
fn multiple_policies_are_additive() {
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("x", "p1", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(Some(sel(&[("pod", "b")])), None)], vec![tcp(80)]))
            .build(),
    );
    c.policies.push(
        Pol::new("x", "p2", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(None, Some(sel(&[("ns", "z")])))], vec![tcp(81)]))
            .build(),
    );
    assert_matrix(&c, TCP, 80, expect(|s, d| d != "x/a" || s == "x/b"));
    assert_matrix(&c, TCP, 81, expect(|s, d| d != "x/a" || s.starts_with("z/")));
}

#[test]
fn egress_policy_types_and_both_directions() {
    let mut c = xyz_cluster();
    // Egress-only policy with a rule: ingress stays open.
    c.policies.push(
        Pol::new("x", "eg", sel(&[("pod", "a")]))
            .egress_only()
            .egress(rule(vec![pods_peer(None, Some(sel(&[("ns", "y")])))], vec![tcp(80)]))
            .build(),
    );
    // And an ingress policy on y/b that only admits z.
    c.policies.push(
        Pol::new("y", "in", sel(&[("pod", "b")]))
            .ingress(rule(vec![pods_peer(None, Some(sel(&[("ns", "z")])))], vec![]))
            .build(),
    );
    assert_matrix(
        &c,
        TCP,
        80,
        expect(|s, d| (s != "x/a" || d.starts_with("y/")) && (d != "y/b" || s.starts_with("z/"))),
    );
    // Drop attribution: x/a -> y/b passes x/a's egress, fails y/b's ingress.
    let out = compiled(&c);
    let epoch = out.switch_epoch.expect("a change");
    match evaluate(&out.maps, epoch, &flow(xyz_ip("x", "a"), xyz_ip("y", "b"), TCP, 80)) {
        Verdict::DenyIngress { endpoint } => assert_eq!(out.endpoints[&endpoint], "y/b"),
        v => panic!("want ingress deny, got {v:?}"),
    }
    match evaluate(&out.maps, epoch, &flow(xyz_ip("x", "a"), xyz_ip("z", "b"), TCP, 80)) {
        Verdict::DenyEgress { endpoint } => assert_eq!(out.endpoints[&endpoint], "x/a"),
        v => panic!("want egress deny, got {v:?}"),
    }
}

#[test]
fn node_addresses_are_always_allowed_and_remote_pods_are_not_enforced() {
    let mut c = xyz_cluster();
    for p in c.pods.iter_mut().filter(|p| p.meta.namespace == "z") {
        p.node_name = Some("node-2".into());
    }
    c.policies.push(Pol::new("x", "deny-all", sel(&[])).types(true, true).build());
    c.policies.push(Pol::new("z", "deny-all", sel(&[])).types(true, true).build());
    let host: Ipv4Addr = "198.19.0.1".parse().expect("ip");
    let node =
        PolicyNode { node_name: Some(NODE.into()), host_ips: BTreeSet::from([IpAddr::V4(host)]), ..Default::default() };
    let out = compile(&c, &node, &BTreeMap::new(), 0);
    let epoch = 1;
    assert_eq!(out.maps[&MapId::LocalEndpoints].len(), 3, "only x's pods are enforced here");
    let xa = xyz_ip("x", "a");
    assert_eq!(evaluate(&out.maps, epoch, &flow(host, xa, TCP, 8080)), Verdict::Allow, "kubelet probe");
    assert_eq!(
        evaluate(&out.maps, epoch, &flow(xa, host, TCP, 40000)),
        Verdict::Allow,
        "probe reply / pod to its node"
    );
    assert_ne!(evaluate(&out.maps, epoch, &flow("198.19.0.2".parse().expect("ip"), xa, TCP, 8080)), Verdict::Allow);
    // z/a is isolated on node-2, not here: traffic to it is decided there.
    assert_eq!(evaluate(&out.maps, epoch, &flow(xyz_ip("y", "a"), xyz_ip("z", "a"), TCP, 80)), Verdict::Allow);
}

#[test]
fn local_pod_ips_select_pods_without_node_name() {
    let mut c = xyz_cluster();
    for p in c.pods.iter_mut() {
        p.node_name = None;
    }
    c.policies.push(Pol::new("x", "deny", sel(&[])).build());
    let node = PolicyNode {
        node_name: Some(NODE.into()),
        local_pod_ips: BTreeSet::from([IpAddr::V4(xyz_ip("x", "b"))]),
        ..Default::default()
    };
    let out = compile(&c, &node, &BTreeMap::new(), 0);
    assert_eq!(out.maps[&MapId::LocalEndpoints].len(), 1);
    assert_eq!(out.endpoints.values().collect::<Vec<_>>(), vec!["x/b"]);
}

#[test]
fn portless_packets_match_only_all_port_rules() {
    let mut c = xyz_cluster();
    c.policies.push(Pol::new("x", "p80", sel(&[("pod", "a")])).ingress(rule(vec![], vec![tcp(80)])).build());
    c.policies.push(
        Pol::new("x", "all-udp", sel(&[("pod", "b")]))
            .ingress(rule(
                vec![],
                vec![edgeplane::model::PolicyPort { protocol: Protocol::Udp, port: None, end_port: None }],
            ))
            .build(),
    );
    c.policies.push(Pol::new("x", "all", sel(&[("pod", "c")])).ingress(rule(vec![], vec![])).build());
    let (maps, epoch) = fresh(&c, &node_for(&c));
    let s = xyz_ip("y", "a");
    let frag = |d, proto| Flow { saddr: s, daddr: d, proto, dport: None };
    assert_ne!(evaluate(&maps, epoch, &frag(xyz_ip("x", "a"), TCP)), Verdict::Allow, "fragment cannot prove port 80");
    assert_eq!(evaluate(&maps, epoch, &frag(xyz_ip("x", "b"), UDP)), Verdict::Allow, "all UDP ports");
    assert_ne!(evaluate(&maps, epoch, &frag(xyz_ip("x", "b"), TCP)), Verdict::Allow);
    assert_eq!(evaluate(&maps, epoch, &frag(xyz_ip("x", "c"), 1)), Verdict::Allow, "ICMP with a rule without ports");
    assert_ne!(evaluate(&maps, epoch, &frag(xyz_ip("x", "b"), 1)), Verdict::Allow, "ICMP is not UDP");
    // Entries for "every port" rules stop at the protocol.
    assert!(maps[&MapId::PolicyAllow].keys().any(|k| {
        edgeplane::maps::layout::PolKey::from_bytes(k).is_some_and(|k| k.prefixlen == POL_PREFIX_ALL_PORTS)
    }));
}

fn apply(fake: &mut FakeMaps, out: &PolicyCompiled) -> usize {
    let live: BTreeMap<MapId, Entries> = MapId::ALL.iter().map(|m| (*m, fake.entries(*m))).collect();
    let plan = edgeplane::plan::plan(&out.maps, &live);
    let n = plan.steps.len();
    edgeplane::apply::apply(&plan, fake).expect("apply to fake");
    n
}

fn live_of(fake: &FakeMaps) -> BTreeMap<MapId, Entries> {
    MapId::ALL.iter().map(|m| (*m, fake.dump(*m).expect("dump"))).collect()
}

#[test]
fn unchanged_input_plans_nothing_and_one_pod_change_is_local() {
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("x", "in", sel(&[]))
            .ingress(rule(vec![pods_peer(Some(sel(&[("pod", "b")])), Some(sel(&[])))], vec![tcp(80)]))
            .build(),
    );
    c.policies.push(
        Pol::new("y", "eg", sel(&[]))
            .egress_only()
            .egress(rule(vec![ipblock("198.18.0.0/24", &["198.18.0.8/32"])], vec![]))
            .build(),
    );
    let node = node_for(&c);
    let mut fake = FakeMaps::new();
    let (epoch, first, cleanup) = apply_policy(&mut fake, &c, &node, 7);
    assert_eq!(epoch, 8);
    assert!(first > 0);
    assert_eq!(cleanup, 0, "nothing was live: nothing to clean up");
    let again = compile(&c, &node, &live_of(&fake), epoch);
    assert_eq!(again.maps, fake.maps.iter().map(|(m, e)| (*m, e.clone())).collect(), "same input, same entries");
    assert_eq!(again.switch_epoch, None);
    assert_eq!(apply(&mut fake, &again), 0, "re-apply writes nothing");

    // z/c changes its pod label to b: only entries about z/c change.
    let mut c2 = c.clone();
    let zc = c2.pods.iter_mut().find(|p| p.meta.namespace == "z" && p.meta.name == "c").expect("z/c");
    zc.meta.labels.insert("pod".into(), "b".into());
    let next = compile(&c2, &node, &live_of(&fake), epoch);
    // z/c alone carried its identity number, so the number follows it and
    // only allow entries change: x's pods now admit it (peer pod=b) on tcp/80.
    assert_eq!(next.maps[&MapId::Identities], fake.entries(MapId::Identities), "no address changes identity");
    assert_eq!(next.maps[&MapId::LocalEndpoints], fake.entries(MapId::LocalEndpoints), "endpoints unchanged");
    let (epoch2, writes, cleanup) = apply_policy(&mut fake, &c2, &node, epoch);
    assert_eq!((epoch2, writes, cleanup), (epoch + 1, 3, 0), "one allow entry for each of x/a, x/b, x/c");
    let zc = xyz_ip("z", "c");
    assert_eq!(evaluate(&fake.maps, epoch, &flow(zc, xyz_ip("x", "a"), TCP, 80)), Verdict::DenyIngress { endpoint: 1 });
    assert_eq!(evaluate(&fake.maps, epoch2, &flow(zc, xyz_ip("x", "a"), TCP, 80)), Verdict::Allow);
    assert_eq!(apply_policy(&mut fake, &c2, &node, epoch2), (epoch2, 0, 0), "settled");
    // And back: the allow entries are first marked "old policy only", then deleted.
    assert_eq!(apply_policy(&mut fake, &c, &node, epoch2), (epoch2 + 1, 3, 3));
}

#[test]
fn identity_numbers_are_not_reused_while_live() {
    // The class of the "a" pods disappears and a new class appears in the same
    // compile: a number still live is never given to other addresses.
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("x", "in", sel(&[]))
            .ingress(rule(vec![pods_peer(Some(sel(&[("pod", "a")])), Some(sel(&[])))], vec![]))
            .build(),
    );
    c.pods.push(pod("y", "d", &[("pod", "d")], "198.18.0.20", NODE, vec![]));
    let node = node_for(&c);
    let mut fake = FakeMaps::new();
    let (epoch, _, _) = apply_policy(&mut fake, &c, &node, 0);
    let ident = |f: &FakeMaps| -> BTreeMap<Vec<u8>, u32> {
        f.entries(MapId::Identities)
            .iter()
            .map(|(k, v)| (k.clone(), IdentValue::from_bytes(v).expect("v").at(epoch + 1)))
            .collect()
    };
    let before = ident(&fake);
    let mut c2 = c.clone();
    for p in c2.pods.iter_mut().filter(|p| p.meta.name == "a") {
        p.meta.labels.insert("pod".into(), "new".into());
    }
    c2.pods.retain(|p| p.meta.name != "d");
    c2.policies[0].ingress[0].peers = vec![pods_peer(Some(sel(&[("pod", "new")])), Some(sel(&[])))];
    apply_policy(&mut fake, &c2, &node, epoch);
    let after = ident(&fake);
    let old_ids: BTreeSet<u32> = before.values().copied().collect();
    for (k, nv) in &after {
        let ov = before.get(k).copied();
        assert!(
            ov == Some(*nv) || !old_ids.contains(nv),
            "address {k:?} moved from {ov:?} to another address's number {nv}"
        );
    }
}

#[test]
fn host_network_pods_ipv6_and_duplicate_ips() {
    let mut c = xyz_cluster();
    // A hostNetwork pod carries the node's address: it is the node, never an endpoint.
    let mut hn = pod("x", "hostnet", &[("pod", "a")], "198.19.0.1", NODE, vec![]);
    hn.host_network = true;
    c.pods.push(hn);
    // A dual-stack pod that gets isolated: a warning says its IPv6 is not policed.
    let mut ds = pod("x", "dual", &[("pod", "a")], "198.18.0.50", NODE, vec![]);
    ds.ips.push("2001:db8::50".parse().expect("ip"));
    c.pods.push(ds);
    // A pod reusing another pod's address: the first one keeps it, with a warning.
    c.pods.push(pod("y", "dup", &[("pod", "zzz")], "198.18.0.1", NODE, vec![]));
    c.policies.push(Pol::new("x", "deny", sel(&[("pod", "a")])).build());
    let host = "198.19.0.1".parse::<Ipv4Addr>().expect("ip");
    let node =
        PolicyNode { node_name: Some(NODE.into()), host_ips: BTreeSet::from([IpAddr::V4(host)]), ..Default::default() };
    let out = compile(&c, &node, &BTreeMap::new(), 0);
    let mut eps: Vec<&String> = out.endpoints.values().collect();
    eps.sort();
    assert_eq!(eps, vec!["x/a", "x/dual"], "the hostNetwork pod is not an endpoint");
    let msgs: Vec<String> = out.warnings.iter().map(ToString::to_string).collect();
    assert!(msgs.iter().any(|m| m.contains("Pod x/dual") && m.contains("IPv6")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("Pod y/dup") && m.contains("198.18.0.1")), "{msgs:?}");
    assert_eq!(edgeplane::compile_policy::sim::identity_of(&out.maps, 1, host), edgeplane::maps::layout::IDENT_HOST);
    // The duplicate does not take x/a's place: y/dup's label does not make
    // x/a's address match a selector for pod=zzz.
    let mut c2 = c.clone();
    c2.policies.push(
        Pol::new("x", "from-zzz", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(Some(sel(&[("pod", "zzz")])), Some(sel(&[])))], vec![]))
            .build(),
    );
    let (maps, epoch) = fresh(&c2, &node);
    let f = flow(xyz_ip("x", "a"), "198.18.0.50".parse().expect("ip"), TCP, 80);
    assert_ne!(evaluate(&maps, epoch, &f), Verdict::Allow);
}

#[test]
fn endpoint_names_come_from_the_live_map() {
    let mut c = xyz_cluster();
    c.policies.push(Pol::new("y", "in", sel(&[("pod", "c")])).build());
    let out = compiled(&c);
    let names = edgeplane::compile_policy::endpoint_names(&c, &out.maps[&MapId::LocalEndpoints]);
    assert_eq!(names, out.endpoints);
    assert_eq!(names.values().collect::<Vec<_>>(), vec!["y/c"]);
}

#[test]
fn lep_values_carry_isolation_flags() {
    let mut c = xyz_cluster();
    c.policies.push(Pol::new("x", "in", sel(&[("pod", "a")])).build());
    c.policies.push(Pol::new("x", "eg", sel(&[("pod", "b")])).egress_only().build());
    let out = compiled(&c);
    let flags: BTreeMap<String, u16> = out.maps[&MapId::LocalEndpoints]
        .values()
        .map(|v| LepValue::from_bytes(v).expect("lep"))
        .map(|v| (out.endpoints[&v.endpoint_id].clone(), v.flags))
        .collect();
    assert_eq!(flags, BTreeMap::from([("x/a".to_string(), 1), ("x/b".to_string(), 2)]));
}

#[test]
fn policies_written_as_yaml_load_to_the_same_model() {
    // The e2e tests hand the loader YAML rendered from these builders: the
    // loaded cluster must mean what the builders say.
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("x", "many", expr("pod", SelectorOp::NotIn, &["c"]))
            .ingress(rule(
                vec![
                    pods_peer(Some(sel(&[("pod", "b")])), Some(sel(&[("ns", "y")]))),
                    pods_peer(None, Some(expr("ns", SelectorOp::Exists, &[]))),
                    ipblock("198.18.0.0/29", &["198.18.0.2/32"]),
                ],
                vec![tcp(80), range(Protocol::Udp, 81, 90), named(Protocol::Tcp, "serve-81-tcp")],
            ))
            .egress(rule(
                vec![],
                vec![edgeplane::model::PolicyPort { protocol: Protocol::Sctp, port: None, end_port: None }],
            ))
            .build(),
    );
    c.policies.push(Pol::new("y", "deny-egress", sel(&[])).egress_only().build());
    let dir = std::env::temp_dir().join(format!("ep-policy-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("all.yaml"), yaml::cluster(&c)).expect("write");
    let loaded = edgeplane::model::load_dirs(std::slice::from_ref(&dir), &Default::default()).expect("load");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let strip = |mut c: Cluster| {
        for p in c.pods.iter_mut() {
            p.meta.origin = Default::default();
        }
        for p in c.policies.iter_mut() {
            p.meta.origin = Default::default();
        }
        for n in c.namespaces.iter_mut() {
            n.origin = Default::default();
        }
        (c.namespaces, c.pods, c.policies)
    };
    assert_eq!(strip(loaded.cluster), strip(c));
}

// ---- generated clusters: compiled maps == semantics ----------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

const VALUES: [&str; 3] = ["a", "b", "c"];
const CIDRS: [&str; 8] = [
    "198.18.0.0/24",
    "198.18.0.0/29",
    "198.18.0.4/30",
    "198.18.0.5/32",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "0.0.0.0/0",
    "198.18.0.8/29",
];

fn gen_selector(r: &mut Rng, keys: &[&str]) -> edgeplane::model::LabelSelector {
    let mut s = sel(&[]);
    for _ in 0..r.below(3) {
        let key = *r.pick(keys);
        if r.chance(50) {
            s.match_labels.insert(key.into(), r.pick(&VALUES).to_string());
        } else {
            let op = *r.pick(&[SelectorOp::In, SelectorOp::NotIn, SelectorOp::Exists, SelectorOp::DoesNotExist]);
            let values = match op {
                SelectorOp::In | SelectorOp::NotIn => vec![r.pick(&VALUES).to_string(), r.pick(&VALUES).to_string()],
                _ => vec![],
            };
            s.match_expressions.push(edgeplane::model::SelectorRequirement { key: key.into(), op, values });
        }
    }
    s
}

fn gen_cidr(r: &mut Rng) -> edgeplane::model::PolicyPeer {
    let cidr = *r.pick(&CIDRS);
    let n = net(cidr);
    // An except must lie inside the cidr.
    let excepts: Vec<&str> = CIDRS
        .iter()
        .copied()
        .filter(|e| {
            let e = net(e);
            e.prefix > n.prefix && {
                let (IpAddr::V4(a), IpAddr::V4(b)) = (e.addr, n.addr) else { return false };
                let m = if n.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(n.prefix)) };
                u32::from(a) & m == u32::from(b) & m
            }
        })
        .collect();
    let except: Vec<&str> = excepts.into_iter().filter(|_| r.chance(50)).collect();
    ipblock(cidr, &except)
}

fn gen_rule(r: &mut Rng) -> edgeplane::model::PolicyRule {
    let mut peers = vec![];
    if r.chance(80) {
        for _ in 0..1 + r.below(2) {
            peers.push(match r.below(4) {
                0 => pods_peer(Some(gen_selector(r, &["pod", "app"])), None),
                1 => pods_peer(None, Some(gen_selector(r, &["ns", "kubernetes.io/metadata.name", "team"]))),
                2 => pods_peer(Some(gen_selector(r, &["pod", "app"])), Some(gen_selector(r, &["ns", "team"]))),
                _ => gen_cidr(r),
            });
        }
    }
    let mut ports = vec![];
    if r.chance(70) {
        for _ in 0..1 + r.below(2) {
            let proto = *r.pick(&[Protocol::Tcp, Protocol::Udp, Protocol::Sctp]);
            ports.push(match r.below(4) {
                0 => edgeplane::model::PolicyPort { protocol: proto, port: None, end_port: None },
                1 => edgeplane::model::PolicyPort { protocol: proto, ..tcp(*r.pick(&[80, 81, 1000])) },
                2 => range(proto, *r.pick(&[80, 81, 900]), *r.pick(&[81, 1000, 5000])).max_fix(),
                _ => {
                    let name: &&str = r.pick(&["http", "dns", "metrics"]);
                    named(proto, name)
                }
            });
        }
    }
    rule(peers, ports)
}

trait MaxFix {
    fn max_fix(self) -> Self;
}
impl MaxFix for edgeplane::model::PolicyPort {
    /// Validation guarantees endPort >= port.
    fn max_fix(mut self) -> Self {
        if let (Some(edgeplane::model::PortRef::Number(p)), Some(e)) = (&self.port, self.end_port)
            && e < *p
        {
            self.end_port = Some(*p);
        }
        self
    }
}

fn gen_cluster(seed: u64) -> (Cluster, PolicyNode) {
    let mut r = Rng(seed | 1);
    let mut c = Cluster::default();
    let nss = ["x", "y", "z"];
    for ns in nss {
        let mut extra = vec![("ns", ns)];
        if r.chance(50) {
            extra.push(("team", *r.pick(&VALUES)));
        }
        c.namespaces.push(namespace(ns, &extra));
    }
    let mut local_ips = BTreeSet::new();
    for i in 0..12u8 {
        let ns = *r.pick(&nss);
        let mut l = vec![("pod", *r.pick(&VALUES))];
        if r.chance(50) {
            l.push(("app", *r.pick(&VALUES)));
        }
        if r.chance(30) {
            l.push(("uid", ["u1", "u2", "u3", "u4"][usize::from(i % 4)]));
        }
        let mut ports = vec![];
        for (name, num, proto) in [
            ("http", 80, Protocol::Tcp),
            ("http", 81, Protocol::Tcp),
            ("dns", 81, Protocol::Udp),
            ("metrics", 1000, Protocol::Sctp),
        ] {
            if r.chance(30) && !ports.iter().any(|p: &edgeplane::model::ContainerPort| p.name.as_deref() == Some(name))
            {
                ports.push(port(Some(name), num, proto));
            }
        }
        let node = if r.chance(70) { NODE } else { "node-2" };
        let ip = format!("198.18.0.{}", i + 1);
        let mut p = pod(ns, &format!("p{i}"), &l, &ip, node, ports);
        if r.chance(10) {
            p.node_name = None;
            local_ips.insert(p.ips[0]);
        }
        c.pods.push(p);
    }
    for i in 0..1 + r.below(4) {
        let ns = *r.pick(&nss);
        let mut p = Pol::new(ns, &format!("np{i}"), gen_selector(&mut r, &["pod", "app"]));
        for _ in 0..r.below(3) {
            p = p.ingress(gen_rule(&mut r));
        }
        let mut egress = vec![];
        for _ in 0..r.below(3) {
            egress.push(gen_rule(&mut r));
        }
        let (ing, eg) = match r.below(4) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, !egress.is_empty() || r.chance(30)),
        };
        p.p.egress = egress;
        c.policies.push(p.types(ing, eg).build());
    }
    let node = PolicyNode {
        node_name: Some(NODE.into()),
        local_pod_ips: local_ips,
        host_ips: BTreeSet::from([IpAddr::V4("198.19.0.1".parse().expect("ip"))]),
    };
    (c, node)
}

fn check_cluster(c: &Cluster, node: &PolicyNode, maps: &BTreeMap<MapId, Entries>, epoch: u32) -> Result<(), String> {
    let oracle = Oracle::new(c, node);
    let mut addrs: Vec<Ipv4Addr> = c
        .pods
        .iter()
        .filter_map(|p| match p.ips[0] {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .collect();
    addrs.extend(
        ["198.19.0.1", "198.18.0.200", "10.1.2.3", "10.2.0.1", "192.0.2.1"]
            .iter()
            .map(|s| s.parse::<Ipv4Addr>().expect("ip")),
    );
    for &s in &addrs {
        for &d in &addrs {
            for proto in [TCP, UDP, 132, 1] {
                for port in [Some(80), Some(81), Some(900), Some(1000), Some(4000), None] {
                    let f = Flow { saddr: s, daddr: d, proto, dport: if proto == 1 { None } else { port } };
                    let want = oracle.allows(&f);
                    let got = evaluate(maps, epoch, &f) == Verdict::Allow;
                    if want != got {
                        return Err(format!(
                            "{s} -> {d} proto {proto} port {port:?}: semantics say {want}, maps say {got}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 100, ..Default::default() })]

    #[test]
    fn compiled_maps_agree_with_semantics(seed in proptest::prelude::any::<u64>()) {
        let (c, node) = gen_cluster(seed);
        let (maps, epoch) = fresh(&c, &node);
        if let Err(e) = check_cluster(&c, &node, &maps, epoch) {
            return Err(proptest::test_runner::TestCaseError::fail(format!("{e}\npolicies: {:#?}", c.policies)));
        }
    }

    #[test]
    fn recompiling_over_live_state_converges(seed in proptest::prelude::any::<u64>(), seed2 in proptest::prelude::any::<u64>()) {
        // A -> B through the whole protocol: the maps enforce B, are settled
        // (re-applying B writes nothing), and going back to A works too.
        let (a, node) = gen_cluster(seed);
        let (b, _) = gen_cluster(seed2);
        let mut fake = FakeMaps::new();
        let (e1, _, _) = apply_policy(&mut fake, &a, &node, u32::MAX - 1); // crosses the wrap
        let (e2, _, _) = apply_policy(&mut fake, &b, &node, e1);
        if let Err(e) = check_cluster(&b, &node, &fake.maps, e2) {
            return Err(proptest::test_runner::TestCaseError::fail(e));
        }
        proptest::prop_assert_eq!(apply_policy(&mut fake, &b, &node, e2), (e2, 0, 0));
        let (e3, _, _) = apply_policy(&mut fake, &a, &node, e2);
        if let Err(e) = check_cluster(&a, &node, &fake.maps, e3) {
            return Err(proptest::test_runner::TestCaseError::fail(e));
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, ..Default::default() })]

    /// Make-before-break: after every single write of the plan A -> B, a flow
    /// both A and B allow is allowed and a flow both deny is denied.
    #[test]
    fn every_intermediate_state_respects_old_and_new(seed in proptest::prelude::any::<u64>(), seed2 in proptest::prelude::any::<u64>()) {
        let (a, node) = gen_cluster(seed);
        let (mut b, _) = gen_cluster(seed2);
        // Same pods with some relabelled, so identities move, merge and split.
        b.pods = a.pods.clone();
        let mut r = Rng(seed2 | 1);
        for p in b.pods.iter_mut() {
            if r.chance(30) {
                p.meta.labels.insert("pod".into(), r.pick(&VALUES).to_string());
            }
        }
        b.namespaces = a.namespaces.clone();
        let mut fake = FakeMaps::new();
        let (epoch, _, _) = apply_policy(&mut fake, &a, &node, 3);
        let out_b = compile(&b, &node, &live_of(&fake), epoch);
        let plan = edgeplane::plan::plan(&out_b.maps, &live_of(&fake));
        let (oa, ob) = (Oracle::new(&a, &node), Oracle::new(&b, &node));
        let addrs: Vec<Ipv4Addr> = a.pods.iter().filter_map(|p| match p.ips[0] { IpAddr::V4(x) => Some(x), IpAddr::V6(_) => None })
            .chain(["198.19.0.1", "10.1.2.3", "192.0.2.1"].iter().map(|s| s.parse().expect("ip"))).collect();
        let mut flows = vec![];
        for &s in &addrs {
            for &d in &addrs {
                for (proto, port) in [(TCP, Some(80)), (TCP, Some(1000)), (UDP, Some(81)), (132, None)] {
                    let f = Flow { saddr: s, daddr: d, proto, dport: port };
                    flows.push((f, oa.allows(&f), ob.allows(&f)));
                }
            }
        }
        // Each write of the first plan, at the old epoch: exactly A.
        for (i, step) in plan.steps.iter().enumerate() {
            let one = edgeplane::plan::Plan { steps: vec![step.clone()] };
            edgeplane::apply::apply(&one, &mut fake).expect("apply step");
            for (f, want_a, _) in &flows {
                let got = evaluate(&fake.maps, epoch, f) == Verdict::Allow;
                proptest::prop_assert_eq!(got, *want_a, "after step {} ({}) of {}: {:?}", i, step, plan.steps.len(), f);
            }
        }
        // The epoch switch: exactly B, and so after each cleanup write.
        let epoch = out_b.switch_epoch.unwrap_or(epoch);
        let cleanup = compile(&b, &node, &live_of(&fake), epoch);
        let plan = edgeplane::plan::plan(&cleanup.maps, &live_of(&fake));
        proptest::prop_assert!(plan.steps.iter().all(|s| matches!(s, edgeplane::plan::Step::Delete { .. })), "cleanup only deletes");
        for f in flows.iter().map(|(f, _, b)| (f, b)) {
            proptest::prop_assert_eq!(evaluate(&fake.maps, epoch, f.0) == Verdict::Allow, *f.1, "after the switch: {:?}", f.0);
        }
        for (i, step) in plan.steps.iter().enumerate() {
            let one = edgeplane::plan::Plan { steps: vec![step.clone()] };
            edgeplane::apply::apply(&one, &mut fake).expect("apply step");
            for (f, _, want_b) in &flows {
                let got = evaluate(&fake.maps, epoch, f) == Verdict::Allow;
                proptest::prop_assert_eq!(got, *want_b, "after cleanup step {} ({}): {:?}", i, step, f);
            }
        }
    }
}
