//! Unit tests of the parent module, compiled only under `#[cfg(test)]`.
//! Engine traces: one [`Engine`] fed hand-made peer bytes in virtual time, its output decoded
//! and checked message by message. Peers are simulated by the test; there are no sockets.

use super::*;

use crate::metainfo::{Metainfo, TorrentBuilder};
use crate::storage::MemStorage;
use sha1::{Digest, Sha1};

// ------------------------------------------------------------------------------- helpers

/// A torrent of `file_lengths` pseudo-random bytes.
struct Tor {
    info_hash: InfoHash,
    info: Info,
    data: Vec<u8>,
}

fn torrent(piece_length: u32, file_lengths: &[u64]) -> Tor {
    let total: u64 = file_lengths.iter().sum();
    let mut data = vec![0u8; total as usize];
    Rng::new(99).fill(&mut data);
    let mut pieces = Vec::new();
    for c in data.chunks(piece_length as usize) {
        pieces.extend_from_slice(&Sha1::digest(c));
    }
    let b = TorrentBuilder {
        name: "t".into(),
        files: file_lengths
            .iter()
            .enumerate()
            .map(|(i, &l)| (vec![format!("f{i}")], l))
            .collect(),
        piece_length,
        pieces,
        ..Default::default()
    };
    let m = Metainfo::from_bytes(&b.encode()).unwrap();
    Tor {
        info_hash: m.info_hash,
        info: m.info,
        data,
    }
}

/// What the engine starts with.
enum Have {
    All,
    None,
    Pieces(&'static [u32]),
}

/// One engine, one torrent, a virtual clock and the simulated peers' buffers.
struct T {
    e: Engine,
    now: Instant,
    start: Instant,
    t: TorrentId,
    tor: Tor,
    /// Bytes the simulated peers sent that the engine has not consumed yet.
    rx: HashMap<PeerKey, BytesMut>,
    /// Our handshake has been read off this peer's output already.
    hs_seen: HashSet<PeerKey>,
    /// Actions seen and not yet looked at by the test.
    actions: Vec<Action>,
}

fn pid(n: u8) -> [u8; 20] {
    let mut id = *b"-XX0001-peer00000000";
    id[19] = n;
    id
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, 0, n]), 6881)
}

fn k(n: usize) -> PeerKey {
    PeerKey(n)
}

impl T {
    /// Two files (50 000 + 30 000 bytes) in 32 KiB pieces: three pieces of two blocks
    /// (the last 14 464 bytes, one block).
    fn new(have: Have) -> T {
        T::with(have, |_| {}, torrent(32 * 1024, &[50_000, 30_000]))
    }

    fn with(have: Have, cfg: impl FnOnce(&mut EngineConfig), tor: Tor) -> T {
        let mut c = EngineConfig {
            peer_id: *b"-BM0100-ourselves000",
            seed: 7,
            ..Default::default()
        };
        cfg(&mut c);
        let mut e = Engine::new(c);
        let n = tor.info.layout().num_pieces();
        let layout = tor.info.layout().clone();
        let (storage, bits) = match have {
            Have::All => (
                MemStorage::with_data(layout, tor.data.clone()).unwrap(),
                Bitfield::full(n),
            ),
            Have::None => (MemStorage::new(layout), Bitfield::new(n)),
            Have::Pieces(ps) => {
                let mut data = vec![0u8; tor.data.len()];
                let mut b = Bitfield::new(n);
                for &p in ps {
                    let r = tor.info.layout().piece_range(PieceIndex::new_unchecked(p));
                    let r = r.start as usize..r.end as usize;
                    data[r.clone()].copy_from_slice(&tor.data[r]);
                    b.set(p);
                }
                (MemStorage::with_data(layout, data).unwrap(), b)
            }
        };
        let t = e.add_torrent(tor.info_hash, tor.info.clone(), Box::new(storage), bits);
        let start = crate::net::clock::now();
        T {
            e,
            now: start,
            start,
            t,
            tor,
            rx: HashMap::new(),
            hs_seen: HashSet::new(),
            actions: Vec::new(),
        }
    }

    fn num_pieces(&self) -> u32 {
        self.tor.info.layout().num_pieces()
    }

    fn collect(&mut self) {
        while let Some(a) = self.e.poll_action() {
            self.actions.push(a);
        }
    }

    /// Actions since the last call (Flush included).
    fn take_actions(&mut self) -> Vec<Action> {
        self.collect();
        std::mem::take(&mut self.actions)
    }

    /// Closes among the actions since the last call (others are dropped).
    fn closes(&mut self) -> Vec<(PeerKey, CloseReason)> {
        self.take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Close { peer, reason } => Some((peer, reason)),
                _ => None,
            })
            .collect()
    }

    /// An inbound connection from `addr(n)` under key `n`.
    fn accept(&mut self, n: u8) -> PeerKey {
        let key = k(n as usize);
        assert!(self.e.handle_accepted(self.now, key, addr(n)));
        self.collect();
        key
    }

    /// The simulated peer sends raw bytes.
    fn feed(&mut self, key: PeerKey, bytes: &[u8]) {
        let buf = self.rx.entry(key).or_default();
        buf.extend_from_slice(bytes);
        let mut b = std::mem::take(buf);
        self.e.handle_bytes(self.now, key, &mut b);
        self.rx.insert(key, b);
        self.collect();
    }

    /// The simulated peer sends messages.
    fn send(&mut self, key: PeerKey, msgs: &[Message]) {
        let mut buf = BytesMut::new();
        for m in msgs {
            wire::encode(m, &mut buf);
        }
        self.feed(key, &buf);
    }

    /// The simulated peer `n` sends its handshake for our torrent.
    fn handshake(&mut self, key: PeerKey, n: u8) {
        let hs = Handshake::new(self.tor.info_hash.0, pid(n)).encode();
        self.feed(key, &hs);
    }

    /// An inbound peer that has completed the handshake and sent `bits` (if any), with its
    /// output (our handshake, bitfield, ...) read and dropped.
    fn peer(&mut self, n: u8, bits: Option<Message>) -> PeerKey {
        let key = self.accept(n);
        self.handshake(key, n);
        if let Some(b) = bits {
            self.send(key, &[b]);
        }
        self.msgs(key);
        key
    }

    /// Raw output bytes queued for `key`, all of it taken by the "socket" (serving refills
    /// are taken too).
    fn out(&mut self, key: PeerKey) -> Vec<u8> {
        let mut v = Vec::new();
        loop {
            let n = self.e.output_len(key);
            if n == 0 {
                break;
            }
            for b in self.e.output(key) {
                v.extend_from_slice(b);
            }
            self.e.consume_output(self.now, key, n);
            self.collect();
        }
        v
    }

    /// The messages queued for `key` (our handshake, if there, is checked and skipped).
    fn msgs(&mut self, key: PeerKey) -> Vec<Message> {
        let bytes = self.out(key);
        let mut buf = BytesMut::from(&bytes[..]);
        if !self.hs_seen.contains(&key) && buf.len() >= wire::HANDSHAKE_LEN {
            let hs = Handshake::decode(&mut buf).unwrap().unwrap();
            assert_eq!(hs.peer_id, self.e.peer_id());
            self.hs_seen.insert(key);
        }
        let mut dec = Decoder::new(self.num_pieces());
        let mut v = Vec::new();
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            v.push(m);
        }
        assert!(buf.is_empty(), "trailing bytes in the output");
        v
    }

    /// Carries out `VerifyPiece` actions inline (the others are kept).
    fn verify(&mut self) {
        self.collect();
        let acts = std::mem::take(&mut self.actions);
        for a in acts {
            match a {
                Action::VerifyPiece { torrent, piece } => {
                    let v = self.e.verify_piece(torrent, piece);
                    self.e.handle_piece_verified(self.now, torrent, piece, v);
                    self.collect();
                }
                a => self.actions.push(a),
            }
        }
    }

    /// Runs timers until virtual time `at` (from the start), the way the reactor would:
    /// `handle_timeout` at each `poll_timeout` that is due.
    fn run_to(&mut self, at: Duration) {
        let end = self.start + at;
        while let Some(t) = self.e.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.e.handle_timeout(self.now);
            self.collect();
            assert!(
                self.e.poll_timeout().is_none_or(|n| n > self.now),
                "poll_timeout does not move on"
            );
        }
        self.now = self.now.max(end);
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn block(&self, piece: u32, begin: u32, len: u32) -> Bytes {
        let off = self
            .tor
            .info
            .layout()
            .piece_offset(PieceIndex::new_unchecked(piece)) as usize
            + begin as usize;
        Bytes::copy_from_slice(&self.tor.data[off..off + len as usize])
    }

    /// The peer's answer to a request: the right bytes.
    fn piece_for(&self, r: &Message) -> Message {
        let Message::Request {
            index,
            begin,
            length,
        } = *r
        else {
            panic!("not a request: {r:?}")
        };
        Message::Piece {
            index,
            begin,
            block: self.block(index, begin, length),
        }
    }
}

fn requests(msgs: &[Message]) -> Vec<Message> {
    msgs.iter()
        .filter(|m| matches!(m, Message::Request { .. }))
        .cloned()
        .collect()
}

