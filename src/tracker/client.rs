//! Per-torrent announce scheduling: which tracker to ask, with which `event`, and when.
//!
//! [`TrackerClient`] is a sans-IO state machine for ONE torrent. It opens no socket, resolves
//! no name, reads no clock and starts no thread: time is an `Instant` argument, randomness
//! comes from the [`Rng`] it is given, and the wire formats belong to the codecs in
//! [`super::http`] and [`super::udp`], which this module does not use. It emits abstract
//! [`TrackerRequest`]s and consumes abstract answers ([`AnnounceResponse`], [`TrackerError`],
//! a UDP connection id); the reactor translates between those and bytes.
//!
//! ## Call order (the reactor's contract)
//!
//! 1. Build with [`TrackerClient::new`] (or [`TrackerClient::with_config`]) from the
//!    torrent's tiers (BEP 12 `announce-list`, or `[[announce]]`). URLs whose scheme is not
//!    `http://` or `udp://` are dropped and reported as [`ClientEvent::UnsupportedUrl`].
//! 2. Feed inputs, each with the current time: [`TrackerClient::start`],
//!    [`TrackerClient::completed`], [`TrackerClient::stop`], [`TrackerClient::reannounce`],
//!    [`TrackerClient::set_stats`] (any time; sampled when an announce is built),
//!    [`TrackerClient::handle_response`] (an HTTP or UDP announce answered or failed, or a
//!    UDP connect failed), [`TrackerClient::handle_udp_connected`] (a UDP connect answered),
//!    and [`TrackerClient::handle_timeout`] when [`TrackerClient::poll_timeout`] is reached.
//!    A spurious or early `handle_timeout` does nothing; answers carrying an unknown or
//!    stale [`ReqId`] are ignored.
//! 3. After each input, drain [`TrackerClient::poll_request`] (at most one request is ever
//!    pending), [`TrackerClient::poll_event`] until `None`, and [`TrackerClient::poll_peers`].
//! 4. Sleep until [`TrackerClient::poll_timeout`] or the next input.
//!
//! ## Behaviour
//!
//! - **Tiers (BEP 12).** URLs are shuffled within each tier once, at construction. An
//!   announce tries the tiers in order and the URLs of a tier in order, one tracker at a
//!   time; a failure or timeout moves on to the next URL, then the next tier. The tracker
//!   that answers moves to the front of its tier. Every announce starts again at the first
//!   URL of the first tier.
//! - **Backoff.** When every tracker failed, the next try waits `15 s · 2^(k-1)` (k = rounds
//!   failed in a row), capped at 30 min, minus a random jitter of up to 1/8 (so the cap is a
//!   hard maximum). A successful announce resets it.
//! - **Events.** Each tracker first hears `started` (a tracker we fail over to is told
//!   `started` too). [`TrackerClient::completed`] makes the next announce a `completed` one and
//!   sends it at once when no announce is in flight and we are not backing off; otherwise it
//!   goes right after the announce in flight, or with the next try. It is sent until one
//!   tracker acknowledges it, then never again in the session. Events are not periodic
//!   announces: `min interval` does not delay them.
//! - **Intervals.** After a success the next regular announce is due after
//!   `max(interval, min interval)`, each at least [`TrackerClientConfig::min_interval_floor`]
//!   and at most [`TrackerClientConfig::max_interval`]. [`TrackerClient::reannounce`] asks
//!   for an early announce but never sooner than `min interval` after the last success. The
//!   schedule follows whichever tracker answered last.
//! - **Stop.** [`TrackerClient::stop`] sends one `stopped` announce (numwant 0) to the tracker
//!   that answered last (or, if none has, the one being asked), with a short overall deadline
//!   ([`TrackerClientConfig::stop_timeout`]), no failover and no retry; then the client is
//!   finished ([`ClientEvent::Stopped`]). If no request was ever sent, nothing is sent.
//! - **HTTP timeout.** The scheduler enforces it: an HTTP request unanswered after
//!   [`TrackerClientConfig::http_timeout`] counts as [`TrackerError::Timeout`] and its
//!   [`ReqId`] becomes stale. The reactor may report errors sooner (connection refused, its
//!   own timeout) with [`TrackerClient::handle_response`], and should drop the connection of a
//!   request older than `http_timeout`, whose answer would be ignored anyway.
//! - **UDP (BEP 15).** The scheduler keeps each UDP tracker's connection id and when it was
//!   obtained; it is used for announces until 60 s after that, then a new connect comes
//!   first. Each transmission of a UDP attempt waits `15 · 2ⁿ` s, where n counts the
//!   timeouts so far in this attempt (connects and announces alike, never reset within the
//!   attempt, exactly as in BEP 15's examples); when the transmission with n = 8 times out
//!   (7665 s after the attempt began), the tracker has failed with [`TrackerError::Timeout`].
//!   A retransmission is a new output of [`TrackerClient::poll_request`] with the **same**
//!   [`ReqId`] (and a larger `n`): the reactor should resend with the same transaction id so
//!   that a late answer to an earlier copy still matches. A connect or announce that is not a
//!   retransmission gets a new [`ReqId`]. An announce answer for any announce sent during the
//!   current attempt is accepted (a late one is still news), while an error counts only for
//!   the request currently in flight. The reactor must not time out UDP requests itself.
//!   Any error from a UDP tracker drops its connection id.
//! - **Peers** from answers are collected for [`TrackerClient::poll_peers`]; port-0 addresses
//!   are dropped.

