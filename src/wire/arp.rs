//! ARP (RFC 826) for Ethernet and IPv4, the only pairing a switch for
//! containers meets.
//!
//! ```text
//!  0   hardware type (1: Ethernet)   2  protocol type (0x0800: IPv4)
//!  4   hardware length (6)           5  protocol length (4)
//!  6   operation (1 request, 2 reply)
//!  8   sender hardware address      14  sender protocol address
//! 18   target hardware address      24  target protocol address   28  end
//! ```
//!
//! Contract: [`ArpPacket::check_len`] checks that the 28 bytes of the
//! Ethernet/IPv4 form are there; the address getters read them at those
//! fixed offsets whatever the length fields say, so a caller that cares
//! checks [`is_ethernet_ipv4`](ArpPacket::is_ethernet_ipv4) (as
//! [`ArpRepr::parse`] does). Ethernet pads a 28-byte ARP body to 46 bytes:
//! bytes after 28 are ignored.

use std::net::Ipv4Addr;

use super::{read_u16_unchecked, write_u16_unchecked, Error, EtherType, MacAddr, Result};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
    pub const END: usize = 28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::END;
/// The hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

enum_with_unknown! {
    /// The ARP operation.
    pub enum ArpOperation(u16) {
        Request = 1,
        Reply = 2,
    }
}

/// A read/write view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn hardware_type(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::HTYPE.start)
    }

    #[inline(always)]
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(read_u16_unchecked(self.buffer.as_ref(), field::PTYPE.start))
    }

    #[inline(always)]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline(always)]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Hardware Ethernet, protocol IPv4, lengths 6 and 4: the fixed
    /// offsets of the address getters are the real ones.
    #[inline(always)]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == HTYPE_ETHERNET
            && self.protocol_type() == EtherType::Ipv4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }

    #[inline(always)]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(read_u16_unchecked(self.buffer.as_ref(), field::OPER.start))
    }

    #[inline(always)]
    pub fn sender_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    #[inline(always)]
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline(always)]
    pub fn target_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    #[inline(always)]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::TPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes hardware type Ethernet, protocol IPv4, lengths 6 and 4.
    #[inline(always)]
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        write_u16_unchecked(b, field::HTYPE.start, HTYPE_ETHERNET);
        write_u16_unchecked(b, field::PTYPE.start, u16::from(EtherType::Ipv4));
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    #[inline(always)]
    pub fn set_operation(&mut self, op: ArpOperation) {
        write_u16_unchecked(self.buffer.as_mut(), field::OPER.start, u16::from(op));
    }

    #[inline(always)]
    pub fn set_sender_hardware_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(a.as_bytes());
    }

    #[inline(always)]
    pub fn set_sender_protocol_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a.octets());
    }

    #[inline(always)]
    pub fn set_target_hardware_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(a.as_bytes());
    }

    #[inline(always)]
    pub fn set_target_protocol_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a.octets());
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub source_hardware_addr: MacAddr,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: MacAddr,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses a packet; refuses one that is not Ethernet/IPv4
    /// ([`Error::Malformed`]). Any operation is accepted.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<ArpRepr> {
        p.check_len()?;
        if !p.is_ethernet_ipv4() {
            return Err(Error::Malformed);
        }
        Ok(ArpRepr {
            operation: p.operation(),
            source_hardware_addr: p.sender_hardware_addr(),
            source_protocol_addr: p.sender_protocol_addr(),
            target_hardware_addr: p.target_hardware_addr(),
            target_protocol_addr: p.target_protocol_addr(),
        })
    }

    /// Bytes `emit` writes: 28.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into the first 28 bytes.
    ///
    /// # Panics
    /// When the buffer is shorter than 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ArpPacket<T>) {
        p.set_ethernet_ipv4();
        p.set_operation(self.operation);
        p.set_sender_hardware_addr(self.source_hardware_addr);
        p.set_sender_protocol_addr(self.source_protocol_addr);
        p.set_target_hardware_addr(self.target_hardware_addr);
        p.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::tests::ARP_REQUEST;
    use crate::wire::EthernetFrame;

    #[test]
    fn parses_the_captured_request() {
        let eth = EthernetFrame::new_checked(&ARP_REQUEST[..]).unwrap();
        let p = ArpPacket::new_checked(eth.payload()).unwrap();
        assert!(p.is_ethernet_ipv4());
        let r = ArpRepr::parse(&p).unwrap();
        assert_eq!(r.operation, ArpOperation::Request);
        assert_eq!(r.source_hardware_addr.to_string(), "02:42:0a:4d:00:0b");
        assert_eq!(r.source_protocol_addr, Ipv4Addr::new(10, 77, 0, 11));
        assert_eq!(r.target_hardware_addr, MacAddr::ZERO);
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(10, 77, 0, 12));
    }

    #[test]
    fn repr_emit_reproduces_the_fixture() {
        let body = &ARP_REQUEST[14..];
        let r = ArpRepr::parse(&ArpPacket::new_checked(body).unwrap()).unwrap();
        let mut out = [0xffu8; 28];
        r.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], body);
        assert_eq!(r.buffer_len(), 28);
    }

    #[test]
    fn refuses_short_and_foreign_packets() {
        let body = &ARP_REQUEST[14..];
        for n in 0..28 {
            assert_eq!(
                ArpPacket::new_checked(&body[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut b = [0u8; 28];
        b.copy_from_slice(body);
        b[5] = 16; // IPv6-sized protocol addresses
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&b[..])),
            Err(Error::Malformed)
        );
        b[5] = 4;
        b[7] = 9;
        let r = ArpRepr::parse(&ArpPacket::new_unchecked(&b[..])).unwrap();
        assert_eq!(r.operation, ArpOperation::Unknown(9));
    }
}