fn full_bitfield(n: u32) -> Message {
    Message::Bitfield(Bytes::copy_from_slice(Bitfield::full(n).as_bytes()))
}

fn bitfield_of(n: u32, pieces: &[u32]) -> Message {
    let mut b = Bitfield::new(n);
    for &p in pieces {
        b.set(p);
    }
    Message::Bitfield(Bytes::copy_from_slice(b.as_bytes()))
}

fn is_protocol(r: &CloseReason) -> bool {
    matches!(r, CloseReason::Protocol(_))
}

// ------------------------------------------------------------------------------- handshake

#[test]
fn handshake_then_bitfield_gets_our_handshake_and_bitfield_back() {
    let mut t = T::new(Have::Pieces(&[0, 2]));
    let p = t.accept(1);
    assert!(
        t.msgs(p).is_empty(),
        "an acceptor speaks only after the handshake"
    );
    t.handshake(p, 1);
    t.send(p, &[bitfield_of(3, &[1])]);
    let bytes = t.out(p);
    let mut buf = BytesMut::from(&bytes[..]);
    let hs = Handshake::decode(&mut buf).unwrap().unwrap();
    assert_eq!(hs.info_hash, t.tor.info_hash.0);
    assert_eq!(hs.peer_id, *b"-BM0100-ourselves000");
    let mut dec = Decoder::new(3);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(bitfield_of(3, &[0, 2])),
        "our bitfield follows the handshake"
    );
    // The peer has piece 1, which we lack: we say we are interested.
    assert_eq!(dec.decode(&mut buf).unwrap(), Some(Message::Interested));
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert!(t.closes().is_empty());
    assert_eq!(t.e.stats(t.t).peers, 1);
}

#[test]
fn a_peer_with_nothing_we_want_gets_no_interest() {
    let mut t = T::new(Have::All);
    let p = t.peer(1, Some(bitfield_of(3, &[1])));
    assert!(t.msgs(p).is_empty());
    // An engine with nothing sends no bitfield at all.
    let mut t = T::new(Have::None);
    let p = t.accept(1);
    t.handshake(p, 1);
    assert!(t.msgs(p).is_empty(), "only the handshake");
    assert!(t.hs_seen.contains(&p));
}

#[test]
fn handshake_for_an_unknown_torrent_closes_the_peer() {
    let mut t = T::new(Have::All);
    let p = t.accept(1);
    let hs = Handshake::new([0xee; 20], pid(1)).encode();
    t.feed(p, &hs);
    assert_eq!(t.closes(), vec![(p, CloseReason::UnknownTorrent)]);
    assert_eq!(t.e.num_peers(), 0, "forgotten");
    assert_eq!(t.e.output_len(p), 0, "nothing sent, not even our handshake");
}

#[test]
fn connecting_to_ourselves_is_detected_both_ways() {
    let mut t = T::new(Have::None);
    // Inbound: the handshake carries our own peer id.
    let p = t.accept(1);
    let hs = Handshake::new(t.tor.info_hash.0, t.e.peer_id()).encode();
    t.feed(p, &hs);
    assert_eq!(t.closes(), vec![(p, CloseReason::SelfConnection)]);
    // Outbound: we dial an address that turns out to be us; our handshake comes back.
    let me = addr(9);
    t.e.add_peers(t.now, t.t, [me]);
    t.e.handle_timeout(t.now);
    let dial = t.take_actions();
    assert_eq!(
        dial,
        vec![Action::Dial {
            torrent: t.t,
            addr: me
        }]
    );
    let d = k(20);
    t.e.handle_dialing(t.now, d, t.t, me);
    t.e.handle_connected(t.now, d);
    let ours = t.out(d);
    assert_eq!(ours.len(), wire::HANDSHAKE_LEN);
    t.feed(d, &ours);
    assert_eq!(t.closes(), vec![(d, CloseReason::SelfConnection)]);
    // And we do not dial ourselves again.
    t.run_to(Duration::from_secs(600));
    assert!(!t
        .take_actions()
        .iter()
        .any(|a| matches!(a, Action::Dial { .. })));
}

#[test]
fn simultaneous_dials_keep_the_connection_dialed_by_the_larger_peer_id() {
    // We are `-BM0100-ourselves000`; `-XX..` sorts after us, `-AA..` before.
    let bigger = *b"-XX0001-peer00000001";
    let smaller = *b"-AA0001-peer00000001";
    for their_id in [bigger, smaller] {
        for outbound_first in [true, false] {
            let mut t = T::new(Have::None);
            let them = addr(7);
            t.e.add_peers(t.now, t.t, [them]);
            t.e.handle_timeout(t.now);
            t.take_actions();
            let (out_k, in_k) = (k(10), k(11));
            t.e.handle_dialing(t.now, out_k, t.t, them);
            t.e.handle_connected(t.now, out_k);
            assert!(t
                .e
                .handle_accepted(t.now, in_k, SocketAddr::new(them.ip(), 50_000)));
            let hs = Handshake::new(t.tor.info_hash.0, their_id).encode();
            let order = if outbound_first {
                [out_k, in_k]
            } else {
                [in_k, out_k]
            };
            t.feed(order[0], &hs);
            assert!(t.closes().is_empty());
            t.feed(order[1], &hs);
            // The connection they dialed is our inbound one.
            let keep = if their_id > t.e.peer_id() {
                in_k
            } else {
                out_k
            };
            let drop = if keep == in_k { out_k } else { in_k };
            assert_eq!(
                t.closes(),
                vec![(drop, CloseReason::Duplicate)],
                "their id {}, {} handshake first",
                String::from_utf8_lossy(&their_id),
                if outbound_first {
                    "outbound"
                } else {
                    "inbound"
                }
            );
            assert!(t.e.peer(keep).is_some_and(|p| p.phase == Phase::Active));
            assert_eq!(t.e.stats(t.t).peers, 1);
        }
    }
}

// ------------------------------------------------------------------------------- protocol errors

#[test]
fn have_out_of_range_is_a_protocol_error() {
    let mut t = T::new(Have::None);
    let p = t.peer(1, None);
    t.send(p, &[Message::Have(3)]);
    let c = t.closes();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].0, p);
    assert!(is_protocol(&c[0].1), "{:?}", c[0].1);
    assert_eq!(t.e.num_peers(), 0);
}

#[test]
fn bitfield_after_have_is_a_protocol_error() {
    let mut t = T::new(Have::None);
    let p = t.peer(1, None);
    t.send(p, &[Message::Have(0)]);
    assert!(
        t.closes().is_empty(),
        "a have as the first announcement is fine"
    );
    t.send(p, &[bitfield_of(3, &[1])]);
    let c = t.closes();
    assert_eq!(c.len(), 1);
    assert!(is_protocol(&c[0].1), "{:?}", c[0].1);
    // Two bitfields are just as wrong.
    let mut t = T::new(Have::None);
    let p = t.peer(1, Some(bitfield_of(3, &[1])));
    t.send(p, &[bitfield_of(3, &[1, 2])]);
    assert!(is_protocol(&t.closes()[0].1));
}

#[test]
fn requests_out_of_range_are_protocol_errors() {
    for (index, begin, length) in [
        (3, 0, 16384),      // no such piece
        (2, 0, 16384),      // the last piece is only 14 464 bytes
        (0, 16384, 16385),  // past the end of the piece
        (0, 0, 0),          // empty
        (0, 0, 256 * 1024), // longer than any block we serve
        (0, u32::MAX, 2),   // offset overflow
    ] {
        let mut t = T::new(Have::All);
        let p = t.peer(1, None);
        t.send(p, &[Message::Interested]);
        assert_eq!(t.msgs(p), vec![Message::Unchoke]);
        t.send(
            p,
            &[Message::Request {
                index,
                begin,
                length,
            }],
        );
        let c = t.closes();
        assert_eq!(c.len(), 1, "{index}:{begin}+{length}");
        assert!(is_protocol(&c[0].1), "{:?}", c[0].1);
        assert_eq!(t.e.output_len(p), 0);
    }
}

// ------------------------------------------------------------------------------- serving

#[test]
fn requests_from_a_choked_peer_are_dropped_and_served_after_unchoke() {
    let mut t = T::new(Have::All);
    let p = t.peer(1, None);
    let req = |i, b, l| Message::Request {
        index: i,
        begin: b,
        length: l,
    };
    // Choked (it has not even said it is interested): the request is dropped.
    t.send(p, &[req(0, 0, 16384)]);
    assert!(t.msgs(p).is_empty());
    // Interested: a slot is free, so it is unchoked at once.
    t.send(p, &[Message::Interested]);
    assert_eq!(t.msgs(p), vec![Message::Unchoke]);
    // Now it is served: a 13-byte header, then the block's bytes from storage, as two
    // buffers (the block is never copied into the header's buffer).
    t.send(p, &[req(1, 16384, 16384)]);
    let bufs: Vec<Vec<u8>> = t.e.output(p).map(<[u8]>::to_vec).collect();
    assert_eq!(bufs.len(), 2, "header and block");
    assert_eq!(bufs[0], wire::piece_header(1, 16384, 16384));
    assert_eq!(bufs[1][..], t.block(1, 16384, 16384)[..]);
    // The last, short block of the last piece (it crosses no file, but ends the torrent).
    t.send(p, &[req(2, 0, 14464)]);
    let msgs = t.msgs(p);
    assert_eq!(
        msgs,
        vec![
            Message::Piece {
                index: 1,
                begin: 16384,
                block: t.block(1, 16384, 16384)
            },
            Message::Piece {
                index: 2,
                begin: 0,
                block: t.block(2, 0, 14464)
            },
        ],
        "the request made while choked stays dropped"
    );
    assert_eq!(t.e.stats(t.t).uploaded, 16384 + 14464);
}

