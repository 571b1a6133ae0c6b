//! The probe frame `vxswitch pktgen` sends and counts: Ethernet II / IPv4
//! / UDP, with a small pktgen header at the start of the UDP payload.
//!
//! ```text
//! offset  field                                   notes
//!  0..6   Ethernet destination                   --dst-mac
//!  6..12  Ethernet source                        --src-mac (default: the interface's)
//! 12..14  EtherType 0x0800
//! 14..34  IPv4 header, 20 bytes, no options      DF set, ID 0, TTL 64, protocol 17
//! 34..42  UDP header                             checksum 0: none (legal over IPv4, RFC 768)
//! 42..46  magic "VXPG"                           (the pktgen header: ProbeHeader)
//! 46..48  run id                                 random per tx run; rx keeps runs apart
//! 48..50  flow id                                0..flows
//! 50..58  sequence number                        per flow, from 0; the END marker carries
//!                                                the number of data frames the run sent
//! 58      kind                                   0 data, 1 END marker
//! 59      version                                1
//! 60..    filler                                 bytes 0, 1, 2, ... (mod 256)
//! ```
//!
//! The pktgen header ends at byte 60, so the shortest legal Ethernet frame
//! (60 bytes without FCS, `ETH_ZLEN`) already carries all of it.
//!
//! Two views: [`ProbeHeader`] over the pktgen header alone (the UDP
//! payload), and [`ProbeFrame`] over the whole frame, which checks the
//! layers below (IPv4 without options, UDP) and reads them through their
//! own views. The frame-level offsets a kernel socket filter needs are the
//! constants [`IP_OFFSET`], [`IP_PROTO_OFFSET`] and [`MAGIC_OFFSET`].
//!
//! Contract, as everywhere in `wire`: received bytes enter through
//! [`ProbeFrame::new_checked`]; once it succeeds no getter panics.

use std::net::Ipv4Addr;

use super::ethernet::{self, EthernetFrame};
use super::ipv4::{self, Ipv4Packet};
use super::udp::{self, UdpPacket};
use super::{read_u16_unchecked, write_u16_unchecked, EtherType, IpProtocol, MacAddr};

/// Fields of the pktgen header, relative to the UDP payload.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub const MAGIC: Field = 0..4;
    pub const RUN: Field = 4..6;
    pub const FLOW: Field = 6..8;
    pub const SEQ: Field = 8..16;
    pub const KIND: usize = 16;
    pub const VERSION: usize = 17;
    pub const END: usize = 18;
}

/// Length of the pktgen header.
pub const PROBE_HEADER_LEN: usize = field::END;
/// Offset of the IPv4 header in the frame.
pub const IP_OFFSET: usize = ethernet::HEADER_LEN;
/// Offset of the IPv4 protocol byte in the frame.
pub const IP_PROTO_OFFSET: usize = IP_OFFSET + ipv4::PROTOCOL_OFFSET;
/// Offset of the UDP header in the frame.
pub const UDP_OFFSET: usize = IP_OFFSET + ipv4::HEADER_LEN;
/// Offset of the pktgen header (its magic) in the frame: what the receive
/// filter matches.
pub const MAGIC_OFFSET: usize = UDP_OFFSET + udp::HEADER_LEN;
/// `"VXPG"`, big-endian.
pub const MAGIC: u32 = u32::from_be_bytes(*b"VXPG");
pub const VERSION: u8 = 1;
/// The first IPv4 byte of a probe: version 4, header length 20 (IHL 5).
pub const IP_VERSION_IHL: u8 = 0x45;
/// Bytes from the start of the frame to the end of the pktgen header: the
/// part that differs between flows and frames. Also the smallest frame.
pub const HEADER_LEN: usize = MAGIC_OFFSET + PROBE_HEADER_LEN;
/// Smallest frame pktgen sends (Ethernet's minimum without FCS).
pub const MIN_FRAME: usize = HEADER_LEN;
/// Largest frame: an IPv4 total length of 65535 plus the Ethernet header.
pub const MAX_FRAME: usize = 65535 + ethernet::HEADER_LEN;

