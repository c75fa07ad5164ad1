/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * monitor.h: live events for `edgeplane monitor` (ep_events_v1 ring buffer).
 * Emitted only while ep_monitor_v1[0] holds an unexpired lease for the kind:
 * without a listener a drop or a new flow costs one array lookup here.
 */
#ifndef EP_MONITOR_H
#define EP_MONITOR_H

#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "ctx.h"

/* Whether a monitor leased events of @flag (EP_MON_F_*) and is still renewing. */
static __always_inline int ep_monitor_wants(__u32 flag)
{
	__u32 zero = 0;
	struct ep_monitor *m = bpf_map_lookup_elem(&ep_monitor_v1, &zero);

	return m && (m->flags & flag) && bpf_ktime_get_ns() < m->until_ns;
}

/*
 * One event, written in place in the ring: no stack copy, and no call frame
 * of its own (the service-flow call chain is near the 512-byte stack limit).
 * @kind_code = kind << 8 | code; @nat_port_flags = ct flags << 16
 * | port (network order). A full ring loses the event, never the packet.
 */
static __always_inline int ep_monitor_emit(const struct ep_ctx *ctx, __u32 kind_code, __be32 nat_addr,
					   __u32 nat_port_flags, __u32 svc_id)
{
	struct ep_event *ev;

	if (!ctx)
		return 0;
	ev = bpf_ringbuf_reserve(&ep_events_v1, sizeof(*ev), 0);
	if (!ev)
		return 0;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->saddr = ctx->saddr;
	ev->daddr = ctx->orig_daddr;
	ev->sport = ctx->sport;
	ev->dport = ctx->orig_dport;
	ev->proto = ctx->proto;
	ev->kind = kind_code >> 8;
	ev->code = kind_code & 0xff;
	ev->direction = ev->kind == EP_EV_DROP && ev->code == EP_DROP_POLICY_EGRESS ? EP_DIR_EGRESS : EP_DIR_INGRESS;
	ev->ifindex = ctx->ifindex;
	ev->endpoint = ctx->drop_endpoint;
	ev->nat_addr = nat_addr;
	ev->nat_port = nat_port_flags & 0xffff;
	ev->ct_flags = nat_port_flags >> 16;
	ev->svc_id = svc_id;
	ev->_pad0 = 0;
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

/* A drop or reject of @reason, when a monitor listens. */
static __always_inline void ep_monitor_drop(const struct ep_ctx *ctx, __u32 reason)
{
	if (ep_monitor_wants(EP_MON_F_DROPS))
		ep_monitor_emit(ctx, EP_EV_DROP << 8 | (reason & 0xff), ctx->daddr, ctx->dport, ctx->svc_id);
}

/* A new tracked flow and its translation (@ct), when a monitor asked for flows. */
static __always_inline void ep_monitor_flow(const struct ep_ctx *ctx, const struct ep_ct_value *ct)
{
	if (ep_monitor_wants(EP_MON_F_FLOWS))
		ep_monitor_emit(ctx, EP_EV_NEW_FLOW << 8 | ct->policy_verdict, ct->nat_addr,
				(__u32)ct->flags << 16 | ct->nat_port, ct->svc_id);
}

#endif /* EP_MONITOR_H */
