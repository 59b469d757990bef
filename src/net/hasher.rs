//! Piece verification on helper threads, so SHA-1 runs on another core while the reactor
//! thread keeps receiving (DESIGN.md rule 4: the engine asks with `Action::VerifyPiece` and
//! learns the verdict through `handle_piece_verified`; it cannot tell where the hash ran).
//!
//! Each worker opens its own read-only [`MmapStorage`] over a torrent's files. Blocks are
//! written with `pwrite` before the piece is handed over, so the worker's mapping sees them
//! through the page cache. Results come back over a channel, and a `mio::Waker` wakes the
//! reactor.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::{Registry, Token, Waker};

use crate::engine::TorrentId;
use crate::metainfo::{Info, PieceIndex};
use crate::storage::verify::{check_piece, Verdict};
use crate::storage::{FileSpec, MmapOptions, MmapStorage, OpenMode};

enum Job {
    Add {
        torrent: TorrentId,
        info: Box<Info>,
        files: Vec<FileSpec>,
    },
    Verify {
        torrent: TorrentId,
        piece: PieceIndex,
    },
}

/// A finished check.
#[derive(Clone, Copy, Debug)]
pub struct Done {
    /// The torrent.
    pub torrent: TorrentId,
    /// The piece.
    pub piece: PieceIndex,
    /// What the hash said (an I/O error reads as `Missing`: the piece is fetched again).
    pub verdict: Verdict,
}

/// A pool of hashing threads.
#[derive(Debug)]
pub struct Hasher {
    workers: Vec<(Sender<Job>, JoinHandle<()>)>,
    done: Receiver<Done>,
    next: usize,
    in_flight: usize,
    registered: Vec<TorrentId>,
}

impl Hasher {
    /// Starts `threads` workers that wake `registry` with `token` when a result is ready.
    pub fn new(threads: usize, registry: &Registry, token: Token) -> io::Result<Hasher> {
        let waker = Arc::new(Waker::new(registry, token)?);
        let (done_tx, done) = channel::<Done>();
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = channel::<Job>();
            let done_tx = done_tx.clone();
            let waker = Arc::clone(&waker);
            let h = std::thread::Builder::new()
                .name(format!("bitmill-hash-{i}"))
                .spawn(move || worker(rx, done_tx, waker))?;
            workers.push((tx, h));
        }
        Ok(Hasher {
            workers,
            done,
            next: 0,
            in_flight: 0,
            registered: Vec::new(),
        })
    }

    /// Lets the workers hash pieces of `torrent`, whose files are `files`.
    pub fn add_torrent(&mut self, torrent: TorrentId, info: &Info, files: &[FileSpec]) {
        for (tx, _) in &self.workers {
            let _ = tx.send(Job::Add {
                torrent,
                info: Box::new(info.clone()),
                files: files.to_vec(),
            });
        }
        self.registered.push(torrent);
    }

    /// Whether pieces of `torrent` can be sent here.
    pub fn handles(&self, torrent: TorrentId) -> bool {
        self.registered.contains(&torrent)
    }

    /// Queues a check; the result arrives through [`Hasher::poll`] after a wake-up.
    pub fn submit(&mut self, torrent: TorrentId, piece: PieceIndex) {
        let n = self.workers.len();
        let (tx, _) = &self.workers[self.next % n];
        self.next += 1;
        if tx.send(Job::Verify { torrent, piece }).is_ok() {
            self.in_flight += 1;
        }
    }

    /// A finished check, if any.
    pub fn poll(&mut self) -> Option<Done> {
        let d = self.done.try_recv().ok()?;
        self.in_flight -= 1;
        Some(d)
    }

    /// Checks queued or running.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        for (tx, h) in self.workers.drain(..) {
            drop(tx); // the worker's recv fails and it returns
            let _ = h.join();
        }
    }
}

fn worker(jobs: Receiver<Job>, done: Sender<Done>, waker: Arc<Waker>) {
    let mut torrents: HashMap<TorrentId, (Box<Info>, Option<MmapStorage>, Vec<FileSpec>)> =
        HashMap::new();
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Add {
                torrent,
                info,
                files,
            } => {
                torrents.insert(torrent, (info, None, files));
            }
            Job::Verify { torrent, piece } => {
                let verdict = match torrents.get_mut(&torrent) {
                    Some((info, storage, files)) => {
                        if storage.is_none() {
                            // Opened lazily: the reactor thread created the files by now.
                            let opts = MmapOptions::default();
                            *storage = MmapStorage::open(
                                info.layout().clone(),
                                files.clone(),
                                OpenMode::ReadOnly,
                                opts,
                            )
                            .ok();
                        }
                        match storage.as_mut() {
                            Some(s) => check_piece(s, info, piece).unwrap_or(Verdict::Missing),
                            None => Verdict::Missing,
                        }
                    }
                    None => Verdict::Missing,
                };
                if done
                    .send(Done {
                        torrent,
                        piece,
                        verdict,
                    })
                    .is_err()
                {
                    return;
                }
                let _ = waker.wake();
            }
        }
    }
}
