//! Rust mirrors of the map keys and values in `bpf/edgeplane.h`.
//!
//! Each mirror is `#[repr(C)]` with the same fields and explicit padding; its
//! size is asserted at compile time against the C `_Static_assert`, and
//! `tests/layout.rs` checks the sizes against the BTF of the compiled object.
//! Network-order fields are kept as byte arrays so no conversion can be
//! forgotten; `to_bytes`/`from_bytes` give the exact bytes the kernel sees.

use std::net::Ipv4Addr;

macro_rules! pod_bytes {
    ($t:ty, $n:expr) => {
        const _: () = assert!(std::mem::size_of::<$t>() == $n);
        impl $t {
            pub const SIZE: usize = $n;
            pub fn to_bytes(&self) -> Vec<u8> {
                // SAFETY: $t is repr(C), made only of integers and byte arrays, with
                // explicit padding fields, so every byte is initialised.
                unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), $n) }.to_vec()
            }
            pub fn from_bytes(b: &[u8]) -> Option<Self> {
                if b.len() != $n {
                    return None;
                }
                // SAFETY: length checked; every bit pattern is a valid value of these
                // plain-integer fields; read_unaligned copes with any alignment.
                Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
            }
        }
    };
}

pub const SCOPE_CLUSTER: u8 = 0;
pub const SCOPE_EXTERNAL: u8 = 1;

pub const SVC_F_AFFINITY: u16 = 0x0001;
pub const SVC_F_TERMINATING: u16 = 0x0002;
pub const SVC_F_DROP_EMPTY: u16 = 0x0004;
pub const SVC_F_SOURCE_RANGES: u16 = 0x0008;
pub const SVC_F_NODE_ADDR: u16 = 0x0010;
pub const SVC_F_DSR_OK: u16 = 0x0020;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SvcKey {
    pub vip: [u8; 4],
    pub port: [u8; 2],
    pub proto: u8,
    pub scope: u8,
    pub slot: u16,
    pub _pad0: u16,
}
pod_bytes!(SvcKey, 12);

impl SvcKey {
    pub fn new(vip: Ipv4Addr, port: u16, proto: u8, scope: u8, slot: u16) -> Self {
        SvcKey { vip: vip.octets(), port: port.to_be_bytes(), proto, scope, slot, _pad0: 0 }
    }
    pub fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.vip)
    }
    pub fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }
    /// The same frontend at another slot.
    pub fn with_slot(&self, slot: u16) -> Self {
        SvcKey { slot, ..*self }
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SvcValue {
    pub backend_id: u32,
    pub count: u16,
    pub flags: u16,
    pub svc_id: u32,
    pub affinity_timeout: u32,
}
pod_bytes!(SvcValue, 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Backend {
    pub addr: [u8; 4],
    pub port: [u8; 2],
    pub proto: u8,
    pub flags: u8,
}
pod_bytes!(Backend, 8);

/// The endpoint is on another node (its nodeName is not this node's `node-name`).
pub const BE_F_REMOTE: u8 = 0x01;

impl Backend {
    pub fn new(addr: Ipv4Addr, port: u16, proto: u8) -> Self {
        Backend { addr: addr.octets(), port: port.to_be_bytes(), proto, flags: 0 }
    }
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }
    pub fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }
}

/// Key of ep_be_v1: the backend id, host order (as the C side's __u32).
pub fn backend_id_key(id: u32) -> Vec<u8> {
    id.to_ne_bytes().to_vec()
}

pub fn backend_id_from_key(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.try_into().ok()?))
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CtKey {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub dir: u8,
    pub _pad0: u16,
}
pod_bytes!(CtKey, 16);

