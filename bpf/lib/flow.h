/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * flow.h: the conntrack stage of TCP, UDP and SCTP packets (and tracked ICMP
 * echoes), in the order a packet meets them:
 *
 *   ep_flow_established  forward entry hit: backend still there, tuple not
 *                        reused by a new connection, cached policy verdict
 *   ep_flow_reply        reply entry hit: reverse translation
 *   ep_flow_new          no entry (or a stale one forgotten): a service
 *                        frontend (lib/service.h) or an untranslated flow
 *   ep_flow_forward_out  translate a forward packet by its entry and choose
 *                        how it leaves (established and new flows alike)
 *
 * Each stage runs at most once per packet and only forwards: no jumps back.
 */
#ifndef EP_FLOW_H
#define EP_FLOW_H

#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "ctx.h"
#include "ct.h"
#include "nat.h"
#include "dsr.h"
#include "drop.h"
#include "fib.h"
#include "frag.h"
#include "lb.h"
#include "monitor.h"
#include "policy.h"
#include "service.h"

/* Internal to the flow stage: a stale forward entry was forgotten; balance afresh. */
#define EP_FLOW_AFRESH 100

/* Apply a forward ct entry's translation to the packet. */
static __always_inline int ep_fwd_translate(struct ep_ctx *ctx, const struct ep_ct_value *ct)
{
	int ret;

	if (!(ct->flags & EP_CT_F_SERVICE))
		return EP_CONTINUE;
	if ((ct->flags & EP_CT_F_DSR) && ep_dsr_wants_opt(ctx)) {
		ctx->dsr_insert = 1;
		ctx->dsr_addr = ctx->orig_daddr;
		ctx->dsr_port = ctx->orig_dport;
	}
	if (ct->flags & EP_CT_F_SOURCE_NATED) {
		ret = ep_nat_addr(ctx, EP_NAT_SRC, ct->hairpin_addr);
		if (ret)
			return ret;
	}
	if (ct->alt_port) {
		ret = ep_nat_port(ctx, EP_NAT_SRC, ct->alt_port);
		if (ret)
			return ret;
	}
	return ep_nat(ctx, EP_NAT_DST, ct->nat_addr, ct->nat_port);
}

/* Cached or fresh policy verdict for an established forward flow. */
static __always_inline int ep_fwd_policy(struct ep_ctx *ctx, struct ep_ct_value *ct)
{
	__be32 daddr = ctx->daddr;
	__be16 dport = ctx->dport;
	int ret = EP_CONTINUE;

	if (!ep_policy_enabled(ctx))
		return EP_CONTINUE;
	/* The stage (and a drop event) sees the final tuple: backend, not VIP. */
	if (ct->flags & EP_CT_F_SERVICE) {
		ctx->daddr = ct->nat_addr;
		ctx->dport = ct->nat_port;
	}
	ctx->svc_id = ct->svc_id;
	if (ct->policy_epoch != ctx->cfg->policy_epoch || ct->policy_verdict == EP_POLICY_UNKNOWN)
		ret = ep_policy_stage(ctx);
	if (ret)
		return ret;
	if (ct->policy_verdict == EP_POLICY_DENY)
		return -EP_DROP_POLICY_INGRESS;
	if (ct->policy_verdict == EP_POLICY_DENY_EGRESS)
		return -EP_DROP_POLICY_EGRESS;
	ctx->daddr = daddr;
	ctx->dport = dport;
	return EP_CONTINUE;
}

/*
 * A new flow that is not translated here. Plain flows are tracked only so
 * policy has a cache. The first packet of a DSR flow on the backend node
 * (ctx->dsr_opt: its option names the frontend the client used) is always
 * tracked: its reply entry makes the endpoint's replies come from the
 * frontend and leave by FIB redirect, straight to the client.
 */
