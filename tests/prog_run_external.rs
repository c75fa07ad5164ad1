//! BPF_PROG_TEST_RUN tests of external traffic (root only): the host program
//! (`ep_tc_host`) with EXTERNAL frontends, source ranges, drop-empty, SNAT and
//! DSR to remote endpoints, FIB redirect, and the backend node's DSR side.
//! The node and source-range maps are written as raw bytes (layouts in
//! bpf/edgeplane.h) so this file does not depend on their Rust mirrors.
//!
//! bpf_fib_lookup in a test run looks routes up in the caller's network
//! namespace, so every test runs on a thread inside a fresh, anonymous netns
//! (gone when the thread ends) with its own veth pair and routes.

mod common;

use std::net::Ipv4Addr;

use common::packet::*;
use edgeplane::datapath::{self, Capacities, object_map};
use edgeplane::drop_reason::DropReason;
use edgeplane::maps::layout::{
    BE_F_REMOTE, Backend, CT_DIR_FORWARD, CT_DIR_REPLY, CT_F_DSR, CT_F_FIB, CT_F_SNAT, Config, CtKey, CtValue,
    DSR_OPT_TYPE, LBSRC_PREFIX_FRONTEND, NODE_F_DSR, NODE_F_HOST_ROUTING, SCOPE_CLUSTER, SCOPE_EXTERNAL,
    SVC_F_DROP_EMPTY, SVC_F_DSR_OK, SVC_F_NODE_ADDR, SVC_F_SOURCE_RANGES, SvcKey, SvcValue, backend_id_key,
};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, ProgramInput};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 2);
/// This node's address (NodePort frontend, SNAT source).
const NODE1: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 11);
const NODE_PORT: u16 = 30080;
const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 5, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
/// Routed to a blackhole in the test netns.
const BLACKHOLED_POD: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 10);
/// No route at all in the test netns (no default route either).
const UNROUTED_POD: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 10);
const POD_PORT: u16 = 8080;

struct Fixture {
    obj: Object,
    svc: MapHandle,
    be: MapHandle,
    ct: MapHandle,
    drops: MapHandle,
    node: MapHandle,
    lbsrc: MapHandle,
}

impl Fixture {
    fn new() -> Fixture {
        let caps = Capacities {
            services: 1024,
            backends: 1024,
            conntrack: 4096,
            affinity: 1024,
            sknat: 1024,
            ..Capacities::default()
        };
        let obj = datapath::load_unpinned(&caps).expect("tc object loads (verifier accepts it)");
        let m = |name| object_map(&obj, name).expect(name);
        let f = Fixture {
            svc: m("ep_svc_v1"),
            be: m("ep_be_v1"),
            ct: m("ep_ct4_v2"),
            drops: m("ep_drops_v1"),
            node: m("ep_node_v1"),
            lbsrc: m("ep_lbsrc_v1"),
            obj,
        };
        let cfg = object_map(&f.obj, "ep_cfg_v1").expect("ep_cfg_v1");
        let c = Config { hairpin_addr: [169, 254, 42, 1], ..Config::default() };
        cfg.update(&0u32.to_ne_bytes(), &c.to_bytes(), MapFlags::ANY).expect("cfg");
        f
    }

