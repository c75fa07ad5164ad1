//! NodePort / LoadBalancer end to end (root only) on the two-node topology
//! of tests/common/multinode.rs: an outside client one routed hop away talks
//! to node1's address; the same YAML directory is applied on both nodes
//! (`edgeplane apply --node-name nodeN` with `node-ips` and `dsr` settings).
//! Every case runs with the nodes' uplink TX checksum offload on and off.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::multinode::*;
use common::*;

const POD_PORT: u16 = 8080;

fn node_ip(n: usize) -> Ipv4Addr {
    NODE_IPS[n - 1].parse().unwrap()
}

/// Both nodes' pods as endpoints of one NodePort service.
/// Every pod of both nodes as an endpoint, with its nodeName.
fn all_endpoints(t: &MultiNode) -> Vec<(Ipv4Addr, &'static str)> {
    t.pods
        .iter()
        .enumerate()
        .flat_map(|(n, ps)| ps.iter().map(move |p| (p.ip, if n == 0 { "node1" } else { "node2" })))
        .collect()
}

/// A Local policy with no local endpoint drops: the connection times out, never refused.
fn assert_dropped(r: std::io::Result<Answer>) {
    match r {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "dropped, not refused: {e}"),
        Ok(a) => panic!("no local endpoint must not answer: {a:?}"),
    }
}

fn both_nodes_service(t: &MultiNode, policy: &str) -> String {
    let eps = all_endpoints(t);
    node_port_yaml("web", "NodePort", "198.18.250.10", &format!("  externalTrafficPolicy: {policy}\n"), &eps)
}

fn ask_many(t: &MultiNode, mode: &'static str, to: SocketAddrV4, n: usize) -> Vec<Answer> {
    t.client.within(move || {
        (0..n)
            .map(|_| match mode {
                "tcp" => tcp_ask(to, Duration::from_secs(2)),
                _ => udp_ask_connected(to, Duration::from_secs(2)),
            })
            .map(|r| r.unwrap_or_else(|e| panic!("{mode} to {to}: {e}")))
            .collect()
    })
}

fn cluster_snat(tx_offload: bool) {
    let mut t = MultiNode::new([2, 2], POD_PORT, tx_offload);
    let svc = both_nodes_service(&t, "Cluster");
    t.apply(false, &[svc]);
    for (mode, port) in [("tcp", 30080), ("udp", 30081)] {
        let to = SocketAddrV4::new(node_ip(1), port);
        let answers = ask_many(&t, mode, to, 40);
        let nodes: BTreeSet<&str> = answers.iter().map(|a| &a.server[..5]).collect();
        assert_eq!(nodes.len(), 2, "{mode}: both nodes' pods answer: {answers:?}");
        for a in &answers {
            assert_eq!(a.client_peer, to.into(), "{mode}: reply comes from node1:{port}");
            let expected = if a.server.starts_with("node2") { NODE_IPS[0] } else { CLIENT_IP };
            assert!(a.seen_peer.starts_with(&format!("{expected}:")), "{mode}: {} saw {}", a.server, a.seen_peer);
        }
    }
}

#[test]
fn cluster_policy_snat_to_remote_pods() {
    need_root!();
    cluster_snat(true);
    cluster_snat(false);
}

fn dsr_reply_leaves_backend_node(tx_offload: bool) {
    let mut t = MultiNode::new([0, 2], POD_PORT, tx_offload);
    let svc = both_nodes_service(&t, "Cluster");
    t.apply(true, &[svc]);
    for (mode, port) in [("tcp", 30080u16), ("udp", 30081)] {
        t.watch_wire(&format!("{mode}-node2"), 2, NODE_IPS[0], port);
        t.watch_wire(&format!("{mode}-node1"), 1, NODE_IPS[0], port);
        let to = SocketAddrV4::new(node_ip(1), port);
        for a in ask_many(&t, mode, to, 10) {
            assert!(a.server.starts_with("node2"), "{mode}: {a:?}");
            assert!(a.seen_peer.starts_with(&format!("{CLIENT_IP}:")), "{mode}: DSR keeps the client address: {a:?}");
            assert_eq!(a.client_peer, to.into(), "{mode}: reply carries node1:{port}");
        }
        assert!(t.wire_count(&format!("{mode}-node2")) > 0, "{mode}: replies enter the router on node2's wire");
        assert_eq!(t.wire_count(&format!("{mode}-node1")), 0, "{mode}: no reply on node1's wire");
    }
}

