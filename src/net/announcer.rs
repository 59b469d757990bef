//! Carrying out the tracker clients' requests: DNS on the helper thread, HTTP over
//! non-blocking TCP, BEP 15 over one UDP socket. Lives inside the [`super::Reactor`]; the
//! scheduling itself is the sans-IO [`TrackerClient`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::engine::{Engine, TorrentId};
use crate::rng::Rng;
use crate::tracker::client::{ClientEvent, ReqId, TrackerClient, TrackerRequest};
use crate::tracker::http::{self, ReadProgress, ResponseReader};
use crate::tracker::udp;
use crate::tracker::{url_parts, AnnounceResponse, TrackerError};

use super::dns::Resolver;

/// Token of the client UDP socket.
pub(crate) const UDP_TOKEN: Token = Token(3);
/// Token of the DNS waker.
pub(crate) const DNS_TOKEN: Token = Token(2);
/// HTTP tracker connections use tokens from here up.
pub(crate) const HTTP_BASE: usize = 1 << 30;
/// Redirects followed at most.
const MAX_REDIRECTS: u8 = 5;
/// An HTTP exchange is abandoned after this long (the client counts it as a timeout too).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

struct Tracked {
    torrent: TorrentId,
    client: TrackerClient,
    /// `start` is called at the first `drive`, once `left` and friends are known (the
    /// reactor drives at its first loop turn).
    started: bool,
}

/// A request waiting for its name to resolve.
struct Pending {
    client: usize,
    req_id: ReqId,
    job: Job,
}

enum Job {
    /// Fetch this complete announce URL (after `redirects` redirects).
    Http { url: String, redirects: u8 },
    /// Send this UDP request.
    Udp(TrackerRequest),
}

struct HttpConn {
    client: usize,
    req_id: ReqId,
    url: String,
    redirects: u8,
    stream: TcpStream,
    out: Vec<u8>,
    written: usize,
    reader: ResponseReader,
    started: Instant,
}

struct UdpTxn {
    client: usize,
    req_id: ReqId,
    connect: bool,
    sent: Instant,
}

/// What the reactor should tell its driver.
pub(crate) type Reported = (TorrentId, ClientEvent);

