/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* drop.h: drop accounting (ep_drops_v1 + ep_dropev_v1, ep_events_v1 when monitored). */
#ifndef EP_DROP_H
#define EP_DROP_H

#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "ctx.h"
#include "monitor.h"
#include "stats.h"

/* Count a drop or reject under @reason and record its tuple in the ring. */
static __always_inline void ep_drop_record(const struct ep_ctx *ctx, __u32 reason)
{
	__u32 zero = 0, slot;
	__u64 *cnt, *seq, s;
	struct ep_drop_event *ev;

	if (reason >= EP_DROP__MAX)
		reason = EP_DROP_MALFORMED;
	cnt = bpf_map_lookup_elem(&ep_drops_v1, &reason);
	if (cnt)
		*cnt += 1;
	ep_stat_inc(EP_STAT_DROPEV_SEQ);
	ep_monitor_drop(ctx, reason);

	seq = bpf_map_lookup_elem(&ep_dropseq_v1, &zero);
	if (!seq)
		return;
	/* One shared counter: CPUs racing for a slot get distinct ones. */
	s = __sync_fetch_and_add(seq, 1);
	slot = s % EP_DROPEV_SLOTS;
	ev = bpf_map_lookup_elem(&ep_dropev_v1, &slot);
	if (!ev)
		return;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->saddr = ctx->saddr;
	ev->daddr = ctx->daddr;
	ev->sport = ctx->sport;
	ev->dport = ctx->dport;
	ev->proto = ctx->proto;
	ev->reason = reason;
	ev->direction = reason == EP_DROP_POLICY_EGRESS ? EP_DIR_EGRESS : EP_DIR_INGRESS;
	ev->_pad0 = 0;
	ev->ifindex = ctx->ifindex;
	ev->endpoint = ctx->drop_endpoint;
}

#endif /* EP_DROP_H */