#[test]
fn a_block_crossing_files_is_served_whole() {
    // Piece 1 spans bytes 32768..65536: file 0 ends at 50 000.
    let mut t = T::new(Have::All);
    let p = t.peer(1, None);
    t.send(p, &[Message::Interested]);
    t.msgs(p);
    t.send(
        p,
        &[Message::Request {
            index: 1,
            begin: 10_000,
            length: 16384,
        }],
    );
    assert_eq!(
        t.msgs(p),
        vec![Message::Piece {
            index: 1,
            begin: 10_000,
            block: Bytes::copy_from_slice(&t.tor.data[42_768..42_768 + 16384]),
        }]
    );
}

#[test]
fn requests_for_pieces_we_lack_are_not_served() {
    let mut t = T::new(Have::Pieces(&[0]));
    let p = t.peer(1, None);
    t.send(p, &[Message::Interested]);
    assert_eq!(t.msgs(p), vec![Message::Unchoke]);
    t.send(
        p,
        &[Message::Request {
            index: 1,
            begin: 0,
            length: 16384,
        }],
    );
    assert!(t.msgs(p).is_empty());
    assert!(t.closes().is_empty(), "not a protocol error, just ignored");
}

#[test]
fn cancel_removes_a_queued_request() {
    let tor = torrent(32 * 1024, &[50_000, 30_000]);
    // A send buffer of one block: the second and third requests wait in the queue.
    let mut t = T::with(Have::All, |c| c.send_buffer = 16 * 1024, tor);
    let p = t.peer(1, None);
    t.send(p, &[Message::Interested]);
    assert_eq!(t.msgs(p), vec![Message::Unchoke]);
    let req = |i, b, l| Message::Request {
        index: i,
        begin: b,
        length: l,
    };
    t.send(
        p,
        &[req(0, 0, 16384), req(0, 16384, 16384), req(1, 0, 16384)],
    );
    assert_eq!(
        t.e.output_len(p),
        13 + 16384,
        "only the first block is queued for the socket"
    );
    t.send(
        p,
        &[Message::Cancel {
            index: 0,
            begin: 16384,
            length: 16384,
        }],
    );
    let served: Vec<(u32, u32)> = t
        .msgs(p)
        .into_iter()
        .map(|m| match m {
            Message::Piece { index, begin, .. } => (index, begin),
            m => panic!("unexpected {m:?}"),
        })
        .collect();
    assert_eq!(
        served,
        vec![(0, 0), (1, 0)],
        "the cancelled block is not sent"
    );
}

#[test]
fn choking_a_peer_drops_its_queued_requests() {
    let tor = torrent(32 * 1024, &[50_000, 30_000]);
    let mut t = T::with(Have::All, |c| c.send_buffer = 16 * 1024, tor);
    let p = t.peer(1, None);
    t.send(p, &[Message::Interested]);
    t.msgs(p);
    let req = |i, b| Message::Request {
        index: i,
        begin: b,
        length: 16384,
    };
    t.send(p, &[req(0, 0), req(0, 16384)]);
    t.e.set_choke(t.now, p, true);
    let msgs = t.msgs(p);
    assert!(
        matches!(
            &msgs[..],
            [
                Message::Piece {
                    index: 0,
                    begin: 0,
                    ..
                },
                Message::Choke
            ]
        ),
        "{msgs:?}"
    );
}

// ------------------------------------------------------------------------------- downloading

/// A leecher with two seeds connected (keys 1 and 2), both still choking us.
fn leecher_with_two_seeds(t: &mut T) -> (PeerKey, PeerKey) {
    let n = t.num_pieces();
    let a = t.peer(1, Some(full_bitfield(n)));
    let b = t.peer(2, Some(Message::HaveAll));
    (a, b)
}

#[test]
fn interest_follows_the_peers_pieces() {
    let mut t = T::new(Have::None);
    let p = t.accept(1);
    t.handshake(p, 1);
    t.send(p, &[full_bitfield(3)]);
    assert_eq!(t.msgs(p), vec![Message::Interested]);
    let q = t.peer(2, Some(Message::HaveNone));
    assert!(t.msgs(q).is_empty());
    t.send(q, &[Message::Have(2)]);
    assert_eq!(t.msgs(q), vec![Message::Interested]);
}

#[test]
fn a_whole_download_from_one_peer() {
    let mut t = T::new(Have::None);
    let p = t.peer(1, Some(full_bitfield(3)));
    t.send(p, &[Message::Unchoke]);
    let mut done = false;
    for _ in 0..10 {
        let reqs = requests(&t.msgs(p));
        if reqs.is_empty() {
            break;
        }
        let answers: Vec<Message> = reqs.iter().map(|r| t.piece_for(r)).collect();
        t.send(p, &answers);
        t.verify();
        done = t.e.is_complete(t.t);
    }
    assert!(done);
    let acts = t.take_actions();
    assert!(acts.contains(&Action::TorrentComplete(t.t)), "{acts:?}");
    // The peer is a seed too: no reason to stay connected.
    assert!(acts.contains(&Action::Close {
        peer: p,
        reason: CloseReason::BothSeeds
    }));
    let st = t.e.stats(t.t);
    assert_eq!(st.have_bytes, 80_000);
    assert_eq!(st.downloaded, 80_000);
    assert_eq!(st.wasted, 0);
}

/// Eight pieces of two blocks each.
fn eight_pieces() -> Tor {
    torrent(32 * 1024, &[100_000, 8 * 32 * 1024 - 100_000])
}

#[test]
fn choke_from_the_peer_returns_our_requests_to_the_picker() {
    let mut t = T::with(Have::None, |_| {}, eight_pieces());
    let (a, b) = leecher_with_two_seeds(&mut t);
    t.send(a, &[Message::Unchoke]);
    let first = requests(&t.msgs(a));
    assert_eq!(first.len(), 4, "min_queue requests: two whole pieces");
    assert_eq!(t.e.torrents[0].picker.free_blocks(), 12);
    t.send(a, &[Message::Choke]);
    assert!(
        t.msgs(a).is_empty(),
        "nothing to say to a peer that choked us"
    );
    assert!(t.e.peer(a).unwrap().requests.is_empty());
    assert_eq!(t.e.torrents[0].picker.free_blocks(), 16, "all free again");
    // The other seed unchokes: it is asked for those very blocks (partial pieces are
    // finished first).
    t.send(b, &[Message::Unchoke]);
    let mut second = requests(&t.msgs(b));
    second.sort_by_key(|m| format!("{m:?}"));
    let mut first = first;
    first.sort_by_key(|m| format!("{m:?}"));
    assert_eq!(first, second);
    // A block that arrives from the choking peer after all is not requested any more: it is
    // thrown away, not stored.
    let late = t.piece_for(&first[0]);
    t.send(a, &[late]);
    assert_eq!(t.e.stats(t.t).wasted, u64::from(BLOCK_LEN));
}

#[test]
fn reject_returns_the_block_to_the_picker() {
    let mut t = T::with(Have::None, |_| {}, eight_pieces());
    let (a, _b) = leecher_with_two_seeds(&mut t);
    t.send(a, &[Message::Unchoke]);
    let first = requests(&t.msgs(a));
    let Message::Request {
        index,
        begin,
        length,
    } = first[0]
    else {
        unreachable!()
    };
    t.send(
        a,
        &[Message::RejectRequest {
            index,
            begin,
            length,
        }],
    );
    // Not lost: it is free again, and (a being the only peer unchoking us) asked for again.
    assert_eq!(t.e.torrents[0].picker.free_blocks(), 12);
    assert_eq!(requests(&t.msgs(a)), vec![first[0].clone()]);
    assert_eq!(t.e.peer(a).unwrap().requests.len(), first.len());
}

