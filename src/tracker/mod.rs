//! Trackers: the client side (announce to HTTP and UDP trackers) and the server side (the
//! swarm table of `bitmill tracker`). Everything here is sans-IO: codecs take and return
//! bytes, state machines take `now` and return what to send and when to wake up. The
//! reactor (`net/`) owns the sockets, DNS and timers.
//!
//! - [`http`]: BEP 3 announce/scrape over HTTP: URL building with binary-safe
//!   percent-encoding, bencoded responses (BEP 23 compact peers, BEP 7 `peers6`), both
//!   directions, and a bounded HTTP/1.x response reader.
//! - [`udp`]: BEP 15 packets (connect, announce, scrape, error), both directions.
//! - [`client`]: per-torrent announce scheduling: tiers (BEP 12), the event lifecycle,
//!   intervals, backoff, UDP connection ids and the 15·2ⁿ s retransmission schedule.
//! - [`server`]: the tracker's swarm table: random peer subsets, expiry, counts, limits,
//!   whitelist, and UDP connection ids that cannot be forged from a spoofed address.

pub mod client;
pub mod http;
pub mod server;
pub mod udp;

use core::net::SocketAddr;
use std::fmt;
use std::time::Duration;

/// The `event` of an announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A regular, periodic announce (no event).
    None,
    /// The first announce of a session.
    Started,
    /// The download just finished.
    Completed,
    /// The client is leaving the swarm.
    Stopped,
}

/// What a client tells a tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: [u8; 20],
    /// The client's peer id.
    pub peer_id: [u8; 20],
    /// The port the client accepts peers on.
    pub port: u16,
    /// Payload bytes sent this session.
    pub uploaded: u64,
    /// Payload bytes received this session.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// The event, if any.
    pub event: Event,
    /// How many peers the client wants (`None`: the tracker's default).
    pub numwant: Option<u32>,
    /// A random number fixed for the session, so the tracker can tell it is the same client
    /// when its address changes.
    pub key: u32,
    /// The `trackerid` a previous response gave, to echo back (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
}

/// What a tracker answers to an announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Seconds until the next regular announce.
    pub interval: Duration,
    /// Announce no more often than this (`min interval`), if given.
    pub min_interval: Option<Duration>,
    /// Seeders, if the tracker says.
    pub complete: Option<u32>,
    /// Leechers, if the tracker says.
    pub incomplete: Option<u32>,
    /// Peers (IPv4 and IPv6).
    pub peers: Vec<SocketAddr>,
    /// A `trackerid` to echo in later announces (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
    /// A `warning message` to show the user.
    pub warning: Option<String>,
}

/// One torrent's counts in a scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads ever seen.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// Why talking to a tracker failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerError {
    /// The tracker refused: its `failure reason` (HTTP) or error message (UDP).
    Failure(String),
    /// The answer could not be understood.
    Malformed(String),
    /// An HTTP status other than 200 (after redirects).
    Status(u16),
    /// The answer was larger than we accept.
    TooLarge,
    /// Too many redirects, or a redirect we do not follow (another scheme).
    Redirect(String),
    /// No answer in time (after all retransmissions for UDP).
    Timeout,
    /// A URL we cannot use.
    BadUrl(String),
    /// The network failed (connect refused, name not found, ...).
    Network(String),
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerError::Failure(m) => write!(f, "tracker refused: {m}"),
            TrackerError::Malformed(m) => write!(f, "bad tracker response: {m}"),
            TrackerError::Status(s) => write!(f, "tracker answered HTTP {s}"),
            TrackerError::TooLarge => write!(f, "tracker response too large"),
            TrackerError::Redirect(m) => write!(f, "redirect: {m}"),
            TrackerError::Timeout => write!(f, "tracker did not answer"),
            TrackerError::BadUrl(m) => write!(f, "bad tracker URL: {m}"),
            TrackerError::Network(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for TrackerError {}

/// The parts of a tracker URL the network layer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlParts {
    /// `http` or `udp` (lower case).
    pub scheme: String,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (80 for HTTP when absent; required for UDP).
    pub port: u16,
}

/// Splits `scheme://host[:port][/path...]`. Only `http` and `udp` are accepted.
pub fn url_parts(url: &str) -> Result<UrlParts, TrackerError> {
    let bad = |why: &str| TrackerError::BadUrl(format!("{url}: {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "udp" {
        return Err(bad("only http:// and udp:// trackers are supported"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
        None if scheme == "http" => 80,
        None => return Err(bad("udp trackers need a port")),
    };
    if port == 0 {
        return Err(bad("port 0"));
    }
    Ok(UrlParts { scheme, host, port })
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn splits_tracker_urls() {
        let p = url_parts("http://127.0.0.1:6969/announce?x=1").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.host.as_str(), p.port),
            ("http", "127.0.0.1", 6969)
        );
        let p = url_parts("HTTP://tracker.example/announce").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("tracker.example", 80));
        let p = url_parts("udp://[::1]:1337/announce").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.host.as_str(), p.port),
            ("udp", "::1", 1337)
        );
        assert!(
            url_parts("udp://tracker.example/announce").is_err(),
            "udp needs a port"
        );
        assert!(url_parts("https://tracker.example/announce").is_err());
        assert!(url_parts("http://:80/").is_err());
        assert!(url_parts("http://h:99999/").is_err());
        assert!(url_parts("nonsense").is_err());
    }
}
