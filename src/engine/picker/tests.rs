//! Unit tests of the parent module, compiled only under `#[cfg(test)]`.
//! Picker traces. Availability and "have" are set up from strings, one character a piece:
//! `setup("2223333", "* *    ")` = pieces 0..2 held by two peers, 3..6 by three; we have
//! pieces 0 and 2.

use super::*;

const PL: u32 = 4 * BLOCK_LEN; // four blocks a piece

fn layout(n: usize) -> Layout {
    Layout::new(PL, &[u64::from(PL) * n as u64]).unwrap()
}

/// A picker with per-piece availability from digits and our pieces marked by `*`.
fn setup(avail: &str, have: &str) -> (Picker, Rng) {
    setup_with(
        avail,
        have,
        PickerConfig {
            random_first: 0,
            ..Default::default()
        },
    )
}

fn setup_with(avail: &str, have: &str, cfg: PickerConfig) -> (Picker, Rng) {
    let n = avail.len();
    let mut h = Bitfield::new(n as u32);
    for (i, c) in have.chars().enumerate() {
        if c == '*' {
            h.set(i as u32);
        }
    }
    let mut rng = Rng::new(42);
    let mut p = Picker::new(layout(n), h, cfg, &mut rng);
    for (i, c) in avail.chars().enumerate() {
        for _ in 0..c.to_digit(10).unwrap() {
            p.peer_has(pi(i as u32));
        }
    }
    (p, rng)
}

/// A peer's bitfield from a string: `*` = has.
fn bits(s: &str) -> Bitfield {
    let mut b = Bitfield::new(s.len() as u32);
    for (i, c) in s.chars().enumerate() {
        if c == '*' {
            b.set(i as u32);
        }
    }
    b
}

fn pick(p: &mut Picker, rng: &mut Rng, peer: &Bitfield, max: usize) -> Vec<BlockRef> {
    let mut out = Vec::new();
    p.pick(peer, max, rng, |_| false, &mut out);
    out
}

fn pieces_of(blocks: &[BlockRef]) -> Vec<u32> {
    let mut v: Vec<u32> = blocks.iter().map(|b| b.piece().get()).collect();
    v.dedup();
    v
}

fn pi(i: u32) -> PieceIndex {
    PieceIndex::new_unchecked(i)
}

#[test]
fn rarest_piece_is_picked_first() {
    let (mut p, mut rng) = setup("3332333", "       ");
    let got = pick(&mut p, &mut rng, &bits("*******"), 4);
    assert_eq!(pieces_of(&got), vec![3]);
    assert_eq!(got.len(), 4, "a whole piece: four blocks");
    // Pieces we have are never picked even when rarest.
    let (mut p, mut rng) = setup("3312333", "  *    ");
    assert_eq!(
        pieces_of(&pick(&mut p, &mut rng, &bits("*******"), 4)),
        vec![3]
    );
    // Only what the peer has.
    let (mut p, mut rng) = setup("1112333", "       ");
    assert_eq!(
        pieces_of(&pick(&mut p, &mut rng, &bits("    * *"), 4)),
        vec![4]
    );
}

#[test]
fn ties_between_equally_rare_pieces_are_broken_at_random() {
    let mut seen = std::collections::HashSet::new();
    for seed in 0..64 {
        let (mut p, _) = setup("2222111", "       ");
        let mut rng = Rng::new(seed);
        let got = pick(&mut p, &mut rng, &bits("*******"), 1);
        let piece = got[0].piece().get();
        assert!((4..7).contains(&piece), "rarest are 4, 5, 6; got {piece}");
        seen.insert(piece);
    }
    assert_eq!(
        seen.len(),
        3,
        "every rarest piece gets picked for some seed"
    );
}

