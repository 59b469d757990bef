//! A Transmission daemon for interop tests: its own config in a temp folder, loopback only.

use super::*;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `transmission-daemon` in its own process group; stopped (by that group's id)
/// when dropped, with its log and torrent status shown if the test is failing.
pub struct Transmission {
    child: Child,
    dir: PathBuf,
    rpc: String,
    peer_port: u16,
    log: PathBuf,
}

impl Transmission {
    /// Starts a daemon whose download folder is `download_dir`; waits until RPC answers.
    pub fn start(dir: &Path, download_dir: &Path) -> Transmission {
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
    pub fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    /// Runs `transmission-remote RPC ARGS...`; its stdout, or stdout+stderr as the error.
    pub fn remote(&self, args: &[&str]) -> Result<String, String> {
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
    pub fn add(&self, torrent: &Path, download_dir: &Path) {
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
    pub fn info(&self) -> String {
        self.remote(&["-t", "all", "-i"]).unwrap_or_else(|e| e)
    }

    /// `transmission-remote -t all -it`: the trackers and what their last answers said.
    pub fn tracker_info(&self) -> String {
        self.remote(&["-t", "all", "-it"]).unwrap_or_else(|e| e)
    }

    /// Waits until a tracker's answer gave the torrent at least `n` peers (`Got a list of N
    /// peers`); returns the tracker info text.
    pub fn wait_peers_from_tracker(&self, n: usize, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let info = self.tracker_info();
            let got = info
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Got a list of "))
                .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
                .max();
            if got.is_some_and(|g| g >= n) {
                return info;
            }
            assert!(
                Instant::now() < end,
                "Transmission got no list of {n} peers from its tracker within {timeout:?}:\n\
                 {info}\n--- log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the torrent is 100% done (and not verifying); returns the info text.
    pub fn wait_complete(&self, timeout: Duration) -> String {
        self.wait_complete_with(timeout, None)
    }

    /// [`Transmission::wait_complete`], showing `other`'s log too if it times out (the peer
    /// on the other side).
    pub fn wait_complete_beside(&self, timeout: Duration, other: &mut Proc) -> String {
        self.wait_complete_with(timeout, Some(other))
    }

    fn wait_complete_with(&self, timeout: Duration, mut other: Option<&mut Proc>) -> String {
        let end = Instant::now() + timeout;
        loop {
            let info = self.info();
            if info.contains("Percent Done: 100%") && !info.contains("State: Verifying") {
                return info;
            }
            if Instant::now() >= end {
                let other = other
                    .as_mut()
                    .map(|o| {
                        let log = o.log();
                        format!("\n--- {} ---\n{log}", o.name)
                    })
                    .unwrap_or_default();
                panic!(
                    "Transmission did not reach 100% within {timeout:?}:\n{info}\n--- log ---\n{}{other}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
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
