//! BPF_PROG_TEST_RUN table tests of the tc program (root only): each row
//! seeds fresh, unpinned maps, runs packets through the program and checks
//! the verdict, the output packet (addresses, ports, flags, checksums
//! recomputed here) and the ep_drops_v1 delta.

mod common;

use std::net::Ipv4Addr;

use common::packet::*;
use edgeplane::datapath::ct_gc::{self, CtTimeouts};
use edgeplane::datapath::{self, Capacities, object_map};
use edgeplane::drop_reason::DropReason;
use edgeplane::drop_reason::StatId;
use edgeplane::maps::layout::{
    Backend, CT_DIR_FORWARD, CT_DIR_REPLY, Config, CtKey, SCOPE_CLUSTER, SVC_F_AFFINITY, SvcKey, SvcValue,
    backend_id_key,
};
use edgeplane::maps::layout::{CT_F_CLOSED, CT_F_CLOSING, CT_F_ESTABLISHED, CT_F_SERVICE, CtValue};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, ProgramInput};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const BE1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const BE2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const BE3: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
const BE4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 13);
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const HAIRPIN: Ipv4Addr = Ipv4Addr::new(169, 254, 42, 1);

struct Fixture {
    obj: Object,
    svc: MapHandle,
    be: MapHandle,
    ct: MapHandle,
    drops: MapHandle,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_conntrack(4096)
    }

    /// `entries` conntrack entries (a flow takes two).
    fn with_conntrack(entries: u32) -> Fixture {
        let caps = Capacities {
            services: 1024,
            backends: 1024,
            conntrack: entries,
            affinity: 1024,
            sknat: 1024,
            ..Capacities::default()
        };
        let obj = datapath::load_unpinned(&caps).expect("tc object loads (verifier accepts it)");
        let svc = object_map(&obj, "ep_svc_v1").expect("ep_svc_v1");
        let be = object_map(&obj, "ep_be_v1").expect("ep_be_v1");
        let ct = object_map(&obj, "ep_ct4_v2").expect("ep_ct4_v2");
        let drops = object_map(&obj, "ep_drops_v1").expect("ep_drops_v1");
        let cfg = object_map(&obj, "ep_cfg_v1").expect("ep_cfg_v1");
        let c = Config { hairpin_addr: HAIRPIN.octets(), ..Config::default() };
        cfg.update(&0u32.to_ne_bytes(), &c.to_bytes(), MapFlags::ANY).expect("cfg");
        Fixture { obj, svc, be, ct, drops }
    }

    fn backend(&self, id: u32, addr: Ipv4Addr, port: u16, proto: u8) {
        self.be
            .update(&backend_id_key(id), &Backend::new(addr, port, proto).to_bytes(), MapFlags::ANY)
            .expect("backend");
    }

    /// A ClusterIP service with backends (id, addr, port) in slots 1..n.
    fn service(&self, svc_id: u32, port: u16, proto: u8, flags: u16, timeout: u32, backends: &[(u32, Ipv4Addr, u16)]) {
        self.service_at(VIP, svc_id, port, proto, flags, timeout, backends);
    }

    #[allow(clippy::too_many_arguments)]
    fn service_at(
        &self,
        vip: Ipv4Addr,
        svc_id: u32,
        port: u16,
        proto: u8,
        flags: u16,
        timeout: u32,
        backends: &[(u32, Ipv4Addr, u16)],
    ) {
        for (slot, (id, addr, bport)) in backends.iter().enumerate() {
            self.backend(*id, *addr, *bport, proto);
            let k = SvcKey::new(vip, port, proto, SCOPE_CLUSTER, slot as u16 + 1);
            let v = SvcValue { backend_id: *id, ..SvcValue::default() };
            self.svc.update(&k.to_bytes(), &v.to_bytes(), MapFlags::ANY).expect("slot");
        }
        let k = SvcKey::new(vip, port, proto, SCOPE_CLUSTER, 0);
        let v = SvcValue { backend_id: 0, count: backends.len() as u16, flags, svc_id, affinity_timeout: timeout };
        self.svc.update(&k.to_bytes(), &v.to_bytes(), MapFlags::ANY).expect("frontend");
    }

    fn run(&self, input: &[u8]) -> (u32, Vec<u8>) {
        let prog = self.obj.progs_mut().find(|p| p.name() == datapath::TC_PROG).expect("program");
        let mut out = vec![0u8; 2048];
        let inp = ProgramInput { data_in: Some(input), data_out: Some(&mut out), repeat: 1, ..Default::default() };
        let o = prog.test_run(inp).expect("test_run");
        let ret = o.return_value;
        let len = o.data.as_ref().map_or(0, |d| d.len());
        out.truncate(len);
        (ret, out)
    }

    fn drops(&self, r: DropReason) -> u64 {
        let v = self.drops.lookup_percpu(&(r as u32).to_ne_bytes(), MapFlags::ANY).expect("drops").unwrap_or_default();
        v.iter().map(|b| u64::from_ne_bytes(b[..8].try_into().expect("8 bytes"))).sum()
    }

    fn all_drops(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL.iter().map(|r| (*r, self.drops(*r))).collect()
    }

    fn ct_has(&self, k: CtKey) -> bool {
        self.ct.lookup(&k.to_bytes(), MapFlags::ANY).expect("ct lookup").is_some()
    }
}

fn ct_key(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16, proto: u8, dir: u8) -> CtKey {
    CtKey {
        saddr: s.octets(),
        daddr: d.octets(),
        sport: sp.to_be_bytes(),
        dport: dp.to_be_bytes(),
        proto,
        dir,
        _pad0: 0,
    }
}

/// What a step expects of the output packet.
#[derive(Default)]
struct Expect {
    saddr: Option<Ipv4Addr>,
    daddr: Option<Ipv4Addr>,
    daddr_in: Option<Vec<Ipv4Addr>>,
    sport: Option<u16>,
    dport: Option<u16>,
    tcp_flags: Option<u8>,
    tcp_ack: Option<u32>,
    tcp_seq: Option<u32>,
    untouched: bool,
    /// A fragment: the L4 checksum covers the whole datagram, not checked here.
    fragment: bool,
    /// Reply sent back out: MACs swapped.
    reflected: bool,
    /// ICMP errors: (type, code) and the quoted tuple (saddr, sport, daddr, dport).
    icmp: Option<(u8, u8)>,
    inner: Option<(Ipv4Addr, u16, Ipv4Addr, u16)>,
}

struct Step {
    /// Map changes made before the packet runs (endpoint removal, ...).
    before: Option<fn(&Fixture)>,
    input: Vec<u8>,
    verdict: u32,
    expect: Expect,
    /// Drop counters that must change by exactly these amounts (others: 0).
    drops: Vec<(DropReason, u64)>,
}

struct Row {
    name: &'static str,
    seed: fn(&Fixture),
    steps: Vec<Step>,
}

