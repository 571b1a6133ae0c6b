//! The probe frame pktgen sends: Ethernet II / IPv4 / UDP, with a small
//! pktgen header at the start of the UDP payload.
//!
//! ```text
//! offset  field                                   notes
//!  0..6   Ethernet destination                   --dst-mac
//!  6..12  Ethernet source                        --src-mac (default: the interface's)
//! 12..14  EtherType 0x0800
//! 14..34  IPv4 header, 20 bytes, no options      DF set, ID 0, TTL 64, protocol 17
//! 34..42  UDP header                             checksum 0: none (legal over IPv4, RFC 768)
//! 42..46  magic "VXPG"
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
//! Why the frame is built this way: one frame per flow is built once
//! ([`FrameSpec::emit`]); after that a send only rewrites the eight bytes of
//! the sequence number ([`ProbeFrame::set_seq`]). With no UDP checksum and a
//! constant IPv4 ID, nothing else changes, so no checksum is recomputed per
//! frame. Flow `f` differs from flow 0 in its UDP source port (base + f)
//! and IPv4 source address (base + f), so the 5-tuple, and with it any
//! hash over it (RSS, the VXLAN source port), changes per flow.
//!
//! Contract, as in `crate::wire`: received bytes enter through
//! [`ProbeFrame::new_checked`]; once it succeeds no getter panics. Fields
//! are read at byte offsets, never through struct casts.

use std::net::Ipv4Addr;

use crate::wire::MacAddr;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const ETH_DST: Field = 0..6;
    pub const ETH_SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const IP_VER_IHL: usize = 14;
    pub const IP_TOS: usize = 15;
    pub const IP_TOTAL_LEN: Field = 16..18;
    pub const IP_ID: Field = 18..20;
    pub const IP_FLAGS_FRAG: Field = 20..22;
    pub const IP_TTL: usize = 22;
    pub const IP_PROTO: usize = 23;
    pub const IP_CHECKSUM: Field = 24..26;
    pub const IP_SRC: Field = 26..30;
    pub const IP_DST: Field = 30..34;
    pub const IP_HEADER: Field = 14..34;
    pub const UDP_SRC: Field = 34..36;
    pub const UDP_DST: Field = 36..38;
    pub const UDP_LEN: Field = 38..40;
    pub const UDP_CHECKSUM: Field = 40..42;
    pub const MAGIC: Field = 42..46;
    pub const RUN: Field = 46..48;
    pub const FLOW: Field = 48..50;
    pub const SEQ: Field = 50..58;
    pub const KIND: usize = 58;
    pub const VERSION: usize = 59;
    pub const FILLER: usize = 60;
}

/// Offset of the IPv4 header in the frame.
pub const IP_OFFSET: usize = field::IP_VER_IHL;
/// Offset of the pktgen magic: what the receive filter matches.
pub const MAGIC_OFFSET: usize = field::MAGIC.start;
/// Offset of the IPv4 protocol byte.
pub const IP_PROTO_OFFSET: usize = field::IP_PROTO;
/// `"VXPG"`, big-endian.
pub const MAGIC: u32 = u32::from_be_bytes(*b"VXPG");
pub const VERSION: u8 = 1;
/// Bytes from the start of the frame to the end of the pktgen header: the
/// part that differs between flows and frames. Also the smallest frame.
pub const HEADER_LEN: usize = field::FILLER;
/// Smallest frame pktgen sends (Ethernet's minimum without FCS).
pub const MIN_FRAME: usize = HEADER_LEN;
/// Largest frame: an IPv4 total length of 65535 plus the Ethernet header.
pub const MAX_FRAME: usize = 65535 + 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
const IP_VER_IHL: u8 = 0x45;

/// What a probe frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A counted frame; its sequence number is its index within its flow.
    Data,
    /// Sent (a few times) after the last data frame; its sequence field is
    /// the number of data frames the run sent, so the receiver can compute
    /// loss without being told.
    End,
    /// Anything else, kept so it round-trips.
    Unknown(u8),
}

impl From<u8> for Kind {
    fn from(v: u8) -> Kind {
        match v {
            0 => Kind::Data,
            1 => Kind::End,
            other => Kind::Unknown(other),
        }
    }
}

