//! One `pick` over a 10,000-piece torrent with 200 connected peers.
//!
//! `cargo bench --bench picker`

use bitmill::bitfield::Bitfield;
use bitmill::engine::picker::{Picker, PickerConfig};
use bitmill::metainfo::Layout;
use bitmill::rng::Rng;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;

fn setup(have_fraction: u64) -> (Picker, Vec<Bitfield>) {
    let n: u32 = 10_000;
    let layout = Layout::new(256 * 1024, &[u64::from(n) * 256 * 1024]).unwrap();
    let mut rng = Rng::new(9);
    let mut have = Bitfield::new(n);
    for i in 0..n {
        if rng.below(100) < have_fraction {
            have.set(i);
        }
    }
    let mut picker = Picker::new(layout, have, PickerConfig::default(), &mut rng);
    let peers: Vec<Bitfield> = (0..200)
        .map(|_| {
            let mut b = Bitfield::new(n);
            for i in 0..n {
                if rng.below(2) == 0 {
                    b.set(i);
                }
            }
            picker.peer_joined(&b);
            b
        })
        .collect();
    (picker, peers)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick 10k pieces x 200 peers");
    for (name, have) in [("we have 0%", 0), ("we have 50%", 50), ("we have 99%", 99)] {
        let (picker, peers) = setup(have);
        let mut rng = Rng::new(1);
        g.bench_function(format!("pick 16 blocks, {name}"), |b| {
            b.iter_batched(
                || picker.clone(),
                |mut p| {
                    let mut out = Vec::with_capacity(16);
                    let peer = &peers[rng.below(200) as usize];
                    p.pick(black_box(peer), 16, &mut rng, |_| false, &mut out);
                    out.len()
                },
                BatchSize::LargeInput,
            )
        });
    }
    // Steady state: the same picker keeps picking for peers in turn (pieces get started, so
    // partial pieces are found first), as a download does.
    let (mut picker, peers) = setup(0);
    let mut rng = Rng::new(2);
    let mut i = 0;
    g.bench_function("pick 16 blocks, steady state", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(16);
            i = (i + 1) % peers.len();
            picker.pick(black_box(&peers[i]), 16, &mut rng, |_| false, &mut out);
            for blk in &out {
                picker.abort(*blk); // return them, so the state does not drift into endgame
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
