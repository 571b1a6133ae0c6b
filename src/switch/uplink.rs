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
//! Every worker reads its own socket of the uplink (a fanout group by
//! flow hash, `sys::pktport`). Storm control's bucket ([`Storm`]) is the
//! one thing they share: one atomic update per broadcast or multicast
//! frame from the LAN, no lock, so the limit is the network's whatever
//! worker a frame lands on.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::decide::{Decision, Verdict};
use super::policy::OwnedMacs;
use crate::fdb::NetId;
use crate::metrics::{DropReason, PortStats};
use crate::offload::VNET_HDR_LEN;
pub use crate::sys::ring::RxGeometry;
use crate::sys::ring::{self, RxRing};
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
    /// Each socket has a receive ring of this shape
    /// (`sys::uplink::open_ring_group`): its worker maps it and reads the
    /// frames from it ([`RingRx`]).
    pub ring: Option<RxGeometry>,
}

/// How uplinks take frames in (`daemon --uplink-rx`, `--uplink-buffer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UplinkRx {
    /// Through a `TPACKET_V2` receive ring per socket, else one `read`
    /// per frame.
    pub ring: bool,
    /// MiB of frames not read yet that each socket (one per worker) may
    /// hold: its receive buffer, and with `ring` also the ring's size.
    pub buffer_mib: u32,
}

impl UplinkRx {
    /// `--uplink-buffer`'s default.
    pub const DEFAULT_BUFFER_MIB: u32 = 8;
    /// The most `--uplink-buffer` takes.
    pub const MAX_BUFFER_MIB: u32 = 256;

    /// The buffer in bytes.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_mib.clamp(1, Self::MAX_BUFFER_MIB) as usize * (1 << 20)
    }

    /// `--uplink-rx`'s value: `ring` or `socket`.
    pub fn parse_mode(s: &str) -> Result<bool, String> {
        match s {
            "ring" => Ok(true),
            "socket" => Ok(false),
            _ => Err(format!(
                "{s:?} is no uplink receive mode: use ring or socket"
            )),
        }
    }
}

impl Default for UplinkRx {
    fn default() -> Self {
        UplinkRx {
            ring: false,
            buffer_mib: Self::DEFAULT_BUFFER_MIB,
        }
    }
}

/// A worker's receive ring of an uplink socket: frames read from it as
/// a `read` of the socket would give them.
pub(super) struct RingRx {
    ring: RxRing,
}

impl RingRx {
    /// Maps the ring `g` of socket `fd` (a duplicate is kept with the
    /// mapping).
    pub(super) fn map(fd: BorrowedFd<'_>, g: RxGeometry) -> io::Result<RingRx> {
        let own = fd.try_clone_to_owned()?;
        Ok(RingRx {
            ring: ring::map_rx(own, g)?,
        })
    }

    /// The next frame into `buf` as a `read` of `file` (the ring's socket)
    /// gives it: the 12-byte `virtio_net_hdr` (the ring's 10 bytes and a
    /// zero `num_buffers`), then the frame. The VLAN tag the kernel took
    /// off is not put back: the socket's filter took only the network's
    /// VLAN, as on a plain socket. A frame longer than a slot waits whole
    /// on the socket's queue (`TP_STATUS_COPY`) and is read from there. A
    /// frame cut short (the queue was full too) is counted as `rx_error`
    /// and skipped. `WouldBlock` when the ring is empty.
    #[inline]
    pub(super) fn read(&self, file: &File, stats: &PortStats, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let got = self.ring.with_next(|f| {
                if f.status & libc::TP_STATUS_COPY != 0 {
                    return Slot::Copied;
                }
                let hdr = VNET_HDR_LEN;
                let n = hdr + f.data.len();
                if f.malformed
                    || f.data.len() < f.wire_len as usize
                    || f.vnet.len() + 2 != hdr
                    || buf.len() < n
                {
                    return Slot::Cut;
                }
                buf[..hdr - 2].copy_from_slice(f.vnet);
                buf[hdr - 2..hdr].fill(0);
                buf[hdr..n].copy_from_slice(f.data);
                Slot::Frame(n)
            });
            match got {
                None => return Err(io::ErrorKind::WouldBlock.into()),
                Some(Slot::Frame(n)) => return Ok(n),
                Some(Slot::Copied) => match (&*file).read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                },
                Some(Slot::Cut) => stats.count_drop(DropReason::RxError),
            }
        }
    }
}

enum Slot {
    Frame(usize),
    Copied,
    Cut,
}