impl From<Kind> for u8 {
    fn from(k: Kind) -> u8 {
        match k {
            Kind::Data => 0,
            Kind::End => 1,
            Kind::Unknown(v) => v,
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

/// A read/write view of a probe frame.
#[derive(Debug, Clone)]
pub struct ProbeFrame<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], f: field::Field) -> u16 {
    let s = &b[f];
    u16::from_be_bytes([s[0], s[1]])
}

impl<T: AsRef<[u8]>> ProbeFrame<T> {
    /// Wraps a buffer without checking it; getters may panic.
    pub const fn new_unchecked(buffer: T) -> Self {
        ProbeFrame { buffer }
    }

    /// Wraps a buffer after [`check`](Self::check).
    pub fn new_checked(buffer: T) -> Result<Self, ProbeError> {
        let f = Self::new_unchecked(buffer);
        f.check()?;
        Ok(f)
    }

    /// Ensures the buffer holds the whole pktgen header of an IPv4/UDP
    /// frame with the magic and a known version, so no getter can panic.
    pub fn check(&self) -> Result<(), ProbeError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ProbeError::Truncated);
        }
        if be16(b, field::ETHERTYPE) != ETHERTYPE_IPV4
            || b[field::IP_VER_IHL] != IP_VER_IHL
            || b[field::IP_PROTO] != IPPROTO_UDP
        {
            return Err(ProbeError::NotUdp);
        }
        if self.magic() != MAGIC {
            return Err(ProbeError::NoMagic);
        }
        if b[field::VERSION] != VERSION {
            return Err(ProbeError::Version);
        }
        Ok(())
    }

    pub fn dst_mac(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::ETH_DST])
    }

    pub fn src_mac(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::ETH_SRC])
    }

    pub fn magic(&self) -> u32 {
        let s = &self.buffer.as_ref()[field::MAGIC];
        u32::from_be_bytes([s[0], s[1], s[2], s[3]])
    }

    pub fn run(&self) -> u16 {
        be16(self.buffer.as_ref(), field::RUN)
    }

    pub fn flow(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLOW)
    }

    pub fn seq(&self) -> u64 {
        let s = &self.buffer.as_ref()[field::SEQ];
        u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
    }

    pub fn kind(&self) -> Kind {
        Kind::from(self.buffer.as_ref()[field::KIND])
    }

    pub fn udp_src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::UDP_SRC)
    }

    pub fn ip_src(&self) -> Ipv4Addr {
        let s = &self.buffer.as_ref()[field::IP_SRC];
        Ipv4Addr::new(s[0], s[1], s[2], s[3])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ProbeFrame<T> {
    pub fn set_seq(&mut self, seq: u64) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn set_kind(&mut self, kind: Kind) {
        self.buffer.as_mut()[field::KIND] = u8::from(kind);
    }
}

/// The RFC 1071 Internet checksum of `data`.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !crate::offload::csum::fold(crate::offload::csum::sum_words(data, 0))
}

/// Everything that defines the frames of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    pub dst_mac: MacAddr,
    pub src_mac: MacAddr,
    /// Source address of flow 0; flow `f` uses this plus `f`.
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// UDP source port of flow 0; flow `f` uses this plus `f` (mod 65536).
    pub src_port: u16,
    pub dst_port: u16,
    /// Frame length without FCS, [`MIN_FRAME`] to [`MAX_FRAME`].
    pub size: usize,
    pub run: u16,
}

impl FrameSpec {
    /// Bytes [`emit`](Self::emit) writes: the frame size.
    pub const fn buffer_len(&self) -> usize {
        self.size
    }

    /// The IPv4 source address and UDP source port of flow `flow`.
    pub fn flow_tuple(&self, flow: u16) -> (Ipv4Addr, u16) {
        let ip = Ipv4Addr::from(u32::from(self.src_ip).wrapping_add(u32::from(flow)));
        (ip, self.src_port.wrapping_add(flow))
    }

