//! The tracker server's request handlers, end to end over bytes (decode, connection-id check,
//! table update, random peer sample, encode):
//!
//! - `udp announce`: `Tracker::handle_udp` of BEP 15 announce packets, a swarm of 10,000
//!   peers in 100 torrents, each packet a re-announce of one of them (50 peers back);
//! - `udp announce, 1 torrent x 100,000 peers`: the same in one huge swarm, to show that the
//!   cost does not grow with the swarm (peer sampling is O(numwant));
//! - `udp connect`: connect packets (one SHA-1 each);
//! - `http announce`: `Tracker::handle_http` of `GET /announce` requests on the 10,000-peer
//!   table, compact replies.
//!
//! Criterion reports time per packet (throughput in elements/s). After it, a plain timing
//! loop prints the median time per operation of each case over 31 batches.
//!
//! `cargo bench --bench tracker`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bitmill::rng::Rng;
use bitmill::tracker::http::{announce_url, get_request};
use bitmill::tracker::server::{Tracker, TrackerConfig};
use bitmill::tracker::udp::{AnnouncePacket, Request};
use bitmill::tracker::{AnnounceRequest, Event};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Packets handled per timed batch.
const BATCH: usize = 1000;

fn addr(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + n)), 40000)
}

fn request(torrent: u32, n: u32) -> AnnounceRequest {
    let mut info_hash = [0u8; 20];
    info_hash[..4].copy_from_slice(&torrent.to_be_bytes());
    let mut peer_id = *b"-BM0100-000000000000";
    peer_id[8..12].copy_from_slice(&n.to_be_bytes());
    AnnounceRequest {
        info_hash,
        peer_id,
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: if n % 4 == 0 { 0 } else { 1 << 20 },
        event: Event::None,
        numwant: Some(50),
        key: n,
        tracker_id: None,
    }
}

/// A table with `torrents` x `per_torrent` peers, announced over UDP at `now`, and one
/// announce packet (with a valid connection id) per peer.
struct Setup {
    tracker: Tracker,
    udp: Vec<(SocketAddr, Vec<u8>)>,
    http: Vec<(SocketAddr, Vec<u8>)>,
    now: Instant,
}

fn setup(torrents: u32, per_torrent: u32) -> Setup {
    let now = bitmill::net::clock::now();
    let mut cfg = TrackerConfig::new(*b"bench secret 16b");
    cfg.max_peers_per_torrent = 1_000_000;
    let mut tracker = Tracker::new(cfg, now);
    let mut rng = Rng::new(1);
    let mut udp = Vec::new();
    let mut http = Vec::new();
    let mut out = Vec::new();
    for t in 0..torrents {
        for i in 0..per_torrent {
            let n = t * per_torrent + i;
            let from = addr(n);
            let req = request(t, n);
            let mut pkt = Vec::new();
            Request::Announce(AnnouncePacket {
                connection_id: tracker.connection_id(from, now),
                transaction_id: n,
                request: req.clone(),
                ip: 0,
            })
            .encode(&mut pkt);
            assert!(tracker.handle_udp(now, from, &pkt, &mut rng, &mut out));
            udp.push((from, pkt));
            let url = announce_url("http://127.0.0.1:6969/announce", &req).unwrap();
            http.push((from, get_request(&url).unwrap().1));
        }
    }
    // Shuffle so consecutive packets hit different torrents, as real traffic does.
    rng.shuffle(&mut udp);
    rng.shuffle(&mut http);
    assert_eq!(tracker.stats().peers, (torrents * per_torrent) as usize);
    Setup {
        tracker,
        udp,
        http,
        now,
    }
}

/// Handles the next `BATCH` UDP packets of `s`, cycling; returns the bytes answered.
fn udp_batch(s: &mut Setup, next: &mut usize, rng: &mut Rng, out: &mut Vec<u8>) -> usize {
    let mut bytes = 0;
    for _ in 0..BATCH {
        let (from, pkt) = &s.udp[*next];
        *next = (*next + 1) % s.udp.len();
        if s.tracker.handle_udp(s.now, *from, black_box(pkt), rng, out) {
            bytes += out.len();
        }
    }
    bytes
}

fn http_batch(s: &mut Setup, next: &mut usize, rng: &mut Rng) -> usize {
    let mut bytes = 0;
    for _ in 0..BATCH {
        let (from, req) = &s.http[*next];
        *next = (*next + 1) % s.http.len();
        bytes += s
            .tracker
            .handle_http(s.now, *from, black_box(req), rng)
            .len();
    }
    bytes
}

fn connect_packets() -> Vec<(SocketAddr, Vec<u8>)> {
    (0..BATCH as u32)
        .map(|n| {
            let mut p = Vec::new();
            Request::Connect { transaction_id: n }.encode(&mut p);
            (addr(n), p)
        })
        .collect()
}

/// Median nanoseconds per operation of `batch` (which does `BATCH` operations) over 31 runs.
fn median_ns(mut batch: impl FnMut() -> usize) -> f64 {
    let mut per_op: Vec<f64> = (0..31)
        .map(|_| {
            let start = bitmill::net::clock::now();
            black_box(batch());
            start.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    per_op[per_op.len() / 2]
}

fn bench(c: &mut Criterion) {
    let mut small = setup(100, 100);
    let mut big = setup(1, 100_000);
    let connects = connect_packets();
    let mut rng = Rng::new(2);
    let mut out = Vec::with_capacity(2048);

    let mut g = c.benchmark_group("tracker");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    let mut next = 0;
    g.bench_function("udp announce (100 torrents x 100 peers)", |b| {
        b.iter(|| udp_batch(&mut small, &mut next, &mut rng, &mut out))
    });
    let mut next_big = 0;
    g.bench_function("udp announce (1 torrent x 100,000 peers)", |b| {
        b.iter(|| udp_batch(&mut big, &mut next_big, &mut rng, &mut out))
    });
    g.bench_function("udp connect", |b| {
        b.iter(|| {
            for (from, p) in &connects {
                small
                    .tracker
                    .handle_udp(small.now, *from, black_box(p), &mut rng, &mut out);
            }
        })
    });
    let mut next_http = 0;
    g.bench_function("http announce (100 torrents x 100 peers)", |b| {
        b.iter(|| http_batch(&mut small, &mut next_http, &mut rng))
    });
    g.finish();

    // Plain medians per operation, printed after criterion's report.
    let udp_small = median_ns(|| udp_batch(&mut small, &mut next, &mut rng, &mut out));
    let udp_big = median_ns(|| udp_batch(&mut big, &mut next_big, &mut rng, &mut out));
    let connect = median_ns(|| {
        for (from, p) in &connects {
            small
                .tracker
                .handle_udp(small.now, *from, black_box(p), &mut rng, &mut out);
        }
        BATCH
    });
    let http = median_ns(|| http_batch(&mut small, &mut next_http, &mut rng));
    println!("\ntracker medians per operation (31 batches of {BATCH}):");
    for (name, ns) in [
        ("udp announce, 100 torrents x 100 peers", udp_small),
        ("udp announce, 1 torrent x 100,000 peers", udp_big),
        ("udp connect", connect),
        ("http announce, 100 torrents x 100 peers", http),
    ] {
        println!("  {name:<42} {ns:>8.0} ns/op  {:>10.0} ops/s", 1e9 / ns);
    }
    let st = small.tracker.stats();
    println!(
        "  table: {} peers, {} torrents, ~{} bytes/peer estimated, {} KiB held",
        st.peers,
        st.torrents,
        st.bytes_per_peer,
        st.memory_bytes / 1024
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
