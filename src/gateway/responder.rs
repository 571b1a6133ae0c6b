//! The switch gateway: answers ARP and ICMP echo (IPv4), neighbour
//! solicitations and ICMPv6 echo (IPv6) for one gateway address, and
//! nothing else.
//!
//! Sans-IO: [`Responder::answer`] takes one frame and writes the reply
//! into a caller-owned buffer; the thread in the parent module owns the
//! socket. Every frame is counted in exactly one [`GatewayStats`] counter.
//!
//! Contracts: frames are untrusted; they are read and replies are written
//! only through the views of [`crate::wire`] (a view's length check before
//! any field of it is read), and IP lengths are taken from the IP header
//! (never the frame length: Ethernet pads short frames to 60 bytes), after
//! checking they fit in the frame. A reply is never longer than the
//! request or 128 bytes, whichever is more (echo replies copy the request
//! without IPv4 options; an advertisement answering a solicitation without
//! options adds one), so an output buffer of that size always suffices;
//! `answer` checks it anyway and counts a too-small buffer as unanswered.
//!
//! Deliberately not done: routing (a frame sent to the gateway's MAC for
//! another IP is counted `unanswered`; the `host` gateway port is the one
//! that routes), fragments and IPv4 options in echo requests (answered
//! without the options; fragments are unanswered), IPv6 extension
//! headers (unanswered), router advertisements (containers get their
//! default route from `port add`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::wire::ethernet::HEADER_LEN as ETH_LEN;
use crate::wire::icmpv6::nd_flags;
use crate::wire::ipv6::solicited_node;
use crate::wire::{arp, ipv4, ipv6};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    MacAddr,
};

/// Shortest Ethernet frame without its FCS; replies are padded to it.
const MIN_FRAME: usize = 60;
/// TTL of an echo reply; hop limit of an ICMPv6 echo reply.
const REPLY_TTL: u8 = 64;
/// Hop limit of Neighbor Discovery messages, sent and required on receipt
/// (RFC 4861 section 7.1.1: anything else crossed a router).
const ND_HOP_LIMIT: u8 = 255;

/// What the gateway did with each frame the switch gave it.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// ARP replies (IPv4) and neighbour advertisements (IPv6) sent.
    pub neighbor_replies: AtomicU64,
    /// ICMP and ICMPv6 echo replies sent.
    pub echo_replies: AtomicU64,
    /// Frames for someone else that the switch flooded here (broadcasts,
    /// ARP for other addresses, unknown unicast): not the gateway's business.
    pub ignored: AtomicU64,
    /// Frames for the gateway that it does not answer: other protocols
    /// (TCP, UDP, ...), packets to be routed elsewhere (this gateway does
    /// not route), fragments, bad checksums, malformed headers.
    pub unanswered: AtomicU64,
    /// Replies the switch did not take (its end of the socket failed).
    pub tx_errors: AtomicU64,
}

impl GatewayStats {
    pub fn snapshot(&self) -> GatewayStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GatewayStatsSnapshot {
            neighbor_replies: get(&self.neighbor_replies),
            echo_replies: get(&self.echo_replies),
            ignored: get(&self.ignored),
            unanswered: get(&self.unanswered),
            tx_errors: get(&self.tx_errors),
        }
    }
}

/// A point-in-time copy of [`GatewayStats`], as the protocol carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatsSnapshot {
    pub neighbor_replies: u64,
    pub echo_replies: u64,
    pub ignored: u64,
    pub unanswered: u64,
    pub tx_errors: u64,
}

/// The outcome of one frame (already counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the first `n` bytes of the output buffer back.
    Reply(usize),
    Ignored,
    Unanswered,
}

/// Answers for one address with one MAC.
#[derive(Debug)]
pub struct Responder {
    mac: MacAddr,
    ip: IpAddr,
    stats: std::sync::Arc<GatewayStats>,
}

impl Responder {
    pub fn new(mac: MacAddr, ip: IpAddr, stats: std::sync::Arc<GatewayStats>) -> Responder {
        Responder { mac, ip, stats }
    }

    pub fn stats(&self) -> &std::sync::Arc<GatewayStats> {
        &self.stats
    }