    /// Writes the whole frame of `flow` with sequence number `seq` into
    /// `buf`, IPv4 header checksum included.
    ///
    /// # Panics
    /// When `buf.len()` is not [`buffer_len`](Self::buffer_len) or the size
    /// is outside [`MIN_FRAME`]..=[`MAX_FRAME`].
    pub fn emit(&self, flow: u16, kind: Kind, seq: u64, buf: &mut [u8]) {
        assert!(
            (MIN_FRAME..=MAX_FRAME).contains(&self.size) && buf.len() == self.size,
            "frame size {} into a buffer of {}",
            self.size,
            buf.len()
        );
        let ip_len = u16::try_from(self.size - 14).unwrap_or(u16::MAX);
        let udp_len = ip_len - 20;
        let (src_ip, src_port) = self.flow_tuple(flow);
        buf[field::ETH_DST].copy_from_slice(self.dst_mac.as_bytes());
        buf[field::ETH_SRC].copy_from_slice(self.src_mac.as_bytes());
        buf[field::ETHERTYPE].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        buf[field::IP_VER_IHL] = IP_VER_IHL;
        buf[field::IP_TOS] = 0;
        buf[field::IP_TOTAL_LEN].copy_from_slice(&ip_len.to_be_bytes());
        buf[field::IP_ID].copy_from_slice(&[0, 0]);
        // DF: the frame is built to its final size; nothing may fragment it.
        buf[field::IP_FLAGS_FRAG].copy_from_slice(&0x4000u16.to_be_bytes());
        buf[field::IP_TTL] = 64;
        buf[field::IP_PROTO] = IPPROTO_UDP;
        buf[field::IP_CHECKSUM].copy_from_slice(&[0, 0]);
        buf[field::IP_SRC].copy_from_slice(&src_ip.octets());
        buf[field::IP_DST].copy_from_slice(&self.dst_ip.octets());
        let csum = internet_checksum(&buf[field::IP_HEADER]);
        buf[field::IP_CHECKSUM].copy_from_slice(&csum.to_be_bytes());
        buf[field::UDP_SRC].copy_from_slice(&src_port.to_be_bytes());
        buf[field::UDP_DST].copy_from_slice(&self.dst_port.to_be_bytes());
        buf[field::UDP_LEN].copy_from_slice(&udp_len.to_be_bytes());
        buf[field::UDP_CHECKSUM].copy_from_slice(&[0, 0]);
        buf[field::MAGIC].copy_from_slice(&MAGIC.to_be_bytes());
        buf[field::RUN].copy_from_slice(&self.run.to_be_bytes());
        buf[field::FLOW].copy_from_slice(&flow.to_be_bytes());
        buf[field::SEQ].copy_from_slice(&seq.to_be_bytes());
        buf[field::KIND] = u8::from(kind);
        buf[field::VERSION] = VERSION;
        for (i, b) in buf[field::FILLER..].iter_mut().enumerate() {
            *b = (i & 0xff) as u8;
        }
    }

