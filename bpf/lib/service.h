/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * service.h: the first packet of a flow to a service frontend. Source
 * ranges, reject or drop when no endpoint serves it, backend selection
 * (lib/lb.h), SNAT or DSR for external flows to remote endpoints, policy on
 * the final tuple, then both conntrack entries. The packet itself is
 * translated afterwards by the flow stage, as for an established flow.
 */
#ifndef EP_SERVICE_H
#define EP_SERVICE_H

#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "ctx.h"
#include "ct.h"
#include "lb.h"
#include "drop.h"
#include "monitor.h"
#include "policy.h"

/* loadBalancerSourceRanges: whether the client may use this frontend. */
static __always_inline int ep_source_allowed(const struct ep_ctx *ctx)
{
	struct ep_lbsrc_key k = {};

	k.prefixlen = EP_LBSRC_PREFIX_FRONTEND + 32;
	k.vip = ctx->orig_daddr;
	k.port = ctx->orig_dport;
	k.proto = ctx->proto;
	k.saddr = ctx->saddr;
	return bpf_map_lookup_elem(&ep_lbsrc_v1, &k) != 0;
}

/*
 * A new flow from outside (host interface) to an endpoint on another node:
 * DSR when the node has it on and the frontend allows it (external scope,
 * externalTrafficPolicy Cluster) and the header has room for the option;
 * otherwise source NAT to the node address so replies come back here.
 */
static __always_inline int ep_remote_external(struct ep_ctx *ctx, const struct ep_svc_value *svc,
					      struct ep_ct_value *fval)
{
	__u32 zero = 0;
	struct ep_node *node = bpf_map_lookup_elem(&ep_node_v1, &zero);

	if (node && (node->flags & EP_NODE_F_DSR) && (svc->flags & EP_SVC_F_DSR_OK) &&
	    ctx->l4_off - ctx->l3_off == sizeof(struct iphdr)) {
		fval->flags |= EP_CT_F_DSR | EP_CT_F_FIB;
		return EP_CONTINUE;
	}
	if (!node || !node->snat_addr)
		return -EP_DROP_NO_SNAT_ADDR;
	fval->flags |= EP_CT_F_SNAT | EP_CT_F_FIB;
	fval->hairpin_addr = node->snat_addr;
	return EP_CONTINUE;
}

/*
 * A new flow to a service frontend: reject or drop, or select + ct + DNAT.
 * Not inlined: its keys and values live in their own stack frame.
 */
static __attribute__((noinline)) int ep_new_service_flow(struct ep_ctx *ctx, const struct ep_svc_value *svc,
							 __u8 scope)
{
	struct ep_ct_key fkey = {}, rkey = {};
	struct ep_ct_value *fval = ctx->ct, rval;  /* &ctx->ct_new, set by the caller */
	struct ep_lb_choice pick = {};
	__be32 client = ctx->saddr, rdst;
	__u64 now;
	int ret;

	ctx->svc_id = svc->svc_id;  /* names the service in drop events */
	if (ctx->is_fragment)
		return -EP_DROP_FRAGMENT;
	if ((svc->flags & EP_SVC_F_SOURCE_RANGES) && !ep_source_allowed(ctx))
		return -EP_DROP_SOURCE_RANGE;
	if (svc->count == 0) {
		/* Endpoints exist, none here (Local traffic policy): kube-proxy drops. */
		if (svc->flags & EP_SVC_F_DROP_EMPTY)
			return -EP_DROP_NO_LOCAL_ENDPOINTS;
		/* Never answer a reset with a reset (RFC 9293 3.10.7.1): just drop it. */
		if (ctx->proto == EP_PROTO_TCP && (ctx->tcp_flags & EP_TCP_RST))
			return -EP_DROP_NO_ENDPOINTS;
		ep_drop_record(ctx, EP_DROP_NO_ENDPOINTS);
		return EP_ACT_REJECT;
	}
	ret = ep_lb_select(ctx->daddr, ctx->dport, ctx->proto, scope, svc, client, &pick);
	if (ret)
		return ret;

	now = bpf_ktime_get_ns();
	ep_ct_value_init(fval, pick.be.addr, pick.be.port, EP_CT_F_SERVICE, now);
	fval->backend_id = pick.backend_id;
	fval->svc_id = svc->svc_id;
	if (svc->flags & EP_SVC_F_NODE_ADDR)
		fval->flags |= EP_CT_F_FIB;
	if (pick.be.addr == client && !ctx->from_host) {
		/* Hairpin: a local pod reaches itself; make the reply come back to us
		 * (a client from outside that is its own backend is on another node:
		 * the remote case below brings its replies back). */
		fval->flags |= EP_CT_F_HAIRPIN;
		fval->hairpin_addr = ctx->cfg->hairpin_addr;
	} else if (ctx->from_host && (pick.be.flags & EP_BE_F_REMOTE)) {
		ret = ep_remote_external(ctx, svc, fval);
		if (ret)
			return ret;
	}
	rdst = (fval->flags & EP_CT_F_SOURCE_NATED) ? fval->hairpin_addr : client;

	if (ep_policy_enabled(ctx)) {
		ctx->daddr = pick.be.addr;
		ctx->dport = pick.be.port;
		ctx->svc_id = svc->svc_id;
		ret = ep_policy_stage(ctx);
		if (ret)
			return ret;  /* the drop event shows the final tuple */
		ctx->daddr = ctx->orig_daddr;
		ctx->dport = ctx->orig_dport;
	}

	ep_ct_key_fill(&fkey, client, ctx->orig_daddr, ctx->sport, ctx->orig_dport, ctx->proto,
		       EP_CT_DIR_FORWARD);
	ep_ct_key_fill(&rkey, pick.be.addr, rdst, pick.be.port, ctx->sport, ctx->proto,
		       EP_CT_DIR_REPLY);
	/* DSR: the backend node must find the client's own port in the replies. */
	if (!ctx->is_fragment && !(fval->flags & EP_CT_F_DSR)) {
		ret = ep_ct_pick_alt_port(&rkey, client, ctx->orig_daddr, ctx->orig_dport, &fval->alt_port);
		if (ret)
			return ret;
	}
	ep_ct_value_init(&rval, ctx->orig_daddr, ctx->orig_dport, fval->flags, now);
	rval.alt_port = fval->alt_port ? ctx->sport : 0;
	rval.hairpin_addr = client;
	rval.backend_id = pick.backend_id;
	rval.svc_id = svc->svc_id;
	ep_ct_reply_inherit(&rval, fval);
	ret = ep_ct_create(&fkey, fval, &rkey, &rval);
	if (ret)
		return ret;
	ep_stat_inc(EP_STAT_LB_NEW_FLOW);
	ep_monitor_flow(ctx, fval);
	return EP_CONTINUE;  /* the caller translates with ctx->ct, as for established flows */
}

#endif /* EP_SERVICE_H */
