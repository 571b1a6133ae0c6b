//! The engine end to end over in-process ports: each port is one end of an
//! AF_UNIX SOCK_SEQPACKET pair, and the test holds the other end as the
//! "container". No root needed.
//!
//! Absence is asserted without waiting windows: the worker handles one
//! port's frames in order, so after sending the frame that must not arrive
//! the test sends a marker broadcast from the same port and checks that the
//! marker is the next thing each other port sees.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use vxswitch::fdb::{Dest, FdbConfig, Filter, NetId, PortId};
use vxswitch::switch::{DropReason, Engine, EngineConfig, Event, PortAttach, PortStats};
use vxswitch::time::{ManualClock, Millis};
use vxswitch::wire::MacAddr;

#[path = "offload_frames/mod.rs"]
mod offload_frames;

const WAIT: Duration = Duration::from_secs(5);

/// Counters are bumped after the write that delivers a frame, so a test
/// that has just received the frame waits (bounded) for the count.
fn eventually(what: &str, f: impl Fn() -> u64, want: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    while f() != want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(f(), want, "{what}");
}

struct TestPort {
    end: UnixDatagram,
    stats: Arc<PortStats>,
    id: PortId,
    /// Frames on this port carry a 12-byte `virtio_net_hdr`.
    vnet: bool,
}

struct Rig {
    engine: Engine,
    clock: ManualClock,
}

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn frame(dst: MacAddr, src: MacAddr, tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![tag; len.max(14)];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f
}

impl Rig {
    fn new(fdb: FdbConfig) -> Rig {
        let clock = ManualClock::new(Millis(10_000));
        let cfg = EngineConfig {
            fdb,
            ..EngineConfig::default()
        };
        let engine = Engine::start(cfg, Arc::new(clock.clone()), None).unwrap();
        Rig { engine, clock }
    }

    fn port(&self, id: u32, net: u32, mtu: u32) -> TestPort {
        self.port_with(id, net, mtu, false)
    }

    /// A port whose frames carry a `virtio_net_hdr`, as a TAP with offloads.
    fn vnet_port(&self, id: u32, net: u32, mtu: u32) -> TestPort {
        self.port_with(id, net, mtu, true)
    }

    fn port_with(&self, id: u32, net: u32, mtu: u32, vnet_hdr: bool) -> TestPort {
        let (ours, theirs) = vxswitch::seqpacket_pair().unwrap();
        let stats = Arc::new(PortStats::default());
        self.engine
            .add_port(PortAttach {
                id: PortId(id),
                net: NetId(net),
                fd: ours,
                extra_queues: Vec::new(),
                mtu,
                stats: stats.clone(),
                vnet_hdr,
            })
            .unwrap();
        let end = UnixDatagram::from(theirs);
        end.set_nonblocking(false).unwrap();
        end.set_read_timeout(Some(WAIT)).unwrap();
        TestPort {
            end,
            stats,
            id: PortId(id),
            vnet: vnet_hdr,
        }
    }
}

impl TestPort {
    fn send(&self, f: &[u8]) {
        self.end.send(f).unwrap();
    }

    /// The next frame this port receives (fails after 5 s).
    fn recv(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 70_000];
        let n = self
            .end
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("port {} received nothing: {e}", self.id.0));
        buf.truncate(n);
        buf
    }

    /// Sends a marker broadcast and asserts that each of `others` sees it
    /// next, i.e. that nothing sent from this port before it reached them.
    fn barrier(&self, src: MacAddr, others: &[&TestPort]) {
        let marker = frame(MacAddr::BROADCAST, src, 0xee, 60);
        // On offload ports the marker travels behind an all-zero header.
        let framed = |vnet: bool| {
            let mut v = if vnet { vec![0u8; 12] } else { Vec::new() };
            v.extend_from_slice(&marker);
            v
        };
        self.send(&framed(self.vnet));
        for o in others {
            assert_eq!(
                o.recv(),
                framed(o.vnet),
                "port {} got an unexpected frame before the marker",
                o.id.0
            );
        }
    }
}

