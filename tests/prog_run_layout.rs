//! The Rust mirrors in src/maps/layout.rs must have the sizes (and, where
//! it matters for hashing, the field offsets) of the C structs as the
//! compiler laid them out: compared against the skeleton's BTF-generated
//! `types`. No privileges needed.

use std::mem::{offset_of, size_of};

use edgeplane::datapath::skel::tc::types as c;
use edgeplane::maps::layout as r;

macro_rules! same_size {
    ($($c:ty => $r:ty),* $(,)?) => {
        $(assert_eq!(size_of::<$c>(), size_of::<$r>(), "{} vs {}", stringify!($c), stringify!($r));)*
    };
}

#[test]
fn mirrors_match_btf_sizes() {
    same_size!(
        c::ep_svc_key => r::SvcKey,
        c::ep_svc_value => r::SvcValue,
        c::ep_backend => r::Backend,
        c::ep_ct_key => r::CtKey,
        c::ep_ct_value => r::CtValue,
        c::ep_aff_key => r::AffKey,
        c::ep_aff_value => r::AffValue,
        c::ep_sknat_key => r::SknatKey,
        c::ep_sknat_value => r::SknatValue,
        c::ep_config => r::Config,
        c::ep_ident_key => r::IdentKey,
        c::ep_ident_value => r::IdentValue,
        c::ep_pol_key => r::PolKey,
        c::ep_pol_value => r::PolValue,
        c::ep_lep_value => r::LepValue,
        c::ep_node => r::NodeConfig,
        c::ep_lbsrc_key => r::LbsrcKey,
        c::ep_lbsrc_value => r::LbsrcValue,
        c::ep_monitor => r::Monitor,
        c::ep_drop_event => r::DropEvent,
        c::ep_frag_key => r::FragKey,
        c::ep_frag_value => r::FragValue,
    );
}

#[test]
fn key_field_offsets_match() {
    // Hash keys compare bytes: a shifted field is a silent miss.
    assert_eq!(offset_of!(c::ep_svc_key, port), offset_of!(r::SvcKey, port));
    assert_eq!(offset_of!(c::ep_svc_key, proto), offset_of!(r::SvcKey, proto));
    assert_eq!(offset_of!(c::ep_svc_key, scope), offset_of!(r::SvcKey, scope));
    assert_eq!(offset_of!(c::ep_svc_key, slot), offset_of!(r::SvcKey, slot));
    assert_eq!(offset_of!(c::ep_svc_value, count), offset_of!(r::SvcValue, count));
    assert_eq!(offset_of!(c::ep_svc_value, svc_id), offset_of!(r::SvcValue, svc_id));
    assert_eq!(offset_of!(c::ep_svc_value, affinity_timeout), offset_of!(r::SvcValue, affinity_timeout));
    assert_eq!(offset_of!(c::ep_backend, port), offset_of!(r::Backend, port));
    assert_eq!(offset_of!(c::ep_ct_key, dir), offset_of!(r::CtKey, dir));
    assert_eq!(offset_of!(c::ep_ct_value, backend_id), offset_of!(r::CtValue, backend_id));
    assert_eq!(offset_of!(c::ep_ct_value, policy_epoch), offset_of!(r::CtValue, policy_epoch));
    assert_eq!(offset_of!(c::ep_config, flags), offset_of!(r::Config, flags));
    assert_eq!(offset_of!(c::ep_node, flags), offset_of!(r::NodeConfig, flags));
    assert_eq!(offset_of!(c::ep_lbsrc_key, vip), offset_of!(r::LbsrcKey, vip));
    assert_eq!(offset_of!(c::ep_lbsrc_key, port), offset_of!(r::LbsrcKey, port));
    assert_eq!(offset_of!(c::ep_lbsrc_key, proto), offset_of!(r::LbsrcKey, proto));
    assert_eq!(offset_of!(c::ep_lbsrc_key, saddr), offset_of!(r::LbsrcKey, saddr));
    assert_eq!(offset_of!(c::ep_drop_event, reason), 21);
    assert_eq!(offset_of!(c::ep_drop_event, ifindex), 24);
}
