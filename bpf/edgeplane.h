/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * edgeplane.h: the single source of truth for everything that crosses the
 * kernel/user boundary: map keys and values, flags, drop reasons and pinned
 * map names. Rust mirrors these in src/maps/layout.rs and asserts the sizes.
 *
 * Rules: explicit padding, no bitfields, network byte order for fields typed
 * __be*, every struct size asserted. Changing a layout means bumping the
 * map's _vN suffix (EP_MAP_* below) and writing a migration or refusal.
 */
#ifndef EDGEPLANE_H
#define EDGEPLANE_H

#include <linux/types.h>

/* ---- pinned map names (<= 15 chars, versioned) -------------------------- */
#define EP_MAP_SVC     "ep_svc_v1"
#define EP_MAP_BE      "ep_be_v1"
#define EP_MAP_CT      "ep_ct4_v1"
#define EP_MAP_AFF     "ep_aff_v1"
#define EP_MAP_SKNAT   "ep_sknat_v1"
#define EP_MAP_DROPS   "ep_drops_v1"
#define EP_MAP_STATS   "ep_stats_v1"
#define EP_MAP_CFG     "ep_cfg_v1"

/* ---- default capacities (overridden from the config file) -------------- */
#define EP_DEFAULT_SVC_ENTRIES   1048576   /* service slots: 100k services x (1 + endpoints) */
#define EP_DEFAULT_BE_ENTRIES    262144
#define EP_DEFAULT_CT_ENTRIES    1048576
#define EP_DEFAULT_AFF_ENTRIES   65536
#define EP_DEFAULT_SKNAT_ENTRIES 65536

#define EP_PROTO_ICMP 1
#define EP_PROTO_TCP  6
#define EP_PROTO_UDP  17
#define EP_PROTO_SCTP 132

/* ---- ep_svc_v1: service frontends and their backend slots -------------- */
/*
 * Slot 0 is the service itself (count of backend slots, flags, ids); slots
 * 1..count hold backend ids. Writers add slots before raising slot 0's count
 * and lower the count before removing slots, so a reader never follows a
 * slot that does not exist (make-before-break).
 */
struct ep_svc_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 scope;   /* EP_SCOPE_*: which frontend kind this key is */
	__u16 slot;
	__u16 _pad0;
};
_Static_assert(sizeof(struct ep_svc_key) == 12, "ep_svc_key layout is ABI");

#define EP_SCOPE_CLUSTER  0   /* ClusterIP (and, later, externalIPs) */
#define EP_SCOPE_NODEPORT 1   /* reserved for NodePort frontends */

struct ep_svc_value {
	__u32 backend_id;        /* slot > 0: id in ep_be_v1; slot 0: 0 */
	__u16 count;             /* slot 0: number of backend slots; 0 = reject */
	__u16 flags;             /* slot 0: EP_SVC_F_* */
	__u32 svc_id;            /* slot 0: stable service id (affinity, stats) */
	__u32 affinity_timeout;  /* slot 0: seconds, when EP_SVC_F_AFFINITY */
};
_Static_assert(sizeof(struct ep_svc_value) == 16, "ep_svc_value layout is ABI");

#define EP_SVC_F_AFFINITY    0x0001  /* sessionAffinity: ClientIP */
#define EP_SVC_F_TERMINATING 0x0002  /* slots hold serving-terminating endpoints (no ready ones) */

/* ---- ep_be_v1: backends, keyed by __u32 backend id ---------------------- */
struct ep_backend {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 flags;   /* reserved, 0 */
};
_Static_assert(sizeof(struct ep_backend) == 8, "ep_backend layout is ABI");

/* ---- ep_ct4_v1: connection tracking (LRU) ------------------------------ */
struct ep_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;      /* EP_CT_DIR_* */
	__u16 _pad0;
};
_Static_assert(sizeof(struct ep_ct_key) == 16, "ep_ct_key layout is ABI");

#define EP_CT_DIR_FORWARD 0  /* key as the client sent it (dst = VIP or pod) */
#define EP_CT_DIR_REPLY   1  /* key as the reply arrives (src = backend) */

struct ep_ct_value {
	__be32 nat_addr;      /* forward: backend addr; reply: VIP to restore as source */
	__be32 hairpin_addr;  /* forward: SNAT source used for hairpin; reply: client addr to restore as dest */
	__be16 nat_port;      /* forward: backend port; reply: VIP port */
	__be16 _pad0;
	__u32 backend_id;     /* forward: backend chosen (checked against ep_be_v1 on every packet) */
	__u32 svc_id;
	__u16 flags;          /* EP_CT_F_* */
	__u8 policy_verdict;  /* EP_POLICY_* cached verdict for this direction */
	__u8 _pad1;
	__u32 policy_epoch;   /* epoch the cached verdict was computed in */
	__u64 created_ns;
	__u64 last_seen_ns;
};
_Static_assert(sizeof(struct ep_ct_value) == 48, "ep_ct_value layout is ABI");