fn step(input: Vec<u8>, verdict: u32, expect: Expect) -> Step {
    Step { before: None, input, verdict, expect, drops: vec![] }
}

impl Step {
    fn drops(mut self, d: &[(DropReason, u64)]) -> Step {
        self.drops = d.to_vec();
        self
    }
    fn before(mut self, f: fn(&Fixture)) -> Step {
        self.before = Some(f);
        self
    }
}

fn check_step(row: &str, i: usize, f: &Fixture, s: &Step) -> Vec<u8> {
    if let Some(b) = s.before {
        b(f);
    }
    let before = f.all_drops();
    let (ret, out) = f.run(&s.input);
    let after = f.all_drops();
    let ctx = format!("row {row} step {i}");
    assert_eq!(ret, s.verdict, "{ctx}: verdict");
    for ((r, b), (_, a)) in before.iter().zip(after.iter()) {
        let want = s.drops.iter().find(|(d, _)| d == r).map_or(0, |(_, n)| *n);
        assert_eq!(a - b, want, "{ctx}: ep_drops_v1[{}] delta", r.label());
    }
    if s.expect.untouched {
        assert_eq!(out, s.input, "{ctx}: packet must be untouched");
        return out;
    }
    if ret == TC_ACT_SHOT {
        return out;
    }
    let p = Parsed::parse(&out);
    assert!(p.ip_csum_ok, "{ctx}: IPv4 header checksum");
    let e = &s.expect;
    if !e.fragment {
        assert!(p.l4_csum_ok(), "{ctx}: L4 checksum (proto {})", p.proto);
    }
    if e.reflected {
        assert_eq!(p.dst_mac, CLIENT_MAC, "{ctx}: reply goes back to the client's MAC");
        assert_eq!(p.src_mac, NODE_MAC, "{ctx}: reply comes from the node's MAC");
    }
    if let Some((t, c)) = e.icmp {
        assert_eq!(p.proto, ICMP, "{ctx}: ICMP expected");
        assert_eq!((p.l4[0], p.l4[1]), (t, c), "{ctx}: ICMP type/code");
    }
    if let Some((sa, sp, da, dp)) = e.inner {
        let q = p.icmp_inner();
        assert!(q.ip_csum_ok, "{ctx}: quoted IPv4 header checksum");
        assert_eq!((q.saddr, q.sport(), q.daddr, q.dport()), (sa, sp, da, dp), "{ctx}: quoted tuple");
    }
    if let Some(v) = e.tcp_ack {
        assert_eq!(p.tcp_ack(), v, "{ctx}: tcp ack");
    }
    if let Some(v) = e.tcp_seq {
        assert_eq!(p.tcp_seq(), v, "{ctx}: tcp seq");
    }
    if let Some(a) = e.saddr {
        assert_eq!(p.saddr, a, "{ctx}: saddr");
    }
    if let Some(a) = e.daddr {
        assert_eq!(p.daddr, a, "{ctx}: daddr");
    }
    if let Some(set) = &e.daddr_in {
        assert!(set.contains(&p.daddr), "{ctx}: daddr {} not one of {set:?}", p.daddr);
    }
    if let Some(v) = e.sport {
        assert_eq!(p.sport(), v, "{ctx}: sport");
    }
    if let Some(v) = e.dport {
        assert_eq!(p.dport(), v, "{ctx}: dport");
    }
    if let Some(v) = e.tcp_flags {
        assert_eq!(p.tcp_flags(), v, "{ctx}: tcp flags");
    }
    out
}

fn one_backend_tcp(f: &Fixture) {
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
}
fn one_backend_udp(f: &Fixture) {
    f.service(1, 53, UDP, 0, 0, &[(1, BE1, 5353)]);
}

fn dnat(daddr: Ipv4Addr, dport: u16) -> Expect {
    Expect { saddr: Some(CLIENT), daddr: Some(daddr), dport: Some(dport), ..Expect::default() }
}

