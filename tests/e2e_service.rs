//! End to end, real packets (root only): client pod netns -> node netns
//! (edgeplane, ip_forward=1) -> backend pod netnses, driven the way a user
//! does: Kubernetes YAML in a directory and the built binary
//! (`edgeplane apply --config-dir DIR --netns NODE --state-dir ...`).
//! Each scenario runs with veth TX checksum offload on (default) and off, so
//! the kernel's receive path verifies every checksum the program wrote.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use common::topo::*;
use common::*;

fn spread_and_reply_source(tx_offload: bool) {
    let t = Topo::new(3, tx_offload);
    let eps: Vec<Ep> = (0..3).map(|i| ready(backend_ip(i))).collect();
    t.apply(&[service_yaml("web", VIP, &eps, None)]);
    let mut tcp_servers = BTreeSet::new();
    for i in 0..60 {
        let a = t.ask("tcp", vip(80)).unwrap_or_else(|e| panic!("tcp ask {i}: {e}"));
        assert_eq!(a.client_peer, vip(80).into(), "the client only sees the ClusterIP");
        assert!(a.seen_peer.starts_with(&format!("{CLIENT_IP}:")), "backend sees the real client: {}", a.seen_peer);
        tcp_servers.insert(a.server);
    }
    // 60 uniform picks miss one of 3 backends with probability ~1e-10.
    assert_eq!(tcp_servers.len(), 3, "TCP spread over all backends: {tcp_servers:?}");
    let mut udp_servers = BTreeSet::new();
    for i in 0..60 {
        let a = t.ask("udp", vip(53)).unwrap_or_else(|e| panic!("udp ask {i}: {e}"));
        assert_eq!(a.client_peer, vip(53).into());
        udp_servers.insert(a.server);
        let u = t.ask("udp-unconnected", vip(53)).unwrap_or_else(|e| panic!("unconnected udp ask {i}: {e}"));
        assert_eq!(u.client_peer, vip(53).into(), "recvfrom sees the answer come from the ClusterIP");
    }
    assert_eq!(udp_servers.len(), 3, "UDP spread over all backends: {udp_servers:?}");
    // The kernel's receive path verified every checksum: no checksum errors anywhere.
    for ns in std::iter::once(&t.client).chain(t.backends.iter()) {
        let snmp = String::from_utf8_lossy(&ns.run("cat", &["/proc/net/snmp"]).stdout).to_string();
        assert_eq!(csum_errors(&snmp), 0, "checksum errors in {}: {snmp}", ns.name);
    }
}

