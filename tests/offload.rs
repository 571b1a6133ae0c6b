//! Software offloads (src/offload): checksum completion and GSO
//! segmentation of what a vnet_hdr TAP hands the switch, checked against an
//! independent implementation (etherparse's header parsing and checksum
//! calculation, plus a plain 16-bit reference sum written here), over every
//! combination of IP version, VLAN tags, TCP options, MSS and payload size,
//! and every refusal path. No root needed.

use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use vxswitch::offload::{
    complete_checksum, segment, Coalescer, OffloadError, Push, Segments, VnetHdr, F_DATA_VALID,
    F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4, VNET_HDR_LEN,
};
use vxswitch::wire::tcp::flags as tcp_flags;

mod offload_frames;

use offload_frames::*;

fn poisoned() -> Vec<u8> {
    vec![POISON; SCRATCH]
}

/// Checks every segment with etherparse and the reference sum.
fn check_segments(s: &Spec, b: &Built, mss: usize, segs: &Segments, out: &[u8]) {
    let payload = &b.frame[b.hlen..];
    let expect_count = payload.len().div_ceil(mss).max(1);
    assert_eq!(segs.count, expect_count, "{s:?} mss {mss}");
    assert_eq!(segs.stride, segs.headroom + b.hlen + payload.len().min(mss));
    assert_eq!(
        segs.total_len,
        (segs.count - 1) * segs.stride + segs.headroom + segs.last_len
    );
    assert!(out[segs.total_len..].iter().take(64).all(|&x| x == POISON));
    let mut seen = 0;
    for (i, seg) in segs.frames(out).enumerate() {
        let head = &out[i * segs.stride..i * segs.stride + segs.headroom];
        assert!(head.iter().all(|&x| x == POISON), "headroom written");
        let last = i + 1 == segs.count;
        let chunk = &payload[i * mss..payload.len().min((i + 1) * mss)];
        assert_eq!(seg.len(), b.hlen + chunk.len());
        if last {
            assert_eq!(seg.len(), segs.last_len);
        } else {
            assert_eq!(seg.len(), segs.seg_len());
        }
        assert_eq!(&seg[..b.l3], &b.frame[..b.l3], "L2 header copied");
        let h = PacketHeaders::from_ethernet_slice(seg).expect("etherparse parses the segment");
        assert_eq!(h.link_exts.len(), s.vlans);
        assert_eq!(h.payload.slice(), chunk, "segment {i} payload");
        let (ip4, ip6) = match h.net.as_ref().unwrap() {
            NetHeaders::Ipv4(ip, _) => {
                assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IPv4 csum");
                assert_eq!(usize::from(ip.total_len), seg.len() - b.l3);
                assert_eq!(ip.identification, s.ip_id.wrapping_add(i as u16));
                assert_eq!(ip.options.as_slice(), &s.ip4_opts[..]);
                assert!(ip.dont_fragment);
                (Some(ip), None)
            }
            NetHeaders::Ipv6(ip, _) => {
                assert_eq!(usize::from(ip.payload_length), seg.len() - b.l3 - 40);
                (None, Some(ip))
            }
            NetHeaders::Arp(_) => unreachable!(),
        };
        match h.transport.as_ref().unwrap() {
            TransportHeader::Tcp(t) => {
                let want = if let Some(ip) = ip4 {
                    t.calc_checksum_ipv4(ip, chunk).unwrap()
                } else {
                    t.calc_checksum_ipv6(ip6.unwrap(), chunk).unwrap()
                };
                assert_eq!(t.checksum, want, "TCP checksum of segment {i}");
                assert_eq!(
                    t.sequence_number,
                    s.seq.wrapping_add((i * mss) as u32),
                    "seq"
                );
                assert_eq!(t.acknowledgment_number, 0x0102_0304);
                assert_eq!(t.options.as_slice(), &s.tcp_opts[..]);
                let has = |f: u8| s.flags & f != 0;
                assert_eq!(t.fin, last && has(tcp_flags::FIN), "FIN on seg {i}");
                assert_eq!(t.psh, last && has(tcp_flags::PSH), "PSH on seg {i}");
                assert_eq!(t.cwr, i == 0 && has(tcp_flags::CWR), "CWR on seg {i}");
                assert_eq!(t.ece, has(tcp_flags::ECE));
                assert_eq!(t.ack, has(tcp_flags::ACK));
                assert_eq!(t.window_size, 0x01f5);
            }
            TransportHeader::Udp(u) => {
                let want = if let Some(ip) = ip4 {
                    u.calc_checksum_ipv4(ip, chunk).unwrap()
                } else {
                    u.calc_checksum_ipv6(ip6.unwrap(), chunk).unwrap()
                };
                assert_eq!(u.checksum, want, "UDP checksum of segment {i}");
                assert_eq!(usize::from(u.length), seg.len() - b.l4);
            }
            _ => unreachable!(),
        }
        // The reference: pseudo-header + L4 sums to one's complement zero.
        let l4 = &seg[b.l4..];
        let sb = Built {
            frame: seg.to_vec(),
            l3: b.l3,
            l4: b.l4,
            hlen: b.hlen,
        };
        let p = pseudo(&sb, if s.udp { 17 } else { 6 }, l4.len(), s.v6);
        assert_eq!(ref_sum(&[&p, l4]), 0xffff, "reference verify seg {i}");
        seen += chunk.len();
    }
    assert_eq!(seen, payload.len());
}