#[test]
fn request_timeout_snubs_the_peer_and_its_blocks_go_elsewhere() {
    let mut t = T::with(Have::None, |_| {}, eight_pieces());
    let (a, b) = leecher_with_two_seeds(&mut t);
    t.send(a, &[Message::Unchoke]);
    let first = requests(&t.msgs(a));
    assert!(!first.is_empty());
    // The peer keeps the connection alive but sends no block.
    t.run_to(Duration::from_secs(30));
    t.send(a, &[Message::KeepAlive]);
    assert!(
        !t.e.peer(a).unwrap().snubbed,
        "not before the request timeout"
    );
    t.run_to(Duration::from_secs(32));
    assert!(
        t.e.peer(a).unwrap().snubbed,
        "snubbed after 30 s without a block"
    );
    t.msgs(a);
    t.send(b, &[Message::Unchoke]);
    let second = requests(&t.msgs(b));
    let moved = first.iter().filter(|r| second.contains(r)).count();
    assert!(
        moved >= first.len() - 1,
        "only {moved} of the {} timed-out blocks were asked of the other peer: {second:?}",
        first.len()
    );
    // The snubbed peer keeps at most one request, so it can prove itself again.
    assert!(t.e.peer(a).unwrap().requests.len() <= 1);
    // A block from it clears the snub.
    let r = t.e.peer(a).unwrap().requests.front().copied();
    if let Some(r) = r {
        let m = Message::Piece {
            index: r.piece().get(),
            begin: r.offset(),
            block: t.block(r.piece().get(), r.offset(), r.len()),
        };
        t.send(a, &[m]);
        assert!(!t.e.peer(a).unwrap().snubbed);
    }
}

#[test]
fn endgame_cancels_the_duplicate_request_when_a_block_arrives() {
    // One piece of two blocks: the first requests put us straight into endgame.
    let tor = torrent(32 * 1024, &[32 * 1024]);
    let mut t = T::with(Have::None, |_| {}, tor);
    let (a, b) = leecher_with_two_seeds(&mut t);
    t.send(a, &[Message::Unchoke]);
    let ra = requests(&t.msgs(a));
    assert_eq!(ra.len(), 2);
    assert!(t.e.torrents[0].picker.in_endgame());
    t.send(b, &[Message::Unchoke]);
    let rb = requests(&t.msgs(b));
    assert_eq!(
        rb.len(),
        2,
        "endgame: the blocks in flight are asked for again"
    );
    let ans = t.piece_for(&ra[1]);
    t.send(a, &[ans]);
    let Message::Request {
        index,
        begin,
        length,
    } = ra[1]
    else {
        unreachable!()
    };
    assert_eq!(
        t.msgs(b),
        vec![Message::Cancel {
            index,
            begin,
            length
        }]
    );
    assert!(t.msgs(a).is_empty(), "no cancel to the peer that sent it");
    // The duplicate, if it comes anyway, is wasted, not stored twice.
    let dup = t.piece_for(&rb.iter().find(|r| **r == ra[1]).unwrap().clone());
    t.send(b, &[dup]);
    assert_eq!(t.e.stats(t.t).wasted, u64::from(BLOCK_LEN));
    // The other block from b completes the piece.
    let other = t.piece_for(&ra[0]);
    t.send(b, &[other]);
    t.verify();
    assert!(t.e.is_complete(t.t));
    // Both are seeds like us now: nothing left to trade.
    assert_eq!(
        t.closes(),
        vec![(a, CloseReason::BothSeeds), (b, CloseReason::BothSeeds)]
    );
}

#[test]
fn a_failed_piece_is_fetched_again_and_a_sole_liar_is_banned() {
    let mut t = T::new(Have::None);
    let liar = t.peer(1, Some(full_bitfield(3)));
    t.send(liar, &[Message::Unchoke]);
    let mut failures = 0;
    for _ in 0..4 {
        let reqs = requests(&t.msgs(liar));
        if reqs.is_empty() {
            break;
        }
        let answers: Vec<Message> = reqs
            .iter()
            .map(|r| match t.piece_for(r) {
                Message::Piece {
                    index,
                    begin,
                    block,
                } => {
                    let mut v = block.to_vec();
                    v[0] ^= 1;
                    Message::Piece {
                        index,
                        begin,
                        block: v.into(),
                    }
                }
                m => m,
            })
            .collect();
        t.send(liar, &answers);
        t.verify();
        failures = t.e.stats(t.t).hash_failures;
        if t.e.is_banned(addr(1).ip()) {
            break;
        }
    }
    // Two pieces from it alone make four strikes (the ban is at three); a third may have been
    // checked in the same batch.
    assert!((2..=3).contains(&failures), "{failures} hash failures");
    assert!(t.e.is_banned(addr(1).ip()));
    assert!(t.closes().contains(&(liar, CloseReason::Banned)));
    assert_eq!(t.e.stats(t.t).have_pieces, 0);
    // It cannot come back.
    assert!(!t.e.handle_accepted(t.now, k(5), addr(1)));
    // An honest peer gets the failed pieces' blocks.
    let p = t.peer(2, Some(full_bitfield(3)));
    t.send(p, &[Message::Unchoke]);
    for _ in 0..10 {
        let reqs = requests(&t.msgs(p));
        if reqs.is_empty() {
            break;
        }
        let answers: Vec<Message> = reqs.iter().map(|r| t.piece_for(r)).collect();
        t.send(p, &answers);
        t.verify();
    }
    assert!(t.e.is_complete(t.t));
    // Pieces the liar had a hand in may fail once more; the honest peer takes no blame.
    assert!(t.e.stats(t.t).hash_failures >= failures);
    assert!(!t.e.is_banned(addr(2).ip()));
    assert_eq!(t.e.torrents[0].strikes.get(&addr(2).ip()), None);
    assert_eq!(t.e.stats(t.t).have_bytes, 80_000);
}

#[test]
fn have_goes_to_every_peer_even_one_that_has_the_piece() {
    // Without it a peer cannot tell that we became a seed.
    let mut t = T::new(Have::Pieces(&[1, 2]));
    let a = t.peer(1, Some(bitfield_of(3, &[0, 1])));
    let b = t.peer(2, Some(bitfield_of(3, &[2])));
    t.send(a, &[Message::Unchoke]);
    let reqs = requests(&t.msgs(a));
    assert_eq!(reqs.len(), 2, "both blocks of piece 0");
    let answers: Vec<Message> = reqs.iter().map(|r| t.piece_for(r)).collect();
    t.send(a, &answers);
    t.verify();
    assert!(t.e.is_complete(t.t));
    // (It stopped being interesting when its last piece of interest went to the hash check.)
    assert_eq!(t.msgs(a), vec![Message::NotInterested, Message::Have(0)]);
    assert_eq!(t.msgs(b), vec![Message::Have(0)]);
}

#[test]
fn a_dial_in_progress_gets_nothing_before_our_handshake() {
    // Two pieces of one block each.
    let tor = torrent(16 * 1024, &[20_000]);
    let mut t = T::with(Have::None, |_| {}, tor);
    let far = addr(50);
    t.e.add_peers(t.now, t.t, [far]);
    t.e.handle_timeout(t.now);
    assert_eq!(
        t.take_actions(),
        vec![Action::Dial {
            torrent: t.t,
            addr: far
        }]
    );
    let d = k(30);
    t.e.handle_dialing(t.now, d, t.t, far);
    // Meanwhile a seed gives us both pieces, one at a time.
    let p = t.peer(1, Some(full_bitfield(2)));
    t.send(p, &[Message::Unchoke]);
    let reqs = requests(&t.msgs(p));
    assert_eq!(reqs.len(), 2);
    t.send(p, &[t.piece_for(&reqs[0])]);
    t.verify();
    assert_eq!(
        t.e.output_len(d),
        0,
        "nothing queued for a peer still dialing"
    );
    t.send(p, &[t.piece_for(&reqs[1])]);
    t.verify();
    assert!(t.e.is_complete(t.t));
    assert!(
        !t.take_actions()
            .iter()
            .any(|a| matches!(a, Action::Close { peer, .. } if *peer == d)),
        "a peer we have not even talked to is not a seed"
    );
    // The connection completes: the first bytes are our handshake.
    t.e.handle_connected(t.now, d);
    let out = t.out(d);
    assert_eq!(out.len(), wire::HANDSHAKE_LEN);
    assert_eq!(out[0], 19);
    assert_eq!(&out[1..20], wire::PROTOCOL);
}

// ------------------------------------------------------------------------------- timers

#[test]
fn keep_alive_after_a_minute_of_silence() {
    let mut t = T::new(Have::All);
    let p = t.peer(1, None);
    t.run_to(Duration::from_secs(59));
    assert!(t.msgs(p).is_empty(), "nothing to say for a minute");
    t.run_to(Duration::from_secs(62));
    assert_eq!(t.msgs(p), vec![Message::KeepAlive]);
    // And again a minute later, not before.
    t.run_to(Duration::from_secs(120));
    assert!(t.msgs(p).is_empty());
    t.run_to(Duration::from_secs(124));
    assert_eq!(t.msgs(p), vec![Message::KeepAlive]);
    assert!(t.closes().is_empty());
}

#[test]
fn a_silent_peer_is_dropped_after_the_idle_timeout() {
    let mut t = T::new(Have::All);
    let p = t.peer(1, None);
    t.run_to(Duration::from_secs(299));
    assert!(t.closes().is_empty());
    t.run_to(Duration::from_secs(302));
    assert_eq!(t.closes(), vec![(p, CloseReason::Timeout)]);
    assert_eq!(t.e.num_peers(), 0);
    // A peer that talks now and then is kept.
    let mut t = T::new(Have::All);
    let p = t.peer(1, None);
    for s in (100..=900).step_by(100) {
        t.run_to(Duration::from_secs(s));
        t.send(p, &[Message::KeepAlive]);
    }
    assert!(t.closes().is_empty());
    assert_eq!(t.e.num_peers(), 1);
}

