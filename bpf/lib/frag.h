/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * frag.h: IPv4 fragments of tracked flows. The first fragment of a datagram
 * records its ports in ep_frag4_v1; later fragments (no L4 header) recover
 * them there, so they find the same conntrack entry and get the same L3
 * rewrite.
 */
#ifndef EP_FRAG_H
#define EP_FRAG_H

#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "ctx.h"

/* Remember a first fragment's ports so later fragments find the flow. */
static __always_inline void ep_frag_remember(const struct ep_ctx *ctx)
{
	struct ep_frag_key k = {};
	struct ep_frag_value v = {};

	if (!ctx->first_fragment)
		return;
	k.saddr = ctx->saddr;
	k.daddr = ctx->orig_daddr;
	k.id = ctx->ip_id;
	k.proto = ctx->proto;
	v.sport = ctx->sport;
	v.dport = ctx->orig_dport;
	bpf_map_update_elem(&ep_frag4_v1, &k, &v, BPF_ANY);
}

/* Non-first fragment: recover the ports from the first one, if we saw it. */
static __always_inline int ep_fragment_stage(struct ep_ctx *ctx)
{
	struct ep_frag_key k = {};
	struct ep_frag_value *v;

	k.saddr = ctx->saddr;
	k.daddr = ctx->daddr;
	k.id = ctx->ip_id;
	k.proto = ctx->proto;
	v = bpf_map_lookup_elem(&ep_frag4_v1, &k);
	if (!v)
		return EP_ACT_UNTRACKED;  /* not a datagram we track (or its head was lost) */
	ctx->sport = v->sport;
	ctx->dport = v->dport;
	ctx->orig_dport = v->dport;
	return EP_CONTINUE;
}

#endif /* EP_FRAG_H */
