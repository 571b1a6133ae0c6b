//! Ethernet II frames (IEEE 802.3 clause 3) with up to two VLAN tags
//! (IEEE 802.1Q customer tags, TPID 0x8100, and 802.1ad service tags,
//! TPID 0x88a8, the outer tag of a "Q-in-Q" frame).
//!
//! Two layers, as in smoltcp: [`EthernetFrame`] is a zero-copy view over any
//! `AsRef<[u8]>` (getters) / `AsMut<[u8]>` (setters), and [`EthernetRepr`] is
//! the parsed, owned form with `parse`/`buffer_len`/`emit`. [`VlanHeader`]
//! views one tag on its own (the 4 bytes after a TPID).
//!
//! ```text
//!  0..6    destination
//!  6..12   source
//! 12..14   EtherType, or a TPID (0x8100, 0x88a8) when a tag follows:
//! 14..16     tag control (PCP 3 bits, DEI 1, VLAN ID 12)
//! 16..18     EtherType, or the TPID of a second tag (18..22 likewise)
//! ```
//!
//! Contract: untrusted bytes enter through [`EthernetFrame::new_checked`];
//! once it has succeeded no accessor panics.
//! [`check_len`](EthernetFrame::check_len) walks the tag stack: a TPID promises a tag,
//! and a frame that ends inside a promised tag is truncated. At most two
//! tags are walked; a third TPID is the payload's EtherType, as far as this
//! view is concerned (no one sends three, and offloads refuse it).
//! The frame check sequence is not part of what a TAP or socket hands us, so
//! there is none here.

use super::{read_u16_unchecked, write_u16_unchecked, Error, MacAddr, Result};

enum_with_unknown! {
    /// The EtherType (or TPID) field.
    pub enum EtherType(u16) {
        Ipv4 = 0x0800,
        Arp = 0x0806,
        /// IEEE 802.1Q customer VLAN tag (TPID 0x8100).
        Vlan = 0x8100,
        /// IEEE 802.1ad service VLAN tag (TPID 0x88a8), outer tag of Q-in-Q.
        QinQ = 0x88a8,
        Ipv6 = 0x86dd,
    }
}

impl EtherType {
    /// Whether this value in an EtherType position announces a VLAN tag.
    #[inline(always)]
    pub const fn is_vlan_tpid(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::QinQ)
    }
}

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Fields of one VLAN tag, relative to the byte after its TPID.
mod tag_field {
    pub type Field = core::ops::Range<usize>;
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: usize = 4;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Offset of the (outer) EtherType, for filters that match it in place (a
/// classic BPF socket filter).
pub const ETHERTYPE_OFFSET: usize = field::ETHERTYPE.start;
/// Length of one VLAN tag (TPID aside, which takes the EtherType's place;
/// counting the TPID instead of the inner EtherType gives the same 4).
pub const VLAN_TAG_LEN: usize = tag_field::PAYLOAD;
/// Length of a header with one VLAN tag.
pub const VLAN_HEADER_LEN: usize = HEADER_LEN + VLAN_TAG_LEN;
/// Most VLAN tags a frame may carry here (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
/// Length of the longest header: two tags.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + MAX_VLAN_TAGS * VLAN_TAG_LEN;

/// One VLAN tag: the TPID that announced it and its tag control field.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct VlanTag {
    /// [`EtherType::Vlan`] (802.1Q) or [`EtherType::QinQ`] (802.1ad).
    pub tpid: EtherType,
    /// Priority (3 bits), drop eligible (1), VLAN ID (12).
    pub tci: u16,
}

impl VlanTag {
    /// An 802.1Q tag for `vid` (priority 0), as a port's access VLAN is.
    #[inline(always)]
    pub const fn dot1q(vid: u16) -> VlanTag {
        VlanTag {
            tpid: EtherType::Vlan,
            tci: vid & 0x0fff,
        }
    }

    /// The 12-bit VLAN ID.
    #[inline(always)]
    pub const fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }

    /// The 3-bit priority code point.
    #[inline(always)]
    pub const fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }

    /// The drop eligible indicator.
    #[inline(always)]
    pub const fn dei(&self) -> bool {
        self.tci & 0x1000 != 0
    }
}

