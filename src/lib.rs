//! # bitmill
//!
//! A BitTorrent client and tracker: one thread runs a hand-rolled `mio` reactor over many peer
//! sockets and serves blocks straight out of memory-mapped files without copying them.
//!
//! ## Layers
//!
//! ```text
//!             CLI (src/main.rs, src/cli/)          tools/ (throughput driver)
//!                          |        \
//!                          |         lab/ — swarm lab theory and reports: pure, returns strings
//!        net/  — the ONLY code that touches mio, sockets, the clock, signals, threads
//!         reactor: Poll loop, Slab of connections (slab key + 16 == mio Token == PeerKey),
//!                  writev of queued Bytes, token-bucket rate limits, hashing threads
//!                          |  handle_*(now, ...)  /  poll_action(), poll_timeout()
//!        engine/ — sans-IO: torrents, peers, picker, choker, pipelining, rates
//!                          |
//!   wire/  tracker/  bencode/  metainfo/  storage/ (layout math pure; mmap backend apart)
//! ```
//!
//! - [`bencode`]: zero-copy decoder (values borrow the input and know their byte span) and
//!   encoder; hostile input gets an error with a byte offset, never a panic or unbounded work.
//! - [`metainfo`]: .torrent parsing and creation; the info hash is the SHA-1 of the raw `info`
//!   span; [`metainfo::Layout`] does the piece/block/file arithmetic with index types that
//!   cannot be out of range; path safety so no torrent writes outside its folder.
//! - [`storage`]: the seam the engine uses. [`storage::MmapStorage`] maps files in bounded
//!   windows and hands out blocks as zero-copy `bytes::Bytes`; writes go through `pwrite`, so
//!   no `&mut [u8]` ever aliases a mapping that backs outstanding blocks; a file truncated
//!   under a mapping is detected (SIGBUS is caught and turned into an error) instead of
//!   crashing. [`storage::MemStorage`] is the in-memory backend for tests. Piece verification
//!   (the only way to get a [`storage::verify::VerifiedPiece`]) and the resume record live
//!   here too.
//! - [`wire`]: the peer protocol codec: handshake, every BEP 3 message (and the BEP 6/10 ids,
//!   parsed and ignored, apart from our own BEP 10 handshake, which offers no extension and
//!   only tells peers our request queue length, `reqq`); the length prefix is capped before
//!   anything is buffered; piece payloads are split off the receive buffer without copying.
//! - [`engine`]: the sans-IO core. Input is `handle_*(now, ..)`, output is
//!   [`engine::Engine::poll_action`] and queued bytes; time is an argument and timers are data.
//!   [`engine::picker`] (rarest first, random first pieces, partial pieces first, endgame),
//!   [`engine::choker`] (tit-for-tat, optimistic unchoke, seeding rotation).
//! - [`net`]: [`net::Reactor`] runs the engine over real sockets; [`net::hasher`] verifies
//!   pieces on helper threads; [`net::limiter`] the token buckets and the policy that gates
//!   connections by global and per-torrent rate limits; [`net::clock`] is the crate's only
//!   clock read.
//! - [`lab`]: the swarm lab's pure half: the client-server and P2P distribution-time bounds,
//!   the lab's argument parsers (peer counts, sizes, rates), run results, and their reports
//!   (aligned table, CSV, JSON that reads back) and figure (SVG, drawn with plotters). The
//!   `bitmill swarm` command runs the processes (through [`net::children`], which watches
//!   child processes' output from one mio poll) and hands the measurements to it.
//! - [`units`]: sizes and rates as typed on a command line (`16M`, `1.5M`, `2MiB/s`).
//!
//! ## Data flow
//!
//! Upload: a peer's `request` is validated against the layout and our verified pieces,
//! queued, and served while the peer's send buffer has room: [`storage::Storage::read_block`]
//! returns a `Bytes` slice of the mapping (after a `mincore` residency check, so the loop
//! never faults on disk), queued behind a 13-byte header and written with `writev`.
//!
//! Download: the reactor reads into a per-connection `BytesMut`; the codec splits off each
//! block; [`storage::Storage::write_block`] `pwrite`s it; a complete piece becomes
//! `Action::VerifyPiece`, hashed on a helper thread, and only a verified piece is announced
//! with `have` and served.
//!
//! Trackers: [`tracker`] holds the sans-IO codecs (HTTP, UDP), the client's announce
//! scheduler and the server's swarm table; `net/` carries their bytes (DNS on a helper
//! thread, HTTP over non-blocking TCP, UDP sockets) in the same reactor as the peers.
//!
//! Not implemented yet: BEP 10 extensions (beyond the handshake's `reqq`), MSE encryption,
//! magnet links, DHT, uTP, v2 torrents.

pub mod bencode;
pub mod bitfield;
pub mod engine;
pub mod lab;
pub mod metainfo;
pub mod net;
pub mod rng;
pub mod storage;
pub mod tracker;
pub mod units;
pub mod wire;
