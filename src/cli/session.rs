//! What `download` and `seed` share: checking existing data against the resume record,
//! building the engine and reactor, progress display, and the resume record at exit.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitmill::bitfield::Bitfield;
use bitmill::engine::{make_peer_id, Action, Engine, EngineConfig, TorrentId};
use bitmill::metainfo::Metainfo;
use bitmill::net::{Control, Driver};
use bitmill::rng::Rng;
use bitmill::storage::resume::{self, FileStamp, ResumeRecord};
use bitmill::storage::FileSpec;
use bitmill::tracker::client::{AnnounceParams, ClientEvent, TrackerClient};
use bitmill::tracker::Event;
use indicatif::{ProgressBar, ProgressStyle};

use super::hashing::{default_threads, hash_pieces, progress_bar};
use super::human_bytes;

/// A seed for random choices that differs between runs and processes.
pub(crate) fn entropy() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

/// An engine configuration with a fresh peer id.
pub(crate) fn engine_config() -> EngineConfig {
    let seed = entropy();
    let mut rng = Rng::new(seed);
    EngineConfig {
        peer_id: make_peer_id(&mut rng),
        seed: rng.next(),
        ..Default::default()
    }
}

/// Finds which pieces are already good: trusts the resume record for unchanged files,
/// hashes the rest (skipping files that did not exist before we started: they hold nothing).
pub(crate) fn initial_have(
    m: &Metainfo,
    content: &Path,
    specs: &[FileSpec],
    stamps_before: &[Option<FileStamp>],
    record_path: Option<&Path>,
    quiet: bool,
) -> Result<Bitfield, String> {
    let layout = m.info.layout();
    let record = match record_path {
        Some(p) => match resume::load(p, layout.num_pieces(), specs.len()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("warning: {e}; checking all data");
                None
            }
        },
        None => None,
    };
    let plan = resume::plan(record.as_ref(), m.info_hash, content, layout, stamps_before);
    let to_check: Vec<_> = plan
        .to_check
        .into_iter()
        .filter(|&p| {
            layout
                .piece_spans(p)
                .any(|s| stamps_before[s.file].is_some() || specs[s.file].pad)
        })
        .collect();
    let mut have = plan.trusted;
    if to_check.is_empty() {
        return Ok(have);
    }
    let bytes: u64 = to_check
        .iter()
        .map(|&p| u64::from(layout.piece_len(p)))
        .sum();
    let bar = progress_bar(bytes, quiet, "checking");
    let results = hash_pieces(layout, specs, &to_check, default_threads(), &bar)
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    for (&p, r) in to_check.iter().zip(results) {
        if matches!(r, Ok(h) if &h == m.info.piece_hash(p)) {
            have.set(p.get());
        }
    }
    if !quiet {
        eprintln!(
            "checked {} of existing data: {} of {} pieces good",
            human_bytes(bytes),
            have.count(),
            layout.num_pieces()
        );
    }
    Ok(have)
}

/// Writes the resume record for what the engine has now (storage flushed first, stamps taken
/// after the flush).
pub(crate) fn save_resume(
    engine: &mut Engine,
    t: TorrentId,
    m: &Metainfo,
    content: &Path,
    specs: &[FileSpec],
    path: &Path,
) {
    if let Some(s) = engine.storage_mut(t) {
        if let Err(e) = s.flush() {
            eprintln!("warning: flushing data: {e}");
            return;
        }
    }
    let Some(have) = engine.have(t).cloned() else {
        return;
    };
    let rec = ResumeRecord::new(m.info_hash, content, have, resume::stamps(specs));
    if let Err(e) = resume::write_atomic(path, &rec.encode()) {
        eprintln!(
            "warning: could not write resume record {}: {e}",
            path.display()
        );
    }
}

/// Where the resume record of a torrent lives.
pub(crate) fn record_path(dir: Option<PathBuf>, m: &Metainfo) -> PathBuf {
    dir.unwrap_or_else(super::default_resume_dir)
        .join(format!("{}.resume", m.info_hash))
}

/// How progress is shown.
enum Display {
    Bar(ProgressBar),
    Log { every: Duration, next: Instant },
    Quiet,
}

