//! Ring ports: an interface in the daemon's namespace (the host end of a
//! container's veth, or an uplink) driven through `AF_PACKET` mmap rings of
//! `TPACKET_V2` slots instead of one `read`/`write` per frame. Receiving
//! costs no system call while frames keep coming (the reader polls only
//! when the ring is empty) and a whole batch of transmitted frames goes out
//! with one `send`.
//!
//! - [`open`] opens the rings on interface `ifname` of a namespace.
//! - [`RxRing::next`] yields received frames, each with its
//!   `virtio_net_hdr` (with [`RingSpec::vnet_hdr`]: GSO super-frames and
//!   partial checksums come through as on a TAP with `IFF_VNET_HDR`) and
//!   the VLAN tag the device took off, if any; [`RxRing::release`] gives
//!   their slots back. Frames the kernel could not fit in a slot and slots
//!   whose offsets do not add up are skipped and counted, never returned.
//! - [`TxRing::slot`] gives a free slot to fill ([`TxSlot::commit`]), or
//!   `None` when the ring is full, which counts one dropped frame: a full
//!   ring never blocks. [`TxRing::flush`] sends everything committed with
//!   one system call.
//! - [`RingCounters`]: what went through, and what was dropped where,
//!   including the kernel's own count of frames lost to a full receive
//!   ring (`PACKET_STATISTICS`).
//!
//! What a ring port does not do that a TAP port does: the kernel also
//! delivers every frame to the interface's own namespace stack (harmless
//! for a veth host end without addresses); with `qdisc_bypass`, frames the
//! port sends skip the interface's qdisc *and* its packet taps (tcpdump on
//! the interface does not see them); a frame the kernel refuses to send (a
//! malformed `virtio_net_hdr`) is dropped by the kernel without a count.
//! Measured on Linux 6.18 in docs/benchmarks-system.md, "Port types past
//! the TAP floor".

use std::cell::Cell;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::netlink::Rtnl;
use super::{netns, Netns, PortError};
use crate::sys::ring::{self as raw, Flush, RingOptions};

/// Bytes of `virtio_net_hdr` a ring port carries with `vnet_hdr`: the
/// 10-byte `struct virtio_net_hdr` (a TAP port's 12-byte header without
/// `num_buffers`; [`RxFrame::copy_to`] converts).
pub const VNET_HDR_LEN: usize = raw::VNET_HDR_LEN;

/// Slot size that holds a 64 KiB GSO super-frame, its Ethernet and VLAN
/// headers and the ring's own headers (15 slots per 1 MiB block).
pub const SUPER_FRAME_SLOT: u32 = 69904;
/// Slot size for frames up to a 1500-byte MTU with a VLAN tag.
pub const SMALL_SLOT: u32 = 2048;

/// How to open a ring port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSpec {
    /// A `virtio_net_hdr` in front of each frame, both ways. Without it a
    /// GSO super-frame from the interface does not fit a slot and is
    /// dropped (counted as truncated): turn TSO/GSO off on the peer.
    pub vnet_hdr: bool,
    /// Slots of the receive ring.
    pub rx_frames: u32,
    /// Slots of the transmit ring.
    pub tx_frames: u32,
    /// Bytes per slot: [`SUPER_FRAME_SLOT`] with `vnet_hdr`, else
    /// [`SMALL_SLOT`], unless set.
    pub frame_size: Option<u32>,
    /// `PACKET_QDISC_BYPASS` (see the module doc for what it costs).
    pub qdisc_bypass: bool,
    /// Join this `PACKET_FANOUT` group (hash mode): several ring ports on
    /// one interface, e.g. one per worker, share its traffic by flow.
    pub fanout: Option<u16>,
}

