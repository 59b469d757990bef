//! Interop with libtorrent-rasterbar (python3-libtorrent, driven by `tests/lt_peer.py`) over
//! loopback: bitmill seeds and libtorrent downloads, and the other way round, on a multi-file
//! torrent with awkward file sizes and on a single 64 MiB file. Every file is compared by
//! SHA-256 with its source.
//!
//! libtorrent runs with DHT, LSD, UPnP, NAT-PMP, uTP and PEX off and listens on 127.0.0.1
//! only; the downloader always dials the seed (`--peer`). A missing /usr/bin/python3 or
//! libtorrent fails these tests: CI installs them (`tools/install-deps`).

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

/// A running process whose stderr lines we can wait for; killed when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
        let err = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            name,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `pat`; returns it.
    fn wait_for(&mut self, pat: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(pat)) {
            return l.clone();
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(pat) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "{}: no line with {pat:?} within {timeout:?}; got:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The listening address it printed (`listening on IP:PORT`).
    fn addr(&mut self) -> String {
        let l = self.wait_for("listening on ", Duration::from_secs(30));
        let a = l
            .split("listening on ")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string();
        assert!(
            a.starts_with("127.0.0.1:") && !a.ends_with(":0"),
            "{}: bad address in {l:?}",
            self.name
        );
        a
    }

    /// Everything seen so far, plus whatever is queued.
    fn log(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    /// Waits for exit; returns the exit code and all stderr. Kills it on timeout and panics,
    /// showing `other`'s log too (the peer on the other side).
    fn finish(mut self, timeout: Duration, other: &mut Proc) -> (Option<i32>, String) {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return (st.code(), self.seen.join("\n"));
            }
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let other_log = other.log();
                panic!(
                    "{} did not exit within {timeout:?}:\n{}\n--- {} ---\n{other_log}",
                    self.name,
                    self.seen.join("\n"),
                    other.name,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails (never skips) when the python3-libtorrent bindings are not usable.
fn check_libtorrent() {
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} is not installed: run tools/install-deps (CI does)"
    );
    let out = Command::new(PYTHON)
        .args(["-c", "import libtorrent; print(libtorrent.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}"));
    assert!(
        out.status.success(),
        "python3-libtorrent is not installed for {PYTHON}: run tools/install-deps (CI does)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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
    Proc::spawn("libtorrent", &mut cmd)
}

fn bitmill_seed(torrent: &Path, data: &Path, resume: &Path) -> Proc {
    Proc::spawn(
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
    Proc::spawn(
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

fn make_torrent(src: &Path, out: &Path, piece: Option<&str>) {
    let mut cmd = bitmill();
    cmd.args(["create", "-q"]);
    if let Some(p) = piece {
        cmd.args(["-l", p]);
    }
    run_expect(cmd.arg("-o").arg(out).arg(src), 0);
}

/// (relative path, SHA-256) of every file under `root` (or of `root` itself if it is a file).

/// The source for a test: (folder holding it, the torrent's file or folder, the torrent).
struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    parent: std::path::PathBuf,
    content: std::path::PathBuf,
    torrent: std::path::PathBuf,
}

fn odd_tree() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let parent = root.join("src");
    let content = parent.join("stuff");
    make_tree(&content, ODD_TREE);
    let torrent = root.join("t.torrent");
    make_torrent(&content, &torrent, Some("32K"));
    Fixture {
        _tmp: tmp,
        root,
        parent,
        content,
        torrent,
    }
}

fn big_file() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let parent = root.join("src");
    std::fs::create_dir_all(&parent).unwrap();
    let content = parent.join("big.bin");
    std::fs::write(&content, data(64 << 20, 4242)).unwrap();
    let torrent = root.join("t.torrent");
    make_torrent(&content, &torrent, None);
    Fixture {
        _tmp: tmp,
        root,
        parent,
        content,
        torrent,
    }
}

/// bitmill seeds `f`; libtorrent downloads it; every file must match.
fn bitmill_to_libtorrent(f: &Fixture) {
    let t0 = Instant::now();
    let mut seed = bitmill_seed(&f.torrent, &f.content, &f.root.join("rs"));
    let addr = seed.addr();
    let out = f.root.join("lt-out");
    let lt = lt_peer("download", &f.torrent, &out, Some(&addr), 50);
    let (code, log) = lt.finish(Duration::from_secs(60), &mut seed);
    assert_eq!(
        code,
        Some(0),
        "libtorrent download failed:\n{log}\n--- bitmill seed ---\n{}",
        seed.log()
    );
    assert!(log.contains("download complete"), "{log}");
    let name = f.content.file_name().unwrap();
    assert_eq!(
        sha256_tree(&out.join(name)),
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
    let (code, log) = dl.finish(Duration::from_secs(60), &mut seed);
    assert_eq!(
        code,
        Some(0),
        "bitmill download failed:\n{log}\n--- libtorrent seed ---\n{}",
        seed.log()
    );
    assert!(log.contains("complete"), "{log}");
    let name = f.content.file_name().unwrap();
    assert_eq!(
        sha256_tree(&out.join(name)),
        sha256_tree(&f.content),
        "bitmill's copy differs"
    );
    eprintln!("libtorrent -> bitmill: {:.2?}", t0.elapsed());
}

#[test]
fn libtorrent_downloads_a_multi_file_torrent_from_bitmill() {
    bitmill_to_libtorrent(&odd_tree());
}

#[test]
fn bitmill_downloads_a_multi_file_torrent_from_libtorrent() {
    libtorrent_to_bitmill(&odd_tree());
}

#[test]
fn libtorrent_downloads_a_64_mib_file_from_bitmill() {
    bitmill_to_libtorrent(&big_file());
}

#[test]
fn bitmill_downloads_a_64_mib_file_from_libtorrent() {
    libtorrent_to_bitmill(&big_file());
}
