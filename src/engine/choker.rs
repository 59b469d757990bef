//! The choker: which peers may download from us (BEP 3 tit-for-tat).
//!
//! It owns the choke *policy* of one torrent: the per-peer record it needs across rounds
//! (how many rounds in a row a peer has held a regular slot, since when it has been waiting),
//! the optimistic slots with their expiry times, and the round schedule. The engine gives it a
//! snapshot of its peers once per round and gets back the set that should be unchoked; turning
//! that set into `choke` / `unchoke` messages is the engine's job.
//!
//! It must never do I/O, read the clock, spawn threads or take locks: time is the `now`
//! argument, randomness is the [`Rng`] argument, so a run is fixed by its inputs and seed. It
//! never gives a slot to a peer that is not interested in us; whether such peers are kept
//! unchoked anyway (unchoke-on-interest) is the engine's business, not the choker's.
//!
//! # One round
//!
//! **Leeching.** The `regular_slots` regular slots go to the interested, non-snubbed peers that
//! send us data fastest (`download_rate`), ties broken by how fast we send to them
//! (`upload_rate`), then in favour of a peer that is already unchoked (fewer choke/unchoke
//! messages for nothing), then at random.
//!
//! **Seeding.** A seed receives nothing, so it ranks interested peers by how fast they take
//! data from us (`upload_rate`; `snubbed` means nothing here). Ranking by rate alone would let
//! the first few fast leechers keep the slots for ever (a choked peer's upload rate decays to
//! zero, so it can never catch up), so the seed rotates, the way libtorrent's "round robin"
//! seed choker does with a round count in place of its byte quota:
//!
//! 1. a peer that held a regular slot last round and has held it for fewer than
//!    `seed_max_rounds` rounds in a row keeps it (holders ranked by upload rate);
//! 2. free slots go to the peers that have waited longest: waiting since they last lost a
//!    regular slot, became interested or connected, counted in rounds, so peers that started
//!    waiting in the same round tie and the tie goes to the faster one by upload rate, then
//!    to chance;
//! 3. only if slots are still free do holders that used up their `seed_max_rounds` keep theirs
//!    (ranked by upload rate).
//!
//! With `n` interested leechers and `s` regular slots every leecher gets a regular slot within
//! `(ceil(n / s) - 1) * seed_max_rounds + 1` rounds of connecting and waits at most that long
//! between turns; on the first round (everybody waited equally) the fastest take the slots.
//!
//! **Optimistic.** After the regular slots, `optimistic_slots` slots go to interested peers
//! outside the regular set, drawn at random; a peer connected less than `new_peer_window` ago
//! is `new_peer_weight` times as likely to be drawn (it has no pieces yet to trade, and no rate
//! to be ranked by). Snubbed peers may be drawn: an optimistic unchoke is their way back. Each
//! optimistic peer keeps its slot for `optimistic_interval` (every third round by default),
//! then the slot is drawn again among the *other* candidates when there are any. A peer that
//! leaves, loses interest or wins a regular slot frees its optimistic slot at once, and a
//! replacement is drawn in the same round (it then keeps it for a full interval).
//!
//! # Call order
//!
//! The engine keeps a timer entry at [`Choker::next_round`] and calls [`Choker::round`] when it
//! fires, with every connected peer. A call before the round is due is a no-op that returns the
//! previous decision (a spurious timeout changes nothing and draws nothing from the `Rng`).
//! When a connection closes the engine calls [`Choker::peer_left`] so that the slab key, which
//! will be reused, starts afresh; its slot is refilled at the next round.
//!
//! ```
//! use std::time::Instant;
//! use bitmill::engine::choker::{Choker, PeerInfo};
//! use bitmill::rng::Rng;
//!
//! fn on_timeout(choker: &mut Choker, now: Instant, peers: &[PeerInfo], seeding: bool, rng: &mut Rng) {
//!     if choker.is_due(now) {
//!         let decision = choker.round(now, peers, seeding, rng);
//!         for p in peers {
//!             let _should_be_unchoked = decision.is_unchoked(p.key);
//!             // ... queue `choke` / `unchoke` where that differs from `p.unchoked` ...
//!         }
//!     }
//!     // ... re-arm the timer at `choker.next_round()` ...
//! }
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::engine::PeerKey;
use crate::rng::Rng;

