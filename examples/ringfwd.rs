//! ringfwd: a two-port forwarder over `AF_PACKET` mmap rings, the ring
//! analogue of `examples/tapfwd.rs`, for one question (issue 13, item 2):
//! does a port type that moves many frames per system call beat the TAP
//! floor?
//!
//! It opens `vxswitch::ports::ring` ports (`TPACKET_V2` receive and
//! transmit rings on one packet socket each) on two existing interfaces,
//! normally the host ends of two containers' veths, and copies every frame
//! from A to B and from B to A in one thread:
//!
//! - while either receive ring holds frames, it takes up to `--budget`
//!   frames from each in turn, copies each into a slot of the other port's
//!   transmit ring (one copy, the VLAN tag the veth took off put back),
//!   gives the receive slots back and flushes each transmit ring with one
//!   `send`;
//! - when both rings are empty it waits in `epoll_wait` (mio) for either
//!   socket to become readable.
//!
//! With `--vnet` each frame carries a `virtio_net_hdr`, so GSO super-frames
//! (64 KiB TCP segments from the container's TSO) pass through whole, as
//! tapfwd's `--vnet` passes them between TAPs. Without it, turn TSO/GSO
//! off on the veths or super-frames are dropped (counted as truncated).
//!
//! On SIGINT/SIGTERM (or after `--duration`) it prints one JSON line with
//! the same counters as tapfwd and the rings' own, and exits. Used by
//! `benches/system/ringfwd_ab.sh`; see "Port types past the TAP floor" in
//! docs/benchmarks-system.md.
//!
//! ```text
//! ringfwd --if-a NAME --if-b NAME [--netns NS] [--vnet] [--rx-frames N] [--tx-frames N]
//! ```

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vxswitch::ports::ring::{self, RingCounters, RingSpec, RxRing, TxRing};
use vxswitch::ports::Netns;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TxMode {
    Ring,
    Sendmmsg,
}

#[derive(Parser, Debug)]
#[command(about = "Forward frames between two interfaces through AF_PACKET mmap rings")]
struct Args {
    /// Interface A (e.g. the host end of a container's veth).
    #[arg(long)]
    if_a: String,
    /// Interface B.
    #[arg(long)]
    if_b: String,
    /// The namespace both interfaces are in (a name from `ip netns` or a
    /// path); default: this process's.
    #[arg(long)]
    netns: Option<String>,
    /// A virtio_net_hdr on every frame: GSO super-frames pass whole.
    #[arg(long)]
    vnet: bool,
    /// Receive slots per port. 64 overflowed on a busy 2-vCPU machine
    /// whenever the forwarder waited for a CPU (a veth never holds the
    /// sender back); 1024 did not. With --vnet that is 68 MiB per port.
    #[arg(long, default_value_t = 1024)]
    rx_frames: u32,
    /// Transmit slots per port (--tx ring).
    #[arg(long, default_value_t = 256)]
    tx_frames: u32,
    /// Bytes per slot [default: 69904 with --vnet, else 2048].
    #[arg(long)]
    frame_size: Option<u32>,
    /// How frames leave: `ring` (a transmit ring, flushed with one send per
    /// turn) or `sendmmsg` (no transmit ring: one sendmmsg per 64 frames,
    /// straight from the receive slots, each frame copied once).
    #[arg(long, value_enum, default_value = "ring")]
    tx: TxMode,
    /// Send through the interfaces' qdiscs (default: PACKET_QDISC_BYPASS).
    #[arg(long)]
    no_bypass: bool,
    /// Frames per port per turn before the transmit ring is flushed.
    #[arg(long, default_value_t = 64)]
    budget: usize,
    /// Before sleeping in epoll_wait, watch both rings' next slots for this
    /// many microseconds (no system call while spinning) [default: 0].
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
}

/// Per-direction counters; index 0 is A->B, 1 is B->A.
#[derive(Default, Debug)]
struct Counters {
    frames: [u64; 2],
    bytes: [u64; 2],
    /// Frames dropped on the way out (transmit ring full, too big).
    tx_drops: [u64; 2],
    /// epoll_wait + send calls made by the loop.
    syscalls: u64,
    /// epoll_wait calls alone.
    polls: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("ringfwd: {e}");
        std::process::exit(1);
    }
}

fn netns_of(s: Option<&str>) -> Netns {
    match s {
        None => Netns::Current,
        Some(s) if s.contains('/') => Netns::Path(s.into()),
        Some(s) => Netns::named(s),
    }
}

