//! A virtual-time swarm: N sans-IO [`Engine`]s joined by simulated TCP links.
//!
//! What it models:
//!
//! - **Time** is virtual: one base instant from [`bitmill::net::clock::now`], advanced by
//!   adding `Duration`s. Nothing sleeps, nothing spawns a thread, no socket is opened.
//! - **Links** are TCP-like byte streams. Each link gets a one-way latency drawn from
//!   `latency` when it is dialed; every write also gets up to `jitter` more. Bytes arrive in
//!   order per direction (a delivery never overtakes an earlier one on the same direction).
//!   "Loss" is what TCP makes of it: a delivery hit with probability `loss` arrives `rto`
//!   later, and everything behind it on that direction waits too (head-of-line blocking).
//! - **Upload bandwidth** per node (optional): the node's uplink takes one `chunk` at a time
//!   from the connections that have output, round robin, and is busy for `chunk / rate`.
//!   Output the uplink has not taken stays in the engine (`output` / `consume_output`), as it
//!   would in a real socket's backlog. Download is not limited.
//! - **Connections**: an [`Action::Dial`] gets a fresh key on the dialer at once
//!   (`handle_dialing`); after the link latency the acceptor gets `handle_accepted` (with its
//!   own fresh key; a refusal closes it and the dialer learns after another latency) and the
//!   dialer `handle_connected`. A dial to an address nobody listens on fails after the latency.
//!   [`Action::Close`] drops the socket; the other side gets `handle_closed` once the data
//!   already in flight towards it has arrived. Keys are reused like a slab's (lowest free).
//! - **Hashing**: [`Action::VerifyPiece`] is carried out `verify_delay` later with
//!   [`Engine::verify_piece`] and reported with [`Engine::handle_piece_verified`].
//! - **Timers**: an engine gets `handle_timeout` when its `poll_timeout` is reached.
//!
//! The call order is the one `src/engine/mod.rs` documents: after every `handle_*` the
//! harness drains `poll_action` until `None` and writes the output the actions ask for.
//! Randomness (latencies, loss, the torrent's bytes, peer ids) comes from seeded
//! [`Rng`]s, so a run is fixed by its seeds.
#![allow(dead_code, unreachable_pub)]

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bitmill::bitfield::Bitfield;
use bitmill::engine::{
    make_peer_id, Action, CloseReason, Engine, EngineConfig, PeerKey, TorrentId, TorrentStats,
};
use bitmill::metainfo::{Info, InfoHash, Metainfo, PieceIndex, TorrentBuilder};
use bitmill::rng::Rng;
use bitmill::storage::MemStorage;
use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};

/// Keys below this are "reserved" (listeners, UDP sockets in the real reactor).
pub const FIRST_KEY: usize = 8;

/// A torrent and its bytes.
#[derive(Clone)]
pub struct TestTorrent {
    /// SHA-1 of the info dictionary.
    pub info_hash: InfoHash,
    /// The parsed info dictionary.
    pub info: Info,
    /// The content.
    pub data: Vec<u8>,
}

impl TestTorrent {
    /// A multi-file torrent over pseudo-random bytes from `seed`.
    pub fn new(piece_length: u32, file_lengths: &[u64], seed: u64) -> TestTorrent {
        let total: u64 = file_lengths.iter().sum();
        let mut data = vec![0u8; total as usize];
        Rng::new(seed).fill(&mut data);
        let mut pieces = Vec::new();
        for chunk in data.chunks(piece_length as usize) {
            pieces.extend_from_slice(&Sha1::digest(chunk));
        }
        let b = TorrentBuilder {
            name: "swarm".into(),
            files: file_lengths
                .iter()
                .enumerate()
                .map(|(i, &l)| (vec![format!("dir{}", i % 2), format!("file{i}.bin")], l))
                .collect(),
            single_file: false,
            piece_length,
            pieces,
            ..Default::default()
        };
        let m = Metainfo::from_bytes(&b.encode()).expect("builder output parses");
        assert_eq!(m.info.total_length(), total);
        TestTorrent {
            info_hash: m.info_hash,
            info: m.info,
            data,
        }
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.info.layout().num_pieces()
    }

