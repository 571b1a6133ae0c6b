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
//! parsing ([`crate::wire::layout`]: Ethernet, 0..2 VLAN tags, IPv4 with
//! options or IPv6 with extension headers, TCP or UDP) and `csum_start`
//! must agree with that parse. Every header field is read and written
//! through the views of [`crate::wire`]; this module knows no offsets but
//! the virtio_net_hdr's own. See docs/architecture.md, "Offloads".
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

mod gro;
mod gso;
mod vnet;

use crate::wire::checksum as csum;
use crate::wire::layout::{Ip, Layout, Proto};

pub use gro::{Coalesced, Coalescer, Push, MAX_SUPER_FRAME};
pub use gso::{segment, segment_parsed, Batches, SegmentIter, Segments};
pub use vnet::{
    GsoKind, OffloadError, VnetHdr, F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4,
    GSO_TCPV6, GSO_UDP, GSO_UDP_L4, VNET_HDR_LEN,
};

/// Finds the headers of an Ethernet frame carrying TCP or UDP over IPv4 or
/// IPv6, behind 0..2 VLAN tags (802.1Q 0x8100 or 802.1ad 0x88a8): the
/// parse of [`crate::wire::layout::parse`], its refusals as offload errors.
#[inline]
pub(crate) fn parse_layout(frame: &[u8]) -> Result<Layout, OffloadError> {
    crate::wire::layout::parse(frame).map_err(OffloadError::from)
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
    csum::complete_partial(frame, start, field).map_err(|_| OffloadError::CsumOutOfFrame)
}

#[cfg(test)]
mod tests;