pub const CT_DIR_FORWARD: u8 = 0;
pub const CT_F_SERVICE: u16 = 0x0001;
pub const CT_F_HAIRPIN: u16 = 0x0002;
pub const CT_F_CLOSING: u16 = 0x0004;
pub const CT_F_ESTABLISHED: u16 = 0x0008;
pub const CT_F_CLOSED: u16 = 0x0010;
pub const CT_F_FIB: u16 = 0x0020;
pub const CT_F_DSR: u16 = 0x0040;
pub const CT_F_SNAT: u16 = 0x0080;
/// The client's address was replaced by `hairpin_addr` (hairpin or SNAT).
pub const CT_F_SOURCE_NATED: u16 = CT_F_HAIRPIN | CT_F_SNAT;
pub const CT_DIR_REPLY: u8 = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtValue {
    pub nat_addr: [u8; 4],
    pub hairpin_addr: [u8; 4],
    pub nat_port: [u8; 2],
    /// Client port remapped to avoid a reply-tuple clash (0: none).
    pub alt_port: [u8; 2],
    pub backend_id: u32,
    pub svc_id: u32,
    pub flags: u16,
    pub policy_verdict: u8,
    pub _pad1: u8,
    pub policy_epoch: u32,
    pub created_ns: u64,
    pub last_seen_ns: u64,
}
pod_bytes!(CtValue, 48);

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AffKey {
    pub svc_id: u32,
    pub client: [u8; 4],
}
pod_bytes!(AffKey, 8);

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AffValue {
    pub last_seen_ns: u64,
    pub backend_id: u32,
    pub slot: u16,
    pub _pad0: u16,
}
pod_bytes!(AffValue, 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SknatKey {
    pub cookie: u64,
    pub addr: [u8; 4],
    pub port: [u8; 2],
    pub _pad0: u16,
}
pod_bytes!(SknatKey, 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SknatValue {
    pub vip: [u8; 4],
    pub port: [u8; 2],
    pub _pad0: u16,
}
pod_bytes!(SknatValue, 8);

pub const CFG_F_POLICY: u32 = 0x0001;
pub const CFG_F_INPUT_HELD: u32 = 0x0002;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    pub hairpin_addr: [u8; 4],
    pub policy_epoch: u32,
    pub flags: u32,
    /// Objects in the last applied input (the mass-deletion guard's reference).
    pub applied_objects: u32,
}
pod_bytes!(Config, 16);

pub const NODE_F_DSR: u32 = 0x0001;
pub const NODE_F_HOST_ROUTING: u32 = 0x0002;
pub const NODE_F_SOCKLB_HOST_ONLY: u32 = 0x0004;
pub const NODE_F_SOCKLB_OFF: u32 = 0x0008;
/// ep_ifaces_v1 value: a pod's host-side veth (bpf_redirect_peer reaches the pod).
pub const IFACE_F_WORKLOAD: u32 = 0x1;

/// ep_node_v1 (array, index 0): this node's SNAT address and DSR flag.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeConfig {
    /// First IPv4 of `node-ips`, network order; all zero when there is none.
    pub snat_addr: [u8; 4],
    pub flags: u32,
    /// The node's network namespace cookie (socket-lb: host-only); written
    /// by the datapath, which knows its namespace.
    pub netns_cookie: u64,
}
pod_bytes!(NodeConfig, 16);

/// The frontend part of an ep_lbsrc_v1 key (vip, port, proto, pad) is matched whole.
pub const LBSRC_PREFIX_FRONTEND: u32 = 64;

/// ep_lbsrc_v1 key: (frontend, client prefix) for loadBalancerSourceRanges.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LbsrcKey {
    /// LBSRC_PREFIX_FRONTEND + the source prefix length, host order.
    pub prefixlen: u32,
    pub vip: [u8; 4],
    pub port: [u8; 2],
    pub proto: u8,
    pub _pad0: u8,
    /// Client prefix, network order, host bits cleared.
    pub saddr: [u8; 4],
}
pod_bytes!(LbsrcKey, 16);

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LbsrcValue {
    /// Always 1.
    pub allow: u32,
}
pod_bytes!(LbsrcValue, 4);

// ---- NetworkPolicy (owned by the policy work; bpf/edgeplane.h section of the same name) ----

pub const IDENT_WORLD: u32 = 0;
pub const IDENT_HOST: u32 = 1;
pub const IDENT_FIRST: u32 = 256;
pub const IDENT_ANY: u32 = u32::MAX;

pub const POL_PREFIX_ALL_PROTO: u32 = 72;
pub const POL_PREFIX_ALL_PORTS: u32 = 80;
pub const POL_PREFIX_FULL: u32 = 96;
pub const POL_F_ALLOW: u16 = 0x0001;
pub const POL_F_PREV_ALLOW: u16 = 0x0002;

pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

pub const LEP_F_INGRESS_ISOLATED: u16 = 0x0001;
pub const LEP_F_EGRESS_ISOLATED: u16 = 0x0002;

/// `ep_epoch_new()`: whether the "from `switch_epoch` on" half of a policy
/// value applies at `epoch` (serial-number comparison, so it survives wrap).
pub fn epoch_new(epoch: u32, switch_epoch: u32) -> bool {
    (epoch.wrapping_sub(switch_epoch) as i32) >= 0
}