/// What a probe frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// A counted frame; its sequence number is its index within its flow.
    Data,
    /// Sent (a few times) after the last data frame; its sequence field is
    /// the number of data frames the run sent, so the receiver can compute
    /// loss without being told.
    End,
    /// Anything else, kept so it round-trips.
    Unknown(u8),
}

impl From<u8> for ProbeKind {
    fn from(v: u8) -> ProbeKind {
        match v {
            0 => ProbeKind::Data,
            1 => ProbeKind::End,
            other => ProbeKind::Unknown(other),
        }
    }
}

impl From<ProbeKind> for u8 {
    fn from(k: ProbeKind) -> u8 {
        match k {
            ProbeKind::Data => 0,
            ProbeKind::End => 1,
            ProbeKind::Unknown(v) => v,
        }
    }
}

/// Why bytes are not a probe frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("shorter than a probe frame")]
    Truncated,
    #[error("not IPv4/UDP without IP options")]
    NotUdp,
    #[error("no pktgen magic")]
    NoMagic,
    #[error("unknown pktgen header version")]
    Version,
}

/// A read/write view of the pktgen header (a probe's UDP payload).
#[derive(Debug, Clone)]
pub struct ProbeHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ProbeHeader<T> {
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        ProbeHeader { buffer }
    }

    /// Wraps a buffer that holds the whole header; the magic and version
    /// are not checked (see [`ProbeFrame::check`]).
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, ProbeError> {
        let h = Self::new_unchecked(buffer);
        if h.buffer.as_ref().len() < PROBE_HEADER_LEN {
            return Err(ProbeError::Truncated);
        }
        Ok(h)
    }

    #[inline(always)]
    pub fn magic(&self) -> u32 {
        super::read_u32_unchecked(self.buffer.as_ref(), field::MAGIC.start)
    }

    #[inline(always)]
    pub fn run(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::RUN.start)
    }

    #[inline(always)]
    pub fn flow(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::FLOW.start)
    }

    #[inline(always)]
    pub fn seq(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buffer.as_ref()[field::SEQ]);
        u64::from_be_bytes(b)
    }

    #[inline(always)]
    pub fn kind(&self) -> ProbeKind {
        ProbeKind::from(self.buffer.as_ref()[field::KIND])
    }

    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ProbeHeader<T> {
    #[inline(always)]
    pub fn set_magic(&mut self, v: u32) {
        super::write_u32_unchecked(self.buffer.as_mut(), field::MAGIC.start, v);
    }

    #[inline(always)]
    pub fn set_run(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::RUN.start, v);
    }

    #[inline(always)]
    pub fn set_flow(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::FLOW.start, v);
    }

    #[inline(always)]
    pub fn set_seq(&mut self, v: u64) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }

    #[inline(always)]
    pub fn set_kind(&mut self, k: ProbeKind) {
        self.buffer.as_mut()[field::KIND] = u8::from(k);
    }

    #[inline(always)]
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[field::VERSION] = v;
    }
}

/// The parsed pktgen header, as the sender fills it (magic and version are
/// always [`MAGIC`] and [`VERSION`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeRepr {
    pub run: u16,
    pub flow: u16,
    pub seq: u64,
    pub kind: ProbeKind,
}

impl ProbeRepr {
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        PROBE_HEADER_LEN
    }

    /// Writes the header into the first [`PROBE_HEADER_LEN`] bytes.
    ///
    /// # Panics
    /// When the buffer is shorter.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, h: &mut ProbeHeader<T>) {
        h.set_magic(MAGIC);
        h.set_run(self.run);
        h.set_flow(self.flow);
        h.set_seq(self.seq);
        h.set_kind(self.kind);
        h.set_version(VERSION);
    }
}

