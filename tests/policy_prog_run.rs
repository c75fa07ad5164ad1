//! BPF_PROG_TEST_RUN tests of the policy stage inside the tc program (root
//! only): fresh unpinned maps per test, seeded with compile_policy's output
//! for the x/y/z model, packets in, verdicts and ep_drops_v1 deltas out.
//! Covers both directions, IP options, fragments, ICMP errors and echo, the
//! node's own traffic, and re-evaluation of an established flow when the
//! policy epoch advances.

mod common;
#[path = "policy_common/model.rs"]
mod model;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use common::packet::*;
use edgeplane::compile_policy::{PolicyCompiled, PolicyNode, compile};
use edgeplane::datapath::{self, Capacities, PinnedMaps, object_map};
use edgeplane::drop_reason::DropReason;
use edgeplane::maps::MapId;
use edgeplane::maps::layout::{CFG_F_POLICY, Config, DIR_EGRESS, DIR_INGRESS};
use edgeplane::model::{Cluster, Protocol};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, ProgramInput};
use model::*;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const HOST: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

const POLICY_MAPS: [MapId; 3] = [MapId::PolicyAllow, MapId::Identities, MapId::LocalEndpoints];

struct Fixture {
    obj: Object,
    pmaps: PinnedMaps,
    cfg: MapHandle,
    drops: MapHandle,
    dropev: MapHandle,
    epoch: u32,
    node: PolicyNode,
    last: PolicyCompiled,
}

impl Fixture {
    fn new(c: &Cluster) -> Fixture {
        let caps = Capacities {
            services: 1024,
            backends: 1024,
            conntrack: 4096,
            affinity: 1024,
            sknat: 1024,
            ..Capacities::default()
        };
        let obj = datapath::load_unpinned(&caps).expect("tc object loads (verifier accepts it)");
        let maps = POLICY_MAPS.iter().map(|m| (*m, object_map(&obj, m.pin_name()).expect("policy map"))).collect();
        let node = PolicyNode {
            node_name: Some(NODE.into()),
            host_ips: BTreeSet::from([IpAddr::V4(HOST)]),
            ..PolicyNode::default()
        };
        let mut f = Fixture {
            cfg: object_map(&obj, "ep_cfg_v1").expect("cfg"),
            drops: object_map(&obj, "ep_drops_v1").expect("drops"),
            dropev: object_map(&obj, "ep_dropev_v1").expect("dropev"),
            obj,
            pmaps: PinnedMaps::new(maps),
            epoch: 41,
            node,
            last: PolicyCompiled::default(),
        };
        f.write_cfg(false);
        f.apply(c);
        f
    }

    fn write_cfg(&self, enabled: bool) {
        let c = Config {
            hairpin_addr: [169, 254, 42, 1],
            policy_epoch: self.epoch,
            flags: if enabled { CFG_F_POLICY } else { 0 },
            applied_objects: 0,
        };
        self.cfg.update(&0u32.to_ne_bytes(), &c.to_bytes(), MapFlags::ANY).expect("cfg");
    }

    /// The daemon's protocol: write the change, switch the epoch, clean up.
    fn apply(&mut self, c: &Cluster) {
        let live = edgeplane::plan::dump_live(&self.pmaps, POLICY_MAPS).expect("dump");
        let out = compile(c, &self.node, &live, self.epoch);
        let plan = edgeplane::plan::plan(&out.maps, &live);
        edgeplane::apply::apply(&plan, &mut self.pmaps).expect("apply policy");
        if let Some(e) = out.switch_epoch {
            self.epoch = e;
        }
        self.write_cfg(out.enabled);
        let live = edgeplane::plan::dump_live(&self.pmaps, POLICY_MAPS).expect("dump");
        let cleanup = compile(c, &self.node, &live, self.epoch);
        edgeplane::apply::apply(&edgeplane::plan::plan(&cleanup.maps, &live), &mut self.pmaps).expect("cleanup");
        self.last = out;
    }

    fn run(&self, input: &[u8]) -> u32 {
        let prog = self.obj.progs_mut().find(|p| p.name() == datapath::TC_PROG).expect("program");
        let mut out = vec![0u8; 2048];
        let inp = ProgramInput { data_in: Some(input), data_out: Some(&mut out), repeat: 1, ..Default::default() };
        prog.test_run(inp).expect("test_run").return_value
    }

