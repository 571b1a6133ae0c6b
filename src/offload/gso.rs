//! Software GSO: cut a TCP or UDP super-frame into wire-sized frames.
//!
//! The rules follow the kernel's `tcp_gso_segment`, `__udp_gso_segment` and
//! `inet_gso_segment`/`ipv6_gso_segment`:
//!
//! - every segment carries the super-frame's headers (VLAN tags, IPv4
//!   options, IPv6 extension headers, TCP options) and `gso_size` payload
//!   bytes, the last one the rest;
//! - IPv4: total length and header checksum per segment; the IP ID
//!   increments per segment from the super-frame's ID (what the kernel does
//!   unless `SKB_GSO_TCP_FIXEDID`, which virtio cannot express, and what the
//!   Linux TCP stack expects, having reserved the IDs with
//!   `ip_select_ident_segs`); IPv6: payload length;
//! - TCP: the sequence number advances by the payload already sent; FIN and
//!   PSH stay on the last segment only, CWR on the first only; the checksum
//!   is computed in full (pseudo-header, header, payload), never left
//!   partial, so the segments can leave through anything;
//! - UDP (USO): every segment is a complete datagram with its own length and
//!   checksum (0 sent as 0xffff).
//!
//! The output layout is what one `sendmsg` with `UDP_SEGMENT` wants:
//! segment `i` starts at `i * stride`, preceded by `headroom` bytes the
//! caller fills (the 8-byte VXLAN header, or nothing for a plain port), every
//! segment `stride` bytes long except possibly the last. Either all segments
//! are written or none (`OutputTooSmall`).

use super::{complete_checksum, parse_layout, GsoKind, Ip, Layout, OffloadError, Proto, VnetHdr};
use crate::wire::tcp::flags as tcp_flags;
use crate::wire::{Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

/// Where [`segment`] put the segments in its output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    /// Number of segments (at least 1).
    pub count: usize,
    /// Distance between segment starts: headroom + a full segment's frame.
    pub stride: usize,
    /// Frame length of the last segment, headroom not included.
    pub last_len: usize,
    /// Bytes of output used, from the first headroom to the end of the last
    /// segment: `(count - 1) * stride + headroom + last_len`.
    pub total_len: usize,
    /// The headroom in front of each segment.
    pub headroom: usize,
}

impl Segments {
    /// Frame length of a full (not last) segment, headroom not included.
    pub const fn seg_len(&self) -> usize {
        self.stride - self.headroom
    }

    /// The segments' frames (headroom excluded), in order.
    ///
    /// # Panics
    /// If `out` is shorter than `total_len` (it is not the buffer given to
    /// [`segment`]).
    pub fn frames<'a>(&self, out: &'a [u8]) -> SegmentIter<'a> {
        SegmentIter {
            chunks: out[..self.total_len].chunks(self.stride),
            headroom: self.headroom,
        }
    }

    /// Each segment as `(headroom, frame)`, for the caller to fill the
    /// headroom (a VXLAN header) in place.
    ///
    /// # Panics
    /// If `out` is shorter than `total_len`.
    pub fn slots_mut<'a>(
        &self,
        out: &'a mut [u8],
    ) -> impl Iterator<Item = (&'a mut [u8], &'a mut [u8])> {
        let headroom = self.headroom;
        out[..self.total_len]
            .chunks_mut(self.stride)
            .map(move |c| c.split_at_mut(headroom))
    }
}

impl Segments {
    /// Splits the output into runs of whole segments for `sendmsg` with
    /// `UDP_SEGMENT` (segment size = `stride`): each run is at most
    /// `max_len` bytes and `max_segs` segments. The kernel refuses a UDP
    /// send over 65535 bytes including headers (so about 65507 bytes of
    /// payload over IPv4, 65527 over IPv6) and more than `UDP_MAX_SEGMENTS`
    /// segments (64 before Linux 6.2, 128 since); a 64 KiB TCP super-frame
    /// with an 8-byte VXLAN header per segment needs two runs.
    ///
    /// Yields byte ranges of the output buffer. A single segment longer
    /// than `max_len` is still yielded alone (the send will say so).
    pub fn batches(&self, max_len: usize, max_segs: usize) -> Batches {
        let per = (max_len / self.stride).clamp(1, max_segs.max(1));
        Batches {
            at: 0,
            step: per * self.stride,
            end: self.total_len,
        }
    }
}

