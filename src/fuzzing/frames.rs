//! `frame_ingress`: frames from a port, taken the way a worker takes them
//! (`switch/ingress.rs`, `switch/egress.rs`): the `virtio_net_hdr` parsed
//! and validated, `decide()` against a small FDB, then what the egress does
//! for a port without offloads and for a VTEP (the layout, the GSO cut, the
//! checksum completion, the VXLAN header, the flow hash), and every frame
//! offered to the GRO `Coalescer` as a decapsulated one would be.
//!
//! Input: one flags byte ([`flags`]), then the frames as
//! [`records`](super::records), each behind its 12-byte `virtio_net_hdr`
//! when [`flags::VNET`] is set.
//!
//! Invariants asserted besides "no panic": the segments of a cut
//! super-frame parse, carry valid checksums and together exactly its
//! payload; a super-frame the coalescer hands out validates and cuts back
//! into the segments merged into it (their payloads, in order); a parsed
//! `Repr` re-emits the bytes it came from (where it represents them all).

use std::cell::RefCell;

use super::records;
use crate::fdb::{Dest, Fdb, FdbConfig, NetId, PortId, VtepId};
use crate::metrics::DropReason;
use crate::offload::{self, Coalesced, Coalescer, Push, Segments, VnetHdr, F_DATA_VALID};
use crate::offload::{GSO_NONE, VNET_HDR_LEN};
use crate::switch::{decide, Decision, Ingress};
use crate::time::Millis;
use crate::wire::layout::{self, Ip, Layout, Proto};
use crate::wire::vxlan::{VxlanPacket, VxlanRepr, HEADER_LEN as VXLAN_HEADER_LEN};
use crate::wire::{
    flow_hash, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    MacAddr, TcpPacket, UdpPacket, UdpRepr,
};

/// The bits of the first input byte.
pub mod flags {
    /// Each frame comes behind a 12-byte `virtio_net_hdr` (an offload port).
    pub const VNET: u8 = 1;
    /// Checksums are made valid before a frame goes in ([`fix_checksums`]),
    /// so the paths behind a checksum check (GRO) are reachable.
    ///
    /// [`fix_checksums`]: super::fix_checksums
    pub const FIX: u8 = 2;
    /// Bits 2..4: the ingress port, 1..=4 (port 1 is station A's).
    pub const PORT_SHIFT: u8 = 2;
}

const NET: NetId = NetId(1);
/// Stations the FDB knows before the first frame: A and B on ports 1 and
/// 2, C behind VTEP 0.
pub const STATION_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
pub const STATION_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
pub const STATION_C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);
const VNI: u32 = 4242;
/// A port's largest frame: MTU 1500 plus the L2 overhead.
const PORT_MAX_FRAME: usize = 1500 + 18;
/// A VTEP's largest inner frame over a 1500-byte IPv4 underlay.
const VTEP_MAX_FRAME: usize = 1500 - 36 + 14;
/// At most this many frames per input (the worker's default budget).
const MAX_FRAMES: usize = 64;
/// As in `switch/egress.rs`: what a super-frame may be cut into, and the
/// scratch buffer the cut goes to.
const SEGMENT_LIMIT: usize = 256 * 1024;
const SEGMENT_SCRATCH: usize =
    SEGMENT_LIMIT + VXLAN_HEADER_LEN * (SEGMENT_LIMIT / (14 + 20 + 8) + 1);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; SEGMENT_SCRATCH]);
    static CHECK: RefCell<Vec<u8>> = RefCell::new(vec![0u8; SEGMENT_SCRATCH]);
    static GRO: RefCell<Coalescer> = RefCell::new(Coalescer::new());
}

/// What became of the frames of one input: each frame has exactly one
/// ingress outcome (`dropped` or `forwarded`); egress outcomes follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngressReport {
    pub frames: usize,
    /// Drops at ingress (the virtio_net_hdr, `decide()`), by reason.
    pub dropped: Vec<DropReason>,
    /// Frames `decide()` sent somewhere.
    pub forwarded: usize,
    /// Drops at an egress, by reason.
    pub egress_dropped: Vec<DropReason>,
    /// Segments of super-frames cut in software.
    pub segments: usize,
    /// Frames merged into a held super-frame (not the first of each).
    pub merged: usize,
    /// Super-frames of two or more segments the coalescer handed out.
    pub super_frames: usize,
}