#[cfg(test)]
mod tests;

use core::net::SocketAddr;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{AnnounceRequest, AnnounceResponse, Event, TrackerError};
use crate::rng::Rng;

/// Identifies one request the client asked for; answers are matched by it. Unique for the
/// life of a [`TrackerClient`], except that a UDP retransmission reuses its original's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReqId(pub u64);

/// The torrent-side fields of every announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceParams {
    /// The torrent.
    pub info_hash: [u8; 20],
    /// Our peer id.
    pub peer_id: [u8; 20],
    /// The port we accept peers on.
    pub port: u16,
}

/// Scheduling settings. The defaults follow BEP 15 and what mature clients do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerClientConfig {
    /// Peers asked for in every announce but `stopped` (which asks for 0).
    pub numwant: u32,
    /// An HTTP announce unanswered this long has failed (enforced by the scheduler).
    pub http_timeout: Duration,
    /// The whole `stopped` announce (UDP connect included) must finish within this.
    pub stop_timeout: Duration,
    /// BEP 15: the first UDP transmission waits this long; the n-th retransmission
    /// `udp_timeout · 2ⁿ`.
    pub udp_timeout: Duration,
    /// BEP 15: the largest n; when the transmission with this n times out, the tracker failed.
    pub udp_max_n: u32,
    /// BEP 15: a connection id is used until this long after it was obtained.
    pub udp_connection_ttl: Duration,
    /// Wait after the first round in which every tracker failed; doubles per failed round.
    pub backoff_base: Duration,
    /// The longest wait between failed rounds.
    pub backoff_max: Duration,
    /// The shortest `interval` / `min interval` we accept from a tracker.
    pub min_interval_floor: Duration,
    /// The longest `interval` / `min interval` we accept from a tracker.
    pub max_interval: Duration,
}

impl Default for TrackerClientConfig {
    fn default() -> Self {
        TrackerClientConfig {
            numwant: 50,
            http_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            udp_timeout: Duration::from_secs(15),
            udp_max_n: 8,
            udp_connection_ttl: Duration::from_secs(60),
            backoff_base: Duration::from_secs(15),
            backoff_max: Duration::from_secs(30 * 60),
            min_interval_floor: Duration::from_secs(60),
            max_interval: Duration::from_secs(24 * 3600),
        }
    }
}