fn rows() -> Vec<Row> {
    let syn = Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build();
    let synack = Pkt::new(
        BE1,
        CLIENT,
        L4::Tcp { sport: 8080, dport: 40000, seq: 7000, ack: 1001, flags: SYN | ACK, payload: vec![] },
    )
    .build();
    let udp_q = Pkt::udp(CLIENT, 40001, VIP, 53, b"query").build();
    let udp_r = Pkt::udp(BE1, 5353, CLIENT, 40001, b"answer").build();
    let mut udp_zero = Pkt::udp(CLIENT, 40002, VIP, 53, b"nocsum");
    if let L4::Udp { zero_csum, .. } = &mut udp_zero.l4 {
        *zero_csum = true;
    }
    let mut with_opts = Pkt::tcp(CLIENT, 40003, VIP, 80, SYN);
    with_opts.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    let sctp = Pkt::new(CLIENT, VIP, L4::Sctp { sport: 40004, dport: 9000, payload: vec![0; 16] }).build();
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&0x0806u16.to_be_bytes());
        f.extend_from_slice(&[0u8; 28]);
        f
    };

    vec![
        Row {
            name: "tcp syn to a VIP is DNATed",
            seed: one_backend_tcp,
            steps: vec![step(syn.clone(), TC_ACT_OK, dnat(BE1, 8080))],
        },
        Row {
            name: "tcp reply is reverse-translated to the VIP",
            seed: one_backend_tcp,
            steps: vec![
                step(syn.clone(), TC_ACT_OK, dnat(BE1, 8080)),
                step(
                    synack,
                    TC_ACT_OK,
                    Expect {
                        saddr: Some(VIP),
                        sport: Some(80),
                        daddr: Some(CLIENT),
                        dport: Some(40000),
                        ..Expect::default()
                    },
                ),
                step(Pkt::tcp(CLIENT, 40000, VIP, 80, ACK).build(), TC_ACT_OK, dnat(BE1, 8080)),
            ],
        },
        Row {
            name: "udp hit and reply",
            seed: one_backend_udp,
            steps: vec![
                step(udp_q, TC_ACT_OK, Expect { daddr: Some(BE1), dport: Some(5353), ..Expect::default() }),
                step(udp_r, TC_ACT_OK, Expect { saddr: Some(VIP), sport: Some(53), ..Expect::default() }),
            ],
        },
        Row {
            name: "udp without checksum keeps a zero checksum",
            seed: one_backend_udp,
            steps: vec![step(
                udp_zero.build(),
                TC_ACT_OK,
                Expect { daddr: Some(BE1), dport: Some(5353), ..Expect::default() },
            )],
        },
        Row {
            name: "ipv4 options are skipped correctly",
            seed: one_backend_tcp,
            steps: vec![step(with_opts.build(), TC_ACT_OK, dnat(BE1, 8080))],
        },
        Row {
            name: "miss: not a service, untouched",
            seed: one_backend_tcp,
            steps: vec![
                step(
                    Pkt::tcp(CLIENT, 40000, BE1, 8080, SYN).build(),
                    TC_ACT_OK,
                    Expect { untouched: true, ..Expect::default() },
                ),
                step(
                    Pkt::tcp(CLIENT, 40000, VIP, 81, SYN).build(),
                    TC_ACT_OK,
                    Expect { untouched: true, ..Expect::default() },
                ),
                step(
                    Pkt::udp(CLIENT, 40000, VIP, 80, b"x").build(),
                    TC_ACT_OK,
                    Expect { untouched: true, ..Expect::default() },
                ),
                step(arp, TC_ACT_OK, Expect { untouched: true, ..Expect::default() }),
            ],
        },
        Row {
            name: "sctp with another targetPort: CRC32c updated, reply too",
            seed: |f| f.service(1, 9000, SCTP, 0, 0, &[(1, BE1, 9443)]),
            steps: vec![
                step(
                    Pkt::new(CLIENT, VIP, L4::Sctp { sport: 40005, dport: 9000, payload: (0..203u8).collect() })
                        .build(),
                    TC_ACT_OK,
                    Expect { daddr: Some(BE1), dport: Some(9443), ..Expect::default() },
                ),
                step(
                    Pkt::new(BE1, CLIENT, L4::Sctp { sport: 9443, dport: 40005, payload: vec![7; 64] }).build(),
                    TC_ACT_OK,
                    Expect { saddr: Some(VIP), sport: Some(9000), ..Expect::default() },
                ),
            ],
        },
        Row {
            name: "sctp with port == targetPort: address translated",
            seed: |f| f.service(1, 9000, SCTP, 0, 0, &[(1, BE1, 9000)]),
            steps: vec![step(sctp, TC_ACT_OK, Expect { daddr: Some(BE1), dport: Some(9000), ..Expect::default() })],
        },
        Row {
            name: "no endpoints, tcp syn: RST back out the ingress interface",
            seed: |f| f.service(1, 80, TCP, 0, 0, &[]),
            steps: vec![
                step(
                    syn.clone(),
                    TC_ACT_REDIRECT,
                    Expect {
                        saddr: Some(VIP),
                        sport: Some(80),
                        daddr: Some(CLIENT),
                        dport: Some(40000),
                        tcp_flags: Some(RST | ACK),
                        tcp_ack: Some(1001),
                        reflected: true,
                        ..Expect::default()
                    },
                )
                .drops(&[(DropReason::NoEndpoints, 1)]),
            ],
        },
        Row {
            name: "no endpoints, tcp segment with ack and payload: RST with seq = ack",
            seed: |f| f.service(1, 80, TCP, 0, 0, &[]),
            steps: vec![
                step(
                    Pkt::new(
                        CLIENT,
                        VIP,
                        L4::Tcp {
                            sport: 40000,
                            dport: 80,
                            seq: 1000,
                            ack: 777,
                            flags: ACK | PSH,
                            payload: b"GET /".to_vec(),
                        },
                    )
                    .build(),
                    TC_ACT_REDIRECT,
                    Expect {
                        saddr: Some(VIP),
                        daddr: Some(CLIENT),
                        tcp_flags: Some(RST),
                        tcp_seq: Some(777),
                        reflected: true,
                        ..Expect::default()
                    },
                )
                .drops(&[(DropReason::NoEndpoints, 1)]),
            ],
        },
        Row {
            name: "no endpoints, tcp rst: dropped, never answered with a reset",
            seed: |f| f.service(1, 80, TCP, 0, 0, &[]),
            steps: vec![
                step(Pkt::tcp(CLIENT, 40000, VIP, 80, RST | ACK).build(), TC_ACT_SHOT, Expect::default())
                    .drops(&[(DropReason::NoEndpoints, 1)]),
            ],
        },
        Row {
            name: "no endpoints, udp: ICMP port unreachable quoting the original",
            seed: |f| f.service(1, 53, UDP, 0, 0, &[]),
            steps: vec![
                step(
                    Pkt::udp(CLIENT, 40001, VIP, 53, b"a query of some length, longer than 8 bytes").build(),
                    TC_ACT_REDIRECT,
                    Expect {
                        saddr: Some(VIP),
                        daddr: Some(CLIENT),
                        icmp: Some((3, 3)),
                        inner: Some((CLIENT, 40001, VIP, 53)),
                        reflected: true,
                        ..Expect::default()
                    },
                )
                .drops(&[(DropReason::NoEndpoints, 1)]),
            ],
        },
        Row {
            name: "no endpoints, udp with ip options: quote includes the options",
            seed: |f| f.service(1, 53, UDP, 0, 0, &[]),
            steps: vec![
                step(
                    {
                        let mut p = Pkt::udp(CLIENT, 40001, VIP, 53, b"q");
                        p.options = vec![1, 1, 1, 1, 1, 1, 1, 0];
                        p.build()
                    },
                    TC_ACT_REDIRECT,
                    Expect { icmp: Some((3, 3)), inner: Some((CLIENT, 40001, VIP, 53)), ..Expect::default() },
                )
                .drops(&[(DropReason::NoEndpoints, 1)]),
            ],
        },
        Row {
            name: "hairpin: a pod reaching itself is SNATed to the hairpin address, and back",
            seed: one_backend_tcp,
            steps: vec![
                step(
                    Pkt::tcp(BE1, 40000, VIP, 80, SYN).build(),
                    TC_ACT_OK,
                    Expect {
                        saddr: Some(HAIRPIN),
                        daddr: Some(BE1),
                        dport: Some(8080),
                        sport: Some(40000),
                        ..Expect::default()
                    },
                ),
                step(
                    Pkt::new(
                        BE1,
                        HAIRPIN,
                        L4::Tcp { sport: 8080, dport: 40000, seq: 1, ack: 1001, flags: SYN | ACK, payload: vec![] },
                    )
                    .build(),
                    TC_ACT_OK,
                    Expect {
                        saddr: Some(VIP),
                        sport: Some(80),
                        daddr: Some(BE1),
                        dport: Some(40000),
                        ..Expect::default()
                    },
                ),
                step(
                    Pkt::tcp(BE1, 40000, VIP, 80, ACK).build(),
                    TC_ACT_OK,
                    Expect { saddr: Some(HAIRPIN), daddr: Some(BE1), dport: Some(8080), ..Expect::default() },
                ),
            ],
        },
        Row {
            name: "backend gone, tcp: RST to the client instead of a black hole",
            seed: one_backend_tcp,
            steps: vec![
                step(syn.clone(), TC_ACT_OK, dnat(BE1, 8080)),
                step(
                    Pkt::new(
                        CLIENT,
                        VIP,
                        L4::Tcp { sport: 40000, dport: 80, seq: 1001, ack: 7001, flags: ACK, payload: vec![] },
                    )
                    .build(),
                    TC_ACT_REDIRECT,
                    Expect {
                        saddr: Some(VIP),
                        daddr: Some(CLIENT),
                        tcp_flags: Some(RST),
                        tcp_seq: Some(7001),
                        reflected: true,
                        ..Expect::default()
                    },
                )
                .before(|f| {
                    // The endpoint leaves: backend 1 is replaced by backend 2 in slot 1.
                    f.be.delete(&backend_id_key(1)).expect("delete backend");
                    f.service(1, 80, TCP, 0, 0, &[(2, BE2, 8080)]);
                })
                .drops(&[(DropReason::BackendGone, 1)]),
                // A new connection reusing the tuple is balanced afresh.
                step(syn.clone(), TC_ACT_OK, dnat(BE2, 8080)),
            ],
        },
        Row {
            name: "backend gone, udp: the flow is re-balanced, not left pinned",
            seed: one_backend_udp,
            steps: vec![
                step(
                    Pkt::udp(CLIENT, 40001, VIP, 53, b"q1").build(),
                    TC_ACT_OK,
                    Expect { daddr: Some(BE1), ..Expect::default() },
                ),
                step(
                    Pkt::udp(CLIENT, 40001, VIP, 53, b"q2").build(),
                    TC_ACT_OK,
                    Expect { daddr: Some(BE2), dport: Some(5353), ..Expect::default() },
                )
                .before(|f| {
                    f.be.delete(&backend_id_key(1)).expect("delete backend");
                    f.service(1, 53, UDP, 0, 0, &[(2, BE2, 5353)]);
                }),
                step(
                    Pkt::udp(BE2, 5353, CLIENT, 40001, b"a").build(),
                    TC_ACT_OK,
                    Expect { saddr: Some(VIP), sport: Some(53), ..Expect::default() },
                ),
            ],
        },
        Row {
            name: "icmp port unreachable from the backend is translated back to the VIP",
            seed: one_backend_udp,
            steps: vec![
                step(
                    Pkt::udp(CLIENT, 40001, VIP, 53, b"q").build(),
                    TC_ACT_OK,
                    Expect { daddr: Some(BE1), ..Expect::default() },
                ),
                step(
                    icmp_error(BE1, CLIENT, 3, 3, &Pkt::udp(CLIENT, 40001, BE1, 5353, b"q")),
                    TC_ACT_OK,
                    Expect {
                        saddr: Some(VIP),
                        daddr: Some(CLIENT),
                        icmp: Some((3, 3)),
                        inner: Some((CLIENT, 40001, VIP, 53)),
                        ..Expect::default()
                    },
                ),
            ],
        },
        Row {
            name: "icmp frag-needed from a router is translated, its source kept",
            seed: one_backend_tcp,
            steps: vec![
                step(syn.clone(), TC_ACT_OK, dnat(BE1, 8080)),
                step(
                    icmp_error(ROUTER, CLIENT, 3, 4, &Pkt::tcp(CLIENT, 40000, BE1, 8080, ACK)),
                    TC_ACT_OK,
                    Expect {
                        saddr: Some(ROUTER),
                        daddr: Some(CLIENT),
                        icmp: Some((3, 4)),
                        inner: Some((CLIENT, 40000, VIP, 80)),
                        ..Expect::default()
                    },
                ),
            ],
        },
        Row {
            name: "icmp error from the client about a reply goes to the backend",
            seed: one_backend_udp,
            steps: vec![
                step(
                    Pkt::udp(CLIENT, 40001, VIP, 53, b"q").build(),
                    TC_ACT_OK,
                    Expect { daddr: Some(BE1), ..Expect::default() },
                ),
                step(
                    icmp_error(CLIENT, VIP, 3, 3, &Pkt::udp(VIP, 53, CLIENT, 40001, b"a")),
                    TC_ACT_OK,
                    Expect {
                        saddr: Some(CLIENT),
                        daddr: Some(BE1),
                        icmp: Some((3, 3)),
                        inner: Some((BE1, 5353, CLIENT, 40001)),
                        ..Expect::default()
                    },
                ),
            ],
        },
        Row {
            name: "icmp error about an unknown flow is untouched",
            seed: one_backend_udp,
            steps: vec![step(
                icmp_error(BE1, CLIENT, 3, 3, &Pkt::udp(CLIENT, 40009, BE1, 5353, b"q")),
                TC_ACT_OK,
                Expect { untouched: true, ..Expect::default() },
            )],
        },
        Row {
            name: "truncated IPv4 header is dropped as malformed",
            seed: one_backend_tcp,
            steps: vec![
                step(
                    {
                        let mut b = syn.clone();
                        b[14] = 0x44; // ihl 4 < 5
                        b
                    },
                    TC_ACT_SHOT,
                    Expect::default(),
                )
                .drops(&[(DropReason::Malformed, 1)]),
            ],
        },
    ]
}