#[test]
fn floods_unknown_then_forwards_learned_unicast() {
    let rig = Rig::new(FdbConfig::default());
    let (a, b, c) = (
        rig.port(0, 0, 1500),
        rig.port(1, 0, 1500),
        rig.port(2, 0, 1500),
    );

    // A to an unknown B: flooded to B and C, never back to A.
    let f1 = frame(mac(0xb), mac(0xa), 1, 100);
    a.send(&f1);
    assert_eq!(b.recv(), f1);
    assert_eq!(c.recv(), f1);

    // B answers A: A is known, so only A gets it.
    let f2 = frame(mac(0xa), mac(0xb), 2, 100);
    b.send(&f2);
    assert_eq!(a.recv(), f2);
    b.barrier(mac(0xb), &[&a, &c]);

    // Both learned, on the right ports.
    let entries = rig.engine.fdb().entries(Filter::default(), rig.clock_now());
    let find = |m| entries.iter().find(|e| e.mac == m).map(|e| e.dest);
    assert_eq!(find(mac(0xa)), Some(Dest::Local(PortId(0))));
    assert_eq!(find(mac(0xb)), Some(Dest::Local(PortId(1))));

    eventually("a rx_frames", || a.stats.rx_frames.get(), 1);
    eventually(
        "a tx_frames (f2 and B's marker)",
        || a.stats.tx_frames.get(),
        2,
    );
    eventually(
        "c tx_frames (f1 and B's marker)",
        || c.stats.tx_frames.get(),
        2,
    );
    eventually("c tx_bytes", || c.stats.tx_bytes.get(), 160);
}

#[test]
fn networks_are_isolated() {
    let rig = Rig::new(FdbConfig::default());
    let (a, b) = (rig.port(0, 0, 1500), rig.port(1, 0, 1500));
    let (x, y) = (rig.port(2, 1, 1500), rig.port(3, 1, 1500));

    let bcast = frame(MacAddr::BROADCAST, mac(0xa), 1, 60);
    a.send(&bcast);
    assert_eq!(b.recv(), bcast);
    // Network 1 never sees network 0's broadcast, nor a unicast to a MAC
    // that network 0 knows.
    x.send(&frame(mac(0xa), mac(0x10), 2, 60));
    assert_eq!(y.recv()[14], 2, "unknown unicast floods within network 1");
    x.barrier(mac(0x10), &[&y]);
    a.barrier(mac(0xa), &[&b]);
    y.barrier(mac(0x11), &[&x]);
    eventually(
        "network 1 tx_frames",
        || x.stats.tx_frames.get() + y.stats.tx_frames.get(),
        3,
    );
}

#[test]
fn moves_follow_the_mac() {
    let rig = Rig::new(FdbConfig::default());
    let (a, b, c) = (
        rig.port(0, 0, 1500),
        rig.port(1, 0, 1500),
        rig.port(2, 0, 1500),
    );
    a.send(&frame(MacAddr::BROADCAST, mac(0xa), 1, 60));
    b.recv();
    c.recv();
    // The MAC shows up behind C (a container migrated, a VM moved).
    c.send(&frame(MacAddr::BROADCAST, mac(0xa), 2, 60));
    a.recv();
    b.recv();
    eventually("c moves_in", || c.stats.moves_in.get(), 1);
    let f = frame(mac(0xa), mac(0xb), 3, 60);
    b.send(&f);
    assert_eq!(c.recv(), f);
    b.barrier(mac(0xb), &[&a, &c]);
}

#[test]
fn no_hairpin_and_invalid_sources_are_counted() {
    let rig = Rig::new(FdbConfig::default());
    let (a, b) = (rig.port(0, 0, 1500), rig.port(1, 0, 1500));
    a.send(&frame(MacAddr::BROADCAST, mac(0xa), 1, 60));
    b.recv();
    a.send(&frame(MacAddr::BROADCAST, mac(0xc), 1, 60));
    b.recv();
    // A frame to C arriving on C's own port is not sent back out.
    a.send(&frame(mac(0xc), mac(0xa), 2, 60));
    a.send(&frame(mac(0xb), MacAddr::ZERO, 3, 60));
    a.send(&frame(mac(0xb), MacAddr([0x01, 0, 0x5e, 0, 0, 1]), 4, 60));
    a.send(&[0u8; 10]);
    a.barrier(mac(0xa), &[&b]);
    eventually("hairpin drops", || a.stats.drops(DropReason::Hairpin), 1);
    eventually(
        "invalid_source drops",
        || a.stats.drops(DropReason::InvalidSource),
        2,
    );
    eventually("runt drops", || a.stats.drops(DropReason::Runt), 1);
    assert_eq!(a.stats.tx_frames.get(), 0, "nothing went back out of A");
}