/// ep_ident_v1 key (LPM): prefix length, then the address in network order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IdentKey {
    pub prefixlen: u32,
    pub addr: [u8; 4],
}
pod_bytes!(IdentKey, 8);

impl IdentKey {
    pub fn new(addr: Ipv4Addr, prefixlen: u8) -> Self {
        IdentKey { prefixlen: u32::from(prefixlen), addr: addr.octets() }
    }
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdentValue {
    pub identity: u32,
    pub prev_identity: u32,
    pub switch_epoch: u32,
    pub _pad0: u32,
}
pod_bytes!(IdentValue, 16);

impl IdentValue {
    /// The same identity in both halves.
    pub fn steady(identity: u32) -> Self {
        IdentValue { identity, prev_identity: identity, switch_epoch: 0, _pad0: 0 }
    }
    pub fn at(&self, epoch: u32) -> u32 {
        if epoch_new(epoch, self.switch_epoch) { self.identity } else { self.prev_identity }
    }
}

/// ep_pol_v1 key (LPM): see `struct ep_pol_key` for the prefix scheme.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PolKey {
    pub prefixlen: u32,
    pub subject: u32,
    pub peer: u32,
    pub dir: u8,
    pub proto: u8,
    pub dport: [u8; 2],
}
pod_bytes!(PolKey, 16);

impl PolKey {
    pub fn dport(&self) -> u16 {
        u16::from_be_bytes(self.dport)
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolValue {
    pub flags: u16,
    pub _pad0: u16,
    pub switch_epoch: u32,
}
pod_bytes!(PolValue, 8);

impl PolValue {
    pub fn steady() -> Self {
        PolValue { flags: POL_F_ALLOW | POL_F_PREV_ALLOW, _pad0: 0, switch_epoch: 0 }
    }
    pub fn at(&self, epoch: u32) -> bool {
        let bit = if epoch_new(epoch, self.switch_epoch) { POL_F_ALLOW } else { POL_F_PREV_ALLOW };
        self.flags & bit != 0
    }
}

/// ep_lep_v1 key: the local pod's IPv4 address, network order.
pub fn lep_key(addr: Ipv4Addr) -> Vec<u8> {
    addr.octets().to_vec()
}

pub fn lep_addr_from_key(b: &[u8]) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LepValue {
    pub endpoint_id: u32,
    pub identity: u32,
    pub prev_identity: u32,
    pub flags: u16,
    pub prev_flags: u16,
    pub switch_epoch: u32,
    pub _pad0: u32,
}
pod_bytes!(LepValue, 24);

impl LepValue {
    /// (identity, isolation flags) in force at `epoch`.
    pub fn at(&self, epoch: u32) -> (u32, u16) {
        if epoch_new(epoch, self.switch_epoch) {
            (self.identity, self.flags)
        } else {
            (self.prev_identity, self.prev_flags)
        }
    }
}
// ---- end NetworkPolicy ----

// ---- ep_events_v1 / ep_monitor_v1: live events for `edgeplane monitor` ----

pub const MON_F_DROPS: u32 = 0x1;
pub const MON_F_FLOWS: u32 = 0x2;
/// How long one renewal of the lease keeps the programs emitting (EP_MONITOR_LEASE_NS).
pub const MONITOR_LEASE_NS: u64 = 3_000_000_000;

/// ep_monitor_v1 (array, index 0): which events to emit, until when.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Monitor {
    /// CLOCK_MONOTONIC deadline of the lease, ns; 0 = off.
    pub until_ns: u64,
    pub flags: u32,
    pub _pad0: u32,
}
pod_bytes!(Monitor, 16);

pub const EV_DROP: u8 = 1;
pub const EV_NEW_FLOW: u8 = 2;

/// One ep_events_v1 record (struct ep_event).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Event {
    pub ts_ns: u64,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub kind: u8,
    pub code: u8,
    pub direction: u8,
    pub ifindex: u32,
    pub endpoint: u32,
    pub nat_addr: [u8; 4],
    pub nat_port: [u8; 2],
    pub ct_flags: u16,
    pub svc_id: u32,
    pub _pad0: u32,
}
pod_bytes!(Event, 48);
// No BTF carries struct ep_event (a ring buffer has no value type): the
// offsets bpf/edgeplane.h asserts, asserted again on this side.
const _: () = assert!(std::mem::offset_of!(Event, proto) == 20);
const _: () = assert!(std::mem::offset_of!(Event, ifindex) == 24);
const _: () = assert!(std::mem::offset_of!(Event, nat_addr) == 32);
const _: () = assert!(std::mem::offset_of!(Event, svc_id) == 40);
