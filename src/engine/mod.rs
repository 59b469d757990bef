//! The sans-IO peer engine: torrents, peers, piece picking, choking, pipelining.
//!
//! The engine does no I/O on sockets, reads no clock, starts no thread and takes no lock.
//! The reactor (`net/`) feeds it events and the current time and carries out what it asks.
//! Its one side effect is on [`Storage`]: writing received blocks (`pwrite`) and handing out
//! zero-copy blocks for upload; hashing a piece is an [`Action`] the reactor performs.
//!
//! ## Call order (the reactor's contract)
//!
//! 1. Register torrents with [`Engine::add_torrent`], peers to dial with
//!    [`Engine::add_peers`].
//! 2. Feed events, each with the current time:
//!    [`Engine::handle_accepted`] (inbound TCP accepted), [`Engine::handle_connected`]
//!    (an outbound dial from [`Action::Dial`] completed), [`Engine::handle_bytes`] (data read
//!    from a peer), [`Engine::handle_closed`] (the socket failed or hit EOF),
//!    [`Engine::handle_piece_verified`] (the result of an [`Action::VerifyPiece`]), and
//!    [`Engine::handle_timeout`] when [`Engine::poll_timeout`] is reached. A spurious or
//!    early `handle_timeout` does nothing.
//! 3. After each event, drain [`Engine::poll_action`] until `None`, and write every peer's
//!    queued output: [`Engine::output`] gives the buffers (a `piece` is a 13-byte header
//!    and a zero-copy block from storage, to be sent with `writev`), and
//!    [`Engine::consume_output`] tells the engine how much the socket took.
//! 4. Sleep until [`Engine::poll_timeout`] or the next socket event.
//!
//! [`Action::Close`] means the engine has already forgotten the peer: the reactor drops the
//! socket and must not report it again.
//!
//! ## Invariants
//!
//! - A peer's `requests` (blocks we asked it for) are exactly the blocks counted as
//!   requested from it in the picker; every path that drops a request (block arrived, choke,
//!   reject, timeout, disconnect) calls [`picker::Picker::abort`] or `received` once.
//! - A piece is marked had, announced with `have`, and served only after its hash check
//!   passed ([`crate::storage::verify::VerifiedPiece`]).
//! - Peer errors close the peer, never the engine; storage errors fail the torrent
//!   ([`Action::TorrentFailed`]) and keep what was verified.

pub mod choker;
pub mod picker;
pub mod rate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use core::net::{IpAddr, SocketAddr};

use crate::bitfield::Bitfield;
use crate::metainfo::{BlockRef, Info, InfoHash, PieceIndex, BLOCK_LEN};
use crate::rng::Rng;
use crate::storage::verify::Verdict;
use crate::storage::Storage;
use crate::wire::{self, Decoder, Handshake, Message};

use choker::{ChokeDecision, Choker, ChokerConfig, PeerInfo};
use picker::{Picker, PickerConfig, Received};
use rate::Rate;

/// A connection's handle: the reactor's slab key, which doubles as the mio token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(pub usize);

/// A torrent's handle in the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TorrentId(pub usize);

/// In endgame, duplicate requests given to an idle peer at once.
const ENDGAME_BATCH: usize = 2;

/// Engine settings. Defaults follow what mature clients use.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Our 20-byte peer id.
    pub peer_id: [u8; 20],
    /// Connections per torrent.
    pub max_peers_per_torrent: usize,
    /// Connections in all.
    pub max_peers: usize,
    /// Outbound connections still being set up, at most.
    pub max_half_open: usize,
    /// Choking policy.
    pub choker: ChokerConfig,
    /// Picking policy.
    pub picker: PickerConfig,
    /// Requests kept in flight per peer, at least.
    pub min_queue: u32,
    /// Requests kept in flight per peer, at most.
    pub max_queue: u32,
    /// Outstanding requests aim at this many seconds' worth of the peer's rate
    /// (bandwidth x delay, with a margin for the peer's own batching).
    pub queue_time: Duration,
    /// A peer that sends no block for this long while we wait for some is snubbed: its
    /// requests go back to the picker for others to fetch.
    pub request_timeout: Duration,
    /// Send a keep-alive when we have sent nothing for this long. Well under two minutes:
    /// libtorrent 2.0 drops a peer that has been silent for 120 s (its `peer_timeout`), and a
    /// keep-alive due at two minutes arrives just too late. libtorrent itself sends one after
    /// 60 s of silence, Transmission 3.00 after 100 s.
    pub keepalive_interval: Duration,
    /// Drop a peer we have heard nothing from for this long.
    pub idle_timeout: Duration,
    /// Drop a connection whose handshake has not arrived after this long.
    pub handshake_timeout: Duration,
    /// Requests from one peer queued for serving, at most; more are dropped. Peers that speak
    /// the extension protocol are told this number (`reqq` in our BEP 10 handshake), so a
    /// well-behaved one never sends more.
    pub max_peer_requests: usize,
    /// Bytes queued for one peer's socket before we stop reading blocks for it. Blocks past
    /// this point are committed: a `cancel` or our own `choke` can no longer take them back.
    /// Under an upload rate limit keep it to a few blocks (see [`send_buffer_for_rate`]), or
    /// the queue holds seconds of data that endgame cancels cannot stop.
    pub send_buffer: usize,
    /// Hash failures attributed to one address before it is banned.
    pub ban_strikes: u32,
    /// Seed for the engine's random choices (tie-breaks, optimistic unchoke).
    pub seed: u64,
}

/// A per-peer send buffer for an upload capped at `rate` bytes/s: 20 ms of the whole rate,
/// at least two blocks (so a socket never waits for the engine), at most the default 4 MiB.
pub fn send_buffer_for_rate(rate: u64) -> usize {
    let two_blocks = 2 * (BLOCK_LEN as usize + 13);
    ((rate / 50) as usize).clamp(two_blocks, 4 << 20)
}

impl Default for EngineConfig {
    fn default() -> Self {
        let mut peer_id = *b"-BM0100-000000000000";
        Rng::new(0x5eed).fill(&mut peer_id[8..]);
        EngineConfig {
            peer_id,
            max_peers_per_torrent: 80,
            max_peers: 500,
            max_half_open: 32,
            choker: ChokerConfig::default(),
            picker: PickerConfig::default(),
            min_queue: 4,
            max_queue: 500,
            queue_time: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(20),
            max_peer_requests: 2000,
            send_buffer: 4 << 20,
            ban_strikes: 3,
            seed: 1,
        }
    }
}

/// Makes a peer id: `-BM0100-` and 12 random alphanumerics from `rng`.
pub fn make_peer_id(rng: &mut Rng) -> [u8; 20] {
    const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = *b"-BM0100-000000000000";
    for b in &mut id[8..] {
        *b = ALNUM[rng.below(ALNUM.len() as u64) as usize];
    }
    id
}

/// Why a connection was closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer broke the protocol.
    Protocol(String),
    /// The handshake named a torrent we do not have.
    UnknownTorrent,
    /// We connected to ourselves.
    SelfConnection,
    /// Already connected to this peer id.
    Duplicate,
    /// Too many connections.
    Limit,
    /// The address sent data that failed hash checks too often.
    Banned,
    /// Both sides have everything.
    BothSeeds,
    /// Nothing heard for too long, or no handshake in time.
    Timeout,
    /// The torrent stopped or failed.
    TorrentStopped,
    /// The socket failed or the peer closed it (reported by the reactor).
    Network(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Protocol(s) => write!(f, "protocol error: {s}"),
            CloseReason::UnknownTorrent => write!(f, "unknown torrent"),
            CloseReason::SelfConnection => write!(f, "connected to ourselves"),
            CloseReason::Duplicate => write!(f, "duplicate connection"),
            CloseReason::Limit => write!(f, "connection limit"),
            CloseReason::Banned => write!(f, "banned for sending bad data"),
            CloseReason::BothSeeds => write!(f, "both seeds"),
            CloseReason::Timeout => write!(f, "timed out"),
            CloseReason::TorrentStopped => write!(f, "torrent stopped"),
            CloseReason::Network(s) => write!(f, "{s}"),
        }
    }
}