    fn drops(&self, r: DropReason) -> u64 {
        let v = self.drops.lookup_percpu(&(r as u32).to_ne_bytes(), MapFlags::ANY).expect("drops").unwrap_or_default();
        v.iter().map(|b| u64::from_ne_bytes(b[..8].try_into().expect("8 bytes"))).sum()
    }

    fn counts(&self) -> (u64, u64, u64) {
        let total: u64 = DropReason::ALL.iter().map(|r| self.drops(*r)).sum();
        (self.drops(DropReason::PolicyIngress), self.drops(DropReason::PolicyEgress), total)
    }

    /// Runs `pkt` and checks the verdict and which drop counter moved.
    fn expect(&self, what: &str, pkt: &[u8], want: Want) {
        let before = self.counts();
        let ret = self.run(pkt);
        let after = self.counts();
        let delta = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        let (verdict, d) = match want {
            Want::Pass => (TC_ACT_OK, (0, 0, 0)),
            Want::DenyIngress => (TC_ACT_SHOT, (1, 0, 1)),
            Want::DenyEgress => (TC_ACT_SHOT, (0, 1, 1)),
        };
        assert_eq!((ret, delta), (verdict, d), "{what}: (verdict, (ingress, egress, all) drop deltas); want {want:?}");
    }

    /// The recorded drop event for this tuple and reason, if any.
    fn drop_event(&self, s: Ipv4Addr, d: Ipv4Addr, dport: u16, reason: DropReason) -> Option<(u8, u32)> {
        (0..256u32).find_map(|slot| {
            let v = self.dropev.lookup(&slot.to_ne_bytes(), MapFlags::ANY).ok()??;
            // struct ep_drop_event: ts 0..8, saddr 8..12, daddr 12..16, sport, dport 18..20,
            // proto 20, reason 21, direction 22, pad, ifindex 24..28, endpoint 28..32.
            let hit = v[8..12] == s.octets()
                && v[12..16] == d.octets()
                && v[18..20] == dport.to_be_bytes()
                && u32::from(v[21]) == reason as u32;
            hit.then(|| (v[22], u32::from_ne_bytes(v[28..32].try_into().expect("4 bytes"))))
        })
    }

