//! The real kernel as the judge of software segmentation (needs root and
//! the commands each test lists; see `support::can_run` for the skip rule).
//!
//! The segments `offload::segment` cuts from TCP and USO super-frames are
//! written into a plain TAP (no vnet_hdr, so the kernel gets them with
//! `CHECKSUM_NONE` and verifies every IPv4 header, TCP and UDP checksum in
//! software) inside a namespace made for the test, over IPv4 and IPv6,
//! untagged and with an 802.1Q priority tag (VID 0, which the kernel
//! delivers to the device itself without the 8021q module, absent from
//! this machine's kernel; tags with a VID need VLAN devices, so the
//! 1-2-tag cases with VIDs are checked offline in tests/offload.rs). What a user would see: the UDP datagrams arrive at a
//! socket, byte for byte, and the namespace's SNMP counters count every TCP
//! segment received and no checksum error. A deliberately corrupted segment
//! moves the error counters, which shows the counters are a real witness.
//!
//! And the other way round: what a vnet_hdr TAP with offloads really hands
//! over (captured by tests/offload_frames/vnet_capture.py: a TCP burst
//! after a faked handshake, a USO send and a plain UDP send, IPv4 and IPv6)
//! is segmented and checksummed by us and checked by etherparse, and the
//! coalescer rebuilds the kernel's own TCP super-frames byte for byte.

mod offload_frames;
mod support;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::Duration;

use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

use offload_frames::{build, gso_hdr, Spec, TS_OPTS};
use support::frames::write_frame;
use support::{can_run, wait_for, Netns};
use vxswitch::offload::{
    segment, Coalescer, Push, VnetHdr, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR_LEN,
};
use vxswitch::ports::{self, TapSpec};
use vxswitch::wire::tcp::flags as tcp_flags;
use vxswitch::wire::MacAddr;

const WAIT: Duration = Duration::from_secs(5);
/// The destination MAC of the frames `offload_frames::build` makes; their
/// addresses are 10.42.0.11 -> 10.42.0.21 and fd00::a -> fd00::b, ports
/// 40000 -> 5201.
const TAP_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);

/// Segments `spec` at `mss` and writes every segment into the TAP.
/// Returns the segments' payloads.
fn send_segments(tap: &ports::Tap, spec: &Spec, mss: u16) -> Vec<Vec<u8>> {
    let b = build(spec);
    let hdr = gso_hdr(spec, &b, mss);
    let mut out = vec![0u8; 256 * 1024];
    let segs = segment(&b.frame, &hdr, &mut out, 0).expect("segment");
    let mut payloads = Vec::new();
    for seg in segs.frames(&out) {
        write_frame(&tap.fd, seg).expect("write segment to the TAP");
        payloads.push(seg[b.hlen..].to_vec());
    }
    payloads
}

