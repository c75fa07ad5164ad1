/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* csum.h: checksum offsets and small one's-complement helpers. */
#ifndef EP_CSUM_H
#define EP_CSUM_H

#include <linux/bpf.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include "ctx.h"

#define EP_IP_CSUM_OFF(l3) ((l3) + offsetof(struct iphdr, check))
#define EP_TCP_CSUM_OFF 16
#define EP_UDP_CSUM_OFF 6
#define EP_ICMP_CSUM_OFF 2

#define EP_ICMP_DEST_UNREACH  3
#define EP_ICMP_PORT_UNREACH  3
#define EP_ICMP_TIME_EXCEEDED 11

struct ep_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 unused;
};

/*
 * Offset of the L4 checksum that covers the IPv4 pseudo header, or 0 when
 * there is none to fix: SCTP's CRC32c covers neither addresses nor a pseudo
 * header, and a non-first fragment carries no L4 header.
 */
static __always_inline __u32 ep_l4_csum_off(const struct ep_ctx *ctx)
{
	if (ctx->is_fragment)
		return 0;
	if (ctx->proto == EP_PROTO_TCP)
		return ctx->l4_off + EP_TCP_CSUM_OFF;
	if (ctx->proto == EP_PROTO_UDP)
		return ctx->l4_off + EP_UDP_CSUM_OFF;
	return 0;
}

/* UDP: a zero checksum means "none" and must stay zero (BPF_F_MARK_MANGLED_0). */
static __always_inline __u64 ep_l4_csum_flags(const struct ep_ctx *ctx)
{
	return ctx->proto == EP_PROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

static __always_inline __u16 ep_csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif /* EP_CSUM_H */
