/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ct.h: connection tracking. A translated flow has two entries in the LRU
 * map ep_ct4_v1: FORWARD, keyed by the tuple the client sends (dst = VIP),
 * and REPLY, keyed by the tuple the reply arrives with (src = backend, dst =
 * client or the hairpin address). An established packet costs one lookup.
 */
#ifndef EP_CT_H
#define EP_CT_H

#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "ctx.h"
#include "drop.h"

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
	return bpf_map_lookup_elem(&ep_ct4_v1, k);
}

/* Insert both directions; a failure of either is EP_DROP_CT_FULL. */
static __always_inline int ep_ct_create(const struct ep_ct_key *fkey, const struct ep_ct_value *fval,
					const struct ep_ct_key *rkey, const struct ep_ct_value *rval)
{
	if (bpf_map_update_elem(&ep_ct4_v1, rkey, rval, BPF_ANY))
		return -EP_DROP_CT_FULL;
	if (bpf_map_update_elem(&ep_ct4_v1, fkey, fval, BPF_ANY)) {
		bpf_map_delete_elem(&ep_ct4_v1, rkey);
		return -EP_DROP_CT_FULL;
	}
	ep_stat_inc(EP_STAT_CT_CREATED);
	return EP_CONTINUE;
}

#define EP_CT_REPLY_OK      0
#define EP_CT_REPLY_MISSING 1
#define EP_CT_REPLY_FOREIGN 2

/* Whether the reply entry of a translated flow still exists and points back to it. */
static __always_inline int ep_ct_reply_state(const struct ep_ct_key *fkey,
					     const struct ep_ct_value *fval)
{
	struct ep_ct_key rkey = {};
	struct ep_ct_value *r;
	__be32 rdst = (fval->flags & EP_CT_F_HAIRPIN) ? fval->hairpin_addr : fkey->saddr;

	ep_ct_key_fill(&rkey, fval->nat_addr, rdst, fval->nat_port,
		       fval->alt_port ? fval->alt_port : fkey->sport, fkey->proto, EP_CT_DIR_REPLY);
	r = ep_ct_lookup(&rkey);
	if (!r)
		return EP_CT_REPLY_MISSING;
	if (r->nat_addr != fkey->daddr || r->nat_port != fkey->dport || r->hairpin_addr != fkey->saddr ||
	    r->alt_port != (fval->alt_port ? fkey->sport : 0))
		return EP_CT_REPLY_FOREIGN;
	return EP_CT_REPLY_OK;
}

/* Remove a flow given its forward key and value (the reply key is derived). */
static __always_inline void ep_ct_delete(const struct ep_ct_key *fkey, const struct ep_ct_value *fval)
{
	struct ep_ct_key rkey = {};
	__be32 rdst = (fval->flags & EP_CT_F_HAIRPIN) ? fval->hairpin_addr : fkey->saddr;

	ep_ct_key_fill(&rkey, fval->nat_addr, rdst, fval->nat_port,
		       fval->alt_port ? fval->alt_port : fkey->sport, fkey->proto, EP_CT_DIR_REPLY);
	bpf_map_delete_elem(&ep_ct4_v1, &rkey);
	bpf_map_delete_elem(&ep_ct4_v1, fkey);
	ep_stat_inc(EP_STAT_CT_DELETED);
}

#endif /* EP_CT_H */
