//! The loader against the real kernel (root only), through the Rust API and
//! the binary: pinned maps are reused across opens and an incompatible one
//! is refused by name; reopening replaces programs in place (same links);
//! new interfaces are attached after a netlink notification. (The clsact
//! fallback is in e2e_clsact.rs: it needs a process-wide switch.)

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use common::*;
use edgeplane::datapath::{Capacities, Datapath, DatapathSettings, LinkEvents, TcMode, read_status};
use edgeplane::maps::layout::{Backend, SCOPE_CLUSTER, SvcKey, SvcValue, backend_id_key};
use edgeplane::maps::{MapBackend, MapId};

fn small() -> Capacities {
    Capacities { services: 1024, backends: 1024, conntrack: 8192, affinity: 1024, sknat: 1024, ..Capacities::default() }
}

fn settings(state: &StateDir, globs: &[&str]) -> DatapathSettings {
    DatapathSettings {
        state_dir: state.path.clone(),
        workload_interfaces: globs.iter().map(|s| s.to_string()).collect(),
        host_interfaces: vec![],
        cgroup: None,
        capacities: small(),
        hairpin_addr: Ipv4Addr::new(169, 254, 42, 1),
    }
}

#[test]
fn reopen_reuses_maps_replaces_programs_and_refuses_incompatible_maps() {
    need_root!();
    let node = NetNs::new("dn");
    let other = NetNs::new("do");
    let tag = unique();
    let ifname = format!("dp{tag}");
    node.veth(&ifname, &other, "eth0");
    let state = StateDir::new(&node);
    let s = settings(&state, &["dp*"]);
    let s2 = s.clone();
    node.within(move || {
        let mut dp = Datapath::open(&s2).expect("first open");
        assert_eq!(dp.attached().len(), 1, "one matching interface");
        let key = SvcKey::new(Ipv4Addr::new(198, 19, 0, 10), 80, 6, SCOPE_CLUSTER, 0).to_bytes();
        let val = SvcValue { count: 0, svc_id: 1, ..SvcValue::default() }.to_bytes();
        dp.update(MapId::Services, &key, &val).expect("write a service");
        dp.update(
            MapId::Backends,
            &backend_id_key(7),
            &Backend::new(Ipv4Addr::new(198, 18, 1, 10), 8080, 6).to_bytes(),
        )
        .expect("write a backend");
        let err = dp.delete(MapId::Backends, &backend_id_key(99)).expect_err("deleting a missing key fails");
        assert!(err.to_string().contains("ENOENT") && err.to_string().contains("backend#99"), "{err}");
    });
    let before = read_status(&state.path).expect("status");
    let prog_before = before.links.iter().find(|l| l.kind == "tcx").and_then(|l| l.prog_id).expect("tcx link");

    // A second process-equivalent open: same maps (the entry survives), same link, new program.
    let s3 = s.clone();
    node.within(move || {
        let dp = Datapath::open(&s3).expect("reopen");
        let svc = dp.dump(MapId::Services).expect("dump");
        assert_eq!(svc.len(), 1, "pinned service map reused, not recreated");
    });
    let after = read_status(&state.path).expect("status");
    let tcx: Vec<_> = after.links.iter().filter(|l| l.kind == "tcx").collect();
    assert_eq!(tcx.len(), 1);
    assert!(tcx[0].attached);
    assert_ne!(tcx[0].prog_id, Some(prog_before), "the program was replaced in place");
    let svc_map = after.maps.iter().find(|m| m.name == "ep_svc_v1").expect("ep_svc_v1 listed");
    assert_eq!((svc_map.entries, svc_map.capacity), (Some(1), 1024));

    // Another conntrack size: refused, naming the map and the difference.
    let mut bigger = s.clone();
    bigger.capacities.conntrack = 16384;
    let err = node.within(move || Datapath::open(&bigger).map(|_| ()).expect_err("incompatible map refused"));
    let msg = format!("{err:#}");
    assert!(msg.contains("ep_ct4_v2") && msg.contains("max_entries 8192 pinned, 16384 configured"), "{msg}");
}

#[test]
fn new_interfaces_are_attached_after_a_link_notification() {
    need_root!();
    let node = NetNs::new("ln");
    let peer = NetNs::new("lp");
    let state = StateDir::new(&node);
    let s = settings(&state, &["nv*"]);
    let tag = unique();
    let (node_path, peer_name) = (node.path(), peer.name.clone());
    let name = format!("nv{tag}");
    let attached = node.within(move || {
        let mut events = LinkEvents::new().expect("netlink socket");
        let mut dp = Datapath::open(&s).expect("open");
        assert!(dp.attached().is_empty());
        let out = Command::new("ip")
            .args(["link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &peer_name])
            .output()
            .expect("ip link add");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut seen = false;
        for _ in 0..50 {
            if events.wait(Duration::from_millis(100)) {
                seen = true;
                break;
            }
        }
        assert!(seen, "a link notification arrives for the new veth");
        let newly = dp.sync_interfaces().expect("sync");
        let _ = node_path;
        (newly, dp.attached())
    });
    assert_eq!(attached.0, vec![format!("nv{tag}")]);
    assert_eq!(attached.1[0].1, TcMode::Tcx);
    // The veth goes away: the next sync unpins its link.
    node.ip(&["link", "del", &format!("nv{tag}")]);
    let s = settings(&state, &["nv*"]);
    node.within(move || {
        let mut dp = Datapath::open(&s).expect("open");
        dp.sync_interfaces().expect("sync");
        assert!(dp.attached().is_empty());
    });
    let st = read_status(&state.path).expect("status");
    assert!(st.links.iter().all(|l| l.kind != "tcx"), "stale link unpinned: {:?}", st.links);
}