static __attribute__((noinline)) int ep_new_untranslated_flow(struct ep_ctx *ctx)
{
	struct ep_ct_key fkey = {}, rkey = {};
	struct ep_ct_value *fval = ctx->ct, rval;  /* &ctx->ct_new, set by the caller */
	__u64 now;
	int ret;

	if (!ctx->dsr_opt && !ep_policy_enabled(ctx))
		return EP_ACT_PASS;
	now = bpf_ktime_get_ns();
	ep_ct_value_init(fval, ctx->daddr, ctx->dport, ctx->dsr_opt ? EP_CT_F_DSR : 0, now);
	if (ep_policy_enabled(ctx)) {
		ret = ep_policy_stage(ctx);
		if (ret)
			return ret;
	}
	ep_ct_key_fill(&fkey, ctx->saddr, ctx->daddr, ctx->sport, ctx->dport, ctx->proto,
		       EP_CT_DIR_FORWARD);
	ep_ct_key_fill(&rkey, ctx->daddr, ctx->saddr, ctx->dport, ctx->sport, ctx->proto,
		       EP_CT_DIR_REPLY);
	if (ctx->dsr_opt) {
		ep_ct_value_init(&rval, ctx->dsr_addr, ctx->dsr_port,
				 EP_CT_F_SERVICE | EP_CT_F_DSR | EP_CT_F_FIB, now);
		rval.hairpin_addr = ctx->saddr;
	} else {
		ep_ct_value_init(&rval, ctx->saddr, ctx->sport, 0, now);
	}
	ep_ct_reply_inherit(&rval, fval);
	ret = ep_ct_create(&fkey, fval, &rkey, &rval);
	if (!ret)
		ep_monitor_flow(ctx, fval);
	if (ctx->dsr_opt) {
		/* Without its reply entry a DSR flow's replies would leave untranslated. */
		if (ret)
			return ret;
		ep_stat_inc(EP_STAT_LB_NEW_FLOW);
	}
	/* A plain flow works without the cache: a full table is no reason to drop. */
	ep_frag_remember(ctx);
	return EP_ACT_PASS;
}

/*
 * A packet whose forward entry is @ct (in the map): EP_FLOW_AFRESH when the
 * entry no longer describes a live flow and was forgotten, or a verdict
 * (reset, drop); EP_CONTINUE when the flow goes on (ctx->ct is set).
 */
static __always_inline int ep_flow_check_forward(struct ep_ctx *ctx, struct ep_ct_key *key,
						 struct ep_ct_value *ct)
{
	__u32 id = ct->backend_id;
	struct ep_backend *be;
	int r;

	if (!(ct->flags & EP_CT_F_SERVICE))
		return EP_CONTINUE;
	be = bpf_map_lookup_elem(&ep_be_v1, &id);
	if (!be || be->addr != ct->nat_addr || be->port != ct->nat_port) {
		/*
		 * The endpoint is gone. A TCP segment of the old connection gets a
		 * reset so the client fails fast; anything else (UDP, SCTP, a TCP
		 * SYN reusing the tuple) forgets the flow and is load-balanced
		 * afresh, so no UDP flow stays pinned.
		 */
		if (ctx->proto == EP_PROTO_TCP && !(ctx->tcp_flags & EP_TCP_SYN) && !ctx->is_fragment) {
			if (ctx->tcp_flags & EP_TCP_RST)
				return -EP_DROP_BACKEND_GONE;
			ep_drop_record(ctx, EP_DROP_BACKEND_GONE);
			return EP_ACT_REJECT;
		}
		ep_ct_delete(key, ct);
		return EP_FLOW_AFRESH;
	}
	/*
	 * A new connection reusing a tracked tuple (TIME_WAIT reuse): its reply
	 * entry must still be ours, or it was removed or it went to a clashing
	 * flow. Then balance afresh. Only SYNs pay this lookup.
	 */
	if (ctx->proto != EP_PROTO_TCP || (ctx->tcp_flags & (EP_TCP_SYN | EP_TCP_ACK)) != EP_TCP_SYN)
		return EP_CONTINUE;
	r = ep_ct_reply_state(key, ct);
	/*
	 * Only the forward entry when the reply entry is another flow's; both
	 * when the old connection was closed (a new connection on a closed
	 * tuple is balanced afresh, as Linux conntrack does after TIME_WAIT).
	 */
	if (r == EP_CT_REPLY_MISSING || r == EP_CT_REPLY_FOREIGN) {
		bpf_map_delete_elem(&ep_ct4_v2, key);
		return EP_FLOW_AFRESH;
	}
	if (r == EP_CT_REPLY_CLOSING || (ct->flags & EP_CT_F_CLOSING)) {
		ep_ct_delete(key, ct);
		return EP_FLOW_AFRESH;
	}
	return EP_CONTINUE;
}

/*
 * Established forward: one lookup, plus the backend check. EP_CONTINUE with
 * ctx->ct set (translate it), EP_CONTINUE with ctx->ct NULL (no entry: maybe
 * a reply), EP_FLOW_AFRESH, or a verdict.
 */
