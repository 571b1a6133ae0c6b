//! Software offload costs: segmenting a 64 KiB TCP super-frame (per
//! segment), completing a partial checksum, and coalescing the segments
//! back (per segment).
//!
//! Run: `cargo bench --bench offload`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vxswitch::offload::{
    complete_checksum, segment, Coalescer, Push, VnetHdr, F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4,
};
use vxswitch::wire::checksum as csum;

/// An Ethernet/IPv4/TCP (timestamps) super-frame with `payload` bytes and
/// the partial checksum a vnet_hdr TAP hands over, with its header.
fn super_frame(payload: usize, mss: u16) -> (Vec<u8>, VnetHdr) {
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00];
    let total = 20 + 32 + payload;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&[10, 42, 0, 11, 10, 42, 0, 21]);
    let c = csum::ipv4_header(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x18, 1, 0,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    f.extend((0..payload).map(|i| (i * 7) as u8));
    let pseudo = csum::pseudo_v4(&[10, 42, 0, 11], &[10, 42, 0, 21], 6, 32 + payload);
    f[50..52].copy_from_slice(&csum::fold(pseudo).to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 66,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    (f, hdr)
}

fn bench_offload(c: &mut Criterion) {
    let mut g = c.benchmark_group("offload");
    let mut out = vec![0u8; 256 * 1024];
    let (frame, hdr) = super_frame(45 * 1448 + 100, 1448);
    let n = segment(&frame, &hdr, &mut out, 8).unwrap().count;
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("segment/tcp4_64k_mss1448_per_segment", |b| {
        b.iter(|| segment(black_box(&frame), black_box(&hdr), &mut out, 8).unwrap())
    });

    let segs = segment(&frame, &hdr, &mut out, 0).unwrap();
    let frames: Vec<Vec<u8>> = segs.frames(&out).map(<[u8]>::to_vec).collect();
    let mut co = Coalescer::new();
    g.bench_function("coalesce/tcp4_64k_mss1448_per_segment", |b| {
        b.iter(|| {
            for f in &frames {
                assert!(matches!(
                    co.push(black_box(f)),
                    Push::Started | Push::Merged
                ));
            }
            black_box(co.finish().unwrap().hdr)
        })
    });

    let (mut one, mut h1) = super_frame(1448, 1448);
    h1.gso_type = GSO_NONE;
    let partial = [one[50], one[51]];
    g.throughput(Throughput::Elements(1));
    g.bench_function("complete_checksum/tcp4_1514", |b| {
        b.iter(|| {
            one[50..52].copy_from_slice(&partial);
            complete_checksum(black_box(&mut one), black_box(&h1)).unwrap()
        })
    });

    // The Internet checksum over one MSS-sized payload: what segmentation
    // and coalescing pay per segment.
    let payload: Vec<u8> = (0..1448u32).map(|i| (i * 7 + 3) as u8).collect();
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("sum_words/1448B", |b| {
        b.iter(|| csum::sum_words(black_box(&payload), 0))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench_offload
}
criterion_main!(benches);