#[test]
fn table() {
    need_root!();
    for row in rows() {
        let f = Fixture::new();
        (row.seed)(&f);
        for (i, s) in row.steps.iter().enumerate() {
            check_step(row.name, i, &f, s);
        }
    }
}

fn syn_daddr(f: &Fixture, client: Ipv4Addr, sport: u16) -> Ipv4Addr {
    let (ret, out) = f.run(&Pkt::tcp(client, sport, VIP, 80, SYN).build());
    assert_eq!(ret, TC_ACT_OK);
    let p = Parsed::parse(&out);
    assert!(p.ip_csum_ok && p.l4_csum_ok());
    p.daddr
}

const FOUR: [(u32, Ipv4Addr, u16); 4] = [(1, BE1, 8080), (2, BE2, 8080), (3, BE3, 8080), (4, BE4, 8080)];

#[test]
fn without_affinity_new_flows_spread_over_all_backends() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 80, TCP, 0, 0, &FOUR);
    let seen: std::collections::BTreeSet<_> = (0..64).map(|i| syn_daddr(&f, CLIENT, 41000 + i)).collect();
    // 64 uniform picks miss one of 4 backends with probability ~1e-7.
    assert_eq!(seen.len(), 4, "backends used: {seen:?}");
}

#[test]
fn affinity_pins_a_client_until_its_backend_leaves() {
    need_root!();
    let f = Fixture::new();
    f.service(7, 80, TCP, SVC_F_AFFINITY, 10800, &FOUR);
    let first = syn_daddr(&f, CLIENT, 42000);
    for i in 1..32 {
        assert_eq!(syn_daddr(&f, CLIENT, 42000 + i), first, "flow {i} left the affinity backend");
    }
    // Other clients are balanced independently.
    let others: std::collections::BTreeSet<_> =
        (0..64u8).map(|i| syn_daddr(&f, Ipv4Addr::new(198, 18, 0, 100 + (i % 100)), 43000 + u16::from(i))).collect();
    assert!(others.len() > 1, "affinity must be per client: {others:?}");
    // The pinned backend's slot now holds another backend: affinity moves on.
    let (slot, _) = FOUR.iter().enumerate().find(|(_, b)| b.1 == first).expect("first is one of FOUR");
    let k = SvcKey::new(VIP, 80, TCP, SCOPE_CLUSTER, slot as u16 + 1);
    f.backend(9, Ipv4Addr::new(198, 18, 1, 99), 8080, TCP);
    f.svc
        .update(&k.to_bytes(), &SvcValue { backend_id: 9, ..SvcValue::default() }.to_bytes(), MapFlags::ANY)
        .expect("slot");
    let moved = syn_daddr(&f, CLIENT, 44000);
    assert_ne!(moved, first, "affinity must not follow a backend that left its slot");
    for i in 1..8 {
        assert_eq!(syn_daddr(&f, CLIENT, 44000 + i), moved, "new affinity holds");
    }
}

