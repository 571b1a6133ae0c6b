//! The uplink's port kind: what the engine does differently for a port
//! that is a host interface on the LAN (`ports::uplink`) rather than a
//! container.
//!
//! - **In**: broadcast and multicast from the LAN pass a token bucket
//!   (storm control, `storm` drops); a unicast frame must be for a MAC of
//!   the network: a MAC the FDB knows, or a port's own MAC
//!   ([`OwnedMacs`]) that has not spoken for a while. Anything else, the
//!   LAN's traffic between other hosts that a promiscuous interface sees,
//!   is dropped (`uplink_unknown_dst`), never flooded to the containers,
//!   as macvlan delivers only what is addressed to its MACs.
//! - **Out**: a tagged network's frames get their 802.1Q tag on the way
//!   out ([`write_tagged`]), without a copy of the frame: one `writev` of
//!   the `virtio_net_hdr` (checksum offsets moved by the tag's 4 bytes),
//!   the MACs and the tag, then the rest.
//!
//! State here is the reading worker's own (only worker 0 reads an
//! uplink), in `Cell`s, so nothing is shared per frame.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, IoSlice, Write};

use super::decide::{Decision, Verdict};
use super::policy::OwnedMacs;
use crate::fdb::NetId;
use crate::metrics::DropReason;
use crate::time::Millis;
use crate::wire::MacAddr;

/// What the engine needs to know of an uplink port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkConfig {
    /// Frames out get this 802.1Q VLAN id (the socket takes only its
    /// frames in); `None`: untagged.
    pub vlan: Option<u16>,
    /// Broadcast and multicast frames per second taken in from the LAN
    /// (bursts of one second's worth); 0: no limit.
    pub storm_pps: u32,
}

/// A token bucket in thousandths of a frame.
struct Bucket {
    rate: u64,
    cap: u64,
    tokens: Cell<u64>,
    last: Cell<Millis>,
}

/// A worker's share of an uplink port.
pub(super) struct UplinkPort {
    /// The 4 bytes of the 802.1Q tag, for a tagged network.
    tag: Option<[u8; 4]>,
    storm: Option<Bucket>,
}

impl UplinkPort {
    pub(super) fn new(c: UplinkConfig) -> UplinkPort {
        UplinkPort {
            tag: c.vlan.map(|v| {
                let tci = (v & 0x0fff).to_be_bytes();
                [0x81, 0x00, tci[0], tci[1]]
            }),
            storm: (c.storm_pps > 0).then(|| {
                let rate = u64::from(c.storm_pps);
                Bucket {
                    rate,
                    cap: rate * 1000,
                    tokens: Cell::new(rate * 1000),
                    last: Cell::new(Millis(0)),
                }
            }),
        }
    }

    #[inline]
    pub(super) fn tag(&self) -> Option<[u8; 4]> {
        self.tag
    }

    /// Whether a frame from the LAN may come in, as far as storm control
    /// goes: unicast always, broadcast and multicast while the bucket has
    /// a token.
    #[inline]
    pub(super) fn admit(&self, frame: &[u8], now: Millis) -> bool {
        let (Some(b), Some(&first)) = (&self.storm, frame.first()) else {
            return true;
        };
        if first & 1 == 0 {
            return true;
        }
        let elapsed = now.saturating_sub(b.last.get());
        let mut t = b.tokens.get();
        if elapsed > 0 {
            t = t.saturating_add(elapsed.saturating_mul(b.rate)).min(b.cap);
            b.last.set(now);
        }
        if t < 1000 {
            b.tokens.set(t);
            return false;
        }
        b.tokens.set(t - 1000);
        true
    }
}

