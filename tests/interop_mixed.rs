//! A mixed swarm over loopback that finds itself only through `bitmill tracker`: seeds are
//! bitmill, libtorrent (python3-libtorrent via `tests/lt_peer.py`) and Transmission 3.00;
//! leechers are two bitmill downloads, one libtorrent download and one Transmission download.
//! Nobody is given a peer address: every peer learns of the others from the tracker's
//! answers, and every leecher's copy is compared by SHA-256 with the source.
//!
//! Order matters because nobody re-announces within the test (bitmill clamps intervals to at
//! least 60 s, libtorrent to its `min_announce_interval` of 300 s): Debian's Transmission 3.00
//! never dials a loopback peer, so the Transmission leecher announces first and the seeds, which
//! the tracker gives only leechers, dial it when they announce; the other leechers announce last
//! and dial everyone (the Transmission seed included). Transmission also keeps at most one
//! connection per peer IP address (here, all of them are 127.0.0.1): whichever seed reaches the
//! Transmission leecher first serves it, later dials get EOF, and the Transmission seed, dialed
//! by leechers that finish from the faster seeds within a fraction of a second, typically
//! uploads nothing. A missing tool fails the test (CI installs them: `tools/install-deps`).

mod common;

use common::transmission::Transmission;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `lt_peer.py MODE TORRENT DIR --timeout S`: no `--peer`, so libtorrent finds its peers
/// through the torrent's tracker.
fn lt_peer(name: &str, mode: &str, torrent: &Path, dir: &Path, timeout: u32) -> Proc {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(tests_file("lt_peer.py"))
        .arg(mode)
        .arg(torrent)
        .arg(dir)
        .args(["--timeout", &timeout.to_string()]);
    Proc::named(name, &mut cmd)
}

/// The last progress line libtorrent printed (its totals), for the test's output.
fn last_progress(p: &mut Proc) -> String {
    let log = p.log();
    log.lines()
        .rev()
        .find(|l| l.contains("total_up="))
        .unwrap_or("")
        .to_string()
}

