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
use vxswitch::switch::{
    DropReason, Engine, EngineConfig, Event, PortAttach, PortStats, SourcePolicy,
};
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

    /// An engine of `cfg` on a manual clock at 1 ms.
    fn with_config(cfg: EngineConfig) -> Rig {
        let clock = ManualClock::new(Millis(1));
        let engine = Engine::start(cfg, Arc::new(clock.clone()), None).unwrap();
        Rig { engine, clock }
    }

    /// An engine of `workers` with VXLAN on `vxlan` and network 0 on `vni`,
    /// learning VTEPs from what arrives.
    fn vxlan(workers: usize, vxlan: vxswitch::vxlan::VxlanConfig, vni: u32) -> Rig {
        let rig = Rig::with_config(EngineConfig {
            workers,
            vxlan,
            ..EngineConfig::default()
        });
        rig.engine
            .set_network(vxswitch::switch::NetworkSpec {
                id: NetId(0),
                vni: Some(vni),
                learn_vteps: true,
                ..vxswitch::switch::NetworkSpec::default()
            })
            .unwrap();
        rig
    }

    fn port(&self, id: u32, net: u32, mtu: u32) -> TestPort {
        self.port_with(id, net, mtu, false)
    }

    /// A port whose frames carry a `virtio_net_hdr`, as a TAP with offloads.
    fn vnet_port(&self, id: u32, net: u32, mtu: u32) -> TestPort {
        self.port_with(id, net, mtu, true)
    }

    fn port_with(&self, id: u32, net: u32, mtu: u32, vnet_hdr: bool) -> TestPort {
        self.port_as(id, net, mtu, vnet_hdr, None, SourcePolicy::Open)
    }

    /// A port with MAC `mac` (when known) whose sources `policy` checks.
    fn secured_port(&self, id: u32, net: u32, mac: MacAddr, policy: SourcePolicy) -> TestPort {
        self.port_as(id, net, 1500, false, Some(mac), policy)
    }

    fn port_as(
        &self,
        id: u32,
        net: u32,
        mtu: u32,
        vnet_hdr: bool,
        mac: Option<MacAddr>,
        policy: SourcePolicy,
    ) -> TestPort {
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
                mac,
                policy,
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

/// A read shorter than the `virtio_net_hdr` on an offload port is counted
/// and dropped, and the port keeps forwarding. (Its length was computed
/// as `n - 12`: the worker thread panicked on the underflow and the port,
/// with every other port of that worker, went deaf.)
#[test]
fn a_read_shorter_than_the_vnet_header_is_counted_not_sliced() {
    let rig = Rig::new(FdbConfig::default());
    let a = rig.vnet_port(0, 0, 1500);
    let b = rig.port(1, 0, 1500);
    // (An empty read is end of file on a socket pair: not tried.)
    for short in [&[0u8; 1][..], &[0u8; 5][..], &[0u8; 11][..]] {
        a.send(short);
    }
    let f = frame(mac(0xb), mac(0xa), 1, 60);
    a.send(&with_hdr(&vxswitch::offload::VnetHdr::default(), &f));
    assert_eq!(b.recv(), f, "the port forwards after the short reads");
    eventually(
        "short reads counted as bad_offload",
        || a.stats.drops(DropReason::BadOffload),
        3,
    );
    assert_eq!(a.stats.drops(DropReason::RxError), 0);
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
        let rig = Rig::with_config(cfg);
        assert_eq!(rig.engine.workers(), workers);
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
                mac: None,
                policy: SourcePolicy::Open,
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
    let rig = Rig::with_config(cfg);
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

/// A free UDP port on the wildcard address (bound and released).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A VXLAN datagram (VNI `vni`) around `inner`.
fn vxlan_datagram(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(inner);
    d
}

/// A UDP socket on `addr` that shares its port with the engine's sockets
/// (SO_REUSEPORT): the engine's floods to a VTEP at `addr` land here.
fn reuseport_udp(addr: std::net::SocketAddr) -> std::net::UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&addr.into()).unwrap();
    let s = std::net::UdpSocket::from(s);
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Datagrams waiting on `s` now (each send on loopback is queued when it returns).
fn queued(s: &std::net::UdpSocket) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while s.recv(&mut buf).is_ok() {
        n += 1;
    }
    s.set_nonblocking(false).unwrap();
    n
}

