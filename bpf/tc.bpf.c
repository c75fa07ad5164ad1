// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tc.bpf.c: the service data plane on the ingress of workload (pod veth) and
 * host (uplink) interfaces. TCX where the kernel has it; the same program is
 * attached through clsact/cls_bpf (direct-action) otherwise.
 *
 * parse -> ICMP error rev-NAT | fragment ports -> conntrack (forward hit:
 * backend check, policy epoch, DNAT; reply hit: rev-NAT) -> service lookup
 * (source ranges, reject or drop when empty, select, SNAT or DSR for external
 * flows to remote endpoints, policy, ct create, DNAT) -> DSR flow learnt
 * from its option -> plain flow (ct only when policy is on). One exit counts
 * drops; flows whose packets carry a node address leave by FIB redirect.
 *
 * Two entry points: ep_tc_ingress for workload (pod) interfaces and
 * ep_tc_host for host (uplink) interfaces, where external frontends
 * (NodePort, LoadBalancer, external IPs) are looked up first and DSR
 * packets from other nodes are accepted.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "edgeplane.h"
#include "maps.h"
#include "lib/ctx.h"
#include "lib/parse.h"
#include "lib/drop.h"
#include "lib/csum.h"
#include "lib/nat.h"
#include "lib/ct.h"
#include "lib/lb.h"
#include "lib/reject.h"
#include "lib/icmp.h"
#include "lib/policy.h"
#include "lib/fib.h"
#include "lib/dsr.h"

static __always_inline int ep_policy_enabled(const struct ep_ctx *ctx)
{
	return ctx->cfg->flags & EP_CFG_F_POLICY;
}

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

#define EP_ALT_PORT_TRIES 8
#define EP_ALT_PORT_BASE  32768  /* remapped source ports: 32768..65535 */

/*
 * The reply tuple (backend, client, backend port, client port) of a new flow
 * can already belong to another live flow: the same client port used towards
 * two ClusterIPs that share a backend (port reuse across destinations is
 * normal). Replies would then be sent to the wrong socket. Like Linux NAT,
 * pick another source port for the new flow instead; 0 when none is needed.
 */
static __always_inline int ep_pick_alt_port(const struct ep_ctx *ctx, struct ep_ct_key *rkey,
					    __be16 *alt)
{
	struct ep_ct_value *other;
	int i;

	*alt = 0;
	other = ep_ct_lookup(rkey);
	/*
	 * Free: no entry, the stale reply entry of this same flow, or the entry
	 * of a TCP flow the backend already closed (closed flows must not hold
	 * their tuple until the garbage collector removes them).
	 */
	if (!other)
		return 0;
	if ((other->flags & EP_CT_F_CLOSING) ||
	    (other->nat_addr == ctx->orig_daddr && other->nat_port == ctx->orig_dport &&
	     other->hairpin_addr == ctx->saddr && !other->alt_port)) {
		ep_stat_inc(EP_STAT_CT_REUSED);
		return 0;
	}
	for (i = 0; i < EP_ALT_PORT_TRIES; i++) {
		__u16 p = EP_ALT_PORT_BASE + (bpf_get_prandom_u32() & 0x7fff);

		rkey->dport = bpf_htons(p);
		other = ep_ct_lookup(rkey);
		if (!other || (other->flags & EP_CT_F_CLOSING)) {
			if (other)
				ep_stat_inc(EP_STAT_CT_REUSED);
			*alt = rkey->dport;
			return 0;
		}
	}
	return -EP_DROP_CT_FULL;
}

/*
 * How a translated packet of flow @ct leaves: by FIB redirect when the flow
 * needs it (external flows), or when host routing is on (then a redirect
 * that cannot be right falls back to the stack); else through the stack.
 */
