//! `struct virtio_net_hdr_v1` as a vnet_hdr TAP carries it, and the errors
//! of this module.
//!
//! The TAP is configured with `TUNSETVNETHDRSZ 12` and little-endian
//! (`TUNSETVNETLE`), so every `read()` starts with these 12 bytes:
//!
//! ```text
//! 0      flags        u8     NEEDS_CSUM (1), DATA_VALID (2)
//! 1      gso_type     u8     NONE 0, TCPV4 1, UDP 3, TCPV6 4, UDP_L4 5, | ECN 0x80
//! 2..4   hdr_len      le16   (not trusted, see docs/architecture.md "Offloads")
//! 4..6   gso_size     le16   payload bytes per segment
//! 6..8   csum_start   le16   where the partial checksum starts (from the frame start)
//! 8..10  csum_offset  le16   where, from csum_start, the checksum field is
//! 10..12 num_buffers  le16   (mergeable rx buffers; ignored, emitted as given)
//! ```
//!
//! Fields are read at byte offsets (named in the private `mod field`, as the
//! views of `crate::wire` do), never through a struct cast: a read buffer
//! has no alignment guarantee. The header stays here rather than in
//! `wire`: it is not on the wire but the kernel's description of an offload
//! (what a NIC would be told), and only the offloads and the TAP ports use
//! it.

use crate::wire::layout::Proto;
use crate::wire::LayoutError;

/// Length of `struct virtio_net_hdr_v1` (12 bytes, `num_buffers` included).
pub const VNET_HDR_LEN: usize = 12;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial (CHECKSUM_PARTIAL).
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: legacy UFO (IP fragmentation), refused.
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation (USO), one datagram per segment.
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the TCP super-frame carries CWR (ECN).
pub const GSO_ECN: u8 = 0x80;

/// What a valid `gso_type` asks for, ECN bit aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoKind {
    /// One frame, nothing to segment.
    None,
    /// TCP over IPv4.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP (USO) over IPv4 or IPv6.
    UdpL4,
}

/// Why a frame with a virtio_net_hdr could not be checksummed, segmented
/// or coalesced. Each variant has a stable [`name`](Self::name) for
/// drop counters; [`ALL`](Self::ALL) and [`index`](Self::index) let a
/// caller keep one counter per reason in an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// Fewer than 12 bytes where a virtio_net_hdr was expected.
    #[error("virtio_net_hdr truncated: fewer than 12 bytes")]
    HdrTruncated,
    /// A flag bit other than NEEDS_CSUM or DATA_VALID.
    #[error("virtio_net_hdr has unknown flag bits")]
    UnknownFlags,
    /// A gso_type that is not NONE, TCPV4, TCPV6 or UDP_L4 (ECN bit aside).
    #[error("virtio_net_hdr gso_type is unknown")]
    UnknownGsoType,
    /// gso_type UDP: legacy UFO would need IP fragmentation, which we do not do.
    #[error("legacy UFO (gso_type UDP) is not supported; use USO (UDP_L4)")]
    LegacyUfo,
    /// The ECN bit on a non-TCP gso_type.
    #[error("ECN bit set on a gso_type that is not TCP")]
    EcnWithoutTcp,
    /// A GSO frame with gso_size 0.
    #[error("GSO frame with gso_size 0")]
    GsoSizeZero,
    /// NEEDS_CSUM with csum_start/csum_offset pointing past the frame.
    #[error("csum_start/csum_offset point outside the frame")]
    CsumOutOfFrame,
    /// csum_start is not where our own parse finds the TCP/UDP header.
    #[error("csum_start does not match the TCP/UDP header offset")]
    CsumStartMismatch,
    /// csum_offset is not the TCP (16) or UDP (6) checksum field.
    #[error("csum_offset is not the TCP/UDP checksum field")]
    CsumOffsetMismatch,
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
    /// An IPv4 fragment (MF or a fragment offset) cannot be segmented.
    #[error("IPv4 fragment")]
    Ipv4Fragment,
    /// An IPv6 extension header we do not walk (fragment, AH, ESP, ...), or a
    /// routing header with segments left (the pseudo-header destination
    /// would be the final one, not the IPv6 header's).
    #[error("unsupported IPv6 extension header")]
    UnsupportedIpv6Ext,
    /// The L4 protocol is neither TCP nor UDP.
    #[error("L4 protocol is neither TCP nor UDP")]
    UnsupportedL4,
    /// gso_type does not match the frame (TCPV4 on IPv6, UDP_L4 on TCP, ...).
    #[error("gso_type does not match the frame's IP version or L4 protocol")]
    GsoTypeMismatch,
    /// TCP data offset below 5.
    #[error("malformed TCP header")]
    BadTcpHeader,
    /// The output buffer cannot hold all segments (nothing was written).
    #[error("output buffer too small for all segments")]
    OutputTooSmall,
}

