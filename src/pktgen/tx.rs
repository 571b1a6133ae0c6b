//! The transmit loop: fill a batch, wait for the rate limit, send it with
//! one `sendmmsg`, retry what the kernel did not take.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::frame::{FrameSpec, Kind, ProbeFrame, HEADER_LEN, MAX_FRAME, MIN_FRAME};
use super::rate::TokenBucket;
use super::{counters, lookup, open_socket, run_id, DevCounters, PktgenError, Place};
use super::{DEFAULT_DURATION, STALL_TIMEOUT, STOP_CHECK};
use crate::sys::packet::{self, TxBatch, ETH_P_IP};
use crate::wire::MacAddr;

/// Largest batch (frames per `sendmmsg`); the kernel's `UIO_MAXIOV`.
pub const MAX_BATCH: usize = 1024;
/// END markers sent after the last data frame.
pub const END_MARKERS: u32 = 3;
/// A blocked `sendmmsg` returns `EAGAIN` after this long, so the loop can
/// look at the stop flag and the stall timer.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest wait for a TAP's transmit counter to catch up at the end.
const SETTLE_MAX: Duration = Duration::from_secs(1);
/// Back-off after `ENOBUFS`/`EAGAIN`: starts here, doubles, stops at the max.
const BACKOFF_MIN: Duration = Duration::from_micros(20);
const BACKOFF_MAX: Duration = Duration::from_millis(1);

/// What to send.
#[derive(Clone, Debug)]
pub struct TxOptions {
    pub place: Place,
    pub dst_mac: MacAddr,
    /// Default: the interface's MAC.
    pub src_mac: Option<MacAddr>,
    /// Cycle the source MAC through this many distinct random MACs
    /// ([`flood_mac`]); None or 1: `src_mac` only.
    pub src_macs: Option<u64>,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Frame length without FCS.
    pub size: usize,
    /// Stop after this many data frames.
    pub count: Option<u64>,
    /// Stop after this long. With neither, [`DEFAULT_DURATION`].
    pub duration: Option<Duration>,
    /// Frames per second; `None` sends as fast as the interface takes them.
    pub rate: Option<u64>,
    pub flows: u16,
    /// Frames per `sendmmsg`.
    pub batch: usize,
}

/// Why the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStop {
    Count,
    Duration,
    Interrupted,
}

/// What a tx run did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TxReport {
    pub mode: &'static str,
    pub dev: String,
    /// Namespace file, "" for the current namespace.
    pub netns: String,
    pub run: u16,
    pub dst_mac: MacAddr,
    pub src_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// Frame length without FCS.
    pub frame_size: usize,
    pub flows: u16,
    pub batch: usize,
    pub rate_target_pps: Option<u64>,
    /// Data frames sent (END markers not included).
    pub frames: u64,
    pub bytes: u64,
    /// From the first send to the last data frame sent.
    pub elapsed_us: u64,
    /// Of `elapsed_us`, the time spent sleeping: the rate limit's waits and
    /// the back-off after a full queue (pktgen's "d"; the rest is "c").
    pub delay_us: u64,
    pub pps: u64,
    pub bps: u64,
    /// `sendmmsg` calls refused with `ENOBUFS`/`EAGAIN` (then retried).
    pub queue_full: u64,
    pub syscalls: u64,
    pub end_markers: u32,
    pub stop: TxStop,
    /// Kernel counters of the interface, after minus before (END markers
    /// included).
    pub kernel: DevCounters,
}

impl TxOptions {
    fn validate(&self) -> Result<(), PktgenError> {
        let bad = |m: String| Err(PktgenError::Invalid(m));
        if !(MIN_FRAME..=MAX_FRAME).contains(&self.size) {
            return bad(format!(
                "frame size {} is outside {MIN_FRAME}..={MAX_FRAME} bytes (without FCS)",
                self.size
            ));
        }
        if self.flows == 0 {
            return bad("--flows must be at least 1".into());
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return bad(format!(
                "--batch must be 1 to {MAX_BATCH}, not {}",
                self.batch
            ));
        }
        if self.rate == Some(0) {
            return bad("--rate must be at least 1 frame/s (leave it out for max rate)".into());
        }
        if self.count == Some(0) {
            return bad("--count must be at least 1".into());
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return bad("--duration must be more than 0 s".into());
        }
        Ok(())
    }
}

