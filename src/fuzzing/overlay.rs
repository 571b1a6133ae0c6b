//! `vxlan_decap`: VXLAN datagrams from the underlay, the way a worker's
//! `tunnel_turn` takes them; `gateway_responder`: frames into a network's
//! `switch` gateway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::frames::{self, fix_checksums, wire_round_trips};
use super::records;
use crate::fdb::{Dest, Fdb, FdbConfig, NetId, PortId};
use crate::gateway::suppress::{Suppress, MAX_REPLY};
use crate::gateway::{Binding, GatewayStats, NeighTable, Outcome, Responder, SuppressStats};
use crate::metrics::PortStats;
use crate::switch::{decide, Decision, Ingress};
use crate::time::Millis;
use crate::vxlan::vteps::{IdPool, VtepTable};
use crate::vxlan::{decap, Train, VtepInfo, VxlanConfig, VxlanDrop, VxlanStats};
use crate::wire::vxlan::{VxlanPacket, HEADER_LEN as VXLAN_HEADER_LEN};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Repr,
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, MacAddr,
};

const NET: NetId = NetId(2);
const VNI: u32 = 4242;
/// The configured VTEP of the network.
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// At most this many trains per input.
const MAX_TRAINS: usize = 16;

/// What became of the datagrams of one input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecapReport {
    pub datagrams: usize,
    /// Datagrams whose inner frame went on to `decide()`.
    pub decapped: usize,
    pub dropped: Vec<VxlanDrop>,
    /// VTEPs learned from senders.
    pub learned: usize,
    /// Decapsulated frames merged into a super-frame (not the first of each).
    pub merged: usize,
    pub super_frames: usize,
}

/// The sender of a train: 0 is the configured VTEP, others strangers
/// (IPv6 ones with the high bit set).
fn sender(sel: u8) -> IpAddr {
    match sel {
        0 => PEER,
        s if s & 0x80 != 0 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(s))),
        s => IpAddr::V4(Ipv4Addr::new(198, 51, 100, s)),
    }
}

/// Runs trains of datagrams through decapsulation. Input: a flags byte
/// (bit 0: the network learns VTEPs), then [`records`], each a train:
/// the sender ([`sender`]), a `u16` GRO segment size (big-endian; 0 is
/// one datagram), the datagrams end to end.
///
/// Asserted: each datagram is counted once, as a drop under one
/// [`VxlanDrop`] reason or as a frame received from its VTEP; a datagram
/// that passes yields its inner frame, in its own network; no more VTEPs
/// are learned than the configured limit.
pub fn vxlan_decap(data: &[u8]) -> DecapReport {
    let mut report = DecapReport::default();
    let Some((&f, rest)) = data.split_first() else {
        return report;
    };
    let cfg = VxlanConfig {
        max_learned_vteps: 4,
        ..VxlanConfig::default()
    };
    let ids = Arc::new(IdPool::default());
    let mut vteps = VtepTable::new(cfg, ids.clone());
    vteps
        .set_network(NET, Some(VNI), f & 1 != 0)
        .expect("an empty table has every VNI free");
    vteps
        .add(&VtepInfo {
            id: ids.alloc(),
            net: NET,
            addr: SocketAddr::new(PEER, cfg.port),
            dynamic: false,
            stats: Arc::new(PortStats::default()),
        })
        .expect("the network has a VNI");
    let stats = VxlanStats::default();
    let fdb = Fdb::new(FdbConfig {
        max_entries: 16,
        max_per_dest: 8,
        ..FdbConfig::default()
    });
    fdb.add_static(NET, frames::STATION_A, Dest::Local(PortId(1)), Millis(0))
        .expect("a static entry fits an empty FDB");
    let guard = fdb.pin();
    let mut forwarded: Vec<Vec<u8>> = Vec::new();
    for (i, rec) in records(rest, MAX_TRAINS).into_iter().enumerate() {
        let now = Millis(1_000 * (i as u64 + 1));
        let (from, segment, train) = match rec {
            [s, a, b, train @ ..] => (sender(*s), usize::from(u16::from_be_bytes([*a, *b])), train),
            _ => continue,
        };
        let train_of = Train {
            len: train.len(),
            segment: if segment == 0 {
                train.len().max(1)
            } else {
                segment
            },
            from,
        };
        for (off, n) in train_of.datagrams() {
            report.datagrams += 1;
            let d = &train[off..off + n];
            let before = drops(&stats);
            let Some(got) = decap(&mut vteps, &stats, d, from, Millis(report.datagrams as u64))
            else {
                let grew: Vec<VxlanDrop> = VxlanDrop::ALL
                    .into_iter()
                    .zip(drops(&stats).iter().zip(&before))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(w, (a, b))| {
                        assert_eq!(*a, b + 1, "a refused datagram is counted once");
                        w
                    })
                    .collect();
                assert_eq!(grew.len(), 1, "a refused datagram has one reason: {grew:?}");
                report.dropped.push(grew[0]);
                continue;
            };
            assert_eq!(drops(&stats), before, "a passed datagram is no drop");
            assert_eq!(got.net, NET, "a datagram lands in its VNI's network");
            let vtep = vteps.get(got.vtep).expect("the VTEP decap names exists");
            assert_eq!(vtep.net, NET);
            let hdr = VxlanPacket::new_checked(d).expect("a datagram that passed has a header");
            let inner = &d[VXLAN_HEADER_LEN..];
            assert_eq!(hdr.payload(), inner, "the inner frame follows the header");
            report.decapped += 1;
            let verdict = decide(&guard, Ingress::vtep(got.vtep, got.net), inner, now);
            assert!(
                !matches!(verdict.decision, Decision::Encap(_)),
                "nothing from the overlay goes back into it"
            );
            if let Decision::Forward(_) | Decision::Flood = verdict.decision {
                forwarded.push(inner.to_vec());
            }
        }
        report.learned += vteps.learned().count();
    }
    assert!(
        report.learned <= cfg.max_learned_vteps,
        "learned over the limit"
    );
    let received: u64 = (0..16u32)
        .filter_map(|i| vteps.get(crate::fdb::VtepId(i)))
        .map(|v| v.stats.rx_frames.get())
        .sum();
    assert_eq!(
        received, report.decapped as u64,
        "each frame counted on its VTEP"
    );
    let (merged, super_frames) = frames::coalesce_all(&forwarded);
    report.merged = merged;
    report.super_frames = super_frames;
    report
}

