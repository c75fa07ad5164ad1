//! Benchmark (not a timed test; ignored by default):
//!   cargo test --release --test policy_bench -- --ignored --nocapture
//! 10,000 pods in 100 namespaces and 1,000 policies; compile and apply into
//! real (unpinned) kernel maps through the plan engine, then an unchanged
//! re-apply and a one-pod change. Needs root for the kernel part.

#[path = "policy_common/model.rs"]
mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use edgeplane::compile_policy::{PolicyNode, compile};
use edgeplane::datapath::{self, Capacities, PinnedMaps, object_map};
use edgeplane::maps::fake::FakeMaps;
use edgeplane::maps::{Entries, MapBackend, MapId};
use edgeplane::model::{Cluster, Protocol, SelectorOp};
use model::*;

const POLICY_MAPS: [MapId; 3] = [MapId::PolicyAllow, MapId::Identities, MapId::LocalEndpoints];

/// 100 namespaces x 100 pods (10 apps x 10 replicas, each pod with a unique
/// `statefulset.kubernetes.io/pod-name` label), `local_namespaces` of them on
/// this node; 10 policies per namespace.
fn generate(local_namespaces: usize) -> Cluster {
    let mut c = Cluster::default();
    for n in 0..100usize {
        let ns = format!("ns-{n}");
        c.namespaces.push(namespace(
            &ns,
            &[("team", &format!("t{}", n % 10)), ("env", if n % 2 == 0 { "prod" } else { "dev" })],
        ));
        for p in 0..100usize {
            let app = format!("a{}", p % 10);
            let name = format!("{app}-{p}");
            let ip = format!("10.{}.{}.{}", n / 100 + 1, n % 100, p + 1);
            let node = if n < local_namespaces { NODE } else { "other" };
            let ports = vec![
                port(Some("http"), 8080 + (p % 2) as u16, Protocol::Tcp),
                port(Some("metrics"), 9090, Protocol::Tcp),
            ];
            let mut pod = pod(&ns, &name, &[("app", &app), ("pod-template-hash", "5d8f7")], &ip, node, ports);
            pod.meta.labels.insert("statefulset.kubernetes.io/pod-name".into(), name.clone());
            c.pods.push(pod);
        }
        let mut pols = vec![
            Pol::new(&ns, "default-deny", sel(&[])).types(true, true).build(),
            Pol::new(&ns, "same-ns", sel(&[("app", "a0")]))
                .ingress(rule(vec![pods_peer(Some(sel(&[])), None)], vec![]))
                .build(),
            Pol::new(&ns, "from-team", sel(&[("app", "a1")]))
                .ingress(rule(
                    vec![pods_peer(Some(sel(&[("app", "a0")])), Some(sel(&[("team", &format!("t{}", (n + 1) % 10))])))],
                    vec![tcp(80)],
                ))
                .build(),
            Pol::new(&ns, "named", sel(&[("app", "a2")]))
                .ingress(rule(vec![pods_peer(Some(sel(&[("app", "a1")])), None)], vec![named(Protocol::Tcp, "http")]))
                .build(),
            Pol::new(&ns, "cidr", sel(&[("app", "a3")]))
                .ingress(rule(vec![ipblock("10.0.0.0/8", &[&format!("10.1.{}.0/24", n % 100)])], vec![tcp(443)]))
                .build(),
            Pol::new(&ns, "range", sel(&[("app", "a4")]))
                .ingress(rule(vec![], vec![range(Protocol::Udp, 30000, 32767)]))
                .build(),
            Pol::new(&ns, "dns", sel(&[]))
                .egress_only()
                .egress(rule(
                    vec![pods_peer(Some(sel(&[("app", "a9")])), Some(sel(&[("kubernetes.io/metadata.name", "ns-0")])))],
                    vec![udp(53), tcp(53)],
                ))
                .build(),
            Pol::new(&ns, "egress-prod", sel(&[("app", "a5")]))
                .egress_only()
                .egress(rule(vec![pods_peer(None, Some(sel(&[("env", "prod")])))], vec![named(Protocol::Tcp, "http")]))
                .build(),
            Pol::new(&ns, "expr", expr("app", SelectorOp::In, &["a6", "a7"]))
                .ingress(rule(
                    vec![pods_peer(Some(expr("app", SelectorOp::NotIn, &["a8"])), Some(sel(&[])))],
                    vec![tcp(8443)],
                ))
                .build(),
            Pol::new(&ns, "metrics", sel(&[]))
                .ingress(rule(vec![ipblock("10.255.0.0/16", &[])], vec![named(Protocol::Tcp, "metrics")]))
                .build(),
        ];
        c.policies.append(&mut pols);
    }
    c
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn live(b: &dyn MapBackend) -> BTreeMap<MapId, Entries> {
    edgeplane::plan::dump_live(b, POLICY_MAPS).expect("dump")
}

/// compile + plan + apply + epoch switch + cleanup, timed.
fn pass(b: &mut dyn MapBackend, c: &Cluster, node: &PolicyNode, epoch: &mut u32) -> String {
    let t0 = Instant::now();
    let l = live(b);
    let t_dump = ms(t0);
    let t1 = Instant::now();
    let out = compile(c, node, &l, *epoch);
    let t_compile = ms(t1);
    let t2 = Instant::now();
    let plan = edgeplane::plan::plan(&out.maps, &l);
    let writes = edgeplane::apply::apply(&plan, b).expect("apply");
    let t_apply = ms(t2);
    *epoch = out.switch_epoch.unwrap_or(*epoch);
    let t3 = Instant::now();
    let l = live(b);
    let cleanup = compile(c, node, &l, *epoch);
    let plan = edgeplane::plan::plan(&cleanup.maps, &l);
    let cleaned = edgeplane::apply::apply(&plan, b).expect("cleanup");
    let t_cleanup = ms(t3);
    let sizes: Vec<String> = out.maps.iter().map(|(m, e)| format!("{m} {}", e.len())).collect();
    format!(
        "dump {t_dump:.0} ms, compile {t_compile:.0} ms, plan+apply {t_apply:.0} ms ({writes} writes), cleanup pass {t_cleanup:.0} ms ({cleaned} deletes); total {:.0} ms; entries: {}",
        ms(t0),
        sizes.join(", ")
    )
}

fn scenario(local_namespaces: usize, backend: &mut dyn MapBackend, what: &str) {
    let c = generate(local_namespaces);
    let node = PolicyNode {
        node_name: Some(NODE.into()),
        host_ips: BTreeSet::from([IpAddr::V4("192.0.2.1".parse().expect("ip"))]),
        ..Default::default()
    };
    let local = c.pods.iter().filter(|p| p.node_name.as_deref() == Some(NODE)).count();
    println!("== {what}: {} pods ({local} local), {} policies", c.pods.len(), c.policies.len());
    let mut epoch = 1;
    println!("first apply:      {}", pass(backend, &c, &node, &mut epoch));
    println!("unchanged:        {}", pass(backend, &c, &node, &mut epoch));
    let mut c2 = c.clone();
    c2.pods[3].meta.labels.insert("app".into(), "a1".into());
    println!("one pod relabel:  {}", pass(backend, &c2, &node, &mut epoch));
    let mut c3 = c2.clone();
    c3.policies[1].ingress[0].ports = vec![tcp(80)];
    println!("one policy edit:  {}", pass(backend, &c3, &node, &mut epoch));
}

#[test]
#[ignore = "benchmark: cargo test --release --test policy_bench -- --ignored --nocapture"]
fn bench_policy_compile_and_apply() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    for local in [1usize, 10] {
        if root {
            let obj = datapath::load_unpinned(&Capacities::default()).expect("tc object loads");
            let maps = POLICY_MAPS.iter().map(|m| (*m, object_map(&obj, m.pin_name()).expect("map"))).collect();
            scenario(local, &mut PinnedMaps::new(maps), "kernel maps");
        } else {
            println!("kernel part skipped: needs root");
        }
        scenario(local, &mut FakeMaps::new(), "in-memory maps (compile and plan cost only)");
    }
}
