//! The receive loop: a filtered `TPACKET_V3` ring, drained block by block,
//! every probe frame accounted for in its flow.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::frame::{self, Kind, ProbeFrame};
use super::seq::{FlowSeq, SeqCounts};
use super::{counters, lookup, open_socket, DevCounters, PktgenError, Place, STOP_CHECK};
use crate::sys::packet::{self, BpfInsn, RingSpec, RxFrame, RxRing, ETH_P_ALL};
use crate::wire::ethernet::ETHERTYPE_OFFSET;
use crate::wire::{EtherType, IpProtocol};

/// Bytes of each frame the filter keeps: the pktgen header, rounded up.
/// The frame's full length is still known (`tp_len`) for byte counts.
pub const SNAPLEN: u32 = 64;
/// The receive ring: 32 blocks of 1 MiB. At 64-byte frames and this snap
/// length a block holds about 7000 frames, so the ring absorbs a quarter
/// of a million frames while the reader is descheduled.
const RING: RingSpec = RingSpec {
    block_size: 1 << 20,
    block_nr: 32,
    retire_ms: 10,
};
/// After the END markers of every run: stop as soon as nothing arrives for
/// this long (frames still in flight behind the marker are rare: it was
/// sent last, on the same path)...
const END_IDLE: Duration = Duration::from_millis(100);
/// ... and at the latest this long after the last END marker.
const END_DRAIN: Duration = Duration::from_secs(1);

/// What to count and when to stop.
#[derive(Clone, Debug)]
pub struct RxOptions {
    pub place: Place,
    /// Stop after this many data frames.
    pub count: Option<u64>,
    /// Stop this long after listening started.
    pub duration: Option<Duration>,
    /// Stop when no probe frame arrived for this long (after the first).
    pub idle_timeout: Duration,
    /// Stop when no probe frame arrived this long after listening started.
    pub wait: Duration,
    /// Stop once every run seen has sent its END marker and its frames
    /// are in (or 1 s passed since the last END marker).
    pub stop_at_end: bool,
}

/// Why the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RxStop {
    Count,
    Duration,
    /// The END markers of every run arrived.
    End,
    /// Nothing for `idle_timeout`.
    Idle,
    /// No probe frame at all within `wait`.
    NoFrames,
    Interrupted,
}

/// What an rx run counted.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RxReport {
    pub mode: &'static str,
    pub dev: String,
    pub netns: String,
    /// Data frames received, duplicates included.
    pub frames: u64,
    /// Their bytes, without FCS.
    pub bytes: u64,
    /// Data frames the senders say they sent (from their END markers);
    /// `None` unless every run seen sent one.
    pub sent: Option<u64>,
    /// `sent` minus distinct frames received.
    pub lost: Option<u64>,
    #[serde(flatten)]
    pub seq: SeqCounts,
    /// Flows (run, flow id) seen.
    pub flows: usize,
    /// tx runs seen (their run ids).
    pub runs: Vec<u16>,
    pub end_markers: u64,
    /// Frames that passed the filter but are not probe frames this version
    /// understands.
    pub other_frames: u64,
    /// Kernel receive timestamps of the first and the last data frame.
    pub first_to_last_us: u64,
    pub pps: u64,
    pub bps: u64,
    /// Frames the ring had no room for (`PACKET_STATISTICS` drops): loss in
    /// this receiver, not on the path.
    pub socket_drops: u64,
    pub stop: RxStop,
    /// Kernel counters of the interface, after minus before.
    pub kernel: DevCounters,
}

