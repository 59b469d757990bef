//! The reactor: one thread, one `mio::Poll`, every socket.
//!
//! It owns the listener and the connections (a `Slab` whose key, offset by
//! [`FIRST_PEER_TOKEN`], is both the mio token and the engine's [`PeerKey`]), reads into a
//! per-connection `BytesMut`, writes the engine's queued buffers with `writev`, and carries
//! out the engine's [`Action`]s. Rules it keeps (mio's own):
//!
//! - drain every readiness until `WouldBlock`; `Interrupted` means retry; `Ok(0)` is EOF;
//! - spurious events and events for tokens already closed are ignored;
//! - outbound connects are non-blocking: wait for writable, then `take_error` and
//!   `peer_addr` tell whether it succeeded; a connect that takes too long is abandoned;
//! - WRITABLE interest is registered only while output is queued.
//!
//! Piece verification runs on [`Hasher`] threads for torrents registered with
//! [`Reactor::offload_hashing`], inline otherwise (the engine cannot tell; DESIGN.md rule 4).
//! On a one-core device inline is the right choice; with two or more cores SHA-1 on another
//! core lets the reactor keep receiving.
//!
//! Rate limits ([`RateLimits`]): every read and write first asks how much credit the
//! connection has, under the global cap of its direction ([`ReactorConfig`]) and its
//! torrent's ([`Reactor::set_torrent_rate_limits`]); a connection without credit is parked,
//! its deadline joins the poll timeout, and parked connections are resumed in rounds with a
//! fair share each. An outbound connection's torrent is known from its dial; an inbound
//! one's from the info hash in the peer's handshake, read before the engine takes it.

use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::engine::{Action, CloseReason, Engine, PeerKey, TorrentId};
use crate::metainfo::{Info, InfoHash};
use crate::net::announcer::{Announcer, DNS_TOKEN, HTTP_BASE, UDP_TOKEN};
use crate::net::hasher::Hasher;
use crate::net::limiter::{Direction, RateLimits};
use crate::net::tracker_front::{TrackerFront, TRACKER_CONN_BASE, TRACKER_TCP, TRACKER_UDP};
use crate::net::{clock, signals};
use crate::storage::FileSpec;

/// Token of the listening socket.
const LISTENER: Token = Token(0);
/// Token of the hashing threads' waker.
const HASHER: Token = Token(1);
/// Tokens below this are reserved (listeners, UDP sockets, wakers).
pub const FIRST_PEER_TOKEN: usize = 16;
/// Read at least this much per `read` call.
const READ_CHUNK: usize = 256 * 1024;
/// Buffers per `writev` call.
const MAX_IOV: usize = 64;

/// Reactor settings.
#[derive(Clone, Debug)]
pub struct ReactorConfig {
    /// Address to accept peers on (`None`: no listener).
    pub listen: Option<std::net::SocketAddr>,
    /// Give up an outbound connect after this long.
    pub connect_timeout: Duration,
    /// Call [`Driver::on_tick`] at least this often.
    pub tick: Duration,
    /// Cap on bytes read from all peers per second (all torrents together; per-torrent caps:
    /// [`Reactor::set_torrent_rate_limits`]).
    pub max_download_rate: Option<u64>,
    /// Cap on bytes written to all peers per second (all torrents together).
    pub max_upload_rate: Option<u64>,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            listen: None,
            connect_timeout: Duration::from_secs(10),
            tick: Duration::from_millis(250),
            max_download_rate: None,
            max_upload_rate: None,
        }
    }
}

/// What the reactor's owner decides on each tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep running.
    Continue,
    /// Return from [`Reactor::run`].
    Stop,
}