/// Something the reactor must send. Answer it with [`TrackerClient::handle_response`] or,
/// for a UDP connect, [`TrackerClient::handle_udp_connected`], quoting its [`ReqId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerRequest {
    /// An HTTP GET announce (BEP 3).
    HttpAnnounce {
        /// Quote this in the answer.
        req_id: ReqId,
        /// The announce URL (`http://...`).
        url: String,
        /// What to announce; `tracker_id` is the one this tracker gave us, if any.
        announce: AnnounceRequest,
    },
    /// A BEP 15 connect request.
    UdpConnect {
        /// Quote this in the answer; the same as the original's for a retransmission.
        req_id: ReqId,
        /// The tracker URL (`udp://host:port...`).
        url: String,
        /// Timeouts so far in this attempt; this transmission waits `15 · 2ⁿ` s.
        n: u32,
    },
    /// A BEP 15 announce request.
    UdpAnnounce {
        /// Quote this in the answer; the same as the original's for a retransmission.
        req_id: ReqId,
        /// The tracker URL (`udp://host:port...`).
        url: String,
        /// The connection id the tracker gave us.
        connection_id: u64,
        /// What to announce (`tracker_id` is always `None`).
        announce: AnnounceRequest,
        /// Timeouts so far in this attempt; this transmission waits `15 · 2ⁿ` s.
        n: u32,
    },
}

impl TrackerRequest {
    /// The id to quote in the answer.
    pub fn req_id(&self) -> ReqId {
        match self {
            TrackerRequest::HttpAnnounce { req_id, .. }
            | TrackerRequest::UdpConnect { req_id, .. }
            | TrackerRequest::UdpAnnounce { req_id, .. } => *req_id,
        }
    }

    /// The tracker's URL.
    pub fn url(&self) -> &str {
        match self {
            TrackerRequest::HttpAnnounce { url, .. }
            | TrackerRequest::UdpConnect { url, .. }
            | TrackerRequest::UdpAnnounce { url, .. } => url,
        }
    }

    /// The announce carried, if this is an announce.
    pub fn announce(&self) -> Option<&AnnounceRequest> {
        match self {
            TrackerRequest::HttpAnnounce { announce, .. }
            | TrackerRequest::UdpAnnounce { announce, .. } => Some(announce),
            TrackerRequest::UdpConnect { .. } => None,
        }
    }
}

/// Something the user should see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A URL from the torrent was skipped: only `http://` and `udp://` are supported.
    UnsupportedUrl {
        /// The URL as given.
        url: String,
    },
    /// An announce succeeded.
    Announced {
        /// The tracker that answered.
        url: String,
        /// The event announced.
        event: Event,
        /// How many usable peers it gave.
        peers: usize,
        /// Seeders, if it said.
        complete: Option<u32>,
        /// Leechers, if it said.
        incomplete: Option<u32>,
        /// When the next regular announce is due, from now.
        next_in: Duration,
    },
    /// A tracker's `warning message`.
    Warning {
        /// The tracker.
        url: String,
        /// Its message.
        message: String,
    },
    /// Asking this tracker failed (its `failure reason`, a timeout, the network, ...); the
    /// next tracker is tried, if any.
    Failed {
        /// The tracker.
        url: String,
        /// Why.
        error: TrackerError,
    },
    /// A different tracker answered than the one that answered before.
    Switched {
        /// The tracker that answered before.
        from: String,
        /// The tracker that answered now.
        to: String,
    },
    /// Every tracker failed; we try again after a pause.
    GaveUp {
        /// Rounds failed in a row.
        failures: u32,
        /// The pause.
        retry_in: Duration,
    },
    /// The client is finished after [`TrackerClient::stop`].
    Stopped {
        /// Whether a tracker acknowledged the `stopped` announce (false too when no tracker
        /// had been told anything, so nothing was sent).
        acknowledged: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Udp,
}

/// What we know about one tracker URL.
#[derive(Debug)]
struct Tracker {
    url: String,
    scheme: Scheme,
    /// The `trackerid` it gave us (HTTP).
    tracker_id: Option<Vec<u8>>,
    /// UDP: the connection id and when it was obtained.
    connection: Option<(u64, Instant)>,
    /// It acknowledged our `started` this session.
    started: bool,
}

/// Where an attempt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Http,
    UdpConnect,
    UdpAnnounce { connection_id: u64 },
}