/// The classic BPF program that keeps probe frames (IPv4 without options,
/// UDP, the pktgen magic), cut to [`SNAPLEN`] bytes, and drops the rest in
/// the kernel. Offsets are from the Ethernet header (`SOCK_RAW`).
pub fn probe_filter() -> Vec<BpfInsn> {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let ld = |code, k: usize| BpfInsn {
        code,
        jt: 0,
        jf: 0,
        k: u32::try_from(k).unwrap_or(u32::MAX),
    };
    // `jeq k` falling through on a match, jumping to the final `ret 0`
    // (at index 9) otherwise.
    let jeq = |at: u8, k: u32| BpfInsn {
        code: JEQ_K,
        jt: 0,
        jf: 9 - at - 1,
        k,
    };
    vec![
        ld(LD_H_ABS, ETHERTYPE_OFFSET),
        jeq(1, u32::from(u16::from(EtherType::Ipv4))),
        ld(LD_B_ABS, frame::IP_OFFSET),
        jeq(3, u32::from(frame::IP_VERSION_IHL)),
        ld(LD_B_ABS, frame::IP_PROTO_OFFSET),
        jeq(5, u32::from(u8::from(IpProtocol::Udp))),
        ld(LD_W_ABS, frame::MAGIC_OFFSET),
        jeq(7, frame::MAGIC),
        BpfInsn {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: SNAPLEN,
        },
        BpfInsn {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ]
}

/// Counting state of one rx run.
#[derive(Default)]
struct Counter {
    flows: HashMap<(u16, u16), FlowSeq, ahash::RandomState>,
    /// Run id -> frames its END marker says it sent.
    runs: HashMap<u16, Option<u64>, ahash::RandomState>,
    frames: u64,
    bytes: u64,
    end_markers: u64,
    other: u64,
    first_ts: Option<u64>,
    last_ts: u64,
    /// When the last END marker arrived.
    end_at: Option<Instant>,
}

impl Counter {
    fn on_frame(&mut self, f: &RxFrame<'_>, now: Instant) {
        let Ok(p) = ProbeFrame::new_checked(f.data) else {
            self.other += 1;
            return;
        };
        match p.kind() {
            Kind::Data => {
                self.frames += 1;
                self.bytes += u64::from(f.wire_len);
                self.first_ts.get_or_insert(f.ts_ns);
                self.last_ts = f.ts_ns;
                self.flows
                    .entry((p.run(), p.flow()))
                    .or_default()
                    .record(p.seq());
                self.runs.entry(p.run()).or_insert(None);
            }
            Kind::End => {
                self.end_markers += 1;
                self.runs.insert(p.run(), Some(p.seq()));
                self.end_at = Some(now);
            }
            Kind::Unknown(_) => self.other += 1,
        }
    }

    /// Every run seen has sent its END marker: (total sent, all in).
    fn ended(&self) -> Option<(u64, bool)> {
        if self.runs.is_empty() {
            return None;
        }
        let sent = self.runs.values().try_fold(0u64, |a, s| s.map(|s| a + s))?;
        Some((sent, self.seq().unique >= sent))
    }

    fn seq(&self) -> SeqCounts {
        let mut c = SeqCounts::default();
        for f in self.flows.values() {
            c.add(f.counts());
        }
        c
    }
}

/// Counts probe frames on `o.place` until a stop condition or `stop`.
/// `ready` is called once the socket is bound: from then on no probe frame
/// is missed (start the sender after it).
pub fn run_rx(
    o: &RxOptions,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> Result<RxReport, PktgenError> {
    if o.count == Some(0) {
        return Err(PktgenError::Invalid("--count must be at least 1".into()));
    }
    let place = &o.place;
    let link = lookup(place)?;
    if !link.is_up() {
        return Err(PktgenError::Invalid(format!(
            "{place}: the interface is down (ip link set {} up)",
            place.dev
        )));
    }
    // Filter and ring before bind: nothing unfiltered, nothing outside the ring.
    let fd = open_socket(place)?;
    packet::attach_filter(fd.as_fd(), &probe_filter())
        .map_err(place.io("attach the probe filter"))?;
    packet::set_ignore_outgoing(fd.as_fd()).map_err(place.io("set PACKET_IGNORE_OUTGOING"))?;
    let mut ring = RxRing::new(fd, RING).map_err(place.io("set up the TPACKET_V3 receive ring"))?;
    packet::bind(ring.fd(), link.index, ETH_P_ALL).map_err(place.io("bind the packet socket"))?;
    let before = counters::read(place)?;
    ready();

    let mut c = Counter::default();
    let mut socket_drops = 0u64;
    let mut stats_at = Instant::now();
    let limit = o.count.unwrap_or(u64::MAX);
    let start = Instant::now();
    let mut last_frame: Option<Instant> = None;
    let why = 'run: loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            break RxStop::Interrupted;
        }
        if c.frames >= limit {
            break RxStop::Count;
        }
        if o.duration.is_some_and(|d| now >= start + d) {
            break RxStop::Duration;
        }
        match last_frame {
            None if now >= start + o.wait => break RxStop::NoFrames,
            Some(t) if now >= t + o.idle_timeout => break RxStop::Idle,
            _ => {}
        }
        if o.stop_at_end {
            if let (Some((_, all_in)), Some(end_at)) = (c.ended(), c.end_at) {
                let quiet = last_frame.is_none_or(|t| now >= t + END_IDLE);
                if all_in || quiet || now >= end_at + END_DRAIN {
                    break RxStop::End;
                }
            }
        }
        if now >= stats_at + Duration::from_secs(1) {
            // The kernel's counters are 32-bit and reset on read: sum them often.
            let (_, drops) = ring
                .take_stats()
                .map_err(place.io("read PACKET_STATISTICS"))?;
            socket_drops += u64::from(drops);
            stats_at = now;
        }
        // Drain what is there (at most one lap of the ring, so the checks
        // above run at least that often), else wait for the next block.
        let mut got = false;
        for _ in 0..RING.block_nr {
            let Some(block) = ring.next_block() else {
                break;
            };
            got = true;
            let now = Instant::now();
            for f in block.frames() {
                c.on_frame(&f, now);
                if c.frames >= limit {
                    last_frame = Some(now);
                    continue 'run;
                }
            }
            last_frame = Some(now);
        }
        if !got {
            ring.wait(STOP_CHECK)
                .map_err(place.io("poll the receive ring"))?;
        }
    };
    let (_, drops) = ring
        .take_stats()
        .map_err(place.io("read PACKET_STATISTICS"))?;
    socket_drops += u64::from(drops);
    drop(ring);
    let after = counters::read(place)?;

    let seq = c.seq();
    let sent = c.ended().map(|(s, _)| s);
    let span_ns = c.first_ts.map_or(0, |f| c.last_ts.saturating_sub(f));
    let per_sec = |x: u64| {
        if span_ns > 0 {
            u64::try_from(u128::from(x) * 1_000_000_000 / u128::from(span_ns)).unwrap_or(u64::MAX)
        } else {
            0
        }
    };
    let mut runs: Vec<u16> = c.runs.keys().copied().collect();
    runs.sort_unstable();
    Ok(RxReport {
        mode: "rx",
        dev: place.dev.clone(),
        netns: place.netns_str(),
        frames: c.frames,
        bytes: c.bytes,
        sent,
        lost: sent.map(|s| s.saturating_sub(seq.unique)),
        seq,
        flows: c.flows.len(),
        runs,
        end_markers: c.end_markers,
        other_frames: c.other,
        first_to_last_us: span_ns / 1000,
        pps: per_sec(c.frames),
        bps: per_sec(c.bytes.saturating_mul(8)),
        socket_drops,
        stop: why,
        kernel: after.since(&before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::frame::FrameSpec;
    use crate::wire::MacAddr;
    use std::net::Ipv4Addr;

    /// Runs the classic BPF instructions `probe_filter` uses over `pkt`.
    fn run_bpf(prog: &[BpfInsn], pkt: &[u8]) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            let k = i.k as usize;
            let load = |n: usize| pkt.get(k..k + n);
            match i.code {
                0x28 | 0x30 | 0x20 => {
                    let n = match i.code {
                        0x28 => 2,
                        0x30 => 1,
                        _ => 4,
                    };
                    // A load past the end ends the program with 0, as in the kernel.
                    let Some(b) = load(n) else { return 0 };
                    a = b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x));
                }
                0x15 => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                0x06 => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    fn probe(size: usize) -> Vec<u8> {
        let spec = FrameSpec {
            dst_mac: MacAddr::BROADCAST,
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 19, 0, 1),
            src_port: 9000,
            dst_port: 9,
            size,
            run: 7,
        };
        let mut b = vec![0u8; size];
        spec.emit(0, Kind::Data, 0, &mut b);
        b
    }

    #[test]
    fn filter_keeps_probes_and_drops_the_rest() {
        let prog = probe_filter();
        assert_eq!(run_bpf(&prog, &probe(60)), SNAPLEN);
        assert_eq!(run_bpf(&prog, &probe(1514)), SNAPLEN);
        let mut arp = probe(60);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run_bpf(&prog, &arp), 0);
        let mut tcp = probe(60);
        tcp[23] = 6;
        assert_eq!(run_bpf(&prog, &tcp), 0);
        let mut options = probe(60);
        options[14] = 0x46;
        assert_eq!(run_bpf(&prog, &options), 0);
        let mut other = probe(60);
        other[44] ^= 1;
        assert_eq!(run_bpf(&prog, &other), 0);
        assert_eq!(run_bpf(&prog, &probe(60)[..45]), 0);
    }

    fn rx_frame(b: &[u8]) -> RxFrame<'_> {
        RxFrame {
            data: b,
            wire_len: u32::try_from(b.len()).unwrap(),
            ts_ns: 0,
        }
    }

    #[test]
    fn counter_tracks_runs_and_end_markers() {
        let now = Instant::now();
        let mut c = Counter::default();
        let mut f = probe(64);
        for seq in [0u64, 1, 3, 2] {
            ProbeFrame::new_unchecked(&mut f[..]).set_seq(seq);
            c.on_frame(&rx_frame(&f), now);
        }
        assert_eq!(c.ended(), None);
        let mut end = f.clone();
        let mut p = ProbeFrame::new_unchecked(&mut end[..]);
        p.set_kind(Kind::End);
        p.set_seq(5);
        c.on_frame(&rx_frame(&end), now);
        c.on_frame(&rx_frame(&end), now);
        assert_eq!(c.ended(), Some((5, false)));
        let s = c.seq();
        assert_eq!(
            (c.frames, s.unique, s.reordered, c.end_markers),
            (4, 4, 1, 2)
        );
        assert_eq!(c.bytes, 4 * 64);
        c.on_frame(&rx_frame(&[0u8; 60]), now);
        assert_eq!(c.other, 1);
    }
}
