//! Software offloads for frames read from a vnet_hdr TAP.
//!
//! A TAP opened with `IFF_VNET_HDR` and given `TUNSETOFFLOAD(TUN_F_CSUM |
//! TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6)` hands
//! the switch a 12-byte [`VnetHdr`] before each frame, and the frame may be
//! a TCP/UDP *super-frame* of up to 64 KiB whose L4 checksum is only partial
//! (the kernel's `CHECKSUM_PARTIAL`). Between two such TAPs the engine passes
//! header and frame through untouched. Where the egress cannot take that (a
//! VXLAN tunnel, a port without vnet_hdr), this module does in software what
//! a NIC would:
//!
//! - [`complete_checksum`]: finish a partial checksum in place;
//! - [`segment`]: cut a super-frame into wire-sized frames, each with its
//!   own IP length/ID/checksum and a full TCP/UDP checksum, laid out for one
//!   `sendmsg` with `UDP_SEGMENT`, without allocating;
//! - [`Coalescer`]: the receive direction, merging consecutive TCP segments
//!   of one flow into a super-frame and the [`VnetHdr`] a TAP accepts.
//!
//! Nothing here does I/O, allocates per frame, or trusts `hdr_len`: it is
//! only a hint, which kernels long filled with `skb_headlen()` (possibly
//! past the real headers) and other senders with 0. Headers are found by
//! parsing (Ethernet, 0..2 VLAN tags, IPv4 with options or IPv6 with
//! extension headers, TCP or UDP) and `csum_start` must agree with that
//! parse. See docs/architecture.md, "Offloads".
//!
//! How a worker uses it for a frame from a vnet_hdr TAP bound for VXLAN:
//!
//! ```
//! use vxswitch::offload::{segment, VnetHdr};
//!
//! # fn send_with_udp_segment(_bytes: &[u8], _segment_size: usize) {}
//! # let read = [0u8; 12 + 60]; // what read() on the TAP returned
//! let mut scratch = vec![0u8; 256 * 1024]; // once per worker
//! let (hdr, frame) = VnetHdr::split(&read).expect("12-byte header");
//! match segment(frame, &hdr, &mut scratch, 8) {
//!     Ok(segs) => {
//!         for (vxlan, _inner) in segs.slots_mut(&mut scratch) {
//!             vxlan.copy_from_slice(&[0x08, 0, 0, 0, 0, 0x10, 0x92, 0]); // VNI 4242
//!         }
//!         for run in segs.batches(65507, 64) {
//!             send_with_udp_segment(&scratch[run], segs.stride);
//!         }
//!     }
//!     Err(e) => eprintln!("dropped: {}", e.name()), // a counter in real life
//! }
//! ```

pub mod csum;
mod gro;
mod gso;
mod vnet;

pub use gro::{Coalesced, Coalescer, Push, MAX_SUPER_FRAME};
pub use gso::{segment, Batches, SegmentIter, Segments};
pub use vnet::{
    GsoKind, OffloadError, VnetHdr, F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4,
    GSO_TCPV6, GSO_UDP, GSO_UDP_L4, VNET_HDR_LEN,
};

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const MAX_VLAN_TAGS: usize = 2;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// IPv6 extension headers walked on the way to TCP/UDP.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_DEST_OPTS: u8 = 60;
/// Extension headers not walked (RFC 8200 and the IANA list): refused.
const IPV6_FRAGMENT: u8 = 44;
const IPV6_ESP: u8 = 50;
const IPV6_AH: u8 = 51;
const IPV6_MOBILITY: u8 = 135;
const IPV6_HIP: u8 = 139;
const IPV6_SHIM6: u8 = 140;
/// More extension headers than this is not a real packet.
const MAX_IPV6_EXT: usize = 8;

/// The transport protocol of a parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => PROTO_TCP,
            Proto::Udp => PROTO_UDP,
        }
    }
}

/// Offset of the checksum field within the L4 header.
pub const fn csum_field_offset(proto: Proto) -> usize {
    match proto {
        Proto::Tcp => 16,
        Proto::Udp => 6,
    }
}

/// The IP version of a parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip {
    V4,
    V6,
}

