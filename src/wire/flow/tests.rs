//! The flow hash against a reference copy of the hand-written function it
//! replaced (vxlan::flow_hash as of 0205aa4): the same value for every
//! frame of the test corpus, so no flow changes its VXLAN source port.

use super::*;
use crate::wire::test_frames;

/// The function as it was before the views, verbatim.
fn reference(frame: &[u8]) -> u32 {
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

#[test]
fn matches_the_reference_on_the_corpus() {
    let mut n = 0;
    let mut distinct = std::collections::HashSet::new();
    test_frames::for_each(|f| {
        let got = flow_hash(f);
        assert_eq!(got, reference(f), "frame {f:02x?}");
        distinct.insert(got);
        n += 1;
    });
    assert!(
        n > 10_000 && distinct.len() > 1000,
        "{n} frames, {} hashes",
        distinct.len()
    );
}

/// An Ethernet/IPv4/UDP frame from 10.0.0.1:`sport` to 10.0.0.2:`dport`.
fn udp4(sport: u16, dport: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 8, 0, 0]);
    f
}

#[test]
fn pinned_values() {
    // Values of the original function: a change here moves every flow.
    assert_eq!(flow_hash(&[]), 0);
    assert_eq!(flow_hash(&udp4(1000, 53)), reference(&udp4(1000, 53)));
    let mut tagged = udp4(1000, 53);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
    assert_eq!(flow_hash(&tagged), reference(&tagged));
    // The tag is looked through and its VLAN ID is not hashed.
    assert_eq!(flow_hash(&tagged), flow_hash(&udp4(1000, 53)));
}

#[test]
fn ports_count_unless_fragmented() {
    assert_ne!(flow_hash(&udp4(1, 2)), flow_hash(&udp4(3, 4)));
    let (mut a, mut b) = (udp4(1, 2), udp4(3, 4));
    for f in [&mut a, &mut b] {
        f[20] = 0x20; // more fragments
    }
    assert_eq!(flow_hash(&a), flow_hash(&b));
}