/// Asking one tracker once (with UDP: connects, announces and their retransmissions).
#[derive(Debug)]
struct Attempt {
    tracker: usize,
    /// Position in the tiers, for failover and move-to-front.
    tier: usize,
    idx: usize,
    announce: AnnounceRequest,
    phase: Phase,
    /// The request in flight.
    id: ReqId,
    /// UDP: timeouts so far in this attempt.
    n: u32,
    /// When the request in flight times out.
    deadline: Instant,
    /// UDP connects sent in this attempt.
    connect_ids: Vec<ReqId>,
    /// Announces sent in this attempt (HTTP or UDP).
    announce_ids: Vec<ReqId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Not started, or finished.
    Idle,
    Running,
    /// The `stopped` announce is in flight; finished by this deadline at the latest.
    Stopping {
        deadline: Instant,
    },
}

/// The announce scheduler of one torrent. See the [module docs](self) for the call order
/// and the behaviour.
#[derive(Debug)]
pub struct TrackerClient {
    config: TrackerClientConfig,
    params: AnnounceParams,
    rng: Rng,
    /// Fixed for the life of the client (BEP 3/15 `key`).
    key: u32,
    trackers: Vec<Tracker>,
    /// Indices into `trackers`; never empty tiers.
    tiers: Vec<Vec<usize>>,
    next_id: u64,
    life: Life,
    uploaded: u64,
    downloaded: u64,
    left: u64,
    /// [`TrackerClient::completed`] was called this session.
    completed_called: bool,
    /// A tracker acknowledged `completed` this session.
    completed_acked: bool,
    attempt: Option<Attempt>,
    /// When the next round is due (while running and no attempt is in flight).
    next_announce: Option<Instant>,
    last_success: Option<Instant>,
    /// Effective `min interval` from the last success.
    min_interval: Duration,
    /// Rounds failed in a row.
    failures: u32,
    /// The tracker that answered last.
    last_working: Option<usize>,
    pending: Option<TrackerRequest>,
    events: VecDeque<ClientEvent>,
    peers: Vec<SocketAddr>,
}

fn scheme_of(url: &str) -> Option<Scheme> {
    let lower = url.get(..7)?.to_ascii_lowercase();
    let (scheme, rest) = if lower == "http://" {
        (Scheme::Http, &url[7..])
    } else if lower.starts_with("udp://") {
        (Scheme::Udp, &url[6..])
    } else {
        return None;
    };
    if rest.is_empty() || rest.starts_with('/') {
        return None;
    }
    Some(scheme)
}

/// BEP 15: how long the transmission after `n` timeouts waits.
fn udp_wait(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1 << n.min(31))
}

impl TrackerClient {
    /// A client for `tiers` with the default configuration. See [`TrackerClient::with_config`].
    pub fn new(tiers: Vec<Vec<String>>, params: AnnounceParams, rng: Rng) -> Self {
        Self::with_config(tiers, params, TrackerClientConfig::default(), rng)
    }

    /// A client for `tiers` (in order of preference). Unusable URLs (scheme other than
    /// `http://` / `udp://`, or no host) are dropped and reported as
    /// [`ClientEvent::UnsupportedUrl`]; exact duplicates are dropped silently; empty tiers
    /// vanish. Each tier is shuffled once with `rng`, then the session `key` is drawn.
    pub fn with_config(
        tiers: Vec<Vec<String>>,
        params: AnnounceParams,
        config: TrackerClientConfig,
        mut rng: Rng,
    ) -> Self {
        let mut trackers: Vec<Tracker> = Vec::new();
        let mut out_tiers = Vec::new();
        let mut events = VecDeque::new();
        for tier in tiers {
            let mut ids = Vec::new();
            for url in tier {
                let url = url.trim().to_string();
                let Some(scheme) = scheme_of(&url) else {
                    events.push_back(ClientEvent::UnsupportedUrl { url });
                    continue;
                };
                if trackers.iter().any(|t| t.url == url) {
                    continue;
                }
                ids.push(trackers.len());
                trackers.push(Tracker {
                    url,
                    scheme,
                    tracker_id: None,
                    connection: None,
                    started: false,
                });
            }
            if !ids.is_empty() {
                rng.shuffle(&mut ids);
                out_tiers.push(ids);
            }
        }
        let key = rng.next() as u32;
        TrackerClient {
            config,
            params,
            rng,
            key,
            trackers,
            tiers: out_tiers,
            next_id: 1,
            life: Life::Idle,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            completed_called: false,
            completed_acked: false,
            attempt: None,
            next_announce: None,
            last_success: None,
            min_interval: Duration::ZERO,
            failures: 0,
            last_working: None,
            pending: None,
            events,
            peers: Vec::new(),
        }
    }

