//! tapfwd: a two-port TAP forwarder for one A/B question (issue 5, lever 4):
//! does io_uring beat plain non-blocking read()/write() on TAP fds?
//!
//! It opens two TAPs and copies every frame from A to B and from B to A,
//! in one thread, in one of two modes:
//!
//! - `--mode rw`: the engine's way (src/switch/engine.rs, `port_turn` and
//!   `write_frame`): mio, edge-triggered readiness, and per ready fd up to
//!   64 frames of one `read()` into one reused buffer followed by one
//!   `write()` to the other TAP, until `EAGAIN`.
//! - `--mode uring`: one io_uring. Each TAP has a multishot read
//!   (`IORING_OP_READ_MULTISHOT`, Linux 6.7) into a provided-buffer ring of
//!   its own; every read completion becomes a write SQE on the other TAP
//!   straight from the same buffer; the buffer goes back to its ring when the
//!   write completes. All writes queued while handling one batch of
//!   completions go out, together with the wait for the next batch, in one
//!   `io_uring_enter`. Without multishot reads (older kernels, or
//!   `--no-multishot`) it re-arms a one-shot `IORING_OP_READ` with buffer
//!   selection after each completion, and says so.
//!
//! Both modes copy each frame exactly twice (kernel to buffer, buffer to
//! kernel), like the engine; only the system calls differ. With `--vnet`
//! the TAPs carry a 12-byte `virtio_net_hdr` and TSO/checksum offloads, so
//! TCP arrives in 64 KiB super-frames, which are passed through untouched.
//!
//! On SIGINT/SIGTERM (or after `--duration`) it prints one JSON line with
//! its counters and CPU time and exits; closing the fds deletes the TAPs it
//! created. Used by `benches/system/tapfwd_ab.sh`; see the section
//! "io_uring on TAP fds" in docs/benchmarks-system.md.
//!
//! ```text
//! tapfwd --mode rw|uring --netns-a NS --netns-b NS [--ip-a CIDR --ip-b CIDR] [--vnet]
//! tapfwd --mode rw|uring --tap-a NAME --tap-b NAME [--vnet]    (existing TAPs, this netns)
//! ```

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vxswitch::ports::{self, Netns, TapSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Non-blocking read()/write() driven by mio, like the engine.
    Rw,
    /// io_uring: multishot reads into provided buffers, batched writes.
    Uring,
}

#[derive(Parser, Debug)]
#[command(
    about = "Forward frames between two TAPs with read/write or io_uring (an A/B experiment)"
)]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// Create TAP A in this namespace (a name from `ip netns` or a path).
    #[arg(long, requires = "netns_b", conflicts_with_all = ["tap_a", "tap_b"])]
    netns_a: Option<String>,
    /// Create TAP B in this namespace.
    #[arg(long, requires = "netns_a")]
    netns_b: Option<String>,
    /// The name of the created TAPs inside their namespaces.
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// Address (CIDR) for created TAP A.
    #[arg(long)]
    ip_a: Option<ipnet::IpNet>,
    /// Address (CIDR) for created TAP B.
    #[arg(long)]
    ip_b: Option<ipnet::IpNet>,
    /// Attach to this existing TAP in the current namespace instead.
    #[arg(long, requires = "tap_b")]
    tap_a: Option<String>,
    #[arg(long, requires = "tap_a")]
    tap_b: Option<String>,
    /// IFF_VNET_HDR + TUNSETOFFLOAD: pass 64 KiB super-frames through.
    #[arg(long)]
    vnet: bool,
    /// uring: use one-shot IORING_OP_READ even where multishot exists.
    #[arg(long)]
    no_multishot: bool,
    /// uring: provided buffers per TAP, a power of two [default: 256, with
    /// --vnet 32: 32 x 64 KiB stays cache-warm, 256 x 64 KiB does not and
    /// lost ~20% of TCP throughput].
    #[arg(long)]
    buffers: Option<u16>,
    /// uring: IORING_SETUP_DEFER_TASKRUN (completion work runs only when
    /// the loop waits, not as an interrupt of whatever it is doing).
    #[arg(long)]
    defer_taskrun: bool,
    /// rw: frames per fd per turn, as the engine's budget.
    #[arg(long, default_value_t = 64)]
    budget: usize,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
}

