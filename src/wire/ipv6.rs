//! The IPv6 header (RFC 8200 section 3) and the extension headers that are
//! walked on the way to a transport header (RFC 8200 section 4:
//! hop-by-hop options, routing, destination options).
//!
//! ```text
//!  0   version (4 bits) | traffic class (8) | flow label (20)
//!  4   payload length (extension headers included)
//!  6   next header    7  hop limit
//!  8   source (16 bytes)         24  destination (16 bytes)   40  payload
//! ```
//!
//! An extension header of the walked kinds starts with its next header
//! and its length in 8-byte units not counting the first 8 (RFC 8200
//! section 4.3-4.6); a routing header then has its type and the segments
//! left. The fragment header has the same first byte and a fixed 8 bytes.
//!
//! Contract: [`Ipv6Packet::check_len`] checks the fixed header and that the
//! payload length fits in the buffer (bytes after it, such as Ethernet
//! padding, are not part of the packet). A payload length of 0 (a
//! jumbogram's, RFC 2675) is accepted here; callers that cannot take one
//! refuse it. The version is checked by [`Ipv6Repr::parse`], not by the
//! view.

use std::net::Ipv6Addr;

use super::checksum;
use super::{
    read_u16_unchecked, read_u32_unchecked, write_u16_unchecked, Error, IpProtocol, MacAddr, Result,
};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
    pub const PAYLOAD: usize = 40;
}

/// Fields of an extension header (hop-by-hop, routing, destination options).
mod ext_field {
    pub const NXT_HDR: usize = 0;
    pub const LENGTH: usize = 1;
    /// Routing header only.
    pub const ROUTING_TYPE: usize = 2;
    /// Routing header only.
    pub const SEGMENTS_LEFT: usize = 3;
    /// The shortest extension header, and the unit of its length.
    pub const MIN_LEN: usize = 8;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length of the shortest extension header, and the unit of their lengths.
pub const EXT_HEADER_MIN_LEN: usize = ext_field::MIN_LEN;

/// The solicited-node multicast address of `ip` (RFC 4291 section 2.7.1):
/// `ff02::1:ff` followed by the low 24 bits of `ip`, where a neighbour
/// solicitation for `ip` is sent.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The link-local address a stack derives from `mac` (RFC 4291 appendix
/// A, modified EUI-64): `fe80::` followed by the MAC with `ff:fe` in the
/// middle and the universal/local bit flipped. Linux's default
/// (`addr_gen_mode` 0).
pub fn link_local_eui64(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it. A buffer of at least
    /// [`HEADER_LEN`] bytes is enough for every fixed-field getter;
    /// `payload` needs [`check_len`](Self::check_len).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures the fixed header and the payload length fit in the buffer.
    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    #[inline(always)]
    pub fn traffic_class(&self) -> u8 {
        ((read_u16_unchecked(self.buffer.as_ref(), field::VER_TC_FLOW.start) >> 4) & 0xff) as u8
    }

    #[inline(always)]
    pub fn flow_label(&self) -> u32 {
        read_u32_unchecked(self.buffer.as_ref(), field::VER_TC_FLOW.start) & 0x000f_ffff
    }

    /// Payload length: extension headers and the upper-layer packet.
    #[inline(always)]
    pub fn payload_len(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::LENGTH.start)
    }

    #[inline(always)]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline(always)]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.addr_bytes(field::SRC_ADDR.start))
    }

    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.addr_bytes(field::DST_ADDR.start))
    }

    /// Both addresses as they sit in the header, source then destination
    /// (32 bytes): what hashes over the addresses read.
    #[inline(always)]
    pub fn addresses(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SRC_ADDR.start..field::DST_ADDR.end]
    }

    #[inline(always)]
    fn addr_bytes(&self, at: usize) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[at..at + 16]);
        a
    }

    /// The fixed header.
    #[inline(always)]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// The payload: extension headers and upper layer, up to the payload
    /// length.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Whether every fixed-header byte of `other` but the payload length
    /// equals this one's: version, traffic class, flow label, next header,
    /// hop limit, addresses. Segments of one flow that may be merged (GRO)
    /// differ in the payload length only.
    #[inline(always)]
    pub fn same_flow_header<U: AsRef<[u8]>>(&self, other: &Ipv6Packet<U>) -> bool {
        let (a, b) = (self.header(), other.header());
        a[field::VER_TC_FLOW] == b[field::VER_TC_FLOW] && a[field::NXT_HDR..] == b[field::NXT_HDR..]
    }

    /// The running sum of the pseudo-header (RFC 8200 section 8.1) an
    /// upper-layer checksum starts from, for `l4_len` bytes of `protocol`.
    /// The destination is this header's (a routing header with segments
    /// left would need the final one: callers refuse those).
    #[inline(always)]
    pub fn pseudo_header_sum(&self, protocol: IpProtocol, l4_len: usize) -> u64 {
        let b = self.buffer.as_ref();
        checksum::pseudo_v6(
            &b[field::SRC_ADDR],
            &b[field::DST_ADDR],
            u8::from(protocol),
            l4_len,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, the traffic class and the flow label.
    #[inline(always)]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }

    #[inline(always)]
    pub fn set_payload_len(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::LENGTH.start, v);
    }

    #[inline(always)]
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = u8::from(p);
    }

    #[inline(always)]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    #[inline(always)]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    #[inline(always)]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// The fixed header, to copy another packet's into.
    #[inline(always)]
    pub fn header_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[..HEADER_LEN]
    }

    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A view of one extension header of the kinds whose length is in byte 1