#[test]
fn dsr_replies_directly_from_backend_node() {
    need_root!();
    dsr_reply_leaves_backend_node(true);
    dsr_reply_leaves_backend_node(false);
}

#[test]
fn local_policy_keeps_client_address_and_drops_without_local_endpoint() {
    need_root!();
    local_policy_keeps_client_address_and_drops_without_local_endpoint_with(true);
    local_policy_keeps_client_address_and_drops_without_local_endpoint_with(false);
}

/// One run of [`local_policy_keeps_client_address_and_drops_without_local_endpoint`], with the nodes' uplink TX checksum offload on or off.
fn local_policy_keeps_client_address_and_drops_without_local_endpoint_with(tx_offload: bool) {
    let mut t = MultiNode::new([2, 2], POD_PORT, tx_offload);
    let svc = both_nodes_service(&t, "Local");
    t.apply(false, &[svc]);
    let to = SocketAddrV4::new(node_ip(1), 30080);
    for a in ask_many(&t, "tcp", to, 20) {
        assert!(a.server.starts_with("node1"), "{a:?}");
        assert!(a.seen_peer.starts_with(&format!("{CLIENT_IP}:")), "{a:?}");
    }
    let remote_only: Vec<(Ipv4Addr, &str)> = t.pods[1].iter().map(|p| (p.ip, "node2")).collect();
    let svc = node_port_yaml("web", "NodePort", "198.18.250.10", "  externalTrafficPolicy: Local\n", &remote_only);
    t.apply(false, &[svc]);
    let r = t.client.within(move || tcp_ask(to, Duration::from_millis(800)));
    assert_dropped(r);
    let drops = t.agents[0].drops_text();
    assert!(drops.contains("local"), "node1 counts a no-local-endpoints drop:\n{drops}");
}

#[test]
fn node_port_from_pod_and_from_host() {
    need_root!();
    node_port_from_pod_and_from_host_with(true);
    node_port_from_pod_and_from_host_with(false);
}

/// One run of [`node_port_from_pod_and_from_host`], with the nodes' uplink TX checksum offload on or off.
fn node_port_from_pod_and_from_host_with(tx_offload: bool) {
    let mut t = MultiNode::new([1, 1], POD_PORT, tx_offload);
    let svc = both_nodes_service(&t, "Cluster");
    t.apply(false, &[svc]);
    let to_node2 = SocketAddrV4::new(node_ip(2), 30080);
    let a = t.pods[0][0].ns.within(move || tcp_ask(to_node2, Duration::from_secs(2)));
    assert!(a.is_ok(), "pod on node1 -> node2:30080: {a:?}");
    // A host process of node1 (in the socket hooks' cgroup) -> node1's own NodePort:
    // translated at connect(), no packet ever reaches a tc program.
    let to_node1 = SocketAddrV4::new(node_ip(1), 30080);
    let a = ask_from_cgroup(&t.nodes[0], &t.agents[0].cgroup, "harness_client_entry", "tcp", to_node1);
    assert!(a.is_ok(), "host of node1 -> node1:30080: {a:?}");
}

harness_client_entry!();

/// internalTrafficPolicy: Local — a pod's traffic to the ClusterIP goes only to
/// its node's endpoints; with endpoints only on the other node it is dropped
/// (kube-proxy's behaviour), not refused.
#[test]
fn internal_local_policy_keeps_pod_traffic_on_its_node() {
    need_root!();
    internal_local_policy_keeps_pod_traffic_on_its_node_with(true);
    internal_local_policy_keeps_pod_traffic_on_its_node_with(false);
}

