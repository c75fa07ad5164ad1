/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * edgeplane.h: the single source of truth for everything that crosses the
 * kernel/user boundary: map keys and values, flags, drop reasons and pinned
 * map names. build.rs generates the Rust mirrors from this file (structs,
 * sizes, #define constants: src/maps/layout.rs includes them).
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
#define EP_MAP_CT      "ep_ct4_v2"
#define EP_MAP_CT_V1   "ep_ct4_v1"     /* LRU predecessor: migrated into ep_ct4_v2, then unpinned */
#define EP_MAP_AFF     "ep_aff_v1"
#define EP_MAP_SKNAT   "ep_sknat_v1"
#define EP_MAP_DROPS   "ep_drops_v1"
#define EP_MAP_STATS   "ep_stats_v1"
#define EP_MAP_CFG     "ep_cfg_v1"
#define EP_MAP_DROPEV  "ep_dropev_v1"
#define EP_MAP_DROPSEQ "ep_dropseq_v1" /* one __u64: next ep_dropev_v1 sequence number */
#define EP_MAP_FRAG    "ep_frag4_v1"   /* IPv4 fragment tracking for translated datagrams */
#define EP_MAP_NODE    "ep_node_v1"    /* this node: SNAT address, DSR (array, one entry) */
#define EP_MAP_LBSRC   "ep_lbsrc_v1"   /* loadBalancerSourceRanges (LPM) */
#define EP_MAP_EVENTS  "ep_events_v1"  /* ring buffer of struct ep_event for `edgeplane monitor` */
#define EP_MAP_MONITOR "ep_monitor_v1" /* struct ep_monitor: what to emit, and until when */
#define EP_MAP_IFACES  "ep_ifaces_v1"  /* ifindex -> EP_IFACE_F_*: the interfaces edgeplane attached to */

/* ---- default capacities (overridden from the config file) -------------- */
#define EP_DEFAULT_SVC_ENTRIES   1048576   /* service slots: 100k services x (1 + endpoints) */
#define EP_DEFAULT_BE_ENTRIES    262144
#define EP_DEFAULT_CT_ENTRIES    1048576
#define EP_DEFAULT_AFF_ENTRIES   65536
#define EP_DEFAULT_SKNAT_ENTRIES 65536
#define EP_DEFAULT_FRAG_ENTRIES  8192
#define EP_DEFAULT_LBSRC_ENTRIES 65536
#define EP_DEFAULT_IFACE_ENTRIES 16384  /* attached interfaces (pod veths) */

/* ep_ifaces_v1 values (written by the daemon at each interface sync). */
#define EP_IFACE_F_WORKLOAD 0x1  /* a pod's host-side veth: bpf_redirect_peer reaches the pod */

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

/*
 * Which traffic a frontend entry serves (kube-proxy's internal and external
 * policy chains). Packets from pods and host sockets look up CLUSTER only;
 * packets arriving on a host (uplink) interface look up EXTERNAL first, then
 * CLUSTER (a ClusterIP routed to the node from outside).
 *   CLUSTER:  ClusterIPs with internalTrafficPolicy endpoints; NodePort
 *             (node address:nodePort), LoadBalancer and external IPs with
 *             all cluster endpoints (in-cluster callers short-circuit, as
 *             kube-proxy's "pod traffic for external destinations").
 *   EXTERNAL: NodePort, LoadBalancer and external IPs with
 *             externalTrafficPolicy endpoints (Local: this node's only).
 */
#define EP_SCOPE_CLUSTER  0
#define EP_SCOPE_EXTERNAL 1

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
#define EP_SVC_F_DROP_EMPTY  0x0004  /* count 0 means "endpoints exist, none on this node" (Local
                                      * traffic policy): drop (EP_DROP_NO_LOCAL_ENDPOINTS), not reject */
#define EP_SVC_F_SOURCE_RANGES 0x0008 /* loadBalancerSourceRanges: the client must match ep_lbsrc_v1 */
#define EP_SVC_F_NODE_ADDR   0x0010  /* the frontend address is a node address (NodePort): translated
                                      * packets are FIB-routed, since the kernel drops forwarded
                                      * packets whose source is a local address */
#define EP_SVC_F_DSR_OK      0x0020  /* EXTERNAL scope, externalTrafficPolicy Cluster: remote
                                      * endpoints are reached by DSR when the node has it on */

/* ---- ep_be_v1: backends, keyed by __u32 backend id ---------------------- */
struct ep_backend {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 flags;   /* EP_BE_F_* */
};
_Static_assert(sizeof(struct ep_backend) == 8, "ep_backend layout is ABI");