    /// Looks at one frame; for an ARP request, a neighbour solicitation or
    /// an echo request to the gateway address, writes the reply into `out`.
    pub fn answer(&self, frame: &[u8], out: &mut [u8]) -> Outcome {
        let outcome = self.classify(frame, out);
        let c = match outcome {
            Outcome::Reply(_) => return outcome,
            Outcome::Ignored => &self.stats.ignored,
            Outcome::Unanswered => &self.stats.unanswered,
        };
        c.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    fn classify(&self, frame: &[u8], out: &mut [u8]) -> Outcome {
        if frame.len() < ETH_LEN {
            return Outcome::Ignored;
        }
        // The untagged header is there. Tagged frames are not the
        // gateway's: their TPID is an EtherType answered by nobody below.
        let eth = EthernetFrame::new_unchecked(frame);
        let (dst, src) = (eth.dst_addr(), eth.src_addr());
        let body = &frame[ETH_LEN..];
        // Frames addressed to another station's MAC were flooded here
        // (unknown unicast) or mirrored: none of our business.
        let for_us = dst == self.mac;
        if !for_us && !dst.is_multicast() {
            return Outcome::Ignored;
        }
        let reply = match (eth.ethertype(), self.ip) {
            (EtherType::Arp, IpAddr::V4(gw)) => self.arp(src, body, gw, &mut out[..]),
            (EtherType::Ipv4, IpAddr::V4(gw)) if for_us => self.icmp4(src, body, gw, out),
            (EtherType::Ipv6, IpAddr::V6(gw)) => self.icmp6(dst, src, body, gw, out),
            _ if for_us => Err(Outcome::Unanswered),
            _ => Err(Outcome::Ignored),
        };
        match reply {
            Ok(n) => Outcome::Reply(n),
            Err(o) => o,
        }
    }

    /// Writes the Ethernet header of a reply to `to`; returns the frame
    /// length padded to [`MIN_FRAME`], or `None` if `out` is too short.
    fn ethernet(
        &self,
        out: &mut [u8],
        to: MacAddr,
        ty: EtherType,
        body_len: usize,
    ) -> Option<usize> {
        let len = (ETH_LEN + body_len).max(MIN_FRAME);
        let out = out.get_mut(..len)?;
        let repr = EthernetRepr {
            src_addr: self.mac,
            dst_addr: to,
            vlan: None,
            inner_vlan: None,
            ethertype: ty,
        };
        repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        out[ETH_LEN + body_len..].fill(0);
        Some(len)
    }

    fn arp(
        &self,
        src: MacAddr,
        body: &[u8],
        gw: Ipv4Addr,
        out: &mut [u8],
    ) -> Result<usize, Outcome> {
        let Ok(a) = ArpPacket::new_checked(body) else {
            return Err(Outcome::Ignored);
        };
        if !a.is_ethernet_ipv4() || a.target_protocol_addr() != gw {
            return Err(Outcome::Ignored);
        }
        let sha = a.sender_hardware_addr();
        // Only requests get replies; a reply or announcement claiming our
        // address, or a request we cannot answer (no valid sender), is
        // counted as unanswered.
        if a.operation() != ArpOperation::Request || !sha.is_valid_source() || src.is_multicast() {
            return Err(Outcome::Unanswered);
        }
        let len = self
            .ethernet(out, sha, EtherType::Arp, arp::PACKET_LEN)
            .ok_or(Outcome::Unanswered)?;
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: self.mac,
            source_protocol_addr: gw,
            target_hardware_addr: sha,
            target_protocol_addr: a.sender_protocol_addr(),
        };
        reply.emit(&mut ArpPacket::new_unchecked(&mut out[ETH_LEN..]));
        self.stats.neighbor_replies.fetch_add(1, Ordering::Relaxed);
        Ok(len)
    }