/// One run of [`internal_local_policy_keeps_pod_traffic_on_its_node`], with the nodes' uplink TX checksum offload on or off.
fn internal_local_policy_keeps_pod_traffic_on_its_node_with(tx_offload: bool) {
    let mut t = MultiNode::new([2, 2], POD_PORT, tx_offload);
    let eps = all_endpoints(&t);
    let itp = "  internalTrafficPolicy: Local\n";
    t.apply(false, &[node_port_yaml("web", "NodePort", "198.18.250.10", itp, &eps)]);
    let vip = SocketAddrV4::new(Ipv4Addr::new(198, 18, 250, 10), 80);
    let servers: BTreeSet<String> = t.pods[0][0].ns.within(move || {
        (0..12).map(|_| tcp_ask(vip, Duration::from_secs(2)).expect("pod -> ClusterIP").server).collect()
    });
    assert!(servers.iter().all(|s| s.starts_with("node1")), "only node1's endpoints: {servers:?}");
    let remote_only: Vec<(Ipv4Addr, &str)> = t.pods[1].iter().map(|p| (p.ip, "node2")).collect();
    t.apply(false, &[node_port_yaml("web", "NodePort", "198.18.250.10", itp, &remote_only)]);
    let r = t.pods[0][0].ns.within(move || tcp_ask(vip, Duration::from_millis(800)));
    assert_dropped(r);
    let drops = t.agents[0].drops_text();
    assert!(drops.contains("no-local-endpoints"), "node1 counts the drop:\n{drops}");
}

/// externalIPs follow externalTrafficPolicy like NodePorts: a client outside
/// reaches 198.19.100.11 routed to node1; Local keeps only node1's endpoints
/// and the client's address.
#[test]
fn external_ips_follow_the_external_traffic_policy() {
    need_root!();
    external_ips_follow_the_external_traffic_policy_with(true);
    external_ips_follow_the_external_traffic_policy_with(false);
}

/// One run of [`external_ips_follow_the_external_traffic_policy`], with the nodes' uplink TX checksum offload on or off.
fn external_ips_follow_the_external_traffic_policy_with(tx_offload: bool) {
    let mut t = MultiNode::new([2, 2], POD_PORT, tx_offload);
    t.router.ip(&["route", "add", "198.19.100.11/32", "via", &node_ip(1).to_string()]);
    let eps = all_endpoints(&t);
    let extra = "  externalIPs: [198.19.100.11]\n  externalTrafficPolicy: Local\n";
    t.apply(false, &[node_port_yaml("web", "NodePort", "198.18.250.10", extra, &eps)]);
    let to = SocketAddrV4::new(Ipv4Addr::new(198, 19, 100, 11), 80);
    for a in ask_many(&t, "tcp", to, 12) {
        assert!(a.server.starts_with("node1"), "{a:?}");
        assert!(a.seen_peer.starts_with(&format!("{CLIENT_IP}:")), "{a:?}");
    }
    let extra = "  externalIPs: [198.19.100.11]\n  externalTrafficPolicy: Cluster\n";
    t.apply(false, &[node_port_yaml("web", "NodePort", "198.18.250.10", extra, &eps)]);
    let servers: BTreeSet<String> = ask_many(&t, "tcp", to, 24).into_iter().map(|a| a.server).collect();
    assert!(servers.iter().any(|s| s.starts_with("node2")), "Cluster reaches node2's endpoints: {servers:?}");
}

/// A LoadBalancer ingress IP (routed to node1 by the router, as MetalLB's L2
/// or BGP mode would) with loadBalancerSourceRanges: the client inside the
/// ranges is served, outside them its packets are dropped (source-range-denied).
#[test]
fn load_balancer_ip_with_source_ranges() {
    need_root!();
    load_balancer_ip_with_source_ranges_with(true);
    load_balancer_ip_with_source_ranges_with(false);
}

