//! End to end over loopback with real processes: `bitmill seed` and `bitmill download`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn make_torrent(src: &Path, out: &Path, piece: &str) {
    run_expect(
        bitmill()
            .args(["create", "-q", "-l", piece, "-o"])
            .arg(out)
            .arg(src),
        0,
    );
}

#[test]
fn one_seed_several_downloads_of_a_multi_file_torrent() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src").join("stuff");
    make_tree(&src, ODD_TREE);
    let torrent = tmp.path().join("t.torrent");
    make_torrent(&src, &torrent, "32K");
    let mut s = seed_proc(&torrent, &src, &tmp.path().join("rs"), &["-q"]);
    let addr = s.addr();
    let dls: Vec<(Proc, PathBuf)> = (0..4)
        .map(|i| {
            let out = tmp.path().join(format!("dl{i}"));
            (
                download_proc(
                    &torrent,
                    &out,
                    &tmp.path().join(format!("r{i}")),
                    &addr,
                    &[],
                ),
                out,
            )
        })
        .collect();
    let want = sha256_tree(&src);
    for (p, out) in dls {
        let (code, log) = p.finish(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{log}");
        assert!(log.contains("complete"), "{log}");
        assert_eq!(sha256_tree(&out.join("stuff")), want);
    }
}

#[test]
fn interrupted_downloads_resume_without_refetching_verified_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("big.bin");
    let total = 24 << 20;
    std::fs::write(&src, data(total, 77)).unwrap();
    let torrent = tmp.path().join("t.torrent");
    make_torrent(&src, &torrent, "64K");
    // A slow seed, so the download is caught half way.
    let mut s = seed_proc(
        &torrent,
        &src,
        &tmp.path().join("rs"),
        &["-q", "--max-upload-rate", "8M"],
    );
    let addr = s.addr();
    let out = tmp.path().join("dl");
    let resume = tmp.path().join("r");

    for (round, sig) in [(0, libc::SIGKILL), (1, libc::SIGTERM)] {
        let mut d = download_proc(&torrent, &out, &resume, &addr, &[]);
        d.wait_for("listening on", Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1000));
        d.signal(sig);
        let (code, log) = d.finish(Duration::from_secs(30));
        assert_ne!(
            code,
            Some(0),
            "round {round}: should not have finished yet:\n{log}"
        );
        if sig == libc::SIGTERM {
            assert!(
                log.contains("resume record written"),
                "clean shutdown saves state:\n{log}"
            );
        }
    }
    // The final run: verified pieces are found (from the resume record or by hashing) and
    // only the rest is fetched.
    let d = download_proc(&torrent, &out, &resume, &addr, &[]);
    let (code, log) = d.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{log}");
    let received = log
        .lines()
        .find(|l| l.contains("complete,"))
        .and_then(|l| l.split("complete, ").nth(1))
        .map(|l| l.split(" received").next().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(!received.is_empty(), "{log}");
    let mib: f64 = received
        .trim_end_matches(" MiB")
        .parse()
        .unwrap_or(f64::MAX);
    assert!(
        mib < 20.0,
        "refetched too much: {received} of 24 MiB\n{log}"
    );
    assert_eq!(
        std::fs::read(out.join("big.bin")).unwrap(),
        std::fs::read(&src).unwrap()
    );
}

#[test]
fn download_rate_limit_holds_on_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("f.bin");
    std::fs::write(&src, data(12 << 20, 5)).unwrap();
    let torrent = tmp.path().join("t.torrent");
    make_torrent(&src, &torrent, "64K");
    let mut s = seed_proc(&torrent, &src, &tmp.path().join("rs"), &["-q"]);
    let addr = s.addr();
    let started = Instant::now();
    let d = download_proc(
        &torrent,
        &tmp.path().join("dl"),
        &tmp.path().join("r"),
        &addr,
        &["--max-download-rate", "4M"],
    );
    let (code, log) = d.finish(Duration::from_secs(60));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(code, Some(0), "{log}");
    // 12 MiB at 4 MiB/s: 3 s; allow for process start-up and a noisy machine.
    assert!(secs > 2.85 && secs < 4.5, "took {secs:.2} s\n{log}");
}

#[test]
fn seed_refuses_incomplete_data() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("f.bin");
    std::fs::write(&src, data(1 << 20, 6)).unwrap();
    let torrent = tmp.path().join("t.torrent");
    make_torrent(&src, &torrent, "64K");
    std::fs::write(&src, data(1 << 19, 6)).unwrap();
    let o = run_expect(
        bitmill()
            .arg("seed")
            .arg(&torrent)
            .arg(&src)
            .args(["-q", "--listen", "127.0.0.1:0", "--resume-dir"])
            .arg(tmp.path()),
        2,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("only 8 of 16 pieces are good"));
}
