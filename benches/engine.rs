//! The engine end to end over in-process ports: a thread writes frames into
//! one SOCK_SEQPACKET port, the engine learns, decides and writes them to the
//! other port, and the bench reads them back. This measures the whole
//! per-frame path — two system calls in the engine (read, write) plus the
//! decision — on one worker thread, i.e. frames/s per core of the
//! dataplane, without TAP devices or root.
//!
//! `engine_encap` does the same with the destination MAC behind a VTEP on
//! loopback: read, decide, write the VXLAN header in place, `sendto` — the
//! bench receives the datagrams on a UDP socket.
//!
//! Run: `cargo bench --bench engine`.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vxswitch::fdb::{Dest, FdbConfig, NetId, PortId};
use vxswitch::switch::{Engine, EngineConfig, NetworkSpec, PortAttach, PortStats, SourcePolicy};
use vxswitch::time::MonotonicClock;
use vxswitch::vxlan::VxlanConfig;
use vxswitch::wire::MacAddr;

struct Rig {
    _engine: Engine,
    tx: UnixDatagram,
    rx: UnixDatagram,
    frame: Vec<u8>,
}

fn rig(frame_len: usize) -> Rig {
    let cfg = EngineConfig {
        fdb: FdbConfig::default(),
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg, Arc::new(MonotonicClock::new()), None).unwrap();
    let mut ends = Vec::new();
    let a = [0x02, 0, 0, 0, 0, 0xa];
    let b = [0x02, 0, 0, 0, 0, 0xb];
    for (id, own) in [(0u32, a), (1, b)] {
        let (ours, theirs) = vxswitch::seqpacket_pair().unwrap();
        // With port security, as `port add` makes ports by default.
        engine
            .add_port(PortAttach {
                id: PortId(id),
                net: NetId(0),
                fd: ours,
                extra_queues: Vec::new(),
                mtu: 9000,
                stats: Arc::new(PortStats::default()),
                vnet_hdr: false,
                mac: Some(MacAddr(own)),
                policy: SourcePolicy::Mac(MacAddr(own)),
            })
            .unwrap();
        let end = UnixDatagram::from(theirs);
        end.set_nonblocking(false).unwrap();
        end.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        ends.push(end);
    }
    let rx = ends.pop().unwrap();
    let tx = ends.pop().unwrap();
    // Teach the switch where B is, so the measured frames are known unicast.
    let mut hello = vec![0u8; 60];
    hello[0..6].copy_from_slice(&[0xff; 6]);
    hello[6..12].copy_from_slice(&b);
    rx.send(&hello).unwrap();
    let mut buf = [0u8; 128];
    tx.recv(&mut buf).unwrap();
    let mut frame = vec![0u8; frame_len];
    frame[0..6].copy_from_slice(&b);
    frame[6..12].copy_from_slice(&a);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    Rig {
        _engine: engine,
        tx,
        rx,
        frame,
    }
}

/// Sends `n` frames in bursts of up to 64 and reads all of them back.
fn pump(r: &Rig, n: u64) -> Duration {
    let mut buf = vec![0u8; 10_000];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut got = 0u64;
    while got < n {
        // Keep at most 64 frames in flight: the seqpacket buffers are small
        // and a full egress queue would count drops instead of forwarding.
        while sent < n && sent - got < 64 {
            r.tx.send(&r.frame).unwrap();
            sent += 1;
        }
        r.rx.recv(&mut buf).expect("a forwarded frame within 5 s");
        got += 1;
    }
    start.elapsed()
}

fn bench_engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_unicast");
    for len in [64usize, 1514] {
        let r = rig(len);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(len), &len, |b, _| {
            b.iter_custom(|iters| pump(&r, iters))
        });
    }
    g.finish();
}

/// A port and a VTEP on loopback whose receiving end the bench holds.
struct EncapRig {
    _engine: Engine,
    tx: UnixDatagram,
    rx: UdpSocket,
    frame: Vec<u8>,
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn encap_rig(frame_len: usize) -> EncapRig {
    let vxlan = VxlanConfig {
        port: free_udp_port(),
        ..VxlanConfig::default()
    };
    let cfg = EngineConfig {
        vxlan,
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg, Arc::new(MonotonicClock::new()), None).unwrap();
    let net = NetId(0);
    engine
        .set_network(NetworkSpec {
            id: net,
            vni: Some(4242),
            learn_vteps: false,
            ..NetworkSpec::default()
        })
        .unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let peer: SocketAddr = rx.local_addr().unwrap();
    let vtep = engine.add_vtep(net, peer).unwrap();
    let b = MacAddr([0x02, 0, 0, 0, 0, 0xb]);
    engine
        .fdb()
        .add_static(net, b, Dest::Remote(vtep.id), vxswitch::time::Millis(0))
        .unwrap();
    let (ours, theirs) = vxswitch::seqpacket_pair().unwrap();
    engine
        .add_port(PortAttach {
            id: PortId(0),
            net,
            fd: ours,
            extra_queues: Vec::new(),
            mtu: 9000,
            stats: Arc::new(PortStats::default()),
            vnet_hdr: false,
            mac: Some(MacAddr([0x02, 0, 0, 0, 0, 0xa])),
            policy: SourcePolicy::Mac(MacAddr([0x02, 0, 0, 0, 0, 0xa])),
        })
        .unwrap();
    let tx = UnixDatagram::from(theirs);
    tx.set_nonblocking(false).unwrap();
    let mut frame = vec![0u8; frame_len];
    frame[0..6].copy_from_slice(&b.0);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xa]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    EncapRig {
        _engine: engine,
        tx,
        rx,
        frame,
    }
}

fn pump_encap(r: &EncapRig, n: u64) -> Duration {
    let mut buf = vec![0u8; 10_000];
    let start = Instant::now();
    let (mut sent, mut got) = (0u64, 0u64);
    while got < n {
        while sent < n && sent - got < 64 {
            r.tx.send(&r.frame).unwrap();
            sent += 1;
        }
        let len = r.rx.recv(&mut buf).expect("a VXLAN datagram within 5 s");
        assert_eq!(len, r.frame.len() + 8);
        got += 1;
    }
    start.elapsed()
}

fn bench_encap(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_encap");
    for len in [64usize, 1450] {
        let r = encap_rig(len);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(len), &len, |b, _| {
            b.iter_custom(|iters| pump_encap(&r, iters))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_engine, bench_encap
}
criterion_main!(benches);
