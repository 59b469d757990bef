//! Interop with Transmission (Debian's `transmission-daemon`, driven with
//! `transmission-remote`) over loopback: bitmill seeds and Transmission downloads, and the
//! other way round, on a multi-file torrent with awkward file sizes. Every file is compared by
//! SHA-256 with its source.
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
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The source: (temp folder, folder holding the content, the content, the torrent).
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    content: PathBuf,
    torrent: PathBuf,
}

fn odd_tree() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let content = root.join("src").join("stuff");
    make_tree(&content, ODD_TREE);
    let torrent = root.join("t.torrent");
    run_expect(
        bitmill()
            .args(["create", "-q", "-l", "32K", "-o"])
            .arg(&torrent)
            .arg(&content),
        0,
    );
    Fixture {
        _tmp: tmp,
        root,
        content,
        torrent,
    }
}

#[test]
fn transmission_downloads_a_multi_file_torrent_from_bitmill() {
    let f = odd_tree();
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
    tr.wait_complete(Duration::from_secs(45));
    // Transmission 3.00 never creates zero-length files (fixed in 4.0), so those are left
    // out of the comparison; every other file must be there and match.
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let want: Vec<_> = sha256_tree(&f.content)
        .into_iter()
        .filter(|(_, h)| h != empty)
        .collect();
    assert!(want.len() + 1 == ODD_TREE.len(), "{want:?}");
    let got_path = dl.join("stuff");
    let got = || -> Vec<_> {
        sha256_tree(&got_path)
            .into_iter()
            .filter(|(_, h)| h != empty)
            .collect()
    };
    // 100% means every piece verified, so the bytes have been written by then; allow a
    // moment anyway in case Transmission still holds some in its cache.
    let end = Instant::now() + Duration::from_secs(5);
    while got() != want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(got(), want, "Transmission's copy differs");
    eprintln!("bitmill -> Transmission: {:.2?}", t0.elapsed());
    seed.interrupt();
    let (code, log) = seed.finish(Duration::from_secs(10));
    eprintln!("--- bitmill seed ---\n{log}");
    assert_eq!(code, Some(0), "bitmill seed did not stop cleanly:\n{log}");
}

#[test]
fn bitmill_downloads_a_multi_file_torrent_from_transmission() {
    let f = odd_tree();
    let t0 = Instant::now();
    let data = f.root.join("tr-data");
    copy_tree(&f.content, &data.join("stuff"));
    let tr = Transmission::start(&f.root.join("tr"), &data);
    tr.add(&f.torrent, &data);
    // Transmission checks the data it is given; dial once it seeds (bitmill would retry).
    let info = tr.wait_complete(Duration::from_secs(20));
    assert!(
        info.contains("State: Seeding") || info.contains("State: Idle"),
        "{info}"
    );
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
    let (code, log) = dl.finish(Duration::from_secs(45));
    assert_eq!(code, Some(0), "bitmill download failed:\n{log}");
    assert!(log.contains("complete"), "{log}");
    eprintln!("--- bitmill download ---\n{log}");
    assert_eq!(
        sha256_tree(&out.join("stuff")),
        sha256_tree(&f.content),
        "bitmill's copy differs"
    );
    eprintln!("Transmission -> bitmill: {:.2?}", t0.elapsed());
}
