//! The maps the plan engine manages: their ids, pinned names, key/value
//! layouts (`layout`), the `MapBackend` trait the live maps implement, and
//! `FakeMaps`, an in-memory backend with capacity limits and fault injection.

pub mod fake;
pub mod layout;

use std::collections::BTreeMap;
use std::fmt;

/// Raw entries of one map: key bytes → value bytes, ordered.
pub type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// Maps whose contents are derived from the YAML directory (desired state).
/// Runtime maps (conntrack, affinity, counters) are not planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapId {
    /// ep_be_v1: backend id → address:port/proto.
    Backends,
    /// ep_lbsrc_v1 (LPM): (frontend, client prefix) → allow. Written before
    /// the frontends whose EP_SVC_F_SOURCE_RANGES flag consults them.
    SourceRanges,
    /// ep_svc_v1: (VIP, port, proto, slot) → service (slot 0) or backend id.
    Services,
    // NetworkPolicy maps. Order is make-before-break: allow entries are written
    // before any address maps to the identity they name, and isolation flags
    // switch on last (and off first); see docs/POLICY.md.
    /// ep_pol_v1 (LPM): (subject, peer, dir, proto, port prefix) → allow.
    PolicyAllow,
    /// ep_ident_v1 (LPM): IPv4 prefix → identity.
    Identities,
    /// ep_lep_v1: local isolated pod IPv4 → endpoint id, identity, isolation flags.
    LocalEndpoints,
}

impl MapId {
    pub const ALL: [MapId; 6] = [
        MapId::Backends,
        MapId::SourceRanges,
        MapId::Services,
        MapId::PolicyAllow,
        MapId::Identities,
        MapId::LocalEndpoints,
    ];

    /// The pinned name (bpf/edgeplane.h EP_MAP_*).
    pub fn pin_name(self) -> &'static str {
        match self {
            MapId::Backends => layout::MAP_BE,
            MapId::SourceRanges => layout::MAP_LBSRC,
            MapId::Services => layout::MAP_SVC,
            MapId::PolicyAllow => layout::MAP_POL,
            MapId::Identities => layout::MAP_IDENT,
            MapId::LocalEndpoints => layout::MAP_LEP,
        }
    }

    pub fn key_size(self) -> usize {
        match self {
            MapId::Backends => 4,
            MapId::SourceRanges => layout::LbsrcKey::SIZE,
            MapId::Services => layout::SvcKey::SIZE,
            MapId::PolicyAllow => layout::PolKey::SIZE,
            MapId::Identities => layout::IdentKey::SIZE,
            MapId::LocalEndpoints => 4,
        }
    }

    pub fn value_size(self) -> usize {
        match self {
            MapId::Backends => layout::Backend::SIZE,
            MapId::SourceRanges => layout::LbsrcValue::SIZE,
            MapId::Services => layout::SvcValue::SIZE,
            MapId::PolicyAllow => layout::PolValue::SIZE,
            MapId::Identities => layout::IdentValue::SIZE,
            MapId::LocalEndpoints => layout::LepValue::SIZE,
        }
    }
}

impl fmt::Display for MapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.pin_name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("{op} {map} key {key}: {reason}")]
    Op { op: &'static str, map: MapId, key: String, reason: String },
    #[error("dump {map}: {reason}")]
    Dump { map: MapId, reason: String },
}

/// The live maps, as the plan engine sees them.
pub trait MapBackend {
    fn dump(&self, map: MapId) -> Result<Entries, MapError>;
    fn update(&mut self, map: MapId, key: &[u8], value: &[u8]) -> Result<(), MapError>;
    fn delete(&mut self, map: MapId, key: &[u8]) -> Result<(), MapError>;
    /// max_entries of the map.
    fn capacity(&self, map: MapId) -> usize;
}

