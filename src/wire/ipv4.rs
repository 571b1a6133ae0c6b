//! The IPv4 header (RFC 791), options and fragment fields included, and
//! its header checksum.
//!
//! ```text
//!  0   version (4 bits) | IHL (4 bits, header length in 32-bit words)
//!  1   DSCP/ECN (the old TOS)
//!  2   total length (header + payload)
//!  4   identification
//!  6   flags (reserved, DF, MF) | fragment offset (13 bits, 8-byte units)
//!  8   TTL        9  protocol      10  header checksum
//! 12   source    16  destination   20  options (IHL * 4 - 20 bytes)
//! ```
//!
//! Contract: [`Ipv4Packet::check_len`] checks the fixed header, that the
//! IHL is at least 5, and that the header and the total length fit in the
//! buffer (bytes after the total length, such as Ethernet padding, are not
//! part of the packet and [`payload`](Ipv4Packet::payload) leaves them
//! out). It does not check the version or the checksum: [`Ipv4Repr::parse`]
//! does, and callers with their own order of refusals (the header layout of
//! offloads, the gateway) read the fields themselves.

use std::net::Ipv4Addr;

use super::checksum;
use super::{read_u16_unchecked, write_u16_unchecked, Error, IpProtocol, Result};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
    pub const OPTIONS: usize = 20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Offset of the protocol byte, for filters that match it in place (a
/// classic BPF socket filter).
pub const PROTOCOL_OFFSET: usize = field::PROTOCOL;
/// Longest header: IHL 15.
pub const MAX_HEADER_LEN: usize = 60;
/// The "don't fragment" flag in the flags/fragment-offset field.
pub const FLAG_DF: u16 = 0x4000;
/// The "more fragments" flag.
pub const FLAG_MF: u16 = 0x2000;
/// MF and the fragment offset: any bit set makes a packet a fragment.
pub const FRAGMENT_MASK: u16 = 0x3fff;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures the fixed header is present (then the fixed-field getters
    /// cannot panic), the IHL is sane and the header and total length fit
    /// (then `options`/`payload` cannot panic either).
    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let (hlen, total) = (self.header_len(), usize::from(self.total_len()));
        if hlen < HEADER_LEN || total < hlen {
            return Err(Error::Malformed);
        }
        if hlen > len || total > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// DSCP and ECN, the byte once called TOS.
    #[inline(always)]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length: header and payload.
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::LENGTH.start)
    }

    #[inline(always)]
    pub fn ident(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::IDENT.start)
    }

    /// The flags and fragment offset, as one 16-bit field.
    #[inline(always)]
    pub fn flags_frag(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::FLG_OFF.start)
    }

    #[inline(always)]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & 0x1fff) << 3
    }

    /// MF set or a fragment offset: this is (part of) a fragment.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & FRAGMENT_MASK != 0
    }

    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline(always)]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline(always)]
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Both addresses as they sit in the header, source then destination
    /// (8 bytes): what hashes over the addresses read.
    #[inline(always)]
    pub fn addresses(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SRC_ADDR.start..field::DST_ADDR.end]
    }

    /// The options (empty for IHL 5).
    #[inline(always)]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The header, options included.
    #[inline(always)]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload: from the end of the header to the total length.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Whether every header byte of `other` but the total length, the
    /// identification and the checksum equals this one's: version, IHL,
    /// DSCP/ECN, flags and fragment offset, TTL, protocol, addresses and
    /// options. Segments of one flow that may be merged (GRO) differ in
    /// those three fields only.
    #[inline(always)]
    pub fn same_flow_header<U: AsRef<[u8]>>(&self, other: &Ipv4Packet<U>) -> bool {
        let (a, b) = (self.buffer.as_ref(), other.buffer.as_ref());
        // Equal first bytes mean equal IHLs: one header length serves both.
        a[..field::LENGTH.start] == b[..field::LENGTH.start]
            && a[field::FLG_OFF.start..field::CHECKSUM.start]
                == b[field::FLG_OFF.start..field::CHECKSUM.start]
            && a[field::SRC_ADDR.start..self.header_len()]
                == b[field::SRC_ADDR.start..self.header_len()]
    }

    /// Whether the header checksum verifies.
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(checksum::sum_words(self.header(), 0))
    }

    /// The running sum of the pseudo-header a TCP/UDP checksum over this
    /// packet's payload starts from, for `l4_len` bytes of `protocol`.
    #[inline(always)]
    pub fn pseudo_header_sum(&self, protocol: IpProtocol, l4_len: usize) -> u64 {
        let b = self.buffer.as_ref();
        checksum::pseudo_v4(
            &b[field::SRC_ADDR],
            &b[field::DST_ADDR],
            u8::from(protocol),
            l4_len,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length (a multiple of 4, 20..=60).
    #[inline(always)]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    #[inline(always)]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    #[inline(always)]
    pub fn set_total_len(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::LENGTH.start, v);
    }

    #[inline(always)]
    pub fn set_ident(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::IDENT.start, v);
    }

    /// Sets the flags and fragment offset as one 16-bit field.
    #[inline(always)]
    pub fn set_flags_frag(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::FLG_OFF.start, v);
    }

    #[inline(always)]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    #[inline(always)]
    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = u8::from(p);
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    #[inline(always)]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    #[inline(always)]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Computes and stores the header checksum (over the header as it is,
    /// options included).
    #[inline(always)]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// The parsed form of an IPv4 header without options, as a builder fills
