//! ARP/ND suppression in the engine, over in-process ports (no root), as
//! `benches/engine.rs` measures forwarding: two SOCK_SEQPACKET ports A and
//! B with port security on one network, one worker.
//!
//! - `suppress_flood/{off,on}/64`: broadcast IPv4 frames (not ARP) from A,
//!   flooded to B, without and with a suppression table on the network:
//!   what the hook costs a flooded frame that is not a request (known
//!   unicast never reaches it; `engine_unicast` in `benches/engine.rs`
//!   measures that path).
//! - `neigh_latency/{switch,flooded}`: one ARP request from A for B's
//!   address until A holds the reply, one at a time: answered by the
//!   switch, or (no table) flooded to B, whose end here answers at once.
//!   The flooded owner's turnaround is zero in this bench; a container's
//!   kernel, or another host across VXLAN, adds its own on top.
//!
//! Run: `cargo bench --bench suppress`.

use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vxswitch::fdb::{FdbConfig, NetId, PortId};
use vxswitch::gateway::{Binding, NeighTable};
use vxswitch::switch::{Engine, EngineConfig, PortAttach, PortStats, SourcePolicy};
use vxswitch::time::MonotonicClock;
use vxswitch::wire::MacAddr;

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
const A_IP: [u8; 4] = [10, 0, 0, 1];
const B_IP: [u8; 4] = [10, 0, 0, 2];

struct Rig {
    engine: Engine,
    a: UnixDatagram,
    b: UnixDatagram,
}

fn rig() -> Rig {
    let cfg = EngineConfig {
        fdb: FdbConfig::default(),
        workers: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg, Arc::new(MonotonicClock::new()), None).unwrap();
    let mut ends = Vec::new();
    for (id, own) in [(0u32, A), (1, B)] {
        let (ours, theirs) = vxswitch::seqpacket_pair().unwrap();
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
    let b = ends.pop().unwrap();
    let a = ends.pop().unwrap();
    Rig { engine, a, b }
}

/// The network's suppression table: B's address, or none.
fn suppress(r: &Rig, on: bool) {
    let table = on.then(|| {
        let bindings = [
            (IpAddr::from(A_IP), MacAddr(A)),
            (IpAddr::from(B_IP), MacAddr(B)),
        ]
        .map(|(ip, mac)| (ip, Binding { mac, router: false }));
        Arc::new(NeighTable::new(bindings, Arc::default()))
    });
    r.engine.set_neigh(NetId(0), table).unwrap();
}

fn arp(op: u8, dst: [u8; 6], sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

/// Sends `n` copies of `frame` from A in bursts of up to 64 and reads all
/// of them back at B.
fn pump(r: &Rig, frame: &[u8], n: u64) -> Duration {
    let mut buf = vec![0u8; 10_000];
    let start = Instant::now();
    let (mut sent, mut got) = (0u64, 0u64);
    while got < n {
        while sent < n && sent - got < 64 {
            r.a.send(frame).unwrap();
            sent += 1;
        }
        r.b.recv(&mut buf).expect("a flooded frame within 5 s");
        got += 1;
    }
    start.elapsed()
}

fn bench_flood(c: &mut Criterion) {
    let r = rig();
    let mut frame = vec![0xffu8; 64];
    frame[6..12].copy_from_slice(&A);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let mut g = c.benchmark_group("suppress_flood");
    g.throughput(Throughput::Elements(1));
    for on in [false, true] {
        suppress(&r, on);
        let name = if on { "on/64" } else { "off/64" };
        g.bench_function(name, |b| b.iter_custom(|n| pump(&r, &frame, n)));
    }
    g.finish();
}

fn bench_latency(c: &mut Criterion) {
    let r = rig();
    let request = arp(1, [0xff; 6], A, A_IP, [0; 6], B_IP);
    let reply = arp(2, A, B, B_IP, A, A_IP);
    let mut g = c.benchmark_group("neigh_latency");
    for on in [true, false] {
        suppress(&r, on);
        let name = if on { "switch" } else { "flooded" };
        g.bench_function(name, |bench| {
            let mut buf = [0u8; 256];
            bench.iter_custom(|n| {
                let start = Instant::now();
                for _ in 0..n {
                    r.a.send(&request).unwrap();
                    if !on {
                        // B, the owner, answers at once.
                        r.b.recv(&mut buf).expect("the request flooded to B");
                        r.b.send(&reply).unwrap();
                    }
                    let len = r.a.recv(&mut buf).expect("an ARP reply within 5 s");
                    assert_eq!((len, buf[21], &buf[22..28]), (60, 2, &B[..]));
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_flood, bench_latency
}
criterion_main!(benches);