/// How the choker shares out upload slots. `Default` is what mature clients use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Regular (tit-for-tat) slots: the best peers by rate. Default 4.
    pub regular_slots: usize,
    /// Optimistic slots: random interested peers outside the regular set. Default 1.
    pub optimistic_slots: usize,
    /// Time between two rounds. Default 10 s.
    pub round_interval: Duration,
    /// How long an optimistic peer keeps its slot before it is drawn again. Default 30 s.
    /// Expiry is checked at rounds, so a value that is not a multiple of `round_interval`
    /// takes effect at the first round after it.
    pub optimistic_interval: Duration,
    /// A peer connected for less than this is "new". Default 60 s.
    pub new_peer_window: Duration,
    /// How many times more likely a new peer is to be drawn as optimistic. Default 3;
    /// 0 is treated as 1.
    pub new_peer_weight: u32,
    /// Seeding: after this many consecutive rounds in a regular slot a peer yields it to one
    /// that has waited longer. Default 3; 0 is treated as 1.
    pub seed_max_rounds: u32,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            regular_slots: 4,
            optimistic_slots: 1,
            round_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            new_peer_window: Duration::from_secs(60),
            new_peer_weight: 3,
            seed_max_rounds: 3,
        }
    }
}

/// What the choker needs to know about one connected peer, as the engine sees it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The connection.
    pub key: PeerKey,
    /// The peer is interested in us (wants pieces we have).
    pub interested: bool,
    /// Bytes per second we receive from the peer.
    pub download_rate: u64,
    /// Bytes per second we send to the peer.
    pub upload_rate: u64,
    /// When the connection was established. A change for the same key means the slab key was
    /// reused by a new connection: the choker then forgets what it knew about the old one.
    pub connected_at: Instant,
    /// The peer has stopped sending us data it owes us (anti-snubbing): no regular slot while
    /// leeching.
    pub snubbed: bool,
    /// We currently have the peer unchoked.
    pub unchoked: bool,
}

/// The outcome of a round: who should be unchoked until the next one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChokeDecision {
    /// Every peer that should be unchoked: the regular slots first, best first, then the
    /// optimistic ones. Everyone else should be choked (as far as the choker is concerned).
    pub unchoke: Vec<PeerKey>,
    /// The peers in `unchoke` that hold an optimistic slot.
    pub optimistic: Vec<PeerKey>,
}

impl ChokeDecision {
    /// The peers holding a regular slot, best first.
    pub fn regular(&self) -> &[PeerKey] {
        let n = self.unchoke.len().saturating_sub(self.optimistic.len());
        &self.unchoke[..n]
    }

    /// Whether `key` should be unchoked.
    pub fn is_unchoked(&self, key: PeerKey) -> bool {
        self.unchoke.contains(&key)
    }

    /// Whether `key` holds an optimistic slot.
    pub fn is_optimistic(&self, key: PeerKey) -> bool {
        self.optimistic.contains(&key)
    }

    fn forget(&mut self, key: PeerKey) {
        self.unchoke.retain(|&k| k != key);
        self.optimistic.retain(|&k| k != key);
    }
}

/// The choker of one torrent. See the module documentation for the policy and call order.
#[derive(Clone, Debug)]
pub struct Choker {
    config: ChokerConfig,
    /// When the next round is due; `None` until the first round, which is due at once.
    next_round: Option<Instant>,
    /// Rounds run so far; the current round's number while one runs (the first is 1).
    rounds: u64,
    /// What the choker remembers per connected peer.
    tracks: HashMap<PeerKey, Track, BuildHasherDefault<KeyHasher>>,
    /// The optimistic slots in use, in the order they were filled.
    optimistic: Vec<OptimisticSlot>,
    /// The last decision, returned again by early calls.
    last: ChokeDecision,
    /// Reused buffer: candidates for the regular slots.
    ranked: Vec<Candidate>,
    /// Reused buffer: candidates for the optimistic slots, `(index in peers, weight)`.
    pool: Vec<(usize, u64)>,
}

/// Per-peer memory kept between rounds.
#[derive(Clone, Copy, Debug)]
struct Track {
    /// Tells a reused slab key from the connection we knew.
    connected_at: Instant,
    /// Index into the `peers` of the round that last saw the peer.
    idx: usize,
    /// The round that last saw the peer (tracks not seen in a round are dropped).
    seen: u64,
    /// The round the peer last got a regular slot in (0: never).
    regular_in: u64,
    /// Consecutive rounds in a regular slot, ending with the last round (0: not a holder).
    streak: u32,
    /// The round since which the peer has been interested and without a regular slot.
    waiting_since: u64,
}

impl Track {
    fn new(connected_at: Instant, round: u64) -> Track {
        Track {
            connected_at,
            idx: 0,
            seen: 0,
            regular_in: 0,
            streak: 0,
            waiting_since: round,
        }
    }
}

/// An optimistic slot and the time at which it is drawn again.
#[derive(Clone, Copy, Debug)]
struct OptimisticSlot {
    key: PeerKey,
    until: Instant,
}

/// A candidate for a regular slot; the smallest `rank` wins (`idx` makes the order total).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: (u8, u64, u64, u8, u64),
    idx: usize,
}

