//! Whole-process throughput driver: runs real `bitmill` processes on loopback and measures
//! transfer rate, CPU time and memory.
//!
//! ```text
//! cargo build --release            # the driver runs target/release/bitmill
//! cargo run --release --example throughput -- [pair] [--size 1G] [--runs 3] [--json]
//! cargo run --release --example throughput -- many [--conns 200] [--depth 32] [--seconds 10]
//! ```
//!
//! - `pair` (the default): one `bitmill seed` and one `bitmill download` of a file of random
//!   bytes. Reports GB/s (1e9 bytes/s) and GiB/s from spawning the download to its
//!   `complete` line, the time to its exit (which includes flushing the data), CPU seconds
//!   per GiB of each side (downloader: `wait4` rusage; seeder: `/proc/PID/stat` over the
//!   transfer), peak `RssAnon`/`RssFile` of each (sampled every 50 ms), the longest stretch
//!   in which the seeder sent nothing, and the CPU used by other processes on the machine.
//!   The downloaded file is compared byte for byte with the source. `--runs N` repeats; the
//!   median of every column is printed last.
//! - `many`: one `bitmill seed --upload-slots 200 --max-peers 250` and a load generator in
//!   this process: `--conns` connections on one thread with a `mio` poll, each with its own
//!   peer id, sending `interested` and keeping `--depth` 16 KiB requests for random blocks in
//!   flight while unchoked (choked connections wait). After `--warmup` seconds it counts the
//!   block bytes received for `--seconds` and reports the total rate, per-connection
//!   min/median/max, the rate of every second, and the seeder's CPU time and peak memory.
//!
//! Everything happens on 127.0.0.1 inside a fresh temporary folder (under `/tmp` or
//! `--dir`), which is removed at the end, on error and on Ctrl-C; child processes are killed
//! by PID (and get `SIGKILL` from the kernel should this driver die: `PR_SET_PDEATHSIG`).
//! `--json` prints one JSON object on stdout and the human-readable report on stderr.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bitmill::metainfo::Metainfo;
use bitmill::rng::Rng;
use bitmill::wire::{encode, Decoder, Handshake, Message};
use bytes::{BufMut, BytesMut};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

#[path = "common.rs"]
mod common;
use common::*;

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;
const BLOCK: u32 = 16 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "throughput",
    about = "Whole-process throughput driver for bitmill (loopback only)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    pair: PairArgs,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// One seeder, one downloader (the default mode).
    Pair(PairArgs),
    /// One seeder, many connections from a load generator inside this tool.
    Many(ManyArgs),
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Size of the test file: bytes, or with K, M, G (powers of 1024; `1G` = `1GiB`).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    size: u64,
    /// Piece length for `bitmill create -l`.
    #[arg(long, default_value = "256K")]
    piece_length: String,
    /// Folder in which the temporary folder is made (default /tmp).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The bitmill binary (default: target/release/bitmill beside this example).
    #[arg(long, value_name = "PATH")]
    bitmill: Option<PathBuf>,
    /// Seed of the random file contents.
    #[arg(long, default_value_t = 1)]
    data_seed: u64,
    /// Extra argument for `bitmill seed` (repeat; e.g. `--seed-arg=--max-upload-rate=1G`).
    #[arg(long = "seed-arg", value_name = "ARG", allow_hyphen_values = true)]
    seed_args: Vec<String>,
    /// Give up on a step after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print one JSON object with all results on stdout (the report goes to stderr).
    #[arg(long)]
    json: bool,
    /// Print the children's stderr with times, and the seeder's bytes-written timeline.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args, Debug, Clone)]
struct PairArgs {
    #[command(flatten)]
    common: Common,
    /// Number of transfers; each prints a row, then the medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Extra argument for `bitmill download` (repeat).
    #[arg(long = "download-arg", value_name = "ARG", allow_hyphen_values = true)]
    download_args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
struct ManyArgs {
    #[command(flatten)]
    common: Common,
    /// Connections opened to the seeder.
    #[arg(long, default_value_t = 200)]
    conns: usize,
    /// 16 KiB requests kept in flight per unchoked connection.
    #[arg(long, default_value_t = 32)]
    depth: usize,
    /// Length of the measurement, seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds between opening the connections and the start of the measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// `--upload-slots` of the seeder.
    #[arg(long, default_value_t = 200)]
    upload_slots: usize,
    /// `--max-peers` of the seeder.
    #[arg(long, default_value_t = 250)]
    max_peers: usize,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let lower = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, mult) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1u64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        Some((i, 't')) => (&lower[..i], 1 << 40),
        _ => (lower, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad size {s:?}: use e.g. 1G, 256M, 1048576"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("size must be positive: {s:?}"));
    }
    Ok((v * mult as f64) as u64)
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C: a flag every wait loop checks, so the guards below get to clean up.

// ---------------------------------------------------------------------------------------------
// Temporary folder, removed on drop.

// ---------------------------------------------------------------------------------------------
// Child processes: stderr lines with timestamps, exit noticed without reaping (so a kill by
// PID can never hit a recycled PID), reaped with wait4 for the rusage.

struct Exit {
    at: Instant,
    code: Option<i32>,
    signal: Option<i32>,
    rusage: libc::rusage,
}

impl Exit {
    fn cpu(&self) -> f64 {
        tv(self.rusage.ru_utime) + tv(self.rusage.ru_stime)
    }

    fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit status {c}"),
            (_, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown exit".into(),
        }
    }
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

struct Proc {
    name: String,
    pid: libc::pid_t,
    lines: Receiver<(Instant, String)>,
    log: Vec<(Instant, String)>,
    exited: Receiver<Instant>,
    exited_at: Option<Instant>,
    reaped: Option<Exit>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> R<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        let pid = child.id() as libc::pid_t;
        let Some(err) = child.stderr.take() else {
            return Err(format!("{name}: no stderr pipe"));
        };
        // std's Child has no Drop: from here on the PID is ours to reap.
        drop(child);
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let now = Instant::now();
                        let l = String::from_utf8_lossy(&buf).trim_end().to_string();
                        if tx.send((now, l)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let (etx, exited) = channel();
        std::thread::spawn(move || loop {
            // SAFETY: siginfo_t is plain data; waitid fills it. WNOWAIT leaves the child a
            // zombie, so its PID stays reserved until wait4 in `reap`.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointer to a siginfo_t we own.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                let _ = etx.send(Instant::now());
                break;
            }
        });
        Ok(Proc {
            name: name.to_string(),
            pid,
            lines,
            log: Vec::new(),
            exited,
            exited_at: None,
            reaped: None,
        })
    }

    fn drain_lines(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
    }

    fn poll_exit(&mut self) -> bool {
        if self.exited_at.is_none() {
            if let Ok(t) = self.exited.try_recv() {
                self.exited_at = Some(t);
            }
        }
        self.exited_at.is_some()
    }

