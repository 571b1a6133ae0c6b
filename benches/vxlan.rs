//! VXLAN per-frame costs: the outer source-port flow hash and the header
//! write/parse, on realistic inner frames. The socket send/receive is
//! measured end to end in `benches/engine.rs` (`engine_encap`).
//!
//! Run: `cargo bench --bench vxlan`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vxswitch::vxlan::flow_hash;
use vxswitch::wire::vxlan::{VxlanPacket, VxlanRepr};

/// An Ethernet/IPv4/TCP frame of `len` bytes.
fn tcp_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(54)];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xb]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xa]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 42, 0, 11]);
    f[30..34].copy_from_slice(&[10, 42, 0, 21]);
    f[34..36].copy_from_slice(&40_000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5201u16.to_be_bytes());
    f
}

fn bench_vxlan(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan");
    g.throughput(Throughput::Elements(1));
    let frame = tcp_frame(1514);
    g.bench_function("flow_hash/ipv4_tcp", |b| {
        b.iter(|| black_box(flow_hash(black_box(&frame))))
    });
    let mut packet = [0u8; 8 + 64];
    g.bench_function("encap_header", |b| {
        b.iter(|| {
            VxlanPacket::new_unchecked(black_box(&mut packet[..])).set_header(black_box(4242))
        })
    });
    g.bench_function("decap_header", |b| {
        b.iter(|| VxlanRepr::parse(&VxlanPacket::new_unchecked(black_box(&packet[..]))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench_vxlan
}
criterion_main!(benches);
