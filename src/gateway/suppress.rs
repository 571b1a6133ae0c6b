//! ARP and IPv6 neighbour suppression: the switch answers an ARP request
//! or a neighbour solicitation for an address the control plane bound to
//! a MAC (a local port's, a cluster endpoint's) itself, with the answer
//! the owner would give, instead of flooding it to every port and every
//! host of the network (the kernel bridge's `neigh_suppress`, Docker's
//! overlay proxy ARP).
//!
//! Sans-IO, like [`super::responder`]: [`NeighTable::answer`] takes one
//! frame and writes the reply into a caller-owned buffer. The switch calls
//! it only for frames from a local port that it would flood (so a unicast
//! probe to a known MAC, which it forwards, never gets here) and sends the
//! reply back to that port.
//!
//! What is answered: a broadcast ARP request (`who-has T tell S`, S not
//! 0.0.0.0 and not T) and a neighbour solicitation to T's solicited-node
//! group from a unicast address, with hop limit 255 and a valid checksum,
//! when T is bound and its MAC is not the asker's own. Everything else an
//! ARP request or solicitation can be is left alone and flooded as before,
//! counted `ignored`: gratuitous ARP and ARP probes (RFC 5227), duplicate
//! address detection (a solicitation from `::`, RFC 4862), requests whose
//! sender MAC is not the frame's source, malformed ones. An unbound target
//! is `missed` and flooded: its owner (or nobody) answers.
//!
//! Contracts: frames are untrusted and read only through [`crate::wire`]'s
//! views; the table is built by the control thread and never changes once
//! a worker holds it (a new one replaces it), so a lookup takes no lock.

use std::collections::HashMap as StdHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::wire::ethernet::HEADER_LEN as ETH_LEN;
use crate::wire::icmpv6::nd_flags;
use crate::wire::ipv6::solicited_node;
use crate::wire::{arp, ipv6};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv6Packet,
    Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr, MacAddr,
};

/// Lookups are per request frame: ahash, not std's SipHash.
type HashMap<K, V> = StdHashMap<K, V, ahash::RandomState>;

/// Shortest Ethernet frame without its FCS; replies are padded to it.
const MIN_FRAME: usize = 60;
/// Hop limit of Neighbor Discovery messages (RFC 4861 §7.1.1).
const ND_HOP_LIMIT: u8 = 255;
/// The longest reply: an advertisement with its target link-layer option.
pub const MAX_REPLY: usize = ETH_LEN + ipv6::HEADER_LEN + 32;

/// What suppression did in one network, summed over its workers.
#[derive(Debug, Default)]
pub struct SuppressStats {
    /// Requests answered by the switch (never flooded).
    pub answered: AtomicU64,
    /// Requests for an address without a binding: flooded as before.
    pub missed: AtomicU64,
    /// ARP requests and solicitations deliberately not answered
    /// (gratuitous ARP, probes, duplicate address detection, a sender that
    /// is not the frame's source, malformed): flooded as before.
    pub ignored: AtomicU64,
}

impl SuppressStats {
    pub fn snapshot(&self) -> SuppressStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SuppressStatsSnapshot {
            answered: get(&self.answered),
            missed: get(&self.missed),
            ignored: get(&self.ignored),
        }
    }
}

/// A point-in-time copy of [`SuppressStats`], as the protocol carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressStatsSnapshot {
    pub answered: u64,
    pub missed: u64,
    pub ignored: u64,
}

/// What became of one frame (already counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suppress {
    /// Send the first `n` bytes of the output buffer back to the asker;
    /// the request goes nowhere else.
    Reply(usize),
    /// A request for an unbound address: flood it.
    Missed,
    /// A request deliberately not answered: flood it.
    Ignored,
    /// Not an ARP request or neighbour solicitation: forward as usual
    /// (not counted).
    NotARequest,
}

/// One binding: the MAC that answers for an address, and whether its
/// owner is a router (the network's gateway: advertisements say so, as
/// its own would).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub mac: MacAddr,
    pub router: bool,
}