impl RingSpec {
    /// With `virtio_net_hdr` and super-frame slots: 64 receive and 64
    /// transmit slots (2 x 4.5 MiB). Too few receive slots for a busy
    /// machine: a veth never holds its sender back, so whatever arrives
    /// while the reader waits for a CPU must fit (on the 2-vCPU test VM,
    /// 64 slots lost 5-10% of a 50 k frames/s stream, 1024 nothing; see
    /// docs/benchmarks-system.md, "Port types past the TAP floor").
    pub fn super_frames() -> RingSpec {
        RingSpec {
            vnet_hdr: true,
            rx_frames: 64,
            tx_frames: 64,
            frame_size: None,
            qdisc_bypass: true,
            fanout: None,
        }
    }

    /// Without `virtio_net_hdr`: 256 slots of 2 KiB each way.
    pub fn small_frames() -> RingSpec {
        RingSpec {
            vnet_hdr: false,
            rx_frames: 256,
            tx_frames: 256,
            frame_size: None,
            qdisc_bypass: true,
            fanout: None,
        }
    }

    fn slot_size(&self) -> u32 {
        self.frame_size.unwrap_or(if self.vnet_hdr {
            SUPER_FRAME_SLOT
        } else {
            SMALL_SLOT
        })
    }
}

/// Opens the rings of `spec` on interface `ifname` in `netns`. The socket
/// lives in that namespace whatever thread uses it afterwards.
pub fn open(netns: &Netns, ifname: &str, spec: &RingSpec) -> Result<(RxRing, TxRing), PortError> {
    super::validate_ifname(ifname)?;
    let opts = RingOptions {
        frame_size: spec.slot_size(),
        rx_frames: spec.rx_frames,
        tx_frames: spec.tx_frames,
        vnet_hdr: spec.vnet_hdr,
        qdisc_bypass: spec.qdisc_bypass,
        fanout: spec.fanout,
    };
    let (rx, tx) = netns::run_in(netns, || {
        let inspect = |source| PortError::Inspect {
            ifname: ifname.to_string(),
            step: "get link",
            source,
        };
        let link = Rtnl::open()
            .and_then(|mut nl| nl.link_by_name(ifname))
            .map_err(inspect)?
            .ok_or_else(|| inspect(io::Error::from_raw_os_error(libc::ENODEV)))?;
        raw::open(link.index, &opts).map_err(PortError::configure(
            ifname,
            "open packet rings",
            &format_args!(
                "({} + {} slots of {} bytes{})",
                opts.rx_frames,
                opts.tx_frames,
                opts.frame_size,
                if opts.vnet_hdr {
                    ", virtio_net_hdr"
                } else {
                    ""
                }
            ),
        ))
    })??;
    Ok((
        RxRing {
            raw: rx,
            c: RxCounts::default(),
        },
        TxRing {
            batch: (spec.tx_frames == 0).then(|| raw::SendBatch::new(BATCH)),
            scratch: Vec::new(),
            raw: tx,
            retry: false,
            c: TxCounts::default(),
        },
    ))
}

/// What a ring port counted. Receive side and transmit side come from the
/// two rings ([`RxRing::counters`], [`TxRing::counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames longer than a slot (a super-frame without `vnet_hdr`, or
    /// beyond the slot size): skipped.
    pub rx_truncated: u64,
    /// Slots whose offsets or lengths did not fit the slot: skipped.
    pub rx_malformed: u64,
    /// Frames the kernel offered the socket (`PACKET_STATISTICS`).
    pub rx_kernel_seen: u64,
    /// Of those, dropped by the kernel because the receive ring was full.
    pub rx_kernel_drops: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames not sent because every transmit slot was in use.
    pub tx_ring_full: u64,
    /// Frames larger than a transmit slot: not sent.
    pub tx_too_big: u64,
    /// `send` calls that flushed the transmit ring.
    pub tx_flushes: u64,
    /// Flushes the device refused for now (its queue full): the frames stay
    /// in the ring and the next flush sends them.
    pub tx_busy: u64,
    /// Without a transmit ring: frames the device refused (its queue full),
    /// dropped.
    pub tx_refused: u64,
}