#[test]
fn a_connection_without_a_handshake_times_out() {
    let mut t = T::new(Have::All);
    let p = t.accept(1);
    t.run_to(Duration::from_secs(19));
    assert!(t.closes().is_empty());
    t.run_to(Duration::from_secs(22));
    assert_eq!(t.closes(), vec![(p, CloseReason::Timeout)]);
}

#[test]
fn a_spurious_early_timeout_changes_nothing() {
    let mut t = T::new(Have::Pieces(&[0]));
    let a = t.peer(1, Some(full_bitfield(3)));
    let b = t.peer(2, None);
    t.send(b, &[Message::Interested]);
    t.send(a, &[Message::Unchoke]);
    t.msgs(a);
    t.msgs(b);
    t.run_to(Duration::from_millis(2500));
    t.msgs(a);
    t.msgs(b);
    t.take_actions();
    let due = t.e.poll_timeout().expect("a timer is armed");
    assert!(due > t.now);
    let before = (t.e.peer(a).unwrap().requests.clone(), t.e.stats(t.t));
    for early in [t.now, due - Duration::from_millis(1)] {
        t.e.handle_timeout(early);
        assert_eq!(t.take_actions(), vec![], "no action from an early timeout");
        assert_eq!(t.e.output_len(a) + t.e.output_len(b), 0);
        assert_eq!(t.e.poll_timeout(), Some(due));
    }
    // A time from the past is just as harmless.
    t.e.handle_timeout(t.start);
    assert_eq!(t.take_actions(), vec![]);
    let after = (t.e.peer(a).unwrap().requests.clone(), t.e.stats(t.t));
    assert_eq!(before, after);
}

#[test]
fn dials_start_at_once_and_back_off_after_failures() {
    let mut t = T::new(Have::None);
    let x = addr(40);
    t.e.add_peers(t.now, t.t, [x]);
    assert_eq!(
        t.e.poll_timeout(),
        Some(t.now),
        "dial at the next timeout, now"
    );
    let mut dials = Vec::new();
    let mut key = 100;
    for _ in 0..2000 {
        let Some(at) = t.e.poll_timeout() else { break };
        if at > t.start + Duration::from_secs(200) {
            break;
        }
        t.now = t.now.max(at);
        t.e.handle_timeout(t.now);
        for a in t.take_actions() {
            if let Action::Dial { addr, torrent } = a {
                dials.push(t.elapsed().as_secs());
                t.e.handle_dialing(t.now, k(key), torrent, addr);
                t.e.handle_closed(t.now, k(key), CloseReason::Network("refused".into()));
                key += 1;
            }
        }
    }
    // 0, then waits of 2, 4, 8, 16, 32, 60, 60 ... seconds (ticks are 1 s apart).
    assert_eq!(dials[0], 0);
    let gaps: Vec<u64> = dials.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "{gaps:?}");
    assert!(gaps.iter().all(|&g| g <= 61), "{gaps:?}");
    assert!(gaps.last().is_some_and(|&g| g >= 60), "{gaps:?}");
}

// ------------------------------------------------------------------------------- determinism

#[test]
fn endgame_picks_depend_on_the_seed_alone() {
    // Two pickers built and driven the same way must pick the same blocks: their partial
    // pieces live in HashMaps whose iteration order differs between instances.
    fn run() -> Vec<BlockRef> {
        let layout = crate::metainfo::Layout::new(2 * BLOCK_LEN, &[64 * 2 * 16384]).unwrap();
        let n = layout.num_pieces();
        let mut rng = Rng::new(5);
        let mut p = Picker::new(
            layout,
            Bitfield::new(n),
            PickerConfig {
                random_first: 0,
                endgame_max_copies: 2,
            },
            &mut rng,
        );
        let all = Bitfield::full(n);
        let mut out = Vec::new();
        // Everything requested once (one block of each piece received, so every piece is
        // partial): endgame.
        p.pick(&all, usize::MAX, &mut rng, |_| false, &mut out);
        for b in out.iter().filter(|b| b.offset() == 0) {
            p.received(*b);
        }
        assert!(p.in_endgame());
        let mut dup = Vec::new();
        p.pick(&all, 20, &mut rng, |_| false, &mut dup);
        dup
    }
    let first = run();
    for _ in 0..10 {
        assert_eq!(run(), first);
    }
}

// Pinned from real clients
//
// What libtorrent 2.0.8.0 and Transmission 3.00 actually sent (the byte sequences and how
// they were captured are in `wire/captured.rs`), fed to an engine as they arrived. The
// engine's torrent has the capture torrent's layout (31 pieces of 32 KiB, 1,003,463 bytes, so
// the piece indices and the 4,039-byte last block in the captures mean the same here); its
// info hash is spliced into the captured handshakes.

use crate::wire::captured::*;

/// The capture torrent's layout (with this test's own data).
fn capture_layout() -> Tor {
    torrent(32 * 1024, &[1_003_463])
}

/// A captured handshake with our torrent's info hash in place of the capture torrent's.
fn real_handshake(t: &T, captured: &[u8; 68]) -> Vec<u8> {
    assert_eq!(captured[28..48], CAPTURE_INFO_HASH);
    let mut hs = captured.to_vec();
    hs[28..48].copy_from_slice(&t.tor.info_hash.0);
    hs
}

/// An inbound peer `n` that sent the captured handshake `hs` (peer `n` > 1 with the last
/// character of the peer id changed, so two peers are not one peer twice); returns its key
/// and our raw output so far (our handshake first).
fn real_peer(t: &mut T, n: u8, hs: &[u8; 68]) -> (PeerKey, Vec<u8>) {
    let key = t.accept(n);
    let mut bytes = real_handshake(t, hs);
    if n > 1 {
        bytes[67] = b'a' + n;
    }
    t.feed(key, &bytes);
    let out = t.out(key);
    t.hs_seen.insert(key);
    (key, out)
}

/// Our handshake off the front of `out`, and the messages after it.
fn split_output(t: &T, out: &[u8]) -> (Handshake, Vec<Message>) {
    let mut buf = BytesMut::from(out);
    let hs = Handshake::decode(&mut buf).unwrap().unwrap();
    let mut dec = Decoder::new(t.num_pieces());
    let mut msgs = Vec::new();
    while let Some(m) = dec.decode(&mut buf).unwrap() {
        msgs.push(m);
    }
    assert!(buf.is_empty());
    (hs, msgs)
}

fn our_ext_handshake(reqq: u32) -> Message {
    Message::Extended {
        id: 0,
        payload: wire::extension_handshake(reqq, concat!("bitmill ", env!("CARGO_PKG_VERSION"))),
    }
}

#[test]
fn transmission_3_00_gets_our_reqq_so_it_never_overflows_our_request_queue() {
    // The bug this pins: bitmill said nothing about its request queue, so Transmission 3.00
    // pipelined ten seconds of its download rate (every block of a 256 MiB torrent, 16,384
    // requests, within seconds), bitmill dropped the requests past its 2,000-entry queue
    // unanswered, and Transmission's download stalled for good at about a third.
    let mut t = T::with(Have::All, |c| c.max_peer_requests = 1234, capture_layout());
    let (_, out) = real_peer(&mut t, 1, TR_HANDSHAKE);
    let (ours, msgs) = split_output(&t, &out);
    // Our handshake offers the extension protocol and nothing else.
    assert_eq!(ours.reserved, [0, 0, 0, 0, 0, 0x10, 0, 0]);
    assert_eq!(
        msgs,
        [full_bitfield(CAPTURE_PIECES), our_ext_handshake(1234)]
    );
    // A peer without the BEP 10 bit gets no extension handshake.
    let key = t.accept(2);
    t.handshake(key, 2);
    let out = t.out(key);
    let (ours, msgs) = split_output(&t, &out);
    assert_eq!(ours.reserved, [0, 0, 0, 0, 0, 0x10, 0, 0]);
    assert_eq!(msgs, [full_bitfield(CAPTURE_PIECES)]);
    // The default queue is what we advertise by default.
    let mut t = T::with(Have::None, |_| {}, capture_layout());
    let (_, out) = real_peer(&mut t, 1, LT_HANDSHAKE);
    let (_, msgs) = split_output(&t, &out);
    assert_eq!(msgs, [our_ext_handshake(2000)]);
    assert_eq!(EngineConfig::default().max_peer_requests, 2000);
    assert!(t.closes().is_empty());
}

