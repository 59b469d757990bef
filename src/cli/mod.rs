//! The command-line front end: argument parsing, progress display, exit codes.
//!
//! Exit codes: 0 success; 1 the command ran but the answer is "no" (verify found bad or
//! missing pieces); 2 an error (bad arguments, unreadable torrent, I/O failure).

mod create;
mod download;
mod hashing;
mod info;
mod seed;
mod session;
mod swarm;
mod tracker;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub(crate) use bitmill::units::{parse_rate, parse_size};

/// bitmill: a BitTorrent client and tracker.
#[derive(Parser, Debug)]
#[command(name = "bitmill", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make a .torrent file from a file or a folder.
    Create(create::CreateArgs),
    /// Show what a .torrent file holds.
    Info(info::InfoArgs),
    /// Hash existing data against a .torrent and report good, bad and missing pieces.
    Verify(verify::VerifyArgs),
    /// Download a torrent from peers.
    Download(download::DownloadArgs),
    /// Serve a torrent's complete data to peers until stopped (Ctrl-C).
    Seed(seed::SeedArgs),
    /// Run a tracker: HTTP and UDP announces on one port.
    Tracker(tracker::TrackerArgs),
    /// The swarm lab: a tracker, a seed and N leechers as real processes on loopback; measures
    /// how the time to reach every leecher grows with N, client-server against P2P.
    Swarm(swarm::SwarmLabArgs),
}

/// Runs the command line; returns the process exit code.
pub(crate) fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(a) => create::run(a),
        Command::Info(a) => info::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Download(a) => download::run(a),
        Command::Seed(a) => seed::run(a),
        Command::Tracker(a) => tracker::run(a),
        Command::Swarm(a) => swarm::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bitmill: {e}");
            2
        }
    }
}

/// Prints one machine-readable status line (a JSON object) on stdout and flushes it. A closed
/// stdout (the reader went away) is ignored: it must not stop a transfer.
pub(crate) fn status_line(v: &serde_json::Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// `{"event":"listening","addr":...}`: where a process accepts connections.
pub(crate) fn listening_line(addr: std::net::SocketAddr) {
    status_line(&serde_json::json!({"event": "listening", "addr": addr.to_string()}));
}

/// An error for the user: one line saying what went wrong.
pub(crate) type CliResult = Result<i32, String>;

/// Reads and parses a .torrent file, with the file name in any error.
pub(crate) fn load_torrent(path: &std::path::Path) -> Result<bitmill::metainfo::Metainfo, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    bitmill::metainfo::Metainfo::from_bytes(&data).map_err(|e| format!("{}: {e}", path.display()))
}

/// `1.50 GiB` style sizes.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// `2026-11-25 15:05:36 UTC` from seconds since the Unix epoch (proleptic Gregorian).
pub(crate) fn utc_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Where resume records live by default: `$XDG_STATE_HOME/bitmill/resume`, else
/// `~/.local/state/bitmill/resume`, else `.bitmill/resume`.
pub(crate) fn default_resume_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
    match base {
        Some(b) => b.join("bitmill/resume"),
        None => PathBuf::from(".bitmill/resume"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("262144"), Ok(262144));
        assert_eq!(parse_size("256K"), Ok(262144));
        assert_eq!(parse_size("256KiB"), Ok(262144));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("x").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(1 << 30), "1.00 GiB");
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(1_795_619_136), "2026-11-25 15:05:36 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(-1), "1969-12-31 23:59:59 UTC");
    }
}