#[derive(Default)]
struct RxCounts {
    frames: Cell<u64>,
    bytes: Cell<u64>,
    truncated: Cell<u64>,
    malformed: Cell<u64>,
    kernel_seen: Cell<u64>,
    kernel_drops: Cell<u64>,
}

fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get().wrapping_add(by));
}

/// The receive side of a ring port.
pub struct RxRing {
    raw: raw::RxRing,
    c: RxCounts,
}

/// An 802.1Q/802.1ad tag the device took off a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag {
    /// 0x8100 or 0x88a8.
    pub tpid: u16,
    pub tci: u16,
}

/// One received frame, valid until the ring's next `release`.
#[derive(Clone, Copy, Debug)]
pub struct RxFrame<'a> {
    /// The `virtio_net_hdr` (little-endian fields) in front of the frame;
    /// empty without `vnet_hdr`.
    pub vnet: &'a [u8],
    /// The frame from its Ethernet header on, without the tag in `vlan`.
    pub data: &'a [u8],
    /// `vnet` and `data` as one slice, as a port with the same header
    /// length sends it (without the tag in `vlan`).
    pub wire: &'a [u8],
    /// The VLAN tag the device took off (veth and many NICs strip it into
    /// metadata): put it back with [`RxFrame::copy_to`] before forwarding.
    pub vlan: Option<VlanTag>,
}

/// `virtio_net_hdr` field offsets used when a tag is put back.
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_HDR_LEN_FIELD: usize = 2;
const VNET_CSUM_START: usize = 6;

impl RxFrame<'_> {
    /// Bytes [`copy_to`](Self::copy_to) writes for a `vnet_len`-byte header.
    pub fn len_with(&self, vnet_len: usize) -> usize {
        vnet_len + self.data.len() + if self.vlan.is_some() { 4 } else { 0 }
    }

    /// Writes a `vnet_len`-byte `virtio_net_hdr` (this frame's, cut or
    /// zero-padded to that length) and the frame, with its VLAN tag back in
    /// place (the header's offsets moved past it), to the start of `dst`.
    /// Returns the bytes written, or `None` when `dst` is too short.
    pub fn copy_to(&self, dst: &mut [u8], vnet_len: usize) -> Option<usize> {
        let total = self.len_with(vnet_len);
        let out = dst.get_mut(..total)?;
        let (hdr, frame) = out.split_at_mut(vnet_len);
        let n = self.vnet.len().min(vnet_len);
        hdr[..n].copy_from_slice(&self.vnet[..n]);
        hdr[n..].fill(0);
        match self.vlan {
            None => frame.copy_from_slice(self.data),
            Some(tag) => {
                // Addresses, then the tag, then the rest from the EtherType on.
                let macs = self.data.len().min(12);
                frame[..macs].copy_from_slice(&self.data[..macs]);
                frame[macs..macs + 2].copy_from_slice(&tag.tpid.to_be_bytes());
                frame[macs + 2..macs + 4].copy_from_slice(&tag.tci.to_be_bytes());
                frame[macs + 4..].copy_from_slice(&self.data[macs..]);
                if hdr.len() >= VNET_CSUM_START + 2 && hdr[0] & VNET_F_NEEDS_CSUM != 0 {
                    for at in [VNET_CSUM_START, VNET_HDR_LEN_FIELD] {
                        let v = u16::from_le_bytes([hdr[at], hdr[at + 1]]);
                        if v != 0 {
                            hdr[at..at + 2].copy_from_slice(&v.saturating_add(4).to_le_bytes());
                        }
                    }
                }
            }
        }
        Some(total)
    }
}