    /// The stream range of a piece, as `usize`.
    pub fn piece_range(&self, p: u32) -> std::ops::Range<usize> {
        let l = self.info.layout();
        let r = l.piece_range(l.piece(p).expect("piece in range"));
        r.start as usize..r.end as usize
    }
}

/// Link and hashing parameters.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Seed for latencies, jitter and loss.
    pub seed: u64,
    /// One-way latency of a link, drawn uniformly from this range when it is dialed.
    pub latency: (Duration, Duration),
    /// Extra delay of each delivery, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Probability that a delivery needs a retransmission.
    pub loss: f64,
    /// What a retransmission costs.
    pub rto: Duration,
    /// Time from `VerifyPiece` to `handle_piece_verified`.
    pub verify_delay: Duration,
    /// Largest write the uplink takes at once.
    pub chunk: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            seed: 1,
            latency: (Duration::from_millis(5), Duration::from_millis(50)),
            jitter: Duration::from_millis(3),
            loss: 0.01,
            rto: Duration::from_millis(200),
            verify_delay: Duration::from_millis(1),
            chunk: 16 * 1024 + 13,
        }
    }
}

/// How a node starts.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Starts with every piece (and the right bytes).
    pub seed: bool,
    /// Pieces whose bytes are corrupted while the node still claims to have them.
    pub corrupt: Vec<u32>,
    /// Upload limit in bytes per second; `None` is unlimited.
    pub upload: Option<u64>,
    /// When it joins the swarm (calls `add_peers`, accepts connections).
    pub join_at: Duration,
    /// Indices of the nodes it is told about when it joins.
    pub peers: Vec<usize>,
    /// Engine settings (`peer_id` and `seed` are filled in by the swarm).
    pub config: EngineConfig,
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec {
            seed: false,
            corrupt: Vec::new(),
            upload: None,
            join_at: Duration::ZERO,
            peers: Vec::new(),
            config: EngineConfig::default(),
        }
    }
}

/// One simulated host.
pub struct Node {
    /// Its engine.
    pub engine: Engine,
    /// Its listen address, `127.0.0.x:6881`.
    pub addr: SocketAddr,
    /// The torrent in its engine.
    pub torrent: TorrentId,
    /// Joined and not left.
    pub alive: bool,
    /// Left the swarm.
    pub left: bool,
    /// Was a seed from the start.
    pub initial_seed: bool,
    /// When it sent `TorrentComplete` (relative to the swarm's start).
    pub completed_at: Option<Duration>,
    /// `TorrentFailed` errors.
    pub failed: Vec<String>,
    /// Every close the engine asked for: (time, remote address, reason).
    pub closes: Vec<(Duration, SocketAddr, CloseReason)>,
    /// `Dial` actions seen.
    pub dials: u64,
    /// Bytes its uplink carried (all messages, not only payload).
    pub bytes_sent: u64,
    spec: NodeSpec,
    socks: BTreeMap<usize, (usize, usize)>,
    free_keys: BTreeSet<usize>,
    next_key: usize,
    tx_busy_until: Instant,
    want_write: VecDeque<PeerKey>,
    tx_wakeup: Option<Instant>,
    timeout: Option<Instant>,
}

impl Node {
    fn alloc_key(&mut self) -> PeerKey {
        match self.free_keys.pop_first() {
            Some(k) => PeerKey(k),
            None => {
                self.next_key += 1;
                PeerKey(self.next_key - 1)
            }
        }
    }

    fn release(&mut self, k: PeerKey) {
        if self.socks.remove(&k.0).is_some() {
            self.free_keys.insert(k.0);
        }
        self.want_write.retain(|x| *x != k);
    }

    /// The torrent's figures.
    pub fn stats(&self) -> TorrentStats {
        self.engine.stats(self.torrent)
    }

