// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * vxswitch's eBPF fast path (docs/fastpath.md).
 *
 * Two programs share one decision, `fp_decide`, over maps that the switch
 * keeps in step with its own ports and FDB (src/fastpath/):
 *
 * - `fp_tc`, a tc ingress classifier (direct action) on the host end of each
 *   fast-path veth port (`fp_tc_up` on each fast uplink's interface), hands a known
 *   unicast frame straight to the destination: a container
 *   (bpf_redirect_peer, a LAN frame's VLAN tag popped first) or the LAN
 *   (bpf_redirect to the uplink's egress, the network's tag pushed first),
 *   counting it per CPU;
 * - A veth port has no socket of the switch in its host end's taps either
 *   (packet sockets see a frame in __netif_receive_skb_core's taps, before
 *   tc ingress, so they would pay for every fast frame too): `fp_tc`
 *   redirects what it does not take, except frames for the host end itself,
 *   to the ingress of the port's steering interface (`fp_steer`: host-end
 *   ifindex -> steering ifindex), where the switch's sockets read it and
 *   `fp_steer_in` drops it. The switch sends to the port through a socket
 *   on the host end that receives nothing.
 * - `fp_sock`, a socket filter for a veth port whose steering interface
 *   could not be made: its packet sockets stay on the host end, and the
 *   filter hides the frames `fp_tc` will redirect from the switch. It
 *   replaces the socket's classic filter, so it also drops what that one
 *   did: frames for the host end itself (PACKET_HOST).
 * - An uplink has no socket of the switch in its taps at all: `fp_tc_up`
 *   clones every frame it does not take, and that is not the host's own,
 *   to the ingress of the uplink's steering interface (`fp_steer`: uplink
 *   ifindex -> steering ifindex), where the switch's sockets read it with
 *   their classic VLAN filter and `fp_steer_in` then drops it, so the
 *   host's stack sees it once, on the uplink. One decision per frame.
 *
 * Anything else -- broadcast, multicast, unknown unicast, a VLAN tag on a
 * veth port, a VLAN no uplink network has, QinQ, a priority tag, a source
 * the switch has not learned at this port, a port without the fast path --
 * goes to the userspace switch unchanged.
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
	__u32 slot;  /* its counters' index in fp_stats */
};

struct fp_fdb_key {
	__u32 net;
	__u8 mac[6];
	__u16 pad;
};

/* fp_fdb_val.flags: the MAC is behind an uplink (`ifindex` is its interface). */
#define FP_FDB_UPLINK 1u

struct fp_fdb_val {
	__u32 ifindex; /* the host end of the port (or the uplink) the MAC is behind */
	__u16 vlan;    /* behind an uplink: the network's VLAN id, 0 untagged */
	__u16 flags;
	__u64 seen_ns; /* CLOCK_MONOTONIC_COARSE of the last fast frame from this MAC */
};

/* An uplink network: (interface, VLAN id or 0 for the untagged LAN). */
struct fp_uplink_key {
	__u32 ifindex;
	__u32 vlan;
};

struct fp_uplink {
	__u32 net;
	__u32 port;  /* the switch's port id of the network's uplink port */
	__u32 stats; /* its counters' index in fp_stats (VLANs share an ifindex) */
	__u32 mtu;
	__u16 flags; /* FP_PORT_FAST */
	__u16 pad;
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

/* Counters per CPU, at the slot the switch gives each port (its port id):
 * an array, whose lookup the verifier inlines, not a hash. */
#define FP_SLOTS 4096
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FP_SLOTS);
	__type(key, __u32);
	__type(value, struct fp_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_stats SEC(".maps");

/* An uplink's interface, or a veth port's host end -> its steering
 * interface (src/ports/uplink.rs). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_steer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct fp_uplink_key);
	__type(value, struct fp_uplink);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_uplinks SEC(".maps");

/* Refresh a source's last-seen time at most this often (one write, not one
 * per frame, on the hot cache line). */
#define FP_SEEN_GRAIN_NS 250000000ull

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] &&
	       a[4] == b[4] && a[5] == b[5];
}