/// One run of [`load_balancer_ip_with_source_ranges`], with the nodes' uplink TX checksum offload on or off.
fn load_balancer_ip_with_source_ranges_with(tx_offload: bool) {
    let mut t = MultiNode::new([1, 1], POD_PORT, tx_offload);
    t.router.ip(&["route", "add", "198.19.100.10/32", "via", &node_ip(1).to_string()]);
    let eps = all_endpoints(&t);
    let lb = |ranges: &str| {
        node_port_yaml(
            "web",
            "LoadBalancer",
            "198.18.250.10",
            &format!("  loadBalancerSourceRanges: [{ranges}]\n"),
            &eps,
        )
        .replacen(
            "---\napiVersion: discovery",
            "status:\n  loadBalancer:\n    ingress: [{ip: 198.19.100.10}]\n---\napiVersion: discovery",
            1,
        )
    };
    t.apply(false, &[lb("198.19.250.0/24")]);
    let to = SocketAddrV4::new(Ipv4Addr::new(198, 19, 100, 10), 80);
    let servers: BTreeSet<String> = ask_many(&t, "tcp", to, 16).into_iter().map(|a| a.server).collect();
    assert!(!servers.is_empty());
    t.apply(false, &[lb("198.19.251.0/24")]);
    let r = t.client.within(move || tcp_ask(to, Duration::from_millis(800)));
    assert!(r.is_err(), "outside the source ranges: {r:?}");
    let drops = t.agents[0].drops_text();
    assert!(drops.contains("source-range"), "node1 counts the drop:\n{drops}");
}