/* The endpoint is not known to be on this node (its nodeName differs from
 * node-name, or either is unset): external flows to it are source-NATed to
 * the node address, or sent by DSR. */
#define EP_BE_F_REMOTE 0x01

/* ---- ep_ct4_v2: connection tracking (hash, garbage-collected) ---------- */
/*
 * A plain hash: a full table refuses the NEW flow (EP_DROP_CT_FULL and
 * EP_STAT_CT_INSERT_FAILED) instead of evicting a live one. Entries leave
 * when the datapath deletes them or when the daemon's garbage collector
 * (src/datapath/ct_gc.rs) finds them idle longer than the timeout of their
 * protocol and state, judged on both entries of the flow together:
 * last_seen_ns is refreshed by packets of its direction, the flags below
 * accumulate what that direction saw. ep_ct4_v1 had the same key and value.
 */
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
	__be16 alt_port;      /* client source port remapped to avoid a reply-tuple clash (0: none):
	                       * forward: the port the client's source becomes;
	                       * reply: the client's real port, restored as destination */
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
#define EP_CT_F_CLOSING 0x0004  /* TCP FIN or RST (SCTP SHUTDOWN, ABORT) seen in this direction: the tuple may be reused */
#define EP_CT_F_ESTABLISHED 0x0008  /* a reply was seen (set on the reply entry): TCP established, UDP stream */
#define EP_CT_F_CLOSED  0x0010  /* TCP RST (SCTP ABORT, SHUTDOWN COMPLETE) seen: removed after the closing timeout */
#define EP_CT_F_FIB     0x0020  /* translated packets of the flow (both directions) leave by FIB lookup +
                                 * redirect: a node address is their (restored) source */
#define EP_CT_F_DSR     0x0040  /* entry node: forward packets go to a remote endpoint with the frontend
                                 * in an IPv4 option (struct ep_dsr_opt); backend node: the reply entry
                                 * was learnt from that option */
#define EP_CT_F_SNAT    0x0080  /* external flow to a remote endpoint: source NATed to the node address
                                 * (hairpin_addr holds it, as for EP_CT_F_HAIRPIN) */
/* The client's address was replaced by hairpin_addr (and is restored in replies). */
#define EP_CT_F_SOURCE_NATED (EP_CT_F_HAIRPIN | EP_CT_F_SNAT)
/* last_seen_ns is refreshed at most once per EP_CT_TOUCH_NS (one write, not one per packet). */
#define EP_CT_TOUCH_NS  1000000000ULL

#define EP_POLICY_UNKNOWN 0
#define EP_POLICY_ALLOW   1
#define EP_POLICY_DENY    2   /* denied by the destination's ingress policy */
#define EP_POLICY_DENY_EGRESS 3 /* denied by the source's egress policy */

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

/* ---- ep_frag4_v1: first-fragment ports of translated datagrams (LRU) --- */
/*
 * Non-first IPv4 fragments carry no L4 header; the first fragment of a
 * datagram whose flow is translated records its ports here so the later
 * fragments find the same conntrack entry and get the same L3 rewrite.
 */
struct ep_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 _pad0;
};
_Static_assert(sizeof(struct ep_frag_key) == 12, "ep_frag_key layout is ABI");

struct ep_frag_value {
	__be16 sport;
	__be16 dport;
};
_Static_assert(sizeof(struct ep_frag_value) == 4, "ep_frag_value layout is ABI");

/* ---- ep_cfg_v1: runtime configuration (array, one entry at index 0) ---- */
struct ep_config {
	__be32 hairpin_addr;  /* source used when a pod reaches itself via a service */
	__u32 policy_epoch;   /* bumped on every policy change: cached verdicts expire */
	__u32 flags;          /* EP_CFG_F_* */
	__u32 applied_objects; /* userspace only: objects in the last applied input */
};
_Static_assert(sizeof(struct ep_config) == 16, "ep_config layout is ABI");

#define EP_CFG_F_POLICY 0x0001  /* NetworkPolicy enforcement enabled */
#define EP_CFG_F_INPUT_HELD 0x0002  /* userspace only: the latest input was held, not applied */

/* ---- ep_node_v1: this node (array, one entry at index 0) ---------------- */
struct ep_node {
	__be32 snat_addr;  /* source of SNATed external flows: the first IPv4 of node-ips (0: none,
	                    * such flows are dropped with EP_DROP_NO_SNAT_ADDR) */
	__u32 flags;       /* EP_NODE_F_* */
	__u64 netns_cookie; /* the node's network namespace (socket-lb: host-only) */
};
_Static_assert(sizeof(struct ep_node) == 16, "ep_node layout is ABI");