/// Human-readable rendering of a key of `map`, for logs and errors.
pub fn render_key(map: MapId, key: &[u8]) -> String {
    match map {
        MapId::Backends => match layout::backend_id_from_key(key) {
            Some(id) => format!("backend#{id}"),
            None => hex(key),
        },
        MapId::SourceRanges => match layout::LbsrcKey::from_bytes(key) {
            Some(k) => format!(
                "{}:{}/{} from {}/{}",
                std::net::Ipv4Addr::from(k.vip),
                u16::from_be_bytes(k.port),
                proto_name(k.proto),
                std::net::Ipv4Addr::from(k.saddr),
                k.prefixlen.saturating_sub(layout::LBSRC_PREFIX_FRONTEND)
            ),
            None => hex(key),
        },
        MapId::Services => match layout::SvcKey::from_bytes(key) {
            Some(k) => format!("{}:{}/{} scope {} slot {}", k.vip(), k.port(), proto_name(k.proto), k.scope, k.slot),
            None => hex(key),
        },
        MapId::PolicyAllow => match layout::PolKey::from_bytes(key) {
            Some(k) => render_pol_key(&k),
            None => hex(key),
        },
        MapId::Identities => match layout::IdentKey::from_bytes(key) {
            Some(k) => format!("{}/{}", k.addr(), k.prefixlen),
            None => hex(key),
        },
        MapId::LocalEndpoints => match layout::lep_addr_from_key(key) {
            Some(a) => a.to_string(),
            None => hex(key),
        },
    }
}

fn render_identity(id: u32) -> String {
    match id {
        layout::IDENT_ANY => "any".into(),
        layout::IDENT_WORLD => "world".into(),
        layout::IDENT_HOST => "host".into(),
        n => format!("id#{n}"),
    }
}

fn render_pol_key(k: &layout::PolKey) -> String {
    let dir = if k.dir == layout::DIR_EGRESS { "egress" } else { "ingress" };
    let what = if k.prefixlen <= layout::POL_PREFIX_ALL_PROTO {
        "all".to_string()
    } else if k.prefixlen <= layout::POL_PREFIX_ALL_PORTS {
        proto_name(k.proto)
    } else {
        format!("{}/{} (port prefix /{})", k.dport(), proto_name(k.proto), k.prefixlen - layout::POL_PREFIX_ALL_PORTS)
    };
    format!("{} {dir} peer {} {what}", render_identity(k.subject), render_identity(k.peer))
}

/// Human-readable rendering of a value of `map`.
pub fn render_value(map: MapId, value: &[u8]) -> String {
    match map {
        MapId::Backends => match layout::Backend::from_bytes(value) {
            Some(b) if b.flags & layout::BE_F_REMOTE != 0 => {
                format!("{}:{}/{} remote", b.addr(), b.port(), proto_name(b.proto))
            }
            Some(b) => format!("{}:{}/{}", b.addr(), b.port(), proto_name(b.proto)),
            None => hex(value),
        },
        MapId::SourceRanges => "allow".into(),
        MapId::Services => match layout::SvcValue::from_bytes(value) {
            Some(v) => format!(
                "backend#{} count {} flags {:#x} svc#{} affinity {}s",
                v.backend_id, v.count, v.flags, v.svc_id, v.affinity_timeout
            ),
            None => hex(value),
        },
        MapId::PolicyAllow => match layout::PolValue::from_bytes(value) {
            Some(v) if v.flags == layout::POL_F_ALLOW | layout::POL_F_PREV_ALLOW => "allow".into(),
            Some(v) => format!(
                "{} from epoch {} ({} before)",
                if v.flags & layout::POL_F_ALLOW != 0 { "allow" } else { "deny" },
                v.switch_epoch,
                if v.flags & layout::POL_F_PREV_ALLOW != 0 { "allow" } else { "deny" }
            ),
            None => hex(value),
        },
        MapId::Identities => match layout::IdentValue::from_bytes(value) {
            Some(v) if v.identity == v.prev_identity => render_identity(v.identity),
            Some(v) => format!(
                "{} from epoch {} ({} before)",
                render_identity(v.identity),
                v.switch_epoch,
                render_identity(v.prev_identity)
            ),
            None => hex(value),
        },
        MapId::LocalEndpoints => match layout::LepValue::from_bytes(value) {
            Some(v) if (v.identity, v.flags) == (v.prev_identity, v.prev_flags) => {
                format!("endpoint#{} {} flags {:#x}", v.endpoint_id, render_identity(v.identity), v.flags)
            }
            Some(v) => format!(
                "endpoint#{} {} flags {:#x} from epoch {} ({} flags {:#x} before)",
                v.endpoint_id,
                render_identity(v.identity),
                v.flags,
                v.switch_epoch,
                render_identity(v.prev_identity),
                v.prev_flags
            ),
            None => hex(value),
        },
    }
}

pub fn proto_name(proto: u8) -> String {
    match proto {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        p => format!("proto{p}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