/// Something the reactor must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to `addr` for `torrent`, then report it with
    /// [`Engine::handle_connected`] or [`Engine::handle_closed`] under the key given to
    /// [`Engine::handle_dialing`].
    Dial {
        /// The torrent.
        torrent: TorrentId,
        /// Where.
        addr: SocketAddr,
    },
    /// Close the connection; the engine has forgotten it.
    Close {
        /// The connection.
        peer: PeerKey,
        /// Why.
        reason: CloseReason,
    },
    /// The peer has output queued: write it.
    Flush(PeerKey),
    /// Hash a complete piece and report with [`Engine::handle_piece_verified`].
    VerifyPiece {
        /// The torrent.
        torrent: TorrentId,
        /// The piece.
        piece: PieceIndex,
    },
    /// Every piece is verified.
    TorrentComplete(TorrentId),
    /// A storage error stopped the torrent; verified data is kept.
    TorrentFailed {
        /// The torrent.
        torrent: TorrentId,
        /// What happened.
        error: String,
    },
}

/// A torrent's figures for display.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TorrentStats {
    /// Pieces verified.
    pub have_pieces: u32,
    /// Pieces in all.
    pub num_pieces: u32,
    /// Bytes verified.
    pub have_bytes: u64,
    /// Bytes in all.
    pub total_bytes: u64,
    /// Payload bytes received (including wasted).
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Payload bytes received but thrown away (duplicates, failed pieces).
    pub wasted: u64,
    /// Download rate, bytes/s.
    pub down_rate: u64,
    /// Upload rate, bytes/s.
    pub up_rate: u64,
    /// Connected peers (handshake done).
    pub peers: usize,
    /// Of those, seeds.
    pub seeds: usize,
    /// Pieces that failed their hash check.
    pub hash_failures: u32,
    /// The error that stopped the torrent, if any.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Outbound, TCP connect in progress.
    Dialing,
    /// Waiting for the peer's handshake.
    Handshake,
    /// Handshake exchanged; messages flow.
    Active,
}

struct Peer {
    addr: SocketAddr,
    torrent: Option<TorrentId>,
    outbound: bool,
    phase: Phase,
    decoder: Option<Decoder>,
    peer_id: [u8; 20],
    first_message: bool,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    bits: Bitfield,
    counted_as_seed: bool,
    /// Blocks we requested from it, oldest first.
    requests: VecDeque<BlockRef>,
    /// Blocks it requested from us, to serve in order.
    queue: VecDeque<BlockRef>,
    /// How many blocks at the front of `queue` were already asked of the disk.
    prefetched: usize,
    /// The piece last found wholly in memory.
    resident_piece: Option<PieceIndex>,
    out: VecDeque<Bytes>,
    out_len: usize,
    flush_queued: bool,
    down: Rate,
    up: Rate,
    target_queue: u32,
    /// The most requests the peer said it queues (`reqq` in its BEP 10 handshake): we never
    /// keep more in flight, since a peer silently drops what it cannot queue.
    peer_reqq: Option<u32>,
    slow_start: bool,
    /// Payload bytes queued for the socket but not yet taken by it.
    unsent_payload: u64,
    connected_at: Instant,
    last_recv: Instant,
    last_send: Instant,
    last_block: Instant,
    snubbed: bool,
    /// Serving waits for pages to come in from disk until then.
    serve_after: Option<Instant>,
}

