//! Live capture: copies of frames, taken in the dataplane after the
//! forwarding decision (received) and at the write (sent), written as
//! pcapng by a thread of their own.
//!
//! The dataplane's side is [`tap`]: one relaxed load of a static flag
//! when nobody captures. While a capture runs, a frame of a watched port
//! (its `PortStats` is the key: unique in the process while the port
//! lives, and the same for every worker) is copied, up to the snap length,
//! into a buffer taken from the capture's free list and queued for its
//! writer. Both are bounded lock-free queues (`crossbeam_channel::bounded`,
//! arrays) filled before the capture starts: no allocation, lock or
//! syscall per frame. When the writer (a slow reader behind it) falls
//! behind, the free list is empty and the copy is lost and counted, never
//! the frame, never a wait.
//!
//! At most [`SLOTS`] captures run at once, each on at most [`MAX_TARGETS`]
//! ports.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use super::pcapng::{self, Dir};
use crate::metrics::{DropReason, PortStats};
use crate::offload::{self, VnetHdr};

/// Captures running at once at most.
pub const SLOTS: usize = 4;
/// Ports (or VTEPs) one capture watches at most.
pub const MAX_TARGETS: usize = 64;
/// Copies queued per capture at most.
pub const QUEUE: usize = 512;
/// Default and largest snap length: a 64 KiB super-frame whole.
pub const MAX_SNAPLEN: u32 = 65_536;

/// A copy on its way to the writer.
struct Copy {
    data: Vec<u8>,
    orig_len: u32,
    key: usize,
    dir: Dir,
    drop: Option<DropReason>,
    /// A super-frame's offload metadata, as the switch holds it.
    gso: VnetHdr,
    ts_ns: u64,
}

struct Queues {
    free_tx: Sender<Copy>,
    free_rx: Receiver<Copy>,
    full_tx: Sender<Copy>,
    full_rx: Receiver<Copy>,
}

/// One capture's place: what it watches, its queues, its counts.
struct Slot {
    /// 0 free, 1 being set up or torn down, 2 capturing.
    state: AtomicU8,
    targets: [AtomicUsize; MAX_TARGETS],
    /// Bit 0: in, bit 1: out.
    dirs: AtomicU8,
    snaplen: AtomicUsize,
    lost: AtomicU64,
    queues: OnceLock<Queues>,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            state: AtomicU8::new(0),
            targets: [const { AtomicUsize::new(0) }; MAX_TARGETS],
            dirs: AtomicU8::new(0),
            snaplen: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
            queues: OnceLock::new(),
        }
    }
}

/// Every capture of the process.
struct Taps {
    /// Any slot capturing: the one load the dataplane pays.
    on: AtomicBool,
    slots: [Slot; SLOTS],
    /// Serializes starting and stopping (control threads only).
    admin: Mutex<()>,
}

static TAPS: Taps = Taps {
    on: AtomicBool::new(false),
    slots: [const { Slot::new() }; SLOTS],
    admin: Mutex::new(()),
};

/// The key of a port's (or VTEP's) frames: its counters' address.
pub fn key(stats: &PortStats) -> usize {
    stats as *const PortStats as usize
}

/// Whether any capture runs: the dataplane's guard, one relaxed load.
#[inline(always)]
pub fn on() -> bool {
    TAPS.on.load(Ordering::Relaxed)
}

/// The dataplane's hook: a copy of `frame` if a capture watches `stats`'s
/// port in `dir`. `drop` says why the frame was not delivered, if it was
/// not; `vnet` is the frame's `virtio_net_hdr` (all zero for an ordinary
/// frame), kept with a super-frame's copy.
#[inline(always)]
pub fn tap(stats: &PortStats, dir: Dir, frame: &[u8], drop: Option<DropReason>, vnet: VnetHdr) {
    if on() {
        copy(stats, dir, frame, drop, vnet);
    }
}

