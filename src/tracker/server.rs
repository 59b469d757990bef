//! The tracker server's swarm table, sans-IO: which peers are in which torrent, who gets
//! which peers, when peers expire, and the complete UDP (BEP 15) and HTTP (BEP 3) request
//! handlers over it, so the network front end only moves bytes.
//!
//! This module owns:
//!
//! - **the table** ([`Tracker`]): per torrent, four `Vec`s of peers (IPv4/IPv6 ×
//!   seeding/leeching) and a map from peer id to a peer's place in them. Deletion is
//!   `swap_remove` plus one map update, so every operation on one peer is O(1);
//! - **peer selection**: a uniformly random subset of up to `numwant` peers that never
//!   contains the asker, drawn in O(numwant) whatever the swarm size (Floyd's sampling over
//!   the virtual concatenation of the lists that may be given out, then a shuffle). Leechers
//!   get a uniform mix of seeders and leechers; seeders get only leechers (seeds have no use
//!   for seeds). Over UDP a peer gets peers of its own address family (the packet format
//!   depends on it); over HTTP it gets both (`peers` and `peers6`);
//! - **expiry**: a peer not heard from for [`TrackerConfig::peer_timeout`] (two intervals and
//!   a quarter) is removed by [`Tracker::expire`]; [`Tracker::next_expiry`] says when to call
//!   it. A torrent left without peers is dropped, its `downloaded` count with it (keeping
//!   counts of dead torrents would grow without bound on a public tracker);
//! - **limits**: a whitelist (an unknown torrent is refused: "torrent not registered"), a cap
//!   on torrents (a new torrent beyond it is refused) and on peers per torrent (a new peer
//!   beyond it is refused, not swapped for an old one: finding the oldest would cost O(peers)
//!   and stale peers leave by expiry anyway);
//! - **UDP connection ids** ([`Tracker::connection_id`]): SHA-1 over a secret, the client's
//!   address and a two-minute time window, truncated to 64 bits. Nothing is stored per
//!   client; an id is accepted in its window and the next one (so it lives 2 to 4 minutes).
//!   A client that spoofs its source address never sees the id, so it cannot make the tracker
//!   send announce replies (larger than the request) to a victim; packets without a valid id
//!   are dropped without an answer;
//! - **stats** ([`Tracker::stats`]): counters and a memory estimate.
//!
//! Identity: a peer is its peer id within a torrent. An announce from another port of the
//! same IP updates the entry; one from another IP moves it only if it carries the `key` the
//! entry was created with (that is what BEP 3's `key` is for); otherwise it is refused, so
//! nobody who learns a peer id (every peer it talks to does) can move or stop that peer.
//! The `ip` parameter of HTTP announces and the IP field of UDP announces are ignored: a peer
//! is always stored at the address its request came from.
//!
//! What this module must never do: touch a socket, read the clock (time is the `now`
//! argument; the instant given to [`Tracker::new`] anchors the connection-id windows and the
//! compact timestamps), take a lock, or do work proportional to a swarm's size while
//! answering one announce.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::http::{self, HttpRequest, RequestError};
use super::udp::{self, AnnounceHeader};
use super::{Event, ScrapeStats};
use crate::rng::Rng;

/// The most peers one reply ever holds, whatever the configuration says.
pub const HARD_MAX_NUMWANT: u32 = 200;

/// Length of a connection-id time window. An id is accepted in the window it was made in
/// and the next, so it lives between one and two windows (BEP 15: clients use an id for
/// one minute, trackers accept it for two).
pub const CONNECTION_ID_WINDOW: Duration = Duration::from_secs(120);

/// [`Tracker::next_expiry`] is never sooner than this after a sweep, so that a busy
/// tracker does not sweep its whole table every second; peers leave at most this late.
pub const EXPIRY_GRANULARITY: Duration = Duration::from_secs(60);

/// How the tracker is run.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// The `interval` told to clients (default 30 minutes).
    pub interval: Duration,
    /// The `min interval` told to HTTP clients (default 5 minutes).
    pub min_interval: Duration,
    /// Most peers in one reply (default 50; never more than [`HARD_MAX_NUMWANT`]).
    pub max_numwant: u32,
    /// Peers in a reply when the client does not say (default 50).
    pub default_numwant: u32,
    /// Most torrents tracked at once (default 100,000).
    pub max_torrents: usize,
    /// Most peers in one torrent (default 50,000).
    pub max_peers_per_torrent: usize,
    /// If set, only these torrents are tracked; others are refused as not registered.
    pub whitelist: Option<HashSet<[u8; 20]>>,
    /// The key of UDP connection ids: fill it from the operating system's random source when
    /// the tracker starts (the front end's job); anyone who knows it can forge ids.
    pub secret: [u8; 16],
}