    fn endpoint_of(&self, name: &str) -> u32 {
        *self.last.endpoints.iter().find(|(_, n)| n.as_str() == name).expect("endpoint").0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Pass,
    DenyIngress,
    DenyEgress,
}

/// x/a admits only x/b, on TCP and UDP 80; y/a may only talk to namespace z
/// on TCP 80; x/c admits anything from namespace y (every protocol).
fn cluster() -> Cluster {
    let mut c = xyz_cluster();
    c.policies.push(
        Pol::new("x", "a-from-b", sel(&[("pod", "a")]))
            .ingress(rule(vec![pods_peer(Some(sel(&[("pod", "b")])), None)], vec![tcp(80), udp(80)]))
            .build(),
    );
    c.policies.push(
        Pol::new("y", "a-to-z", sel(&[("pod", "a")]))
            .egress_only()
            .egress(rule(vec![pods_peer(None, Some(sel(&[("ns", "z")])))], vec![tcp(80)]))
            .build(),
    );
    c.policies.push(
        Pol::new("x", "c-from-y", sel(&[("pod", "c")]))
            .ingress(rule(vec![pods_peer(None, Some(sel(&[("ns", "y")])))], vec![]))
            .build(),
    );
    c
}

fn syn(s: Ipv4Addr, d: Ipv4Addr, dport: u16) -> Vec<u8> {
    Pkt::tcp(s, 40000, d, dport, SYN).build()
}

#[test]
fn allow_and_deny_in_both_directions() {
    need_root!();
    let f = Fixture::new(&cluster());
    let (xa, xb, xc) = (xyz_ip("x", "a"), xyz_ip("x", "b"), xyz_ip("x", "c"));
    let (ya, yb, zc) = (xyz_ip("y", "a"), xyz_ip("y", "b"), xyz_ip("z", "c"));
    f.expect("x/b -> x/a tcp/80", &syn(xb, xa, 80), Want::Pass);
    f.expect("x/b -> x/a udp/80", &Pkt::udp(xb, 5353, xa, 80, b"hi").build(), Want::Pass);
    f.expect("x/b -> x/a tcp/81 (port not allowed)", &syn(xb, xa, 81), Want::DenyIngress);
    f.expect("y/b -> x/a tcp/80 (peer not allowed)", &syn(yb, xa, 80), Want::DenyIngress);
    f.expect("y/a -> z/c tcp/80", &syn(ya, zc, 80), Want::Pass);
    f.expect("y/a -> x/c tcp/80 (egress to x not allowed)", &syn(ya, xc, 80), Want::DenyEgress);
    f.expect("y/a -> z/c udp/80 (egress only tcp)", &Pkt::udp(ya, 5353, zc, 80, b"hi").build(), Want::DenyEgress);
    f.expect(
        "y/b -> x/c sctp/9 (any protocol from y)",
        &Pkt::new(yb, xc, L4::Sctp { sport: 1, dport: 9, payload: vec![0; 16] }).build(),
        Want::Pass,
    );
    f.expect("z/c -> x/c tcp/80 (not from y)", &syn(zc, xc, 80), Want::DenyIngress);
    f.expect("unlisted external -> x/a", &syn(Ipv4Addr::new(192, 0, 2, 9), xa, 80), Want::DenyIngress);
    f.expect("z/c -> y/b (nobody isolated)", &syn(zc, yb, 80), Want::Pass);

    // The drop events say which pod denied it, and in which direction.
    let (dir, ep) = f.drop_event(yb, xa, 80, DropReason::PolicyIngress).expect("ingress drop event");
    assert_eq!((dir, ep), (DIR_INGRESS, f.endpoint_of("x/a")));
    let (dir, ep) = f.drop_event(ya, xc, 80, DropReason::PolicyEgress).expect("egress drop event");
    assert_eq!((dir, ep), (DIR_EGRESS, f.endpoint_of("y/a")));
}

#[test]
fn replies_of_allowed_flows_pass_and_the_node_is_always_allowed() {
    need_root!();
    let f = Fixture::new(&cluster());
    let (xa, xb, ya) = (xyz_ip("x", "a"), xyz_ip("x", "b"), xyz_ip("y", "a"));
    f.expect("x/b -> x/a syn", &syn(xb, xa, 80), Want::Pass);
    // x/a answers x/b: x/a is ingress-isolated only, and this is a reply anyway.
    f.expect("x/a -> x/b syn-ack", &Pkt::tcp(xa, 80, xb, 40000, SYN | ACK).build(), Want::Pass);
    // y/a (egress-isolated) answering a kubelet probe, and the probe itself.
    f.expect("host -> x/a tcp/8080 (probe)", &syn(HOST, xa, 8080), Want::Pass);
    f.expect("y/a -> host (probe reply)", &Pkt::tcp(ya, 8080, HOST, 40000, SYN | ACK).build(), Want::Pass);
    f.expect("y/a -> other node address", &syn(ya, Ipv4Addr::new(198, 19, 0, 2), 80), Want::DenyEgress);
}

#[test]
fn ip_options_do_not_hide_the_ports() {
    need_root!();
    let f = Fixture::new(&cluster());
    let (xa, xb, yb) = (xyz_ip("x", "a"), xyz_ip("x", "b"), xyz_ip("y", "b"));
    for opts in [vec![1, 1, 1, 0], vec![1; 20], vec![0x94, 4, 0, 0]] {
        let mut p = Pkt::tcp(xb, 40001, xa, 81, SYN);
        p.options = opts.clone();
        f.expect(&format!("x/b -> x/a tcp/81 with options {opts:?}"), &p.build(), Want::DenyIngress);
        let mut p = Pkt::tcp(xb, 40002, xa, 80, SYN);
        p.options = opts.clone();
        f.expect(&format!("x/b -> x/a tcp/80 with options {opts:?}"), &p.build(), Want::Pass);
        let mut p = Pkt::udp(yb, 40003, xa, 80, b"payload");
        p.options = opts;
        f.expect("y/b -> x/a udp/80 with options", &p.build(), Want::DenyIngress);
    }
}

#[test]
fn established_flows_are_reevaluated_when_the_policy_changes() {
    need_root!();
    let mut c = cluster();
    let mut f = Fixture::new(&c);
    let (xa, xb) = (xyz_ip("x", "a"), xyz_ip("x", "b"));
    let data = Pkt::tcp(xb, 40000, xa, 80, ACK).build();
    f.expect("x/b -> x/a syn", &syn(xb, xa, 80), Want::Pass);
    f.expect("x/b -> x/a established", &data, Want::Pass);
    // x/a's policy no longer admits x/b.
    c.policies[0].ingress[0].peers = vec![pods_peer(Some(sel(&[("pod", "c")])), None)];
    f.apply(&c);
    f.expect("x/b -> x/a established, after the change", &data, Want::DenyIngress);
    f.expect("x/b -> x/a established, verdict cached", &data, Want::DenyIngress);
    // And back: the cached deny is re-evaluated too.
    c.policies[0].ingress[0].peers = vec![pods_peer(Some(sel(&[("pod", "b")])), None)];
    f.apply(&c);
    f.expect("x/b -> x/a established, allowed again", &data, Want::Pass);
    // Deleting every policy stops enforcement.
    c.policies.clear();
    f.apply(&c);
    assert!(!f.last.enabled);
    f.expect("y/b -> x/a with no policy", &syn(xyz_ip("y", "b"), xa, 81), Want::Pass);
}

#[test]
fn named_ports_and_port_ranges_in_the_kernel() {
    need_root!();
    let mut c = xyz_cluster();
    for p in c.pods.iter_mut().filter(|p| p.meta.namespace == "z") {
        let n = if p.meta.name == "a" { 8080 } else { 9090 };
        p.container_ports.push(port(Some("web"), n, Protocol::Tcp));
    }
    c.policies.push(Pol::new("z", "web", sel(&[])).ingress(rule(vec![], vec![named(Protocol::Tcp, "web")])).build());
    c.policies
        .push(Pol::new("y", "range", sel(&[])).ingress(rule(vec![], vec![range(Protocol::Udp, 1000, 2047)])).build());
    let f = Fixture::new(&c);
    let (xa, za, zb, ya) = (xyz_ip("x", "a"), xyz_ip("z", "a"), xyz_ip("z", "b"), xyz_ip("y", "a"));
    f.expect("-> z/a:8080 (its web port)", &syn(xa, za, 8080), Want::Pass);
    f.expect("-> z/a:9090 (z/b's web port)", &syn(xa, za, 9090), Want::DenyIngress);
    f.expect("-> z/b:9090", &syn(xa, zb, 9090), Want::Pass);
    for (p, want) in [
        (999, Want::DenyIngress),
        (1000, Want::Pass),
        (1500, Want::Pass),
        (2047, Want::Pass),
        (2048, Want::DenyIngress),
    ] {
        f.expect(&format!("-> y/a udp/{p}"), &Pkt::udp(xa, 5000, ya, p, b"x").build(), want);
    }
}

// ---- packets without a conntrack flow: fragments and ICMP ----------------
// The datapath hands these to ep_policy_untracked() (fragments whose head
// was not seen, ICMP not related to a tracked flow, other protocols).

#[test]
fn fragments_do_not_bypass_policy() {
    need_root!();
    let f = Fixture::new(&cluster());
    let (xa, xb, yb) = (xyz_ip("x", "a"), xyz_ip("x", "b"), xyz_ip("y", "b"));
    // A denied datagram: the head is denied, and so is the tail.
    let denied = Pkt { id: 0x0101, ..Pkt::udp(yb, 4000, xa, 80, &[7u8; 64]) };
    let (head, tail) = denied.fragments(32);
    f.expect("denied datagram, first fragment", &head, Want::DenyIngress);
    f.expect("denied datagram, later fragment", &tail, Want::DenyIngress);
    // Only a tail, its head never seen: no port is known, x/a allows only port 80.
    let stray = Pkt { id: 0x0202, ..Pkt::udp(yb, 4000, xa, 80, &[7u8; 64]) };
    f.expect("stray later fragment", &stray.fragments(32).1, Want::DenyIngress);
    // An allowed datagram passes whole.
    let ok = Pkt { id: 0x0303, ..Pkt::udp(xb, 4000, xa, 80, &[7u8; 64]) };
    let (head, tail) = ok.fragments(32);
    f.expect("allowed datagram, first fragment", &head, Want::Pass);
    f.expect("allowed datagram, later fragment", &tail, Want::Pass);
    // x/c admits every protocol and port from y: a stray tail from y passes.
    let any = Pkt { id: 0x0404, ..Pkt::udp(yb, 4000, xyz_ip("x", "c"), 80, &[7u8; 64]) };
    f.expect("stray tail to an all-ports peer", &any.fragments(32).1, Want::Pass);
}

#[test]
fn icmp_does_not_bypass_policy() {
    need_root!();
    let f = Fixture::new(&cluster());
    let (xa, xb, xc, yb) = (xyz_ip("x", "a"), xyz_ip("x", "b"), xyz_ip("x", "c"), xyz_ip("y", "b"));
    // An ICMP error about a flow nobody tracks is a new packet like any other.
    let quoted = Pkt::udp(xa, 53, yb, 40000, b"q").ip_bytes();
    let unrelated = Pkt::new(yb, xa, L4::Icmp { typ: 3, code: 3, rest: [0; 4], payload: quoted[..28].to_vec() });
    f.expect("icmp port-unreachable about no tracked flow", &unrelated.build(), Want::DenyIngress);
    let echo = Pkt::new(yb, xa, L4::Icmp { typ: 8, code: 0, rest: [0, 1, 0, 1], payload: vec![0; 8] });
    f.expect("ping to an isolated pod", &echo.build(), Want::DenyIngress);
    // Rules without ports admit ICMP too (x/c admits everything from y).
    let echo_c = Pkt::new(yb, xc, L4::Icmp { typ: 8, code: 0, rest: [0, 2, 0, 1], payload: vec![0; 8] });
    f.expect("ping allowed by a rule without ports", &echo_c.build(), Want::Pass);
    // An error about an allowed, tracked flow is related: it passes.
    f.expect("x/b -> x/a udp/80", &Pkt::udp(xb, 5353, xa, 80, b"q").build(), Want::Pass);
    let inner = Pkt::udp(xa, 80, xb, 5353, b"r").ip_bytes();
    let related = Pkt::new(xb, xa, L4::Icmp { typ: 3, code: 3, rest: [0; 4], payload: inner[..28].to_vec() });
    f.expect("icmp error about the tracked flow", &related.build(), Want::Pass);
    // x/a (egress open) pings y/b: the echo reply is a reply, though x/a's
    // ingress rules do not admit ICMP; an unsolicited reply is not.
    let ping = Pkt::new(xa, yb, L4::Icmp { typ: 8, code: 0, rest: [0, 7, 0, 1], payload: vec![0; 8] });
    f.expect("x/a pings y/b", &ping.build(), Want::Pass);
    let pong = Pkt::new(yb, xa, L4::Icmp { typ: 0, code: 0, rest: [0, 7, 0, 1], payload: vec![0; 8] });
    f.expect("y/b answers x/a's ping", &pong.build(), Want::Pass);
    let stray = Pkt::new(yb, xa, L4::Icmp { typ: 0, code: 0, rest: [0, 9, 0, 1], payload: vec![0; 8] });
    f.expect("echo reply nobody asked for", &stray.build(), Want::DenyIngress);
}

#[test]
fn other_ip_protocols_do_not_bypass_policy() {
    need_root!();
    let f = Fixture::new(&cluster());
    let (xa, xc, yb) = (xyz_ip("x", "a"), xyz_ip("x", "c"), xyz_ip("y", "b"));
    // GRE (47): only rules without ports admit it.
    let gre = Pkt::new(yb, xa, L4::Raw { proto: 47, bytes: vec![0; 8] });
    f.expect("gre to an isolated pod", &gre.build(), Want::DenyIngress);
    let gre = Pkt::new(yb, xc, L4::Raw { proto: 47, bytes: vec![0; 8] });
    f.expect("gre allowed by a rule without ports", &gre.build(), Want::Pass);
}