/// Runs `data` (see the module's doc) through the ingress of a port.
pub fn frame_ingress(data: &[u8]) -> IngressReport {
    let mut report = IngressReport::default();
    let Some((&f, rest)) = data.split_first() else {
        return report;
    };
    let vnet_port = f & flags::VNET != 0;
    let port = PortId(1 + u32::from((f >> flags::PORT_SHIFT) & 3));
    // Fields added to the config later keep their defaults.
    #[allow(clippy::needless_update)]
    let fdb = Fdb::new(FdbConfig {
        ageing_ms: 5_000,
        max_entries: 16,
        max_per_dest: 8,
        ..FdbConfig::default()
    });
    for (mac, dest) in [
        (STATION_A, Dest::Local(PortId(1))),
        (STATION_B, Dest::Local(PortId(2))),
        (STATION_C, Dest::Remote(VtepId(0))),
    ] {
        fdb.add_static(NET, mac, dest, Millis(0))
            .expect("static entries fit an empty FDB");
    }
    let guard = fdb.pin();
    let mut frames: Vec<(VnetHdr, Vec<u8>)> = Vec::new();
    for (i, rec) in records(rest, MAX_FRAMES).into_iter().enumerate() {
        report.frames += 1;
        // The clock moves a second per frame: learned entries age out.
        let now = Millis(1_000 * (i as u64 + 1));
        let (vnet, frame) = if vnet_port {
            // What `port_turn` does with a read of `rec.len()` bytes.
            let hdr = rec.get(..VNET_HDR_LEN).map(VnetHdr::parse);
            match hdr {
                Some(Ok(h)) if h.validate(rec.len() - VNET_HDR_LEN).is_ok() => {
                    (h, &rec[VNET_HDR_LEN..])
                }
                _ => {
                    report.dropped.push(DropReason::BadOffload);
                    continue;
                }
            }
        } else {
            (VnetHdr::default(), rec)
        };
        let mut frame = frame.to_vec();
        if f & flags::FIX != 0 {
            fix_checksums(&mut frame);
        }
        wire_round_trips(&frame);
        let _ = flow_hash(&frame);
        let verdict = decide(&guard, Ingress::port(port, NET), &frame, now);
        match verdict.decision {
            Decision::Drop(why) => {
                report.dropped.push(why);
                continue;
            }
            Decision::Forward(_) => transmit(&frame, &vnet, &mut report),
            Decision::Encap(_) => encap(&frame, &vnet, &mut report),
            Decision::Flood => {
                transmit(&frame, &vnet, &mut report);
                encap(&frame, &vnet, &mut report);
            }
        }
        report.forwarded += 1;
        frames.push((vnet, frame));
    }
    coalesce(&frames, &mut report);
    assert_eq!(
        report.frames,
        report.dropped.len() + report.forwarded,
        "every frame has one ingress outcome"
    );
    report
}

/// The size of each segment a super-frame is cut into, or the frame's own
/// length (`Frame::wire_len`).
fn wire_len(frame: &[u8], vnet: &VnetHdr) -> usize {
    if !vnet.is_gso() {
        return frame.len();
    }
    match layout::parse(frame) {
        Ok(l) => l.headers_len() + usize::from(vnet.gso_size),
        Err(_) => 0,
    }
}

/// A port without offloads: a super-frame is cut, a partial checksum
/// completed (`Egress::transmit`).
fn transmit(frame: &[u8], vnet: &VnetHdr, report: &mut IngressReport) {
    if wire_len(frame, vnet) > PORT_MAX_FRAME {
        report.egress_dropped.push(DropReason::Oversize);
        return;
    }
    if vnet.is_gso() {
        SCRATCH.with_borrow_mut(|scratch| match cut(frame, vnet, scratch, 0) {
            Some(segs) if segs.total_len <= SEGMENT_LIMIT => {
                report.segments += segs.count;
            }
            _ => report.egress_dropped.push(DropReason::BadOffload),
        });
        return;
    }
    let mut copy = frame.to_vec();
    if offload::complete_checksum(&mut copy, vnet).is_err() {
        report.egress_dropped.push(DropReason::BadOffload);
    }
}

