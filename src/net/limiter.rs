//! Rate limits: token buckets, and the policy by which the reactor gates connections with
//! them (one global bucket per direction, optionally one per torrent and direction).
//!
//! Everything here is pure arithmetic over `Instant`s passed in; the reactor owns the clock
//! and the sockets, and the tests below drive the same code in virtual time.
//!
//! # The bucket
//!
//! A [`TokenBucket`] gains `rate` bytes of credit per second. While nobody waits for credit
//! it holds at most its cap, [`idle_cap`]: one block and its header ([`BLOCK_MSG`]), less at
//! low rates. So after an idle spell a connection sends at most one block at once. When the
//! reactor has data but no credit it parks the connection until the bucket says
//! ([`TokenBucket::wake_at`]) and promises to come back then ([`TokenBucket::promise`]). It
//! comes back late: mio rounds poll timeouts up to whole milliseconds ([`TIMER_RESOLUTION`])
//! and a busy machine adds more. Two rules keep that lateness from costing rate or making
//! bursts:
//!
//! - the reactor comes back when `cap - rate × TIMER_RESOLUTION` bytes are there, so that a
//!   wake-up up to one timer tick late finds at most the cap;
//! - credit that accrues after the promised instant, while the waiter is late, is kept beyond
//!   the cap for up to [`MAX_LATE`]. Above `BLOCK_MSG / TIMER_RESOLUTION` (16 MB/s) one block
//!   per wake-up cannot hold the rate, and a wake-up delayed by the scheduler would otherwise
//!   lose its credit.
//!
//! What that guarantees:
//!
//! - from a start or an idle spell, bytes moved in the next `t` are at most
//!   `cap + rate × t`: over a transfer the rate is above the limit by at most one block;
//! - in any window of length `w`, bytes moved are at most `rate × w + B + rate × L`, where
//!   `B` is the cap (at most a block and its header), or one millisecond at the rate above
//!   16 MB/s (a millisecond timer must then move more than a block per wake-up), and `L`
//!   (at most [`MAX_LATE`]) is how much later than that the reactor woke up;
//! - nothing is lost while the reactor wakes up less than `MAX_LATE` late, so over 10 s the
//!   rate is the limit to within 1% (the tests below measure 0.0–0.6%).
//!
//! One exception to "at most the cap after idling": a promise nobody collects (its
//! connection closed while parked) leaves up to `MAX_LATE` of credit beyond the cap, once.
//!
//! # Gating a connection
//!
//! [`RateLimits`] holds the global buckets and the per-torrent ones. A connection of a
//! torrent with limits is gated by both buckets of its direction: it may move the smaller of
//! the two credits ([`RateLimits::credit`]), what it moves is taken from both
//! ([`RateLimits::consume`]), and when either is empty it is parked until the later of the
//! two ready times. Parked connections are resumed in rounds ([`RateLimits::take_due`],
//! [`RateLimits::begin_round`]): in a round each connection gets an equal share of each of
//! its buckets (at least a block, so every turn moves something), then goes back in line,
//! and the order rotates from round to round so no connection is always first.

use std::time::{Duration, Instant};

use crate::engine::TorrentId;
use crate::metainfo::{InfoHash, BLOCK_LEN};
use crate::wire::PIECE_HEADER_LEN;

/// One block and its `piece` message header: the most credit a bucket holds while idle, and
/// the least share a connection gets in a round.
pub const BLOCK_MSG: u64 = BLOCK_LEN as u64 + PIECE_HEADER_LEN as u64;

/// At low rates a bucket holds no more than this much time's worth of credit while idle.
pub const IDLE_CAP_TIME: Duration = Duration::from_millis(50);

/// What a bucket of `rate` bytes/s holds while idle: one block and its header, or
/// [`IDLE_CAP_TIME`] at the rate when that is less (below about 320 KB/s), so that at a
/// few KiB/s one block does not dwarf the rate (at 10 KiB/s a block is 1.6 s of it) and the
/// rate holds over seconds, not only over minutes. Blocks then go out in several writes.
pub fn idle_cap(rate: u64) -> u64 {
    let t = IDLE_CAP_TIME.as_nanos() as u64;
    (u128::from(rate) * u128::from(t) / 1_000_000_000)
        .min(u128::from(BLOCK_MSG))
        .max(1) as u64
}

/// How late the reactor's timer may fire: mio rounds poll timeouts up to whole milliseconds.
pub const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// Credit that accrues while a waiter is late is kept beyond the cap for this long at most.
pub const MAX_LATE: Duration = Duration::from_millis(5);