    /// struct ep_node at index 0: snat_addr (be32), flags (u32), two pad words.
    fn node(&self, snat: Ipv4Addr, flags: u32) {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&snat.octets());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&[0; 8]);
        self.node.update(&0u32.to_ne_bytes(), &v, MapFlags::ANY).expect("ep_node_v1");
    }

    /// struct ep_lbsrc_key {prefixlen, vip, port, proto, pad, saddr} -> {allow = 1}.
    fn source_range(&self, vip: Ipv4Addr, port: u16, proto: u8, net: Ipv4Addr, len: u32) {
        let mut k = Vec::with_capacity(16);
        k.extend_from_slice(&(LBSRC_PREFIX_FRONTEND + len).to_ne_bytes());
        k.extend_from_slice(&vip.octets());
        k.extend_from_slice(&port.to_be_bytes());
        k.extend_from_slice(&[proto, 0]);
        k.extend_from_slice(&net.octets());
        self.lbsrc.update(&k, &1u32.to_ne_bytes(), MapFlags::ANY).expect("ep_lbsrc_v1");
    }

    /// A frontend with backends (addr, port, ep_backend flags) in slots 1..n, ids from 10*svc_id.
    #[allow(clippy::too_many_arguments)]
    fn frontend(
        &self,
        scope: u8,
        vip: Ipv4Addr,
        port: u16,
        proto: u8,
        svc_id: u32,
        flags: u16,
        backends: &[(Ipv4Addr, u16, u8)],
    ) {
        for (slot, (addr, bport, bflags)) in backends.iter().enumerate() {
            let id = svc_id * 10 + slot as u32;
            let mut b = Backend::new(*addr, *bport, proto);
            b.flags = *bflags;
            self.be.update(&backend_id_key(id), &b.to_bytes(), MapFlags::ANY).expect("backend");
            let k = SvcKey::new(vip, port, proto, scope, slot as u16 + 1);
            let v = SvcValue { backend_id: id, ..SvcValue::default() };
            self.svc.update(&k.to_bytes(), &v.to_bytes(), MapFlags::ANY).expect("slot");
        }
        let k = SvcKey::new(vip, port, proto, scope, 0);
        let v = SvcValue { backend_id: 0, count: backends.len() as u16, flags, svc_id, affinity_timeout: 0 };
        self.svc.update(&k.to_bytes(), &v.to_bytes(), MapFlags::ANY).expect("frontend");
    }

    fn nodeport(&self, proto: u8, flags: u16, backends: &[(Ipv4Addr, u16, u8)]) {
        self.frontend(SCOPE_EXTERNAL, NODE1, NODE_PORT, proto, 1, SVC_F_NODE_ADDR | flags, backends);
    }

    fn run(&self, prog: &str, input: &[u8]) -> (u32, Vec<u8>) {
        let p = self.obj.progs_mut().find(|p| p.name() == prog).expect("program");
        let mut out = vec![0u8; 2048];
        let inp = ProgramInput { data_in: Some(input), data_out: Some(&mut out), repeat: 1, ..Default::default() };
        let o = p.test_run(inp).expect("test_run");
        let (ret, len) = (o.return_value, o.data.as_ref().map_or(0, |d| d.len()));
        out.truncate(len);
        (ret, out)
    }

    fn drops(&self, r: DropReason) -> u64 {
        let v = self.drops.lookup_percpu(&(r as u32).to_ne_bytes(), MapFlags::ANY).expect("drops").unwrap_or_default();
        v.iter().map(|b| u64::from_ne_bytes(b[..8].try_into().expect("8 bytes"))).sum()
    }

    /// Runs a packet and checks the verdict, that only the `drops` counters
    /// moved (by these amounts), and, unless dropped, the IPv4 and L4 checksums.
    fn check(&self, what: &str, prog: &str, input: &[u8], verdict: u32, drops: &[(DropReason, u64)]) -> Vec<u8> {
        let before: Vec<u64> = DropReason::ALL.iter().map(|r| self.drops(*r)).collect();
        let (ret, out) = self.run(prog, input);
        assert_eq!(ret, verdict, "{what}: verdict");
        for (r, b) in DropReason::ALL.iter().zip(before) {
            let want = drops.iter().find(|(d, _)| d == r).map_or(0, |(_, n)| *n);
            assert_eq!(self.drops(*r) - b, want, "{what}: ep_drops_v1[{}] delta", r.label());
        }
        if ret != TC_ACT_SHOT {
            let p = Parsed::parse(&out);
            assert!(p.ip_csum_ok, "{what}: IPv4 header checksum");
            assert!(p.l4_csum_ok(), "{what}: L4 checksum (proto {})", p.proto);
        }
        out
    }

    fn ct_has(&self, s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16, proto: u8, dir: u8) -> bool {
        self.ct_flags(s, sp, d, dp, proto, dir).is_some()
    }

    /// The EP_CT_F_* flags of a conntrack entry, if it exists.
    fn ct_flags(&self, s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16, proto: u8, dir: u8) -> Option<u16> {
        let k = CtKey {
            saddr: s.octets(),
            daddr: d.octets(),
            sport: sp.to_be_bytes(),
            dport: dp.to_be_bytes(),
            proto,
            dir,
            _pad0: 0,
        };
        let v = self.ct.lookup(&k.to_bytes(), MapFlags::ANY).expect("ct lookup")?;
        Some(CtValue::from_bytes(&v).expect("ep_ct_value").flags)
    }
}

fn tuple(p: &Parsed) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    (p.saddr, p.sport(), p.daddr, p.dport())
}

fn tcp(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16, flags: u8) -> Vec<u8> {
    Pkt::tcp(s, sp, d, dp, flags).build()
}

/// The DSR option naming the node's frontend: type, length, port, address.
fn dsr_opt() -> Vec<u8> {
    let mut o = vec![DSR_OPT_TYPE, 8];
    o.extend_from_slice(&NODE_PORT.to_be_bytes());
    o.extend_from_slice(&NODE1.octets());
    o
}

fn ihl(frame: &[u8]) -> u8 {
    frame[14] & 0x0f
}

const H: &str = datapath::TC_HOST_PROG;
const W: &str = datapath::TC_PROG;