/// A read/write view of an Ethernet II frame and its VLAN tags.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length; accessors may panic.
    /// [`HEADER_LEN`] bytes are enough for the addresses and
    /// [`ethertype`](Self::ethertype).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Ensures that every accessor (the VLAN ones included: each TPID in
    /// the first [`MAX_VLAN_TAGS`] EtherType positions promises a tag)
    /// stays inside the buffer.
    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        self.check_payload().map(|_| ())
    }

    /// Checks the frame as [`check_len`](Self::check_len) does and returns
    /// the offset of the payload and its EtherType, walking the tags once:
    /// what a parse that goes on to L3 needs.
    #[inline(always)]
    pub fn check_payload(&self) -> Result<(usize, EtherType)> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        // Unrolled for MAX_VLAN_TAGS = 2: each TPID promises a tag.
        let mut tags = 0;
        if self.is_tpid_at(0) {
            tags = 1;
            if len < HEADER_LEN + VLAN_TAG_LEN {
                return Err(Error::Truncated);
            }
            if self.is_tpid_at(1) {
                tags = 2;
                if len < HEADER_LEN + 2 * VLAN_TAG_LEN {
                    return Err(Error::Truncated);
                }
            }
        }
        Ok((HEADER_LEN + tags * VLAN_TAG_LEN, self.type_at(tags)))
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The raw EtherType position after `tags` tags.
    #[inline(always)]
    fn raw_type_at(&self, tags: usize) -> u16 {
        let at = field::ETHERTYPE.start + tags * VLAN_TAG_LEN;
        read_u16_unchecked(self.buffer.as_ref(), at)
    }

    /// The EtherType position after `tags` tags.
    #[inline(always)]
    fn type_at(&self, tags: usize) -> EtherType {
        EtherType::from(self.raw_type_at(tags))
    }

    /// Whether the EtherType position after `tags` tags holds a TPID.
    #[inline(always)]
    fn is_tpid_at(&self, tags: usize) -> bool {
        matches!(self.raw_type_at(tags), TPID_8021Q | TPID_8021AD)
    }

    #[inline(always)]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    #[inline(always)]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// Both addresses as they sit in the header, destination then source
    /// (12 bytes): what hashes over the addresses read.
    #[inline(always)]
    pub fn addresses(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DESTINATION.start..field::SOURCE.end]
    }

    /// The outer EtherType (a TPID for a tagged frame).
    #[inline(always)]
    pub fn ethertype(&self) -> EtherType {
        self.type_at(0)
    }

    /// How many VLAN tags precede the payload (0..=[`MAX_VLAN_TAGS`]).
    #[inline(always)]
    pub fn vlan_count(&self) -> usize {
        // Unrolled for MAX_VLAN_TAGS = 2.
        if !self.is_tpid_at(0) {
            0
        } else if !self.is_tpid_at(1) {
            1
        } else {
            2
        }
    }

    /// Tag `i` (0 is the outermost), if the frame has that many.
    #[inline(always)]
    pub fn vlan_tag(&self, i: usize) -> Option<VlanTag> {
        if i >= self.vlan_count() {
            return None;
        }
        let at = HEADER_LEN + i * VLAN_TAG_LEN;
        Some(VlanTag {
            tpid: self.type_at(i),
            tci: read_u16_unchecked(self.buffer.as_ref(), at + tag_field::TCI.start),
        })
    }

    /// The VLAN ID (12 bits) of the outermost tag, when the frame is tagged.
    #[inline(always)]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tag(0).map(|t| t.vid())
    }

    /// The EtherType of the payload, looking through the VLAN tags.
    #[inline(always)]
    pub fn inner_ethertype(&self) -> EtherType {
        // The last two bytes of the header, whatever the tag count.
        let at = self.payload_offset() - field::ETHERTYPE.len();
        EtherType::from(read_u16_unchecked(self.buffer.as_ref(), at))
    }

    /// Offset of the L3 payload, after any VLAN tags.
    #[inline(always)]
    pub fn payload_offset(&self) -> usize {
        HEADER_LEN + self.vlan_count() * VLAN_TAG_LEN
    }

    /// The whole L2 header: addresses, tags, EtherType.
    #[inline(always)]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.payload_offset()]
    }

    /// The L3 payload, after any VLAN tags.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_offset()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline(always)]
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(a.as_bytes());
    }

    #[inline(always)]
    pub fn set_src_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(a.as_bytes());
    }

    /// Sets the outer EtherType (a TPID when tags follow).
    #[inline(always)]
    pub fn set_ethertype(&mut self, t: EtherType) {
        write_u16_unchecked(self.buffer.as_mut(), field::ETHERTYPE.start, u16::from(t));
    }

    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let off = self.payload_offset();
        &mut self.buffer.as_mut()[off..]
    }
}

