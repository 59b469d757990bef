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
