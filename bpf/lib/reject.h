/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * reject.h: turn the packet into the answer kube-proxy's REJECT gives, and
 * send it back out the interface it came in on.
 *
 * TCP: a RST built in place. Addresses and ports are swapped (which leaves
 * every checksum unchanged) and only seq/ack/flags/window change, fixed
 * incrementally, so it is correct for CHECKSUM_PARTIAL packets too. The data
 * offset becomes 5: options and payload ride along as RST payload, which
 * receivers ignore (RFC 1122 4.2.2.12) and which avoids a checksum over the
 * payload. GSO super-packets are not turned into resets (returned as
 * -EP_DROP_REJECT_FAILED by the caller's accounting); the next segment is.
 *
 * UDP/SCTP: ICMP port unreachable (type 3 code 3) quoting the original IP
 * header and 8 bytes, from the frontend address, with fresh checksums.
 */
#ifndef EP_REJECT_H
#define EP_REJECT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
/* <linux/icmp.h> drags in libc headers: the few constants we need are in csum.h. */
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ctx.h"
#include "csum.h"

static __always_inline int ep_swap_macs(struct __sk_buff *skb)
{
	__u8 macs[12];
	__u8 swapped[12];
	int i;

	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return -1;
#pragma unroll
	for (i = 0; i < 6; i++) {
		swapped[i] = macs[i + 6];
		swapped[i + 6] = macs[i];
	}
	return bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0);
}

/* The tuple and lengths of the packet to answer, read back from it. */
struct ep_reject_pkt {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u16 tot_len;
	__u8 ihl;
	__u8 _pad0;
};

static __always_inline int ep_reject_read(struct __sk_buff *skb, __u32 l4_off, struct ep_reject_pkt *p)
{
	struct iphdr ip;
	__be16 ports[2];

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) ||
	    bpf_skb_load_bytes(skb, l4_off, ports, sizeof(ports)))
		return -1;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	p->sport = ports[0];
	p->dport = ports[1];
	p->tot_len = bpf_ntohs(ip.tot_len);
	p->ihl = ip.ihl * 4;
	return 0;
}

/* Reset the TCP flow towards its client. Returns EP_ACT_REDIRECT or < 0. */
static __always_inline int ep_reject_tcp(struct __sk_buff *skb, __u32 l4_off, const struct ep_reject_pkt *p)
{
	__u32 csum_off = l4_off + EP_TCP_CSUM_OFF;
	struct {
		__be32 seq;
		__be32 ack;
		__be16 flags;   /* data offset + flags */
		__be16 window;
	} in, out;
	__be32 swapped_addrs[2];
	__be16 swapped_ports[2];
	__be16 ttl_old, ttl_new;
	__u32 payload, doff;
	__u8 fl;

	if (skb->gso_segs > 1)
		return -EP_DROP_REJECT_FAILED;
	if (bpf_skb_load_bytes(skb, l4_off + 4, &in, sizeof(in)))
		return -EP_DROP_REJECT_FAILED;
	fl = bpf_ntohs(in.flags) & 0xff;
	doff = (bpf_ntohs(in.flags) >> 12) * 4;
	payload = p->tot_len > p->ihl + doff ? p->tot_len - p->ihl - doff : 0;
	if (fl & EP_TCP_ACK) {
		out.seq = in.ack;
		out.ack = 0;
		out.flags = bpf_htons((5 << 12) | EP_TCP_RST);
	} else {
		__u32 seg = payload + ((fl & EP_TCP_SYN) ? 1 : 0) + ((fl & EP_TCP_FIN) ? 1 : 0);

		out.seq = 0;
		out.ack = bpf_htonl(bpf_ntohl(in.seq) + seg);
		out.flags = bpf_htons((5 << 12) | EP_TCP_RST | EP_TCP_ACK);
	}
	out.window = 0;
	if (bpf_l4_csum_replace(skb, csum_off, in.seq, out.seq, 4) ||
	    bpf_l4_csum_replace(skb, csum_off, in.ack, out.ack, 4) ||
	    bpf_l4_csum_replace(skb, csum_off, in.flags, out.flags, 2) ||
	    bpf_l4_csum_replace(skb, csum_off, in.window, out.window, 2))
		return -EP_DROP_REJECT_FAILED;
	if (bpf_skb_store_bytes(skb, l4_off + 4, &out, sizeof(out), 0))
		return -EP_DROP_REJECT_FAILED;

	/* Swap ports and addresses: sums are commutative, no checksum change. */
	swapped_ports[0] = p->dport;
	swapped_ports[1] = p->sport;
	if (bpf_skb_store_bytes(skb, l4_off, swapped_ports, sizeof(swapped_ports), 0))
		return -EP_DROP_REJECT_FAILED;
	swapped_addrs[0] = p->daddr;
	swapped_addrs[1] = p->saddr;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, saddr), swapped_addrs,
				sizeof(swapped_addrs), 0))
		return -EP_DROP_REJECT_FAILED;
	/* A fresh TTL so the reset survives the way back however far the SYN came. */
	if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), &ttl_old, 2))
		return -EP_DROP_REJECT_FAILED;
	ttl_new = ttl_old;
	((__u8 *)&ttl_new)[0] = 64;
	if (bpf_l3_csum_replace(skb, EP_IP_CSUM_OFF(ETH_HLEN), ttl_old, ttl_new, 2) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), &ttl_new, 2, 0))
		return -EP_DROP_REJECT_FAILED;
	if (ep_swap_macs(skb))
		return -EP_DROP_REJECT_FAILED;
	return EP_ACT_REDIRECT;
}