/// A token bucket. Pure arithmetic: time comes in as an argument.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    cap: u64,
    /// Credit in bytes (below zero after a charge larger than the credit).
    tokens: i64,
    /// Credit is counted up to here; the fraction of a byte earned since is not lost.
    last: Option<Instant>,
    /// The earliest instant promised to a waiter not yet served ([`TokenBucket::promise`]).
    due: Option<Instant>,
}

impl TokenBucket {
    /// A bucket of `rate` bytes/s (at least 1) holding at most `cap` bytes (at least 1)
    /// while nobody waits. It starts full.
    pub fn new(rate: u64, cap: u64) -> TokenBucket {
        let cap = cap.max(1);
        TokenBucket {
            rate: rate.max(1),
            cap,
            tokens: cap as i64,
            last: None,
            due: None,
        }
    }

    /// The bucket the reactor uses: `rate` bytes/s, holding [`idle_cap`]`(rate)` while idle.
    pub fn for_rate(rate: u64) -> TokenBucket {
        TokenBucket::new(rate, idle_cap(rate))
    }

    /// The rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// What the bucket holds while idle.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Whole bytes earned in `d`.
    fn earned(&self, d: Duration) -> i64 {
        (d.as_nanos() * u128::from(self.rate) / 1_000_000_000).min(i64::MAX as u128) as i64
    }

    /// The time `n` bytes take to earn, rounded up: what is left of the interval (less than
    /// a byte's worth) carries over to the next count, and rounding never gives a byte early.
    fn time_for(&self, n: i64) -> Duration {
        Duration::from_nanos(
            (n.max(0) as u128 * 1_000_000_000).div_ceil(u128::from(self.rate)) as u64,
        )
    }

    /// Counts credit from `last` to `to`, up to `cap` bytes when `capped`.
    fn accrue(&mut self, last: Instant, to: Instant, capped: bool) {
        let cap = self.cap as i64;
        if capped && self.tokens >= cap {
            // Full: what is earned now is lost (and the bucket never shrinks to the cap).
            self.last = Some(to);
            return;
        }
        let add = self.earned(to.saturating_duration_since(last));
        let sum = self.tokens.saturating_add(add);
        if capped && sum >= cap {
            self.tokens = cap;
            self.last = Some(to);
        } else {
            self.tokens = sum;
            self.last = Some(last + self.time_for(add));
        }
    }

    fn refill(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        if now <= last {
            return;
        }
        match self.due {
            Some(due) if due <= now => {
                // A waiter was promised credit at `due` and comes only now: up to `due` the
                // cap holds; after it, credit is the waiter's, kept for up to MAX_LATE.
                let due = due.max(last);
                self.accrue(last, due, true);
                let late_end = now.min(due + MAX_LATE);
                let from = self.last.unwrap_or(due);
                self.accrue(from, late_end, false);
                let from = self.last.unwrap_or(late_end);
                self.accrue(from, now, true);
                self.due = None;
            }
            _ => self.accrue(last, now, true),
        }
    }

    /// Bytes that may be moved now.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens.max(0) as u64
    }

    /// Records `n` bytes moved (or charged after the fact: the credit may go below zero).
    pub fn consume(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_sub(n.min(i64::MAX as u64) as i64);
    }

    /// When at least `want` bytes (capped at the cap, at least 1) will be available.
    pub fn ready_at(&mut self, now: Instant, want: u64) -> Instant {
        self.refill(now);
        let want = want.clamp(1, self.cap) as i64;
        if self.tokens >= want {
            return now;
        }
        let missing = (want - self.tokens) as u128;
        now + Duration::from_nanos(
            (missing * 1_000_000_000)
                .div_ceil(u128::from(self.rate))
                .min(u128::from(u64::MAX)) as u64,
        )
    }

    /// When a caller whose timer may fire up to [`TIMER_RESOLUTION`] late should come back:
    /// when `cap - rate × TIMER_RESOLUTION` bytes (at least one) are there.
    pub fn wake_at(&mut self, now: Instant) -> Instant {
        let tick = self.earned(TIMER_RESOLUTION).max(0) as u64;
        let want = self.cap.saturating_sub(tick).max(1);
        self.ready_at(now, want)
    }

    /// The caller will come back for credit at `at`: credit earned after `at`, until it
    /// comes, is kept for it (up to [`MAX_LATE`]) even beyond the cap.
    pub fn promise(&mut self, at: Instant) {
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }
}

/// Which way bytes move on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Read from peers.
    Down,
    /// Written to peers.
    Up,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Down => 0,
            Direction::Up => 1,
        }
    }
}

/// A torrent's own buckets, and the info hash its inbound connections name.
#[derive(Debug)]
struct TorrentLimits {
    info_hash: InfoHash,
    buckets: [Option<TokenBucket>; 2],
}

