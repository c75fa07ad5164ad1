/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fib.h: forwarding a translated packet by FIB lookup and redirect.
 *
 * Flows of external traffic have a node address as a source: the SNAT
 * address of the entry node, or a NodePort frontend restored in a reply. The
 * kernel's forwarding path drops such packets as martians (a local address
 * arriving from outside), so these flows skip it: the program looks the
 * route up itself, decrements the TTL and hands the packet to the egress
 * interface (bpf_redirect with the neighbour's MAC, or bpf_redirect_neigh
 * when the neighbour is not resolved yet). Whatever a redirect cannot do
 * right goes to the stack: local destinations, expiring TTLs, packets above
 * the egress MTU.
 *
 * Host routing (setting host-routing: bpf) sends every other translated
 * packet the same way to save the IP stack's forwarding path: into a local
 * pod straight through its veth with bpf_redirect_peer (the pod's side
 * receives it; the host side's egress is skipped), elsewhere with
 * bpf_redirect / bpf_redirect_neigh. There a failed lookup is no reason to
 * drop: the packet goes to the stack as without host routing.
 */
#ifndef EP_FIB_H
#define EP_FIB_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "ctx.h"
#include "csum.h"
#include "../maps.h"

#define EP_AF_INET 2

/* 0: decremented; 1: the TTL expires here (the stack answers); -1: rewrite failed. */
static __always_inline int ep_ttl_dec(struct ep_ctx *ctx)
{
	__u32 off = ctx->l3_off + offsetof(struct iphdr, ttl);
	void *data = (void *)(long)ctx->skb->data;
	void *data_end = (void *)(long)ctx->skb->data_end;
	__u8 ttl_proto[2];
	__be16 old, new;

	/* The parser made the IPv4 header linear: a direct read, no helper call. */
	if (ctx->l3_off == ETH_HLEN && data + ETH_HLEN + sizeof(struct iphdr) <= data_end)
		__builtin_memcpy(ttl_proto, data + ETH_HLEN + offsetof(struct iphdr, ttl), 2);
	else if (bpf_skb_load_bytes(ctx->skb, off, ttl_proto, 2))
		return -1;
	if (ttl_proto[0] <= 1)
		return 1;
	__builtin_memcpy(&old, ttl_proto, 2);
	ttl_proto[0]--;
	__builtin_memcpy(&new, ttl_proto, 2);
	if (bpf_l3_csum_replace(ctx->skb, EP_IP_CSUM_OFF(ctx->l3_off), old, new, 2))
		return -1;
	if (bpf_skb_store_bytes(ctx->skb, off, &new, 2, 0))
		return -1;
	return 0;
}

/* Destination and source MAC in one write (they are adjacent in the frame). */
static __always_inline int ep_set_macs(struct __sk_buff *skb, const __u8 *dmac, const __u8 *smac)
{
	__u8 macs[2 * ETH_ALEN];

	__builtin_memcpy(macs, dmac, ETH_ALEN);
	__builtin_memcpy(macs + ETH_ALEN, smac, ETH_ALEN);
	return bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0);
}

/* A TC verdict (>= 0) for the translated packet, or -EP_DROP_*. Not inlined: its
 * lookup parameters (64 bytes) live in their own stack frame. */
static __attribute__((noinline)) int ep_fib_forward(struct ep_ctx *ctx)
{
	struct bpf_fib_lookup p = {};
	__u32 *iface;
	int rc, ttl;

	p.family = EP_AF_INET;
	p.l4_protocol = ctx->proto;
	/* tot_len 0: the kernel checks the skb itself against the egress MTU (GSO-aware). */
	p.ipv4_src = ctx->saddr;
	p.ipv4_dst = ctx->daddr;
	p.ifindex = ctx->ifindex;
	rc = bpf_fib_lookup(ctx->skb, &p, sizeof(p), 0);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return TC_ACT_OK;  /* for this host */
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return ctx->dsr_insert ? -EP_DROP_DSR_TOO_BIG : TC_ACT_OK;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return ctx->fib_optional ? TC_ACT_OK : -EP_DROP_NO_ROUTE;
	ttl = ep_ttl_dec(ctx);
	if (ttl < 0)
		return -EP_DROP_NAT_FAILED;
	if (ttl > 0)
		return TC_ACT_OK;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(p.ifindex, 0, 0, 0);
	if (ep_set_macs(ctx->skb, p.dmac, p.smac))
		return -EP_DROP_NAT_FAILED;
	iface = bpf_map_lookup_elem(&ep_ifaces_v1, &p.ifindex);
	if (iface && (*iface & EP_IFACE_F_WORKLOAD))
		return bpf_redirect_peer(p.ifindex, 0);
	return bpf_redirect(p.ifindex, 0);
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

#endif /* EP_FIB_H */