/* Where a frame goes fast. */
struct fp_out {
	__u32 ifindex;  /* the destination's host end, or the uplink's interface */
	__u32 in_stats; /* fp_stats slots of the source and destination ports */
	__u32 out_stats;
	__u16 push;     /* to a tagged uplink: the tag to push */
	__u8 egress;    /* to an uplink: its egress (bpf_redirect), not a peer */
	__u8 pop;       /* from a tagged uplink: pop the tag first */
};

/* Whether the frame goes fast, and where (`o`). `tc`: the caller is the tc
 * program, which may also forget a source that moved (the socket filter,
 * which runs first, only looks); `uplink`: the frame came in on an uplink
 * (no port lookup). */
static __always_inline int fp_decide(struct __sk_buff *skb, struct fp_fdb_val **src,
				     struct fp_out *o, int tc, int uplink)
{
	struct ethhdr eth;
	struct fp_fdb_key key = {};
	struct fp_uplink_key ukey = {};
	struct fp_port *sp, *dp;
	struct fp_uplink *up;
	struct fp_fdb_val *s, *d;
	__u32 in = skb->ifindex, net, mtu;
	int from_uplink = 0;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return 0;
	if (eth.h_dest[0] & 1) /* broadcast, multicast */
		return 0;
	/* A tag left in the frame: QinQ (the outer one is in vlan_tci). */
	if (eth.h_proto == bpf_htons(ETH_P_8021Q) || eth.h_proto == bpf_htons(ETH_P_8021AD))
		return 0;
	/* An uplink's program knows it is one: no port lookup. */
	sp = uplink ? 0 : bpf_map_lookup_elem(&fp_ports, &in);
	if (sp) {
		if (skb->vlan_present)
			return 0;
		if (!(sp->flags & FP_PORT_FAST))
			return 0;
		if ((sp->flags & FP_PORT_MAC_LOCK) && !mac_eq(sp->mac, eth.h_source))
			return 0;
		net = sp->net;
		mtu = sp->mtu;
		o->in_stats = sp->slot;
	} else {
		/* An uplink: the kernel moved the frame's 802.1Q tag, if any,
		 * into vlan_tci before the taps and tc saw it. */
		ukey.ifindex = in;
		if (skb->vlan_present) {
			ukey.vlan = skb->vlan_tci & 0x0fff;
			if (!ukey.vlan) /* a priority tag: the switch's */
				return 0;
			if (skb->vlan_proto != bpf_htons(ETH_P_8021Q))
				return 0;
		}
		up = bpf_map_lookup_elem(&fp_uplinks, &ukey);
		if (!up || !(up->flags & FP_PORT_FAST))
			return 0;
		net = up->net;
		mtu = up->mtu;
		o->in_stats = up->stats;
		o->pop = skb->vlan_present ? 1 : 0;
		from_uplink = 1;
	}
	key.net = net;
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
	o->ifindex = d->ifindex;
	if (d->flags & FP_FDB_UPLINK) {
		/* To the LAN: only from a container. */
		if (from_uplink)
			return 0;
		ukey.ifindex = d->ifindex;
		ukey.vlan = d->vlan;
		up = bpf_map_lookup_elem(&fp_uplinks, &ukey);
		if (!up || !(up->flags & FP_PORT_FAST) || up->net != net || up->mtu < mtu)
			return 0;
		o->out_stats = up->stats;
		o->push = d->vlan;
		o->egress = 1;
	} else {
		dp = bpf_map_lookup_elem(&fp_ports, &o->ifindex);
		if (!dp || !(dp->flags & FP_PORT_FAST) || dp->net != net || dp->mtu < mtu)
			return 0;
		o->out_stats = dp->slot;
	}
	/* The counters need no look here: the switch puts a port's (an
	 * uplink's) counter in before its entry and takes it out after. */
	*src = s;
	return 1;
}