#[test]
fn our_dialed_handshake_offers_the_extension_protocol_too() {
    let mut t = T::with(Have::All, |_| {}, capture_layout());
    let far = addr(50);
    t.e.add_peers(t.now, t.t, [far]);
    t.e.handle_timeout(t.now);
    let d = k(30);
    t.e.handle_dialing(t.now, d, t.t, far);
    t.e.handle_connected(t.now, d);
    let out = t.out(d);
    let hs = Handshake::decode(&mut BytesMut::from(&out[..]))
        .unwrap()
        .unwrap();
    assert_eq!(hs.reserved, [0, 0, 0, 0, 0, 0x10, 0, 0]);
    // libtorrent answers; we follow with our bitfield and extension handshake.
    let bytes = real_handshake(&t, LT_HANDSHAKE);
    t.feed(d, &bytes);
    t.hs_seen.insert(d);
    assert_eq!(
        t.msgs(d),
        [full_bitfield(CAPTURE_PIECES), our_ext_handshake(2000)]
    );
}

#[test]
fn libtorrent_2_0_seed_opening_marks_it_a_seed_and_we_request_at_once() {
    let mut t = T::with(Have::None, |_| {}, capture_layout());
    let (p, _) = real_peer(&mut t, 1, LT_HANDSHAKE);
    // Extension handshake (ignored), have all, unchoke: one segment.
    t.feed(p, LT_SEED_OPENING);
    assert!(t.closes().is_empty());
    let s = t.e.stats(t.t);
    assert_eq!((s.peers, s.seeds), (1, 1), "have all makes it a seed");
    let msgs = t.msgs(p);
    assert_eq!(msgs[0], Message::Interested);
    let reqs = requests(&msgs);
    assert_eq!(reqs.len(), msgs.len() - 1, "{msgs:?}");
    assert!(!reqs.is_empty(), "unchoked: we ask at once");
    for r in &reqs {
        let Message::Request {
            index,
            begin,
            length,
        } = *r
        else {
            unreachable!()
        };
        let want = if (index, begin) == (30, 16384) {
            4039
        } else {
            16384
        };
        assert_eq!(length, want, "{r:?}");
    }
    // Its allowed-fast set and a second unchoke change nothing and ask nothing twice.
    t.feed(p, LT_ALLOWED_FAST);
    assert!(t.closes().is_empty());
    let more = requests(&t.msgs(p));
    let all: HashSet<_> = reqs.iter().chain(&more).map(|m| format!("{m:?}")).collect();
    assert_eq!(all.len(), reqs.len() + more.len(), "a block asked twice");
}

#[test]
fn what_real_seeds_send_bitmill_now_makes_them_seeds_we_want() {
    // Both answer our handshake (BEP 10 bit only) and extension handshake with theirs and a
    // bitfield; libtorrent unchokes at once, Transmission on its rechoke tick.
    for (hs, opening, unchoked) in [
        (LT_HANDSHAKE, LT_SEED_TO_BITMILL, true),
        (TR_HANDSHAKE, TR_SEED_TO_BITMILL, false),
    ] {
        let mut t = T::with(Have::None, |_| {}, capture_layout());
        let (p, _) = real_peer(&mut t, 1, hs);
        t.feed(p, opening);
        assert!(t.closes().is_empty());
        assert_eq!(t.e.stats(t.t).seeds, 1);
        let msgs = t.msgs(p);
        assert_eq!(msgs[0], Message::Interested);
        assert_eq!(!requests(&msgs).is_empty(), unchoked, "{msgs:?}");
    }
}

#[test]
fn transmission_3_00_seed_waits_for_its_rechoke_then_serves_us() {
    let mut t = T::with(Have::None, |_| {}, capture_layout());
    let (p, _) = real_peer(&mut t, 1, TR_HANDSHAKE);
    t.feed(p, TR_SEED_OPENING);
    assert!(t.closes().is_empty());
    assert_eq!(t.e.stats(t.t).seeds, 1);
    assert_eq!(t.msgs(p), [Message::Interested], "choked: no requests yet");
    // Ten seconds later: a reject for a block we never asked for (ignored), then unchoke.
    t.run_to(Duration::from_secs(10));
    t.msgs(p);
    t.feed(p, TR_REJECT_THEN_UNCHOKE);
    assert!(t.closes().is_empty());
    let reqs = requests(&t.msgs(p));
    assert!(!reqs.is_empty());
    // Serve them: the pieces verify.
    for r in &reqs {
        let m = t.piece_for(r);
        t.send(p, &[m]);
    }
    t.verify();
    assert!(t.e.have(t.t).unwrap().count() > 0);
    assert!(t.closes().is_empty());
}

#[test]
fn libtorrent_2_0_leecher_with_have_none_is_unchoked() {
    let mut t = T::with(Have::All, |_| {}, capture_layout());
    let (p, _) = real_peer(&mut t, 1, LT_HANDSHAKE);
    // Extension handshake, have none, interested.
    t.feed(p, LT_LEECH_OPENING);
    assert!(t.closes().is_empty());
    assert_eq!(t.msgs(p), [Message::Unchoke]);
    assert_eq!(t.e.stats(t.t).seeds, 0);
}

#[test]
fn transmission_3_00_leecher_sends_no_bitfield_and_is_served_its_requests() {
    let mut t = T::with(Have::All, |_| {}, capture_layout());
    let (p, _) = real_peer(&mut t, 1, TR_HANDSHAKE);
    // Transmission sends nothing at all for 12 s (no bitfield: it has nothing), then
    // interested and four requests, the second for the torrent's 4,039-byte last block.
    t.run_to(Duration::from_secs(12));
    t.msgs(p);
    t.feed(p, TR_LEECH_REQUESTS);
    assert!(t.closes().is_empty());
    let msgs = t.msgs(p);
    assert_eq!(msgs[0], Message::Unchoke);
    let served: Vec<(u32, u32, usize)> = msgs[1..]
        .iter()
        .map(|m| match m {
            Message::Piece {
                index,
                begin,
                block,
            } => {
                assert_eq!(*block, t.block(*index, *begin, block.len() as u32));
                (*index, *begin, block.len())
            }
            m => panic!("not a piece: {m:?}"),
        })
        .collect();
    assert_eq!(
        served,
        [
            (30, 0, 16384),
            (30, 16384, 4039),
            (0, 0, 16384),
            (0, 16384, 16384)
        ]
    );
}

#[test]
fn transmission_3_00_double_keepalive_keeps_an_idle_peer() {
    let mut t = T::with(Have::All, |_| {}, capture_layout());
    let (quiet, _) = real_peer(&mut t, 1, TR_HANDSHAKE);
    let (talks, _) = real_peer(&mut t, 2, TR_HANDSHAKE);
    // Transmission's keep-alives come after ~100 s of its silence, two at once.
    for at in [100, 200, 300] {
        t.run_to(Duration::from_secs(at));
        t.feed(talks, TR_KEEPALIVES);
    }
    t.run_to(Duration::from_secs(400));
    let closes = t.closes();
    assert_eq!(
        closes,
        [(quiet, CloseReason::Timeout)],
        "only the silent one goes, after the 300 s idle timeout"
    );
}

#[test]
fn a_port_message_is_ignored_without_closing() {
    // Not captured (both clients send `port` only with their DHT on): BEP 5's bytes, after
    // libtorrent's real handshake, which sets the DHT bit even with its DHT off.
    let mut t = T::with(Have::All, |_| {}, capture_layout());
    let (p, _) = real_peer(&mut t, 1, LT_HANDSHAKE);
    t.feed(p, &[0, 0, 0, 3, 9, 0x1a, 0xe1]);
    assert!(t.closes().is_empty());
    assert!(t.msgs(p).is_empty(), "nothing to answer");
    assert_eq!(t.e.stats(t.t).peers, 1);
}

#[test]
fn extended_messages_for_extensions_we_never_offered_are_ignored() {
    // Not captured (we offer no extension, so no client sent one): libtorrent's
    // `upload_only` (its id 3) and a BEP 9 metadata request with Transmission's id 3, sent
    // anyway. Both must be ignored, neither closes the peer.
    let mut t = T::with(Have::None, |_| {}, capture_layout());
    let (p, _) = real_peer(&mut t, 1, LT_HANDSHAKE);
    t.feed(p, LT_SEED_OPENING);
    t.msgs(p);
    let mut bytes = vec![0, 0, 0, 3, 20, 3, 1];
    let meta = b"d8:msg_typei0e5:piecei0ee";
    bytes.extend_from_slice(&(2 + meta.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&[20, 3]);
    bytes.extend_from_slice(meta);
    t.feed(p, &bytes);
    assert!(t.closes().is_empty());
    assert!(t.msgs(p).is_empty(), "nothing to answer");
    assert_eq!(t.e.stats(t.t).seeds, 1, "still connected, still a seed");
}

#[test]
fn a_real_bitfield_with_its_spare_bit_set_closes_the_peer() {
    // Transmission's real bitfield is accepted ...
    let mut t = T::with(Have::None, |_| {}, capture_layout());
    let (p, _) = real_peer(&mut t, 1, TR_HANDSHAKE);
    t.feed(p, TR_BITFIELD);
    assert!(t.closes().is_empty());
    assert_eq!(t.e.stats(t.t).seeds, 1);
    // ... and the same with the spare bit set (no client sent one) is a protocol error
    // (BEP 3: spare bits must be zero).
    let (q, _) = real_peer(&mut t, 2, TR_HANDSHAKE);
    let mut bad = TR_BITFIELD.to_vec();
    bad[8] |= 1;
    t.feed(q, &bad);
    let closes = t.closes();
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].0, q);
    assert!(is_protocol(&closes[0].1), "{closes:?}");
}