#[test]
fn mixed_swarm_finds_itself_through_bitmill_tracker() {
    check_libtorrent();
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let parent = root.join("src");
    let content = parent.join("stuff");
    make_tree(&content, ODD_TREE);
    let port = free_port();
    let torrent = root.join("t.torrent");
    run_expect(
        bitmill()
            .args(["create", "-q", "-l", "32K", "-t"])
            .arg(format!("http://127.0.0.1:{port}/announce"))
            .arg("-o")
            .arg(&torrent)
            .arg(&content),
        0,
    );
    let want_all = sha256_tree(&content);
    let want = sha256_non_empty(&content);
    assert_eq!(want.len() + 1, ODD_TREE.len(), "{want:?}");

    let mut tracker = Proc::named(
        "bitmill tracker",
        bitmill()
            .args(["tracker", "--stats-every", "1", "--listen"])
            .arg(format!("127.0.0.1:{port}")),
    );
    tracker.wait_for("tracker listening on", Duration::from_secs(20));

    // Transmission: one daemon seeding a copy of the data, one downloading. The leecher must
    // be known to the tracker before any seed announces (see the top of the file).
    let tr_data = root.join("tr-seed-data");
    copy_tree(&content, &tr_data.join("stuff"));
    let tr_seed = Transmission::start(&root.join("tr-seed"), &tr_data);
    let tr_out = root.join("tr-out");
    let tr_leech = Transmission::start(&root.join("tr-leech"), &tr_out);
    tr_leech.add(&torrent, &tr_out);
    tracker.wait_for("1 peers (0 seeders, 1 leechers)", Duration::from_secs(20));
    tr_seed.add(&torrent, &tr_data);
    tr_seed.wait_complete(Duration::from_secs(20));
    tracker.wait_for("2 peers (1 seeders, 1 leechers)", Duration::from_secs(20));
    // The tracker answered the Transmission seed with the Transmission leecher (which it
    // then never dials: it is on loopback).
    tr_seed.wait_peers_from_tracker(1, Duration::from_secs(10));

    // bitmill and libtorrent seeds: the tracker answers them with the Transmission leecher.
    let mut bm_seed = Proc::named(
        "bitmill seed",
        bitmill()
            .arg("seed")
            .arg(&torrent)
            .arg(&content)
            .args(["--listen", "127.0.0.1:0", "-q", "--resume-dir"])
            .arg(root.join("rs")),
    );
    let mut lt_seed = lt_peer("libtorrent seed", "seed", &torrent, &parent, 75);
    lt_seed.wait_for("seeding ", Duration::from_secs(20));
    tracker.wait_for("4 peers (3 seeders, 1 leechers)", Duration::from_secs(20));
    eprintln!(
        "seeds and Transmission leecher announced: {:.2?}",
        t0.elapsed()
    );

    // The other leechers: the tracker gives them everyone above.
    let mut leechers: Vec<(Proc, PathBuf)> = Vec::new();
    for i in 0..2 {
        let out = root.join(format!("bm-out{i}"));
        let p = Proc::named(
            &format!("bitmill download {i}"),
            bitmill()
                .arg("download")
                .arg(&torrent)
                .arg("-o")
                .arg(&out)
                .args(["--listen", "127.0.0.1:0", "--resume-dir"])
                .arg(root.join(format!("rd{i}"))),
        );
        leechers.push((p, out));
    }
    let lt_out = root.join("lt-out");
    leechers.push((
        lt_peer("libtorrent download", "download", &torrent, &lt_out, 50),
        lt_out,
    ));

    // Everyone must finish.
    let end = Instant::now() + Duration::from_secs(50);
    let mut tr_done = None;
    let mut done = vec![None; leechers.len()];
    loop {
        for (i, (p, _)) in leechers.iter_mut().enumerate() {
            if done[i].is_none() {
                if let Some(code) = p.exited() {
                    let log = p.log();
                    assert_eq!(code, Some(0), "{} failed:\n{log}", p.name);
                    assert!(log.contains("complete"), "{}:\n{log}", p.name);
                    if p.name.starts_with("bitmill") {
                        // Its peers came from the tracker: nobody was given --peer.
                        assert!(log.contains("(started): "), "{}:\n{log}", p.name);
                    }
                    done[i] = Some(t0.elapsed());
                }
            }
        }
        if tr_done.is_none() {
            let info = tr_leech.info();
            if info.contains("Percent Done: 100%") && !info.contains("State: Verifying") {
                tr_done = Some(t0.elapsed());
            }
        }
        if tr_done.is_some() && done.iter().all(Option::is_some) {
            break;
        }
        if Instant::now() > end {
            let mut logs = String::new();
            for p in leechers.iter_mut().map(|(p, _)| p).chain([
                &mut bm_seed,
                &mut lt_seed,
                &mut tracker,
            ]) {
                let log = p.log();
                logs += &format!("--- {} ---\n{log}\n", p.name);
            }
            panic!(
                "not everyone finished: leechers {done:?}, Transmission {tr_done:?}\n{logs}\
                 --- Transmission leecher ---\n{}\n--- Transmission seed ---\n{}",
                tr_leech.info(),
                tr_seed.info()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for ((p, _), t) in leechers.iter().zip(&done) {
        eprintln!("{} complete at {:.2?}", p.name, t.unwrap());
    }
    eprintln!("Transmission download complete at {:.2?}", tr_done.unwrap());

    // Every copy must match the source, file by file.
    for (p, out) in &leechers {
        assert_eq!(
            sha256_tree(&out.join("stuff")),
            want_all,
            "{}'s copy differs",
            p.name
        );
    }
    // 100% means every piece verified; allow a moment in case Transmission still holds some
    // bytes in its cache.
    let got = tr_out.join("stuff");
    let until = Instant::now() + Duration::from_secs(5);
    while sha256_non_empty(&got) != want && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sha256_non_empty(&got), want, "Transmission's copy differs");

    eprintln!("libtorrent seed: {}", last_progress(&mut lt_seed));
    for (p, _) in leechers.iter_mut() {
        let log = p.log();
        for l in log
            .lines()
            .filter(|l| l.contains("(started)") || l.contains(" pieces, "))
        {
            eprintln!("{}: {l}", p.name);
        }
    }
    for l in tr_seed.info().lines().filter(|l| l.contains("Uploaded:")) {
        eprintln!("Transmission seed: {}", l.trim());
    }
    for l in tr_leech
        .info()
        .lines()
        .filter(|l| l.contains("Downloaded:"))
    {
        eprintln!("Transmission leecher: {}", l.trim());
    }
    bm_seed.interrupt();
    tracker.interrupt();
    eprintln!("mixed swarm: {:.2?}", t0.elapsed());
}
