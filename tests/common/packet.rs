//! A small packet builder and parser for BPF_PROG_TEST_RUN tests:
//! Ethernet / IPv4 (+options, fragments) / TCP, UDP, SCTP, ICMP, with correct
//! checksums on the way in and checksums verified by recomputation on the
//! way out.
#![allow(dead_code)]

use std::net::Ipv4Addr;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const SCTP: u8 = 132;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// CRC-32C (Castagnoli), as SCTP uses it (stored little-endian).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// One's-complement sum of 16-bit big-endian words (odd byte padded).
pub fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn pseudo(saddr: Ipv4Addr, daddr: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&saddr.octets());
    p.extend_from_slice(&daddr.octets());
    p.push(0);
    p.push(proto);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    sum16(&p, 0)
}

#[derive(Debug, Clone)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
        zero_csum: bool,
    },
    Sctp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    Icmp {
        typ: u8,
        code: u8,
        rest: [u8; 4],
        payload: Vec<u8>,
    },
    /// Already-built L4 bytes (a non-first fragment's slice of a datagram).
    Raw {
        proto: u8,
        bytes: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct Pkt {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub ttl: u8,
    pub id: u16,
    /// Flags (MF = 0x2000) and offset in 8-byte units, host order.
    pub frag: u16,
    pub options: Vec<u8>,
    pub l4: L4,
}

impl Pkt {
    pub fn new(saddr: Ipv4Addr, daddr: Ipv4Addr, l4: L4) -> Pkt {
        Pkt { src_mac: CLIENT_MAC, dst_mac: NODE_MAC, saddr, daddr, ttl: 64, id: 0x1234, frag: 0, options: vec![], l4 }
    }

    pub fn tcp(saddr: Ipv4Addr, sport: u16, daddr: Ipv4Addr, dport: u16, flags: u8) -> Pkt {
        Pkt::new(
            saddr,
            daddr,
            L4::Tcp { sport, dport, seq: 1000, ack: if flags & ACK != 0 { 5000 } else { 0 }, flags, payload: vec![] },
        )
    }

    pub fn udp(saddr: Ipv4Addr, sport: u16, daddr: Ipv4Addr, dport: u16, payload: &[u8]) -> Pkt {
        Pkt::new(saddr, daddr, L4::Udp { sport, dport, payload: payload.to_vec(), zero_csum: false })
    }

    pub fn proto(&self) -> u8 {
        match &self.l4 {
            L4::Tcp { .. } => TCP,
            L4::Udp { .. } => UDP,
            L4::Sctp { .. } => SCTP,
            L4::Icmp { .. } => ICMP,
            L4::Raw { proto, .. } => *proto,
        }
    }

    /// The L4 segment with its checksum filled in.
    pub fn l4_bytes(&self) -> Vec<u8> {
        match &self.l4 {
            L4::Tcp { sport, dport, seq, ack, flags, payload } => {
                let mut b = Vec::new();
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&ack.to_be_bytes());
                b.push(5 << 4);
                b.push(*flags);
                b.extend_from_slice(&64240u16.to_be_bytes());
                b.extend_from_slice(&[0, 0, 0, 0]);
                b.extend_from_slice(payload);
                let c = fold(sum16(&b, pseudo(self.saddr, self.daddr, TCP, b.len())));
                b[16..18].copy_from_slice(&c.to_be_bytes());
                b
            }
            L4::Udp { sport, dport, payload, zero_csum } => {
                let mut b = Vec::new();
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(payload);
                if !zero_csum {
                    let mut c = fold(sum16(&b, pseudo(self.saddr, self.daddr, UDP, b.len())));
                    if c == 0 {
                        c = 0xffff;
                    }
                    b[6..8].copy_from_slice(&c.to_be_bytes());
                }
                b
            }
            L4::Sctp { sport, dport, payload } => {
                let mut b = Vec::new();
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&[0, 0, 0, 1]); // verification tag
                b.extend_from_slice(&[0, 0, 0, 0]); // CRC32c, filled below
                b.extend_from_slice(payload);
                let c = crc32c(&b);
                b[8..12].copy_from_slice(&c.to_le_bytes());
                b
            }
            L4::Icmp { typ, code, rest, payload } => {
                let mut b = vec![*typ, *code, 0, 0];
                b.extend_from_slice(rest);
                b.extend_from_slice(payload);
                let c = fold(sum16(&b, 0));
                b[2..4].copy_from_slice(&c.to_be_bytes());
                b
            }
            L4::Raw { bytes, .. } => bytes.clone(),
        }
    }

    /// IPv4 header + L4 (what an ICMP error quotes).
    pub fn ip_bytes(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        self.ip_with(&l4)
    }

    fn ip_with(&self, l4: &[u8]) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let ihl = 5 + opts.len() / 4;
        let mut h = vec![(4 << 4) | ihl as u8, 0];
        h.extend_from_slice(&((ihl * 4 + l4.len()) as u16).to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&self.frag.to_be_bytes());
        h.push(self.ttl);
        h.push(self.proto());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.saddr.octets());
        h.extend_from_slice(&self.daddr.octets());
        h.extend_from_slice(&opts);
        let c = fold(sum16(&h, 0));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&self.ip_bytes());
        f
    }

    /// The datagram split into two IPv4 fragments at `split` bytes of L4
    /// (a multiple of 8): (first with MF, second with the offset).
    pub fn fragments(&self, split: usize) -> (Vec<u8>, Vec<u8>) {
        let l4 = self.l4_bytes();
        let eth = |ip: Vec<u8>| {
            let mut f = Vec::new();
            f.extend_from_slice(&self.dst_mac);
            f.extend_from_slice(&self.src_mac);
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&ip);
            f
        };
        let first = Pkt { frag: 0x2000, ..self.clone() }.ip_with(&l4[..split]);
        let second = Pkt { frag: (split / 8) as u16, ..self.clone() }.ip_with(&l4[split..]);
        (eth(first), eth(second))
    }
}