/// [`tap`] after its guard: call only when [`on`] said so.
#[cold]
#[inline(never)]
pub fn copy(stats: &PortStats, dir: Dir, frame: &[u8], drop: Option<DropReason>, vnet: VnetHdr) {
    let key = key(stats);
    let bit = match dir {
        Dir::In => 1,
        Dir::Out => 2,
    };
    for slot in &TAPS.slots {
        if slot.state.load(Ordering::Acquire) != 2
            || slot.dirs.load(Ordering::Relaxed) & bit == 0
            || !slot
                .targets
                .iter()
                .any(|t| t.load(Ordering::Relaxed) == key)
        {
            continue;
        }
        let Some(q) = slot.queues.get() else { continue };
        let Ok(mut c) = q.free_rx.try_recv() else {
            slot.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let snap = frame.len().min(slot.snaplen.load(Ordering::Relaxed));
        c.data.clear();
        c.data.extend_from_slice(&frame[..snap]);
        c.orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        c.key = key;
        c.dir = dir;
        c.drop = drop;
        c.gso = if vnet.is_gso() {
            vnet
        } else {
            VnetHdr::default()
        };
        c.ts_ns = now_ns();
        if q.full_tx.try_send(c).is_err() {
            slot.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Which frames a capture wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    Both,
}

/// Why a capture could not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CaptureError {
    #[error("{SLOTS} captures are running already; stop one first")]
    Busy,
    #[error("a capture watches at most {MAX_TARGETS} ports; capture fewer (one port, or a smaller network)")]
    TooManyTargets,
    #[error("nothing to capture: the network has no ports")]
    NoTargets,
}

/// A running capture; stopping it (or dropping it) frees its slot.
pub struct Capture {
    slot: usize,
    /// Interfaces: name and key, in the order of their IDBs.
    ifaces: Vec<(String, usize)>,
    snaplen: u32,
    what: String,
    /// Write super-frames as their wire-size segments (cut by the writer,
    /// never by a worker).
    segment: bool,
}

/// The most bytes a super-frame's segments take (the 64 KiB frame in
/// segments of at least a few bytes of payload, each with its headers).
const SEGMENT_SCRATCH: usize = 512 * 1024;

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("slot", &self.slot)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

/// Starts capturing the ports `targets` (name and counters) in `dir`;
/// with `segment`, super-frames are written as the segments they stand
/// for.
pub fn start(
    what: &str,
    targets: &[(String, Arc<PortStats>)],
    dir: Direction,
    snaplen: u32,
    segment: bool,
) -> Result<Capture, CaptureError> {
    if targets.is_empty() {
        return Err(CaptureError::NoTargets);
    }
    if targets.len() > MAX_TARGETS {
        return Err(CaptureError::TooManyTargets);
    }
    let _admin = TAPS.admin.lock().unwrap_or_else(|e| e.into_inner());
    let (i, slot) = TAPS
        .slots
        .iter()
        .enumerate()
        .find(|(_, s)| s.state.load(Ordering::Acquire) == 0)
        .ok_or(CaptureError::Busy)?;
    slot.state.store(1, Ordering::Release);
    let snaplen = snaplen.clamp(64, MAX_SNAPLEN);
    let q = slot.queues.get_or_init(|| {
        let (free_tx, free_rx) = crossbeam_channel::bounded(QUEUE);
        let (full_tx, full_rx) = crossbeam_channel::bounded(QUEUE);
        Queues {
            free_tx,
            free_rx,
            full_tx,
            full_rx,
        }
    });
    while q.full_rx.try_recv().is_ok() {}
    while q.free_rx.try_recv().is_ok() {}
    for _ in 0..QUEUE {
        let _ = q.free_tx.try_send(Copy {
            data: Vec::with_capacity(snaplen as usize),
            orig_len: 0,
            key: 0,
            dir: Dir::In,
            drop: None,
            gso: VnetHdr::default(),
            ts_ns: 0,
        });
    }
    for (t, (_, stats)) in slot.targets.iter().zip(targets.iter().map(|t| (0, &t.1))) {
        t.store(key(stats), Ordering::Relaxed);
    }
    for t in &slot.targets[targets.len()..] {
        t.store(0, Ordering::Relaxed);
    }
    slot.dirs.store(
        match dir {
            Direction::In => 1,
            Direction::Out => 2,
            Direction::Both => 3,
        },
        Ordering::Relaxed,
    );
    slot.snaplen.store(snaplen as usize, Ordering::Relaxed);
    slot.lost.store(0, Ordering::Relaxed);
    slot.state.store(2, Ordering::Release);
    TAPS.on.store(true, Ordering::Release);
    Ok(Capture {
        slot: i,
        ifaces: targets.iter().map(|(n, s)| (n.clone(), key(s))).collect(),
        snaplen,
        what: what.to_string(),
        segment,
    })
}

impl Capture {
    /// Copies lost so far (the writer fell behind).
    pub fn lost(&self) -> u64 {
        TAPS.slots[self.slot].lost.load(Ordering::Relaxed)
    }

    /// Writes the capture to `out` as pcapng until `count` frames are
    /// written, the reader closes its end (or half-closes it: end of file
    /// on `out`), or a write does not complete within `write_timeout`.
    /// Ends with the statistics blocks when the stream is still writable.
    /// Returns (frames written, copies lost).
    pub fn write_to(
        self,
        mut out: UnixStream,
        count: Option<u64>,
        write_timeout: Duration,
    ) -> (u64, u64) {
        let q = TAPS.slots[self.slot]
            .queues
            .get()
            .expect("a started capture has its queues");
        let _ = out.set_write_timeout(Some(write_timeout));
        let _ = out.set_nonblocking(false);
        let mut buf = Vec::with_capacity(64 * 1024);
        // Where super-frames are cut with `segment`.
        let mut scratch = if self.segment {
            vec![0u8; SEGMENT_SCRATCH]
        } else {
            Vec::new()
        };
        pcapng::section_header(&mut buf, &format!("vxswitch capture of {}", self.what));
        for (name, _) in &self.ifaces {
            pcapng::interface(&mut buf, name, self.snaplen);
        }
        let mut written = 0u64;
        // `ok`: the stream takes bytes; `done`: the reader half-closed
        // (Ctrl-C), so what is queued and the statistics still go out.
        let mut ok = out.write_all(&buf).is_ok();
        let mut done = false;
        let mut last_check = Instant::now();
        while ok && !done && count.is_none_or(|c| written < c) {
            buf.clear();
            match q.full_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(c) => {
                    self.write_copy(&mut buf, &c, &mut scratch);
                    let _ = q.free_tx.try_send(c);
                    written += 1;
                    ok = out.write_all(&buf).is_ok();
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
            if last_check.elapsed() >= Duration::from_millis(100) {
                last_check = Instant::now();
                done = reader_done(&out);
            }
        }
        // Copies taken before the end are still written (the reader only
        // half-closed), up to `count`.
        while ok && count.is_none_or(|c| written < c) {
            let Ok(c) = q.full_rx.try_recv() else { break };
            buf.clear();
            self.write_copy(&mut buf, &c, &mut scratch);
            let _ = q.free_tx.try_send(c);
            written += 1;
            ok = out.write_all(&buf).is_ok();
        }
        let lost = self.lost();
        if ok {
            buf.clear();
            let now = now_ns();
            for i in 0..self.ifaces.len() {
                let (d, l) = if i == 0 { (written, lost) } else { (0, 0) };
                pcapng::statistics(&mut buf, i as u32, now, d, l);
            }
            let _ = out.write_all(&buf);
        }
        (written, lost)
    }
}

impl Capture {
    /// Appends the copy `c` to `buf`: one packet block, or with `segment`
    /// one per segment of a super-frame (cut in `scratch`).
    fn write_copy(&self, buf: &mut Vec<u8>, c: &Copy, scratch: &mut [u8]) {
        let iface = self
            .ifaces
            .iter()
            .position(|(_, k)| *k == c.key)
            .unwrap_or(0) as u32;
        let dropped = c.drop.map(|d| format!("dropped: {}", d.name()));
        let mut comment = dropped.clone();
        if c.gso.is_gso() {
            let mut meta = offload_comment(&c.gso);
            if self.segment {
                let cut = if c.data.len() as u64 == u64::from(c.orig_len) {
                    offload::segment(&c.data, &c.gso, scratch, 0)
                } else {
                    Err(offload::OffloadError::OutputTooSmall)
                };
                match cut {
                    Ok(segs) => {
                        for seg in segs.frames(scratch) {
                            let len = u32::try_from(seg.len()).unwrap_or(u32::MAX);
                            let snap = &seg[..seg.len().min(self.snaplen as usize)];
                            pcapng::packet(
                                buf,
                                iface,
                                c.ts_ns,
                                snap,
                                len,
                                c.dir,
                                dropped.as_deref(),
                            );
                        }
                        return;
                    }
                    Err(_) if c.data.len() as u64 != u64::from(c.orig_len) => {
                        meta.push_str(" (not segmented: cut by the snap length)")
                    }
                    Err(e) => meta.push_str(&format!(" (not segmented: {})", e.name())),
                }
            }
            comment = Some(match dropped {
                Some(d) => format!("{d}; {meta}"),
                None => meta,
            });
        }
        pcapng::packet(
            buf,
            iface,
            c.ts_ns,
            &c.data,
            c.orig_len,
            c.dir,
            comment.as_deref(),
        );
    }
}

/// A super-frame's offload metadata, as its packet comment: `gso tcpv4
/// size 1448 hdr_len 66 csum_start 34 csum_offset 16`.
pub fn offload_comment(h: &VnetHdr) -> String {
    let kind = match h.gso_type & !offload::GSO_ECN {
        offload::GSO_TCPV4 => "tcpv4".to_string(),
        offload::GSO_TCPV6 => "tcpv6".to_string(),
        offload::GSO_UDP => "udp".to_string(),
        offload::GSO_UDP_L4 => "udp_l4".to_string(),
        other => format!("type {other}"),
    };
    format!(
        "gso {kind}{} size {} hdr_len {} csum_start {} csum_offset {}",
        if h.ecn() { " ecn" } else { "" },
        h.gso_size,
        h.hdr_len,
        h.csum_start,
        h.csum_offset
    )
}

/// Whether the reader closed or half-closed its end: end of file (or an
/// error) on a read that does not wait. Bytes it sends are thrown away.
fn reader_done(s: &UnixStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut scratch = [0u8; 256];
    let done = loop {
        match (&*s).read(&mut scratch) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    // Blocking again either way. After a half-close the queued copies and
    // the statistics still go out, and a reader slower than this writer
    // must make it wait: left non-blocking, the first full socket buffer
    // failed the write and ended the stream there, the rest of the copies
    // and the statistics block (with the count of lost copies) unwritten,
    // so `vxswitch capture` reported "0 lost" for a cut capture.
    let blocking = s.set_nonblocking(false).is_ok();
    done || !blocking
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _admin = TAPS.admin.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &TAPS.slots[self.slot];
        slot.state.store(1, Ordering::Release);
        for t in &slot.targets {
            t.store(0, Ordering::Relaxed);
        }
        slot.state.store(0, Ordering::Release);
        let any = TAPS
            .slots
            .iter()
            .any(|s| s.state.load(Ordering::Acquire) == 2);
        TAPS.on.store(any, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_watched_ports_reach_the_writer_and_a_full_queue_loses_them_counted() {
        let a = Arc::new(PortStats::default());
        let b = Arc::new(PortStats::default());
        let cap = start(
            "port a",
            &[("a".into(), a.clone())],
            Direction::Both,
            MAX_SNAPLEN,
            false,
        )
        .unwrap();
        // Not watched: no copy.
        tap(&b, Dir::In, &[0u8; 60], None, VnetHdr::default());
        tap(&a, Dir::In, &[1u8; 60], None, VnetHdr::default());
        tap(
            &a,
            Dir::Out,
            &[2u8; 100],
            Some(DropReason::Oversize),
            VnetHdr::default(),
        );
        // More than the queue holds: the rest are lost, counted.
        for _ in 0..QUEUE {
            tap(&a, Dir::In, &[3u8; 60], None, VnetHdr::default());
        }
        assert_eq!(cap.lost(), 2);
        let (mine, theirs) = UnixStream::pair().unwrap();
        let writer =
            std::thread::spawn(move || cap.write_to(theirs, Some(3), Duration::from_secs(5)));
        let mut r = pcapng::Reader::default();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut mine = mine;
        mine.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        loop {
            let n = mine.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            r.push(&buf[..n]);
            while let Some(b) = r.next_block().unwrap() {
                got.push(b);
            }
            if got.iter().any(|(k, _)| *k == pcapng::ISB) {
                break;
            }
        }
        let (written, lost) = writer.join().unwrap();
        assert_eq!((written, lost), (3, 2));
        let packets: Vec<_> = got
            .iter()
            .filter_map(|(k, body)| {
                let b = pcapng::Block { kind: *k, body };
                b.packet()
                    .map(|p| (p.data[0], p.orig_len, p.dir, p.comment))
            })
            .collect();
        assert_eq!(
            packets,
            vec![
                (1, 60, Some(Dir::In), None),
                (
                    2,
                    100,
                    Some(Dir::Out),
                    Some("dropped: oversize".to_string())
                ),
                (3, 60, Some(Dir::In), None),
            ]
        );
    }

    /// A TCP/IPv4 super-frame of `payload` bytes and its header (MSS 1448).
    fn super_frame(payload: usize) -> (Vec<u8>, VnetHdr) {
        let mut f = vec![0u8; 54 + payload];
        f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&u16::try_from(40 + payload).unwrap().to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 18, 0, 2]);
        f[46] = 5 << 4;
        f[47] = 0x18;
        let h = VnetHdr {
            flags: offload::F_NEEDS_CSUM,
            gso_type: offload::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        (f, h)
    }

    #[test]
    fn a_reader_that_half_closed_and_reads_slowly_still_gets_every_copy_and_the_statistics() {
        let a = Arc::new(PortStats::default());
        let cap = start(
            "port slow",
            &[("slow".into(), a.clone())],
            Direction::In,
            MAX_SNAPLEN,
            false,
        )
        .unwrap();
        // Copies queued before the reader's Ctrl-C: more bytes than a Unix
        // socket's buffer holds, so the writer must wait for the reader.
        let queued = QUEUE - 12;
        for i in 0..queued {
            tap(&a, Dir::In, &[i as u8; 1500], None, VnetHdr::default());
        }
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        mine.shutdown(std::net::Shutdown::Write).unwrap();
        let writer = std::thread::spawn(move || cap.write_to(theirs, None, Duration::from_secs(5)));
        // A slow reader (a capture piped into a busy tshark): it takes
        // nothing until the writer has seen the half-close, then reads a
        // little at a time.
        std::thread::sleep(Duration::from_millis(300));
        mine.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = mine.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        let (written, lost) = writer.join().unwrap();
        assert_eq!((written, lost), (queued as u64, 0));
        let mut r = pcapng::Reader::default();
        r.push(&all);
        let (mut packets, mut stats) = (0, 0);
        while let Some((kind, _)) = r.next_block().unwrap() {
            packets += usize::from(kind == pcapng::EPB);
            stats += usize::from(kind == pcapng::ISB);
        }
        assert_eq!(packets, queued, "copies missing from the stream");
        assert_eq!(stats, 1, "no statistics block at the end");
    }

    /// The packets of a whole capture stream: (length kept, comment).
    fn packets_of(cap: Capture, count: u64) -> Vec<(usize, u32, Option<String>)> {
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        mine.shutdown(std::net::Shutdown::Write).unwrap();
        let writer =
            std::thread::spawn(move || cap.write_to(theirs, Some(count), Duration::from_secs(5)));
        let mut all = Vec::new();
        mine.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        mine.read_to_end(&mut all).unwrap();
        writer.join().unwrap();
        let mut r = pcapng::Reader::default();
        r.push(&all);
        let mut out = Vec::new();
        while let Some((kind, body)) = r.next_block().unwrap() {
            let b = pcapng::Block { kind, body: &body };
            if let Some(p) = b.packet() {
                out.push((p.data.len(), p.orig_len, p.comment));
            }
        }
        out
    }

    #[test]
    fn a_super_frame_carries_its_offload_metadata_or_is_written_as_its_segments() {
        let (frame, h) = super_frame(10_000);
        let a = Arc::new(PortStats::default());
        let cap = start(
            "port s",
            &[("s".into(), a.clone())],
            Direction::In,
            MAX_SNAPLEN,
            false,
        )
        .unwrap();
        tap(&a, Dir::In, &frame, None, h);
        let got = packets_of(cap, 1);
        assert_eq!(
            got,
            vec![(
                frame.len(),
                frame.len() as u32,
                Some("gso tcpv4 size 1448 hdr_len 54 csum_start 34 csum_offset 16".into())
            )]
        );

        let cap = start(
            "port s",
            &[("s".into(), a.clone())],
            Direction::In,
            MAX_SNAPLEN,
            true,
        )
        .unwrap();
        tap(&a, Dir::In, &frame, None, h);
        let got = packets_of(cap, 100);
        // 10,000 bytes in segments of 1448: six full ones and the rest.
        assert_eq!(got.len(), 7, "{got:?}");
        assert!(got
            .iter()
            .all(|(n, o, c)| *n <= 1502 && *n == *o as usize && c.is_none()));
        let payload: usize = got.iter().map(|(n, _, _)| n - 54).sum();
        assert_eq!(payload, 10_000);
    }

    #[test]
    fn a_half_close_still_gets_the_queued_copies_and_the_count_of_lost_ones() {
        let a = Arc::new(PortStats::default());
        let cap = start(
            "port h",
            &[("h".into(), a.clone())],
            Direction::In,
            128,
            false,
        )
        .unwrap();
        for _ in 0..QUEUE + 7 {
            tap(&a, Dir::In, &[9u8; 60], None, VnetHdr::default());
        }
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        // Ctrl-C before the writer even starts: it must still write what
        // was queued, then the statistics.
        mine.shutdown(std::net::Shutdown::Write).unwrap();
        let writer = std::thread::spawn(move || cap.write_to(theirs, None, Duration::from_secs(5)));
        let mut all = Vec::new();
        mine.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        mine.read_to_end(&mut all).unwrap();
        assert_eq!(writer.join().unwrap(), (QUEUE as u64, 7));
        let mut r = pcapng::Reader::default();
        r.push(&all);
        let mut packets = 0;
        let mut lost = None;
        while let Some((kind, body)) = r.next_block().unwrap() {
            let b = pcapng::Block { kind, body: &body };
            packets += usize::from(b.packet().is_some());
            lost = lost.or(b.lost());
        }
        assert_eq!((packets, lost), (QUEUE, Some(7)));
    }
}