    /// Open sockets.
    pub fn open_sockets(&self) -> usize {
        self.socks.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct End {
    node: usize,
    key: PeerKey,
}

struct Link {
    ends: [End; 2],
    open: [bool; 2],
    latency: Duration,
    /// Latest arrival time scheduled in each direction (index = sending side).
    last_arrival: [Instant; 2],
    rx: [BytesMut; 2],
}

enum Ev {
    /// The TCP connection of a dial is set up.
    Connect { link: usize },
    /// Nobody listens at the address dialed on `link`.
    Refused { link: usize },
    /// Bytes arrive at side `to` of `link`.
    Deliver { link: usize, to: usize, data: Bytes },
    /// The other side closed; side `to` learns it.
    Closed { link: usize, to: usize },
    /// A hash check finishes.
    Verify {
        node: usize,
        torrent: TorrentId,
        piece: PieceIndex,
    },
    /// A node's uplink is free again.
    TxReady { node: usize },
    /// A node joins the swarm.
    Join { node: usize },
}

struct Queued {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The swarm.
pub struct Swarm {
    /// The torrent everybody shares.
    pub torrent: TestTorrent,
    /// The hosts, in the order they were specified.
    pub nodes: Vec<Node>,
    /// The current virtual time.
    pub now: Instant,
    /// Virtual time zero.
    pub start: Instant,
    cfg: NetConfig,
    rng: Rng,
    links: Vec<Link>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    /// Events and timeouts processed.
    pub steps: u64,
    /// Deliveries that paid a retransmission timeout.
    pub retransmits: u64,
    /// `handle_timeout` calls.
    pub timeouts: u64,
}

fn ip_of(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, (i + 1) as u8))
}

impl Swarm {
    /// A swarm of `specs.len()` nodes sharing `torrent`. Node `i` listens on
    /// `127.0.0.{i+1}:6881`.
    pub fn new(torrent: TestTorrent, cfg: NetConfig, specs: Vec<NodeSpec>) -> Swarm {
        assert!(specs.len() < 250);
        let start = bitmill::net::clock::now();
        let mut rng = Rng::new(cfg.seed);
        let n = torrent.num_pieces();
        let mut nodes = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let mut ec = spec.config.clone();
            ec.peer_id = make_peer_id(&mut rng);
            ec.seed = rng.next();
            let mut engine = Engine::new(ec);
            let layout = torrent.info.layout().clone();
            let (storage, have) = if spec.seed {
                let mut data = torrent.data.clone();
                for &p in &spec.corrupt {
                    let r = torrent.piece_range(p);
                    // Flip one byte in the middle and one at the end of the piece.
                    data[r.start + (r.end - r.start) / 2] ^= 0x5a;
                    data[r.end - 1] ^= 0xff;
                }
                (
                    MemStorage::with_data(layout, data).expect("length matches"),
                    Bitfield::full(n),
                )
            } else {
                assert!(spec.corrupt.is_empty(), "only a seed can lie about pieces");
                (MemStorage::new(layout), Bitfield::new(n))
            };
            let t = engine.add_torrent(
                torrent.info_hash,
                torrent.info.clone(),
                Box::new(storage),
                have,
            );
            nodes.push(Node {
                engine,
                addr: SocketAddr::new(ip_of(i), 6881),
                torrent: t,
                alive: false,
                left: false,
                initial_seed: spec.seed,
                completed_at: None,
                failed: Vec::new(),
                closes: Vec::new(),
                dials: 0,
                bytes_sent: 0,
                socks: BTreeMap::new(),
                free_keys: BTreeSet::new(),
                next_key: FIRST_KEY,
                tx_busy_until: start,
                want_write: VecDeque::new(),
                tx_wakeup: None,
                timeout: None,
                spec,
            });
        }
        let mut s = Swarm {
            torrent,
            nodes,
            now: start,
            start,
            rng,
            cfg,
            links: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            steps: 0,
            retransmits: 0,
            timeouts: 0,
        };
        for i in 0..s.nodes.len() {
            let at = start + s.nodes[i].spec.join_at;
            s.schedule(at, Ev::Join { node: i });
        }
        s
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn node_by_addr(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr && n.alive)
    }