/// A parsed output frame, with checksums verified from scratch.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub frag: u16,
    pub tot_len: usize,
    pub ip_csum_ok: bool,
    /// L4 bytes as in the packet (up to tot_len).
    pub l4: Vec<u8>,
}

impl Parsed {
    pub fn parse(frame: &[u8]) -> Parsed {
        assert!(frame.len() >= 34, "frame too short: {} bytes", frame.len());
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let tot_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert!(tot_len <= ip.len(), "tot_len {tot_len} beyond frame ({} bytes of IP)", ip.len());
        Parsed {
            dst_mac: frame[0..6].try_into().expect("6 bytes"),
            src_mac: frame[6..12].try_into().expect("6 bytes"),
            saddr: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            daddr: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            proto: ip[9],
            ttl: ip[8],
            frag: u16::from_be_bytes([ip[6], ip[7]]),
            tot_len,
            ip_csum_ok: fold(sum16(&ip[..ihl], 0)) == 0,
            l4: ip[ihl..tot_len].to_vec(),
        }
    }

    pub fn sport(&self) -> u16 {
        u16::from_be_bytes([self.l4[0], self.l4[1]])
    }
    pub fn dport(&self) -> u16 {
        u16::from_be_bytes([self.l4[2], self.l4[3]])
    }
    pub fn tcp_flags(&self) -> u8 {
        self.l4[13]
    }
    pub fn tcp_seq(&self) -> u32 {
        u32::from_be_bytes(self.l4[4..8].try_into().expect("4 bytes"))
    }
    pub fn tcp_ack(&self) -> u32 {
        u32::from_be_bytes(self.l4[8..12].try_into().expect("4 bytes"))
    }
    pub fn udp_csum(&self) -> u16 {
        u16::from_be_bytes([self.l4[6], self.l4[7]])
    }

    /// L4 checksum verified over the pseudo header (TCP/UDP) or the message (ICMP).
    pub fn l4_csum_ok(&self) -> bool {
        match self.proto {
            TCP => fold(sum16(&self.l4, pseudo(self.saddr, self.daddr, TCP, self.l4.len()))) == 0,
            UDP => {
                self.udp_csum() == 0 || fold(sum16(&self.l4, pseudo(self.saddr, self.daddr, UDP, self.l4.len()))) == 0
            }
            ICMP => fold(sum16(&self.l4, 0)) == 0,
            SCTP => {
                let mut z = self.l4.clone();
                z[8..12].copy_from_slice(&[0; 4]);
                crc32c(&z).to_le_bytes() == self.l4[8..12]
            }
            _ => true,
        }
    }

    /// ICMP errors: the quoted packet (IP header + 8 bytes).
    pub fn icmp_inner(&self) -> Parsed {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        let inner = &self.l4[8..];
        frame.extend_from_slice(inner);
        let ihl = usize::from(inner[0] & 0x0f) * 4;
        // The quote is truncated: parse only what is there.
        let mut p = Parsed::parse_truncated(&frame, ihl);
        p.tot_len = inner.len();
        p
    }

    fn parse_truncated(frame: &[u8], ihl: usize) -> Parsed {
        let ip = &frame[14..];
        Parsed {
            dst_mac: [0; 6],
            src_mac: [0; 6],
            saddr: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            daddr: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            proto: ip[9],
            ttl: ip[8],
            frag: u16::from_be_bytes([ip[6], ip[7]]),
            tot_len: ip.len(),
            ip_csum_ok: fold(sum16(&ip[..ihl], 0)) == 0,
            l4: ip[ihl..].to_vec(),
        }
    }
}

/// Runs `f` on a thread inside a fresh network namespace where the client,
/// local and remote pod prefixes are routed out of a veth (no neighbours:
/// lookups answer NO_NEIGH) and 198.18.3.0/24 is a blackhole.
pub fn in_fresh_netns(f: fn()) {
    if !super::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    std::thread::spawn(move || {
        // SAFETY: plain syscall; unshare(CLONE_NEWNET) affects only this thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        // Children forked from this thread inherit its namespace.
        for args in [
            "link set lo up",
            "link add ep-xt0 type veth peer name ep-xt1",
            "link set ep-xt0 up",
            "link set ep-xt1 up",
            "addr add 198.18.254.1/24 dev ep-xt0",
            "route add 198.18.0.0/24 dev ep-xt0",
            "route add 198.18.1.0/24 dev ep-xt0",
            "route add 198.18.2.0/24 dev ep-xt0",
            "route add blackhole 198.18.3.0/24",
        ] {
            let o = std::process::Command::new("ip").args(args.split(' ')).output().expect("run ip");
            assert!(o.status.success(), "ip {args}: {}", String::from_utf8_lossy(&o.stderr));
        }
        // The FIB helper refuses to route for a device without forwarding (test runs use lo).
        std::fs::write("/proc/sys/net/ipv4/conf/all/forwarding", "1").expect("forwarding on");
        f();
    })
    .join()
    .expect("test thread");
}

/// An ICMP error from `src` to `dst` quoting the first 8 bytes of `about`'s L4.
pub fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, typ: u8, code: u8, about: &Pkt) -> Vec<u8> {
    let mut quote = about.ip_bytes();
    let ihl = usize::from(quote[0] & 0x0f) * 4;
    quote.truncate(ihl + 8);
    let rest = if code == 4 { [0, 0, 0x05, 0xdc] } else { [0; 4] };
    Pkt::new(src, dst, L4::Icmp { typ, code, rest, payload: quote }).build()
}
