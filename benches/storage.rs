//! Piece verification throughput from the mmap backend, next to the SHA-1 limit measured in
//! the same run (SHA-1 over a buffer already in memory), and zero-copy block reads.
//!
//! `cargo bench --bench storage`. The data file (256 MiB) is written once to a temporary
//! folder and read once before measuring, so the page cache is warm: this measures the
//! hashing path, not the disk.

use bitmill::metainfo::Layout;
use bitmill::rng::Rng;
use bitmill::storage::{FileSpec, MmapOptions, MmapStorage, OpenMode, Storage};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha1::{Digest, Sha1};
use std::hint::black_box;

const LEN: usize = 256 << 20;
const PIECE: u32 = 256 * 1024;

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    let mut data = vec![0u8; LEN];
    Rng::new(3).fill(&mut data);
    std::fs::write(&path, &data).unwrap();
    let layout = Layout::new(PIECE, &[LEN as u64]).unwrap();
    let spec = vec![FileSpec { path, pad: false }];
    let mut st = MmapStorage::open(
        layout.clone(),
        spec,
        OpenMode::ReadOnly,
        MmapOptions::default(),
    )
    .unwrap();
    for p in layout.pieces() {
        st.hash_piece(p).unwrap();
    }

    let mut g = c.benchmark_group("verify 256 MiB, 256 KiB pieces");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("sha1 of an in-memory buffer (the limit)", |b| {
        b.iter(|| {
            data.chunks(PIECE as usize)
                .map(|c| Sha1::digest(black_box(c))[0])
                .fold(0u8, |a, x| a ^ x)
        })
    });
    g.bench_function("MmapStorage::hash_piece, every piece", |b| {
        b.iter(|| {
            layout
                .pieces()
                .map(|p| st.hash_piece(p).unwrap()[0])
                .fold(0u8, |a, x| a ^ x)
        })
    });
    g.finish();

    let blocks: Vec<_> = layout.pieces().flat_map(|p| layout.blocks(p)).collect();
    let mut g = c.benchmark_group("read_block");
    g.throughput(Throughput::Elements(blocks.len() as u64));
    g.bench_function("zero-copy 16 KiB blocks (all 16384)", |b| {
        b.iter(|| {
            blocks
                .iter()
                .map(|&bl| st.read_block(black_box(bl)).unwrap().len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