    fn stderr_text(&mut self) -> String {
        self.drain_lines();
        let mut s = String::new();
        let tail = self.log.len().saturating_sub(40);
        if tail > 0 {
            s.push_str(&format!("    ... {tail} earlier lines\n"));
        }
        for (_, l) in &self.log[tail..] {
            s.push_str("    ");
            s.push_str(l);
            s.push('\n');
        }
        if s.is_empty() {
            s.push_str("    (no output)\n");
        }
        s
    }

    /// Waits for a stderr line containing `pat`.
    fn wait_line(&mut self, pat: &str, timeout: Duration) -> R<(Instant, String)> {
        if let Some(l) = self.log.iter().find(|(_, l)| l.contains(pat)) {
            return Ok(l.clone());
        }
        let end = Instant::now() + timeout;
        loop {
            check_interrupted()?;
            match self.lines.recv_timeout(Duration::from_millis(20)) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.1.contains(pat) {
                        return Ok(l);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process is exiting.
                    let _ = self.wait_exit(Duration::from_secs(5));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.poll_exit() {
                std::thread::sleep(Duration::from_millis(100));
                let why = self.reap().map_or_else(|| "?".into(), Exit::describe);
                let text = self.stderr_text();
                return Err(format!(
                    "{} (pid {}) ended ({why}) before printing {pat:?}; its stderr:\n{}",
                    self.name, self.pid, text
                ));
            }
            if Instant::now() > end {
                let text = self.stderr_text();
                return Err(format!(
                    "{} (pid {}) printed no {pat:?} within {timeout:?}; its stderr:\n{}",
                    self.name, self.pid, text
                ));
            }
        }
    }

    /// Waits for the process to end and reaps it.
    fn wait_exit(&mut self, timeout: Duration) -> R<&Exit> {
        if self.reaped.is_none() {
            if self.exited_at.is_none() {
                let end = Instant::now() + timeout;
                loop {
                    check_interrupted()?;
                    match self.exited.recv_timeout(Duration::from_millis(20)) {
                        Ok(t) => {
                            self.exited_at = Some(t);
                            break;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                    if Instant::now() > end {
                        let text = self.stderr_text();
                        return Err(format!(
                            "{} (pid {}) did not exit within {timeout:?}; its stderr:\n{}",
                            self.name, self.pid, text
                        ));
                    }
                }
            }
            self.reap();
        }
        self.drain_lines();
        self.reaped
            .as_ref()
            .ok_or_else(|| format!("{}: could not reap pid {}", self.name, self.pid))
    }

    /// Reaps an exited child (after the waiter thread saw it exit).
    fn reap(&mut self) -> Option<&Exit> {
        if self.reaped.is_none() {
            let mut status = 0;
            // SAFETY: rusage is plain data that wait4 fills.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: pointers to locals; `pid` is our unreaped child.
            let r = unsafe { libc::wait4(self.pid, &mut status, 0, &mut ru) };
            if r == self.pid {
                let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
                let signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
                self.reaped = Some(Exit {
                    at: self.exited_at.unwrap_or_else(Instant::now),
                    code,
                    signal,
                    rusage: ru,
                });
            }
        }
        self.reaped.as_ref()
    }

    fn signal(&self, sig: libc::c_int) {
        if self.reaped.is_none() {
            // SAFETY: kill(2) on our own child, not yet reaped, so the PID cannot be reused.
            unsafe {
                libc::kill(self.pid, sig);
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; reaps.
    fn stop(&mut self, grace: Duration) {
        if self.reaped.is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        if self.exited.recv_timeout(grace).is_err() {
            eprintln!(
                "warning: {} (pid {}) ignored SIGTERM for {grace:?}; killing it",
                self.name, self.pid
            );
            self.signal(libc::SIGKILL);
            let _ = self.exited.recv_timeout(Duration::from_secs(10));
        }
        self.reap();
        self.drain_lines();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.exited.recv_timeout(Duration::from_secs(10));
            self.reap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc readers.

/// utime + stime of the whole process, in seconds.
fn proc_cpu(pid: libc::pid_t) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command name start at field 3 (state): utime is 14, stime 15.
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((ut + st) as f64 / clk_tck())
}

/// (RssAnon, RssFile) in KiB; `None` once the process is gone or a zombie.
fn proc_rss(pid: libc::pid_t) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("RssAnon:")?, field("RssFile:")?))
}

/// Bytes the process passed to write-like calls (sockets included).
fn proc_wchar(pid: libc::pid_t) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Busy CPU seconds of the whole machine (all cores) since boot.
fn machine_busy() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let l = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some(busy as f64 / clk_tck())
}

fn self_thread_cpu() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---------------------------------------------------------------------------------------------
// Memory sampler: every 50 ms, peak RssAnon/RssFile of some processes, and a timeline of the
// bytes one of them wrote (to find stalls).

#[derive(Clone, Copy, Default, Debug)]
struct Peak {
    anon_kb: u64,
    file_kb: u64,
}

/// Peaks per process, and the timeline of one process's written bytes.
type Samples = (Vec<Peak>, Vec<(Instant, u64)>);

struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Samples>>,
}

impl Sampler {
    fn start(pids: Vec<libc::pid_t>, wchar_of: Option<libc::pid_t>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peaks = vec![Peak::default(); pids.len()];
            let mut alive = vec![true; pids.len()];
            let mut timeline = Vec::new();
            let mut next = Instant::now();
            loop {
                for (i, &pid) in pids.iter().enumerate() {
                    if !alive[i] {
                        continue;
                    }
                    match proc_rss(pid) {
                        Some((a, f)) => {
                            peaks[i].anon_kb = peaks[i].anon_kb.max(a);
                            peaks[i].file_kb = peaks[i].file_kb.max(f);
                        }
                        None => alive[i] = false,
                    }
                }
                if let Some(w) = wchar_of.and_then(proc_wchar) {
                    timeline.push((Instant::now(), w));
                }
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                next += Duration::from_millis(50);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            (peaks, timeline)
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Samples {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// From a timeline of a byte counter sampled from `from` on: when it first moved (seconds
/// after `from`), the longest stretch between that and `to` in which it did not move, and
/// when that stretch began (seconds after `from`).
fn progress_gaps(timeline: &[(Instant, u64)], from: Instant, to: Instant) -> (f64, f64, f64) {
    let nan = (f64::NAN, f64::NAN, f64::NAN);
    let Some(&(_, base)) = timeline.first() else {
        return nan;
    };
    let mut first = None;
    let mut longest = (Duration::ZERO, from);
    let mut last_change = from;
    let mut last_value = base;
    for &(t, v) in timeline {
        if t > to {
            break;
        }
        if v != last_value {
            if first.is_none() {
                first = Some(t);
            } else if t.saturating_duration_since(last_change) > longest.0 {
                longest = (t.saturating_duration_since(last_change), last_change);
            }
            last_change = t;
            last_value = v;
        }
    }
    let Some(first) = first else {
        return nan;
    };
    if to.saturating_duration_since(last_change) > longest.0 {
        longest = (to.saturating_duration_since(last_change), last_change);
    }
    (
        first.saturating_duration_since(from).as_secs_f64(),
        longest.0.as_secs_f64(),
        longest.1.saturating_duration_since(from).as_secs_f64(),
    )
}

/// The kernel threads that run deferred network work (loopback TCP lands there when the
/// sending process cannot do it inline).
fn ksoftirqd_pids() -> Vec<libc::pid_t> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.starts_with("ksoftirqd/") {
            v.push(pid);
        }
    }
    v
}

/// CPU seconds of the ksoftirqd threads so far.
fn ksoftirqd_cpu(pids: &[libc::pid_t]) -> f64 {
    pids.iter().filter_map(|&p| proc_cpu(p)).sum()
}

/// bitmill processes on this machine that are not ours (they skew the figures).
fn foreign_bitmills(ours: &[libc::pid_t]) -> Vec<String> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if ours.contains(&pid) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "bitmill" {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd: Vec<String> = cmd
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .skip(1)
            .take(3)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        v.push(format!("{pid} ({})", cmd.join(" ")));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Shared set-up: the data file, the torrent, a resume record for the seeder, a warm cache.

struct Setup {
    tmp: TempDir,
    bitmill: PathBuf,
    src_dir: PathBuf,
    src_file: PathBuf,
    torrent: PathBuf,
    seed_resume: PathBuf,
    meta: Metainfo,
}

fn bitmill_path(c: &Common) -> R<PathBuf> {
    let p = match &c.bitmill {
        Some(p) => p.clone(),
        None => {
            let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            // target/release/examples/throughput -> target/release/bitmill
            exe.parent()
                .and_then(Path::parent)
                .map(|d| d.join("bitmill"))
                .ok_or("cannot find target/release from this executable")?
        }
    };
    if !p.is_file() {
        return Err(format!(
            "{} does not exist: run `cargo build --release` first (or pass --bitmill PATH)",
            p.display()
        ));
    }
    Ok(p)
}

fn run_quiet(what: &str, cmd: &mut Command, timeout: Duration) -> R<()> {
    let mut p = Proc::spawn(what, cmd)?;
    let code = p.wait_exit(timeout)?.code;
    if code != Some(0) {
        let why = p.reaped.as_ref().map_or_else(|| "?".into(), Exit::describe);
        return Err(format!(
            "{what} failed ({why}): {cmd:?}\n{}",
            p.stderr_text()
        ));
    }
    Ok(())
}

fn read_whole(path: &Path) -> R<f64> {
    let t = Instant::now();
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 8 << 20];
    loop {
        check_interrupted()?;
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

fn setup(c: &Common) -> R<Setup> {
    let bitmill = bitmill_path(c)?;
    let tmp = TempDir::new("bitmill-throughput", c.dir.as_deref())?;
    let src_dir = tmp.0.join("src");
    let seed_resume = tmp.0.join("seed-resume");
    for d in [&src_dir, &seed_resume] {
        std::fs::create_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let src_file = src_dir.join("data.bin");
    let torrent = tmp.0.join("data.torrent");

    // The data: random bytes from bitmill's own generator, written once.
    let t = Instant::now();
    {
        let mut f = File::create(&src_file).map_err(|e| format!("{}: {e}", src_file.display()))?;
        let mut rng = Rng::new(c.data_seed);
        let mut buf = vec![0u8; 4 << 20];
        let mut left = c.size;
        while left > 0 {
            check_interrupted()?;
            let n = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..n]);
            f.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", src_file.display()))?;
            left -= n as u64;
        }
    }
    eprintln!(
        "made {} of random data in {:.1} s: {}",
        fmt_size(c.size),
        t.elapsed().as_secs_f64(),
        src_file.display()
    );

    let t = Instant::now();
    let to = Duration::from_secs(c.timeout);
    run_quiet(
        "bitmill create",
        Command::new(&bitmill)
            .arg("create")
            .arg(&src_file)
            .args(["-l", &c.piece_length, "-q", "--no-date", "-o"])
            .arg(&torrent),
        to,
    )?;
    // A resume record, so the seeder starts without hashing (and the cache is warm).
    run_quiet(
        "bitmill verify",
        Command::new(&bitmill)
            .arg("verify")
            .arg(&torrent)
            .arg(&src_dir)
            .args(["-q", "--resume-dir"])
            .arg(&seed_resume),
        to,
    )?;
    eprintln!(
        "created and verified the torrent in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let raw = std::fs::read(&torrent).map_err(|e| format!("{}: {e}", torrent.display()))?;
    let meta = Metainfo::from_bytes(&raw).map_err(|e| format!("{}: {e}", torrent.display()))?;
    Ok(Setup {
        tmp,
        bitmill,
        src_dir,
        src_file,
        torrent,
        seed_resume,
        meta,
    })
}

fn mem_available() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn start_seeder(s: &Setup, c: &Common, extra: &[String]) -> R<(Proc, SocketAddr)> {
    let mut cmd = Command::new(&s.bitmill);
    cmd.arg("seed")
        .arg(&s.torrent)
        .arg(&s.src_dir)
        .args(["--listen", "127.0.0.1:0", "-q", "--resume-dir"])
        .arg(&s.seed_resume)
        .args(extra)
        .args(&c.seed_args);
    let mut p = Proc::spawn("bitmill seed", &mut cmd)?;
    let (_, line) = p.wait_line("listening on ", Duration::from_secs(c.timeout))?;
    let addr_s = line
        .split("listening on ")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    let addr: SocketAddr = addr_s
        .parse()
        .map_err(|_| format!("seeder printed an odd address: {line:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("seeder listens on {addr}, not on loopback"));
    }
    Ok((p, addr))
}

// ---------------------------------------------------------------------------------------------
// Report helpers.

fn fmt_size(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.2} GiB", n as f64 / GIB)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / MIB)
    } else {
        format!("{n} B")
    }
}

fn header(common: &Common, bitmill: &Path, mode: &str) -> (String, Value) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let cmd = format!(
        "cargo run --release --example throughput -- {}",
        quoted.join(" ")
    );
    let argv0 = std::env::args().next().unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let bin_age = std::fs::metadata(bitmill)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or_else(|| "?".into(), |d| format!("{} s ago", d.as_secs()));
    let git = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into());
    let mut s = String::new();
    s.push_str(&format!("# bitmill throughput, mode {mode}\n"));
    s.push_str(&format!("# command: {cmd}\n"));
    s.push_str(&format!(
        "#   (this binary: {} {})\n",
        shell_quote(&argv0),
        quoted.join(" ")
    ));
    s.push_str(&format!(
        "# bitmill: {} (built {bin_age}), git HEAD {git}\n",
        bitmill.display()
    ));
    s.push_str(&format!(
        "# machine: {nproc} CPUs, load average {} at start; size {} ({} bytes), piece length {}\n",
        loadavg(),
        fmt_size(common.size),
        common.size,
        common.piece_length
    ));
    let v = json!({
        "mode": mode,
        "command": cmd,
        "argv": std::env::args().collect::<Vec<_>>(),
        "bitmill": bitmill.display().to_string(),
        "git_head": git,
        "cpus": nproc,
        "loadavg_start": loadavg(),
        "size_bytes": common.size,
        "piece_length": common.piece_length,
    });
    (s, v)
}

/// Warns when the binary is older than the sources it is built from.
fn staleness_warning(bitmill: &Path) -> Option<String> {
    let bin = std::fs::metadata(bitmill).and_then(|m| m.modified()).ok()?;
    let (t, p) = newest_mtime(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))?;
    (t > bin).then(|| {
        format!(
            "# warning: {} is newer than {}: run `cargo build --release` to measure the current code\n",
            p.display(),
            bitmill.display()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// pair

#[derive(Debug, Clone)]
struct PairRun {
    bytes: u64,
    complete_s: f64,
    exit_s: f64,
    dl_cpu: f64,
    dl_user: f64,
    dl_sys: f64,
    seed_cpu: f64,
    seed_cpu_total: f64,
    dl_peak: Peak,
    seed_peak: Peak,
    first_byte_s: f64,
    stall_s: f64,
    stall_at_s: f64,
    foreign: Vec<String>,
    other_cores: f64,
    softirq_cores: f64,
    complete_line: String,
}

impl PairRun {
    fn gbps(&self) -> f64 {
        self.bytes as f64 / 1e9 / self.complete_s
    }
    fn gibps(&self) -> f64 {
        self.bytes as f64 / GIB / self.complete_s
    }
    fn gib(&self) -> f64 {
        self.bytes as f64 / GIB
    }
    fn cols(&self) -> [f64; 13] {
        [
            self.gbps(),
            self.gibps(),
            self.complete_s,
            self.exit_s,
            self.dl_cpu / self.gib(),
            self.seed_cpu / self.gib(),
            self.dl_peak.anon_kb as f64 / 1024.0,
            self.seed_peak.anon_kb as f64 / 1024.0,
            self.dl_peak.file_kb as f64 / 1024.0,
            self.seed_peak.file_kb as f64 / 1024.0,
            self.first_byte_s * 1000.0,
            self.stall_s * 1000.0,
            self.other_cores,
        ]
    }
}

const PAIR_COLS: [&str; 13] = [
    "GB/s",
    "GiB/s",
    "complete_s",
    "exit_s",
    "dl_cpu/GiB",
    "seed_cpu/GiB",
    "dl_anonMiB",
    "seed_anonMiB",
    "dl_fileMiB",
    "seed_fileMiB",
    "1st_byte_ms",
    "stall_ms",
    "other_cores",
];

fn pair_row(label: &str, v: &[f64; 13]) -> String {
    let mut s = format!("{label:>6}");
    for (i, x) in v.iter().enumerate() {
        let w = PAIR_COLS[i].len().max(7);
        let prec = match i {
            0..=5 | 12 => 3,
            _ => 1,
        };
        s.push_str(&format!("  {x:>w$.prec$}"));
    }
    s
}

fn pair_one(s: &Setup, a: &PairArgs, run: usize) -> R<PairRun> {
    let c = &a.common;
    let timeout = Duration::from_secs(c.timeout);
    // Keep the source in the page cache (the seeder serves from it).
    let warm = read_whole(&s.src_file)?;
    let (mut seeder, addr) = start_seeder(s, c, &[])?;
    let seed_cpu_start = proc_cpu(seeder.pid).unwrap_or(0.0);

    let out = s.tmp.0.join(format!("run{run}"));
    let dl_resume = s.tmp.0.join(format!("run{run}-resume"));
    for d in [&out, &dl_resume] {
        std::fs::create_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let mut cmd = Command::new(&s.bitmill);
    cmd.arg("download")
        .arg(&s.torrent)
        .arg("-o")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--peer", &addr.to_string()])
        .arg("--resume-dir")
        .arg(&dl_resume)
        .args(&a.download_args);
    // Not -q: the `complete` line is what we time.

    let softirq_pids = ksoftirqd_pids();
    let softirq0 = ksoftirqd_cpu(&softirq_pids);
    let busy0 = machine_busy();
    let t0 = Instant::now();
    let mut dl = Proc::spawn("bitmill download", &mut cmd)?;
    let sampler = Sampler::start(vec![dl.pid, seeder.pid], Some(seeder.pid));
    let result = (|| -> R<PairRun> {
        let (t_complete, complete_line) = dl.wait_line(": complete", timeout)?;
        let exit = dl.wait_exit(timeout)?;
        if exit.code != Some(0) {
            return Err(format!(
                "download ended with {} after its complete line; stderr:\n{}",
                exit.describe(),
                dl.stderr_text()
            ));
        }
        let (t_exit, dl_cpu, dl_user, dl_sys) = (
            exit.at,
            exit.cpu(),
            tv(exit.rusage.ru_utime),
            tv(exit.rusage.ru_stime),
        );
        if seeder.poll_exit() {
            return Err(format!(
                "the seeder exited during the transfer; stderr:\n{}",
                seeder.stderr_text()
            ));
        }
        let seed_cpu_end = proc_cpu(seeder.pid).ok_or("cannot read the seeder's /proc stat")?;
        let busy1 = machine_busy();
        let softirq = ksoftirqd_cpu(&softirq_pids) - softirq0;
        let t1 = Instant::now();
        let (peaks, timeline) = sampler.finish();
        seeder.stop(Duration::from_secs(5));
        let seed_cpu = seed_cpu_end - seed_cpu_start;
        let (first_byte_s, stall_s, stall_at_s) = progress_gaps(&timeline, t0, t_complete);
        let foreign = foreign_bitmills(&[seeder.pid, dl.pid]);
        let other_cores = match (busy0, busy1) {
            (Some(b0), Some(b1)) => {
                ((b1 - b0) - seed_cpu - dl_cpu - softirq).max(0.0) / (t1 - t0).as_secs_f64()
            }
            _ => f64::NAN,
        };
        if c.verbose {
            dl.drain_lines();
            for (t, l) in &dl.log {
                eprintln!(
                    "  [{:8.3} s] download: {l}",
                    t.saturating_duration_since(t0).as_secs_f64()
                );
            }
            let base = timeline.first().map_or(0, |x| x.1);
            let mut last = u64::MAX;
            for &(t, w) in &timeline {
                if w != last {
                    eprintln!(
                        "  [{:8.3} s] seeder has written {:.1} MB",
                        t.saturating_duration_since(t0).as_secs_f64(),
                        (w - base) as f64 / 1e6
                    );
                    last = w;
                }
            }
        }
        Ok(PairRun {
            bytes: c.size,
            complete_s: (t_complete - t0).as_secs_f64(),
            exit_s: (t_exit - t0).as_secs_f64(),
            dl_cpu,
            dl_user,
            dl_sys,
            seed_cpu,
            seed_cpu_total: seed_cpu_end,
            dl_peak: peaks.first().copied().unwrap_or_default(),
            seed_peak: peaks.get(1).copied().unwrap_or_default(),
            first_byte_s,
            stall_s,
            stall_at_s,
            foreign,
            other_cores,
            softirq_cores: softirq / (t1 - t0).as_secs_f64(),
            complete_line,
        })
    })();
    drop(seeder);
    drop(dl);
    let r = result?;

    // Byte-for-byte check, then free the space.
    let got = out.join(&s.meta.info.name);
    compare_files(&s.src_file, &got)?;
    std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::remove_dir_all(&dl_resume).map_err(|e| format!("{}: {e}", dl_resume.display()))?;
    eprintln!(
        "run {run}: {:.3} GB/s, complete {:.3} s, exit {:.3} s; longest stall {:.0} ms at {:.2} s; ksoftirqd {:.2} cores, other processes {:.2} cores; cache warm-up read {:.2} s; {}",
        r.gbps(),
        r.complete_s,
        r.exit_s,
        r.stall_s * 1000.0,
        r.stall_at_s,
        r.softirq_cores,
        r.other_cores,
        warm,
        r.complete_line.trim()
    );
    Ok(r)
}

fn compare_files(a: &Path, b: &Path) -> R<()> {
    let la = std::fs::metadata(a)
        .map_err(|e| format!("{}: {e}", a.display()))?
        .len();
    let lb = std::fs::metadata(b)
        .map_err(|e| format!("{}: {e}", b.display()))?
        .len();
    if la != lb {
        return Err(format!(
            "downloaded file {} has {lb} bytes, the source {la}",
            b.display()
        ));
    }
    let mut fa = File::open(a).map_err(|e| format!("{}: {e}", a.display()))?;
    let mut fb = File::open(b).map_err(|e| format!("{}: {e}", b.display()))?;
    let mut ba = vec![0u8; 8 << 20];
    let mut bb = vec![0u8; 8 << 20];
    let mut off = 0u64;
    while off < la {
        check_interrupted()?;
        let n = (la - off).min(ba.len() as u64) as usize;
        fa.read_exact(&mut ba[..n])
            .map_err(|e| format!("{}: {e}", a.display()))?;
        fb.read_exact(&mut bb[..n])
            .map_err(|e| format!("{}: {e}", b.display()))?;
        if ba[..n] != bb[..n] {
            let i = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            let at = off + i as u64;
            let bad = ba[..n].iter().zip(&bb[..n]).filter(|(x, y)| x != y).count();
            return Err(format!(
                "downloaded data differs from the source: first at byte {at} (piece {}, block offset {}), {bad} differing bytes in that 8 MiB chunk",
                at / 262_144,
                at % 262_144
            ));
        }
        off += n as u64;
    }
    Ok(())
}

fn pair(a: PairArgs) -> R<()> {
    let c = &a.common;
    if a.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let bitmill = bitmill_path(c)?;
    let (mut report, mut jv) = header(c, &bitmill, "pair");
    if let Some(w) = staleness_warning(&bitmill) {
        report.push_str(&w);
    }
    if let Some(avail) = mem_available() {
        if c.size.saturating_mul(3) > avail {
            report.push_str(&format!(
                "# warning: {} of data (source + download) and only {} of memory available: the page cache may not hold it\n",
                fmt_size(c.size * 2),
                fmt_size(avail)
            ));
        }
    }
    emit(c.json, &report);
    let s = setup(c)?;
    let mut runs = Vec::new();
    for i in 1..=a.runs {
        runs.push(pair_one(&s, &a, i)?);
    }
    drop(s);

    let mut t = String::new();
    t.push_str(&format!(
        "# {} runs of {} seed -> download; GB = 1e9 bytes; times from spawning the download; \
         cpu = user+system s per GiB (seeder: during the transfer); peak Rss sampled every 50 ms; \
         1st_byte = until the seeder's first write (50 ms samples); stall = longest time after that in which the seeder wrote nothing, until `complete` (50 ms resolution: ~50 means no stall); other_cores = CPU used by \
         other processes (ksoftirqd not counted) from spawning the download to stopping the seeder\n",
        a.runs,
        fmt_size(c.size)
    ));
    let mut h = format!("{:>6}", "run");
    for name in PAIR_COLS {
        let w = name.len().max(7);
        h.push_str(&format!("  {name:>w$}"));
    }
    t.push_str(&h);
    t.push('\n');
    for (i, r) in runs.iter().enumerate() {
        t.push_str(&pair_row(&(i + 1).to_string(), &r.cols()));
        t.push('\n');
    }
    let mut med = [0f64; 13];
    for (j, m) in med.iter_mut().enumerate() {
        *m = median(runs.iter().map(|r| r.cols()[j]).collect());
    }
    t.push_str(&pair_row("median", &med));
    t.push('\n');
    t.push_str(&format!("# load average at end: {}\n", loadavg()));
    let busy = median(runs.iter().map(|r| r.other_cores).collect());
    let mut foreign: Vec<&String> = runs.iter().flat_map(|r| &r.foreign).collect();
    foreign.sort();
    foreign.dedup();
    if !foreign.is_empty() {
        t.push_str(&format!(
            "# note: bitmill processes not started by this tool were running: {}\n",
            foreign
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if busy > 0.25 {
        t.push_str(&format!(
            "# note: other processes used {busy:.2} cores on average during the runs (median): the machine was busy, figures are pessimistic\n"
        ));
    }
    emit(c.json, &t);

    let run_json: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "bytes": r.bytes,
                "gb_per_s": r.gbps(),
                "gib_per_s": r.gibps(),
                "complete_s": r.complete_s,
                "exit_s": r.exit_s,
                "download_cpu_s": r.dl_cpu,
                "download_user_s": r.dl_user,
                "download_sys_s": r.dl_sys,
                "download_cpu_s_per_gib": r.dl_cpu / r.gib(),
                "seed_cpu_s": r.seed_cpu,
                "seed_cpu_total_s": r.seed_cpu_total,
                "seed_cpu_s_per_gib": r.seed_cpu / r.gib(),
                "download_peak_rss_anon_kib": r.dl_peak.anon_kb,
                "download_peak_rss_file_kib": r.dl_peak.file_kb,
                "seed_peak_rss_anon_kib": r.seed_peak.anon_kb,
                "seed_peak_rss_file_kib": r.seed_peak.file_kb,
                "first_byte_s": finite(r.first_byte_s),
                "longest_stall_s": finite(r.stall_s),
                "longest_stall_at_s": finite(r.stall_at_s),
                "other_bitmill_processes": r.foreign,
                "other_cores": finite(r.other_cores),
                "ksoftirqd_cores": finite(r.softirq_cores),
                "complete_line": r.complete_line,
            })
        })
        .collect();
    let mut mj = serde_json::Map::new();
    for (j, name) in [
        "gb_per_s",
        "gib_per_s",
        "complete_s",
        "exit_s",
        "download_cpu_s_per_gib",
        "seed_cpu_s_per_gib",
        "download_peak_rss_anon_mib",
        "seed_peak_rss_anon_mib",
        "download_peak_rss_file_mib",
        "seed_peak_rss_file_mib",
        "first_byte_ms",
        "longest_stall_ms",
        "other_cores",
    ]
    .iter()
    .enumerate()
    {
        mj.insert(name.to_string(), json!(finite(med[j])));
    }
    jv["runs"] = json!(run_json);
    jv["median"] = Value::Object(mj);
    jv["loadavg_end"] = json!(loadavg());
    if c.json {
        println!("{jv}");
    }
    Ok(())
}

fn emit(json: bool, report: &str) {
    if json {
        eprint!("{report}");
    } else {
        print!("{report}");
        let _ = std::io::stdout().flush();
    }
}

// ---------------------------------------------------------------------------------------------
// many: the load generator.

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    Connecting,
    Handshake,
    Active,
    Closed,
}

struct Conn {
    sock: mio::net::TcpStream,
    phase: Phase,
    inbuf: BytesMut,
    out: BytesMut,
    writable_registered: bool,
    decoder: Decoder,
    choked: bool,
    in_flight: usize,
    bytes: u64,
    window_start: u64,
    window_end: u64,
    chokes: u32,
    unchokes: u32,
    error: Option<String>,
}

struct Gen {
    poll: mio::Poll,
    conns: Vec<Conn>,
    info_hash: [u8; 20],
    layout: bitmill::metainfo::Layout,
    depth: usize,
    rng: Rng,
    requests: u64,
    read_calls: u64,
}

const READ_CHUNK: usize = 256 * 1024;

fn peer_id(i: usize) -> [u8; 20] {
    let mut id = [0u8; 20];
    let s = format!("-TP0001-{i:012}");
    id.copy_from_slice(&s.as_bytes()[..20]);
    id
}

impl Gen {
    fn connect(&mut self, addr: SocketAddr, n: usize) -> R<()> {
        let num_pieces = self.layout.num_pieces();
        for i in 0..n {
            let mut sock = mio::net::TcpStream::connect(addr)
                .map_err(|e| format!("connect {addr} (#{i}): {e}"))?;
            self.poll
                .registry()
                .register(
                    &mut sock,
                    mio::Token(i),
                    mio::Interest::READABLE | mio::Interest::WRITABLE,
                )
                .map_err(|e| format!("register: {e}"))?;
            self.conns.push(Conn {
                sock,
                phase: Phase::Connecting,
                inbuf: BytesMut::with_capacity(READ_CHUNK * 2),
                out: BytesMut::with_capacity(4096),
                writable_registered: true,
                decoder: Decoder::with_max_block_len(num_pieces, BLOCK),
                choked: true,
                in_flight: 0,
                bytes: 0,
                window_start: 0,
                window_end: 0,
                chokes: 0,
                unchokes: 0,
                error: None,
            });
        }
        Ok(())
    }

    fn close(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        if c.phase == Phase::Closed {
            return;
        }
        let _ = self.poll.registry().deregister(&mut c.sock);
        let _ = c.sock.shutdown(std::net::Shutdown::Both);
        c.phase = Phase::Closed;
        c.error = Some(why);
    }

    fn event(&mut self, i: usize, ev: &mio::event::Event) {
        if i >= self.conns.len() || self.conns[i].phase == Phase::Closed {
            return;
        }
        if self.conns[i].phase == Phase::Connecting {
            if !(ev.is_writable() || ev.is_error() || ev.is_write_closed()) {
                return;
            }
            let c = &mut self.conns[i];
            match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => return self.close(i, format!("connect: {e}")),
                Ok(None) => {}
            }
            match c.sock.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
                Err(e) => return self.close(i, format!("connect: {e}")),
            }
            let _ = c.sock.set_nodelay(true);
            c.phase = Phase::Handshake;
            let hs = Handshake::new(self.info_hash, peer_id(i)).encode();
            c.out.extend_from_slice(&hs);
            encode(&Message::Interested, &mut c.out);
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.read(i);
        }
        self.pump(i);
    }

    fn read(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            if c.phase == Phase::Closed {
                return;
            }
            c.inbuf.reserve(READ_CHUNK);
            let spare = c.inbuf.chunk_mut();
            let (ptr, cap) = (spare.as_mut_ptr(), spare.len());
            // SAFETY: `ptr..ptr+cap` is the buffer's spare capacity, which recv writes (never
            // reads); we never form a reference to the uninitialised part.
            let n = unsafe { libc::recv(c.sock.as_raw_fd(), ptr.cast(), cap, 0) };
            self.read_calls += 1;
            if n > 0 {
                // SAFETY: recv initialised the first `n` bytes of the spare capacity.
                unsafe { c.inbuf.advance_mut(n as usize) };
                if let Err(e) = self.process(i) {
                    return self.close(i, e);
                }
                continue;
            }
            if n == 0 {
                return self.close(i, "closed by the seeder (EOF)".into());
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock => return,
                std::io::ErrorKind::Interrupted => continue,
                _ => return self.close(i, format!("read: {e}")),
            }
        }
    }

    fn process(&mut self, i: usize) -> R<()> {
        let c = &mut self.conns[i];
        if c.phase == Phase::Handshake {
            match Handshake::decode(&mut c.inbuf) {
                Ok(None) => return Ok(()),
                Ok(Some(h)) => {
                    if h.info_hash != self.info_hash {
                        return Err("handshake for another torrent".into());
                    }
                    c.phase = Phase::Active;
                }
                Err(e) => return Err(format!("handshake: {e}")),
            }
        }
        loop {
            match c.decoder.decode(&mut c.inbuf) {
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("protocol: {e}")),
                Ok(Some(m)) => match m {
                    Message::Piece { block, .. } => {
                        c.bytes += block.len() as u64;
                        c.in_flight = c.in_flight.saturating_sub(1);
                    }
                    Message::Choke => {
                        if !c.choked {
                            c.chokes += 1;
                        }
                        c.choked = true;
                        // BEP 3: a choke discards the requests the seeder holds.
                        c.in_flight = 0;
                    }
                    Message::Unchoke => {
                        if c.choked {
                            c.unchokes += 1;
                        }
                        c.choked = false;
                    }
                    Message::RejectRequest { .. } => {
                        c.in_flight = c.in_flight.saturating_sub(1);
                    }
                    _ => {}
                },
            }
        }
    }

    /// Tops up the requests and writes what is queued.
    fn pump(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.phase == Phase::Active && !c.choked {
            while c.in_flight < self.depth {
                let n = self.layout.num_pieces();
                let Some(p) = self.layout.piece(self.rng.below(u64::from(n)) as u32) else {
                    break;
                };
                let plen = self.layout.piece_len(p);
                let blocks = plen.div_ceil(BLOCK);
                let begin = self.rng.below(u64::from(blocks)) as u32 * BLOCK;
                let length = BLOCK.min(plen - begin);
                encode(
                    &Message::Request {
                        index: p.get(),
                        begin,
                        length,
                    },
                    &mut c.out,
                );
                c.in_flight += 1;
                self.requests += 1;
            }
        }
        if c.phase == Phase::Connecting || c.phase == Phase::Closed {
            return;
        }
        while !c.out.is_empty() {
            match c.sock.write(&c.out) {
                Ok(0) => return self.close(i, "write returned 0".into()),
                Ok(n) => {
                    let _ = c.out.split_to(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(i, format!("write: {e}")),
            }
        }
        // Ask for WRITABLE only while output is queued.
        let want = !c.out.is_empty();
        if want != c.writable_registered {
            let interest = if want {
                mio::Interest::READABLE | mio::Interest::WRITABLE
            } else {
                mio::Interest::READABLE
            };
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut c.sock, mio::Token(i), interest)
            {
                return self.close(i, format!("reregister: {e}"));
            }
            c.writable_registered = want;
        }
    }

    fn total(&self) -> u64 {
        self.conns.iter().map(|c| c.bytes).sum()
    }

    fn count(&self, f: impl Fn(&Conn) -> bool) -> usize {
        self.conns.iter().filter(|c| f(c)).count()
    }
}

fn many(a: ManyArgs) -> R<()> {
    let c = &a.common;
    if a.conns == 0
        || a.depth == 0
        || a.seconds.is_nan()
        || a.seconds <= 0.0
        || a.warmup.is_nan()
        || a.warmup < 0.0
    {
        return Err("--conns, --depth and --seconds must be positive".into());
    }
    let bitmill = bitmill_path(c)?;
    let (mut report, mut jv) = header(c, &bitmill, "many");
    if let Some(w) = staleness_warning(&bitmill) {
        report.push_str(&w);
    }
    emit(c.json, &report);
    let s = setup(c)?;
    read_whole(&s.src_file)?;
    let extra = vec![
        "--upload-slots".to_string(),
        a.upload_slots.to_string(),
        "--max-peers".to_string(),
        a.max_peers.to_string(),
    ];
    let (mut seeder, addr) = start_seeder(&s, c, &extra)?;
    let sampler = Sampler::start(vec![seeder.pid], None);

    let mut g = Gen {
        poll: mio::Poll::new().map_err(|e| format!("poll: {e}"))?,
        conns: Vec::with_capacity(a.conns),
        info_hash: s.meta.info_hash.0,
        layout: s.meta.info.layout().clone(),
        depth: a.depth,
        rng: Rng::new(0x7470_7574 ^ c.data_seed),
        requests: 0,
        read_calls: 0,
    };
    eprintln!(
        "seeder pid {} on {addr}; opening {} connections, depth {}, warm-up {:.1} s, measuring {:.1} s",
        seeder.pid, a.conns, a.depth, a.warmup, a.seconds
    );
    let start = Instant::now();
    g.connect(addr, a.conns)?;
    let window_start_at = start + Duration::from_secs_f64(a.warmup);
    let mut end_at = window_start_at + Duration::from_secs_f64(a.seconds);
    let mut events = mio::Events::with_capacity(1024);
    let mut in_window = false;
    let mut next_second = window_start_at + Duration::from_secs(1);
    let mut per_second: Vec<f64> = Vec::new();
    let mut last_total = 0u64;
    let mut last_second_at = window_start_at;
    let (mut seed_cpu0, mut gen_cpu0, mut busy0) = (0.0, 0.0, None);
    let mut at_start = json!({});
    let mut t_window_start = window_start_at;
    let mut longest_quiet = Duration::ZERO;
    let mut last_progress = Instant::now();
    let mut progress_total = 0u64;
    let seed_cpu_before = proc_cpu(seeder.pid).unwrap_or(0.0);
    let softirq_pids = ksoftirqd_pids();
    let mut softirq0 = 0.0;
    loop {
        check_interrupted()?;
        if seeder.poll_exit() {
            return Err(format!(
                "the seeder exited during the test; stderr:\n{}",
                seeder.stderr_text()
            ));
        }
        let now = Instant::now();
        if !in_window && now >= window_start_at {
            in_window = true;
            t_window_start = now;
            end_at = now + Duration::from_secs_f64(a.seconds);
            seed_cpu0 = proc_cpu(seeder.pid).unwrap_or(0.0);
            gen_cpu0 = self_thread_cpu();
            busy0 = machine_busy();
            softirq0 = ksoftirqd_cpu(&softirq_pids);
            for conn in &mut g.conns {
                conn.window_start = conn.bytes;
            }
            last_total = g.total();
            last_second_at = now;
            next_second = now + Duration::from_secs(1);
            last_progress = now;
            progress_total = last_total;
            at_start = json!({
                "active": g.count(|c| c.phase == Phase::Active),
                "unchoked": g.count(|c| c.phase == Phase::Active && !c.choked),
                "closed": g.count(|c| c.phase == Phase::Closed),
                "connecting": g.count(|c| c.phase == Phase::Connecting),
                "handshaking": g.count(|c| c.phase == Phase::Handshake),
            });
            eprintln!("window starts: {at_start}");
        }
        if in_window && now >= next_second {
            let t = g.total();
            per_second.push((t - last_total) as f64 / 1e9 / (now - last_second_at).as_secs_f64());
            last_total = t;
            last_second_at = now;
            next_second += Duration::from_secs(1);
        }
        if in_window && now >= end_at {
            break;
        }
        let deadline = if in_window {
            end_at.min(next_second)
        } else {
            window_start_at
        };
        let timeout = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(50));
        match g.poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        for ev in events.iter() {
            g.event(ev.token().0, ev);
        }
        if in_window {
            let t = g.total();
            let now = Instant::now();
            if t != progress_total {
                longest_quiet = longest_quiet.max(now - last_progress);
                progress_total = t;
                last_progress = now;
            }
        }
    }
    let t_end = Instant::now();
    let window = (t_end - t_window_start).as_secs_f64();
    if t_end - last_second_at >= Duration::from_millis(100) {
        let t = g.total();
        per_second.push((t - last_total) as f64 / 1e9 / (t_end - last_second_at).as_secs_f64());
    }
    longest_quiet = longest_quiet.max(t_end - last_progress);
    for conn in &mut g.conns {
        conn.window_end = conn.bytes;
    }
    let seed_cpu1 = proc_cpu(seeder.pid).ok_or("cannot read the seeder's /proc stat")?;
    let foreign = foreign_bitmills(&[seeder.pid]);
    let gen_cpu = self_thread_cpu() - gen_cpu0;
    let busy1 = machine_busy();
    let softirq = ksoftirqd_cpu(&softirq_pids) - softirq0;
    let (peaks, _) = sampler.finish();
    let active_end = g.count(|c| c.phase == Phase::Active);
    let unchoked_end = g.count(|c| c.phase == Phase::Active && !c.choked);
    let closed: Vec<(usize, String)> = g
        .conns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.error.clone().map(|e| (i, e)))
        .collect();
    let chokes: u32 = g.conns.iter().map(|c| c.chokes).sum();
    let unchokes: u32 = g.conns.iter().map(|c| c.unchokes).sum();
    let mut per_conn: Vec<u64> = g
        .conns
        .iter()
        .map(|c| c.window_end - c.window_start)
        .collect();
    per_conn.sort_unstable();
    let total_bytes: u64 = per_conn.iter().sum();
    let (requests, read_calls) = (g.requests, g.read_calls);
    drop(g);
    seeder.stop(Duration::from_secs(5));
    let seeder_log = seeder.stderr_text();
    let seeder_exit = seeder
        .reaped
        .as_ref()
        .map_or_else(|| "?".into(), Exit::describe);
    drop(seeder);
    drop(s);

