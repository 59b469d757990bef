//! Name resolution off the reactor thread.
//!
//! `getaddrinfo` blocks, so the reactor hands names to one helper thread and learns the
//! answers through a channel and a `mio::Waker` (DESIGN.md rule 4). Literal addresses are
//! answered at once without the thread. Answers are cached for a few minutes.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Registry, Token, Waker};

/// How long an answer is reused.
const CACHE_FOR: Duration = Duration::from_secs(300);

/// A finished lookup.
#[derive(Debug)]
pub struct Answer {
    /// The id given to [`Resolver::resolve`].
    pub id: u64,
    /// The addresses, or why there are none.
    pub result: Result<Vec<SocketAddr>, String>,
}

/// The resolver: one helper thread, started on first use.
#[derive(Debug)]
pub struct Resolver {
    tx: Option<Sender<(u64, String, u16)>>,
    rx: Option<Receiver<(u64, String, u16, Result<Vec<SocketAddr>, String>)>>,
    thread: Option<JoinHandle<()>>,
    waker: Option<Arc<Waker>>,
    token: Token,
    cache: HashMap<(String, u16), (Instant, Vec<SocketAddr>)>,
    ready: Vec<Answer>,
}

impl Resolver {
    /// A resolver that will wake the poll registry with `token` when an answer is ready.
    pub fn new(token: Token) -> Resolver {
        Resolver {
            tx: None,
            rx: None,
            thread: None,
            waker: None,
            token,
            cache: HashMap::new(),
            ready: Vec::new(),
        }
    }

    /// Asks for `host:port`. Literal IPs and cached names are answered immediately (see
    /// [`Resolver::poll`]); others after a wake-up.
    pub fn resolve(
        &mut self,
        now: Instant,
        registry: &Registry,
        id: u64,
        host: &str,
        port: u16,
    ) -> io::Result<()> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            self.ready.push(Answer {
                id,
                result: Ok(vec![SocketAddr::new(ip, port)]),
            });
            return Ok(());
        }
        if let Some((at, addrs)) = self.cache.get(&(host.to_string(), port)) {
            if now.saturating_duration_since(*at) < CACHE_FOR {
                self.ready.push(Answer {
                    id,
                    result: Ok(addrs.clone()),
                });
                return Ok(());
            }
        }
        if self.tx.is_none() {
            let waker = Arc::new(Waker::new(registry, self.token)?);
            let (tx, jobs) = channel::<(u64, String, u16)>();
            let (done_tx, rx) = channel();
            let w = Arc::clone(&waker);
            let thread = std::thread::Builder::new()
                .name("bitmill-dns".into())
                .spawn(move || {
                    while let Ok((id, host, port)) = jobs.recv() {
                        let r = (host.as_str(), port)
                            .to_socket_addrs()
                            .map(|a| a.collect::<Vec<_>>())
                            .map_err(|e| format!("cannot resolve {host}: {e}"));
                        if done_tx.send((id, host, port, r)).is_err() {
                            return;
                        }
                        let _ = w.wake();
                    }
                })?;
            self.tx = Some(tx);
            self.rx = Some(rx);
            self.thread = Some(thread);
            self.waker = Some(waker);
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send((id, host.to_string(), port));
        }
        Ok(())
    }

    /// Answers that are ready (call after the waker's token fires, and after `resolve`).
    pub fn poll(&mut self, now: Instant) -> Vec<Answer> {
        if let Some(rx) = &self.rx {
            while let Ok((id, host, port, result)) = rx.try_recv() {
                if let Ok(addrs) = &result {
                    self.cache.insert((host, port), (now, addrs.clone()));
                }
                self.ready.push(Answer { id, result });
            }
        }
        std::mem::take(&mut self.ready)
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.tx = None; // the thread's recv fails once a lookup in progress ends
        if let Some(t) = self.thread.take() {
            // A lookup can hang for long; do not wait for it.
            drop(t);
        }
    }
}