/// What becomes of `decide()`'s verdict for a frame from an uplink: a
/// flood of a unicast frame goes to the port that owns the destination
/// MAC, if one does, and is dropped otherwise.
#[inline]
pub(super) fn from_lan(mut v: Verdict, frame: &[u8], owned: &OwnedMacs, net: NetId) -> Verdict {
    if v.decision != Decision::Flood {
        return v;
    }
    let Some(dst) = frame.get(..6) else {
        return v;
    };
    if dst[0] & 1 != 0 {
        return v;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(dst);
    v.decision = match owned.owner(net, MacAddr(mac)) {
        Some(port) => Decision::Forward(port),
        None => Decision::Drop(DropReason::UplinkUnknownDst),
    };
    v
}

/// Writes `bytes` (a `virtio_net_hdr` of `hdr` bytes, then the frame) to
/// `file` with the 802.1Q `tag` inserted after the MACs. Returns the bytes
/// of `bytes` written, as a plain write would.
pub(super) fn write_tagged(
    file: &File,
    bytes: &[u8],
    hdr: usize,
    tag: [u8; 4],
) -> io::Result<usize> {
    const MACS: usize = 12;
    let Some(rest) = bytes.get(hdr + MACS..) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let mut head = [0u8; 12 + MACS + 4];
    if hdr > 12 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    head[..hdr + MACS].copy_from_slice(&bytes[..hdr + MACS]);
    head[hdr + MACS..hdr + MACS + 4].copy_from_slice(&tag);
    if hdr >= 10 {
        // virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start,
        // csum_offset (little-endian). What counts from the frame's start
        // moves by the tag.
        const NEEDS_CSUM: u8 = 1;
        let bump = |h: &mut [u8], at: usize| {
            let v = u16::from_le_bytes([h[at], h[at + 1]]);
            if v != 0 {
                h[at..at + 2].copy_from_slice(&v.saturating_add(4).to_le_bytes());
            }
        };
        if head[0] & NEEDS_CSUM != 0 {
            bump(&mut head, 6);
        }
        bump(&mut head, 2);
    }
    let head = &head[..hdr + MACS + 4];
    let n = (&*file).write_vectored(&[IoSlice::new(head), IoSlice::new(rest)])?;
    Ok(n.saturating_sub(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_control_lets_a_seconds_worth_through_then_the_rate() {
        let u = UplinkPort::new(UplinkConfig {
            vlan: None,
            storm_pps: 10,
        });
        let bcast = [0xffu8; 14];
        let unicast = [0x02u8; 14];
        let t0 = Millis(1_000);
        let through = (0..100).filter(|_| u.admit(&bcast, t0)).count();
        assert_eq!(through, 10);
        assert!(u.admit(&unicast, t0), "unicast is not rate-limited");
        // 10 per second: one more after 100 ms, not before.
        assert!(!u.admit(&bcast, t0.add_ms(50)));
        assert!(u.admit(&bcast, t0.add_ms(100)));
        assert!(!u.admit(&bcast, t0.add_ms(100)));
        let off = UplinkPort::new(UplinkConfig::default());
        assert!((0..10_000).all(|_| off.admit(&bcast, t0)));
    }

    #[test]
    fn a_tag_goes_after_the_macs_and_moves_the_checksum_offsets() {
        let (a, b) = crate::sys::fd::seqpacket_pair().unwrap();
        let a = File::from(a);
        let mut msg = vec![0u8; 12];
        msg[0] = 1; // NEEDS_CSUM
        msg[2..4].copy_from_slice(&54u16.to_le_bytes());
        msg[6..8].copy_from_slice(&34u16.to_le_bytes());
        msg[8..10].copy_from_slice(&16u16.to_le_bytes());
        let frame: Vec<u8> = (0..60u8).collect();
        msg.extend_from_slice(&frame);
        let tag = UplinkPort::new(UplinkConfig {
            vlan: Some(10),
            storm_pps: 0,
        })
        .tag()
        .unwrap();
        assert_eq!(write_tagged(&a, &msg, 12, tag).unwrap(), msg.len());
        let mut got = [0u8; 200];
        let n = rustix_read(&b, &mut got);
        let got = &got[..n];
        assert_eq!(n, msg.len() + 4);
        assert_eq!(u16::from_le_bytes([got[2], got[3]]), 58, "hdr_len");
        assert_eq!(u16::from_le_bytes([got[6], got[7]]), 38, "csum_start");
        assert_eq!(u16::from_le_bytes([got[8], got[9]]), 16, "csum_offset");
        assert_eq!(&got[12..24], &frame[..12]);
        assert_eq!(&got[24..28], &[0x81, 0x00, 0x00, 10]);
        assert_eq!(&got[28..], &frame[12..]);
    }

    fn rustix_read(fd: &std::os::fd::OwnedFd, buf: &mut [u8]) -> usize {
        use std::io::Read;
        File::from(fd.try_clone().unwrap()).read(buf).unwrap()
    }
}