/// Hashes a `PeerKey` (a slab index) with one multiply, as FxHash does. Keys come from our
/// own slab, not from peers, so there is no collision attack to defend against, and SipHash
/// would be most of the cost of a round.
#[derive(Clone, Copy, Debug, Default)]
struct KeyHasher(u64);

impl KeyHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // The table takes its control bits from the top and its bucket from the bottom.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// Sorts descending values first in an ascending rank.
fn desc(x: u64) -> u64 {
    u64::MAX - x
}

/// `now + d`, or `now` in the (theoretical) case that overflows `Instant`.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// Draws one entry of `pool` with probability proportional to its weight and removes it.
fn draw(pool: &mut Vec<(usize, u64)>, rng: &mut Rng) -> Option<usize> {
    let total: u64 = pool.iter().map(|&(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    let pos = pool.iter().position(|&(_, w)| {
        if r < w {
            true
        } else {
            r -= w;
            false
        }
    })?;
    Some(pool.swap_remove(pos).0)
}

impl Choker {
    /// A choker that has not run a round yet; its first round is due at once.
    pub fn new(config: ChokerConfig) -> Choker {
        Choker {
            config,
            next_round: None,
            rounds: 0,
            tracks: HashMap::default(),
            optimistic: Vec::new(),
            last: ChokeDecision::default(),
            ranked: Vec::new(),
            pool: Vec::new(),
        }
    }

    /// The configuration this choker runs with.
    pub fn config(&self) -> &ChokerConfig {
        &self.config
    }

    /// When the next round is due, for the engine's timer table. `None` before the first
    /// round, which is due at once (call [`Choker::round`] as soon as there are peers).
    pub fn next_round(&self) -> Option<Instant> {
        self.next_round
    }

    /// Whether a call to [`Choker::round`] at `now` would run a round.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_round.is_none_or(|due| now >= due)
    }

    /// The decision of the last round (without the peers that left since).
    pub fn current(&self) -> &ChokeDecision {
        &self.last
    }

    /// Runs a choke round over `peers`, every peer currently connected, and returns who should
    /// be unchoked until the next one. Before the round is due this changes nothing (not even
    /// the `rng`) and returns the previous decision. `seeding` picks the ranking (see the module
    /// documentation). If a key appears more than once in `peers`, its first entry counts.
    pub fn round(
        &mut self,
        now: Instant,
        peers: &[PeerInfo],
        seeding: bool,
        rng: &mut Rng,
    ) -> ChokeDecision {
        if !self.is_due(now) {
            return self.last.clone();
        }
        self.rounds += 1;
        let round = self.rounds;
        self.next_round = Some(later(now, self.config.round_interval));
        let max_rounds = self.config.seed_max_rounds.max(1);
        let new_weight = u64::from(self.config.new_peer_weight.max(1));

        // Refresh what we know of each peer; rank the candidates for regular slots; gather
        // the interested peers, with their weights, as candidates for the optimistic ones.
        self.ranked.clear();
        self.pool.clear();
        for (idx, p) in peers.iter().enumerate() {
            let t = self
                .tracks
                .entry(p.key)
                .or_insert_with(|| Track::new(p.connected_at, round));
            if t.connected_at != p.connected_at {
                // A new connection under a reused key whose `peer_left` we never got.
                *t = Track::new(p.connected_at, round);
                self.optimistic.retain(|s| s.key != p.key);
            }
            if t.seen == round {
                continue;
            }
            t.seen = round;
            t.idx = idx;
            if !p.interested {
                t.waiting_since = round;
                continue;
            }
            let is_new =
                now.saturating_duration_since(p.connected_at) < self.config.new_peer_window;
            self.pool.push((idx, if is_new { new_weight } else { 1 }));
            let tie = rng.next();
            let rank = if !seeding {
                if p.snubbed {
                    continue;
                }
                let fresh = u8::from(!p.unchoked);
                (0, desc(p.download_rate), desc(p.upload_rate), fresh, tie)
            } else if t.streak == 0 {
                (1, t.waiting_since, desc(p.upload_rate), 0, tie)
            } else if t.streak < max_rounds {
                (0, desc(p.upload_rate), 0, 0, tie)
            } else {
                (2, desc(p.upload_rate), 0, 0, tie)
            };
            self.ranked.push(Candidate { rank, idx });
        }

        // The regular slots.
        let k = self.config.regular_slots.min(self.ranked.len());
        if k > 0 && k < self.ranked.len() {
            self.ranked.select_nth_unstable(k - 1);
        }
        self.ranked[..k].sort_unstable();
        let mut unchoke: Vec<PeerKey> = Vec::with_capacity(k + self.config.optimistic_slots);
        for c in &self.ranked[..k] {
            let key = peers[c.idx].key;
            unchoke.push(key);
            if let Some(t) = self.tracks.get_mut(&key) {
                t.regular_in = round;
            }
        }
        let regular = &unchoke[..];

        // Streaks and waits for the next round; forget peers that are gone.
        self.tracks.retain(|_, t| {
            if t.seen != round {
                return false;
            }
            if t.regular_in == round {
                t.streak = t.streak.saturating_add(1);
            } else if t.streak > 0 {
                t.streak = 0;
                t.waiting_since = round;
            }
            true
        });

        // The optimistic slots: keep the ones still valid, then draw for the free ones.
        let mut expired: Vec<(usize, u64)> = Vec::new();
        let mut kept: Vec<OptimisticSlot> = Vec::with_capacity(self.config.optimistic_slots);
        for slot in self.optimistic.drain(..) {
            let Some(t) = self.tracks.get(&slot.key) else {
                continue; // left
            };
            if !peers[t.idx].interested || t.regular_in == round {
                continue;
            }
            if now >= slot.until {
                let weight = self
                    .pool
                    .iter()
                    .find(|&&(i, _)| i == t.idx)
                    .map_or(1, |&(_, w)| w);
                expired.push((t.idx, weight));
            } else if kept.len() < self.config.optimistic_slots {
                kept.push(slot);
            }
        }
        self.pool.retain(|&(idx, _)| {
            let key = peers[idx].key;
            !regular.contains(&key)
                && !kept.iter().any(|s| s.key == key)
                && !expired.iter().any(|&(i, _)| i == idx)
        });
        while kept.len() < self.config.optimistic_slots {
            let Some(idx) = draw(&mut self.pool, rng).or_else(|| draw(&mut expired, rng)) else {
                break;
            };
            kept.push(OptimisticSlot {
                key: peers[idx].key,
                until: later(now, self.config.optimistic_interval),
            });
        }
        self.optimistic = kept;

        let optimistic: Vec<PeerKey> = self.optimistic.iter().map(|s| s.key).collect();
        unchoke.extend_from_slice(&optimistic);
        self.last = ChokeDecision {
            unchoke,
            optimistic,
        };
        self.last.clone()
    }

    /// The connection `key` closed: forget it, so that a new connection reusing the key starts
    /// afresh. Its slot, regular or optimistic, is refilled at the next round.
    pub fn peer_left(&mut self, key: PeerKey) {
        self.tracks.remove(&key);
        self.optimistic.retain(|s| s.key != key);
        self.last.forget(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Old peers connected at `t0`; the trace's clock starts an hour later, so they are not new.
    const START: Duration = Duration::from_secs(3600);

    /// A choker, its seeded `Rng` and a virtual clock.
    struct Trace {
        choker: Choker,
        rng: Rng,
        t0: Instant,
    }

    impl Trace {
        fn new(seed: u64) -> Trace {
            Trace::with(ChokerConfig::default(), seed)
        }

        fn with(config: ChokerConfig, seed: u64) -> Trace {
            Trace {
                choker: Choker::new(config),
                rng: Rng::new(seed),
                t0: crate::net::clock::now(),
            }
        }

        /// `secs` seconds into the trace.
        fn time(&self, secs: u64) -> Instant {
            self.t0 + START + Duration::from_secs(secs)
        }

        /// An old, interested, choked peer that sends and takes nothing.
        fn peer(&self, key: usize) -> PeerInfo {
            PeerInfo {
                key: PeerKey(key),
                interested: true,
                download_rate: 0,
                upload_rate: 0,
                connected_at: self.t0,
                snubbed: false,
                unchoked: false,
            }
        }

        /// `round` at `secs` into the trace.
        fn leech(&mut self, secs: u64, peers: &[PeerInfo]) -> ChokeDecision {
            let now = self.time(secs);
            self.choker.round(now, peers, false, &mut self.rng)
        }

        fn seed(&mut self, secs: u64, peers: &[PeerInfo]) -> ChokeDecision {
            let now = self.time(secs);
            self.choker.round(now, peers, true, &mut self.rng)
        }
    }

    /// Test-only builders, so peer lists read like a swarm description.
    trait Tweak {
        fn down(self, rate: u64) -> Self;
        fn up(self, rate: u64) -> Self;
        fn uninterested(self) -> Self;
        fn snubbed(self) -> Self;
        fn unchoked(self) -> Self;
        fn joined(self, at: Instant) -> Self;
    }

    impl Tweak for PeerInfo {
        fn down(mut self, rate: u64) -> Self {
            self.download_rate = rate;
            self
        }
        fn up(mut self, rate: u64) -> Self {
            self.upload_rate = rate;
            self
        }
        fn uninterested(mut self) -> Self {
            self.interested = false;
            self
        }
        fn snubbed(mut self) -> Self {
            self.snubbed = true;
            self
        }
        fn unchoked(mut self) -> Self {
            self.unchoked = true;
            self
        }
        fn joined(mut self, at: Instant) -> Self {
            self.connected_at = at;
            self
        }
    }

    fn set(keys: &[PeerKey]) -> BTreeSet<usize> {
        keys.iter().map(|k| k.0).collect()
    }

    fn set_of(keys: &[usize]) -> BTreeSet<usize> {
        keys.iter().copied().collect()
    }

    /// Peers 1..=4 send fast; peers 11..=16 send nothing, so they only ever get optimistic slots.
    fn four_fast_six_slow(tr: &Trace) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = (1..=4).map(|k| tr.peer(k).down(1000 * k as u64)).collect();
        peers.extend((11..=16).map(|k| tr.peer(k)));
        peers
    }

    #[test]
    fn leeching_regular_slots_go_to_the_four_fastest_senders() {
        let mut tr = Trace::new(1);
        let peers = [
            tr.peer(1).down(100),
            tr.peer(2).down(900).uninterested(), // fastest, but wants nothing from us
            tr.peer(3).down(800).snubbed(),      // stopped sending: no regular slot
            tr.peer(4).down(500),
            tr.peer(5).down(400),
            tr.peer(6).down(300),
            tr.peer(7).down(200),
            tr.peer(8).down(50),
        ];
        let d = tr.leech(0, &peers);
        assert_eq!(
            d.regular(),
            &[PeerKey(4), PeerKey(5), PeerKey(6), PeerKey(7)]
        );
        assert_eq!(d.optimistic.len(), 1);
        // The optimistic slot is drawn among the other interested peers, snubbed ones included.
        assert!(set_of(&[1, 3, 8]).contains(&d.optimistic[0].0), "{d:?}");
        assert!(!d.is_unchoked(PeerKey(2)));
        assert_eq!(d.unchoke.len(), 5);

        // Ten seconds later peer 1 has become the fastest sender and takes peer 7's slot.
        let mut peers = peers;
        peers[0].download_rate = 1000;
        let d = tr.leech(10, &peers);
        assert_eq!(set(d.regular()), set_of(&[1, 4, 5, 6]));
        assert!(!d.is_unchoked(PeerKey(2)));
    }

    #[test]
    fn leeching_ties_break_on_upload_rate_then_at_random() {
        let tr = Trace::new(0);
        let base: Vec<PeerInfo> = (1..=3).map(|k| tr.peer(k).down(500)).collect();
        // Peers 4 and 5 send equally fast; we send faster to 5: 5 gets the last slot.
        let mut peers = base.clone();
        peers.extend([tr.peer(4).down(100).up(10), tr.peer(5).down(100).up(20)]);
        let config = ChokerConfig {
            optimistic_slots: 0,
            ..ChokerConfig::default()
        };
        let mut tr = Trace::with(config.clone(), 0);
        assert_eq!(set(tr.leech(0, &peers).regular()), set_of(&[1, 2, 3, 5]));

        // All equal: the last slot goes at random, so both peers win it over a few seeds.
        let mut peers = base;
        peers.extend([tr.peer(4).down(100), tr.peer(5).down(100)]);
        let mut winners = BTreeSet::new();
        for seed in 0..32 {
            let mut tr = Trace::with(config.clone(), seed);
            let d = tr.leech(0, &peers);
            assert_eq!(d.unchoke.len(), 4);
            winners.insert(d.regular()[3].0);
        }
        assert_eq!(winners, set_of(&[4, 5]));

        // All equal, but peer 4 is already unchoked: it keeps its slot (no needless churn).
        peers[3] = peers[3].unchoked();
        for seed in 0..32 {
            let mut tr = Trace::with(config.clone(), seed);
            assert_eq!(set(tr.leech(0, &peers).regular()), set_of(&[1, 2, 3, 4]));
        }
    }

    #[test]
    fn optimistic_slot_rotates_every_30s_not_at_10s_or_20s() {
        let mut tr = Trace::new(7);
        let peers = four_fast_six_slow(&tr);
        let mut seen = Vec::new();
        for secs in (0..=300).step_by(10) {
            let d = tr.leech(secs, &peers);
            assert_eq!(set(d.regular()), set_of(&[1, 2, 3, 4]), "at {secs}s");
            assert_eq!(d.optimistic.len(), 1, "at {secs}s");
            assert_eq!(tr.choker.next_round(), Some(tr.time(secs + 10)));
            seen.push(d.optimistic[0].0);
        }
        for (i, pair) in seen.windows(2).enumerate() {
            let secs = (i + 1) * 10;
            if secs % 30 == 0 {
                assert_ne!(pair[0], pair[1], "no rotation at {secs}s: {seen:?}");
            } else {
                assert_eq!(pair[0], pair[1], "rotated early at {secs}s: {seen:?}");
            }
        }
        let distinct: BTreeSet<usize> = seen.iter().copied().collect();
        assert!(distinct.len() >= 4, "only {distinct:?} over 10 rotations");
        assert!(distinct.iter().all(|k| (11..=16).contains(k)));
    }

    #[test]
    fn new_peers_are_favoured_for_the_optimistic_slot() {
        let (mut new_picks, mut old_picks) = (0u32, 0u32);
        for seed in 0..3000 {
            let mut tr = Trace::new(seed);
            let now = tr.time(0);
            let mut peers: Vec<PeerInfo> = (1..=4).map(|k| tr.peer(k).down(1000)).collect();
            // Four old candidates, four that connected 20 s ago.
            peers.extend((11..=14).map(|k| tr.peer(k)));
            let just_now = now - Duration::from_secs(20);
            peers.extend((21..=24).map(|k| tr.peer(k).joined(just_now)));
            let d = tr.leech(0, &peers);
            match d.optimistic[..] {
                [PeerKey(k)] if (21..=24).contains(&k) => new_picks += 1,
                [PeerKey(k)] if (11..=14).contains(&k) => old_picks += 1,
                _ => panic!("bad optimistic pick {d:?}"),
            }
        }
        // Weight 3: expect 3/4 of the picks new, 1/4 old.
        assert!(old_picks > 0);
        assert!(
            new_picks > 2 * old_picks,
            "new {new_picks} vs old {old_picks}"
        );
    }

    #[test]
    fn seeding_ranks_interested_leechers_by_upload_rate() {
        let config = ChokerConfig {
            optimistic_slots: 0,
            ..ChokerConfig::default()
        };
        let mut tr = Trace::with(config, 3);
        // Leechers send a seed nothing that counts: download rates and snubbing are ignored.
        let peers = [
            tr.peer(1).up(100).down(900),
            tr.peer(2).up(800).snubbed(),
            tr.peer(3).up(300).down(700),
            tr.peer(4).up(700),
            tr.peer(5).up(200).down(500),
            tr.peer(6).up(600),
            tr.peer(7).up(5000).uninterested(), // took data fast, but has all it wants now
            tr.peer(8).up(400),
        ];
        let d = tr.seed(0, &peers);
        assert_eq!(
            d.unchoke,
            vec![PeerKey(2), PeerKey(4), PeerKey(6), PeerKey(8)]
        );
    }

    /// Seeds `n` leechers for `rounds` rounds; the upload rate to a peer is its capacity while
    /// it was unchoked last round, else zero (as a real rate estimate decays). Returns, per
    /// round, the regular set.
    fn seed_rotation(n: usize, rounds: u64, seed: u64) -> Vec<BTreeSet<usize>> {
        let mut tr = Trace::new(seed);
        let mut unchoked = BTreeSet::new();
        let mut history = Vec::new();
        for r in 0..rounds {
            let peers: Vec<PeerInfo> = (1..=n)
                .map(|k| {
                    let p = tr.peer(k);
                    if unchoked.contains(&k) {
                        p.up(1000 * k as u64).unchoked()
                    } else {
                        p
                    }
                })
                .collect();
            let d = tr.seed(r * 10, &peers);
            assert!(d.unchoke.len() <= 5);
            unchoked = set(&d.unchoke);
            history.push(set(d.regular()));
        }
        history
    }

    /// For each peer, the longest run of rounds without a regular slot (including the start).
    fn longest_waits(n: usize, history: &[BTreeSet<usize>]) -> BTreeMap<usize, usize> {
        (1..=n)
            .map(|k| {
                let longest = history
                    .split(|regular| regular.contains(&k))
                    .map(<[_]>::len)
                    .max()
                    .unwrap_or(0);
                (k, longest)
            })
            .collect()
    }

    #[test]
    fn seeding_rotation_gives_each_of_8_leechers_a_turn_within_4_rounds() {
        for seed in 0..20 {
            let history = seed_rotation(8, 30, seed);
            // Bound: (ceil(8 / 4) - 1) * 3 + 1 = 4 rounds; so at most 3 rounds without a slot.
            for (k, wait) in longest_waits(8, &history) {
                assert!(
                    wait <= 3,
                    "seed {seed}: peer {k} waited {wait} rounds: {history:?}"
                );
            }
            // Turns last exactly seed_max_rounds = 3 rounds, and all are fully used.
            assert_eq!(history[0], history[1]);
            assert_eq!(history[1], history[2]);
            assert!(history[2].is_disjoint(&history[3]), "{history:?}");
            assert!(history.iter().all(|r| r.len() == 4));
        }
    }

    #[test]
    fn seeding_rotation_starves_nobody_with_12_leechers() {
        for seed in 0..20 {
            let history = seed_rotation(12, 40, seed);
            // Bound: (ceil(12 / 4) - 1) * 3 + 1 = 7 rounds; so at most 6 without a slot.
            for (k, wait) in longest_waits(12, &history) {
                assert!(
                    wait <= 6,
                    "seed {seed}: peer {k} waited {wait} rounds: {history:?}"
                );
            }
        }
    }

    #[test]
    fn seeding_with_few_leechers_keeps_them_all_unchoked() {
        let mut tr = Trace::new(4);
        let peers: Vec<PeerInfo> = (1..=3).map(|k| tr.peer(k).up(100)).collect();
        for r in 0..10 {
            let d = tr.seed(r * 10, &peers);
            assert_eq!(set(d.regular()), set_of(&[1, 2, 3]), "round {r}");
            assert!(d.optimistic.is_empty());
        }
    }

    #[test]
    fn spurious_early_round_changes_nothing() {
        let mut tr = Trace::new(11);
        let peers = four_fast_six_slow(&tr);
        let first = tr.leech(0, &peers);
        assert_eq!(tr.choker.next_round(), Some(tr.time(10)));

        let mut twin_choker = tr.choker.clone();
        let mut twin_rng = tr.rng.clone();

        // At 5 s a new, very fast peer shows up and peer 1 loses interest: too early to act.
        let mut changed = peers.clone();
        changed[0] = changed[0].uninterested();
        changed.push(tr.peer(99).down(1 << 20));
        assert!(!tr.choker.is_due(tr.time(5)));
        assert_eq!(tr.leech(5, &changed), first);
        assert_eq!(tr.leech(9, &peers), first);
        assert_eq!(tr.choker.next_round(), Some(tr.time(10)));

        // At 10 s the round runs exactly as it would have without the early calls.
        let d = tr.leech(10, &changed);
        let twin = twin_choker.round(tr.time(10), &changed, false, &mut twin_rng);
        assert_eq!(d, twin);
        assert!(d.is_unchoked(PeerKey(99)));
        assert!(!d.is_unchoked(PeerKey(1)));
        assert_eq!(
            tr.rng.next(),
            twin_rng.next(),
            "early calls drew randomness"
        );
    }

    #[test]
    fn departed_optimistic_peer_is_replaced_at_the_next_round() {
        let mut tr = Trace::new(5);
        let mut peers = four_fast_six_slow(&tr);
        let d = tr.leech(0, &peers);
        let gone = d.optimistic[0];

        tr.choker.peer_left(gone);
        peers.retain(|p| p.key != gone);
        assert!(!tr.choker.current().is_unchoked(gone));
        // An early call hands back the last decision, minus the departed peer.
        assert_eq!(tr.leech(3, &peers).unchoke.len(), 4);

        let d = tr.leech(10, &peers);
        assert_eq!(d.optimistic.len(), 1);
        assert_ne!(d.optimistic[0], gone);
        assert!((11..=16).contains(&d.optimistic[0].0));
        // The replacement keeps its slot for a full interval from 10 s.
        let replacement = d.optimistic[0];
        assert_eq!(tr.leech(20, &peers).optimistic, vec![replacement]);
        assert_eq!(tr.leech(30, &peers).optimistic, vec![replacement]);
        assert_ne!(tr.leech(40, &peers).optimistic, vec![replacement]);
    }

    #[test]
    fn departed_peer_vanishing_from_the_list_frees_its_slot_too() {
        // The engine forgot `peer_left`, but the peer is no longer in the list.
        let mut tr = Trace::new(6);
        let mut peers = four_fast_six_slow(&tr);
        let gone = tr.leech(0, &peers).optimistic[0];
        peers.retain(|p| p.key != gone);
        let d = tr.leech(10, &peers);
        assert_eq!(d.optimistic.len(), 1);
        assert_ne!(d.optimistic[0], gone);
    }

    #[test]
    fn optimistic_peer_is_replaced_at_once_when_it_loses_interest_or_wins_a_regular_slot() {
        let mut tr = Trace::new(8);
        let mut peers = four_fast_six_slow(&tr);
        let first = tr.leech(0, &peers).optimistic[0];

        // 10 s: it lost interest: replaced in this very round.
        let i = peers.iter().position(|p| p.key == first).unwrap_or(0);
        peers[i] = peers[i].uninterested();
        let d = tr.leech(10, &peers);
        let second = d.optimistic[0];
        assert_ne!(second, first);
        assert!(!d.is_unchoked(first));

        // 20 s: the second one sent us data faster than anyone: regular slot, and a new
        // optimistic peer is drawn among the rest at once.
        let j = peers.iter().position(|p| p.key == second).unwrap_or(0);
        peers[j] = peers[j].down(1 << 20);
        let d = tr.leech(20, &peers);
        assert_eq!(d.regular()[0], second);
        assert_eq!(d.optimistic.len(), 1);
        assert_ne!(d.optimistic[0], second);
        assert_ne!(d.optimistic[0], first);
        assert_eq!(d.unchoke.len(), 5);
        assert!(d.regular().len() == 4 && !d.regular().contains(&PeerKey(1)));
    }

    #[test]
    fn a_reused_peer_key_is_a_new_peer() {
        let config = ChokerConfig {
            optimistic_slots: 0,
            ..ChokerConfig::default()
        };
        let mut tr = Trace::with(config, 9);
        let mut peers: Vec<PeerInfo> = (1..=5).map(|k| tr.peer(k).up(100 * k as u64)).collect();
        let d = tr.seed(0, &peers);
        assert_eq!(set(d.regular()), set_of(&[2, 3, 4, 5]));
        // Key 5 now belongs to a new connection (no `peer_left` was seen): it is not the holder
        // of a slot any more but a newcomer, behind peer 1 which has waited since 0 s.
        peers[4] = peers[4].joined(tr.time(5));
        let d = tr.seed(10, &peers);
        assert_eq!(set(d.regular()), set_of(&[1, 2, 3, 4]));
    }

    #[test]
    fn at_most_regular_plus_optimistic_unchoked_across_random_swarms() {
        for seed in 0..40 {
            check_random_swarm(seed);
        }
    }

    /// Drives a choker through a churning random swarm, with early calls, and checks the
    /// invariants after every call. Returns every decision.
    fn check_random_swarm(seed: u64) -> Vec<ChokeDecision> {
        const KEYS: usize = 40;
        let mut tr = Trace::new(seed);
        let mut world = Rng::new(seed ^ 0x5eed_5a4d);
        let mut joined: Vec<Option<Instant>> = (0..KEYS)
            .map(|_| (world.below(2) == 0).then_some(tr.t0))
            .collect();
        let mut secs = 0;
        let mut decisions = Vec::new();
        let mut last = ChokeDecision::default();
        for _ in 0..150 {
            secs += if world.below(5) == 0 {
                1 + world.below(9)
            } else {
                10
            };
            let now = tr.time(secs);
            for (k, j) in joined.iter_mut().enumerate() {
                if j.is_some() && world.below(10) == 0 {
                    *j = None;
                    if world.below(2) == 0 {
                        tr.choker.peer_left(PeerKey(k));
                        last.forget(PeerKey(k));
                    }
                } else if j.is_none() && world.below(4) == 0 {
                    *j = Some(now);
                }
            }
            let peers: Vec<PeerInfo> = joined
                .iter()
                .enumerate()
                .filter_map(|(k, j)| {
                    let mut p = tr.peer(k).joined((*j)?);
                    p.interested = world.below(2) == 0;
                    p.snubbed = world.below(5) == 0;
                    p.download_rate = world.below(4) * 100; // plenty of ties
                    p.upload_rate = world.below(1000);
                    p.unchoked = last.is_unchoked(p.key);
                    Some(p)
                })
                .collect();
            let seeding = world.below(3) == 0;
            let due = tr.choker.is_due(now);
            let d = tr.choker.round(now, &peers, seeding, &mut tr.rng);

            let ctx = format!("seed {seed} at {secs}s: {d:?}");
            assert!(d.unchoke.len() <= 4 + 1, "{ctx}");
            assert!(d.regular().len() <= 4 && d.optimistic.len() <= 1, "{ctx}");
            assert_eq!(set(&d.unchoke).len(), d.unchoke.len(), "duplicates: {ctx}");
            assert_eq!(&d.unchoke[d.regular().len()..], &d.optimistic[..], "{ctx}");
            if !due {
                assert_eq!(d, last, "early call changed the decision: {ctx}");
            } else {
                let info = |k: PeerKey| peers.iter().find(|p| p.key == k);
                for &k in &d.unchoke {
                    assert!(info(k).is_some_and(|p| p.interested), "{k:?} {ctx}");
                }
                let eligible: Vec<&PeerInfo> = peers
                    .iter()
                    .filter(|p| p.interested && (seeding || !p.snubbed))
                    .collect();
                let interested = peers.iter().filter(|p| p.interested).count();
                assert_eq!(d.regular().len(), eligible.len().min(4), "{ctx}");
                assert_eq!(
                    d.optimistic.len(),
                    (interested - d.regular().len()).min(1),
                    "{ctx}"
                );
                if !seeding {
                    // Tit-for-tat: nobody left out sends faster than a regular peer.
                    let slowest = d
                        .regular()
                        .iter()
                        .filter_map(|&k| info(k))
                        .map(|p| p.download_rate)
                        .min()
                        .unwrap_or(0);
                    for p in eligible.iter().filter(|p| !d.regular().contains(&p.key)) {
                        assert!(p.download_rate <= slowest, "{:?} {ctx}", p.key);
                    }
                }
            }
            last = d.clone();
            decisions.push(d);
        }
        decisions
    }

    #[test]
    fn same_seed_same_decisions() {
        assert_eq!(check_random_swarm(42), check_random_swarm(42));
        assert_ne!(check_random_swarm(42), check_random_swarm(43));
    }
}