fn drops(stats: &VxlanStats) -> Vec<u64> {
    VxlanDrop::ALL.iter().map(|&w| stats.drops(w)).collect()
}

/// The gateway's MAC and addresses.
pub const GATEWAY_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);

/// What the responder did with the frames of one input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayReport {
    pub frames: usize,
    pub replies: usize,
    pub ignored: usize,
    pub unanswered: usize,
    /// The same frames through ARP/ND suppression (a table binding the
    /// gateway's address and the station's): requests it answered.
    pub suppressed: usize,
}

/// Runs frames into a `switch` gateway. Input: a flags byte (bit 0: the
/// gateway is IPv6; bit 1: checksums are made valid first; bit 2: the
/// output buffer is 64 bytes instead of the documented bound), then the
/// frames as [`records`].
///
/// Asserted: each frame is counted in exactly one of the responder's
/// counters; a reply fits the documented bound (the request's length or
/// 128 bytes), comes from the gateway's MAC to the asker, and parses as
/// the reply it claims to be (checksums included).
pub fn gateway_responder(data: &[u8]) -> GatewayReport {
    let mut report = GatewayReport::default();
    let Some((&f, rest)) = data.split_first() else {
        return report;
    };
    let ip = if f & 1 != 0 {
        IpAddr::V6(GATEWAY_V6)
    } else {
        IpAddr::V4(GATEWAY_V4)
    };
    let stats = Arc::new(GatewayStats::default());
    let r = Responder::new(GATEWAY_MAC, ip, stats.clone());
    let neigh_stats = Arc::new(SuppressStats::default());
    let neigh = NeighTable::new(
        [(
            ip,
            Binding {
                mac: GATEWAY_MAC,
                router: true,
            },
        )],
        neigh_stats.clone(),
    );
    for rec in records(rest, 64) {
        report.frames += 1;
        let mut frame = rec.to_vec();
        if f & 2 != 0 {
            fix_checksums(&mut frame);
        }
        let bound = frame.len().max(128);
        let mut out = vec![0u8; if f & 4 != 0 { 64 } else { bound }];
        let before = counted(&stats);
        match r.answer(&frame, &mut out) {
            Outcome::Reply(n) => {
                report.replies += 1;
                assert!(n <= out.len() && n <= bound, "a reply of {n} bytes");
                check_reply(&frame, &out[..n], ip);
            }
            Outcome::Ignored => report.ignored += 1,
            Outcome::Unanswered => report.unanswered += 1,
        }
        assert_eq!(counted(&stats), before + 1, "each frame is counted once");
        suppress(&neigh, &neigh_stats, &frame, ip, &mut report);
    }
    report
}

/// One frame through suppression: counted at most once (not at all when
/// it is no request), a reply within [`MAX_REPLY`] from the bound MAC that
/// parses as what it claims.
fn suppress(
    neigh: &NeighTable,
    stats: &SuppressStats,
    frame: &[u8],
    ip: IpAddr,
    report: &mut GatewayReport,
) {
    let sum = || {
        let s = stats.snapshot();
        s.answered + s.missed + s.ignored
    };
    let before = sum();
    let mut out = [0u8; MAX_REPLY];
    let got = neigh.answer(frame, &mut out);
    let expected = if got == Suppress::NotARequest { 0 } else { 1 };
    assert_eq!(
        sum(),
        before + expected,
        "a request is counted once: {got:?}"
    );
    if let Suppress::Reply(n) = got {
        report.suppressed += 1;
        assert!(n <= MAX_REPLY, "a reply of {n} bytes");
        check_reply(frame, &out[..n], ip);
    }
}