/// How many parked connections share each bucket in the round being handed out.
#[derive(Debug)]
struct Round {
    dir: Direction,
    all: u64,
    per_torrent: Vec<(TorrentId, u64)>,
}

/// The global and per-torrent rate limits and the connections parked on them. Connections
/// are named by the reactor's slab key; see the module docs for the policy.
#[derive(Debug, Default)]
pub struct RateLimits {
    global: [Option<TokenBucket>; 2],
    torrents: Vec<Option<TorrentLimits>>,
    /// Connections with data to move but no credit, and their torrents, by direction.
    parked: [Vec<(usize, Option<TorrentId>)>; 2],
    resume_at: Option<Instant>,
    round: Option<Round>,
    rotate: usize,
}

impl RateLimits {
    /// Global caps in bytes/s (`None`: none).
    pub fn new(download: Option<u64>, upload: Option<u64>) -> RateLimits {
        RateLimits {
            global: [
                download.map(TokenBucket::for_rate),
                upload.map(TokenBucket::for_rate),
            ],
            ..Default::default()
        }
    }

    /// Sets a torrent's own caps (bytes/s; `None`: none of its own), which apply on top of
    /// the global ones. `info_hash` is how its inbound connections are recognised (see
    /// [`RateLimits::torrent_of`]). Setting a cap again starts its bucket afresh.
    pub fn set_torrent(
        &mut self,
        torrent: TorrentId,
        info_hash: InfoHash,
        download: Option<u64>,
        upload: Option<u64>,
    ) {
        if self.torrents.len() <= torrent.0 {
            self.torrents.resize_with(torrent.0 + 1, || None);
        }
        self.torrents[torrent.0] =
            (download.is_some() || upload.is_some()).then(|| TorrentLimits {
                info_hash,
                buckets: [
                    download.map(TokenBucket::for_rate),
                    upload.map(TokenBucket::for_rate),
                ],
            });
    }

    /// The torrent with limits of its own whose info hash is `info_hash`.
    pub fn torrent_of(&self, info_hash: &[u8; 20]) -> Option<TorrentId> {
        self.torrents
            .iter()
            .position(|t| t.as_ref().is_some_and(|t| &t.info_hash.0 == info_hash))
            .map(TorrentId)
    }

    /// The global bucket and the torrent's, for one direction.
    fn buckets(
        &mut self,
        torrent: Option<TorrentId>,
        dir: Direction,
    ) -> (Option<&mut TokenBucket>, Option<&mut TokenBucket>) {
        let d = dir.index();
        let t = torrent
            .and_then(|t| self.torrents.get_mut(t.0))
            .and_then(Option::as_mut)
            .and_then(|t| t.buckets[d].as_mut());
        (self.global[d].as_mut(), t)
    }

    /// How many parked connections share the global bucket and the torrent's in the round
    /// being handed out (1 and 1 outside a round).
    fn shares(&self, torrent: Option<TorrentId>, dir: Direction) -> (u64, u64) {
        match &self.round {
            Some(r) if r.dir == dir => {
                let t = torrent
                    .and_then(|t| r.per_torrent.iter().find(|(x, _)| *x == t))
                    .map_or(1, |(_, n)| *n);
                (r.all, t)
            }
            _ => (1, 1),
        }
    }

    /// How many bytes connection `k` of `torrent` may move now: `usize::MAX` when nothing
    /// limits it. `None` when a bucket it needs is empty: the connection is parked until both
    /// have credit again, and must not move anything.
    pub fn credit(
        &mut self,
        now: Instant,
        k: usize,
        torrent: Option<TorrentId>,
        dir: Direction,
    ) -> Option<usize> {
        let (gs, ts) = self.shares(torrent, dir);
        let (g, t) = self.buckets(torrent, dir);
        let mut limit = usize::MAX;
        let mut empty = false;
        for (b, share) in [(g, gs), (t, ts)] {
            if let Some(b) = b {
                let avail = b.available(now);
                if avail == 0 {
                    empty = true;
                } else {
                    limit = limit.min(fair(avail, share));
                }
            }
        }
        if empty {
            self.park(now, k, torrent, dir);
            return None;
        }
        Some(limit)
    }

    /// Records `n` bytes moved by a connection of `torrent`: taken from both its buckets.
    pub fn consume(&mut self, torrent: Option<TorrentId>, dir: Direction, n: u64) {
        let (g, t) = self.buckets(torrent, dir);
        for b in [g, t].into_iter().flatten() {
            b.consume(n);
        }
    }