#[test]
fn kernel_accepts_every_software_segment() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = Netns::bare("vxt");
    // No DAD: the IPv6 address is usable at once.
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
    let tap = ports::create_tap(&TapSpec {
        netns: ns.handle(),
        ifname: "eth0".into(),
        mac: Some(TAP_MAC),
        mtu: Some(9000),
        addrs: vec![
            "10.42.0.21/24".parse().unwrap(),
            "fd00::b/64".parse().unwrap(),
        ],
        gateway: None,
        vnet_hdr: false,
        queues: 1,
    })
    .expect("create TAP");
    wait_for(WAIT, "fd00::b usable", || {
        let out = ns.ip(&["-6", "addr", "show", "dev", "eth0", "tentative"]);
        out.status.success() && out.stdout.is_empty()
    });
    let (udp4, udp6) = ns.enter(|| {
        (
            UdpSocket::bind("10.42.0.21:5201").expect("bind v4"),
            UdpSocket::bind("[fd00::b]:5201").expect("bind v6"),
        )
    });
    for s in [&udp4, &udp6] {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }

    let tcp_errors = ns.snmp("Tcp", "InCsumErrors");
    let udp4_errors = ns.snmp("Udp", "InCsumErrors");
    let udp6_errors = ns.snmp("", "Udp6InCsumErrors");
    let ip_errors = ns.snmp("Ip", "InHdrErrors");
    let mut buf = vec![0u8; 65536];
    for v6 in [false, true] {
        for vlans in 0..=1 {
            // USO: every datagram reaches the socket intact.
            let spec = Spec {
                v6,
                vlans,
                tci: 0x6000, // PCP 3, VID 0
                payload: 5 * 1400 - 3,
                ..Spec::udp4(0)
            };
            let sent = send_segments(&tap, &spec, 1400);
            assert_eq!(sent.len(), 5);
            let sock = if v6 { &udp6 } else { &udp4 };
            for (i, want) in sent.iter().enumerate() {
                let n = sock.recv(&mut buf).unwrap_or_else(|e| {
                    panic!("v6={v6} vlans={vlans}: datagram {i} not delivered ({e})")
                });
                assert!(
                    buf[..n] == want[..],
                    "v6={v6} vlans={vlans}: datagram {i} differs"
                );
            }

            // TCP with timestamps to a closed port: the kernel verifies the
            // checksum before it looks for a socket.
            let before = ns.snmp("Tcp", "InSegs");
            let spec = Spec {
                v6,
                vlans,
                tci: 0x6000,
                tcp_opts: TS_OPTS.to_vec(),
                flags: tcp_flags::ACK | tcp_flags::PSH | tcp_flags::CWR | tcp_flags::ECE,
                payload: 6 * 1448 + 1,
                ..Spec::tcp4(0)
            };
            let sent = send_segments(&tap, &spec, 1448);
            assert_eq!(sent.len(), 7);
            wait_for(WAIT, "TCP segments counted", || {
                ns.snmp("Tcp", "InSegs") >= before + 7
            });
        }
    }
    assert_eq!(ns.snmp("Tcp", "InCsumErrors"), tcp_errors, "TCP");
    assert_eq!(ns.snmp("Udp", "InCsumErrors"), udp4_errors, "UDP");
    assert_eq!(ns.snmp("", "Udp6InCsumErrors"), udp6_errors, "UDPv6");
    assert_eq!(ns.snmp("Ip", "InHdrErrors"), ip_errors, "IPv4 header");

    // The witness works: one flipped payload byte is a checksum error.
    for (spec, group, name, before) in [
        (Spec::tcp4(100), "Tcp", "InCsumErrors", tcp_errors),
        (Spec::udp4(100), "Udp", "InCsumErrors", udp4_errors),
    ] {
        let mut b = build(&spec);
        // A port without a socket: the kernel completes the checksum at
        // once (a socket's UDP datagrams are verified only when read).
        b.frame[b.l4 + 2..b.l4 + 4].copy_from_slice(&5202u16.to_be_bytes());
        let mut out = vec![0u8; 4096];
        let segs = segment(&b.frame, &gso_hdr(&spec, &b, 1000), &mut out, 0).unwrap();
        let mut seg = segs.frames(&out).next().unwrap().to_vec();
        let last = seg.len() - 1;
        seg[last] ^= 0x55;
        write_frame(&tap.fd, &seg).unwrap();
        wait_for(
            WAIT,
            &format!("a corrupted segment counted in {group}:{name}"),
            || ns.snmp(group, name) > before,
        );
    }
}

/// One frame's checksums checked by etherparse; returns (IPv6?, TCP?,
/// TCP sequence number, payload).
fn verified(frame: &[u8]) -> (bool, bool, u32, Vec<u8>) {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses it");
    let pl = h.payload.slice();
    let (v6, ip4, ip6) = match h.net.as_ref().expect("IP") {
        NetHeaders::Ipv4(ip, _) => {
            assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IPv4 csum");
            (false, Some(ip), None)
        }
        NetHeaders::Ipv6(ip, _) => (true, None, Some(ip)),
        NetHeaders::Arp(_) => panic!("ARP"),
    };
    match h.transport.as_ref().expect("TCP or UDP") {
        TransportHeader::Tcp(t) => {
            let want = match ip4 {
                Some(ip) => t.calc_checksum_ipv4(ip, pl).unwrap(),
                None => t.calc_checksum_ipv6(ip6.unwrap(), pl).unwrap(),
            };
            assert_eq!(t.checksum, want, "TCP checksum");
            (v6, true, t.sequence_number, pl.to_vec())
        }
        TransportHeader::Udp(u) => {
            let want = match ip4 {
                Some(ip) => u.calc_checksum_ipv4(ip, pl).unwrap(),
                None => u.calc_checksum_ipv6(ip6.unwrap(), pl).unwrap(),
            };
            assert_eq!(u.checksum, want, "UDP checksum");
            (v6, false, 0, pl.to_vec())
        }
        _ => panic!("not TCP or UDP"),
    }
}