fn run(args: &Args) -> Result<(), String> {
    let netns = netns_of(args.netns.as_deref());
    let base = if args.vnet {
        RingSpec::super_frames()
    } else {
        RingSpec::small_frames()
    };
    let spec = RingSpec {
        rx_frames: args.rx_frames,
        tx_frames: match args.tx {
            TxMode::Ring => args.tx_frames,
            TxMode::Sendmmsg => 0,
        },
        frame_size: args.frame_size,
        qdisc_bypass: !args.no_bypass,
        ..base
    };
    let (rx_a, tx_a) = ring::open(&netns, &args.if_a, &spec).map_err(|e| e.to_string())?;
    let (rx_b, tx_b) = ring::open(&netns, &args.if_b, &spec).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    println!(
        "ready mode=ring tx={:?} vnet={} vnet_len={} rx_frames={} tx_frames={} pid={}",
        args.tx,
        args.vnet,
        rx_a.vnet_len(),
        rx_a.frames(),
        tx_a.frames(),
        std::process::id()
    );
    let start = Instant::now();
    let mut c = Counters::default();
    let mut rx = [rx_a, rx_b];
    let mut tx = [tx_a, tx_b];
    let spin = Duration::from_micros(args.spin_us);
    let sendmmsg = args.tx == TxMode::Sendmmsg;
    let mode = Mode {
        budget: args.budget,
        spin,
        sendmmsg,
    };
    fwd_loop(&mut rx, &mut tx, mode, &stop, deadline, &mut c)?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().unwrap_or(f64::NAN);
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    let ca = RingCounters::of(&rx[0], &tx[0]);
    let cb = RingCounters::of(&rx[1], &tx[1]);
    println!(
        "{{\"mode\":\"ring\",\"variant\":\"tpacket_v2 rx, {}\",\"vnet\":{},\"seconds\":{secs:.3},\"cpu_seconds\":{cpu:.3},\
         \"frames_ab\":{},\"frames_ba\":{},\"bytes_ab\":{},\"bytes_ba\":{},\"tx_drops_ab\":{},\"tx_drops_ba\":{},\
         \"rx_errors\":{},\"syscalls\":{},\"polls\":{},\"rearms\":0,\"no_buffers\":0,\"threads\":{threads},\
         \"rx_truncated\":{},\"rx_kernel_drops\":{},\"tx_ring_full\":{},\"tx_busy\":{},\"tx_refused\":{},\"tx_flushes\":{}}}",
        if sendmmsg { "sendmmsg tx" } else { "tpacket_v2 tx" },
        args.vnet,
        c.frames[0],
        c.frames[1],
        c.bytes[0],
        c.bytes[1],
        c.tx_drops[0],
        c.tx_drops[1],
        ca.rx_malformed + cb.rx_malformed,
        c.syscalls,
        c.polls,
        ca.rx_truncated + cb.rx_truncated,
        ca.rx_kernel_drops + cb.rx_kernel_drops,
        ca.tx_ring_full + cb.tx_ring_full,
        ca.tx_busy + cb.tx_busy,
        ca.tx_refused + cb.tx_refused,
        ca.tx_flushes + cb.tx_flushes,
    );
    Ok(())
}

/// User plus system CPU seconds of this process, from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn stopping(stop: &AtomicBool, deadline: Option<Instant>) -> bool {
    stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d)
}

/// How the loop runs.
#[derive(Clone, Copy)]
struct Mode {
    /// Frames per port per turn.
    budget: usize,
    /// Watch the rings this long before sleeping.
    spin: Duration,
    /// Send with sendmmsg from the receive slots instead of a transmit ring.
    sendmmsg: bool,
}

fn fwd_loop(
    rx: &mut [RxRing; 2],
    tx: &mut [TxRing; 2],
    mode: Mode,
    stop: &AtomicBool,
    deadline: Option<Instant>,
    c: &mut Counters,
) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    for (i, r) in rx.iter().enumerate() {
        poll.registry()
            .register(
                &mut SourceFd(&r.fd().as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )
            .map_err(|e| format!("epoll register: {e}"))?;
    }
    let mut events = Events::with_capacity(8);
    while !stopping(stop, deadline) {
        let pending = tx[0].pending() || tx[1].pending();
        if !mode.spin.is_zero() && !rx[0].ready() && !rx[1].ready() {
            let until = Instant::now() + mode.spin;
            while !rx[0].ready() && !rx[1].ready() && Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        if !rx[0].ready() && !rx[1].ready() {
            // Nothing to read: sleep until a frame comes, or retry a
            // refused flush after 1 ms.
            let timeout = if pending { 1 } else { 100 };
            c.polls += 1;
            c.syscalls += 1;
            match poll.poll(&mut events, Some(Duration::from_millis(timeout))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("epoll_wait: {e}")),
            }
        }
        for (from, src) in rx.iter_mut().enumerate() {
            let dst = &mut tx[1 - from];
            if mode.sendmmsg {
                let before = dst.counters();
                dst.forward_from(src, mode.budget)
                    .map_err(|e| format!("sendmmsg: {e}"))?;
                src.release();
                let after = dst.counters();
                c.frames[from] += after.tx_frames - before.tx_frames;
                c.bytes[from] += after.tx_bytes - before.tx_bytes;
                c.tx_drops[from] += after.tx_refused - before.tx_refused;
                c.syscalls += after.tx_flushes - before.tx_flushes;
                continue;
            }
            let mut n = 0;
            while n < mode.budget {
                let Some(f) = src.next() else { break };
                n += 1;
                if dst.push(&f) {
                    c.frames[from] += 1;
                    c.bytes[from] += f.data.len() as u64;
                } else {
                    c.tx_drops[from] += 1;
                }
            }
            src.release();
            let before = dst.counters().tx_flushes;
            dst.flush()
                .map_err(|e| format!("send on the transmit ring: {e}"))?;
            c.syscalls += dst.counters().tx_flushes - before;
        }
    }
    Ok(())
}