/// With `learn_vteps` and two workers, a new sender whose first datagrams
/// reach both workers' sockets at once is learned as one VTEP: one event,
/// one id in every worker, so a flood reaches it once and removing that id
/// leaves nothing sending to it. (Each worker used to learn it under an id
/// of its own: floods went twice, and `vtep rm` left the second id.)
#[test]
fn two_workers_that_see_a_new_sender_at_once_learn_one_vtep() {
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
    use vxswitch::vxlan::VxlanConfig;

    let port = free_udp_port();
    let vxlan = VxlanConfig {
        port,
        src_port_min: port,
        src_port_max: port,
        ..VxlanConfig::default()
    };
    let vni = 4242;
    let rig = Rig::vxlan(2, vxlan, vni);
    let local = rig.port(0, 0, 1400);
    // Keep both workers busy with a queue each of frames they drop
    // (hairpin), so that datagrams pile up on both workers' sockets and
    // each worker reads its first ones in the same round as its peer.
    let busy = rig.queued_port(1, 0);
    busy.ends[0]
        .send(&frame(MacAddr::BROADCAST, mac(0xf1), 0, 60))
        .unwrap();
    assert_eq!(local.recv()[6..12], mac(0xf1).0);
    for end in &busy.ends {
        end.set_nonblocking(true).unwrap();
        let hairpin = frame(mac(0xf1), mac(0xf1), 0, 60);
        while end.send(&hairpin).is_ok() {}
    }
    let to_engine = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    // Eight new senders, each sending its first datagrams from 16 source
    // ports back to back: the kernel spreads them over both workers.
    let senders: Vec<Ipv4Addr> = (2..10).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let mut listeners = Vec::new();
    for (i, ip) in senders.iter().enumerate() {
        listeners.push(reuseport_udp(SocketAddr::new(IpAddr::V4(*ip), port)));
        let socks: Vec<UdpSocket> = (0..16)
            .map(|_| UdpSocket::bind(SocketAddr::new(IpAddr::V4(*ip), 0)).unwrap())
            .collect();
        let inner = frame(MacAddr::BROADCAST, mac(0x40 + i as u8), 1, 60);
        let d = vxlan_datagram(vni, &inner);
        for s in &socks {
            s.send_to(&d, to_engine).unwrap();
        }
    }
    for _ in 0..senders.len() * 16 {
        local.recv();
    }
    rig.engine.barrier().unwrap();
    let mut learned: BTreeMap<IpAddr, Vec<u32>> = BTreeMap::new();
    while let Ok(ev) = rig.engine.events().try_recv() {
        if let Event::VtepLearned(v) = ev {
            learned.entry(v.addr.ip()).or_default().push(v.id.0);
        }
    }
    for ip in &senders {
        let ids = learned.get(&IpAddr::V4(*ip)).cloned().unwrap_or_default();
        assert_eq!(ids.len(), 1, "{ip} learned as VTEPs {ids:?}");
    }
    // A broadcast from the local port reaches each sender once.
    local.send(&frame(MacAddr::BROADCAST, mac(0xa), 2, 60));
    for (ip, l) in senders.iter().zip(&listeners) {
        let mut buf = [0u8; 2048];
        l.recv(&mut buf)
            .unwrap_or_else(|e| panic!("{ip} got no flood: {e}"));
    }
    rig.engine.barrier().unwrap();
    for (ip, l) in senders.iter().zip(&listeners) {
        assert_eq!(queued(l), 0, "{ip} got the flood more than once");
    }
    // Removing each learned VTEP leaves none sending.
    for ids in learned.values() {
        for &id in ids {
            assert!(rig.engine.remove_vtep(vxswitch::fdb::VtepId(id)).unwrap());
        }
    }
    local.send(&frame(MacAddr::BROADCAST, mac(0xa), 3, 60));
    rig.engine.barrier().unwrap();
    for (ip, l) in senders.iter().zip(&listeners) {
        assert_eq!(
            queued(l),
            0,
            "{ip} still gets floods after its VTEP was removed"
        );
    }
}

/// Set in the child process of the test below.
const PANIC_CHILD: &str = "VXSWITCH_TEST_PANIC_CHILD";