#[test]
fn what_a_vnet_hdr_tap_hands_over_is_segmented_and_coalesced_right() {
    if !can_run(&["ip", "python3", "timeout"]) {
        return;
    }
    let ns = Netns::new("vxoff");
    let dir = support::TempDir::new("vxoff");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/offload_frames/vnet_capture.py"
    );
    let outdir = dir.0.to_str().unwrap();
    let run = ns.exec("timeout", &["60", "python3", script, outdir]);
    assert!(
        run.status.success(),
        "capture script failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let sent = std::fs::read(dir.0.join("sent.bin")).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.as_bytes()[0].is_ascii_digit())
        .collect();
    names.sort();

    let mut out = vec![0u8; 256 * 1024];
    let mut co = Coalescer::new();
    let mut seen: HashMap<u8, usize> = HashMap::new();
    let mut first_seq: HashMap<bool, u32> = HashMap::new();
    let mut tcp_data: Vec<(bool, u32, Vec<u8>)> = Vec::new();
    let mut udp_sizes: Vec<(bool, usize)> = Vec::new();
    for name in &names {
        let bytes = std::fs::read(dir.0.join(name)).unwrap();
        let hdr = VnetHdr::parse(&bytes).unwrap();
        let frame = &bytes[VNET_HDR_LEN..];
        if !hdr.needs_csum() && !hdr.is_gso() {
            continue; // neighbour discovery, MLD: nothing to do
        }
        *seen.entry(hdr.gso_type).or_default() += 1;
        let segs = segment(frame, &hdr, &mut out, 8)
            .unwrap_or_else(|e| panic!("{name}: kernel frame refused: {e} ({hdr:?})"));
        if hdr.is_gso() {
            assert!(segs.count > 1, "{name}: a GSO frame of one segment");
        }
        let mut frames = Vec::new();
        for (i, seg) in segs.frames(&out).enumerate() {
            let (v6, tcp, seq, payload) = verified(seg);
            let mss = if hdr.is_gso() {
                usize::from(hdr.gso_size)
            } else {
                payload.len()
            };
            if i + 1 < segs.count {
                assert_eq!(payload.len(), mss, "{name}: segment {i} is not full");
            }
            if tcp {
                if !payload.is_empty() {
                    // The first data captured is the first data sent.
                    first_seq.entry(v6).or_insert(seq);
                    tcp_data.push((v6, seq, payload));
                }
            } else {
                assert!(
                    sent[i * mss..].starts_with(&payload),
                    "{name}: UDP datagram {i} is not what was sent"
                );
                udp_sizes.push((v6, payload.len()));
            }
            frames.push(seg.to_vec());
        }
        // The kernel's TCP super-frames come back from the coalescer as the
        // kernel wrote them, header included (hdr_len aside).
        if matches!(hdr.gso_type & 0x7f, GSO_TCPV4 | GSO_TCPV6) {
            for f in &frames {
                assert!(matches!(co.push(f), Push::Started | Push::Merged), "{name}");
            }
            let c = co.finish().unwrap();
            assert!(
                c.frame() == frame,
                "{name}: coalesced frame differs from the kernel's"
            );
            assert_eq!(
                VnetHdr {
                    hdr_len: hdr.hdr_len,
                    ..c.hdr
                },
                hdr,
                "{name}: virtio_net_hdr"
            );
            assert!(usize::from(hdr.hdr_len) >= usize::from(c.hdr.hdr_len) || hdr.hdr_len == 0);
        }
    }
    eprintln!(
        "{} frames captured; by gso_type: {seen:?}; {} TCP data segments, {} UDP datagrams",
        names.len(),
        tcp_data.len(),
        udp_sizes.len()
    );
    for (v6, seq, payload) in &tcp_data {
        let at = seq.wrapping_sub(first_seq[v6]) as usize;
        assert!(
            sent[at..].starts_with(payload),
            "TCP bytes at {at} (v6={v6}) differ"
        );
    }
    for kind in [GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, GSO_NONE] {
        assert!(
            seen.get(&kind).copied().unwrap_or(0) > 0,
            "no gso_type {kind} seen: {seen:?}"
        );
    }
    assert!(udp_sizes.contains(&(false, 300)) && udp_sizes.contains(&(true, 300)));
    assert_eq!(udp_sizes.iter().filter(|(_, n)| *n == 1000).count(), 10);
}
