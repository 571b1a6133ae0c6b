//! Frames as a vnet_hdr TAP would hand them over, built by hand for the
//! offload tests (tests/offload.rs, tests/offload_root.rs), with a plain
//! 16-bit reference checksum written independently of src/offload.
#![allow(dead_code)] // each test binary uses its own subset

use vxswitch::offload::{VnetHdr, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use vxswitch::wire::tcp::flags as tcp_flags;

/// A scratch buffer as a worker would own one.
pub const SCRATCH: usize = 256 * 1024;
/// What `segment` must never write: the headroom and anything past the end.
pub const POISON: u8 = 0xaa;

pub const TS_OPTS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];
/// Timestamps plus one SACK block, padded with NOPs to a multiple of 4.
pub const TS_SACK_OPTS: [u8; 24] = [
    1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78, 1, 1, 5, 10, 0, 0, 1, 0, 0, 0, 2, 0,
];

#[derive(Clone, Debug)]
pub struct Spec {
    pub v6: bool,
    /// 0..=2 VLAN tags (two: 802.1ad outer, 802.1Q inner).
    pub vlans: usize,
    pub udp: bool,
    pub tcp_opts: Vec<u8>,
    /// IPv4 options (a multiple of 4 bytes).
    pub ip4_opts: Vec<u8>,
    /// IPv6 extension headers (next-header values), 8 bytes each.
    pub ip6_ext: Vec<u8>,
    pub flags: u8,
    pub seq: u32,
    pub ip_id: u16,
    pub payload: usize,
    /// Seed of the payload bytes.
    pub fill: u8,
    /// TCI of the (inner) 802.1Q tag: PCP 1, VID 10 unless changed.
    pub tci: u16,
}

impl Spec {
    pub fn tcp4(payload: usize) -> Spec {
        Spec {
            v6: false,
            vlans: 0,
            udp: false,
            tcp_opts: Vec::new(),
            ip4_opts: Vec::new(),
            ip6_ext: Vec::new(),
            flags: tcp_flags::ACK | tcp_flags::PSH,
            seq: 0xfff0_0000,
            ip_id: 0xfffe,
            payload,
            fill: 7,
            tci: 0x200a,
        }
    }
    pub fn tcp6(payload: usize) -> Spec {
        Spec {
            v6: true,
            ..Spec::tcp4(payload)
        }
    }
    pub fn udp4(payload: usize) -> Spec {
        Spec {
            udp: true,
            ..Spec::tcp4(payload)
        }
    }
}

pub struct Built {
    pub frame: Vec<u8>,
    pub l3: usize,
    pub l4: usize,
    pub hlen: usize,
}

/// The plain RFC 1071 sum, one 16-bit word at a time (the reference).
pub fn ref_sum(parts: &[&[u8]]) -> u32 {
    let mut s = 0u32;
    for part in parts {
        assert!(part.len() % 2 == 0 || std::ptr::eq(*part, *parts.last().unwrap()));
        for w in part.chunks(2) {
            s += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
            s = (s & 0xffff) + (s >> 16);
        }
    }
    s
}

pub fn pseudo(b: &Built, proto: u8, l4_len: usize, v6: bool) -> Vec<u8> {
    let f = &b.frame;
    let mut p = Vec::new();
    if v6 {
        p.extend_from_slice(&f[b.l3 + 8..b.l3 + 40]);
        p.extend_from_slice(&(l4_len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
    } else {
        p.extend_from_slice(&f[b.l3 + 12..b.l3 + 20]);
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(l4_len as u16).to_be_bytes());
    }
    p
}

/// Builds the frame a vnet_hdr TAP would hand us: valid IP header checksum,
/// the L4 checksum field holding the (uncomplemented) pseudo-header sum.
pub fn build(s: &Spec) -> Built {
    let mut f = vec![0x02, 0, 0, 0, 0, 0xb, 0x02, 0, 0, 0, 0, 0xa];
    if s.vlans == 2 {
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64]);
    }
    if s.vlans >= 1 {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&s.tci.to_be_bytes());
    }
    f.extend_from_slice(if s.v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let l3 = f.len();
    let proto = if s.udp { 17 } else { 6 };
    let l4_hlen = if s.udp { 8 } else { 20 + s.tcp_opts.len() };
    if s.v6 {
        let ext_len = 8 * s.ip6_ext.len();
        let plen = ext_len + l4_hlen + s.payload;
        f.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
        f.extend_from_slice(&(plen as u16).to_be_bytes());
        f.push(*s.ip6_ext.first().unwrap_or(&proto));
        f.push(64);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b]);
        for (i, _) in s.ip6_ext.iter().enumerate() {
            let next = *s.ip6_ext.get(i + 1).unwrap_or(&proto);
            let mut e = [next, 0, 1, 4, 0, 0, 0, 0];
            if s.ip6_ext[i] == 43 {
                // Routing type 2 header body would be longer; an empty
                // type-0-like header with segments left 0 is enough here.
                e = [next, 0, 0, 0, 0, 0, 0, 0];
            }
            f.extend_from_slice(&e);
        }
    } else {
        let ihl = 20 + s.ip4_opts.len();
        let total = ihl + l4_hlen + s.payload;
        f.push(0x40 | (ihl / 4) as u8);
        f.push(0x02); // ECT(0)
        f.extend_from_slice(&(total as u16).to_be_bytes());
        f.extend_from_slice(&s.ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0x00, 64, proto, 0, 0]);
        f.extend_from_slice(&[10, 42, 0, 11, 10, 42, 0, 21]);
        f.extend_from_slice(&s.ip4_opts);
        let c = !(ref_sum(&[&f[l3..l3 + ihl]]) as u16);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = f.len();
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    if s.udp {
        f.extend_from_slice(&((8 + s.payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    } else {
        f.extend_from_slice(&s.seq.to_be_bytes());
        f.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        f.push(((l4_hlen / 4) as u8) << 4);
        f.push(s.flags);
        f.extend_from_slice(&[0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(&s.tcp_opts);
    }
    let hlen = f.len();
    let mut x = u32::from(s.fill) | 0x100;
    for _ in 0..s.payload {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        f.push((x >> 16) as u8);
    }
    let mut b = Built {
        frame: f,
        l3,
        l4,
        hlen,
    };
    let p = pseudo(&b, proto, b.frame.len() - l4, s.v6);
    let partial = ref_sum(&[&p]) as u16;
    let at = l4 + if s.udp { 6 } else { 16 };
    b.frame[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    b
}

/// The virtio_net_hdr a TAP would give with this frame: hdr_len deliberately
/// larger than the headers (skb_headlen), which must not matter.
pub fn gso_hdr(s: &Spec, b: &Built, mss: u16) -> VnetHdr {
    let gso_type = match (s.udp, s.v6) {
        (true, _) => GSO_UDP_L4,
        (false, false) => GSO_TCPV4,
        (false, true) => GSO_TCPV6,
    };
    let ecn = if !s.udp && s.flags & tcp_flags::CWR != 0 {
        GSO_ECN
    } else {
        0
    };
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: gso_type | ecn,
        hdr_len: (b.hlen + 128) as u16,
        gso_size: mss,
        csum_start: b.l4 as u16,
        csum_offset: if s.udp { 6 } else { 16 },
        num_buffers: 0,
    }
}