    /// Index of the node at `ip`.
    pub fn node_by_ip(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr.ip() == ip)
    }

    fn draw(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(if span == 0 {
            0
        } else {
            self.rng.below(span + 1)
        })
    }

    // ------------------------------------------------------------------ the loop

    /// Runs until `done` holds (checked after every step) or virtual time passes `deadline`
    /// (counted from the start). Returns the error report on a timeout.
    pub fn run_until(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(&Swarm) -> bool,
    ) -> Result<(), String> {
        let deadline = self.start + deadline;
        while !done(self) {
            let next = self.next_time();
            match next {
                Some(t) if t <= deadline => self.step(),
                _ => {
                    return Err(format!(
                        "not done by {:?} (virtual); next event at {:?}\n{}",
                        deadline - self.start,
                        next.map(|t| t.saturating_duration_since(self.start)),
                        self.report()
                    ))
                }
            }
        }
        Ok(())
    }

    /// Runs until every live node has the whole torrent.
    pub fn run_to_completion(&mut self, deadline: Duration) -> Result<(), String> {
        self.run_until(deadline, |s| {
            s.nodes
                .iter()
                .filter(|n| !n.left)
                .all(|n| n.alive && n.engine.is_complete(n.torrent))
        })
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.next_time().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = self.now.max(end);
    }

    fn next_time(&self) -> Option<Instant> {
        let ev = self.queue.peek().map(|q| q.0.at);
        let tm = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.timeout)
            .min();
        match (ev, tm) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the earliest event or timeout.
    pub fn step(&mut self) {
        self.steps += 1;
        let ev_at = self.queue.peek().map(|q| q.0.at);
        let timer = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.alive)
            .filter_map(|(i, n)| n.timeout.map(|t| (t, i)))
            .min();
        match (ev_at, timer) {
            (Some(e), Some((t, i))) if t < e => self.fire_timeout(i, t),
            (None, Some((t, i))) => self.fire_timeout(i, t),
            (Some(_), _) => {
                let Reverse(q) = self.queue.pop().expect("peeked");
                self.now = self.now.max(q.at);
                self.event(q.ev);
            }
            (None, None) => {}
        }
    }

    fn fire_timeout(&mut self, i: usize, t: Instant) {
        // A deadline in the past (e.g. `add_peers` asks for "now") fires now.
        self.now = self.now.max(t);
        self.timeouts += 1;
        let now = self.now;
        self.nodes[i].engine.handle_timeout(now);
        self.drain(i);
        if let Some(next) = self.nodes[i].timeout {
            assert!(
                next > now,
                "node {i}: poll_timeout {:?} is not after the handle_timeout at {:?}: the \
                 engine would spin",
                next - self.start,
                now - self.start
            );
        }
    }

    fn event(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Join { node } => {
                let n = &mut self.nodes[node];
                n.alive = true;
                let addrs: Vec<SocketAddr> = n
                    .spec
                    .peers
                    .clone()
                    .into_iter()
                    .map(|j| SocketAddr::new(ip_of(j), 6881))
                    .collect();
                let t = n.torrent;
                n.engine.add_peers(now, t, addrs);
                self.drain(node);
            }
            Ev::Connect { link } => {
                let (d, a) = (self.links[link].ends[0], self.links[link].ends[1].node);
                if !self.links[link].open[0] {
                    return; // the dialer gave up meanwhile
                }
                if !self.nodes[a].alive {
                    return self.refuse(link);
                }
                let key = self.nodes[a].alloc_key();
                self.nodes[a].socks.insert(key.0, (link, 1));
                self.links[link].ends[1].key = key;
                self.links[link].open[1] = true;
                let from = self.inbound_addr(link);
                let ok = self.nodes[a].engine.handle_accepted(now, key, from);
                if !ok {
                    // Refused at once: the engine has forgotten it.
                    self.nodes[a].release(key);
                    self.links[link].open[1] = false;
                    let at = now + self.links[link].latency;
                    self.schedule(at, Ev::Closed { link, to: 0 });
                } else {
                    self.drain(a);
                }
                self.nodes[d.node].engine.handle_connected(now, d.key);
                self.drain(d.node);
            }
            Ev::Refused { link } => self.refuse(link),
            Ev::Deliver { link, to, data } => {
                if !self.links[link].open[to] {
                    return; // the receiver is gone: the data is dropped (RST)
                }
                let End { node, key } = self.links[link].ends[to];
                let l = &mut self.links[link];
                l.rx[to].extend_from_slice(&data);
                let mut buf = std::mem::take(&mut l.rx[to]);
                self.nodes[node].engine.handle_bytes(now, key, &mut buf);
                // The link may have been closed by the engine meanwhile; keep what is left
                // only while it is open.
                if self.links[link].open[to] {
                    self.links[link].rx[to] = buf;
                }
                self.drain(node);
            }
            Ev::Closed { link, to } => {
                if !self.links[link].open[to] {
                    return;
                }
                self.links[link].open[to] = false;
                let End { node, key } = self.links[link].ends[to];
                self.nodes[node].release(key);
                self.nodes[node].engine.handle_closed(
                    now,
                    key,
                    CloseReason::Network("connection closed by peer".into()),
                );
                self.drain(node);
            }
            Ev::Verify {
                node,
                torrent,
                piece,
            } => {
                if !self.nodes[node].alive {
                    return;
                }
                let e = &mut self.nodes[node].engine;
                let v = e.verify_piece(torrent, piece);
                e.handle_piece_verified(now, torrent, piece, v);
                self.drain(node);
            }
            Ev::TxReady { node } => {
                if self.nodes[node].tx_wakeup == Some(now) {
                    self.nodes[node].tx_wakeup = None;
                }
                if self.nodes[node].alive {
                    self.drain(node);
                }
            }
        }
    }

    fn refuse(&mut self, link: usize) {
        if !self.links[link].open[0] {
            return;
        }
        let End { node, key } = self.links[link].ends[0];
        self.links[link].open[0] = false;
        self.nodes[node].release(key);
        let now = self.now;
        self.nodes[node].engine.handle_closed(
            now,
            key,
            CloseReason::Network("connection refused".into()),
        );
        self.drain(node);
    }

    /// Carries out a node's actions and writes its output, until it has nothing more to say.
    fn drain(&mut self, i: usize) {
        loop {
            while let Some(a) = self.nodes[i].engine.poll_action() {
                self.action(i, a);
            }
            if !self.pump(i) {
                break;
            }
        }
        self.nodes[i].timeout = self.nodes[i].engine.poll_timeout();
    }

    fn action(&mut self, i: usize, a: Action) {
        let now = self.now;
        match a {
            Action::Dial { torrent, addr } => {
                self.nodes[i].dials += 1;
                let key = self.nodes[i].alloc_key();
                self.nodes[i].engine.handle_dialing(now, key, torrent, addr);
                let (lo, hi) = self.cfg.latency;
                let latency = self.draw(lo, hi);
                let link = self.links.len();
                self.links.push(Link {
                    ends: [
                        End { node: i, key },
                        End {
                            node: usize::MAX,
                            key: PeerKey(usize::MAX),
                        },
                    ],
                    open: [true, false],
                    latency,
                    last_arrival: [now, now],
                    rx: [BytesMut::new(), BytesMut::new()],
                });
                self.nodes[i].socks.insert(key.0, (link, 0));
                match self.node_by_addr(addr) {
                    Some(a) => {
                        self.links[link].ends[1].node = a;
                        self.schedule(now + latency, Ev::Connect { link });
                    }
                    None => self.schedule(now + latency, Ev::Refused { link }),
                }
            }
            Action::Close { peer, reason } => {
                let Some(&(link, side)) = self.nodes[i].socks.get(&peer.0) else {
                    panic!("node {i}: Close for unknown key {peer:?} ({reason})");
                };
                let remote = self.remote_addr(link, side);
                let at = self.elapsed();
                self.nodes[i].closes.push((at, remote, reason));
                self.nodes[i].release(peer);
                self.links[link].open[side] = false;
                let other = 1 - side;
                if self.links[link].open[other] {
                    let at =
                        (now + self.links[link].latency).max(self.links[link].last_arrival[side]);
                    self.schedule(at, Ev::Closed { link, to: other });
                }
            }
            Action::Flush(k) => {
                assert!(
                    self.nodes[i].socks.contains_key(&k.0),
                    "node {i}: Flush for unknown key {k:?}"
                );
                let n = &mut self.nodes[i];
                if !n.want_write.contains(&k) {
                    n.want_write.push_back(k);
                }
            }
            Action::VerifyPiece { torrent, piece } => {
                let at = now + self.cfg.verify_delay;
                self.schedule(
                    at,
                    Ev::Verify {
                        node: i,
                        torrent,
                        piece,
                    },
                );
            }
            Action::TorrentComplete(_) => {
                let at = self.elapsed();
                let n = &mut self.nodes[i];
                assert!(
                    n.completed_at.is_none() || n.initial_seed,
                    "node {i}: TorrentComplete twice"
                );
                n.completed_at.get_or_insert(at);
            }
            Action::TorrentFailed { error, .. } => self.nodes[i].failed.push(error),
        }
    }

    fn remote_addr(&self, link: usize, side: usize) -> SocketAddr {
        if side == 0 {
            // We dialed: the remote is its listen address.
            self.nodes[self.links[link].ends[1].node].addr
        } else {
            self.inbound_addr(link)
        }
    }

    /// The address an acceptor sees: the dialer's IP and an ephemeral port.
    fn inbound_addr(&self, link: usize) -> SocketAddr {
        let ip = self.nodes[self.links[link].ends[0].node].addr.ip();
        SocketAddr::new(ip, 40000 + (link % 20000) as u16)
    }

    /// Writes one chunk of queued output if the node's uplink is free. Returns whether it
    /// wrote (the engine may then have new actions).
    fn pump(&mut self, i: usize) -> bool {
        let now = self.now;
        let chunk = self.cfg.chunk;
        let n = &mut self.nodes[i];
        let rate = n.spec.upload;
        loop {
            let Some(&k) = n.want_write.front() else {
                return false;
            };
            if rate.is_some() && n.tx_busy_until > now {
                let at = n.tx_busy_until;
                if n.tx_wakeup.is_none_or(|w| w > at) {
                    n.tx_wakeup = Some(at);
                    self.schedule(at, Ev::TxReady { node: i });
                }
                return false;
            }
            n.want_write.pop_front();
            let len = n.engine.output_len(k);
            if len == 0 {
                continue;
            }
            let take = if rate.is_some() { len.min(chunk) } else { len };
            let mut data = Vec::with_capacity(take);
            for b in n.engine.output(k) {
                let room = take - data.len();
                if room == 0 {
                    break;
                }
                data.extend_from_slice(&b[..b.len().min(room)]);
            }
            assert_eq!(
                data.len(),
                take,
                "node {i}: output() shorter than output_len()"
            );
            n.engine.consume_output(now, k, take);
            n.bytes_sent += take as u64;
            if n.engine.output_len(k) > 0 && !n.want_write.contains(&k) {
                n.want_write.push_back(k);
            }
            let depart = match rate {
                Some(r) => {
                    let start = n.tx_busy_until.max(now);
                    n.tx_busy_until =
                        start + Duration::from_nanos(take as u64 * 1_000_000_000 / r.max(1));
                    n.tx_busy_until
                }
                None => now,
            };
            let (link, side) = n.socks[&k.0];
            self.transmit(link, side, depart, Bytes::from(data));
            return true;
        }
    }

    fn transmit(&mut self, link: usize, side: usize, depart: Instant, data: Bytes) {
        let jitter = self.draw(Duration::ZERO, self.cfg.jitter);
        let lost =
            self.cfg.loss > 0.0 && (self.rng.next() as f64 / u64::MAX as f64) < self.cfg.loss;
        let l = &self.links[link];
        let mut at = depart + l.latency + jitter;
        if lost {
            self.retransmits += 1;
            at += self.cfg.rto;
        }
        let at = at.max(l.last_arrival[side]);
        self.links[link].last_arrival[side] = at;
        self.schedule(
            at,
            Ev::Deliver {
                link,
                to: 1 - side,
                data,
            },
        );
    }

    // ------------------------------------------------------------------ scenario control

    /// Node `i` leaves: every socket of it closes (the peers learn after the latency), its
    /// address refuses dials, its engine gets no more events.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        let socks: Vec<(usize, usize)> = self.nodes[i].socks.values().copied().collect();
        for (link, side) in socks {
            self.links[link].open[side] = false;
            let other = 1 - side;
            if self.links[link].open[other] {
                let at = (now + self.links[link].latency).max(self.links[link].last_arrival[side]);
                self.schedule(at, Ev::Closed { link, to: other });
            }
        }
        let n = &mut self.nodes[i];
        n.socks.clear();
        n.want_write.clear();
        n.alive = false;
        n.left = true;
    }

    /// Tells node `i` about more peers (a tracker re-announce).
    pub fn add_peers(&mut self, i: usize, peers: &[usize]) {
        let now = self.now;
        let addrs: Vec<SocketAddr> = peers
            .iter()
            .map(|&j| SocketAddr::new(ip_of(j), 6881))
            .collect();
        let n = &mut self.nodes[i];
        let t = n.torrent;
        n.engine.add_peers(now, t, addrs);
        self.drain(i);
    }

    /// Checks node `i`'s stored bytes against the torrent, block by block through the
    /// `Storage` trait. Returns the pieces that differ.
    pub fn wrong_pieces(&mut self, i: usize) -> Vec<u32> {
        let t = self.nodes[i].torrent;
        let layout = self.torrent.info.layout().clone();
        let storage = self.nodes[i].engine.storage_mut(t).expect("torrent exists");
        let mut bad = Vec::new();
        for p in layout.pieces() {
            let ok = layout.blocks(p).all(|b| {
                let r = layout.block_range(b);
                storage
                    .read_block(b)
                    .is_ok_and(|d| d[..] == self.torrent.data[r.start as usize..r.end as usize])
            });
            if !ok {
                bad.push(p.get());
            }
        }
        bad
    }

    /// Whether node `i` holds every piece, per its engine.
    pub fn has_all(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.engine.have(n.torrent).is_some_and(|h| h.is_full())
    }

    /// Per-node figures, one line each.
    pub fn report(&self) -> String {
        let mut s = format!(
            "t={:?} steps={} timeouts={} retransmits={} links={}\n",
            self.elapsed(),
            self.steps,
            self.timeouts,
            self.retransmits,
            self.links.len()
        );
        let mut reasons: BTreeMap<String, u32> = BTreeMap::new();
        for n in &self.nodes {
            for (_, _, r) in &n.closes {
                let k = format!("{r:?}");
                let k = k.split('(').next().unwrap_or("").to_string();
                *reasons.entry(k).or_default() += 1;
            }
        }
        let _ = writeln!(s, "closes asked for by engines: {reasons:?}");
        for (i, n) in self.nodes.iter().enumerate() {
            let st = n.stats();
            let _ = writeln!(
                s,
                "node {i:2} {}{}{} have {:4}/{:4} down {:9} up {:9} wasted {:7} peers {:2} \
                 seeds {:2} hashfail {:2} socks {:2} done {:?} err {:?} failed {:?}",
                n.addr.ip(),
                if n.initial_seed { " seed" } else { "     " },
                if n.left {
                    " left "
                } else if n.alive {
                    "      "
                } else {
                    " asleep"
                },
                st.have_pieces,
                st.num_pieces,
                st.downloaded,
                st.uploaded,
                st.wasted,
                st.peers,
                st.seeds,
                st.hash_failures,
                n.socks.len(),
                n.completed_at,
                st.error,
                n.failed,
            );
        }
        s
    }
}

/// A deterministic sample of `k` distinct indices out of `0..n`, none equal to `not`.
pub fn sample(rng: &mut Rng, n: usize, k: usize, not: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).filter(|&j| j != not).collect();
    rng.shuffle(&mut all);
    all.truncate(k);
    all.sort_unstable();
    all
}
