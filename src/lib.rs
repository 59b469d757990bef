//! # bitmill
//!
//! A BitTorrent client and tracker: one thread runs a hand-rolled `mio` reactor over many peer
//! sockets and serves blocks straight out of memory-mapped files without copying them.
//!
//! ## Layers
//!
//! ```text
//!             CLI (src/main.rs, src/cli/)          tools/ (swarm lab, benchmarks)
//!                          |
//!        net/  — the ONLY code that touches mio, sockets, the clock, threads   [not yet]
//!                          |  handle_*(now, ...)  /  poll_*()
//!        engine/ — sans-IO: torrents, peers, picker, choker                    [not yet]
//!                          |
//!   wire/ [not yet]  tracker/ [not yet]  bencode/  metainfo/  storage/
//! ```
//!
//! What exists today:
//!
//! - [`bencode`]: zero-copy decoder (values borrow the input and know their byte span) and
//!   encoder; hostile input gets an error with a byte offset, never a panic or unbounded work.
//! - [`metainfo`]: .torrent parsing and creation; the info hash is the SHA-1 of the raw `info`
//!   span; [`metainfo::Layout`] does the piece/block/file arithmetic with index types that
//!   cannot be out of range; path safety so no torrent writes outside its folder.
//! - [`storage`]: the seam the engine will use. [`storage::MmapStorage`] maps files in bounded
//!   windows and hands out blocks as zero-copy `bytes::Bytes`; writes go through `pwrite`, so
//!   no `&mut [u8]` ever aliases a mapping that backs outstanding blocks; a file truncated
//!   under a mapping is detected (SIGBUS is caught and turned into an error) instead of
//!   crashing. [`storage::MemStorage`] is the in-memory backend for tests. Piece verification
//!   and the resume record live here too.
//!
//! Data flow, once the engine lands: a peer's `request` becomes
//! [`storage::Storage::read_block`], whose `Bytes` goes to the socket with `writev`; a
//! received block goes to [`storage::Storage::write_block`]; a complete piece is checked with
//! [`storage::Storage::hash_piece`] before it counts.
//!
//! Not implemented yet: the peer wire protocol, the engine, the reactor, trackers.

pub mod bencode;
pub mod bitfield;
pub mod engine;
pub mod metainfo;
pub mod net;
pub mod rng;
pub mod storage;
pub mod wire;