/// Stops an `edgeplane run` this test started (by its pid) when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// GET / on addr from the client namespace; retried while nothing listens yet.
fn http_get(t: &MultiNode, to: SocketAddrV4) -> String {
    use std::io::{Read, Write};
    t.client.within(move || {
        for _ in 0..100 {
            if let Ok(mut s) = std::net::TcpStream::connect_timeout(&to.into(), Duration::from_millis(500)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: lb\r\n\r\n").expect("request");
                let mut out = String::new();
                s.read_to_string(&mut out).expect("response");
                return out;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("nothing answered on {to}");
    })
}

/// healthCheckNodePort: `edgeplane run` answers on each node; 200 with the
/// local endpoint count where the service has a local endpoint, 503 elsewhere.
#[test]
fn health_check_node_port_reports_local_endpoints() {
    need_root!();
    health_check_node_port_reports_local_endpoints_with(true);
    health_check_node_port_reports_local_endpoints_with(false);
}

/// One run of [`health_check_node_port_reports_local_endpoints`], with the nodes' uplink TX checksum offload on or off.
fn health_check_node_port_reports_local_endpoints_with(tx_offload: bool) {
    let mut t = MultiNode::new([1, 1], POD_PORT, tx_offload);
    let eps = [(t.pods[0][0].ip, "node1")];
    let extra = "  externalTrafficPolicy: Local\n  healthCheckNodePort: 32000\n";
    t.apply(false, &[node_port_yaml("web", "LoadBalancer", "198.18.250.10", extra, &eps)]);
    let _runs: Vec<Running> = t
        .agents
        .iter()
        .map(|a| {
            let mut c = a.edgeplane("run");
            c.args(["--metrics-address", ""]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
            Running(c.spawn().expect("edgeplane run"))
        })
        .collect();
    let r1 = http_get(&t, SocketAddrV4::new(node_ip(1), 32000));
    assert!(r1.starts_with("HTTP/1.1 200 OK"), "{r1}");
    assert!(r1.contains(r#""localEndpoints":1"#) && r1.contains(r#""name":"web""#), "{r1}");
    let r2 = http_get(&t, SocketAddrV4::new(node_ip(2), 32000));
    assert!(r2.starts_with("HTTP/1.1 503"), "{r2}");
    assert!(r2.contains(r#""localEndpoints":0"#), "{r2}");
}

// ---- SCTP through a NodePort, with crafted packets (no SCTP sockets here) ----

const SCTP_POD_PORT: u16 = 7777;
const SCTP_NODE_PORT: u16 = 30082;

fn sctp_service(t: &MultiNode) -> String {
    let mut y = "apiVersion: v1\nkind: Service\nmetadata: {name: assoc, namespace: e2e}\nspec:\n  type: NodePort\n  clusterIP: 198.18.250.20\n  ports: [{name: sctp, protocol: SCTP, port: 7777, targetPort: 7777, nodePort: 30082}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: assoc-1, namespace: e2e, labels: {kubernetes.io/service-name: assoc}}\naddressType: IPv4\nports: [{name: sctp, protocol: SCTP, port: 7777}]\nendpoints:\n".to_string();
    for p in &t.pods[1] {
        y.push_str(&format!("- {{addresses: [\"{}\"], nodeName: node2, conditions: {{ready: true}}}}\n", p.ip));
    }
    y
}

/// A raw IPPROTO_SCTP socket of the calling thread's namespace: receives a
/// copy of every SCTP packet for this host, sends SCTP with a kernel-built
/// IPv4 header. Works without the kernel's SCTP support.
struct SctpRaw(std::os::fd::OwnedFd);

impl SctpRaw {
    fn open() -> SctpRaw {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls; the fd is owned from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_SCTP) };
        assert!(fd >= 0, "raw SCTP socket: {}", std::io::Error::last_os_error());
        let tv = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
        // SAFETY: valid fd and option buffer of the right size.
        unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&raw const tv).cast(), size_of_val(&tv) as u32)
        };
        SctpRaw(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    fn send(&self, to: Ipv4Addr, sctp: &[u8]) {
        use std::os::fd::AsRawFd;
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(to.octets()) },
            sin_zero: [0; 8],
        };
        // SAFETY: valid fd, buffer and address.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                sctp.as_ptr().cast(),
                sctp.len(),
                0,
                (&raw const sa).cast(),
                size_of_val(&sa) as u32,
            )
        };
        assert_eq!(n, sctp.len() as isize, "sendto: {}", std::io::Error::last_os_error());
    }

    /// The next SCTP packet (source address, SCTP bytes), or None after 200 ms.
    fn recv(&self) -> Option<(Ipv4Addr, Vec<u8>)> {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 2048];
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return None;
        }
        let ip = &buf[..n as usize];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        Some((Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]), ip[ihl..].to_vec()))
    }
}

/// SCTP common header + one chunk (`chunk_type`, 16 bytes of body carrying
/// `tag` as the initiate tag), with its CRC32c.
fn sctp_packet(sport: u16, dport: u16, vtag: u32, chunk_type: u8, tag: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&vtag.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&[chunk_type, 0, 0, 20]);
    b.extend_from_slice(&tag.to_be_bytes());
    b.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    b.extend_from_slice(&[0, 1, 0, 1]); // streams out / in
    b.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
    let c = common::packet::crc32c(&b);
    b[8..12].copy_from_slice(&c.to_le_bytes());
    b
}

fn sctp_crc_ok(b: &[u8]) -> bool {
    if b.len() < 12 {
        return false;
    }
    let mut z = b.to_vec();
    z[8..12].fill(0);
    common::packet::crc32c(&z).to_le_bytes() == b[8..12]
}

/// Each node2 pod answers every INIT to 7777 with an INIT-ACK whose
/// initiate tag is its address's last octet, and reports the sources it saw.
fn sctp_responders(
    t: &MultiNode,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<Ipv4Addr>>> {
    let mut handles = Vec::new();
    for p in &t.pods[1] {
        let (stop, me) = (stop.clone(), p.ip);
        let (tx, rx) = std::sync::mpsc::channel();
        handles.push(p.ns.spawn(move || {
            let sock = SctpRaw::open();
            tx.send(()).ok();
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some((src, b)) = sock.recv() else { continue };
                if b.len() < 20 {
                    continue;
                }
                let dport = u16::from_be_bytes([b[2], b[3]]);
                if dport != SCTP_POD_PORT || b[12] != 1 || !sctp_crc_ok(&b) {
                    continue;
                }
                seen.push(src);
                let sport = u16::from_be_bytes([b[0], b[1]]);
                let peer_tag = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
                sock.send(src, &sctp_packet(SCTP_POD_PORT, sport, peer_tag, 2, u32::from(me.octets()[3])));
            }
            seen
        }));
        rx.recv().expect("responder ready");
    }
    handles
}

