//! Rust mirrors of the map keys and values in `bpf/edgeplane.h`.
//!
//! build.rs generates them from the header (no second declaration to keep in
//! step): each `struct ep_*` becomes a `#[repr(C)]` struct with the same
//! fields and explicit padding, its size asserted at compile time against
//! the C `_Static_assert`, and every `#define EP_*` constant (map names,
//! default capacities, flags) a `pub const` without the `EP_` prefix. This
//! file adds what the header cannot say: constructors and accessors.
//! `tests/prog_run_layout.rs` checks the sizes and key offsets against the
//! BTF of the compiled object.
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

// The mirrors and constants themselves, generated from bpf/edgeplane.h.
include!(concat!(env!("OUT_DIR"), "/edgeplane_layout.rs"));

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

// ---- NetworkPolicy (owned by the policy work; bpf/edgeplane.h section of the same name) ----

/// `ep_epoch_new()`: whether the "from `switch_epoch` on" half of a policy
/// value applies at `epoch` (serial-number comparison, so it survives wrap).
pub fn epoch_new(epoch: u32, switch_epoch: u32) -> bool {
    (epoch.wrapping_sub(switch_epoch) as i32) >= 0
}

impl IdentKey {
    pub fn new(addr: Ipv4Addr, prefixlen: u8) -> Self {
        IdentKey { prefixlen: u32::from(prefixlen), addr: addr.octets() }
    }
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }
}

impl IdentValue {
    /// The same identity in both halves.
    pub fn steady(identity: u32) -> Self {
        IdentValue { identity, prev_identity: identity, switch_epoch: 0, _pad0: 0 }
    }
    pub fn at(&self, epoch: u32) -> u32 {
        if epoch_new(epoch, self.switch_epoch) { self.identity } else { self.prev_identity }
    }
}

impl PolKey {
    pub fn dport(&self) -> u16 {
        u16::from_be_bytes(self.dport)
    }
}

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

pub const EV_DROP: u8 = 1;
pub const EV_NEW_FLOW: u8 = 2;

// No BTF carries struct ep_event (a ring buffer has no value type): the
// offsets bpf/edgeplane.h asserts, asserted again on this side.
