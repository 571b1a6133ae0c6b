//! The VXLAN header (RFC 7348, section 5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The I flag must be set for a valid VNI. Reserved bits are written as zero
//! and ignored on receipt, as the RFC requires ("MUST be ignored on
//! receipt"): a header with a reserved bit set is still accepted. A header
//! with I clear is not an error of this module's parser — [`VxlanRepr::parse`]
//! refuses it as [`Error::Malformed`] so the caller can count it.

use super::{Error, Result};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const FLAGS: usize = 0;
    pub const VNI: Field = 4..7;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;
/// The IANA-assigned UDP port (RFC 7348). Linux's default without `dstport`
/// and flannel use 8472.
pub const IANA_PORT: u16 = 4789;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// A view of a VXLAN header followed by the inner Ethernet frame.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I (valid VNI) flag is set.
    pub fn has_vni(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The encapsulated Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Writes flags = I and the VNI, zeroing every reserved bit.
    ///
    /// # Panics
    /// When `vni` does not fit in 24 bits.
    pub fn set_header(&mut self, vni: u32) {
        assert!(vni <= MAX_VNI, "VNI {vni} does not fit in 24 bits");
        let b = self.buffer.as_mut();
        b[..HEADER_LEN].fill(0);
        b[field::FLAGS] = FLAG_I;
        b[field::VNI].copy_from_slice(&vni.to_be_bytes()[1..]);
    }
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    pub vni: u32,
}

impl VxlanRepr {
    /// Parses a header; refuses one without the I flag.
    pub fn parse<T: AsRef<[u8]>>(p: &VxlanPacket<T>) -> Result<VxlanRepr> {
        p.check_len()?;
        if !p.has_vni() {
            return Err(Error::Malformed);
        }
        Ok(VxlanRepr { vni: p.vni() })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first 8 bytes.
    ///
    /// # Panics
    /// When the buffer is shorter than 8 bytes or the VNI exceeds 24 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut VxlanPacket<T>) {
        p.set_header(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UDP payload of a packet captured from the Linux kernel `vxlan`
    /// device (kernel 6.18, `ip link add vx0 type vxlan id 4242 dstport 4789
    /// remote ...`, interface MAC 9a:1c:3e:55:01:02): the VXLAN header for
    /// VNI 4242 (0x001092) and the inner frame, an MLDv2 report to
    /// 33:33:00:00:00:16 that the kernel sends when the interface comes up.
    const KERNEL_PACKET: [u8; 98] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x10, 0x92, 0x00, 0x33, 0x33, 0x00, 0x00, 0x00, 0x16, 0x9a,
        0x1c, 0x3e, 0x55, 0x01, 0x02, 0x86, 0xdd, 0x60, 0x00, 0x00, 0x00, 0x00, 0x24, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x16, 0x3a, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, 0x8f, 0x00, 0x6e, 0x33, 0x00,
        0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01, 0xff, 0x55, 0x01, 0x02,
    ];

    #[test]
    fn parses_a_kernel_packet() {
        let p = VxlanPacket::new_checked(&KERNEL_PACKET[..]).unwrap();
        assert!(p.has_vni());
        assert_eq!(VxlanRepr::parse(&p).unwrap(), VxlanRepr { vni: 4242 });
        let inner = crate::wire::EthernetFrame::new_checked(p.payload()).unwrap();
        assert_eq!(inner.src_addr().to_string(), "9a:1c:3e:55:01:02");
        assert_eq!(inner.ethertype(), crate::wire::EtherType::Ipv6);
        assert_eq!(p.payload().len(), 90);
    }

    #[test]
    fn emit_matches_the_kernel_header() {
        let mut out = [0xffu8; 8];
        VxlanRepr { vni: 4242 }.emit(&mut VxlanPacket::new_unchecked(&mut out[..]));
        assert_eq!(out, KERNEL_PACKET[..8]);
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let mut b = KERNEL_PACKET;
        b[0] |= 0xf7; // every reserved flag bit
        b[1] = 0xff;
        b[7] = 0xff;
        let p = VxlanPacket::new_checked(&b[..]).unwrap();
        assert_eq!(VxlanRepr::parse(&p).unwrap().vni, 4242);
    }

    #[test]
    fn i_flag_clear_and_truncated_are_refused() {
        let mut b = KERNEL_PACKET;
        b[0] = 0;
        assert_eq!(
            VxlanRepr::parse(&VxlanPacket::new_unchecked(&b[..])),
            Err(Error::Malformed)
        );
        assert_eq!(
            VxlanPacket::new_checked(&KERNEL_PACKET[..7]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn vni_round_trips_at_the_edges() {
        for vni in [0, 1, 4242, MAX_VNI] {
            let mut out = [0u8; 8];
            VxlanRepr { vni }.emit(&mut VxlanPacket::new_unchecked(&mut out[..]));
            assert_eq!(
                VxlanRepr::parse(&VxlanPacket::new_unchecked(&out[..]))
                    .unwrap()
                    .vni,
                vni
            );
        }
    }
}
