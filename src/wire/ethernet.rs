//! Ethernet II frames and the IEEE 802.1Q tag.
//!
//! Two layers, as in smoltcp: [`EthernetFrame`] is a zero-copy view over any
//! `AsRef<[u8]>` (getters) / `AsMut<[u8]>` (setters), and [`EthernetRepr`] is
//! the parsed, owned form with `parse`/`buffer_len`/`emit`.
//!
//! Contract: untrusted bytes enter through [`EthernetFrame::new_checked`];
//! once it has succeeded no accessor panics. Fields are read at byte offsets,
//! never through a struct cast, because a frame buffer carries no alignment
//! guarantee and an unaligned reference would be undefined behaviour.
//! The frame check sequence is not part of what a TAP or socket hands us, so
//! there is none here.

use super::{Error, MacAddr, Result};

/// The EtherType (or TPID) field.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum EtherType {
    Ipv4,
    Arp,
    /// IEEE 802.1Q customer VLAN tag (TPID 0x8100).
    Vlan,
    Ipv6,
    /// Anything else, kept so that it round-trips.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> u16 {
        match v {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(other) => other,
        }
    }
}

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
    /// Within an 802.1Q tag that follows the source address.
    pub const VLAN_TCI: Field = 14..16;
    pub const VLAN_INNER_ETHERTYPE: Field = 16..18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length of a header with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = 18;

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Ensures that every accessor (including the VLAN ones, when the
    /// EtherType says a tag is present) stays inside the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.ethertype() == EtherType::Vlan && len < VLAN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The outer EtherType (0x8100 for a tagged frame).
    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// The 802.1Q VLAN ID (12 bits) when the frame is tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        if self.ethertype() != EtherType::Vlan {
            return None;
        }
        let b = &self.buffer.as_ref()[field::VLAN_TCI];
        Some(u16::from_be_bytes([b[0], b[1]]) & 0x0fff)
    }

    /// The EtherType of the payload, looking through one 802.1Q tag.
    pub fn inner_ethertype(&self) -> EtherType {
        if self.ethertype() == EtherType::Vlan {
            let b = &self.buffer.as_ref()[field::VLAN_INNER_ETHERTYPE];
            EtherType::from(u16::from_be_bytes([b[0], b[1]]))
        } else {
            self.ethertype()
        }
    }

    /// Offset of the L3 payload, after any 802.1Q tag.
    pub fn payload_offset(&self) -> usize {
        if self.ethertype() == EtherType::Vlan {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The L3 payload, after any 802.1Q tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_offset()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(a.as_bytes());
    }

    pub fn set_src_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(a.as_bytes());
    }

    pub fn set_ethertype(&mut self, t: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(t).to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let off = self.payload_offset();
        &mut self.buffer.as_mut()[off..]
    }
}

/// The parsed form of an (untagged or single-tagged) Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    /// The 802.1Q VLAN ID, when tagged.
    pub vlan_id: Option<u16>,
    /// The EtherType of the payload.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan_id: frame.vlan_id(),
            ethertype: frame.inner_ethertype(),
        })
    }

    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        if self.vlan_id.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header into the first [`buffer_len`](Self::buffer_len) bytes.
    ///
    /// # Panics
    /// When the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        match self.vlan_id {
            None => frame.set_ethertype(self.ethertype),
            Some(vid) => {
                frame.set_ethertype(EtherType::Vlan);
                let b = frame.buffer.as_mut();
                b[field::VLAN_TCI].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
                b[field::VLAN_INNER_ETHERTYPE]
                    .copy_from_slice(&u16::from(self.ethertype).to_be_bytes());
            }
        }
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

    #[test]
    fn unknown_ethertype_round_trips() {
        assert_eq!(u16::from(EtherType::from(0x88cc)), 0x88cc);
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
    }

    #[test]
    fn repr_emit_reproduces_fixtures() {
        for fixture in [&ARP_REQUEST[..], &TAGGED_IPV6[..]] {
            let repr = EthernetRepr::parse(&EthernetFrame::new_checked(fixture).unwrap()).unwrap();
            let mut out = vec![0u8; fixture.len()];
            out[repr.buffer_len()..].copy_from_slice(&fixture[repr.buffer_len()..]);
            repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
            assert_eq!(&out[..], fixture);
        }
    }
}