/// A VTEP: the same, each segment behind a VXLAN header that must read
/// back as written (`Egress::encap`).
fn encap(frame: &[u8], vnet: &VnetHdr, report: &mut IngressReport) {
    if wire_len(frame, vnet) > VTEP_MAX_FRAME {
        report.egress_dropped.push(DropReason::Oversize);
        return;
    }
    if vnet.is_gso() {
        SCRATCH.with_borrow_mut(|scratch| {
            let Some(segs) = cut(frame, vnet, scratch, VXLAN_HEADER_LEN) else {
                report.egress_dropped.push(DropReason::BadOffload);
                return;
            };
            for (head, _) in segs.slots_mut(scratch) {
                VxlanPacket::new_unchecked(head).set_header(VNI);
            }
            for d in scratch[..segs.total_len].chunks(segs.stride) {
                check_datagram(d, &d[VXLAN_HEADER_LEN..]);
            }
            report.segments += segs.count;
        });
        return;
    }
    let mut datagram = vec![0u8; VXLAN_HEADER_LEN];
    datagram.extend_from_slice(frame);
    if offload::complete_checksum(&mut datagram[VXLAN_HEADER_LEN..], vnet).is_err() {
        report.egress_dropped.push(DropReason::BadOffload);
        return;
    }
    VxlanPacket::new_unchecked(&mut datagram[..]).set_header(VNI);
    let inner = datagram[VXLAN_HEADER_LEN..].to_vec();
    check_datagram(&datagram, &inner);
}

fn check_datagram(datagram: &[u8], inner: &[u8]) {
    let p = VxlanPacket::new_checked(datagram).expect("a VXLAN datagram we built parses");
    assert_eq!(VxlanRepr::parse(&p), Ok(VxlanRepr { vni: VNI }));
    assert_eq!(p.payload(), inner, "the VXLAN payload is the inner frame");
}

/// Cuts a super-frame into `scratch` and checks the segments: each parses
/// with the super-frame's headers, is no longer than `gso_size` of payload,
/// carries valid checksums, and together they carry exactly its payload.
fn cut(frame: &[u8], vnet: &VnetHdr, scratch: &mut [u8], headroom: usize) -> Option<Segments> {
    let lay = layout::parse(frame).ok();
    let segs = offload::segment_parsed(frame, vnet, lay.as_ref(), scratch, headroom).ok()?;
    let lay = lay.expect("a super-frame that was cut has a layout");
    check_segments(
        &frame[lay.headers_len()..lay.end],
        &lay,
        usize::from(vnet.gso_size),
        segs.frames(scratch),
    );
    Some(segs)
}

fn check_segments<'a>(
    payload: &[u8],
    lay: &Layout,
    gso_size: usize,
    segments: impl Iterator<Item = &'a [u8]>,
) -> usize {
    let mut at = 0;
    let mut count = 0;
    for seg in segments {
        count += 1;
        let sl = layout::parse(seg).expect("a segment of a super-frame parses");
        assert_eq!(
            (sl.l3, sl.ip, sl.l4, sl.proto, sl.l4_len),
            (lay.l3, lay.ip, lay.l4, lay.proto, lay.l4_len),
            "a segment has the super-frame's headers"
        );
        assert_eq!(sl.end, seg.len(), "a segment has no padding");
        let p = &seg[sl.headers_len()..sl.end];
        assert!(p.len() <= gso_size, "a segment's payload fits gso_size");
        assert!(
            l4_checksum_ok(seg, &sl),
            "a segment carries valid checksums"
        );
        assert_eq!(
            payload.get(at..at + p.len()),
            Some(p),
            "segment {count} carries the super-frame's payload in order"
        );
        at += p.len();
    }
    assert_eq!(at, payload.len(), "the segments carry the whole payload");
    count
}

/// Whether the IPv4 header checksum (if any) and the TCP/UDP checksum of a
/// parsed frame verify (a UDP checksum of 0 is "none").
fn l4_checksum_ok(frame: &[u8], l: &Layout) -> bool {
    let l4 = &frame[l.l4..l.end];
    let proto = l.proto.protocol();
    let pseudo = match l.ip {
        Ip::V4 => {
            let ip = Ipv4Packet::new_unchecked(&frame[l.l3..l.end]);
            if !ip.verify_checksum() {
                return false;
            }
            ip.pseudo_header_sum(proto, l4.len())
        }
        Ip::V6 => Ipv6Packet::new_unchecked(&frame[l.l3..l.end]).pseudo_header_sum(proto, l4.len()),
    };
    match l.proto {
        Proto::Tcp => TcpPacket::new_unchecked(l4).verify_checksum(pseudo),
        Proto::Udp => UdpPacket::new_unchecked(l4).verify_checksum(pseudo),
    }
}

/// Offers every forwarded frame without GSO to the coalescer, in order,
/// as `Egress::coalesce` does for decapsulated frames.
fn coalesce(frames: &[(VnetHdr, Vec<u8>)], report: &mut IngressReport) {
    let plain: Vec<&[u8]> = frames
        .iter()
        .filter(|(vnet, _)| vnet.gso_type == GSO_NONE)
        .map(|(_, f)| f.as_slice())
        .collect();
    let (merged, super_frames) = coalesce_all(&plain);
    report.merged += merged;
    report.super_frames += super_frames;
}