/// A salt for [`flood_mac`] that differs between runs, also between
/// runs started at once from several processes.
fn mac_salt(run: u16) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut z = (u64::from(run) << 48) ^ (u64::from(std::process::id()) << 20) ^ u64::from(nanos);
    // splitmix64's finaliser: every input bit moves every output bit.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `i`th source MAC of a `--src-macs` run salted with `salt`: locally
/// administered unicast (the first byte fixed per run, `x2`, `x6`, `xA`
/// or `xE`), the other 40 bits a bijective mix of `i` (mod 2^40) and the
/// salt, so the first 2^40 are distinct and look random to a hash table.
pub fn flood_mac(salt: u64, i: u64) -> MacAddr {
    const M: u64 = (1 << 40) - 1;
    // Each step is a bijection on 40 bits (a multiply by an odd number, an
    // xor with its own shifted value, an xor with a constant), so `i` maps
    // to distinct MACs; the salt, mixed, moves the whole set elsewhere.
    let mix = |mut x: u64| {
        x &= M;
        x = x.wrapping_mul(0x9e37_79b9_7f4b) & M;
        x ^= x >> 21;
        x = x.wrapping_mul(0xbf58_476d_1ce5) & M;
        x ^ (x >> 19)
    };
    let x = mix(i) ^ mix(salt ^ (salt >> 40));
    let b = x.to_be_bytes();
    let first = ((salt >> 56) as u8 & 0xfc) | 0x02;
    MacAddr([first, b[3], b[4], b[5], b[6], b[7]])
}

/// Per-run state of the send loop: frames in flight, counters, clocks.
struct Sender<'a> {
    place: &'a Place,
    fd: BorrowedFd<'a>,
    batch: TxBatch,
    /// Which flow's header each slot holds.
    slot_flow: Vec<u16>,
    headers: Vec<[u8; HEADER_LEN]>,
    next_seq: Vec<u64>,
    next_flow: u16,
    /// `--src-macs`: how many, and the frame counter that picks the next.
    src_macs: u64,
    mac_index: u64,
    mac_salt: u64,
    sent: u64,
    queue_full: u64,
    syscalls: u64,
    delay: Duration,
}

