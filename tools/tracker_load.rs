//! Tracker load generator: runs `bitmill tracker` and `opentracker` on loopback, one after the
//! other, sends both the same closed-loop stream of announces from many simulated peers, and
//! reports answered announces per second, the server's CPU time and its memory.
//!
//! ```text
//! cargo build --release            # the driver runs target/release/bitmill
//! cargo run --release --example tracker_load -- [--seconds 10] [--http] [--server both] [--json]
//! cargo run --release --example tracker_load -- --rounds 3      # A B, B A, A B; medians
//! cargo run --release --example tracker_load -- --peers 200000 --torrents 1000 --warmup 4
//! ```
//!
//! - **UDP** (the default, BEP 15): `--peers` simulated peers (each with its own peer id, key
//!   and announced port) spread round-robin over `--torrents` torrents, sent from `--sockets`
//!   UDP sockets (peer `i` always uses socket `i % sockets`, so each peer keeps one source
//!   address) polled by one thread with `mio`. Each socket first gets a connection id
//!   (connect), refreshed every `--connid-refresh` seconds; then `--window` announces are kept
//!   outstanding and a new one (the next peer, round-robin) is sent as each answer arrives. A
//!   peer's first announce is `started`, later ones regular. Answers are matched by
//!   transaction id; a request unanswered after `--timeout-ms` is counted lost and re-sent
//!   with a new transaction id (an answer to the old one is then counted late).
//! - **HTTP** (`--http`): the same peers and window, one `GET /announce?...&compact=1` per TCP
//!   connection (the server closes it after answering), `--window` connections in flight.
//!
//! Every answer is decoded with bitmill's own codecs (`tracker::udp::Response`,
//! `tracker::http::ResponseReader` and `parse_announce_response`) and checked: it must parse,
//! name at least one peer, and name only simulated peers (127.0.0.1 and one of their ports).
//! Error answers, lost requests, late and malformed answers, connection errors and the kernel's
//! UDP/TCP drop counters are reported.
//!
//! After `--warmup` seconds (every peer has announced by then at the default load) the tool
//! counts answers for `--seconds` and reports the median over 1-second buckets and the overall
//! rate; the server's CPU seconds over the window (utime + stime from `/proc/PID/stat`, and per
//! thread from `/proc/PID/task`, so a server using several cores shows it), answers per
//! CPU-second, its peak `RssAnon` (sampled every 50 ms) and RssAnon growth per tracked peer;
//! for bitmill also its own counters from `GET /stats` (peers, estimated bytes per peer, table
//! memory, announces seen by the server). opentracker's `/stats?mode=peer` is read when it is
//! allowed (only for addresses blessed with `-A`, see `--opentracker-arg`). Drops at the
//! server's UDP socket (`/proc/net/udp`), the machine's CPU split (generator, softirq, other
//! processes) and a per-second count of lost requests show whether the server, the generator
//! or the machine set the rate. `--rounds N` measures each server N times in alternating order
//! and summarises with medians (a virtual machine's speed drifts by tens of percent).
//!
//! Reading the figures: the generator runs on the same machine. On 2 cores the server gets
//! one and the generator the other; when both are near 100% the announces per CPU-second of
//! the server are the figure to compare. With loopback TCP most of the connection set-up work
//! is done in the client's context, so the HTTP mode is bounded by the generator on small
//! machines. A window larger than what fits in the server's UDP receive buffer (about 256
//! datagrams of 98 bytes with the default 208 KiB) makes the kernel drop requests whenever the
//! server is the bottleneck; each drop idles one slot for `--timeout-ms`.
//!
//! Servers are started as
//!
//! ```text
//! bitmill tracker --listen 127.0.0.1:0 --whitelist DIR/whitelist.txt --stats-every 0
//! opentracker -i 127.0.0.1 -p PORT -P PORT -w DIR/whitelist.txt
//! ```
//!
//! with the same whitelist (one 40-digit hex info hash per line: Debian's opentracker only
//! tracks whitelisted torrents, so bitmill gets the same check). Run as root, Debian's
//! opentracker drops to user `nobody` by itself and does not chroot unless given `-d`, so the
//! whitelist is given as an absolute path in a folder `nobody` can read. Readiness is checked
//! with a probe announce (retried until the whitelist is loaded, which opentracker does on a
//! thread after start-up).
//!
//! Everything happens on 127.0.0.1 inside a fresh temporary folder (under `/tmp` or `--dir`),
//! which is removed at the end, on error and on Ctrl-C; servers are stopped by PID (SIGTERM,
//! then SIGKILL) and get `SIGKILL` from the kernel should this driver die
//! (`PR_SET_PDEATHSIG`). Every loop is bounded in time. `--json` prints one JSON object on
//! stdout and the human-readable report on stderr.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bitmill::rng::Rng;
use bitmill::tracker::http::{announce_url, get_request, parse_announce_response, ReadProgress};
use bitmill::tracker::http::{HttpResponse, ResponseReader};
use bitmill::tracker::udp::{AnnouncePacket, Request, Response};
use bitmill::tracker::{AnnounceRequest, Event, TrackerError};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

#[path = "common.rs"]
mod common;
use common::*;

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    /// `bitmill tracker` only.
    Bitmill,
    /// `opentracker` only.
    Opentracker,
    /// bitmill, then opentracker, with the same load.
    Both,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "tracker_load",
    about = "Announce load generator for bitmill tracker and opentracker (loopback only)"
)]
struct Cli {
    /// HTTP announces (one per TCP connection, compact=1) instead of UDP (BEP 15).
    #[arg(long)]
    http: bool,
    /// Which server(s) to measure, one after the other.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    server: Which,
    /// Simulated peers (distinct peer ids, keys and announced ports).
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Torrents the peers are spread over (round-robin); all go in the whitelist.
    #[arg(long, default_value_t = 100)]
    torrents: usize,
    /// Announces kept outstanding (closed loop: a new one is sent as each answer arrives).
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// UDP sockets the peers are spread over (UDP mode).
    #[arg(long, default_value_t = 16)]
    sockets: usize,
    /// Length of the measurement, seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// A request unanswered this long (milliseconds) is counted lost and re-sent.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Seconds between UDP connection-id refreshes (BEP 15: a client uses an id one minute).
    #[arg(long, default_value_t = 60.0)]
    connid_refresh: f64,
    /// `numwant` of every announce.
    #[arg(long, default_value_t = 50)]
    numwant: u32,
    /// Percentage of peers that announce as seeders (`left=0`).
    #[arg(long, default_value_t = 20)]
    seed_percent: u32,
    /// Announced port of the first peer of each torrent; peer `i` announces
    /// `port-base + i / torrents`.
    #[arg(long, default_value_t = 10_000)]
    port_base: u16,
    /// The bitmill binary (default: target/release/bitmill beside this example).
    #[arg(long, value_name = "PATH")]
    bitmill: Option<PathBuf>,
    /// The opentracker binary.
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/opentracker")]
    opentracker: PathBuf,
    /// Extra argument for `bitmill tracker` (repeat).
    #[arg(long = "tracker-arg", value_name = "ARG", allow_hyphen_values = true)]
    tracker_args: Vec<String>,
    /// Extra argument for opentracker (repeat; e.g. `--opentracker-arg=-A
    /// --opentracker-arg=127.0.0.1` lets the tool read its /stats).
    #[arg(
        long = "opentracker-arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    opentracker_args: Vec<String>,
    /// Folder in which the temporary folder is made (default /tmp).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Seconds a server gets to start and answer a probe announce.
    #[arg(long, default_value_t = 20)]
    startup_timeout: u64,
    /// Measure each server this many times, alternating the order (A B, B A, ...) so slow
    /// drifts of the machine hit both alike; the summary gives the median of the runs.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Seed of the info hashes.
    #[arg(long, default_value_t = 1)]
    hash_seed: u64,
    /// Print one JSON object with all results on stdout (the report goes to stderr).
    #[arg(long)]
    json: bool,
    /// Print the servers' stderr and every error message seen.
    #[arg(short, long)]
    verbose: bool,
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C: a flag every wait loop checks, so the guards below get to clean up.

// ---------------------------------------------------------------------------------------------
// Temporary folder, removed on drop.

// ---------------------------------------------------------------------------------------------
// Child processes: stderr lines with timestamps, exit noticed without reaping (so a kill by
// PID can never hit a recycled PID), reaped with wait4.

struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
}

impl Exit {
    fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit status {c}"),
            (_, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown exit".into(),
        }
    }
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

    /// An error saying the process ended, with its exit and stderr.
    fn ended_error(&mut self, during: &str) -> String {
        std::thread::sleep(Duration::from_millis(100));
        let why = self.reap().map_or_else(|| "?".into(), Exit::describe);
        let text = self.stderr_text();
        format!(
            "{} (pid {}) ended ({why}) {during}; its stderr:\n{text}",
            self.name, self.pid
        )
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
                    if let Ok(t) = self.exited.recv_timeout(Duration::from_secs(5)) {
                        self.exited_at = Some(t);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.poll_exit() {
                return Err(self.ended_error(&format!("before printing {pat:?}")));
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
                self.reaped = Some(Exit { code, signal });
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
        if self.exited_at.is_none() {
            self.signal(libc::SIGTERM);
            if self.exited.recv_timeout(grace).is_err() {
                eprintln!(
                    "warning: {} (pid {}) ignored SIGTERM for {grace:?}; killing it",
                    self.name, self.pid
                );
                self.signal(libc::SIGKILL);
                let _ = self.exited.recv_timeout(Duration::from_secs(10));
            }
        }
        self.reap();
        // The stderr reader thread needs a moment to pass on the last lines.
        std::thread::sleep(Duration::from_millis(50));
        self.drain_lines();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.signal(libc::SIGKILL);
            if self.exited_at.is_none() {
                let _ = self.exited.recv_timeout(Duration::from_secs(10));
            }
            self.reap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc readers.

/// utime + stime in seconds from the text of a `stat` file.
fn stat_cpu(s: &str) -> Option<f64> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command name start at field 3 (state): utime is 14, stime 15.
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((ut + st) as f64 / clk_tck())
}

/// utime + stime of the whole process (all threads), in seconds.
fn proc_cpu(pid: libc::pid_t) -> Option<f64> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds of every thread of a process: tid -> (name, seconds).
fn thread_cpus(pid: libc::pid_t) -> BTreeMap<i32, (String, f64)> {
    let mut m = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return m;
    };
    for e in rd.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let dir = e.path();
        let Some(cpu) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| stat_cpu(&s))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        m.insert(tid, (comm.trim().to_string(), cpu));
    }
    m
}

