//! The swarm lab's pure half: the theory, the parsing and the reports.
//!
//! The swarm lab measures how the time to distribute one file to N peers scales with N, in two
//! modes: **client-server**, where only the seed uploads, and **P2P**, where every leecher also
//! uploads what it has. It is the textbook argument (Kurose & Ross, "Computer Networking",
//! §2.5) run on real processes:
//!
//! ```text
//!   D_cs  =  max( N·F / u_s ,  F / d_min )
//!   D_p2p >= max( F / u_s ,  F / d_min ,  N·F / (u_s + Σ u_i) )
//! ```
//!
//! with F the file size, u_s the seed's upload rate, u_i the leechers' upload rates and d_min
//! the slowest leecher's download rate. Client-server time grows linearly with N; P2P time
//! levels off, because every new peer brings upload capacity as well as demand.
//!
//! This module owns:
//! - [`Mode`], [`Rates`] and [`bound`]: the fluid-model lower bound for one run;
//! - [`PeerResult`], [`RunResult`] and [`Lab`]: what a run measured, in plain data;
//! - [`parse_counts`], [`parse_size`], [`parse_rate`]: the command line's lab arguments;
//! - [`human_size`], [`human_rate`]: binary-unit formatting shared by the reports;
//! - [`report`]: the text table, CSV and JSON (and reading the JSON back);
//! - [`plot`]: the classic figure (distribution time against N, measured and bound) as SVG.
//!
//! It must never do I/O: no files, no clock, no processes, no sockets. Everything returns a
//! value or a `String`; the `bitmill swarm` command starts the seed, tracker and leechers,
//! times them, fills a [`Lab`] and decides where the strings go. That keeps every figure the
//! lab prints testable from hand-made results, and lets a plot be redrawn from a saved JSON
//! file without rerunning anything.
//!
//! All rates are bytes per second and all sizes bytes; all times are seconds as `f64`.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

pub use crate::units::{parse_rate, parse_size};

pub mod plot;
pub mod report;

#[cfg(test)]
mod tests;

/// Largest peer count [`parse_counts`] accepts. A lab run on one machine with more leechers than
/// this measures the machine, not the protocol.
pub const MAX_PEERS: usize = 1000;

/// How the file reaches the leechers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every leecher downloads from the seed and uploads to other leechers too (BitTorrent as
    /// usual). Displayed and parsed as `p2p`.
    P2p,
    /// Only the seed uploads; leechers do not serve each other. Displayed as `client-server`,
    /// parsed from `client-server` or `cs`.
    ClientServer,
}

impl Mode {
    /// Both modes, client-server first (the order the reports and the plot use).
    pub const ALL: [Mode; 2] = [Mode::ClientServer, Mode::P2p];
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::P2p => "p2p",
            Mode::ClientServer => "client-server",
        })
    }
}

impl FromStr for Mode {
    type Err = String;

    /// `p2p`, `client-server` or `cs`, ignoring ASCII case and surrounding spaces.
    fn from_str(s: &str) -> Result<Mode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "p2p" => Ok(Mode::P2p),
            "client-server" | "cs" => Ok(Mode::ClientServer),
            _ => Err(format!(
                "'{s}' is not a mode (use p2p, client-server or cs)"
            )),
        }
    }
}

/// The file and the rate limits of one lab: F, u_s, u and d of the formulas.
///
/// Every leecher has the same limits, so Σu_i = N·u and d_min = d.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// F: the size of the file distributed, in bytes.
    pub file_size: u64,
    /// u_s: the seed's upload limit, in bytes/s.
    pub seed_up: u64,
    /// u: each leecher's upload limit, in bytes/s (unused by the client-server bound).
    pub peer_up: u64,
    /// d: each leecher's download limit, in bytes/s.
    pub peer_down: u64,
}

impl Rates {
    /// Checks that the bound is finite: F, u_s and d must be more than zero (u may be zero: a
    /// P2P swarm whose leechers cannot upload is client-server in disguise, and its bound says
    /// so).
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("file size", self.file_size),
            ("seed upload rate", self.seed_up),
            ("peer download rate", self.peer_down),
        ] {
            if v == 0 {
                return Err(format!("the {name} must be more than 0"));
            }
        }
        Ok(())
    }
}