#[test]
fn fragments_follow_their_first_fragment() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 53, UDP, 0, 0, &[(1, BE1, 5353)]);
    let dgram = Pkt::udp(CLIENT, 40001, VIP, 53, &[0x5a; 40]);
    let (first, second) = dgram.fragments(16);
    let (r1, o1) = f.run(&first);
    let (r2, o2) = f.run(&second);
    assert_eq!((r1, r2), (TC_ACT_OK, TC_ACT_OK));
    let (p1, p2) = (Parsed::parse(&o1), Parsed::parse(&o2));
    assert!(p1.ip_csum_ok && p2.ip_csum_ok, "IPv4 checksums of both fragments");
    assert_eq!((p1.daddr, p1.dport()), (BE1, 5353));
    assert_eq!(p2.daddr, BE1, "the second fragment follows the first");
    assert_eq!(p2.frag, 2, "fragment offset kept");
    // Reassembled, the UDP checksum must verify against the new addresses.
    let mut whole = p1.clone();
    whole.l4.extend_from_slice(&p2.l4);
    assert!(whole.l4_csum_ok(), "reassembled UDP checksum");
    // A fragment of a datagram whose head we never saw is left alone.
    let (_, stray) = Pkt { id: 0x4321, ..dgram.clone() }.fragments(16);
    let (r3, o3) = f.run(&stray);
    assert_eq!(r3, TC_ACT_OK);
    assert_eq!(o3, stray);
}

#[test]
fn reply_tuple_clash_remaps_the_client_port() {
    need_root!();
    // Two ClusterIPs share a backend; the client uses one source port for both
    // (normal: ports are unique per destination). Without remapping, both
    // flows would have the same reply tuple and one would get the other's replies.
    let f = Fixture::new();
    let vip2 = Ipv4Addr::new(198, 19, 0, 20);
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    f.service_at(vip2, 2, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    let (_, o1) = f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    let (_, o2) = f.run(&Pkt::tcp(CLIENT, 40000, vip2, 80, SYN).build());
    let (p1, p2) = (Parsed::parse(&o1), Parsed::parse(&o2));
    assert_eq!((p1.sport(), p1.daddr), (40000, BE1), "first flow keeps its port");
    let alt = p2.sport();
    assert_ne!(alt, 40000, "second flow must get another source port");
    assert!(p2.ip_csum_ok && p2.l4_csum_ok());
    // Replies go back to the right ClusterIP and the client's real port.
    for (port, want) in [(40000, VIP), (alt, vip2)] {
        let r = Pkt::new(
            BE1,
            CLIENT,
            L4::Tcp { sport: 8080, dport: port, seq: 1, ack: 1001, flags: SYN | ACK, payload: vec![] },
        );
        let (ret, out) = f.run(&r.build());
        assert_eq!(ret, TC_ACT_OK);
        let p = Parsed::parse(&out);
        assert!(p.ip_csum_ok && p.l4_csum_ok(), "reply checksums");
        assert_eq!((p.saddr, p.sport(), p.dport()), (want, 80, 40000), "reply to port {port}");
    }
    // Later packets of the second flow keep the remapped port.
    let (_, o3) = f.run(&Pkt::tcp(CLIENT, 40000, vip2, 80, ACK).build());
    assert_eq!(Parsed::parse(&o3).sport(), alt);
    // An ICMP error about the remapped flow quotes the client's real port again.
    let (_, o4) = f.run(&icmp_error(BE1, CLIENT, 3, 3, &Pkt::tcp(CLIENT, alt, BE1, 8080, ACK)));
    let q = Parsed::parse(&o4).icmp_inner();
    assert_eq!((q.saddr, q.sport(), q.daddr, q.dport()), (CLIENT, 40000, vip2, 80));
}

#[test]
fn syn_reusing_a_tuple_whose_reply_entry_is_gone_is_balanced_afresh() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    // The reply half only is gone (removed, or lost in an upgrade).
    f.ct.delete(&ct_key(BE1, 8080, CLIENT, 40000, TCP, CT_DIR_REPLY).to_bytes()).expect("evict reply");
    let (ret, out) = f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    assert_eq!(ret, TC_ACT_OK);
    assert_eq!(Parsed::parse(&out).daddr, BE1);
    assert!(f.ct_has(ct_key(BE1, 8080, CLIENT, 40000, TCP, CT_DIR_REPLY)), "reply entry restored");
}

#[test]
fn with_policy_on_flows_are_tracked_and_still_translated() {
    need_root!();
    let f = Fixture::new();
    let cfg = object_map(&f.obj, "ep_cfg_v1").expect("cfg");
    let c = Config {
        hairpin_addr: HAIRPIN.octets(),
        policy_epoch: 1,
        flags: edgeplane::maps::layout::CFG_F_POLICY,
        applied_objects: 0,
    };
    cfg.update(&0u32.to_ne_bytes(), &c.to_bytes(), MapFlags::ANY).expect("cfg");
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    let (ret, out) = f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    assert_eq!(ret, TC_ACT_OK);
    assert_eq!(Parsed::parse(&out).daddr, BE1);
    // A plain (non-service) flow gets entries too, so its replies are known.
    let (ret, out) = f.run(&Pkt::udp(CLIENT, 40001, BE2, 7000, b"x").build());
    assert_eq!(ret, TC_ACT_OK);
    assert_eq!(Parsed::parse(&out).daddr, BE2, "not translated");
    assert!(f.ct_has(ct_key(CLIENT, 40001, BE2, 7000, UDP, CT_DIR_FORWARD)));
    assert!(f.ct_has(ct_key(BE2, 7000, CLIENT, 40001, UDP, CT_DIR_REPLY)));
    // ICMP echo is tracked by its id; the echo reply is recognised.
    let echo =
        Pkt::new(CLIENT, BE2, L4::Icmp { typ: 8, code: 0, rest: [0x12, 0x34, 0, 1], payload: vec![0; 8] }).build();
    assert_eq!(f.run(&echo).0, TC_ACT_OK);
    assert!(f.ct_has(ct_key(CLIENT, 0x1234, BE2, 0x1234, ICMP, CT_DIR_FORWARD)));
}