/// A network's IP -> MAC bindings, as the control plane set them, and
/// the network's counters (shared by every table it gets).
#[derive(Debug, Default)]
pub struct NeighTable {
    v4: HashMap<Ipv4Addr, Binding>,
    v6: HashMap<Ipv6Addr, Binding>,
    stats: Arc<SuppressStats>,
}

impl NeighTable {
    pub fn new(
        bindings: impl IntoIterator<Item = (IpAddr, Binding)>,
        stats: Arc<SuppressStats>,
    ) -> NeighTable {
        let mut t = NeighTable {
            stats,
            ..NeighTable::default()
        };
        for (ip, b) in bindings {
            match ip {
                IpAddr::V4(a) => t.v4.insert(a, b),
                IpAddr::V6(a) => t.v6.insert(a, b),
            };
        }
        t
    }

    pub fn stats(&self) -> &Arc<SuppressStats> {
        &self.stats
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `frame` may be an ARP request or a neighbour solicitation to
    /// a solicited-node group: two compares, for every flooded frame.
    #[inline(always)]
    pub fn may_be_request(frame: &[u8]) -> bool {
        match frame.get(..ETH_LEN) {
            Some(h) => {
                (h[12] == 0x08 && h[13] == 0x06)
                    || (h[12] == 0x86 && h[13] == 0xdd && h[..3] == [0x33, 0x33, 0xff])
            }
            None => false,
        }
    }

    /// Looks at one frame from a local port; for a request it answers,
    /// writes the reply into `out` (at least [`MAX_REPLY`] bytes).
    pub fn answer(&self, frame: &[u8], out: &mut [u8]) -> Suppress {
        let s = self.classify(frame, out);
        let c = match s {
            Suppress::Reply(_) => &self.stats.answered,
            Suppress::Missed => &self.stats.missed,
            Suppress::Ignored => &self.stats.ignored,
            Suppress::NotARequest => return s,
        };
        c.fetch_add(1, Ordering::Relaxed);
        s
    }

    fn classify(&self, frame: &[u8], out: &mut [u8]) -> Suppress {
        if !Self::may_be_request(frame) {
            return Suppress::NotARequest;
        }
        // The untagged header is there (may_be_request checked).
        let eth = EthernetFrame::new_unchecked(frame);
        let (dst, src) = (eth.dst_addr(), eth.src_addr());
        let body = &frame[ETH_LEN..];
        match eth.ethertype() {
            EtherType::Arp => self.arp(dst, src, body, out),
            EtherType::Ipv6 => self.ns(src, body, out),
            _ => Suppress::NotARequest,
        }
    }

    fn arp(&self, dst: MacAddr, src: MacAddr, body: &[u8], out: &mut [u8]) -> Suppress {
        let Ok(a) = ArpPacket::new_checked(body) else {
            return Suppress::Ignored;
        };
        if a.operation() != ArpOperation::Request {
            return Suppress::NotARequest;
        }
        let (sha, spa, tpa) = (
            a.sender_hardware_addr(),
            a.sender_protocol_addr(),
            a.target_protocol_addr(),
        );
        // Unicast requests (NUD) go to the owner; probes, announcements
        // and senders that are not the frame's source are not ours.
        if !a.is_ethernet_ipv4()
            || !dst.is_broadcast()
            || sha != src
            || !sha.is_valid_source()
            || spa.is_unspecified()
            || spa == tpa
        {
            return Suppress::Ignored;
        }
        let Some(b) = self.v4.get(&tpa) else {
            return Suppress::Missed;
        };
        if b.mac == sha {
            return Suppress::Ignored;
        }
        let Some(len) = ethernet(out, b.mac, sha, EtherType::Arp, arp::PACKET_LEN) else {
            return Suppress::Ignored;
        };
        ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: b.mac,
            source_protocol_addr: tpa,
            target_hardware_addr: sha,
            target_protocol_addr: spa,
        }
        .emit(&mut ArpPacket::new_unchecked(&mut out[ETH_LEN..]));
        Suppress::Reply(len)
    }

