//! Ring ports (`vxswitch::ports::ring`) on the two ends of a veth pair in a
//! namespace of the test's own: frames and GSO super-frames cross both ways
//! byte for byte, a VLAN tag the veth took off comes back, a full transmit
//! ring is counted and never blocks, a full receive ring is counted by the
//! kernel, and a frame longer than a slot is skipped and counted, never
//! returned. Needs root (CI runs as root).

mod support;

use std::time::{Duration, Instant};

use support::{can_run, Netns};
use vxswitch::ports::ring::{self, RingSpec, RxRing, TxRing, VlanTag, VNET_HDR_LEN};

/// A namespace with IPv6 off (no stray ND/MLD frames) and a veth pair
/// `p0`-`p1` in it, both up.
fn veth_pair() -> Netns {
    let ns = Netns::new("ring");
    ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    ns.ip_ok(&["link", "add", "p0", "type", "veth", "peer", "name", "p1"]);
    ns.ip_ok(&["link", "set", "p0", "up"]);
    ns.ip_ok(&["link", "set", "p1", "up"]);
    ns
}

fn open(ns: &Netns, dev: &str, spec: &RingSpec) -> (RxRing, TxRing) {
    ring::open(&ns.handle(), dev, spec)
        .unwrap_or_else(|e| panic!("open rings on {dev} in {}: {e}", ns.name))
}

/// EtherType of the test's plain frames (IEEE local experimental).
const ETHERTYPE: u16 = 0x88b5;

/// A plain frame of `len` bytes whose payload starts with `seq`.
fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(31).wrapping_add(seq) as u8;
    }
    f
}

/// A TCP/IPv4 GSO super-frame of `payload` bytes with its 10-byte
/// virtio_net_hdr (TCPV4, MSS 1448, checksum to complete at offset 34+16).
fn super_frame(payload: usize, seq: u8) -> (Vec<u8>, Vec<u8>) {
    let mut f = vec![0u8; 54 + payload];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&u16::try_from(20 + 20 + payload).unwrap().to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i as u8) ^ seq;
    }
    let mut vnet = vec![0u8; VNET_HDR_LEN];
    vnet[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
    vnet[1] = 1; // VIRTIO_NET_HDR_GSO_TCPV4
    vnet[2..4].copy_from_slice(&54u16.to_le_bytes());
    vnet[4..6].copy_from_slice(&1448u16.to_le_bytes());
    vnet[6..8].copy_from_slice(&34u16.to_le_bytes());
    vnet[8..10].copy_from_slice(&16u16.to_le_bytes());
    (vnet, f)
}

/// Commits `frame` with header `vnet` to `tx`; false when the ring is full.
fn send(tx: &mut TxRing, vnet: &[u8], frame: &[u8]) -> bool {
    let Some(mut slot) = tx.slot() else {
        return false;
    };
    slot.vnet_mut().copy_from_slice(vnet);
    slot.frame_mut()[..frame.len()].copy_from_slice(frame);
    slot.commit(frame.len());
    true
}

/// A received frame, copied out: (vnet header, frame as `copy_to` puts it
/// back together, i.e. with any stripped VLAN tag reinserted, tag).
type Got = (Vec<u8>, Vec<u8>, Option<VlanTag>);

/// Receives up to `n` of the test's frames (plain ones with ETHERTYPE, or
/// IPv4) on `rx` within 5 s.
fn receive(rx: &mut RxRing, n: usize) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if !rx.ready() {
            rx.wait(Duration::from_millis(100)).expect("poll the ring");
            continue;
        }
        while let Some(f) = rx.next() {
            let mut buf = vec![0u8; f.len_with(VNET_HDR_LEN)];
            let total = f.copy_to(&mut buf, VNET_HDR_LEN).expect("copy out");
            assert_eq!(total, buf.len());
            let frame = buf.split_off(VNET_HDR_LEN);
            // Only the test's own frames (a stray one has another type).
            let et = u16::from_be_bytes([frame[12], frame[13]]);
            let inner = if et == 0x8100 {
                u16::from_be_bytes([frame[16], frame[17]])
            } else {
                et
            };
            if inner == ETHERTYPE || inner == 0x0800 {
                got.push((buf, frame, f.vlan));
            }
        }
        rx.release();
    }
    got
}