impl TrackerConfig {
    /// The defaults, with `secret` as the connection-id key.
    pub fn new(secret: [u8; 16]) -> Self {
        TrackerConfig {
            interval: Duration::from_secs(1800),
            min_interval: Duration::from_secs(300),
            max_numwant: 50,
            default_numwant: 50,
            max_torrents: 100_000,
            max_peers_per_torrent: 50_000,
            whitelist: None,
            secret,
        }
    }

    /// How long a peer stays without announcing: two intervals and a quarter, so that one
    /// lost announce (or a client announcing a little late) does not drop it.
    pub fn peer_timeout(&self) -> Duration {
        self.interval * 2 + self.interval / 4
    }
}

/// Why an announce was refused. The message goes back to the client (HTTP
/// `failure reason`, UDP error packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A whitelist is set and the torrent is not on it.
    NotRegistered,
    /// The torrent is new and the tracker already tracks `max_torrents`.
    TooManyTorrents,
    /// The peer is new and the torrent already has `max_peers_per_torrent`.
    SwarmFull,
    /// The peer id is known from another IP address and the announce does not carry the
    /// `key` that entry was created with.
    PeerIdInUse,
    /// Port 0 (nobody could connect to it).
    InvalidPort,
}

impl Refusal {
    /// The text sent to the client.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::NotRegistered => "torrent not registered with this tracker",
            Refusal::TooManyTorrents => "tracker is full: too many torrents",
            Refusal::SwarmFull => "swarm is full: too many peers on this torrent",
            Refusal::PeerIdInUse => {
                "peer id in use from another address (announce with the same key to move)"
            }
            Refusal::InvalidPort => "invalid port 0",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Refusal {}

/// Which address families a reply may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerFamilies {
    /// Only the asker's own family (UDP: the reply format depends on it).
    Same,
    /// IPv4 and IPv6 (HTTP: `peers` and `peers6`).
    Both,
}

/// One announce, as the table sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceParams {
    /// The torrent.
    pub info_hash: [u8; 20],
    /// The peer.
    pub peer_id: [u8; 20],
    /// Where the request came from. Its IP is the peer's IP (any `ip` parameter is ignored);
    /// its port is not used for the peer (see `port`).
    pub from: SocketAddr,
    /// The port the peer accepts connections on.
    pub port: u16,
    /// Bytes the peer still misses; 0 makes it a seeder.
    pub left: u64,
    /// The event.
    pub event: Event,
    /// Peers wanted (`None`: the configured default); capped by `max_numwant`.
    pub numwant: Option<u32>,
    /// The client's `key`, if it sent one.
    pub key: Option<u32>,
    /// Which families the reply may hold.
    pub families: PeerFamilies,
}

/// A peer given out in a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerEntry {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Its peer id (for non-compact HTTP replies).
    pub peer_id: [u8; 20],
}

/// The answer to an accepted announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceReply {
    /// When to announce next.
    pub interval: Duration,
    /// Announce no more often than this.
    pub min_interval: Duration,
    /// Seeders in the torrent (the asker included).
    pub complete: u32,
    /// Leechers in the torrent (the asker included).
    pub incomplete: u32,
    /// A random subset of the other peers, in random order.
    pub peers: Vec<PeerEntry>,
}

/// What the tracker has done and holds. Counters count since [`Tracker::new`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Torrents tracked now.
    pub torrents: usize,
    /// Peers tracked now.
    pub peers: usize,
    /// Of them, seeders.
    pub seeders: usize,
    /// Of them, leechers.
    pub leechers: usize,
    /// Announces received (accepted or refused), HTTP and UDP.
    pub announces: u64,
    /// Scrapes received (one per request, whatever the number of torrents).
    pub scrapes: u64,
    /// Announces refused (see [`Refusal`]).
    pub refusals: u64,
    /// UDP connect requests answered.
    pub udp_connects: u64,
    /// UDP packets dropped without an answer: undecodable, or without a valid connection id.
    pub udp_dropped: u64,
    /// HTTP requests answered with an error (bad HTTP, unknown path, bad parameter).
    pub bad_requests: u64,
    /// Peers removed by expiry.
    pub expired: u64,
    /// Estimated bytes per tracked peer (see [`Tracker::bytes_per_peer`]).
    pub bytes_per_peer: usize,
    /// Estimated bytes held by the table, from the capacities of its vectors and maps.
    pub memory_bytes: usize,
}