    let seed_cpu = seed_cpu1 - seed_cpu0;
    let gbps = total_bytes as f64 / 1e9 / window;
    let gib = total_bytes as f64 / GIB;
    let rate = |b: u64| b as f64 / 1e6 / window;
    let min = per_conn.first().copied().unwrap_or(0);
    let max = per_conn.last().copied().unwrap_or(0);
    let med = median(per_conn.iter().map(|&b| b as f64).collect());
    let other_cores = match (busy0, busy1) {
        (Some(b0), Some(b1)) => ((b1 - b0) - seed_cpu - gen_cpu - softirq).max(0.0) / window,
        _ => f64::NAN,
    };
    let seed_peak = peaks.first().copied().unwrap_or_default();
    let idle = per_conn.iter().filter(|&&b| b == 0).count();

    let mut t = String::new();
    t.push_str(&format!(
        "# many: {} connections, depth {} x 16 KiB, seeder --upload-slots {} --max-peers {}; \
         {:.2} s measured after {:.1} s warm-up; GB = 1e9 bytes\n",
        a.conns, a.depth, a.upload_slots, a.max_peers, window, a.warmup
    ));
    t.push_str(&format!(
        "total upload      {gbps:.3} GB/s ({:.3} GiB/s), {:.2} GB in {window:.2} s\n",
        total_bytes as f64 / GIB / window,
        total_bytes as f64 / 1e9
    ));
    t.push_str(&format!(
        "per connection    min {:.1}  median {:.1}  max {:.1} MB/s ({idle} received nothing)\n",
        rate(min),
        med / 1e6 / window,
        rate(max)
    ));
    t.push_str(&format!(
        "seeder            CPU {seed_cpu:.2} s in the window ({:.3} s/GiB, {:.0}% of a core); peak RssAnon {:.1} MiB, RssFile {:.1} MiB\n",
        seed_cpu / gib,
        100.0 * seed_cpu / window,
        seed_peak.anon_kb as f64 / 1024.0,
        seed_peak.file_kb as f64 / 1024.0
    ));
    t.push_str(&format!(
        "generator         CPU {gen_cpu:.2} s ({:.0}% of a core); {requests} requests, {read_calls} recv calls in all\n",
        100.0 * gen_cpu / window
    ));
    t.push_str(&format!(
        "connections       at window start {at_start}; at end {active_end} active, {unchoked_end} unchoked, {} closed; {chokes} chokes, {unchokes} unchokes seen\n",
        closed.len()
    ));
    let ps: Vec<String> = per_second.iter().map(|x| format!("{x:.2}")).collect();
    t.push_str(&format!("GB/s each second  {}\n", ps.join(" ")));
    t.push_str(&format!(
        "longest stretch without any block: {:.0} ms\n",
        longest_quiet.as_secs_f64() * 1000.0
    ));
    t.push_str(&format!(
        "# ksoftirqd used {:.2} cores; other processes {other_cores:.2} cores on average in the window; load average at end {}\n",
        softirq / window,
        loadavg()
    ));
    if other_cores > 0.25 {
        t.push_str("# note: the machine was busy, figures are pessimistic\n");
    }
    if !foreign.is_empty() {
        t.push_str(&format!(
            "# note: bitmill processes not started by this tool were running: {}\n",
            foreign.join(", ")
        ));
    }
    for (i, e) in closed.iter().take(10) {
        t.push_str(&format!("# connection {i} closed: {e}\n"));
    }
    if closed.len() > 10 {
        t.push_str(&format!("# ... and {} more closed\n", closed.len() - 10));
    }
    let seeder_said_more = seeder_log.lines().any(|l| {
        !l.trim().is_empty() && !l.contains("listening on ") && !l.contains("(no output)")
    });
    if seeder_said_more || seeder_exit != "exit status 0" {
        t.push_str(&format!(
            "# seeder stderr (it ended with {seeder_exit}):\n{seeder_log}"
        ));
    }
    emit(c.json, &t);