/// INITs from the outside client to node1's SCTP NodePort: each gets an
/// INIT-ACK from node1:30082 with a valid CRC32c (after the NAT's rewrite),
/// from a node2 pod. Returns the pods' tags and what the pods saw as source.
fn sctp_through_node1(t: &MultiNode, first_port: u16) -> (BTreeSet<u32>, Vec<Ipv4Addr>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let responders = sctp_responders(t, &stop);
    let node1 = node_ip(1);
    let tags = t.client.within(move || {
        let sock = SctpRaw::open();
        let mut tags = BTreeSet::new();
        for i in 0..24u16 {
            let sport = first_port + i;
            let my_tag = 0x1000 + u32::from(i);
            sock.send(node1, &sctp_packet(sport, SCTP_NODE_PORT, 0, 1, my_tag));
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            let ack = loop {
                assert!(std::time::Instant::now() < deadline, "no INIT-ACK for the INIT from port {sport}");
                let Some((src, b)) = sock.recv() else { continue };
                if b.len() >= 20 && u16::from_be_bytes([b[2], b[3]]) == sport && b[12] == 2 {
                    break (src, b);
                }
            };
            let (src, b) = ack;
            assert_eq!(src, node1, "the INIT-ACK comes from the address the client used");
            assert_eq!(u16::from_be_bytes([b[0], b[1]]), SCTP_NODE_PORT, "and from the NodePort");
            assert!(sctp_crc_ok(&b), "CRC32c of the translated INIT-ACK is valid");
            assert_eq!(u32::from_be_bytes([b[4], b[5], b[6], b[7]]), my_tag, "verification tag is ours");
            tags.insert(u32::from_be_bytes([b[16], b[17], b[18], b[19]]));
        }
        tags
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = responders.into_iter().flat_map(|h| h.join().expect("responder")).collect();
    (tags, seen)
}

fn sctp_node_port(tx_offload: bool) {
    let mut t = MultiNode::new([0, 2], POD_PORT, tx_offload);
    let svc = sctp_service(&t);
    // SNAT: the pods see node1's address.
    t.apply(false, std::slice::from_ref(&svc));
    let (tags, seen) = sctp_through_node1(&t, 41000);
    assert_eq!(tags.len(), 2, "both node2 pods answered: {tags:?}");
    assert!(seen.iter().all(|s| *s == node_ip(1)), "SNAT: the pods see node1: {seen:?}");
    // DSR: the pods see the client; replies leave node2 straight to the router.
    t.watch_wire("sctp-node1", 1, NODE_IPS[0], SCTP_NODE_PORT);
    t.watch_wire("sctp-node2", 2, NODE_IPS[0], SCTP_NODE_PORT);
    // New client ports: the SNAT phase's associations keep their translation.
    t.apply(true, &[svc]);
    let (tags, seen) = sctp_through_node1(&t, 42000);
    assert!(!tags.is_empty());
    let client: Ipv4Addr = CLIENT_IP.parse().unwrap();
    assert!(seen.iter().all(|s| *s == client), "DSR keeps the client's address: {seen:?}");
    assert!(t.wire_count("sctp-node2") >= 24, "INIT-ACKs leave from node2's wire");
    assert_eq!(t.wire_count("sctp-node1"), 0, "no reply passes node1");
}

#[test]
fn sctp_node_port_snat_and_dsr_with_crafted_packets() {
    need_root!();
    sctp_node_port(true);
    sctp_node_port(false);
}
