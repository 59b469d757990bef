//! `bitmill swarm`: the swarm lab. Builds a whole swarm on loopback out of real `bitmill`
//! processes (a tracker, one seed uploading at u_s, N leechers uploading at u and downloading
//! at d), times how long it takes until every leecher holds every verified piece, and
//! compares that with the client-server and P2P bounds (see [`bitmill::lab`]).
//!
//! Every peer is a separate process with its own reactor, talking TCP over 127.0.0.1, found
//! through the tracker (and the seed also given directly, so no leecher waits for a
//! re-announce to find it). Peers report progress as JSON lines on stdout (`--status-every`);
//! this command reads them through [`bitmill::net::children`], draws the progress, and stops
//! and removes everything when a run ends, fails or is interrupted.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bitmill::lab::{self, Lab, Mode, PeerResult, Rates, RunResult};
use bitmill::metainfo::TorrentBuilder;
use bitmill::net::children::{ChildEvent, Children};
use bitmill::net::{clock, signals};
use bitmill::rng::Rng;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha1::{Digest, Sha1};

use super::CliResult;

#[derive(Args, Debug)]
pub(crate) struct SwarmLabArgs {
    /// Leechers per run: a number, a list or ranges (`8`, `1,2,4,8`, `1..30`, `1..30:5`).
    #[arg(
        short = 'n',
        long = "peers",
        default_value = "1,2,4,8",
        value_name = "COUNTS"
    )]
    peers: String,
    /// Which distributions to run: p2p, client-server (cs), or both.
    #[arg(long, default_value = "both", value_name = "MODE")]
    mode: String,
    /// File size F (`4M`, `64M`).
    #[arg(short = 'F', long, default_value = "4M", value_parser = lab::parse_size)]
    size: u64,
    /// The seed's upload rate u_s, bytes/s.
    #[arg(long, default_value = "4M", value_parser = lab::parse_rate, value_name = "RATE")]
    seed_up: u64,
    /// Each leecher's upload rate u, bytes/s (P2P mode; leechers upload nothing in
    /// client-server mode).
    #[arg(long, default_value = "1M", value_parser = lab::parse_rate, value_name = "RATE")]
    up: u64,
    /// Each leecher's download rate d, bytes/s.
    #[arg(long, default_value = "4M", value_parser = lab::parse_rate, value_name = "RATE")]
    down: u64,
    /// Piece length (default: F/256, a power of two between 16 KiB and 1 MiB).
    #[arg(long, value_parser = lab::parse_size, value_name = "SIZE")]
    piece_length: Option<u64>,
    /// Peers each leecher unchokes by tit-for-tat (plus one optimistic unchoke).
    #[arg(long, default_value_t = 4, value_name = "N")]
    upload_slots: usize,
    /// Peers the seed unchokes at once (default: every leecher, as the model's server sends
    /// to all N clients at once).
    #[arg(long, value_name = "N")]
    seed_slots: Option<usize>,
    /// Where to write results.csv, results.json and plot.svg.
    #[arg(short, long, default_value = "swarm-lab", value_name = "DIR")]
    out: PathBuf,
    /// Give up on a run after this many seconds (default: 3x its bound + 30 s).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Keep each run's folder (data, torrents, logs, and timeline.jsonl: every status line
    /// each peer printed, with the time it arrived) and print where it is.
    #[arg(long)]
    keep: bool,
    /// Where to put the runs' scratch folders (default: the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// The bitmill binary the peers run (default: this one).
    #[arg(long, value_name = "PATH")]
    bitmill: Option<PathBuf>,
    /// Redraw the table and plot from a saved results.json; run nothing.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["peers", "size"])]
    replot: Option<PathBuf>,
    /// No live progress (the table is still printed).
    #[arg(short, long)]
    quiet: bool,
}

/// How often peers report (ms); also the resolution of the measured times.
const STATUS_MS: u64 = 50;