#[test]
fn frames_and_super_frames_cross_both_ways_byte_exact() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = veth_pair();
    let spec = RingSpec::super_frames();
    let mut ends = [open(&ns, "p0", &spec), open(&ns, "p1", &spec)];
    assert_eq!(ends[0].0.vnet_len(), VNET_HDR_LEN);
    for (from, to) in [(0usize, 1usize), (1, 0)] {
        let sizes = [60usize, 61, 64, 128, 577, 1000, 1513, 1514];
        let sent: Vec<Vec<u8>> = (0..40u32)
            .map(|i| frame(i, sizes[i as usize % sizes.len()]))
            .collect();
        let no_vnet = [0u8; VNET_HDR_LEN];
        for f in &sent {
            assert!(send(&mut ends[from].1, &no_vnet, f), "transmit ring full");
        }
        let (vnet, sf) = super_frame(30_000, from as u8);
        assert!(send(&mut ends[from].1, &vnet, &sf));
        ends[from].1.flush().expect("flush");
        let got = receive(&mut ends[to].0, sent.len() + 1);
        assert_eq!(got.len(), sent.len() + 1, "p{from} -> p{to}: frames lost");
        for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(&g.1, s, "p{from} -> p{to}: frame {i} differs");
        }
        let (gv, gf, _) = &got[sent.len()];
        assert_eq!(gf, &sf, "p{from} -> p{to}: the super-frame differs");
        // GSO kind, header length, MSS and the checksum to complete, as sent.
        assert_eq!(&gv[..10], &vnet[..], "p{from} -> p{to}: virtio_net_hdr");
        let c = ring::RingCounters::of(&ends[to].0, &ends[from].1);
        assert_eq!(c.tx_frames, sent.len() as u64 + 1);
        assert_eq!(c.rx_frames, got.len() as u64);
        assert_eq!(
            (c.rx_truncated, c.rx_malformed, c.rx_kernel_drops),
            (0, 0, 0)
        );
    }
}

#[test]
fn a_vlan_tag_the_veth_took_off_is_put_back() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = veth_pair();
    let spec = RingSpec::super_frames();
    let (_rx0, mut tx0) = open(&ns, "p0", &spec);
    let (mut rx1, _tx1) = open(&ns, "p1", &spec);
    let plain = frame(7, 100);
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a]); // PCP 1, VID 10
    tagged.extend_from_slice(&plain[12..]);
    assert!(send(&mut tx0, &[0; VNET_HDR_LEN], &tagged));
    tx0.flush().unwrap();
    let got = receive(&mut rx1, 1);
    assert_eq!(got.len(), 1, "the tagged frame did not arrive");
    assert_eq!(
        got[0].2,
        Some(VlanTag {
            tpid: 0x8100,
            tci: 0x200a
        }),
        "the veth should have stripped the tag into metadata"
    );
    assert_eq!(got[0].1, tagged, "copy_to must put the tag back in place");
}

#[test]
fn a_full_transmit_ring_is_counted_not_blocked() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = veth_pair();
    let spec = RingSpec {
        rx_frames: 32,
        tx_frames: 32,
        ..RingSpec::small_frames()
    };
    let (_rx0, mut tx0) = open(&ns, "p0", &spec);
    let (mut rx1, _tx1) = open(&ns, "p1", &spec);
    let slots = tx0.frames();
    let f = frame(1, 60);
    for _ in 0..slots {
        assert!(send(&mut tx0, &[], &f));
    }
    // Every slot is committed and none flushed: the next frames are
    // refused at once and counted.
    let t = Instant::now();
    for _ in 0..5 {
        assert!(!send(&mut tx0, &[], &f));
    }
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "a full ring blocked"
    );
    assert_eq!(tx0.counters().tx_ring_full, 5);
    assert_eq!(tx0.counters().tx_frames, slots as u64);
    // After a flush the frames leave and the slots come free again.
    tx0.flush().unwrap();
    let got = receive(&mut rx1, slots);
    assert_eq!(got.len(), slots);
    assert!(
        support::wait_until(Duration::from_secs(5), || {
            tx0.flush().unwrap();
            send(&mut tx0, &[], &f)
        }),
        "the transmit ring never came free after a flush"
    );
}

#[test]
fn a_full_receive_ring_is_counted_by_the_kernel() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = veth_pair();
    let spec = RingSpec {
        rx_frames: 32,
        tx_frames: 256,
        ..RingSpec::small_frames()
    };
    let (_rx0, mut tx0) = open(&ns, "p0", &spec);
    let (rx1, _tx1) = open(&ns, "p1", &spec);
    let room = rx1.frames();
    // Nobody reads p1: the ring fills and the kernel drops the rest.
    for i in 0..(room as u32 + 20) {
        assert!(send(&mut tx0, &[], &frame(i, 60)));
    }
    tx0.flush().unwrap();
    let mut drops = 0;
    assert!(
        support::wait_until(Duration::from_secs(5), || {
            drops += rx1.counters().rx_kernel_drops;
            drops >= 20
        }),
        "the kernel counted {drops} drops, expected 20"
    );
}

#[test]
fn a_frame_longer_than_a_slot_is_skipped_and_counted() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = veth_pair();
    // p0 sends a super-frame; p1 has 2 KiB slots and no virtio_net_hdr,
    // so the kernel can put only its first part in a slot.
    let (_rx0, mut tx0) = open(&ns, "p0", &RingSpec::super_frames());
    let (mut rx1, _tx1) = open(&ns, "p1", &RingSpec::small_frames());
    let (vnet, sf) = super_frame(20_000, 0);
    assert!(send(&mut tx0, &vnet, &sf));
    // And a plain frame after it, which must arrive whole.
    let after = frame(2, 1514);
    assert!(send(&mut tx0, &[0; VNET_HDR_LEN], &after));
    tx0.flush().unwrap();
    let got = receive(&mut rx1, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, after);
    let c = rx1.counters();
    assert_eq!(c.rx_truncated, 1, "{c:?}");
    assert_eq!(c.rx_frames, 1, "{c:?}");
}