#[test]
fn nodeport_to_local_endpoint_is_dnat_only_and_fib_routed() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.nodeport(TCP, 0, &[(LOCAL_POD, POD_PORT, 0)]);
        let out = f.check("syn", H, &tcp(CLIENT, 40000, NODE1, NODE_PORT, SYN), TC_ACT_REDIRECT, &[]);
        let p = Parsed::parse(&out);
        assert_eq!(tuple(&p), (CLIENT, 40000, LOCAL_POD, POD_PORT), "DNAT only, client source kept");
        assert_eq!(p.ttl, 63, "a routed packet's TTL is decremented");
        let fwd = f.ct_flags(CLIENT, 40000, NODE1, NODE_PORT, TCP, CT_DIR_FORWARD).expect("forward entry");
        assert_eq!(fwd & (CT_F_FIB | CT_F_SNAT | CT_F_DSR), CT_F_FIB, "node-address flow: FIB, no SNAT/DSR");
        let reply = tcp(LOCAL_POD, POD_PORT, CLIENT, 40000, SYN | ACK);
        let out = f.check("reply", W, &reply, TC_ACT_REDIRECT, &[]);
        assert_eq!(tuple(&Parsed::parse(&out)), (NODE1, NODE_PORT, CLIENT, 40000), "reply from the frontend");
    });
}

#[test]
fn remote_endpoint_is_snatted_to_the_node_and_the_reply_restored() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.node(NODE1, 0);
        f.nodeport(TCP, SVC_F_DSR_OK, &[(REMOTE_POD, POD_PORT, BE_F_REMOTE)]);
        let out = f.check("syn", H, &tcp(CLIENT, 40000, NODE1, NODE_PORT, SYN), TC_ACT_REDIRECT, &[]);
        let p = Parsed::parse(&out);
        assert_eq!((p.saddr, p.daddr, p.dport()), (NODE1, REMOTE_POD, POD_PORT), "DNAT + SNAT to the node");
        assert_eq!(ihl(&out), 5, "no DSR option when the node has DSR off");
        let snat_port = p.sport();
        let fwd = f.ct_flags(CLIENT, 40000, NODE1, NODE_PORT, TCP, CT_DIR_FORWARD).expect("forward entry");
        assert_eq!(fwd & (CT_F_FIB | CT_F_SNAT | CT_F_DSR), CT_F_FIB | CT_F_SNAT, "forward entry flags");
        assert!(f.ct_has(REMOTE_POD, POD_PORT, NODE1, snat_port, TCP, CT_DIR_REPLY), "reply entry on the SNAT tuple");
        let reply = tcp(REMOTE_POD, POD_PORT, NODE1, snat_port, SYN | ACK);
        let out = f.check("reply", H, &reply, TC_ACT_REDIRECT, &[]);
        assert_eq!(tuple(&Parsed::parse(&out)), (NODE1, NODE_PORT, CLIENT, 40000), "reply rev-NATed to the client");
    });
}

/// Path MTU discovery through a source-NATed NodePort flow: fragmentation
/// needed from the remote pod's side, sent to the node's address, reaches the
/// client about the packet the client sent (quoted tuple restored twice:
/// DNAT and SNAT), FIB-routed like the flow (the stack would drop a forwarded
/// packet whose source is the node's own address).
#[test]
fn frag_needed_about_a_snat_flow_is_translated_back_to_the_client() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.node(NODE1, 0);
        f.nodeport(TCP, SVC_F_DSR_OK, &[(REMOTE_POD, POD_PORT, BE_F_REMOTE)]);
        let out = f.check("syn", H, &tcp(CLIENT, 40000, NODE1, NODE_PORT, SYN), TC_ACT_REDIRECT, &[]);
        let snat_port = Parsed::parse(&out).sport();
        let about = Pkt::tcp(NODE1, snat_port, REMOTE_POD, POD_PORT, ACK);
        let err = icmp_error(REMOTE_POD, NODE1, 3, 4, &about);
        let out = f.check("frag needed", H, &err, TC_ACT_REDIRECT, &[]);
        let p = Parsed::parse(&out);
        assert_eq!((p.saddr, p.daddr, p.proto), (NODE1, CLIENT, ICMP), "outer: from the frontend to the client");
        let inner = p.icmp_inner();
        assert_eq!(
            (inner.saddr, inner.sport(), inner.daddr, inner.dport()),
            (CLIENT, 40000, NODE1, NODE_PORT),
            "quoted: the packet as the client sent it"
        );
        assert_eq!(&p.l4[4..8], &[0, 0, 0x05, 0xdc], "the next-hop MTU is kept");
    });
}