/// The reactor's owner: sees engine events and decides when to stop.
pub trait Driver {
    /// A torrent completed or failed (the [`Action`] as the engine gave it).
    fn on_event(&mut self, now: Instant, engine: &mut Engine, event: &Action);
    /// Called at least every [`ReactorConfig::tick`]; also the place to add peers.
    fn on_tick(&mut self, now: Instant, engine: &mut Engine) -> Control;
    /// SIGINT or SIGTERM arrived. Default: stop.
    fn on_signal(&mut self) -> Control {
        Control::Stop
    }
    /// The counters of the tracker running in this reactor (each tick).
    fn on_tracker_stats(&mut self, _now: Instant, _stats: &crate::tracker::server::TrackerStats) {}
    /// Something a torrent's tracker client reports (announced, warning, failure, ...).
    fn on_tracker_event(
        &mut self,
        _now: Instant,
        _torrent: crate::engine::TorrentId,
        _event: &crate::tracker::client::ClientEvent,
    ) {
    }
}

/// How long `stopped` announces may take at shutdown.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    inbuf: BytesMut,
    connecting: Option<Instant>,
    writable: bool,
    /// The torrent, for its rate limits: known from the dial for outbound connections, from
    /// the peer's handshake for inbound ones (and then only if it has limits of its own).
    torrent: Option<TorrentId>,
    /// Inbound, handshake not seen yet: bytes read so far (charged to the torrent's bucket
    /// once the handshake names it).
    unidentified: Option<u64>,
}

/// The event loop. See the module docs.
#[derive(Debug)]
pub struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    cfg: ReactorConfig,
    local: Option<std::net::SocketAddr>,
    hasher: Option<Hasher>,
    announcer: Announcer,
    tracker: Option<TrackerFront>,
    /// Rate limits (global and per torrent) and the connections parked on them.
    limits: RateLimits,
}

fn key_of(token: Token) -> Option<usize> {
    token.0.checked_sub(FIRST_PEER_TOKEN)
}

fn peer_key(slab_key: usize) -> PeerKey {
    PeerKey(slab_key + FIRST_PEER_TOKEN)
}