#[test]
fn availability_changes_move_pieces_between_buckets() {
    let (mut p, mut rng) = setup("1111", "    ");
    // Everyone else gets more common; piece 2 stays rarest.
    for i in [0, 1, 3] {
        p.peer_has(pi(i));
    }
    assert_eq!(
        pieces_of(&pick(&mut p, &mut rng, &bits("****"), 1)),
        vec![2]
    );
    // A peer with pieces 2 and 3 leaves; piece 3 is now rarest of the untouched ones.
    p.peer_left(&bits("  **"), false);
    p.peer_left(&bits("   *"), false);
    assert_eq!(p.availability(pi(3)), 0);
    assert_eq!(
        pieces_of(&pick(&mut p, &mut rng, &bits("****"), 4)),
        vec![2, 3]
    );
}

#[test]
fn seeds_are_counted_without_touching_pieces() {
    let (mut p, _) = setup("0000", "    ");
    assert!(p.peer_joined(&bits("****")));
    assert!(!p.peer_joined(&bits("**  ")));
    assert_eq!(p.availability(pi(0)), 2);
    assert_eq!(p.availability(pi(3)), 1);
    p.peer_left(&bits("****"), true);
    assert_eq!(p.seeds(), 0);
    assert_eq!(p.availability(pi(0)), 1);
}

#[test]
fn first_pieces_are_random_not_rarest() {
    let cfg = PickerConfig {
        random_first: 4,
        ..Default::default()
    };
    let mut picked_rarest = 0;
    for seed in 0..100 {
        // Piece 0 is by far the rarest.
        let (mut p, _) = setup_with("19999999999999999999", "                    ", cfg);
        let mut rng = Rng::new(seed);
        let got = pick(&mut p, &mut rng, &bits("********************"), 1);
        if got[0].piece().get() == 0 {
            picked_rarest += 1;
        }
    }
    assert!(
        picked_rarest < 20,
        "random first pieces: rarest picked {picked_rarest}/100 times"
    );
    // Once we hold four pieces, rarest first takes over.
    let (mut p, mut rng) = setup_with("19999999999999999999", " ****               ", cfg);
    assert_eq!(
        pieces_of(&pick(&mut p, &mut rng, &bits("********************"), 1)),
        vec![0]
    );
}