/// Path MTU discovery for the return direction: a hop between the entry
/// node and the client answers a reply (source: the NodePort frontend) with
/// fragmentation needed, sent to node1. node1 hands it to the endpoint, about
/// the packet the endpoint sent: with SNAT (replies pass node1) and with DSR
/// (replies left node2 with node1's address as source).
#[test]
fn frag_needed_from_the_return_path_reaches_the_endpoint() {
    in_fresh_netns(|| {
        const HOP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
        for (dsr, node_flags) in [(false, 0), (true, NODE_F_DSR)] {
            let f = Fixture::new();
            f.node(NODE1, node_flags);
            f.nodeport(TCP, SVC_F_DSR_OK, &[(REMOTE_POD, POD_PORT, BE_F_REMOTE)]);
            let out = f.check("syn", H, &tcp(CLIENT, 40000, NODE1, NODE_PORT, SYN), TC_ACT_REDIRECT, &[]);
            let seen = Parsed::parse(&out);
            // What the endpoint sent: to the client (DSR) or to node1's SNAT port.
            let (to, to_port) = if dsr { (CLIENT, 40000) } else { (NODE1, seen.sport()) };
            let about = Pkt::tcp(NODE1, NODE_PORT, CLIENT, 40000, ACK);
            let err = icmp_error(HOP, NODE1, 3, 4, &about);
            let out = f.check("frag needed", H, &err, TC_ACT_REDIRECT, &[]);
            let p = Parsed::parse(&out);
            assert_eq!((p.saddr, p.daddr, p.proto), (HOP, REMOTE_POD, ICMP), "dsr {dsr}: to the endpoint");
            let inner = p.icmp_inner();
            assert_eq!(
                (inner.saddr, inner.sport(), inner.daddr, inner.dport()),
                (REMOTE_POD, POD_PORT, to, to_port),
                "dsr {dsr}: quoted: the endpoint's own packet"
            );
        }
    });
}

#[test]
fn remote_endpoint_without_snat_address_is_dropped() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.node(Ipv4Addr::UNSPECIFIED, 0);
        f.nodeport(TCP, 0, &[(REMOTE_POD, POD_PORT, BE_F_REMOTE)]);
        let syn = tcp(CLIENT, 40000, NODE1, NODE_PORT, SYN);
        f.check("syn", H, &syn, TC_ACT_SHOT, &[(DropReason::NoSnatAddr, 1)]);
    });
}

#[test]
fn fib_routed_flow_without_a_usable_route_is_dropped() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.nodeport(TCP, 0, &[(BLACKHOLED_POD, POD_PORT, 0)]);
        let syn = tcp(CLIENT, 40000, NODE1, NODE_PORT, SYN);
        f.check("blackhole route", H, &syn, TC_ACT_SHOT, &[(DropReason::NoRoute, 1)]);
    });
}

/// The kernel's FIB helper answers NOT_FWDED both for a local destination and
/// for a failed lookup (no matching route), and ep_fib_forward takes NOT_FWDED
/// as "for this host": the translated packet goes up the stack, which drops it
/// uncounted by edgeplane. Pinned here so a change is deliberate.
/// A permanent neighbour entry on the test veth: FIB lookups for `addr` succeed.
fn neighbour(addr: Ipv4Addr, mac: &str) {
    let a = addr.to_string();
    let o = std::process::Command::new("ip")
        .args(["neigh", "replace", a.as_str(), "lladdr", mac, "dev", "ep-xt0", "nud", "permanent"])
        .output()
        .expect("run ip");
    assert!(o.status.success(), "ip neigh: {}", String::from_utf8_lossy(&o.stderr));
}

/// The MAC address of `dev` in the current network namespace.
fn link_mac(dev: &str) -> [u8; 6] {
    let o = std::process::Command::new("ip").args(["-o", "link", "show", dev]).output().expect("run ip");
    let text = String::from_utf8_lossy(&o.stdout);
    let mac = text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("link/ether");
    let bytes: Vec<u8> = mac.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect();
    bytes.try_into().expect("6 bytes")
}

/// A resolved neighbour: the redirected frame carries its MAC as destination
/// and the egress interface's as source (both written in one store), and the
/// TTL is decremented (read from the linear header).
#[test]
fn fib_routed_packet_to_a_resolved_neighbour_gets_both_macs() {
    in_fresh_netns(|| {
        const NEIGH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x0a];
        let o = std::process::Command::new("ip")
            .args([
                "neigh",
                "replace",
                "198.18.1.10",
                "lladdr",
                "02:00:00:00:01:0a",
                "dev",
                "ep-xt0",
                "nud",
                "permanent",
            ])
            .output()
            .expect("run ip");
        assert!(o.status.success(), "ip neigh: {}", String::from_utf8_lossy(&o.stderr));
        let f = Fixture::new();
        f.nodeport(TCP, 0, &[(LOCAL_POD, POD_PORT, 0)]);
        let out = f.check("syn", H, &tcp(CLIENT, 40001, NODE1, NODE_PORT, SYN), TC_ACT_REDIRECT, &[]);
        assert_eq!(out[0..6], NEIGH_MAC, "destination MAC: the neighbour's");
        assert_eq!(out[6..12], link_mac("ep-xt0"), "source MAC: the egress interface's");
        let p = Parsed::parse(&out);
        assert_eq!(tuple(&p), (CLIENT, 40001, LOCAL_POD, POD_PORT));
        assert_eq!(p.ttl, 63, "a routed packet's TTL is decremented");
    });
}

