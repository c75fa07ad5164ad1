/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sctp.h: SCTP's CRC32c after port rewrites. The CRC covers neither the
 * addresses nor a pseudo header, so only port changes need a fix, and it is
 * incremental (CRC linearity: only the changed bytes and their distance to
 * the end of the packet matter, no pass over the payload).
 */
#ifndef EP_SCTP_H
#define EP_SCTP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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
 * changed (@orig_ports: the first 4 bytes as parsed). 0, or -1 when the
 * packet cannot be read or written. The program calls it once, at its end,
 * from a global function (verified once, apart from the packet paths), so
 * the rewrite sites stay branch-free for the verifier.
 */
static __always_inline int ep_sctp_crc_fix(struct __sk_buff *skb, __u32 l4_off, __u32 l4_len,
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

#endif /* EP_SCTP_H */
