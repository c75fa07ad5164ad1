// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sock.bpf.c: service translation for the processes of the cgroup given by
 * --cgroup (the node's own, hostNetwork pods, and pods when their cgroups are
 * below it, unless socket-lb says host-only or off), at the socket layer:
 * the destination is rewritten once at connect()/sendmsg() time, so no
 * per-packet NAT happens on this path.
 *
 *  connect4     TCP and connected UDP: VIP:port -> backend, remembered per
 *               socket cookie in ep_sknat_v1 for getpeername/recvmsg.
 *  sendmsg4     unconnected UDP (sendto): the same, per datagram.
 *  recvmsg4     unconnected UDP (recvfrom): the backend source becomes the
 *               VIP again, so `dig`-style clients accept the answer.
 *  getpeername4 reports the VIP, not the backend.
 * A service without usable endpoints fails connect()/sendmsg() at once with
 * ECONNREFUSED (bpf_set_retval), kube-proxy REJECT's effect for local callers.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "edgeplane.h"
#include "maps.h"
#include "lib/drop.h"
#include "lib/lb.h"
#include "lib/stats.h"

#define EP_ECONNREFUSED 111
#define EP_SOCK_PASS 1

static __always_inline __u8 ep_sock_proto(const struct bpf_sock_addr *sa)
{
	if (sa->protocol == EP_PROTO_TCP || sa->protocol == EP_PROTO_UDP ||
	    sa->protocol == EP_PROTO_SCTP)
		return sa->protocol;
	return 0;
}

/* Translate the destination in @sa; EP_SOCK_PASS or 0 (refused). */
static __always_inline int ep_sock_translate(struct bpf_sock_addr *sa, __be32 client, __u32 stat)
{
	struct ep_sknat_key nkey = {};
	struct ep_sknat_value nval = {};
	struct ep_lb_choice pick = {};
	struct ep_svc_value *svc;
	__be32 vip = sa->user_ip4;
	__be16 port = (__be16)sa->user_port;
	__u8 proto = ep_sock_proto(sa);
	int ret;

	if (!proto)
		return EP_SOCK_PASS;
	svc = ep_lb_lookup(vip, port, proto, EP_SCOPE_CLUSTER);
	if (!svc)
		return EP_SOCK_PASS;
	ret = ep_lb_select(vip, port, proto, EP_SCOPE_CLUSTER, svc, client, &pick);
	if (ret) {
		struct ep_ctx ctx = {};

		ctx.daddr = vip;
		ctx.dport = port;
		ctx.proto = proto;
		ep_drop_record(&ctx, -ret);
		bpf_set_retval(-EP_ECONNREFUSED);
		return 0;
	}
	sa->user_ip4 = pick.be.addr;
	sa->user_port = pick.be.port;

	nkey.cookie = bpf_get_socket_cookie(sa);
	nkey.addr = pick.be.addr;
	nkey.port = pick.be.port;
	nval.vip = vip;
	nval.port = port;
	bpf_map_update_elem(&ep_sknat_v1, &nkey, &nval, BPF_ANY);
	ep_stat_inc(stat);
	return EP_SOCK_PASS;
}

/* Report the VIP instead of the backend the socket really talks to. */
static __always_inline int ep_sock_revnat(struct bpf_sock_addr *sa)
{
	struct ep_sknat_key nkey = {};
	struct ep_sknat_value *nval;

	nkey.cookie = bpf_get_socket_cookie(sa);
	nkey.addr = sa->user_ip4;
	nkey.port = (__be16)sa->user_port;
	nval = bpf_map_lookup_elem(&ep_sknat_v1, &nkey);
	if (nval) {
		sa->user_ip4 = nval->vip;
		sa->user_port = nval->port;
	}
	return EP_SOCK_PASS;
}

/*
 * Whether the socket-lb setting lets these hooks translate this socket, and
 * its sessionAffinity key. connect4 cannot read the source address, so the
 * key is the caller's network namespace (the low 32 bits of its cookie): a
 * pod's callers share one, the node's processes another (as kube-proxy sees
 * node-originated traffic as one client).
 */
static __always_inline int ep_sock_in_scope(struct bpf_sock_addr *sa, __be32 *client)
{
	__u32 zero = 0;
	struct ep_node *node = bpf_map_lookup_elem(&ep_node_v1, &zero);
	__u64 netns = bpf_get_netns_cookie(sa);

	if (node && (node->flags & EP_NODE_F_SOCKLB_OFF))
		return 0;
	/* host-only: a pod's socket is left to the tc program on its veth. */
	if (node && (node->flags & EP_NODE_F_SOCKLB_HOST_ONLY) && netns != node->netns_cookie)
		return 0;
	*client = (__be32)netns;
	return 1;
}

SEC("cgroup/connect4")
int ep_sock_connect4(struct bpf_sock_addr *sa)
{
	__be32 client;

	if (!ep_sock_in_scope(sa, &client))
		return EP_SOCK_PASS;
	return ep_sock_translate(sa, client, EP_STAT_SOCK_CONNECT);
}

SEC("cgroup/sendmsg4")
int ep_sock_sendmsg4(struct bpf_sock_addr *sa)
{
	__be32 client;

	if (!ep_sock_in_scope(sa, &client))
		return EP_SOCK_PASS;
	return ep_sock_translate(sa, client, EP_STAT_SOCK_SENDMSG);
}

SEC("cgroup/recvmsg4")
int ep_sock_recvmsg4(struct bpf_sock_addr *sa)
{
	return ep_sock_revnat(sa);
}

SEC("cgroup/getpeername4")
int ep_sock_getpeername4(struct bpf_sock_addr *sa)
{
	return ep_sock_revnat(sa);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
