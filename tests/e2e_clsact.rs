//! The clsact/cls_bpf fallback (used where TCX is missing) against the real
//! kernel (root only): forced with EDGEPLANE_FORCE_CLSACT=1, which is why
//! this test has a binary of its own; it attaches, forwards, and reset
//! removes the filter.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::*;
use edgeplane::datapath::{Capacities, Datapath, DatapathSettings, TcMode};
use edgeplane::maps::layout::{Backend, SCOPE_CLUSTER, SvcKey, SvcValue, backend_id_key};
use edgeplane::maps::{MapBackend, MapId};

#[test]
fn clsact_fallback_forwards_and_reset_removes_the_filter() {
    need_root!();
    let node = NetNs::new("fn");
    let client = NetNs::new("fc");
    let backend = NetNs::new("fb");
    let tag = unique();
    node.sysctl("net.ipv4.ip_forward", "1");
    let (cl, bl) = (format!("fa{tag}c"), format!("fa{tag}b"));
    node.veth(&cl, &client, "eth0");
    node.veth(&bl, &backend, "eth0");
    node.addr(&cl, "198.18.0.1/24");
    node.addr(&bl, "198.18.10.1/24");
    client.addr("eth0", "198.18.0.2/24");
    client.route(&["default", "via", "198.18.0.1"]);
    backend.addr("eth0", "198.18.10.2/24");
    backend.route(&["default", "via", "198.18.10.1"]);
    let _srv = EchoServer::start(&backend, "be", Ipv4Addr::UNSPECIFIED, Some(8080), None);
    let state = StateDir::new(&node);
    let s = DatapathSettings {
        state_dir: state.path.clone(),
        workload_interfaces: vec!["fa*".into()],
        host_interfaces: vec![],
        cgroup: None,
        capacities: Capacities {
            services: 1024,
            backends: 1024,
            conntrack: 8192,
            affinity: 1024,
            sknat: 1024,
            ..Capacities::default()
        },
        hairpin_addr: Ipv4Addr::new(169, 254, 42, 1),
    };
    // SAFETY: the only test of this binary, set before any thread reads the environment.
    unsafe { std::env::set_var("EDGEPLANE_FORCE_CLSACT", "1") };
    node.within(move || {
        let mut dp = Datapath::open(&s).expect("open with clsact fallback");
        assert!(dp.attached().iter().all(|(_, m)| *m == TcMode::Clsact), "{:?}", dp.attached());
        let vip = Ipv4Addr::new(198, 19, 0, 10);
        dp.update(
            MapId::Backends,
            &backend_id_key(1),
            &Backend::new(Ipv4Addr::new(198, 18, 10, 2), 8080, 6).to_bytes(),
        )
        .expect("backend");
        dp.update(
            MapId::Services,
            &SvcKey::new(vip, 80, 6, SCOPE_CLUSTER, 1).to_bytes(),
            &SvcValue { backend_id: 1, ..SvcValue::default() }.to_bytes(),
        )
        .expect("slot");
        dp.update(
            MapId::Services,
            &SvcKey::new(vip, 80, 6, SCOPE_CLUSTER, 0).to_bytes(),
            &SvcValue { count: 1, svc_id: 1, ..SvcValue::default() }.to_bytes(),
        )
        .expect("frontend");
    });
    let to = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 10), 80);
    let a = client.within(move || tcp_ask(to, Duration::from_secs(5))).expect("forwarded through cls_bpf");
    assert_eq!(a.server, "be");
    assert_eq!(a.client_peer, to.into());
    let filters =
        String::from_utf8_lossy(&node.run("tc", &["filter", "show", "dev", &cl, "ingress"]).stdout).to_string();
    assert!(filters.contains("ep_tc_ingress"), "cls_bpf filter present: {filters}");
    let path = state.path.clone();
    node.within(move || edgeplane::datapath::reset(&path)).expect("reset");
    let filters =
        String::from_utf8_lossy(&node.run("tc", &["filter", "show", "dev", &cl, "ingress"]).stdout).to_string();
    assert!(!filters.contains("ep_tc_ingress"), "reset removed our filter: {filters}");
    assert!(client.within(move || tcp_ask(to, Duration::from_secs(2))).is_err(), "no translation after reset");
}