impl Reactor {
    /// Creates the poller and binds the listener, if any.
    pub fn new(cfg: ReactorConfig) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let mut listener = None;
        let mut local = None;
        if let Some(addr) = cfg.listen {
            let mut l = TcpListener::bind(addr)?;
            poll.registry()
                .register(&mut l, LISTENER, Interest::READABLE)?;
            local = Some(l.local_addr()?);
            listener = Some(l);
        }
        signals::install();
        let limits = RateLimits::new(cfg.max_download_rate, cfg.max_upload_rate);
        Ok(Reactor {
            poll,
            listener,
            conns: Slab::new(),
            cfg,
            local,
            hasher: None,
            tracker: None,
            announcer: Announcer::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
                    ^ (u64::from(std::process::id()) << 32),
            ),
            limits,
        })
    }

    /// Caps one torrent's rates, in bytes/s (`None`: no cap of its own), on top of the global
    /// caps of [`ReactorConfig`]: a connection of the torrent is gated by both its torrent's
    /// bucket and the global one (it moves the smaller credit, takes what it moved from both,
    /// and waits for the later of the two). Calling it again replaces the torrent's caps;
    /// `None, None` removes them.
    ///
    /// `info_hash` is the torrent's: the engine matches an inbound connection to its torrent
    /// by the info hash in the peer's handshake and does not tell the reactor, so the reactor
    /// reads the same 20 bytes. Until the first 48 bytes of an inbound handshake have
    /// arrived, that connection's reads count against the global download cap only; they are
    /// charged to the torrent's cap as soon as the handshake names it (nothing is written to
    /// an inbound peer before that). Outbound connections are known from their dial. Inbound
    /// connections whose handshake arrived before the torrent had caps stay under the global
    /// caps only.
    pub fn set_torrent_rate_limits(
        &mut self,
        torrent: TorrentId,
        info_hash: InfoHash,
        download: Option<u64>,
        upload: Option<u64>,
    ) {
        self.limits
            .set_torrent(torrent, info_hash, download, upload);
    }

    /// The address the listener is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.local
    }

    /// Hashes pieces of `torrent` on `threads` helper threads (started on first use) instead
    /// of inline. `files` are the torrent's files, opened read-only by each thread.
    pub fn offload_hashing(
        &mut self,
        threads: usize,
        torrent: crate::engine::TorrentId,
        info: &Info,
        files: &[FileSpec],
    ) -> io::Result<()> {
        if self.hasher.is_none() {
            self.hasher = Some(Hasher::new(threads, self.poll.registry(), HASHER)?);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.add_torrent(torrent, info, files);
        }
        Ok(())
    }

    /// Announces `torrent` with `client` (started now; `stopped` is sent at shutdown).
    pub fn add_tracker_client(
        &mut self,
        torrent: crate::engine::TorrentId,
        client: crate::tracker::client::TrackerClient,
    ) {
        self.announcer.add(torrent, client);
    }

    /// Runs a tracker (HTTP and UDP on `addr`'s port) in this reactor. Returns the bound
    /// address.
    pub fn serve_tracker(
        &mut self,
        addr: std::net::SocketAddr,
        config: crate::tracker::server::TrackerConfig,
        seed: u64,
    ) -> io::Result<std::net::SocketAddr> {
        let front = TrackerFront::bind(addr, config, seed, self.poll.registry(), clock::now())?;
        let local = front.local_addr();
        self.tracker = Some(front);
        Ok(local)
    }

    /// The tracker's counters, if one runs here.
    pub fn tracker_stats(&self) -> Option<crate::tracker::server::TrackerStats> {
        self.tracker.as_ref().map(TrackerFront::stats)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Runs until the driver says stop (or a signal arrives and the driver agrees).
    pub fn run(&mut self, engine: &mut Engine, driver: &mut dyn Driver) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_ui = clock::now();
        let mut next_connect_check = clock::now();
        let mut stopping: Option<Instant> = None;
        loop {
            let now = clock::now();
            let mut deadline = next_ui;
            if let Some(t) = engine.poll_timeout() {
                deadline = deadline.min(t);
            }
            if let Some(t) = self.limits.poll_timeout() {
                deadline = deadline.min(t);
            }
            if let Some(t) = self.announcer.poll_timeout() {
                deadline = deadline.min(t);
            }
            if let Some(t) = self.tracker.as_ref().and_then(TrackerFront::poll_timeout) {
                deadline = deadline.min(t.max(now));
            }
            if let Some(t) = stopping {
                deadline = deadline.min(t);
            }
            let timeout = deadline.saturating_duration_since(now);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if signals::take()
                && stopping.is_none()
                && driver.on_signal() == Control::Stop
                && !self.begin_stop(&mut stopping)
            {
                return Ok(());
            }
            let now = clock::now();
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    self.accept(now, engine)?;
                    continue;
                }
                if ev.token() == TRACKER_UDP {
                    if let Some(t) = self.tracker.as_mut() {
                        t.udp_readable(now);
                    }
                    continue;
                }
                if ev.token() == TRACKER_TCP {
                    if let Some(t) = self.tracker.as_mut() {
                        t.accept(now, self.poll.registry());
                    }
                    continue;
                }
                if (TRACKER_CONN_BASE..HTTP_BASE).contains(&ev.token().0) {
                    if let Some(t) = self.tracker.as_mut() {
                        t.conn_event(now, ev.token(), self.poll.registry());
                    }
                    continue;
                }
                if ev.token() == DNS_TOKEN {
                    self.announcer.resolved(now, engine, self.poll.registry());
                    self.report(now, driver);
                    continue;
                }
                if ev.token() == UDP_TOKEN {
                    self.announcer
                        .udp_readable(now, engine, self.poll.registry());
                    self.report(now, driver);
                    continue;
                }
                if ev.token().0 >= HTTP_BASE {
                    self.announcer
                        .http_event(now, ev.token(), engine, self.poll.registry());
                    self.report(now, driver);
                    continue;
                }
                if ev.token() == HASHER {
                    while let Some(d) = self.hasher.as_mut().and_then(Hasher::poll) {
                        engine.handle_piece_verified(now, d.torrent, d.piece, d.verdict);
                    }
                    self.actions(now, engine, driver);
                    continue;
                }
                let Some(k) = key_of(ev.token()) else {
                    continue;
                };
                if !self.conns.contains(k) {
                    continue; // stale: closed earlier in this batch
                }
                if self.conns[k].connecting.is_some() {
                    if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                        self.finish_connect(now, k, engine);
                    }
                    continue;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read(now, k, engine);
                }
                if ev.is_writable() && self.conns.contains(k) {
                    self.write(now, k, engine);
                }
                self.actions(now, engine, driver);
            }
            if engine.poll_timeout().is_some_and(|t| now >= t) {
                engine.handle_timeout(now);
            }
            if self.limits.take_due(now) {
                // Round robin: each parked connection gets an equal share of each of its
                // buckets, and the order rotates so no connection is always first.
                for dir in [Direction::Down, Direction::Up] {
                    for k in self.limits.begin_round(dir) {
                        if self.conns.contains(k) {
                            match dir {
                                Direction::Down => self.read(now, k, engine),
                                Direction::Up => self.write(now, k, engine),
                            }
                        }
                    }
                    self.limits.end_round();
                }
            }
            let housekeeping = now >= next_connect_check;
            if housekeeping {
                next_connect_check = now + Duration::from_millis(500);
                self.expire_connects(now, engine);
            }
            if let Some(t) = self.tracker.as_mut() {
                if housekeeping || t.poll_timeout().is_some_and(|x| now >= x) {
                    t.tick(now, self.poll.registry());
                }
            }
            self.actions(now, engine, driver);
            if (now >= next_ui || self.announcer.poll_timeout().is_some_and(|t| now >= t))
                && !self.announcer.is_empty()
            {
                self.announcer.drive(now, engine, self.poll.registry());
                self.report(now, driver);
            }
            if let Some(end) = stopping {
                if now >= end || self.announcer.all_idle() {
                    return Ok(());
                }
                continue;
            }
            if now >= next_ui {
                next_ui = now + self.cfg.tick;
                if let Some(t) = self.tracker.as_ref() {
                    driver.on_tracker_stats(now, &t.stats());
                }
                if driver.on_tick(now, engine) == Control::Stop && !self.begin_stop(&mut stopping) {
                    return Ok(());
                }
                self.actions(now, engine, driver);
            }
        }
    }

    /// Starts the shutdown: trackers get `stopped`. Returns false when there is nothing to
    /// wait for.
    fn begin_stop(&mut self, stopping: &mut Option<Instant>) -> bool {
        if self.announcer.is_empty() {
            return false;
        }
        let now = clock::now();
        self.announcer.stop_all(now);
        *stopping = Some(now + STOP_GRACE);
        true
    }

    fn report(&mut self, now: Instant, driver: &mut dyn Driver) {
        for (t, ev) in self.announcer.take_reported() {
            driver.on_tracker_event(now, t, &ev);
        }
    }

    fn accept(&mut self, now: Instant, engine: &mut Engine) -> io::Result<()> {
        loop {
            let Some(l) = self.listener.as_ref() else {
                return Ok(());
            };
            match l.accept() {
                Ok((mut stream, addr)) => {
                    if !engine.accept_allowed(addr) {
                        continue; // dropped: closes the socket
                    }
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let key = peer_key(entry.key());
                    self.poll
                        .registry()
                        .register(&mut stream, Token(key.0), Interest::READABLE)?;
                    entry.insert(Conn {
                        stream,
                        inbuf: BytesMut::new(),
                        connecting: None,
                        writable: false,
                        torrent: None,
                        unidentified: Some(0),
                    });
                    if !engine.handle_accepted(now, key, addr) {
                        self.drop_conn(key.0 - FIRST_PEER_TOKEN);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of file descriptors, a connection reset before accept: not fatal.
                Err(_) => return Ok(()),
            }
        }
    }

    fn dial(
        &mut self,
        now: Instant,
        engine: &mut Engine,
        torrent: crate::engine::TorrentId,
        addr: std::net::SocketAddr,
    ) {
        let entry = self.conns.vacant_entry();
        let key = peer_key(entry.key());
        engine.handle_dialing(now, key, torrent, addr);
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = self
                    .poll
                    .registry()
                    .register(&mut stream, Token(key.0), interest)
                {
                    engine.handle_closed(now, key, CloseReason::Network(e.to_string()));
                    return;
                }
                entry.insert(Conn {
                    stream,
                    inbuf: BytesMut::new(),
                    connecting: Some(now),
                    writable: true,
                    torrent: Some(torrent),
                    unidentified: None,
                });
            }
            Err(e) => engine.handle_closed(
                now,
                key,
                CloseReason::Network(format!("connect {addr}: {e}")),
            ),
        }
    }

    fn finish_connect(&mut self, now: Instant, k: usize, engine: &mut Engine) {
        let key = peer_key(k);
        let c = &mut self.conns[k];
        if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
            self.drop_conn(k);
            engine.handle_closed(now, key, CloseReason::Network(format!("connect: {e}")));
            return;
        }
        match c.stream.peer_addr() {
            Ok(_) => {
                c.connecting = None;
                let _ = c.stream.set_nodelay(true);
                engine.handle_connected(now, key);
                self.write(now, k, engine);
            }
            // Not connected yet: a spurious wake-up; wait for the next event.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => {
                self.drop_conn(k);
                engine.handle_closed(now, key, CloseReason::Network(format!("connect: {e}")));
            }
        }
    }

    fn expire_connects(&mut self, now: Instant, engine: &mut Engine) {
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.connecting
                    .is_some_and(|t| now.saturating_duration_since(t) > self.cfg.connect_timeout)
            })
            .map(|(k, _)| k)
            .collect();
        for k in late {
            self.drop_conn(k);
            engine.handle_closed(
                now,
                peer_key(k),
                CloseReason::Network("connect timed out".into()),
            );
        }
    }

    fn read(&mut self, now: Instant, k: usize, engine: &mut Engine) {
        let key = peer_key(k);
        loop {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            let torrent = c.torrent;
            let Some(limit) = self.limits.credit(now, k, torrent, Direction::Down) else {
                return; // parked until there is credit
            };
            c.inbuf.reserve(READ_CHUNK);
            let spare = c.inbuf.spare_capacity_mut();
            let cap = limit.min(spare.len());
            let spare = &mut spare[..cap];
            // SAFETY: read(2) writes at most `spare.len()` bytes into the spare capacity, which
            // is valid for writes; the bytes it reports written are initialized, and only those
            // are exposed by set_len below.
            let n =
                unsafe { libc::read(c.stream.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
            if n > 0 {
                let n = n as usize;
                self.limits.consume(torrent, Direction::Down, n as u64);
                // SAFETY: the kernel initialized `n` bytes after the current length.
                unsafe { c.inbuf.set_len(c.inbuf.len() + n) };
                if let Some(seen) = c.unidentified.as_mut() {
                    *seen += n as u64;
                    self.identify(k);
                }
                let Some(c) = self.conns.get_mut(k) else {
                    return;
                };
                engine.handle_bytes(now, key, &mut c.inbuf);
                if !self.conns.contains(k) {
                    return;
                }
                if self.limits.shared(torrent, Direction::Down) {
                    // Its share is used: back in line for the next round of credit.
                    self.limits.park(now, k, torrent, Direction::Down);
                    return;
                }
                continue;
            }
            if n == 0 {
                self.drop_conn(k);
                engine.handle_closed(now, key, CloseReason::Network("closed by peer".into()));
                return;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return,
                io::ErrorKind::Interrupted => continue,
                _ => {
                    self.drop_conn(k);
                    engine.handle_closed(now, key, CloseReason::Network(e.to_string()));
                    return;
                }
            }
        }
    }

    /// An inbound connection's torrent, from the info hash in the peer's handshake (bytes
    /// 28..48; the engine has not consumed them: it takes the handshake whole, at 68 bytes).
    /// What it read before is charged to that torrent's download cap.
    fn identify(&mut self, k: usize) {
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        let Some(seen) = c.unidentified else { return };
        if c.inbuf.len() < 48 {
            return;
        }
        c.unidentified = None;
        let hs = &c.inbuf[..48];
        if hs[0] != 19 || &hs[1..20] != crate::wire::PROTOCOL {
            return; // not a handshake: the engine closes it
        }
        let mut ih = [0u8; 20];
        ih.copy_from_slice(&hs[28..48]);
        c.torrent = self.limits.torrent_of(&ih);
        if let Some(t) = c.torrent {
            self.limits.charge_torrent(t, Direction::Down, seen);
        }
    }

    fn write(&mut self, now: Instant, k: usize, engine: &mut Engine) {
        let key = peer_key(k);
        loop {
            let Some(c) = self.conns.get_mut(k) else {
                return;
            };
            if c.connecting.is_some() {
                return;
            }
            if engine.output_len(key) == 0 {
                if c.writable {
                    c.writable = false;
                    let _ = self.poll.registry().reregister(
                        &mut c.stream,
                        Token(key.0),
                        Interest::READABLE,
                    );
                }
                return;
            }
            let torrent = c.torrent;
            let Some(limit) = self.limits.credit(now, k, torrent, Direction::Up) else {
                return; // parked until there is credit
            };
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            let mut total = 0;
            for b in engine.output(key).take(MAX_IOV) {
                if total >= limit {
                    break;
                }
                let take = b.len().min(limit - total);
                iov[n] = IoSlice::new(&b[..take]);
                total += take;
                n += 1;
            }
            match c.stream.write_vectored(&iov[..n]) {
                Ok(0) => {
                    self.drop_conn(k);
                    engine.handle_closed(now, key, CloseReason::Network("write returned 0".into()));
                    return;
                }
                Ok(w) => {
                    self.limits.consume(torrent, Direction::Up, w as u64);
                    engine.consume_output(now, key, w);
                    if self.limits.shared(torrent, Direction::Up) && engine.output_len(key) > 0 {
                        // Its share is used: back in line for the next round of credit.
                        self.limits.park(now, k, torrent, Direction::Up);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !c.writable {
                        c.writable = true;
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        let _ =
                            self.poll
                                .registry()
                                .reregister(&mut c.stream, Token(key.0), interest);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EFAULT here means a mapped file shrank under a queued block: the engine's
                    // periodic storage check fails that torrent.
                    self.drop_conn(k);
                    engine.handle_closed(now, key, CloseReason::Network(e.to_string()));
                    return;
                }
            }
        }
    }

    fn drop_conn(&mut self, k: usize) {
        if let Some(mut c) = self.conns.try_remove(k) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn actions(&mut self, now: Instant, engine: &mut Engine, driver: &mut dyn Driver) {
        while let Some(a) = engine.poll_action() {
            match a {
                Action::Dial { torrent, addr } => self.dial(now, engine, torrent, addr),
                Action::Close { peer, .. } => {
                    if let Some(k) = peer.0.checked_sub(FIRST_PEER_TOKEN) {
                        self.drop_conn(k);
                    }
                }
                Action::Flush(peer) => {
                    if let Some(k) = peer.0.checked_sub(FIRST_PEER_TOKEN) {
                        self.write(now, k, engine);
                    }
                }
                Action::VerifyPiece { torrent, piece } => match self.hasher.as_mut() {
                    Some(h) if h.handles(torrent) => h.submit(torrent, piece),
                    _ => {
                        let v = engine.verify_piece(torrent, piece);
                        engine.handle_piece_verified(now, torrent, piece, v);
                    }
                },
                ev @ (Action::TorrentComplete(_) | Action::TorrentFailed { .. }) => {
                    if let Action::TorrentComplete(t) = ev {
                        self.announcer.completed(now, t);
                    }
                    driver.on_event(now, engine, &ev)
                }
            }
        }
    }
}
