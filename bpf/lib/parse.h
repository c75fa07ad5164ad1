/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* parse.h: Ethernet + IPv4 (with options) + TCP/UDP/SCTP ports into ep_ctx. */
#ifndef EP_PARSE_H
#define EP_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ctx.h"

#define EP_IP_MF     0x2000
#define EP_IP_OFFSET 0x1fff

/* Make sure @len bytes are in the linear area (pulling only when they are not). */
static __always_inline int ep_ensure_linear(struct __sk_buff *skb, __u32 len)
{
	if ((long)skb->data + len <= (long)skb->data_end)
		return 0;
	if (len > skb->len)
		return -1;
	if (bpf_skb_pull_data(skb, len))
		return -1;
	if ((long)skb->data + len > (long)skb->data_end)
		return -1;
	return 0;
}

/*
 * Fill ctx from the packet. EP_ACT_PASS: not IPv4, or nothing we translate.
 * -EP_DROP_MALFORMED: an IPv4 header the kernel would also refuse.
 */
static __always_inline int ep_parse(struct __sk_buff *skb, struct ep_ctx *ctx)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 ihl, l4_len;
	__u16 frag;

	ctx->skb = skb;
	ctx->ifindex = skb->ifindex;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return EP_ACT_PASS;
	if (ep_ensure_linear(skb, ETH_HLEN + sizeof(struct iphdr)))
		return -EP_DROP_MALFORMED;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -EP_DROP_MALFORMED;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return EP_ACT_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -EP_DROP_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return -EP_DROP_MALFORMED;
	ihl = ip->ihl * 4;
	ctx->l3_off = ETH_HLEN;
	ctx->l4_off = ETH_HLEN + ihl;
	ctx->saddr = ip->saddr;
	ctx->daddr = ip->daddr;
	ctx->orig_daddr = ip->daddr;
	ctx->proto = ip->protocol;
	ctx->ip_id = ip->id;
	ctx->tot_len = bpf_ntohs(ip->tot_len);
	frag = bpf_ntohs(ip->frag_off);
	if (frag & EP_IP_OFFSET) {
		/* Non-first fragment: no L4 header; ports come from ep_frag4_v1. */
		ctx->is_fragment = 1;
		return EP_CONTINUE;
	}
	if (frag & EP_IP_MF)
		ctx->first_fragment = 1;

	switch (ctx->proto) {
	case EP_PROTO_TCP:
		l4_len = 20;
		break;
	case EP_PROTO_UDP:
		l4_len = 8;
		break;
	case EP_PROTO_SCTP:
		l4_len = 12;
		break;
	case EP_PROTO_ICMP:
		l4_len = 8;
		break;
	default:
		/* No ports to parse, but policy still judges it (ep_process). */
		return EP_CONTINUE;
	}
	if (ep_ensure_linear(skb, ETH_HLEN + ihl + l4_len))
		return -EP_DROP_MALFORMED;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	/* ihl <= 60: the masks give the verifier the bound it needs. */
	{
		__u8 *l4 = data + ETH_HLEN + (ihl & 0x3c);

		if ((void *)(l4 + 20) > data_end && ctx->proto == EP_PROTO_TCP)
			return -EP_DROP_MALFORMED;
		if ((void *)(l4 + 8) > data_end)
			return -EP_DROP_MALFORMED;
		if (ctx->proto == EP_PROTO_ICMP)
			return EP_CONTINUE;
		ctx->sport = *(__be16 *)l4;
		ctx->dport = *(__be16 *)(l4 + 2);
		ctx->in_ports = *(__u32 *)l4;
		ctx->orig_dport = ctx->dport;
		if (ctx->proto == EP_PROTO_TCP && (void *)(l4 + 20) <= data_end)
			ctx->tcp_flags = l4[13];
	}
	/* Exactly one option, ours: a DSR packet from an entry node (lib/dsr.h). */
	if (ihl == sizeof(struct iphdr) + sizeof(struct ep_dsr_opt)) {
		struct ep_dsr_opt *opt = data + ETH_HLEN + sizeof(struct iphdr);

		if ((void *)(opt + 1) <= data_end && opt->type == EP_DSR_OPT_TYPE &&
		    opt->len == sizeof(struct ep_dsr_opt)) {
			ctx->dsr_opt = 1;
			ctx->dsr_addr = opt->addr;
			ctx->dsr_port = opt->port;
		}
	}
	return EP_CONTINUE;
}

#endif /* EP_PARSE_H */