    // ------------------------------------------------------------------------- inputs

    /// Joins the swarm: announces `started` now. Does nothing unless the client is idle (not
    /// started, or finished after [`TrackerClient::stop`], in which case a new session
    /// begins).
    pub fn start(&mut self, now: Instant) {
        if self.life != Life::Idle {
            return;
        }
        self.reset_session();
        self.life = Life::Running;
        if !self.tiers.is_empty() {
            self.next_announce = Some(now);
        }
        self.maybe_begin(now);
    }

    /// The download finished: tell a tracker `completed`, once, as soon as possible (see the
    /// module docs). Ignored unless running; a torrent complete from the start is a seed and
    /// just starts with `left` = 0.
    pub fn completed(&mut self, now: Instant) {
        if self.life != Life::Running || self.completed_called {
            return;
        }
        self.completed_called = true;
        if self.attempt.is_none() && self.failures == 0 {
            self.next_announce = Some(now);
        }
        self.maybe_begin(now);
    }

    /// Leaves the swarm: one best-effort `stopped` announce, then finished (see the module
    /// docs). Whatever was in flight is abandoned. Ignored unless running.
    pub fn stop(&mut self, now: Instant) {
        if self.life != Life::Running {
            return;
        }
        let target = self
            .last_working
            .or_else(|| self.attempt.as_ref().map(|a| a.tracker));
        self.attempt = None;
        self.pending = None;
        self.next_announce = None;
        let Some(t) = target else {
            self.finish(false);
            return;
        };
        let Some((tier, idx)) = self.position(t) else {
            // NOTE: unreachable: every tracker index lives in exactly one tier.
            self.finish(false);
            return;
        };
        let deadline = now + self.config.stop_timeout;
        self.life = Life::Stopping { deadline };
        self.begin_attempt(now, tier, idx);
    }

    /// Asks for an announce before the interval is up (e.g. more peers are wanted). It goes
    /// out now, or once `min interval` has passed since the last success. While backing off
    /// after failures it goes out now. Ignored unless running.
    pub fn reannounce(&mut self, now: Instant) {
        if self.life != Life::Running || self.attempt.is_some() {
            return;
        }
        let earliest = match self.last_success {
            Some(t) if self.failures == 0 => t + self.min_interval,
            _ => now,
        };
        let at = earliest.max(now);
        self.next_announce = Some(self.next_announce.map_or(at, |n| n.min(at)));
        self.maybe_begin(now);
    }

    /// The numbers to report from now on: payload bytes uploaded and downloaded this session,
    /// and bytes left.
    pub fn set_stats(&mut self, uploaded: u64, downloaded: u64, left: u64) {
        self.uploaded = uploaded;
        self.downloaded = downloaded;
        self.left = left;
    }

    /// An announce (HTTP or UDP) was answered, or a request (any kind) failed. For a UDP
    /// request the reactor reports only the tracker's error packet or a network error, never
    /// a timeout of its own.
    pub fn handle_response(
        &mut self,
        now: Instant,
        req_id: ReqId,
        result: Result<AnnounceResponse, TrackerError>,
    ) {
        let Some(a) = &self.attempt else { return };
        match result {
            Ok(resp) if a.announce_ids.contains(&req_id) => self.on_success(now, resp),
            Err(e) if a.id == req_id => self.on_failure(now, e),
            _ => return,
        }
        self.maybe_begin(now);
    }