fn seg_and_check(s: &Spec, mss: u16, headroom: usize) -> (Built, Segments, Vec<u8>) {
    let b = build(s);
    let hdr = gso_hdr(s, &b, mss);
    let mut out = poisoned();
    let segs = segment(&b.frame, &hdr, &mut out, headroom)
        .unwrap_or_else(|e| panic!("{s:?} mss {mss}: {e}"));
    check_segments(s, &b, usize::from(mss), &segs, &out);
    (b, segs, out)
}

#[test]
fn vnet_hdr_round_trips_little_endian() {
    let bytes = [1, 0x81, 0x36, 0, 0xa8, 0x05, 0x22, 0, 0x10, 0, 0x01, 0x00];
    let h = VnetHdr::parse(&bytes).unwrap();
    assert_eq!(h.flags, F_NEEDS_CSUM);
    assert_eq!(h.gso_type, GSO_TCPV4 | GSO_ECN);
    assert_eq!(h.hdr_len, 54);
    assert_eq!(h.gso_size, 1448);
    assert_eq!(h.csum_start, 34);
    assert_eq!(h.csum_offset, 16);
    assert_eq!(h.num_buffers, 1);
    assert!(h.is_gso() && h.needs_csum() && h.ecn());
    assert_eq!(h.to_bytes(), bytes);
    let mut buf = [0u8; 20];
    h.emit(&mut buf);
    assert_eq!(&buf[..VNET_HDR_LEN], &bytes);
    let plain = VnetHdr::default();
    assert!(!plain.is_gso() && !plain.needs_csum());
    assert_eq!(
        VnetHdr::parse(&bytes[..11]),
        Err(OffloadError::HdrTruncated)
    );
}

#[test]
fn error_names_are_unique_and_indexed() {
    let mut names: Vec<&str> = OffloadError::ALL.iter().map(|e| e.name()).collect();
    for (i, e) in OffloadError::ALL.iter().enumerate() {
        assert_eq!(e.index(), i);
        assert!(!e.to_string().is_empty());
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), OffloadError::ALL.len());
}

#[test]
fn complete_checksum_tcp_and_udp_match_etherparse() {
    for spec in [Spec::tcp4(700), Spec::tcp6(701), Spec::udp4(33), {
        let mut s = Spec::udp4(1200);
        s.v6 = true;
        s.vlans = 2;
        s
    }] {
        let mut b = build(&spec);
        let mut hdr = gso_hdr(&spec, &b, 0);
        hdr.gso_type = GSO_NONE;
        complete_checksum(&mut b.frame, &hdr).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&b.frame).unwrap();
        let pl = h.payload.slice();
        let (got, want) = match (h.net.as_ref().unwrap(), h.transport.as_ref().unwrap()) {
            (NetHeaders::Ipv4(ip, _), TransportHeader::Tcp(t)) => {
                (t.checksum, t.calc_checksum_ipv4(ip, pl).unwrap())
            }
            (NetHeaders::Ipv6(ip, _), TransportHeader::Tcp(t)) => {
                (t.checksum, t.calc_checksum_ipv6(ip, pl).unwrap())
            }
            (NetHeaders::Ipv4(ip, _), TransportHeader::Udp(u)) => {
                (u.checksum, u.calc_checksum_ipv4(ip, pl).unwrap())
            }
            (NetHeaders::Ipv6(ip, _), TransportHeader::Udp(u)) => {
                (u.checksum, u.calc_checksum_ipv6(ip, pl).unwrap())
            }
            _ => unreachable!(),
        };
        assert_eq!(got, want, "{spec:?}");
    }
}