static __always_inline int ep_flow_established(struct ep_ctx *ctx, struct ep_ct_key *key)
{
	struct ep_ct_value *ct = ep_ct_lookup(key);
	int ret;

	if (!ct)
		return EP_CONTINUE;
	ret = ep_flow_check_forward(ctx, key, ct);
	if (ret)
		return ret;
	ep_ct_touch(ct, ep_ct_close_seen(ctx), 0,
		    ctx->proto == EP_PROTO_TCP && (ctx->tcp_flags & (EP_TCP_SYN | EP_TCP_ACK)) == EP_TCP_SYN);
	ctx->ct = ct;
	return ep_fwd_policy(ctx, ct);
}

/* Reply of a tracked flow: restore the frontend as the source. EP_CONTINUE: no entry. */
static __always_inline int ep_flow_reply(struct ep_ctx *ctx, struct ep_ct_key *key)
{
	struct ep_ct_value *ct;
	int ret;

	key->dir = EP_CT_DIR_REPLY;
	ct = ep_ct_lookup(key);
	if (!ct)
		return EP_CONTINUE;
	ctx->is_reply = 1;
	/* A reply: established; a backend's FIN/RST frees its tuple for reuse. */
	ep_ct_touch(ct, ep_ct_close_seen(ctx), 1, 0);
	if (!(ct->flags & EP_CT_F_SERVICE))
		return EP_ACT_PASS;
	ep_frag_remember(ctx);
	if (ct->flags & EP_CT_F_SOURCE_NATED) {
		ret = ep_nat_addr(ctx, EP_NAT_DST, ct->hairpin_addr);
		if (ret)
			return ret;
	}
	if (ct->alt_port) {
		ret = ep_nat_port(ctx, EP_NAT_DST, ct->alt_port);
		if (ret)
			return ret;
	}
	ret = ep_nat(ctx, EP_NAT_SRC, ct->nat_addr, ct->nat_port);
	if (ret)
		return ret;
	ep_stat_inc(EP_STAT_REVNAT);
	return ep_route_verdict(ctx, ct);
}

/*
 * No live entry: a service frontend gets a new translated flow (EP_CONTINUE,
 * ctx->ct = its forward value), anything else an untranslated one.
 */
static __always_inline int ep_flow_new(struct ep_ctx *ctx)
{
	struct ep_svc_value *svc;
	__u8 scope;

	/* Set here, in the frame that owns ctx: callees may not store stack pointers in it. */
	ctx->ct = &ctx->ct_new;
	/* From outside: the external frontend first, then the cluster one. */
	scope = EP_SCOPE_EXTERNAL;
	svc = ctx->from_host ? ep_lb_lookup(ctx->daddr, ctx->dport, ctx->proto, scope) : 0;
	if (!svc) {
		scope = EP_SCOPE_CLUSTER;
		svc = ep_lb_lookup(ctx->daddr, ctx->dport, ctx->proto, scope);
	}
	if (svc)
		return ep_new_service_flow(ctx, svc, scope);
	if (ctx->is_fragment)
		return EP_ACT_UNTRACKED;  /* head seen, flow gone: judge it like a stray fragment */
	return ep_new_untranslated_flow(ctx);
}

/* A forward packet of flow @ct (established or just created): translate, then route. */
static __always_inline int ep_flow_forward_out(struct ep_ctx *ctx, const struct ep_ct_value *ct)
{
	int ret;

	ep_frag_remember(ctx);
	ret = ep_fwd_translate(ctx, ct);
	if (ret)
		return ret;
	return ep_route_verdict(ctx, ct);
}

static __always_inline int ep_flow_stage(struct ep_ctx *ctx)
{
	struct ep_ct_key key = {};
	int ret;

	ep_ct_key_fill(&key, ctx->saddr, ctx->daddr, ctx->sport, ctx->dport, ctx->proto,
		       EP_CT_DIR_FORWARD);
	ret = ep_flow_established(ctx, &key);
	if (ret == EP_CONTINUE && !ctx->ct)
		ret = ep_flow_reply(ctx, &key);
	if ((ret == EP_CONTINUE && !ctx->ct) || ret == EP_FLOW_AFRESH)
		ret = ep_flow_new(ctx);
	if (ret == EP_CONTINUE && ctx->ct)
		ret = ep_flow_forward_out(ctx, ctx->ct);
	return ret;
}

#endif /* EP_FLOW_H */