const CLUSTER_PORT: u16 = 80;

/// A node with host routing on, a ClusterIP with one local endpoint, and
/// resolved neighbours for the client and the endpoint.
fn host_routing_fixture() -> Fixture {
    neighbour(LOCAL_POD, "02:00:00:00:01:0a");
    neighbour(CLIENT, "02:00:00:00:00:02");
    let f = Fixture::new();
    f.node(NODE1, NODE_F_HOST_ROUTING);
    f.frontend(SCOPE_CLUSTER, VIP, CLUSTER_PORT, TCP, 2, 0, &[(LOCAL_POD, POD_PORT, 0)]);
    f
}

/// host-routing: bpf. A pod's ClusterIP flow leaves by redirect in both
/// directions: its first packet, the reply and then every established packet
/// (the fast path: one forward lookup, the backend check, the rewrite, the
/// route). Where a redirect cannot be right the translated packet goes to the
/// stack: a TTL that expires here, an endpoint without a route, host routing
/// off.
#[test]
fn host_routing_redirects_established_flows_and_falls_back_to_the_stack() {
    in_fresh_netns(|| {
        let f = host_routing_fixture();
        let to_vip = |sport, flags| tcp(CLIENT, sport, VIP, CLUSTER_PORT, flags);
        let routed = |what: &str, out: &[u8], want: (Ipv4Addr, u16, Ipv4Addr, u16)| {
            let p = Parsed::parse(out);
            assert_eq!(tuple(&p), want, "{what}: translated");
            assert_eq!(p.ttl, 63, "{what}: routed here, TTL decremented");
        };
        let out = f.check("syn", W, &to_vip(41000, SYN), TC_ACT_REDIRECT, &[]);
        routed("syn", &out, (CLIENT, 41000, LOCAL_POD, POD_PORT));
        let out = f.check("syn-ack", W, &tcp(LOCAL_POD, POD_PORT, CLIENT, 41000, SYN | ACK), TC_ACT_REDIRECT, &[]);
        routed("syn-ack", &out, (VIP, CLUSTER_PORT, CLIENT, 41000));
        for i in 0..3 {
            let out = f.check("established", W, &to_vip(41000, ACK), TC_ACT_REDIRECT, &[]);
            routed(&format!("established #{i}"), &out, (CLIENT, 41000, LOCAL_POD, POD_PORT));
        }
        let fwd = f.ct_flags(CLIENT, 41000, VIP, CLUSTER_PORT, TCP, CT_DIR_FORWARD).expect("forward entry");
        assert_eq!(fwd & CT_F_FIB, 0, "host routing is the node's choice, not the flow's");

        // Fallback: the TTL expires here; the stack sends the ICMP error.
        let mut last_hop = Pkt::tcp(CLIENT, 41000, VIP, CLUSTER_PORT, ACK);
        last_hop.ttl = 1;
        let out = f.check("ttl 1", W, &last_hop.build(), TC_ACT_OK, &[]);
        let p = Parsed::parse(&out);
        assert_eq!((tuple(&p), p.ttl), ((CLIENT, 41000, LOCAL_POD, POD_PORT), 1), "ttl 1: translated, to the stack");

        // Fallback: an endpoint the node has no route to goes to the stack, not dropped.
        f.frontend(SCOPE_CLUSTER, LB_IP, CLUSTER_PORT, TCP, 3, 0, &[(UNROUTED_POD, POD_PORT, 0)]);
        let out = f.check("unrouted", W, &tcp(CLIENT, 41001, LB_IP, CLUSTER_PORT, SYN), TC_ACT_OK, &[]);
        let p = Parsed::parse(&out);
        assert_eq!((tuple(&p), p.ttl), ((CLIENT, 41001, UNROUTED_POD, POD_PORT), 64), "unrouted: to the stack");

        // host-routing: kernel: the same established flow goes through the stack.
        f.node(NODE1, 0);
        let out = f.check("established, host routing off", W, &to_vip(41000, ACK), TC_ACT_OK, &[]);
        let p = Parsed::parse(&out);
        assert_eq!((tuple(&p), p.ttl), ((CLIENT, 41000, LOCAL_POD, POD_PORT), 64), "kernel mode: stack");
    });
}

/// The packet of run `i` of a path.
type PacketOfRun = dyn Fn(u16) -> Vec<u8>;

