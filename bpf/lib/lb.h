/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lb.h: service lookup and backend selection, shared by the tc program and
 * the socket hooks (no skb needed).
 *
 * Selection is uniform random over slots 1..count (bpf_get_prandom_u32):
 * the same distribution as kube-proxy's iptables mode (statistic random), with
 * no per-service state to rebuild when endpoints change. Maglev would only
 * pay off for stateless failover between several load balancers, which a
 * per-node proxy with its own conntrack does not need.
 */
#ifndef EP_LB_H
#define EP_LB_H

#include <bpf/bpf_helpers.h>
#include "../maps.h"

struct ep_lb_choice {
	struct ep_backend be;
	__u32 backend_id;
	__u16 slot;
	__u16 _pad0;
};

/* Slot 0 of the frontend in @scope (EP_SCOPE_*), or NULL. */
static __always_inline struct ep_svc_value *ep_lb_lookup(__be32 vip, __be16 port, __u8 proto, __u8 scope)
{
	struct ep_svc_key key = {};

	key.vip = vip;
	key.port = port;
	key.proto = proto;
	key.scope = scope;
	key.slot = 0;
	return bpf_map_lookup_elem(&ep_svc_v1, &key);
}

/* Backend in @slot of the frontend, or -EP_DROP_SVC_INCONSISTENT. */
static __always_inline int ep_lb_slot(__be32 vip, __be16 port, __u8 proto, __u8 scope, __u16 slot,
				      struct ep_lb_choice *out)
{
	struct ep_svc_key key = {};
	struct ep_svc_value *sv;
	struct ep_backend *be;
	__u32 id;

	key.vip = vip;
	key.port = port;
	key.proto = proto;
	key.scope = scope;
	key.slot = slot;
	sv = bpf_map_lookup_elem(&ep_svc_v1, &key);
	if (!sv)
		return -EP_DROP_SVC_INCONSISTENT;
	id = sv->backend_id;
	be = bpf_map_lookup_elem(&ep_be_v1, &id);
	if (!be)
		return -EP_DROP_SVC_INCONSISTENT;
	out->be = *be;
	out->backend_id = id;
	out->slot = slot;
	return 0;
}

/*
 * Pick a backend for a new flow from @client to the frontend. With
 * sessionAffinity the previous choice is reused while it is younger than
 * the timeout and its slot still holds the same backend; the timestamp is
 * refreshed on every new flow (kube-proxy's "recent" semantics).
 */
static __always_inline int ep_lb_select(__be32 vip, __be16 port, __u8 proto, __u8 scope,
					const struct ep_svc_value *svc, __be32 client,
					struct ep_lb_choice *out)
{
	struct ep_aff_key akey = {};
	struct ep_aff_value aval = {};
	struct ep_aff_value *aff;
	__u64 now = 0;
	__u16 slot;
	int ret;

	if (svc->count == 0)
		return -EP_DROP_NO_ENDPOINTS;
	if (svc->flags & EP_SVC_F_AFFINITY) {
		akey.svc_id = svc->svc_id;
		akey.client = client;
		now = bpf_ktime_get_ns();
		aff = bpf_map_lookup_elem(&ep_aff_v1, &akey);
		if (aff && aff->slot >= 1 && aff->slot <= svc->count &&
		    now - aff->last_seen_ns < (__u64)svc->affinity_timeout * 1000000000ULL) {
			ret = ep_lb_slot(vip, port, proto, scope, aff->slot, out);
			if (ret == 0 && out->backend_id == aff->backend_id) {
				aff->last_seen_ns = now;
				return 0;
			}
		}
	}
	slot = (bpf_get_prandom_u32() % svc->count) + 1;
	ret = ep_lb_slot(vip, port, proto, scope, slot, out);
	if (ret)
		return ret;
	if (svc->flags & EP_SVC_F_AFFINITY) {
		aval.last_seen_ns = now;
		aval.backend_id = out->backend_id;
		aval.slot = slot;
		bpf_map_update_elem(&ep_aff_v1, &akey, &aval, BPF_ANY);
	}
	return 0;
}

#endif /* EP_LB_H */