#define EP_NODE_F_DSR 0x0001  /* dsr: true */
#define EP_NODE_F_HOST_ROUTING 0x0002  /* host-routing: bpf: translated packets skip the IP stack */
#define EP_NODE_F_SOCKLB_HOST_ONLY 0x0004  /* socket-lb: host-only: sockets of other netns (pods) are left to tc */
#define EP_NODE_F_SOCKLB_OFF 0x0008        /* socket-lb: off: the socket hooks translate nothing */

/* ---- ep_lbsrc_v1: loadBalancerSourceRanges (LPM trie) ------------------- */
/* prefixlen = 64 (the frontend, matched whole) + the source prefix length. */
struct ep_lbsrc_key {
	__u32 prefixlen;
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 _pad0;
	__be32 saddr;
};
_Static_assert(sizeof(struct ep_lbsrc_key) == 16, "ep_lbsrc_key layout is ABI");
#define EP_LBSRC_PREFIX_FRONTEND 64

struct ep_lbsrc_value {
	__u32 allow;  /* 1 */
};
_Static_assert(sizeof(struct ep_lbsrc_value) == 4, "ep_lbsrc_value layout is ABI");

/*
 * DSR: the IPv4 option the entry node inserts after the IPv4 header (the
 * packet then has ihl 7) so the backend node can restore the frontend as the
 * reply's source. Type 0x9a: "copied" bit, class 0, number 26 (unassigned);
 * receivers ignore options they do not know. Carried by the first packet of a
 * flow (TCP SYN, SCTP INIT) and by every UDP datagram.
 */
struct ep_dsr_opt {
	__u8 type;
	__u8 len;
	__be16 port;
	__be32 addr;
};
_Static_assert(sizeof(struct ep_dsr_opt) == 8, "ep_dsr_opt layout is ABI");
#define EP_DSR_OPT_TYPE 0x9a

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
	EP_DROP_NO_LOCAL_ENDPOINTS = 11,  /* Local traffic policy and no endpoint on this node: dropped, not rejected */
	EP_DROP_SOURCE_RANGE = 12,        /* client outside the service's loadBalancerSourceRanges */
	EP_DROP_NO_SNAT_ADDR = 13,        /* external flow to a remote endpoint, but node-ips has no IPv4 to SNAT to */
	EP_DROP_DSR_TOO_BIG = 14,         /* DSR: the packet with the service option would exceed the MTU */
	EP_DROP_NO_ROUTE = 15,            /* a FIB-routed packet has no route (or its route is not forwardable) */
	EP_DROP__MAX = 16,                /* size of ep_drops_v1 */
};

/* ---- ep_dropev_v1: the last EP_DROPEV_SLOTS drops, with their tuple ----- */
/* An array used as a ring: the program writes slot (EP_STAT_DROPEV_SEQ % slots). */
#define EP_DROPEV_SLOTS 256

struct ep_drop_event {
	__u64 ts_ns;       /* bpf_ktime_get_ns() */
	__be32 saddr;
	__be32 daddr;      /* after service translation */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 reason;       /* enum ep_drop_reason */
	__u8 direction;    /* for policy drops: EP_DIR_INGRESS / EP_DIR_EGRESS */
	__u8 _pad0;
	__u32 ifindex;     /* interface the packet arrived on */
	__u32 endpoint;    /* policy drops: the local pod's endpoint id that denied it, else 0 */
};
_Static_assert(sizeof(struct ep_drop_event) == 32, "ep_drop_event layout is ABI");

#define EP_DIR_INGRESS 0
#define EP_DIR_EGRESS  1

/* ---- ep_events_v1 / ep_monitor_v1: live events for `edgeplane monitor` --- */
/*
 * Programs emit into the ring buffer only while ep_monitor_v1[0] asks for it
 * and its lease has not run out: `monitor` renews the lease every second, so
 * a killed monitor stops the events within EP_MONITOR_LEASE_NS. Nobody
 * listening costs one array lookup per drop or new flow, nothing else.
 */
#define EP_EVENTS_BYTES     (256 * 1024)   /* ring buffer size (a power of 2, >= a page) */
#define EP_MONITOR_LEASE_NS 3000000000ULL  /* how long one renewal keeps events on */

#define EP_MON_F_DROPS 0x1  /* every counted drop and reject */
#define EP_MON_F_FLOWS 0x2  /* new flows: translation and policy verdict */