/// RssAnon in KiB; `None` once the process is gone or a zombie.
fn proc_rss_anon(pid: libc::pid_t) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
}

/// CPU seconds of the whole machine (all cores) since boot: (busy, of which in interrupts
/// and softirqs). Softirq time is where the kernel moves loopback packets and runs TCP.
/// Unless the kernel has `CONFIG_IRQ_TIME_ACCOUNTING`, that time is also charged to the task
/// it interrupted (tick accounting), so it overlaps the processes' own times.
fn machine_cpu() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let l = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let irq = v.get(5)? + v.get(6)?;
    let busy = v.first()? + v.get(1)? + v.get(2)? + irq + v.get(7)?;
    Some((busy as f64 / clk_tck(), irq as f64 / clk_tck()))
}

/// Drops counted on the UDP sockets bound to these local ports (`/proc/net/udp`, last
/// column): datagrams the kernel discarded because the socket's receive buffer was full.
fn udp_socket_drops(ports: &[u16]) -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            if !ports.contains(&port) {
                return None;
            }
            f.last()?.parse::<u64>().ok()
        })
        .sum()
}

fn self_thread_cpu() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The kernel's network counters (`/proc/net/snmp` and `/proc/net/netstat`), as
/// `Group.Name` -> value.
fn net_counters() -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for f in ["/proc/net/snmp", "/proc/net/netstat"] {
        let Ok(s) = std::fs::read_to_string(f) else {
            continue;
        };
        let lines: Vec<&str> = s.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            let mut n = names.split_whitespace();
            let mut v = values.split_whitespace();
            let (Some(group), Some(_)) = (n.next(), v.next()) else {
                continue;
            };
            let group = group.trim_end_matches(':');
            for (name, value) in n.zip(v) {
                if let Ok(x) = value.parse::<i64>() {
                    m.insert(format!("{group}.{name}"), x);
                }
            }
        }
    }
    m
}

/// Counters worth a look when they move: drops and failures of UDP and TCP on this machine.
const NET_WATCH: [&str; 12] = [
    "Udp.InErrors",
    "Udp.RcvbufErrors",
    "Udp.SndbufErrors",
    "Udp.NoPorts",
    "Tcp.AttemptFails",
    "Tcp.EstabResets",
    "Tcp.RetransSegs",
    "TcpExt.ListenOverflows",
    "TcpExt.ListenDrops",
    "TcpExt.TCPTimeWaitOverflow",
    "TcpExt.TCPAbortOnData",
    "TcpExt.TCPReqQFullDrop",
];