/// Iterator of byte ranges, see [`Segments::batches`].
#[derive(Clone, Debug)]
pub struct Batches {
    at: usize,
    step: usize,
    end: usize,
}

impl Iterator for Batches {
    type Item = core::ops::Range<usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.end {
            return None;
        }
        let start = self.at;
        self.at = (start + self.step).min(self.end);
        Some(start..self.at)
    }
}

/// Iterator over the frames of [`Segments`].
#[derive(Clone, Debug)]
pub struct SegmentIter<'a> {
    chunks: core::slice::Chunks<'a, u8>,
    headroom: usize,
}

impl<'a> Iterator for SegmentIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.chunks.next().map(|c| &c[self.headroom..])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for SegmentIter<'_> {}

/// Segments `frame` (the bytes after the virtio_net_hdr `hdr`) into `out`,
/// each segment preceded by `headroom` bytes left for the caller.
///
/// A frame without GSO is copied as one segment, its checksum completed when
/// `NEEDS_CSUM` is set: one call prepares any frame from a vnet_hdr TAP for
/// a port that does not speak vnet_hdr. A GSO frame whose payload fits in
/// one `gso_size` gives one segment, checksummed. `hdr_len` is ignored; the
/// headers are parsed and `csum_start` (when `NEEDS_CSUM`) must be where the
/// parse finds the TCP/UDP header.
///
/// Allocation-free; on any error nothing useful is in `out`.
pub fn segment(
    frame: &[u8],
    hdr: &VnetHdr,
    out: &mut [u8],
    headroom: usize,
) -> Result<Segments, OffloadError> {
    segment_parsed(frame, hdr, None, out, headroom)
}

/// [`segment`] with the frame's header layout already parsed (by
/// [`crate::wire::layout::parse`] on the same bytes), so a caller that
/// needed the layout first does not parse the headers twice. `None`
/// parses them here. The header is validated before the layout is used,
/// so the errors are the same, in the same order, as [`segment`]'s.
pub fn segment_parsed(
    frame: &[u8],
    hdr: &VnetHdr,
    layout: Option<&Layout>,
    out: &mut [u8],
    headroom: usize,
) -> Result<Segments, OffloadError> {
    let kind = hdr.validate(frame.len())?;
    if kind == GsoKind::None {
        let total_len = headroom + frame.len();
        if out.len() < total_len {
            return Err(OffloadError::OutputTooSmall);
        }
        out[headroom..total_len].copy_from_slice(frame);
        complete_checksum(&mut out[headroom..total_len], hdr)?;
        return Ok(Segments {
            count: 1,
            stride: total_len,
            last_len: frame.len(),
            total_len,
            headroom,
        });
    }
    let lay = match layout {
        Some(l) => *l,
        None => parse_layout(frame)?,
    };
    match (kind, lay.ip, lay.proto) {
        (GsoKind::TcpV4, Ip::V4, Proto::Tcp)
        | (GsoKind::TcpV6, Ip::V6, Proto::Tcp)
        | (GsoKind::UdpL4, _, Proto::Udp) => {}
        _ => return Err(OffloadError::GsoTypeMismatch),
    }
    if hdr.needs_csum() && usize::from(hdr.csum_start) != lay.l4 {
        return Err(OffloadError::CsumStartMismatch);
    }
    let mss = usize::from(hdr.gso_size);
    let hlen = lay.headers_len();
    let payload = &frame[hlen..lay.end];
    let count = payload.len().div_ceil(mss).max(1);
    let full = hlen + payload.len().min(mss);
    let last_len = hlen + (payload.len() - (count - 1) * mss);
    let stride = headroom + full;
    let total_len = (count - 1) * stride + headroom + last_len;
    if out.len() < total_len {
        return Err(OffloadError::OutputTooSmall);
    }

    let headers = &frame[..hlen];
    // parse_layout found a whole IPv4 (or IPv6) header at l3 and a whole
    // TCP header at l4: the fixed-field getters are in bounds.
    let ip_id = match lay.ip {
        Ip::V4 => Ipv4Packet::new_unchecked(&frame[lay.l3..lay.l4]).ident(),
        Ip::V6 => 0,
    };
    let seq = match lay.proto {
        Proto::Tcp => TcpPacket::new_unchecked(&frame[lay.l4..lay.end]).seq_number(),
        Proto::Udp => 0,
    };
    for (i, chunk) in payload.chunks(mss).chain(empty_if(payload)).enumerate() {
        let start = i * stride + headroom;
        let seg = &mut out[start..start + hlen + chunk.len()];
        seg[..hlen].copy_from_slice(headers);
        seg[hlen..].copy_from_slice(chunk);
        let pos = SegPos {
            index: i,
            last: i + 1 == count,
            // The sequence space wraps, as u32 arithmetic does.
            seq: seq.wrapping_add((i * mss) as u32),
            ip_id: ip_id.wrapping_add(i as u16),
        };
        fix_segment(seg, &lay, &pos);
    }
    Ok(Segments {
        count,
        stride,
        last_len,
        total_len,
        headroom,
    })
}