/// Sum of TCP/UDP InCsumErrors in /proc/net/snmp.
fn csum_errors(snmp: &str) -> u64 {
    let lines: Vec<&str> = snmp.lines().collect();
    let mut total = 0;
    for pair in lines.chunks(2) {
        if let [h, v] = pair {
            let (hs, vs): (Vec<&str>, Vec<&str>) = (h.split_whitespace().collect(), v.split_whitespace().collect());
            if matches!(hs.first(), Some(&"Tcp:") | Some(&"Udp:") | Some(&"Icmp:")) {
                for (k, val) in hs.iter().zip(vs.iter()) {
                    if *k == "InCsumErrors" {
                        total += val.parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
    }
    total
}

#[test]
fn spread_and_clusterip_replies_offload_on() {
    need_root!();
    spread_and_reply_source(true);
}

#[test]
fn spread_and_clusterip_replies_offload_off() {
    need_root!();
    spread_and_reply_source(false);
}

fn no_endpoints_reject(tx_offload: bool) {
    let t = Topo::new(1, tx_offload);
    t.apply(&[service_yaml("empty", VIP_EMPTY, &[], None)]);
    let before = t.drops("no-endpoints");
    let e = t.ask("tcp", SocketAddrV4::new(VIP_EMPTY, 80)).expect_err("no endpoints: TCP must fail");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "TCP rejected at once (RST), not {e}");
    let e = t.ask("udp", SocketAddrV4::new(VIP_EMPTY, 53)).expect_err("no endpoints: UDP must fail");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "UDP rejected (ICMP port unreachable), not {e}");
    assert!(t.drops("no-endpoints") >= before + 2, "rejects are counted");
    // The last drops carry their tuple (`edgeplane drops`), and `status` prints the counters.
    let out = sh(t.edgeplane("drops").arg("--json"));
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).expect("drops --json");
    let hit = events.as_array().expect("array").iter().any(|e| {
        e["reason"] == "no-endpoints" && e["daddr"] == VIP_EMPTY.to_string() && e["saddr"] == CLIENT_IP.to_string()
    });
    assert!(hit, "a no-endpoints event for the client and the empty ClusterIP: {events}");
    let text = String::from_utf8_lossy(&sh(&mut t.edgeplane("status")).stdout).to_string();
    assert!(text.contains("no-endpoints") && text.contains("ep_ct4_v2") && text.contains("conntrack:"), "{text}");
    let snmp = String::from_utf8_lossy(&t.client.run("cat", &["/proc/net/snmp"]).stdout).to_string();
    assert_eq!(csum_errors(&snmp), 0, "reject packets carry valid checksums: {snmp}");
}

#[test]
fn no_endpoints_rejects_at_once_offload_on() {
    need_root!();
    no_endpoints_reject(true);
}

#[test]
fn no_endpoints_rejects_at_once_offload_off() {
    need_root!();
    no_endpoints_reject(false);
}

#[test]
fn endpoints_added_and_removed_under_traffic() {
    need_root!();
    let t = Topo::new(3, true);
    t.apply(&[service_yaml("web", VIP, &[ready(backend_ip(1))], None)]);
    // A connected UDP "flow" pinned to backend 1 before it leaves.
    let (udp_tx, udp_rx) = std::sync::mpsc::channel::<()>();
    let (ans_tx, ans_rx) = std::sync::mpsc::channel::<String>();
    let udp = t.client.spawn(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.connect(vip(53)).expect("connect");
        s.set_read_timeout(Some(T)).expect("timeout");
        let mut buf = [0u8; 256];
        while udp_rx.recv().is_ok() {
            s.send(b"q").expect("send");
            let n = s.recv(&mut buf).expect("udp answer");
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            ans_tx.send(text.split_whitespace().next().unwrap_or_default().to_string()).expect("report");
        }
    });
    udp_tx.send(()).expect("ask");
    assert_eq!(ans_rx.recv().expect("answer"), "be1");

    // Traffic runs while a second and third endpoint are added: no failure.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let load = t.client.spawn(move || {
        let (mut ok, mut fail, mut seen) = (0u32, Vec::new(), BTreeSet::new());
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) || ok < 50 {
            match tcp_ask(vip(80), T) {
                Ok(a) => {
                    ok += 1;
                    seen.insert(a.server);
                }
                Err(e) => fail.push(e.to_string()),
            }
        }
        (ok, fail, seen)
    });
    let three: Vec<Ep> = (0..3).map(|i| ready(backend_ip(i))).collect();
    t.apply(&[service_yaml("web", VIP, &three, None)]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_ok, fail, _) = load.join().expect("load thread");
    assert!(fail.is_empty(), "connections failed while endpoints were added: {fail:?}");
    let seen: BTreeSet<String> = (0..60).map(|_| t.ask("tcp", vip(80)).expect("tcp").server).collect();
    assert_eq!(seen.len(), 3, "new endpoints receive traffic: {seen:?}");

    // Backend 1 leaves: every new connection avoids it, and the UDP flow that
    // was pinned to it moves on instead of black-holing (no stale UDP conntrack).
    t.apply(&[service_yaml("web", VIP, &[ready(backend_ip(0)), ready(backend_ip(2))], None)]);
    for i in 0..40 {
        let a = t.ask("tcp", vip(80)).unwrap_or_else(|e| panic!("tcp ask {i} after removal: {e}"));
        assert_ne!(a.server, "be1", "removed endpoint still gets new connections");
    }
    udp_tx.send(()).expect("ask");
    let moved = ans_rx.recv().expect("answer after removal");
    assert_ne!(moved, "be1", "UDP flow stayed pinned to the removed endpoint");
    drop(udp_tx);
    udp.join().expect("udp thread");
}

