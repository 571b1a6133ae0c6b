//! VXLAN per-frame costs: the outer source-port flow hash, the header
//! write/parse, on realistic inner frames, and appending a small datagram
//! to the TX batch (run-building, no sockets). The socket send/receive is
//! measured end to end in `benches/engine.rs` (`engine_encap`).
//!
//! Run: `cargo bench --bench vxlan`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vxswitch::fdb::VtepId;
use vxswitch::vxlan::batch::TxBatch;
use vxswitch::wire::flow_hash;
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

    // 64 same-size datagrams to one VTEP (one run), then the batch is
    // emptied as a flush would: the per-datagram cost of batching.
    let mut g = c.benchmark_group("vxlan_tx_batch");
    g.throughput(Throughput::Elements(64));
    let mut batch = TxBatch::default();
    let datagram = [0u8; 8 + 64];
    g.bench_function("push_72B", |b| {
        b.iter(|| {
            for _ in 0..64 {
                let _ = batch.push((VtepId(0), 1), black_box(&datagram), true);
            }
            batch.clear();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench_vxlan
}
criterion_main!(benches);