#[test]
fn partial_pieces_are_finished_before_new_ones_start() {
    let (mut p, mut rng) = setup("1233", "    ");
    // Peer A takes two blocks of piece 0 (the rarest), then goes away.
    let a = pick(&mut p, &mut rng, &bits("****"), 2);
    assert_eq!(
        a.iter()
            .map(|b| (b.piece().get(), b.offset()))
            .collect::<Vec<_>>(),
        vec![(0, 0), (0, BLOCK_LEN)]
    );
    p.received(a[0]);
    p.abort(a[1]);
    // Peer B, who has everything: finish piece 0 first (3 free blocks), then start piece 1.
    let b = pick(&mut p, &mut rng, &bits("****"), 5);
    assert_eq!(
        b.iter()
            .map(|b| (b.piece().get(), b.offset() / BLOCK_LEN))
            .collect::<Vec<_>>(),
        vec![(0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    );
    // The most advanced partial piece goes first.
    let (mut p, mut rng) = setup("1111", "    ");
    let x = pick(&mut p, &mut rng, &bits("*   "), 1);
    let y = pick(&mut p, &mut rng, &bits(" *  "), 3);
    for b in y.iter().chain(&x) {
        p.abort(*b);
    }
    p.received(y[0]);
    p.received(y[1]);
    let _ = pick(&mut p, &mut rng, &bits("*   "), 1); // piece 0 restarted: 1 block requested
    let z = pick(&mut p, &mut rng, &bits("**  "), 1);
    assert_eq!(
        z[0].piece().get(),
        1,
        "piece 1 has two blocks received, piece 0 only one requested"
    );
}

#[test]
fn pieces_complete_verify_and_fail() {
    let (mut p, mut rng) = setup("11", "  ");
    let got = pick(&mut p, &mut rng, &bits("* "), 10);
    assert_eq!(got.len(), 4);
    for b in &got[..3] {
        assert_eq!(p.received(*b), Received::Stored);
    }
    assert_eq!(p.received(got[3]), Received::PieceComplete(pi(0)));
    assert_eq!(p.received(got[3]), Received::Duplicate);
    assert!(!p.wants(pi(0)), "waiting for the hash check");
    assert!(pick(&mut p, &mut rng, &bits("* "), 10).is_empty());
    // The hash check fails: all four blocks are free again.
    p.piece_failed(pi(0));
    assert_eq!(p.free_blocks(), 8);
    let again = pick(&mut p, &mut rng, &bits("* "), 10);
    assert_eq!(again, got);
    for b in &again {
        p.received(*b);
    }
    p.piece_passed(pi(0));
    assert!(p.have().get(0));
    assert_eq!(p.received(got[0]), Received::Duplicate);
    assert!(!p.interesting(&bits("* ")));
    assert!(p.interesting(&bits(" *")));
}

#[test]
fn endgame_requests_duplicates_from_other_peers_and_cancel_is_possible() {
    let (mut p, mut rng) = setup("22", "  ");
    let a = pick(&mut p, &mut rng, &bits("**"), 100);
    assert_eq!(a.len(), 8, "all blocks requested from peer A");
    assert!(p.in_endgame());
    // Peer A is asked for nothing more: every block is already requested from A.
    let mut out = Vec::new();
    p.pick(&bits("**"), 100, &mut rng, |b| a.contains(&b), &mut out);
    assert!(out.is_empty());
    // Peer B gets duplicates of A's outstanding blocks.
    let b = pick(&mut p, &mut rng, &bits("**"), 100);
    assert_eq!(b.len(), 8);
    assert!(b.iter().all(|x| a.contains(x)));
    // A copy arrives from B; A's request for it should be cancelled by the engine, and the
    // block is no longer offered.
    assert_eq!(p.received(b[0]), Received::Stored);
    assert!(p.is_block_received(b[0]));
    // Max copies (2 by default) respected: every block still missing is asked of A and B
    // already, so a third peer gets no copy...
    let mut c = Vec::new();
    p.pick(&bits("**"), 100, &mut rng, |_| false, &mut c);
    assert!(c.is_empty(), "{c:?}");
    // ...until a copy is aborted (B's request for it cancelled): then one is offered again.
    p.abort(b[1]);
    let mut d = Vec::new();
    p.pick(&bits("**"), 100, &mut rng, |_| false, &mut d);
    assert_eq!(d, [b[1]]);
}

#[test]
fn aborted_requests_return_blocks_to_the_pool() {
    let (mut p, mut rng) = setup("1", " ");
    let a = pick(&mut p, &mut rng, &bits("*"), 2);
    assert_eq!(p.free_blocks(), 2);
    p.abort(a[0]);
    p.abort(a[0]); // a second abort of the same block changes nothing
    assert_eq!(p.free_blocks(), 3);
    // Everything but a[1] (still requested from peer A) is offered, with no duplicates.
    let mut b = Vec::new();
    p.pick(&bits("*"), 10, &mut rng, |x| x == a[1], &mut b);
    assert_eq!(b.len(), 3);
    assert!(b.contains(&a[0]));
}

#[test]
fn short_last_piece_has_short_last_block() {
    let l = Layout::new(PL, &[u64::from(PL) + 100]).unwrap();
    let mut rng = Rng::new(1);
    let mut p = Picker::new(
        l,
        Bitfield::new(2),
        PickerConfig {
            random_first: 0,
            ..Default::default()
        },
        &mut rng,
    );
    p.peer_has(pi(1));
    let got = pick(&mut p, &mut rng, &bits(" *"), 10);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].offset(), got[0].len()), (0, 100));
    assert_eq!(p.received(got[0]), Received::PieceComplete(pi(1)));
}

