// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * vxswitch's eBPF fast path (docs/fastpath.md).
 *
 * Two programs share one decision, `fp_decide`, over maps that the switch
 * keeps in step with its own ports and FDB (src/fastpath/):
 *
 * - `fp_tc`, a tc ingress classifier (direct action) on the host end of each
 *   fast-path veth port, hands a known unicast frame straight to the
 *   destination container with bpf_redirect_peer, counting it per CPU;
 * - `fp_sock`, a socket filter on the same port's packet socket, hides the
 *   frames `fp_tc` will redirect from the userspace switch (packet sockets
 *   see a frame in __netif_receive_skb_core's taps, before tc ingress). It
 *   replaces the socket's classic filter, so it also drops what that one
 *   did: frames for the host end itself (PACKET_HOST).
 *
 * Anything else -- broadcast, multicast, unknown unicast, a VLAN tag, a
 * source the switch has not learned at this port, a port without the fast
 * path -- goes to the userspace switch unchanged.
 *
 * The structs below are mirrored, field for field, in src/fastpath/maps.rs.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* A port's flags. */
#define FP_PORT_FAST 1u     /* frames from and to this port may go fast */
#define FP_PORT_MAC_LOCK 2u /* port security: only `mac` may be a source */

struct fp_port {
	__u32 net;   /* the switch's network id */
	__u32 port;  /* the switch's port id */
	__u8 mac[6]; /* the allowed source MAC under FP_PORT_MAC_LOCK */
	__u16 flags;
	__u32 mtu;   /* a frame goes fast only to a port with an MTU >= this */
};

struct fp_fdb_key {
	__u32 net;
	__u8 mac[6];
	__u16 pad;
};

struct fp_fdb_val {
	__u32 ifindex; /* the host end of the port the MAC is behind */
	__u32 pad;
	__u64 seen_ns; /* CLOCK_MONOTONIC of the last fast frame from this MAC */
};

struct fp_stats {
	__u64 rx_frames;
	__u64 rx_bytes;
	__u64 tx_frames;
	__u64 tx_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* host-end ifindex */
	__type(value, struct fp_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fp_fdb_key);
	__type(value, struct fp_fdb_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_fdb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* host-end ifindex */
	__type(value, struct fp_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_stats SEC(".maps");

/* Refresh a source's last-seen time at most this often (one write, not one
 * per frame, on the hot cache line). */
#define FP_SEEN_GRAIN_NS 250000000ull

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] &&
	       a[4] == b[4] && a[5] == b[5];
}

/* The host-end ifindex to redirect to, or 0 for "the userspace switch".
 * `tc`: the caller is the tc program, which may also forget a source that
 * moved (the socket filter, which runs first, only looks). */
static __always_inline __u32 fp_decide(struct __sk_buff *skb, struct fp_fdb_val **src, int tc)
{
	struct ethhdr eth;
	struct fp_fdb_key key = {};
	struct fp_port *sp, *dp;
	struct fp_fdb_val *s, *d;
	__u32 in = skb->ifindex, out;

	if (skb->vlan_present)
		return 0;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return 0;
	if (eth.h_dest[0] & 1) /* broadcast, multicast */
		return 0;
	if (eth.h_proto == bpf_htons(ETH_P_8021Q) || eth.h_proto == bpf_htons(ETH_P_8021AD))
		return 0;
	sp = bpf_map_lookup_elem(&fp_ports, &in);
	if (!sp || !(sp->flags & FP_PORT_FAST))
		return 0;
	if ((sp->flags & FP_PORT_MAC_LOCK) && !mac_eq(sp->mac, eth.h_source))
		return 0;
	key.net = sp->net;
	__builtin_memcpy(key.mac, eth.h_source, 6);
	s = bpf_map_lookup_elem(&fp_fdb, &key);
	if (!s) /* not learned yet: the switch learns it */
		return 0;
	if (s->ifindex != in) {
		/* The source moved here (or claims to): until the switch has
		 * judged it, no frame goes fast to its old port. */
		if (tc)
			bpf_map_delete_elem(&fp_fdb, &key);
		return 0;
	}
	__builtin_memcpy(key.mac, eth.h_dest, 6);
	d = bpf_map_lookup_elem(&fp_fdb, &key);
	if (!d || d->ifindex == in)
		return 0;
	out = d->ifindex;
	dp = bpf_map_lookup_elem(&fp_ports, &out);
	if (!dp || !(dp->flags & FP_PORT_FAST) || dp->net != sp->net || dp->mtu < sp->mtu)
		return 0;
	if (!bpf_map_lookup_elem(&fp_stats, &in) || !bpf_map_lookup_elem(&fp_stats, &out))
		return 0;
	*src = s;
	return out;
}

SEC("classifier")
int fp_tc(struct __sk_buff *skb)
{
	struct fp_fdb_val *s = 0;
	struct fp_stats *st;
	__u32 in = skb->ifindex, out;
	__u64 now;

	out = fp_decide(skb, &s, 1);
	if (!out || !s)
		return TC_ACT_OK;
	now = bpf_ktime_get_ns();
	if (now - s->seen_ns > FP_SEEN_GRAIN_NS)
		s->seen_ns = now;
	st = bpf_map_lookup_elem(&fp_stats, &in);
	if (st) {
		st->rx_frames++;
		st->rx_bytes += skb->len;
	}
	st = bpf_map_lookup_elem(&fp_stats, &out);
	if (st) {
		st->tx_frames++;
		st->tx_bytes += skb->len;
	}
	return bpf_redirect_peer(out, 0);
}

SEC("socket")
int fp_sock(struct __sk_buff *skb)
{
	struct fp_fdb_val *s = 0;

	/* As the port socket's classic filter did: nothing the host sends,
	 * nothing addressed to the host end itself. */
	if (skb->pkt_type == PACKET_OUTGOING)
		return skb->len;
	if (skb->pkt_type == PACKET_HOST)
		return 0;
	return fp_decide(skb, &s, 0) ? 0 : skb->len;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