/// Pushes `frames` through a coalescer and checks what it hands out
/// against what went in; returns (frames merged, super-frames handed out).
pub(super) fn coalesce_all<F: AsRef<[u8]>>(frames: &[F]) -> (usize, usize) {
    GRO.with_borrow_mut(|gro| {
        let _ = gro.finish();
        let (mut merged_n, mut supers) = (0, 0);
        let mut merged: Vec<&[u8]> = Vec::new();
        for f in frames {
            let f = f.as_ref();
            match gro.push(f) {
                Push::Started => merged = vec![f],
                Push::Merged => {
                    merged.push(f);
                    merged_n += 1;
                }
                Push::Flush => {
                    supers += check_coalesced(gro.finish(), &merged);
                    merged.clear();
                    match gro.push(f) {
                        Push::Started => merged.push(f),
                        Push::Bypass => {}
                        other => panic!("an empty coalescer answered {other:?}"),
                    }
                }
                Push::Bypass => assert!(gro.is_empty(), "Bypass with a held super-frame"),
            }
            assert_eq!(gro.segments(), merged.len());
        }
        supers += check_coalesced(gro.finish(), &merged);
        (merged_n, supers)
    })
}

/// Checks a coalescer's output; 1 for a super-frame, else 0.
fn check_coalesced(c: Option<Coalesced<'_>>, merged: &[&[u8]]) -> usize {
    let Some(c) = c else {
        assert!(
            merged.is_empty(),
            "the coalescer lost {} frames",
            merged.len()
        );
        return 0;
    };
    assert_eq!(
        VnetHdr::parse(c.with_vnet_hdr()),
        Ok(c.hdr),
        "the virtio_net_hdr written is the one returned"
    );
    match merged {
        [] => panic!("the coalescer handed out a frame it was never given"),
        [one] => {
            assert_eq!(c.frame(), *one, "a lone segment comes back unchanged");
            assert_eq!((c.hdr.flags, c.hdr.is_gso()), (F_DATA_VALID, false));
            0
        }
        _ => {
            let frame = c.frame();
            c.hdr
                .validate(frame.len())
                .expect("a merged super-frame has a valid virtio_net_hdr");
            let lay = layout::parse(frame).expect("a merged super-frame parses");
            let payload: Vec<u8> = merged
                .iter()
                .flat_map(|m| {
                    let l = layout::parse(m).expect("a merged segment parses");
                    m[l.headers_len()..l.end].iter().copied()
                })
                .collect();
            assert_eq!(&frame[lay.headers_len()..lay.end], &payload[..]);
            CHECK.with_borrow_mut(|scratch| {
                let segs = offload::segment(frame, &c.hdr, scratch, 0)
                    .expect("a merged super-frame cuts back into segments");
                let n = check_segments(
                    &payload,
                    &lay,
                    usize::from(c.hdr.gso_size),
                    segs.frames(scratch),
                );
                assert_eq!(n, merged.len(), "as many segments as were merged");
            });
            1
        }
    }
}

/// Makes the IPv4 header checksum and the TCP, UDP, ICMP or ICMPv6
/// checksum of an untagged or tagged frame valid, where the frame has them
/// all; leaves anything else as it is.
pub fn fix_checksums(frame: &mut [u8]) {
    let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
        return;
    };
    let (l3, ethertype) = (eth.payload_offset(), eth.inner_ethertype());
    let ip = &mut frame[l3..];
    match ethertype {
        EtherType::Ipv4 => {
            let Ok(mut p) = Ipv4Packet::new_checked(&mut ip[..]) else {
                return;
            };
            p.fill_checksum();
            let (proto, hl, total) = (p.protocol(), p.header_len(), usize::from(p.total_len()));
            let pseudo = p.pseudo_header_sum(proto, total - hl);
            fill_l4(&mut ip[hl..total], proto, pseudo);
        }
        EtherType::Ipv6 => {
            let Ok(p) = Ipv6Packet::new_checked(&ip[..]) else {
                return;
            };
            let (proto, len) = (p.next_header(), usize::from(p.payload_len()));
            let pseudo = p.pseudo_header_sum(proto, len);
            fill_l4(&mut ip[40..40 + len], proto, pseudo);
        }
        _ => {}
    }
}

