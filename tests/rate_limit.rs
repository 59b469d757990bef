//! Rate limits on loopback, measured: real `bitmill` processes with `--max-upload-rate` /
//! `--max-download-rate`, and two torrents with caps of their own in one reactor through the
//! library. Each transfer is sized to take about 10 s at its cap.
//!
//! What is measured: the payload (the torrent's bytes, not headers or other messages) over
//! the time from the downloader's start (its reactor starts, nothing sent yet) to its
//! completion (the last piece verified). That time includes setting up the connection
//! (on loopback a few milliseconds, which makes the measured rate slightly lower than the
//! cap), and the payload excludes the 13-byte headers the cap also counts (0.08%).
//!
//! What is asserted: the measured rate is within 5% of the cap, and the payload is not more
//! than the cap allows in that time plus one block and its header (the most a bucket holds
//! at the start), so the transfer was never faster than the cap beyond one block.

mod common;

use common::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bitmill::bitfield::Bitfield;
use bitmill::engine::{make_peer_id, Action, Engine, EngineConfig, TorrentId};
use bitmill::metainfo::{InfoHash, Metainfo, TorrentBuilder};
use bitmill::net::{Control, Driver, Reactor, ReactorConfig};
use bitmill::rng::Rng;
use bitmill::storage::MemStorage;
use sha1::{Digest, Sha1};

const MIB: u64 = 1 << 20;
/// One block and its header: what a bucket may hold at the start.
const BLOCK_MSG: u64 = 16 * 1024 + 13;

/// Checks a measured transfer of `bytes` in `secs` against `cap` bytes/s; returns the
/// measured rate as a fraction of the cap.
fn check_rate(what: &str, bytes: u64, secs: f64, cap: u64, log: &str) -> f64 {
    let rate = bytes as f64 / secs;
    let ratio = rate / cap as f64;
    // What the set-up took, if the payload went at exactly the cap.
    let setup = secs - bytes as f64 / cap as f64;
    eprintln!(
        "{what}: {bytes} B in {secs:.3} s = {rate:.0} B/s = {:.2}% of the cap {cap} B/s \
         (time beyond bytes/cap: {:.0} ms)",
        ratio * 100.0,
        setup * 1000.0
    );
    assert!(
        (ratio - 1.0).abs() <= 0.05,
        "{what}: {rate:.0} B/s is {:.2}% of the cap {cap}\n{log}",
        ratio * 100.0
    );
    // Not faster than the cap by more than one block (the time is printed in whole
    // milliseconds: allow half of one).
    let allowed = cap as f64 * (secs + 0.0005) + BLOCK_MSG as f64;
    assert!(
        bytes as f64 <= allowed,
        "{what}: {bytes} B in {secs:.3} s is more than {cap} B/s allows plus one block\n{log}"
    );
    ratio
}

// ------------------------------------------------------------------ processes

fn make_torrent(dir: &Path, size: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = dir.join("f.bin");
    std::fs::write(&src, data(size, 0x1a7e)).unwrap();
    let torrent = dir.join("t.torrent");
    run_expect(
        bitmill()
            .args(["create", "-q", "-l", "32K", "-o"])
            .arg(&torrent)
            .arg(&src),
        0,
    );
    (torrent, src)
}

/// The seconds in the downloader's `complete, 20.00 MiB received in 10.043 s` line, after
/// checking the amount received.
fn completion_secs(log: &str, want: &str) -> f64 {
    let line = log
        .lines()
        .find(|l| l.contains(": complete, "))
        .unwrap_or_else(|| panic!("no completion line:\n{log}"));
    let rest = line.split(": complete, ").nth(1).unwrap_or("");
    let (received, rest) = rest.split_once(" received in ").unwrap_or(("", ""));
    assert_eq!(received, want, "{line}");
    rest.split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"))
}