static __always_inline int ep_route_verdict(struct ep_ctx *ctx, const struct ep_ct_value *ct)
{
	__u32 zero = 0;
	struct ep_node *node;

	if (ct->flags & EP_CT_F_FIB)
		return EP_ACT_FIB;
	if (!(ct->flags & EP_CT_F_SERVICE))
		return EP_ACT_PASS;
	node = bpf_map_lookup_elem(&ep_node_v1, &zero);
	if (!node || !(node->flags & EP_NODE_F_HOST_ROUTING))
		return EP_ACT_PASS;
	ctx->fib_optional = 1;
	return EP_ACT_FIB;
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

/* Remember a first fragment's ports so later fragments find the flow. */
static __always_inline void ep_frag_remember(const struct ep_ctx *ctx)
{
	struct ep_frag_key k = {};
	struct ep_frag_value v = {};

	if (!ctx->first_fragment)
		return;
	k.saddr = ctx->saddr;
	k.daddr = ctx->orig_daddr;
	k.id = ctx->ip_id;
	k.proto = ctx->proto;
	v.sport = ctx->sport;
	v.dport = ctx->orig_dport;
	bpf_map_update_elem(&ep_frag4_v1, &k, &v, BPF_ANY);
}

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
	struct ep_ct_value *fval = ctx->ct, rval = {};  /* &ctx->ct_new, set by the caller */
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

	__builtin_memset(fval, 0, sizeof(*fval));
	now = bpf_ktime_get_ns();
	fval->nat_addr = pick.be.addr;
	fval->nat_port = pick.be.port;
	fval->backend_id = pick.backend_id;
	fval->svc_id = svc->svc_id;
	fval->flags = EP_CT_F_SERVICE;
	fval->created_ns = now;
	fval->last_seen_ns = now;
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
		ret = ep_pick_alt_port(ctx, &rkey, &fval->alt_port);
		if (ret)
			return ret;
		rval.alt_port = fval->alt_port ? ctx->sport : 0;
	}
	rval.nat_addr = ctx->orig_daddr;
	rval.nat_port = ctx->orig_dport;
	rval.hairpin_addr = client;
	rval.backend_id = pick.backend_id;
	rval.svc_id = svc->svc_id;
	rval.flags = fval->flags;
	rval.policy_verdict = fval->policy_verdict;
	rval.policy_epoch = fval->policy_epoch;
	rval.created_ns = now;
	rval.last_seen_ns = now;
	ret = ep_ct_create(&fkey, fval, &rkey, &rval);
	if (ret)
		return ret;
	ep_stat_inc(EP_STAT_LB_NEW_FLOW);
	ep_monitor_flow(ctx, fval);
	return EP_CONTINUE;  /* the caller translates with ctx->ct, as for established flows */
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
	struct ep_ct_value *fval = ctx->ct, rval = {};  /* &ctx->ct_new, set by the caller */
	__u64 now;
	int ret;

	if (!ctx->dsr_opt && !ep_policy_enabled(ctx))
		return EP_ACT_PASS;
	__builtin_memset(fval, 0, sizeof(*fval));
	now = bpf_ktime_get_ns();
	fval->nat_addr = ctx->daddr;
	fval->nat_port = ctx->dport;
	fval->flags = ctx->dsr_opt ? EP_CT_F_DSR : 0;
	fval->created_ns = now;
	fval->last_seen_ns = now;
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
		rval.nat_addr = ctx->dsr_addr;
		rval.nat_port = ctx->dsr_port;
		rval.hairpin_addr = ctx->saddr;
		rval.flags = EP_CT_F_SERVICE | EP_CT_F_DSR | EP_CT_F_FIB;
	} else {
		rval.nat_addr = ctx->saddr;
		rval.nat_port = ctx->sport;
	}
	rval.policy_verdict = fval->policy_verdict;
	rval.policy_epoch = fval->policy_epoch;
	rval.created_ns = now;
	rval.last_seen_ns = now;
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

