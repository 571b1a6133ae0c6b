//! The UDP header (RFC 768).
//!
//! ```text
//!  0   source port   2  destination port
//!  4   length (header + payload)   6  checksum (0: none, IPv4 only)
//!  8   payload
//! ```
//!
//! Contract: [`UdpPacket::check_len`] checks the header, that the length
//! field is at least 8 and that it fits in the buffer;
//! [`payload`](UdpPacket::payload) ends at the length field. The checksum covers a
//! pseudo-header of the IP layer (`Ipv4Packet::pseudo_header_sum`,
//! `Ipv6Packet::pseudo_header_sum`); a computed 0 is sent as 0xffff, since
//! 0 means "no checksum" (RFC 768).

use super::checksum;
use super::{read_u16_unchecked, write_u16_unchecked, Error, Result};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Offset of the checksum field: a virtio_net_hdr's `csum_offset` for UDP.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it. [`HEADER_LEN`] bytes are enough
    /// for every getter but [`payload`](Self::payload).
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures the header is there and the length field is sane and fits.
    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if field_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The length field: header and payload.
    #[inline(always)]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::LENGTH.start)
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The payload, up to the length field.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }

    /// Whether the checksum verifies (or is absent: 0), given the
    /// pseudo-header sum for this datagram's length.
    #[inline(always)]
    pub fn verify_checksum(&self, pseudo_header_sum: u64) -> bool {
        self.checksum() == 0
            || checksum::verifies(checksum::sum_words(
                &self.buffer.as_ref()[..usize::from(self.len())],
                pseudo_header_sum,
            ))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline(always)]
    pub fn set_src_port(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::SRC_PORT.start, v);
    }

    #[inline(always)]
    pub fn set_dst_port(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::DST_PORT.start, v);
    }

    #[inline(always)]
    pub fn set_len(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::LENGTH.start, v);
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    /// Computes and stores the checksum over the whole buffer (header and
    /// payload) from the pseudo-header sum; 0 is stored as 0xffff.
    #[inline(always)]
    pub fn fill_checksum(&mut self, pseudo_header_sum: u64) {
        self.set_checksum(0);
        let sum = checksum::sum_words(self.buffer.as_ref(), pseudo_header_sum);
        self.set_checksum(checksum::finish(sum));
    }

    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

/// The parsed header, as a builder fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Result<UdpRepr> {
        p.check_len()?;
        Ok(UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
        })
    }

    /// Bytes `emit` writes: the 8-byte header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header for `payload_len` bytes of payload with checksum 0
    /// ("none", legal over IPv4 only); call
    /// [`UdpPacket::fill_checksum`] afterwards for one. A length over 65535
    /// is stored as 65535.
    ///
    /// # Panics
    /// When the buffer is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut UdpPacket<T>, payload_len: usize) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(u16::try_from(HEADER_LEN + payload_len).unwrap_or(u16::MAX));
        p.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DNS-port datagram 53 -> 53 with 4 bytes of payload and no
    /// checksum, then 2 bytes that are not part of it.
    const DATAGRAM: [u8; 14] = [0, 53, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4, 0xee, 0xee];

    #[test]
    fn parses_and_emits_the_fixture() {
        let p = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (53, 53, 12, 0)
        );
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum(0), "no checksum always verifies");
        let r = UdpRepr::parse(&p).unwrap();
        let mut out = [0xffu8; 14];
        r.emit(&mut UdpPacket::new_unchecked(&mut out[..]), 4);
        out[8..].copy_from_slice(&DATAGRAM[8..]);
        assert_eq!(out, DATAGRAM);
        assert_eq!(r.buffer_len(), 8);
    }

    #[test]
    fn checksum_round_trip_and_zero_is_sent_as_ffff() {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&DATAGRAM[..8]);
        let pseudo = checksum::pseudo_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 17, 12);
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        p.fill_checksum(pseudo);
        assert_ne!(p.checksum(), 0);
        assert!(p.verify_checksum(pseudo));
        p.payload_mut()[0] = 9;
        assert!(!p.verify_checksum(pseudo));
        // Data whose sum complements to 0: stored as 0xffff.
        let mut z = [0u8; 8];
        let mut p = UdpPacket::new_unchecked(&mut z[..]);
        p.fill_checksum(0xffff);
        assert_eq!(p.checksum(), 0xffff);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        for n in 0..12 {
            assert_eq!(
                UdpPacket::new_checked(&DATAGRAM[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        let mut b = DATAGRAM;
        b[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
    }
}