#[test]
fn a_closed_flow_frees_its_tuple_for_reuse() {
    need_root!();
    let f = Fixture::new();
    let vip2 = Ipv4Addr::new(198, 19, 0, 20);
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    f.service_at(vip2, 2, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    // The backend closes the first connection (FIN): its tuple becomes reusable.
    let fin = Pkt::new(
        BE1,
        CLIENT,
        L4::Tcp { sport: 8080, dport: 40000, seq: 9, ack: 1001, flags: FIN | ACK, payload: vec![] },
    );
    let (_, out) = f.run(&fin.build());
    assert_eq!(Parsed::parse(&out).saddr, VIP, "FIN still reverse-translated");
    // The same client port towards another ClusterIP on that backend keeps its port.
    let (_, o2) = f.run(&Pkt::tcp(CLIENT, 40000, vip2, 80, SYN).build());
    assert_eq!(Parsed::parse(&o2).sport(), 40000, "no remap needed: the old flow is closed");
    let reply = Pkt::new(
        BE1,
        CLIENT,
        L4::Tcp { sport: 8080, dport: 40000, seq: 1, ack: 1001, flags: SYN | ACK, payload: vec![] },
    );
    let (_, o3) = f.run(&reply.build());
    assert_eq!(Parsed::parse(&o3).saddr, vip2, "replies now belong to the new flow");
    // A new SYN on the first (closed) tuple is balanced afresh and must not steal the live flow's tuple.
    let (_, o4) = f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    let p4 = Parsed::parse(&o4);
    assert_eq!(p4.daddr, BE1);
    assert_ne!(p4.sport(), 40000, "the live flow to {vip2} owns port 40000 at the backend");
    let (_, o5) = f.run(&reply.build());
    assert_eq!(Parsed::parse(&o5).saddr, vip2, "the live flow's replies are untouched");
}

#[test]
fn conntrack_has_both_directions() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    assert!(f.ct_has(ct_key(CLIENT, 40000, VIP, 80, TCP, CT_DIR_FORWARD)));
    assert!(f.ct_has(ct_key(BE1, 8080, CLIENT, 40000, TCP, CT_DIR_REPLY)));
}

/// Cost per packet (not a test of speed: prints numbers for docs/BENCHMARKS.md).
/// `cargo test --release --test prog_run -- --ignored --nocapture per_packet_cost`
#[test]
#[ignore = "benchmark: run explicitly"]
fn per_packet_cost() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 80, TCP, 0, 0, &FOUR);
    f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    let ack = Pkt::tcp(CLIENT, 40000, VIP, 80, ACK).build();
    let (_, out) = f.run(&ack);
    let be = Parsed::parse(&out).daddr;
    let reply =
        Pkt::new(be, CLIENT, L4::Tcp { sport: 8080, dport: 40000, seq: 1, ack: 1001, flags: ACK, payload: vec![] })
            .build();
    let miss = Pkt::tcp(CLIENT, 40000, BE1, 9999, ACK).build();
    let prog = f.obj.progs_mut().find(|p| p.name() == datapath::TC_PROG).expect("program");
    for (name, pkt) in [
        ("established forward (ct hit + backend check + DNAT)", &ack),
        ("reply (rev-NAT)", &reply),
        ("not a service (3 lookups, untouched)", &miss),
    ] {
        let mut out = vec![0u8; 256];
        let inp =
            ProgramInput { data_in: Some(pkt), data_out: Some(&mut out), repeat: 1_000_000, ..Default::default() };
        let o = prog.test_run(inp).expect("test_run");
        println!("{name}: {} ns/packet", o.duration.as_nanos());
    }
}

// ---- conntrack lifetimes: state flags, last_seen, a full table, GC ---------

impl Fixture {
    fn ct_value(&self, k: CtKey) -> CtValue {
        let b = self.ct.lookup(&k.to_bytes(), MapFlags::ANY).expect("ct lookup").expect("entry present");
        CtValue::from_bytes(&b).expect("48-byte value")
    }

    fn set_ct(&self, k: CtKey, v: CtValue) {
        self.ct.update(&k.to_bytes(), &v.to_bytes(), MapFlags::EXIST).expect("ct update");
    }

    fn stat(&self, id: StatId) -> u64 {
        let stats = object_map(&self.obj, "ep_stats_v1").expect("ep_stats_v1");
        let v = stats.lookup_percpu(&(id as u32).to_ne_bytes(), MapFlags::ANY).expect("stats").unwrap_or_default();
        v.iter().map(|b| u64::from_ne_bytes(b[..8].try_into().expect("8 bytes"))).sum()
    }

    /// Age both entries of a flow: last_seen = `secs` seconds before now.
    fn age(&self, keys: &[CtKey], secs: u64) {
        for k in keys {
            let mut v = self.ct_value(*k);
            v.last_seen_ns = monotonic_ns().saturating_sub(secs * 1_000_000_000);
            self.set_ct(*k, v);
        }
    }

    fn gc(&self, t: &CtTimeouts) -> edgeplane::datapath::ct_gc::GcReport {
        let stats = object_map(&self.obj, "ep_stats_v1").expect("ep_stats_v1");
        ct_gc::run(&self.ct, &stats, t, monotonic_ns()).expect("gc pass")
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn tcp_from_backend(be: Ipv4Addr, dport: u16, flags: u8) -> Pkt {
    Pkt::new(be, CLIENT, L4::Tcp { sport: 8080, dport, seq: 1, ack: 1001, flags, payload: vec![] })
}

#[test]
fn tcp_state_follows_flags_in_both_directions() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    let fkey = ct_key(CLIENT, 40000, VIP, 80, TCP, CT_DIR_FORWARD);
    let rkey = ct_key(BE1, 8080, CLIENT, 40000, TCP, CT_DIR_REPLY);
    let before = monotonic_ns();
    f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    let (fv, rv) = (f.ct_value(fkey), f.ct_value(rkey));
    assert_eq!(fv.flags, CT_F_SERVICE, "SYN: tracked, not established");
    assert_eq!(rv.flags & CT_F_ESTABLISHED, 0);
    assert!(fv.last_seen_ns >= before && rv.last_seen_ns >= before, "last_seen_ns set at creation");
    let t = CtTimeouts::default();
    assert_eq!(t.for_flow(TCP, fv.flags, rv.flags), (t.tcp_syn, false), "syn timeout");
    // The backend answers: established.
    f.run(&tcp_from_backend(BE1, 40000, SYN | ACK).build());
    let rv = f.ct_value(rkey);
    assert_eq!(rv.flags & CT_F_ESTABLISHED, CT_F_ESTABLISHED, "a reply marks the flow established");
    assert_eq!(t.for_flow(TCP, f.ct_value(fkey).flags, rv.flags), (t.tcp_established, false));
    // Client FIN: closing on the forward side only (half-closed stays established).
    f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, FIN | ACK).build());
    let fv = f.ct_value(fkey);
    assert_eq!(fv.flags & (CT_F_CLOSING | CT_F_CLOSED), CT_F_CLOSING);
    assert_eq!(t.for_flow(TCP, fv.flags, f.ct_value(rkey).flags), (t.tcp_established, false), "half-closed");
    // Backend FIN: closed both ways.
    let (_, out) = f.run(&tcp_from_backend(BE1, 40000, FIN | ACK).build());
    assert_eq!(Parsed::parse(&out).saddr, VIP, "the FIN is still reverse-translated");
    let rv = f.ct_value(rkey);
    assert_eq!(rv.flags & CT_F_CLOSING, CT_F_CLOSING);
    assert_eq!(t.for_flow(TCP, fv.flags, rv.flags), (t.tcp_closing, true), "FIN both ways: closed");
    // The last ACK still finds the flow and is translated.
    let (_, out) = f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, ACK).build());
    assert_eq!(Parsed::parse(&out).daddr, BE1);
}