impl Sender<'_> {
    /// Writes the next `n` frames (round-robin over the flows) into slots 0..n.
    fn fill(&mut self, n: usize) {
        let flows = u16::try_from(self.headers.len()).unwrap_or(u16::MAX);
        for i in 0..n {
            let f = self.next_flow;
            let slot = self.batch.frame_mut(i);
            if self.slot_flow[i] != f {
                slot[..HEADER_LEN].copy_from_slice(&self.headers[usize::from(f)]);
                self.slot_flow[i] = f;
            }
            if self.src_macs > 1 {
                let m = flood_mac(self.mac_salt, self.mac_index % self.src_macs);
                slot[6..12].copy_from_slice(&m.0);
                self.mac_index += 1;
            }
            let seq = &mut self.next_seq[usize::from(f)];
            ProbeFrame::new_unchecked(slot).set_seq(*seq);
            *seq += 1;
            self.next_flow = if f + 1 >= flows { 0 } else { f + 1 };
        }
    }

    /// Sends slots 0..n, retrying on a full queue. Returns false when the
    /// stop flag ended it early (the unsent frames are never sent; their
    /// sequence numbers are above every sent one of their flow, so the
    /// receiver sees no gap).
    fn send(&mut self, n: usize, stop: &AtomicBool) -> Result<bool, PktgenError> {
        let mut done = 0;
        let mut backoff = BACKOFF_MIN;
        let mut refused_since: Option<Instant> = None;
        while done < n {
            self.syscalls += 1;
            match self.batch.send(self.fd, done..n) {
                Ok(k) => {
                    done += k;
                    self.sent += k as u64;
                    backoff = BACKOFF_MIN;
                    refused_since = None;
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::ENOBUFS | libc::EAGAIN) => {
                        self.queue_full += 1;
                        let since = *refused_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= STALL_TIMEOUT {
                            return Err(PktgenError::Stalled {
                                place: self.place.clone(),
                                retries: self.queue_full,
                                sent: self.sent,
                            });
                        }
                        std::thread::sleep(backoff);
                        self.delay += backoff;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                    _ => return Err(self.place.io("send (sendmmsg)")(e)),
                },
            }
            if done < n && stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends `END_MARKERS` END frames 1 ms apart, each retried on a full
    /// queue for up to 100 ms; returns how many went out.
    fn send_end_markers(&mut self) -> Result<u32, PktgenError> {
        let slot = self.batch.frame_mut(0);
        slot[..HEADER_LEN].copy_from_slice(&self.headers[0]);
        self.slot_flow[0] = 0;
        let mut f = ProbeFrame::new_unchecked(slot);
        f.set_kind(Kind::End);
        f.set_seq(self.sent);
        let mut ok = 0;
        for _ in 0..END_MARKERS {
            let deadline = Instant::now() + Duration::from_millis(100);
            loop {
                self.syscalls += 1;
                match self.batch.send(self.fd, 0..1) {
                    Ok(1) => {
                        ok += 1;
                        break;
                    }
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EINTR | libc::ENOBUFS | libc::EAGAIN)
                        ) => {}
                    Err(e) => return Err(self.place.io("send an END marker")(e)),
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(BACKOFF_MAX);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Slot 0 is a data frame again should anything send it.
        ProbeFrame::new_unchecked(self.batch.frame_mut(0)).set_kind(Kind::Data);
        Ok(ok)
    }
}

/// The interface's counters once its `tx_packets` has caught up with the
/// `frames` sent since `before`, or stopped moving for 100 ms, or after 1 s.
///
/// A veth counts a frame when it is sent, but a TAP counts it when the
/// process on the other side (the switch) reads it off the TAP's ring; the
/// frames still queued there when tx ends are counted a little later.
fn settled_counters(
    place: &Place,
    before: &DevCounters,
    frames: u64,
) -> Result<DevCounters, PktgenError> {
    let deadline = Instant::now() + SETTLE_MAX;
    let mut last = counters::read(place)?;
    let mut still = 0;
    while last.since(before).tx_packets < frames && still < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = counters::read(place)?;
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    Ok(last)
}

/// Sends probe frames as `o` says until the count or the duration is
/// reached or `stop` is set, then the END markers.
pub fn run_tx(o: &TxOptions, stop: &AtomicBool) -> Result<TxReport, PktgenError> {
    o.validate()?;
    let place = &o.place;
    let link = lookup(place)?;
    if !link.is_up() {
        return Err(PktgenError::Invalid(format!(
            "{place}: the interface is down (ip link set {} up)",
            place.dev
        )));
    }
    if o.size - 14 > link.mtu as usize {
        return Err(PktgenError::Invalid(format!(
            "{place}: a {}-byte frame needs an MTU of at least {}, the interface has {}",
            o.size,
            o.size - 14,
            link.mtu
        )));
    }
    let src_mac = o.src_mac.or(link.mac).ok_or_else(|| {
        PktgenError::Invalid(format!(
            "{place}: the interface has no MAC address; give --src-mac"
        ))
    })?;
    let fd = open_socket(place)?;
    packet::set_qdisc_bypass(fd.as_fd()).map_err(place.io("set PACKET_QDISC_BYPASS"))?;
    // Protocol 0: bound to the interface (so a vanished one fails here),
    // receiving nothing.
    packet::bind(fd.as_fd(), link.index, 0).map_err(place.io("bind the packet socket"))?;
    socket2::SockRef::from(&fd)
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(place.io("set SO_SNDTIMEO"))?;

    let spec = FrameSpec {
        dst_mac: o.dst_mac,
        src_mac,
        src_ip: o.src_ip,
        dst_ip: o.dst_ip,
        src_port: o.src_port,
        dst_port: o.dst_port,
        size: o.size,
        run: run_id(),
    };
    let mut batch = TxBatch::new(o.batch, o.size, link.index, ETH_P_IP)
        .map_err(place.io("allocate the transmit batch"))?;
    let mut first = vec![0u8; o.size];
    spec.emit(0, Kind::Data, 0, &mut first);
    for i in 0..batch.slots() {
        batch.frame_mut(i).copy_from_slice(&first);
    }
    let mut s = Sender {
        place,
        fd: fd.as_fd(),
        batch,
        slot_flow: vec![0; o.batch],
        headers: (0..o.flows).map(|f| spec.header(f)).collect(),
        next_seq: vec![0; usize::from(o.flows)],
        next_flow: 0,
        src_macs: o.src_macs.unwrap_or(1),
        mac_index: 0,
        mac_salt: mac_salt(spec.run),
        sent: 0,
        queue_full: 0,
        syscalls: 0,
        delay: Duration::ZERO,
    };

    let before = counters::read(place)?;
    let limit = o.count.unwrap_or(u64::MAX);
    let duration = match (o.count, o.duration) {
        (None, None) => Some(DEFAULT_DURATION),
        (_, d) => d,
    };
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    // A rate-limited batch holds at most 1 ms of frames, so a low rate is
    // sent smoothly instead of in bursts of a whole batch.
    let rate_cap = o.rate.map_or(o.batch, |r| {
        usize::try_from((r / 1000).max(1))
            .unwrap_or(o.batch)
            .min(o.batch)
    });
    // The bucket holds 10 ms of frames (at least two batches): a sender
    // that slept too long or was descheduled (timer slack, a busy CPU)
    // makes up to 10 ms of it in a burst; a longer stall is not made up,
    // so a starved run ends below the target rate, never above it. It
    // starts with one batch, so the run does not begin with a burst.
    let mut bucket = o.rate.map(|r| {
        let burst = (r / 100).max(2 * rate_cap as u64);
        let mut b = TokenBucket::new(r, burst, 0);
        b.take(burst - rate_cap as u64);
        b
    });
    let why = loop {
        if stop.load(Ordering::Relaxed) {
            break TxStop::Interrupted;
        }
        if s.sent >= limit {
            break TxStop::Count;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break TxStop::Duration;
        }
        let left = usize::try_from(limit - s.sent).unwrap_or(usize::MAX);
        let n = left.min(rate_cap);
        if let Some(b) = bucket.as_mut() {
            let t = u64::try_from(now.duration_since(start).as_nanos()).unwrap_or(u64::MAX);
            let want = n as u64;
            if b.available(t) < want {
                let mut wait = Duration::from_nanos(b.wait_ns(want)).min(STOP_CHECK);
                if let Some(d) = deadline {
                    wait = wait.min(d.saturating_duration_since(now));
                }
                std::thread::sleep(wait);
                s.delay += wait;
                continue;
            }
            b.take(want);
        }
        s.fill(n);
        if !s.send(n, stop)? {
            break TxStop::Interrupted;
        }
    };
    let elapsed = start.elapsed();
    let end_markers = s.send_end_markers()?;
    let after = settled_counters(place, &before, s.sent + u64::from(end_markers))?;

    let bytes = s.sent * o.size as u64;
    let secs = elapsed.as_secs_f64();
    let per_sec = |x: u64| {
        if secs > 0.0 {
            (x as f64 / secs) as u64
        } else {
            0
        }
    };
    Ok(TxReport {
        mode: "tx",
        dev: place.dev.clone(),
        netns: place.netns_str(),
        run: spec.run,
        dst_mac: spec.dst_mac,
        src_mac,
        src_ip: spec.src_ip,
        dst_ip: spec.dst_ip,
        frame_size: o.size,
        flows: o.flows,
        batch: o.batch,
        rate_target_pps: o.rate,
        frames: s.sent,
        bytes,
        elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        delay_us: u64::try_from(s.delay.min(elapsed).as_micros()).unwrap_or(u64::MAX),
        pps: per_sec(s.sent),
        bps: per_sec(bytes.saturating_mul(8)),
        queue_full: s.queue_full,
        syscalls: s.syscalls,
        end_markers,
        stop: why,
        kernel: after.since(&before),
    })
}

#[cfg(test)]
mod tests {
    use super::flood_mac;
    use std::collections::HashSet;

    #[test]
    fn flood_macs_are_distinct_local_unicast_and_salted() {
        let salt = 0x1234_5678_9abc_def0;
        let macs: HashSet<_> = (0..200_000).map(|i| flood_mac(salt, i)).collect();
        assert_eq!(macs.len(), 200_000);
        for m in macs.iter().take(1000) {
            assert_eq!(m.0[0] & 0x03, 0x02, "{m}: not local unicast");
        }
        // Runs with nearby salts (processes started together) make
        // different sets.
        let other: HashSet<_> = (0..200_000).map(|i| flood_mac(salt + 1, i)).collect();
        assert!(macs.intersection(&other).count() < 10);
        // Consecutive indices differ in more than the last byte.
        assert_ne!(flood_mac(salt, 0).0[1..5], flood_mac(salt, 1).0[1..5]);
    }
}