/// Per-direction counters; index 0 is A->B, 1 is B->A.
#[derive(Default, Debug)]
struct Counters {
    frames: [u64; 2],
    bytes: [u64; 2],
    /// Writes refused or cut short (frame lost), per direction.
    tx_drops: [u64; 2],
    /// Read errors other than EAGAIN.
    rx_errors: u64,
    /// System calls made by the loop: read+write+epoll_wait (rw) or
    /// io_uring_enter (uring).
    syscalls: u64,
    /// uring: multishot reads that ended (ENOBUFS etc.) and were re-armed.
    rearms: u64,
    /// uring: read completions that found no free buffer (ENOBUFS).
    no_buffers: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("tapfwd: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let (a, b) = open_taps(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let buf_len = if args.vnet {
        // A 64 KiB super-frame, its Ethernet header and the virtio_net_hdr.
        65536 + 64
    } else {
        2048
    };
    // Tell the driver script the TAPs exist (it configures nothing else).
    println!(
        "ready mode={:?} vnet={} pid={}",
        args.mode,
        args.vnet,
        std::process::id()
    );
    let start = Instant::now();
    let mut c = Counters::default();
    let variant = match args.mode {
        Mode::Rw => {
            rw_loop(&a, &b, args.budget, buf_len, &stop, deadline, &mut c)?;
            "read/write".to_string()
        }
        Mode::Uring => uring::run(
            &a,
            &b,
            uring::Config {
                multishot: !args.no_multishot,
                defer_taskrun: args.defer_taskrun,
                buffers: args.buffers.unwrap_or(if args.vnet { 32 } else { 256 }),
                buf_len,
            },
            &stop,
            deadline,
            &mut c,
        )
        .map_err(|e| format!("io_uring: {e}"))?,
    };
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().unwrap_or(f64::NAN);
    // More than 1 would mean io_uring punted work to io-wq worker threads.
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    println!(
        "{{\"mode\":\"{:?}\",\"variant\":\"{variant}\",\"vnet\":{},\"seconds\":{secs:.3},\"cpu_seconds\":{cpu:.3},\
         \"frames_ab\":{},\"frames_ba\":{},\"bytes_ab\":{},\"bytes_ba\":{},\"tx_drops_ab\":{},\"tx_drops_ba\":{},\
         \"rx_errors\":{},\"syscalls\":{},\"rearms\":{},\"no_buffers\":{},\"threads\":{threads}}}",
        args.mode,
        args.vnet,
        c.frames[0],
        c.frames[1],
        c.bytes[0],
        c.bytes[1],
        c.tx_drops[0],
        c.tx_drops[1],
        c.rx_errors,
        c.syscalls,
        c.rearms,
        c.no_buffers
    );
    Ok(())
}

fn netns_of(s: &str) -> Netns {
    if s.contains('/') {
        Netns::Path(s.into())
    } else {
        Netns::named(s)
    }
}

/// Creates (or attaches to) the two TAPs; returns their fds as files.
fn open_taps(args: &Args) -> Result<(File, File), String> {
    let fds: (OwnedFd, OwnedFd) = match (&args.netns_a, &args.netns_b, &args.tap_a, &args.tap_b) {
        (Some(na), Some(nb), _, _) => {
            let make = |ns: &str, ip: Option<ipnet::IpNet>| {
                ports::create_tap(&TapSpec {
                    netns: netns_of(ns),
                    ifname: args.ifname.clone(),
                    mac: None,
                    mtu: None,
                    addrs: ip.into_iter().collect(),
                    gateway: None,
                    vnet_hdr: args.vnet,
                    queues: 1,
                })
                .map(|t| t.fd)
                .map_err(|e| format!("cannot create TAP {} in {ns}: {e}", args.ifname))
            };
            (make(na, args.ip_a)?, make(nb, args.ip_b)?)
        }
        (_, _, Some(ta), Some(tb)) => {
            let attach = |name: &str| {
                ports::attach_existing(name, args.vnet)
                    .map(|t| t.fd)
                    .map_err(|e| format!("cannot attach to TAP {name}: {e}"))
            };
            (attach(ta)?, attach(tb)?)
        }
        _ => return Err("give either --netns-a and --netns-b, or --tap-a and --tap-b".into()),
    };
    Ok((File::from(fds.0), File::from(fds.1)))
}