#[test]
fn rst_closes_a_flow_at_once() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    f.run(&Pkt::tcp(CLIENT, 40001, VIP, 80, SYN).build());
    f.run(&tcp_from_backend(BE1, 40001, SYN | ACK).build());
    f.run(&tcp_from_backend(BE1, 40001, RST | ACK).build());
    let rv = f.ct_value(ct_key(BE1, 8080, CLIENT, 40001, TCP, CT_DIR_REPLY));
    assert_eq!(rv.flags & (CT_F_CLOSING | CT_F_CLOSED), CT_F_CLOSING | CT_F_CLOSED, "RST: closed");
    // A client RST marks its own side the same way.
    f.run(&Pkt::tcp(CLIENT, 40002, VIP, 80, SYN).build());
    f.run(&Pkt::tcp(CLIENT, 40002, VIP, 80, RST).build());
    let fv = f.ct_value(ct_key(CLIENT, 40002, VIP, 80, TCP, CT_DIR_FORWARD));
    assert_eq!(fv.flags & CT_F_CLOSED, CT_F_CLOSED);
    // A new SYN on the tuple the backend reset is balanced afresh: fresh entries.
    f.run(&Pkt::tcp(CLIENT, 40001, VIP, 80, SYN).build());
    let rv = f.ct_value(ct_key(BE1, 8080, CLIENT, 40001, TCP, CT_DIR_REPLY));
    assert_eq!(rv.flags & (CT_F_CLOSING | CT_F_CLOSED | CT_F_ESTABLISHED), 0, "new connection, new state");
}

#[test]
fn udp_answered_is_a_stream_and_last_seen_is_refreshed() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 53, UDP, 0, 0, &[(1, BE1, 5353)]);
    let fkey = ct_key(CLIENT, 5000, VIP, 53, UDP, CT_DIR_FORWARD);
    let rkey = ct_key(BE1, 5353, CLIENT, 5000, UDP, CT_DIR_REPLY);
    f.run(&Pkt::udp(CLIENT, 5000, VIP, 53, b"q").build());
    let t = CtTimeouts::default();
    assert_eq!(t.for_flow(UDP, f.ct_value(fkey).flags, f.ct_value(rkey).flags), (t.udp, false), "one way");
    f.run(&Pkt::udp(BE1, 5353, CLIENT, 5000, b"a").build());
    assert_eq!(t.for_flow(UDP, f.ct_value(fkey).flags, f.ct_value(rkey).flags), (t.udp_stream, false), "both ways");
    // An idle flow's next packet refreshes last_seen_ns of its own direction.
    f.age(&[fkey, rkey], 100);
    let old = f.ct_value(rkey).last_seen_ns;
    let before = monotonic_ns();
    f.run(&Pkt::udp(CLIENT, 5000, VIP, 53, b"q").build());
    assert!(f.ct_value(fkey).last_seen_ns >= before, "forward refreshed");
    assert_eq!(f.ct_value(rkey).last_seen_ns, old, "reply side untouched by a forward packet");
    f.run(&Pkt::udp(BE1, 5353, CLIENT, 5000, b"a").build());
    assert!(f.ct_value(rkey).last_seen_ns >= before, "reply refreshed");
}

#[test]
fn sctp_abort_and_shutdown_close_the_flow() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 9000, SCTP, 0, 0, &[(1, BE1, 9443)]);
    let chunk = |typ: u8| vec![typ, 0, 0, 4];
    let fkey = ct_key(CLIENT, 40010, VIP, 9000, SCTP, CT_DIR_FORWARD);
    let rkey = ct_key(BE1, 9443, CLIENT, 40010, SCTP, CT_DIR_REPLY);
    f.run(&Pkt::new(CLIENT, VIP, L4::Sctp { sport: 40010, dport: 9000, payload: chunk(1) }).build()); // INIT
    f.run(&Pkt::new(BE1, CLIENT, L4::Sctp { sport: 9443, dport: 40010, payload: chunk(2) }).build()); // INIT ACK
    let t = CtTimeouts::default();
    assert_eq!(t.for_flow(SCTP, f.ct_value(fkey).flags, f.ct_value(rkey).flags), (t.sctp_established, false));
    f.run(&Pkt::new(CLIENT, VIP, L4::Sctp { sport: 40010, dport: 9000, payload: chunk(7) }).build()); // SHUTDOWN
    assert_eq!(f.ct_value(fkey).flags & (CT_F_CLOSING | CT_F_CLOSED), CT_F_CLOSING);
    f.run(&Pkt::new(BE1, CLIENT, L4::Sctp { sport: 9443, dport: 40010, payload: chunk(6) }).build()); // ABORT
    assert_eq!(t.for_flow(SCTP, f.ct_value(fkey).flags, f.ct_value(rkey).flags), (t.sctp_closing, true));
}

