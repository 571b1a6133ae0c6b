//! `--busy-poll auto` in the engine: a worker spins while paced traffic
//! flows and sleeps in `epoll_wait` once it stops. The CPU a worker uses
//! is read from `/proc/self/task/TID/stat` (utime + stime, in clock ticks)
//! of the threads named `vxswitch-dp*`. No root needed.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vxswitch::fdb::{NetId, PortId};
use vxswitch::switch::{BusyPoll, Engine, EngineConfig, PortAttach, PortStats, SourcePolicy};
use vxswitch::time::{ManualClock, Millis};

const WAIT: Duration = Duration::from_secs(5);

/// The tests measure every dataplane thread of the process: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// CPU time (ms) all dataplane threads of this process used so far.
fn dataplane_cpu_ms() -> u64 {
    let ticks_per_s = 100; // USER_HZ: what /proc reports in, on every Linux
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("vxswitch-dp") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // After "(comm)": state is field 3; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks * 1000 / ticks_per_s
}

fn port(engine: &Engine, id: u32) -> UnixDatagram {
    let (ours, theirs) = vxswitch::seqpacket_pair().unwrap();
    engine
        .add_port(PortAttach {
            id: PortId(id),
            net: NetId(0),
            fd: ours,
            extra_queues: Vec::new(),
            mtu: 1500,
            stats: Arc::new(PortStats::default()),
            vnet_hdr: false,
            mac: None,
            policy: SourcePolicy::Open,
        })
        .unwrap();
    let end = UnixDatagram::from(theirs);
    end.set_nonblocking(false).unwrap();
    end.set_read_timeout(Some(WAIT)).unwrap();
    end
}

fn frame(dst: u8, src: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// Paced ping-pong across the switch for `for_`: a frame from `a` to `b`,
/// and back, every `every`.
fn paced_ping_pong(a: &UnixDatagram, b: &UnixDatagram, every: Duration, for_: Duration) -> u32 {
    let mut buf = [0u8; 2048];
    let end = Instant::now() + for_;
    let mut n = 0;
    while Instant::now() < end {
        a.send(&frame(2, 1)).unwrap();
        b.recv(&mut buf).expect("the request crosses the switch");
        b.send(&frame(1, 2)).unwrap();
        a.recv(&mut buf).expect("the reply crosses the switch");
        n += 1;
        std::thread::sleep(every);
    }
    n
}

#[test]
fn auto_sleeps_once_traffic_stops() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = EngineConfig {
        busy_poll: BusyPoll::Auto,
        workers: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg, Arc::new(ManualClock::new(Millis(1_000))), None).unwrap();
    let (a, b) = (port(&engine, 1), port(&engine, 2));

    // Traffic every 300 µs (well within the 2 ms the policy spins through).
    let cpu0 = dataplane_cpu_ms();
    let t0 = Instant::now();
    let rounds = paced_ping_pong(&a, &b, Duration::from_micros(300), Duration::from_secs(1));
    let busy_ms = dataplane_cpu_ms() - cpu0;
    let busy_wall = t0.elapsed().as_millis() as u64;
    assert!(rounds > 10, "only {rounds} round trips");
    // What `stats` and the metrics report: windows started (the first ones
    // come before any preemption could pause it), of which some ran out
    // without a frame and some were cut short by a preemption.
    let (windows, misses, preempted) = engine.worker_spin()[0];
    assert!(windows > 0, "no spin window in {rounds} round trips");
    assert!(
        misses <= windows && preempted <= windows,
        "{windows} {misses} {preempted}"
    );

    // Silence: the worker spins at most one window (≤ 2.5 ms), then blocks.
    let cpu1 = dataplane_cpu_ms();
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let idle_ms = dataplane_cpu_ms() - cpu1;
    let idle_wall = t1.elapsed().as_millis() as u64;
    eprintln!(
        "busy: {busy_ms} ms CPU in {busy_wall} ms ({rounds} round trips); idle: {idle_ms} ms CPU in {idle_wall} ms"
    );
    // Generous: a spinning worker gets far more than 5% of a CPU even on a
    // machine loaded several times over; an idle one about 0.
    assert!(
        idle_ms * 20 < idle_wall,
        "the worker used {idle_ms} ms of CPU in {idle_wall} ms of silence: it kept spinning"
    );
    // How much the worker spun while traffic flowed depends on the load:
    // preempted while spinning, `auto` backs off (see switch/poll.rs).
    let _ = busy_ms;
}

/// The loop spins when its policy says so: `--busy-poll 1000000` after one
/// frame keeps the worker on the CPU for the next second.
#[test]
fn the_loop_spins_when_told_to() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = EngineConfig {
        busy_poll: BusyPoll::Fixed(Duration::from_secs(1)),
        workers: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg, Arc::new(ManualClock::new(Millis(1_000))), None).unwrap();
    let (a, b) = (port(&engine, 1), port(&engine, 2));
    paced_ping_pong(&a, &b, Duration::ZERO, Duration::from_millis(1));
    let cpu0 = dataplane_cpu_ms();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let spun_ms = dataplane_cpu_ms() - cpu0;
    let wall = t0.elapsed().as_millis() as u64;
    eprintln!("fixed 1 s: {spun_ms} ms CPU in {wall} ms after the last frame");
    // A spinning thread gets far more than 5% of a CPU even on a machine
    // loaded several times over.
    assert!(
        spun_ms * 20 >= wall,
        "the worker used only {spun_ms} ms of CPU in {wall} ms: it did not spin"
    );
}

#[test]
fn off_never_spins() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = EngineConfig {
        workers: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg, Arc::new(ManualClock::new(Millis(1_000))), None).unwrap();
    let (a, b) = (port(&engine, 1), port(&engine, 2));
    let cpu0 = dataplane_cpu_ms();
    let t0 = Instant::now();
    let rounds = paced_ping_pong(&a, &b, Duration::from_micros(300), Duration::from_secs(1));
    let busy_ms = dataplane_cpu_ms() - cpu0;
    let wall = t0.elapsed().as_millis() as u64;
    eprintln!("off: {busy_ms} ms CPU in {wall} ms ({rounds} round trips)");
    assert_eq!(
        engine.worker_spin(),
        vec![(0, 0, 0)],
        "off reports no spin window"
    );
    // Each round trip costs two wake-ups, not a spinning core.
    assert!(busy_ms * 4 < wall, "{busy_ms} ms of CPU in {wall} ms");
}