/// A UDP datagram whose checksum computes to 0 must carry 0xffff (0 would
/// mean "no checksum"), both completed in place and segmented.
#[test]
fn udp_checksum_zero_is_sent_as_ffff() {
    let spec = Spec::udp4(2);
    let mut b = build(&spec);
    // Choose the payload word so that everything sums to 0xffff.
    let l4_len = b.frame.len() - b.l4;
    let p = pseudo(&b, 17, l4_len, false);
    let at = b.hlen;
    b.frame[at..at + 2].copy_from_slice(&[0, 0]);
    let mut l4 = b.frame[b.l4..].to_vec();
    l4[6..8].copy_from_slice(&[0, 0]);
    let s = ref_sum(&[&p, &l4]);
    let w = 0xffff - s as u16;
    b.frame[at..at + 2].copy_from_slice(&w.to_be_bytes());
    let partial = ref_sum(&[&p]) as u16;
    b.frame[b.l4 + 6..b.l4 + 8].copy_from_slice(&partial.to_be_bytes());

    let mut hdr = gso_hdr(&spec, &b, 1000);
    let mut out = poisoned();
    let segs = segment(&b.frame, &hdr, &mut out, 0).unwrap();
    assert_eq!(segs.count, 1);
    let seg = segs.frames(&out).next().unwrap();
    assert_eq!(&seg[b.l4 + 6..b.l4 + 8], &[0xff, 0xff]);

    hdr.gso_type = GSO_NONE;
    complete_checksum(&mut b.frame, &hdr).unwrap();
    assert_eq!(&b.frame[b.l4 + 6..b.l4 + 8], &[0xff, 0xff]);
}

#[test]
fn complete_checksum_without_needs_csum_is_a_no_op() {
    let spec = Spec::tcp4(100);
    let mut b = build(&spec);
    let before = b.frame.clone();
    complete_checksum(&mut b.frame, &VnetHdr::default()).unwrap();
    assert_eq!(b.frame, before);
}

#[test]
fn complete_checksum_refuses_a_field_outside_the_frame() {
    let spec = Spec::tcp4(10);
    let mut b = build(&spec);
    let len = b.frame.len();
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: (len - 10) as u16,
        csum_offset: 9,
        ..VnetHdr::default()
    };
    assert_eq!(
        complete_checksum(&mut b.frame, &hdr),
        Err(OffloadError::CsumOutOfFrame)
    );
}

