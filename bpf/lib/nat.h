/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat.h: address/port rewrites with incremental checksum fixes.
 *
 * The L4 checksum is fixed with bpf_l4_csum_replace(BPF_F_PSEUDO_HDR) for
 * addresses, which is correct both for fully checksummed packets and for
 * CHECKSUM_PARTIAL ones (veth with tx offload: only the pseudo-header seed
 * is in the field then). UDP keeps a zero checksum zero. SCTP's CRC32c does
 * not cover addresses, so an address rewrite needs no fix; a port rewrite
 * updates the CRC32c incrementally (CRC linearity: only the 2 changed bytes
 * and their distance to the end of the packet matter, no pass over the
 * payload), see ep_sctp_crc_delta.
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

#define EP_CRC32C_POLY 0x82f63b78u  /* reflected Castagnoli polynomial */

/*
 * a * b mod P over GF(2), reflected representation (zlib's multmodp).
 * Branch-free, so the verifier walks the loops once instead of forking.
 */
static __always_inline __u32 ep_crc32c_mulmod(__u32 a, __u32 b)
{
	__u32 p = 0;
	int i;

	for (i = 0; i < 32; i++) {
		p ^= b & -((a >> (31 - i)) & 1);
		b = (b >> 1) ^ (EP_CRC32C_POLY & -(b & 1));
	}
	return p;
}

struct ep_crc_pow {
	__u32 acc;   /* x^(8 * tail bits seen so far) */
	__u32 pw;    /* x^(8 * 2^i) */
	__u32 tail;
};

/* One square-and-multiply step; bpf_loop's callback is verified once. */
static long ep_crc_pow_step(__u32 i, void *data)
{
	struct ep_crc_pow *s = data;
	__u32 mask = -((s->tail >> (i & 31)) & 1);
	__u32 m = ep_crc32c_mulmod(s->pw, s->acc);

	s->acc = (m & mask) | (s->acc & ~mask);
	s->pw = ep_crc32c_mulmod(s->pw, s->pw);
	return 0;
}

/*
 * The XOR to apply to an SCTP CRC32c when two bytes (d0, d1 = old ^ new)
 * change and are followed by `tail` bytes of the packet:
 * rawcrc(d0 d1) * x^(8 * tail) mod P. A global function: verified once.
 */
__attribute__((noinline)) __u32 ep_sctp_crc_delta(__u32 d0, __u32 d1, __u32 tail)
{
	struct ep_crc_pow s = { .acc = 0x80000000u /* x^0 */, .pw = 0x00800000u /* x^8 */,
				.tail = tail & 0xffff };
	__u32 crc = (d0 & 0xff) | ((d1 & 0xff) << 8);
	int i;

	/* Raw CRC (no init, no final xor) of the two bytes: 16 bit steps. */
	for (i = 0; i < 16; i++)
		crc = (crc >> 1) ^ (EP_CRC32C_POLY & -(crc & 1));
	/* x^(8 * tail) by square-and-multiply over the 16 bits of tail. */
	bpf_loop(16, ep_crc_pow_step, &s, 0);
	return ep_crc32c_mulmod(s.acc, crc);
}

#define EP_SCTP_CSUM_OFF 8

/* Fix the SCTP CRC32c after the port at @port_off (0 or 2) went from @from to @to. */
static __always_inline int ep_sctp_port_crc(struct ep_ctx *ctx, __u32 port_off, __be16 from, __be16 to)
{
	__u8 *f = (__u8 *)&from, *t = (__u8 *)&to;
	__u32 ihl = ctx->l4_off - ctx->l3_off;
	__u32 crc, len;

	if (ctx->tot_len < ihl + 12)
		return -EP_DROP_NAT_FAILED;
	len = ctx->tot_len - ihl;   /* SCTP common header + chunks */
	if (bpf_skb_load_bytes(ctx->skb, ctx->l4_off + EP_SCTP_CSUM_OFF, &crc, 4))
		return -EP_DROP_NAT_FAILED;
	/* The CRC is stored little-endian; this host is too (x86, arm64 LE). */
	crc ^= ep_sctp_crc_delta(f[0] ^ t[0], f[1] ^ t[1], (len - port_off - 2) & 0xffff);
	if (bpf_skb_store_bytes(ctx->skb, ctx->l4_off + EP_SCTP_CSUM_OFF, &crc, 4, 0))
		return -EP_DROP_NAT_FAILED;
	return EP_CONTINUE;
}

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
	if (ctx->proto == EP_PROTO_SCTP &&
	    ep_sctp_port_crc(ctx, which == EP_NAT_DST ? 2 : 0, from, to))
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