fn counted(s: &GatewayStats) -> u64 {
    [
        &s.neighbor_replies,
        &s.echo_replies,
        &s.ignored,
        &s.unanswered,
    ]
    .iter()
    .map(|c| c.load(Ordering::Relaxed))
    .sum()
}

fn check_reply(request: &[u8], reply: &[u8], gw: IpAddr) {
    wire_round_trips(reply);
    let req = EthernetFrame::new_checked(request).expect("an answered request is a frame");
    let eth = EthernetFrame::new_checked(reply).expect("a reply is a frame");
    assert_eq!(
        eth.src_addr(),
        GATEWAY_MAC,
        "a reply comes from the gateway"
    );
    assert!(reply.len() >= 60, "a reply is padded to 60 bytes");
    match (eth.ethertype(), gw) {
        (EtherType::Arp, IpAddr::V4(gw)) => {
            let r = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).expect("ARP"))
                .expect("a reply parses as ARP");
            assert_eq!(r.operation, ArpOperation::Reply);
            assert_eq!(
                (r.source_hardware_addr, r.source_protocol_addr),
                (GATEWAY_MAC, gw)
            );
            // To the asker's ARP sender address, as RFC 826 and Linux do.
            let asked = ArpRepr::parse(&ArpPacket::new_checked(req.payload()).expect("ARP"))
                .expect("an answered request parses as ARP");
            assert_eq!(
                eth.dst_addr(),
                asked.source_hardware_addr,
                "a reply goes to the asker"
            );
            assert_eq!(r.target_hardware_addr, asked.source_hardware_addr);
        }
        (EtherType::Ipv4, IpAddr::V4(gw)) => {
            assert_eq!(eth.dst_addr(), req.src_addr(), "a reply goes to the asker");
            let p = Ipv4Packet::new_checked(eth.payload()).expect("IPv4");
            let r = Ipv4Repr::parse(&p).expect("a reply's IPv4 header verifies");
            assert_eq!((r.src_addr, r.protocol), (gw, IpProtocol::Icmp));
            let m = Icmpv4Packet::new_checked(p.payload()).expect("ICMP");
            assert!(
                matches!(Icmpv4Repr::parse(&m), Ok(Icmpv4Repr::EchoReply { .. })),
                "an IPv4 reply is an echo reply that verifies"
            );
        }
        (EtherType::Ipv6, IpAddr::V6(gw)) => {
            let p = Ipv6Packet::new_checked(eth.payload()).expect("IPv6");
            let r = Ipv6Repr::parse(&p).expect("IPv6 header");
            assert_eq!((r.src_addr, r.next_header), (gw, IpProtocol::Icmpv6));
            let m = Icmpv6Packet::new_checked(p.payload()).expect("ICMPv6");
            match Icmpv6Repr::parse(&r.src_addr, &r.dst_addr, &m) {
                Ok(Icmpv6Repr::EchoReply { .. }) => {
                    assert_eq!(eth.dst_addr(), req.src_addr(), "a reply goes to the asker");
                }
                Ok(Icmpv6Repr::NeighborAdvert { target, lladdr, .. }) => {
                    assert_eq!((target, lladdr), (gw, Some(GATEWAY_MAC)));
                    // To the solicitation's source link-layer address when
                    // it carries one (RFC 4861 7.2.4), as Linux does.
                    assert_eq!(
                        eth.dst_addr(),
                        solicited_by(&req),
                        "a reply goes to the asker"
                    );
                }
                other => panic!("an IPv6 reply is {other:?}"),
            }
        }
        (t, _) => panic!("a reply of EtherType {t:?}"),
    }
}

/// Where a neighbour advertisement answering `req` (a solicitation) goes:
/// all nodes for duplicate address detection (no source address), else
/// its source link-layer address option, else the frame's source.
fn solicited_by(req: &EthernetFrame<&[u8]>) -> MacAddr {
    let ll = Ipv6Packet::new_checked(req.payload()).ok().and_then(|p| {
        let r = Ipv6Repr::parse(&p).ok()?;
        if r.src_addr.is_unspecified() {
            return Some(MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        }
        let m = Icmpv6Packet::new_checked(p.payload()).ok()?;
        match Icmpv6Repr::parse(&r.src_addr, &r.dst_addr, &m).ok()? {
            Icmpv6Repr::NeighborSolicit { lladdr, .. } => lladdr,
            _ => None,
        }
    });
    ll.unwrap_or(req.src_addr())
}
