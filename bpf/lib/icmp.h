/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * icmp.h: ICMP errors (destination unreachable, including fragmentation
 * needed, and time exceeded) about a translated flow are translated too, so
 * the sender's stack matches them to its socket:
 *  - about a client->backend packet (sent by the backend or a router): the
 *    quoted destination goes back to the VIP:port, the outer source too when
 *    it is the backend itself; hairpin flows get the client address back;
 *  - about a VIP->client reply (sent by the client): the quoted source and
 *    the outer destination become the backend.
 * The quoted inner L4 checksum is left alone (receivers do not check it on
 * a truncated quote); the ICMP and both IP checksums are fixed.
 *
 * Returns EP_ACT_PASS (EP_ACT_FIB for a FIB-routed flow) for an error related
 * to a tracked flow (translated if the flow is), EP_CONTINUE for anything else (not an error, or about no
 * tracked flow): the caller then applies policy to it as untracked traffic.
 */
#ifndef EP_ICMP_H
#define EP_ICMP_H

#include <linux/bpf.h>
#include <linux/ip.h>
/* <linux/icmp.h> drags in libc headers: the few constants we need are in csum.h. */
#include <bpf/bpf_helpers.h>
#include "ctx.h"
#include "csum.h"
#include "ct.h"
#include "nat.h"
#include "drop.h"

struct ep_icmp_inner {
	__u32 l3;       /* offset of the quoted IP header */
	__u32 l4;       /* offset of the quoted L4 header */
	__u32 icmp_csum;
};

static __always_inline int ep_icmp_inner_addr(struct ep_ctx *ctx, const struct ep_icmp_inner *in,
					      __u32 field, __be32 from, __be32 to)
{
	struct __sk_buff *skb = ctx->skb;
	__be16 old_check, new_check;

	if (from == to)
		return 0;
	if (bpf_skb_load_bytes(skb, in->l3 + offsetof(struct iphdr, check), &old_check, 2))
		return -1;
	if (bpf_l3_csum_replace(skb, in->l3 + offsetof(struct iphdr, check), from, to, 4))
		return -1;
	if (bpf_skb_load_bytes(skb, in->l3 + offsetof(struct iphdr, check), &new_check, 2))
		return -1;
	if (bpf_skb_store_bytes(skb, in->l3 + field, &to, 4, 0))
		return -1;
	if (bpf_l4_csum_replace(skb, in->icmp_csum, from, to, 4) ||
	    bpf_l4_csum_replace(skb, in->icmp_csum, old_check, new_check, 2))
		return -1;
	return 0;
}

static __always_inline int ep_icmp_inner_port(struct ep_ctx *ctx, const struct ep_icmp_inner *in,
					      __u32 field, __be16 from, __be16 to)
{
	if (from == to)
		return 0;
	if (bpf_skb_store_bytes(ctx->skb, in->l4 + field, &to, 2, 0))
		return -1;
	return bpf_l4_csum_replace(ctx->skb, in->icmp_csum, from, to, 2) ? -1 : 0;
}

/*
 * A translated error goes where its flow's packets go: FIB-routed flows
 * (external, source-NATed to this node) by FIB redirect, since the stack
 * would drop a forwarded packet whose source is this node's own address.
 */
static __always_inline int ep_icmp_verdict(const struct ep_ct_value *ct)
{
	return (ct->flags & EP_CT_F_FIB) ? EP_ACT_FIB : EP_ACT_PASS;
}