#[test]
fn session_affinity_holds() {
    need_root!();
    let t = Topo::new(3, true);
    let eps: Vec<Ep> = (0..3).map(|i| ready(backend_ip(i))).collect();
    t.apply(&[service_yaml("sticky", VIP, &eps, Some(600))]);
    let servers: BTreeSet<String> =
        (0..30).map(|i| t.ask("tcp", vip(80)).unwrap_or_else(|e| panic!("ask {i}: {e}")).server).collect();
    assert_eq!(servers.len(), 1, "ClientIP affinity: one backend for one client, got {servers:?}");
}

#[test]
fn terminating_endpoints_are_used_only_without_ready_ones() {
    need_root!();
    let t = Topo::new(3, true);
    let term = Ep { ip: backend_ip(2), ready: false, serving: true, terminating: true };
    t.apply(&[service_yaml("web", VIP, &[term], None)]);
    for i in 0..10 {
        assert_eq!(
            t.ask("tcp", vip(80)).unwrap_or_else(|e| panic!("ask {i}: {e}")).server,
            "be2",
            "fallback to serving-terminating"
        );
    }
    t.apply(&[service_yaml("web", VIP, &[term, ready(backend_ip(1))], None)]);
    for i in 0..20 {
        assert_eq!(
            t.ask("tcp", vip(80)).unwrap_or_else(|e| panic!("ask {i}: {e}")).server,
            "be1",
            "ready endpoints win"
        );
    }
}

#[test]
fn hairpin_pod_reaches_itself_through_its_service() {
    need_root!();
    let t = Topo::new(1, true);
    t.apply(&[service_yaml("self", VIP_HAIRPIN, &[ready(CLIENT_IP)], None)]);
    for mode in ["tcp", "udp"] {
        let port = if mode == "tcp" { 80 } else { 53 };
        let a = t.ask(mode, SocketAddrV4::new(VIP_HAIRPIN, port)).unwrap_or_else(|e| panic!("hairpin {mode}: {e}"));
        assert_eq!(a.server, "client");
        assert_eq!(a.client_peer, SocketAddrV4::new(VIP_HAIRPIN, port).into());
        assert!(a.seen_peer.starts_with(&format!("{HAIRPIN}:")), "hairpin source seen by the pod: {}", a.seen_peer);
    }
}

harness_client_entry!();

#[test]
fn host_processes_use_the_cgroup_hooks() {
    need_root!();
    let t = Topo::new(2, true);
    let eps: Vec<Ep> = (0..2).map(|i| ready(backend_ip(i))).collect();
    t.apply(&[service_yaml("web", VIP, &eps, None), service_yaml("empty", VIP_EMPTY, &[], None)]);
    let entry = "harness_client_entry";
    let a = ask_from_cgroup(&t.node, &t.cgroup, entry, "tcp", vip(80)).expect("host TCP via connect4");
    assert!(a.server.starts_with("be"));
    assert_eq!(a.client_peer, vip(80).into(), "getpeername reports the ClusterIP");
    let u = ask_from_cgroup(&t.node, &t.cgroup, entry, "udp-unconnected", vip(53)).expect("host sendto/recvfrom");
    assert_eq!(u.client_peer, vip(53).into(), "recvfrom reports the ClusterIP as the source");
    let c = ask_from_cgroup(&t.node, &t.cgroup, entry, "udp", vip(53)).expect("host connected UDP");
    assert_eq!(c.client_peer, vip(53).into());
    let e =
        ask_from_cgroup(&t.node, &t.cgroup, entry, "tcp", SocketAddrV4::new(VIP_EMPTY, 80)).expect_err("no endpoints");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "connect() refused at once, not {e}");
    // A node process outside the cgroup is not translated: the VIP is not routable there.
    let outside = t.node.within(|| tcp_ask(vip(80), Duration::from_secs(2)));
    assert!(outside.is_err(), "only the cgroup's processes are translated");
}

