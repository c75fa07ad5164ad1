//! BPF_PROG_TEST_RUN table tests of the tc program (root only): each row
//! seeds fresh, unpinned maps, runs packets through the program and checks
//! the verdict, the output packet (addresses, ports, flags, checksums
//! recomputed here) and the ep_drops_v1 delta.

mod common;

use std::net::Ipv4Addr;

use edgeplane::datapath::{self, Capacities, object_map};
use edgeplane::drop_reason::DropReason;
use edgeplane::maps::layout::{
    Backend, CT_DIR_FORWARD, CT_DIR_REPLY, Config, CtKey, SCOPE_CLUSTER, SVC_F_AFFINITY, SvcKey, SvcValue,
    backend_id_key,
};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, ProgramInput};
use common::packet::*;

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
        let caps = Capacities { services: 1024, backends: 1024, conntrack: 4096, affinity: 1024, sknat: 1024, ..Capacities::default() };
        let obj = datapath::load_unpinned(&caps).expect("tc object loads (verifier accepts it)");
        let svc = object_map(&obj, "ep_svc_v1").expect("ep_svc_v1");
        let be = object_map(&obj, "ep_be_v1").expect("ep_be_v1");
        let ct = object_map(&obj, "ep_ct4_v1").expect("ep_ct4_v1");
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

/// An ICMP error from `src` to `dst` quoting the first 8 bytes of `about`'s L4.
fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, typ: u8, code: u8, about: &Pkt) -> Vec<u8> {
    let mut quote = about.ip_bytes();
    let ihl = usize::from(quote[0] & 0x0f) * 4;
    quote.truncate(ihl + 8);
    let rest = if code == 4 { [0, 0, 0x05, 0xdc] } else { [0; 4] };
    Pkt::new(src, dst, L4::Icmp { typ, code, rest, payload: quote }).build()
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
fn syn_reusing_a_tuple_whose_reply_entry_was_evicted_is_balanced_afresh() {
    need_root!();
    let f = Fixture::new();
    f.service(1, 80, TCP, 0, 0, &[(1, BE1, 8080)]);
    f.run(&Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build());
    // The LRU evicts the reply half only.
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