/// The fluid-model lower bound on distribution time, in seconds, for `n` leechers:
///
/// - client-server: `max(N·F/u_s, F/d)`: the seed must send N copies; each leecher must receive one;
/// - P2P: `max(F/u_s, F/d, N·F/(u_s + N·u))`: the seed must send at least one copy, each leecher
///   must receive one, and N copies must leave the swarm's total upload capacity.
///
/// `n == 0` gives 0.0 (no leecher, nothing to wait for). A zero rate in the denominator gives
/// infinity (see [`Rates::validate`]). The bound ignores protocol overhead, latency and the
/// granularity of pieces, so a measured time is always somewhat above it; the lab's interest
/// is in how the gap and the two curves scale with N.
pub fn bound(mode: Mode, n: usize, r: &Rates) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let f = r.file_size as f64;
    let n = n as f64;
    let us = r.seed_up as f64;
    let d = r.peer_down as f64;
    match mode {
        Mode::ClientServer => (n * f / us).max(f / d),
        Mode::P2p => {
            let total_up = us + n * r.peer_up as f64;
            (f / us).max(f / d).max(n * f / total_up)
        }
    }
}

/// What one leecher measured in one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerResult {
    /// Which leecher (0-based, in the order the runner started them).
    pub index: usize,
    /// When it had the whole file verified, in seconds since the run started.
    #[serde(deserialize_with = "f64_or_nan")]
    pub completed: f64,
    /// Payload bytes it downloaded.
    pub downloaded: u64,
    /// Payload bytes it uploaded to other leechers.
    pub uploaded: u64,
}

/// One run: one mode, one N, what every leecher measured and the bound it is compared to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Client-server or P2P.
    pub mode: Mode,
    /// N, the number of leechers.
    pub n: usize,
    /// Seconds from the start until the last leecher completed.
    #[serde(deserialize_with = "f64_or_nan")]
    pub distribution_time: f64,
    /// [`bound`] for this mode, N and the lab's rates, in seconds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub bound: f64,
    /// Every leecher's figures.
    pub peers: Vec<PeerResult>,
    /// Payload bytes the seed uploaded.
    pub seed_uploaded: u64,
}

impl RunResult {
    /// A run from its leechers' results, all of which completed: N is `peers.len()`, the
    /// distribution time is the latest completion (0.0 with no peers), and the bound is
    /// computed from `rates`.
    pub fn new(mode: Mode, rates: &Rates, peers: Vec<PeerResult>, seed_uploaded: u64) -> RunResult {
        let n = peers.len();
        let distribution_time = peers.iter().map(|p| p.completed).fold(0.0, f64::max);
        RunResult {
            mode,
            n,
            distribution_time,
            bound: bound(mode, n, rates),
            peers,
            seed_uploaded,
        }
    }

    /// Measured time over the bound: 1.0 would be the fluid model's ideal; NaN when the bound
    /// is 0 (no peers).
    pub fn ratio(&self) -> f64 {
        if self.bound == 0.0 {
            f64::NAN
        } else {
            self.distribution_time / self.bound
        }
    }

    /// The latest completion time among the peers, if there are any.
    pub fn slowest(&self) -> Option<f64> {
        self.peers.iter().map(|p| p.completed).reduce(f64::max)
    }

    /// The earliest completion time among the peers, if there are any.
    pub fn fastest(&self) -> Option<f64> {
        self.peers.iter().map(|p| p.completed).reduce(f64::min)
    }

    /// Bytes the leechers uploaded, all together.
    pub fn peers_uploaded(&self) -> u64 {
        self.peers.iter().map(|p| p.uploaded).sum()
    }

    /// The seed's part of all bytes uploaded, in 0.0 ..= 1.0; `None` if nothing was uploaded.
    /// Near 1.0 in client-server mode; in P2P it falls as N grows.
    pub fn seed_share(&self) -> Option<f64> {
        let total = self.seed_uploaded as f64 + self.peers_uploaded() as f64;
        (total > 0.0).then(|| self.seed_uploaded as f64 / total)
    }
}