impl fmt::Display for TrackerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "torrents {}", self.torrents)?;
        writeln!(f, "peers {}", self.peers)?;
        writeln!(f, "seeders {}", self.seeders)?;
        writeln!(f, "leechers {}", self.leechers)?;
        writeln!(f, "announces {}", self.announces)?;
        writeln!(f, "scrapes {}", self.scrapes)?;
        writeln!(f, "refusals {}", self.refusals)?;
        writeln!(f, "udp_connects {}", self.udp_connects)?;
        writeln!(f, "udp_dropped {}", self.udp_dropped)?;
        writeln!(f, "bad_requests {}", self.bad_requests)?;
        writeln!(f, "expired {}", self.expired)?;
        writeln!(f, "bytes_per_peer {}", self.bytes_per_peer)?;
        writeln!(f, "memory_bytes {}", self.memory_bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// Flag: this peer's `completed` was counted.
const F_COMPLETED: u8 = 1;
/// Flag: the peer sent a `key`.
const F_HAS_KEY: u8 = 2;

/// Index of the list for a family and a state: bit 1 is IPv6, bit 0 seeding.
fn list_of(v6: bool, seed: bool) -> usize {
    usize::from(v6) * 2 + usize::from(seed)
}

fn is_seed_list(list: usize) -> bool {
    list & 1 == 1
}

fn is_v6_list(list: usize) -> bool {
    list & 2 == 2
}

/// A tracked peer: 48 bytes. The family is implied by the list it is in; times are seconds
/// since the tracker's epoch.
#[derive(Clone, Debug)]
struct Peer {
    id: [u8; 20],
    /// IPv6, or IPv4-mapped IPv6 for an IPv4 peer.
    ip: [u8; 16],
    last_seen: u32,
    key: u32,
    port: u16,
    flags: u8,
}

impl Peer {
    fn addr(&self, v6: bool) -> SocketAddr {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.ip[12],
                self.ip[13],
                self.ip[14],
                self.ip[15],
            ))
        };
        SocketAddr::new(ip, self.port)
    }
}

/// Where a peer is: list and position.
#[derive(Clone, Copy, Debug)]
struct Slot {
    pos: u32,
    list: u8,
}

/// One torrent.
#[derive(Debug, Default)]
struct Swarm {
    /// Indexed by [`list_of`].
    lists: [Vec<Peer>; 4],
    by_id: HashMap<[u8; 20], Slot>,
    /// `completed` events counted (once per peer entry).
    downloaded: u32,
}

impl Swarm {
    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn seeders(&self) -> usize {
        self.lists[1].len() + self.lists[3].len()
    }

    fn leechers(&self) -> usize {
        self.lists[0].len() + self.lists[2].len()
    }

    fn stats(&self) -> ScrapeStats {
        ScrapeStats {
            complete: u32::try_from(self.seeders()).unwrap_or(u32::MAX),
            downloaded: self.downloaded,
            incomplete: u32::try_from(self.leechers()).unwrap_or(u32::MAX),
        }
    }

    fn push(&mut self, list: usize, peer: Peer) {
        let pos = u32::try_from(self.lists[list].len()).unwrap_or(u32::MAX);
        self.by_id.insert(
            peer.id,
            Slot {
                pos,
                list: list as u8,
            },
        );
        self.lists[list].push(peer);
    }

    /// Removes the peer at `pos` of `list` (swap with the last, fix that one's slot).
    fn remove_at(&mut self, list: usize, pos: usize) -> Option<Peer> {
        if pos >= self.lists[list].len() {
            return None;
        }
        let p = self.lists[list].swap_remove(pos);
        self.by_id.remove(&p.id);
        if let Some(moved) = self.lists[list].get(pos) {
            if let Some(s) = self.by_id.get_mut(&moved.id) {
                s.pos = u32::try_from(pos).unwrap_or(u32::MAX);
            }
        }
        Some(p)
    }

    fn memory(&self) -> usize {
        let lists: usize = self
            .lists
            .iter()
            .map(|l| l.capacity() * size_of::<Peer>())
            .sum();
        lists + self.by_id.capacity() * (size_of::<([u8; 20], Slot)>() + 1)
    }
}

/// Slots of a [`PickSet`]: a power of two more than twice [`HARD_MAX_NUMWANT`], so the
/// table is never more than 40% full.
const PICK_SLOTS: usize = 512;