    fn ns(&self, src: MacAddr, body: &[u8], out: &mut [u8]) -> Suppress {
        // The payload length inside the frame (the rest is padding).
        let Ok(ip) = Ipv6Packet::new_checked(body) else {
            return Suppress::NotARequest;
        };
        // Only ICMPv6 without extension headers; the type is the first byte.
        if ip.version() != 6
            || ip.next_header() != IpProtocol::Icmpv6
            || ip.payload().first() != Some(&135)
        {
            return Suppress::NotARequest;
        }
        let (sip, dip) = (ip.src_addr(), ip.dst_addr());
        let Ok(msg) = Icmpv6Packet::new_checked(ip.payload()) else {
            return Suppress::Ignored;
        };
        let Ok(Icmpv6Repr::NeighborSolicit { target, lladdr }) =
            Icmpv6Repr::parse(&sip, &dip, &msg)
        else {
            return Suppress::Ignored;
        };
        // Duplicate address detection (from ::) is the owner's to answer;
        // so is anything not sent to the target's solicited-node group.
        if ip.hop_limit() != ND_HOP_LIMIT
            || sip.is_unspecified()
            || sip.is_multicast()
            || dip != solicited_node(target)
            || !src.is_valid_source()
        {
            return Suppress::Ignored;
        }
        let Some(b) = self.v6.get(&target) else {
            return Suppress::Missed;
        };
        let to_mac = lladdr.unwrap_or(src);
        if b.mac == to_mac || b.mac == src || !to_mac.is_valid_source() {
            return Suppress::Ignored;
        }
        let mut flags = nd_flags::SOLICITED | nd_flags::OVERRIDE;
        if b.router {
            flags |= nd_flags::ROUTER;
        }
        let advert = Icmpv6Repr::NeighborAdvert {
            flags,
            target,
            lladdr: Some(b.mac),
        };
        let hdr = Ipv6Repr {
            src_addr: target,
            dst_addr: sip,
            next_header: IpProtocol::Icmpv6,
            payload_len: advert.buffer_len(),
            hop_limit: ND_HOP_LIMIT,
        };
        let ip_len = hdr.buffer_len() + advert.buffer_len();
        let Some(len) = ethernet(out, b.mac, to_mac, EtherType::Ipv6, ip_len) else {
            return Suppress::Ignored;
        };
        let r = &mut out[ETH_LEN..ETH_LEN + ip_len];
        hdr.emit(&mut Ipv6Packet::new_unchecked(&mut r[..]));
        advert.emit(
            &target,
            &sip,
            &mut Icmpv6Packet::new_unchecked(&mut r[ipv6::HEADER_LEN..]),
        );
        Suppress::Reply(len)
    }
}