    /// Charges `n` bytes to the torrent's own bucket only: bytes a connection moved before
    /// the reactor knew its torrent (they were taken from the global bucket then).
    pub fn charge_torrent(&mut self, torrent: TorrentId, dir: Direction, n: u64) {
        if let (_, Some(b)) = self.buckets(Some(torrent), dir) {
            b.consume(n);
        }
    }

    /// Whether, in the round being handed out, the connection shares a bucket with other
    /// parked connections: then after its share it goes back in line ([`RateLimits::park`]).
    pub fn shared(&self, torrent: Option<TorrentId>, dir: Direction) -> bool {
        if !self.round.as_ref().is_some_and(|r| r.dir == dir) {
            return false;
        }
        let d = dir.index();
        let (gs, ts) = self.shares(torrent, dir);
        let has_t = torrent
            .and_then(|t| self.torrents.get(t.0))
            .and_then(Option::as_ref)
            .is_some_and(|t| t.buckets[d].is_some());
        (self.global[d].is_some() && gs > 1) || (has_t && ts > 1)
    }

    /// Parks connection `k` until its buckets have credit again (the later of their ready
    /// times). No-op when nothing limits it.
    pub fn park(&mut self, now: Instant, k: usize, torrent: Option<TorrentId>, dir: Direction) {
        let (g, t) = self.buckets(torrent, dir);
        let mut buckets: Vec<&mut TokenBucket> = [g, t].into_iter().flatten().collect();
        let Some(at) = buckets.iter_mut().map(|b| b.wake_at(now)).max() else {
            return;
        };
        if at > now {
            for b in buckets {
                b.promise(at);
            }
        }
        let list = &mut self.parked[dir.index()];
        if !list.iter().any(|(x, _)| *x == k) {
            list.push((k, torrent));
        }
        self.resume_at = Some(self.resume_at.map_or(at, |r| r.min(at)));
    }

    /// When parked connections are next due (the reactor's poll deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.resume_at
    }

    /// Whether parked connections are due at `now`; if so the reactor must hand out rounds
    /// with [`RateLimits::begin_round`] for both directions.
    pub fn take_due(&mut self, now: Instant) -> bool {
        if self.resume_at.is_some_and(|t| now >= t) {
            self.resume_at = None;
            self.rotate = self.rotate.wrapping_add(1);
            true
        } else {
            false
        }
    }

    /// Starts a round for the connections parked in `dir`: returns them, in an order that
    /// rotates from round to round. Until [`RateLimits::end_round`], [`RateLimits::credit`]
    /// gives each an equal share of its buckets.
    pub fn begin_round(&mut self, dir: Direction) -> Vec<usize> {
        let mut list = std::mem::take(&mut self.parked[dir.index()]);
        if list.len() > 1 {
            let r = self.rotate % list.len();
            list.rotate_left(r);
        }
        let mut per_torrent: Vec<(TorrentId, u64)> = Vec::new();
        for t in list.iter().filter_map(|(_, t)| *t) {
            match per_torrent.iter_mut().find(|(x, _)| *x == t) {
                Some((_, n)) => *n += 1,
                None => per_torrent.push((t, 1)),
            }
        }
        self.round = Some(Round {
            dir,
            all: list.len() as u64,
            per_torrent,
        });
        list.into_iter().map(|(k, _)| k).collect()
    }

    /// Ends the round started by [`RateLimits::begin_round`].
    pub fn end_round(&mut self) {
        self.round = None;
    }
}