/// All tracker traffic of one reactor.
pub(crate) struct Announcer {
    clients: Vec<Tracked>,
    dns: Resolver,
    udp: Option<UdpSocket>,
    pending: HashMap<u64, Pending>,
    txns: HashMap<u32, UdpTxn>,
    http: Slab<HttpConn>,
    next_id: u64,
    rng: Rng,
    reported: Vec<Reported>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl Announcer {
    pub(crate) fn new(seed: u64) -> Announcer {
        Announcer {
            clients: Vec::new(),
            dns: Resolver::new(DNS_TOKEN),
            udp: None,
            pending: HashMap::new(),
            txns: HashMap::new(),
            http: Slab::new(),
            next_id: 1,
            rng: Rng::new(seed),
            reported: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, torrent: TorrentId, client: TrackerClient) {
        self.clients.push(Tracked {
            torrent,
            client,
            started: false,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The torrent completed: tell its trackers.
    pub(crate) fn completed(&mut self, now: Instant, torrent: TorrentId) {
        for c in self.clients.iter_mut().filter(|c| c.torrent == torrent) {
            c.client.completed(now);
        }
    }

    /// Shutdown: every client sends `stopped` (best effort).
    pub(crate) fn stop_all(&mut self, now: Instant) {
        for c in &mut self.clients {
            c.client.stop(now);
        }
    }

    /// Every client is done (after [`Announcer::stop_all`]).
    pub(crate) fn all_idle(&self) -> bool {
        self.clients.iter().all(|c| c.client.is_idle())
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter_map(|c| c.client.poll_timeout())
            .min()
    }

    pub(crate) fn take_reported(&mut self) -> Vec<Reported> {
        std::mem::take(&mut self.reported)
    }

    /// Timers, new requests, peers and events of every client.
    pub(crate) fn drive(&mut self, now: Instant, engine: &mut Engine, registry: &Registry) {
        for i in 0..self.clients.len() {
            let t = self.clients[i].torrent;
            let s = engine.stats(t);
            let tracked = &mut self.clients[i];
            let c = &mut tracked.client;
            c.set_stats(
                s.uploaded,
                s.downloaded,
                s.total_bytes - s.have_bytes.min(s.total_bytes),
            );
            if !tracked.started {
                tracked.started = true;
                c.start(now);
            }
            if c.poll_timeout().is_some_and(|d| now >= d) {
                c.handle_timeout(now);
            }
            self.pump(now, i, engine, registry);
        }
        // Abandon HTTP exchanges that took too long (their answers would be ignored).
        let late: Vec<usize> = self
            .http
            .iter()
            .filter(|(_, h)| now.saturating_duration_since(h.started) > HTTP_TIMEOUT)
            .map(|(k, _)| k)
            .collect();
        for k in late {
            self.drop_http(registry, k);
        }
        self.txns
            .retain(|_, t| now.saturating_duration_since(t.sent) < Duration::from_secs(600));
    }

    /// Drains one client's outputs.
    fn pump(&mut self, now: Instant, i: usize, engine: &mut Engine, registry: &Registry) {
        loop {
            let t = self.clients[i].torrent;
            let peers = self.clients[i].client.poll_peers();
            if !peers.is_empty() {
                engine.add_peers(now, t, peers);
            }
            while let Some(ev) = self.clients[i].client.poll_event() {
                self.reported.push((t, ev));
            }
            let Some(req) = self.clients[i].client.poll_request() else {
                break;
            };
            let req_id = req.req_id();
            let job = match req {
                TrackerRequest::HttpAnnounce { url, announce, .. } => {
                    match http::announce_url(&url, &announce) {
                        Ok(full) => Job::Http {
                            url: full,
                            redirects: 0,
                        },
                        Err(e) => {
                            self.fail(now, i, req_id, e);
                            continue;
                        }
                    }
                }
                udp_req => Job::Udp(udp_req),
            };
            self.start(now, i, req_id, job, registry);
        }
    }

    fn fail(&mut self, now: Instant, client: usize, req_id: ReqId, e: TrackerError) {
        if let Some(c) = self.clients.get_mut(client) {
            c.client.handle_response(now, req_id, Err(e));
        }
    }

    /// Resolves the request's host; the rest happens in [`Announcer::resolved`].
    fn start(&mut self, now: Instant, client: usize, req_id: ReqId, job: Job, registry: &Registry) {
        let url = match &job {
            Job::Http { url, .. } => url.as_str(),
            Job::Udp(r) => r.url(),
        };
        let parts = match url_parts(url) {
            Ok(p) => p,
            Err(e) => return self.fail(now, client, req_id, e),
        };
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(
            id,
            Pending {
                client,
                req_id,
                job,
            },
        );
        if let Err(e) = self.dns.resolve(now, registry, id, &parts.host, parts.port) {
            self.pending.remove(&id);
            self.fail(now, client, req_id, TrackerError::Network(e.to_string()));
        }
        // Literal addresses and cached names are answered at once, without a wake-up.
        self.dispatch_answers(now, registry);
    }

    /// DNS answers are in (the DNS token fired).
    pub(crate) fn resolved(&mut self, now: Instant, engine: &mut Engine, registry: &Registry) {
        self.dispatch_answers(now, registry);
        for i in 0..self.clients.len() {
            self.pump(now, i, engine, registry);
        }
    }

    /// Sends every request whose address is known.
    fn dispatch_answers(&mut self, now: Instant, registry: &Registry) {
        for ans in self.dns.poll(now) {
            let Some(p) = self.pending.remove(&ans.id) else {
                continue;
            };
            let addrs = match ans.result {
                Ok(a) => a,
                Err(e) => {
                    self.fail(now, p.client, p.req_id, TrackerError::Network(e));
                    continue;
                }
            };
            // IPv4 first: the UDP socket is IPv4, and most trackers are.
            let Some(addr) = addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .copied()
            else {
                self.fail(
                    now,
                    p.client,
                    p.req_id,
                    TrackerError::Network("name has no address".into()),
                );
                continue;
            };
            match p.job {
                Job::Http { url, redirects } => {
                    self.http_send(now, p.client, p.req_id, url, redirects, addr, registry)
                }
                Job::Udp(req) => self.udp_send(now, p.client, req, addr, registry),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn http_send(
        &mut self,
        now: Instant,
        client: usize,
        req_id: ReqId,
        full: String,
        redirects: u8,
        addr: SocketAddr,
        registry: &Registry,
    ) {
        let (_, bytes) = match http::get_request(&full) {
            Ok(x) => x,
            Err(e) => return self.fail(now, client, req_id, e),
        };
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                return self.fail(
                    now,
                    client,
                    req_id,
                    TrackerError::Network(format!("connect {addr}: {e}")),
                )
            }
        };
        let entry = self.http.vacant_entry();
        let token = Token(HTTP_BASE + entry.key());
        if let Err(e) =
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            return self.fail(now, client, req_id, TrackerError::Network(e.to_string()));
        }
        entry.insert(HttpConn {
            client,
            req_id,
            url: full,
            redirects,
            stream,
            out: bytes,
            written: 0,
            reader: ResponseReader::new(),
            started: now,
        });
    }

    fn udp_send(
        &mut self,
        now: Instant,
        client: usize,
        req: TrackerRequest,
        addr: SocketAddr,
        registry: &Registry,
    ) {
        let req_id = req.req_id();
        if self.udp.is_none() {
            match UdpSocket::bind(
                "0.0.0.0:0"
                    .parse()
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            ) {
                Ok(mut s) => {
                    if let Err(e) = registry.register(&mut s, UDP_TOKEN, Interest::READABLE) {
                        return self.fail(
                            now,
                            client,
                            req_id,
                            TrackerError::Network(e.to_string()),
                        );
                    }
                    self.udp = Some(s);
                }
                Err(e) => {
                    return self.fail(now, client, req_id, TrackerError::Network(e.to_string()))
                }
            }
        }
        let txn = self.rng.next() as u32;
        let (packet, connect) = match &req {
            TrackerRequest::UdpConnect { .. } => (
                udp::Request::Connect {
                    transaction_id: txn,
                },
                true,
            ),
            TrackerRequest::UdpAnnounce {
                connection_id,
                announce,
                ..
            } => (
                udp::Request::Announce(udp::AnnouncePacket {
                    connection_id: *connection_id,
                    transaction_id: txn,
                    request: announce.clone(),
                    ip: 0,
                }),
                false,
            ),
            TrackerRequest::HttpAnnounce { .. } => return,
        };
        let mut buf = Vec::with_capacity(100);
        packet.encode(&mut buf);
        let Some(sock) = self.udp.as_ref() else {
            return;
        };
        match sock.send_to(&buf, addr) {
            Ok(_) => {
                self.txns.insert(
                    txn,
                    UdpTxn {
                        client,
                        req_id,
                        connect,
                        sent: now,
                    },
                );
            }
            // A full socket buffer or an unreachable network: the retransmission schedule
            // tries again; hard errors fail the request now.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.txns.insert(
                    txn,
                    UdpTxn {
                        client,
                        req_id,
                        connect,
                        sent: now,
                    },
                );
            }
            Err(e) => self.fail(
                now,
                client,
                req_id,
                TrackerError::Network(format!("udp {addr}: {e}")),
            ),
        }
    }

    /// The UDP socket is readable.
    pub(crate) fn udp_readable(&mut self, now: Instant, engine: &mut Engine, registry: &Registry) {
        let mut buf = [0u8; 2048];
        loop {
            let Some(sock) = self.udp.as_ref() else {
                return;
            };
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors surface here as ConnectionRefused: ignore, the schedule retries.
                Err(_) => continue,
            };
            let Ok(resp) = udp::Response::decode(&buf[..n], from.is_ipv6()) else {
                continue;
            };
            let Some(t) = self.txns.remove(&resp.transaction_id()) else {
                continue;
            };
            let Some(c) = self.clients.get_mut(t.client) else {
                continue;
            };
            match resp {
                udp::Response::Connect { connection_id, .. } if t.connect => {
                    c.client.handle_udp_connected(now, t.req_id, connection_id)
                }
                udp::Response::Announce(a) if !t.connect => {
                    c.client
                        .handle_response(now, t.req_id, Ok(a.to_announce_response()))
                }
                udp::Response::Error { message, .. } => {
                    c.client
                        .handle_response(now, t.req_id, Err(TrackerError::Failure(message)))
                }
                _ => c.client.handle_response(
                    now,
                    t.req_id,
                    Err(TrackerError::Malformed(
                        "answer does not match the request".into(),
                    )),
                ),
            }
        }
        for i in 0..self.clients.len() {
            self.pump(now, i, engine, registry);
        }
    }

    /// An event on an HTTP tracker connection.
    pub(crate) fn http_event(
        &mut self,
        now: Instant,
        token: Token,
        engine: &mut Engine,
        registry: &Registry,
    ) {
        let k = token.0 - HTTP_BASE;
        let Some(h) = self.http.get_mut(k) else {
            return;
        };
        // Write the request (the first writable event also means the connect finished).
        while h.written < h.out.len() {
            match h.stream.write(&h.out[h.written..]) {
                Ok(n) => h.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // still connecting
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let (c, r) = (h.client, h.req_id);
                    self.drop_http(registry, k);
                    return self.fail(now, c, r, TrackerError::Network(e.to_string()));
                }
            }
        }
        let mut buf = [0u8; 16384];
        let outcome = loop {
            match h.stream.read(&mut buf) {
                Ok(0) => break Some(h.reader.eof()),
                Ok(n) => match h.reader.feed(&buf[..n]) {
                    Ok(ReadProgress::NeedMore) => {}
                    Ok(ReadProgress::Done(r)) => break Some(Ok(r)),
                    Err(e) => break Some(Err(e)),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(Err(TrackerError::Network(e.to_string()))),
            }
        };
        let Some(outcome) = outcome else { return };
        let (client, req_id, url, redirects) = (h.client, h.req_id, h.url.clone(), h.redirects);
        self.drop_http(registry, k);
        let result: Result<AnnounceResponse, TrackerError> = match outcome {
            Ok(r) if (300..400).contains(&r.status) => {
                let Some(loc) = r.location else {
                    return self.fail(
                        now,
                        client,
                        req_id,
                        TrackerError::Redirect("no Location".into()),
                    );
                };
                if redirects >= MAX_REDIRECTS {
                    return self.fail(
                        now,
                        client,
                        req_id,
                        TrackerError::Redirect("too many redirects".into()),
                    );
                }
                match http::redirect_url(&url, &loc) {
                    Ok(next) => {
                        // Follow: same request, new URL (resolved again).
                        self.start(
                            now,
                            client,
                            req_id,
                            Job::Http {
                                url: next,
                                redirects: redirects + 1,
                            },
                            registry,
                        );
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            Ok(r) if r.status == 200 => http::parse_announce_response(&r.body),
            Ok(r) => Err(TrackerError::Status(r.status)),
            Err(e) => Err(e),
        };
        if let Some(c) = self.clients.get_mut(client) {
            c.client.handle_response(now, req_id, result);
        }
        self.pump(now, client, engine, registry);
    }

    fn drop_http(&mut self, registry: &Registry, k: usize) {
        if let Some(mut h) = self.http.try_remove(k) {
            let _ = registry.deregister(&mut h.stream);
        }
    }
}