impl OffloadError {
    /// Every variant, in [`index`](Self::index) order.
    pub const ALL: [OffloadError; 19] = [
        OffloadError::HdrTruncated,
        OffloadError::UnknownFlags,
        OffloadError::UnknownGsoType,
        OffloadError::LegacyUfo,
        OffloadError::EcnWithoutTcp,
        OffloadError::GsoSizeZero,
        OffloadError::CsumOutOfFrame,
        OffloadError::CsumStartMismatch,
        OffloadError::CsumOffsetMismatch,
        OffloadError::HeadersTruncated,
        OffloadError::UnsupportedEtherType,
        OffloadError::BadIpHeader,
        OffloadError::IpLengthMismatch,
        OffloadError::Ipv4Fragment,
        OffloadError::UnsupportedIpv6Ext,
        OffloadError::UnsupportedL4,
        OffloadError::GsoTypeMismatch,
        OffloadError::BadTcpHeader,
        OffloadError::OutputTooSmall,
    ];

    /// A stable snake_case name, for counters and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            OffloadError::HdrTruncated => "vnet_hdr_truncated",
            OffloadError::UnknownFlags => "unknown_flags",
            OffloadError::UnknownGsoType => "unknown_gso_type",
            OffloadError::LegacyUfo => "legacy_ufo",
            OffloadError::EcnWithoutTcp => "ecn_without_tcp",
            OffloadError::GsoSizeZero => "gso_size_zero",
            OffloadError::CsumOutOfFrame => "csum_out_of_frame",
            OffloadError::CsumStartMismatch => "csum_start_mismatch",
            OffloadError::CsumOffsetMismatch => "csum_offset_mismatch",
            OffloadError::HeadersTruncated => "headers_truncated",
            OffloadError::UnsupportedEtherType => "unsupported_ethertype",
            OffloadError::BadIpHeader => "bad_ip_header",
            OffloadError::IpLengthMismatch => "ip_length_mismatch",
            OffloadError::Ipv4Fragment => "ipv4_fragment",
            OffloadError::UnsupportedIpv6Ext => "unsupported_ipv6_ext",
            OffloadError::UnsupportedL4 => "unsupported_l4",
            OffloadError::GsoTypeMismatch => "gso_type_mismatch",
            OffloadError::BadTcpHeader => "bad_tcp_header",
            OffloadError::OutputTooSmall => "output_too_small",
        }
    }

    /// Position in [`ALL`](Self::ALL): an index for a counter array.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl From<LayoutError> for OffloadError {
    fn from(e: LayoutError) -> OffloadError {
        match e {
            LayoutError::HeadersTruncated => OffloadError::HeadersTruncated,
            LayoutError::UnsupportedEtherType => OffloadError::UnsupportedEtherType,
            LayoutError::BadIpHeader => OffloadError::BadIpHeader,
            LayoutError::IpLengthMismatch => OffloadError::IpLengthMismatch,
            LayoutError::Ipv4Fragment => OffloadError::Ipv4Fragment,
            LayoutError::UnsupportedIpv6Ext => OffloadError::UnsupportedIpv6Ext,
            LayoutError::UnsupportedL4 => OffloadError::UnsupportedL4,
            LayoutError::BadTcpHeader => OffloadError::BadTcpHeader,
        }
    }
}

/// The 12-byte `virtio_net_hdr_v1` (little-endian fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Header length as the sender reported it: a hint only (kernels long
    /// reported `skb_headlen()`, which may exceed the real headers; other
    /// senders 0). Never used here.
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Field = 2..4;
    pub const GSO_SIZE: Field = 4..6;
    pub const CSUM_START: Field = 6..8;
    pub const CSUM_OFFSET: Field = 8..10;
    pub const NUM_BUFFERS: Field = 10..12;
}

