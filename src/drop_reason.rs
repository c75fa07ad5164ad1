//! Drop reasons and event counters, generated from `bpf/edgeplane.h` by
//! build.rs (`DropReason`, `StatId`), with the stable labels used by
//! `edgeplane status`, `edgeplane drops` and metrics. The matches below are
//! exhaustive: a new C enumerator fails the build until it is labelled here.

use std::fmt;

include!(concat!(env!("OUT_DIR"), "/edgeplane_enums.rs"));

impl DropReason {
    /// Stable label (never changes once released).
    pub fn label(self) -> &'static str {
        match self {
            DropReason::None => "none",
            DropReason::NoEndpoints => "no-endpoints",
            DropReason::Malformed => "malformed",
            DropReason::BackendGone => "backend-gone",
            DropReason::CtFull => "conntrack-full",
            DropReason::Fragment => "fragment",
            DropReason::SvcInconsistent => "service-inconsistent",
            DropReason::RejectFailed => "reject-failed",
            DropReason::PolicyIngress => "policy-denied-ingress",
            DropReason::PolicyEgress => "policy-denied-egress",
            DropReason::NatFailed => "nat-failed",
            DropReason::NoLocalEndpoints => "no-local-endpoints",
            DropReason::SourceRange => "source-range-denied",
            DropReason::NoSnatAddr => "no-snat-address",
            DropReason::DsrTooBig => "dsr-too-big",
            DropReason::NoRoute => "no-route",
        }
    }

    /// One line for humans: what happened to the packet.
    pub fn description(self) -> &'static str {
        match self {
            DropReason::None => "not dropped",
            DropReason::NoEndpoints => "service has no usable endpoint: rejected (TCP RST / ICMP port unreachable)",
            DropReason::Malformed => "truncated or inconsistent IPv4 header",
            DropReason::BackendGone => "established TCP flow whose endpoint was removed: reset",
            DropReason::CtFull => "conntrack insert failed",
            DropReason::Fragment => "non-first fragment of a translated datagram whose flow is gone",
            DropReason::SvcInconsistent => "service slot or backend missing in the maps",
            DropReason::RejectFailed => "building the reject reply failed",
            DropReason::PolicyIngress => "denied by the destination pod's ingress policy",
            DropReason::PolicyEgress => "denied by the source pod's egress policy",
            DropReason::NatFailed => "packet rewrite failed",
            DropReason::NoLocalEndpoints => {
                "Local traffic policy and no endpoint on this node: dropped, not rejected (endpoints exist on other nodes)"
            }
            DropReason::SourceRange => "client address outside the service's loadBalancerSourceRanges",
            DropReason::NoSnatAddr => {
                "external flow to a remote endpoint needs source NAT, but the node-ips setting has no IPv4 address"
            }
            DropReason::DsrTooBig => "DSR: the packet with the service address option would exceed the MTU",
            DropReason::NoRoute => "no usable route for the translated packet",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl serde::Serialize for DropReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl StatId {
    pub fn label(self) -> &'static str {
        match self {
            StatId::CtCreated => "conntrack-created",
            StatId::CtDeleted => "conntrack-deleted",
            StatId::LbNewFlow => "lb-new-flows",
            StatId::SockConnect => "socket-connect-translated",
            StatId::SockSendmsg => "socket-sendmsg-translated",
            StatId::Revnat => "reply-reverse-translated",
            StatId::IcmpErrRevnat => "icmp-error-translated",
            StatId::PolicyEval => "policy-evaluations",
            StatId::DropevSeq => "drop-events",
            StatId::CtReused => "conntrack-tuple-reused",
            StatId::CtInsertFailed => "conntrack-insert-failed",
            StatId::CtGcRuns => "conntrack-gc-runs",
            StatId::CtGcExpired => "conntrack-gc-deleted-expired",
            StatId::CtGcClosed => "conntrack-gc-deleted-closed",
        }
    }
}

impl fmt::Display for StatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_values_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.label()), "duplicate label {}", r.label());
            assert_eq!(DropReason::from_u32(*r as u32), Some(*r));
            assert!((*r as u32) < DropReason::SLOTS, "{} outside ep_drops_v1", r.c_name());
        }
        assert_eq!(DropReason::NoEndpoints.label(), "no-endpoints");
        assert_eq!(DropReason::PolicyIngress.label(), "policy-denied-ingress");
        for s in StatId::ALL {
            assert!((*s as u32) < StatId::SLOTS);
        }
    }
}