/// The reactor driver for one torrent: shows progress, stops when told to.
pub(crate) struct Session {
    pub(crate) torrent: TorrentId,
    pub(crate) started: Instant,
    pub(crate) completed_at: Option<Instant>,
    pub(crate) failed: Option<String>,
    pub(crate) interrupted: bool,
    /// Keep running after completion (seeding).
    pub(crate) keep_running: bool,
    display: Display,
    name: String,
    last_save: Instant,
    save: Option<Box<dyn FnMut(&mut Engine)>>,
    /// Machine-readable progress lines on stdout: how often, and when the next is due.
    status: Option<(Duration, Instant)>,
}

impl Session {
    pub(crate) fn new(
        torrent: TorrentId,
        name: &str,
        total: u64,
        quiet: bool,
        keep_running: bool,
        now: Instant,
    ) -> Session {
        let display = if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            Display::Bar(bar)
        } else {
            Display::Log {
                every: Duration::from_secs(5),
                next: now,
            }
        };
        Session {
            torrent,
            started: now,
            completed_at: None,
            failed: None,
            interrupted: false,
            keep_running,
            display,
            name: name.to_string(),
            last_save: now,
            save: None,
            status: None,
        }
    }

    /// Prints a JSON progress line on stdout every `every` (and one at completion).
    pub(crate) fn with_status(mut self, every: Option<Duration>) -> Self {
        self.status = every.map(|e| (e, self.started));
        self
    }

    /// One progress line: `{"event":..,"t":..,"have_pieces":..,...}`, flushed at once.
    fn status_line(&self, now: Instant, engine: &Engine, event: &str) {
        let s = engine.stats(self.torrent);
        let line = serde_json::json!({
            "event": event,
            "elapsed": now.duration_since(self.started).as_secs_f64(),
            "have_pieces": s.have_pieces,
            "num_pieces": s.num_pieces,
            "have_bytes": s.have_bytes,
            "total_bytes": s.total_bytes,
            "downloaded": s.downloaded,
            "uploaded": s.uploaded,
            "wasted": s.wasted,
            "down_rate": s.down_rate,
            "up_rate": s.up_rate,
            "peers": s.peers,
            "seeds": s.seeds,
        });
        super::status_line(&line);
    }

    /// Saves the resume record every few minutes (and the caller saves at exit).
    pub(crate) fn with_periodic_save(mut self, f: Box<dyn FnMut(&mut Engine)>) -> Self {
        self.save = Some(f);
        self
    }

    fn status(&self, now: Instant, engine: &Engine) -> (u64, String) {
        let s = engine.stats(self.torrent);
        let eta = if s.down_rate > 0 && s.have_bytes < s.total_bytes {
            format!(" eta {}s", (s.total_bytes - s.have_bytes) / s.down_rate)
        } else {
            String::new()
        };
        let msg = format!(
            "{}/{} down {}/s up {}/s peers {} ({} seeds){eta}{}",
            human_bytes(s.have_bytes),
            human_bytes(s.total_bytes),
            human_bytes(s.down_rate),
            human_bytes(s.up_rate),
            s.peers,
            s.seeds,
            if s.hash_failures > 0 {
                format!(" hash failures {}", s.hash_failures)
            } else {
                String::new()
            },
        );
        let _ = now;
        (s.have_bytes, msg)
    }

    pub(crate) fn finish(&mut self) {
        if let Display::Bar(b) = &self.display {
            b.finish_and_clear();
        }
    }

    fn say(&self, line: &str) {
        match &self.display {
            Display::Bar(b) => b.println(line),
            Display::Log { .. } => eprintln!("{line}"),
            Display::Quiet => {}
        }
    }
}