/// Random operation sequences keep the bucket invariants and the free-block count.
#[test]
fn random_operations_keep_invariants() {
    for seed in 0..50 {
        let mut rng = Rng::new(seed);
        let n = 1 + rng.below(40) as usize;
        let (mut p, _) = setup(&"0".repeat(n), &" ".repeat(n));
        let mut peers: Vec<(Bitfield, bool)> = Vec::new();
        let mut inflight: Vec<BlockRef> = Vec::new();
        for _ in 0..400 {
            match rng.below(6) {
                0 => {
                    let mut b = Bitfield::new(n as u32);
                    for i in 0..n as u32 {
                        if rng.below(2) == 0 {
                            b.set(i);
                        }
                    }
                    let s = p.peer_joined(&b);
                    peers.push((b, s));
                }
                1 if !peers.is_empty() => {
                    let i = rng.below(peers.len() as u64) as usize;
                    let (b, s) = peers.swap_remove(i);
                    p.peer_left(&b, s);
                }
                2 if !peers.is_empty() => {
                    let i = rng.below(peers.len() as u64) as usize;
                    let b = peers[i].0.clone();
                    let mut out = Vec::new();
                    p.pick(
                        &b,
                        1 + rng.below(10) as usize,
                        &mut rng,
                        |x| inflight.contains(&x),
                        &mut out,
                    );
                    for x in &out {
                        assert!(b.get(x.piece().get()), "picked a piece the peer lacks");
                        assert!(!p.have().get(x.piece().get()));
                    }
                    inflight.extend(out);
                }
                3 if !inflight.is_empty() => {
                    let i = rng.below(inflight.len() as u64) as usize;
                    let b = inflight.swap_remove(i);
                    if let Received::PieceComplete(piece) = p.received(b) {
                        if rng.below(4) == 0 {
                            p.piece_failed(piece);
                        } else {
                            p.piece_passed(piece);
                        }
                    }
                }
                4 if !inflight.is_empty() => {
                    let i = rng.below(inflight.len() as u64) as usize;
                    p.abort(inflight.swap_remove(i));
                }
                _ => {}
            }
            check(&p, &peers);
        }
    }
}

fn check(p: &Picker, peers: &[(Bitfield, bool)]) {
    let n = p.layout.num_pieces() as usize;
    for i in 0..n {
        assert_eq!(p.order[p.pos[i] as usize] as usize, i);
        let want = peers.iter().filter(|(b, s)| !s && b.get(i as u32)).count() as u32;
        assert_eq!(p.avail[i], want, "availability of piece {i}");
    }
    for w in p.order.windows(2) {
        assert!(
            p.avail[w[0] as usize] <= p.avail[w[1] as usize],
            "order sorted by availability"
        );
    }
    for (a, &start) in p.bucket.iter().enumerate() {
        let first_at_least = p
            .order
            .iter()
            .position(|&q| p.avail[q as usize] >= a as u32)
            .unwrap_or(n) as u32;
        assert_eq!(start, first_at_least, "bucket {a}");
    }
    let mut free = 0u64;
    for q in p.layout.pieces() {
        if p.have.get(q.get()) || p.verifying.get(q.get()) {
            continue;
        }
        free += match p.partial.get(&q.get()) {
            Some(part) => {
                let f = part.blocks.iter().filter(|&&s| s == 0).count() as u32;
                assert_eq!(f, part.free);
                u64::from(f)
            }
            None => u64::from(p.layout.num_blocks(q)),
        };
    }
    assert_eq!(free, p.free_blocks);
}

#[test]
fn the_duplicate_limit_holds_when_one_call_takes_the_last_free_blocks() {
    let (mut p, mut rng) = setup("22", "  ");
    let a = pick(&mut p, &mut rng, &bits("**"), 6);
    assert_eq!(a.len(), 6);
    assert_eq!(p.free_blocks(), 2);
    assert!(!p.in_endgame());
    // B has room for 100: it gets the 2 free blocks and then at most 2 duplicates of A's.
    let mut b = Vec::new();
    p.pick_limited(&bits("**"), 100, 2, &mut rng, |_| false, &mut b);
    assert_eq!(b.len(), 4, "{b:?}");
    assert_eq!(b.iter().filter(|x| a.contains(x)).count(), 2);
    assert!(p.in_endgame());
    // A peer allowed no duplicates gets nothing now.
    let mut c = Vec::new();
    p.pick_limited(&bits("**"), 100, 0, &mut rng, |_| false, &mut c);
    assert!(c.is_empty(), "{c:?}");
}