/// IPv4/IPv6 x 0/1/2 VLAN tags x TCP options none/timestamps/timestamps+SACK
/// x MSS 536/1448/8948 x payload k*mss, k*mss+1, below mss, 1 x flags.
#[test]
fn tcp_segmentation_all_combinations() {
    let flag_sets = [
        tcp_flags::ACK,
        tcp_flags::ACK | tcp_flags::PSH,
        tcp_flags::ACK | tcp_flags::PSH | tcp_flags::FIN,
        tcp_flags::ACK | tcp_flags::CWR | tcp_flags::ECE | tcp_flags::PSH,
    ];
    let mut cases = 0;
    for v6 in [false, true] {
        for vlans in 0..=2 {
            for opts in [&[][..], &TS_OPTS[..], &TS_SACK_OPTS[..]] {
                for mss in [536u16, 1448, 8948] {
                    let m = usize::from(mss);
                    let k = 60_000 / m;
                    for payload in [k * m, k * m + 1, m - 1, m, 2 * m, 1] {
                        for (fi, &flags) in flag_sets.iter().enumerate() {
                            let spec = Spec {
                                v6,
                                vlans,
                                tcp_opts: opts.to_vec(),
                                flags,
                                payload,
                                fill: fi as u8,
                                ..Spec::tcp4(0)
                            };
                            seg_and_check(&spec, mss, if fi % 2 == 0 { 0 } else { 8 });
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 2 * 3 * 3 * 3 * 6 * 4);
}

#[test]
fn uso_segmentation_all_combinations() {
    for v6 in [false, true] {
        for vlans in 0..=2 {
            for mss in [536u16, 1448, 8948] {
                let m = usize::from(mss);
                let k = 60_000 / m;
                for payload in [k * m, k * m + 1, m - 1, m, 1, 0] {
                    let spec = Spec {
                        v6,
                        vlans,
                        payload,
                        ..Spec::udp4(0)
                    };
                    let (_, segs, _) = seg_and_check(&spec, mss, 8);
                    if payload == k * m {
                        assert_eq!(segs.count, k);
                        assert_eq!(segs.last_len, segs.seg_len());
                    }
                }
            }
        }
    }
}

#[test]
fn ipv4_options_and_ipv6_extension_headers_are_copied_to_every_segment() {
    // Router Alert (RFC 2113) plus NOP padding: 8 bytes of IPv4 options.
    let mut s = Spec::tcp4(5000);
    s.ip4_opts = vec![0x94, 0x04, 0, 0, 1, 1, 1, 0];
    s.tcp_opts = TS_OPTS.to_vec();
    seg_and_check(&s, 1448, 0);
    s.udp = true;
    seg_and_check(&s, 1448, 8);
    // Hop-by-hop, destination options, routing (no segments left).
    let mut s = Spec::tcp6(5000);
    s.ip6_ext = vec![0, 60, 43];
    s.vlans = 1;
    seg_and_check(&s, 1448, 0);
    s.udp = true;
    seg_and_check(&s, 1000, 8);
}

#[test]
fn payload_within_one_mss_is_one_checksummed_segment() {
    for spec in [
        Spec::tcp4(1448),
        Spec::tcp6(10),
        Spec::udp4(1448),
        Spec::tcp4(0),
    ] {
        let (_, segs, _) = seg_and_check(&spec, 1448, 0);
        assert_eq!(segs.count, 1);
        assert_eq!(segs.total_len, segs.last_len);
    }
}

#[test]
fn a_frame_without_gso_is_copied_and_checksummed() {
    let spec = Spec::tcp6(900);
    let b = build(&spec);
    let mut hdr = gso_hdr(&spec, &b, 0);
    hdr.gso_type = GSO_NONE;
    let mut out = poisoned();
    let segs = segment(&b.frame, &hdr, &mut out, 8).unwrap();
    assert_eq!(segs.count, 1);
    assert_eq!(segs.total_len, 8 + b.frame.len());
    check_segments(&spec, &b, 65535, &segs, &out);
    // Without NEEDS_CSUM it is a plain copy.
    let mut out2 = poisoned();
    let segs = segment(&b.frame, &VnetHdr::default(), &mut out2, 0).unwrap();
    assert_eq!(segs.frames(&out2).next().unwrap(), &b.frame[..]);
}

#[test]
fn sequence_numbers_wrap() {
    let mut s = Spec::tcp4(10 * 1448);
    s.seq = u32::MAX - 2000;
    s.ip_id = u16::MAX - 3;
    seg_and_check(&s, 1448, 0);
}

#[test]
fn headroom_is_left_for_the_caller_and_slots_expose_it() {
    let spec = Spec::tcp4(4 * 1448 + 7);
    let b = build(&spec);
    let hdr = gso_hdr(&spec, &b, 1448);
    let mut out = poisoned();
    let segs = segment(&b.frame, &hdr, &mut out, 8).unwrap();
    assert_eq!(segs.count, 5);
    assert_eq!(segs.stride, 8 + b.hlen + 1448);
    for (head, frame) in segs.slots_mut(&mut out) {
        assert_eq!(head.len(), 8);
        head.copy_from_slice(&[0x08, 0, 0, 0, 0, 0x10, 0x92, 0]);
        assert_eq!(frame[12..14], [0x08, 0x00]);
    }
    for i in 0..segs.count {
        assert_eq!(out[i * segs.stride], 0x08);
    }
    assert_eq!(segs.frames(&out).len(), 5);
}

#[test]
fn output_too_small_writes_nothing() {
    let spec = Spec::tcp4(10 * 1448);
    let b = build(&spec);
    let hdr = gso_hdr(&spec, &b, 1448);
    let need = 10 * (b.hlen + 1448);
    let mut out = vec![POISON; need - 1];
    assert_eq!(
        segment(&b.frame, &hdr, &mut out, 0),
        Err(OffloadError::OutputTooSmall)
    );
    assert!(out.iter().all(|&x| x == POISON), "partial write");
    let mut out = vec![POISON; need];
    assert_eq!(
        segment(&b.frame, &hdr, &mut out, 0).unwrap().total_len,
        need
    );
    let mut small = [0u8; 10];
    assert_eq!(
        segment(&b.frame, &VnetHdr::default(), &mut small, 0),
        Err(OffloadError::OutputTooSmall)
    );
}

fn refuse(frame: &[u8], hdr: &VnetHdr) -> OffloadError {
    let mut out = poisoned();
    let e = segment(frame, hdr, &mut out, 0).expect_err("must be refused");
    assert!(!e.name().is_empty());
    e
}

#[test]
fn every_refusal_path_has_its_error() {
    use OffloadError::*;
    let spec = Spec::tcp4(3000);
    let b = build(&spec);
    let good = gso_hdr(&spec, &b, 1448);
    let with = |f: &dyn Fn(&mut VnetHdr)| {
        let mut h = good;
        f(&mut h);
        h
    };
    assert_eq!(refuse(&b.frame, &with(&|h| h.flags |= 0x04)), UnknownFlags);
    assert_eq!(refuse(&b.frame, &with(&|h| h.gso_type = 2)), UnknownGsoType);
    assert_eq!(refuse(&b.frame, &with(&|h| h.gso_type = 6)), UnknownGsoType);
    assert_eq!(
        refuse(&b.frame, &with(&|h| h.gso_type = GSO_UDP)),
        LegacyUfo
    );
    assert_eq!(
        refuse(&b.frame, &with(&|h| h.gso_type = GSO_UDP_L4 | GSO_ECN)),
        EcnWithoutTcp
    );
    assert_eq!(refuse(&b.frame, &with(&|h| h.gso_size = 0)), GsoSizeZero);
    let len = b.frame.len() as u16;
    assert_eq!(
        refuse(&b.frame, &with(&|h| h.csum_start = len - 17)),
        CsumOutOfFrame
    );
    assert_eq!(
        refuse(&b.frame, &with(&|h| h.csum_start += 4)),
        CsumStartMismatch
    );
    assert_eq!(
        refuse(&b.frame, &with(&|h| h.csum_offset = 6)),
        CsumOffsetMismatch
    );
    assert_eq!(
        refuse(&b.frame, &with(&|h| h.gso_type = GSO_TCPV6)),
        GsoTypeMismatch
    );
    assert_eq!(
        refuse(
            &b.frame,
            &with(&|h| {
                h.gso_type = GSO_UDP_L4;
                h.csum_offset = 6;
            })
        ),
        GsoTypeMismatch
    );
    // A truncated frame: the IPv4 length now runs past it.
    assert_eq!(
        refuse(&b.frame[..30], &with(&|h| h.flags = 0)),
        HeadersTruncated
    );
    assert_eq!(
        refuse(&b.frame[..60], &with(&|h| h.flags = 0)),
        IpLengthMismatch
    );
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut x = b.frame.clone();
        f(&mut x);
        x
    };
    let no_csum = with(&|h| h.flags = 0);
    assert_eq!(
        refuse(
            &mutate(&|x| x[12..14].copy_from_slice(&[0x08, 0x06])),
            &no_csum
        ),
        UnsupportedEtherType
    );
    assert_eq!(refuse(&mutate(&|x| x[14] = 0x55), &no_csum), BadIpHeader);
    assert_eq!(refuse(&mutate(&|x| x[14] = 0x44), &no_csum), BadIpHeader);
    assert_eq!(
        refuse(&mutate(&|x| x[16] = 0xff), &no_csum),
        IpLengthMismatch
    );
    assert_eq!(refuse(&mutate(&|x| x[20] |= 0x20), &no_csum), Ipv4Fragment);
    assert_eq!(refuse(&mutate(&|x| x[21] = 1), &no_csum), Ipv4Fragment);
    assert_eq!(refuse(&mutate(&|x| x[23] = 1), &no_csum), UnsupportedL4);
    assert_eq!(refuse(&mutate(&|x| x[46] = 0x40), &no_csum), BadTcpHeader);
    // Three VLAN tags.
    let three = mutate(&|x| {
        for _ in 0..3 {
            x.splice(12..12, [0x81, 0x00, 0x00, 0x01]);
        }
    });
    assert_eq!(refuse(&three, &no_csum), UnsupportedEtherType);

    // IPv6: a fragment header, and a routing header with segments left.
    let mut s6 = Spec::tcp6(3000);
    s6.ip6_ext = vec![44];
    let b6 = build(&s6);
    assert_eq!(
        refuse(&b6.frame, &gso_hdr(&s6, &b6, 1448)),
        UnsupportedIpv6Ext
    );
    s6.ip6_ext = vec![43];
    let mut b6 = build(&s6);
    b6.frame[b6.l3 + 40 + 3] = 1;
    assert_eq!(
        refuse(&b6.frame, &gso_hdr(&s6, &b6, 1448)),
        UnsupportedIpv6Ext
    );
    let b6 = build(&Spec::tcp6(100));
    let mut h6 = gso_hdr(&Spec::tcp6(100), &b6, 1448);
    h6.gso_type = GSO_TCPV4;
    assert_eq!(refuse(&b6.frame, &h6), GsoTypeMismatch);
}

/// A small deterministic PRNG (xorshift32), so the property test is
/// reproducible without a dependency.
struct XorShift(u32);

impl XorShift {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

fn random_spec(r: &mut XorShift) -> (Spec, u16) {
    let mut s = Spec {
        v6: r.below(2) == 1,
        vlans: r.below(3) as usize,
        udp: r.below(4) == 0,
        tcp_opts: match r.below(3) {
            0 => Vec::new(),
            1 => TS_OPTS.to_vec(),
            _ => TS_SACK_OPTS.to_vec(),
        },
        ip4_opts: if r.below(5) == 0 {
            vec![1, 1, 1, 0]
        } else {
            Vec::new()
        },
        ip6_ext: if r.below(5) == 0 {
            vec![60]
        } else {
            Vec::new()
        },
        flags: (r.next() as u8)
            & (tcp_flags::FIN | tcp_flags::PSH | tcp_flags::CWR | tcp_flags::ECE)
            | tcp_flags::ACK,
        seq: r.next(),
        ip_id: r.next() as u16,
        payload: 0,
        fill: r.next() as u8,
        tci: r.next() as u16,
    };
    let mss = 1 + r.below(9000) as u16;
    let max = 65_000usize.min(usize::from(mss) * 200);
    s.payload = r.below(max as u32 + 1) as usize;
    (s, mss)
}

#[test]
fn random_sizes_segment_correctly() {
    let mut r = XorShift(0x5eed_1234);
    for _ in 0..300 {
        let (s, mss) = random_spec(&mut r);
        seg_and_check(&s, mss, r.below(3) as usize * 8);
    }
}

// ---- GRO direction: the Coalescer ----

/// Feeds every segment to a coalescer and collects what comes out:
/// (virtio_net_hdr, frame) for each super-frame or passed-through frame.
fn coalesce_all(co: &mut Coalescer, frames: &[&[u8]]) -> Vec<(VnetHdr, Vec<u8>)> {
    let mut got = Vec::new();
    for f in frames {
        loop {
            match co.push(f) {
                Push::Merged | Push::Started => break,
                Push::Bypass => {
                    got.push((VnetHdr::default(), f.to_vec()));
                    break;
                }
                Push::Flush => {
                    let c = co.finish().expect("flush with something held");
                    got.push((c.hdr, c.frame().to_vec()));
                }
            }
        }
    }
    if let Some(c) = co.finish() {
        got.push((c.hdr, c.frame().to_vec()));
    }
    got
}

#[test]
fn coalesce_of_segment_is_the_original_super_frame() {
    let mut co = Coalescer::new();
    for v6 in [false, true] {
        for vlans in 0..=2 {
            for opts in [&[][..], &TS_OPTS[..]] {
                for flags in [
                    tcp_flags::ACK,
                    tcp_flags::ACK | tcp_flags::PSH,
                    tcp_flags::ACK | tcp_flags::CWR,
                ] {
                    for (mss, payload) in
                        [(1448u16, 44 * 1448 + 100), (536, 536 * 3), (8948, 60_000)]
                    {
                        let spec = Spec {
                            v6,
                            vlans,
                            tcp_opts: opts.to_vec(),
                            flags,
                            payload,
                            ..Spec::tcp4(0)
                        };
                        let (b, segs, out) = seg_and_check(&spec, mss, 0);
                        let frames: Vec<&[u8]> = segs.frames(&out).collect();
                        let got = coalesce_all(&mut co, &frames);
                        assert_eq!(got.len(), 1, "{spec:?}");
                        let (hdr, frame) = &got[0];
                        let mut want = gso_hdr(&spec, &b, mss);
                        want.hdr_len = b.hlen as u16;
                        assert_eq!(*hdr, want, "{spec:?}");
                        assert!(frame == &b.frame, "{spec:?}: super-frame differs");
                    }
                }
            }
        }
    }
}

#[test]
fn coalescer_keeps_flows_apart_and_passes_what_it_cannot_merge() {
    let mut co = Coalescer::new();
    let a = build(&Spec::tcp4(3 * 1448));
    let mut s_b = Spec::tcp4(3 * 1448);
    s_b.fill = 99;
    let mut bspec = build(&s_b);
    // Another flow: other source port.
    bspec.frame[bspec.l4 + 1] ^= 1;
    let ha = gso_hdr(&Spec::tcp4(0), &a, 1448);
    let mut oa = poisoned();
    let mut ob = poisoned();
    let sa = segment(&a.frame, &ha, &mut oa, 0).unwrap();
    let sb = segment(&bspec.frame, &ha, &mut ob, 0).unwrap();
    let fa: Vec<&[u8]> = sa.frames(&oa).collect();
    let fb: Vec<&[u8]> = sb.frames(&ob).collect();
    // Interleaved flows: nothing merges across them.
    let got = coalesce_all(&mut co, &[fa[0], fb[0], fa[1], fb[1]]);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|(h, _)| h.gso_type == GSO_NONE));
    // A corrupted segment is never merged (its checksum would be recomputed).
    let mut bad = fa[1].to_vec();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let got = coalesce_all(&mut co, &[fa[0], &bad, fa[2]]);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].1, bad);
    assert_eq!(got[1].0, VnetHdr::default(), "bad frame passed as is");
    // A SYN is passed through; a gap in sequence ends the super-frame.
    let mut syn = Spec::tcp4(0);
    syn.flags = tcp_flags::SYN;
    let synf = build(&syn);
    let mut synf_done = synf.frame.clone();
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: synf.l4 as u16,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    complete_checksum(&mut synf_done, &h).unwrap();
    assert!(matches!(co.push(&synf_done), Push::Bypass));
    let got = coalesce_all(&mut co, &[fa[0], fa[2]]);
    assert_eq!(got.len(), 2);
    // A single segment comes back as it was, its checksum verified.
    let got = coalesce_all(&mut co, &[fa[1]]);
    assert_eq!(got[0].1, fa[1]);
    assert_eq!(got[0].0.flags, F_DATA_VALID);
    assert_eq!(got[0].0.gso_type, GSO_NONE);
}

#[test]
fn coalescer_never_exceeds_an_ip_packet() {
    let mut co = Coalescer::new();
    // Two 7 x 8948-byte super-frames in sequence: 14 full segments of one
    // flow, more than one IP packet can hold.
    let mut s1 = Spec::tcp4(7 * 8948);
    s1.flags = tcp_flags::ACK;
    let b1 = build(&s1);
    let mut s2 = s1.clone();
    s2.seq = s1.seq.wrapping_add(7 * 8948);
    s2.ip_id = s1.ip_id.wrapping_add(7);
    let b2 = build(&s2);
    let mut o1 = poisoned();
    let mut o2 = poisoned();
    let g1 = segment(&b1.frame, &gso_hdr(&s1, &b1, 8948), &mut o1, 0).unwrap();
    let g2 = segment(&b2.frame, &gso_hdr(&s2, &b2, 8948), &mut o2, 0).unwrap();
    let refs: Vec<&[u8]> = g1.frames(&o1).chain(g2.frames(&o2)).collect();
    let got = coalesce_all(&mut co, &refs);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, b1.frame);
    assert_eq!(got[1].1, b2.frame);
    for (h, f) in &got {
        let ip_len = usize::from(u16::from_be_bytes([f[16], f[17]]));
        assert_eq!(ip_len, f.len() - 14);
        assert!(f.len() - 14 <= 65535);
        if h.gso_type != GSO_NONE {
            assert_eq!(h.gso_size, 8948);
        }
    }
}

