//! The TCP header (RFC 9293 section 3.1): ports, sequence and
//! acknowledgment numbers, data offset, flags, window, checksum.
//!
//! ```text
//!  0   source port      2  destination port
//!  4   sequence number  8  acknowledgment number
//! 12   data offset (4 bits, header length in 32-bit words) | reserved
//! 13   flags: CWR ECE URG ACK PSH RST SYN FIN
//! 14   window          16  checksum         18  urgent pointer
//! 20   options (data offset * 4 - 20 bytes), then the payload
//! ```
//!
//! Contract: [`TcpPacket::check_len`] checks the fixed header, that the
//! data offset is at least 5, and that the header fits; the payload is
//! whatever follows in the buffer (the IP layer says where the segment
//! ends: pass a buffer cut at that end). Options are not parsed: the
//! offloads only compare and copy them.
//!
//! The checksum covers a pseudo-header of the IP layer: see
//! [`Ipv4Packet::pseudo_header_sum`](super::Ipv4Packet::pseudo_header_sum)
//! and [`Ipv6Packet::pseudo_header_sum`](super::Ipv6Packet::pseudo_header_sum).
//! No builder needs a `TcpRepr` (segmentation and coalescing rewrite
//! fields of segments they copied), so there is none.

use super::checksum;
use super::{
    read_u16_unchecked, read_u32_unchecked, write_u16_unchecked, write_u32_unchecked, Error, Result,
};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS: usize = 20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Offset of the checksum field: a virtio_net_hdr's `csum_offset` for TCP.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// TCP flag bits (byte 13 of the header).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A read/write view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it. [`HEADER_LEN`] bytes are enough
    /// for every fixed-field getter.
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures the fixed header is there, the data offset is at least 5
    /// and the options fit.
    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hlen = self.header_len();
        if hlen < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hlen > len {
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

    #[inline(always)]
    pub fn seq_number(&self) -> u32 {
        read_u32_unchecked(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    #[inline(always)]
    pub fn ack_number(&self) -> u32 {
        read_u32_unchecked(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flag byte; see [`flags`].
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline(always)]
    pub fn window_len(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline(always)]
    pub fn urgent_at(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::URGENT.start)
    }

    /// The options, unparsed.
    #[inline(always)]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The payload: everything after the header.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether `other` has the same ports and the same options (the same
    /// data offset included): what segments of one flow that may be merged
    /// (GRO) share, whatever their sequence numbers, flags and windows.
    #[inline(always)]
    pub fn same_ports_and_options<U: AsRef<[u8]>>(&self, other: &TcpPacket<U>) -> bool {
        let ports = field::SRC_PORT.start..field::DST_PORT.end;
        let (a, b) = (self.buffer.as_ref(), other.buffer.as_ref());
        a[ports.clone()] == b[ports] && self.options() == other.options()
    }

    /// Whether the checksum verifies, given the pseudo-header sum of the IP
    /// layer for this segment's length.
    #[inline(always)]
    pub fn verify_checksum(&self, pseudo_header_sum: u64) -> bool {
        checksum::verifies(checksum::sum_words(self.buffer.as_ref(), pseudo_header_sum))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline(always)]
    pub fn set_src_port(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::SRC_PORT.start, v);
    }

    #[inline(always)]
    pub fn set_dst_port(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::DST_PORT.start, v);
    }

    #[inline(always)]
    pub fn set_seq_number(&mut self, v: u32) {
        write_u32_unchecked(self.buffer.as_mut(), field::SEQ_NUM.start, v);
    }

    #[inline(always)]
    pub fn set_ack_number(&mut self, v: u32) {
        write_u32_unchecked(self.buffer.as_mut(), field::ACK_NUM.start, v);
    }

    /// Sets the data offset from a header length (a multiple of 4).
    #[inline(always)]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (((len / 4) as u8) << 4);
    }

    #[inline(always)]
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    #[inline(always)]
    pub fn set_window_len(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::WIN_SIZE.start, v);
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    #[inline(always)]
    pub fn set_urgent_at(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::URGENT.start, v);
    }

    /// Computes and stores the full checksum over the whole buffer (header
    /// and payload) from the pseudo-header sum. A computed 0 stays 0 (as
    /// the kernel's `tcp_v4_check` leaves it; 0xffff would verify as well).
    #[inline(always)]
    pub fn fill_checksum(&mut self, pseudo_header_sum: u64) {
        self.set_checksum(0);
        let sum = checksum::sum_words(self.buffer.as_ref(), pseudo_header_sum);
        self.set_checksum(!checksum::fold(sum));
    }

    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data segment 40000 -> 5201, seq 1, ack 1, PSH|ACK, window 256,
    /// timestamps option (12 bytes with two NOPs), payload "abc"; checksum
    /// field 0x1234 (not verified here).
    const SEGMENT: [u8; 35] = [
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x18, 1, 0, 0x12, 0x34, 0, 0, //
        1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, //
        b'a', b'b', b'c',
    ];

    #[test]
    fn parses_the_fixture() {
        let t = TcpPacket::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (40000, 5201));
        assert_eq!((t.seq_number(), t.ack_number()), (1, 1));
        assert_eq!(t.header_len(), 32);
        assert_eq!(t.flags(), flags::PSH | flags::ACK);
        assert_eq!(
            (t.window_len(), t.checksum(), t.urgent_at()),
            (256, 0x1234, 0)
        );
        assert_eq!(t.options(), &SEGMENT[20..32]);
        assert_eq!(t.payload(), b"abc");
    }

    #[test]
    fn setters_rebuild_the_fixture() {
        let mut b = [0u8; 35];
        let mut t = TcpPacket::new_unchecked(&mut b[..]);
        t.set_src_port(40000);
        t.set_dst_port(5201);
        t.set_seq_number(1);
        t.set_ack_number(1);
        t.set_header_len(32);
        t.set_flags(flags::PSH | flags::ACK);
        t.set_window_len(256);
        t.set_checksum(0x1234);
        t.set_urgent_at(0);
        b[20..].copy_from_slice(&SEGMENT[20..]);
        assert_eq!(b, SEGMENT);
    }

    #[test]
    fn checksum_round_trip() {
        let mut b = SEGMENT;
        let pseudo = checksum::pseudo_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, b.len());
        let mut t = TcpPacket::new_unchecked(&mut b[..]);
        t.fill_checksum(pseudo);
        assert!(t.verify_checksum(pseudo));
        t.payload_mut()[0] ^= 1;
        assert!(!t.verify_checksum(pseudo));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        for n in 0..32 {
            assert_eq!(
                TcpPacket::new_checked(&SEGMENT[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        assert!(TcpPacket::new_checked(&SEGMENT[..32]).is_ok());
        let mut b = SEGMENT;
        b[12] = 0x40; // data offset 4
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        b[12] = 0xf0; // 60-byte header in 35 bytes
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
    }
}
