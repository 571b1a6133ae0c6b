//! Software GRO for TCP: merge consecutive segments of one flow into a
//! super-frame a vnet_hdr TAP accepts (the receive side of VXLAN, after a
//! `UDP_GRO` read of several datagrams and their VXLAN headers stripped).
//!
//! Segments join the held super-frame while they are the same flow (the
//! whole L2 header, so MACs and VLAN tags; IP addresses, TOS/traffic class,
//! TTL/hop limit; ports), follow in sequence with the IPv4 ID incrementing
//! by one (or, with DF, staying fixed, which RFC 6864 allows and the
//! kernel's GRO accepts; segmenting the result then numbers the IDs up),
//! carry the same TCP options and the same payload size (a smaller one, or
//! one with PSH, is the last), and have no SYN, FIN, RST or URG, and CWR
//! only on the first. Acknowledgment number and window come from the
//! last segment (as LRO did; the kernel's GRO flushes instead when the ACK
//! moves). Every candidate's IPv4 header checksum and TCP checksum are
//! verified before it joins: the super-frame leaves with `NEEDS_CSUM`, so
//! the receiver never verifies what we merged, and a corrupted segment
//! would otherwise be delivered with a fresh valid checksum. IPv4 options
//! and IPv6 extension headers are not merged (passed as they are).
//!
//! The super-frame is what a virtio device hands the kernel: gso_type
//! TCPV4/TCPV6 (| ECN when the first segment had CWR), gso_size = the first
//! segment's payload, `NEEDS_CSUM` with csum_start at the TCP header,
//! csum_offset 16 and the uncomplemented pseudo-header sum in the checksum
//! field. [`segment`](super::segment) of it gives back the segments.

use super::vnet::{F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6};
use super::{Ip, Layout, Proto, VnetHdr, VNET_HDR_LEN};
use crate::wire::checksum as csum;
use crate::wire::ipv4::FLAG_DF;
use crate::wire::tcp::{self, flags as tcp_flags};
use crate::wire::{ethernet, ipv6, layout, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket};

const MAX_IP_PACKET: usize = 65535;
/// Longest super-frame held: two VLAN tags and a 65535-byte IP packet.
pub const MAX_SUPER_FRAME: usize = ethernet::MAX_HEADER_LEN + MAX_IP_PACKET;

/// What [`Coalescer::push`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// The coalescer was empty; the frame starts a new super-frame.
    Started,
    /// The frame was appended to the held super-frame.
    Merged,
    /// The frame does not continue the held super-frame: nothing was taken.
    /// Call [`Coalescer::finish`], send what it returns, push again (an
    /// empty coalescer never answers `Flush`, so that second push ends).
    Flush,
    /// The coalescer is empty and the frame can never be merged (not TCP,
    /// SYN/FIN/RST/URG, no payload, bad checksum, ...): send it as it is.
    Bypass,
}

/// A finished super-frame (or a single verified segment), borrowed from the
/// coalescer until the next push.
#[derive(Debug)]
pub struct Coalesced<'a> {
    /// The virtio_net_hdr to send with the frame.
    pub hdr: VnetHdr,
    bytes: &'a [u8],
}

impl<'a> Coalesced<'a> {
    /// The Ethernet frame.
    pub fn frame(&self) -> &'a [u8] {
        &self.bytes[VNET_HDR_LEN..]
    }

    /// The 12-byte virtio_net_hdr followed by the frame: one `write` to a
    /// vnet_hdr TAP.
    pub fn with_vnet_hdr(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Merges TCP segments into super-frames; one per worker, allocated once.
///
/// Holds at most one super-frame. Call [`finish`](Self::finish) when a
/// receive batch is done (the end of a `UDP_GRO` read or of the worker's
/// budget): a segment must never wait in here for the next poll.
#[derive(Debug)]
pub struct Coalescer {
    /// `VNET_HDR_LEN` bytes for the header, then the frame.
    buf: Box<[u8]>,
    /// Frame bytes held; 0 when empty.
    len: usize,
    lay: Layout,
    segs: usize,
    mss: usize,
    next_seq: u32,
    next_id: u16,
    /// The IPv4 ID stays fixed (DF set; RFC 6864 lets an atomic datagram
    /// carry any ID) instead of incrementing: decided by the second segment.
    fixed_id: Option<bool>,
    /// A short segment or PSH was merged: nothing may follow.
    closed: bool,
    cwr: bool,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new()
    }
}

/// The IPv4 ID of a frame whose layout was parsed (0 for IPv6, which has
/// none outside a fragment header).
#[inline]
fn ip_ident(frame: &[u8], lay: &Layout) -> u16 {
    match lay.ip {
        // The layout found a whole IPv4 header there.
        Ip::V4 => Ipv4Packet::new_unchecked(&frame[lay.l3..lay.l4]).ident(),
        Ip::V6 => 0,
    }
}

/// A frame that could join a super-frame, with its parse.
struct Candidate {
    lay: Layout,
    flags: u8,
    seq: u32,
    payload: usize,
}