impl RxRing {
    /// The socket: readable (poll, epoll) when a frame waits.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.raw.fd()
    }

    /// Bytes of `virtio_net_hdr` in front of each frame: 0, or
    /// [`VNET_HDR_LEN`].
    pub fn vnet_len(&self) -> usize {
        self.raw.vnet_len()
    }

    /// Slots in the ring.
    pub fn frames(&self) -> usize {
        self.raw.frames()
    }

    /// The next received frame, or `None` when the ring holds no more (or
    /// every slot is handed out: call [`release`](Self::release)). Frames
    /// that cannot be forwarded whole are counted and skipped.
    pub fn next(&self) -> Option<RxFrame<'_>> {
        loop {
            let f = self.raw.next()?;
            if f.malformed {
                bump(&self.c.malformed, 1);
                continue;
            }
            if f.data.len() < f.wire_len as usize {
                bump(&self.c.truncated, 1);
                continue;
            }
            bump(&self.c.frames, 1);
            bump(&self.c.bytes, f.data.len() as u64);
            let vlan = (f.status & libc::TP_STATUS_VLAN_VALID != 0).then_some(VlanTag {
                tpid: if f.status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    f.vlan_tpid
                } else {
                    0x8100
                },
                tci: f.vlan_tci,
            });
            return Some(RxFrame {
                vnet: f.vnet,
                data: f.data,
                wire: f.wire,
                vlan,
            });
        }
    }

    /// Whether a frame waits (no system call).
    pub fn ready(&self) -> bool {
        self.raw.ready()
    }

    /// Gives the slots of every frame returned since the last call back to
    /// the kernel.
    pub fn release(&mut self) {
        self.raw.release();
    }

    /// Waits up to `timeout` for a frame; false on timeout or a signal.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        self.raw.wait(timeout)
    }

    /// The receive counters, the kernel's drop count brought up to date
    /// (one `getsockopt`: call it for statistics, not per frame).
    pub fn counters(&self) -> RingCounters {
        if let Ok((seen, drops)) = self.raw.take_stats() {
            bump(&self.c.kernel_seen, u64::from(seen));
            bump(&self.c.kernel_drops, u64::from(drops));
        }
        RingCounters {
            rx_frames: self.c.frames.get(),
            rx_bytes: self.c.bytes.get(),
            rx_truncated: self.c.truncated.get(),
            rx_malformed: self.c.malformed.get(),
            rx_kernel_seen: self.c.kernel_seen.get(),
            rx_kernel_drops: self.c.kernel_drops.get(),
            ..RingCounters::default()
        }
    }
}

#[derive(Default)]
struct TxCounts {
    frames: u64,
    bytes: u64,
    ring_full: u64,
    too_big: u64,
    flushes: u64,
    busy: u64,
    refused: u64,
}

/// The transmit side of a ring port: a transmit ring, or, opened with
/// `tx_frames: 0`, batches of frames sent with one `sendmmsg`, each copied
/// once by the kernel ([`TxRing::send_wires`], [`TxRing::forward_from`]).
pub struct TxRing {
    raw: raw::TxRing,
    /// The last flush was refused: flush again even with nothing new.
    retry: bool,
    c: TxCounts,
    /// Without a transmit ring: the `sendmmsg` scratch.
    batch: Option<raw::SendBatch>,
    /// A frame whose VLAN tag goes back in, or whose header length differs.
    scratch: Vec<u8>,
}

/// Frames per `sendmmsg`.
const BATCH: usize = 64;

/// A free transmit slot.
pub struct TxSlot<'a> {
    raw: raw::TxSlot<'a>,
    vnet_len: usize,
    capacity: usize,
    c: &'a mut TxCounts,
}

impl TxSlot<'_> {
    /// The whole slot: the `virtio_net_hdr` (its first
    /// [`TxRing::vnet_len`] bytes), then room for the frame.
    pub fn buf(&mut self) -> &mut [u8] {
        self.raw.buf()
    }

    /// The `virtio_net_hdr` part of the slot.
    pub fn vnet_mut(&mut self) -> &mut [u8] {
        let n = self.vnet_len;
        &mut self.raw.buf()[..n]
    }

    /// The frame part of the slot.
    pub fn frame_mut(&mut self) -> &mut [u8] {
        let n = self.vnet_len;
        &mut self.raw.buf()[n..]
    }

    /// Queues the slot's header and its first `frame_len` frame bytes for
    /// the next [`TxRing::flush`]. A `frame_len` past the slot is counted
    /// as too big and nothing is sent.
    pub fn commit(self, frame_len: usize) {
        let total = self.vnet_len + frame_len;
        if total > self.capacity {
            self.c.too_big += 1;
            return;
        }
        self.c.frames += 1;
        self.c.bytes += frame_len as u64;
        self.raw.commit(total);
    }
}