/// A seed and a downloader; the cap on one side. Returns the measured fraction of the cap.
fn transfer(seed_args: &[&str], download_args: &[&str], cap: u64, what: &str) -> f64 {
    let size = 20 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, src) = make_torrent(tmp.path(), size);
    let mut s = seed_proc(
        &torrent,
        &src,
        &tmp.path().join("rs"),
        &[&["-q", "--no-trackers"], seed_args].concat(),
    );
    let addr = s.addr();
    let out = tmp.path().join("dl");
    // Not quiet: the "complete, X received in S s" line is what we measure.
    let d = download_proc(
        &torrent,
        &out,
        &tmp.path().join("rd"),
        &addr,
        &[&["--no-trackers"], download_args].concat(),
    );
    let (code, log) = d.finish_beside(Duration::from_secs(60), &mut s);
    assert_eq!(code, Some(0), "{log}");
    let secs = completion_secs(&log, "20.00 MiB");
    assert!(
        std::fs::read(out.join("f.bin")).unwrap() == std::fs::read(&src).unwrap(),
        "data differs"
    );
    check_rate(what, size as u64, secs, cap, &log)
}

#[test]
fn upload_cap_holds_on_loopback() {
    transfer(
        &["--max-upload-rate", "2M"],
        &[],
        2 * MIB,
        "seed --max-upload-rate 2M",
    );
}

#[test]
fn download_cap_holds_on_loopback() {
    transfer(
        &[],
        &["--max-download-rate", "2M"],
        2 * MIB,
        "download --max-download-rate 2M",
    );
}

// ------------------------------------------------------------------ library

/// A torrent made in memory.
struct Made {
    info_hash: InfoHash,
    meta: Metainfo,
    data: Vec<u8>,
}

fn made(name: &str, size: usize, seed: u64) -> Made {
    let data = data(size, seed);
    let piece_length = 32 * 1024;
    let mut pieces = Vec::new();
    for chunk in data.chunks(piece_length as usize) {
        pieces.extend_from_slice(&Sha1::digest(chunk));
    }
    let b = TorrentBuilder {
        name: name.into(),
        files: vec![(vec![name.into()], size as u64)],
        single_file: true,
        piece_length,
        pieces,
        ..Default::default()
    };
    let meta = Metainfo::from_bytes(&b.encode()).unwrap();
    Made {
        info_hash: meta.info_hash,
        meta,
        data,
    }
}

fn engine(seed: u64) -> Engine {
    let mut rng = Rng::new(seed);
    Engine::new(EngineConfig {
        peer_id: make_peer_id(&mut rng),
        seed: rng.next(),
        ..Default::default()
    })
}

/// Runs until every torrent completed (recording when), `stop` is set, or a minute passed.
struct Recorder {
    started: Instant,
    done: Vec<Option<Instant>>,
    failed: Vec<String>,
    stop: Arc<AtomicBool>,
}

impl Driver for Recorder {
    fn on_event(&mut self, now: Instant, _engine: &mut Engine, event: &Action) {
        match event {
            Action::TorrentComplete(t) => self.done[t.0] = Some(now),
            Action::TorrentFailed { error, .. } => self.failed.push(error.clone()),
            _ => {}
        }
    }