struct ep_monitor {
	__u64 until_ns;    /* bpf_ktime_get_ns() deadline of the lease; 0 = off */
	__u32 flags;       /* EP_MON_F_* */
	__u32 _pad0;
};
_Static_assert(sizeof(struct ep_monitor) == 16, "ep_monitor layout is ABI");

enum ep_event_kind {
	EP_EV_DROP = 1,      /* code = enum ep_drop_reason */
	EP_EV_NEW_FLOW = 2,  /* code = EP_POLICY_* verdict (EP_POLICY_UNKNOWN: policy off) */
};

struct ep_event {
	__u64 ts_ns;       /* bpf_ktime_get_ns() */
	__be32 saddr;      /* the client as it arrived */
	__be32 daddr;      /* the destination as it arrived (a frontend for service flows) */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 kind;         /* enum ep_event_kind */
	__u8 code;         /* drop reason or policy verdict, by kind */
	__u8 direction;    /* policy drops: EP_DIR_INGRESS / EP_DIR_EGRESS */
	__u32 ifindex;     /* interface the packet arrived on */
	__u32 endpoint;    /* policy drops: the local pod's endpoint id that denied it, else 0 */
	__be32 nat_addr;   /* new flows: the backend chosen (daddr when not translated); drops: final daddr */
	__be16 nat_port;
	__u16 ct_flags;    /* new flows: EP_CT_F_* (SNAT, DSR, hairpin, FIB-routed) */
	__u32 svc_id;      /* service flows: the service id, else 0 */
	__u32 _pad0;
};
_Static_assert(sizeof(struct ep_event) == 48, "ep_event layout is ABI");
/* Not in the object's BTF (only a ring buffer carries it): the offsets that
 * the Rust mirror relies on are pinned here (build.rs asserts them there too). */
_Static_assert(__builtin_offsetof(struct ep_event, proto) == 20, "ep_event layout is ABI");
_Static_assert(__builtin_offsetof(struct ep_event, ifindex) == 24, "ep_event layout is ABI");
_Static_assert(__builtin_offsetof(struct ep_event, nat_addr) == 32, "ep_event layout is ABI");
_Static_assert(__builtin_offsetof(struct ep_event, svc_id) == 40, "ep_event layout is ABI");

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
	EP_STAT_DROPEV_SEQ = 8,   /* drop events written so far (not per-CPU meaningful: summed) */
	EP_STAT_CT_REUSED = 9,    /* new flows that took over the reply tuple of a closed or stale flow */
	EP_STAT_CT_INSERT_FAILED = 10, /* conntrack inserts refused: the table was full */
	/* Written by the daemon's conntrack garbage collector (CPU 0's slot), not by programs. */
	EP_STAT_CT_GC_RUNS = 11,
	EP_STAT_CT_GC_EXPIRED = 12,    /* flows removed because idle longer than their timeout */
	EP_STAT_CT_GC_CLOSED = 13,     /* closed flows removed (TCP RST or FIN both ways, SCTP end) */
	EP_STAT__MAX = 16,
};

/* ======================================================================== */
/* ---- NetworkPolicy (owned by the policy work; see docs/POLICY.md) ------- */
/* ======================================================================== */
/*
 * Three maps, written only by the plan engine from compile_policy's output:
 *
 *   ep_ident_v1  LPM trie  IPv4 prefix -> identity. Pod IPs (/32), ipBlock
 *                          CIDRs and except prefixes, and the node's own
 *                          addresses (EP_IDENT_HOST). A miss is EP_IDENT_WORLD.
 *   ep_pol_v1    LPM trie  (subject, peer, dir, proto, port prefix) -> allow.
 *                          subject = identity of the local pod the rule
 *                          protects; peer = identity of the other end, or
 *                          EP_IDENT_ANY for rules without peers.
 *   ep_lep_v1    hash      local pod IPv4 -> endpoint id, identity, isolation.
 *                          Only pods isolated in at least one direction.
 *
 * Per new flow: <= 2 ep_lep_v1 lookups, <= 2 ep_ident_v1 lookups and <= 4
 * ep_pol_v1 lookups (specific peer and EP_IDENT_ANY, per direction),
 * whatever the number of pods, policies or rules. The verdict is cached in
 * the conntrack entry with the policy epoch (ep_config.policy_epoch).
 *
 * Atomic policy changes: every value holds the state before and from
 * `switch_epoch` on. A change is written with switch_epoch = E + 1 while
 * ep_config.policy_epoch is E (so the data plane still sees exactly the old
 * policy, whatever the write order), then one write of ep_config flips every
 * entry to the new policy at once, then entries only the old policy needed
 * are deleted. ep_active(epoch, switch_epoch) says which half applies.
 */
