/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dsr.h: Direct Server Return with an IPv4 option (struct ep_dsr_opt).
 *
 * The entry node sends a new external flow to a remote endpoint without
 * source NAT: destination rewritten to the endpoint, the client's address
 * kept, and the frontend (address:port the client used) in an 8-byte IPv4
 * option right after the 20-byte header. The backend node's program (on its
 * host interface) learns the flow from the option, removes it and delivers
 * the packet; the endpoint's replies are rewritten there to come from the
 * frontend and leave that node straight to the client.
 *
 * Only the packet that opens a flow carries the option for TCP (SYN) and
 * SCTP (INIT): those are small, so full-size segments never grow past the
 * MTU. UDP has no handshake, so every datagram carries it; one that would
 * then exceed the egress MTU is dropped (EP_DROP_DSR_TOO_BIG).
 */
#ifndef EP_DSR_H
#define EP_DSR_H

#include <linux/bpf.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ctx.h"
#include "csum.h"

struct ep_ip_dsr {
	struct iphdr ip;
	struct ep_dsr_opt opt;
};

/* Whether this packet of a DSR flow carries the option (see above). */
static __always_inline int ep_dsr_wants_opt(const struct ep_ctx *ctx)
{
	__u8 chunk = 0;

	if (ctx->is_fragment)
		return 0;
	if (ctx->proto == EP_PROTO_UDP)
		return 1;
	if (ctx->proto == EP_PROTO_TCP)
		return (ctx->tcp_flags & (EP_TCP_SYN | EP_TCP_ACK)) == EP_TCP_SYN;
	if (ctx->proto == EP_PROTO_SCTP &&
	    !bpf_skb_load_bytes(ctx->skb, ctx->l4_off + 12, &chunk, 1))
		return chunk == 1;  /* INIT */
	return 0;
}

/* Entry node: insert the option carrying @addr:@port (the header has no options). */
static __attribute__((noinline)) int ep_dsr_insert(struct ep_ctx *ctx, __be32 addr, __be16 port)
{
	struct __sk_buff *skb = ctx->skb;
	struct ep_ip_dsr h;

	if (bpf_skb_load_bytes(skb, ctx->l3_off, &h.ip, sizeof(h.ip)))
		return -EP_DROP_NAT_FAILED;
	if (h.ip.ihl != 5)
		return 0;  /* options of its own: the flow was learnt from its first packet */
	/* BPF_ADJ_ROOM_NET opens the room right after the 20-byte IPv4 header. */
	if (bpf_skb_adjust_room(skb, sizeof(struct ep_dsr_opt), BPF_ADJ_ROOM_NET, 0))
		return -EP_DROP_NAT_FAILED;
	h.ip.ihl = 7;
	h.ip.tot_len = bpf_htons(bpf_ntohs(h.ip.tot_len) + sizeof(struct ep_dsr_opt));
	h.ip.check = 0;
	h.opt.type = EP_DSR_OPT_TYPE;
	h.opt.len = sizeof(struct ep_dsr_opt);
	h.opt.port = port;
	h.opt.addr = addr;
	h.ip.check = ep_csum_fold(bpf_csum_diff(0, 0, (__be32 *)&h, sizeof(h), 0));
	if (bpf_skb_store_bytes(skb, ctx->l3_off, &h, sizeof(h), 0))
		return -EP_DROP_NAT_FAILED;
	ctx->l4_off += sizeof(struct ep_dsr_opt);
	ctx->tot_len += sizeof(struct ep_dsr_opt);
	return 0;
}

/* Backend node: remove the option before the packet goes on. */
static __attribute__((noinline)) int ep_dsr_strip(struct ep_ctx *ctx)
{
	struct __sk_buff *skb = ctx->skb;
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, ctx->l3_off, &ip, sizeof(ip)))
		return -EP_DROP_NAT_FAILED;
	ip.ihl = 5;
	ip.tot_len = bpf_htons(bpf_ntohs(ip.tot_len) - sizeof(struct ep_dsr_opt));
	ip.check = 0;
	ip.check = ep_csum_fold(bpf_csum_diff(0, 0, (__be32 *)&ip, sizeof(ip), 0));
	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(struct ep_dsr_opt), BPF_ADJ_ROOM_NET, 0))
		return -EP_DROP_NAT_FAILED;
	if (bpf_skb_store_bytes(skb, ctx->l3_off, &ip, sizeof(ip), 0))
		return -EP_DROP_NAT_FAILED;
	ctx->l4_off -= sizeof(struct ep_dsr_opt);
	ctx->tot_len -= sizeof(struct ep_dsr_opt);
	ctx->dsr_opt = 0;
	return 0;
}

#endif /* EP_DSR_H */