/// Where the headers of an Ethernet/IP/TCP-or-UDP frame are, found by
/// parsing it (never from `hdr_len`).
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
    pub const fn headers_len(&self) -> usize {
        self.l4 + self.l4_len
    }

    /// Length of the L4 payload.
    pub const fn payload_len(&self) -> usize {
        self.end - self.headers_len()
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Finds the headers of an Ethernet frame carrying TCP or UDP over IPv4 or
/// IPv6, behind 0..2 VLAN tags (802.1Q 0x8100 or 802.1ad 0x88a8).
pub fn parse_layout(frame: &[u8]) -> Result<Layout, OffloadError> {
    let mut at = 12;
    let mut tags = 0;
    let ethertype = loop {
        if frame.len() < at + 2 {
            return Err(OffloadError::HeadersTruncated);
        }
        match be16(frame, at) {
            TPID_8021Q | TPID_8021AD if tags < MAX_VLAN_TAGS => {
                tags += 1;
                at += 4;
            }
            other => break other,
        }
    };
    let l3 = at + 2;
    let (ip, l4, end, next) = match ethertype {
        ETHERTYPE_IPV4 => {
            if frame.len() < l3 + 20 {
                return Err(OffloadError::HeadersTruncated);
            }
            let ihl = usize::from(frame[l3] & 0x0f) * 4;
            if frame[l3] >> 4 != 4 || ihl < 20 {
                return Err(OffloadError::BadIpHeader);
            }
            let total = usize::from(be16(frame, l3 + 2));
            if total < ihl {
                return Err(OffloadError::BadIpHeader);
            }
            if l3 + total > frame.len() {
                return Err(if frame.len() < l3 + ihl {
                    OffloadError::HeadersTruncated
                } else {
                    OffloadError::IpLengthMismatch
                });
            }
            // MF set or a fragment offset: this is (part of) a fragment.
            if be16(frame, l3 + 6) & 0x3fff != 0 {
                return Err(OffloadError::Ipv4Fragment);
            }
            (Ip::V4, l3 + ihl, l3 + total, frame[l3 + 9])
        }
        ETHERTYPE_IPV6 => {
            if frame.len() < l3 + 40 {
                return Err(OffloadError::HeadersTruncated);
            }
            if frame[l3] >> 4 != 6 {
                return Err(OffloadError::BadIpHeader);
            }
            let payload = usize::from(be16(frame, l3 + 4));
            // 0 would be a jumbogram (or BIG TCP): not over a 64 KiB TAP.
            if payload == 0 || l3 + 40 + payload > frame.len() {
                return Err(OffloadError::IpLengthMismatch);
            }
            let end = l3 + 40 + payload;
            let mut next = frame[l3 + 6];
            let mut at = l3 + 40;
            let mut walked = 0;
            while matches!(next, IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS) {
                walked += 1;
                if walked > MAX_IPV6_EXT {
                    return Err(OffloadError::UnsupportedIpv6Ext);
                }
                if end < at + 8 {
                    return Err(OffloadError::HeadersTruncated);
                }
                // A routing header with segments left: the checksum's
                // pseudo-header would use the final destination.
                if next == IPV6_ROUTING && frame[at + 3] != 0 {
                    return Err(OffloadError::UnsupportedIpv6Ext);
                }
                let len = (usize::from(frame[at + 1]) + 1) * 8;
                next = frame[at];
                at += len;
            }
            if at > end {
                return Err(OffloadError::HeadersTruncated);
            }
            (Ip::V6, at, end, next)
        }
        _ => return Err(OffloadError::UnsupportedEtherType),
    };
    let (proto, l4_len) = match next {
        PROTO_TCP => {
            if end < l4 + 20 {
                return Err(OffloadError::HeadersTruncated);
            }
            let doff = usize::from(frame[l4 + 12] >> 4) * 4;
            if doff < 20 {
                return Err(OffloadError::BadTcpHeader);
            }
            (Proto::Tcp, doff)
        }
        PROTO_UDP => (Proto::Udp, 8),
        IPV6_FRAGMENT | IPV6_ESP | IPV6_AH | IPV6_MOBILITY | IPV6_HIP | IPV6_SHIM6
            if ip == Ip::V6 =>
        {
            return Err(OffloadError::UnsupportedIpv6Ext)
        }
        _ => return Err(OffloadError::UnsupportedL4),
    };
    if end < l4 + l4_len {
        return Err(OffloadError::HeadersTruncated);
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

/// Completes a partial L4 checksum in place, as the kernel's
/// `skb_checksum_help` does for `CHECKSUM_PARTIAL`: the one's complement sum
/// of `frame[csum_start..]`, seeded by the pseudo-header sum the sender left
/// in the checksum field, folded, complemented and stored at
/// `csum_start + csum_offset` (0 is stored as 0xffff, which for UDP means
/// "checksum present" and for TCP is the same one's complement zero).
///
/// Does nothing without `NEEDS_CSUM`. Does not parse the frame, so it works
/// for any protocol that uses the Internet checksum; it does not segment: a
/// GSO super-frame goes to [`segment`], which completes checksums itself.
pub fn complete_checksum(frame: &mut [u8], hdr: &VnetHdr) -> Result<(), OffloadError> {
    if hdr.flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
        return Err(OffloadError::UnknownFlags);
    }
    if !hdr.needs_csum() {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > frame.len() {
        return Err(OffloadError::CsumOutOfFrame);
    }
    let sum = csum::sum_words(&frame[start..], 0);
    frame[field..field + 2].copy_from_slice(&csum::finish(sum).to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