fn net_delta(a: &BTreeMap<String, i64>, b: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    NET_WATCH
        .iter()
        .filter_map(|k| {
            let d = b.get(*k)? - a.get(*k)?;
            (d != 0).then(|| (k.to_string(), d))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Memory sampler: peak RssAnon of one process, every 50 ms.

struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Sampler {
    fn start(pid: libc::pid_t) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            let mut next = Instant::now();
            while let Some(a) = proc_rss_anon(pid) {
                peak = a.max(peak);
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
            peak
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> u64 {
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

// ---------------------------------------------------------------------------------------------
// The simulated peers.

#[derive(Clone, Debug)]
struct Plan {
    peers: usize,
    torrents: usize,
    hashes: Vec<[u8; 20]>,
    numwant: u32,
    seed_percent: u32,
    port_base: u16,
}

impl Plan {
    fn new(a: &Cli) -> R<Plan> {
        if a.peers == 0 || a.torrents == 0 || a.window == 0 || a.sockets == 0 {
            return Err("--peers, --torrents, --window and --sockets must be positive".into());
        }
        if a.peers < a.window {
            return Err(
                "--peers must be at least --window (one request per peer at a time)".into(),
            );
        }
        if a.port_base < 2 {
            return Err(
                "--port-base must be at least 2 (the probe peer announces port-base - 1)".into(),
            );
        }
        let per_torrent = a.peers.div_ceil(a.torrents);
        if usize::from(a.port_base) + per_torrent > 65_536 {
            return Err(format!(
                "{per_torrent} peers per torrent do not fit in ports {}..=65535: lower --port-base or add --torrents",
                a.port_base
            ));
        }
        let mut rng = Rng::new(0x7472_6163_6b65_7221 ^ a.hash_seed);
        let hashes = (0..a.torrents)
            .map(|_| {
                let mut h = [0u8; 20];
                rng.fill(&mut h);
                h
            })
            .collect();
        Ok(Plan {
            peers: a.peers,
            torrents: a.torrents,
            hashes,
            numwant: a.numwant,
            seed_percent: a.seed_percent.min(100),
            port_base: a.port_base,
        })
    }

    fn per_torrent(&self) -> usize {
        self.peers.div_ceil(self.torrents)
    }

    fn port(&self, peer: usize) -> u16 {
        // Checked in `new`: port_base + per_torrent <= 65536.
        self.port_base + (peer / self.torrents) as u16
    }

    fn is_seed(&self, peer: usize) -> bool {
        ((peer / self.torrents) % 100) < self.seed_percent as usize
    }

    fn peer_id(peer: usize) -> [u8; 20] {
        let mut id = *b"-BM0100-000000000000";
        let digits = format!("{:012}", peer % 1_000_000_000_000);
        id[8..].copy_from_slice(digits.as_bytes());
        id
    }

    fn request(&self, peer: usize, event: Event) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: self.hashes[peer % self.torrents],
            peer_id: Self::peer_id(peer),
            port: self.port(peer),
            uploaded: 0,
            downloaded: 0,
            left: if self.is_seed(peer) { 0 } else { 1 << 30 },
            event,
            numwant: Some(self.numwant),
            key: peer as u32,
            tracker_id: None,
        }
    }

    /// The probe peer: not one of the simulated ones (another port, another id).
    fn probe_request(&self, event: Event) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: self.hashes[0],
            peer_id: *b"-BM0100-probeprobepr",
            port: self.port_base - 1,
            uploaded: 0,
            downloaded: 0,
            left: 1,
            event,
            numwant: Some(1),
            key: 0x7072_6f62,
            tracker_id: None,
        }
    }

    /// Whether `a` is one of the simulated peers.
    fn is_ours(&self, a: &SocketAddr) -> bool {
        a.ip() == IpAddr::V4(LOCALHOST)
            && a.port() >= self.port_base
            && usize::from(a.port() - self.port_base) < self.per_torrent()
    }

    fn whitelist(&self) -> String {
        let mut s = String::new();
        for h in &self.hashes {
            for b in h {
                s.push_str(&format!("{b:02x}"));
            }
            s.push('\n');
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Counters shared by both load generators.

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Announce requests sent (re-sends included).
    sent: u64,
    /// Announce answers that parsed and matched an outstanding request.
    answered: u64,
    /// Error answers (UDP error packet; HTTP `failure reason` or a status other than 200).
    errors: u64,
    /// Requests unanswered after the timeout (then re-sent).
    lost: u64,
    /// Answers to requests already counted lost, or with an unknown transaction id.
    late: u64,
    /// Answers that did not parse (or HTTP answers cut short).
    malformed: u64,
    /// Socket errors: send/recv (UDP); connect, read, write, reset (HTTP).
    conn_errors: u64,
    /// UDP sends that would have blocked (retried).
    send_blocked: u64,
    /// Announce answers naming no peer.
    empty: u64,
    /// Peers named in all answers.
    peers_named: u64,
    /// Peers named that are not simulated peers.
    foreign: u64,
    /// UDP connect answers.
    connects: u64,
    /// UDP connect requests unanswered after the timeout.
    connects_lost: u64,
}

impl Counts {
    fn minus(&self, o: &Counts) -> Counts {
        Counts {
            sent: self.sent - o.sent,
            answered: self.answered - o.answered,
            errors: self.errors - o.errors,
            lost: self.lost - o.lost,
            late: self.late - o.late,
            malformed: self.malformed - o.malformed,
            conn_errors: self.conn_errors - o.conn_errors,
            send_blocked: self.send_blocked - o.send_blocked,
            empty: self.empty - o.empty,
            peers_named: self.peers_named - o.peers_named,
            foreign: self.foreign - o.foreign,
            connects: self.connects - o.connects,
            connects_lost: self.connects_lost - o.connects_lost,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "sent": self.sent,
            "answered": self.answered,
            "errors": self.errors,
            "lost": self.lost,
            "late": self.late,
            "malformed": self.malformed,
            "conn_errors": self.conn_errors,
            "send_blocked": self.send_blocked,
            "answers_without_peers": self.empty,
            "peers_named": self.peers_named,
            "foreign_peers": self.foreign,
            "udp_connects": self.connects,
            "udp_connects_lost": self.connects_lost,
        })
    }

    fn problems(&self) -> u64 {
        self.errors + self.lost + self.late + self.malformed + self.conn_errors + self.foreign
    }
}

/// Distinct messages (errors, failures) with counts; at most 32 kept apart.
#[derive(Default, Debug)]
struct Msgs(BTreeMap<String, u64>);

impl Msgs {
    fn add(&mut self, m: impl Into<String>) {
        let m = m.into();
        if self.0.len() >= 32 && !self.0.contains_key(&m) {
            *self.0.entry("(other messages)".into()).or_default() += 1;
        } else {
            *self.0.entry(m).or_default() += 1;
        }
    }
}

/// A load generator the measuring loop drives.
trait Load {
    /// Connects (UDP) and sends the first `--window` requests.
    fn begin(&mut self, deadline: Instant) -> R<()>;
    /// Waits up to `timeout` for answers and handles them (sending follow-ups).
    fn step(&mut self, timeout: Duration) -> R<()>;
    /// Timeouts, re-sends, connection-id refreshes.
    fn maintain(&mut self, now: Instant);
    fn counts(&self) -> Counts;
    fn msgs(&self) -> &Msgs;
    /// Simulated peers that got at least one announce answered.
    fn announced(&self) -> usize;
    /// Local ports of the generator's UDP sockets.
    fn udp_ports(&self) -> Vec<u16> {
        Vec::new()
    }
}

/// Checks an answer's peers.
fn check_peers<'a>(
    plan: &Plan,
    c: &mut Counts,
    peers: impl ExactSizeIterator<Item = &'a SocketAddr>,
) {
    let n = peers.len() as u64;
    c.answered += 1;
    c.peers_named += n;
    if n == 0 {
        c.empty += 1;
    }
    for p in peers {
        if !plan.is_ours(p) {
            c.foreign += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// UDP load.

struct USock {
    sock: mio::net::UdpSocket,
    conn_id: Option<u64>,
    id_at: Instant,
    connect_tid: Option<u32>,
    connect_sent: Instant,
}

#[derive(Clone, Copy)]
struct Slot {
    tid: u32,
    peer: usize,
    sent: Instant,
    live: bool,
    /// The last send would have blocked: send again at the next `maintain`.
    unsent: bool,
}

struct UdpGen {
    poll: mio::Poll,
    events: Option<mio::Events>,
    socks: Vec<USock>,
    slots: Vec<Slot>,
    slot_bits: u32,
    gen_mask: u32,
    generation: u32,
    ctid: u32,
    plan: Plan,
    started: Vec<bool>,
    announced: usize,
    cursor: usize,
    timeout: Duration,
    refresh: Duration,
    counts: Counts,
    msgs: Msgs,
    sbuf: Vec<u8>,
    rbuf: Vec<u8>,
}

impl UdpGen {
    fn new(plan: Plan, a: &Cli, server: SocketAddr) -> R<UdpGen> {
        if a.window > 1 << 16 {
            return Err("--window is at most 65536".into());
        }
        let poll = mio::Poll::new().map_err(|e| format!("poll: {e}"))?;
        let now = Instant::now();
        let mut socks = Vec::with_capacity(a.sockets);
        for i in 0..a.sockets {
            let mut sock = mio::net::UdpSocket::bind(SocketAddr::new(LOCALHOST.into(), 0))
                .map_err(|e| format!("udp bind: {e}"))?;
            sock.connect(server)
                .map_err(|e| format!("udp connect to {server}: {e}"))?;
            poll.registry()
                .register(&mut sock, mio::Token(i), mio::Interest::READABLE)
                .map_err(|e| format!("register: {e}"))?;
            socks.push(USock {
                sock,
                conn_id: None,
                id_at: now,
                connect_tid: None,
                connect_sent: now,
            });
        }
        let slot_bits = (a.window as u32)
            .next_power_of_two()
            .trailing_zeros()
            .max(1);
        let started = vec![false; plan.peers];
        Ok(UdpGen {
            poll,
            events: Some(mio::Events::with_capacity(256)),
            socks,
            slots: vec![
                Slot {
                    tid: 0,
                    peer: 0,
                    sent: now,
                    live: false,
                    unsent: false,
                };
                a.window
            ],
            slot_bits,
            gen_mask: (1u32 << (31 - slot_bits)) - 1,
            generation: 0,
            ctid: 0,
            plan,
            started,
            announced: 0,
            cursor: 0,
            timeout: Duration::from_millis(a.timeout_ms.max(1)),
            refresh: Duration::from_secs_f64(a.connid_refresh.max(1.0)),
            counts: Counts::default(),
            msgs: Msgs::default(),
            sbuf: vec![0u8; 256],
            rbuf: vec![0u8; 65_536],
        })
    }

    fn next_peer(&mut self) -> usize {
        let p = self.cursor;
        self.cursor = (self.cursor + 1) % self.plan.peers;
        p
    }

    fn send_connect(&mut self, s: usize, now: Instant) {
        self.ctid = self.ctid.wrapping_add(1);
        // Connect transaction ids have the top bit set; announce ids never do.
        let tid = 0x8000_0000 | (self.ctid & 0x7fff_ffff);
        let n = match (Request::Connect {
            transaction_id: tid,
        })
        .write(&mut self.sbuf)
        {
            Ok(n) => n,
            Err(e) => return self.msgs.add(format!("encode connect: {e}")),
        };
        let u = &mut self.socks[s];
        u.connect_tid = Some(tid);
        u.connect_sent = now;
        match u.sock.send(&self.sbuf[..n]) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.counts.send_blocked += 1;
            }
            Err(e) => {
                self.counts.conn_errors += 1;
                self.msgs.add(format!("send connect: {e}"));
            }
        }
    }

    fn send_announce(&mut self, slot: usize, now: Instant) {
        let peer = self.slots[slot].peer;
        let s = peer % self.socks.len();
        let Some(cid) = self.socks[s].conn_id else {
            self.slots[slot].live = true;
            self.slots[slot].unsent = true;
            return;
        };
        self.generation = self.generation.wrapping_add(1);
        let tid = ((self.generation & self.gen_mask) << self.slot_bits) | slot as u32;
        let event = if self.started[peer] {
            Event::None
        } else {
            Event::Started
        };
        let pkt = Request::Announce(AnnouncePacket {
            connection_id: cid,
            transaction_id: tid,
            request: self.plan.request(peer, event),
            ip: 0,
        });
        let n = match pkt.write(&mut self.sbuf) {
            Ok(n) => n,
            Err(e) => {
                self.msgs.add(format!("encode announce: {e}"));
                0
            }
        };
        let sl = &mut self.slots[slot];
        sl.tid = tid;
        sl.sent = now;
        sl.live = true;
        sl.unsent = false;
        match self.socks[s].sock.send(&self.sbuf[..n]) {
            Ok(_) => self.counts.sent += 1,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                self.counts.send_blocked += 1;
                sl.unsent = true;
            }
            Err(e) => {
                // Left live: it times out and is sent again.
                self.counts.conn_errors += 1;
                self.msgs.add(format!("send: {e}"));
            }
        }
    }

    /// The slot's request is done (answered or refused): the slot announces the next peer.
    fn next_in_slot(&mut self, slot: usize, now: Instant) {
        let p = self.next_peer();
        self.slots[slot].peer = p;
        self.send_announce(slot, now);
    }

    fn readable(&mut self, s: usize, now: Instant) {
        // Bounded: at most this many datagrams per readiness event (edge-triggered: if we
        // stop early, later answers re-arm it, and lost ones time out).
        for _ in 0..100_000 {
            let n = match self.socks[s].sock.recv(&mut self.rbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.counts.conn_errors += 1;
                    self.msgs.add(format!("recv: {e}"));
                    continue;
                }
            };
            let resp = Response::decode(&self.rbuf[..n], false);
            self.datagram(s, resp, now);
        }
    }

    fn slot_of(&self, tid: u32) -> Option<usize> {
        if tid & 0x8000_0000 != 0 {
            return None;
        }
        let slot = (tid & ((1 << self.slot_bits) - 1)) as usize;
        let sl = self.slots.get(slot)?;
        (sl.live && !sl.unsent && sl.tid == tid).then_some(slot)
    }

    fn datagram(
        &mut self,
        s: usize,
        resp: Result<Response, bitmill::tracker::udp::UdpError>,
        now: Instant,
    ) {
        match resp {
            Err(e) => {
                self.counts.malformed += 1;
                self.msgs.add(format!("undecodable UDP answer: {e}"));
            }
            Ok(Response::Connect {
                transaction_id,
                connection_id,
            }) => {
                let u = &mut self.socks[s];
                if u.connect_tid == Some(transaction_id) {
                    u.conn_id = Some(connection_id);
                    u.id_at = now;
                    u.connect_tid = None;
                    self.counts.connects += 1;
                } else {
                    self.counts.late += 1;
                }
            }
            Ok(Response::Announce(a)) => {
                let Some(slot) = self.slot_of(a.transaction_id) else {
                    self.counts.late += 1;
                    return;
                };
                check_peers(&self.plan, &mut self.counts, a.peers.iter());
                let peer = self.slots[slot].peer;
                if !self.started[peer] {
                    self.started[peer] = true;
                    self.announced += 1;
                }
                self.next_in_slot(slot, now);
            }
            Ok(Response::Error {
                transaction_id,
                message,
            }) => {
                if self.socks[s].connect_tid == Some(transaction_id) {
                    self.counts.errors += 1;
                    self.msgs.add(format!("connect refused: {message}"));
                    return;
                }
                let Some(slot) = self.slot_of(transaction_id) else {
                    self.counts.late += 1;
                    self.msgs.add(format!("late error answer: {message}"));
                    return;
                };
                self.counts.errors += 1;
                self.msgs.add(format!("error answer: {message}"));
                self.next_in_slot(slot, now);
            }
            Ok(Response::Scrape { .. }) => {
                self.counts.malformed += 1;
                self.msgs.add("a scrape answer to an announce");
            }
        }
    }
}

impl Load for UdpGen {
    fn begin(&mut self, deadline: Instant) -> R<()> {
        let mut events = mio::Events::with_capacity(64);
        let mut rounds = 0;
        while self.socks.iter().any(|u| u.conn_id.is_none()) {
            check_interrupted()?;
            let now = Instant::now();
            if now > deadline {
                let missing = self.socks.iter().filter(|u| u.conn_id.is_none()).count();
                return Err(format!(
                    "no answer to UDP connect on {missing} of {} sockets by the deadline",
                    self.socks.len()
                ));
            }
            for s in 0..self.socks.len() {
                let u = &self.socks[s];
                if u.conn_id.is_none()
                    && (u.connect_tid.is_none()
                        || now - u.connect_sent >= Duration::from_millis(500))
                {
                    self.send_connect(s, now);
                }
            }
            rounds += 1;
            if rounds > 10_000 {
                return Err("UDP connect: too many rounds".into());
            }
            match self.poll.poll(&mut events, Some(Duration::from_millis(50))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("poll: {e}")),
            }
            let toks: Vec<usize> = events.iter().map(|e| e.token().0).collect();
            for t in toks {
                if t < self.socks.len() {
                    self.readable(t, Instant::now());
                }
            }
        }
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            self.next_in_slot(slot, now);
        }
        Ok(())
    }

    fn step(&mut self, timeout: Duration) -> R<()> {
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| mio::Events::with_capacity(256));
        let r = match self.poll.poll(&mut events, Some(timeout)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(format!("poll: {e}")),
        };
        if r.is_ok() {
            let now = Instant::now();
            for ev in events.iter() {
                let t = ev.token().0;
                if t < self.socks.len() {
                    self.readable(t, now);
                }
            }
        }
        self.events = Some(events);
        r
    }

    fn maintain(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            let sl = self.slots[slot];
            if !sl.live {
                continue;
            }
            if sl.unsent {
                self.send_announce(slot, now);
            } else if now.saturating_duration_since(sl.sent) >= self.timeout {
                self.counts.lost += 1;
                self.send_announce(slot, now);
            }
        }
        for s in 0..self.socks.len() {
            let u = &self.socks[s];
            match u.connect_tid {
                Some(_) if now.saturating_duration_since(u.connect_sent) >= self.timeout => {
                    self.counts.connects_lost += 1;
                    self.send_connect(s, now);
                }
                None if now.saturating_duration_since(u.id_at) >= self.refresh => {
                    // The old id stays in use until the new one arrives.
                    self.send_connect(s, now);
                }
                _ => {}
            }
        }
    }

    fn counts(&self) -> Counts {
        self.counts
    }

    fn msgs(&self) -> &Msgs {
        &self.msgs
    }

    fn announced(&self) -> usize {
        self.announced
    }

    fn udp_ports(&self) -> Vec<u16> {
        self.socks
            .iter()
            .filter_map(|u| u.sock.local_addr().ok().map(|a| a.port()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP load.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HState {
    Connecting,
    Writing,
    Reading,
    /// Answered; waiting for the server to close (so the TIME_WAIT stays on its side).
    Draining,
}

struct HConn {
    stream: mio::net::TcpStream,
    peer: usize,
    req: Vec<u8>,
    written: usize,
    reader: ResponseReader,
    opened: Instant,
    state: HState,
}

struct HttpGen {
    poll: mio::Poll,
    events: Option<mio::Events>,
    conns: slab::Slab<HConn>,
    retry: VecDeque<(Instant, usize)>,
    addr: SocketAddr,
    base: String,
    plan: Plan,
    started: Vec<bool>,
    announced: usize,
    cursor: usize,
    window: usize,
    timeout: Duration,
    counts: Counts,
    msgs: Msgs,
    rbuf: Vec<u8>,
    fatal: Option<String>,
}

/// Wait before re-trying a request whose connection failed.
const RETRY_DELAY: Duration = Duration::from_millis(10);

impl HttpGen {
    fn new(plan: Plan, a: &Cli, addr: SocketAddr) -> R<HttpGen> {
        Ok(HttpGen {
            poll: mio::Poll::new().map_err(|e| format!("poll: {e}"))?,
            events: Some(mio::Events::with_capacity(1024)),
            conns: slab::Slab::with_capacity(a.window * 2),
            retry: VecDeque::new(),
            addr,
            base: format!("http://{addr}/announce"),
            started: vec![false; plan.peers],
            plan,
            announced: 0,
            cursor: 0,
            window: a.window,
            timeout: Duration::from_millis(a.timeout_ms.max(1)),
            counts: Counts::default(),
            msgs: Msgs::default(),
            rbuf: vec![0u8; 65_536],
            fatal: None,
        })
    }

    fn next_peer(&mut self) -> usize {
        let p = self.cursor;
        self.cursor = (self.cursor + 1) % self.plan.peers;
        p
    }

    /// Opens a connection announcing `peer` (or queues a retry if the connect fails).
    fn open(&mut self, peer: usize, now: Instant) {
        let event = if self.started[peer] {
            Event::None
        } else {
            Event::Started
        };
        let req = self.plan.request(peer, event);
        let bytes = match announce_url(&self.base, &req).and_then(|u| get_request(&u)) {
            Ok((_, b)) => b,
            Err(e) => {
                self.fatal = Some(format!("cannot build the announce request: {e}"));
                return;
            }
        };
        self.counts.sent += 1;
        let mut stream = match mio::net::TcpStream::connect(self.addr) {
            Ok(s) => s,
            Err(e) => {
                self.counts.conn_errors += 1;
                self.msgs.add(format!("connect: {e}"));
                self.retry.push_back((now + RETRY_DELAY, peer));
                return;
            }
        };
        let entry = self.conns.vacant_entry();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            mio::Token(entry.key()),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        ) {
            self.counts.conn_errors += 1;
            self.msgs.add(format!("register: {e}"));
            self.retry.push_back((now + RETRY_DELAY, peer));
            return;
        }
        entry.insert(HConn {
            stream,
            peer,
            req: bytes,
            written: 0,
            reader: ResponseReader::new(),
            opened: now,
            state: HState::Connecting,
        });
    }

    fn close(&mut self, key: usize) -> Option<HConn> {
        let mut c = self.conns.try_remove(key)?;
        let _ = self.poll.registry().deregister(&mut c.stream);
        Some(c)
    }

    /// A connection failed before the answer: count it, retry the same peer shortly.
    fn fail(&mut self, key: usize, msg: String, now: Instant) {
        if let Some(c) = self.close(key) {
            self.counts.conn_errors += 1;
            self.msgs.add(msg);
            self.retry.push_back((now + RETRY_DELAY, c.peer));
        }
    }

    /// The answer of `peer` arrived (or the connection ended it): check it, open the next.
    fn finish(&mut self, peer: usize, resp: Result<HttpResponse, TrackerError>, now: Instant) {
        match resp {
            Err(e) => {
                self.counts.malformed += 1;
                self.msgs.add(format!("bad HTTP answer: {e}"));
            }
            Ok(r) if r.status != 200 => {
                self.counts.errors += 1;
                self.msgs.add(format!("HTTP status {}", r.status));
            }
            Ok(r) => match parse_announce_response(&r.body) {
                Ok(a) => {
                    check_peers(&self.plan, &mut self.counts, a.peers.iter());
                    if !self.started[peer] {
                        self.started[peer] = true;
                        self.announced += 1;
                    }
                }
                Err(TrackerError::Failure(m)) => {
                    self.counts.errors += 1;
                    self.msgs.add(format!("failure reason: {m}"));
                }
                Err(e) => {
                    self.counts.malformed += 1;
                    self.msgs.add(format!("bad announce body: {e}"));
                }
            },
        }
        let p = self.next_peer();
        self.open(p, now);
    }

    fn event(&mut self, key: usize, readable: bool, writable: bool, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.state == HState::Connecting {
            if !(readable || writable) {
                return;
            }
            match c.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(key, format!("connect: {e}"), now),
            }
            match c.stream.peer_addr() {
                Ok(_) => c.state = HState::Writing,
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(key, format!("connect: {e}"), now),
            }
        }
        if c.state == HState::Writing {
            let mut rounds = 0;
            while c.written < c.req.len() {
                rounds += 1;
                if rounds > 1000 {
                    return self.fail(key, "write: no progress".into(), now);
                }
                match c.stream.write(&c.req[c.written..]) {
                    Ok(0) => return self.fail(key, "write returned 0".into(), now),
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return self.fail(key, format!("write: {e}"), now),
                }
            }
            c.state = HState::Reading;
            if let Err(e) = self.poll.registry().reregister(
                &mut c.stream,
                mio::Token(key),
                mio::Interest::READABLE,
            ) {
                return self.fail(key, format!("reregister: {e}"), now);
            }
        }
        // Reading or draining: read until WouldBlock or end of stream (bounded).
        for _ in 0..1000 {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            match c.stream.read(&mut self.rbuf) {
                Ok(0) => {
                    let was_reading = c.state == HState::Reading;
                    let r = if was_reading {
                        Some(c.reader.eof())
                    } else {
                        None
                    };
                    let peer = c.peer;
                    self.close(key);
                    if let Some(r) = r {
                        self.finish(peer, r, now);
                    }
                    return;
                }
                Ok(n) => {
                    if c.state != HState::Reading {
                        continue;
                    }
                    match c.reader.feed(&self.rbuf[..n]) {
                        Ok(ReadProgress::NeedMore) => {}
                        Ok(ReadProgress::Done(resp)) => {
                            c.state = HState::Draining;
                            let peer = c.peer;
                            self.finish(peer, Ok(resp), now);
                        }
                        Err(e) => {
                            let peer = c.peer;
                            self.close(key);
                            self.finish(peer, Err(e), now);
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if c.state == HState::Reading {
                        return self.fail(key, format!("read: {e}"), now);
                    }
                    self.close(key);
                    return;
                }
            }
        }
    }
}

impl Load for HttpGen {
    fn begin(&mut self, _deadline: Instant) -> R<()> {
        let now = Instant::now();
        for _ in 0..self.window {
            let p = self.next_peer();
            self.open(p, now);
        }
        match &self.fatal {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn step(&mut self, timeout: Duration) -> R<()> {
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| mio::Events::with_capacity(1024));
        let r = match self.poll.poll(&mut events, Some(timeout)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(format!("poll: {e}")),
        };
        if r.is_ok() {
            let now = Instant::now();
            for ev in events.iter() {
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                let writable = ev.is_writable() || ev.is_write_closed();
                self.event(ev.token().0, readable, writable, now);
            }
        }
        self.events = Some(events);
        if let Some(e) = &self.fatal {
            return Err(e.clone());
        }
        r
    }

    fn maintain(&mut self, now: Instant) {
        let mut late = Vec::new();
        let mut stale = Vec::new();
        for (k, c) in self.conns.iter() {
            let age = now.saturating_duration_since(c.opened);
            if c.state == HState::Draining {
                if age >= self.timeout + Duration::from_secs(1) {
                    stale.push(k);
                }
            } else if age >= self.timeout {
                late.push(k);
            }
        }
        for k in stale {
            self.close(k);
        }
        for k in late {
            if let Some(c) = self.close(k) {
                self.counts.lost += 1;
                self.msgs
                    .add(format!("no answer within the timeout ({:?})", c.state));
                self.open(c.peer, now);
            }
        }
        let mut n = 0;
        while let Some(&(at, peer)) = self.retry.front() {
            if at > now || n >= self.window {
                break;
            }
            self.retry.pop_front();
            self.open(peer, now);
            n += 1;
        }
    }

    fn counts(&self) -> Counts {
        self.counts
    }

    fn msgs(&self) -> &Msgs {
        &self.msgs
    }

    fn announced(&self) -> usize {
        self.announced
    }
}

// ---------------------------------------------------------------------------------------------
// Blocking helpers: probe announces and GET /stats.

/// One UDP announce from the probe peer, with a fresh connect. `Ok(Ok(peers))` on an announce
/// answer, `Ok(Err(msg))` on an error answer, `Err` when nothing came back in time.
fn udp_probe(addr: SocketAddr, req: AnnounceRequest) -> R<Result<usize, String>> {
    let sock = std::net::UdpSocket::bind(SocketAddr::new(LOCALHOST.into(), 0))
        .map_err(|e| format!("bind: {e}"))?;
    sock.connect(addr).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    Request::Connect {
        transaction_id: 0x1234_5678,
    }
    .encode(&mut out);
    sock.send(&out).map_err(|e| format!("send: {e}"))?;
    let n = sock.recv(&mut buf).map_err(|e| format!("recv: {e}"))?;
    let cid = match Response::decode(&buf[..n], false) {
        Ok(Response::Connect { connection_id, .. }) => connection_id,
        Ok(Response::Error { message, .. }) => return Ok(Err(message)),
        Ok(other) => return Err(format!("odd answer to connect: {other:?}")),
        Err(e) => return Err(format!("undecodable answer to connect: {e}")),
    };
    out.clear();
    Request::Announce(AnnouncePacket {
        connection_id: cid,
        transaction_id: 0x2345_6789,
        request: req,
        ip: 0,
    })
    .encode(&mut out);
    sock.send(&out).map_err(|e| format!("send: {e}"))?;
    let n = sock.recv(&mut buf).map_err(|e| format!("recv: {e}"))?;
    match Response::decode(&buf[..n], false) {
        Ok(Response::Announce(a)) => Ok(Ok(a.peers.len())),
        Ok(Response::Error { message, .. }) => Ok(Err(message)),
        Ok(other) => Err(format!("odd answer to announce: {other:?}")),
        Err(e) => Err(format!("undecodable answer to announce: {e}")),
    }
}

/// A blocking HTTP GET of `url` on loopback, with timeouts.
fn http_get(url: &str) -> R<HttpResponse> {
    let (host_port, req) = get_request(url).map_err(|e| e.to_string())?;
    let addr: SocketAddr = host_port
        .parse()
        .map_err(|_| format!("not an address: {host_port}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(&req).map_err(|e| format!("write: {e}"))?;
    let mut rd = ResponseReader::new();
    let mut buf = [0u8; 16 * 1024];
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        if Instant::now() > end {
            return Err("no complete answer within 3 s".into());
        }
        match s.read(&mut buf) {
            Ok(0) => return rd.eof().map_err(|e| e.to_string()),
            Ok(n) => match rd.feed(&buf[..n]).map_err(|e| e.to_string())? {
                ReadProgress::NeedMore => {}
                ReadProgress::Done(r) => return Ok(r),
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn http_probe(addr: SocketAddr, req: &AnnounceRequest) -> R<Result<usize, String>> {
    let url = announce_url(&format!("http://{addr}/announce"), req).map_err(|e| e.to_string())?;
    let r = http_get(&url)?;
    if r.status != 200 {
        return Ok(Err(format!("HTTP status {}", r.status)));
    }
    match parse_announce_response(&r.body) {
        Ok(a) => Ok(Ok(a.peers.len())),
        Err(TrackerError::Failure(m)) => Ok(Err(m)),
        Err(e) => Err(format!("bad answer: {e}")),
    }
}

/// Announces the probe peer until the server answers without error (the whitelist may load
/// after start-up), then announces it stopped. Bounded by `timeout`.
fn wait_ready(
    p: &mut Proc,
    addr: SocketAddr,
    http: bool,
    plan: &Plan,
    timeout: Duration,
) -> R<u32> {
    let end = Instant::now() + timeout;
    let mut tries = 0u32;
    let mut last = String::from("no attempt");
    loop {
        check_interrupted()?;
        if p.poll_exit() {
            return Err(p.ended_error(&format!("while starting (last probe: {last})")));
        }
        tries += 1;
        let req = plan.probe_request(Event::Started);
        let r = if http {
            http_probe(addr, &req)
        } else {
            udp_probe(addr, req)
        };
        match r {
            Ok(Ok(_)) => break,
            Ok(Err(m)) => last = format!("error answer: {m}"),
            Err(e) => last = e,
        }
        if Instant::now() > end {
            let text = p.stderr_text();
            return Err(format!(
                "{} (pid {}) did not answer a probe announce within {timeout:?} ({tries} tries; last: {last}); its stderr:\n{text}",
                p.name, p.pid
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop = plan.probe_request(Event::Stopped);
    let _ = if http {
        http_probe(addr, &stop)
    } else {
        udp_probe(addr, stop)
    };
    Ok(tries)
}

/// `key value` lines (bitmill's /stats).
fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Servers.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bitmill,
    Opentracker,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bitmill => "bitmill",
            Kind::Opentracker => "opentracker",
        }
    }
}

struct Server {
    kind: Kind,
    proc: Proc,
    addr: SocketAddr,
    command: String,
    probe_tries: u32,
}

fn command_line(cmd: &Command) -> String {
    let mut v = vec![shell_quote(&cmd.get_program().to_string_lossy())];
    v.extend(cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    v.join(" ")
}

fn start_bitmill(a: &Cli, bin: &Path, whitelist: &Path, plan: &Plan) -> R<Server> {
    let mut cmd = Command::new(bin);
    cmd.arg("tracker")
        .args(["--listen", "127.0.0.1:0", "--whitelist"])
        .arg(whitelist)
        .args(["--stats-every", "0"])
        .args(&a.tracker_args);
    let command = command_line(&cmd);
    let timeout = Duration::from_secs(a.startup_timeout);
    let mut p = Proc::spawn("bitmill tracker", &mut cmd)?;
    let (_, line) = p.wait_line("tracker listening on ", timeout)?;
    let addr_s = line
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("");
    let addr: SocketAddr = addr_s
        .parse()
        .map_err(|_| format!("bitmill tracker printed an odd address: {line:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "bitmill tracker listens on {addr}, not on loopback"
        ));
    }
    let probe_tries = wait_ready(&mut p, addr, a.http, plan, timeout)?;
    Ok(Server {
        kind: Kind::Bitmill,
        proc: p,
        addr,
        command,
        probe_tries,
    })
}

/// A port free for both TCP and UDP on 127.0.0.1 (right now: opentracker binds it a moment
/// later, so a start that fails to bind is retried with another port).
fn free_port() -> R<u16> {
    for _ in 0..50 {
        let t = std::net::TcpListener::bind((LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
        let port = t.local_addr().map_err(|e| e.to_string())?.port();
        if std::net::UdpSocket::bind((LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no port free for both TCP and UDP on 127.0.0.1".into())
}

fn start_opentracker(a: &Cli, whitelist: &Path, plan: &Plan) -> R<Server> {
    let timeout = Duration::from_secs(a.startup_timeout);
    let mut last_err = String::new();
    for _attempt in 0..3 {
        let port = free_port()?.to_string();
        let mut cmd = Command::new(&a.opentracker);
        cmd.args(["-i", "127.0.0.1", "-p", &port, "-P", &port, "-w"])
            .arg(whitelist)
            .args(&a.opentracker_args);
        let command = command_line(&cmd);
        let mut p = Proc::spawn("opentracker", &mut cmd)?;
        let addr = SocketAddr::new(LOCALHOST.into(), port.parse().unwrap_or(0));
        match wait_ready(&mut p, addr, a.http, plan, timeout) {
            Ok(probe_tries) => {
                return Ok(Server {
                    kind: Kind::Opentracker,
                    proc: p,
                    addr,
                    command,
                    probe_tries,
                })
            }
            Err(e) if p.poll_exit() => last_err = e, // e.g. the port was taken meanwhile
            Err(e) => return Err(e),
        }
    }
    Err(format!(
        "opentracker did not start in 3 attempts; last:\n{last_err}"
    ))
}

// ---------------------------------------------------------------------------------------------
// One measurement.

struct Run {
    round: usize,
    kind: Kind,
    command: String,
    pid: libc::pid_t,
    addr: SocketAddr,
    probe_tries: u32,
    window_s: f64,
    per_second: Vec<f64>,
    lost_per_second: Vec<u64>,
    median: f64,
    overall: f64,
    win: Counts,
    total: Counts,
    msgs: Vec<(String, u64)>,
    cpu: f64,
    cpu_startup: f64,
    threads: Vec<(i32, String, f64)>,
    gen_cpu: f64,
    tool_cpu: f64,
    irq_cores: f64,
    other_cores: f64,
    server_sock_drops: u64,
    client_sock_drops: u64,
    rss_base_kib: u64,
    rss_peak_kib: u64,
    announced_at_window: usize,
    announced_end: usize,
    tracked_peers: Option<u64>,
    tracked_from: String,
    server_stats: BTreeMap<String, u64>,
    server_stats_text: Option<String>,
    net: BTreeMap<String, i64>,
    exit: String,
    stderr: String,
}

impl Run {
    fn per_cpu_s(&self) -> f64 {
        self.win.answered as f64 / self.cpu
    }
    fn cores(&self) -> f64 {
        self.cpu / self.window_s
    }
    /// Threads that used more than 2% of a core in the window.
    fn busy_threads(&self) -> Vec<&(i32, String, f64)> {
        self.threads
            .iter()
            .filter(|t| t.2 > 0.02 * self.window_s)
            .collect()
    }
    fn rss_growth_per_peer(&self) -> Option<f64> {
        let peers = self.tracked_peers.filter(|&p| p > 0)?;
        Some(self.rss_peak_kib.saturating_sub(self.rss_base_kib) as f64 * 1024.0 / peers as f64)
    }
}

fn bitmill_stats(addr: SocketAddr) -> R<(BTreeMap<String, u64>, String)> {
    let r = http_get(&format!("http://{addr}/stats"))?;
    if r.status != 200 {
        return Err(format!("GET /stats: HTTP {}", r.status));
    }
    let text = String::from_utf8_lossy(&r.body).into_owned();
    Ok((parse_stats(&text), text))
}

fn measure(a: &Cli, plan: &Plan, mut server: Server) -> R<Run> {
    let pid = server.proc.pid;
    let cpu_startup = proc_cpu(pid).unwrap_or(f64::NAN);
    let rss_base_kib = proc_rss_anon(pid).unwrap_or(0);
    let sampler = Sampler::start(pid);
    let mut load: Box<dyn Load> = if a.http {
        Box::new(HttpGen::new(plan.clone(), a, server.addr)?)
    } else {
        Box::new(UdpGen::new(plan.clone(), a, server.addr)?)
    };
    eprintln!(
        "{} pid {} on {}: {} peers, {} torrents, window {}, warm-up {:.1} s, measuring {:.1} s",
        server.kind.name(),
        pid,
        server.addr,
        plan.peers,
        plan.torrents,
        a.window,
        a.warmup,
        a.seconds
    );
    let start = Instant::now();
    load.begin(start + Duration::from_secs(5))?;
    let warm_end = start + Duration::from_secs_f64(a.warmup);
    let mut end_at = warm_end + Duration::from_secs_f64(a.seconds);
    let mut in_window = false;
    let mut next_second = warm_end;
    let mut last_second_at = warm_end;
    let mut last_answered = 0u64;
    let mut per_second = Vec::new();
    let mut lost_per_second = Vec::new();
    let mut last_lost = 0u64;
    let mut t_window = warm_end;
    let mut c0 = Counts::default();
    let (mut cpu0, mut gen0, mut tool0, mut mach0) = (0.0, 0.0, 0.0, None);
    let mut threads0 = BTreeMap::new();
    let mut net0 = BTreeMap::new();
    let server_port = [server.addr.port()];
    let client_ports = load.udp_ports();
    let (mut sdrops0, mut cdrops0) = (0, 0);
    let mut announced_at_window = 0;
    let mut last_maint = start;
    let hard_end = warm_end + Duration::from_secs_f64(a.seconds) + Duration::from_secs(30);
    loop {
        check_interrupted()?;
        if server.proc.poll_exit() {
            return Err(server.proc.ended_error("during the load"));
        }
        let now = Instant::now();
        if now > hard_end {
            return Err("the measuring loop ran 30 s past its end".into());
        }
        if !in_window && now >= warm_end {
            in_window = true;
            t_window = now;
            end_at = now + Duration::from_secs_f64(a.seconds);
            next_second = now + Duration::from_secs(1);
            last_second_at = now;
            c0 = load.counts();
            last_answered = c0.answered;
            last_lost = c0.lost;
            cpu0 = proc_cpu(pid).unwrap_or(f64::NAN);
            threads0 = thread_cpus(pid);
            gen0 = self_thread_cpu();
            tool0 = proc_cpu(std::process::id() as libc::pid_t).unwrap_or(f64::NAN);
            mach0 = machine_cpu();
            net0 = net_counters();
            sdrops0 = udp_socket_drops(&server_port);
            cdrops0 = udp_socket_drops(&client_ports);
            announced_at_window = load.announced();
        }
        let now = Instant::now();
        if in_window && now >= next_second {
            let c = load.counts();
            per_second
                .push((c.answered - last_answered) as f64 / (now - last_second_at).as_secs_f64());
            lost_per_second.push(c.lost - last_lost);
            last_answered = c.answered;
            last_lost = c.lost;
            last_second_at = now;
            next_second += Duration::from_secs(1);
        }
        if in_window && now >= end_at {
            break;
        }
        if now - last_maint >= Duration::from_millis(10) {
            load.maintain(now);
            last_maint = now;
        }
        let deadline = if in_window {
            end_at.min(next_second)
        } else {
            warm_end
        };
        let timeout = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(10));
        load.step(timeout)?;
    }
    let t_end = Instant::now();
    let cpu1 = proc_cpu(pid).ok_or("cannot read the server's /proc stat")?;
    let threads1 = thread_cpus(pid);
    let gen_cpu = self_thread_cpu() - gen0;
    let tool_cpu = proc_cpu(std::process::id() as libc::pid_t).unwrap_or(f64::NAN) - tool0;
    let mach1 = machine_cpu();
    let net1 = net_counters();
    let server_sock_drops = udp_socket_drops(&server_port) - sdrops0;
    let client_sock_drops = udp_socket_drops(&client_ports) - cdrops0;
    let total = load.counts();
    let announced_end = load.announced();
    let window_s = (t_end - t_window).as_secs_f64();
    if t_end - last_second_at >= Duration::from_millis(500) {
        per_second
            .push((total.answered - last_answered) as f64 / (t_end - last_second_at).as_secs_f64());
        lost_per_second.push(total.lost - last_lost);
    }
    let win = total.minus(&c0);
    let msgs: Vec<(String, u64)> = load.msgs().0.iter().map(|(k, v)| (k.clone(), *v)).collect();
    drop(load);
    let cpu = cpu1 - cpu0;
    let (irq_cores, other_cores) = match (mach0, mach1) {
        (Some((b0, i0)), Some((b1, i1))) => (
            (i1 - i0) / window_s,
            ((b1 - b0) - cpu - tool_cpu).max(0.0) / window_s,
        ),
        _ => (f64::NAN, f64::NAN),
    };
    let threads: Vec<(i32, String, f64)> = threads1
        .iter()
        .map(|(tid, (name, c1))| {
            let c0 = threads0.get(tid).map_or(0.0, |t| t.1);
            (*tid, name.clone(), c1 - c0)
        })
        .collect();

    // The server's own view, after the load (and after what was in flight has been handled).
    std::thread::sleep(Duration::from_millis(200));
    let (mut server_stats, mut server_stats_text) = (BTreeMap::new(), None);
    let (tracked_peers, tracked_from) = match server.kind {
        Kind::Bitmill => match bitmill_stats(server.addr) {
            Ok((m, t)) => {
                let p = m.get("peers").copied();
                server_stats = m;
                server_stats_text = Some(t);
                (p, "bitmill /stats".to_string())
            }
            Err(e) => (
                Some(announced_end as u64),
                format!("peers that got an answer (GET /stats failed: {e})"),
            ),
        },
        Kind::Opentracker => match http_get(&format!("http://{}/stats?mode=peer", server.addr)) {
            Ok(r) if r.status == 200 && !r.body.starts_with(b"<title>") => {
                let t = String::from_utf8_lossy(&r.body).into_owned();
                let p = t.lines().next().and_then(|l| l.trim().parse::<u64>().ok());
                server_stats_text = Some(t);
                match p {
                    Some(p) => (Some(p), "opentracker /stats?mode=peer".into()),
                    None => (
                        Some(announced_end as u64),
                        "peers that got an answer".into(),
                    ),
                }
            }
            _ => (
                Some(announced_end as u64),
                "peers that got an answer (opentracker's /stats is only for -A addresses)".into(),
            ),
        },
    };
    let rss_peak_kib = sampler.finish();
    server.proc.stop(Duration::from_secs(5));
    let exit = server
        .proc
        .reaped
        .as_ref()
        .map_or_else(|| "?".into(), Exit::describe);
    let stderr = server.proc.stderr_text();
    let median_v = median(per_second.clone());
    Ok(Run {
        round: 0,
        kind: server.kind,
        command: server.command.clone(),
        pid,
        addr: server.addr,
        probe_tries: server.probe_tries,
        window_s,
        overall: win.answered as f64 / window_s,
        median: median_v,
        per_second,
        lost_per_second,
        win,
        total,
        msgs,
        cpu,
        cpu_startup,
        threads,
        gen_cpu,
        tool_cpu,
        irq_cores,
        other_cores,
        server_sock_drops,
        client_sock_drops,
        rss_base_kib,
        rss_peak_kib,
        announced_at_window,
        announced_end,
        tracked_peers,
        tracked_from,
        server_stats,
        server_stats_text,
        net: net_delta(&net0, &net1),
        exit,
        stderr,
    })
}

// ---------------------------------------------------------------------------------------------
// Report.

fn bitmill_path(a: &Cli) -> R<PathBuf> {
    let p = match &a.bitmill {
        Some(p) => p.clone(),
        None => {
            let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            // target/release/examples/tracker_load -> target/release/bitmill
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

fn opentracker_version(bin: &Path) -> String {
    let pkg = Command::new("dpkg-query")
        .args(["-S"])
        .arg(bin)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split(':')
                .next()
                .map(|s| s.trim().to_string())
        });
    let Some(pkg) = pkg else {
        return "not from a Debian package".into();
    };
    let v = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", &pkg])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into());
    format!("Debian package {pkg} {v}")
}

fn header(a: &Cli, bitmill: Option<&Path>, plan: &Plan) -> (String, Value) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let cmd = format!(
        "cargo run --release --example tracker_load -- {}",
        quoted.join(" ")
    );
    let cmd = cmd.trim_end().to_string();
    let argv0 = std::env::args().next().unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
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
    let mode = if a.http { "HTTP" } else { "UDP" };
    let mut s = String::new();
    s.push_str(&format!("# bitmill tracker_load, {mode} announces\n"));
    s.push_str(&format!("# command: {cmd}\n"));
    s.push_str(&format!(
        "#   (this binary: {} {})\n",
        shell_quote(&argv0),
        quoted.join(" ")
    ));
    if let Some(b) = bitmill {
        let bin_age = std::fs::metadata(b)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map_or_else(|| "?".into(), |d| format!("{} s ago", d.as_secs()));
        s.push_str(&format!(
            "# bitmill: {} (built {bin_age}), git HEAD {git}\n",
            b.display()
        ));
        if let (Ok(bt), Some((t, p))) = (
            std::fs::metadata(b).and_then(|m| m.modified()),
            newest_mtime(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")),
        ) {
            if t > bt {
                s.push_str(&format!(
                    "# warning: {} is newer than {}: run `cargo build --release` to measure the current code\n",
                    p.display(),
                    b.display()
                ));
            }
        }
    }
    let otv = (a.server != Which::Bitmill).then(|| opentracker_version(&a.opentracker));
    if let Some(v) = &otv {
        s.push_str(&format!(
            "# opentracker: {} ({v})\n",
            a.opentracker.display()
        ));
    }
    s.push_str(&format!(
        "# machine: {nproc} CPUs, load average {} at start\n",
        loadavg()
    ));
    let transport = if a.http {
        "one TCP connection per announce".to_string()
    } else {
        format!(
            "{} UDP sockets, connection ids refreshed every {} s",
            a.sockets, a.connid_refresh
        )
    };
    s.push_str(&format!(
        "# load: {} peers ({}% seeding) over {} torrents ({} per torrent), {transport}; \
         {} announces in flight (closed loop), numwant {}, timeout {} ms; {:.1} s warm-up, {:.1} s measured\n",
        plan.peers,
        plan.seed_percent,
        plan.torrents,
        plan.per_torrent(),
        a.window,
        a.numwant,
        a.timeout_ms,
        a.warmup,
        a.seconds
    ));
    let v = json!({
        "mode": mode.to_lowercase(),
        "command": cmd,
        "argv": std::env::args().collect::<Vec<_>>(),
        "bitmill": bitmill.map(|b| b.display().to_string()),
        "opentracker": (a.server != Which::Bitmill).then(|| a.opentracker.display().to_string()),
        "opentracker_version": otv,
        "git_head": git,
        "cpus": nproc,
        "loadavg_start": loadavg(),
        "peers": plan.peers,
        "torrents": plan.torrents,
        "seed_percent": plan.seed_percent,
        "window": a.window,
        "sockets": (!a.http).then_some(a.sockets),
        "numwant": a.numwant,
        "timeout_ms": a.timeout_ms,
        "warmup_s": a.warmup,
        "seconds": a.seconds,
        "rounds": a.rounds,
    });
    (s, v)
}

fn emit(json: bool, report: &str) {
    if json {
        eprint!("{report}");
    } else {
        print!("{report}");
        let _ = std::io::stdout().flush();
    }
}

fn kib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

fn run_report(a: &Cli, r: &Run) -> String {
    let mut t = String::new();
    let round = if a.rounds > 1 {
        format!(", round {} of {}", r.round + 1, a.rounds)
    } else {
        String::new()
    };
    t.push_str(&format!(
        "== {} (pid {}, {}{round})\n",
        r.kind.name(),
        r.pid,
        r.addr
    ));
    t.push_str(&format!("started as     {}\n", r.command));
    let ps: Vec<String> = r.per_second.iter().map(|x| format!("{x:.0}")).collect();
    let (lo, hi) = r
        .per_second
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(l, h), &x| (l.min(x), h.max(x)));
    t.push_str(&format!(
        "answered       {:.0}/s median of {} 1-s buckets (min {:.0}, max {:.0}); {} in {:.2} s = {:.0}/s overall\n",
        r.median,
        r.per_second.len(),
        lo,
        hi,
        r.win.answered,
        r.window_s,
        r.overall
    ));
    t.push_str(&format!("each second    {}\n", ps.join(" ")));
    if r.lost_per_second.iter().any(|&l| l > 0) {
        let ls: Vec<String> = r.lost_per_second.iter().map(u64::to_string).collect();
        t.push_str(&format!("lost each s    {}\n", ls.join(" ")));
    }
    let busy = r.busy_threads();
    let th: Vec<String> = busy
        .iter()
        .map(|(tid, n, c)| format!("{n}[{tid}] {c:.2} s"))
        .collect();
    t.push_str(&format!(
        "server CPU     {:.2} s in the window = {:.2} cores; {:.0} answered announces per CPU-second; \
         {} of {} threads busy (>2% of a core): {}\n",
        r.cpu,
        r.cores(),
        r.per_cpu_s(),
        busy.len(),
        r.threads.len(),
        th.join(", ")
    ));
    let growth = r
        .rss_growth_per_peer()
        .map_or_else(|| "?".into(), |b| format!("{b:.0} B"));
    t.push_str(&format!(
        "server memory  peak RssAnon {} ({} before the load): {growth} of RssAnon growth per tracked peer \
         ({} peers, from {})\n",
        kib(r.rss_peak_kib),
        kib(r.rss_base_kib),
        r.tracked_peers.map_or_else(|| "?".into(), |p| p.to_string()),
        r.tracked_from
    ));
    if r.kind == Kind::Bitmill && !r.server_stats.is_empty() {
        let g = |k: &str| r.server_stats.get(k).copied();
        let per_peer_table = match (g("memory_bytes"), g("peers")) {
            (Some(m), Some(p)) if p > 0 => format!("{:.0} B", m as f64 / p as f64),
            _ => "?".into(),
        };
        // Two probe announces (started, stopped) come before the load.
        let ann = g("announces").map_or_else(
            || "?".into(),
            |n| {
                format!(
                    "{} announces of the load reached it, {} were sent",
                    n.saturating_sub(2),
                    r.total.sent
                )
            },
        );
        t.push_str(&format!(
            "bitmill /stats {} torrents, {} peers ({} seeders); bytes_per_peer {} (its estimate), memory_bytes {} \
             = {per_peer_table} per peer; over the whole run {ann}; refusals {}, udp_dropped {}, bad_requests {}\n",
            g("torrents").map_or("?".into(), |v| v.to_string()),
            g("peers").map_or("?".into(), |v| v.to_string()),
            g("seeders").map_or("?".into(), |v| v.to_string()),
            g("bytes_per_peer").map_or("?".into(), |v| v.to_string()),
            g("memory_bytes").map_or("?".into(), |v| v.to_string()),
            g("refusals").map_or("?".into(), |v| v.to_string()),
            g("udp_dropped").map_or("?".into(), |v| v.to_string()),
            g("bad_requests").map_or("?".into(), |v| v.to_string()),
        ));
    }
    if r.kind == Kind::Opentracker {
        if let Some(s) = &r.server_stats_text {
            let one: Vec<&str> = s.lines().map(str::trim).collect();
            t.push_str(&format!(
                "opentracker /stats?mode=peer  {}\n",
                one.join(" | ")
            ));
        }
    }
    let w = &r.win;
    t.push_str(&format!(
        "checks         {} sent, {} answered, {} error answers, {} lost (re-sent after {} ms), {} late, \
         {} malformed, {} socket errors, {} sends would block; {} answers named no peer, {:.1} peers per answer, \
         {} peers not among the simulated ones\n",
        w.sent,
        w.answered,
        w.errors,
        w.lost,
        a.timeout_ms,
        w.late,
        w.malformed,
        w.conn_errors,
        w.send_blocked,
        w.empty,
        w.peers_named as f64 / w.answered.max(1) as f64,
        w.foreign
    ));
    if !a.http {
        t.push_str(&format!(
            "               UDP connects answered {} (lost {}) over the whole run\n",
            r.total.connects, r.total.connects_lost
        ));
    }
    let wu = r.total.minus(w);
    if wu.problems() > 0 {
        t.push_str(&format!(
            "warm-up        {} answered, {} errors, {} lost, {} late, {} malformed, {} socket errors\n",
            wu.answered, wu.errors, wu.lost, wu.late, wu.malformed, wu.conn_errors
        ));
    }
    if r.announced_at_window < r.tracked_peers.unwrap_or(0) as usize
        || r.announced_at_window < r.announced_end
    {
        t.push_str(&format!(
            "# note: only {} of the {} peers had been answered when the window started ({} by the end)\n",
            r.announced_at_window, r.announced_end, r.announced_end
        ));
    }
    if !a.http {
        t.push_str(&format!(
            "socket drops   in the window: {} at the server's UDP socket (receive buffer full), {} at the generator's\n",
            r.server_sock_drops, r.client_sock_drops
        ));
    }
    if !r.net.is_empty() {
        let v: Vec<String> = r.net.iter().map(|(k, d)| format!("{k} {d:+}")).collect();
        t.push_str(&format!(
            "kernel         machine-wide counters in the window: {}\n",
            v.join(", ")
        ));
    }
    t.push_str(&format!(
        "machine        generator thread {:.2} s of CPU ({:.0}% of a core; whole tool {:.2} s); \
         interrupts/softirq {:.2} cores (packet delivery; with tick accounting it is inside the times above); \
         anything else {:.2} cores\n",
        r.gen_cpu,
        100.0 * r.gen_cpu / r.window_s,
        r.tool_cpu,
        r.irq_cores,
        r.other_cores,
    ));
    let sigterm = if r.kind == Kind::Opentracker && r.exit == "killed by signal 15" {
        " (normal: opentracker does not catch SIGTERM)"
    } else {
        ""
    };
    t.push_str(&format!(
        "server         ready after {} probe announce(s), {:.2} s of CPU to start; ended with {}{sigterm}\n",
        r.probe_tries, r.cpu_startup, r.exit
    ));
    if r.server_sock_drops > 0 {
        let rmem = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        t.push_str(&format!(
            "# note: the server's UDP receive queue overflowed {} times: when the server is the bottleneck most of the \
             {} outstanding requests wait in its socket, and a socket with the default receive buffer \
             (net.core.rmem_default = {rmem} bytes; a 98-byte datagram takes about 832 bytes of it) holds fewer than that; \
             each drop idles one slot of the window for {} ms (try --window 128, or a larger SO_RCVBUF in the server)\n",
            r.server_sock_drops, a.window, a.timeout_ms
        ));
    }
    if let Some(n) = r.net.get("TcpExt.ListenOverflows") {
        t.push_str(&format!(
            "# note: a listen queue on this machine overflowed {n} times (the server's accept backlog, see `ss -ltn` Send-Q, \
             is smaller than the burst of connects): the SYNs were dropped and those connects time out\n"
        ));
    }
    if r.gen_cpu / r.window_s > 0.9 {
        t.push_str(
            "# note: the generator used over 90% of a core: the rate may be its limit, not the server's \
             (announces per CPU-second still compare the servers)\n",
        );
    }
    if r.other_cores > 0.25 {
        t.push_str(
            "# note: other processes were busy during the window; figures are pessimistic\n",
        );
    }
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get()) as f64;
    if nproc > 0.0 && (r.cores() + (r.tool_cpu / r.window_s) + r.other_cores) > 0.9 * nproc {
        t.push_str(&format!(
            "# note: the machine's {nproc} cores were nearly all busy (server, generator, softirq, others): \
             the rate is bounded by the machine, compare per CPU-second too\n"
        ));
    }
    if !r.msgs.is_empty() {
        t.push_str("messages (whole run, with counts):\n");
        for (m, n) in r.msgs.iter().take(if a.verbose { 32 } else { 10 }) {
            t.push_str(&format!("    {n:>8}  {m}\n"));
        }
    }
    let quiet_stderr = r.stderr.lines().all(|l| {
        let l = l.trim();
        l.is_empty()
            || l.contains("(no output)")
            || l.contains("tracker listening on ")
            || l.starts_with("tracker: ")
    });
    if a.verbose || !quiet_stderr {
        t.push_str(&format!("server stderr:\n{}", r.stderr));
    } else if let Some(l) = r.stderr.lines().find(|l| l.trim().starts_with("tracker: ")) {
        t.push_str(&format!("server said    {}\n", l.trim()));
    }
    t
}

fn run_json(r: &Run) -> Value {
    json!({
        "server": r.kind.name(),
        "round": r.round,
        "command": r.command,
        "pid": r.pid,
        "addr": r.addr.to_string(),
        "probe_tries": r.probe_tries,
        "window_s": r.window_s,
        "answered_per_s_median": finite(r.median),
        "answered_per_s_overall": finite(r.overall),
        "answered_per_s_each_second": r.per_second,
        "lost_each_second": r.lost_per_second,
        "window": r.win.to_json(),
        "whole_run": r.total.to_json(),
        "messages": r.msgs.iter().map(|(m, n)| json!({"message": m, "count": n})).collect::<Vec<_>>(),
        "server_cpu_s": finite(r.cpu),
        "server_cores": finite(r.cores()),
        "answered_per_cpu_s": finite(r.per_cpu_s()),
        "server_cpu_startup_s": finite(r.cpu_startup),
        "server_threads": r.threads.iter().map(|(tid, n, c)| json!({"tid": tid, "name": n, "cpu_s": c})).collect::<Vec<_>>(),
        "generator_cpu_s": r.gen_cpu,
        "tool_cpu_s": finite(r.tool_cpu),
        "irq_softirq_cores": finite(r.irq_cores),
        "other_cores": finite(r.other_cores),
        "server_udp_socket_drops": r.server_sock_drops,
        "generator_udp_socket_drops": r.client_sock_drops,
        "rss_anon_before_kib": r.rss_base_kib,
        "rss_anon_peak_kib": r.rss_peak_kib,
        "tracked_peers": r.tracked_peers,
        "tracked_peers_from": r.tracked_from,
        "rss_growth_bytes_per_peer": r.rss_growth_per_peer().and_then(finite),
        "peers_answered_at_window_start": r.announced_at_window,
        "peers_answered_at_end": r.announced_end,
        "server_stats": r.server_stats,
        "server_stats_text": r.server_stats_text,
        "kernel_counter_deltas": r.net,
        "server_exit": r.exit,
        "server_stderr": r.stderr,
    })
}

fn summary(runs: &[Run]) -> String {
    let mut t = String::from("== summary\n");
    t.push_str(&format!(
        "{:<12} {:>5} {:>10} {:>10} {:>7} {:>6} {:>11} {:>10} {:>10} {:>7} {:>7} {:>7}\n",
        "server",
        "round",
        "median/s",
        "overall/s",
        "CPU s",
        "cores",
        "per CPU-s",
        "peakAnon",
        "B/peer",
        "errors",
        "lost",
        "late"
    ));
    for r in runs {
        let bpp = if r.kind == Kind::Bitmill {
            r.server_stats
                .get("bytes_per_peer")
                .map(|b| format!("{b} est"))
                .unwrap_or_else(|| "?".into())
        } else {
            r.rss_growth_per_peer()
                .map_or_else(|| "?".into(), |b| format!("{b:.0} rss"))
        };
        t.push_str(&format!(
            "{:<12} {:>5} {:>10.0} {:>10.0} {:>7.2} {:>6.2} {:>11.0} {:>10} {:>10} {:>7} {:>7} {:>7}\n",
            r.kind.name(),
            r.round + 1,
            r.median,
            r.overall,
            r.cpu,
            r.cores(),
            r.per_cpu_s(),
            kib(r.rss_peak_kib),
            bpp,
            r.win.errors,
            r.win.lost,
            r.win.late
        ));
    }
    t.push_str("(B/peer: bitmill's own estimate from /stats; for opentracker RssAnon growth per tracked peer; see each section for both)\n");
    // Per server: the median over rounds of each figure.
    let of = |k: Kind, f: &dyn Fn(&Run) -> f64| {
        median(runs.iter().filter(|r| r.kind == k).map(f).collect())
    };
    let rounds = runs.iter().map(|r| r.round + 1).max().unwrap_or(1);
    if rounds > 1 {
        for k in [Kind::Bitmill, Kind::Opentracker] {
            if runs.iter().any(|r| r.kind == k) {
                t.push_str(&format!(
                    "{:<12} {:>5} {:>10.0} {:>10.0} {:>7.2} {:>6.2} {:>11.0}   (medians over {rounds} rounds)\n",
                    k.name(),
                    "all",
                    of(k, &|r| r.median),
                    of(k, &|r| r.overall),
                    of(k, &|r| r.cpu),
                    of(k, &|r| r.cores()),
                    of(k, &|r| r.per_cpu_s()),
                ));
            }
        }
    }
    let has = |k: Kind| runs.iter().any(|r| r.kind == k);
    if has(Kind::Bitmill) && has(Kind::Opentracker) {
        let (b, o) = (Kind::Bitmill, Kind::Opentracker);
        t.push_str(&format!(
            "bitmill / opentracker: {:.2}x median answered/s, {:.2}x answered per CPU-second{}\n",
            of(b, &|r| r.median) / of(o, &|r| r.median),
            of(b, &|r| r.per_cpu_s()) / of(o, &|r| r.per_cpu_s()),
            if rounds > 1 {
                " (medians over rounds)"
            } else {
                ""
            }
        ));
        let max_threads = runs
            .iter()
            .filter(|r| r.kind == o)
            .map(|r| r.busy_threads().len())
            .max()
            .unwrap_or(0);
        let max_cores = runs
            .iter()
            .filter(|r| r.kind == o)
            .map(Run::cores)
            .fold(0.0f64, f64::max);
        if max_threads > 1 || max_cores > 1.05 {
            t.push_str(&format!(
                "# note: opentracker had up to {max_threads} busy threads and used up to {max_cores:.2} cores\n"
            ));
        } else {
            t.push_str(&format!(
                "opentracker ran on one core (at most {max_cores:.2} cores, {max_threads} busy thread); bitmill used {:.2} cores (median)\n",
                of(b, &Run::cores)
            ));
        }
    }
    t
}

fn main() {
    install_signal_handlers();
    let a = Cli::parse();
    if let Err(e) = run(&a) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(a: &Cli) -> R<()> {
    if !(a.seconds.is_finite() && a.seconds > 0.0 && a.warmup.is_finite() && a.warmup >= 0.0) {
        return Err("--seconds must be positive and --warmup at least 0".into());
    }
    if a.seconds > 3600.0 || a.warmup > 600.0 {
        return Err("--seconds is at most 3600 and --warmup at most 600".into());
    }
    let plan = Plan::new(a)?;
    let kinds: Vec<Kind> = match a.server {
        Which::Bitmill => vec![Kind::Bitmill],
        Which::Opentracker => vec![Kind::Opentracker],
        Which::Both => vec![Kind::Bitmill, Kind::Opentracker],
    };
    let bitmill = if kinds.contains(&Kind::Bitmill) {
        Some(bitmill_path(a)?)
    } else {
        None
    };
    if kinds.contains(&Kind::Opentracker) && !a.opentracker.is_file() {
        return Err(format!(
            "{} does not exist: `apt-get install opentracker` (or pass --opentracker PATH)",
            a.opentracker.display()
        ));
    }
    let (head, mut jv) = header(a, bitmill.as_deref(), &plan);
    emit(a.json, &head);
    let tmp = TempDir::new("bitmill-tracker-load", a.dir.as_deref())?;
    let whitelist = tmp.0.join("whitelist.txt");
    std::fs::write(&whitelist, plan.whitelist())
        .map_err(|e| format!("{}: {e}", whitelist.display()))?;
    std::fs::set_permissions(&whitelist, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("{}: {e}", whitelist.display()))?;

    if a.rounds == 0 || a.rounds > 100 {
        return Err("--rounds is 1 to 100".into());
    }
    let mut runs = Vec::new();
    let order: Vec<(usize, Kind)> = (0..a.rounds)
        .flat_map(|round| {
            let mut ks = kinds.clone();
            if round % 2 == 1 {
                ks.reverse();
            }
            ks.into_iter().map(move |k| (round, k))
        })
        .collect();
    for (round, k) in order {
        let server = match k {
            Kind::Bitmill => start_bitmill(
                a,
                bitmill.as_deref().unwrap_or(Path::new("bitmill")),
                &whitelist,
                &plan,
            )?,
            Kind::Opentracker => start_opentracker(a, &whitelist, &plan)?,
        };
        let mut r = measure(a, &plan, server)?;
        r.round = round;
        emit(a.json, &run_report(a, &r));
        runs.push(r);
        // Let the kernel settle (sockets closing) before the next server.
        std::thread::sleep(Duration::from_millis(500));
    }
    emit(a.json, &summary(&runs));
    drop(tmp);
    jv["runs"] = json!(runs.iter().map(run_json).collect::<Vec<_>>());
    jv["loadavg_end"] = json!(loadavg());
    if a.json {
        println!("{jv}");
    }
    Ok(())
}