/// Storm control of one uplink: a token bucket in thousandths of a
/// frame, shared by the workers that read it.
#[derive(Debug)]
pub(super) struct Storm {
    rate: u64,
    cap: u64,
    tokens: AtomicU64,
    /// When the bucket was last refilled (milliseconds).
    last: AtomicU64,
}

impl Storm {
    /// The bucket of `pps` frames per second (bursts of one second's
    /// worth); `None` for 0, no limit.
    pub(super) fn new(pps: u32) -> Option<Arc<Storm>> {
        (pps > 0).then(|| {
            let rate = u64::from(pps);
            Arc::new(Storm {
                rate,
                cap: rate * 1000,
                tokens: AtomicU64::new(rate * 1000),
                last: AtomicU64::new(0),
            })
        })
    }

    /// Takes one frame's token if there is one, after adding what the
    /// time since the last refill gives (one worker wins each refill).
    #[inline]
    fn take(&self, now: Millis) -> bool {
        let last = self.last.load(Relaxed);
        if now.0 > last
            && self
                .last
                .compare_exchange(last, now.0, Relaxed, Relaxed)
                .is_ok()
        {
            let add = (now.0 - last).saturating_mul(self.rate);
            let cap = self.cap;
            let _ = self
                .tokens
                .fetch_update(Relaxed, Relaxed, |t| Some(t.saturating_add(add).min(cap)));
        }
        self.tokens
            .fetch_update(Relaxed, Relaxed, |t| t.checked_sub(1000))
            .is_ok()
    }
}

/// A worker's share of an uplink port.
pub(super) struct UplinkPort {
    /// The 4 bytes of the 802.1Q tag, for a tagged network.
    tag: Option<[u8; 4]>,
    storm: Option<Arc<Storm>>,
}

impl UplinkPort {
    /// The worker's share of uplink `c`, with the port's `storm` bucket.
    pub(super) fn new(c: UplinkConfig, storm: Option<Arc<Storm>>) -> UplinkPort {
        UplinkPort {
            tag: c.vlan.map(|v| {
                let tci = (v & 0x0fff).to_be_bytes();
                [0x81, 0x00, tci[0], tci[1]]
            }),
            storm,
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
        b.take(now)
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
        let c = UplinkConfig {
            vlan: None,
            storm_pps: 10,
            ring: None,
        };
        let u = UplinkPort::new(c, Storm::new(c.storm_pps));
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
        let off = UplinkPort::new(UplinkConfig::default(), None);
        assert!((0..10_000).all(|_| off.admit(&bcast, t0)));
        // Two workers share one bucket: together they let through no more.
        let storm = Storm::new(10);
        let (a, b) = (UplinkPort::new(c, storm.clone()), UplinkPort::new(c, storm));
        let through = (0..100)
            .filter(|i| {
                if i % 2 == 0 {
                    a.admit(&bcast, t0)
                } else {
                    b.admit(&bcast, t0)
                }
            })
            .count();
        assert_eq!(through, 10);
    }

    #[test]
    fn unicast_from_the_lan_goes_to_the_port_that_owns_it_or_nowhere() {
        use crate::fdb::PortId;
        let mut owned = OwnedMacs::default();
        let mine = [2, 0, 0, 0, 0, 1];
        owned.claim(NetId(0), MacAddr(mine), PortId(3)).unwrap();
        let flood = Verdict {
            decision: Decision::Flood,
            learned: None,
        };
        let frame = |dst: [u8; 6]| {
            let mut f = vec![0u8; 60];
            f[..6].copy_from_slice(&dst);
            f
        };
        let to = |dst, net| from_lan(flood, &frame(dst), &owned, NetId(net)).decision;
        assert_eq!(
            to(mine, 0),
            Decision::Forward(PortId(3)),
            "a silent container"
        );
        assert_eq!(
            to([2, 0, 0, 0, 0, 9], 0),
            Decision::Drop(DropReason::UplinkUnknownDst),
            "another LAN host's frame"
        );
        assert_eq!(
            to(mine, 1),
            Decision::Drop(DropReason::UplinkUnknownDst),
            "another network's container"
        );
        assert_eq!(to([0xff; 6], 0), Decision::Flood, "broadcast");
        assert_eq!(
            to([0x33, 0x33, 0, 0, 0, 1], 0),
            Decision::Flood,
            "multicast"
        );
        let known = Verdict {
            decision: Decision::Forward(PortId(7)),
            learned: None,
        };
        assert_eq!(
            from_lan(known, &frame([2, 0, 0, 0, 0, 9]), &owned, NetId(0)),
            known
        );
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
        let c = UplinkConfig {
            vlan: Some(10),
            storm_pps: 0,
            ring: None,
        };
        let tag = UplinkPort::new(c, None).tag().unwrap();
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