#[test]
fn a_full_table_refuses_new_flows_and_keeps_the_tracked_ones() {
    need_root!();
    // Room for 2 flows (4 entries): a hash, not an LRU.
    let f = Fixture::with_conntrack(4);
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    f.service_at(Ipv4Addr::new(198, 19, 0, 53), 2, 53, UDP, 0, 0, &[(2, BE2, 5353)]);
    for port in [40000, 40001] {
        f.run(&Pkt::tcp(CLIENT, port, VIP, 80, SYN).build());
        f.run(&tcp_from_backend(BE1, port, SYN | ACK).build());
    }
    let full_before = f.drops(DropReason::CtFull);
    let failed_before = f.stat(StatId::CtInsertFailed);
    for port in 0..10u16 {
        let (ret, _) = f.run(&Pkt::udp(CLIENT, 6000 + port, Ipv4Addr::new(198, 19, 0, 53), 53, b"q").build());
        assert_eq!(ret, TC_ACT_SHOT, "no room: the new flow is dropped");
    }
    assert_eq!(f.drops(DropReason::CtFull) - full_before, 10, "counted as conntrack-full");
    assert_eq!(f.stat(StatId::CtInsertFailed) - failed_before, 10, "and as conntrack-insert-failed");
    // Both TCP flows are still tracked and translated: nothing was evicted.
    for port in [40000, 40001] {
        assert!(f.ct_has(ct_key(BE1, 8080, CLIENT, port, TCP, CT_DIR_REPLY)), "flow {port} kept");
        let (ret, out) = f.run(&Pkt::tcp(CLIENT, port, VIP, 80, ACK).build());
        assert_eq!((ret, Parsed::parse(&out).daddr), (TC_ACT_OK, BE1));
        let (_, out) = f.run(&tcp_from_backend(BE1, port, ACK).build());
        assert_eq!(Parsed::parse(&out).saddr, VIP);
    }
}

#[test]
fn gc_removes_expired_and_closed_flows_and_keeps_live_ones() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    f.service_at(Ipv4Addr::new(198, 19, 0, 53), 2, 53, UDP, 0, 0, &[(2, BE2, 5353)]);
    let dns = Ipv4Addr::new(198, 19, 0, 53);
    let keys = |proto: u8, sport: u16, vip: Ipv4Addr, vport: u16, be: Ipv4Addr, bport: u16| {
        [
            ct_key(CLIENT, sport, vip, vport, proto, CT_DIR_FORWARD),
            ct_key(be, bport, CLIENT, sport, proto, CT_DIR_REPLY),
        ]
    };
    // An idle established TCP flow (1 h), a closed one (RST, 11 s ago), a
    // one-way UDP flow idle 31 s and one idle 5 s.
    let idle_tcp = keys(TCP, 40000, VIP, 80, BE1, 8080);
    f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    f.run(&tcp_from_backend(BE1, 40000, SYN | ACK).build());
    f.age(&idle_tcp, 3600);
    let closed = keys(TCP, 40001, VIP, 80, BE1, 8080);
    f.run(&Pkt::tcp(CLIENT, 40001, VIP, 80, SYN).build());
    f.run(&tcp_from_backend(BE1, 40001, RST | ACK).build());
    f.age(&closed, 11);
    let old_udp = keys(UDP, 5000, dns, 53, BE2, 5353);
    f.run(&Pkt::udp(CLIENT, 5000, dns, 53, b"q").build());
    f.age(&old_udp, 31);
    let new_udp = keys(UDP, 5001, dns, 53, BE2, 5353);
    f.run(&Pkt::udp(CLIENT, 5001, dns, 53, b"q").build());
    f.age(&new_udp, 5);
    let runs = f.stat(StatId::CtGcRuns);
    let r = f.gc(&CtTimeouts::default());
    assert_eq!((r.scanned, r.deleted_expired, r.deleted_closed), (8, 1, 1), "{r:?}");
    for k in idle_tcp.iter().chain(&new_udp) {
        assert!(f.ct_has(*k), "{k:?} kept");
    }
    for k in closed.iter().chain(&old_udp) {
        assert!(!f.ct_has(*k), "{k:?} removed");
    }
    assert_eq!(f.stat(StatId::CtGcRuns), runs + 1);
    assert_eq!(f.stat(StatId::CtGcExpired), 1);
    assert_eq!(f.stat(StatId::CtGcClosed), 1);
    // The idle TCP flow still forwards after the pass.
    let (_, out) = f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, ACK).build());
    assert_eq!(Parsed::parse(&out).daddr, BE1);
}

/// Cost of a conntrack GC pass over a full 1M-entry map (not a test of speed:
/// prints numbers for the report / docs).
/// `cargo test --release --test prog_run -- --ignored --nocapture gc_cost`
#[test]
#[ignore = "benchmark: run explicitly"]
fn gc_cost() {
    need_root!();
    const ENTRIES: u32 = 1 << 20;
    let caps = Capacities { conntrack: ENTRIES, ..Capacities::default() };
    let obj = datapath::load_unpinned(&caps).expect("tc object loads");
    let ct = object_map(&obj, "ep_ct4_v2").expect("ct");
    let stats = object_map(&obj, "ep_stats_v1").expect("stats");
    let fill = |last_seen_ns: u64| {
        let started = std::time::Instant::now();
        for i in 0..ENTRIES / 2 {
            let client = Ipv4Addr::from(0xc612_0000u32 + (i >> 14)); // 198.18.x.y
            let sport = (i & 0x3fff) as u16 + 1024;
            let fkey = ct_key(client, sport, VIP, 80, TCP, CT_DIR_FORWARD);
            let fval = CtValue {
                nat_addr: BE1.octets(),
                nat_port: 8080u16.to_be_bytes(),
                flags: CT_F_SERVICE,
                last_seen_ns,
                ..CtValue::default()
            };
            let rkey = ct_gc::reply_key_of(&fkey, &fval);
            let rval = CtValue {
                nat_addr: VIP.octets(),
                nat_port: 80u16.to_be_bytes(),
                hairpin_addr: client.octets(),
                flags: CT_F_SERVICE | CT_F_ESTABLISHED,
                last_seen_ns,
                ..CtValue::default()
            };
            ct.update(&fkey.to_bytes(), &fval.to_bytes(), MapFlags::ANY).expect("fwd");
            ct.update(&rkey.to_bytes(), &rval.to_bytes(), MapFlags::ANY).expect("reply");
        }
        println!("filled {ENTRIES} entries in {:?}", started.elapsed());
    };
    let t = CtTimeouts::default();
    // Every flow live (idle 1 s): the pass only reads.
    fill(monotonic_ns() - 1_000_000_000);
    let r = ct_gc::run(&ct, &stats, &t, monotonic_ns()).expect("gc");
    println!("1M entries, all live: {} scanned, {} removed in {:?}", r.scanned, r.deleted_expired, r.elapsed);
    // Every flow idle 5 s with 1 s timeouts (the monotonic clock starts at
    // boot, so "7 h ago" may not exist): the pass removes all.
    let short = CtTimeouts { tcp_established: 1, tcp_syn: 1, tcp_closing: 1, ..CtTimeouts::default() };
    fill(monotonic_ns() - 5_000_000_000);
    let r = ct_gc::run(&ct, &stats, &short, monotonic_ns()).expect("gc");
    println!("1M entries, all expired: {} scanned, {} flows removed in {:?}", r.scanned, r.deleted_expired, r.elapsed);
    assert_eq!(r.deleted_expired, u64::from(ENTRIES / 2));
}