#define EP_MAP_IDENT   "ep_ident_v1"
#define EP_MAP_POL     "ep_pol_v1"
#define EP_MAP_LEP     "ep_lep_v1"

#define EP_DEFAULT_IDENT_ENTRIES 262144   /* pods + ipBlock prefixes + node addresses */
#define EP_DEFAULT_POL_ENTRIES   1048576  /* allow entries (LPM, not preallocated) */
#define EP_DEFAULT_LEP_ENTRIES   65536    /* isolated pods on this node */

/* Reserved identities; allocated ones start at EP_IDENT_FIRST. */
#define EP_IDENT_WORLD 0u           /* address in no pod, CIDR or node entry */
#define EP_IDENT_HOST  1u           /* this node's own addresses: always allowed */
#define EP_IDENT_FIRST 256u
#define EP_IDENT_ANY   0xffffffffu  /* ep_pol_v1 peer wildcard (rule without from/to) */

/* The "from switch_epoch on" half applies (serial-number comparison, wraps). */
#define ep_epoch_new(epoch, switch_epoch) ((__s32)((__u32)(epoch) - (__u32)(switch_epoch)) >= 0)

/* ep_ident_v1 key: bpf_lpm_trie_key layout, prefixlen counts bits of addr. */
struct ep_ident_key {
	__u32 prefixlen;
	__be32 addr;
};
_Static_assert(sizeof(struct ep_ident_key) == 8, "ep_ident_key layout is ABI");

struct ep_ident_value {
	__u32 identity;       /* from switch_epoch on */
	__u32 prev_identity;  /* before switch_epoch */
	__u32 switch_epoch;
	__u32 _pad0;
};
_Static_assert(sizeof(struct ep_ident_value) == 16, "ep_ident_value layout is ABI");

/*
 * ep_pol_v1 key. prefixlen counts bits after the prefixlen field, in field
 * order: subject (32) + peer (32) + dir (8) = 72 means "every protocol and
 * port"; + proto (8) = 80 means "every port of proto"; 80 + n matches the
 * top n bits of dport (big endian), so an endPort range is a few prefixes.
 * subject and peer are host order: they are always matched whole.
 */
struct ep_pol_key {
	__u32 prefixlen;
	__u32 subject;
	__u32 peer;
	__u8 dir;       /* EP_DIR_INGRESS / EP_DIR_EGRESS */
	__u8 proto;
	__be16 dport;
};
_Static_assert(sizeof(struct ep_pol_key) == 16, "ep_pol_key layout is ABI");

#define EP_POL_PREFIX_ALL_PROTO 72   /* subject, peer, dir */
#define EP_POL_PREFIX_ALL_PORTS 80   /* + proto */
#define EP_POL_PREFIX_FULL      96   /* + dport */

/*
 * The longest matching entry decides, so an entry says whether the ports it
 * covers are allowed in each half (an entry present only for the new policy
 * still answers for the old one, from the entries it shadows).
 */
struct ep_pol_value {
	__u16 flags;          /* EP_POL_F_* */
	__u16 _pad0;
	__u32 switch_epoch;
};
_Static_assert(sizeof(struct ep_pol_value) == 8, "ep_pol_value layout is ABI");

#define EP_POL_F_ALLOW      0x0001  /* allowed from switch_epoch on */
#define EP_POL_F_PREV_ALLOW 0x0002  /* allowed before switch_epoch */

/* ep_lep_v1: key is the pod's __be32 IPv4 address. */
struct ep_lep_value {
	__u32 endpoint_id;    /* stable per pod; reported in drop events */
	__u32 identity;       /* subject id in ep_pol_v1 keys, from switch_epoch on */
	__u32 prev_identity;  /* before switch_epoch */
	__u16 flags;          /* EP_LEP_F_*, from switch_epoch on */
	__u16 prev_flags;     /* before switch_epoch */
	__u32 switch_epoch;
	__u32 _pad0;
};
_Static_assert(sizeof(struct ep_lep_value) == 24, "ep_lep_value layout is ABI");

#define EP_LEP_F_INGRESS_ISOLATED 0x0001
#define EP_LEP_F_EGRESS_ISOLATED  0x0002
/* ---- end NetworkPolicy --------------------------------------------------- */

#endif /* EDGEPLANE_H */
