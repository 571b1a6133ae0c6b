//! Where the headers of an Ethernet/IP/TCP-or-UDP frame are: the parse the
//! offloads (checksum completion, segmentation, coalescing) work from, and
//! the egress uses to size a super-frame's segments.
//!
//! [`parse`] walks the frame through the views: Ethernet with 0..2 VLAN
//! tags (802.1Q 0x8100 or 802.1ad 0x88a8), IPv4 with options or IPv6 with
//! the extension headers that carry no payload of their own (hop-by-hop,
//! routing without segments left, destination options; RFC 8200 section
//! 4), then TCP or UDP. What it refuses, and in which order, is part of
//! the contract: the offloads count each refusal under its own name
//! ([`LayoutError`] maps one to one onto their errors).
//!
//! - The IP length fields, not the frame length, say where the packet
//!   ends: Ethernet pads short frames, and [`Layout::end`] leaves the
//!   padding out.
//! - IPv4 fragments are refused: a fragment has no complete L4 packet to
//!   segment or checksum.
//! - IPv6: a payload length of 0 (a jumbogram, or BIG TCP) is refused (a
//!   TAP carries at most 64 KiB); more than 8 extension headers are
//!   refused (no real packet has them); a routing header with segments left
//!   is refused (the checksum's pseudo-header would use the final
//!   destination, not the IPv6 header's); a fragment, ESP, AH, mobility,
//!   HIP or Shim6 header is refused as unsupported rather than as an
//!   unknown L4.
//! - The UDP length field is not read: the IP layer's length is what
//!   segmentation trusts.

use super::ethernet::EthernetFrame;
use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6ExtHeader, Ipv6Packet};
use super::tcp::{self, TcpPacket};
use super::udp;
use super::{EtherType, IpProtocol};

/// More IPv6 extension headers than this is not a real packet.
pub const MAX_IPV6_EXT: usize = 8;

/// The transport protocol of a parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol.
    #[inline]
    pub const fn protocol(self) -> IpProtocol {
        match self {
            Proto::Tcp => IpProtocol::Tcp,
            Proto::Udp => IpProtocol::Udp,
        }
    }

    /// The IP protocol number.
    #[inline]
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// Offset of the checksum field within the L4 header.
    #[inline]
    pub const fn checksum_offset(self) -> usize {
        match self {
            Proto::Tcp => tcp::CHECKSUM_OFFSET,
            Proto::Udp => udp::CHECKSUM_OFFSET,
        }
    }
}

/// The IP version of a parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip {
    V4,
    V6,
}

/// Where the headers of an Ethernet/IP/TCP-or-UDP frame are, found by
/// parsing it (never from a virtio_net_hdr's `hdr_len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the IP header (14, 18 or 22).
    pub l3: usize,
    pub ip: Ip,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
    pub proto: Proto,
    /// Length of the TCP header (data offset * 4) or 8 for UDP.
    pub l4_len: usize,
    /// End of the IP packet (IPv4 total length / IPv6 payload length); bytes
    /// after it (Ethernet padding) are not part of the packet.
    pub end: usize,
}

impl Layout {
    /// Length of all headers: where the payload starts.
    #[inline]
    pub const fn headers_len(&self) -> usize {
        self.l4 + self.l4_len
    }

    /// Length of the L4 payload.
    #[inline]
    pub const fn payload_len(&self) -> usize {
        self.end - self.headers_len()
    }

    /// Length of a plain IP header of this version: IPv4 without options,
    /// IPv6 without extension headers.
    #[inline]
    pub const fn plain_ip_header_len(&self) -> usize {
        match self.ip {
            Ip::V4 => ipv4::HEADER_LEN,
            Ip::V6 => ipv6::HEADER_LEN,
        }
    }

    /// The IP header carries no IPv4 options or IPv6 extension headers.
    #[inline]
    pub const fn is_plain_ip(&self) -> bool {
        self.l4 == self.l3 + self.plain_ip_header_len()
    }
}

