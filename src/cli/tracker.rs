//! `bitmill tracker`: run a BitTorrent tracker (HTTP and UDP on one port).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bitmill::engine::{Action, Engine};
use bitmill::metainfo::InfoHash;
use bitmill::net::{clock, Control, Driver, Reactor, ReactorConfig};
use bitmill::tracker::server::{TrackerConfig, TrackerStats};
use clap::Args;

use super::session::{engine_config, entropy};
use super::CliResult;

#[derive(Args, Debug, Clone)]
pub(crate) struct TrackerArgs {
    /// Address to serve on: HTTP and UDP on the same port (`[::]:6969` for IPv6 too).
    #[arg(long, default_value = "0.0.0.0:6969")]
    pub(crate) listen: SocketAddr,
    /// Only track the info hashes listed in this file (one 40-digit hex hash per line;
    /// `#` starts a comment), as a private tracker does.
    #[arg(long, value_name = "FILE")]
    pub(crate) whitelist: Option<PathBuf>,
    /// Seconds between announces told to clients.
    #[arg(long, default_value_t = 1800, value_name = "SECS")]
    pub(crate) interval: u64,
    /// Most peers in one answer.
    #[arg(long, default_value_t = 50)]
    pub(crate) max_numwant: u32,
    /// Most torrents tracked.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) max_torrents: usize,
    /// Most peers in one torrent.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) max_peers_per_torrent: usize,
    /// Print a stats line this often (seconds; 0: only at exit).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub(crate) stats_every: u64,
    /// Nothing but errors.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Print `{"event":"listening","addr":"IP:PORT"}` on stdout once listening (for scripts
    /// that start the tracker on port 0; `bitmill swarm` does).
    #[arg(long)]
    pub(crate) status: bool,
}

impl TrackerArgs {
    /// The defaults, serving on `listen` (for `seed --tracker`).
    pub(crate) fn serving(listen: SocketAddr) -> TrackerArgs {
        TrackerArgs {
            listen,
            whitelist: None,
            interval: 1800,
            max_numwant: 50,
            max_torrents: 100_000,
            max_peers_per_torrent: 50_000,
            stats_every: 0,
            quiet: true,
            status: false,
        }
    }
}

/// Reads a whitelist file.
pub(crate) fn read_whitelist(path: &Path) -> Result<HashSet<[u8; 20]>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut set = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let h = InfoHash::from_hex(l)
            .ok_or_else(|| format!("{}:{}: not a 40-digit hex info hash", path.display(), n + 1))?;
        set.insert(h.0);
    }
    Ok(set)
}

/// A tracker configuration from the arguments, with a fresh secret for UDP connection ids.
pub(crate) fn tracker_config(a: &TrackerArgs) -> Result<TrackerConfig, String> {
    use std::io::Read;
    let mut secret = [0u8; 16];
    // The connection-id key must be unpredictable: the kernel's random source.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let mut c = TrackerConfig::new(secret);
    c.interval = Duration::from_secs(a.interval.max(10));
    c.min_interval = c.min_interval.min(c.interval);
    c.max_numwant = a.max_numwant;
    c.max_torrents = a.max_torrents;
    c.max_peers_per_torrent = a.max_peers_per_torrent;
    if let Some(w) = &a.whitelist {
        c.whitelist = Some(read_whitelist(w)?);
    }
    Ok(c)
}

/// One line of tracker counters.
pub(crate) fn stats_line(s: &TrackerStats) -> String {
    format!(
        "tracker: {} torrents, {} peers ({} seeders, {} leechers), {} announces, {} scrapes, {} refused, {} bytes/peer",
        s.torrents, s.peers, s.seeders, s.leechers, s.announces, s.scrapes, s.refusals, s.bytes_per_peer
    )
}

struct TrackerDriver {
    every: Option<Duration>,
    next: Instant,
    quiet: bool,
    last: Option<TrackerStats>,
}

impl Driver for TrackerDriver {
    fn on_event(&mut self, _now: Instant, _engine: &mut Engine, _event: &Action) {}
    fn on_tick(&mut self, _now: Instant, _engine: &mut Engine) -> Control {
        Control::Continue
    }
    fn on_tracker_stats(&mut self, now: Instant, stats: &TrackerStats) {
        if let Some(every) = self.every {
            if now >= self.next && !self.quiet {
                self.next = now + every;
                eprintln!("{}", stats_line(stats));
            }
        }
        self.last = Some(stats.clone());
    }
}

pub(crate) fn run(a: TrackerArgs) -> CliResult {
    let config = tracker_config(&a)?;
    let mut reactor = Reactor::new(ReactorConfig::default()).map_err(|e| e.to_string())?;
    let local = reactor
        .serve_tracker(a.listen, config, entropy())
        .map_err(|e| format!("listen on {}: {e}", a.listen))?;
    eprintln!("tracker listening on {local} (HTTP http://{local}/announce, UDP udp://{local})");
    if a.status {
        super::listening_line(local);
    }
    let mut engine = Engine::new(engine_config());
    let now = clock::now();
    let mut driver = TrackerDriver {
        every: (a.stats_every > 0).then(|| Duration::from_secs(a.stats_every)),
        next: now + Duration::from_secs(a.stats_every),
        quiet: a.quiet,
        last: None,
    };
    reactor
        .run(&mut engine, &mut driver)
        .map_err(|e| format!("network: {e}"))?;
    if let (Some(s), false) = (reactor.tracker_stats(), a.quiet) {
        eprintln!("{}", stats_line(&s));
    }
    Ok(0)
}
