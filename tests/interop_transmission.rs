//! Interop with Transmission (Debian's `transmission-daemon`, driven with
//! `transmission-remote`) over loopback: bitmill seeds and Transmission downloads, and the
//! other way round, on a multi-file torrent with awkward file sizes and on a single 256 MiB
//! file (1 MiB pieces). Every file is compared by SHA-256 with its source.
//!
//! Transmission runs with its own config folder in a temporary folder, DHT, LPD, PEX, uTP,
//! UPnP/NAT-PMP and blocklists off, peers on 127.0.0.1 at a fixed free port, RPC on 127.0.0.1
//! at another free port without authentication, encryption only tolerated. Debian's
//! Transmission 3.00 treats 127.0.0.0/8 as "martian" and never dials a loopback peer, but it
//! accepts connections from one, so bitmill always dials Transmission (`--peer`). A missing
//! `transmission-daemon` or `transmission-remote` fails these tests: CI installs them
//! (`tools/install-deps`).

mod common;

use common::transmission::Transmission;
use common::*;
use std::time::{Duration, Instant};

/// bitmill seeds `f` and dials Transmission, which downloads it; every non-empty file must
/// match. Transmission must be done within `within`.
fn bitmill_to_transmission(f: &Fixture, within: Duration) {
    let want = sha256_non_empty(&f.content);
    let t0 = Instant::now();
    let dl = f.root.join("tr-out");
    let tr = Transmission::start(&f.root.join("tr"), &dl);
    tr.add(&f.torrent, &dl);
    let mut seed = Proc::spawn(
        bitmill()
            .arg("seed")
            .arg(&f.torrent)
            .arg(&f.content)
            .args(["--listen", "127.0.0.1:0", "--no-trackers"])
            .args(["--peer", &tr.peer_addr()])
            .arg("--resume-dir")
            .arg(f.root.join("rs")),
    );
    seed.addr();
    tr.wait_complete_beside(within.saturating_sub(t0.elapsed()), &mut seed);
    eprintln!("bitmill -> Transmission: 100% after {:.2?}", t0.elapsed());
    let got_path = dl.join(f.name());
    // 100% means every piece verified, so the bytes have been written by then; allow a
    // moment anyway in case Transmission still holds some in its cache.
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = sha256_non_empty(&got_path);
    while got != want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        got = sha256_non_empty(&got_path);
    }
    assert_eq!(got, want, "Transmission's copy differs");
    eprintln!("bitmill -> Transmission: {:.2?}", t0.elapsed());
    seed.interrupt();
    let (code, log) = seed.finish(Duration::from_secs(10));
    eprintln!("--- bitmill seed ---\n{log}");
    assert_eq!(code, Some(0), "bitmill seed did not stop cleanly:\n{log}");
}

/// Transmission seeds `f` (once it has checked it) and bitmill dials it and downloads; every
/// file must match. bitmill must be done within `within`.
fn transmission_to_bitmill(f: &Fixture, within: Duration) {
    let want = sha256_tree(&f.content);
    let t0 = Instant::now();
    // Transmission gets its own copy of the data; a big single file is hard-linked instead
    // (Transmission only reads it, and `want` was taken before it started).
    let data = f.root.join("tr-data");
    std::fs::create_dir_all(&data).unwrap();
    if f.content.is_file() {
        std::fs::hard_link(&f.content, data.join(f.name())).unwrap();
    } else {
        copy_tree(&f.content, &data.join(f.name()));
    }
    let tr = Transmission::start(&f.root.join("tr"), &data);
    tr.add(&f.torrent, &data);
    // Transmission checks the data it is given; dial once it seeds (bitmill would retry).
    let info = tr.wait_complete(Duration::from_secs(20));
    assert!(
        info.contains("State: Seeding") || info.contains("State: Idle"),
        "{info}"
    );
    eprintln!("Transmission seeding after {:.2?}", t0.elapsed());
    let out = f.root.join("bm-out");
    let dl = Proc::spawn(
        bitmill()
            .arg("download")
            .arg(&f.torrent)
            .arg("-o")
            .arg(&out)
            .args(["--listen", "127.0.0.1:0", "--no-trackers"])
            .args(["--peer", &tr.peer_addr()])
            .arg("--resume-dir")
            .arg(f.root.join("rd")),
    );
    let (code, log) = dl.finish(within.saturating_sub(t0.elapsed()));
    assert_eq!(code, Some(0), "bitmill download failed:\n{log}");
    assert!(log.contains("complete"), "{log}");
    eprintln!("--- bitmill download ---\n{log}");
    assert_eq!(
        sha256_tree(&out.join(f.name())),
        want,
        "bitmill's copy differs"
    );
    eprintln!("Transmission -> bitmill: {:.2?}", t0.elapsed());
}

#[test]
fn transmission_downloads_a_multi_file_torrent_from_bitmill() {
    let f = Fixture::odd_tree();
    // One file of ODD_TREE is empty, and left out.
    assert_eq!(sha256_non_empty(&f.content).len() + 1, ODD_TREE.len());
    bitmill_to_transmission(&f, Duration::from_secs(45));
}

#[test]
fn bitmill_downloads_a_multi_file_torrent_from_transmission() {
    transmission_to_bitmill(&Fixture::odd_tree(), Duration::from_secs(65));
}

#[test]
fn transmission_downloads_a_256_mib_file_from_bitmill() {
    bitmill_to_transmission(
        &Fixture::single_file(BIG_FILE, 256, "1M"),
        Duration::from_secs(60),
    );
}

#[test]
fn bitmill_downloads_a_256_mib_file_from_transmission() {
    transmission_to_bitmill(
        &Fixture::single_file(BIG_FILE, 256, "1M"),
        Duration::from_secs(60),
    );
}