/// it. Fragments are not represented: [`parse`](Self::parse) refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Payload length (total length minus the 20-byte header).
    pub payload_len: usize,
    pub ttl: u8,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Parses a checked packet: refuses a version other than 4, a bad
    /// header checksum and fragments ([`Error::Malformed`]). Options are
    /// skipped (the payload length excludes them).
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        p.check_len()?;
        if p.version() != 4 || !p.verify_checksum() || p.is_fragment() {
            return Err(Error::Malformed);
        }
        Ok(Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.payload().len(),
            ttl: p.ttl(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    /// Bytes `emit` writes: the 20-byte header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, checksum included, into the first 20 bytes.
    /// A total length over 65535 is stored as 65535.
    ///
    /// # Panics
    /// When the buffer is shorter than 20 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv4Packet<T>) {
        p.set_version_and_header_len(HEADER_LEN);
        p.set_dscp_ecn(self.dscp_ecn);
        let total = u16::try_from(HEADER_LEN + self.payload_len).unwrap_or(u16::MAX);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_flags_frag(if self.dont_frag { FLAG_DF } else { 0 });
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo request 10.88.0.11 -> 10.88.0.1 (id 0xabcd, DF, TTL 64)
    /// with an 8-byte echo header and 2 data bytes, then 2 bytes of Ethernet
    /// padding. Header checksum computed by hand: the words sum to 0x185a8,
    /// fold 0x85a9, complement 0x7a56.
    const ECHO: [u8; 32] = [
        0x45, 0x00, 0x00, 0x1e, 0xab, 0xcd, 0x40, 0x00, 0x40, 0x01, 0x7a, 0x56, 10, 88, 0, 11, 10,
        88, 0, 1, // header
        8, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i', // ICMP
        0, 0, // padding
    ];

    #[test]
    fn parses_the_fixture() {
        let p = Ipv4Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len()), (4, 20, 30));
        assert_eq!(
            (p.ident(), p.dont_frag(), p.more_frags()),
            (0xabcd, true, false)
        );
        assert_eq!((p.frag_offset(), p.is_fragment(), p.ttl()), (0, false, 64));
        assert_eq!(p.protocol(), IpProtocol::Icmp);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 88, 0, 11));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 88, 0, 1));
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0x7a56);
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload().len(), 10, "padding is not payload");
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 10);
        assert_eq!(
            (r.protocol, r.ttl, r.ident, r.dont_frag),
            (IpProtocol::Icmp, 64, 0xabcd, true)
        );
    }

    #[test]
    fn repr_emit_reproduces_the_fixture() {
        let r = Ipv4Repr::parse(&Ipv4Packet::new_checked(&ECHO[..]).unwrap()).unwrap();
        let mut out = ECHO;
        out[..20].fill(0xff);
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, ECHO);
        assert_eq!(r.buffer_len(), 20);
    }

    #[test]
    fn options_and_fragments() {
        let mut b = [0u8; 28];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(24);
        p.set_total_len(28);
        p.set_flags_frag(FLAG_MF | 3);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.options().len(), 4);
        assert_eq!(p.payload().len(), 4);
        assert!(p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 24);
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::Malformed));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        for n in 0..20 {
            assert_eq!(
                Ipv4Packet::new_checked(&ECHO[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        // Total length past the buffer.
        assert_eq!(
            Ipv4Packet::new_checked(&ECHO[..29]).unwrap_err(),
            Error::Truncated
        );
        let mut b = ECHO;
        b[0] = 0x44; // IHL 4
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut b = ECHO;
        b[2..4].copy_from_slice(&[0, 19]); // total < header
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut b = ECHO;
        b[0] = 0x4f; // 60-byte header in 32 bytes
        b[2..4].copy_from_slice(&[0, 60]);
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
        let mut b = ECHO;
        b[0] = 0x65; // version 6
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&b[..])),
            Err(Error::Malformed)
        );
        let mut b = ECHO;
        b[12] ^= 1; // checksum no longer verifies
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&b[..])),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn no_accessor_panics_after_check_len() {
        let mut x = 0x9e37_79b9u32;
        for len in 0..64 {
            for _ in 0..64 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                if let Ok(p) = Ipv4Packet::new_checked(&b[..]) {
                    let _ = (p.options(), p.payload(), p.header(), p.verify_checksum());
                    let _ = Ipv4Repr::parse(&p);
                }
            }
        }
    }
}