#[test]
fn random_round_trips_through_segment_and_coalesce() {
    let mut r = XorShift(0xc0a1_e5ce);
    let mut co = Coalescer::new();
    let mut checked = 0;
    for _ in 0..300 {
        let (mut s, mss) = random_spec(&mut r);
        // The coalescer merges TCP without FIN, IPv4 options or IPv6
        // extension headers, and at least two segments.
        s.udp = false;
        s.flags &= !tcp_flags::FIN;
        s.ip4_opts.clear();
        s.ip6_ext.clear();
        let b = build(&s);
        let (_, segs, out) = seg_and_check(&s, mss, 0);
        let frames: Vec<&[u8]> = segs.frames(&out).collect();
        let got = coalesce_all(&mut co, &frames);
        if segs.count < 2 {
            assert_eq!(got.len(), 1);
            continue;
        }
        assert_eq!(got.len(), 1, "{s:?} mss {mss}");
        let mut want = gso_hdr(&s, &b, mss);
        want.hdr_len = b.hlen as u16;
        assert_eq!(got[0].0, want);
        assert!(got[0].1 == b.frame);
        checked += 1;
    }
    assert!(checked > 100, "only {checked} multi-segment cases");
}

#[test]
fn batches_cut_the_output_at_segment_boundaries_for_udp_segment() {
    // A 64 KiB TCP super-frame, 1448-byte MSS, 8-byte VXLAN headroom:
    // 46 segments of 8 + 1514 bytes, more than one 65507-byte UDP send.
    let spec = Spec::tcp4(45 * 1448 + 100);
    let (b, segs, _) = seg_and_check(&spec, 1448, 8);
    assert_eq!(segs.count, 46);
    assert_eq!(segs.stride, 8 + b.hlen + 1448);
    let runs: Vec<_> = segs.batches(65507, 64).collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0], 0..43 * segs.stride);
    assert_eq!(runs[1], 43 * segs.stride..segs.total_len);
    // The segment-count limit applies too.
    let runs: Vec<_> = segs.batches(usize::MAX, 20).collect();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.start % segs.stride == 0));
    assert_eq!(runs.last().unwrap().end, segs.total_len);
    // One segment larger than the limit still goes out alone.
    let runs: Vec<_> = segs.batches(100, 64).collect();
    assert_eq!(runs.len(), 46);
}