impl Peer {
    fn new(
        now: Instant,
        addr: SocketAddr,
        torrent: Option<TorrentId>,
        outbound: bool,
        cfg: &EngineConfig,
    ) -> Peer {
        Peer {
            addr,
            torrent,
            outbound,
            phase: if outbound {
                Phase::Dialing
            } else {
                Phase::Handshake
            },
            decoder: None,
            peer_id: [0; 20],
            first_message: true,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            bits: Bitfield::new(0),
            counted_as_seed: false,
            requests: VecDeque::new(),
            queue: VecDeque::new(),
            prefetched: 0,
            resident_piece: None,
            out: VecDeque::new(),
            out_len: 0,
            flush_queued: false,
            down: Rate::default(),
            up: Rate::default(),
            target_queue: cfg.min_queue,
            peer_reqq: None,
            slow_start: true,
            unsent_payload: 0,
            connected_at: now,
            last_recv: now,
            last_send: now,
            last_block: now,
            snubbed: false,
            serve_after: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Candidate {
    /// Not connected; may be dialed from `next_try`.
    Idle { next_try: Instant, failures: u32 },
    /// A connection to it exists; `failures` dials in a row had failed before it.
    Connected { failures: u32 },
}

impl Candidate {
    /// Failed dials in a row so far (the backoff grows with them).
    fn failures(self) -> u32 {
        match self {
            Candidate::Idle { failures, .. } | Candidate::Connected { failures } => failures,
        }
    }
}

struct Torrent {
    info_hash: InfoHash,
    info: Info,
    storage: Box<dyn Storage>,
    picker: Picker,
    choker: Choker,
    peers: Vec<PeerKey>,
    candidates: HashMap<SocketAddr, Candidate>,
    /// Addresses that sent blocks of each piece not yet verified.
    contributors: HashMap<u32, Vec<IpAddr>>,
    strikes: HashMap<IpAddr, u32>,
    downloaded: u64,
    uploaded: u64,
    wasted: u64,
    down: Rate,
    up: Rate,
    hash_failures: u32,
    error: Option<String>,
    complete_reported: bool,
}

/// The engine. See the module docs for the call order.
pub struct Engine {
    cfg: EngineConfig,
    rng: Rng,
    torrents: Vec<Torrent>,
    peers: Vec<Option<Peer>>,
    actions: VecDeque<Action>,
    next_tick: Option<Instant>,
    banned: HashSet<IpAddr>,
    /// The earliest `serve_after` of any peer (deferred serving), if any.
    serve_wakeup: Option<Instant>,
    scratch: Vec<BlockRef>,
    header_buf: BytesMut,
    /// The payload of our BEP 10 extension handshake ([`wire::extension_handshake`]).
    ext_handshake: Bytes,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("torrents", &self.torrents.len())
            .field("peers", &self.num_peers())
            .finish()
    }
}

const TICK: Duration = Duration::from_secs(1);
/// Bytes of a peer's queued requests read ahead from disk when the next one is not in memory.
const PREFETCH_AHEAD: u64 = 4 << 20;
const BACKOFF_MAX: Duration = Duration::from_secs(60);

impl Engine {
    /// An engine with no torrents.
    pub fn new(cfg: EngineConfig) -> Engine {
        let reqq = u32::try_from(cfg.max_peer_requests).unwrap_or(u32::MAX);
        let version = concat!("bitmill ", env!("CARGO_PKG_VERSION"));
        Engine {
            ext_handshake: wire::extension_handshake(reqq, version),
            rng: Rng::new(cfg.seed),
            cfg,
            torrents: Vec::new(),
            peers: Vec::new(),
            actions: VecDeque::new(),
            next_tick: None,
            banned: HashSet::new(),
            serve_wakeup: None,
            scratch: Vec::new(),
            header_buf: BytesMut::new(),
        }
    }

    /// Our peer id.
    pub fn peer_id(&self) -> [u8; 20] {
        self.cfg.peer_id
    }

    /// Adds a torrent whose verified pieces are `have` (from a resume record or a check).
    pub fn add_torrent(
        &mut self,
        info_hash: InfoHash,
        info: Info,
        storage: Box<dyn Storage>,
        have: Bitfield,
    ) -> TorrentId {
        let picker = Picker::new(info.layout().clone(), have, self.cfg.picker, &mut self.rng);
        self.torrents.push(Torrent {
            info_hash,
            info,
            storage,
            picker,
            choker: Choker::new(self.cfg.choker.clone()),
            peers: Vec::new(),
            candidates: HashMap::new(),
            contributors: HashMap::new(),
            strikes: HashMap::new(),
            downloaded: 0,
            uploaded: 0,
            wasted: 0,
            down: Rate::default(),
            up: Rate::default(),
            hash_failures: 0,
            error: None,
            complete_reported: false,
        });
        TorrentId(self.torrents.len() - 1)
    }

    /// Adds addresses to dial for a torrent (from `--peer` or a tracker). Known and banned
    /// addresses are skipped. Dials start at the next [`Engine::handle_timeout`].
    pub fn add_peers(
        &mut self,
        now: Instant,
        t: TorrentId,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) {
        let Some(tor) = self.torrents.get_mut(t.0) else {
            return;
        };
        for a in addrs {
            if !self.banned.contains(&a.ip()) {
                tor.candidates.entry(a).or_insert(Candidate::Idle {
                    next_try: now,
                    failures: 0,
                });
            }
        }
        // Dial soon: the next tick is moved forward.
        self.next_tick = Some(self.next_tick.map_or(now, |n| n.min(now)));
    }

    /// Whether the torrent has every piece.
    pub fn is_complete(&self, t: TorrentId) -> bool {
        self.torrents
            .get(t.0)
            .is_some_and(|tor| tor.picker.is_complete())
    }

    /// The torrent's verified pieces.
    pub fn have(&self, t: TorrentId) -> Option<&Bitfield> {
        self.torrents.get(t.0).map(|tor| tor.picker.have())
    }

    /// The torrent's storage (for flushing at shutdown, or hashing inline).
    pub fn storage_mut(&mut self, t: TorrentId) -> Option<&mut dyn Storage> {
        match self.torrents.get_mut(t.0) {
            Some(tor) => Some(tor.storage.as_mut()),
            None => None,
        }
    }

    /// Checks a complete piece inline against the torrent's hash (what the reactor does for
    /// [`Action::VerifyPiece`] when it hashes on its own thread).
    pub fn verify_piece(&mut self, t: TorrentId, piece: PieceIndex) -> Verdict {
        let Some(tor) = self.torrents.get_mut(t.0) else {
            return Verdict::Missing;
        };
        match crate::storage::verify::check_piece(&mut *tor.storage, &tor.info, piece) {
            Ok(v) => v,
            Err(e) => {
                let error = e.to_string();
                self.fail_torrent(t, error);
                Verdict::Missing
            }
        }
    }

    /// Figures for display.
    pub fn stats(&self, t: TorrentId) -> TorrentStats {
        let Some(tor) = self.torrents.get(t.0) else {
            return TorrentStats::default();
        };
        let l = tor.info.layout();
        let have = tor.picker.have();
        let mut have_bytes = u64::from(have.count()) * u64::from(l.piece_length());
        if let Some(last) = l.piece(l.num_pieces() - 1) {
            if have.get(last.get()) {
                have_bytes -= u64::from(l.piece_length() - l.piece_len(last));
            }
        }
        let active: Vec<&Peer> = tor
            .peers
            .iter()
            .filter_map(|k| self.peer(*k))
            .filter(|p| p.phase == Phase::Active)
            .collect();
        TorrentStats {
            have_pieces: have.count(),
            num_pieces: l.num_pieces(),
            have_bytes,
            total_bytes: l.total_length(),
            downloaded: tor.downloaded,
            uploaded: tor.uploaded,
            wasted: tor.wasted,
            down_rate: tor.down.per_second(),
            up_rate: tor.up.per_second(),
            peers: active.len(),
            seeds: active.iter().filter(|p| p.bits.is_full()).count(),
            hash_failures: tor.hash_failures,
            error: tor.error.clone(),
        }
    }

    /// Connections the engine knows (any phase).
    pub fn num_peers(&self) -> usize {
        self.peers.iter().filter(|p| p.is_some()).count()
    }

    fn peer(&self, k: PeerKey) -> Option<&Peer> {
        self.peers.get(k.0).and_then(Option::as_ref)
    }

    fn peer_mut(&mut self, k: PeerKey) -> Option<&mut Peer> {
        self.peers.get_mut(k.0).and_then(Option::as_mut)
    }

    fn insert_peer(&mut self, k: PeerKey, p: Peer) {
        if self.peers.len() <= k.0 {
            self.peers.resize_with(k.0 + 1, || None);
        }
        self.peers[k.0] = Some(p);
    }

    /// The next action for the reactor.
    pub fn poll_action(&mut self) -> Option<Action> {
        let a = self.actions.pop_front();
        if let Some(Action::Flush(k)) = &a {
            if let Some(p) = self.peer_mut(*k) {
                p.flush_queued = false;
            }
        }
        a
    }

    /// When the engine next needs [`Engine::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_tick;
        for tor in &self.torrents {
            if let Some(r) = tor.choker.next_round() {
                t = Some(t.map_or(r, |x| x.min(r)));
            }
        }
        if let Some(s) = self.serve_wakeup {
            t = Some(t.map_or(s, |x| x.min(s)));
        }
        t
    }

    // ---------------------------------------------------------------- connections

    /// The reactor started the dial asked for by [`Action::Dial`] under key `k`.
    pub fn handle_dialing(&mut self, now: Instant, k: PeerKey, t: TorrentId, addr: SocketAddr) {
        let p = Peer::new(now, addr, Some(t), true, &self.cfg);
        self.insert_peer(k, p);
        if let Some(tor) = self.torrents.get_mut(t.0) {
            tor.peers.push(k);
            let failures = tor.candidates.get(&addr).map_or(0, |c| c.failures());
            tor.candidates
                .insert(addr, Candidate::Connected { failures });
        }
    }

    /// An outbound connection is established: send our handshake.
    pub fn handle_connected(&mut self, now: Instant, k: PeerKey) {
        let Some(p) = self.peer(k) else { return };
        let Some(t) = p.torrent else { return };
        let ih = self.torrents[t.0].info_hash;
        let hs = self.our_handshake(ih).encode();
        if let Some(p) = self.peer_mut(k) {
            p.phase = Phase::Handshake;
            p.connected_at = now;
            p.last_recv = now;
        }
        self.send(now, k, Bytes::copy_from_slice(&hs));
    }

    /// Whether another inbound connection may be accepted.
    pub fn accept_allowed(&self, addr: SocketAddr) -> bool {
        !self.banned.contains(&addr.ip()) && self.num_peers() < self.cfg.max_peers
    }

    /// An inbound connection was accepted under key `k`. Returns false (and forgets it) if it
    /// must be closed at once (banned address or limit).
    pub fn handle_accepted(&mut self, now: Instant, k: PeerKey, addr: SocketAddr) -> bool {
        if !self.accept_allowed(addr) {
            return false;
        }
        let p = Peer::new(now, addr, None, false, &self.cfg);
        self.insert_peer(k, p);
        self.ensure_tick(now);
        true
    }

    fn ensure_tick(&mut self, now: Instant) {
        if self.next_tick.is_none() {
            self.next_tick = Some(now + TICK);
        }
    }

    /// The reactor lost the connection (error, EOF, failed dial).
    pub fn handle_closed(&mut self, now: Instant, k: PeerKey, reason: CloseReason) {
        self.forget(now, k, &reason);
    }

    fn close(&mut self, now: Instant, k: PeerKey, reason: CloseReason) {
        if self.peer(k).is_some() {
            self.forget(now, k, &reason);
            self.actions.push_back(Action::Close { peer: k, reason });
        }
    }

    fn forget(&mut self, now: Instant, k: PeerKey, reason: &CloseReason) {
        let Some(p) = self.peers.get_mut(k.0).and_then(Option::take) else {
            return;
        };
        let Some(t) = p.torrent else { return };
        let Some(tor) = self.torrents.get_mut(t.0) else {
            return;
        };
        tor.peers.retain(|x| *x != k);
        tor.choker.peer_left(k);
        let was_served = p.peer_interested && !p.am_choking;
        for b in &p.requests {
            tor.picker.abort(*b);
        }
        if p.phase == Phase::Active {
            tor.picker.peer_left(&p.bits, p.counted_as_seed);
        }
        if p.outbound {
            // Back to the dial list with a backoff, unless there is no point.
            let keep =
                !matches!(
                    reason,
                    CloseReason::Banned
                        | CloseReason::SelfConnection
                        | CloseReason::UnknownTorrent
                        | CloseReason::Duplicate
                ) && !(p.phase == Phase::Active && p.bits.is_full() && tor.picker.is_complete());
            if keep {
                let failures = tor.candidates.get(&p.addr).map_or(0, |c| c.failures());
                // A connection that got going resets the backoff; a failed dial grows it.
                let failures = if p.phase == Phase::Active {
                    0
                } else {
                    failures + 1
                };
                let wait = Duration::from_secs(1u64 << failures.min(6)).min(BACKOFF_MAX);
                tor.candidates.insert(
                    p.addr,
                    Candidate::Idle {
                        next_try: now + wait,
                        failures,
                    },
                );
            } else {
                tor.candidates.remove(&p.addr);
            }
        }
        if was_served {
            self.refill_slot(now, t);
        }
    }

    fn fail_torrent(&mut self, t: TorrentId, error: String) {
        let Some(tor) = self.torrents.get_mut(t.0) else {
            return;
        };
        if tor.error.is_some() {
            return;
        }
        tor.error = Some(error.clone());
        let peers = std::mem::take(&mut tor.peers);
        self.actions
            .push_back(Action::TorrentFailed { torrent: t, error });
        // No clock needed to close: backoff bookkeeping does not matter for a failed torrent.
        for k in peers {
            if let Some(p) = self.peers.get_mut(k.0).and_then(Option::take) {
                let _ = p;
                self.actions.push_back(Action::Close {
                    peer: k,
                    reason: CloseReason::TorrentStopped,
                });
            }
        }
    }

    // ---------------------------------------------------------------- output

    fn send(&mut self, now: Instant, k: PeerKey, b: Bytes) {
        let Some(p) = self.peer_mut(k) else { return };
        p.out_len += b.len();
        p.out.push_back(b);
        p.last_send = now;
        if !p.flush_queued {
            p.flush_queued = true;
            self.actions.push_back(Action::Flush(k));
        }
    }

    fn send_msg(&mut self, now: Instant, k: PeerKey, m: &Message) {
        let mut buf = BytesMut::with_capacity(m.encoded_len());
        wire::encode(m, &mut buf);
        self.send(now, k, buf.freeze());
    }

    /// The buffers queued for a peer, in order (for `writev`).
    pub fn output(&self, k: PeerKey) -> impl Iterator<Item = &[u8]> {
        self.peer(k)
            .into_iter()
            .flat_map(|p| p.out.iter().map(|b| &b[..]))
    }

    /// Bytes queued for a peer.
    pub fn output_len(&self, k: PeerKey) -> usize {
        self.peer(k).map_or(0, |p| p.out_len)
    }

    /// The socket took `n` bytes of the peer's output.
    pub fn consume_output(&mut self, now: Instant, k: PeerKey, mut n: usize) {
        let send_buffer = self.cfg.send_buffer;
        let Some(p) = self.peers.get_mut(k.0).and_then(Option::as_mut) else {
            return;
        };
        p.out_len -= n.min(p.out_len);
        // Upload accounting: payload counts once the socket has it. Protocol messages are
        // interleaved, so this can credit a few bytes of them as payload (under 0.1%).
        let paid = (n as u64).min(p.unsent_payload);
        if paid > 0 {
            p.unsent_payload -= paid;
            p.up.add(paid);
            if let Some(tor) = p.torrent.and_then(|t| self.torrents.get_mut(t.0)) {
                tor.up.add(paid);
                tor.uploaded += paid;
            }
        }
        while n > 0 {
            let Some(front) = p.out.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                p.out.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
        let refill = p.out_len < send_buffer / 2 && !p.queue.is_empty();
        if refill {
            self.serve(now, k);
        }
    }

    // ---------------------------------------------------------------- input

    /// Bytes arrived from a peer. Complete messages are consumed from `buf`; a partial one is
    /// left for the next call.
    pub fn handle_bytes(&mut self, now: Instant, k: PeerKey, buf: &mut BytesMut) {
        let Some(p) = self.peer_mut(k) else { return };
        p.last_recv = now;
        loop {
            let Some(p) = self.peer_mut(k) else { return };
            match p.phase {
                Phase::Dialing => return,
                Phase::Handshake => match Handshake::decode(buf) {
                    Ok(None) => return,
                    Ok(Some(h)) => {
                        if !self.on_handshake(now, k, h) {
                            return;
                        }
                    }
                    Err(e) => return self.close(now, k, CloseReason::Protocol(e.to_string())),
                },
                Phase::Active => {
                    let Some(dec) = p.decoder.as_mut() else {
                        return;
                    };
                    match dec.decode(buf) {
                        Ok(None) => break,
                        Ok(Some(m)) => {
                            if let Err(reason) = self.on_message(now, k, m) {
                                return self.close(now, k, reason);
                            }
                        }
                        Err(e) => return self.close(now, k, CloseReason::Protocol(e.to_string())),
                    }
                }
            }
        }
        self.after_input(now, k);
    }

    /// Requests and uploads that follow a batch of input.
    fn after_input(&mut self, now: Instant, k: PeerKey) {
        self.fill_requests(now, k);
        self.serve(now, k);
    }

    fn on_handshake(&mut self, now: Instant, k: PeerKey, h: Handshake) -> bool {
        let Some(p) = self.peer(k) else { return false };
        let ih = InfoHash(h.info_hash);
        let t = match p.torrent {
            Some(t) => {
                if self.torrents[t.0].info_hash != ih {
                    self.close(now, k, CloseReason::UnknownTorrent);
                    return false;
                }
                t
            }
            None => match self
                .torrents
                .iter()
                .position(|tor| tor.info_hash == ih && tor.error.is_none())
            {
                Some(i) => TorrentId(i),
                None => {
                    self.close(now, k, CloseReason::UnknownTorrent);
                    return false;
                }
            },
        };
        if h.peer_id == self.cfg.peer_id {
            self.close(now, k, CloseReason::SelfConnection);
            return false;
        }
        let outbound = p.outbound;
        let dup = self.torrents[t.0].peers.iter().copied().find(|o| {
            *o != k
                && self
                    .peer(*o)
                    .is_some_and(|q| q.phase == Phase::Active && q.peer_id == h.peer_id)
        });
        if let Some(o) = dup {
            // When both sides dial each other at once, each side must close the same one of
            // the two connections, or both die: the one dialed by the larger peer id stays.
            let keep_new = self.peer(o).is_some_and(|q| q.outbound != outbound)
                && outbound == (self.cfg.peer_id > h.peer_id);
            if !keep_new {
                self.close(now, k, CloseReason::Duplicate);
                return false;
            }
            self.close(now, o, CloseReason::Duplicate);
        }
        let tor = &self.torrents[t.0];
        if !outbound && tor.peers.len() >= self.cfg.max_peers_per_torrent {
            self.close(now, k, CloseReason::Limit);
            return false;
        }
        let n = tor.info.layout().num_pieces();
        let have_bytes = (tor.picker.have().count() > 0)
            .then(|| Bytes::copy_from_slice(tor.picker.have().as_bytes()));
        let ours = self.our_handshake(tor.info_hash).encode();
        if !outbound {
            self.torrents[t.0].peers.push(k);
        }
        let Some(p) = self.peer_mut(k) else {
            return false;
        };
        p.torrent = Some(t);
        p.peer_id = h.peer_id;
        p.phase = Phase::Active;
        p.decoder = Some(Decoder::new(n));
        p.bits = Bitfield::new(n);
        if !outbound {
            self.send(now, k, Bytes::copy_from_slice(&ours));
        }
        if let Some(b) = have_bytes {
            self.send_msg(now, k, &Message::Bitfield(b));
        }
        if h.supports_extension_protocol() {
            let payload = self.ext_handshake.clone();
            self.send_msg(now, k, &Message::Extended { id: 0, payload });
        }
        self.ensure_tick(now);
        true
    }

    /// Our handshake for a torrent: the extension protocol bit set (BEP 10), so that peers
    /// learn our `reqq` from the extension handshake sent after it; no other capability.
    fn our_handshake(&self, info_hash: InfoHash) -> Handshake {
        Handshake::new(info_hash.0, self.cfg.peer_id).with(wire::ReservedBit::EXTENSION_PROTOCOL)
    }

    fn on_message(&mut self, now: Instant, k: PeerKey, m: Message) -> Result<(), CloseReason> {
        let (t, first) = {
            let Some(p) = self.peer_mut(k) else {
                return Ok(());
            };
            // `first`: no piece availability has been announced yet (bitfield, have-all and
            // have-none are only valid then; other messages such as BEP 10's extended
            // handshake may come before them).
            let announces = matches!(
                m,
                Message::Bitfield(_) | Message::HaveAll | Message::HaveNone | Message::Have(_)
            );
            let first = p.first_message;
            if announces {
                p.first_message = false;
            }
            (
                p.torrent
                    .ok_or_else(|| CloseReason::Protocol("no torrent".into()))?,
                first,
            )
        };
        match m {
            Message::KeepAlive
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::AllowedFast(_) => {}
            Message::Extended { id: 0, payload } => {
                // The extension handshake: we use only its `reqq`. Anything malformed there
                // is ignored, as any extension message is (we offered none).
                let reqq = crate::bencode::decode_prefix(&payload)
                    .ok()
                    .and_then(|(v, _)| v.get(b"reqq").and_then(|r| r.as_int()));
                if let (Some(n), Some(p)) = (reqq, self.peer_mut(k)) {
                    p.peer_reqq = Some(n.clamp(1, i64::from(u32::MAX)) as u32);
                }
            }
            Message::Extended { .. } => {}
            Message::Choke => {
                let Some(p) = self.peer_mut(k) else {
                    return Ok(());
                };
                p.peer_choking = true;
                let dropped: Vec<BlockRef> = p.requests.drain(..).collect();
                let tor = &mut self.torrents[t.0];
                for b in dropped {
                    tor.picker.abort(b);
                }
            }
            Message::Unchoke => {
                if let Some(p) = self.peer_mut(k) {
                    p.peer_choking = false;
                    p.last_block = now;
                }
            }
            Message::Interested => {
                if let Some(p) = self.peer_mut(k) {
                    p.peer_interested = true;
                }
                self.unchoke_if_free_slot(now, t, k);
            }
            Message::NotInterested => {
                let was_served = self
                    .peer(k)
                    .is_some_and(|p| p.peer_interested && !p.am_choking);
                if let Some(p) = self.peer_mut(k) {
                    p.peer_interested = false;
                }
                // Its slot goes to a waiting peer, and it is choked so that it cannot come
                // back to a slot it gave up (it wants nothing from us now anyway).
                if was_served && self.refill_slot(now, t) {
                    self.set_choke(now, k, true);
                }
            }
            Message::Have(i) => {
                let tor = &mut self.torrents[t.0];
                let Some(piece) = tor.info.layout().piece(i) else {
                    return Err(CloseReason::Protocol(format!(
                        "have for piece {i} out of range"
                    )));
                };
                let Some(p) = self.peers.get_mut(k.0).and_then(Option::as_mut) else {
                    return Ok(());
                };
                if !p.bits.get(i) {
                    p.bits.set(i);
                    if !p.counted_as_seed {
                        tor.picker.peer_has(piece);
                    }
                }
                self.update_interest(now, t, k);
                self.close_if_both_seeds(now, t, k);
            }
            Message::Bitfield(b) => {
                if !first {
                    return Err(CloseReason::Protocol(
                        "bitfield after pieces were announced".into(),
                    ));
                }
                let n = self.torrents[t.0].info.layout().num_pieces();
                let bits = Bitfield::from_bytes(&b, n)
                    .ok_or_else(|| CloseReason::Protocol("bad bitfield".into()))?;
                self.set_bitfield(now, t, k, bits);
            }
            Message::HaveAll | Message::HaveNone => {
                if !first {
                    return Err(CloseReason::Protocol(
                        "have-all/none after pieces were announced".into(),
                    ));
                }
                let n = self.torrents[t.0].info.layout().num_pieces();
                let bits = if matches!(m, Message::HaveAll) {
                    Bitfield::full(n)
                } else {
                    Bitfield::new(n)
                };
                self.set_bitfield(now, t, k, bits);
            }
            Message::Request {
                index,
                begin,
                length,
            } => {
                let tor = &self.torrents[t.0];
                let Some(b) = tor.info.layout().block_checked(index, begin, length) else {
                    return Err(CloseReason::Protocol(format!(
                        "bad request {index}:{begin}+{length}"
                    )));
                };
                let have = tor.picker.have().get(index);
                let max = self.cfg.max_peer_requests;
                let Some(p) = self.peer_mut(k) else {
                    return Ok(());
                };
                // BEP 3: requests from a choked peer, or for pieces we lack, are dropped.
                if have && !p.am_choking && p.queue.len() < max {
                    p.queue.push_back(b);
                }
            }
            Message::Cancel {
                index,
                begin,
                length,
            } => {
                if let Some(p) = self.peer_mut(k) {
                    if let Some(i) = p.queue.iter().position(|b| {
                        b.piece().get() == index && b.offset() == begin && b.len() == length
                    }) {
                        p.queue.remove(i);
                        if i < p.prefetched {
                            p.prefetched -= 1;
                        }
                    }
                }
            }
            Message::RejectRequest {
                index,
                begin,
                length,
            } => {
                let Some(p) = self.peers.get_mut(k.0).and_then(Option::as_mut) else {
                    return Ok(());
                };
                if let Some(i) = p.requests.iter().position(|b| {
                    b.piece().get() == index && b.offset() == begin && b.len() == length
                }) {
                    if let Some(b) = p.requests.remove(i) {
                        self.torrents[t.0].picker.abort(b);
                    }
                }
            }
            Message::Piece {
                index,
                begin,
                block,
            } => self.on_piece(now, t, k, index, begin, block)?,
        }
        Ok(())
    }

    fn set_bitfield(&mut self, now: Instant, t: TorrentId, k: PeerKey, bits: Bitfield) {
        let tor = &mut self.torrents[t.0];
        let as_seed = tor.picker.peer_joined(&bits);
        if let Some(p) = self.peers.get_mut(k.0).and_then(Option::as_mut) {
            p.bits = bits;
            p.counted_as_seed = as_seed;
        }
        self.update_interest(now, t, k);
        self.close_if_both_seeds(now, t, k);
    }

    fn close_if_both_seeds(&mut self, now: Instant, t: TorrentId, k: PeerKey) {
        let complete = self.torrents[t.0].picker.is_complete();
        // Only an active peer's bitfield means anything: before the handshake it is empty
        // (zero pieces long), which `is_full` would call a seed.
        if complete
            && self
                .peer(k)
                .is_some_and(|p| p.phase == Phase::Active && p.bits.is_full())
        {
            self.close(now, k, CloseReason::BothSeeds);
        }
    }

    fn on_piece(
        &mut self,
        now: Instant,
        t: TorrentId,
        k: PeerKey,
        index: u32,
        begin: u32,
        data: Bytes,
    ) -> Result<(), CloseReason> {
        let len = data.len() as u64;
        let tor = &mut self.torrents[t.0];
        tor.downloaded += len;
        tor.down.add(len);
        let Some(p) = self.peers.get_mut(k.0).and_then(Option::as_mut) else {
            return Ok(());
        };
        p.down.add(len);
        p.last_block = now;
        p.snubbed = false;
        // Ours, requested from this peer? Most arrive in order: look at the front first.
        let pos = p
            .requests
            .iter()
            .position(|b| b.piece().get() == index && b.offset() == begin && b.len() as u64 == len);
        let Some(pos) = pos else {
            // Unrequested (or cancelled late): not an error, but not stored either.
            tor.wasted += len;
            return Ok(());
        };
        // NOTE: pos came from position() on this deque.
        let Some(b) = p.requests.remove(pos) else {
            return Ok(());
        };
        if p.slow_start && p.target_queue < self.cfg.max_queue {
            p.target_queue += 1;
        }
        let ip = p.addr.ip();
        let endgame = tor.picker.in_endgame();
        match tor.picker.received(b) {
            Received::Duplicate => {
                tor.wasted += len;
                return Ok(());
            }
            r => {
                if let Err(e) = tor.storage.write_block(b, &data) {
                    // The picker counts the block as received; the torrent stops anyway.
                    self.fail_torrent(t, e.to_string());
                    return Ok(());
                }
                let c = tor.contributors.entry(b.piece().get()).or_default();
                if !c.contains(&ip) {
                    c.push(ip);
                }
                if let Received::PieceComplete(piece) = r {
                    self.actions
                        .push_back(Action::VerifyPiece { torrent: t, piece });
                }
            }
        }
        if endgame {
            self.cancel_elsewhere(now, t, k, b);
        }
        Ok(())
    }

    /// Endgame: `b` arrived from `from`; cancel it at every other peer we asked.
    fn cancel_elsewhere(&mut self, now: Instant, t: TorrentId, from: PeerKey, b: BlockRef) {
        let others: Vec<PeerKey> = self.torrents[t.0]
            .peers
            .iter()
            .copied()
            .filter(|o| *o != from)
            .collect();
        for o in others {
            let Some(p) = self.peers.get_mut(o.0).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(i) = p.requests.iter().position(|x| *x == b) {
                p.requests.remove(i);
                self.torrents[t.0].picker.abort(b);
                let m = Message::Cancel {
                    index: b.piece().get(),
                    begin: b.offset(),
                    length: b.len(),
                };
                self.send_msg(now, o, &m);
            }
        }
    }

    fn update_interest(&mut self, now: Instant, t: TorrentId, k: PeerKey) {
        let tor = &self.torrents[t.0];
        // Before the handshake nothing may be sent (a dialing peer's output would go out ahead
        // of our handshake) and its (zero-length) bitfield says nothing.
        let Some(p) = self.peer(k).filter(|p| p.phase == Phase::Active) else {
            return;
        };
        let want = tor.error.is_none() && tor.picker.interesting(&p.bits);
        if want != p.am_interested {
            if let Some(p) = self.peer_mut(k) {
                p.am_interested = want;
            }
            let m = if want {
                Message::Interested
            } else {
                Message::NotInterested
            };
            self.send_msg(now, k, &m);
        }
    }

    /// Upload slots (regular and optimistic) of a torrent.
    fn slots(&self) -> usize {
        self.cfg.choker.regular_slots + self.cfg.choker.optimistic_slots
    }

    /// Peers of `t` we serve now: unchoked and interested.
    fn served(&self, t: TorrentId) -> usize {
        self.torrents[t.0]
            .peers
            .iter()
            .filter(|o| {
                self.peer(**o)
                    .is_some_and(|p| !p.am_choking && p.peer_interested)
            })
            .count()
    }

    fn unchoke_if_free_slot(&mut self, now: Instant, t: TorrentId, k: PeerKey) {
        if self.served(t) < self.slots() && self.peer(k).is_some_and(|p| p.am_choking) {
            self.set_choke(now, k, false);
        }
    }

    /// An upload slot came free between two choker rounds (a peer we served lost interest or
    /// left): give it at once to the waiting interested peer that sends us most (at random
    /// among equals, as for a seed), instead of leaving upload capacity idle until the next
    /// round, which may be 10 s away. The next round re-decides as usual.
    /// Returns whether a peer was unchoked.
    fn refill_slot(&mut self, now: Instant, t: TorrentId) -> bool {
        if self.served(t) >= self.slots() {
            return false;
        }
        let mut best: Option<(u64, u64, PeerKey)> = None;
        for &o in &self.torrents[t.0].peers {
            let Some(p) = self.peer(o) else { continue };
            if p.phase == Phase::Active && p.peer_interested && p.am_choking {
                let key = (p.down.per_second(), self.rng.next(), o);
                if best.is_none_or(|b| (key.0, key.1) > (b.0, b.1)) {
                    best = Some(key);
                }
            }
        }
        let Some((_, _, k)) = best else {
            return false;
        };
        self.set_choke(now, k, false);
        true
    }

    fn set_choke(&mut self, now: Instant, k: PeerKey, choke: bool) {
        let Some(p) = self.peer_mut(k) else { return };
        if p.am_choking == choke {
            return;
        }
        p.am_choking = choke;
        if choke {
            // BEP 3: choking discards the peer's pending requests.
            p.queue.clear();
            p.prefetched = 0;
        }
        let m = if choke {
            Message::Choke
        } else {
            Message::Unchoke
        };
        self.send_msg(now, k, &m);
    }

    /// Keeps the peer's request pipeline full.
    fn fill_requests(&mut self, now: Instant, k: PeerKey) {
        // Take the peer out of its slot while we work on it and the torrent together.
        let Some(mut p) = self.peers.get_mut(k.0).and_then(Option::take) else {
            return;
        };
        let result = self.fill_requests_for(now, &mut p);
        self.peers[k.0] = Some(p);
        match result {
            Some(buf) => self.send(now, k, buf),
            None => {
                if let Some(t) = self.peer(k).and_then(|p| p.torrent) {
                    // Nothing left to ask this peer for: say so if that is final.
                    if self.peer(k).is_some_and(|p| p.requests.is_empty()) {
                        self.update_interest(now, t, k);
                    }
                }
            }
        }
    }

    /// Picks blocks for `p` and returns the encoded requests, if any.
    fn fill_requests_for(&mut self, now: Instant, p: &mut Peer) -> Option<Bytes> {
        let t = p.torrent?;
        if p.phase != Phase::Active || p.peer_choking || !p.am_interested {
            return None;
        }
        let target = p.target_queue.min(p.peer_reqq.unwrap_or(u32::MAX));
        let want = (target as usize).saturating_sub(p.requests.len());
        // Top up in batches, not one request per arriving block.
        if want == 0 || (want < 4 && p.requests.len() > 4) {
            return None;
        }
        let tor = &mut self.torrents[t.0];
        if tor.error.is_some() {
            return None;
        }
        // Endgame (every missing block already asked for somewhere): duplicates go only to a
        // peer with nothing else in flight, and a few at a time, so that a fast peer takes
        // over the stragglers of slow ones without every peer re-requesting every block (each
        // duplicate that arrives second is wasted upload). The picker applies the limit also
        // when this call takes the last free blocks and enters endgame half-way.
        let duplicates = if p.requests.is_empty() {
            ENDGAME_BATCH
        } else {
            0
        };
        if tor.picker.in_endgame() && duplicates == 0 {
            return None;
        }
        let mut picked = std::mem::take(&mut self.scratch);
        picked.clear();
        let requests = &p.requests;
        tor.picker.pick_limited(
            &p.bits,
            want,
            duplicates,
            &mut self.rng,
            |b| requests.contains(&b),
            &mut picked,
        );
        let out = if picked.is_empty() {
            None
        } else {
            let mut buf = BytesMut::with_capacity(picked.len() * 17);
            for b in &picked {
                wire::encode(
                    &Message::Request {
                        index: b.piece().get(),
                        begin: b.offset(),
                        length: b.len(),
                    },
                    &mut buf,
                );
            }
            if p.requests.is_empty() {
                // First requests after a quiet spell: the timeout clock starts now.
                p.last_block = now;
            }
            p.requests.extend(picked.iter().copied());
            Some(buf.freeze())
        };
        self.scratch = picked;
        out
    }

    /// Queues blocks the peer asked for, while its socket buffer has room.
    fn serve(&mut self, now: Instant, k: PeerKey) {
        let send_buffer = self.cfg.send_buffer;
        let Some(p) = self.peers.get_mut(k.0).and_then(Option::as_mut) else {
            return;
        };
        let Some(t) = p.torrent else { return };
        if p.serve_after.is_some_and(|s| s > now) {
            return;
        }
        // A retry that finds nothing to do must not stay armed (poll_timeout would spin).
        p.serve_after = None;
        if p.am_choking {
            return;
        }
        let tor = &mut self.torrents[t.0];
        let mut queued = false;
        let mut failed = None;
        while p.out_len < send_buffer {
            let Some(b) = p.queue.front().copied() else {
                break;
            };
            // Residency is checked once per piece (blocks of a piece are asked for together);
            // a piece found resident stays trusted while we serve it.
            let resident =
                p.resident_piece == Some(b.piece()) || tor.storage.is_piece_resident(b.piece());
            if resident {
                p.resident_piece = Some(b.piece());
            }
            if !resident && !tor.storage.is_resident(b) {
                // Never fault on the loop: ask the disk for this block and the ones queued
                // behind it (up to PREFETCH_AHEAD bytes, each asked for once), and come back
                // shortly. Reading ahead keeps the disk busy instead of one block per wake-up.
                let mut ahead = 0u64;
                for (i, qb) in p.queue.iter().enumerate() {
                    if ahead >= PREFETCH_AHEAD {
                        break;
                    }
                    ahead += u64::from(qb.len());
                    if i >= p.prefetched {
                        tor.storage.prefetch(*qb);
                        p.prefetched = i + 1;
                    }
                }
                let at = now + Duration::from_millis(2);
                p.serve_after = Some(at);
                self.serve_wakeup = Some(self.serve_wakeup.map_or(at, |w| w.min(at)));
                break;
            }
            let data = match tor.storage.read_block(b) {
                Ok(d) => d,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            };
            p.queue.pop_front();
            p.prefetched = p.prefetched.saturating_sub(1);
            if self.header_buf.capacity() - self.header_buf.len() < wire::PIECE_HEADER_LEN {
                self.header_buf.reserve(wire::PIECE_HEADER_LEN * 256);
            }
            self.header_buf
                .put_slice(&wire::piece_header(b.piece().get(), b.offset(), b.len()));
            let header = self.header_buf.split().freeze();
            let len = u64::from(b.len());
            p.out_len += header.len() + data.len();
            p.out.push_back(header);
            p.out.push_back(data);
            // Counted as uploaded when the socket takes it (consume_output), not now.
            p.unsent_payload += len;
            queued = true;
        }
        if queued {
            p.last_send = now;
            if !p.flush_queued {
                p.flush_queued = true;
                self.actions.push_back(Action::Flush(k));
            }
        }
        if let Some(e) = failed {
            self.fail_torrent(t, e);
        }
    }

    // ---------------------------------------------------------------- verification

    /// The result of an [`Action::VerifyPiece`].
    pub fn handle_piece_verified(
        &mut self,
        now: Instant,
        t: TorrentId,
        piece: PieceIndex,
        verdict: Verdict,
    ) {
        let Some(tor) = self.torrents.get_mut(t.0) else {
            return;
        };
        let contributors = tor.contributors.remove(&piece.get()).unwrap_or_default();
        match verdict {
            Verdict::Good(v) => {
                tor.picker.piece_passed(v.piece());
                let peers = tor.peers.clone();
                let complete = tor.picker.is_complete();
                for k in &peers {
                    // Every active peer hears it, even one that has the piece: without it the
                    // peer cannot tell when we become a seed (and two seeds would stay
                    // connected for ever) nor count availability right.
                    if self.peer(*k).is_some_and(|p| p.phase == Phase::Active) {
                        self.send_msg(now, *k, &Message::Have(piece.get()));
                    }
                    self.update_interest(now, t, *k);
                }
                if complete {
                    let tor = &mut self.torrents[t.0];
                    if !tor.complete_reported {
                        tor.complete_reported = true;
                        self.actions.push_back(Action::TorrentComplete(t));
                    }
                    for k in peers {
                        self.close_if_both_seeds(now, t, k);
                    }
                }
            }
            Verdict::Bad | Verdict::Missing => {
                tor.picker.piece_failed(piece);
                tor.hash_failures += 1;
                tor.wasted += u64::from(tor.info.layout().piece_len(piece));
                // Blame: a sole contributor takes two strikes, each of several one. A piece
                // that holds blocks from an address already banned is blamed on it alone
                // (its blocks stay in partial pieces after the ban; the others are innocent).
                let weight = if contributors.len() == 1 { 2 } else { 1 };
                let mut ban = Vec::new();
                let known_bad = contributors.iter().any(|ip| self.banned.contains(ip));
                for ip in contributors.into_iter().filter(|_| !known_bad) {
                    let s = tor.strikes.entry(ip).or_insert(0);
                    *s += weight;
                    if *s >= self.cfg.ban_strikes {
                        ban.push(ip);
                    }
                }
                for ip in ban {
                    self.banned.insert(ip);
                    let victims: Vec<PeerKey> = self.torrents[t.0]
                        .peers
                        .iter()
                        .copied()
                        .filter(|k| self.peer(*k).is_some_and(|p| p.addr.ip() == ip))
                        .collect();
                    for k in victims {
                        self.close(now, k, CloseReason::Banned);
                    }
                    self.torrents[t.0].candidates.retain(|a, _| a.ip() != ip);
                }
            }
        }
        // Peers may have new pieces to ask for (a failed piece is free again).
        let peers = self.torrents[t.0].peers.clone();
        for k in peers {
            self.fill_requests(now, k);
        }
    }

    /// Whether an address is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains(&ip)
    }

    // ---------------------------------------------------------------- timers

    /// Timers: once a second the housekeeping tick (rates, pipelines, request timeouts,
    /// keep-alives, idle peers, dialing), the choker's rounds, and deferred serving.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| now >= t) {
            self.next_tick = Some(now + TICK);
            self.tick(now);
        }
        for i in 0..self.torrents.len() {
            if self.torrents[i]
                .choker
                .next_round()
                .is_none_or(|r| now >= r)
            {
                self.choke_round(now, TorrentId(i));
            }
        }
        // Deferred serving (pages were being read from disk): only when one is due, so the
        // reactor's per-turn calls stay O(torrents), not O(peers).
        if self.serve_wakeup.is_some_and(|w| w <= now) {
            self.serve_wakeup = None;
            let mut waiting = Vec::new();
            for (i, p) in self.peers.iter().enumerate() {
                match p.as_ref().and_then(|p| p.serve_after) {
                    Some(s) if s <= now => waiting.push(PeerKey(i)),
                    Some(s) => self.serve_wakeup = Some(self.serve_wakeup.map_or(s, |w| w.min(s))),
                    None => {}
                }
            }
            for k in waiting {
                self.serve(now, k);
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        for tor in &mut self.torrents {
            tor.down.tick();
            tor.up.tick();
        }
        let keys: Vec<PeerKey> = (0..self.peers.len())
            .filter(|i| self.peers[*i].is_some())
            .map(PeerKey)
            .collect();
        for k in keys {
            let Some(p) = self.peers.get_mut(k.0).and_then(Option::as_mut) else {
                continue;
            };
            p.down.tick();
            p.up.tick();
            let since_recv = now.saturating_duration_since(p.last_recv);
            match p.phase {
                Phase::Dialing => continue,
                Phase::Handshake if since_recv > self.cfg.handshake_timeout => {
                    self.close(now, k, CloseReason::Timeout);
                    continue;
                }
                Phase::Handshake => continue,
                Phase::Active => {}
            }
            if since_recv > self.cfg.idle_timeout {
                self.close(now, k, CloseReason::Timeout);
                continue;
            }
            // Pipeline depth: bandwidth x delay in blocks, after slow start.
            let rate = p.down.per_second();
            let last = p.down.last_second();
            let before = p.down.second_before_last();
            // Slow start ends when a second brought less than 10% more than the one before:
            // more requests in flight no longer buy more rate.
            if p.slow_start
                && p.target_queue > self.cfg.min_queue + 8
                && before > 0
                && last * 10 < before * 11
            {
                p.slow_start = false;
            }
            if p.snubbed {
                // One request at a time until it sends a block again: the rest go to others.
                p.target_queue = 1;
            } else if !p.slow_start || p.target_queue >= self.cfg.max_queue {
                p.slow_start = false;
                let secs = self.cfg.queue_time.as_secs_f64();
                let want = (rate as f64 * secs / f64::from(BLOCK_LEN)) as u32;
                p.target_queue = want.clamp(self.cfg.min_queue, self.cfg.max_queue);
            }
            // Snubbing: requests outstanding and nothing arriving.
            if !p.requests.is_empty()
                && now.saturating_duration_since(p.last_block) > self.cfg.request_timeout
            {
                p.snubbed = true;
                p.target_queue = 1;
                p.slow_start = false;
                let dropped: Vec<BlockRef> = p.requests.drain(..).collect();
                if let Some(t) = p.torrent {
                    for b in dropped {
                        self.torrents[t.0].picker.abort(b);
                    }
                }
            }
            let Some(p) = self.peer(k) else { continue };
            if now.saturating_duration_since(p.last_send) > self.cfg.keepalive_interval {
                self.send_msg(now, k, &Message::KeepAlive);
            }
            self.fill_requests(now, k);
        }
        self.dial(now);
        for i in 0..self.torrents.len() {
            let t = TorrentId(i);
            if self.torrents[i].error.is_none() {
                if let Err(e) = self.torrents[i].storage.recheck() {
                    self.fail_torrent(t, e.to_string());
                }
            }
        }
    }

    fn dial(&mut self, now: Instant) {
        let mut half_open = self
            .peers
            .iter()
            .flatten()
            .filter(|p| p.phase == Phase::Dialing)
            .count();
        let mut total = self.num_peers();
        for i in 0..self.torrents.len() {
            let tor = &mut self.torrents[i];
            if tor.error.is_some() {
                continue;
            }
            let mut n = tor.peers.len();
            let mut due: Vec<SocketAddr> = tor
                .candidates
                .iter()
                .filter(|(_, c)| matches!(c, Candidate::Idle { next_try, .. } if *next_try <= now))
                .map(|(a, _)| *a)
                .collect();
            due.sort();
            for addr in due {
                if n >= self.cfg.max_peers_per_torrent
                    || half_open >= self.cfg.max_half_open
                    || total >= self.cfg.max_peers
                {
                    break;
                }
                let failures = tor.candidates.get(&addr).map_or(0, |c| c.failures());
                tor.candidates
                    .insert(addr, Candidate::Connected { failures });
                self.actions.push_back(Action::Dial {
                    torrent: TorrentId(i),
                    addr,
                });
                n += 1;
                half_open += 1;
                total += 1;
            }
        }
    }

    fn choke_round(&mut self, now: Instant, t: TorrentId) {
        let tor = &self.torrents[t.0];
        let seeding = tor.picker.is_complete();
        let infos: Vec<PeerInfo> = tor
            .peers
            .iter()
            .filter_map(|k| {
                self.peer(*k)
                    .filter(|p| p.phase == Phase::Active)
                    .map(|p| (*k, p))
            })
            .map(|(k, p)| PeerInfo {
                key: k,
                interested: p.peer_interested,
                download_rate: p.down.per_second(),
                upload_rate: p.up.per_second(),
                connected_at: p.connected_at,
                snubbed: p.snubbed,
                unchoked: !p.am_choking,
            })
            .collect();
        let decision: ChokeDecision =
            self.torrents[t.0]
                .choker
                .round(now, &infos, seeding, &mut self.rng);
        for info in &infos {
            let unchoke = decision.unchoke.contains(&info.key);
            // Keep peers that are not interested as they are: choking them gains nothing, and
            // they get a slot the moment they become interested (if one is free).
            if info.interested || unchoke {
                self.set_choke(now, info.key, !unchoke);
            }
        }
    }
}

#[cfg(test)]
mod tests;
