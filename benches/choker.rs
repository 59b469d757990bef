//! The choker: one choke round over 500 peers (random rates, half of them interested).
//!
//! `cargo bench --bench choker`; the time reported is per round.

use bitmill::engine::choker::{Choker, ChokerConfig, PeerInfo};
use bitmill::engine::PeerKey;
use bitmill::rng::Rng;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    // 500 peers connected over the last two hours (so a few are "new"), half of them
    // interested, one in ten snubbed, rates up to 1 MiB/s.
    let start = bitmill::net::clock::now();
    let now0 = start + Duration::from_secs(7200);
    let mut rng = Rng::new(9);
    let peers: Vec<PeerInfo> = (0..500)
        .map(|i| PeerInfo {
            key: PeerKey(i),
            interested: i % 2 == 0,
            download_rate: rng.below(1 << 20),
            upload_rate: rng.below(1 << 20),
            connected_at: start + Duration::from_secs(rng.below(7200)),
            snubbed: rng.below(10) == 0,
            unchoked: false,
        })
        .collect();
    let config = ChokerConfig::default();

    let mut g = c.benchmark_group("choker 500 peers (250 interested)");
    g.throughput(Throughput::Elements(1));
    for (name, seeding) in [("round (leeching)", false), ("round (seeding)", true)] {
        g.bench_function(name, |b| {
            let mut choker = Choker::new(config.clone());
            let mut rng = Rng::new(1);
            let mut now = now0;
            b.iter(|| {
                // Every call is a due round: the clock moves one round interval each time.
                now += config.round_interval;
                choker.round(black_box(now), black_box(&peers), seeding, &mut rng)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