static __always_inline int ep_flow_stage(struct ep_ctx *ctx)
{
	struct ep_ct_key key = {};
	struct ep_ct_value *ct;
	struct ep_svc_value *svc;
	__u8 scope;
	int ret;

	/* Established forward: one lookup, plus the backend check. */
	ep_ct_key_fill(&key, ctx->saddr, ctx->daddr, ctx->sport, ctx->dport, ctx->proto,
		       EP_CT_DIR_FORWARD);
	ct = ep_ct_lookup(&key);
	if (ct) {
		if (ct->flags & EP_CT_F_SERVICE) {
			__u32 id = ct->backend_id;
			struct ep_backend *be = bpf_map_lookup_elem(&ep_be_v1, &id);

			if (!be || be->addr != ct->nat_addr || be->port != ct->nat_port) {
				/*
				 * The endpoint is gone. A TCP segment of the old connection
				 * gets a reset so the client fails fast; anything else (UDP,
				 * SCTP, a TCP SYN reusing the tuple) forgets the flow and is
				 * load-balanced afresh, so no UDP flow stays pinned.
				 */
				if (ctx->proto == EP_PROTO_TCP && !(ctx->tcp_flags & EP_TCP_SYN) &&
				    !ctx->is_fragment) {
					if (ctx->tcp_flags & EP_TCP_RST)
						return -EP_DROP_BACKEND_GONE;
					ep_drop_record(ctx, EP_DROP_BACKEND_GONE);
					return EP_ACT_REJECT;
				}
				ep_ct_delete(&key, ct);
				goto new_flow;
			}
			/*
			 * A new connection reusing a tracked tuple (TIME_WAIT reuse): its
			 * reply entry must still be ours, or it was removed or it went
			 * to a clashing flow. Then balance afresh. Only SYNs pay this lookup.
			 */
			if (ctx->proto == EP_PROTO_TCP &&
			    (ctx->tcp_flags & (EP_TCP_SYN | EP_TCP_ACK)) == EP_TCP_SYN) {
				int r = ep_ct_reply_state(&key, ct);

				/*
				 * Only the forward entry when the reply entry is another
				 * flow's; both when the old connection was closed (a new
				 * connection on a closed tuple is balanced afresh, as
				 * Linux conntrack does after TIME_WAIT).
				 */
				if (r == EP_CT_REPLY_MISSING || r == EP_CT_REPLY_FOREIGN) {
					bpf_map_delete_elem(&ep_ct4_v2, &key);
					goto new_flow;
				}
				if (r == EP_CT_REPLY_CLOSING || (ct->flags & EP_CT_F_CLOSING)) {
					ep_ct_delete(&key, ct);
					goto new_flow;
				}
			}
		}
		ep_ct_touch(ct, ep_ct_close_seen(ctx), 0,
			    ctx->proto == EP_PROTO_TCP &&
			    (ctx->tcp_flags & (EP_TCP_SYN | EP_TCP_ACK)) == EP_TCP_SYN);
		ctx->ct = ct;
		ret = ep_fwd_policy(ctx, ct);
		if (ret)
			return ret;
translate:
		ep_frag_remember(ctx);
		ret = ep_fwd_translate(ctx, ct);
		if (ret)
			return ret;
		return ep_route_verdict(ctx, ct);
	}

	/* Reply of a tracked flow: restore the frontend as the source. */
	key.dir = EP_CT_DIR_REPLY;
	ct = ep_ct_lookup(&key);
	if (ct) {
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

new_flow:
	/* Set here, in the frame that owns ctx: callees may not store stack pointers in it. */
	ctx->ct = &ctx->ct_new;
	/* From outside: the external frontend first, then the cluster one. */
	scope = EP_SCOPE_EXTERNAL;
	svc = ctx->from_host ? ep_lb_lookup(ctx->daddr, ctx->dport, ctx->proto, scope) : 0;
	if (!svc) {
		scope = EP_SCOPE_CLUSTER;
		svc = ep_lb_lookup(ctx->daddr, ctx->dport, ctx->proto, scope);
	}
	if (svc) {
		ret = ep_new_service_flow(ctx, svc, scope);
		if (ret)
			return ret;
		ct = ctx->ct;
		goto translate;
	}
	if (ctx->is_fragment)
		return EP_ACT_UNTRACKED;  /* head seen, flow gone: judge it like a stray fragment */
	return ep_new_untranslated_flow(ctx);
}

/* Non-first fragment: recover the ports from the first one, if we saw it. */
static __always_inline int ep_fragment_stage(struct ep_ctx *ctx)
{
	struct ep_frag_key k = {};
	struct ep_frag_value *v;

	k.saddr = ctx->saddr;
	k.daddr = ctx->daddr;
	k.id = ctx->ip_id;
	k.proto = ctx->proto;
	v = bpf_map_lookup_elem(&ep_frag4_v1, &k);
	if (!v)
		return EP_ACT_UNTRACKED;  /* not a datagram we track (or its head was lost) */
	ctx->sport = v->sport;
	ctx->dport = v->dport;
	ctx->orig_dport = v->dport;
	return EP_CONTINUE;
}

/*
 * ICMP that is not an error about a tracked flow, when policy is on. Echo
 * requests are tracked like a flow whose ports are the echo id (as Linux
 * conntrack does): EP_CONTINUE with the ports set, for the flow stage. An
 * echo reply whose request was tracked passes; anything else is untracked.
 */
static __always_inline int ep_icmp_echo_stage(struct ep_ctx *ctx)
{
	struct ep_ct_key key = {};
	struct {
		__u8 type;
		__u8 code;
		__u16 csum;
		__be16 id;
		__be16 seq;
	} echo;

	if (ctx->is_fragment || bpf_skb_load_bytes(ctx->skb, ctx->l4_off, &echo, sizeof(echo)))
		return EP_ACT_UNTRACKED;
	if (echo.type == 8) {
		ctx->sport = echo.id;
		ctx->dport = echo.id;
		ctx->orig_dport = echo.id;
		return EP_CONTINUE;
	}
	if (echo.type == 0) {
		ep_ct_key_fill(&key, ctx->saddr, ctx->daddr, echo.id, echo.id, EP_PROTO_ICMP,
			       EP_CT_DIR_REPLY);
		struct ep_ct_value *r = ep_ct_lookup(&key);

		if (r) {
			ep_ct_touch(r, 0, 1, 0);
			return EP_ACT_PASS;
		}
	}
	return EP_ACT_UNTRACKED;
}

/*
 * Each stage is called from exactly one place (the verifier walks every
 * inlined copy): the flow stage and the untracked-policy call are shared.
 */
static __always_inline int ep_process(struct ep_ctx *ctx)
{
	__u32 zero = 0;
	int ret;

	ctx->cfg = bpf_map_lookup_elem(&ep_cfg_v1, &zero);
	if (!ctx->cfg)
		return EP_ACT_PASS;
	if (ctx->proto == EP_PROTO_ICMP) {
		ret = ep_icmp_stage(ctx);
		if (ret != EP_CONTINUE || !ep_policy_enabled(ctx))
			return ret ? ret : EP_ACT_PASS;
		ret = ep_icmp_echo_stage(ctx);
	} else if (ctx->proto != EP_PROTO_TCP && ctx->proto != EP_PROTO_UDP &&
		   ctx->proto != EP_PROTO_SCTP) {
		ret = EP_ACT_UNTRACKED;
	} else if (ctx->is_fragment) {
		ret = ep_fragment_stage(ctx);
	} else {
		ret = EP_CONTINUE;
	}
	if (ret == EP_CONTINUE)
		ret = ep_flow_stage(ctx);
	if (ret == EP_ACT_UNTRACKED) {
		/* No conntrack flow to cache a verdict in: policy decides each time. */
		ret = ep_policy_untracked(ctx);
		return ret ? ret : EP_ACT_PASS;
	}
	return ret;
}

/* After translation: DSR option in or out, then the route (FIB-routed flows). */
static __always_inline int ep_finish(struct ep_ctx *ctx, int ret)
{
	int err;

	if (ctx->dsr_opt) {
		err = ep_dsr_strip(ctx);
		if (err)
			return err;
	}
	if (ret != EP_ACT_FIB)
		return TC_ACT_OK;
	if (ctx->dsr_insert) {
		err = ep_dsr_insert(ctx, ctx->dsr_addr, ctx->dsr_port);
		if (err)
			return err;
	}
	return ep_fib_forward(ctx);
}

static __always_inline int ep_main(struct __sk_buff *skb, __u8 from_host)
{
	struct ep_ctx ctx = {};
	int ret;

	ctx.from_host = from_host;
	ret = ep_parse(skb, &ctx);
	/* Only nodes (host interfaces) may ask for a DSR flow. */
	if (!from_host)
		ctx.dsr_opt = 0;
	if (ret == EP_CONTINUE)
		ret = ep_process(&ctx);
	if (ret == EP_ACT_REJECT)
		ret = ep_reject(&ctx);   /* one call site; the drop was counted by the stage */
	else if (ret >= 0 && ctx.proto == EP_PROTO_SCTP && !ctx.is_fragment &&
		 ep_sctp_ports_fix(skb, ctx.l4_off, ctx.tot_len - (ctx.l4_off - ctx.l3_off), ctx.in_ports))
		ret = -EP_DROP_NAT_FAILED;
	if (ret == EP_ACT_REDIRECT)
		return bpf_redirect(ctx.ifindex, 0);
	if (ret >= 0)
		ret = ep_finish(&ctx, ret);
	if (ret >= 0)
		return ret;
	/* Policy denials are recorded with the final tuple. */
	ep_drop_record(&ctx, -ret);
	return TC_ACT_SHOT;
}

SEC("tcx/ingress")
int ep_tc_ingress(struct __sk_buff *skb)
{
	return ep_main(skb, 0);
}

SEC("tcx/ingress")
int ep_tc_host(struct __sk_buff *skb)
{
	return ep_main(skb, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