#define EP_ICMP_QUOTE_MAX (60 + 8)

/* Replace the packet by an ICMP port unreachable towards its source. */
static __always_inline int ep_reject_icmp(struct __sk_buff *skb, const struct ep_reject_pkt *p)
{
	struct {
		struct iphdr ip;
		struct ep_icmphdr icmp;
	} hdr = {};
	__u8 quote[EP_ICMP_QUOTE_MAX] = {};
	__u32 ihl = p->ihl;
	__u32 qlen, new_len;
	__s64 sum;

	if (skb->gso_segs > 1)
		return -EP_DROP_REJECT_FAILED;
	if (ihl < 20 || ihl > 60)
		return -EP_DROP_REJECT_FAILED;
	qlen = (ihl + 8) & 0x7c;   /* multiple of 4, <= 68 */
	if (qlen < 28 || qlen > EP_ICMP_QUOTE_MAX)
		return -EP_DROP_REJECT_FAILED;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, quote, qlen))
		return -EP_DROP_REJECT_FAILED;

	hdr.ip.version = 4;
	hdr.ip.ihl = 5;
	hdr.ip.tos = 0xc0;   /* CS6, as Linux sends ICMP errors */
	hdr.ip.tot_len = bpf_htons(sizeof(hdr) + qlen);
	hdr.ip.ttl = 64;
	hdr.ip.protocol = EP_PROTO_ICMP;
	hdr.ip.saddr = p->daddr;
	hdr.ip.daddr = p->saddr;
	sum = bpf_csum_diff(0, 0, (__be32 *)&hdr.ip, sizeof(hdr.ip), 0);
	if (sum < 0)
		return -EP_DROP_REJECT_FAILED;
	hdr.ip.check = ep_csum_fold(sum);

	hdr.icmp.type = EP_ICMP_DEST_UNREACH;
	hdr.icmp.code = EP_ICMP_PORT_UNREACH;
	sum = bpf_csum_diff(0, 0, (__be32 *)&hdr.icmp, sizeof(hdr.icmp), 0);
	if (sum < 0)
		return -EP_DROP_REJECT_FAILED;
	sum = bpf_csum_diff(0, 0, (__be32 *)quote, qlen, sum);
	if (sum < 0)
		return -EP_DROP_REJECT_FAILED;
	hdr.icmp.checksum = ep_csum_fold(sum);

	if (ep_swap_macs(skb))
		return -EP_DROP_REJECT_FAILED;
	new_len = ETH_HLEN + sizeof(hdr) + qlen;
	if (bpf_skb_change_tail(skb, new_len, 0))
		return -EP_DROP_REJECT_FAILED;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &hdr, sizeof(hdr), 0))
		return -EP_DROP_REJECT_FAILED;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(hdr), quote, qlen, 0))
		return -EP_DROP_REJECT_FAILED;
	return EP_ACT_REDIRECT;
}

/*
 * Turn the (untranslated) packet into the reject reply: TCP RST, or ICMP
 * port unreachable for UDP/SCTP. A global function, verified once and with
 * its own stack frame (the ICMP quote buffer stays off the main frame).
 * The IPv4 header is at ETH_HLEN (what ep_parse accepts).
 */
__attribute__((noinline)) int ep_reject_pkt(struct __sk_buff *skb, __u32 l4_off)
{
	struct ep_reject_pkt p = {};
	__u8 proto;

	if (!skb || l4_off > ETH_HLEN + 60)
		return -EP_DROP_REJECT_FAILED;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, protocol), &proto, 1) ||
	    ep_reject_read(skb, l4_off, &p))
		return -EP_DROP_REJECT_FAILED;
	if (proto == EP_PROTO_TCP)
		return ep_reject_tcp(skb, l4_off, &p);
	return ep_reject_icmp(skb, &p);
}

static __always_inline int ep_reject(struct ep_ctx *ctx)
{
	return ep_reject_pkt(ctx->skb, ctx->l4_off);
}

#endif /* EP_REJECT_H */