/// User plus system CPU seconds of this process (all threads, including
/// any io_uring worker threads), from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}

fn stopping(stop: &AtomicBool, deadline: Option<Instant>) -> bool {
    stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d)
}

/// The engine's way: edge-triggered readiness, up to `budget` frames per
/// ready fd per turn, one read and one write per frame.
fn rw_loop(
    a: &File,
    b: &File,
    budget: usize,
    buf_len: usize,
    stop: &AtomicBool,
    deadline: Option<Instant>,
    c: &mut Counters,
) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let fds: [RawFd; 2] = [a.as_raw_fd(), b.as_raw_fd()];
    for (i, fd) in fds.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(fd), Token(i), Interest::READABLE)
            .map_err(|e| format!("epoll register: {e}"))?;
    }
    let files = [a, b];
    let mut events = Events::with_capacity(8);
    let mut buf = vec![0u8; buf_len];
    // Edge-triggered: a port stays ready until a read says EAGAIN.
    let mut ready = [true, true];
    while !stopping(stop, deadline) {
        if !ready[0] && !ready[1] {
            c.syscalls += 1;
            match poll.poll(&mut events, Some(Duration::from_millis(100))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("epoll_wait: {e}")),
            }
            for ev in events.iter() {
                ready[ev.token().0] = true;
            }
        }
        for from in 0..2 {
            if !ready[from] {
                continue;
            }
            let (mut src, mut dst) = (files[from], files[1 - from]);
            for _ in 0..budget {
                c.syscalls += 1;
                let n = match src.read(&mut buf) {
                    Ok(0) => return Err("a TAP reached end of file".into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        ready[from] = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.rx_errors += 1;
                        continue;
                    }
                };
                c.syscalls += 1;
                match dst.write(&buf[..n]) {
                    Ok(m) if m == n => {
                        c.frames[from] += 1;
                        c.bytes[from] += n as u64;
                    }
                    _ => c.tx_drops[from] += 1,
                }
            }
        }
    }
    Ok(())
}

/// The io_uring mode. All `unsafe` of this example lives here: the kernel
/// reads and writes memory we hand it by address, so whoever hands it over
/// must keep that memory alive and unaliased until the kernel is done.
#[allow(unsafe_code)]
mod uring {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
    use std::time::Instant;

    use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
    use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

    use super::{stopping, Counters};

    pub struct Config {
        pub multishot: bool,
        pub defer_taskrun: bool,
        pub buffers: u16,
        pub buf_len: usize,
    }

    /// Maps `bytes` of anonymous, zeroed, page-aligned memory.
    fn map(bytes: usize) -> io::Result<*mut u8> {
        // SAFETY: an anonymous private mapping with no address hint touches
        // no existing memory; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(ptr.cast())
    }

    /// A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): `entries`
    /// buffers of `buf_len` bytes, and the page-aligned ring of their
    /// descriptors that the kernel consumes from and we refill by advancing
    /// the tail. Both are mappings of their own, never Rust references: the
    /// kernel writes into the buffers behind our back.
    struct BufRing {
        ring: *mut BufRingEntry,
        ring_bytes: usize,
        bufs: *mut u8,
        buf_len: usize,
        entries: u16,
        /// Our copy of the tail; published with [`BufRing::publish`].
        tail: u16,
    }

