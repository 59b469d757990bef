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

use common::*;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; nothing else here races for it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `transmission-daemon` in its own process group; stopped (by that group's id)
/// when dropped, with its log and torrent status shown if the test is failing.
struct Transmission {
    child: Child,
    dir: PathBuf,
    rpc: String,
    peer_port: u16,
    log: PathBuf,
}

impl Transmission {
    /// Starts a daemon whose download folder is `download_dir`; waits until RPC answers.
    fn start(dir: &Path, download_dir: &Path) -> Transmission {
        // Fail (never skip) when either tool is missing.
        drop(tool("transmission-remote"));
        let daemon = tool("transmission-daemon");
        let conf = dir.join("conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(download_dir).unwrap();
        let peer_port = free_port();
        let mut rpc_port = free_port();
        while rpc_port == peer_port {
            rpc_port = free_port();
        }
        let settings = format!(
            r#"{{
  "dht-enabled": false,
  "lpd-enabled": false,
  "pex-enabled": false,
  "utp-enabled": false,
  "port-forwarding-enabled": false,
  "blocklist-enabled": false,
  "peer-port": {peer_port},
  "peer-port-random-on-start": false,
  "bind-address-ipv4": "127.0.0.1",
  "bind-address-ipv6": "::1",
  "encryption": 0,
  "rpc-enabled": true,
  "rpc-bind-address": "127.0.0.1",
  "rpc-port": {rpc_port},
  "rpc-authentication-required": false,
  "rpc-whitelist-enabled": false,
  "rpc-host-whitelist-enabled": false,
  "download-dir": {dl:?},
  "incomplete-dir-enabled": false,
  "rename-partial-files": false,
  "watch-dir-enabled": false,
  "start-added-torrents": true,
  "speed-limit-up-enabled": false,
  "speed-limit-down-enabled": false,
  "alt-speed-enabled": false,
  "ratio-limit-enabled": false,
  "idle-seeding-limit-enabled": false,
  "queue-stalled-enabled": false,
  "download-queue-enabled": false,
  "seed-queue-enabled": false,
  "message-level": 2
}}
"#,
            dl = download_dir.to_str().unwrap()
        );
        std::fs::write(conf.join("settings.json"), settings).unwrap();
        let log = dir.join("transmission.log");
        let out = File::create(&log).unwrap();
        // `timeout` bounds it even if this test process dies without dropping us; the new
        // process group lets Drop stop timeout and the daemon together.
        let child = Command::new("timeout")
            .args(["-k", "5", "90"])
            .arg(daemon.get_program())
            .args(["-f", "--log-info", "-g"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start transmission-daemon: {e}"));
        let t = Transmission {
            child,
            dir: dir.to_path_buf(),
            rpc: format!("127.0.0.1:{rpc_port}"),
            peer_port,
            log,
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if t.remote(&["-l"]).is_ok() {
                break;
            }
            assert!(
                Instant::now() < end,
                "transmission-daemon's RPC did not come up:\n{}",
                t.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        t
    }

    /// Where bitmill should dial it.
    fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    /// Runs `transmission-remote RPC ARGS...`; its stdout, or stdout+stderr as the error.
    fn remote(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("transmission-remote")
            .arg(&self.rpc)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run transmission-remote: {e}"))?;
        let so = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(so)
        } else {
            Err(format!("{so}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Adds a torrent (started at once) whose data lives in `download_dir`.
    fn add(&self, torrent: &Path, download_dir: &Path) {
        let out = self
            .remote(&[
                "-a",
                torrent.to_str().unwrap(),
                "-w",
                download_dir.to_str().unwrap(),
            ])
            .unwrap_or_else(|e| panic!("transmission-remote -a failed: {e}\n{}", self.log()));
        assert!(out.contains("success"), "transmission-remote -a: {out}");
    }

    /// `transmission-remote -t all -i`.
    fn info(&self) -> String {
        self.remote(&["-t", "all", "-i"]).unwrap_or_else(|e| e)
    }

    /// Waits until the torrent is 100% done (and not verifying); returns the info text.
    fn wait_complete(&self, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let info = self.info();
            if info.contains("Percent Done: 100%") && !info.contains("State: Verifying") {
                return info;
            }
            assert!(
                Instant::now() < end,
                "Transmission did not reach 100% within {timeout:?}:\n{info}\n--- log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Transmission {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- transmission ({}) ---\n{}\n{}",
                self.dir.display(),
                self.info(),
                self.log()
            );
        }
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) on the process group we created for our own child.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; whatever is left of the group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

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

/// Copies the tree at `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let q = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &q);
        } else {
            std::fs::copy(&p, &q).unwrap();
        }
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