impl Driver for Session {
    fn on_event(&mut self, now: Instant, engine: &mut Engine, event: &Action) {
        match event {
            Action::TorrentComplete(_) => {
                self.completed_at = Some(now);
                if self.status.is_some() {
                    self.status_line(now, engine, "complete");
                }
                let secs = now.duration_since(self.started).as_secs_f64();
                let s = engine.stats(self.torrent);
                self.say(&format!(
                    "{}: complete, {} received in {secs:.3} s ({}/s)",
                    self.name,
                    human_bytes(s.downloaded),
                    human_bytes((s.downloaded as f64 / secs.max(1e-9)) as u64)
                ));
                // No resume save here: it would fsync the whole download on the network
                // thread. The record is written at exit and every five minutes.
            }
            Action::TorrentFailed { error, .. } => self.failed = Some(error.clone()),
            _ => {}
        }
    }

    fn on_tick(&mut self, now: Instant, engine: &mut Engine) -> Control {
        if let Some((every, next)) = self.status {
            if now >= next {
                self.status = Some((every, (next + every).max(now)));
                self.status_line(now, engine, "progress");
            }
        }
        if self.failed.is_some() {
            return Control::Stop;
        }
        if self.completed_at.is_some() && !self.keep_running {
            return Control::Stop;
        }
        if now.duration_since(self.last_save) > Duration::from_secs(300) {
            self.last_save = now;
            if let Some(f) = self.save.as_mut() {
                f(engine);
            }
        }
        let due = match &mut self.display {
            Display::Bar(_) => true,
            Display::Log { every, next } if now >= *next => {
                *next = now + *every;
                true
            }
            _ => false,
        };
        if due {
            let (pos, msg) = self.status(now, engine);
            match &self.display {
                Display::Bar(b) => {
                    b.set_position(pos);
                    b.set_message(msg);
                }
                _ => eprintln!("{}: {msg}", self.name),
            }
        }
        Control::Continue
    }

    fn on_signal(&mut self) -> Control {
        self.interrupted = true;
        Control::Stop
    }

    fn on_tracker_event(&mut self, _now: Instant, _t: TorrentId, ev: &ClientEvent) {
        let line = match ev {
            ClientEvent::UnsupportedUrl { url } => {
                format!("tracker {url}: not supported (only http:// and udp://)")
            }
            ClientEvent::Announced {
                url,
                event,
                peers,
                complete,
                incomplete,
                next_in,
            } => {
                let counts = match (complete, incomplete) {
                    (Some(c), Some(i)) => format!(", {c} seeds, {i} leechers"),
                    _ => String::new(),
                };
                let ev = match event {
                    Event::None => String::new(),
                    e => format!(" ({e:?})").to_lowercase(),
                };
                format!(
                    "tracker {url}{ev}: {peers} peers{counts}; next in {} s",
                    next_in.as_secs()
                )
            }
            ClientEvent::Warning { url, message } => format!("tracker {url} warns: {message}"),
            ClientEvent::Failed { url, error } => format!("tracker {url}: {error}"),
            ClientEvent::Switched { from, to } => format!("tracker {from} failed; trying {to}"),
            ClientEvent::GaveUp { failures, retry_in } => {
                format!(
                    "no tracker answered ({failures} failures); retrying in {} s",
                    retry_in.as_secs()
                )
            }
            ClientEvent::Stopped { .. } => return,
        };
        self.say(&line);
    }
}

/// A tracker client for the torrent's trackers (`None` when it lists none).
pub(crate) fn tracker_client(m: &Metainfo, peer_id: [u8; 20], port: u16) -> Option<TrackerClient> {
    let tiers = m.tracker_tiers();
    if tiers.is_empty() {
        return None;
    }
    let params = AnnounceParams {
        info_hash: m.info_hash.0,
        peer_id,
        port,
    };
    Some(TrackerClient::new(tiers, params, Rng::new(entropy())))
}