    fn on_tick(&mut self, now: Instant, _engine: &mut Engine) -> Control {
        let all_done = !self.done.is_empty() && self.done.iter().all(Option::is_some);
        if all_done
            || !self.failed.is_empty()
            || self.stop.load(Ordering::Relaxed)
            || now.duration_since(self.started) > Duration::from_secs(60)
        {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// Caps (download, upload) for one side of [`two_torrents`].
type Caps = (Option<u64>, Option<u64>);

/// One seeding reactor and one downloading reactor, each with both torrents, on threads.
/// `seed_caps` / `dl_caps` are per torrent; `dl_global` the downloader's global caps.
/// Returns each torrent's seconds from the downloader's start to its completion.
fn two_torrents(
    torrents: &[(&str, usize)],
    seed_caps: &[Caps],
    dl_caps: &[Caps],
    dl_global: Caps,
) -> Vec<f64> {
    let made: Arc<Vec<Made>> = Arc::new(
        torrents
            .iter()
            .enumerate()
            .map(|(i, (name, size))| made(name, *size, i as u64 + 7))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let seeder = {
        let (made, stop, caps) = (made.clone(), stop.clone(), seed_caps.to_vec());
        std::thread::spawn(move || {
            let mut e = engine(1);
            let mut r = Reactor::new(ReactorConfig {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                ..Default::default()
            })
            .unwrap();
            for (m, (d, u)) in made.iter().zip(caps) {
                let layout = m.meta.info.layout().clone();
                let n = layout.num_pieces();
                let storage = MemStorage::with_data(layout, m.data.clone()).unwrap();
                let t = e.add_torrent(
                    m.info_hash,
                    m.meta.info.clone(),
                    Box::new(storage),
                    Bitfield::full(n),
                );
                r.set_torrent_rate_limits(t, m.info_hash, d, u);
            }
            tx.send(r.local_addr().unwrap()).unwrap();
            let mut rec = Recorder {
                started: Instant::now(),
                done: Vec::new(),
                failed: Vec::new(),
                stop,
            };
            r.run(&mut e, &mut rec).unwrap();
            assert!(rec.failed.is_empty(), "seed: {:?}", rec.failed);
        })
    };
    let addr = rx.recv().unwrap();
    let mut e = engine(2);
    let mut r = Reactor::new(ReactorConfig {
        max_download_rate: dl_global.0,
        max_upload_rate: dl_global.1,
        ..Default::default()
    })
    .unwrap();
    let mut ids = Vec::new();
    for (m, (d, u)) in made.iter().zip(dl_caps) {
        let layout = m.meta.info.layout().clone();
        let n = layout.num_pieces();
        let t = e.add_torrent(
            m.info_hash,
            m.meta.info.clone(),
            Box::new(MemStorage::new(layout)),
            Bitfield::new(n),
        );
        r.set_torrent_rate_limits(t, m.info_hash, *d, *u);
        ids.push(t);
    }
    let started = Instant::now();
    for &t in &ids {
        e.add_peers(started, t, [addr]);
    }
    let mut rec = Recorder {
        started,
        done: vec![None; ids.len()],
        failed: Vec::new(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    r.run(&mut e, &mut rec).unwrap();
    stop.store(true, Ordering::Relaxed);
    seeder.join().unwrap();
    assert!(rec.failed.is_empty(), "download: {:?}", rec.failed);
    ids.iter()
        .map(|&TorrentId(i)| {
            let at = rec.done[i].unwrap_or_else(|| panic!("torrent {i} did not complete"));
            assert!(e.is_complete(TorrentId(i)));
            at.duration_since(started).as_secs_f64()
        })
        .collect()
}

/// Two torrents seeded by one reactor, each with an upload cap of its own (1 MiB/s and
/// 2 MiB/s; no global cap). The seed's connections are inbound, so this also checks that
/// the reactor finds their torrents from the handshakes.
#[test]
fn per_torrent_upload_caps_in_one_reactor() {
    let secs = two_torrents(
        &[("a.bin", 10 << 20), ("b.bin", 20 << 20)],
        &[(None, Some(MIB)), (None, Some(2 * MIB))],
        &[(None, None), (None, None)],
        (None, None),
    );
    check_rate("torrent a, upload cap 1M", 10 * MIB, secs[0], MIB, "");
    check_rate("torrent b, upload cap 2M", 20 * MIB, secs[1], 2 * MIB, "");
}

/// A torrent's download cap under a global one in the same reactor: a global 3 MiB/s, torrent
/// a capped at 1 MiB/s of it, torrent b with no cap of its own gets the other 2 MiB/s.
#[test]
fn per_torrent_download_cap_under_a_global_cap() {
    let secs = two_torrents(
        &[("a.bin", 10 << 20), ("b.bin", 20 << 20)],
        &[(None, None), (None, None)],
        &[(Some(MIB), None), (None, None)],
        (Some(3 * MIB), None),
    );
    check_rate("torrent a, download cap 1M", 10 * MIB, secs[0], MIB, "");
    check_rate(
        "torrent b, rest of a global 3M",
        20 * MIB,
        secs[1],
        2 * MIB,
        "",
    );
    let last = secs[0].max(secs[1]);
    check_rate("both, global download cap 3M", 30 * MIB, last, 3 * MIB, "");
}