    fn icmp4(
        &self,
        src: MacAddr,
        body: &[u8],
        gw: Ipv4Addr,
        out: &mut [u8],
    ) -> Result<usize, Outcome> {
        const NO: Outcome = Outcome::Unanswered;
        // Header and total length inside the frame (the rest is padding).
        let ip = Ipv4Packet::new_checked(body).map_err(|_| NO)?;
        if ip.version() != 4 {
            return Err(NO);
        }
        if ip.dst_addr() != gw {
            // Sent to the gateway's MAC for another address: to be routed.
            return Err(NO);
        }
        let sip = ip.src_addr();
        let bad_source =
            sip.is_unspecified() || sip.is_broadcast() || sip.is_multicast() || sip == gw;
        if !ip.verify_checksum()
            || bad_source
            || !src.is_valid_source()
            || ip.protocol() != IpProtocol::Icmp
            || ip.is_fragment()
        {
            return Err(NO);
        }
        let msg = Icmpv4Packet::new_checked(ip.payload()).map_err(|_| NO)?;
        let Ok(Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) = Icmpv4Repr::parse(&msg)
        else {
            return Err(NO);
        };
        let echo = Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let reply = Ipv4Repr {
            src_addr: gw,
            dst_addr: sip,
            protocol: IpProtocol::Icmp,
            payload_len: echo.buffer_len(),
            ttl: REPLY_TTL,
            dscp_ecn: ip.dscp_ecn(),
            ident: ip.ident(),
            dont_frag: false,
        };
        let ip_len = reply.buffer_len() + echo.buffer_len();
        let len = self.ethernet(out, src, EtherType::Ipv4, ip_len).ok_or(NO)?;
        let r = &mut out[ETH_LEN..ETH_LEN + ip_len];
        reply.emit(&mut Ipv4Packet::new_unchecked(&mut r[..]));
        echo.emit(&mut Icmpv4Packet::new_unchecked(&mut r[ipv4::HEADER_LEN..]));
        self.stats.echo_replies.fetch_add(1, Ordering::Relaxed);
        Ok(len)
    }