/// A connection's part of `avail` bytes of credit shared by `sharing` connections: an equal
/// share, but at least a block so every turn makes progress.
pub fn fair(avail: u64, sharing: u64) -> usize {
    (avail / sharing.max(1))
        .max(BLOCK_MSG)
        .min(avail)
        .try_into()
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    //! Accuracy in virtual time. The simulated reactor below does what `Reactor` does with
    //! [`RateLimits`] (the same calls in the same order), over connections whose sockets take
    //! everything and whose senders always have more 16 KiB blocks (each behind a 13-byte
    //! header) queued. Time only moves when the reactor would sleep: to its next deadline,
    //! rounded up to whole milliseconds as mio does, plus whatever lateness a test adds.

    use super::*;
    use crate::rng::Rng;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    const SECOND: Duration = Duration::from_secs(1);
    const TEN_S: Duration = Duration::from_secs(10);

    /// The rates tried: slow, typical, above the one-block-per-millisecond line (16 MB/s),
    /// and odd values.
    const RATES: &[u64] = &[
        10 * KIB,
        100_000,
        333_333,
        MIB,
        2 * MIB,
        7_777_777,
        20 * MIB,
        50 * MIB,
        123_456_789,
    ];

    /// Bytes moved, and when (time since the start).
    type Log = Vec<(Duration, u64)>;

    fn total(log: &Log) -> u64 {
        log.iter().map(|m| m.1).sum()
    }

    /// The most bytes moved in any window `[a, a + w)` (the maximum is at a window that
    /// starts with a move).
    fn max_window(log: &Log, w: Duration) -> u64 {
        let mut best = 0;
        let mut sum = 0;
        let mut j = 0;
        for i in 0..log.len() {
            while j < log.len() && log[j].0 < log[i].0 + w {
                sum += log[j].1;
                j += 1;
            }
            best = best.max(sum);
            sum -= log[i].1;
        }
        best
    }

    /// Whether bytes moved by each instant `t` stay within `allowance + rate × t`; returns
    /// the worst excess over `rate × t` (which the caller compares with the allowance).
    fn worst_lead(log: &Log, rate: u64) -> i128 {
        let mut sum: i128 = 0;
        let mut worst = i128::MIN;
        for (t, n) in log {
            sum += i128::from(*n);
            let line = (t.as_nanos() * u128::from(rate) / 1_000_000_000) as i128;
            worst = worst.max(sum - line);
        }
        worst
    }

    /// Payload in a stream of `bytes` made of 13-byte headers and 16 KiB blocks.
    fn payload(bytes: u64) -> u64 {
        let whole = bytes / BLOCK_MSG;
        let part = bytes % BLOCK_MSG;
        whole * u64::from(BLOCK_LEN) + part.saturating_sub(PIECE_HEADER_LEN as u64)
    }

    /// The most a one-second window may carry above the rate with wake-ups on time: one
    /// block and its header (less at low rates: the idle cap), or, above 16 MB/s where a
    /// wake-up every millisecond must carry more than a block, one millisecond at the rate.
    fn burst(rate: u64) -> u64 {
        idle_cap(rate).max(rate / 1000)
    }

    /// Relative error of `got` against `want`.
    fn err(got: u64, want: u64) -> f64 {
        (got as f64 - want as f64).abs() / want as f64
    }

    /// How the simulated machine wakes the reactor up.
    #[derive(Clone, Copy)]
    enum Lateness {
        /// Exactly when mio's rounded-up timeout expires.
        OnTime,
        /// Up to this much later still, uniformly (a busy machine).
        UpTo(Duration),
    }

    struct SimConn {
        torrent: Option<TorrentId>,
        log: Log,
    }

    /// The reactor's rate-limit loop over always-busy connections, in one direction.
    struct Sim {
        limits: RateLimits,
        dir: Direction,
        conns: Vec<SimConn>,
        t0: Instant,
        now: Instant,
        rng: Rng,
        lateness: Lateness,
        /// Also call connections at random moments between deadlines, as readiness events
        /// and the engine's flushes do, so they find partial credit.
        pokes: bool,
    }

    impl Sim {
        fn new(limits: RateLimits, dir: Direction, torrents: &[Option<TorrentId>]) -> Sim {
            let t0 = crate::net::clock::now();
            Sim {
                limits,
                dir,
                conns: torrents
                    .iter()
                    .map(|&torrent| SimConn {
                        torrent,
                        log: Vec::new(),
                    })
                    .collect(),
                t0,
                now: t0,
                rng: Rng::new(0x5eed),
                lateness: Lateness::OnTime,
                pokes: false,
            }
        }

        /// `Reactor::write` (or `read`) for connection `k`: move what the credit allows (at
        /// most 64 buffers a call, as `writev` takes), until parked.
        fn service(&mut self, k: usize) {
            let t = self.conns[k].torrent;
            loop {
                let Some(limit) = self.limits.credit(self.now, k, t, self.dir) else {
                    return;
                };
                let n = (limit as u64).min(64 * BLOCK_MSG);
                assert!(n > 0, "credit without bytes");
                self.limits.consume(t, self.dir, n);
                self.conns[k].log.push((self.now - self.t0, n));
                if self.limits.shared(t, self.dir) {
                    self.limits.park(self.now, k, t, self.dir);
                    return;
                }
            }
        }

        /// When the reactor wakes up for deadline `at`.
        fn wake(&mut self, at: Instant) -> Instant {
            if at <= self.now {
                return self.now; // a zero timeout: mio returns at once
            }
            let ms = (at - self.now).as_nanos().div_ceil(1_000_000) as u64;
            let mut t = self.now + Duration::from_millis(ms);
            if let Lateness::UpTo(d) = self.lateness {
                t += Duration::from_nanos(self.rng.below(d.as_nanos() as u64 + 1));
            }
            t
        }

        fn run(&mut self, d: Duration) {
            let end = self.t0 + d;
            for k in 0..self.conns.len() {
                self.service(k);
            }
            while self.now < end {
                let at = self
                    .limits
                    .poll_timeout()
                    .expect("busy connections are parked");
                let next = self.wake(at);
                if self.pokes && next > self.now && self.rng.below(3) == 0 {
                    let span = (next - self.now).as_nanos() as u64;
                    self.now += Duration::from_nanos(self.rng.below(span));
                    let k = self.rng.below(self.conns.len() as u64) as usize;
                    self.service(k);
                    continue;
                }
                self.now = next;
                if self.now >= end {
                    break;
                }
                if self.limits.take_due(self.now) {
                    for dir in [Direction::Down, Direction::Up] {
                        for k in self.limits.begin_round(dir) {
                            if dir == self.dir {
                                self.service(k);
                            }
                        }
                        self.limits.end_round();
                    }
                }
            }
        }

        /// Every connection's moves, merged in time order.
        fn all(&self) -> Log {
            self.select(|_| true)
        }

        fn select(&self, f: impl Fn(Option<TorrentId>) -> bool) -> Log {
            let mut v: Log = self
                .conns
                .iter()
                .filter(|c| f(c.torrent))
                .flat_map(|c| c.log.iter().copied())
                .collect();
            v.sort_by_key(|m| m.0);
            v
        }
    }

    /// Checks a log against a rate over 10 s: the total within `tol` of the rate, never more
    /// than `allowance` ahead of the rate from the start, and no one-second window above the
    /// rate by more than `window_excess`.
    fn check(what: &str, log: &Log, rate: u64, tol: f64, allowance: u64, window_excess: u64) {
        let want = rate * 10;
        let got = total(log);
        let e = err(got, want);
        assert!(
            e <= tol,
            "{what}: {got} bytes in 10 s at {rate} B/s: {:.3}% off",
            e * 100.0
        );
        let lead = worst_lead(log, rate);
        assert!(
            lead <= i128::from(allowance),
            "{what}: {lead} bytes ahead of {rate} B/s (allowed {allowance})"
        );
        let w = max_window(log, SECOND);
        assert!(
            w <= rate + window_excess,
            "{what}: {w} bytes in one second at {rate} B/s: {} over (allowed {window_excess})",
            w as i128 - rate as i128
        );
    }

    #[test]
    fn idle_cap_is_a_block_or_50_ms() {
        assert_eq!(BLOCK_MSG, 16_397);
        assert_eq!(idle_cap(10 * KIB), 512);
        assert_eq!(idle_cap(100_000), 5_000);
        assert_eq!(idle_cap(MIB), BLOCK_MSG);
        assert_eq!(idle_cap(50 * MIB), BLOCK_MSG);
        assert_eq!(idle_cap(1), 1);
    }

    /// One connection under one bucket, the reactor waking on time (mio's whole
    /// milliseconds): the 10 s total is within 1% of the rate, the transfer is never more
    /// than the idle cap (at most a block and its header) ahead of the rate, and no second
    /// carries more than the rate plus that.
    #[test]
    fn one_connection_holds_the_rate_and_bursts_at_most_one_block() {
        for dir in [Direction::Up, Direction::Down] {
            for &rate in RATES {
                let limits = match dir {
                    Direction::Up => RateLimits::new(None, Some(rate)),
                    Direction::Down => RateLimits::new(Some(rate), None),
                };
                let mut sim = Sim::new(limits, dir, &[None]);
                sim.pokes = dir == Direction::Down;
                sim.run(TEN_S);
                let log = sim.all();
                let cap = idle_cap(rate);
                check(
                    &format!("{dir:?} {rate}"),
                    &log,
                    rate,
                    0.01,
                    cap,
                    burst(rate),
                );
                // Payload, without the headers, is as close.
                let e = err(payload(total(&log)), rate * 10);
                assert!(e < 0.01, "{rate}: payload {:.3}% off", e * 100.0);
            }
        }
    }

    /// As above with a busy machine: every wake-up up to 3 ms later than the timer said, and
    /// connections called at random moments in between. No credit is lost (lateness up to
    /// `MAX_LATE` is made good), so the total still holds to 1%, and the transfer is still
    /// never more than the idle cap ahead of the rate; a one-second window may now carry the
    /// credit of one late wake-up more (3 ms at the rate).
    #[test]
    fn late_wake_ups_lose_nothing_and_burst_only_their_lateness() {
        for &rate in RATES {
            for seed in 1..4 {
                let mut sim = Sim::new(RateLimits::new(None, Some(rate)), Direction::Up, &[None]);
                sim.rng = Rng::new(seed);
                sim.lateness = Lateness::UpTo(Duration::from_millis(3));
                sim.pokes = true;
                sim.run(TEN_S);
                let cap = idle_cap(rate);
                let late = rate * 3 / 1000;
                let what = format!("{rate}/{seed}");
                check(&what, &sim.all(), rate, 0.01, cap, burst(rate) + late);
            }
        }
    }

    /// A connection that stops for a long time (nothing to send, so nothing parked) finds at
    /// most the idle cap when it comes back: no burst of saved-up credit.
    #[test]
    fn idle_time_does_not_save_up_a_burst() {
        for &rate in RATES {
            let t0 = crate::net::clock::now();
            let mut b = TokenBucket::for_rate(rate);
            let mut now = t0;
            // Two busy seconds: take the credit, wait for more (the last wait is kept).
            loop {
                let n = b.available(now);
                b.consume(n);
                if now >= t0 + 2 * SECOND {
                    break;
                }
                let at = b.wake_at(now);
                b.promise(at);
                now = at.max(now + Duration::from_micros(300));
            }
            // Quiet for a minute, then one look: at most the cap, which is at most a block.
            now += Duration::from_secs(60);
            let n = b.available(now);
            assert!(
                n <= idle_cap(rate) && n <= BLOCK_MSG,
                "{rate}: {n} after idling"
            );
        }
        // Through the gating policy: idle, then busy for 10 s, is as exact as busy from the
        // start.
        for &rate in RATES {
            let mut limits = RateLimits::new(None, Some(rate));
            let t0 = crate::net::clock::now();
            assert!(limits.credit(t0, 0, None, Direction::Up).is_some());
            let mut sim = Sim::new(limits, Direction::Up, &[None]);
            sim.t0 = t0 + Duration::from_secs(3600);
            sim.now = sim.t0;
            sim.run(TEN_S);
            let cap = idle_cap(rate);
            check(
                &format!("idle then {rate}"),
                &sim.all(),
                rate,
                0.01,
                cap,
                burst(rate),
            );
        }
    }

    /// A waiter that was promised credit and never came back (its connection closed) leaves
    /// at most one `MAX_LATE` of credit beyond the cap.
    #[test]
    fn an_abandoned_wait_leaves_at_most_max_late_of_credit() {
        let rate = 50 * MIB;
        let t0 = crate::net::clock::now();
        let mut b = TokenBucket::for_rate(rate);
        let n = b.available(t0);
        b.consume(n);
        let at = b.wake_at(t0);
        b.promise(at);
        let n = b.available(t0 + Duration::from_secs(60));
        let late = rate * MAX_LATE.as_millis() as u64 / 1000;
        assert!(n <= idle_cap(rate) + late, "{n}");
        // ... and only once.
        b.consume(n);
        assert!(b.available(t0 + Duration::from_secs(120)) <= idle_cap(rate));
    }

    /// A torrent's bucket and the global one together: two connections of torrent 0 (capped
    /// at 1 MiB/s), one of torrent 1 (no cap of its own) and one not yet identified, all
    /// under a global 3 MiB/s. Torrent 0 gets its 1 MiB/s, split evenly between its two
    /// connections; the other two share the rest; all together get 3 MiB/s.
    #[test]
    fn torrent_and_global_buckets_gate_together() {
        for dir in [Direction::Up, Direction::Down] {
            for (lateness, pokes) in [
                (Lateness::OnTime, false),
                (Lateness::UpTo(Duration::from_millis(2)), true),
            ] {
                let (g, t) = (3 * MIB, MIB);
                let mut limits = match dir {
                    Direction::Up => RateLimits::new(None, Some(g)),
                    Direction::Down => RateLimits::new(Some(g), None),
                };
                let (d, u) = match dir {
                    Direction::Up => (None, Some(t)),
                    Direction::Down => (Some(t), None),
                };
                limits.set_torrent(TorrentId(0), InfoHash([0; 20]), d, u);
                let tors = [
                    Some(TorrentId(0)),
                    Some(TorrentId(1)),
                    Some(TorrentId(0)),
                    None,
                ];
                let mut sim = Sim::new(limits, dir, &tors);
                sim.lateness = lateness;
                sim.pokes = pokes;
                sim.run(TEN_S);
                let slack = match lateness {
                    Lateness::OnTime => 0,
                    Lateness::UpTo(_) => g * 2 / 1000,
                };
                let what = format!("{dir:?} pokes={pokes}");
                let t0 = sim.select(|x| x == Some(TorrentId(0)));
                check(
                    &format!("{what} torrent 0"),
                    &t0,
                    t,
                    0.01,
                    BLOCK_MSG,
                    BLOCK_MSG + slack,
                );
                check(
                    &format!("{what} all"),
                    &sim.all(),
                    g,
                    0.01,
                    BLOCK_MSG,
                    BLOCK_MSG + slack,
                );
                let (a, b) = (total(&sim.conns[0].log), total(&sim.conns[2].log));
                assert!(
                    err(a, b) < 0.05,
                    "{what}: torrent 0's connections got {a} and {b}"
                );
                let (c, d) = (total(&sim.conns[1].log), total(&sim.conns[3].log));
                assert!(err(c, d) < 0.05, "{what}: the others got {c} and {d}");
            }
        }
    }

    /// Per-torrent caps without a global one: each torrent holds its own rate however many
    /// connections it has; a torrent capped above the global cap gets the global cap.
    #[test]
    fn each_torrent_holds_its_own_cap() {
        let mut limits = RateLimits::new(None, None);
        limits.set_torrent(TorrentId(0), InfoHash([1; 20]), None, Some(MIB));
        limits.set_torrent(TorrentId(1), InfoHash([2; 20]), None, Some(500 * KIB));
        limits.set_torrent(TorrentId(2), InfoHash([3; 20]), None, Some(7_777_777));
        let t = |i| Some(TorrentId(i));
        let mut sim = Sim::new(limits, Direction::Up, &[t(0), t(1), t(1), t(1), t(2), t(2)]);
        sim.run(TEN_S);
        for (i, rate) in [(0, MIB), (1, 500 * KIB), (2, 7_777_777)] {
            let log = sim.select(|x| x == t(i));
            let cap = idle_cap(rate);
            check(&format!("torrent {i}"), &log, rate, 0.01, cap, burst(rate));
        }

        let mut limits = RateLimits::new(None, Some(MIB));
        limits.set_torrent(TorrentId(0), InfoHash([1; 20]), None, Some(4 * MIB));
        let mut sim = Sim::new(limits, Direction::Up, &[t(0), t(0)]);
        sim.run(TEN_S);
        check(
            "global below torrent",
            &sim.all(),
            MIB,
            0.01,
            BLOCK_MSG,
            BLOCK_MSG,
        );
    }

    /// Torrents are found by info hash; limits removed are gone; bytes charged after the
    /// fact (an inbound handshake read before its torrent was known) delay the next credit.
    #[test]
    fn torrents_by_info_hash_and_late_charges() {
        let mut limits = RateLimits::new(None, None);
        limits.set_torrent(TorrentId(3), InfoHash([3; 20]), Some(MIB), None);
        assert_eq!(limits.torrent_of(&[3; 20]), Some(TorrentId(3)));
        assert_eq!(limits.torrent_of(&[4; 20]), None);
        let now = crate::net::clock::now();
        let t = Some(TorrentId(3));
        assert_eq!(limits.credit(now, 0, t, Direction::Up), Some(usize::MAX));
        assert_eq!(
            limits.credit(now, 0, t, Direction::Down),
            Some(BLOCK_MSG as usize)
        );
        limits.charge_torrent(TorrentId(3), Direction::Down, BLOCK_MSG + MIB);
        assert_eq!(limits.credit(now, 0, t, Direction::Down), None);
        let at = limits.poll_timeout().unwrap();
        assert!(at >= now + SECOND, "{:?}", at - now);
        // Unlimited connections are never parked.
        assert_eq!(
            limits.credit(now, 1, None, Direction::Down),
            Some(usize::MAX)
        );
        limits.set_torrent(TorrentId(3), InfoHash([3; 20]), None, None);
        assert_eq!(limits.torrent_of(&[3; 20]), None);
        assert_eq!(limits.credit(now, 0, t, Direction::Down), Some(usize::MAX));
    }

    #[test]
    fn empty_bucket_says_when_it_will_have_credit() {
        let t0 = crate::net::clock::now();
        let mut b = TokenBucket::new(1000, 100);
        assert_eq!(b.available(t0), 100);
        b.consume(100);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.ready_at(t0, 50), t0 + Duration::from_millis(50));
        assert_eq!(b.available(t0 + Duration::from_millis(50)), 50);
        // Credit never exceeds the cap, however long we wait.
        assert_eq!(b.available(t0 + Duration::from_secs(100)), 100);
        // Come back for the cap less one timer tick (1 byte at 1000 B/s).
        b.consume(100);
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(b.wake_at(t1), t1 + Duration::from_millis(99));
        // A promise keeps what is earned while the waiter is late, up to MAX_LATE.
        b.promise(t1 + Duration::from_millis(99));
        assert_eq!(b.available(t1 + Duration::from_millis(102)), 102);
        b.consume(102);
        b.promise(t1 + Duration::from_millis(200));
        // (98 earned up to the promise, 5 of the 100 ms it came late.)
        assert_eq!(b.available(t1 + Duration::from_millis(300)), 98 + 5);
    }
}
