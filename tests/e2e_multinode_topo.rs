//! The two-node NodePort topology itself, without edgeplane (root only):
//! the outside client reaches node addresses but not pod addresses, pods
//! reach each other across nodes, and the router's per-wire counters count.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::multinode::*;
use common::*;

const PORT: u16 = 8080;

#[test]
fn topology_routes_and_wire_counters() {
    need_root!();
    let t = MultiNode::new([1, 1], PORT, true);
    let node1: Ipv4Addr = NODE_IPS[0].parse().unwrap();
    let pod2 = t.pods[1][0].ip;
    let pod1 = t.pods[0][0].ip;

    let node_server = EchoServer::start(&t.nodes[0], "node1-host", node1, Some(PORT), None);
    let to_node = SocketAddrV4::new(node1, PORT);
    let a = t.client.within(move || tcp_ask(to_node, Duration::from_secs(2))).expect("client reaches node1");
    assert_eq!(a.server, "node1-host");
    assert!(a.seen_peer.starts_with(CLIENT_IP), "node1 saw {}", a.seen_peer);
    drop(node_server);

    let to_pod = SocketAddrV4::new(pod2, PORT);
    let unreachable = t.client.within(move || tcp_ask(to_pod, Duration::from_millis(500)));
    assert!(unreachable.is_err(), "client must not reach a pod directly: {unreachable:?}");

    t.watch_wire("pod2-replies", 2, &pod2.to_string(), PORT);
    t.watch_wire("pod2-on-node1-wire", 1, &pod2.to_string(), PORT);
    let a = t.pods[0][0].ns.within(move || tcp_ask(to_pod, Duration::from_secs(2))).expect("pod1 reaches pod2");
    assert_eq!(a.server, "node2-pod0");
    assert!(a.seen_peer.starts_with(&pod1.to_string()), "pod2 saw {}", a.seen_peer);
    assert!(t.wire_count("pod2-replies") > 0, "replies from pod2 cross node2's wire");
    assert_eq!(t.wire_count("pod2-on-node1-wire"), 0, "nothing from pod2 enters on node1's wire");
}