/// A view of one VLAN tag: the 4 bytes after its TPID (tag control and the
/// next EtherType), followed by the payload.
#[derive(Debug, Clone)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        Ok(v)
    }

    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < VLAN_TAG_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The tag control field.
    #[inline(always)]
    pub fn tci(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), tag_field::TCI.start)
    }

    /// The 12-bit VLAN ID.
    #[inline(always)]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType after the tag (or the next TPID).
    #[inline(always)]
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16_unchecked(
            self.buffer.as_ref(),
            tag_field::ETHERTYPE.start,
        ))
    }

    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[tag_field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    #[inline(always)]
    pub fn set_tci(&mut self, tci: u16) {
        write_u16_unchecked(self.buffer.as_mut(), tag_field::TCI.start, tci);
    }

    #[inline(always)]
    pub fn set_ethertype(&mut self, t: EtherType) {
        write_u16_unchecked(
            self.buffer.as_mut(),
            tag_field::ETHERTYPE.start,
            u16::from(t),
        );
    }
}

/// The parsed form of an Ethernet header with 0..2 VLAN tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    /// The outermost (or only) VLAN tag.
    pub vlan: Option<VlanTag>,
    /// The second tag of a double-tagged frame. Emitted after `vlan`; on
    /// its own it is emitted as the only tag.
    pub inner_vlan: Option<VlanTag>,
    /// The EtherType of the payload.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan: frame.vlan_tag(0),
            inner_vlan: frame.vlan_tag(1),
            ethertype: frame.inner_ethertype(),
        })
    }

    /// The VLAN ID of the outermost tag, when tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan.or(self.inner_vlan).map(|t| t.vid())
    }

    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        let tags = self.vlan.is_some() as usize + self.inner_vlan.is_some() as usize;
        HEADER_LEN + tags * VLAN_TAG_LEN
    }

    /// Writes the header into the first [`buffer_len`](Self::buffer_len) bytes.
    ///
    /// # Panics
    /// When the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        let b = frame.buffer.as_mut();
        // Each tag's TPID goes where the EtherType would be, then its TCI;
        // the payload's EtherType ends the header.
        let mut at = field::ETHERTYPE.start;
        for tag in self.vlan.iter().chain(self.inner_vlan.iter()) {
            write_u16_unchecked(b, at, u16::from(tag.tpid));
            write_u16_unchecked(b, at + 2 + tag_field::TCI.start, tag.tci);
            at += VLAN_TAG_LEN;
        }
        write_u16_unchecked(b, at, u16::from(self.ethertype));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ARP request captured on a Linux bridge: who-has 10.77.0.12 tell
    /// 10.77.0.11, broadcast, from 02:42:0a:4d:00:0b (42 bytes, no padding).
    pub const ARP_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0x0a, 0x4d, 0x00, 0x0b, 0x08,
        0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00,
        0x01, // htype, ptype, hlen, plen, op=request
        0x02, 0x42, 0x0a, 0x4d, 0x00, 0x0b, 0x0a, 0x4d, 0x00, 0x0b, // sha, spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x4d, 0x00, 0x0c, // tha, tpa
    ];

    /// A VLAN-tagged (VID 100) IPv6 frame header plus 4 payload bytes.
    pub const TAGGED_IPV6: [u8; 22] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00,
        0x64, 0x86, 0xdd, 0x60, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn parses_arp_request() {
        let f = EthernetFrame::new_checked(&ARP_REQUEST[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr().to_string(), "02:42:0a:4d:00:0b");
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.payload().len(), 28);
    }

    #[test]
    fn parses_tagged_frame() {
        let f = EthernetFrame::new_checked(&TAGGED_IPV6[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::Vlan);
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.inner_ethertype(), EtherType::Ipv6);
        assert_eq!(f.payload(), &[0x60, 0, 0, 0]);
        assert!(f.dst_addr().is_multicast());
    }

    #[test]
    fn rejects_truncated_frames() {
        assert_eq!(
            EthernetFrame::new_checked(&ARP_REQUEST[..13]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            EthernetFrame::new_checked(&TAGGED_IPV6[..17]).unwrap_err(),
            Error::Truncated
        );
        assert!(EthernetFrame::new_checked(&TAGGED_IPV6[..18]).is_ok());
    }

    /// A Q-in-Q frame: 802.1ad outer tag (PCP 5, VID 200), 802.1Q inner
    /// tag (VID 10), IPv4, then 2 payload bytes.
    pub const QINQ_IPV4: [u8; 24] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xa8, 0xa0,
        0xc8, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00, 0x45, 0x00,
    ];

    #[test]
    fn parses_double_tagged_frame() {
        let f = EthernetFrame::new_checked(&QINQ_IPV4[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::QinQ);
        assert_eq!(f.vlan_count(), 2);
        let outer = f.vlan_tag(0).unwrap();
        assert_eq!(
            (outer.tpid, outer.vid(), outer.pcp(), outer.dei()),
            (EtherType::QinQ, 200, 5, false)
        );
        assert_eq!(f.vlan_tag(1), Some(VlanTag::dot1q(10)));
        assert_eq!(f.vlan_tag(2), None);
        assert_eq!(f.vlan_id(), Some(200));
        assert_eq!(f.inner_ethertype(), EtherType::Ipv4);
        assert_eq!(f.payload_offset(), MAX_HEADER_LEN);
        assert_eq!(f.header(), &QINQ_IPV4[..22]);
        assert_eq!(f.payload(), &[0x45, 0]);
        // The inner tag on its own.
        let tag = VlanHeader::new_checked(&QINQ_IPV4[18..]).unwrap();
        assert_eq!((tag.vid(), tag.ethertype()), (10, EtherType::Ipv4));
        assert_eq!(tag.payload(), &[0x45, 0]);
    }

    #[test]
    fn a_third_tpid_is_the_payload_type() {
        let mut f = QINQ_IPV4;
        f[20..22].copy_from_slice(&[0x81, 0x00]);
        let f = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(f.vlan_count(), 2);
        assert_eq!(f.inner_ethertype(), EtherType::Vlan);
    }

    #[test]
    fn every_prefix_is_refused_or_readable() {
        for fixture in [&ARP_REQUEST[..], &TAGGED_IPV6[..], &QINQ_IPV4[..]] {
            for n in 0..=fixture.len() {
                match EthernetFrame::new_checked(&fixture[..n]) {
                    Ok(f) => {
                        let _ = (f.dst_addr(), f.src_addr(), f.vlan_tag(0), f.vlan_tag(1));
                        let _ = (f.inner_ethertype(), f.header(), f.payload());
                        assert!(EthernetRepr::parse(&f).is_ok());
                    }
                    Err(e) => assert_eq!(e, Error::Truncated, "{n} bytes"),
                }
            }
        }
        assert!(EthernetFrame::new_checked(&QINQ_IPV4[..21]).is_err());
        assert!(EthernetFrame::new_checked(&QINQ_IPV4[..22]).is_ok());
        assert_eq!(
            VlanHeader::new_checked(&QINQ_IPV4[18..21]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn setters_write_the_fields() {
        let mut b = [0u8; 22];
        let mut f = EthernetFrame::new_unchecked(&mut b[..]);
        f.set_dst_addr(MacAddr::BROADCAST);
        f.set_src_addr(MacAddr([2, 0, 0, 0, 0, 1]));
        f.set_ethertype(EtherType::Vlan);
        let mut tag = VlanHeader::new_unchecked(&mut b[HEADER_LEN..]);
        tag.set_tci(0x2064);
        tag.set_ethertype(EtherType::Ipv6);
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(f.vlan_tag(0).map(|t| (t.pcp(), t.vid())), Some((1, 100)));
        assert_eq!(f.inner_ethertype(), EtherType::Ipv6);
        assert_eq!(&b[12..18], &[0x81, 0, 0x20, 0x64, 0x86, 0xdd]);
    }

    #[test]
    fn unknown_ethertype_round_trips() {
        assert_eq!(u16::from(EtherType::from(0x88cc)), 0x88cc);
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
    }

    #[test]
    fn repr_emit_reproduces_fixtures() {
        for fixture in [&ARP_REQUEST[..], &TAGGED_IPV6[..], &QINQ_IPV4[..]] {
            let repr = EthernetRepr::parse(&EthernetFrame::new_checked(fixture).unwrap()).unwrap();
            let mut out = vec![0u8; fixture.len()];
            out[repr.buffer_len()..].copy_from_slice(&fixture[repr.buffer_len()..]);
            repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
            assert_eq!(&out[..], fixture);
        }
        let repr = EthernetRepr::parse(&EthernetFrame::new_checked(&QINQ_IPV4[..]).unwrap());
        assert_eq!(repr.unwrap().buffer_len(), 22);
        assert_eq!(repr.unwrap().vlan_id(), Some(200));
    }
}