/// A worker that panics takes the whole process down, with one line that
/// says so and a non-zero status, instead of leaving a daemon whose other
/// threads answer while that worker's ports are never read again. The test
/// runs itself again as a child that makes a worker panic.
#[test]
fn a_worker_that_panics_takes_the_process_down_with_one_line() {
    const NAME: &str = "a_worker_that_panics_takes_the_process_down_with_one_line";
    if std::env::var_os(PANIC_CHILD).is_some() {
        let cfg = EngineConfig {
            workers: 2,
            ..EngineConfig::default()
        };
        let engine = Engine::start(cfg, Arc::new(ManualClock::new(Millis(1))), None).unwrap();
        engine.debug_panic_worker(1).unwrap();
        // The process is expected to end before this does.
        std::thread::sleep(Duration::from_secs(10));
        println!("CHILD STILL RUNNING");
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(PANIC_CHILD, "1")
        .env_remove("RUST_BACKTRACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the child hangs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !stdout.contains("CHILD STILL RUNNING"),
        "the process outlived its worker:\n{stdout}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(70), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, not {}:\n{stderr}", lines.len());
    assert!(
        lines[0].starts_with("vxswitch: dataplane worker 1 panicked")
            && lines[0].contains("a panic asked for by debug_panic_worker")
            && lines[0].contains("--state-dir"),
        "{stderr}"
    );
}

/// Port security: a port sends only from its own MAC. A container that
/// spoofs its neighbour's MAC is dropped and counted, is not learned, and
/// so does not receive the neighbour's unicast, which keeps flowing.
#[test]
fn a_port_with_port_security_cannot_take_another_ports_mac() {
    let rig = Rig::new(FdbConfig::default());
    let (a, b, c) = (mac(0xa), mac(0xb), mac(0xc));
    let victim = rig.secured_port(0, 0, a, SourcePolicy::Mac(a));
    let peer = rig.secured_port(1, 0, b, SourcePolicy::Mac(b));
    let evil = rig.secured_port(2, 0, c, SourcePolicy::Mac(c));
    victim.barrier(a, &[&peer, &evil]);
    peer.barrier(b, &[&victim, &evil]);
    // The attacker sends as the victim, and from a made-up MAC.
    evil.send(&frame(b, a, 1, 60));
    evil.send(&frame(MacAddr::BROADCAST, mac(0xee), 2, 60));
    evil.barrier(c, &[&victim, &peer]);
    eventually(
        "spoofed frames counted",
        || evil.stats.drops(DropReason::SpoofedSrc),
        2,
    );
    // The victim's MAC still points at the victim: its unicast goes there.
    let to_victim = frame(a, b, 3, 60);
    peer.send(&to_victim);
    assert_eq!(victim.recv(), to_victim);
    peer.barrier(b, &[&victim, &evil]);
    assert_eq!(
        rig.engine.fdb().lookup(NetId(0), a, rig.clock_now()),
        vxswitch::fdb::Lookup::Hit(Dest::Local(PortId(0)))
    );
    assert_eq!(
        rig.engine
            .fdb()
            .lookup(NetId(0), mac(0xee), rig.clock_now()),
        vxswitch::fdb::Lookup::Miss,
        "a spoofed source is never learned"
    );
    assert_eq!(victim.stats.drops(DropReason::SpoofedSrc), 0);
}

/// A port without port security (a container with its own bridge)
/// forwards the MACs behind it, but not the MAC another port owns.
#[test]
fn a_port_without_port_security_bridges_its_macs_but_not_anothers() {
    let rig = Rig::new(FdbConfig::default());
    let (a, b) = (mac(0xa), mac(0xb));
    let victim = rig.secured_port(0, 0, a, SourcePolicy::Mac(a));
    let bridge = rig.secured_port(1, 0, b, SourcePolicy::Open);
    let peer = rig.port(2, 0, 1500);
    // Frames of the MACs behind the bridge port pass and are learned.
    for inner in [mac(0x51), mac(0x52)] {
        let f = frame(MacAddr::BROADCAST, inner, 1, 60);
        bridge.send(&f);
        assert_eq!(victim.recv(), f);
        assert_eq!(peer.recv(), f);
    }
    let reply = frame(mac(0x51), mac(0x99), 2, 60);
    peer.send(&reply);
    assert_eq!(bridge.recv(), reply, "unicast to a MAC behind the bridge");
    // The victim's MAC is the victim's.
    bridge.send(&frame(MacAddr::BROADCAST, a, 3, 60));
    bridge.barrier(b, &[&victim, &peer]);
    eventually(
        "the victim's MAC from the bridge port",
        || bridge.stats.drops(DropReason::SpoofedSrc),
        1,
    );
    // And an unknown port's MAC is checked too: one port per MAC.
    let clash = rig.engine.add_port(PortAttach {
        id: PortId(3),
        net: NetId(0),
        fd: vxswitch::seqpacket_pair().unwrap().0,
        extra_queues: Vec::new(),
        mtu: 1500,
        stats: Arc::new(PortStats::default()),
        vnet_hdr: false,
        mac: Some(a),
        policy: SourcePolicy::Mac(a),
    });
    assert!(
        matches!(clash, Err(vxswitch::switch::EngineError::MacInUse { .. })),
        "{clash:?}"
    );
}

/// The IP source guard: a guarded port's ARP and IP carry only its
/// addresses; DHCP's and DAD's unspecified source still pass.
#[test]
fn the_ip_guard_drops_frames_that_claim_another_address() {
    use std::net::Ipv4Addr;
    use vxswitch::switch::IpGuard;
    let rig = Rig::new(FdbConfig::default());
    let a = mac(0xa);
    let mine = Ipv4Addr::new(10, 0, 0, 10);
    let guarded = rig.secured_port(
        0,
        0,
        a,
        SourcePolicy::Guarded(IpGuard::new(a, Some(mine), None)),
    );
    let peer = rig.port(1, 0, 1500);
    let ipv4 = |src: Ipv4Addr| {
        let mut f = frame(MacAddr::BROADCAST, a, 0, 14);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&[255, 255, 255, 255]);
        f.extend_from_slice(&[0; 8]);
        f.resize(60, 0);
        f
    };
    for ok in [mine, Ipv4Addr::UNSPECIFIED] {
        let f = ipv4(ok);
        guarded.send(&f);
        assert_eq!(peer.recv(), f, "from {ok}");
    }
    guarded.send(&ipv4(Ipv4Addr::new(10, 0, 0, 20)));
    guarded.barrier(a, &[&peer]);
    eventually(
        "a foreign source address counted",
        || guarded.stats.drops(DropReason::SpoofedIp),
        1,
    );
}