pub(crate) fn run(a: SwarmLabArgs) -> CliResult {
    if let Some(path) = &a.replot {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let lab = lab::report::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        return write_outputs(&lab, &a.out);
    }
    let counts = lab::parse_counts(&a.peers).map_err(|e| format!("--peers: {e}"))?;
    let modes: Vec<Mode> = match a.mode.trim().to_ascii_lowercase().as_str() {
        "both" => Mode::ALL.to_vec(),
        m => vec![m.parse::<Mode>().map_err(|e| format!("--mode: {e}"))?],
    };
    let rates = Rates {
        file_size: a.size,
        seed_up: a.seed_up,
        peer_up: a.up,
        peer_down: a.down,
    };
    rates.validate()?;
    let piece_length = match a.piece_length {
        Some(p) if p.is_power_of_two() && (16 << 10..=16 << 20).contains(&p) => p,
        Some(p) => {
            return Err(format!(
                "--piece-length {p}: must be a power of two from 16 KiB to 16 MiB"
            ))
        }
        None => (a.size / 256).next_power_of_two().clamp(16 << 10, 1 << 20),
    };
    let bin = match &a.bitmill {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?,
    };
    signals::install();

    let root = a
        .work_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("bitmill-swarm-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let _cleanup = (!a.keep).then(|| RemoveOnDrop(root.clone()));

    let mut lab = Lab::new(rates, piece_length);
    eprintln!(
        "swarm lab: {}; leechers {counts:?}; modes {}",
        lab::report::caption(&lab),
        modes
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut tracker = Children::new().map_err(|e| e.to_string())?;
    let tracker_addr = start_tracker(&mut tracker, &bin, &root)?;
    let mut k = 0u64;
    for &mode in &modes {
        for &n in &counts {
            k += 1;
            let run = RunSpec {
                bin: &bin,
                dir: root.join(format!("{mode}-{n}")),
                tracker: &tracker_addr,
                mode,
                n,
                rates,
                piece_length,
                upload_slots: a.upload_slots,
                seed_slots: a.seed_slots.unwrap_or(n),
                seed: k,
                timeout: a
                    .timeout
                    .unwrap_or(3.0 * lab::bound(mode, n, &rates) + 30.0),
                quiet: a.quiet,
                keep: a.keep,
            };
            let result = run_one(&run);
            if !a.keep {
                let _ = std::fs::remove_dir_all(&run.dir);
            }
            let result = result?;
            eprintln!(
                "{mode} N={n}: D = {:.2} s, bound {:.2} s, ratio {:.3}",
                result.distribution_time,
                result.bound,
                result.ratio()
            );
            lab.results.push(result);
            if signals::take() {
                return Err("interrupted".into());
            }
        }
    }
    tracker.stop_all(Duration::from_secs(2));
    if a.keep {
        eprintln!("run folders kept in {}", root.display());
    }
    write_outputs(&lab, &a.out)
}

/// Prints the table and writes results.csv, results.json and plot.svg into `out`.
fn write_outputs(lab: &Lab, out: &Path) -> CliResult {
    println!("{}", lab::report::table(lab));
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let files = [
        ("results.csv", lab::report::to_csv(lab)),
        ("results.json", lab::report::to_json(lab)),
        ("plot.svg", lab::plot::svg(lab)?),
    ];
    for (name, text) in files {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    eprintln!(
        "wrote {0}/results.csv, {0}/results.json and {0}/plot.svg",
        out.display()
    );
    Ok(0)
}

/// Removes a folder when dropped (the lab's scratch space, whatever way we leave).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `bitmill tracker` on a free loopback port; returns its address.
fn start_tracker(kids: &mut Children, bin: &Path, root: &Path) -> Result<String, String> {
    let log = log_file(&root.join("tracker.log"))?;
    kids.spawn(
        Command::new(bin)
            .args([
                "tracker",
                "--listen",
                "127.0.0.1:0",
                "--status",
                "--quiet",
                "--stats-every",
                "0",
                "--interval",
                "30",
            ])
            .stderr(log),
    )
    .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let addr = wait_listening(kids, 0, Duration::from_secs(10))
        .map_err(|e| format!("tracker: {e}; see {}", root.join("tracker.log").display()))?;
    Ok(addr)
}

fn log_file(p: &Path) -> Result<Stdio, String> {
    std::fs::File::create(p)
        .map(Stdio::from)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// Waits for child `i`'s `{"event":"listening","addr":...}` line.
fn wait_listening(kids: &mut Children, i: usize, limit: Duration) -> Result<String, String> {
    let deadline = clock::now() + limit;
    while clock::now() < deadline {
        for (_, ev) in kids
            .wait(Duration::from_millis(50))
            .map_err(|e| e.to_string())?
        {
            match ev {
                ChildEvent::Line(j, line) if j == i => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if v["event"] == "listening" {
                            if let Some(a) = v["addr"].as_str() {
                                return Ok(a.to_string());
                            }
                        }
                    }
                }
                ChildEvent::Exited(j, st) if j == i => return Err(format!("exited ({st})")),
                _ => {}
            }
        }
        if signals::take() {
            return Err("interrupted".into());
        }
    }
    Err("did not start listening in time".into())
}

struct RunSpec<'a> {
    bin: &'a Path,
    dir: PathBuf,
    tracker: &'a str,
    mode: Mode,
    n: usize,
    rates: Rates,
    piece_length: u64,
    upload_slots: usize,
    seed_slots: usize,
    seed: u64,
    timeout: f64,
    quiet: bool,
    keep: bool,
}

/// Writes F bytes of random data and a torrent announcing to the tracker; returns the torrent.
fn make_data(r: &RunSpec<'_>) -> Result<(PathBuf, PathBuf), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let src = r.dir.join("seed");
    std::fs::create_dir_all(&src).map_err(|e| io(&src, e))?;
    let name = "lab.bin";
    let mut data = vec![0u8; r.rates.file_size as usize];
    Rng::new(0x1ab0_0000 ^ r.seed).fill(&mut data);
    let mut pieces = Vec::with_capacity(data.len() / r.piece_length as usize * 20 + 20);
    for chunk in data.chunks(r.piece_length as usize) {
        pieces.extend_from_slice(&Sha1::digest(chunk));
    }
    let file = src.join(name);
    std::fs::write(&file, &data).map_err(|e| io(&file, e))?;
    let builder = TorrentBuilder {
        name: name.to_string(),
        files: vec![(vec![name.to_string()], r.rates.file_size)],
        single_file: true,
        piece_length: r.piece_length as u32,
        pieces,
        trackers: vec![format!("http://{}/announce", r.tracker)],
        web_seeds: Vec::new(),
        private: false,
        source: None,
        comment: Some(format!("bitmill swarm lab: {} N={}", r.mode, r.n)),
        created_by: Some(format!("bitmill {}", env!("CARGO_PKG_VERSION"))),
        creation_date: None,
    };
    let torrent = r.dir.join("lab.torrent");
    std::fs::write(&torrent, builder.encode()).map_err(|e| io(&torrent, e))?;
    Ok((src, torrent))
}

/// What one peer process last said.
#[derive(Default, Clone)]
struct PeerState {
    have: u64,
    downloaded: u64,
    uploaded: u64,
    down_rate: u64,
    completed: Option<f64>,
}

fn run_one(r: &RunSpec<'_>) -> Result<RunResult, String> {
    let (src, torrent) = make_data(r)?;
    let rate = |v: u64| v.to_string();
    let status = STATUS_MS.to_string();
    let mut kids = Children::new().map_err(|e| e.to_string())?;
    let common = |c: &mut Command, i: &str, slots: usize| {
        c.args(["--listen", "127.0.0.1:0", "--quiet", "--status-every"])
            .arg(&status)
            .args(["--upload-slots", &slots.to_string(), "--resume-dir"])
            .arg(r.dir.join(format!("resume-{i}")));
    };
    // The seed first; leechers start once it listens.
    let mut cmd = Command::new(r.bin);
    cmd.arg("seed").arg(&torrent).arg(&src);
    common(&mut cmd, "seed", r.seed_slots);
    cmd.args(["--max-upload-rate", &rate(r.rates.seed_up)])
        .stderr(log_file(&r.dir.join("seed.log"))?);
    let seed = kids.spawn(&mut cmd).map_err(|e| e.to_string())?;
    let seed_addr = wait_listening(&mut kids, seed, Duration::from_secs(30))
        .map_err(|e| format!("seed: {e}; see {}", r.dir.join("seed.log").display()))?;

    let t0 = clock::now();
    for i in 0..r.n {
        let out = r.dir.join(format!("peer-{i}"));
        let mut cmd = Command::new(r.bin);
        cmd.arg("download").arg(&torrent).arg("-o").arg(&out);
        common(&mut cmd, &i.to_string(), r.upload_slots);
        cmd.args(["--seed-after", "--peer", &seed_addr])
            .args(["--max-download-rate", &rate(r.rates.peer_down)])
            .args(["--max-upload-rate", &rate(r.rates.peer_up.max(1))])
            .stderr(log_file(&r.dir.join(format!("peer-{i}.log")))?);
        if r.mode == Mode::ClientServer {
            cmd.arg("--no-upload");
        }
        kids.spawn(&mut cmd).map_err(|e| e.to_string())?;
    }
    let mut peers = vec![PeerState::default(); r.n];
    let mut seed_uploaded = 0u64;
    let mut view = View::new(r, r.quiet);
    let deadline = t0 + Duration::from_secs_f64(r.timeout);
    let mut timeline = String::new();
    let mut done = 0;
    while done < r.n {
        let now = clock::now();
        if now > deadline {
            let _ = kids.stop_all(Duration::from_secs(2));
            return Err(format!(
                "{} N={}: {done} of {} leechers finished in {:.0} s; logs in {} (use --keep to keep them)",
                r.mode,
                r.n,
                r.n,
                r.timeout,
                r.dir.display()
            ));
        }
        if signals::take() {
            let _ = kids.stop_all(Duration::from_secs(2));
            return Err("interrupted".into());
        }
        for (at, ev) in kids
            .wait(Duration::from_millis(100))
            .map_err(|e| e.to_string())?
        {
            match ev {
                ChildEvent::Line(j, line) => {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    if r.keep {
                        let who = if j == seed {
                            "seed".to_string()
                        } else {
                            (j - 1).to_string()
                        };
                        let t = at.saturating_duration_since(t0).as_secs_f64();
                        timeline.push_str(&format!(
                            "{{\"t\":{t:.4},\"peer\":\"{who}\",\"status\":{line}}}\n"
                        ));
                    }
                    let num = |k: &str| v[k].as_u64().unwrap_or(0);
                    if j == seed {
                        seed_uploaded = seed_uploaded.max(num("uploaded"));
                        continue;
                    }
                    let i = j - 1;
                    let p = &mut peers[i];
                    p.have = p.have.max(num("have_bytes"));
                    p.downloaded = p.downloaded.max(num("downloaded"));
                    p.uploaded = p.uploaded.max(num("uploaded"));
                    p.down_rate = num("down_rate");
                    if v["event"] == "complete" && p.completed.is_none() {
                        p.completed = Some(at.saturating_duration_since(t0).as_secs_f64());
                        done += 1;
                    }
                    view.update(i, p);
                }
                ChildEvent::Exited(j, st) => {
                    let who = if j == seed {
                        "seed".to_string()
                    } else {
                        format!("peer-{}", j - 1)
                    };
                    let log = r.dir.join(format!("{who}.log"));
                    let tail = last_lines(&log, 5);
                    let _ = kids.stop_all(Duration::from_secs(2));
                    return Err(format!("{who} exited ({st}) before the run ended:\n{tail}"));
                }
            }
        }
        view.tick(clock::now().saturating_duration_since(t0), done);
    }
    view.finish();
    if r.keep {
        let p = r.dir.join("timeline.jsonl");
        std::fs::write(&p, timeline).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    // Final counters: ask everyone to stop and read their last lines.
    for (_, ev) in kids.stop_all(Duration::from_secs(5)) {
        if let ChildEvent::Line(j, line) = ev {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let up = v["uploaded"].as_u64().unwrap_or(0);
                if j == seed {
                    seed_uploaded = seed_uploaded.max(up);
                } else {
                    peers[j - 1].uploaded = peers[j - 1].uploaded.max(up);
                }
            }
        }
    }
    let results = peers
        .iter()
        .enumerate()
        .map(|(i, p)| PeerResult {
            index: i,
            completed: p.completed.unwrap_or(f64::NAN),
            downloaded: p.downloaded,
            uploaded: p.uploaded,
        })
        .collect();
    Ok(RunResult::new(r.mode, &r.rates, results, seed_uploaded))
}

/// The last `n` lines of a log file (for an error message).
fn last_lines(p: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let mut q: VecDeque<&str> = VecDeque::new();
    for l in text.lines() {
        if q.len() == n {
            q.pop_front();
        }
        q.push_back(l);
    }
    q.into_iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Live progress: a bar per leecher on a terminal, else a line every few seconds.
enum View {
    Bars {
        _multi: MultiProgress,
        head: ProgressBar,
        /// "p2p N=8: bound 2.7 s", the head line's fixed part.
        title: String,
        n: usize,
        bars: Vec<ProgressBar>,
    },
    Lines {
        label: String,
        next: Duration,
        have: Vec<u64>,
        total: u64,
    },
    Quiet,
}

impl View {
    fn new(r: &RunSpec<'_>, quiet: bool) -> View {
        let label = format!("{} N={}", r.mode, r.n);
        if quiet {
            return View::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return View::Lines {
                label,
                next: Duration::from_secs(2),
                have: vec![0; r.n],
                total: r.rates.file_size,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let head = multi.add(ProgressBar::new_spinner());
        let title = format!("{label}: bound {:.1} s", lab::bound(r.mode, r.n, &r.rates));
        head.set_message(title.clone());
        let style = ProgressStyle::with_template("  {prefix:>8} [{bar:40}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        // Very large swarms get one bar per leecher up to a screenful.
        let bars = (0..r.n.min(40))
            .map(|i| {
                let b = multi.add(ProgressBar::new(r.rates.file_size));
                b.set_style(style.clone());
                b.set_prefix(format!("peer {i}"));
                b
            })
            .collect();
        View::Bars {
            _multi: multi,
            head,
            title,
            n: r.n,
            bars,
        }
    }

    fn update(&mut self, i: usize, p: &PeerState) {
        match self {
            View::Bars { bars, .. } => {
                if let Some(b) = bars.get(i) {
                    b.set_position(p.have);
                    b.set_message(match p.completed {
                        Some(t) => format!("done at {t:.2} s"),
                        None => lab::human_rate(p.down_rate),
                    });
                }
            }
            View::Lines { have, .. } => have[i] = p.have,
            View::Quiet => {}
        }
    }

    fn tick(&mut self, elapsed: Duration, done: usize) {
        match self {
            View::Bars { head, title, n, .. } => {
                head.set_message(format!(
                    "{title} | {:.1} s, {done}/{n} done",
                    elapsed.as_secs_f64()
                ));
                head.tick();
            }
            View::Lines {
                label,
                next,
                have,
                total,
            } => {
                if elapsed >= *next {
                    *next = elapsed + Duration::from_secs(2);
                    let sum: u64 = have.iter().sum();
                    let pct = sum as f64 * 100.0 / (*total as f64 * have.len() as f64).max(1.0);
                    eprintln!(
                        "{label}: {:.1} s, {done}/{} done, {pct:.0}% of all data delivered",
                        elapsed.as_secs_f64(),
                        have.len()
                    );
                }
            }
            View::Quiet => {}
        }
    }

    fn finish(&self) {
        if let View::Bars { head, bars, .. } = self {
            for b in bars {
                b.finish_and_clear();
            }
            head.finish_and_clear();
        }
    }
}