/// Why a frame has no [`Layout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The frame ends inside its Ethernet, VLAN, IP or L4 headers.
    #[error("frame ends inside its headers")]
    HeadersTruncated,
    /// Not IPv4 or IPv6 after 0..2 VLAN tags.
    #[error("not IPv4/IPv6 (or more than two VLAN tags)")]
    UnsupportedEtherType,
    /// IP version/IHL wrong, or IPv4 length shorter than its header.
    #[error("malformed IP header")]
    BadIpHeader,
    /// IP total/payload length larger than the frame, or 0.
    #[error("IP length does not match the frame")]
    IpLengthMismatch,
    /// An IPv4 fragment (MF or a fragment offset).
    #[error("IPv4 fragment")]
    Ipv4Fragment,
    /// An IPv6 extension header not walked, too many of them, or a routing
    /// header with segments left.
    #[error("unsupported IPv6 extension header")]
    UnsupportedIpv6Ext,
    /// The L4 protocol is neither TCP nor UDP.
    #[error("L4 protocol is neither TCP nor UDP")]
    UnsupportedL4,
    /// TCP data offset below 5.
    #[error("malformed TCP header")]
    BadTcpHeader,
}

/// Finds the headers of an Ethernet frame carrying TCP or UDP over IPv4 or
/// IPv6, behind 0..2 VLAN tags.
pub fn parse(frame: &[u8]) -> Result<Layout, LayoutError> {
    use LayoutError::*;
    let (l3, ethertype) = EthernetFrame::new_unchecked(frame)
        .check_payload()
        .map_err(|_| HeadersTruncated)?;
    let (ip, l4, end, next) = match ethertype {
        EtherType::Ipv4 => {
            let len = frame.len() - l3;
            if len < ipv4::HEADER_LEN {
                return Err(HeadersTruncated);
            }
            // The fixed header is there: its getters are in bounds.
            let p = Ipv4Packet::new_unchecked(&frame[l3..]);
            let ihl = p.header_len();
            let total = usize::from(p.total_len());
            if p.version() != 4 || ihl < ipv4::HEADER_LEN || total < ihl {
                return Err(BadIpHeader);
            }
            if total > len {
                return Err(if len < ihl {
                    HeadersTruncated
                } else {
                    IpLengthMismatch
                });
            }
            if p.is_fragment() {
                return Err(Ipv4Fragment);
            }
            (Ip::V4, l3 + ihl, l3 + total, p.protocol())
        }
        EtherType::Ipv6 => {
            if frame.len() - l3 < ipv6::HEADER_LEN {
                return Err(HeadersTruncated);
            }
            let p = Ipv6Packet::new_unchecked(&frame[l3..]);
            if p.version() != 6 {
                return Err(BadIpHeader);
            }
            // 0 would be a jumbogram (or BIG TCP): not over a 64 KiB TAP.
            if p.payload_len() == 0 || p.check_len().is_err() {
                return Err(IpLengthMismatch);
            }
            let end = l3 + ipv6::HEADER_LEN + usize::from(p.payload_len());
            let mut next = p.next_header();
            let mut at = l3 + ipv6::HEADER_LEN;
            let mut walked = 0;
            while next.is_ipv6_ext_walkable() {
                walked += 1;
                if walked > MAX_IPV6_EXT {
                    return Err(UnsupportedIpv6Ext);
                }
                if end < at + ipv6::EXT_HEADER_MIN_LEN {
                    return Err(HeadersTruncated);
                }
                // The first 8 bytes are there: the getters are in bounds.
                let ext = Ipv6ExtHeader::new_unchecked(&frame[at..end]);
                if next == IpProtocol::Ipv6Route && ext.segments_left() != 0 {
                    return Err(UnsupportedIpv6Ext);
                }
                next = ext.next_header();
                at += ext.header_len();
            }
            if at > end {
                return Err(HeadersTruncated);
            }
            (Ip::V6, at, end, next)
        }
        _ => return Err(UnsupportedEtherType),
    };
    let (proto, l4_len) = match next {
        IpProtocol::Tcp => {
            if end < l4 + tcp::HEADER_LEN {
                return Err(HeadersTruncated);
            }
            let doff = TcpPacket::new_unchecked(&frame[l4..end]).header_len();
            if doff < tcp::HEADER_LEN {
                return Err(BadTcpHeader);
            }
            (Proto::Tcp, doff)
        }
        IpProtocol::Udp => (Proto::Udp, udp::HEADER_LEN),
        p if ip == Ip::V6 && p.is_ipv6_ext_opaque() => return Err(UnsupportedIpv6Ext),
        _ => return Err(UnsupportedL4),
    };
    if end < l4 + l4_len {
        return Err(HeadersTruncated);
    }
    Ok(Layout {
        l3,
        ip,
        l4,
        proto,
        l4_len,
        end,
    })
}

#[cfg(test)]
mod tests;