    fn icmp6(
        &self,
        dst_mac: MacAddr,
        src: MacAddr,
        body: &[u8],
        gw: Ipv6Addr,
        out: &mut [u8],
    ) -> Result<usize, Outcome> {
        let snm = solicited_node(gw);
        // Multicast frames other than our solicited-node group (router
        // solicitations, MLD, all-nodes) are someone else's business.
        if dst_mac != self.mac && dst_mac != MacAddr::ipv6_multicast(snm) {
            return Err(Outcome::Ignored);
        }
        // The fixed header (exactly): its getters are in bounds.
        let h = body.get(..ipv6::HEADER_LEN).ok_or(Outcome::Ignored)?;
        let h = Ipv6Packet::new_unchecked(h);
        let (sip, dip) = (h.src_addr(), h.dst_addr());
        if dip != gw && dip != snm {
            return Err(if dst_mac == self.mac {
                Outcome::Unanswered
            } else {
                Outcome::Ignored
            });
        }
        const NO: Outcome = Outcome::Unanswered;
        if h.version() != 6 || h.next_header() != IpProtocol::Icmpv6 {
            return Err(NO);
        }
        // The payload length inside the frame (the rest is padding).
        let ip = Ipv6Packet::new_checked(body).map_err(|_| NO)?;
        if !src.is_valid_source() || sip.is_multicast() {
            return Err(NO);
        }
        let msg = Icmpv6Packet::new_checked(ip.payload()).map_err(|_| NO)?;
        match Icmpv6Repr::parse(&sip, &dip, &msg) {
            Ok(Icmpv6Repr::NeighborSolicit { target, lladdr }) => {
                self.neighbor_advert(src, &h, target, lladdr, gw, out)
            }
            Ok(Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }) if dip == gw && !sip.is_unspecified() => {
                let echo = Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                };
                let ip_len = ipv6::HEADER_LEN + echo.buffer_len();
                let len = self.ethernet(out, src, EtherType::Ipv6, ip_len).ok_or(NO)?;
                let r = &mut out[ETH_LEN..ETH_LEN + ip_len];
                // The request's header (traffic class, flow label, lengths)
                // with the addresses swapped and a fresh hop limit.
                let mut reply = Ipv6Packet::new_unchecked(&mut r[..]);
                reply.header_mut().copy_from_slice(h.header());
                reply.set_hop_limit(REPLY_TTL);
                reply.set_src_addr(gw);
                reply.set_dst_addr(sip);
                echo.emit(
                    &gw,
                    &sip,
                    &mut Icmpv6Packet::new_unchecked(&mut r[ipv6::HEADER_LEN..]),
                );
                self.stats.echo_replies.fetch_add(1, Ordering::Relaxed);
                Ok(len)
            }
            _ => Err(NO),
        }
    }

    /// RFC 4861 §7.2.4: a solicited advertisement to the solicitor, or to
    /// all nodes for duplicate address detection (unspecified source).
    fn neighbor_advert(
        &self,
        src: MacAddr,
        h: &Ipv6Packet<&[u8]>,
        target: Ipv6Addr,
        sll: Option<MacAddr>,
        gw: Ipv6Addr,
        out: &mut [u8],
    ) -> Result<usize, Outcome> {
        const NO: Outcome = Outcome::Unanswered;
        if h.hop_limit() != ND_HOP_LIMIT || target != gw {
            return Err(NO);
        }
        let sip = h.src_addr();
        let dad = sip.is_unspecified();
        if dad && sll.is_some() {
            return Err(NO); // RFC 4861 §7.1.1: must not carry the option.
        }
        let (to_ip, to_mac, flags) = if dad {
            let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            (
                all_nodes,
                MacAddr::ipv6_multicast(all_nodes),
                nd_flags::ROUTER | nd_flags::OVERRIDE,
            )
        } else {
            (
                sip,
                sll.unwrap_or(src),
                nd_flags::ROUTER | nd_flags::SOLICITED | nd_flags::OVERRIDE,
            )
        };
        let advert = Icmpv6Repr::NeighborAdvert {
            flags,
            target: gw,
            lladdr: Some(self.mac),
        };
        let ip = Ipv6Repr {
            src_addr: gw,
            dst_addr: to_ip,
            next_header: IpProtocol::Icmpv6,
            payload_len: advert.buffer_len(),
            hop_limit: ND_HOP_LIMIT,
        };
        let ip_len = ip.buffer_len() + advert.buffer_len();
        let len = self
            .ethernet(out, to_mac, EtherType::Ipv6, ip_len)
            .ok_or(NO)?;
        let r = &mut out[ETH_LEN..ETH_LEN + ip_len];
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut r[..]));
        advert.emit(
            &gw,
            &to_ip,
            &mut Icmpv6Packet::new_unchecked(&mut r[ipv6::HEADER_LEN..]),
        );
        self.stats.neighbor_replies.fetch_add(1, Ordering::Relaxed);
        Ok(len)
    }
}