#[test]
fn an_idle_libtorrent_2_0_peer_hears_a_keep_alive_before_its_120_s_timeout() {
    // Captured: libtorrent 2.0.8.0 sends a keep-alive (`00 00 00 00`) after about 60 s of its
    // own silence and closes a connection silent for 120 s (its `peer_timeout`). A peer whose
    // first keep-alive was due at 121 s (bitmill's old two-minute interval on a one-second
    // tick) was dropped at 120.5 s; one sending every 90 s was kept.
    let mut t = T::with(Have::All, |_| {}, capture_layout());
    let (p, _) = real_peer(&mut t, 1, LT_HANDSHAKE);
    t.feed(p, LT_LEECH_OPENING);
    // We unchoke it; it asks for nothing (choked elsewhere, or busy): both sides go quiet.
    assert_eq!(t.msgs(p), [Message::Unchoke]);
    let mut sent_at = Vec::new();
    for s in 1..=300 {
        t.run_to(Duration::from_secs(s));
        if s % 60 == 0 {
            // libtorrent's own keep-alives, as captured.
            t.feed(p, &[0, 0, 0, 0]);
        }
        for m in t.msgs(p) {
            assert_eq!(m, Message::KeepAlive);
            sent_at.push(s);
        }
    }
    assert!(t.closes().is_empty());
    let mut last = 0;
    for s in &sent_at {
        assert!(s - last < 120, "silent from {last} s to {s} s: {sent_at:?}");
        last = *s;
    }
    assert!(300 - last < 120, "{sent_at:?}");
}

// Endgame duplicates and slot refill (swarm lab findings)
//
// What the swarm lab found and the engine now does: with three copies of a block allowed in
// endgame, 17% of all bytes received were thrown away (now: at most two holders per block,
// duplicates only to idle peers, two at a time, and a cancel to the other holder when a copy
// arrives); an upload slot freed between choker rounds stayed idle for up to 10 s (now: given
// to a waiting interested peer at once); under an upload cap a 4 MiB send buffer held seconds
// of blocks no cancel could stop (now: `send_buffer_for_rate`).

/// Two pieces of two blocks: the first seed to unchoke us is asked for all four blocks
/// (min_queue is 4), which leaves nothing free: endgame from the first batch on.
fn four_blocks() -> Tor {
    torrent(32 * 1024, &[64 * 1024])
}

/// The `cancel` that withdraws request `r`.
fn cancel_for(r: &Message) -> Message {
    let Message::Request {
        index,
        begin,
        length,
    } = *r
    else {
        panic!("not a request: {r:?}")
    };
    Message::Cancel {
        index,
        begin,
        length,
    }
}

/// Messages in a fixed order, to compare sets.
fn sorted(mut v: Vec<Message>) -> Vec<Message> {
    v.sort_by_key(|m| format!("{m:?}"));
    v
}

#[test]
fn endgame_duplicates_go_two_at_a_time_to_idle_peers_and_never_to_a_third() {
    let mut t = T::with(Have::None, |_| {}, four_blocks());
    let n = t.num_pieces();
    let [a, b, c, d] = [1, 2, 3, 4].map(|i| t.peer(i, Some(full_bitfield(n))));
    // a unchokes us first and is asked for every block: nothing is free any more.
    t.send(a, &[Message::Unchoke]);
    let ra = requests(&t.msgs(a));
    assert_eq!(ra.len(), 4, "{ra:?}");
    assert!(t.e.torrents[0].picker.in_endgame());
    // b, with nothing in flight, gets two duplicates (ENDGAME_BATCH), though its pipeline
    // (min_queue 4) has room for all four.
    t.send(b, &[Message::Unchoke]);
    let rb = requests(&t.msgs(b));
    assert_eq!(rb.len(), 2, "{rb:?}");
    assert_ne!(rb[0], rb[1]);
    assert!(rb.iter().all(|r| ra.contains(r)), "only blocks in flight");
    // b, with those two in flight and room for two more: no more duplicates until it is idle.
    t.send(b, &[Message::KeepAlive]);
    assert_eq!(t.msgs(b), vec![], "a busy peer gets no duplicates");
    // c, idle: exactly the two blocks only a holds; the two b holds have two holders already.
    t.send(c, &[Message::Unchoke]);
    let rc = requests(&t.msgs(c));
    let only_at_a: Vec<Message> = ra.iter().filter(|r| !rb.contains(r)).cloned().collect();
    assert_eq!(sorted(rc.clone()), sorted(only_at_a));
    // d, idle, room for four: every block has two holders, so nothing at all.
    t.send(d, &[Message::Unchoke]);
    assert_eq!(t.msgs(d), vec![], "no block is asked of a third peer");
    for r in &ra {
        let holders = [&ra, &rb, &rc].iter().filter(|rs| rs.contains(r)).count();
        assert_eq!(holders, 2, "{r:?}");
    }
    // c answers one of its blocks: a, its other holder, is told to cancel it, and only a.
    let m = t.piece_for(&rc[0]);
    t.send(c, &[m]);
    assert_eq!(t.msgs(a), vec![cancel_for(&rc[0])]);
    for o in [b, c, d] {
        assert_eq!(t.msgs(o), vec![], "peer {o:?}");
    }
    assert!(t.closes().is_empty());
}

#[test]
fn endgame_a_fast_peer_takes_over_a_slow_ones_blocks_and_each_copy_is_cancelled() {
    let mut t = T::with(Have::None, |_| {}, four_blocks());
    let (slow, fast) = leecher_with_two_seeds(&mut t);
    t.send(slow, &[Message::Unchoke]);
    let rs = requests(&t.msgs(slow));
    assert_eq!(rs.len(), 4);
    t.send(fast, &[Message::Unchoke]);
    let rf = requests(&t.msgs(fast));
    assert_eq!(rf.len(), 2, "{rf:?}");
    // fast answers its first: slow is told to cancel it; fast, one still in flight, gets
    // nothing new.
    let m = t.piece_for(&rf[0]);
    t.send(fast, &[m]);
    assert_eq!(t.msgs(slow), vec![cancel_for(&rf[0])]);
    assert_eq!(t.msgs(fast), vec![]);
    // Its second: cancelled at slow too; fast, idle again, takes slow's other two blocks.
    let m = t.piece_for(&rf[1]);
    t.send(fast, &[m]);
    assert_eq!(t.msgs(slow), vec![cancel_for(&rf[1])]);
    let rf2 = requests(&t.msgs(fast));
    let rest: Vec<Message> = rs.iter().filter(|r| !rf.contains(r)).cloned().collect();
    assert_eq!(sorted(rf2.clone()), sorted(rest));
    // slow's copy of the first, sent before our cancel reached it, is thrown away.
    let m = t.piece_for(&rf[0]);
    t.send(slow, &[m]);
    assert_eq!(t.e.stats(t.t).wasted, u64::from(BLOCK_LEN));
    assert_eq!(t.msgs(slow), vec![]);
    // Now slow wins one race and fast the other: each time the loser hears a cancel.
    let m = t.piece_for(&rf2[0]);
    t.send(slow, &[m]);
    assert_eq!(t.msgs(fast), vec![cancel_for(&rf2[0])]);
    let m = t.piece_for(&rf2[1]);
    t.send(fast, &[m]);
    assert_eq!(t.msgs(slow), vec![cancel_for(&rf2[1])]);
    t.verify();
    assert!(t.e.is_complete(t.t));
    let st = t.e.stats(t.t);
    assert_eq!(st.downloaded, 5 * u64::from(BLOCK_LEN));
    assert_eq!(
        st.wasted,
        u64::from(BLOCK_LEN),
        "one duplicate, not one per block"
    );
}

/// One torrent, choker with a single upload slot (one regular, no optimistic).
fn one_slot(have: Have, seed: u64) -> T {
    T::with(
        have,
        |c| {
            c.seed = seed;
            c.choker.regular_slots = 1;
            c.choker.optimistic_slots = 0;
        },
        torrent(32 * 1024, &[50_000, 30_000]),
    )
}