fn fill_l4(l4: &mut [u8], proto: IpProtocol, pseudo: u64) {
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut t) = TcpPacket::new_checked(l4) {
                t.fill_checksum(pseudo);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut u) = UdpPacket::new_checked(l4) {
                u.fill_checksum(pseudo);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut i) = Icmpv4Packet::new_checked(l4) {
                i.fill_checksum();
            }
        }
        IpProtocol::Icmpv6 => {
            if let Ok(mut i) = Icmpv6Packet::new_checked(l4) {
                i.fill_checksum(pseudo);
            }
        }
        _ => {}
    }
}

/// Parses `frame` with every `Repr` that applies and checks that each
/// re-emits the bytes it was parsed from, where it represents them all.
pub fn wire_round_trips(frame: &[u8]) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    if let Ok(r) = EthernetRepr::parse(&eth) {
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        assert_eq!(out, frame[..out.len()], "EthernetRepr round trip");
    }
    let body = eth.payload();
    match eth.inner_ethertype() {
        EtherType::Arp => {
            let Ok(p) = ArpPacket::new_checked(body) else {
                return;
            };
            if let Ok(r) = ArpRepr::parse(&p) {
                let mut out = vec![0u8; r.buffer_len()];
                r.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
                assert_eq!(out, body[..out.len()], "ArpRepr round trip");
            }
        }
        EtherType::Ipv4 => {
            let Ok(p) = Ipv4Packet::new_checked(body) else {
                return;
            };
            let Ok(r) = Ipv4Repr::parse(&p) else {
                return;
            };
            // The Repr has no options and no reserved flag bit.
            if p.header_len() == 20 && p.flags_frag() & 0x8000 == 0 {
                let mut out = vec![0u8; r.buffer_len()];
                r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
                assert_eq!(out, body[..out.len()], "Ipv4Repr round trip");
            }
            let l4 = p.payload();
            match r.protocol {
                IpProtocol::Icmp => icmpv4_round_trip(l4),
                IpProtocol::Udp => udp_round_trip(l4),
                _ => {}
            }
        }
        EtherType::Ipv6 => {
            let Ok(p) = Ipv6Packet::new_checked(body) else {
                return;
            };
            let Ok(r) = Ipv6Repr::parse(&p) else {
                return;
            };
            // The Repr has no traffic class and no flow label.
            if p.traffic_class() == 0 && p.flow_label() == 0 {
                let mut out = vec![0u8; r.buffer_len()];
                r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
                assert_eq!(out, body[..out.len()], "Ipv6Repr round trip");
            }
            let l4 = p.payload();
            match r.next_header {
                IpProtocol::Icmpv6 => icmpv6_round_trip(&r, l4),
                IpProtocol::Udp => udp_round_trip(l4),
                _ => {}
            }
        }
        _ => {}
    }
}

fn icmpv4_round_trip(l4: &[u8]) {
    let Ok(p) = Icmpv4Packet::new_checked(l4) else {
        return;
    };
    if let Ok(r) = Icmpv4Repr::parse(&p) {
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, l4, "Icmpv4Repr round trip");
    }
}

fn icmpv6_round_trip(ip: &Ipv6Repr, l4: &[u8]) {
    let Ok(p) = Icmpv6Packet::new_checked(l4) else {
        return;
    };
    let Ok(r) = Icmpv6Repr::parse(&ip.src_addr, &ip.dst_addr, &p) else {
        return;
    };
    // The Repr keeps one link-layer option and an advertisement's flags;
    // a solicitation's reserved word (ignored on receipt, RFC 4861 4.3)
    // is emitted as zero.
    let exact = match r {
        Icmpv6Repr::EchoRequest { .. } | Icmpv6Repr::EchoReply { .. } => true,
        Icmpv6Repr::NeighborSolicit { .. } => l4.len() == r.buffer_len() && l4[4..8] == [0; 4],
        Icmpv6Repr::NeighborAdvert { .. } => l4.len() == r.buffer_len() && l4[5..8] == [0; 3],
    };
    if exact {
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(
            &ip.src_addr,
            &ip.dst_addr,
            &mut Icmpv6Packet::new_unchecked(&mut out[..]),
        );
        assert_eq!(out, l4, "Icmpv6Repr round trip");
    }
}

fn udp_round_trip(l4: &[u8]) {
    let Ok(p) = UdpPacket::new_checked(l4) else {
        return;
    };
    if let Ok(r) = UdpRepr::parse(&p) {
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(
            &mut UdpPacket::new_unchecked(&mut out[..]),
            p.payload().len(),
        );
        assert_eq!(out[..4], l4[..4], "UdpRepr round trip (ports)");
    }
}