    impl BufRing {
        /// Allocates the ring with every buffer in it; not registered yet.
        fn new(entries: u16, buf_len: usize) -> io::Result<BufRing> {
            if !entries.is_power_of_two() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--buffers must be a power of two",
                ));
            }
            let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
            let ring: *mut BufRingEntry = map(ring_bytes)?.cast();
            let bufs = match map(usize::from(entries) * buf_len) {
                Ok(b) => b,
                Err(e) => {
                    // SAFETY: mapped just above with this length, unused.
                    unsafe { libc::munmap(ring.cast(), ring_bytes) };
                    return Err(e);
                }
            };
            let mut br = BufRing {
                ring,
                ring_bytes,
                bufs,
                buf_len,
                entries,
                tail: 0,
            };
            for bid in 0..entries {
                br.push(bid);
            }
            br.publish();
            Ok(br)
        }

        /// Hands the ring to `uring` as buffer group `bgid`.
        ///
        /// The caller keeps `self` alive for as long as `uring`: [`Fwd`]
        /// holds both, the IoUring first, so it is dropped first.
        fn register(&self, uring: &IoUring, bgid: u16) -> io::Result<()> {
            // SAFETY: `self.ring` is a page-aligned mapping of exactly
            // `entries` descriptors, each pointing into `self.bufs`; both
            // live until `self` is dropped, which happens after `uring` is
            // (the field order of `Fwd`), so the kernel never sees them
            // unmapped.
            unsafe {
                uring.submitter().register_buf_ring_with_flags(
                    self.ring as u64,
                    self.entries,
                    bgid,
                    0,
                )
            }
        }

        /// Queues buffer `bid` for the kernel (visible after `publish`).
        fn push(&mut self, bid: u16) {
            let addr = self.ptr(bid) as u64;
            let slot = usize::from(self.tail & (self.entries - 1));
            // SAFETY: `slot` indexes one of the `entries` descriptors of the
            // mapping; the kernel only reads descriptors between its head
            // and our published tail, and this one is past the tail, so
            // nothing else accesses it now.
            let e = unsafe { &mut *self.ring.add(slot) };
            e.set_addr(addr);
            e.set_len(self.buf_len as u32);
            e.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
        }

        /// Makes every pushed buffer visible to the kernel.
        fn publish(&self) {
            // SAFETY: the tail is the u16 `resv` field of descriptor 0,
            // inside the live, page-aligned mapping; the kernel reads it
            // with acquire semantics, so a release store orders the
            // descriptor writes before it.
            unsafe {
                let tail = BufRingEntry::tail(self.ring) as *mut u16;
                AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
            }
        }

        /// The start of buffer `bid` (an address for the kernel, never
        /// dereferenced here).
        fn ptr(&self, bid: u16) -> *const u8 {
            debug_assert!(bid < self.entries);
            self.bufs
                .wrapping_add(usize::from(bid) * self.buf_len)
                .cast_const()
        }
    }

    impl Drop for BufRing {
        fn drop(&mut self) {
            // SAFETY: both mappings were made in `new` with these lengths,
            // and the io_uring that used them is gone (see `register`).
            unsafe {
                libc::munmap(self.ring.cast(), self.ring_bytes);
                libc::munmap(self.bufs.cast(), usize::from(self.entries) * self.buf_len);
            }
        }
    }

    /// user_data: bits 62-63 the kind, bit 16 the direction (the TAP read
    /// from), 0-15 the buffer id and, for writes, bits 17-37 the length.
    const READ: u64 = 1 << 62;
    const WRITE: u64 = 2 << 62;
    const KIND: u64 = 3 << 62;

    /// Field order matters: the ring is dropped first, so the kernel stops
    /// using the buffer rings before they are unmapped.
    struct Fwd<'a> {
        uring: IoUring,
        rings: [BufRing; 2],
        files: [&'a File; 2],
        multishot: bool,
    }

    impl Fwd<'_> {
        fn push(&mut self, sqe: &squeue::Entry, c: &mut Counters) -> io::Result<()> {
            loop {
                // SAFETY: every SQE we build points either into a buffer
                // ring's mapping (writes, which the kernel only reads),
                // which outlives the IoUring, or at no memory at all
                // (buffer-select reads pick a registered buffer).
                if unsafe { self.uring.submission().push(sqe) }.is_ok() {
                    return Ok(());
                }
                // The SQ is full: hand it to the kernel and retry.
                c.syscalls += 1;
                self.uring.submit()?;
            }
        }

        /// A read on TAP `p` that picks a buffer from ring `p`.
        fn read_sqe(&self, p: usize) -> squeue::Entry {
            let fd = Fd(self.files[p].as_raw_fd());
            let bgid = p as u16;
            let ud = READ | ((p as u64) << 16);
            if self.multishot {
                opcode::ReadMulti::new(fd, 0, bgid).build().user_data(ud)
            } else {
                opcode::Read::new(fd, std::ptr::null_mut(), self.rings[p].buf_len as u32)
                    .buf_group(bgid)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
                    .user_data(ud)
            }
        }
    }

    /// Forwards until `stop`; returns which read variant it used.
    pub fn run(
        a: &File,
        b: &File,
        cfg: Config,
        stop: &AtomicBool,
        deadline: Option<Instant>,
        c: &mut Counters,
    ) -> io::Result<String> {
        let mut builder = IoUring::builder();
        builder.setup_single_issuer();
        if cfg.defer_taskrun {
            builder.setup_defer_taskrun();
        }
        let uring = builder.build(1024)?;
        let mut probe = Probe::new();
        uring.submitter().register_probe(&mut probe)?;
        let mut multishot = cfg.multishot;
        let mut variant = "multishot read".to_string();
        if multishot && !probe.is_supported(opcode::ReadMulti::CODE) {
            eprintln!("tapfwd: IORING_OP_READ_MULTISHOT not supported here; using one-shot reads");
            multishot = false;
        }
        if !multishot {
            variant = "one-shot read".into();
        }
        let rings = [
            BufRing::new(cfg.buffers, cfg.buf_len)?,
            BufRing::new(cfg.buffers, cfg.buf_len)?,
        ];
        let mut f = Fwd {
            uring,
            rings,
            files: [a, b],
            multishot,
        };
        // Registered only now that `f` owns both, in the right drop order.
        for (bgid, ring) in f.rings.iter().enumerate() {
            ring.register(&f.uring, bgid as u16)?;
        }
        // Reads outstanding per TAP (multishot: armed or not).
        let mut armed = [false, false];
        // Buffers of ring p not handed back yet (in a write or just read).
        let mut out = [0u32; 2];
        let wait = Timespec::new().nsec(100_000_000);
        let args = SubmitArgs::new().timespec(&wait);
        let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
        while !stopping(stop, deadline) {
            for p in 0..2 {
                // Re-arm only with free buffers, or it ends at once (ENOBUFS).
                if !armed[p] && out[p] < u32::from(cfg.buffers) {
                    let sqe = f.read_sqe(p);
                    f.push(&sqe, c)?;
                    armed[p] = true;
                }
            }
            c.syscalls += 1;
            match f.uring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            done.clear();
            done.extend(
                f.uring
                    .completion()
                    .map(|e| (e.user_data(), e.result(), e.flags())),
            );
            let mut recycled = [false, false];
            for &(ud, res, flags) in &done {
                let p = ((ud >> 16) & 1) as usize;
                match ud & KIND {
                    READ => {
                        if !cqueue::more(flags) {
                            armed[p] = false;
                            if multishot {
                                c.rearms += 1;
                            }
                        }
                        if res < 0 {
                            match -res {
                                libc::ENOBUFS => c.no_buffers += 1,
                                libc::EAGAIN | libc::EINTR => {}
                                _ => c.rx_errors += 1,
                            }
                            continue;
                        }
                        let Some(bid) = cqueue::buffer_select(flags) else {
                            c.rx_errors += 1;
                            continue;
                        };
                        if res == 0 {
                            return Err(io::Error::other("a TAP reached end of file"));
                        }
                        out[p] += 1;
                        let q = 1 - p;
                        let w = opcode::Write::new(
                            Fd(f.files[q].as_raw_fd()),
                            f.rings[p].ptr(bid),
                            res as u32,
                        )
                        .build()
                        .user_data(
                            WRITE | ((p as u64) << 16) | u64::from(bid) | ((res as u64) << 17),
                        );
                        f.push(&w, c)?;
                    }
                    WRITE => {
                        let bid = (ud & 0xffff) as u16;
                        let len = ((ud >> 17) & 0x1f_ffff) as i32;
                        if res == len {
                            c.frames[p] += 1;
                            c.bytes[p] += len as u64;
                        } else {
                            c.tx_drops[p] += 1;
                        }
                        f.rings[p].push(bid);
                        out[p] -= 1;
                        recycled[p] = true;
                    }
                    _ => {}
                }
            }
            for (ring, r) in f.rings.iter().zip(recycled) {
                if r {
                    ring.publish();
                }
            }
        }
        Ok(variant)
    }
}