#define EP_CT_F_SERVICE 0x0001  /* the flow was load-balanced (NAT applies) */
#define EP_CT_F_HAIRPIN 0x0002  /* client == backend: source NATed to the hairpin address */

#define EP_POLICY_UNKNOWN 0
#define EP_POLICY_ALLOW   1
#define EP_POLICY_DENY    2

/* ---- ep_aff_v1: sessionAffinity ClientIP (LRU) ------------------------- */
struct ep_aff_key {
	__u32 svc_id;
	__be32 client;
};
_Static_assert(sizeof(struct ep_aff_key) == 8, "ep_aff_key layout is ABI");

struct ep_aff_value {
	__u64 last_seen_ns;
	__u32 backend_id;
	__u16 slot;        /* slot the backend was in; re-checked before reuse */
	__u16 _pad0;
};
_Static_assert(sizeof(struct ep_aff_value) == 16, "ep_aff_value layout is ABI");

/* ---- ep_sknat_v1: socket-level reverse translation (unconnected UDP) --- */
struct ep_sknat_key {
	__u64 cookie;      /* socket cookie */
	__be32 addr;       /* backend address the socket sent to */
	__be16 port;       /* backend port */
	__u16 _pad0;
};
_Static_assert(sizeof(struct ep_sknat_key) == 16, "ep_sknat_key layout is ABI");

struct ep_sknat_value {
	__be32 vip;
	__be16 port;
	__u16 _pad0;
};
_Static_assert(sizeof(struct ep_sknat_value) == 8, "ep_sknat_value layout is ABI");

/* ---- ep_cfg_v1: runtime configuration (array, one entry at index 0) ---- */
struct ep_config {
	__be32 hairpin_addr;  /* source used when a pod reaches itself via a service */
	__u32 policy_epoch;   /* bumped on every policy change: cached verdicts expire */
	__u32 flags;          /* EP_CFG_F_* */
	__u32 _pad0;
};
_Static_assert(sizeof(struct ep_config) == 16, "ep_config layout is ABI");

#define EP_CFG_F_POLICY 0x0001  /* NetworkPolicy enforcement enabled */

/* ---- drop reasons: ep_drops_v1 is a per-CPU array indexed by these ------ */
/* Values are never renumbered; a retired value becomes EP_DROP_RESERVED_<n>. */
enum ep_drop_reason {
	EP_DROP_NONE = 0,
	EP_DROP_NO_ENDPOINTS = 1,         /* service has no usable endpoint: rejected (RST / ICMP unreachable) */
	EP_DROP_MALFORMED = 2,            /* truncated or inconsistent headers */
	EP_DROP_BACKEND_GONE = 3,         /* established TCP flow whose endpoint was removed: reset */
	EP_DROP_CT_FULL = 4,              /* conntrack insert failed */
	EP_DROP_FRAGMENT = 5,             /* non-first fragment to a service address (cannot be translated) */
	EP_DROP_SVC_INCONSISTENT = 6,     /* service slot or backend missing (should not happen) */
	EP_DROP_REJECT_FAILED = 7,        /* building the reject reply failed */
	EP_DROP_POLICY_INGRESS = 8,       /* denied by the destination pod's ingress policy */
	EP_DROP_POLICY_EGRESS = 9,        /* denied by the source pod's egress policy */
	EP_DROP_NAT_FAILED = 10,          /* packet rewrite helper failed */
	EP_DROP__MAX = 16,                /* size of ep_drops_v1 */
};

/* ---- ep_stats_v1: per-CPU event counters (not drops) -------------------- */
enum ep_stat {
	EP_STAT_CT_CREATED = 0,
	EP_STAT_CT_DELETED = 1,
	EP_STAT_LB_NEW_FLOW = 2,
	EP_STAT_SOCK_CONNECT = 3,
	EP_STAT_SOCK_SENDMSG = 4,
	EP_STAT_REVNAT = 5,
	EP_STAT_ICMP_ERR_REVNAT = 6,
	EP_STAT_POLICY_EVAL = 7,
	EP_STAT__MAX = 16,
};

#endif /* EDGEPLANE_H */
