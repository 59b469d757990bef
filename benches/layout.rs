//! Layout arithmetic: mapping blocks and pieces to file spans on a 1,000-file torrent.
//!
//! `cargo bench --bench layout`

use bitmill::metainfo::Layout;
use bitmill::rng::Rng;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    // 1,000 files of uneven sizes (1 byte to ~2 MiB), 256 KiB pieces.
    let mut rng = Rng::new(5);
    let lengths: Vec<u64> = (0..1000).map(|_| 1 + rng.below(2 << 20)).collect();
    let layout = Layout::new(256 * 1024, &lengths).unwrap();
    let n = layout.num_pieces();
    let blocks: Vec<_> = (0..4096)
        .map(|_| {
            let p = layout.piece(rng.below(u64::from(n)) as u32).unwrap();
            let k = rng.below(u64::from(layout.num_blocks(p))) as usize;
            layout.blocks(p).nth(k).unwrap()
        })
        .collect();
    let mut g = c.benchmark_group("layout 1k files");
    g.throughput(Throughput::Elements(blocks.len() as u64));
    g.bench_function("block_spans x4096", |b| {
        b.iter(|| {
            blocks
                .iter()
                .map(|&bl| layout.block_spans(black_box(bl)).count())
                .sum::<usize>()
        })
    });
    g.bench_function("piece_spans x4096", |b| {
        b.iter(|| {
            blocks
                .iter()
                .map(|&bl| layout.piece_spans(black_box(bl.piece())).count())
                .sum::<usize>()
        })
    });
    g.bench_function("block_checked x4096 (peer request validation)", |b| {
        b.iter(|| {
            blocks
                .iter()
                .filter(|bl| {
                    layout
                        .block_checked(black_box(bl.piece().get()), bl.offset(), bl.len())
                        .is_some()
                })
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