#[test]
fn a_slot_freed_by_lost_interest_or_a_disconnect_goes_to_a_waiting_peer_at_once() {
    let mut t = one_slot(Have::All, 7);
    let [p1, p2, p3] = [1, 2, 3].map(|i| t.peer(i, None));
    // Connected, never interested: never a candidate for a slot.
    let idle = t.peer(4, None);
    t.send(p1, &[Message::Interested]);
    assert_eq!(t.msgs(p1), vec![Message::Unchoke], "the one slot was free");
    t.send(p2, &[Message::Interested]);
    t.send(p3, &[Message::Interested]);
    assert_eq!(t.msgs(p2), vec![], "the slot is taken: p2 waits");
    assert_eq!(t.msgs(p3), vec![], "the slot is taken: p3 waits");
    t.take_actions();
    // No timer is due (the first choker round has not even run): whatever is sent next comes
    // from the event itself.
    assert!(t.e.poll_timeout().is_some_and(|at| at > t.now));
    t.send(p1, &[Message::NotInterested]);
    let (m2, m3) = (t.msgs(p2), t.msgs(p3));
    let (got, waits) = match (&m2[..], &m3[..]) {
        ([Message::Unchoke], []) => (p2, p3),
        ([], [Message::Unchoke]) => (p3, p2),
        _ => panic!("one waiting peer is unchoked at once: p2 {m2:?}, p3 {m3:?}"),
    };
    assert_eq!(
        t.msgs(p1),
        vec![Message::Choke],
        "it gave its slot up: choked, so it cannot come back to a slot it no longer holds"
    );
    assert_eq!(t.msgs(idle), vec![]);
    // It is served at once.
    let req = Message::Request {
        index: 0,
        begin: 0,
        length: 16384,
    };
    t.send(got, &[req.clone()]);
    assert_eq!(t.msgs(got), vec![t.piece_for(&req)]);
    // It disconnects: the other waiting peer gets the slot, again at once.
    t.e.handle_closed(t.now, got, CloseReason::Network("reset by peer".into()));
    assert_eq!(t.msgs(waits), vec![Message::Unchoke]);
    assert_eq!(t.msgs(p1), vec![]);
    assert_eq!(t.msgs(idle), vec![]);
    // p1 wants data again while the slot is taken: it waits (one slot, one peer served).
    t.send(p1, &[Message::Interested]);
    assert_eq!(t.msgs(p1), vec![], "the slot is taken: p1 waits");
    // The holder loses interest: p1 gets the slot, the holder is choked.
    t.send(waits, &[Message::NotInterested]);
    assert_eq!(t.msgs(p1), vec![Message::Unchoke]);
    assert_eq!(t.msgs(waits), vec![Message::Choke]);
    // p1 loses interest too, and nobody interested is waiting: nothing is sent to anyone
    // (idle, choked and not interested, stays choked; p1 keeps its slot, wanting nothing).
    t.take_actions();
    t.send(p1, &[Message::NotInterested]);
    assert_eq!(t.take_actions(), vec![], "not even a Flush");
    for o in [p1, waits, idle] {
        assert_eq!(t.e.output_len(o), 0, "peer {o:?}");
    }
    assert!(t.e.peer(idle).is_some_and(|p| p.am_choking));
    assert_eq!(
        t.elapsed(),
        Duration::ZERO,
        "all of it without the clock moving"
    );
}

#[test]
fn a_freed_slot_goes_to_the_waiting_peer_that_sends_us_most() {
    // Ties are broken at random: over sixteen seeds, chance alone would not pick the same peer
    // every time.
    for seed in 0..16 {
        let mut t = one_slot(Have::Pieces(&[0]), seed);
        let served = t.peer(1, Some(Message::HaveNone));
        let taker = t.peer(2, Some(Message::HaveNone));
        // It has pieces we lack (we say we are interested) and sends us one block.
        let giver = t.peer(3, Some(bitfield_of(3, &[1, 2])));
        t.send(served, &[Message::Interested]);
        assert_eq!(t.msgs(served), vec![Message::Unchoke], "seed {seed}");
        t.send(taker, &[Message::Interested]);
        t.send(giver, &[Message::Interested, Message::Unchoke]);
        let reqs = requests(&t.msgs(giver));
        assert!(!reqs.is_empty(), "seed {seed}");
        let m = t.piece_for(&reqs[0]);
        t.send(giver, &[m]);
        assert_eq!(t.msgs(giver), vec![], "seed {seed}: still choked");
        assert_eq!(t.msgs(taker), vec![], "seed {seed}: still choked");
        t.send(served, &[Message::NotInterested]);
        assert_eq!(t.msgs(giver), vec![Message::Unchoke], "seed {seed}");
        assert_eq!(t.msgs(taker), vec![], "seed {seed}");
    }
}

#[test]
fn send_buffer_for_rate_is_20_ms_of_the_rate_between_two_blocks_and_4_mib() {
    let two_blocks = 2 * (wire::PIECE_HEADER_LEN + BLOCK_LEN as usize);
    assert_eq!(two_blocks, 32_794);
    assert_eq!(send_buffer_for_rate(0), two_blocks);
    assert_eq!(
        send_buffer_for_rate(1_000_000),
        two_blocks,
        "20 ms of 1 MB/s is 20 000 bytes: less than two blocks"
    );
    assert_eq!(send_buffer_for_rate(50 * 32_794), two_blocks);
    assert_eq!(send_buffer_for_rate(50 * 32_794 + 50), two_blocks + 1);
    assert_eq!(send_buffer_for_rate(10_000_000), 200_000);
    assert_eq!(send_buffer_for_rate(100 << 20), 2 << 20);
    assert_eq!(send_buffer_for_rate(50 * (4 << 20)), 4 << 20);
    assert_eq!(send_buffer_for_rate(50 * (4 << 20) + 50), 4 << 20);
    assert_eq!(send_buffer_for_rate(10_000_000_000), 4 << 20);
    assert_eq!(
        send_buffer_for_rate(u64::MAX),
        EngineConfig::default().send_buffer,
        "no higher than the default"
    );
}

#[test]
fn under_an_upload_cap_blocks_wait_as_requests_not_in_the_socket_queue() {
    // A 1 MB/s cap: two blocks of buffer.
    let buf = send_buffer_for_rate(1_000_000);
    let block = wire::PIECE_HEADER_LEN + BLOCK_LEN as usize;
    let mut t = T::with(Have::All, |c| c.send_buffer = buf, eight_pieces());
    let p = t.peer(1, None);
    t.send(p, &[Message::Interested]);
    assert_eq!(t.msgs(p), vec![Message::Unchoke]);
    let reqs: Vec<Message> = (0..4)
        .flat_map(|index| {
            [0, 16384].map(|begin| Message::Request {
                index,
                begin,
                length: 16384,
            })
        })
        .collect();
    t.send(p, &reqs);
    assert_eq!(t.e.output_len(p), 2 * block, "two blocks queued, six wait");
    let headers: Vec<Vec<u8>> = t.e.output(p).step_by(2).map(<[u8]>::to_vec).collect();
    assert_eq!(
        headers,
        vec![
            wire::piece_header(0, 0, 16384).to_vec(),
            wire::piece_header(0, 16384, 16384).to_vec()
        ]
    );
    // So a cancel (endgame, elsewhere) still stops the last two.
    t.send(p, &[cancel_for(&reqs[6]), cancel_for(&reqs[7])]);
    // The socket takes 4 KiB at a time (a capped writer): the engine tops the queue up, never
    // past its buffer plus the one block that crosses the line.
    let mut bytes = Vec::new();
    let mut most = 0;
    while t.e.output_len(p) > 0 {
        let queued = t.e.output_len(p);
        most = most.max(queued);
        let n = queued.min(4096);
        let out: Vec<u8> = t.e.output(p).flat_map(|b| b.iter().copied()).collect();
        bytes.extend_from_slice(&out[..n]);
        t.e.consume_output(t.now, p, n);
        t.collect();
    }
    assert!(
        most < buf + block,
        "{most} bytes queued for a {buf}-byte buffer"
    );
    let mut rx = BytesMut::from(&bytes[..]);
    let mut dec = Decoder::new(t.num_pieces());
    let mut served = Vec::new();
    while let Some(m) = dec.decode(&mut rx).unwrap() {
        served.push(m);
    }
    assert!(rx.is_empty());
    let want: Vec<Message> = reqs[..6].iter().map(|r| t.piece_for(r)).collect();
    assert_eq!(served, want, "in order, the cancelled two never sent");
    assert_eq!(t.e.stats(t.t).uploaded, 6 * u64::from(BLOCK_LEN));
}

// The peer's own request limit (BEP 10 `reqq`)

#[test]
fn never_more_requests_in_flight_than_the_peer_said_it_queues() {
    let mut t = T::with(Have::None, |c| c.min_queue = 8, eight_pieces());
    let (a, b) = leecher_with_two_seeds(&mut t);
    // a says it queues 3 requests (as a real client's extension handshake does); b says
    // nothing, and a malformed handshake from b changes nothing (and does not close b).
    let hs = Bytes::from_static(b"d1:md6:ut_pexi1ee4:reqqi3e1:v4:teste");
    t.send(a, &[Message::Extended { id: 0, payload: hs }]);
    t.send(
        b,
        &[Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"d4:reqq"),
        }],
    );
    assert!(t.closes().is_empty());
    t.send(a, &[Message::Unchoke]);
    let first = requests(&t.msgs(a));
    assert_eq!(first.len(), 3, "capped by a's reqq, not min_queue 8");
    // One block arrives: exactly one more request goes out, never a fourth in flight.
    t.send(a, &[t.piece_for(&first[0])]);
    assert!(requests(&t.msgs(a)).len() <= 1);
    assert!(t.e.peer(a).unwrap().requests.len() <= 3);
    t.send(b, &[Message::Unchoke]);
    assert_eq!(requests(&t.msgs(b)).len(), 8, "b is asked for min_queue");
}