#[test]
fn learned_entries_age_out_on_the_clock() {
    let rig = Rig::new(FdbConfig {
        ageing_ms: 30_000,
        ..FdbConfig::default()
    });
    let (a, b, c) = (
        rig.port(0, 0, 1500),
        rig.port(1, 0, 1500),
        rig.port(2, 0, 1500),
    );
    a.send(&frame(MacAddr::BROADCAST, mac(0xa), 1, 60));
    b.recv();
    c.recv();
    let to_a = frame(mac(0xa), mac(0xb), 2, 60);
    b.send(&to_a);
    assert_eq!(a.recv(), to_a);
    b.barrier(mac(0xb), &[&a, &c]);

    // 31 s later A has aged out: a frame to A floods again, reaching C too.
    rig.clock.advance(Duration::from_secs(31));
    rig.engine.barrier().unwrap();
    // B's own entry aged too; the barrier re-learns it, so send the data first.
    b.send(&to_a);
    assert_eq!(a.recv(), to_a);
    assert_eq!(c.recv(), to_a, "an aged-out MAC is unknown unicast again");
}

#[test]
fn fdb_limits_refuse_learning_but_keep_forwarding() {
    let rig = Rig::new(FdbConfig {
        max_per_dest: 4,
        ..FdbConfig::default()
    });
    let (a, b) = (rig.port(0, 0, 1500), rig.port(1, 0, 1500));
    for i in 0..10u8 {
        a.send(&frame(mac(0xb), mac(0x20 + i), i, 60));
    }
    for i in 0..10u8 {
        assert_eq!(b.recv()[14], i, "frame {i} forwarded despite the limit");
    }
    eventually(
        "learn_refused_port_limit",
        || a.stats.learn_refused_port_limit.get(),
        6,
    );
    assert_eq!(rig.engine.fdb().dest_count(Dest::Local(PortId(0))), 4);
    // Another port still learns.
    b.send(&frame(MacAddr::BROADCAST, mac(0xb), 0, 60));
    a.recv();
    assert_eq!(rig.engine.fdb().dest_count(Dest::Local(PortId(1))), 1);
}

#[test]
fn oversize_frames_are_dropped_on_egress() {
    let rig = Rig::new(FdbConfig::default());
    let (a, b, small) = (
        rig.port(0, 0, 9000),
        rig.port(1, 0, 1500),
        rig.port(2, 0, 576),
    );
    let big = frame(MacAddr::BROADCAST, mac(0xa), 1, 1500 + 14);
    a.send(&big);
    assert_eq!(b.recv(), big);
    a.barrier(mac(0xa), &[&b, &small]);
    eventually(
        "oversize drops",
        || small.stats.drops(DropReason::Oversize),
        1,
    );
    assert_eq!(b.stats.drops(DropReason::Oversize), 0);
}

#[test]
fn a_port_that_dies_is_removed_and_its_entries_flushed() {
    let rig = Rig::new(FdbConfig::default());
    let (a, b) = (rig.port(0, 0, 1500), rig.port(1, 0, 1500));
    b.send(&frame(MacAddr::BROADCAST, mac(0xb), 1, 60));
    a.recv();
    assert_eq!(rig.engine.fdb().dest_count(Dest::Local(PortId(1))), 1);
    drop(b); // the "container" side goes away
    let ev = rig
        .engine
        .events()
        .recv_timeout(WAIT)
        .expect("PortGone event");
    assert!(
        matches!(ev, Event::PortGone { id: PortId(1), .. }),
        "{ev:?}"
    );
    assert_eq!(rig.engine.fdb().dest_count(Dest::Local(PortId(1))), 0);
    // The id is free again and the switch still works.
    let b2 = rig.port(1, 0, 1500);
    a.send(&frame(MacAddr::BROADCAST, mac(0xa), 2, 60));
    assert_eq!(b2.recv()[14], 2);
}

#[test]
fn remove_port_closes_the_fd_and_flushes() {
    let rig = Rig::new(FdbConfig::default());
    let (a, b) = (rig.port(0, 0, 1500), rig.port(1, 0, 1500));
    b.send(&frame(MacAddr::BROADCAST, mac(0xb), 1, 60));
    a.recv();
    assert!(rig.engine.remove_port(PortId(1)).unwrap());
    assert!(
        !rig.engine.remove_port(PortId(1)).unwrap(),
        "second removal reports absence"
    );
    assert_eq!(rig.engine.fdb().dest_count(Dest::Local(PortId(1))), 0);
    // The engine closed its end: the test end reads end-of-file.
    let mut buf = [0u8; 64];
    assert_eq!(b.end.recv(&mut buf).unwrap(), 0);
}

