//! FDB and forwarding-decision micro-benchmarks.
//!
//! - `fdb_lookup/{1k,1M}/{1,2}t`: random hits on a table of 1k or 1M
//!   learned entries, by one thread or by two threads at once. Throughput
//!   is total lookups across threads, so the 2-thread figure divided by the
//!   1-thread figure is the read scaling (target: at least 1.7x at 1k).
//! - `fdb_learn/refresh`: learning a MAC that is already known (the common
//!   case on the hot path: one relaxed load).
//! - `fdb_learn/insert_remove`: a new MAC (the map write) and its removal.
//! - `decide/known_unicast`, `decide/broadcast`: the whole per-frame
//!   decision; `decide/known_unicast_port_security`, `_ip_guard` and
//!   `_not_owned`: the same with a port's source policy (the default port
//!   security, the IP guard, a port without port security).
//!
//! Run: `cargo bench --bench fdb`. After the criterion groups, the bench
//! prints the 2-thread/1-thread ratio it measured itself, so the scaling
//! target can be read off one run.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use vxswitch::fdb::{Dest, Fdb, FdbConfig, NetId, PortId};
use vxswitch::switch::{decide, Ingress, IpGuard, OwnedMacs, Policy};
use vxswitch::time::Millis;
use vxswitch::wire::MacAddr;

const NET: NetId = NetId(0);
const NOW: Millis = Millis(1_000_000);

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x5a, b[0], b[1], b[2], b[3]])
}

/// A table of `n` learned entries spread over 64 ports.
fn table(n: u32) -> Arc<Fdb> {
    let fdb = Fdb::new(FdbConfig {
        ageing_ms: 300_000,
        max_entries: n as usize + 16,
        max_per_dest: n as usize,
        max_per_network: n as usize + 16,
    });
    for i in 0..n {
        fdb.learn(NET, mac(i), Dest::Local(PortId(i % 64)), NOW);
    }
    Arc::new(fdb)
}

/// A fixed pseudo-random sequence of keys (xorshift), so each thread walks
/// the table in a cache-unfriendly order without calling an RNG per lookup.
fn keys(n: u32, count: usize, seed: u32) -> Vec<MacAddr> {
    let mut x = seed | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            mac(x % n)
        })
        .collect()
}

/// Runs `iters` lookups on each of `threads` threads at once; returns the
/// wall time from the common start to the last finish.
fn lookups_parallel(fdb: &Arc<Fdb>, n: u32, threads: usize, iters: u64) -> Duration {
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let fdb = fdb.clone();
            let start = start.clone();
            let ks = keys(n, 4096, 0x9e37_79b9 ^ (t as u32 * 7919));
            std::thread::spawn(move || {
                let guard = fdb.pin();
                start.wait();
                let mut hits = 0u64;
                for i in 0..iters {
                    let k = ks[(i as usize) & 4095];
                    if matches!(guard.lookup(NET, k, NOW), vxswitch::fdb::Lookup::Hit(_)) {
                        hits += 1;
                    }
                }
                black_box(hits)
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    t0.elapsed()
}

fn bench_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb_lookup");
    // Every sample spawns its threads: flat sampling gives each sample the
    // same, large iteration count so the spawn cost stays negligible
    // (linear sampling starts with samples of a few dozen lookups).
    g.sampling_mode(SamplingMode::Flat);
    for (label, n) in [("1k", 1_000u32), ("1M", 1_000_000)] {
        let fdb = table(n);
        for threads in [1usize, 2] {
            g.throughput(Throughput::Elements(threads as u64));
            g.bench_with_input(
                BenchmarkId::new(label, format!("{threads}t")),
                &threads,
                |b, &threads| b.iter_custom(|iters| lookups_parallel(&fdb, n, threads, iters)),
            );
        }
    }
    g.finish();
}

fn bench_learn(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb_learn");
    g.throughput(Throughput::Elements(1));
    let fdb = table(1_000);
    let guard = fdb.pin();
    let ks = keys(1_000, 4096, 17);
    let mut i = 0usize;
    g.bench_function("refresh", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let k = ks[i];
            black_box(guard.learn(NET, k, Dest::Local(PortId(k.0[5] as u32 % 64)), NOW))
        })
    });
    let mut j = 0u32;
    g.bench_function("insert_remove", |b| {
        b.iter(|| {
            j = j.wrapping_add(1);
            let k = mac(2_000_000 + (j & 0xffff));
            black_box(guard.learn(NET, k, Dest::Local(PortId(1)), NOW));
            black_box(fdb.remove(NET, k))
        })
    });
    g.finish();
}

