/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h: every map the programs use, nothing else. Sizes here are the
 * compile-time defaults; the loader sets max_entries from the config before
 * load, then reuses or pins each map by name under the state directory
 * (pinning is done by the loader, not LIBBPF_PIN_BY_NAME, so that it can
 * refuse an incompatible pinned map with a clear message).
 *
 * Every struct that crosses the kernel/user boundary is referenced here, so
 * it lands in the object's BTF and in the generated Rust `types` module.
 */
#ifndef EP_MAPS_H
#define EP_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "edgeplane.h"

/* Service frontends and backend slots: written only by the plan engine. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ep_svc_key);
	__type(value, struct ep_svc_value);
	__uint(max_entries, EP_DEFAULT_SVC_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ep_svc_v1 SEC(".maps");

/* Backends by id: a hash (not an array) so that dump and delete mean "exists". */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct ep_backend);
	__uint(max_entries, EP_DEFAULT_BE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ep_be_v1 SEC(".maps");

/*
 * Conntrack: a plain (preallocated) hash, never LRU: the kernel never evicts a
 * tracked flow; a full table refuses new flows, and the daemon's garbage
 * collector removes expired ones (see ep_ct4_v2 in edgeplane.h).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ep_ct_key);
	__type(value, struct ep_ct_value);
	__uint(max_entries, EP_DEFAULT_CT_ENTRIES);
} ep_ct4_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ep_aff_key);
	__type(value, struct ep_aff_value);
	__uint(max_entries, EP_DEFAULT_AFF_ENTRIES);
} ep_aff_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ep_sknat_key);
	__type(value, struct ep_sknat_value);
	__uint(max_entries, EP_DEFAULT_SKNAT_ENTRIES);
} ep_sknat_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ep_frag_key);
	__type(value, struct ep_frag_value);
	__uint(max_entries, EP_DEFAULT_FRAG_ENTRIES);
} ep_frag4_v1 SEC(".maps");

/* This node: SNAT address and DSR flag (written by the daemon at each apply). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ep_node);
	__uint(max_entries, 1);
} ep_node_v1 SEC(".maps");

/* loadBalancerSourceRanges: (frontend, client prefix) -> allow. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ep_lbsrc_key);
	__type(value, struct ep_lbsrc_value);
	__uint(max_entries, EP_DEFAULT_LBSRC_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ep_lbsrc_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, EP_DROP__MAX);
} ep_drops_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, EP_STAT__MAX);
} ep_stats_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ep_config);
	__uint(max_entries, 1);
} ep_cfg_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ep_drop_event);
	__uint(max_entries, EP_DROPEV_SLOTS);
} ep_dropev_v1 SEC(".maps");

/* One shared sequence number, so concurrent CPUs fill distinct event slots. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} ep_dropseq_v1 SEC(".maps");

/* Interfaces the programs run on, by ifindex (host routing: which egress
 * interfaces are pod veths, reached with bpf_redirect_peer). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, EP_DEFAULT_IFACE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ep_ifaces_v1 SEC(".maps");

/* Live events for `edgeplane monitor` (lib/monitor.h): emitted only while leased. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EP_EVENTS_BYTES);
} ep_events_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ep_monitor);
	__uint(max_entries, 1);
} ep_monitor_v1 SEC(".maps");

/* ---- NetworkPolicy maps ---- (owned by the policy work; layouts in edgeplane.h) */
/* IPv4 prefix -> identity. LPM tries must not be preallocated. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ep_ident_key);
	__type(value, struct ep_ident_value);
	__uint(max_entries, EP_DEFAULT_IDENT_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ep_ident_v1 SEC(".maps");

/* (subject, peer, dir, proto, port prefix) -> allow. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ep_pol_key);
	__type(value, struct ep_pol_value);
	__uint(max_entries, EP_DEFAULT_POL_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ep_pol_v1 SEC(".maps");

/* Local isolated pod IPv4 -> endpoint id, identity, isolation flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct ep_lep_value);
	__uint(max_entries, EP_DEFAULT_LEP_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ep_lep_v1 SEC(".maps");
/* ---- end NetworkPolicy maps ---- */

#endif /* EP_MAPS_H */