/// A read/write view of a whole probe frame.
#[derive(Debug, Clone)]
pub struct ProbeFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ProbeFrame<T> {
    /// Wraps a buffer without checking it; getters may panic.
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        ProbeFrame { buffer }
    }

    /// Wraps a buffer after [`check`](Self::check).
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self, ProbeError> {
        let f = Self::new_unchecked(buffer);
        f.check()?;
        Ok(f)
    }

    /// Ensures the buffer holds the whole pktgen header of an IPv4/UDP
    /// frame (IPv4 without options) with the magic and a known version, so
    /// no getter can panic.
    pub fn check(&self) -> Result<(), ProbeError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ProbeError::Truncated);
        }
        let ip = self.ip();
        if EthernetFrame::new_unchecked(b).ethertype() != EtherType::Ipv4
            || ip.version() != 4
            || ip.header_len() != ipv4::HEADER_LEN
            || ip.protocol() != IpProtocol::Udp
        {
            return Err(ProbeError::NotUdp);
        }
        if self.magic() != MAGIC {
            return Err(ProbeError::NoMagic);
        }
        if self.probe().version() != VERSION {
            return Err(ProbeError::Version);
        }
        Ok(())
    }

    #[inline(always)]
    fn ip(&self) -> Ipv4Packet<&[u8]> {
        Ipv4Packet::new_unchecked(&self.buffer.as_ref()[IP_OFFSET..])
    }

    #[inline(always)]
    fn probe(&self) -> ProbeHeader<&[u8]> {
        ProbeHeader::new_unchecked(&self.buffer.as_ref()[MAGIC_OFFSET..])
    }

    #[inline(always)]
    pub fn dst_mac(&self) -> MacAddr {
        EthernetFrame::new_unchecked(self.buffer.as_ref()).dst_addr()
    }

    #[inline(always)]
    pub fn src_mac(&self) -> MacAddr {
        EthernetFrame::new_unchecked(self.buffer.as_ref()).src_addr()
    }

    #[inline(always)]
    pub fn ip_src(&self) -> Ipv4Addr {
        self.ip().src_addr()
    }

    #[inline(always)]
    pub fn udp_src_port(&self) -> u16 {
        UdpPacket::new_unchecked(&self.buffer.as_ref()[UDP_OFFSET..]).src_port()
    }

    #[inline(always)]
    pub fn magic(&self) -> u32 {
        self.probe().magic()
    }

    #[inline(always)]
    pub fn run(&self) -> u16 {
        self.probe().run()
    }

    #[inline(always)]
    pub fn flow(&self) -> u16 {
        self.probe().flow()
    }

    #[inline(always)]
    pub fn seq(&self) -> u64 {
        self.probe().seq()
    }

    #[inline(always)]
    pub fn kind(&self) -> ProbeKind {
        self.probe().kind()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ProbeFrame<T> {
    #[inline(always)]
    fn probe_mut(&mut self) -> ProbeHeader<&mut [u8]> {
        ProbeHeader::new_unchecked(&mut self.buffer.as_mut()[MAGIC_OFFSET..])
    }

    /// Rewrites the sequence number: all a send changes in a built frame.
    #[inline(always)]
    pub fn set_seq(&mut self, seq: u64) {
        self.probe_mut().set_seq(seq);
    }

    #[inline(always)]
    pub fn set_kind(&mut self, kind: ProbeKind) {
        self.probe_mut().set_kind(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_the_documented_ones() {
        assert_eq!((IP_OFFSET, IP_PROTO_OFFSET, UDP_OFFSET), (14, 23, 34));
        assert_eq!((MAGIC_OFFSET, HEADER_LEN, MIN_FRAME), (42, 60, 60));
    }

    #[test]
    fn header_round_trip() {
        let r = ProbeRepr {
            run: 0x1234,
            flow: 3,
            seq: 0x0102_0304_0506_0708,
            kind: ProbeKind::End,
        };
        let mut b = [0u8; PROBE_HEADER_LEN];
        r.emit(&mut ProbeHeader::new_unchecked(&mut b[..]));
        assert_eq!(
            b,
            [b'V', b'X', b'P', b'G', 0x12, 0x34, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1]
        );
        let h = ProbeHeader::new_checked(&b[..]).unwrap();
        assert_eq!((h.magic(), h.run(), h.flow()), (MAGIC, 0x1234, 3));
        assert_eq!(
            (h.seq(), h.kind(), h.version()),
            (r.seq, ProbeKind::End, VERSION)
        );
        assert_eq!(r.buffer_len(), PROBE_HEADER_LEN);
        for n in 0..PROBE_HEADER_LEN {
            assert_eq!(
                ProbeHeader::new_checked(&b[..n]).unwrap_err(),
                ProbeError::Truncated
            );
        }
    }

    #[test]
    fn kind_round_trips_unknown_values() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(ProbeKind::from(v)), v);
        }
    }
}
