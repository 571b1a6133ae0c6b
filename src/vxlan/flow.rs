//! The outer source port's flow entropy (RFC 7348, section 5): a hash of
//! the inner frame's flow, so one flow always leaves through the same pool
//! socket (no reordering) and different flows spread over the pool.

/// A hash of the inner flow: both MACs and the EtherType, plus for IPv4 and
/// IPv6 the addresses, the protocol and, for TCP/UDP/SCTP in an unfragmented
/// packet, the ports. Deterministic (no per-process key): the same flow
/// maps to the same source port across restarts, which underlay load
/// balancers prefer.
#[inline]
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut h = Fnv::new();
    if frame.len() < 14 {
        return 0;
    }
    h.write(&frame[0..12]);
    let (mut et, mut off) = (u16::from_be_bytes([frame[12], frame[13]]), 14);
    if et == 0x8100 && frame.len() >= 18 {
        et = u16::from_be_bytes([frame[16], frame[17]]);
        off = 18;
    }
    h.write(&et.to_be_bytes());
    let l3 = &frame[off..];
    let l4 = match et {
        0x0800 if l3.len() >= 20 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            h.write(&l3[12..20]);
            h.write(&[l3[9]]);
            let fragmented = u16::from_be_bytes([l3[6], l3[7]]) & 0x3fff != 0;
            (!fragmented && ihl >= 20).then(|| (l3[9], l3.get(ihl..)))
        }
        0x86dd if l3.len() >= 40 => {
            h.write(&l3[8..40]);
            h.write(&[l3[6]]);
            Some((l3[6], l3.get(40..)))
        }
        _ => None,
    };
    if let Some((6 | 17 | 132, Some(p))) = l4 {
        if p.len() >= 4 {
            h.write(&p[0..4]);
        }
    }
    h.finish()
}

/// FNV-1a, 32-bit: a few dozen bytes per frame, no key needed.
struct Fnv(u32);

impl Fnv {
    fn new() -> Self {
        Fnv(0x811c_9dc5)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    fn finish(&self) -> u32 {
        // Fold the high bits in: the pool index is taken modulo a small number.
        self.0 ^ (self.0 >> 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vxlan::MAX_POOL;

    fn udp4(sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn one_flow_one_hash_and_flows_spread() {
        assert_eq!(flow_hash(&udp4(1000, 53)), flow_hash(&udp4(1000, 53)));
        let buckets: std::collections::HashSet<u32> = (0..64)
            .map(|p| flow_hash(&udp4(40_000 + p, 53)) % MAX_POOL as u32)
            .collect();
        assert!(
            buckets.len() >= 16,
            "64 flows hit only {} of {MAX_POOL} source ports",
            buckets.len()
        );
    }

    #[test]
    fn fragments_hash_without_ports() {
        let mut a = udp4(1, 2);
        let mut b = udp4(3, 4);
        for f in [&mut a, &mut b] {
            f[20] = 0x20; // more fragments
        }
        assert_eq!(flow_hash(&a), flow_hash(&b));
    }

    #[test]
    fn short_and_odd_frames_do_not_panic() {
        for len in 0..60 {
            let f = udp4(1, 2);
            let _ = flow_hash(&f[..len.min(f.len())]);
        }
    }
}