fn bench_decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));
    let fdb = table(1_000);
    let guard = fdb.pin();
    let mut unicast = [0u8; 64];
    unicast[0..6].copy_from_slice(&mac(10).0);
    unicast[6..12].copy_from_slice(&mac(11).0);
    unicast[12..14].copy_from_slice(&[0x08, 0x00]);
    // An IPv4 header from 10.0.0.11, for the IP guard.
    unicast[14..34].copy_from_slice(&[
        0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 11, 10, 0, 0, 10,
    ]);
    let ingress = Ingress::port(PortId(11), NET);
    g.bench_function("known_unicast", |b| {
        b.iter(|| black_box(decide(&guard, ingress, black_box(&unicast), NOW)))
    });
    // What a port with port security (the default) pays: one compare.
    let secured = ingress.with_policy(Policy::Mac(mac(11)));
    g.bench_function("known_unicast_port_security", |b| {
        b.iter(|| black_box(decide(&guard, secured, black_box(&unicast), NOW)))
    });
    let ip_guard = IpGuard::new(mac(11), Some(Ipv4Addr::new(10, 0, 0, 11)), None);
    let guarded = ingress.with_policy(Policy::Guarded(&ip_guard));
    g.bench_function("known_unicast_ip_guard", |b| {
        b.iter(|| black_box(decide(&guard, guarded, black_box(&unicast), NOW)))
    });
    // A port without port security (or a VTEP): a lookup among the MACs
    // the ports own.
    let mut owned = OwnedMacs::default();
    for p in 0..64u32 {
        owned.claim(NET, mac(100_000 + p), PortId(p)).unwrap();
    }
    let open = ingress.with_policy(Policy::NotOwned(&owned));
    g.bench_function("known_unicast_not_owned", |b| {
        b.iter(|| black_box(decide(&guard, open, black_box(&unicast), NOW)))
    });
    let mut bcast = unicast;
    bcast[0..6].copy_from_slice(&[0xff; 6]);
    g.bench_function("broadcast", |b| {
        b.iter(|| black_box(decide(&guard, ingress, black_box(&bcast), NOW)))
    });
    g.finish();
}

/// Measures the 1k-entry lookup scaling directly (best of 5 one-second
/// runs per thread count) and prints it next to the target.
fn report_scaling() {
    let fdb = table(1_000);
    let rate = |threads: usize| {
        let iters = 20_000_000u64;
        (0..5)
            .map(|_| {
                (threads as u64 * iters) as f64
                    / lookups_parallel(&fdb, 1_000, threads, iters).as_secs_f64()
            })
            .fold(0.0, f64::max)
    };
    let one = rate(1);
    let two = rate(2);
    println!(
        "fdb_lookup/1k scaling: 1 thread {:.1} M/s, 2 threads {:.1} M/s total, ratio {:.2}x (target >= 1.70x)",
        one / 1e6,
        two / 1e6,
        two / one
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_lookup, bench_learn, bench_decide
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not (it
    // runs each benchmark once as a smoke test): skip the extra
    // measurement there to keep the test suite fast.
    if std::env::args().any(|a| a == "--bench") {
        report_scaling();
    }
}
