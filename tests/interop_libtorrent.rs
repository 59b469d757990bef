//! Interop with libtorrent-rasterbar (python3-libtorrent, driven by `tests/lt_peer.py`) over
//! loopback: bitmill seeds and libtorrent downloads, and the other way round, on a multi-file
//! torrent with awkward file sizes, on a single 64 MiB file (64 KiB pieces) and on a single
//! 256 MiB file (256 KiB pieces). Every file is compared by SHA-256 with its source.
//!
//! libtorrent runs with DHT, LSD, UPnP, NAT-PMP, uTP and PEX off and listens on 127.0.0.1
//! only; the downloader always dials the seed (`--peer`). A missing /usr/bin/python3 or
//! libtorrent fails these tests: CI installs them (`tools/install-deps`).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `lt_peer.py MODE TORRENT DIR [--peer ADDR] --timeout S`.
fn lt_peer(mode: &str, torrent: &Path, dir: &Path, peer: Option<&str>, timeout: u32) -> Proc {
    check_libtorrent();
    let mut cmd = Command::new(PYTHON);
    cmd.arg(tests_file("lt_peer.py"))
        .arg(mode)
        .arg(torrent)
        .arg(dir)
        .args(["--timeout", &timeout.to_string()]);
    if let Some(p) = peer {
        cmd.args(["--peer", p]);
    }
    Proc::named("libtorrent", &mut cmd)
}

fn bitmill_seed(torrent: &Path, data: &Path, resume: &Path) -> Proc {
    Proc::named(
        "bitmill seed",
        bitmill()
            .arg("seed")
            .arg(torrent)
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--no-trackers", "-q"])
            .arg("--resume-dir")
            .arg(resume),
    )
}

fn bitmill_download(torrent: &Path, out: &Path, resume: &Path, peer: &str) -> Proc {
    Proc::named(
        "bitmill download",
        bitmill()
            .arg("download")
            .arg(torrent)
            .arg("-o")
            .arg(out)
            .args(["--listen", "127.0.0.1:0", "--no-trackers", "--peer", peer])
            .arg("--resume-dir")
            .arg(resume),
    )
}

/// bitmill seeds `f`; libtorrent downloads it; every file must match.
fn bitmill_to_libtorrent(f: &Fixture) {
    let t0 = Instant::now();
    let mut seed = bitmill_seed(&f.torrent, &f.content, &f.root.join("rs"));
    let addr = seed.addr();
    let out = f.root.join("lt-out");
    let lt = lt_peer("download", &f.torrent, &out, Some(&addr), 50);
    let (code, log) = lt.finish_beside(Duration::from_secs(60), &mut seed);
    assert_eq!(
        code,
        Some(0),
        "libtorrent download failed:\n{log}\n--- bitmill seed ---\n{}",
        seed.log()
    );
    assert!(log.contains("download complete"), "{log}");
    assert_eq!(
        sha256_tree(&out.join(f.name())),
        sha256_tree(&f.content),
        "libtorrent's copy differs"
    );
    eprintln!("bitmill -> libtorrent: {:.2?}", t0.elapsed());
}

/// libtorrent seeds `f`; bitmill downloads it; every file must match.
fn libtorrent_to_bitmill(f: &Fixture) {
    let t0 = Instant::now();
    let mut seed = lt_peer("seed", &f.torrent, &f.parent, None, 55);
    let addr = seed.addr();
    // Dial once libtorrent has checked its data (bitmill would retry anyway).
    seed.wait_for("seeding ", Duration::from_secs(30));
    let out = f.root.join("bm-out");
    let dl = bitmill_download(&f.torrent, &out, &f.root.join("rd"), &addr);
    let (code, log) = dl.finish_beside(Duration::from_secs(60), &mut seed);
    assert_eq!(
        code,
        Some(0),
        "bitmill download failed:\n{log}\n--- libtorrent seed ---\n{}",
        seed.log()
    );
    assert!(log.contains("complete"), "{log}");
    assert_eq!(
        sha256_tree(&out.join(f.name())),
        sha256_tree(&f.content),
        "bitmill's copy differs"
    );
    eprintln!("libtorrent -> bitmill: {:.2?}", t0.elapsed());
}

#[test]
fn libtorrent_downloads_a_multi_file_torrent_from_bitmill() {
    bitmill_to_libtorrent(&Fixture::odd_tree());
}

#[test]
fn bitmill_downloads_a_multi_file_torrent_from_libtorrent() {
    libtorrent_to_bitmill(&Fixture::odd_tree());
}

#[test]
fn libtorrent_downloads_a_64_mib_file_from_bitmill() {
    bitmill_to_libtorrent(&Fixture::single_file(64 << 20, 4242, "64K"));
}

#[test]
fn bitmill_downloads_a_64_mib_file_from_libtorrent() {
    libtorrent_to_bitmill(&Fixture::single_file(64 << 20, 4242, "64K"));
}

#[test]
fn libtorrent_downloads_a_256_mib_file_from_bitmill() {
    bitmill_to_libtorrent(&Fixture::single_file(BIG_FILE, 256, "256K"));
}

#[test]
fn bitmill_downloads_a_256_mib_file_from_libtorrent() {
    libtorrent_to_bitmill(&Fixture::single_file(BIG_FILE, 256, "256K"));
}