/// A whole lab: one file and one set of rates, any number of runs (modes and Ns in any order,
/// repeats allowed).
#[derive(Clone, Debug, PartialEq)]
pub struct Lab {
    /// F, u_s, u and d, the same for every run.
    pub rates: Rates,
    /// Piece length of the torrent used, in bytes (reported; not part of the bound).
    pub piece_length: u64,
    /// The runs, in the order they were made.
    pub results: Vec<RunResult>,
}

impl Lab {
    /// A lab with no runs yet.
    pub fn new(rates: Rates, piece_length: u64) -> Lab {
        Lab {
            rates,
            piece_length,
            results: Vec::new(),
        }
    }

    /// The largest N among the runs (0 with no runs).
    pub fn max_n(&self) -> usize {
        self.results.iter().map(|r| r.n).max().unwrap_or(0)
    }

    /// The modes that have at least one run, client-server first.
    pub fn modes(&self) -> Vec<Mode> {
        Mode::ALL
            .into_iter()
            .filter(|m| self.results.iter().any(|r| r.mode == *m))
            .collect()
    }
}

/// Parses the peer counts to run, sorted and without repeats.
///
/// The syntax is a comma-separated list of items; each item is
/// - `N`: one count (`5`);
/// - `A..B`: every count from A to B, **both ends included** (`1..30` is 1, 2, …, 30), as in
///   `seq A B`;
/// - `A..B:S`: every S-th count from A up to at most B (`1..30:5` is 1, 6, 11, 16, 21, 26,
///   as `seq A S B`).
///
/// Items combine: `1,2,5..30:5`. Spaces around items are ignored. Rust's `A..=B` is rejected
/// with a hint rather than accepted as a second spelling, so there is only one meaning of `..`.
/// Every count must be in 1 ..= [`MAX_PEERS`]; empty items, reversed ranges and a zero step are
/// errors.
pub fn parse_counts(s: &str) -> Result<Vec<usize>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("no peer counts given (examples: 5  1,2,5  1..30  1..30:5)".into());
    }
    let mut out = Vec::new();
    for item in t.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "'{s}': an empty item (two commas, or a comma at an end)"
            ));
        }
        if item.contains("..=") {
            return Err(format!(
                "'{item}': write ranges as A..B (both ends are included)"
            ));
        }
        match item.split_once("..") {
            None => {
                if item.contains(':') {
                    return Err(format!("'{item}': a step (:S) needs a range A..B:S"));
                }
                out.push(one_count(item)?);
            }
            Some((a, rest)) => {
                let (b, step) = match rest.split_once(':') {
                    Some((b, st)) => (b, parse_step(st, item)?),
                    None => (rest, 1),
                };
                let (a, b) = (one_count(a)?, one_count(b)?);
                if a > b {
                    return Err(format!("'{item}': the range runs backwards"));
                }
                out.extend((a..=b).step_by(step));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// One count of [`parse_counts`]: digits only, 1 ..= MAX_PEERS.
fn one_count(t: &str) -> Result<usize, String> {
    let t = t.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{t}' is not a peer count"));
    }
    match t.parse::<usize>() {
        Ok(0) => Err("a peer count must be at least 1".into()),
        Ok(n) if n <= MAX_PEERS => Ok(n),
        _ => Err(format!("{t} peers is too many (at most {MAX_PEERS})")),
    }
}

/// The step of an `A..B:S` range: digits only, at least 1.
fn parse_step(t: &str, item: &str) -> Result<usize, String> {
    let t = t.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{item}': '{t}' is not a step"));
    }
    match t.parse::<usize>() {
        Ok(0) => Err(format!("'{item}': the step must be at least 1")),
        Ok(n) => Ok(n),
        // More digits than a usize holds: any step past the range's end is the same step.
        Err(_) => Ok(usize::MAX),
    }
}

/// A byte count in binary units with at most two decimals and no trailing zeros:
/// `1000 B`, `512 KiB`, `16 MiB`, `1.5 GiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    let num = format!("{v:.2}");
    let num = num.trim_end_matches('0').trim_end_matches('.');
    format!("{num} {}", UNITS[u])
}

/// A rate in bytes/s as [`human_size`] per second: `2 MiB/s`.
pub fn human_rate(bps: u64) -> String {
    format!("{}/s", human_size(bps))
}

/// Reads an `f64` that may have been written as `null`: serde_json writes NaN and infinities
/// as `null`, and a saved lab must still load (the value comes back as NaN).
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