/// Not a check: the per-path cost table of scripts/bench-paths.sh (run with
/// --ignored). Each packet of a path runs `RUNS` times through
/// BPF_PROG_TEST_RUN; the median of the kernel's per-run time is printed.
/// Hot caches and one flow: it isolates the instructions and helper calls of
/// a path; memory effects of full tables show in the benchmarks' bpf_stats.
#[test]
#[ignore]
fn cost_per_path() {
    in_fresh_netns(|| {
        const RUNS: u16 = 1_500; // new flows: within the fixture's 4096 conntrack entries
        let f = host_routing_fixture();
        let ns = |prog: &str, pkt: &PacketOfRun, verdict: u32| -> u128 {
            let p = f.obj.progs_mut().find(|p| p.name() == prog).expect("program");
            let mut runs: Vec<u128> = (0..RUNS)
                .map(|i| {
                    let input = pkt(i);
                    let mut out = vec![0u8; 2048];
                    let inp = ProgramInput {
                        data_in: Some(&input),
                        data_out: Some(&mut out),
                        repeat: 1,
                        ..Default::default()
                    };
                    let o = p.test_run(inp).expect("test_run");
                    assert_eq!(o.return_value, verdict, "{prog}: verdict");
                    o.duration.as_nanos()
                })
                .collect();
            runs.sort_unstable();
            runs[runs.len() / 2]
        };
        f.check("syn", W, &tcp(CLIENT, 40000, VIP, CLUSTER_PORT, SYN), TC_ACT_REDIRECT, &[]);
        f.check("syn-ack", W, &tcp(LOCAL_POD, POD_PORT, CLIENT, 40000, SYN | ACK), TC_ACT_REDIRECT, &[]);
        let rows: [(&str, &str, &PacketOfRun, u32); 5] = [
            ("new flow (SYN to a ClusterIP)", W, &|i| tcp(CLIENT, 1024 + i, VIP, CLUSTER_PORT, SYN), TC_ACT_REDIRECT),
            ("established forward (ACK)", W, &|_| tcp(CLIENT, 40000, VIP, CLUSTER_PORT, ACK), TC_ACT_REDIRECT),
            ("reply (ACK, reverse NAT)", W, &|_| tcp(LOCAL_POD, POD_PORT, CLIENT, 40000, ACK), TC_ACT_REDIRECT),
            ("untranslated, workload interface", W, &|_| tcp(CLIENT, 40000, LOCAL_POD, 9, ACK), TC_ACT_OK),
            ("untranslated, host interface", H, &|_| tcp(LOCAL_POD, 9, CLIENT, 40000, ACK), TC_ACT_OK),
        ];
        println!("path | ns per run (median of {RUNS})");
        for (what, prog, pkt, verdict) in rows {
            println!("{what} | {}", ns(prog, pkt, verdict));
        }
    });
}

#[test]
fn fib_routed_flow_to_an_unrouted_address_goes_to_the_stack() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.nodeport(TCP, 0, &[(UNROUTED_POD, POD_PORT, 0)]);
        let syn = tcp(CLIENT, 40000, NODE1, NODE_PORT, SYN);
        let out = f.check("no route at all", H, &syn, TC_ACT_OK, &[]);
        let p = Parsed::parse(&out);
        assert_eq!(tuple(&p), (CLIENT, 40000, UNROUTED_POD, POD_PORT), "translated, not routed");
        assert_eq!(p.ttl, 64, "TTL untouched: the stack forwards it, if it can");
    });
}

#[test]
fn dsr_inserts_the_option_on_flow_openers_only() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.node(NODE1, NODE_F_DSR);
        f.nodeport(TCP, SVC_F_DSR_OK, &[(REMOTE_POD, POD_PORT, BE_F_REMOTE)]);
        let syn = tcp(CLIENT, 40000, NODE1, NODE_PORT, SYN);
        let out = f.check("syn", H, &syn, TC_ACT_REDIRECT, &[]);
        let p = Parsed::parse(&out);
        assert_eq!(tuple(&p), (CLIENT, 40000, REMOTE_POD, POD_PORT), "DSR: DNAT, no SNAT");
        assert_eq!(ihl(&out), 7, "the 8-byte option follows the IPv4 header");
        assert_eq!(out[34..42], dsr_opt()[..], "option names the frontend");
        assert_eq!(p.tot_len, syn.len() - 14 + 8, "tot_len grows by the option");
        let fwd = f.ct_flags(CLIENT, 40000, NODE1, NODE_PORT, TCP, CT_DIR_FORWARD).expect("forward entry");
        assert_eq!(fwd & (CT_F_FIB | CT_F_SNAT | CT_F_DSR), CT_F_FIB | CT_F_DSR, "forward entry flags");
        let ack = tcp(CLIENT, 40000, NODE1, NODE_PORT, ACK);
        let out = f.check("ack", H, &ack, TC_ACT_REDIRECT, &[]);
        assert_eq!(ihl(&out), 5, "no option after the SYN");
        assert_eq!(tuple(&Parsed::parse(&out)), (CLIENT, 40000, REMOTE_POD, POD_PORT));
    });
}