/// Options `download` and `seed` share: where peers come from, limits, state, display.
#[derive(clap::Args, Debug)]
pub(crate) struct SwarmArgs {
    /// A peer to connect to (IP:PORT); repeat for more.
    #[arg(long = "peer", value_name = "IP:PORT")]
    pub(crate) peers: Vec<std::net::SocketAddr>,
    /// Address to accept peers on (a free port is used if it is taken; `:0` for any).
    #[arg(long, default_value = "0.0.0.0:6881")]
    pub(crate) listen: std::net::SocketAddr,
    /// Do not announce to the torrent's trackers (use only --peer and incoming peers).
    #[arg(long)]
    pub(crate) no_trackers: bool,
    /// Cap on the download rate in bytes/s (`500K`, `1.5M`, `2M/s`; K = 1024). It covers the
    /// whole process, and a process runs one torrent, so it is that torrent's cap.
    #[arg(long, value_name = "RATE", value_parser = super::parse_rate)]
    pub(crate) max_download_rate: Option<u64>,
    /// Cap on the upload rate in bytes/s (`500K`, `1.5M`, `2M/s`; K = 1024). It covers the
    /// whole process, and a process runs one torrent, so it is that torrent's cap.
    #[arg(long, value_name = "RATE", value_parser = super::parse_rate)]
    pub(crate) max_upload_rate: Option<u64>,
    /// Peers unchoked at once by tit-for-tat (plus one optimistic unchoke).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub(crate) upload_slots: usize,
    /// Folder of resume records (default: $XDG_STATE_HOME/bitmill/resume).
    #[arg(long, value_name = "DIR")]
    pub(crate) resume_dir: Option<PathBuf>,
    /// No progress display.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Upload nothing: unchoke no peer (a leech-only client, as the clients of a
    /// client-server distribution are).
    #[arg(long)]
    pub(crate) no_upload: bool,
    /// Print machine-readable progress on stdout, one JSON object per line: where we listen,
    /// then counters every MS milliseconds, and a line at once on completion (`bitmill swarm`
    /// reads these).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) status_every: Option<u64>,
}

impl SwarmArgs {
    /// An engine with these limits (and `max_peers` connections for the torrent).
    pub(crate) fn engine(&self, max_peers: usize) -> Engine {
        let mut cfg = engine_config();
        cfg.max_peers_per_torrent = max_peers;
        cfg.max_peers = cfg.max_peers.max(max_peers);
        cfg.choker.regular_slots = self.upload_slots;
        if let Some(up) = self.max_upload_rate {
            cfg.send_buffer = bitmill::engine::send_buffer_for_rate(up);
        }
        if self.no_upload {
            cfg.choker.regular_slots = 0;
            cfg.choker.optimistic_slots = 0;
        }
        Engine::new(cfg)
    }

    /// The reactor, listening where asked (or on a free port when that one is taken).
    pub(crate) fn reactor(&self) -> Result<bitmill::net::Reactor, String> {
        use bitmill::net::{Reactor, ReactorConfig};
        let cfg = |listen| ReactorConfig {
            listen: Some(listen),
            max_download_rate: self.max_download_rate,
            max_upload_rate: self.max_upload_rate,
            tick: self.status().map_or(ReactorConfig::default().tick, |e| {
                e.min(ReactorConfig::default().tick)
            }),
            ..Default::default()
        };
        match Reactor::new(cfg(self.listen)) {
            Ok(r) => Ok(r),
            Err(e) if self.listen.port() != 0 => {
                // The usual port is taken (another client): any free port will do.
                eprintln!(
                    "warning: cannot listen on {}: {e}; using a free port",
                    self.listen
                );
                Reactor::new(cfg(std::net::SocketAddr::new(self.listen.ip(), 0)))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("listen on {}: {e}", self.listen)),
        }
    }

    /// How often to print a status line (`--status-every`).
    pub(crate) fn status(&self) -> Option<Duration> {
        self.status_every.map(Duration::from_millis)
    }

    /// Adds the `--peer`s, prints where we listen, and announces to the torrent's trackers.
    pub(crate) fn connect(
        &self,
        reactor: &mut bitmill::net::Reactor,
        engine: &mut Engine,
        t: TorrentId,
        m: &Metainfo,
    ) {
        engine.add_peers(bitmill::net::clock::now(), t, self.peers.iter().copied());
        if let Some(addr) = reactor.local_addr() {
            eprintln!("listening on {addr}");
            if self.status_every.is_some() {
                super::listening_line(addr);
            }
            if !self.no_trackers {
                if let Some(c) = tracker_client(m, engine.peer_id(), addr.port()) {
                    reactor.add_tracker_client(t, c);
                }
            }
        }
    }
}