/// Garbage and damaged frames never make segment or the coalescer panic,
/// and whatever segment accepts is still consistent.
#[test]
fn damaged_frames_are_refused_never_panic() {
    let mut r = XorShift(0xdead_beef);
    let mut out = poisoned();
    let mut co = Coalescer::new();
    for _ in 0..2000 {
        let (s, mss) = random_spec(&mut r);
        let s = Spec {
            payload: s.payload % 3000,
            ..s
        };
        let b = build(&s);
        let mut hdr = gso_hdr(&s, &b, mss);
        let mut frame = b.frame.clone();
        for _ in 0..1 + r.below(4) {
            let at = r.below(frame.len().min(120) as u32) as usize;
            frame[at] = r.next() as u8;
        }
        match r.below(4) {
            0 => frame.truncate(r.below(frame.len() as u32) as usize),
            1 => hdr = VnetHdr::parse(&r.next().to_le_bytes().repeat(3)).unwrap(),
            _ => {}
        }
        if let Ok(segs) = segment(&frame, &hdr, &mut out, 8) {
            assert!(segs.total_len <= out.len());
            assert_eq!(segs.frames(&out).count(), segs.count);
        }
        match co.push(&frame) {
            Push::Flush => {
                co.finish().unwrap();
            }
            Push::Bypass | Push::Started | Push::Merged => {}
        }
        if r.below(8) == 0 {
            co.finish();
        }
    }
}