/// The checks that need only this frame; `None` means "never mergeable".
fn candidate(frame: &[u8]) -> Option<Candidate> {
    let lay = layout::parse(frame).ok()?;
    if lay.proto != Proto::Tcp || lay.end != frame.len() {
        return None;
    }
    // The layout found a whole TCP header at l4.
    let tcp = TcpPacket::new_unchecked(&frame[lay.l4..]);
    let flags = tcp.flags();
    let refused = tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST | tcp_flags::URG;
    if !lay.is_plain_ip() || flags & refused != 0 || lay.payload_len() == 0 {
        return None;
    }
    Some(Candidate {
        lay,
        flags,
        seq: tcp.seq_number(),
        payload: lay.payload_len(),
    })
}

/// IPv4 header and TCP checksums both verify.
fn checksums_ok(frame: &[u8], lay: &Layout) -> bool {
    let (ip, l4) = (&frame[lay.l3..lay.l4], &frame[lay.l4..]);
    let pseudo = match lay.ip {
        Ip::V4 => {
            let p = Ipv4Packet::new_unchecked(ip);
            if !p.verify_checksum() {
                return false;
            }
            p.pseudo_header_sum(IpProtocol::Tcp, l4.len())
        }
        Ip::V6 => Ipv6Packet::new_unchecked(ip).pseudo_header_sum(IpProtocol::Tcp, l4.len()),
    };
    TcpPacket::new_unchecked(l4).verify_checksum(pseudo)
}

impl Coalescer {
    /// An empty coalescer with its (one) buffer.
    pub fn new() -> Coalescer {
        Coalescer {
            buf: vec![0u8; VNET_HDR_LEN + MAX_SUPER_FRAME].into_boxed_slice(),
            len: 0,
            lay: Layout {
                l3: 0,
                ip: Ip::V4,
                l4: 0,
                proto: Proto::Tcp,
                l4_len: 0,
                end: 0,
            },
            segs: 0,
            mss: 0,
            next_seq: 0,
            next_id: 0,
            fixed_id: None,
            closed: false,
            cwr: false,
        }
    }

    /// True when no super-frame is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of segments held.
    pub fn segments(&self) -> usize {
        self.segs
    }