/// One empty chunk when the payload is empty (a GSO frame with no payload
/// still goes out as one segment), none otherwise.
fn empty_if(payload: &[u8]) -> Option<&[u8]> {
    payload.is_empty().then_some(payload)
}

struct SegPos {
    index: usize,
    last: bool,
    seq: u32,
    ip_id: u16,
}

/// Rewrites lengths, IDs, sequence, flags and checksums of one segment
/// whose headers were copied from the super-frame.
fn fix_segment(seg: &mut [u8], lay: &Layout, pos: &SegPos) {
    let (ip, l4) = seg.split_at_mut(lay.l4);
    let ip = &mut ip[lay.l3..];
    let l4_len = l4.len();
    // Lengths fit in 16 bits: a segment is never longer than the IP packet
    // it was cut from, whose length field is 16 bits.
    let ip_len = ip.len() + l4_len;
    let pseudo = match lay.ip {
        Ip::V4 => {
            let mut p = Ipv4Packet::new_unchecked(ip);
            p.set_total_len(ip_len as u16);
            p.set_ident(pos.ip_id);
            p.fill_checksum();
            p.pseudo_header_sum(lay.proto.protocol(), l4_len)
        }
        Ip::V6 => {
            let mut p = Ipv6Packet::new_unchecked(ip);
            p.set_payload_len((ip_len - crate::wire::ipv6::HEADER_LEN) as u16);
            p.pseudo_header_sum(lay.proto.protocol(), l4_len)
        }
    };
    match lay.proto {
        Proto::Tcp => {
            let mut t = TcpPacket::new_unchecked(l4);
            t.set_seq_number(pos.seq);
            let mut flags = t.flags();
            if pos.index != 0 {
                flags &= !tcp_flags::CWR;
            }
            if !pos.last {
                flags &= !(tcp_flags::FIN | tcp_flags::PSH);
            }
            t.set_flags(flags);
            // TCP keeps a computed 0 as 0 (as tcp_v4_check does); 0xffff
            // would verify as well.
            t.fill_checksum(pseudo);
        }
        Proto::Udp => {
            let mut u = UdpPacket::new_unchecked(l4);
            u.set_len(l4_len as u16);
            u.fill_checksum(pseudo);
        }
    }
}
