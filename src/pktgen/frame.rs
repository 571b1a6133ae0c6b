//! The probe frames pktgen sends: [`FrameSpec`] says what a run's frames
//! are (addresses, ports, size, run id) and builds them through the views
//! of [`crate::wire`]; the frame format itself (layout, magic, the
//! [`ProbeFrame`] view the receiver reads with) is [`crate::wire::probe`],
//! re-exported here.
//!
//! Why the frame is built this way: one frame per flow is built once
//! ([`FrameSpec::emit`]); after that a send only rewrites the eight bytes of
//! the sequence number ([`ProbeFrame::set_seq`]). With no UDP checksum and a
//! constant IPv4 ID, nothing else changes, so no checksum is recomputed per
//! frame. Flow `f` differs from flow 0 in its UDP source port (base + f)
//! and IPv4 source address (base + f), so the 5-tuple, and with it any
//! hash over it (RSS, the VXLAN source port), changes per flow.

use std::net::Ipv4Addr;

use crate::wire::ethernet;
use crate::wire::probe::{ProbeHeader, ProbeRepr, UDP_OFFSET};
use crate::wire::{
    checksum, EtherType, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, MacAddr,
    UdpPacket, UdpRepr,
};

pub use crate::wire::probe::{
    ProbeError, ProbeFrame, ProbeKind as Kind, HEADER_LEN, IP_OFFSET, IP_PROTO_OFFSET,
    IP_VERSION_IHL, MAGIC, MAGIC_OFFSET, MAX_FRAME, MIN_FRAME, VERSION,
};

/// The RFC 1071 Internet checksum of `data`.
pub fn internet_checksum(data: &[u8]) -> u16 {
    checksum::checksum(data)
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
        let (src_ip, src_port) = self.flow_tuple(flow);
        let eth = EthernetRepr {
            src_addr: self.src_mac,
            dst_addr: self.dst_mac,
            vlan: None,
            inner_vlan: None,
            ethertype: EtherType::Ipv4,
        };
        let udp_len = self.size - UDP_OFFSET;
        let ip = Ipv4Repr {
            src_addr: src_ip,
            dst_addr: self.dst_ip,
            protocol: IpProtocol::Udp,
            payload_len: udp_len,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0,
            // The frame is built to its final size; nothing may fragment it.
            dont_frag: true,
        };
        let udp = UdpRepr {
            src_port,
            dst_port: self.dst_port,
        };
        let probe = ProbeRepr {
            run: self.run,
            flow,
            seq,
            kind,
        };
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        ip.emit(&mut Ipv4Packet::new_unchecked(
            &mut buf[ethernet::HEADER_LEN..],
        ));
        // No UDP checksum (0): legal over IPv4, and nothing to recompute
        // when a send rewrites the sequence number.
        udp.emit(
            &mut UdpPacket::new_unchecked(&mut buf[UDP_OFFSET..]),
            udp_len - udp.buffer_len(),
        );
        probe.emit(&mut ProbeHeader::new_unchecked(&mut buf[MAGIC_OFFSET..]));
        for (i, b) in buf[HEADER_LEN..].iter_mut().enumerate() {
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
        // IP source (last byte), IP checksum, UDP source port, flow id,
        // at their offsets in the frame (see the table in wire::probe).
        let (ip_src, ip_checksum, udp_src, flow) = (26..30, 24..26, 34..36, 48..50);
        for i in differing {
            assert!(
                ip_src.contains(&i)
                    || ip_checksum.contains(&i)
                    || udp_src.contains(&i)
                    || flow.contains(&i),
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