static __always_inline int ep_icmp_stage(struct ep_ctx *ctx)
{
	struct __sk_buff *skb = ctx->skb;
	struct ep_icmp_inner in = {};
	struct ep_ct_key key = {};
	struct ep_ct_value *ct;
	struct iphdr ip;
	__be16 ports[2];
	__u8 type;
	__u32 iihl;

	if (ctx->is_fragment)
		return EP_CONTINUE;
	if (bpf_skb_load_bytes(skb, ctx->l4_off, &type, 1))
		return EP_CONTINUE;
	if (type != EP_ICMP_DEST_UNREACH && type != EP_ICMP_TIME_EXCEEDED)
		return EP_CONTINUE;
	in.l3 = ctx->l4_off + 8;
	in.icmp_csum = ctx->l4_off + EP_ICMP_CSUM_OFF;
	if (bpf_skb_load_bytes(skb, in.l3, &ip, sizeof(ip)))
		return EP_CONTINUE;
	iihl = ip.ihl * 4;
	if (ip.version != 4 || iihl < 20)
		return EP_CONTINUE;
	if (ip.protocol != EP_PROTO_TCP && ip.protocol != EP_PROTO_UDP &&
	    ip.protocol != EP_PROTO_SCTP)
		return EP_CONTINUE;
	in.l4 = in.l3 + (iihl & 0x3c);
	if (bpf_skb_load_bytes(skb, in.l4, ports, sizeof(ports)))
		return EP_CONTINUE;

	/* Case 1: about a translated client->backend packet: its reply entry. */
	ep_ct_key_fill(&key, ip.daddr, ip.saddr, ports[1], ports[0], ip.protocol, EP_CT_DIR_REPLY);
	ct = ep_ct_lookup(&key);
	if (ct && !(ct->flags & EP_CT_F_SERVICE))
		return EP_ACT_PASS;  /* about a tracked plain flow: related */
	if (ct) {
		__be32 backend = ip.daddr;

		if (ep_icmp_inner_addr(ctx, &in, offsetof(struct iphdr, daddr), ip.daddr, ct->nat_addr) ||
		    ep_icmp_inner_port(ctx, &in, 2, ports[1], ct->nat_port))
			return -EP_DROP_NAT_FAILED;
		if (ct->alt_port && ep_icmp_inner_port(ctx, &in, 0, ports[0], ct->alt_port))
			return -EP_DROP_NAT_FAILED;
		if (ct->flags & EP_CT_F_SOURCE_NATED) {
			if (ep_icmp_inner_addr(ctx, &in, offsetof(struct iphdr, saddr), ip.saddr,
					       ct->hairpin_addr))
				return -EP_DROP_NAT_FAILED;
			if (ctx->daddr == ip.saddr &&
			    ep_nat_addr(ctx, EP_NAT_DST, ct->hairpin_addr))
				return -EP_DROP_NAT_FAILED;
		}
		if (ctx->saddr == backend && ep_nat_addr(ctx, EP_NAT_SRC, ct->nat_addr))
			return -EP_DROP_NAT_FAILED;
		ep_stat_inc(EP_STAT_ICMP_ERR_REVNAT);
		return ep_icmp_verdict(ct);
	}

	/* Case 2: about a VIP->client reply, sent by the client: its forward entry. */
	ep_ct_key_fill(&key, ip.daddr, ip.saddr, ports[1], ports[0], ip.protocol, EP_CT_DIR_FORWARD);
	ct = ep_ct_lookup(&key);
	if (ct && !(ct->flags & EP_CT_F_SERVICE))
		return EP_ACT_PASS;
	if (ct) {
		__be32 vip = ip.saddr;

		if (ep_icmp_inner_addr(ctx, &in, offsetof(struct iphdr, saddr), ip.saddr, ct->nat_addr) ||
		    ep_icmp_inner_port(ctx, &in, 0, ports[0], ct->nat_port))
			return -EP_DROP_NAT_FAILED;
		if (ct->alt_port && ep_icmp_inner_port(ctx, &in, 2, ports[1], ct->alt_port))
			return -EP_DROP_NAT_FAILED;
		if (ct->flags & EP_CT_F_SOURCE_NATED) {
			if (ep_icmp_inner_addr(ctx, &in, offsetof(struct iphdr, daddr), ip.daddr,
					       ct->hairpin_addr))
				return -EP_DROP_NAT_FAILED;
			if (ctx->saddr == ip.daddr &&
			    ep_nat_addr(ctx, EP_NAT_SRC, ct->hairpin_addr))
				return -EP_DROP_NAT_FAILED;
		}
		if (ctx->daddr == vip && ep_nat_addr(ctx, EP_NAT_DST, ct->nat_addr))
			return -EP_DROP_NAT_FAILED;
		ep_stat_inc(EP_STAT_ICMP_ERR_REVNAT);
		return ep_icmp_verdict(ct);
	}
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

#endif /* EP_ICMP_H */
