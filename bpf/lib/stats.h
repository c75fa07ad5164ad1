/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* stats.h: event counters (ep_stats_v1, enum ep_stat); no packet context needed. */
#ifndef EP_STATS_H
#define EP_STATS_H

#include <bpf/bpf_helpers.h>
#include "../maps.h"

static __always_inline void ep_stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&ep_stats_v1, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

#endif /* EP_STATS_H */