impl Rig {
    fn clock_now(&self) -> Millis {
        use vxswitch::time::Clock;
        self.clock.now()
    }
}

/// The `virtio_net_hdr` bytes and the frame, as one write to an offload port.
fn with_hdr(h: &vxswitch::offload::VnetHdr, frame: &[u8]) -> Vec<u8> {
    let mut v = h.to_bytes().to_vec();
    v.extend_from_slice(frame);
    v
}

#[test]
fn super_frames_pass_between_offload_ports_and_are_segmented_for_plain_ones() {
    use offload_frames::{build, gso_hdr, Spec};
    use vxswitch::offload::{complete_checksum, segment, VnetHdr, F_NEEDS_CSUM, VNET_HDR_LEN};
    let rig = Rig::new(FdbConfig::default());
    let (a, b, c) = (
        rig.vnet_port(0, 0, 9000),
        rig.vnet_port(1, 0, 1500),
        rig.port(2, 0, 1500),
    );
    for spec in [Spec::tcp4(20_000), Spec::tcp6(30_001), Spec::udp4(9_000)] {
        let built = build(&spec);
        let h = gso_hdr(&spec, &built, 1400);
        // Unknown destination: flooded to b (offloads) and c (none).
        a.send(&with_hdr(&h, &built.frame));
        assert_eq!(b.recv(), with_hdr(&h, &built.frame), "{spec:?}");
        let mut scratch = vec![0u8; 256 * 1024];
        let segs = segment(&built.frame, &h, &mut scratch, 0).unwrap();
        assert!(segs.count > 1);
        for want in segs.frames(&scratch) {
            assert_eq!(c.recv(), want, "{spec:?}");
        }
    }
    a.barrier(MacAddr([2, 0, 0, 0, 0, 0xa]), &[&b, &c]);

    // A partial checksum without GSO: completed for c, left to b's kernel.
    let spec = Spec::tcp4(500);
    let built = build(&spec);
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: built.l4 as u16,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    a.send(&with_hdr(&h, &built.frame));
    assert_eq!(b.recv(), with_hdr(&h, &built.frame));
    let mut done = built.frame.clone();
    complete_checksum(&mut done, &h).unwrap();
    assert_eq!(c.recv(), done);

    // A plain port's frame reaches an offload port behind an all-zero header.
    let f = frame(mac(0xa), mac(0xc), 9, 100);
    c.send(&f);
    let got = a.recv();
    assert_eq!(&got[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
    assert_eq!(&got[VNET_HDR_LEN..], &f[..]);

    // Legacy UFO (never offered to a TAP) is refused and counted.
    let bad = VnetHdr {
        gso_type: 3,
        gso_size: 1000,
        ..h
    };
    a.send(&with_hdr(&bad, &built.frame));
    a.barrier(MacAddr([2, 0, 0, 0, 0, 0xa]), &[&b, &c]);
    eventually(
        "a counts the bad header",
        || a.stats.drops(DropReason::BadOffload),
        1,
    );
}

#[test]
fn any_number_of_workers_forwards_and_counts_the_same() {
    for workers in [1, 3] {
        let cfg = EngineConfig {
            workers,
            ..EngineConfig::default()
        };
        let engine = Engine::start(cfg, Arc::new(ManualClock::new(Millis(1))), None).unwrap();
        assert_eq!(engine.workers(), workers);
        let rig = Rig {
            engine,
            clock: ManualClock::new(Millis(1)),
        };
        let (a, b, c) = (
            rig.port(0, 0, 1500),
            rig.port(1, 0, 1500),
            rig.port(2, 0, 1500),
        );
        let f1 = frame(mac(0xb), mac(0xa), 1, 100);
        a.send(&f1);
        assert_eq!(b.recv(), f1);
        assert_eq!(c.recv(), f1);
        for i in 0..50u8 {
            let f = frame(mac(0xa), mac(0xb), i, 60 + usize::from(i));
            b.send(&f);
            // In order, and only to a.
            assert_eq!(a.recv(), f);
        }
        b.barrier(mac(0xb), &[&a, &c]);
        eventually(
            "b's frames counted (and the marker)",
            || b.stats.rx_frames.get(),
            51,
        );
        eventually(
            "a's deliveries counted (and the marker)",
            || a.stats.tx_frames.get(),
            51,
        );
        assert!(rig.engine.remove_port(PortId(2)).unwrap());
        assert!(!rig.engine.remove_port(PortId(2)).unwrap());
    }
}

/// A port with one queue per worker, as a multi-queue TAP: the test holds
/// the other end of each queue.
struct QueuedPort {
    ends: Vec<UnixDatagram>,
    stats: Arc<PortStats>,
}

impl Rig {
    fn queued_port(&self, id: u32, net: u32) -> QueuedPort {
        let mut fds = Vec::new();
        let mut ends = Vec::new();
        for _ in 0..self.engine.workers() {
            let (ours, theirs) = vxswitch::seqpacket_pair().unwrap();
            fds.push(ours);
            let end = UnixDatagram::from(theirs);
            end.set_nonblocking(false).unwrap();
            end.set_read_timeout(Some(WAIT)).unwrap();
            ends.push(end);
        }
        let stats = Arc::new(PortStats::default());
        let fd = fds.remove(0);
        self.engine
            .add_port(PortAttach {
                id: PortId(id),
                net: NetId(net),
                fd,
                extra_queues: fds,
                mtu: 1500,
                stats: stats.clone(),
                vnet_hdr: false,
            })
            .unwrap();
        QueuedPort { ends, stats }
    }
}

fn recv_on(end: &UnixDatagram, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let n = end
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("{what} received nothing: {e}"));
    buf.truncate(n);
    buf
}

#[test]
fn a_worker_other_than_the_first_reads_its_queue_and_writes_its_own() {
    let cfg = EngineConfig {
        workers: 3,
        ..EngineConfig::default()
    };
    let clock = ManualClock::new(Millis(1));
    let rig = Rig {
        engine: Engine::start(cfg, Arc::new(clock.clone()), None).unwrap(),
        clock,
    };
    let (a, b) = (rig.queued_port(0, 0), rig.queued_port(1, 0));
    // A single-fd port: read by worker 0 only, written by all.
    let c = rig.port(2, 0, 1500);

    // A flow on A's queue 2 is worker 2's: it floods to B's queue 2 and to C.
    let hello = frame(MacAddr::BROADCAST, mac(0xa), 1, 60);
    a.ends[2].send(&hello).unwrap();
    assert_eq!(recv_on(&b.ends[2], "B's queue 2"), hello);
    assert_eq!(c.recv(), hello);
    // B answers on its queue 1: worker 1 knows A (one FDB for all) and
    // writes to A's queue 1.
    let answer = frame(mac(0xa), mac(0xb), 2, 60);
    b.ends[1].send(&answer).unwrap();
    assert_eq!(recv_on(&a.ends[1], "A's queue 1"), answer);
    // The flow goes on through worker 2, in order, to B alone.
    for i in 0..50u8 {
        let f = frame(mac(0xb), mac(0xa), i, 60 + usize::from(i));
        a.ends[2].send(&f).unwrap();
        assert_eq!(recv_on(&b.ends[2], "B's queue 2"), f);
    }
    // A broadcast from C (worker 0) reaches queue 0 of both. Every write
    // so far came before a frame the test received, so a stray frame would
    // be queued by now: there is none.
    let marker = frame(MacAddr::BROADCAST, mac(0xc), 0xee, 60);
    c.send(&marker);
    assert_eq!(recv_on(&a.ends[0], "A's queue 0"), marker);
    assert_eq!(recv_on(&b.ends[0], "B's queue 0"), marker);
    for (name, end) in [("A", &a.ends), ("B", &b.ends)] {
        for (i, e) in end.iter().enumerate() {
            e.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 128];
            assert!(e.recv(&mut buf).is_err(), "{name}'s queue {i} got more");
        }
    }
    eventually("A's frames, both queues", || a.stats.rx_frames.get(), 51);
    eventually("B's deliveries", || b.stats.tx_frames.get(), 52);
    eventually("A's deliveries", || a.stats.tx_frames.get(), 2);
    // Removing the port closes every queue.
    assert!(rig.engine.remove_port(PortId(0)).unwrap());
    for e in &a.ends {
        e.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(e.recv(&mut buf).unwrap(), 0);
    }
}