#[test]
fn dsr_flow_whose_packet_has_ip_options_is_snatted_instead() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.node(NODE1, NODE_F_DSR);
        f.nodeport(TCP, SVC_F_DSR_OK, &[(REMOTE_POD, POD_PORT, BE_F_REMOTE)]);
        let mut syn = Pkt::tcp(CLIENT, 40000, NODE1, NODE_PORT, SYN);
        syn.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
        let out = f.check("syn with options", H, &syn.build(), TC_ACT_REDIRECT, &[]);
        let p = Parsed::parse(&out);
        assert_eq!((p.saddr, p.daddr, p.dport()), (NODE1, REMOTE_POD, POD_PORT), "SNAT, not DSR");
        assert_eq!(out[34..38], [1, 1, 1, 0], "the client's own options kept, no DSR option");
        let fwd = f.ct_flags(CLIENT, 40000, NODE1, NODE_PORT, TCP, CT_DIR_FORWARD).expect("forward entry");
        assert_eq!(fwd & (CT_F_FIB | CT_F_SNAT | CT_F_DSR), CT_F_FIB | CT_F_SNAT, "forward entry flags");
    });
}

fn udp_no_csum(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16, payload: &[u8]) -> Pkt {
    Pkt::new(s, d, L4::Udp { sport: sp, dport: dp, payload: payload.to_vec(), zero_csum: true })
}

/// An SCTP packet whose first chunk is INIT (type 1).
fn sctp_init(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16) -> Pkt {
    let mut chunk = vec![1, 0, 0, 20];
    chunk.extend_from_slice(&[0xab; 16]);
    Pkt::new(s, d, L4::Sctp { sport: sp, dport: dp, payload: chunk })
}

#[test]
fn dsr_udp_datagrams_all_carry_the_option_and_a_zero_checksum_stays_zero() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.node(NODE1, NODE_F_DSR);
        f.nodeport(UDP, SVC_F_DSR_OK, &[(REMOTE_POD, POD_PORT, BE_F_REMOTE)]);
        for (i, zero) in [false, false, true].into_iter().enumerate() {
            let sport = if zero { 40001 } else { 40000 };
            let pkt = if zero {
                udp_no_csum(CLIENT, sport, NODE1, NODE_PORT, b"no checksum")
            } else {
                Pkt::udp(CLIENT, sport, NODE1, NODE_PORT, b"datagram")
            };
            let what = format!("udp datagram {i}");
            let out = f.check(&what, H, &pkt.build(), TC_ACT_REDIRECT, &[]);
            let p = Parsed::parse(&out);
            assert_eq!(tuple(&p), (CLIENT, sport, REMOTE_POD, POD_PORT), "{what}: DNAT only");
            assert_eq!(out[34..42], dsr_opt()[..], "{what}: option");
            assert_eq!(p.udp_csum() == 0, zero, "{what}: a zero UDP checksum stays zero, others are fixed");
        }
    });
}

#[test]
fn dsr_sctp_init_carries_the_option_with_a_valid_crc() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.node(NODE1, NODE_F_DSR);
        f.nodeport(SCTP, SVC_F_DSR_OK, &[(REMOTE_POD, POD_PORT, BE_F_REMOTE)]);
        let out = f.check("init", H, &sctp_init(CLIENT, 40000, NODE1, NODE_PORT).build(), TC_ACT_REDIRECT, &[]);
        assert_eq!(tuple(&Parsed::parse(&out)), (CLIENT, 40000, REMOTE_POD, POD_PORT));
        assert_eq!(out[34..42], dsr_opt()[..], "option");
    });
}

/// The packet the entry node sends: already DNATed, with the option.
fn with_dsr_opt(mut p: Pkt) -> Vec<u8> {
    p.options = dsr_opt();
    p.build()
}

#[test]
fn backend_node_learns_the_dsr_flow_and_strips_the_option() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        let plain = Pkt::new(
            CLIENT,
            REMOTE_POD,
            L4::Tcp { sport: 40000, dport: POD_PORT, seq: 1000, ack: 0, flags: SYN, payload: b"fast open".to_vec() },
        );
        let out = f.check("syn with option", H, &with_dsr_opt(plain.clone()), TC_ACT_OK, &[]);
        assert_eq!(out, plain.build(), "option stripped: ihl 5, length and checksum restored, payload intact");
        assert!(f.ct_has(CLIENT, 40000, REMOTE_POD, POD_PORT, TCP, CT_DIR_FORWARD), "forward entry");
        let rev = f.ct_flags(REMOTE_POD, POD_PORT, CLIENT, 40000, TCP, CT_DIR_REPLY).expect("reply entry");
        assert_eq!(rev & (CT_F_FIB | CT_F_DSR), CT_F_FIB | CT_F_DSR, "reply entry: learnt from the option, FIB-routed");
        let reply = tcp(REMOTE_POD, POD_PORT, CLIENT, 40000, SYN | ACK);
        let out = f.check("pod reply", W, &reply, TC_ACT_REDIRECT, &[]);
        assert_eq!(tuple(&Parsed::parse(&out)), (NODE1, NODE_PORT, CLIENT, 40000), "reply from the option's frontend");
    });
}

