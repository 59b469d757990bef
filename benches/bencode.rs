//! Bencode and metainfo decoding of a large torrent: 50,000 pieces, 1,000 files.
//!
//! `cargo bench --bench bencode`

use bitmill::bencode;
use bitmill::metainfo::{Metainfo, TorrentBuilder};
use bitmill::rng::Rng;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

/// A torrent of 1,000 files in nested folders and 50,000 pieces of 64 KiB.
pub fn large_torrent() -> Vec<u8> {
    let piece_length: u32 = 64 * 1024;
    let num_pieces: u64 = 50_000;
    let total = num_pieces * u64::from(piece_length);
    let files: Vec<(Vec<String>, u64)> = (0..1000u64)
        .map(|i| {
            let len = if i == 999 {
                total - 999 * (total / 1000)
            } else {
                total / 1000
            };
            (
                vec![
                    format!("disc {}", i / 100),
                    format!("track {i:04} - some title.flac"),
                ],
                len,
            )
        })
        .collect();
    let mut pieces = vec![0u8; num_pieces as usize * 20];
    Rng::new(1).fill(&mut pieces);
    TorrentBuilder {
        name: "a large collection".into(),
        files,
        piece_length,
        pieces,
        trackers: vec!["http://127.0.0.1:6969/announce".into()],
        comment: Some("benchmark".into()),
        ..Default::default()
    }
    .encode()
}

fn bench(c: &mut Criterion) {
    let t = large_torrent();
    let mut g = c.benchmark_group("decode 50k-piece 1k-file torrent");
    g.throughput(Throughput::Bytes(t.len() as u64));
    g.bench_function("bencode::decode", |b| {
        b.iter(|| bencode::decode(black_box(&t)).map(|v| v.raw.len()))
    });
    g.bench_function("Metainfo::from_bytes", |b| {
        b.iter(|| Metainfo::from_bytes(black_box(&t)).map(|m| m.info.files.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