/// Writes the Ethernet header of a reply from `from` to `to`; returns the
/// frame length padded to [`MIN_FRAME`], or `None` if `out` is too short.
fn ethernet(
    out: &mut [u8],
    from: MacAddr,
    to: MacAddr,
    ty: EtherType,
    body_len: usize,
) -> Option<usize> {
    let len = (ETH_LEN + body_len).max(MIN_FRAME);
    let out = out.get_mut(..len)?;
    EthernetRepr {
        src_addr: from,
        dst_addr: to,
        vlan: None,
        inner_vlan: None,
        ethertype: ty,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    out[ETH_LEN + body_len..].fill(0);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::responder::fixtures::arp_request;
    use crate::wire::checksum;

    const ASKER: MacAddr = MacAddr([0x02, 0xc1, 0, 0, 0, 0x11]);
    const OWNER: MacAddr = MacAddr([0x02, 0xc2, 0, 0, 0, 0x12]);
    const GW: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const ASKER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x11);
    const OWNER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x12);
    const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 1);

    fn table() -> NeighTable {
        let b = |mac, router| Binding { mac, router };
        NeighTable::new(
            [
                (IpAddr::from([10, 42, 0, 12]), b(OWNER, false)),
                (IpAddr::from([10, 42, 0, 11]), b(ASKER, false)),
                (IpAddr::V6(OWNER6), b(OWNER, false)),
                (IpAddr::V6(GW6), b(GW, true)),
            ],
            Arc::default(),
        )
    }

    fn run(t: &NeighTable, f: &[u8]) -> (Suppress, Vec<u8>) {
        let mut out = [0u8; MAX_REPLY];
        let s = t.answer(f, &mut out);
        let n = match s {
            Suppress::Reply(n) => n,
            _ => 0,
        };
        (s, out[..n].to_vec())
    }

    fn counts(t: &NeighTable) -> (u64, u64, u64) {
        let s = t.stats().snapshot();
        (s.answered, s.missed, s.ignored)
    }

    #[test]
    fn answers_arp_for_a_bound_address_as_its_owner_would() {
        let t = table();
        let (s, out) = run(&t, &arp_request(ASKER, [10, 42, 0, 11], [10, 42, 0, 12]));
        assert_eq!(s, Suppress::Reply(60));
        assert_eq!(&out[0..6], ASKER.as_bytes(), "to the asker");
        assert_eq!(&out[6..12], OWNER.as_bytes(), "from the owner");
        let a = &out[14..42];
        assert_eq!(&a[..8], &[0, 1, 0x08, 0, 6, 4, 0, 2], "an ARP reply");
        assert_eq!(&a[8..14], OWNER.as_bytes());
        assert_eq!(&a[14..18], &[10, 42, 0, 12]);
        assert_eq!(&a[18..24], ASKER.as_bytes());
        assert_eq!(&a[24..28], &[10, 42, 0, 11]);
        // Unbound: flooded.
        let (s, _) = run(&t, &arp_request(ASKER, [10, 42, 0, 11], [10, 42, 0, 99]));
        assert_eq!(s, Suppress::Missed);
        assert_eq!(counts(&t), (1, 1, 0));
    }

    #[test]
    fn gratuitous_probes_unicast_and_forged_arp_are_left_alone() {
        let t = table();
        // Gratuitous (sender = target) and a probe (sender 0.0.0.0).
        let grat = arp_request(OWNER, [10, 42, 0, 12], [10, 42, 0, 12]);
        let probe = arp_request(ASKER, [0, 0, 0, 0], [10, 42, 0, 12]);
        // A unicast request (NUD) to a MAC the switch did not know.
        let mut unicast = arp_request(ASKER, [10, 42, 0, 11], [10, 42, 0, 12]);
        unicast[..6].copy_from_slice(OWNER.as_bytes());
        // A sender MAC other than the frame's source.
        let mut forged = arp_request(ASKER, [10, 42, 0, 11], [10, 42, 0, 12]);
        forged[6..12].copy_from_slice(GW.as_bytes());
        // The owner asking for its own address.
        let own = arp_request(OWNER, [10, 42, 0, 11], [10, 42, 0, 12]);
        for f in [&grat, &probe, &unicast, &forged, &own] {
            assert_eq!(run(&t, f).0, Suppress::Ignored);
        }
        // A reply is not a request, nor is IPv4.
        let mut reply = arp_request(ASKER, [10, 42, 0, 11], [10, 42, 0, 12]);
        reply[21] = 2;
        assert_eq!(run(&t, &reply).0, Suppress::NotARequest);
        let ip = crate::gateway::responder::fixtures::echo4(
            MacAddr::BROADCAST,
            ASKER,
            [10, 42, 0, 11],
            [10, 42, 0, 12],
            b"x",
        );
        assert_eq!(run(&t, &ip).0, Suppress::NotARequest);
        assert_eq!(counts(&t), (0, 0, 5));
    }

    fn icmp6_checksum(ip: &[u8], m: &[u8]) -> u16 {
        let pseudo = checksum::pseudo_v6(&ip[8..24], &ip[24..40], 58, m.len());
        !checksum::fold(checksum::sum_words(m, pseudo))
    }

    /// A solicitation for `target` from `sip` (with its link-layer option
    /// unless DAD), to the target's solicited-node group.
    fn ns(sip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&target.octets());
        if !sip.is_unspecified() {
            icmp.extend_from_slice(&[1, 1]);
            icmp.extend_from_slice(ASKER.as_bytes());
        }
        let snm = solicited_node(target);
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&u16::try_from(icmp.len()).unwrap().to_be_bytes());
        ip.extend_from_slice(&[58, 255]);
        ip.extend_from_slice(&sip.octets());
        ip.extend_from_slice(&snm.octets());
        let c = icmp6_checksum(&ip, &icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&icmp);
        let mut f = MacAddr::ipv6_multicast(snm).as_bytes().to_vec();
        f.extend_from_slice(ASKER.as_bytes());
        f.extend_from_slice(&[0x86, 0xdd]);
        f.extend_from_slice(&ip);
        f
    }

    #[test]
    fn answers_a_solicitation_with_the_owners_advertisement() {
        let t = table();
        let (s, out) = run(&t, &ns(ASKER6, OWNER6));
        assert_eq!(s, Suppress::Reply(86));
        assert_eq!(&out[0..6], ASKER.as_bytes());
        assert_eq!(&out[6..12], OWNER.as_bytes());
        let ip = &out[14..];
        assert_eq!(ip[7], 255, "hop limit");
        assert_eq!(&ip[8..24], &OWNER6.octets(), "from the target");
        assert_eq!(&ip[24..40], &ASKER6.octets());
        let m = &ip[40..72];
        assert_eq!(m[0], 136);
        assert_eq!(m[4], 0x60, "solicited, override, not a router");
        assert_eq!(&m[8..24], &OWNER6.octets());
        assert_eq!((&m[24..26], &m[26..32]), (&[2u8, 1][..], &OWNER.0[..]));
        assert_eq!(icmp6_checksum(ip, m), 0);
        // The gateway says it is a router, as its kernel would.
        let (_, out) = run(&t, &ns(ASKER6, GW6));
        assert_eq!(out[14 + 40 + 4], 0xe0);
        // Unbound: flooded.
        let other = Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x99);
        assert_eq!(run(&t, &ns(ASKER6, other)).0, Suppress::Missed);
        assert_eq!(counts(&t), (2, 1, 0));
    }

    #[test]
    fn duplicate_address_detection_and_forged_solicitations_are_left_alone() {
        let t = table();
        let dad = ns(Ipv6Addr::UNSPECIFIED, OWNER6);
        assert_eq!(run(&t, &dad).0, Suppress::Ignored);
        let mut hop = ns(ASKER6, OWNER6);
        hop[14 + 7] = 64;
        assert_eq!(run(&t, &hop).0, Suppress::Ignored, "crossed a router");
        let mut bad_sum = ns(ASKER6, OWNER6);
        bad_sum[14 + 40 + 2] ^= 1;
        assert_eq!(run(&t, &bad_sum).0, Suppress::Ignored);
        assert_eq!(counts(&t), (0, 0, 3));
    }

    proptest::proptest! {
        /// Any bytes behind a request's first bytes (so most inputs get
        /// past the pre-check): no panic, a reply fits in MAX_REPLY, comes
        /// from a bound MAC and goes to a unicast one.
        #[test]
        fn arbitrary_frames_never_panic_and_replies_come_from_a_binding(
            start in proptest::sample::select(vec![0usize, 1]),
            flip in proptest::collection::vec((0usize..90, proptest::prelude::any::<u8>()), 0..4),
            cut in 0usize..100,
        ) {
            let t = table();
            let mut f = if start == 0 {
                arp_request(ASKER, [10, 42, 0, 11], [10, 42, 0, 12])
            } else {
                ns(ASKER6, OWNER6)
            };
            for (i, b) in flip {
                if let Some(x) = f.get_mut(i) {
                    *x = b;
                }
            }
            f.truncate(cut.max(1));
            let mut out = [0u8; MAX_REPLY];
            if let Suppress::Reply(n) = t.answer(&f, &mut out) {
                proptest::prop_assert!((60..=MAX_REPLY).contains(&n));
                let from = MacAddr::from_bytes(&out[6..12]);
                proptest::prop_assert!([OWNER, ASKER, GW].contains(&from));
                proptest::prop_assert!(!MacAddr::from_bytes(&out[..6]).is_multicast());
            }
        }
    }

    #[test]
    fn every_prefix_and_small_buffer_is_handled_without_panic() {
        let t = table();
        for f in [
            ns(ASKER6, OWNER6),
            arp_request(ASKER, [10, 42, 0, 11], [10, 42, 0, 12]),
        ] {
            for n in 0..f.len() {
                let mut out = [0u8; MAX_REPLY];
                let _ = t.answer(&f[..n], &mut out);
            }
            let mut small = [0u8; 20];
            assert_eq!(t.answer(&f, &mut small), Suppress::Ignored);
        }
    }
}