/// The set of indices drawn by one sampling: open addressing over a fixed table, emptied in
/// O(1) by moving to a new generation (a slot whose generation is not the current one is
/// free). The indices come from our own random numbers, so nobody can aim collisions at it.
#[derive(Debug, Default)]
struct PickSet {
    slots: Vec<(usize, u32)>,
    generation: u32,
}

impl PickSet {
    fn clear(&mut self) {
        if self.slots.len() != PICK_SLOTS {
            self.slots = vec![(0, 0); PICK_SLOTS];
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.slots.fill((0, 0));
            self.generation = 1;
        }
    }

    /// Adds `v`; false if it was there. At most `PICK_SLOTS - 1` values per generation
    /// (callers insert at most `2 * HARD_MAX_NUMWANT`), so a free slot always exists.
    fn insert(&mut self, v: usize) -> bool {
        // Fibonacci hashing: the top 9 bits of v times 2^64/phi.
        let mut i = ((v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 55) as usize;
        loop {
            i &= PICK_SLOTS - 1;
            let Some(slot) = self.slots.get_mut(i) else {
                return false; // unreachable: clear() sized the table
            };
            if slot.1 != self.generation {
                *slot = (v, self.generation);
                return true;
            }
            if slot.0 == v {
                return false;
            }
            i += 1;
        }
    }
}

/// The sampler's reusable scratch space.
#[derive(Debug, Default)]
struct Sampler {
    picked: PickSet,
    order: Vec<usize>,
}

impl Sampler {
    /// Appends to `out` a uniformly random subset of up to `want` peers of `lists` (taken as
    /// one virtual array), never the one at `exclude` (list, position), in random order.
    /// O(want) time: Floyd's algorithm draws `want` distinct indices without looking at the
    /// others.
    fn sample(
        &mut self,
        swarm: &Swarm,
        lists: &[usize],
        exclude: Option<(usize, usize)>,
        want: usize,
        rng: &mut Rng,
        out: &mut Vec<PeerEntry>,
    ) {
        let total: usize = lists.iter().map(|&l| swarm.lists[l].len()).sum();
        // The excluded peer's virtual index, if it is among the lists.
        let mut skip = None;
        let mut base = 0;
        for &l in lists {
            if let Some((el, ep)) = exclude {
                if el == l {
                    skip = Some(base + ep);
                }
            }
            base += swarm.lists[l].len();
        }
        let n = total - usize::from(skip.is_some());
        let k = want.min(n).min(HARD_MAX_NUMWANT as usize);
        if k == 0 {
            return;
        }
        self.order.clear();
        if k == n {
            self.order.extend(0..n);
        } else {
            self.picked.clear();
            for j in n - k..n {
                let t = rng.below(j as u64 + 1) as usize;
                let v = if self.picked.insert(t) { t } else { j };
                self.picked.insert(v);
                self.order.push(v);
            }
        }
        rng.shuffle(&mut self.order);
        out.reserve(k);
        for &v in &self.order {
            let mut v = if skip.is_some_and(|s| v >= s) {
                v + 1
            } else {
                v
            };
            for &l in lists {
                let list = &swarm.lists[l];
                if v < list.len() {
                    let p = &list[v];
                    out.push(PeerEntry {
                        addr: p.addr(is_v6_list(l)),
                        peer_id: p.id,
                    });
                    break;
                }
                v -= list.len();
            }
        }
    }
}

/// The tracker's swarm table and its request handlers.
///
/// Call order: [`Tracker::new`] once; then, from the network front end, [`handle_udp`]
/// for every datagram and [`handle_http`] for every complete request head (see
/// [`http::request_head_len`]), each with the current time; call [`expire`] when
/// [`next_expiry`] is due. Lower-level [`announce`] and [`scrape`] are what the handlers
/// use and what tests drive.
///
/// [`handle_udp`]: Tracker::handle_udp
/// [`handle_http`]: Tracker::handle_http
/// [`expire`]: Tracker::expire
/// [`next_expiry`]: Tracker::next_expiry
/// [`announce`]: Tracker::announce
/// [`scrape`]: Tracker::scrape
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    /// Time zero for connection-id windows and peers' `last_seen`.
    epoch: Instant,
    torrents: HashMap<[u8; 20], Swarm>,
    peers: usize,
    seeders: usize,
    next_expiry: Option<Instant>,
    sampler: Sampler,
    announces: u64,
    scrapes: u64,
    refusals: u64,
    udp_connects: u64,
    udp_dropped: u64,
    bad_requests: u64,
    expired: u64,
}