    jv["conns"] = json!(a.conns);
    jv["depth"] = json!(a.depth);
    jv["upload_slots"] = json!(a.upload_slots);
    jv["max_peers"] = json!(a.max_peers);
    jv["warmup_s"] = json!(a.warmup);
    jv["window_s"] = json!(window);
    jv["total_bytes"] = json!(total_bytes);
    jv["gb_per_s"] = json!(gbps);
    jv["gib_per_s"] = json!(total_bytes as f64 / GIB / window);
    jv["per_conn_mb_per_s"] = json!({
        "min": rate(min),
        "median": med / 1e6 / window,
        "max": rate(max),
    });
    jv["per_conn_bytes"] = json!(per_conn);
    jv["per_second_gb_per_s"] = json!(per_second);
    jv["longest_quiet_s"] = json!(longest_quiet.as_secs_f64());
    jv["seed_cpu_s"] = json!(seed_cpu);
    jv["seed_cpu_s_per_gib"] = json!(finite(seed_cpu / gib));
    jv["seed_cpu_startup_s"] = json!(seed_cpu_before);
    jv["seed_peak_rss_anon_kib"] = json!(seed_peak.anon_kb);
    jv["seed_peak_rss_file_kib"] = json!(seed_peak.file_kb);
    jv["generator_cpu_s"] = json!(gen_cpu);
    jv["other_cores"] = json!(finite(other_cores));
    jv["ksoftirqd_cores"] = json!(finite(softirq / window));
    jv["at_window_start"] = at_start;
    jv["at_end"] = json!({
        "active": active_end,
        "unchoked": unchoked_end,
        "closed": closed.len(),
        "chokes": chokes,
        "unchokes": unchokes,
    });
    jv["closed"] = json!(closed
        .iter()
        .map(|(i, e)| json!({"conn": i, "error": e}))
        .collect::<Vec<_>>());
    jv["loadavg_end"] = json!(loadavg());
    jv["other_bitmill_processes"] = json!(foreign);
    if c.json {
        println!("{jv}");
    }
    Ok(())
}

fn main() {
    install_signal_handlers();
    let cli = Cli::parse();
    let r = match cli.mode {
        None => pair(cli.pair),
        Some(Mode::Pair(p)) => pair(p),
        Some(Mode::Many(m)) => many(m),
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
