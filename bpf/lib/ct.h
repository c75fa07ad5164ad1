/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ct.h: connection tracking. A translated flow has two entries in the hash
 * map ep_ct4_v2: FORWARD, keyed by the tuple the client sends (dst = VIP),
 * and REPLY, keyed by the tuple the reply arrives with (src = backend, dst =
 * client or the hairpin address). An established packet costs one lookup,
 * plus ep_ct_touch (state flags, last_seen_ns) for the garbage collector.
 */
#ifndef EP_CT_H
#define EP_CT_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../maps.h"
#include "ctx.h"
#include "stats.h"

static __always_inline void ep_ct_key_fill(struct ep_ct_key *k, __be32 saddr, __be32 daddr,
					   __be16 sport, __be16 dport, __u8 proto, __u8 dir)
{
	k->saddr = saddr;
	k->daddr = daddr;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->dir = dir;
	k->_pad0 = 0;
}

static __always_inline struct ep_ct_value *ep_ct_lookup(const struct ep_ct_key *k)
{
	return bpf_map_lookup_elem(&ep_ct4_v2, k);
}

/* A fresh entry: translation target, flags, both timestamps; the rest zero. */
static __always_inline void ep_ct_value_init(struct ep_ct_value *v, __be32 nat_addr, __be16 nat_port,
					     __u16 flags, __u64 now)
{
	__builtin_memset(v, 0, sizeof(*v));
	v->nat_addr = nat_addr;
	v->nat_port = nat_port;
	v->flags = flags;
	v->created_ns = now;
	v->last_seen_ns = now;
}

/* A reply entry shares its flow's policy verdict (replies are never judged). */
static __always_inline void ep_ct_reply_inherit(struct ep_ct_value *rval, const struct ep_ct_value *fval)
{
	rval->policy_verdict = fval->policy_verdict;
	rval->policy_epoch = fval->policy_epoch;
}

#define EP_ALT_PORT_TRIES 8
#define EP_ALT_PORT_BASE  32768  /* remapped source ports: 32768..65535 */

/*
 * The reply tuple @rkey of a new flow to frontend @vip:@vport from @client
 * can already belong to another live flow: the same client port used
 * towards two ClusterIPs that share a backend (port reuse across
 * destinations is normal). Replies would then be sent to the wrong socket.
 * Like Linux NAT, pick another source port for the new flow instead (@alt,
 * and @rkey's dport); 0 in @alt when none is needed.
 */
static __always_inline int ep_ct_pick_alt_port(struct ep_ct_key *rkey, __be32 client, __be32 vip,
					       __be16 vport, __be16 *alt)
{
	struct ep_ct_value *other;
	int i;

	*alt = 0;
	other = ep_ct_lookup(rkey);
	/*
	 * Free: no entry, the stale reply entry of this same flow, or the entry
	 * of a TCP flow the backend already closed (closed flows must not hold
	 * their tuple until the garbage collector removes them).
	 */
	if (!other)
		return 0;
	if ((other->flags & EP_CT_F_CLOSING) ||
	    (other->nat_addr == vip && other->nat_port == vport && other->hairpin_addr == client &&
	     !other->alt_port)) {
		ep_stat_inc(EP_STAT_CT_REUSED);
		return 0;
	}
	for (i = 0; i < EP_ALT_PORT_TRIES; i++) {
		__u16 p = EP_ALT_PORT_BASE + (bpf_get_prandom_u32() & 0x7fff);

		rkey->dport = bpf_htons(p);
		other = ep_ct_lookup(rkey);
		if (!other || (other->flags & EP_CT_F_CLOSING)) {
			if (other)
				ep_stat_inc(EP_STAT_CT_REUSED);
			*alt = rkey->dport;
			return 0;
		}
	}
	return -EP_DROP_CT_FULL;
}

/*
 * Insert both directions; a failure of either (the table is full: a hash
 * never evicts) is EP_DROP_CT_FULL and counts EP_STAT_CT_INSERT_FAILED.
 */
static __always_inline int ep_ct_create(const struct ep_ct_key *fkey, const struct ep_ct_value *fval,
					const struct ep_ct_key *rkey, const struct ep_ct_value *rval)
{
	if (bpf_map_update_elem(&ep_ct4_v2, rkey, rval, BPF_ANY)) {
		ep_stat_inc(EP_STAT_CT_INSERT_FAILED);
		return -EP_DROP_CT_FULL;
	}
	if (bpf_map_update_elem(&ep_ct4_v2, fkey, fval, BPF_ANY)) {
		bpf_map_delete_elem(&ep_ct4_v2, rkey);
		ep_stat_inc(EP_STAT_CT_INSERT_FAILED);
		return -EP_DROP_CT_FULL;
	}
	ep_stat_inc(EP_STAT_CT_CREATED);
	return EP_CONTINUE;
}