#[test]
fn forwarding_survives_the_process_and_reset_detaches() {
    need_root!();
    let t = Topo::new(1, true);
    t.apply(&[service_yaml("web", VIP, &[ready(backend_ip(0))], None)]);
    // `apply` has exited: programs, links and maps stay pinned and forward.
    assert_eq!(t.ask("tcp", vip(80)).expect("after apply exited").server, "be0");
    let s = t.status();
    let links: Vec<&str> = s["links"].as_array().expect("links").iter().filter_map(|l| l["target"].as_str()).collect();
    assert!(links.iter().any(|l| l.starts_with("cl")), "workload link listed: {links:?}");
    assert!(links.iter().any(|l| l.starts_with("up")), "host link listed: {links:?}");
    // Re-applying (a new process) replaces programs in place and keeps forwarding.
    t.apply(&[service_yaml("web", VIP, &[ready(backend_ip(0))], None)]);
    assert_eq!(t.ask("tcp", vip(80)).expect("after re-apply").server, "be0");
    sh(&mut t.edgeplane("reset"));
    assert!(!Path::new(&t.state.path).exists(), "reset unpins everything");
    assert!(t.ask("tcp", vip(80)).is_err(), "after reset nothing translates");
}

/// Forwarded packets the node's netfilter FORWARD hook saw (a counter in the
/// node namespace, as an operator's firewall rule would see them).
fn forward_hook_packets(t: &Topo) -> u64 {
    let out = t.node.run("nft", &["list", "chain", "ip", "epfwd", "fwdcount"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {text}"))
}

/// Packets the node sent through the client pod's host-side veth (its TX
/// counter: counted by the veth's transmit, which bpf_redirect_peer skips).
fn client_veth_tx(t: &Topo) -> u64 {
    let dev = format!("cl{}c", t.tag);
    let out = t.node.run("ip", &["-s", "-j", "link", "show", "dev", &dev]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    v[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or_else(|| panic!("no tx packets in {v}"))
}

/// host-routing: bpf hands translated packets (requests and replies) to
/// their pod with BPF redirects: the node's FORWARD hook never sees them,
/// and replies enter the client pod through bpf_redirect_peer, past its host
/// veth's transmit. host-routing: kernel sends them through the IP stack.
fn host_routing_modes(tx_offload: bool) {
    let t = Topo::new(2, tx_offload);
    t.node.run("nft", &["add table ip epfwd"]);
    t.node.run("nft", &["add chain ip epfwd fwdcount { type filter hook forward priority 0; policy accept; }"]);
    t.node.run("nft", &["add rule ip epfwd fwdcount counter"]);
    let svc = service_yaml("web", VIP, &[ready(backend_ip(0)), ready(backend_ip(1))], None);
    t.apply(std::slice::from_ref(&svc));
    t.ask("tcp", vip(80)).expect("warm-up: neighbours resolved");
    let tx0 = client_veth_tx(&t);
    for mode in ["tcp", "udp", "tcp", "udp"] {
        let port = if mode == "tcp" { 80 } else { 53 };
        let a = t.ask(mode, vip(port)).unwrap_or_else(|e| panic!("{mode} through the VIP: {e}"));
        assert_eq!(a.client_peer, vip(port).into(), "the client sees the ClusterIP");
    }
    assert_eq!(forward_hook_packets(&t), 0, "bpf host routing: no translated packet took the forward path");
    let bpf_tx = client_veth_tx(&t) - tx0;

    // The same directory, the setting changed: existing flows switch too.
    sh(t.edgeplane("apply").args(["--host-routing", "kernel"]));
    let tx0 = client_veth_tx(&t);
    for mode in ["tcp", "udp", "tcp", "udp"] {
        let port = if mode == "tcp" { 80 } else { 53 };
        t.ask(mode, vip(port)).unwrap_or_else(|e| panic!("{mode} with kernel routing: {e}"));
    }
    assert!(forward_hook_packets(&t) > 0, "kernel host routing: the packets are forwarded by the stack");
    let kernel_tx = client_veth_tx(&t) - tx0;
    // The same exchanges: every reply crossed the host veth's transmit with
    // the kernel, none of them (only stray neighbour traffic) with bpf.
    eprintln!("client host veth TX for the same exchanges: bpf {bpf_tx}, kernel {kernel_tx} packets");
    assert!(bpf_tx < kernel_tx, "replies bypass the host veth with bpf ({bpf_tx} vs {kernel_tx} packets)");
}

#[test]
fn host_routing_bpf_skips_the_stack_and_kernel_takes_it() {
    need_root!();
    host_routing_modes(true);
    host_routing_modes(false);
}

/// socket-lb: a pod's process inside the hooked cgroup is translated at
/// connect() with `all` (the tc program then sees a plain flow to the
/// backend), by the tc program on its veth with `host-only`; with `off` the
/// node's own processes are not translated at all.
#[test]
fn socket_lb_scope_all_host_only_off() {
    need_root!();
    let t = Topo::new(1, true);
    t.apply(&[service_yaml("web", VIP, &[ready(backend_ip(0))], None)]);
    let pod_connect = |t: &Topo| {
        let a = ask_from_cgroup(&t.client, &t.cgroup, "harness_client_entry", "tcp", vip(80)).expect("pod process");
        assert_eq!((a.server.as_str(), a.client_peer), ("be0", vip(80).into()), "served, ClusterIP seen");
    };
    for (scope, by_socket) in [("all", true), ("host-only", false)] {
        sh(t.edgeplane("apply").args(["--socket-lb", scope]));
        let (sock0, lb0) = (t.stat("socket-connect-translated"), t.stat("lb-new-flows"));
        pod_connect(&t);
        let (sock, lb) = (t.stat("socket-connect-translated") - sock0, t.stat("lb-new-flows") - lb0);
        if by_socket {
            assert_eq!((sock, lb), (1, 0), "{scope}: translated at connect(), not per packet");
        } else {
            assert_eq!((sock, lb), (0, 1), "{scope}: left to the tc program");
        }
    }
    // host-only still serves the node's own processes.
    let a = ask_from_cgroup(&t.node, &t.cgroup, "harness_client_entry", "tcp", vip(80)).expect("host process");
    assert_eq!(a.server, "be0");
    sh(t.edgeplane("apply").args(["--socket-lb", "off"]));
    let sock0 = t.stat("socket-connect-translated");
    let r = ask_from_cgroup(&t.node, &t.cgroup, "harness_client_entry", "tcp", vip(80));
    assert!(r.is_err(), "off: a host process reaches no service: {r:?}");
    assert_eq!(t.stat("socket-connect-translated"), sock0, "off: nothing translated at the socket");
}

/// NetworkPolicy still holds for a pod's connection translated at the socket:
/// the tc program on the pod's veth sees the backend address and judges it.
#[test]
fn socket_translated_pod_flows_are_still_policed() {
    need_root!();
    let t = Topo::new(2, true);
    // Backend 1 sits behind a workload interface: a local pod, so its policy is enforced here.
    let be1 = backend_ip(1);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: be1, namespace: e2e, labels: {{app: be}}}}\nspec: {{containers: [{{name: c, image: i}}]}}\nstatus: {{podIP: {be1}, podIPs: [{{ip: {be1}}}]}}\n"
    );
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: closed, namespace: e2e}\nspec: {podSelector: {matchLabels: {app: be}}, policyTypes: [Ingress]}\n".to_string();
    let svc = service_yaml("web", VIP, &[ready(be1)], None);
    t.apply(&[svc.clone(), pod.clone()]);
    let open = ask_from_cgroup(&t.client, &t.cgroup, "harness_client_entry", "tcp", vip(80)).expect("no policy yet");
    assert_eq!(open.server, "be1");
    t.apply(&[svc, pod, deny]);
    let sock0 = t.stat("socket-connect-translated");
    let denied0 = t.drops("policy-denied-ingress");
    let r = ask_from_cgroup(&t.client, &t.cgroup, "harness_client_entry", "tcp", vip(80));
    assert!(r.is_err(), "the policy lets a socket-translated flow through: {r:?}");
    assert_eq!(t.stat("socket-connect-translated"), sock0 + 1, "translated at connect()");
    assert!(t.drops("policy-denied-ingress") > denied0, "denied by be1's ingress policy");
}
