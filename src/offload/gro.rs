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

use super::csum;
use super::vnet::{F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6};
use super::{parse_layout, tcp_flags, Ip, Layout, Proto, VnetHdr, VNET_HDR_LEN};

/// Longest super-frame held: two VLAN tags and a 65535-byte IP packet.
pub const MAX_SUPER_FRAME: usize = 14 + 8 + 65535;
const MAX_IP_PACKET: usize = 65535;
/// The IPv4 "don't fragment" bit in the flags/fragment-offset field.
const IPV4_DF: u16 = 0x4000;

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

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
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
    let lay = parse_layout(frame).ok()?;
    if lay.proto != Proto::Tcp || lay.end != frame.len() {
        return None;
    }
    let plain_ip = match lay.ip {
        Ip::V4 => lay.l4 == lay.l3 + 20,
        Ip::V6 => lay.l4 == lay.l3 + 40,
    };
    let flags = frame[lay.l4 + 13];
    let refused = tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST | tcp_flags::URG;
    if !plain_ip || flags & refused != 0 || lay.payload_len() == 0 {
        return None;
    }
    Some(Candidate {
        lay,
        flags,
        seq: be32(frame, lay.l4 + 4),
        payload: lay.payload_len(),
    })
}

/// IPv4 header and TCP checksums both verify.
fn checksums_ok(frame: &[u8], lay: &Layout) -> bool {
    let l4_len = frame.len() - lay.l4;
    let pseudo = match lay.ip {
        Ip::V4 => {
            if csum::fold(csum::sum_words(&frame[lay.l3..lay.l4], 0)) != 0xffff {
                return false;
            }
            csum::pseudo_v4(
                &frame[lay.l3 + 12..lay.l3 + 16],
                &frame[lay.l3 + 16..lay.l3 + 20],
                6,
                l4_len,
            )
        }
        Ip::V6 => csum::pseudo_v6(
            &frame[lay.l3 + 8..lay.l3 + 24],
            &frame[lay.l3 + 24..lay.l3 + 40],
            6,
            l4_len,
        ),
    };
    csum::fold(csum::sum_words(&frame[lay.l4..], pseudo)) == 0xffff
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
        self.next_id = be16(frame, c.lay.l3 + 4).wrapping_add(1);
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
        let same_ip = match h.ip {
            // Version/IHL/TOS, flags/fragment/TTL/protocol, addresses; the ID
            // must be the next one.
            Ip::V4 => {
                frame[l3..l3 + 2] == held[l3..l3 + 2]
                    && frame[l3 + 6..l3 + 10] == held[l3 + 6..l3 + 10]
                    && frame[l3 + 12..l4] == held[l3 + 12..l4]
                    && self.id_follows(be16(frame, l3 + 4), be16(held, l3 + 6))
            }
            // Version/traffic class/flow label, next header, hop limit,
            // addresses.
            Ip::V6 => {
                frame[l3..l3 + 4] == held[l3..l3 + 4] && frame[l3 + 6..l4] == held[l3 + 6..l4]
            }
        };
        let first_flags = held[l4 + 13] & !tcp_flags::PSH;
        let flags_ok = c.flags & tcp_flags::CWR == 0
            && c.flags & !tcp_flags::PSH == first_flags & !tcp_flags::CWR;
        same_ip
            && flags_ok
            && frame[l4..l4 + 4] == held[l4..l4 + 4]
            && frame[l4 + 20..l4 + h.l4_len] == held[l4 + 20..l4 + h.l4_len]
            && c.seq == self.next_seq
            && c.payload <= self.mss
            && self.len - l3 + c.payload <= MAX_IP_PACKET
    }

    /// Whether IPv4 ID `id` may follow: the next one, or with DF the same
    /// one when the flow keeps it fixed (what the second segment shows).
    fn id_follows(&self, id: u16, frag: u16) -> bool {
        let fixed = id == self.next_id.wrapping_sub(1) && frag & IPV4_DF != 0;
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
        let h = VNET_HDR_LEN + l4;
        self.buf[h + 8..h + 12].copy_from_slice(&frame[l4 + 8..l4 + 12]);
        self.buf[h + 14..h + 16].copy_from_slice(&frame[l4 + 14..l4 + 16]);
        if c.flags & tcp_flags::PSH != 0 {
            self.buf[h + 13] |= tcp_flags::PSH;
            self.closed = true;
        }
        if c.payload < self.mss {
            self.closed = true;
        }
        self.segs += 1;
        self.next_seq = self.next_seq.wrapping_add(c.payload as u32);
        if self.lay.ip == Ip::V4 {
            let id = be16(frame, self.lay.l3 + 4);
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
            let l4_len = len - l4;
            let pseudo = match lay.ip {
                Ip::V4 => {
                    f[l3 + 2..l3 + 4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
                    f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
                    let c = csum::ipv4_header(&f[l3..l4]);
                    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
                    csum::pseudo_v4(&f[l3 + 12..l3 + 16], &f[l3 + 16..l3 + 20], 6, l4_len)
                }
                Ip::V6 => {
                    f[l3 + 4..l3 + 6].copy_from_slice(&((len - l3 - 40) as u16).to_be_bytes());
                    csum::pseudo_v6(&f[l3 + 8..l3 + 24], &f[l3 + 24..l3 + 40], 6, l4_len)
                }
            };
            f[l4 + 16..l4 + 18].copy_from_slice(&csum::fold(pseudo).to_be_bytes());
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
                csum_offset: 16,
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
