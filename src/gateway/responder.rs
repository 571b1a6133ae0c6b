//! The switch gateway: answers ARP and ICMP echo (IPv4), neighbour
//! solicitations and ICMPv6 echo (IPv6) for one gateway address, and
//! nothing else.
//!
//! Sans-IO: [`Responder::answer`] takes one frame and writes the reply
//! into a caller-owned buffer; the thread in the parent module owns the
//! socket. Every frame is counted in exactly one [`GatewayStats`] counter.
//!
//! Contracts: frames are untrusted; every offset is checked against the
//! frame's length before it is read, and IP lengths are taken from the IP
//! header (never the frame length: Ethernet pads short frames to 60 bytes),
//! after checking they fit in the frame. A reply is never longer than the
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

use crate::offload::csum;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::wire::ethernet::HEADER_LEN as ETH_LEN;
use crate::wire::{EtherType, MacAddr};

/// Shortest Ethernet frame without its FCS; replies are padded to it.
const MIN_FRAME: usize = 60;

mod arp {
    pub type Field = core::ops::Range<usize>;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
    pub const LEN: usize = 28;
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

mod ipv4 {
    pub type Field = core::ops::Range<usize>;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLAGS_FRAG: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
    pub const MIN_LEN: usize = 20;
    pub const PROTO_ICMP: u8 = 1;
    /// More fragments flag and fragment offset: any of them set is a fragment.
    pub const MF_OFFSET: u16 = 0x3fff;
}

mod ipv6 {
    pub type Field = core::ops::Range<usize>;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Field = 8..24;
    pub const DST: Field = 24..40;
    pub const LEN: usize = 40;
    pub const NEXT_ICMPV6: u8 = 58;
}

mod icmp {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub type Field = core::ops::Range<usize>;
    pub const CHECKSUM: Field = 2..4;
    pub const MIN_LEN: usize = 8;
    pub const V4_ECHO_REPLY: u8 = 0;
    pub const V4_ECHO_REQUEST: u8 = 8;
    pub const V6_ECHO_REQUEST: u8 = 128;
    pub const V6_ECHO_REPLY: u8 = 129;
    pub const V6_NEIGHBOR_SOLICIT: u8 = 135;
    pub const V6_NEIGHBOR_ADVERT: u8 = 136;
    /// Neighbour solicitation/advertisement: type, code, checksum,
    /// reserved/flags (4), target address (16).
    pub const ND_TARGET: Field = 8..24;
    pub const ND_LEN: usize = 24;
    /// Option types (RFC 4861 §4.6.1).
    pub const OPT_SOURCE_LLADDR: u8 = 1;
    pub const OPT_TARGET_LLADDR: u8 = 2;
    /// Router | Solicited | Override.
    pub const NA_ROUTER: u8 = 0x80;
    pub const NA_SOLICITED: u8 = 0x40;
    pub const NA_OVERRIDE: u8 = 0x20;
}

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

fn be16(b: &[u8], r: core::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

/// The Internet checksum (RFC 1071) of `data`, continuing from `sum`.
fn sum16(sum: u64, data: &[u8]) -> u64 {
    csum::sum_words(data, sum)
}

/// The checksum field value of a running sum (0 when the data, checksum
/// field included, verifies).
fn fold(sum: u64) -> u16 {
    !csum::fold(sum)
}

/// The ICMPv6 checksum's pseudo-header sum (RFC 8200 §8.1).
fn pseudo6(src: &[u8], dst: &[u8], len: usize) -> u64 {
    csum::pseudo_v6(src, dst, ipv6::NEXT_ICMPV6, len)
}

/// The solicited-node multicast address of `ip` (RFC 4291 §2.7.1).
fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 §7).
fn multicast_mac(ip: Ipv6Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
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
        let dst = MacAddr::from_bytes(&frame[0..6]);
        let src = MacAddr::from_bytes(&frame[6..12]);
        let ethertype = EtherType::from(be16(frame, 12..14));
        let body = &frame[ETH_LEN..];
        // Frames addressed to another station's MAC were flooded here
        // (unknown unicast) or mirrored: none of our business.
        let for_us = dst == self.mac;
        if !for_us && !dst.is_multicast() {
            return Outcome::Ignored;
        }
        let reply = match (ethertype, self.ip) {
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
        out[0..6].copy_from_slice(to.as_bytes());
        out[6..12].copy_from_slice(self.mac.as_bytes());
        out[12..14].copy_from_slice(&u16::from(ty).to_be_bytes());
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
        let Some(a) = body.get(..arp::LEN) else {
            return Err(Outcome::Ignored);
        };
        let well_formed = be16(a, arp::HTYPE) == 1
            && be16(a, arp::PTYPE) == 0x0800
            && a[arp::HLEN] == 6
            && a[arp::PLEN] == 4;
        if !well_formed || a[arp::TPA] != gw.octets() {
            return Err(Outcome::Ignored);
        }
        let sha = MacAddr::from_bytes(&a[arp::SHA]);
        // Only requests get replies; a reply or announcement claiming our
        // address, or a request we cannot answer (no valid sender), is
        // counted as unanswered.
        if be16(a, arp::OPER) != arp::REQUEST || !sha.is_valid_source() || src.is_multicast() {
            return Err(Outcome::Unanswered);
        }
        let len = self
            .ethernet(out, sha, EtherType::Arp, arp::LEN)
            .ok_or(Outcome::Unanswered)?;
        let r = &mut out[ETH_LEN..ETH_LEN + arp::LEN];
        r[..arp::OPER.start].copy_from_slice(&a[..arp::OPER.start]);
        r[arp::OPER].copy_from_slice(&arp::REPLY.to_be_bytes());
        r[arp::SHA].copy_from_slice(self.mac.as_bytes());
        r[arp::SPA].copy_from_slice(&gw.octets());
        r[arp::THA].copy_from_slice(sha.as_bytes());
        r[arp::TPA].copy_from_slice(&a[arp::SPA]);
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
        let h = body.get(..ipv4::MIN_LEN).ok_or(NO)?;
        let ihl = usize::from(h[ipv4::VER_IHL] & 0x0f) * 4;
        let total = usize::from(be16(h, ipv4::TOTAL_LEN));
        if h[ipv4::VER_IHL] >> 4 != 4 || ihl < ipv4::MIN_LEN || total < ihl || total > body.len() {
            return Err(NO);
        }
        if h[ipv4::DST] != gw.octets() {
            // Sent to the gateway's MAC for another address: to be routed.
            return Err(NO);
        }
        let sip = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let bad_source =
            sip.is_unspecified() || sip.is_broadcast() || sip.is_multicast() || sip == gw;
        if fold(sum16(0, &body[..ihl])) != 0
            || bad_source
            || !src.is_valid_source()
            || h[ipv4::PROTOCOL] != ipv4::PROTO_ICMP
            || be16(h, ipv4::FLAGS_FRAG) & ipv4::MF_OFFSET != 0
        {
            return Err(NO);
        }
        let msg = &body[ihl..total];
        if msg.len() < icmp::MIN_LEN
            || msg[icmp::TYPE] != icmp::V4_ECHO_REQUEST
            || msg[icmp::CODE] != 0
            || fold(sum16(0, msg)) != 0
        {
            return Err(NO);
        }
        let ip_len = ipv4::MIN_LEN + msg.len();
        let len = self.ethernet(out, src, EtherType::Ipv4, ip_len).ok_or(NO)?;
        let r = &mut out[ETH_LEN..ETH_LEN + ip_len];
        r[ipv4::VER_IHL] = 0x45;
        r[ipv4::TOS] = h[ipv4::TOS];
        // ip_len <= total, which came from a u16.
        r[ipv4::TOTAL_LEN]
            .copy_from_slice(&u16::try_from(ip_len).unwrap_or(u16::MAX).to_be_bytes());
        r[ipv4::IDENT].copy_from_slice(&h[ipv4::IDENT]);
        r[ipv4::FLAGS_FRAG].copy_from_slice(&[0, 0]);
        r[ipv4::TTL] = 64;
        r[ipv4::PROTOCOL] = ipv4::PROTO_ICMP;
        r[ipv4::CHECKSUM].copy_from_slice(&[0, 0]);
        r[ipv4::SRC].copy_from_slice(&gw.octets());
        r[ipv4::DST].copy_from_slice(&sip.octets());
        let c = fold(sum16(0, &r[..ipv4::MIN_LEN]));
        r[ipv4::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        let m = &mut r[ipv4::MIN_LEN..];
        m.copy_from_slice(msg);
        m[icmp::TYPE] = icmp::V4_ECHO_REPLY;
        m[icmp::CHECKSUM].copy_from_slice(&[0, 0]);
        let c = fold(sum16(0, m));
        m[icmp::CHECKSUM].copy_from_slice(&c.to_be_bytes());
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
        if dst_mac != self.mac && dst_mac != multicast_mac(snm) {
            return Err(Outcome::Ignored);
        }
        let h = body.get(..ipv6::LEN).ok_or(Outcome::Ignored)?;
        let plen = usize::from(be16(h, ipv6::PAYLOAD_LEN));
        let dip = Ipv6Addr::from(<[u8; 16]>::try_from(&h[ipv6::DST]).unwrap_or_default());
        let sip = Ipv6Addr::from(<[u8; 16]>::try_from(&h[ipv6::SRC]).unwrap_or_default());
        if dip != gw && dip != snm {
            return Err(if dst_mac == self.mac {
                Outcome::Unanswered
            } else {
                Outcome::Ignored
            });
        }
        const NO: Outcome = Outcome::Unanswered;
        if h[0] >> 4 != 6
            || ipv6::LEN + plen > body.len()
            || h[ipv6::NEXT_HEADER] != ipv6::NEXT_ICMPV6
        {
            return Err(NO);
        }
        let msg = &body[ipv6::LEN..ipv6::LEN + plen];
        if msg.len() < icmp::MIN_LEN
            || fold(sum16(pseudo6(&h[ipv6::SRC], &h[ipv6::DST], plen), msg)) != 0
            || !src.is_valid_source()
            || sip.is_multicast()
        {
            return Err(NO);
        }
        match (msg[icmp::TYPE], msg[icmp::CODE]) {
            (icmp::V6_NEIGHBOR_SOLICIT, 0) => self.neighbor_advert(src, h, msg, gw, out),
            (icmp::V6_ECHO_REQUEST, 0) if dip == gw && !sip.is_unspecified() => {
                let ip_len = ipv6::LEN + msg.len();
                let len = self.ethernet(out, src, EtherType::Ipv6, ip_len).ok_or(NO)?;
                let r = &mut out[ETH_LEN..ETH_LEN + ip_len];
                r[..ipv6::LEN].copy_from_slice(h);
                r[ipv6::HOP_LIMIT] = 64;
                r[ipv6::SRC].copy_from_slice(&gw.octets());
                r[ipv6::DST].copy_from_slice(&sip.octets());
                let (ip, m) = r.split_at_mut(ipv6::LEN);
                m.copy_from_slice(msg);
                m[icmp::TYPE] = icmp::V6_ECHO_REPLY;
                m[icmp::CHECKSUM].copy_from_slice(&[0, 0]);
                let c = fold(sum16(pseudo6(&ip[ipv6::SRC], &ip[ipv6::DST], plen), m));
                m[icmp::CHECKSUM].copy_from_slice(&c.to_be_bytes());
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
        h: &[u8],
        msg: &[u8],
        gw: Ipv6Addr,
        out: &mut [u8],
    ) -> Result<usize, Outcome> {
        const NO: Outcome = Outcome::Unanswered;
        if h[ipv6::HOP_LIMIT] != 255
            || msg.len() < icmp::ND_LEN
            || msg[icmp::ND_TARGET] != gw.octets()
        {
            return Err(NO);
        }
        let sip = Ipv6Addr::from(<[u8; 16]>::try_from(&h[ipv6::SRC]).unwrap_or_default());
        // The solicitor's link-layer address option, if it sent one.
        let mut opts = &msg[icmp::ND_LEN..];
        let mut sll = None;
        while opts.len() >= 8 {
            let olen = usize::from(opts[1]) * 8;
            if olen == 0 || olen > opts.len() {
                return Err(NO);
            }
            if opts[0] == icmp::OPT_SOURCE_LLADDR && olen == 8 {
                sll = Some(MacAddr::from_bytes(&opts[2..8]));
            }
            opts = &opts[olen..];
        }
        let dad = sip.is_unspecified();
        if dad && sll.is_some() {
            return Err(NO); // RFC 4861 §7.1.1: must not carry the option.
        }
        let (to_ip, to_mac, flags) = if dad {
            let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            (
                all_nodes,
                multicast_mac(all_nodes),
                icmp::NA_ROUTER | icmp::NA_OVERRIDE,
            )
        } else {
            (
                sip,
                sll.unwrap_or(src),
                icmp::NA_ROUTER | icmp::NA_SOLICITED | icmp::NA_OVERRIDE,
            )
        };
        let plen = icmp::ND_LEN + 8;
        let ip_len = ipv6::LEN + plen;
        let len = self
            .ethernet(out, to_mac, EtherType::Ipv6, ip_len)
            .ok_or(NO)?;
        let r = &mut out[ETH_LEN..ETH_LEN + ip_len];
        r[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        r[ipv6::PAYLOAD_LEN].copy_from_slice(&u16::try_from(plen).unwrap_or(0).to_be_bytes());
        r[ipv6::NEXT_HEADER] = ipv6::NEXT_ICMPV6;
        r[ipv6::HOP_LIMIT] = 255;
        r[ipv6::SRC].copy_from_slice(&gw.octets());
        r[ipv6::DST].copy_from_slice(&to_ip.octets());
        let (ip, m) = r.split_at_mut(ipv6::LEN);
        m.fill(0);
        m[icmp::TYPE] = icmp::V6_NEIGHBOR_ADVERT;
        m[4] = flags;
        m[icmp::ND_TARGET].copy_from_slice(&gw.octets());
        m[icmp::ND_LEN] = icmp::OPT_TARGET_LLADDR;
        m[icmp::ND_LEN + 1] = 1;
        m[icmp::ND_LEN + 2..icmp::ND_LEN + 8].copy_from_slice(self.mac.as_bytes());
        let c = fold(sum16(pseudo6(&ip[ipv6::SRC], &ip[ipv6::DST], plen), m));
        m[icmp::CHECKSUM].copy_from_slice(&c.to_be_bytes());
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
        let mut f = vec![0xff; 6];
        f.extend_from_slice(sha.as_bytes());
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(sha.as_bytes());
        f.extend_from_slice(&spa);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa);
        f
    }

    /// An ICMP echo request (id 0x1234, seq 1) from `src`/`sip` to
    /// `dst`/`dip`, padded to 60 bytes like a minimum Ethernet frame.
    pub fn echo4(dst: MacAddr, src: MacAddr, sip: [u8; 4], dip: [u8; 4], data: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0xab, 0xcd, 0x40, 0, 64, 1, 0, 0];
        ip.extend_from_slice(&sip);
        ip.extend_from_slice(&dip);
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
        icmp.extend_from_slice(data);
        let c = fold(sum16(0, &icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let total = u16::try_from(20 + icmp.len()).unwrap_or(u16::MAX);
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let c = fold(sum16(0, &ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = dst.as_bytes().to_vec();
        f.extend_from_slice(src.as_bytes());
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        f.resize(f.len().max(60), 0);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut f = vec![0xff; 6];
        f.extend_from_slice(C1.as_bytes());
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(C1.as_bytes());
        f.extend_from_slice(&[10, 88, 0, 11]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa);
        f
    }

    /// An ICMP echo request from 10.88.0.11 to `dst`, id 0x1234 seq 1,
    /// padded to 60 bytes like a minimum Ethernet frame when short.
    fn echo4(dst: [u8; 4], data: &[u8]) -> Vec<u8> {
        let mut ip = vec![
            0x45, 0, 0, 0, 0xab, 0xcd, 0x40, 0, 64, 1, 0, 0, 10, 88, 0, 11,
        ];
        ip.extend_from_slice(&dst);
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
        icmp.extend_from_slice(data);
        let c = fold(sum16(0, &icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let total = u16::try_from(20 + icmp.len()).unwrap();
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let c = fold(sum16(0, &ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = GW_MAC.as_bytes().to_vec();
        f.extend_from_slice(C1.as_bytes());
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        f.resize(f.len().max(60), 0);
        f
    }

    fn ip6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, mut icmp: Vec<u8>) -> Vec<u8> {
        let plen = icmp.len();
        let c = fold(sum16(pseudo6(&src.octets(), &dst.octets(), plen), &icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&u16::try_from(plen).unwrap().to_be_bytes());
        h.extend_from_slice(&[58, hop]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
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
        assert_eq!(fold(sum16(0, &ip[..20])), 0, "valid IP checksum");
        assert_eq!(&ip[12..16], &[10, 88, 0, 1]);
        assert_eq!(&ip[16..20], &[10, 88, 0, 11]);
        assert_eq!(ip[9], 1);
        let total = usize::from(be16(ip, 2..4));
        assert_eq!(total, 20 + 8 + 14);
        let icmp = &ip[20..total];
        assert_eq!(icmp[0], 0, "echo reply");
        assert_eq!(fold(sum16(0, icmp)), 0, "valid ICMP checksum");
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
        let c = fold(sum16(0, &f[14..34]));
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
        for n in 0..req.len() {
            let _ = r.answer(&req[..n], &mut out);
        }
        let arp = arp_request([10, 88, 0, 1]);
        for n in 0..arp.len() {
            let _ = r.answer(&arp[..n], &mut out);
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
        frame(multicast_mac(snm), 0x86dd, &ip6(src, snm, 255, icmp))
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
        let plen = usize::from(be16(ip, 4..6));
        let m = &ip[40..40 + plen];
        assert_eq!(m[0], 136);
        assert_eq!(m[4], 0xe0, "router, solicited, override");
        assert_eq!(&m[8..24], &GW_IP6.octets());
        assert_eq!(&m[24..26], &[2, 1]);
        assert_eq!(&m[26..32], GW_MAC.as_bytes());
        assert_eq!(fold(sum16(pseudo6(&ip[8..24], &ip[24..40], plen), m)), 0);
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
        let plen = usize::from(be16(ip, 4..6));
        let m = &ip[40..40 + plen];
        assert_eq!(
            (m[0], &m[4..8], &m[8..]),
            (129, &[0, 7, 0, 3][..], &b"six"[..])
        );
        assert_eq!(fold(sum16(pseudo6(&ip[8..24], &ip[24..40], plen), m)), 0);
        // A router solicitation to all routers: not answered, ignored.
        let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
        let rs = frame(
            multicast_mac(all_routers),
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