static __always_inline int fp_tc_run(struct __sk_buff *skb, int uplink)
{
	struct fp_fdb_val *s = 0;
	struct fp_out o = {};
	struct fp_stats *st;
	__u32 len = skb->len;
	__u64 now;

	if (!fp_decide(skb, &s, &o, 1, uplink) || !s)
		return TC_ACT_OK;
	/* The coarse clock (the last tick's): no clock source read per
	 * frame, and far finer than the grain. */
	now = bpf_ktime_get_coarse_ns();
	if (now - s->seen_ns > FP_SEEN_GRAIN_NS)
		s->seen_ns = now;
	/* The switch does not see the frame (the socket filter hid it; on an
	 * uplink it is not cloned): from here it goes fast or nowhere. */
	if (o.pop && bpf_skb_vlan_pop(skb))
		return TC_ACT_SHOT;
	if (o.push && bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), o.push))
		return TC_ACT_SHOT;
	st = bpf_map_lookup_elem(&fp_stats, &o.in_stats);
	if (st) {
		st->rx_frames++;
		st->rx_bytes += len;
	}
	st = bpf_map_lookup_elem(&fp_stats, &o.out_stats);
	if (st) {
		st->tx_frames++;
		st->tx_bytes += len;
	}
	if (o.egress)
		return bpf_redirect(o.ifindex, 0);
	return bpf_redirect_peer(o.ifindex, 0);
}

/* On a veth port's host end. A frame it does not take goes to the port's
 * steering interface, whose packet sockets are the switch's (no steering
 * interface: on, to the sockets on the host end, which `fp_sock` filters);
 * one for the host end itself stays with the host's stack, as the
 * switch's classic filter left it. */
SEC("classifier")
int fp_tc(struct __sk_buff *skb)
{
	__u32 in = skb->ifindex, *steer;
	int r = fp_tc_run(skb, 0);

	if (r != TC_ACT_OK || skb->pkt_type == PACKET_HOST)
		return r;
	steer = bpf_map_lookup_elem(&fp_steer, &in);
	if (steer)
		return bpf_redirect(*steer, BPF_F_INGRESS);
	return TC_ACT_OK;
}

/* On an uplink's interface: the same, without the port lookup; a frame it
 * does not take, and that is not addressed to the host itself (the host's
 * frames go to the host only, as before), is also cloned to the ingress of
 * the uplink's steering interface, whose packet sockets are the switch's.
 * Either way the host's stack gets it as before (TC_ACT_OK). */
SEC("classifier")
int fp_tc_up(struct __sk_buff *skb)
{
	__u32 in = skb->ifindex, *steer;
	int r = fp_tc_run(skb, 1);

	if (r != TC_ACT_OK)
		return r;
	if (skb->pkt_type == PACKET_HOST)
		return TC_ACT_OK;
	steer = bpf_map_lookup_elem(&fp_steer, &in);
	if (steer)
		bpf_clone_redirect(skb, *steer, BPF_F_INGRESS);
	return TC_ACT_OK;
}

/* On a steering interface's ingress: its packet sockets (the taps, before
 * tc) have seen the frame; the host's stack saw it on the uplink already
 * (a veth port's frames are for the switch alone). */
SEC("classifier")
int fp_steer_in(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}

SEC("socket")
int fp_sock(struct __sk_buff *skb)
{
	struct fp_fdb_val *s = 0;
	struct fp_out o = {};

	/* As the port socket's classic filter did: nothing the host sends,
	 * nothing addressed to the host end itself. */
	if (skb->pkt_type == PACKET_OUTGOING)
		return skb->len;
	if (skb->pkt_type == PACKET_HOST)
		return 0;
	return fp_decide(skb, &s, &o, 0, 0) ? 0 : skb->len;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