impl Tracker {
    /// An empty tracker. `now` is its epoch: connection-id windows and peer timestamps count
    /// from it. `max_numwant` is capped at [`HARD_MAX_NUMWANT`].
    pub fn new(mut config: TrackerConfig, now: Instant) -> Self {
        config.max_numwant = config.max_numwant.min(HARD_MAX_NUMWANT);
        Tracker {
            config,
            epoch: now,
            torrents: HashMap::new(),
            peers: 0,
            seeders: 0,
            next_expiry: None,
            sampler: Sampler::default(),
            announces: 0,
            scrapes: 0,
            refusals: 0,
            udp_connects: 0,
            udp_dropped: 0,
            bad_requests: 0,
            expired: 0,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Seconds since the epoch (saturating; 136 years fit).
    fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    fn timeout_secs(&self) -> u32 {
        u32::try_from(self.config.peer_timeout().as_secs()).unwrap_or(u32::MAX)
    }

    fn reply(&self, swarm: Option<&Swarm>, peers: Vec<PeerEntry>) -> AnnounceReply {
        let s = swarm.map(Swarm::stats).unwrap_or_default();
        AnnounceReply {
            interval: self.config.interval,
            min_interval: self.config.min_interval,
            complete: s.complete,
            incomplete: s.incomplete,
            peers,
        }
    }

    /// Records an announce and answers it.
    ///
    /// A new peer is added (a new torrent created), a known one updated (address, seeding
    /// state, last seen); `stopped` removes the peer (and an empty torrent) and gets no peers
    /// back; `completed` counts a download once per peer entry. The reply holds the counts
    /// (the asker included) and a random subset of other peers: see the module docs for who
    /// gets whom, and for when an announce is refused.
    pub fn announce(
        &mut self,
        now: Instant,
        p: &AnnounceParams,
        rng: &mut Rng,
    ) -> Result<AnnounceReply, Refusal> {
        self.announces += 1;
        let r = self.announce_inner(now, p, rng);
        if r.is_err() {
            self.refusals += 1;
        }
        r
    }

    fn announce_inner(
        &mut self,
        now: Instant,
        p: &AnnounceParams,
        rng: &mut Rng,
    ) -> Result<AnnounceReply, Refusal> {
        if let Some(wl) = &self.config.whitelist {
            if !wl.contains(&p.info_hash) {
                return Err(Refusal::NotRegistered);
            }
        }
        let stopped = p.event == Event::Stopped;
        if p.port == 0 && !stopped {
            return Err(Refusal::InvalidPort);
        }
        let ip = p.from.ip().to_canonical();
        let v6 = ip.is_ipv6();
        let ip16 = match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        let seed = p.left == 0;
        let now_s = self.secs(now);
        let want = p
            .numwant
            .unwrap_or(self.config.default_numwant)
            .min(self.config.max_numwant) as usize;

        if !self.torrents.contains_key(&p.info_hash) {
            if stopped {
                return Ok(self.reply(None, Vec::new()));
            }
            if self.torrents.len() >= self.config.max_torrents {
                return Err(Refusal::TooManyTorrents);
            }
            if self.config.max_peers_per_torrent == 0 {
                return Err(Refusal::SwarmFull);
            }
        }
        let swarm = self.torrents.entry(p.info_hash).or_default();
        let new_list = list_of(v6, seed);
        // The asker's place after the update (None once stopped).
        let at: Option<(usize, usize)>;
        match swarm.by_id.get(&p.peer_id).copied() {
            Some(slot) => {
                let (list, pos) = (usize::from(slot.list), slot.pos as usize);
                let Some(old) = swarm.lists[list].get(pos) else {
                    // Unreachable: slots always point at their peer. Heal by forgetting it.
                    swarm.by_id.remove(&p.peer_id);
                    return Err(Refusal::PeerIdInUse);
                };
                if old.ip != ip16 && !(old.flags & F_HAS_KEY != 0 && p.key == Some(old.key)) {
                    return Err(Refusal::PeerIdInUse);
                }
                if stopped {
                    swarm.remove_at(list, pos);
                    self.peers -= 1;
                    if is_seed_list(list) {
                        self.seeders -= 1;
                    }
                    let r = if swarm.len() == 0 {
                        self.torrents.remove(&p.info_hash);
                        self.reply(None, Vec::new())
                    } else {
                        self.reply(self.torrents.get(&p.info_hash), Vec::new())
                    };
                    return Ok(r);
                }
                let completed_now = p.event == Event::Completed && old.flags & F_COMPLETED == 0;
                let update = |peer: &mut Peer| {
                    peer.ip = ip16;
                    peer.port = p.port;
                    peer.last_seen = now_s;
                    if let (Some(k), 0) = (p.key, peer.flags & F_HAS_KEY) {
                        peer.key = k;
                        peer.flags |= F_HAS_KEY;
                    }
                    if completed_now {
                        peer.flags |= F_COMPLETED;
                    }
                };
                if completed_now {
                    swarm.downloaded = swarm.downloaded.saturating_add(1);
                }
                if list == new_list {
                    if let Some(peer) = swarm.lists[list].get_mut(pos) {
                        update(peer);
                    }
                    at = Some((list, pos));
                } else if let Some(mut peer) = swarm.remove_at(list, pos) {
                    update(&mut peer);
                    swarm.push(new_list, peer);
                    at = Some((new_list, swarm.lists[new_list].len() - 1));
                    if is_seed_list(list) {
                        self.seeders -= 1;
                    }
                    if seed {
                        self.seeders += 1;
                    }
                } else {
                    at = None;
                }
            }
            None => {
                if stopped {
                    return Ok(self.reply(self.torrents.get(&p.info_hash), Vec::new()));
                }
                if swarm.len() >= self.config.max_peers_per_torrent {
                    return Err(Refusal::SwarmFull);
                }
                let completed = p.event == Event::Completed;
                if completed {
                    swarm.downloaded = swarm.downloaded.saturating_add(1);
                }
                swarm.push(
                    new_list,
                    Peer {
                        id: p.peer_id,
                        ip: ip16,
                        last_seen: now_s,
                        key: p.key.unwrap_or(0),
                        port: p.port,
                        flags: if completed { F_COMPLETED } else { 0 }
                            | if p.key.is_some() { F_HAS_KEY } else { 0 },
                    },
                );
                at = Some((new_list, swarm.lists[new_list].len() - 1));
                self.peers += 1;
                if seed {
                    self.seeders += 1;
                }
                let deadline = now + self.config.peer_timeout();
                self.next_expiry = Some(self.next_expiry.map_or(deadline, |d| d.min(deadline)));
            }
        }

        // Who may be given out: seeders get leechers only; leechers get everyone.
        let mut lists = [0usize; 4];
        let mut n = 0;
        for fam_v6 in [false, true] {
            if p.families == PeerFamilies::Same && fam_v6 != v6 {
                continue;
            }
            for s in [false, true] {
                if seed && s {
                    continue;
                }
                lists[n] = list_of(fam_v6, s);
                n += 1;
            }
        }
        let mut peers = Vec::new();
        let swarm = self.torrents.get(&p.info_hash);
        if let Some(swarm) = swarm {
            self.sampler
                .sample(swarm, &lists[..n], at, want, rng, &mut peers);
        }
        Ok(self.reply(swarm, peers))
    }

    /// The counts of each torrent, in order; an unknown torrent has all counts 0.
    pub fn scrape(&mut self, info_hashes: &[[u8; 20]]) -> Vec<ScrapeStats> {
        self.scrapes += 1;
        info_hashes
            .iter()
            .map(|h| self.torrents.get(h).map(Swarm::stats).unwrap_or_default())
            .collect()
    }

    /// Removes peers not heard from for [`TrackerConfig::peer_timeout`] and torrents left
    /// empty; returns how many peers were removed. O(peers): call it when
    /// [`next_expiry`](Self::next_expiry) is due, not per request. Calling it early is
    /// harmless.
    pub fn expire(&mut self, now: Instant) -> usize {
        let now_s = self.secs(now);
        let timeout = self.timeout_secs();
        let mut removed = 0;
        let mut removed_seeds = 0;
        let mut oldest: Option<u32> = None;
        for swarm in self.torrents.values_mut() {
            for list in 0..4 {
                let mut i = 0;
                while let Some(p) = swarm.lists[list].get(i) {
                    let seen = p.last_seen;
                    if now_s.saturating_sub(seen) > timeout {
                        swarm.remove_at(list, i);
                        removed += 1;
                        if is_seed_list(list) {
                            removed_seeds += 1;
                        }
                    } else {
                        oldest = Some(oldest.map_or(seen, |o| o.min(seen)));
                        i += 1;
                    }
                }
                // Give memory back after a swarm shrank a lot.
                let l = &mut swarm.lists[list];
                if l.capacity() > 64 && l.len() < l.capacity() / 4 {
                    l.shrink_to(l.len() * 2);
                }
            }
            if swarm.by_id.capacity() > 64 && swarm.by_id.len() < swarm.by_id.capacity() / 4 {
                swarm.by_id.shrink_to(swarm.by_id.len() * 2);
            }
        }
        self.torrents.retain(|_, s| s.len() > 0);
        self.peers -= removed;
        self.seeders -= removed_seeds;
        self.expired += removed as u64;
        self.next_expiry = oldest.map(|o| {
            let due = self.epoch + Duration::from_secs(u64::from(o) + u64::from(timeout) + 1);
            due.max(now + EXPIRY_GRANULARITY)
        });
        removed
    }

    /// When [`expire`](Self::expire) should run next (`None`: no peers). Never earlier than
    /// the oldest peer's timeout, and never sooner than [`EXPIRY_GRANULARITY`] after the
    /// last sweep.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.next_expiry
    }

    // -----------------------------------------------------------------------------------------
    // Connection ids
    // -----------------------------------------------------------------------------------------

    fn window(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() / CONNECTION_ID_WINDOW.as_secs()
    }

    fn id_for_window(&self, addr: SocketAddr, window: u64) -> u64 {
        let ip = match addr.ip().to_canonical() {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        let mut h = Sha1::new();
        h.update(self.config.secret);
        h.update(ip);
        h.update(addr.port().to_be_bytes());
        h.update(window.to_be_bytes());
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        u64::from_be_bytes(first)
    }

    /// The UDP connection id for a client at `addr` now: the first 8 bytes of
    /// SHA-1(secret ‖ IP (16 bytes, IPv4 mapped) ‖ port ‖ window number), where the window
    /// number counts [`CONNECTION_ID_WINDOW`]s since the epoch.
    pub fn connection_id(&self, addr: SocketAddr, now: Instant) -> u64 {
        self.id_for_window(addr, self.window(now))
    }

    /// Whether `id` is a connection id this tracker gave to `addr` in the current or the
    /// previous window. Forged ids, ids made for another address and older ids fail.
    pub fn check_connection_id(&self, addr: SocketAddr, id: u64, now: Instant) -> bool {
        let w = self.window(now);
        id == self.id_for_window(addr, w) || (w > 0 && id == self.id_for_window(addr, w - 1))
    }

    // -----------------------------------------------------------------------------------------
    // Front-end handlers
    // -----------------------------------------------------------------------------------------

    /// Handles one UDP datagram from `from`; returns whether `out` (cleared first) holds an
    /// answer to send back to `from`.
    ///
    /// - connect: answered with a connection id (16 bytes for 16: no amplification);
    /// - announce, scrape: answered only if the connection id is valid for `from`, else
    ///   dropped silently; a refused announce gets an error packet;
    /// - an undecodable packet gets an error packet only if it carries a valid connection id
    ///   (proving its source address); otherwise it is dropped.
    ///
    /// Announce replies hold peers of the sender's family, in that family's record format (a
    /// v4-mapped IPv6 source counts as IPv4).
    pub fn handle_udp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &[u8],
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        let ipv6 = from.ip().to_canonical().is_ipv6();
        let req = match udp::Request::decode(packet) {
            Ok(r) => r,
            Err(e) => {
                if packet.len() >= 16 {
                    let mut cid = [0u8; 8];
                    cid.copy_from_slice(&packet[..8]);
                    let mut tid = [0u8; 4];
                    tid.copy_from_slice(&packet[12..16]);
                    let action = &packet[8..12];
                    if action != udp::action::CONNECT.to_be_bytes()
                        && self.check_connection_id(from, u64::from_be_bytes(cid), now)
                    {
                        udp::encode_error(u32::from_be_bytes(tid), &e.to_string(), out);
                        return true;
                    }
                }
                self.udp_dropped += 1;
                return false;
            }
        };
        if let Some(cid) = req.connection_id() {
            if !self.check_connection_id(from, cid, now) {
                self.udp_dropped += 1;
                return false;
            }
        }
        match req {
            udp::Request::Connect { transaction_id } => {
                self.udp_connects += 1;
                let id = self.connection_id(from, now);
                udp::encode_connect_response(transaction_id, id, out);
            }
            udp::Request::Announce(a) => {
                let r = &a.request;
                let params = AnnounceParams {
                    info_hash: r.info_hash,
                    peer_id: r.peer_id,
                    from,
                    port: r.port,
                    left: r.left,
                    event: r.event,
                    numwant: r.numwant,
                    key: Some(r.key),
                    families: PeerFamilies::Same,
                };
                match self.announce(now, &params, rng) {
                    Ok(reply) => udp::encode_announce_response(
                        AnnounceHeader {
                            transaction_id: a.transaction_id,
                            interval: u32::try_from(reply.interval.as_secs()).unwrap_or(u32::MAX),
                            leechers: reply.incomplete,
                            seeders: reply.complete,
                        },
                        reply.peers.iter().map(|p| p.addr),
                        ipv6,
                        out,
                    ),
                    Err(refusal) => udp::encode_error(a.transaction_id, refusal.message(), out),
                }
            }
            udp::Request::Scrape {
                transaction_id,
                info_hashes,
                ..
            } => {
                let stats = self.scrape(&info_hashes);
                udp::encode_scrape_response(transaction_id, &stats, out);
            }
        }
        true
    }

    /// Handles one HTTP request (the bytes of its head, see [`http::request_head_len`]) from
    /// `from`; returns the complete HTTP response to write before closing.
    ///
    /// `/announce` and `/scrape` answer bencode (refusals and bad parameters as HTTP 200
    /// with a `failure reason`, as clients expect); `/stats` answers the counters as text;
    /// anything else an HTTP error status.
    pub fn handle_http(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &[u8],
        rng: &mut Rng,
    ) -> Vec<u8> {
        let req = match http::parse_request(request) {
            Ok(Some((req, _))) => req,
            Ok(None) => {
                self.bad_requests += 1;
                return RequestError::BadHttp("incomplete request".into()).response();
            }
            Err(e) => {
                self.bad_requests += 1;
                return e.response();
            }
        };
        let mut body = Vec::new();
        match req {
            HttpRequest::Announce(a) => {
                let r = &a.request;
                let params = AnnounceParams {
                    info_hash: r.info_hash,
                    peer_id: r.peer_id,
                    from,
                    port: r.port,
                    left: r.left,
                    event: r.event,
                    numwant: r.numwant,
                    key: a.has_key.then_some(r.key),
                    families: PeerFamilies::Both,
                };
                match self.announce(now, &params, rng) {
                    Ok(reply) => {
                        http::encode_announce_reply(&reply, a.compact, a.no_peer_id, &mut body)
                    }
                    Err(refusal) => http::encode_failure(refusal.message(), &mut body),
                }
            }
            HttpRequest::Scrape(hashes) => {
                let stats = self.scrape(&hashes);
                let files: Vec<([u8; 20], ScrapeStats)> = hashes.into_iter().zip(stats).collect();
                http::encode_scrape_reply(&files, &mut body);
            }
            HttpRequest::Stats => {
                return http::http_response(
                    200,
                    "text/plain; charset=utf-8",
                    self.stats().to_string().as_bytes(),
                )
            }
        }
        http::http_response(200, "text/plain", &body)
    }

    // -----------------------------------------------------------------------------------------
    // Stats
    // -----------------------------------------------------------------------------------------

    /// Estimated bytes per tracked peer: the peer record in its list plus its entry in the
    /// torrent's peer-id map (key, slot and one control byte, at the map's 7/8 maximum load).
    /// Vectors and maps grow by doubling, so real use is up to about twice this right after
    /// a growth; [`TrackerStats::memory_bytes`] counts actual capacities.
    pub fn bytes_per_peer() -> usize {
        size_of::<Peer>() + (size_of::<([u8; 20], Slot)>() + 1) * 8 / 7
    }

    /// Counters and gauges. O(torrents) (the memory estimate walks them).
    pub fn stats(&self) -> TrackerStats {
        let per_torrent = size_of::<([u8; 20], Swarm)>() + 1;
        let memory_bytes = self.torrents.capacity() * per_torrent
            + self.torrents.values().map(Swarm::memory).sum::<usize>();
        TrackerStats {
            torrents: self.torrents.len(),
            peers: self.peers,
            seeders: self.seeders,
            leechers: self.peers - self.seeders,
            announces: self.announces,
            scrapes: self.scrapes,
            refusals: self.refusals,
            udp_connects: self.udp_connects,
            udp_dropped: self.udp_dropped,
            bad_requests: self.bad_requests,
            expired: self.expired,
            bytes_per_peer: Self::bytes_per_peer(),
            memory_bytes,
        }
    }
}

#[cfg(test)]
mod tests;
