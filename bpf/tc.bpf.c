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
#include "lib/reject.h"
#include "lib/icmp.h"
#include "lib/policy.h"
#include "lib/frag.h"
#include "lib/flow.h"
#include "lib/fib.h"
#include "lib/dsr.h"
#include "lib/sctp.h"

/*
 * After all rewrites of an SCTP packet, its CRC32c (lib/sctp.h). A global
 * function: the verifier checks it once, not along every packet path.
 */
__attribute__((noinline)) int ep_sctp_ports_fix(struct __sk_buff *skb, __u32 l4_off, __u32 l4_len,
					        __u32 orig_ports)
{
	return ep_sctp_crc_fix(skb, l4_off, l4_len, orig_ports);
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
