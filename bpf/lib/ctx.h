/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ctx.h: the per-packet context every stage receives, and the stage return
 * convention.
 *
 * Stages return EP_CONTINUE (0) to go on, EP_ACT_* (> 0) to stop with an
 * action, or -EP_DROP_<reason> to drop (the entry point counts it once).
 *
 * What the policy stage (lib/policy.h, owned by the policy work) can rely on
 * when ep_policy_stage(ctx) is called:
 *   - ctx->saddr/daddr/sport/dport/proto are the flow's FINAL tuple: for a
 *     service flow the destination is already the chosen backend
 *     (orig_daddr/orig_dport keep the ClusterIP frontend, svc_id its id);
 *     for a hairpin flow the source is still the client (the pod itself),
 *     not the hairpin address.
 *   - It is called for the first packet of a flow (no conntrack entry yet)
 *     and for packets of an established flow whose cached verdict is from
 *     an older policy epoch (ct->policy_epoch != cfg->policy_epoch). Replies
 *     (a reply conntrack hit) never reach it: replies of an allowed flow are
 *     allowed.
 *   - ctx->ct points to the flow's forward conntrack value: on the stack for
 *     a new flow (inserted after the stage allows it), in the map for an
 *     established one. The stage stores its verdict in ct->policy_verdict
 *     (EP_POLICY_ALLOW, EP_POLICY_DENY = ingress, EP_POLICY_DENY_EGRESS) and
 *     ct->policy_epoch = cfg->policy_epoch; later packets of the flow in the
 *     same epoch are then decided from the cache by tc.bpf.c without calling
 *     the stage (DENY -> EP_DROP_POLICY_INGRESS, DENY_EGRESS -> ..._EGRESS).
 *   - ctx->is_fragment: a non-first IPv4 fragment; its ports were recovered
 *     from the datagram's first fragment (ep_frag4_v1), so they are valid.
 *   - ctx->ifindex: the interface the packet arrived on (ingress of a
 *     workload or host interface); ctx->cfg is ep_cfg_v1[0], never NULL.
 *   - Return EP_CONTINUE to allow, -EP_DROP_POLICY_INGRESS/EGRESS to deny;
 *     the entry point counts the drop and records the event (direction
 *     from the reason, endpoint from ctx->drop_endpoint if the stage set it).
 * Only TCP, UDP and SCTP flows get conntrack entries and reach the stage;
 * ICMP errors are translated by their inner flow and are not evaluated.
 */
#ifndef EP_CTX_H
#define EP_CTX_H

#include <linux/types.h>
#include "../edgeplane.h"

#define EP_CONTINUE      0
#define EP_ACT_PASS      1  /* stop: let the packet continue up the stack */
#define EP_ACT_REDIRECT  2  /* stop: the packet was turned into a reply; redirect it out */
#define EP_ACT_UNTRACKED 3  /* no flow to track (ports unknown...): policy judges it untracked, then pass */
#define EP_ACT_REJECT    4  /* answer with a TCP RST / ICMP unreachable (drop already counted) */
#define EP_ACT_FIB       5  /* stop: translated; route it by FIB lookup + redirect (lib/fib.h);
                             * with ctx->fib_optional (host routing) only where a redirect is right */

struct ep_ctx {
	struct __sk_buff *skb;
	struct ep_config *cfg;     /* ep_cfg_v1[0] */
	struct ep_ct_value *ct;    /* forward ct value of the flow, or NULL */
	__u32 l3_off;              /* offset of the IPv4 header */
	__u32 l4_off;              /* offset of the L4 header (after IPv4 options) */
	__u32 ifindex;             /* ingress interface */
	__u32 svc_id;              /* service flows: stable service id, else 0 */
	__u32 drop_endpoint;       /* policy drops: local endpoint id that denied */
	__u32 in_ports;            /* the L4 ports as they arrived (SCTP CRC fix-up) */
	__be32 saddr;              /* current tuple (final, after translation) */
	__be32 daddr;
	__be32 orig_daddr;         /* destination as the client sent it */
	__be16 sport;
	__be16 dport;
	__be16 orig_dport;
	__be16 ip_id;
	__u16 tot_len;             /* IPv4 total length, host order */
	__u8 proto;
	__u8 is_fragment;          /* non-first fragment (no L4 header in this packet) */
	__u8 first_fragment;       /* first fragment of a fragmented datagram (MF set, offset 0) */
	__u8 is_reply;             /* matched a reply conntrack entry */
	__u8 tcp_flags;            /* TCP only: flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10) */
	__u8 from_host;            /* arrived on a host (uplink) interface, not a workload one */
	__u8 dsr_opt;              /* carries edgeplane's DSR option right after a 20-byte IPv4 header */
	__u8 dsr_insert;           /* entry node: insert the DSR option before routing it */
	__u8 sctp_init;            /* SCTP: the first chunk is INIT (a new association) */
	__u8 fib_optional;         /* EP_ACT_FIB by host routing, not needed: any failure goes to the stack */
	__be16 dsr_port;           /* the DSR option's frontend (dsr_opt) */
	__be32 dsr_addr;
	/* A new flow's forward ct value while it is built (ctx->ct points here then). */
	struct ep_ct_value ct_new;
};

/* NetworkPolicy enforcement is on (ep_config.flags). */
static __always_inline int ep_policy_enabled(const struct ep_ctx *ctx)
{
	return ctx->cfg->flags & EP_CFG_F_POLICY;
}

#define EP_TCP_FIN 0x01
#define EP_TCP_SYN 0x02
#define EP_TCP_RST 0x04
#define EP_TCP_ACK 0x10

#endif /* EP_CTX_H */