    /// The first [`HEADER_LEN`] bytes of flow `flow`'s data frame with
    /// sequence number 0: all that differs between the flows' frames of
    /// this size (the filler after it is the same in all of them).
    /// Allocates a scratch frame: call it at setup, not per frame.
    pub fn header(&self, flow: u16) -> [u8; HEADER_LEN] {
        let mut frame = vec![0u8; self.size];
        self.emit(flow, Kind::Data, 0, &mut frame);
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&frame[..HEADER_LEN]);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FrameSpec {
        FrameSpec {
            dst_mac: MacAddr([0x02, 0, 0, 0, 0, 0x02]),
            src_mac: MacAddr([0x02, 0, 0, 0, 0, 0x01]),
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 19, 0, 1),
            src_port: 9000,
            dst_port: 9,
            size: 64,
            run: 0x1234,
        }
    }

    /// A 64-byte data frame of flow 0, sequence 5, every byte written out.
    /// The IPv4 header checksum 0xae93 was computed outside this code: the
    /// ten 16-bit words of the header (checksum field zero) sum to 0x2516a,
    /// folded 0x516c, complemented 0xae93.
    const FRAME_64: [u8; 64] = [
        // Ethernet: dst, src, type IPv4
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x08, 0x00, //
        // IPv4: ver/ihl, tos, total length 50, id 0, DF, ttl 64, udp, checksum
        0x45, 0x00, 0x00, 0x32, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xae, 0x93, //
        198, 18, 0, 1, 198, 19, 0, 1, //
        // UDP: 9000 -> 9, length 30, no checksum
        0x23, 0x28, 0x00, 0x09, 0x00, 0x1e, 0x00, 0x00, //
        // pktgen: magic, run 0x1234, flow 0, seq 5, kind data, version 1
        b'V', b'X', b'P', b'G', 0x12, 0x34, 0x00, 0x00, //
        0, 0, 0, 0, 0, 0, 0, 5, 0x00, 0x01, //
        // filler 0, 1, 2, 3
        0, 1, 2, 3,
    ];

    #[test]
    fn builds_the_64_byte_fixture() {
        let mut buf = [0u8; 64];
        spec().emit(0, Kind::Data, 5, &mut buf);
        assert_eq!(buf, FRAME_64);
    }

    #[test]
    fn ip_header_checksum_verifies_to_zero() {
        // The checksum over a header that includes its checksum is 0.
        for size in [60, 64, 1514, 9014] {
            let s = FrameSpec { size, ..spec() };
            let mut buf = vec![0u8; size];
            s.emit(7, Kind::Data, 1, &mut buf);
            assert_eq!(internet_checksum(&buf[14..34]), 0, "size {size}");
            let ip_len = u16::from_be_bytes([buf[16], buf[17]]);
            let udp_len = u16::from_be_bytes([buf[38], buf[39]]);
            assert_eq!(usize::from(ip_len), size - 14);
            assert_eq!(usize::from(udp_len), size - 34);
        }
    }

    #[test]
    fn flows_differ_in_source_port_and_address_only() {
        let s = spec();
        let (h0, h3) = (s.header(0), s.header(3));
        let f = ProbeFrame::new_checked(&h3[..]).unwrap();
        assert_eq!(f.flow(), 3);
        assert_eq!(f.udp_src_port(), 9003);
        assert_eq!(f.ip_src(), Ipv4Addr::new(198, 18, 0, 4));
        let differing: Vec<usize> = (0..HEADER_LEN).filter(|&i| h0[i] != h3[i]).collect();
        // IP source (last byte), IP checksum, UDP source port, flow id.
        for i in differing {
            assert!(
                field::IP_SRC.contains(&i)
                    || field::IP_CHECKSUM.contains(&i)
                    || field::UDP_SRC.contains(&i)
                    || field::FLOW.contains(&i),
                "byte {i} differs"
            );
        }
    }

    #[test]
    fn header_matches_the_full_frame() {
        let s = FrameSpec {
            size: 1000,
            ..spec()
        };
        let mut buf = vec![0u8; 1000];
        s.emit(2, Kind::Data, 0, &mut buf);
        assert_eq!(s.header(2)[..], buf[..HEADER_LEN]);
    }

    #[test]
    fn view_reads_back_and_sets_seq() {
        let mut buf = FRAME_64;
        let mut f = ProbeFrame::new_checked(&mut buf[..]).unwrap();
        assert_eq!(
            (f.run(), f.flow(), f.seq(), f.kind()),
            (0x1234, 0, 5, Kind::Data)
        );
        assert_eq!(f.dst_mac(), MacAddr([0x02, 0, 0, 0, 0, 0x02]));
        assert_eq!(f.src_mac(), MacAddr([0x02, 0, 0, 0, 0, 0x01]));
        f.set_seq(0x0102_0304_0506_0708);
        f.set_kind(Kind::End);
        assert_eq!(f.seq(), 0x0102_0304_0506_0708);
        assert_eq!(f.kind(), Kind::End);
        assert_eq!(buf[50..59], [1, 2, 3, 4, 5, 6, 7, 8, 1]);
    }

    #[test]
    fn check_rejects_what_is_not_a_probe() {
        let short = &FRAME_64[..59];
        assert_eq!(
            ProbeFrame::new_checked(short).unwrap_err(),
            ProbeError::Truncated
        );
        let mut arp = FRAME_64;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            ProbeFrame::new_checked(&arp[..]).unwrap_err(),
            ProbeError::NotUdp
        );
        let mut options = FRAME_64;
        options[14] = 0x46;
        assert_eq!(
            ProbeFrame::new_checked(&options[..]).unwrap_err(),
            ProbeError::NotUdp
        );
        let mut magic = FRAME_64;
        magic[42] = b'X';
        assert_eq!(
            ProbeFrame::new_checked(&magic[..]).unwrap_err(),
            ProbeError::NoMagic
        );
        let mut version = FRAME_64;
        version[59] = 9;
        assert_eq!(
            ProbeFrame::new_checked(&version[..]).unwrap_err(),
            ProbeError::Version
        );
        // The minimum frame is exactly the header.
        assert!(ProbeFrame::new_checked(&FRAME_64[..60]).is_ok());
    }

    #[test]
    fn kind_round_trips_unknown_values() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Kind::from(v)), v);
        }
    }
}