    fn held(&self) -> &[u8] {
        &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.len]
    }

    /// Offers the next frame (an Ethernet frame, no virtio_net_hdr).
    pub fn push(&mut self, frame: &[u8]) -> Push {
        let Some(c) = candidate(frame) else {
            return self.refuse();
        };
        if self.len == 0 {
            if frame.len() > MAX_SUPER_FRAME || !checksums_ok(frame, &c.lay) {
                return Push::Bypass;
            }
            self.start(frame, c);
            return Push::Started;
        }
        if !self.continues(frame, &c) || !checksums_ok(frame, &c.lay) {
            return Push::Flush;
        }
        self.append(frame, &c);
        Push::Merged
    }

    fn refuse(&self) -> Push {
        if self.len == 0 {
            Push::Bypass
        } else {
            Push::Flush
        }
    }

    fn start(&mut self, frame: &[u8], c: Candidate) {
        self.buf[VNET_HDR_LEN..VNET_HDR_LEN + frame.len()].copy_from_slice(frame);
        self.len = frame.len();
        self.lay = c.lay;
        self.segs = 1;
        self.mss = c.payload;
        self.next_seq = c.seq.wrapping_add(c.payload as u32);
        self.next_id = ip_ident(frame, &c.lay).wrapping_add(1);
        self.fixed_id = None;
        self.closed = c.flags & tcp_flags::PSH != 0;
        self.cwr = c.flags & tcp_flags::CWR != 0;
    }

    /// Whether `frame` is the next segment of the held super-frame.
    fn continues(&self, frame: &[u8], c: &Candidate) -> bool {
        let held = self.held();
        let (h, n) = (&self.lay, &c.lay);
        if self.closed || n.l3 != h.l3 || n.ip != h.ip || n.l4_len != h.l4_len {
            return false;
        }
        let (l3, l4) = (h.l3, h.l4);
        // Same L2 header: destination, source, VLAN tags, ethertype.
        if frame[..l3] != held[..l3] {
            return false;
        }
        // Both have a plain IP header of the same version at l3 and a TCP
        // header of the same length at l4 (their layouts say so).
        let same_ip = match h.ip {
            // Version/IHL/TOS, flags/fragment/TTL/protocol, addresses; the ID
            // must be the next one.
            Ip::V4 => {
                let (a, b) = (
                    Ipv4Packet::new_unchecked(&frame[l3..l4]),
                    Ipv4Packet::new_unchecked(&held[l3..l4]),
                );
                a.same_flow_header(&b) && self.id_follows(a.ident(), b.flags_frag())
            }
            // Version/traffic class/flow label, next header, hop limit,
            // addresses.
            Ip::V6 => Ipv6Packet::new_unchecked(&frame[l3..l4])
                .same_flow_header(&Ipv6Packet::new_unchecked(&held[l3..l4])),
        };
        let (a, b) = (
            TcpPacket::new_unchecked(&frame[l4..]),
            TcpPacket::new_unchecked(&held[l4..]),
        );
        let first_flags = b.flags() & !tcp_flags::PSH;
        let flags_ok = c.flags & tcp_flags::CWR == 0
            && c.flags & !tcp_flags::PSH == first_flags & !tcp_flags::CWR;
        same_ip
            && flags_ok
            && a.same_ports_and_options(&b)
            && c.seq == self.next_seq
            && c.payload <= self.mss
            && self.len - l3 + c.payload <= MAX_IP_PACKET
    }

    /// Whether IPv4 ID `id` may follow: the next one, or with DF the same
    /// one when the flow keeps it fixed (what the second segment shows).
    fn id_follows(&self, id: u16, frag: u16) -> bool {
        let fixed = id == self.next_id.wrapping_sub(1) && frag & FLAG_DF != 0;
        match self.fixed_id {
            None => id == self.next_id || fixed,
            Some(true) => fixed,
            Some(false) => id == self.next_id,
        }
    }

    fn append(&mut self, frame: &[u8], c: &Candidate) {
        let l4 = self.lay.l4;
        let at = VNET_HDR_LEN + self.len;
        self.buf[at..at + c.payload].copy_from_slice(&frame[c.lay.headers_len()..]);
        self.len += c.payload;
        // Acknowledgment and window from the latest segment.
        let new = TcpPacket::new_unchecked(&frame[l4..]);
        let mut held = TcpPacket::new_unchecked(&mut self.buf[VNET_HDR_LEN + l4..]);
        held.set_ack_number(new.ack_number());
        held.set_window_len(new.window_len());
        if c.flags & tcp_flags::PSH != 0 {
            held.set_flags(held.flags() | tcp_flags::PSH);
            self.closed = true;
        }
        if c.payload < self.mss {
            self.closed = true;
        }
        self.segs += 1;
        self.next_seq = self.next_seq.wrapping_add(c.payload as u32);
        if self.lay.ip == Ip::V4 {
            let id = ip_ident(frame, &c.lay);
            let fixed = id != self.next_id;
            self.fixed_id = Some(fixed);
            if !fixed {
                self.next_id = self.next_id.wrapping_add(1);
            }
        }
    }

    /// Hands out the held super-frame (or single segment) and empties the
    /// coalescer; `None` when it held nothing.
    ///
    /// A single segment comes back unchanged with `DATA_VALID` (its
    /// checksum was verified) and no GSO; two or more as a GSO super-frame
    /// with `NEEDS_CSUM`.
    pub fn finish(&mut self) -> Option<Coalesced<'_>> {
        if self.len == 0 {
            return None;
        }
        let len = self.len;
        let segs = self.segs;
        self.len = 0;
        self.segs = 0;
        let lay = self.lay;
        let (l3, l4) = (lay.l3, lay.l4);
        let f = &mut self.buf[VNET_HDR_LEN..VNET_HDR_LEN + len];
        let hdr = if segs == 1 {
            VnetHdr {
                flags: F_DATA_VALID,
                ..VnetHdr::default()
            }
        } else {
            // Lengths fit: the buffer holds at most one 65535-byte IP packet.
            let (ip, l4_bytes) = f.split_at_mut(l4);
            let ip = &mut ip[l3..];
            let l4_len = l4_bytes.len();
            let pseudo = match lay.ip {
                Ip::V4 => {
                    let mut p = Ipv4Packet::new_unchecked(ip);
                    p.set_total_len((len - l3) as u16);
                    p.fill_checksum();
                    p.pseudo_header_sum(IpProtocol::Tcp, l4_len)
                }
                Ip::V6 => {
                    let mut p = Ipv6Packet::new_unchecked(ip);
                    p.set_payload_len((len - l3 - ipv6::HEADER_LEN) as u16);
                    p.pseudo_header_sum(IpProtocol::Tcp, l4_len)
                }
            };
            // CHECKSUM_PARTIAL: the uncomplemented pseudo-header sum.
            TcpPacket::new_unchecked(l4_bytes).set_checksum(csum::fold(pseudo));
            let gso = match lay.ip {
                Ip::V4 => GSO_TCPV4,
                Ip::V6 => GSO_TCPV6,
            };
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: gso | if self.cwr { GSO_ECN } else { 0 },
                hdr_len: lay.headers_len() as u16,
                gso_size: self.mss as u16,
                csum_start: l4 as u16,
                csum_offset: tcp::CHECKSUM_OFFSET as u16,
                num_buffers: 0,
            }
        };
        hdr.emit(&mut self.buf[..VNET_HDR_LEN]);
        Some(Coalesced {
            hdr,
            bytes: &self.buf[..VNET_HDR_LEN + len],
        })
    }
}
