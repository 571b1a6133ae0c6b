//! A corpus of frames, well-formed and not, for tests that compare a parse
//! against a reference: every combination of VLAN tags, IPv4 (options,
//! fragments, wrong versions and lengths) or IPv6 (extension header
//! chains, jumbogram and lying lengths), TCP/UDP/SCTP/ICMP and others,
//! plus every prefix and random byte flips of each.

/// A small deterministic generator (xorshift32).
pub struct Rng(pub u32);

impl Rng {
    pub fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

fn l4(proto: u8, doff: u8, payload: usize) -> Vec<u8> {
    let mut l = match proto {
        6 => {
            let mut t = vec![
                0x9c,
                0x40,
                0x14,
                0x51,
                0,
                0,
                0,
                1,
                0,
                0,
                0,
                1,
                doff << 4,
                0x18,
            ];
            t.extend_from_slice(&[1, 0, 0, 0, 0, 0]);
            t.resize(usize::from(doff.max(5)) * 4, 1);
            t
        }
        17 => vec![0x30, 0x39, 0, 53, 0, 8, 0, 0],
        132 => vec![0x0b, 0xb8, 0x0b, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0],
        _ => vec![8, 0, 0, 0, 0, 1, 0, 1],
    };
    l.extend((0..payload).map(|i| i as u8));
    l
}

fn ipv4(ihl: u8, version: u8, frag: u16, proto: u8, body: &[u8], len_delta: i32) -> Vec<u8> {
    let hlen = usize::from(ihl) * 4;
    let total = (hlen.max(20) + body.len()) as i32 + len_delta;
    let total = total.clamp(0, 0xffff) as u16;
    let mut h = vec![(version << 4) | ihl, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    h.resize(hlen.max(20), 1);
    h.extend_from_slice(body);
    h
}

/// IPv6 with extension headers `exts` (type, length units, segments left).
fn ipv6(version: u8, exts: &[(u8, u8, u8)], last: u8, body: &[u8], len: Option<u16>) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, &(_, units, segs)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(last, |e| e.0);
        let mut e = vec![next, units, 0, segs];
        e.resize((usize::from(units) + 1) * 8, 0);
        chain.extend_from_slice(&e);
    }
    chain.extend_from_slice(body);
    let first = exts.first().map_or(last, |e| e.0);
    let plen = len.unwrap_or(chain.len() as u16);
    let mut h = vec![version << 4, 0, 0, 0];
    h.extend_from_slice(&plen.to_be_bytes());
    h.extend_from_slice(&[first, 64]);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa]);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb]);
    h.extend_from_slice(&chain);
    h
}

fn ethernet(tags: &[u16], ethertype: u16, body: &[u8], pad: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa];
    for (i, &tpid) in tags.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f.extend(std::iter::repeat_n(0, pad));
    f
}

/// The well-formed-or-not frames, before prefixes and flips.
pub fn base() -> Vec<Vec<u8>> {
    let tag_sets: [&[u16]; 5] = [
        &[],
        &[0x8100],
        &[0x88a8, 0x8100],
        &[0x8100, 0x8100],
        &[0x88a8, 0x88a8, 0x8100],
    ];
    let mut l3s: Vec<(u16, Vec<u8>)> = Vec::new();
    for proto in [6u8, 17, 132, 1, 44] {
        for doff in [5u8, 8, 4, 15] {
            if proto != 6 && doff != 5 {
                continue;
            }
            for payload in [0, 10] {
                let body = l4(proto, doff, payload);
                for (ihl, version) in [(5, 4), (6, 4), (15, 4), (4, 4), (0, 4), (5, 6)] {
                    for frag in [0, 0x4000, 0x2000, 0x0001] {
                        for delta in [0, 1, -1, -40, 1000] {
                            let ip = ipv4(ihl, version, frag, proto, &body, delta);
                            l3s.push((0x0800, ip));
                        }
                    }
                }
                let chains: [&[(u8, u8, u8)]; 9] = [
                    &[],
                    &[(0, 0, 0)],
                    &[(0, 0, 0), (60, 1, 0)],
                    &[(43, 0, 0)],
                    &[(43, 0, 1)],
                    &[(44, 0, 0)],
                    &[(50, 0, 0)],
                    &[(60, 0, 0); 9],
                    &[(60, 200, 0)],
                ];
                for chain in chains {
                    for version in [6, 4] {
                        for len in [None, Some(0), Some(2000), Some(3)] {
                            l3s.push((0x86dd, ipv6(version, chain, proto, &body, len)));
                        }
                    }
                }
            }
        }
    }
    l3s.push((0x0806, vec![0, 1, 8, 0, 6, 4, 0, 1]));
    l3s.push((0x88cc, vec![1, 2, 3]));
    let mut out = Vec::new();
    for tags in tag_sets {
        for (ethertype, l3) in &l3s {
            for pad in [0, 6] {
                out.push(ethernet(tags, *ethertype, l3, pad));
            }
        }
    }
    out
}

/// Calls `f` on every base frame, every prefix of a sample of them, and
/// random byte flips in the headers of each.
pub fn for_each(mut f: impl FnMut(&[u8])) {
    let mut rng = Rng(0x1234_5678);
    for (i, frame) in base().iter().enumerate() {
        f(frame);
        if i % 13 == 0 {
            for n in 0..frame.len() {
                f(&frame[..n]);
            }
        }
        for _ in 0..4 {
            let mut m = frame.clone();
            for _ in 0..1 + rng.next() % 3 {
                let at = rng.next() as usize % m.len().min(90);
                m[at] = rng.next() as u8;
            }
            f(&m);
        }
    }
}