/*
 * A packet of a tracked flow: accumulate the state it shows in its own
 * direction's entry and refresh last_seen_ns (at most once per
 * EP_CT_TOUCH_NS, so a busy flow does not write the entry on every packet).
 * `close` is what the packet says about the end of the flow: 0,
 * EP_CT_F_CLOSING (TCP FIN, SCTP SHUTDOWN) or EP_CT_F_CLOSING|EP_CT_F_CLOSED
 * (TCP RST, SCTP ABORT / SHUTDOWN COMPLETE). A reply marks the flow
 * established. A TCP SYN (without ACK) starts a new connection on the tuple:
 * the old connection's end state is forgotten.
 */
static __always_inline void ep_ct_touch(struct ep_ct_value *ct, __u16 close, int reply, int syn)
{
	__u64 now = bpf_ktime_get_ns();
	__u16 flags = ct->flags;
	__u16 want = flags | close;

	if (reply)
		want |= EP_CT_F_ESTABLISHED;
	else if (syn)
		want = (flags & ~(EP_CT_F_CLOSING | EP_CT_F_CLOSED | EP_CT_F_ESTABLISHED)) | close;
	if (want != flags)
		ct->flags = want;
	if (now - ct->last_seen_ns >= EP_CT_TOUCH_NS)
		ct->last_seen_ns = now;
}

/* What a packet says about the end of its flow: 0, or EP_CT_F_CLOSING[|EP_CT_F_CLOSED]. */
static __always_inline __u16 ep_ct_close_seen(const struct ep_ctx *ctx)
{
	__u8 chunk = 0;

	if (ctx->proto == EP_PROTO_TCP) {
		if (ctx->tcp_flags & EP_TCP_RST)
			return EP_CT_F_CLOSING | EP_CT_F_CLOSED;
		return (ctx->tcp_flags & EP_TCP_FIN) ? EP_CT_F_CLOSING : 0;
	}
	/* SCTP: the first chunk's type, after the 12-byte common header. */
	if (ctx->proto != EP_PROTO_SCTP || ctx->is_fragment ||
	    bpf_skb_load_bytes(ctx->skb, ctx->l4_off + 12, &chunk, 1))
		return 0;
	if (chunk == 6 || chunk == 14)  /* ABORT, SHUTDOWN COMPLETE */
		return EP_CT_F_CLOSING | EP_CT_F_CLOSED;
	if (chunk == 7 || chunk == 8)   /* SHUTDOWN, SHUTDOWN ACK */
		return EP_CT_F_CLOSING;
	return 0;
}

#define EP_CT_REPLY_OK      0
#define EP_CT_REPLY_MISSING 1
#define EP_CT_REPLY_FOREIGN 2
#define EP_CT_REPLY_CLOSING 3  /* ours, but the backend side already closed (FIN/RST) */

/* Whether the reply entry of a translated flow still exists and points back to it. */
static __always_inline int ep_ct_reply_state(const struct ep_ct_key *fkey,
					     const struct ep_ct_value *fval)
{
	struct ep_ct_key rkey = {};
	struct ep_ct_value *r;
	__be32 rdst = (fval->flags & EP_CT_F_SOURCE_NATED) ? fval->hairpin_addr : fkey->saddr;

	ep_ct_key_fill(&rkey, fval->nat_addr, rdst, fval->nat_port,
		       fval->alt_port ? fval->alt_port : fkey->sport, fkey->proto, EP_CT_DIR_REPLY);
	r = ep_ct_lookup(&rkey);
	if (!r)
		return EP_CT_REPLY_MISSING;
	if (r->nat_addr != fkey->daddr || r->nat_port != fkey->dport || r->hairpin_addr != fkey->saddr ||
	    r->alt_port != (fval->alt_port ? fkey->sport : 0))
		return EP_CT_REPLY_FOREIGN;
	if (r->flags & EP_CT_F_CLOSING)
		return EP_CT_REPLY_CLOSING;
	return EP_CT_REPLY_OK;
}

/* Remove a flow given its forward key and value (the reply key is derived). */
static __always_inline void ep_ct_delete(const struct ep_ct_key *fkey, const struct ep_ct_value *fval)
{
	struct ep_ct_key rkey = {};
	__be32 rdst = (fval->flags & EP_CT_F_SOURCE_NATED) ? fval->hairpin_addr : fkey->saddr;

	ep_ct_key_fill(&rkey, fval->nat_addr, rdst, fval->nat_port,
		       fval->alt_port ? fval->alt_port : fkey->sport, fkey->proto, EP_CT_DIR_REPLY);
	bpf_map_delete_elem(&ep_ct4_v2, &rkey);
	bpf_map_delete_elem(&ep_ct4_v2, fkey);
	ep_stat_inc(EP_STAT_CT_DELETED);
}

#endif /* EP_CT_H */