    /// A UDP connect was answered with `connection_id`; the announce follows at once.
    pub fn handle_udp_connected(&mut self, now: Instant, req_id: ReqId, connection_id: u64) {
        let base = self.config.udp_timeout;
        let Some(a) = &self.attempt else { return };
        if a.phase != Phase::UdpConnect || !a.connect_ids.contains(&req_id) {
            return;
        }
        let id = self.new_id();
        // NOTE(unwrap): checked `Some` above; nothing in between clears it.
        let a = self.attempt.as_mut().unwrap();
        self.trackers[a.tracker].connection = Some((connection_id, now));
        a.phase = Phase::UdpAnnounce { connection_id };
        a.id = id;
        a.announce_ids.push(id);
        a.deadline = now + udp_wait(base, a.n);
        self.pending = Some(TrackerRequest::UdpAnnounce {
            req_id: id,
            url: self.trackers[a.tracker].url.clone(),
            connection_id,
            announce: a.announce.clone(),
            n: a.n,
        });
    }

    /// Time passed: retransmits, fails over, finishes a stop, or starts a due announce.
    /// Early or spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.life {
            Life::Idle => return,
            Life::Stopping { deadline } if now >= deadline => {
                if let Some(a) = self.attempt.take() {
                    let url = self.trackers[a.tracker].url.clone();
                    self.events.push_back(ClientEvent::Failed {
                        url,
                        error: TrackerError::Timeout,
                    });
                }
                self.finish(false);
                return;
            }
            _ => {}
        }
        if self.attempt.as_ref().is_some_and(|a| now >= a.deadline) {
            self.on_attempt_timeout(now);
        }
        self.maybe_begin(now);
    }

    // ------------------------------------------------------------------------ outputs

    /// The next request to send, if any. At most one is pending at a time; a newer one
    /// replaces one not yet taken.
    pub fn poll_request(&mut self) -> Option<TrackerRequest> {
        self.pending.take()
    }

    /// When to call [`TrackerClient::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.life {
            Life::Idle => None,
            Life::Running => self
                .attempt
                .as_ref()
                .map(|a| a.deadline)
                .or(self.next_announce),
            Life::Stopping { deadline } => Some(
                self.attempt
                    .as_ref()
                    .map_or(deadline, |a| a.deadline.min(deadline)),
            ),
        }
    }

    /// The next thing the user should see.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Peers received since the last call (port-0 addresses dropped; not deduplicated).
    pub fn poll_peers(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.peers)
    }

    // ------------------------------------------------------------------- inspection

    /// The usable URLs, tier by tier, in the order they are tried now.
    pub fn tiers(&self) -> Vec<Vec<&str>> {
        self.tiers
            .iter()
            .map(|t| t.iter().map(|&i| self.trackers[i].url.as_str()).collect())
            .collect()
    }

    /// The session `key` sent with every announce.
    pub fn key(&self) -> u32 {
        self.key
    }

    /// True before [`TrackerClient::start`] and once a [`TrackerClient::stop`] has finished:
    /// nothing is scheduled.
    pub fn is_idle(&self) -> bool {
        self.life == Life::Idle
    }

    // ----------------------------------------------------------------------- internals

    fn new_id(&mut self) -> ReqId {
        let id = ReqId(self.next_id);
        self.next_id += 1;
        id
    }

    fn udp_timeout_for(&self, n: u32) -> Duration {
        udp_wait(self.config.udp_timeout, n)
    }

    fn position(&self, tracker: usize) -> Option<(usize, usize)> {
        self.tiers
            .iter()
            .enumerate()
            .find_map(|(ti, tier)| tier.iter().position(|&i| i == tracker).map(|idx| (ti, idx)))
    }

    fn reset_session(&mut self) {
        for t in &mut self.trackers {
            t.started = false;
        }
        self.completed_called = false;
        self.completed_acked = false;
        self.attempt = None;
        self.next_announce = None;
        self.last_success = None;
        self.min_interval = Duration::ZERO;
        self.failures = 0;
        self.last_working = None;
        self.pending = None;
    }

    fn finish(&mut self, acknowledged: bool) {
        self.life = Life::Idle;
        self.reset_session();
        self.events.push_back(ClientEvent::Stopped { acknowledged });
    }

    /// Starts a round if one is due.
    fn maybe_begin(&mut self, now: Instant) {
        if self.life != Life::Running || self.attempt.is_some() || self.tiers.is_empty() {
            return;
        }
        if self.next_announce.is_some_and(|t| t <= now) {
            self.next_announce = None;
            self.begin_attempt(now, 0, 0);
        }
    }

    /// The event tracker `t` should hear next.
    fn event_for(&self, t: usize) -> Event {
        if matches!(self.life, Life::Stopping { .. }) {
            Event::Stopped
        } else if !self.trackers[t].started {
            Event::Started
        } else if self.completed_called && !self.completed_acked {
            Event::Completed
        } else {
            Event::None
        }
    }

    /// Asks the tracker at `tiers[tier][idx]`.
    fn begin_attempt(&mut self, now: Instant, tier: usize, idx: usize) {
        let t = self.tiers[tier][idx];
        let event = self.event_for(t);
        let id = self.new_id();
        let tracker = &self.trackers[t];
        let announce = AnnounceRequest {
            info_hash: self.params.info_hash,
            peer_id: self.params.peer_id,
            port: self.params.port,
            uploaded: self.uploaded,
            downloaded: self.downloaded,
            left: self.left,
            event,
            numwant: Some(if event == Event::Stopped {
                0
            } else {
                self.config.numwant
            }),
            key: self.key,
            tracker_id: match tracker.scheme {
                Scheme::Http => tracker.tracker_id.clone(),
                Scheme::Udp => None,
            },
        };
        let url = tracker.url.clone();
        let connection = tracker
            .connection
            .filter(|&(_, at)| now < at + self.config.udp_connection_ttl);
        let (phase, deadline, request) = match (tracker.scheme, connection) {
            (Scheme::Http, _) => (
                Phase::Http,
                now + self.config.http_timeout,
                TrackerRequest::HttpAnnounce {
                    req_id: id,
                    url,
                    announce: announce.clone(),
                },
            ),
            (Scheme::Udp, Some((connection_id, _))) => (
                Phase::UdpAnnounce { connection_id },
                now + self.udp_timeout_for(0),
                TrackerRequest::UdpAnnounce {
                    req_id: id,
                    url,
                    connection_id,
                    announce: announce.clone(),
                    n: 0,
                },
            ),
            (Scheme::Udp, None) => (
                Phase::UdpConnect,
                now + self.udp_timeout_for(0),
                TrackerRequest::UdpConnect {
                    req_id: id,
                    url,
                    n: 0,
                },
            ),
        };
        let (connect_ids, announce_ids) = if phase == Phase::UdpConnect {
            (vec![id], Vec::new())
        } else {
            (Vec::new(), vec![id])
        };
        self.attempt = Some(Attempt {
            tracker: t,
            tier,
            idx,
            announce,
            phase,
            id,
            n: 0,
            deadline,
            connect_ids,
            announce_ids,
        });
        self.pending = Some(request);
    }

    /// The request in flight timed out: retransmit (UDP) or fail.
    fn on_attempt_timeout(&mut self, now: Instant) {
        let ttl = self.config.udp_connection_ttl;
        let max_n = self.config.udp_max_n;
        let Some(a) = &self.attempt else { return };
        if a.phase == Phase::Http || a.n >= max_n {
            self.on_failure(now, TrackerError::Timeout);
            return;
        }
        let (n, tracker) = (a.n + 1, a.tracker);
        // An announce whose connection id has expired is retried as a fresh connect.
        let reconnect = matches!(a.phase, Phase::UdpAnnounce { .. })
            && self.trackers[tracker]
                .connection
                .is_none_or(|(_, at)| now >= at + ttl);
        let fresh_id = if reconnect { Some(self.new_id()) } else { None };
        let timeout = self.udp_timeout_for(n);
        let url = self.trackers[tracker].url.clone();
        // NOTE(unwrap): checked `Some` above; nothing in between clears it.
        let a = self.attempt.as_mut().unwrap();
        a.n = n;
        a.deadline = now + timeout;
        if let Some(id) = fresh_id {
            a.phase = Phase::UdpConnect;
            a.id = id;
            a.connect_ids.push(id);
        }
        let request = match a.phase {
            Phase::UdpAnnounce { connection_id } => TrackerRequest::UdpAnnounce {
                req_id: a.id,
                url,
                connection_id,
                announce: a.announce.clone(),
                n,
            },
            Phase::UdpConnect | Phase::Http => TrackerRequest::UdpConnect {
                req_id: a.id,
                url,
                n,
            },
        };
        self.pending = Some(request);
    }

    fn on_failure(&mut self, now: Instant, error: TrackerError) {
        let Some(a) = self.attempt.take() else { return };
        self.pending = None;
        let tracker = &mut self.trackers[a.tracker];
        tracker.connection = None;
        self.events.push_back(ClientEvent::Failed {
            url: tracker.url.clone(),
            error,
        });
        if matches!(self.life, Life::Stopping { .. }) {
            self.finish(false);
            return;
        }
        let (mut tier, mut idx) = (a.tier, a.idx + 1);
        if idx >= self.tiers[tier].len() {
            tier += 1;
            idx = 0;
        }
        if tier < self.tiers.len() {
            self.begin_attempt(now, tier, idx);
            return;
        }
        // Every tracker failed: back off.
        self.failures = self.failures.saturating_add(1);
        let exp = (self.failures - 1).min(31);
        let nominal = self
            .config
            .backoff_base
            .saturating_mul(1 << exp)
            .min(self.config.backoff_max);
        let ms = nominal.as_millis() as u64;
        let retry_in = Duration::from_millis(ms - self.rng.below(ms / 8 + 1));
        self.next_announce = Some(now + retry_in);
        self.events.push_back(ClientEvent::GaveUp {
            failures: self.failures,
            retry_in,
        });
    }

    fn on_success(&mut self, now: Instant, resp: AnnounceResponse) {
        let Some(a) = self.attempt.take() else { return };
        self.pending = None;
        let t = a.tracker;
        // BEP 12: the tracker that answers moves to the front of its tier.
        let tier = &mut self.tiers[a.tier];
        tier.remove(a.idx);
        tier.insert(0, t);
        let url = self.trackers[t].url.clone();
        if let Some(id) = resp.tracker_id {
            self.trackers[t].tracker_id = Some(id);
        }
        if let Some(message) = resp.warning {
            self.events.push_back(ClientEvent::Warning {
                url: url.clone(),
                message,
            });
        }
        if matches!(self.life, Life::Stopping { .. }) {
            self.finish(true);
            return;
        }
        match a.announce.event {
            Event::Started => self.trackers[t].started = true,
            Event::Completed => self.completed_acked = true,
            Event::None | Event::Stopped => {}
        }
        let floor = self.config.min_interval_floor;
        let cap = self.config.max_interval.max(floor);
        let interval = resp.interval.clamp(floor, cap);
        self.min_interval = resp.min_interval.unwrap_or(floor).clamp(floor, cap);
        let regular = interval.max(self.min_interval);
        let event_pending = self.completed_called && !self.completed_acked;
        let next_in = if event_pending {
            Duration::ZERO
        } else {
            regular
        };
        self.next_announce = Some(now + next_in);
        self.last_success = Some(now);
        self.failures = 0;
        if let Some(prev) = self.last_working.filter(|&p| p != t) {
            self.events.push_back(ClientEvent::Switched {
                from: self.trackers[prev].url.clone(),
                to: url.clone(),
            });
        }
        self.last_working = Some(t);
        let before = self.peers.len();
        self.peers
            .extend(resp.peers.into_iter().filter(|p| p.port() != 0));
        self.events.push_back(ClientEvent::Announced {
            url,
            event: a.announce.event,
            peers: self.peers.len() - before,
            complete: resp.complete,
            incomplete: resp.incomplete,
            next_in,
        });
    }
}