/// (hop-by-hop, routing, destination options).
#[derive(Debug, Clone)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// Wraps a buffer without checking it. [`EXT_HEADER_MIN_LEN`] bytes are
    /// enough for every getter but [`data`](Self::data).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6ExtHeader { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Ensures the first 8 bytes and the whole header fit.
    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < EXT_HEADER_MIN_LEN || self.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline(always)]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[ext_field::NXT_HDR])
    }

    /// The header's length in bytes: `(byte 1 + 1) * 8`.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[ext_field::LENGTH]) + 1) * EXT_HEADER_MIN_LEN
    }

    /// The routing type (meaningful in a routing header only).
    #[inline(always)]
    pub fn routing_type(&self) -> u8 {
        self.buffer.as_ref()[ext_field::ROUTING_TYPE]
    }

    /// Segments left (meaningful in a routing header only): non-zero means
    /// the destination in the IPv6 header is not the final one.
    #[inline(always)]
    pub fn segments_left(&self) -> u8 {
        self.buffer.as_ref()[ext_field::SEGMENTS_LEFT]
    }

    /// The options or routing data after the first two bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[ext_field::LENGTH + 1..self.header_len()]
    }
}

/// The parsed fixed header, as a builder fills it (traffic class and flow
/// label 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Parses a checked packet; refuses a version other than 6.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        p.check_len()?;
        if p.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
        })
    }

    /// Bytes `emit` writes: the 40-byte fixed header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header. A payload length over 65535 is stored as
    /// 65535.
    ///
    /// # Panics
    /// When the buffer is shorter than 40 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv6Packet<T>) {
        p.set_version_tc_flow(0, 0);
        p.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv6 part of an MLDv2 report the kernel sends when an interface
    /// comes up (the same capture as `wire::vxlan`'s fixture): a hop-by-hop
    /// header with a router alert option, then ICMPv6 (58), 36 bytes of
    /// payload in all.
    const MLD: [u8; 76] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x24, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x16, 0x3a, 0x00, 0x05, 0x02, 0x00,
        0x00, 0x01, 0x00, 0x8f, 0x00, 0x6e, 0x33, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00,
        0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x55, 0x01,
        0x02,
    ];

    #[test]
    fn parses_the_kernel_packet_and_its_hop_by_hop_header() {
        let p = Ipv6Packet::new_checked(&MLD[..]).unwrap();
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0, 0));
        assert_eq!((p.payload_len(), p.hop_limit()), (36, 1));
        assert_eq!(p.next_header(), IpProtocol::HopByHop);
        assert_eq!(p.src_addr(), Ipv6Addr::UNSPECIFIED);
        assert_eq!(p.dst_addr(), "ff02::16".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 36);
        let h = Ipv6ExtHeader::new_checked(p.payload()).unwrap();
        assert_eq!((h.next_header(), h.header_len()), (IpProtocol::Icmpv6, 8));
        assert_eq!(h.data(), &[0x05, 0x02, 0x00, 0x00, 0x01, 0x00]);
        let r = Ipv6Repr::parse(&p).unwrap();
        assert_eq!((r.payload_len, r.hop_limit), (36, 1));
    }

    #[test]
    fn repr_emit_reproduces_the_fixture() {
        let r = Ipv6Repr::parse(&Ipv6Packet::new_checked(&MLD[..]).unwrap()).unwrap();
        let mut out = MLD;
        out[..40].fill(0xee);
        r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, MLD);
    }

    #[test]
    fn setters_and_traffic_class() {
        let mut b = [0u8; 48];
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_version_tc_flow(0xb8, 0xabcde);
        p.set_payload_len(8);
        p.set_next_header(IpProtocol::Udp);
        p.set_hop_limit(64);
        p.set_src_addr(Ipv6Addr::LOCALHOST);
        p.header_mut()[39] = 7;
        p.payload_mut().fill(1);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0xabcde)
        );
        assert_eq!(p.next_header(), IpProtocol::Udp);
        assert_eq!(p.src_addr(), Ipv6Addr::LOCALHOST);
        assert_eq!(p.dst_addr().octets()[15], 7);
        assert_eq!(p.payload(), &[1; 8]);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        for n in 0..MLD.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&MLD[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        let mut b = MLD;
        b[0] = 0x40;
        assert_eq!(
            Ipv6Repr::parse(&Ipv6Packet::new_unchecked(&b[..])),
            Err(Error::Malformed)
        );
        // An extension header longer than what is there.
        let mut ext = [0u8; 15];
        ext[1] = 1;
        assert_eq!(
            Ipv6ExtHeader::new_checked(&ext[..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv6ExtHeader::new_checked(&ext[..7]).unwrap_err(),
            Error::Truncated
        );
        let mut ext = [0u8; 16];
        ext[..4].copy_from_slice(&[17, 1, 0, 2]);
        let h = Ipv6ExtHeader::new_checked(&ext[..]).unwrap();
        assert_eq!(
            (
                h.next_header(),
                h.header_len(),
                h.routing_type(),
                h.segments_left()
            ),
            (IpProtocol::Udp, 16, 0, 2)
        );
        assert_eq!(h.data().len(), 14);
    }

    #[test]
    fn solicited_node_group() {
        let ip: Ipv6Addr = "fd00:88::12:3456".parse().unwrap();
        assert_eq!(
            solicited_node(ip),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn pseudo_header_sum_matches_the_pieces() {
        let p = Ipv6Packet::new_checked(&MLD[..]).unwrap();
        let expect = checksum::pseudo_v6(&MLD[8..24], &MLD[24..40], 58, 28);
        assert_eq!(p.pseudo_header_sum(IpProtocol::Icmpv6, 28), expect);
    }
}
