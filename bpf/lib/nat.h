/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat.h: address/port rewrites with incremental checksum fixes.
 *
 * The L4 checksum is fixed with bpf_l4_csum_replace(BPF_F_PSEUDO_HDR) for
 * addresses, which is correct both for fully checksummed packets and for
 * CHECKSUM_PARTIAL ones (veth with tx offload: only the pseudo-header seed
 * is in the field then). UDP keeps a zero checksum zero. SCTP's CRC32c does
 * not cover addresses, so an address rewrite needs no fix; port rewrites
 * update the CRC32c incrementally once at the end (CRC linearity: only the
 * changed bytes and their distance to the end of the packet matter, no pass
 * over the payload), see ep_sctp_ports_fix.
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
 * All-ones when the low bit of @x is set. The empty asm hides the value from
 * clang, which would otherwise turn `v & mask` back into a branch (BPF has
 * no conditional move), and every branch on packet data doubles the paths
 * the verifier walks through the loops below.
 */
static __always_inline __u32 ep_bitmask(__u32 x)
{
	__u32 m = -(x & 1);

	asm volatile("" : "+r"(m));
	return m;
}

/* a * b mod P over GF(2), reflected representation (zlib's multmodp). */
static __always_inline __u32 ep_crc32c_mulmod(__u32 a, __u32 b)
{
	__u32 p = 0;
	int i;

	for (i = 0; i < 32; i++) {
		p ^= b & ep_bitmask(a >> (31 - i));
		b = (b >> 1) ^ (EP_CRC32C_POLY & ep_bitmask(b));
	}
	return p;
}

/*
 * The XOR to apply to an SCTP CRC32c when its first four bytes (the ports)
 * change by @delta (old ^ new, packet order) and `tail` bytes follow them:
 * rawcrc(delta) * x^(8 * tail) mod P.
 */
static __always_inline __u32 ep_sctp_crc_delta(__u32 delta, __u32 tail)
{
	__u32 crc = delta;  /* packet bytes 0..3 as a little-endian word: CRC bit order */
	__u32 pw = 0x00800000u;  /* x^8 */
	__u32 acc = 0x80000000u; /* x^0 */
	int i;

	/* Raw CRC (no init, no final xor) of the four bytes: 32 bit steps. */
	for (i = 0; i < 32; i++)
		crc = (crc >> 1) ^ (EP_CRC32C_POLY & ep_bitmask(crc));
	/* x^(8 * tail) by square-and-multiply over the 16 bits of tail. */
	for (i = 0; i < 16; i++) {
		__u32 mask = ep_bitmask(tail >> i);
		__u32 m = ep_crc32c_mulmod(pw, acc);

		acc = (m & mask) | (acc & ~mask);
		pw = ep_crc32c_mulmod(pw, pw);
	}
	return ep_crc32c_mulmod(acc, crc);
}

#define EP_SCTP_CSUM_OFF 8

/*
 * After all rewrites of an SCTP packet: fix its CRC32c for the ports that
 * changed (@orig_ports: the first 4 bytes as parsed). Called once, at the
 * end of the program, so the rewrite sites stay branch-free for the
 * verifier; a global function, verified once.
 */
__attribute__((noinline)) int ep_sctp_ports_fix(struct __sk_buff *skb, __u32 l4_off, __u32 l4_len,
					        __u32 orig_ports)
{
	__u32 now, crc;

	if (!skb || l4_len < 12 || l4_len > 0xffff || l4_off > 14 + 60)
		return -1;
	if (bpf_skb_load_bytes(skb, l4_off, &now, 4))
		return -1;
	if (now == orig_ports)
		return 0;
	if (bpf_skb_load_bytes(skb, l4_off + EP_SCTP_CSUM_OFF, &crc, 4))
		return -1;
	/* The CRC is stored little-endian, as this host (x86, arm64 LE) loads it. */
	crc ^= ep_sctp_crc_delta(now ^ orig_ports, l4_len - 4);
	if (bpf_skb_store_bytes(skb, l4_off + EP_SCTP_CSUM_OFF, &crc, 4, 0))
		return -1;
	return 0;
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
