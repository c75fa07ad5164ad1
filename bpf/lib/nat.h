/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat.h: address/port rewrites with incremental checksum fixes.
 *
 * The L4 checksum is fixed with bpf_l4_csum_replace(BPF_F_PSEUDO_HDR) for
 * addresses, which is correct both for fully checksummed packets and for
 * CHECKSUM_PARTIAL ones (veth with tx offload: only the pseudo-header seed
 * is in the field then). UDP keeps a zero checksum zero. SCTP's CRC32c does
 * not cover addresses, so an address rewrite needs no fix; its port
 * rewrites are fixed once at the end of the program (lib/sctp.h).
 */
#ifndef EP_NAT_H
#define EP_NAT_H

#include <linux/bpf.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include "ctx.h"
#include "csum.h"

#define EP_NAT_SRC 0
#define EP_NAT_DST 1

static __always_inline int ep_nat_addr(struct ep_ctx *ctx, int which, __be32 to)
{
	struct __sk_buff *skb = ctx->skb;
	__be32 from = which == EP_NAT_DST ? ctx->daddr : ctx->saddr;
	__u32 off = ctx->l3_off + (which == EP_NAT_DST ? offsetof(struct iphdr, daddr)
							: offsetof(struct iphdr, saddr));
	__u32 csum_off = ep_l4_csum_off(ctx);

	if (from == to)
		return EP_CONTINUE;
	if (csum_off &&
	    bpf_l4_csum_replace(skb, csum_off, from, to,
				BPF_F_PSEUDO_HDR | sizeof(to) | ep_l4_csum_flags(ctx)))
		return -EP_DROP_NAT_FAILED;
	if (bpf_l3_csum_replace(skb, EP_IP_CSUM_OFF(ctx->l3_off), from, to, sizeof(to)))
		return -EP_DROP_NAT_FAILED;
	if (bpf_skb_store_bytes(skb, off, &to, sizeof(to), 0))
		return -EP_DROP_NAT_FAILED;
	if (which == EP_NAT_DST)
		ctx->daddr = to;
	else
		ctx->saddr = to;
	return EP_CONTINUE;
}

static __always_inline int ep_nat_port(struct ep_ctx *ctx, int which, __be16 to)
{
	struct __sk_buff *skb = ctx->skb;
	__be16 from = which == EP_NAT_DST ? ctx->dport : ctx->sport;
	__u32 csum_off = ep_l4_csum_off(ctx);

	if (from == to || ctx->is_fragment)
		goto out;
	if (csum_off &&
	    bpf_l4_csum_replace(skb, csum_off, from, to, sizeof(to) | ep_l4_csum_flags(ctx)))
		return -EP_DROP_NAT_FAILED;
	if (bpf_skb_store_bytes(skb, ctx->l4_off + (which == EP_NAT_DST ? 2 : 0), &to, sizeof(to), 0))
		return -EP_DROP_NAT_FAILED;
out:
	if (which == EP_NAT_DST)
		ctx->dport = to;
	else
		ctx->sport = to;
	return EP_CONTINUE;
}

/* Rewrite one side (source or destination) of the tuple to addr:port. */
static __always_inline int ep_nat(struct ep_ctx *ctx, int which, __be32 addr, __be16 port)
{
	int ret = ep_nat_addr(ctx, which, addr);

	if (ret)
		return ret;
	return ep_nat_port(ctx, which, port);
}

#endif /* EP_NAT_H */