#[test]
fn backend_node_strips_the_option_of_udp_without_checksum_and_sctp() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        let udp = udp_no_csum(CLIENT, 40000, REMOTE_POD, POD_PORT, b"no checksum");
        let out = f.check("udp", H, &with_dsr_opt(udp.clone()), TC_ACT_OK, &[]);
        assert_eq!(out, udp.build(), "udp: option stripped, checksum still 0");
        let sctp = sctp_init(CLIENT, 40000, REMOTE_POD, POD_PORT);
        let out = f.check("sctp", H, &with_dsr_opt(sctp.clone()), TC_ACT_OK, &[]);
        assert_eq!(out, sctp.build(), "sctp: option stripped, CRC valid");
    });
}

#[test]
fn workload_program_ignores_the_dsr_option() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        let syn = with_dsr_opt(Pkt::tcp(CLIENT, 40000, REMOTE_POD, POD_PORT, SYN));
        let (ret, out) = f.run(W, &syn);
        assert_eq!((ret, out), (TC_ACT_OK, syn), "passed untouched");
        assert!(!f.ct_has(REMOTE_POD, POD_PORT, CLIENT, 40000, TCP, CT_DIR_REPLY), "no DSR flow learnt from a pod");
    });
}

#[test]
fn source_ranges_admit_only_matching_clients() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.frontend(SCOPE_EXTERNAL, LB_IP, 80, TCP, 1, SVC_F_SOURCE_RANGES, &[(LOCAL_POD, POD_PORT, 0)]);
        f.source_range(LB_IP, 80, TCP, Ipv4Addr::new(198, 18, 0, 0), 24);
        let out = f.check("inside", H, &tcp(CLIENT, 40000, LB_IP, 80, SYN), TC_ACT_OK, &[]);
        assert_eq!(tuple(&Parsed::parse(&out)), (CLIENT, 40000, LOCAL_POD, POD_PORT));
        let outside = tcp(OUTSIDER, 40000, LB_IP, 80, SYN);
        f.check("outside", H, &outside, TC_ACT_SHOT, &[(DropReason::SourceRange, 1)]);
    });
}

#[test]
fn empty_frontend_drops_with_drop_empty_and_rejects_without() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.frontend(SCOPE_EXTERNAL, LB_IP, 80, TCP, 1, SVC_F_DROP_EMPTY, &[]);
        f.frontend(SCOPE_EXTERNAL, LB_IP, 81, TCP, 2, 0, &[]);
        let dropped = tcp(CLIENT, 40000, LB_IP, 80, SYN);
        f.check("drop-empty", H, &dropped, TC_ACT_SHOT, &[(DropReason::NoLocalEndpoints, 1)]);
        let rejected = tcp(CLIENT, 40000, LB_IP, 81, SYN);
        let out = f.check("reject", H, &rejected, TC_ACT_REDIRECT, &[(DropReason::NoEndpoints, 1)]);
        let p = Parsed::parse(&out);
        assert_eq!(tuple(&p), (LB_IP, 81, CLIENT, 40000), "RST back to the client");
        assert_eq!(p.tcp_flags() & RST, RST, "reset");
    });
}

#[test]
fn scopes_host_program_serves_cluster_ips_workload_program_ignores_external() {
    in_fresh_netns(|| {
        let f = Fixture::new();
        f.frontend(SCOPE_CLUSTER, VIP, 80, TCP, 1, 0, &[(LOCAL_POD, POD_PORT, 0)]);
        f.frontend(SCOPE_EXTERNAL, LB_IP, 80, TCP, 2, 0, &[(LOCAL_POD, POD_PORT, 0)]);
        let out = f.check("clusterip via host", H, &tcp(CLIENT, 40000, VIP, 80, SYN), TC_ACT_OK, &[]);
        assert_eq!(tuple(&Parsed::parse(&out)), (CLIENT, 40000, LOCAL_POD, POD_PORT));
        let ext = tcp(CLIENT, 40001, LB_IP, 80, SYN);
        let (ret, out) = f.run(W, &ext);
        assert_eq!((ret, out), (TC_ACT_OK, ext), "EXTERNAL-only frontend untouched by the workload program");
    });
}