impl TxRing {
    /// Bytes of `virtio_net_hdr` in front of each frame: 0, or [`VNET_HDR_LEN`].
    pub fn vnet_len(&self) -> usize {
        self.raw.vnet_len()
    }

    /// The largest frame a slot holds (without the `virtio_net_hdr`).
    pub fn max_frame(&self) -> usize {
        self.raw.capacity().saturating_sub(self.raw.vnet_len())
    }

    /// Slots in the ring.
    pub fn frames(&self) -> usize {
        self.raw.frames()
    }

    /// The next free slot, or `None` when every slot is committed or still
    /// in flight, which counts one frame dropped (`tx_ring_full`).
    pub fn slot(&mut self) -> Option<TxSlot<'_>> {
        let vnet_len = self.raw.vnet_len();
        let capacity = self.raw.capacity();
        match self.raw.slot() {
            Some(raw) => Some(TxSlot {
                raw,
                vnet_len,
                capacity,
                c: &mut self.c,
            }),
            None => {
                self.c.ring_full += 1;
                None
            }
        }
    }

    /// Copies `frame` (and its VLAN tag) into the next free slot and
    /// commits it; false (counted) when the ring is full or the frame too big.
    pub fn push(&mut self, frame: &RxFrame<'_>) -> bool {
        let vnet_len = self.raw.vnet_len();
        let Some(mut slot) = self.slot() else {
            return false;
        };
        match frame.copy_to(slot.buf(), vnet_len) {
            Some(n) => {
                slot.commit(n - vnet_len);
                true
            }
            None => {
                slot.c.too_big += 1;
                false
            }
        }
    }

    /// Sends every committed slot with one `send` (none when there is
    /// nothing to send). Returns true when the device refused some for now:
    /// they stay queued, and the caller should flush again soon.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self.raw.flush(self.retry)? {
            Flush::Idle => Ok(false),
            Flush::Sent => {
                self.c.flushes += 1;
                self.retry = false;
                Ok(false)
            }
            Flush::Busy => {
                self.c.flushes += 1;
                self.c.busy += 1;
                self.retry = true;
                Ok(true)
            }
        }
    }

    /// Without a transmit ring (`tx_frames: 0`): sends `wires` (each the
    /// port's `virtio_net_hdr`, if any, and a frame, as
    /// [`RxFrame::wire`] is) with one `sendmmsg` per 64. Returns how many
    /// went; the rest the device refused (its queue full) and are dropped
    /// and counted (`tx_refused`).
    pub fn send_wires(&mut self, wires: &[&[u8]]) -> io::Result<usize> {
        let Some(batch) = self.batch.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "send_wires needs a ring port opened without a transmit ring (tx_frames: 0)",
            ));
        };
        let vnet_len = self.raw.vnet_len();
        let mut sent = 0;
        for chunk in wires.chunks(BATCH) {
            let n = batch.send(self.raw.fd(), chunk)?;
            self.c.flushes += 1;
            for w in &chunk[..n] {
                self.c.frames += 1;
                self.c.bytes += w.len().saturating_sub(vnet_len) as u64;
            }
            sent += n;
            if n < chunk.len() {
                break;
            }
        }
        self.c.refused += (wires.len() - sent) as u64;
        Ok(sent)
    }

    /// Without a transmit ring: takes up to `budget` frames from `rx` and
    /// sends them all, 64 per `sendmmsg`, straight from `rx`'s slots (one
    /// copy, by the kernel). A frame whose VLAN tag must go back in (or
    /// whose header length differs from this port's) is copied and sent on
    /// its own. Returns the frames taken; call `rx.release()` after.
    pub fn forward_from(&mut self, rx: &RxRing, budget: usize) -> io::Result<usize> {
        let vnet_len = self.raw.vnet_len();
        let mut wires: [&[u8]; BATCH] = [&[]; BATCH];
        let (mut n, mut taken) = (0, 0);
        while taken < budget {
            let Some(f) = rx.next() else { break };
            taken += 1;
            if f.vlan.is_none() && f.vnet.len() == vnet_len {
                wires[n] = f.wire;
                n += 1;
                if n == BATCH {
                    self.send_wires(&wires)?;
                    n = 0;
                }
                continue;
            }
            // The odd one: send what is batched, then it alone.
            self.send_wires(&wires[..n])?;
            n = 0;
            let need = f.len_with(vnet_len);
            if self.scratch.len() < need {
                self.scratch.resize(need, 0);
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            let sent = match f.copy_to(&mut scratch, vnet_len) {
                Some(len) => self.send_wires(&[&scratch[..len]]),
                None => Ok(0),
            };
            self.scratch = scratch;
            sent?;
        }
        self.send_wires(&wires[..n])?;
        Ok(taken)
    }

    /// Whether frames wait for a retried flush.
    pub fn pending(&self) -> bool {
        self.retry
    }

    /// The transmit counters.
    pub fn counters(&self) -> RingCounters {
        RingCounters {
            tx_frames: self.c.frames,
            tx_bytes: self.c.bytes,
            tx_ring_full: self.c.ring_full,
            tx_too_big: self.c.too_big,
            tx_flushes: self.c.flushes,
            tx_busy: self.c.busy,
            tx_refused: self.c.refused,
            ..RingCounters::default()
        }
    }
}