/// Requests as a container's kernel sends them, for tests here and in
/// the control plane.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// `who-has TPA tell SPA` from `sha`, broadcast.
    pub fn arp_request(sha: MacAddr, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let eth = EthernetRepr {
            src_addr: sha,
            dst_addr: MacAddr::BROADCAST,
            vlan: None,
            inner_vlan: None,
            ethertype: EtherType::Arp,
        };
        let arp = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: sha,
            source_protocol_addr: spa.into(),
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: tpa.into(),
        };
        let mut f = vec![0u8; eth.buffer_len() + arp.buffer_len()];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        arp.emit(&mut ArpPacket::new_unchecked(&mut f[ETH_LEN..]));
        f
    }

    /// An ICMP echo request (id 0x1234, seq 1, IP ID 0xabcd, DF) from
    /// `src`/`sip` to `dst`/`dip`, padded to 60 bytes like a minimum
    /// Ethernet frame.
    pub fn echo4(dst: MacAddr, src: MacAddr, sip: [u8; 4], dip: [u8; 4], data: &[u8]) -> Vec<u8> {
        let eth = EthernetRepr {
            src_addr: src,
            dst_addr: dst,
            vlan: None,
            inner_vlan: None,
            ethertype: EtherType::Ipv4,
        };
        let echo = Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data,
        };
        let ip = Ipv4Repr {
            src_addr: sip.into(),
            dst_addr: dip.into(),
            protocol: IpProtocol::Icmp,
            payload_len: echo.buffer_len(),
            ttl: 64,
            dscp_ecn: 0,
            ident: 0xabcd,
            dont_frag: true,
        };
        let len = eth.buffer_len() + ip.buffer_len() + echo.buffer_len();
        let mut f = vec![0u8; len.max(MIN_FRAME)];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[ETH_LEN..]));
        echo.emit(&mut Icmpv4Packet::new_unchecked(
            &mut f[ETH_LEN + ipv4::HEADER_LEN..],
        ));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;
    use std::sync::Arc;

    const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
    const C1: MacAddr = MacAddr([0x02, 0xc1, 0x00, 0x00, 0x00, 0x11]);

    fn v4() -> Responder {
        Responder::new(GW_MAC, "10.88.0.1".parse().unwrap(), Arc::default())
    }

    fn v6() -> Responder {
        Responder::new(GW_MAC, "fd00:88::1".parse().unwrap(), Arc::default())
    }

    /// `who-has 10.88.0.1 tell 10.88.0.11` as a container's kernel sends it.
    fn arp_request(tpa: [u8; 4]) -> Vec<u8> {
        let f = fixtures::arp_request(C1, [10, 88, 0, 11], tpa);
        // Byte for byte what the kernel sends.
        let mut expect = vec![0xff; 6];
        expect.extend_from_slice(C1.as_bytes());
        expect.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        expect.extend_from_slice(C1.as_bytes());
        expect.extend_from_slice(&[10, 88, 0, 11]);
        expect.extend_from_slice(&[0; 6]);
        expect.extend_from_slice(&tpa);
        assert_eq!(f, expect);
        f
    }

    /// An ICMP echo request from 10.88.0.11 to `dst`, id 0x1234 seq 1,
    /// padded to 60 bytes like a minimum Ethernet frame when short.
    fn echo4(dst: [u8; 4], data: &[u8]) -> Vec<u8> {
        let f = fixtures::echo4(GW_MAC, C1, [10, 88, 0, 11], dst, data);
        let head = [0x45, 0, 0, 0, 0xab, 0xcd, 0x40, 0, 64, 1];
        assert_eq!(
            (&f[12..14], &f[14..16], &f[18..24]),
            (&[8u8, 0][..], &head[..2], &head[4..])
        );
        assert_eq!(checksum::checksum(&f[14..34]), 0, "valid IP checksum");
        f
    }

    /// The RFC 1071 checksum of an ICMPv6 message `m` (with its checksum
    /// field) between the addresses of the IPv6 header `ip`: 0 when valid.
    fn icmp6_checksum(ip: &[u8], m: &[u8]) -> u16 {
        let pseudo = checksum::pseudo_v6(&ip[8..24], &ip[24..40], 58, m.len());
        !checksum::fold(checksum::sum_words(m, pseudo))
    }

    fn ip6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, mut icmp: Vec<u8>) -> Vec<u8> {
        let plen = icmp.len();
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&u16::try_from(plen).unwrap().to_be_bytes());
        h.extend_from_slice(&[58, hop]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        let c = icmp6_checksum(&h, &icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(&icmp);
        h
    }

    fn frame(dst: MacAddr, ty: u16, body: &[u8]) -> Vec<u8> {
        let mut f = dst.as_bytes().to_vec();
        f.extend_from_slice(C1.as_bytes());
        f.extend_from_slice(&ty.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn reply(r: &Responder, f: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; f.len().max(128)];
        match r.answer(f, &mut out) {
            Outcome::Reply(n) => out[..n].to_vec(),
            o => panic!("no reply: {o:?}"),
        }
    }

    #[test]
    fn answers_arp_for_the_gateway_only() {
        let r = v4();
        let out = reply(&r, &arp_request([10, 88, 0, 1]));
        assert_eq!(out.len(), 60);
        assert_eq!(&out[0..6], C1.as_bytes(), "to the asker");
        assert_eq!(&out[6..12], GW_MAC.as_bytes());
        assert_eq!(&out[12..14], &[0x08, 0x06]);
        let a = &out[14..42];
        assert_eq!(&a[..8], &[0, 1, 0x08, 0, 6, 4, 0, 2], "an ARP reply");
        assert_eq!(&a[8..14], GW_MAC.as_bytes());
        assert_eq!(&a[14..18], &[10, 88, 0, 1]);
        assert_eq!(&a[18..24], C1.as_bytes());
        assert_eq!(&a[24..28], &[10, 88, 0, 11]);
        assert!(out[42..].iter().all(|&b| b == 0), "padding");
        // Another host's address: not ours to answer.
        let mut out = [0u8; 64];
        assert_eq!(
            r.answer(&arp_request([10, 88, 0, 12]), &mut out),
            Outcome::Ignored
        );
        let s = r.stats().snapshot();
        assert_eq!((s.neighbor_replies, s.ignored, s.unanswered), (1, 1, 0));
    }

    #[test]
    fn arp_replies_and_announcements_for_the_gateway_are_not_answered() {
        let r = v4();
        let mut f = arp_request([10, 88, 0, 1]);
        f[21] = 2; // a reply claiming the gateway address
        let mut out = [0u8; 64];
        assert_eq!(r.answer(&f, &mut out), Outcome::Unanswered);
        // Truncated ARP: cannot tell whom it is for.
        assert_eq!(r.answer(&f[..30], &mut out), Outcome::Ignored);
    }

    #[test]
    fn answers_echo_with_the_same_id_seq_and_data() {
        let r = v4();
        let req = echo4([10, 88, 0, 1], b"hello, gateway");
        let out = reply(&r, &req);
        assert_eq!(&out[0..6], C1.as_bytes());
        assert_eq!(&out[6..12], GW_MAC.as_bytes());
        let ip = &out[14..];
        assert_eq!(checksum::checksum(&ip[..20]), 0, "valid IP checksum");
        assert_eq!(&ip[12..16], &[10, 88, 0, 1]);
        assert_eq!(&ip[16..20], &[10, 88, 0, 11]);
        assert_eq!(ip[9], 1);
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert_eq!(total, 20 + 8 + 14);
        let icmp = &ip[20..total];
        assert_eq!(icmp[0], 0, "echo reply");
        assert_eq!(checksum::checksum(icmp), 0, "valid ICMP checksum");
        assert_eq!(&icmp[4..8], &[0x12, 0x34, 0, 1]);
        assert_eq!(&icmp[8..], b"hello, gateway");
        assert_eq!(r.stats().snapshot().echo_replies, 1);
    }

    #[test]
    fn does_not_route_or_answer_other_protocols() {
        let r = v4();
        let mut out = [0u8; 128];
        // To the gateway's MAC but another IP: routing, which it does not do.
        let o = r.answer(&echo4([198, 51, 100, 7], b"x"), &mut out);
        assert_eq!(o, Outcome::Unanswered);
        // A UDP datagram to the gateway.
        let mut f = echo4([10, 88, 0, 1], b"x");
        f[14 + 9] = 17;
        f[24..26].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(r.answer(&f, &mut out), Outcome::Unanswered);
        // A corrupted ICMP checksum.
        let mut f = echo4([10, 88, 0, 1], b"x");
        f[14 + 20 + 8] ^= 0xff;
        assert_eq!(r.answer(&f, &mut out), Outcome::Unanswered);
        // A lying IP total length.
        let mut f = echo4([10, 88, 0, 1], b"x");
        f[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(r.answer(&f, &mut out), Outcome::Unanswered);
        // An echo between two containers, flooded here (unknown unicast).
        let mut f = echo4([10, 88, 0, 12], b"x");
        f[0..6].copy_from_slice(&[0x02, 0xc2, 0, 0, 0, 0x12]);
        assert_eq!(r.answer(&f, &mut out), Outcome::Ignored);
        // Runts and IPv6 on an IPv4 gateway.
        assert_eq!(r.answer(&f[..10], &mut out), Outcome::Ignored);
        let s = r.stats().snapshot();
        assert_eq!((s.unanswered, s.ignored, s.echo_replies), (4, 2, 0));
    }

    #[test]
    fn every_prefix_of_a_request_is_handled_without_panic() {
        let r = v4();
        let mut out = [0u8; 128];
        let req = echo4([10, 88, 0, 1], b"abcdefgh");
        // An echo request is answered once all its IPv4 length is there
        // (14 + 20 + 8 + 8 bytes; the rest is padding), never cut.
        for n in 0..req.len() {
            let got = r.answer(&req[..n], &mut out);
            assert_eq!(
                matches!(got, Outcome::Reply(_)),
                n >= 14 + 20 + 8 + 8,
                "{n} bytes: {got:?}"
            );
        }
        // An ARP request is answered once its 28 bytes are there, not before.
        let arp = arp_request([10, 88, 0, 1]);
        for n in 0..arp.len() {
            let got = r.answer(&arp[..n], &mut out);
            assert_eq!(
                matches!(got, Outcome::Reply(_)),
                n >= 14 + 28,
                "{n} bytes: {got:?}"
            );
        }
        // An output buffer too small for the reply is not a panic either.
        assert_eq!(r.answer(&arp, &mut out[..20]), Outcome::Unanswered);
    }

    const C1_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 0x11);
    const GW_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 1);

    fn ns(src: Ipv6Addr, with_sll: bool) -> Vec<u8> {
        let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&GW_IP6.octets());
        if with_sll {
            icmp.extend_from_slice(&[1, 1]);
            icmp.extend_from_slice(C1.as_bytes());
        }
        let snm = solicited_node(GW_IP6);
        frame(
            MacAddr::ipv6_multicast(snm),
            0x86dd,
            &ip6(src, snm, 255, icmp),
        )
    }

    #[test]
    fn answers_neighbor_solicitation_for_the_gateway() {
        let r = v6();
        let out = reply(&r, &ns(C1_IP6, true));
        assert_eq!(&out[0..6], C1.as_bytes());
        let ip = &out[14..];
        assert_eq!(ip[7], 255, "hop limit");
        assert_eq!(&ip[8..24], &GW_IP6.octets());
        assert_eq!(&ip[24..40], &C1_IP6.octets());
        let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let m = &ip[40..40 + plen];
        assert_eq!(m[0], 136);
        assert_eq!(m[4], 0xe0, "router, solicited, override");
        assert_eq!(&m[8..24], &GW_IP6.octets());
        assert_eq!(&m[24..26], &[2, 1]);
        assert_eq!(&m[26..32], GW_MAC.as_bytes());
        assert_eq!(icmp6_checksum(ip, m), 0);
        // Duplicate address detection: to all nodes, not solicited.
        let out = reply(&r, &ns(Ipv6Addr::UNSPECIFIED, false));
        assert_eq!(&out[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(out[14 + 40 + 4], 0xa0);
        assert_eq!(r.stats().snapshot().neighbor_replies, 2);
    }

    #[test]
    fn answers_icmpv6_echo_and_ignores_other_multicast() {
        let r = v6();
        let mut icmp = vec![128, 0, 0, 0, 0, 7, 0, 3];
        icmp.extend_from_slice(b"six");
        let f = frame(GW_MAC, 0x86dd, &ip6(C1_IP6, GW_IP6, 64, icmp));
        let out = reply(&r, &f);
        let ip = &out[14..];
        assert_eq!(&ip[24..40], &C1_IP6.octets());
        let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let m = &ip[40..40 + plen];
        assert_eq!(
            (m[0], &m[4..8], &m[8..]),
            (129, &[0, 7, 0, 3][..], &b"six"[..])
        );
        assert_eq!(icmp6_checksum(ip, m), 0);
        // A router solicitation to all routers: not answered, ignored.
        let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
        let rs = frame(
            MacAddr::ipv6_multicast(all_routers),
            0x86dd,
            &ip6(C1_IP6, all_routers, 255, vec![133, 0, 0, 0, 0, 0, 0, 0]),
        );
        let mut out = [0u8; 128];
        assert_eq!(r.answer(&rs, &mut out), Outcome::Ignored);
        // A hop limit other than 255 on a solicitation is forged (RFC 4861).
        let mut f = ns(C1_IP6, true);
        f[14 + 7] = 64;
        assert_eq!(r.answer(&f, &mut out), Outcome::Unanswered);
        // ARP on an IPv6 gateway.
        assert_eq!(
            r.answer(&arp_request([10, 88, 0, 1]), &mut out),
            Outcome::Ignored
        );
    }
}