/// The overlay cannot pull a local container's traffic into the tunnel: a
/// VXLAN datagram whose inner source is a local port's MAC is dropped and
/// counted on its VTEP. And a learned VTEP that falls silent is reported
/// idle once, for the control plane to remove it.
#[test]
fn a_vtep_cannot_take_a_local_mac_and_idle_learned_vteps_are_reported() {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
    use vxswitch::vxlan::VxlanConfig;

    let port = free_udp_port();
    let vxlan = VxlanConfig {
        port,
        src_port_min: port,
        src_port_max: port,
        learned_vtep_ageing_ms: 10_000,
        ..VxlanConfig::default()
    };
    let vni = 99;
    let rig = Rig::vxlan(1, vxlan, vni);
    let a = mac(0xa);
    let local = rig.secured_port(0, 0, a, SourcePolicy::Mac(a));
    local.barrier(a, &[]);
    let sender = UdpSocket::bind("127.0.0.7:0").unwrap();
    let to_engine = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let spoofed = frame(MacAddr::BROADCAST, a, 1, 60);
    let honest = frame(MacAddr::BROADCAST, mac(0x70), 2, 60);
    sender
        .send_to(&vxlan_datagram(vni, &spoofed), to_engine)
        .unwrap();
    sender
        .send_to(&vxlan_datagram(vni, &honest), to_engine)
        .unwrap();
    assert_eq!(local.recv(), honest, "the spoofed frame was dropped");
    let vtep = loop {
        match rig.engine.events().recv_timeout(WAIT) {
            Ok(Event::VtepLearned(v)) => break v,
            Ok(_) => continue,
            Err(e) => panic!("no VtepLearned: {e}"),
        }
    };
    assert_eq!(vtep.addr.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));
    eventually(
        "the local MAC from the overlay counted on the VTEP",
        || vtep.stats.drops(DropReason::SpoofedSrc),
        1,
    );
    assert_eq!(
        rig.engine.fdb().lookup(NetId(0), a, rig.clock_now()),
        vxswitch::fdb::Lookup::Hit(Dest::Local(PortId(0)))
    );
    // Housekeeping (every 500 ms of the clock, when the worker wakes; the
    // second barrier returns after the first one's round, housekeeping
    // included) sees the VTEP's traffic, then its silence.
    let housekeeping = |ms: u64| {
        rig.clock.advance(Duration::from_millis(ms));
        rig.engine.barrier().unwrap();
        rig.engine.barrier().unwrap();
    };
    housekeeping(600);
    housekeeping(9_000);
    assert!(
        !matches!(rig.engine.events().try_recv(), Ok(Event::VtepIdle(_))),
        "idle too early"
    );
    housekeeping(1_001);
    let idle = loop {
        match rig.engine.events().recv_timeout(WAIT) {
            Ok(Event::VtepIdle(v)) => break v,
            Ok(_) => continue,
            Err(e) => panic!("no VtepIdle: {e}"),
        }
    };
    assert_eq!((idle.id, idle.addr), (vtep.id, vtep.addr));
    assert!(rig.engine.remove_vtep(idle.id).unwrap());
    // Reported once.
    housekeeping(20_000);
    assert!(rig.engine.events().try_recv().is_err());
}
