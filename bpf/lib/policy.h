/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h: the Kubernetes NetworkPolicy stage (design: docs/POLICY.md).
 *
 * Packets without a conntrack flow (other IP protocols, ICMP that is not
 * an error about or a reply to a tracked flow, non-first fragments whose
 * head was not seen) go through ep_policy_untracked(): evaluated each time,
 * with the port unknown, so only rules allowing every port of the protocol
 * (or every protocol) admit them. tests/policy_prog_run.rs covers each.
 *
 * REQUEST TO THE DATAPATH OWNER: lib/parse.h returns EP_ACT_PASS for IP
 * protocols other than TCP/UDP/SCTP/ICMP, before ep_process() can send them
 * here, so GRE, ESP, ... reach isolated pods. `default: return EP_CONTINUE;`
 * in its protocol switch fixes it (tested: policy and datapath prog_run
 * suites pass; tests/policy_prog_run.rs other_ip_protocols_* is #[ignore]d
 * until then).
 *
 * The stage is called with ctx->saddr/daddr/dport/proto the flow's final
 * tuple (after service translation). Per call: at most 2 lookups in
 * ep_lep_v1, 2 in ep_ident_v1 and 4 in ep_pol_v1, whatever the number of
 * pods, policies or rules. Every value read has two halves (before / from
 * its switch_epoch): the one for ep_cfg_v1.policy_epoch applies, so a
 * policy change becomes visible all at once (edgeplane.h, docs/POLICY.md).
 */
#ifndef EP_POLICY_H
#define EP_POLICY_H

#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "ctx.h"
#include "drop.h"

/* Longest-prefix identity of an address at @epoch; EP_IDENT_WORLD when none. */
static __always_inline __u32 ep_identity_of(__be32 addr, __u32 epoch)
{
	struct ep_ident_key k = {};
	struct ep_ident_value *v;

	k.prefixlen = 32;
	k.addr = addr;
	v = bpf_map_lookup_elem(&ep_ident_v1, &k);
	if (!v)
		return EP_IDENT_WORLD;
	return ep_epoch_new(epoch, v->switch_epoch) ? v->identity : v->prev_identity;
}

/* The longest matching entry answers, with its half for @epoch. */
static __always_inline int ep_pol_lookup(const struct ep_pol_key *k, __u32 epoch)
{
	struct ep_pol_value *v = bpf_map_lookup_elem(&ep_pol_v1, k);

	if (!v)
		return 0;
	return !!(v->flags & (ep_epoch_new(epoch, v->switch_epoch) ? EP_POL_F_ALLOW : EP_POL_F_PREV_ALLOW));
}

/* An allow entry for the peer's identity, or for any peer. */
static __always_inline int ep_policy_allows(__u32 subject, __u32 peer, __u8 dir, __u8 proto,
					    __be16 dport, __u32 prefixlen, __u32 epoch)
{
	struct ep_pol_key k = {};

	k.prefixlen = prefixlen;
	k.subject = subject;
	k.peer = peer;
	k.dir = dir;
	k.proto = proto;
	k.dport = dport;
	if (ep_pol_lookup(&k, epoch))
		return 1;
	k.peer = EP_IDENT_ANY;
	return ep_pol_lookup(&k, epoch);
}

static __always_inline int ep_policy_stage(struct ep_ctx *ctx)
{
	struct ep_lep_value *src, *dst;
	__u32 epoch = ctx->cfg->policy_epoch;
	__u32 prefixlen = EP_POL_PREFIX_FULL, subject, peer;
	__be16 dport = ctx->dport;
	__u8 verdict = EP_POLICY_ALLOW;
	__u16 flags;
	int ret = EP_CONTINUE;

	ep_stat_inc(EP_STAT_POLICY_EVAL);
	/* A pod cannot block traffic to itself (also hairpin: source is still the pod). */
	if (ctx->saddr == ctx->daddr)
		goto out;
	/*
	 * No usable port: a protocol without ports, or a non-first fragment
	 * whose head we did not see (the datapath passes dport 0). Then only
	 * rules allowing every port of the protocol, or every protocol, match.
	 */
	if ((ctx->proto != EP_PROTO_TCP && ctx->proto != EP_PROTO_UDP && ctx->proto != EP_PROTO_SCTP) ||
	    (ctx->is_fragment && dport == 0)) {
		prefixlen = EP_POL_PREFIX_ALL_PORTS;
		dport = 0;
	}
	src = bpf_map_lookup_elem(&ep_lep_v1, &ctx->saddr);
	if (src) {
		int now = ep_epoch_new(epoch, src->switch_epoch);

		flags = now ? src->flags : src->prev_flags;
		subject = now ? src->identity : src->prev_identity;
		if (flags & EP_LEP_F_EGRESS_ISOLATED) {
			peer = ep_identity_of(ctx->daddr, epoch);
			/* The node itself is always allowed: kubelet probes and their replies. */
			if (peer != EP_IDENT_HOST &&
			    !ep_policy_allows(subject, peer, EP_DIR_EGRESS, ctx->proto, dport, prefixlen, epoch)) {
				verdict = EP_POLICY_DENY_EGRESS;
				ctx->drop_endpoint = src->endpoint_id;
				ret = -EP_DROP_POLICY_EGRESS;
				goto out;
			}
		}
	}
	dst = bpf_map_lookup_elem(&ep_lep_v1, &ctx->daddr);
	if (dst) {
		int now = ep_epoch_new(epoch, dst->switch_epoch);

		flags = now ? dst->flags : dst->prev_flags;
		subject = now ? dst->identity : dst->prev_identity;
		if (flags & EP_LEP_F_INGRESS_ISOLATED) {
			peer = ep_identity_of(ctx->saddr, epoch);
			if (peer != EP_IDENT_HOST &&
			    !ep_policy_allows(subject, peer, EP_DIR_INGRESS, ctx->proto, dport, prefixlen, epoch)) {
				verdict = EP_POLICY_DENY;
				ctx->drop_endpoint = dst->endpoint_id;
				ret = -EP_DROP_POLICY_INGRESS;
			}
		}
	}
out:
	if (ctx->ct) {
		ctx->ct->policy_verdict = verdict;
		ctx->ct->policy_epoch = epoch;
	}
	return ret;
}

/*
 * A packet that has no conntrack flow to cache a verdict in (other
 * protocols, ICMP not related to a tracked flow, a non-first fragment whose
 * head was not seen): evaluated every time, ports unknown.
 */
static __always_inline int ep_policy_untracked(struct ep_ctx *ctx)
{
	if (!(ctx->cfg->flags & EP_CFG_F_POLICY))
		return EP_CONTINUE;
	ctx->ct = NULL;
	ctx->sport = 0;
	ctx->dport = 0;
	if (ctx->proto == EP_PROTO_TCP || ctx->proto == EP_PROTO_UDP || ctx->proto == EP_PROTO_SCTP)
		ctx->is_fragment = 1; /* only reached for fragments: make "ports unknown" explicit */
	return ep_policy_stage(ctx);
}

#endif /* EP_POLICY_H */