/// The worker's 256 KiB scratch buffer holds the worst 64 KiB burst at
/// Linux's smallest MSS (48): IPv6, two VLAN tags, 24 bytes of TCP options,
/// VXLAN headroom.
#[test]
fn a_64k_burst_at_the_smallest_mss_fits_the_scratch_buffer() {
    let spec = Spec {
        v6: true,
        vlans: 2,
        tcp_opts: TS_SACK_OPTS.to_vec(),
        payload: 65535 - 44,
        ..Spec::tcp4(0)
    };
    let (_, segs, _) = seg_and_check(&spec, 48, 8);
    assert_eq!(segs.count, (65535 - 44usize).div_ceil(48));
    assert!(segs.total_len <= SCRATCH);
}

/// With DF, an IPv4 ID that stays fixed (RFC 6864) still coalesces; one
/// that jumps does not.
#[test]
fn coalescer_accepts_fixed_ids_with_df_only() {
    let spec = Spec::tcp4(3 * 1448);
    let b = build(&spec);
    let mut out = poisoned();
    let segs = segment(&b.frame, &gso_hdr(&spec, &b, 1448), &mut out, 0).unwrap();
    let with_id = |f: &[u8], id: u16, df: bool| {
        let mut f = f.to_vec();
        f[18..20].copy_from_slice(&id.to_be_bytes());
        f[20] = if df { 0x40 } else { 0 };
        f[24..26].copy_from_slice(&[0, 0]);
        let c = !(ref_sum(&[&f[14..34]]) as u16);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    };
    let frames: Vec<&[u8]> = segs.frames(&out).collect();
    let mut co = Coalescer::new();
    for (df, ids, merged) in [
        (true, [7, 7, 7], true),
        (false, [7, 7, 7], false),
        (true, [7, 8, 9], true),
        (true, [7, 7, 8], false),
        (true, [7, 9, 11], false),
    ] {
        let fixed: Vec<Vec<u8>> = frames
            .iter()
            .zip(ids)
            .map(|(f, id)| with_id(f, id, df))
            .collect();
        let refs: Vec<&[u8]> = fixed.iter().map(Vec::as_slice).collect();
        let got = coalesce_all(&mut co, &refs);
        assert_eq!(got.len() == 1, merged, "df={df} ids={ids:?}: {}", got.len());
        if merged {
            assert_eq!(&got[0].1[18..20], &[0, 7], "the first ID is kept");
        }
    }
}