/// The little-endian `u16` in `f` (two bytes of `b`, which the caller has
/// checked holds a whole header).
#[inline]
fn le16(b: &[u8], f: field::Field) -> u16 {
    u16::from_le_bytes([b[f.start], b[f.start + 1]])
}

impl VnetHdr {
    /// Reads the first 12 bytes of `buf` (the rest is the frame).
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<VnetHdr, OffloadError> {
        if buf.len() < VNET_HDR_LEN {
            return Err(OffloadError::HdrTruncated);
        }
        Ok(VnetHdr {
            flags: buf[field::FLAGS],
            gso_type: buf[field::GSO_TYPE],
            hdr_len: le16(buf, field::HDR_LEN),
            gso_size: le16(buf, field::GSO_SIZE),
            csum_start: le16(buf, field::CSUM_START),
            csum_offset: le16(buf, field::CSUM_OFFSET),
            num_buffers: le16(buf, field::NUM_BUFFERS),
        })
    }

    /// Splits what one `read()` from a vnet_hdr TAP returned into the header
    /// and the Ethernet frame behind it.
    pub fn split(buf: &[u8]) -> Result<(VnetHdr, &[u8]), OffloadError> {
        Ok((VnetHdr::parse(buf)?, &buf[VNET_HDR_LEN..]))
    }

    /// The 12 bytes of this header.
    #[inline]
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[field::FLAGS] = self.flags;
        b[field::GSO_TYPE] = self.gso_type;
        b[field::HDR_LEN].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[field::GSO_SIZE].copy_from_slice(&self.gso_size.to_le_bytes());
        b[field::CSUM_START].copy_from_slice(&self.csum_start.to_le_bytes());
        b[field::CSUM_OFFSET].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[field::NUM_BUFFERS].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }

    /// Writes the header into the first 12 bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`VNET_HDR_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        buf[..VNET_HDR_LEN].copy_from_slice(&self.to_bytes());
    }

    /// True when the frame is a super-frame to be segmented.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }

    /// True when the L4 checksum is partial and must be completed.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// The header of the same frame once a 4-byte VLAN tag is put back
    /// behind its MACs (a packet socket reads it aside): what it measures
    /// from the frame's start starts 4 bytes later.
    pub fn behind_tag(mut self) -> VnetHdr {
        if self.needs_csum() {
            self.csum_start = self.csum_start.saturating_add(4);
        }
        if self.hdr_len != 0 {
            self.hdr_len = self.hdr_len.saturating_add(4);
        }
        self
    }

    /// True when the ECN bit of gso_type is set.
    pub fn ecn(&self) -> bool {
        self.gso_type & GSO_ECN != 0
    }

    /// Checks the header against a frame of `frame_len` bytes, as far as
    /// that is possible without reading the frame, and says what to do.
    pub fn validate(&self, frame_len: usize) -> Result<GsoKind, OffloadError> {
        if self.flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
            return Err(OffloadError::UnknownFlags);
        }
        let kind = match self.gso_type & !GSO_ECN {
            GSO_NONE => GsoKind::None,
            GSO_TCPV4 => GsoKind::TcpV4,
            GSO_TCPV6 => GsoKind::TcpV6,
            GSO_UDP_L4 => GsoKind::UdpL4,
            GSO_UDP => return Err(OffloadError::LegacyUfo),
            _ => return Err(OffloadError::UnknownGsoType),
        };
        if self.ecn() && !matches!(kind, GsoKind::TcpV4 | GsoKind::TcpV6) {
            return Err(OffloadError::EcnWithoutTcp);
        }
        if kind != GsoKind::None && self.gso_size == 0 {
            return Err(OffloadError::GsoSizeZero);
        }
        if self.needs_csum() {
            let field = usize::from(self.csum_start) + usize::from(self.csum_offset);
            if field + 2 > frame_len {
                return Err(OffloadError::CsumOutOfFrame);
            }
            let expected = match kind {
                GsoKind::None => None,
                GsoKind::TcpV4 | GsoKind::TcpV6 => Some(Proto::Tcp.checksum_offset()),
                GsoKind::UdpL4 => Some(Proto::Udp.checksum_offset()),
            };
            if expected.is_some_and(|o| o != usize::from(self.csum_offset)) {
                return Err(OffloadError::CsumOffsetMismatch);
            }
        }
        Ok(kind)
    }
}
