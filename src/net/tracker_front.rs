//! The tracker server's network front end: UDP (BEP 15) and HTTP on the same port number,
//! in the reactor. It only moves bytes: every decision is [`Tracker::handle_udp`] and
//! [`Tracker::handle_http`] (sans-IO).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::rng::Rng;
use crate::tracker::http::{request_head_len, MAX_REQUEST_LEN};
use crate::tracker::server::{Tracker, TrackerConfig, TrackerStats};

/// Token of the tracker's UDP socket.
pub(crate) const TRACKER_UDP: Token = Token(4);
/// Token of the tracker's HTTP listener.
pub(crate) const TRACKER_TCP: Token = Token(5);
/// HTTP client connections of the tracker use tokens from here up (below the announcer's).
pub(crate) const TRACKER_CONN_BASE: usize = 1 << 29;
/// An HTTP client gets this long to send its request and take the answer.
const CONN_TIMEOUT: Duration = Duration::from_secs(10);
/// Open HTTP connections at most; more are refused at accept.
const MAX_CONNS: usize = 4096;

struct Conn {
    stream: TcpStream,
    from: SocketAddr,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    started: Instant,
}

/// The tracker and its sockets.
pub(crate) struct TrackerFront {
    tracker: Tracker,
    udp: UdpSocket,
    listener: TcpListener,
    conns: Slab<Conn>,
    rng: Rng,
    local: SocketAddr,
    out: Vec<u8>,
}

/// A deep accept queue and a large UDP receive buffer: bursts of announces wait in the
/// kernel instead of being dropped while the loop is busy (the default 208 KiB buffer
/// overflowed under 256 requests in flight; mio's listen backlog is 128).
fn tune(listener: &TcpListener, udp: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let rcvbuf: libc::c_int = 4 << 20;
    // SAFETY: setsockopt and listen on descriptors we own, with a valid option value.
    unsafe {
        libc::setsockopt(
            udp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        // Calling listen again on a listening socket only changes its backlog.
        libc::listen(listener.as_raw_fd(), 4096);
    }
}

impl std::fmt::Debug for TrackerFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerFront")
            .field("local", &self.local)
            .field("conns", &self.conns.len())
            .finish()
    }
}

impl TrackerFront {
    /// Binds UDP and TCP on `addr` (the same port number for both).
    pub(crate) fn bind(
        addr: SocketAddr,
        config: TrackerConfig,
        seed: u64,
        registry: &Registry,
        now: Instant,
    ) -> io::Result<TrackerFront> {
        let mut listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        // UDP on the port TCP got (matters when 0 was asked for).
        let mut udp = UdpSocket::bind(local)?;
        tune(&listener, &udp);
        registry.register(&mut listener, TRACKER_TCP, Interest::READABLE)?;
        registry.register(&mut udp, TRACKER_UDP, Interest::READABLE)?;
        Ok(TrackerFront {
            tracker: Tracker::new(config, now),
            udp,
            listener,
            conns: Slab::new(),
            rng: Rng::new(seed),
            local,
            out: Vec::with_capacity(2048),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub(crate) fn stats(&self) -> TrackerStats {
        self.tracker.stats()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.tracker.next_expiry()
    }

    /// Expiry, and HTTP clients that take too long.
    pub(crate) fn tick(&mut self, now: Instant, registry: &Registry) {
        if self.tracker.next_expiry().is_some_and(|t| now >= t) {
            self.tracker.expire(now);
        }
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.started) > CONN_TIMEOUT)
            .map(|(k, _)| k)
            .collect();
        for k in late {
            self.close(registry, k);
        }
    }

    pub(crate) fn udp_readable(&mut self, now: Instant) {
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = match self.udp.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => continue,
            };
            self.out.clear();
            if self
                .tracker
                .handle_udp(now, from, &buf[..n], &mut self.rng, &mut self.out)
            {
                // A full send buffer drops the answer: the client retransmits (BEP 15).
                let _ = self.udp.send_to(&self.out, from);
            }
        }
    }

    pub(crate) fn accept(&mut self, now: Instant, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, from)) => {
                    if self.conns.len() >= MAX_CONNS {
                        continue; // dropped: closes it
                    }
                    let entry = self.conns.vacant_entry();
                    let token = Token(TRACKER_CONN_BASE + entry.key());
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        entry.insert(Conn {
                            stream,
                            from,
                            inbuf: Vec::new(),
                            out: Vec::new(),
                            written: 0,
                            started: now,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// An event on an HTTP client connection.
    pub(crate) fn conn_event(&mut self, now: Instant, token: Token, registry: &Registry) {
        let k = token.0 - TRACKER_CONN_BASE;
        let Some(c) = self.conns.get_mut(k) else {
            return;
        };
        if c.out.is_empty() {
            let mut buf = [0u8; 4096];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => return self.close(registry, k),
                    Ok(n) => {
                        c.inbuf.extend_from_slice(&buf[..n]);
                        if c.inbuf.len() > MAX_REQUEST_LEN {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.close(registry, k),
                }
            }
            // Answer once the head is complete (or too long: the parser says so).
            let complete =
                !matches!(request_head_len(&c.inbuf), Ok(None)) || c.inbuf.len() > MAX_REQUEST_LEN;
            if !complete {
                return;
            }
            c.out = self
                .tracker
                .handle_http(now, c.from, &c.inbuf, &mut self.rng);
            let _ = registry.reregister(&mut c.stream, token, Interest::WRITABLE);
        }
        while c.written < c.out.len() {
            match c.stream.write(&c.out[c.written..]) {
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(registry, k),
            }
        }
        self.close(registry, k);
    }

    fn close(&mut self, registry: &Registry, k: usize) {
        if let Some(mut c) = self.conns.try_remove(k) {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}