impl RingCounters {
    /// The receive counters of `rx` and the transmit counters of `tx`.
    pub fn of(rx: &RxRing, tx: &TxRing) -> RingCounters {
        RingCounters {
            tx_frames: tx.c.frames,
            tx_bytes: tx.c.bytes,
            tx_ring_full: tx.c.ring_full,
            tx_too_big: tx.c.too_big,
            tx_flushes: tx.c.flushes,
            tx_busy: tx.c.busy,
            tx_refused: tx.c.refused,
            ..rx.counters()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_to_puts_the_vlan_tag_back_and_moves_the_checksum_offsets() {
        let data: Vec<u8> = (0u8..60).collect();
        let mut vnet = [0u8; 12];
        vnet[0] = VNET_F_NEEDS_CSUM;
        vnet[VNET_HDR_LEN_FIELD..VNET_HDR_LEN_FIELD + 2].copy_from_slice(&54u16.to_le_bytes());
        vnet[VNET_CSUM_START..VNET_CSUM_START + 2].copy_from_slice(&34u16.to_le_bytes());
        let f = RxFrame {
            vnet: &vnet,
            data: &data,
            wire: &[],
            vlan: Some(VlanTag {
                tpid: 0x8100,
                tci: 10,
            }),
        };
        let mut out = [0u8; 100];
        assert_eq!(f.copy_to(&mut out, 12), Some(12 + 64));
        assert_eq!(&out[12..24], &data[..12]);
        assert_eq!(&out[24..28], &[0x81, 0x00, 0x00, 10]);
        assert_eq!(&out[28..76], &data[12..]);
        assert_eq!(u16::from_le_bytes([out[6], out[7]]), 38);
        assert_eq!(u16::from_le_bytes([out[2], out[3]]), 58);
        // Too short: nothing.
        assert_eq!(f.copy_to(&mut out[..75], 12), None);
        // A 10-byte header into 12: padded; without a tag: unchanged.
        let g = RxFrame {
            vnet: &vnet[..10],
            data: &data,
            wire: &[],
            vlan: None,
        };
        let mut out = [0xffu8; 100];
        assert_eq!(g.copy_to(&mut out, 12), Some(72));
        assert_eq!(&out[..10], &vnet[..10]);
        assert_eq!(&out[10..12], &[0, 0]);
        assert_eq!(&out[12..72], &data[..]);
    }
}
