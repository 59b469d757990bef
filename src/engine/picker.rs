//! The piece picker: which blocks to request from which peer.
//!
//! Policy, in order (BEP 3 and what mature clients do):
//! 1. **Finish partial pieces first**: free blocks of pieces already started, the most
//!    complete first, so pieces verify and become tradeable soon and partial data stays small.
//! 2. **Random first pieces**: while we hold fewer than [`PickerConfig::random_first`] pieces,
//!    start a random piece the peer has, so a new peer quickly has something to trade
//!    (the rarest piece is usually slow to get: few peers have it).
//! 3. **Rarest first**: start the piece with the lowest availability among the peer's pieces,
//!    ties broken at random.
//! 4. **Endgame**: when every block we lack is already requested, request blocks that are in
//!    flight from other peers too; the engine cancels the duplicates when a copy arrives.
//!
//! Availability is kept in buckets (pieces sorted by availability, with the start of each
//! availability's run recorded), so a `have` or a peer leaving moves one piece by one swap,
//! O(1), and picking scans from the rarest end.
//!
//! Invariants:
//! - `order` is a permutation of all pieces, sorted by `avail`; `pos[order[i]] == i`;
//!   `bucket[a]` is the first position with availability `>= a`.
//! - A piece is in exactly one of: had, partial (in `partial`), or untouched.
//! - For a partial piece, `free + requested + received == num_blocks` where each block is
//!   counted by its state; `free_blocks` is the sum of free blocks over all pieces we lack
//!   (untouched pieces count all their blocks).
//!
//! Sans-IO: no clock, no I/O; randomness from the [`Rng`] passed in.

use std::collections::HashMap;

use crate::bitfield::Bitfield;
use crate::metainfo::{BlockRef, Layout, PieceIndex, BLOCK_LEN};
use crate::rng::Rng;

/// Picker settings.
#[derive(Clone, Copy, Debug)]
pub struct PickerConfig {
    /// Pick at random while we have fewer than this many pieces.
    pub random_first: u32,
    /// In endgame, the most peers one block is requested from at once. Default 2: one
    /// duplicate beats a slow or stalled holder; more only multiply the bytes thrown away
    /// (the swarm lab measured 17% of all bytes received wasted with 3 copies).
    pub endgame_max_copies: u8,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig {
            random_first: 4,
            endgame_max_copies: 2,
        }
    }
}

/// Block state in a partial piece: 0 free, 1..=253 requested from that many peers,
/// RECEIVED when its data is stored.
const RECEIVED: u8 = 255;

#[derive(Clone, Debug)]
struct Partial {
    blocks: Vec<u8>,
    free: u32,
    received: u32,
}

/// What a received block meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Stored; the piece still lacks blocks.
    Stored,
    /// Stored, and it was the piece's last block: verify the piece.
    PieceComplete(PieceIndex),
    /// We already had this block (an endgame duplicate or unrequested data): not stored.
    Duplicate,
}

/// Availability, had/partial state, and block states for one torrent.
#[derive(Clone, Debug)]
pub struct Picker {
    layout: Layout,
    cfg: PickerConfig,
    have: Bitfield,
    avail: Vec<u32>,
    order: Vec<u32>,
    pos: Vec<u32>,
    bucket: Vec<u32>,
    partial: HashMap<u32, Partial>,
    /// Pieces complete and waiting for the hash check (not pickable).
    verifying: Bitfield,
    free_blocks: u64,
    /// Peers that have every piece (seeds), counted apart so they cost nothing per piece.
    seeds: u32,
}

impl Picker {
    /// A picker for a torrent of which we hold `have`.
    pub fn new(layout: Layout, have: Bitfield, cfg: PickerConfig, rng: &mut Rng) -> Picker {
        let n = layout.num_pieces();
        let mut order: Vec<u32> = (0..n).collect();
        rng.shuffle(&mut order);
        let mut pos = vec![0; n as usize];
        for (i, &p) in order.iter().enumerate() {
            pos[p as usize] = i as u32;
        }
        let free_blocks = layout
            .pieces()
            .filter(|p| !have.get(p.get()))
            .map(|p| u64::from(layout.num_blocks(p)))
            .sum();
        Picker {
            verifying: Bitfield::new(n),
            layout,
            cfg,
            have,
            avail: vec![0; n as usize],
            order,
            pos,
            bucket: vec![0, n],
            partial: HashMap::new(),
            free_blocks,
            seeds: 0,
        }
    }

    /// Pieces verified so far.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Every piece verified.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// How many connected peers have `piece` (seeds included).
    pub fn availability(&self, piece: PieceIndex) -> u32 {
        self.avail[piece.idx()] + self.seeds
    }

    /// Blocks of pieces we lack that nobody has been asked for.
    pub fn free_blocks(&self) -> u64 {
        self.free_blocks
    }

    /// Every block we lack is requested or received: duplicates are allowed now.
    pub fn in_endgame(&self) -> bool {
        self.free_blocks == 0 && !self.is_complete()
    }

    /// Number of pieces started but not complete.
    pub fn partial_pieces(&self) -> usize {
        self.partial.len()
    }

    fn inc(&mut self, p: u32) {
        let a = self.avail[p as usize] as usize;
        if self.bucket.len() < a + 3 {
            let n = self.layout.num_pieces();
            self.bucket.resize(a + 3, n);
        }
        // Move p to the last slot of bucket a, then shrink bucket a by one from the end,
        // which makes p the first element of bucket a + 1.
        let last = self.bucket[a + 1] - 1;
        self.swap(self.pos[p as usize], last);
        self.bucket[a + 1] -= 1;
        self.avail[p as usize] += 1;
    }

    fn dec(&mut self, p: u32) {
        let a = self.avail[p as usize] as usize;
        if a == 0 {
            return; // NOTE: a peer announced nothing for this piece; ignore the imbalance.
        }
        // Move p to the first slot of bucket a, then grow bucket a - 1 by one.
        let first = self.bucket[a];
        self.swap(self.pos[p as usize], first);
        self.bucket[a] += 1;
        self.avail[p as usize] -= 1;
    }

    fn swap(&mut self, i: u32, j: u32) {
        let (pi, pj) = (self.order[i as usize], self.order[j as usize]);
        self.order.swap(i as usize, j as usize);
        self.pos[pi as usize] = j;
        self.pos[pj as usize] = i;
    }

    /// A peer announced `have` for one piece.
    pub fn peer_has(&mut self, piece: PieceIndex) {
        self.inc(piece.get());
    }

    /// A peer's bitfield arrived. Returns whether it was counted as a seed (a full bitfield
    /// costs nothing per piece); pass that back to [`Picker::peer_left`]. `have` messages
    /// from a peer counted as a seed must not be passed to [`Picker::peer_has`].
    pub fn peer_joined(&mut self, bits: &Bitfield) -> bool {
        if bits.is_full() {
            self.seeds += 1;
            return true;
        }
        for p in bits.ones() {
            self.inc(p);
        }
        false
    }

    /// A peer left; `bits` is what it had, `as_seed` what [`Picker::peer_joined`] returned.
    pub fn peer_left(&mut self, bits: &Bitfield, as_seed: bool) {
        if as_seed {
            self.seeds = self.seeds.saturating_sub(1);
            return;
        }
        for p in bits.ones() {
            self.dec(p);
        }
    }

    /// Connected peers counted as seeds.
    pub fn seeds(&self) -> u32 {
        self.seeds
    }

    /// We want this piece: not had, not waiting for its hash check.
    pub fn wants(&self, piece: PieceIndex) -> bool {
        !self.have.get(piece.get()) && !self.verifying.get(piece.get())
    }

    /// Does a peer with `bits` have anything we want?
    pub fn interesting(&self, bits: &Bitfield) -> bool {
        if self.is_complete() {
            return false;
        }
        if bits.is_full() {
            return true;
        }
        bits.ones()
            .any(|p| !self.have.get(p) && !self.verifying.get(p))
    }

    /// Picks up to `max` blocks to request from a peer that has `bits`, appending them to
    /// `out`. `already` tells whether a block is already requested from this very peer (used
    /// in endgame so a peer is never asked twice for one block).
    pub fn pick(
        &mut self,
        bits: &Bitfield,
        max: usize,
        rng: &mut Rng,
        already: impl Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        self.pick_limited(bits, max, max, rng, already, out);
    }

    /// [`Picker::pick`], with at most `max_duplicates` of the picks being endgame duplicates
    /// (blocks already requested elsewhere). The limit holds also when this very call takes
    /// the last free blocks and so enters endgame half-way.
    pub fn pick_limited(
        &mut self,
        bits: &Bitfield,
        max: usize,
        max_duplicates: usize,
        rng: &mut Rng,
        already: impl Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let start = out.len();
        let want = |out: &Vec<BlockRef>| out.len() - start < max;
        if max == 0 || self.is_complete() {
            return;
        }
        // 1. Free blocks of partial pieces the peer has, most complete first.
        if self.free_blocks > 0 && !self.partial.is_empty() {
            let mut cands: Vec<(u32, u32)> = self
                .partial
                .iter()
                .filter(|(&p, part)| part.free > 0 && bits.get(p))
                .map(|(&p, part)| (part.received + requested(part), p))
                .collect();
            // Most progressed first; piece index as a stable tie-break.
            cands.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            for (_, p) in cands {
                self.take_free(p, max - (out.len() - start), out);
                if !want(out) {
                    return;
                }
            }
        }
        // 2 and 3. Start new pieces.
        while want(out) && self.free_blocks > 0 {
            let Some(p) = self.pick_new_piece(bits, rng) else {
                break;
            };
            self.start(p);
            self.take_free(p, max - (out.len() - start), out);
        }
        // 4. Endgame: duplicate requests for blocks in flight elsewhere.
        let max = max.min(out.len() - start + max_duplicates);
        if out.len() - start < max && self.free_blocks == 0 {
            let mut pieces: Vec<u32> = self
                .partial
                .keys()
                .copied()
                .filter(|&p| bits.get(p))
                .collect();
            // A HashMap's order differs from run to run: sort first, so the shuffle (and the
            // whole run) depends on the seed alone.
            pieces.sort_unstable();
            rng.shuffle(&mut pieces);
            for p in pieces {
                let plen = self.layout.piece_len(PieceIndex::new_unchecked(p));
                let max_copies = self.cfg.endgame_max_copies;
                let Some(part) = self.partial.get_mut(&p) else {
                    continue;
                };
                for (i, st) in part.blocks.iter_mut().enumerate() {
                    if *st == RECEIVED || *st == 0 || *st >= max_copies {
                        continue;
                    }
                    let b = block_at(PieceIndex::new_unchecked(p), plen, i as u32);
                    if already(b) || out[start..].contains(&b) {
                        continue;
                    }
                    *st += 1;
                    out.push(b);
                    if out.len() - start >= max {
                        return;
                    }
                }
            }
        }
    }

    fn pick_new_piece(&self, bits: &Bitfield, rng: &mut Rng) -> Option<u32> {
        let untouched =
            |p: u32| !self.have.get(p) && !self.verifying.get(p) && !self.partial.contains_key(&p);
        let n = self.layout.num_pieces();
        if self.have.count() < self.cfg.random_first {
            // Random: start at a random position and take the first suitable piece.
            let off = rng.below(u64::from(n)) as u32;
            return (0..n)
                .map(|i| (off + i) % n)
                .find(|&p| bits.get(p) && untouched(p));
        }
        // Rarest first: scan buckets from the lowest availability, each from a random offset.
        let nb = self.bucket.len() - 1;
        for a in 0..nb {
            let (lo, hi) = (self.bucket[a], self.bucket[a + 1]);
            if lo >= hi {
                continue;
            }
            let len = hi - lo;
            let off = rng.below(u64::from(len)) as u32;
            for i in 0..len {
                let p = self.order[(lo + (off + i) % len) as usize];
                if bits.get(p) && untouched(p) {
                    return Some(p);
                }
            }
        }
        None
    }

    fn start(&mut self, p: u32) {
        let nb = self.layout.num_blocks(PieceIndex::new_unchecked(p));
        self.partial.insert(
            p,
            Partial {
                blocks: vec![0; nb as usize],
                free: nb,
                received: 0,
            },
        );
    }

    fn take_free(&mut self, p: u32, max: usize, out: &mut Vec<BlockRef>) {
        let plen = self.layout.piece_len(PieceIndex::new_unchecked(p));
        let Some(part) = self.partial.get_mut(&p) else {
            return;
        };
        let mut taken = 0;
        for (i, st) in part.blocks.iter_mut().enumerate() {
            if taken == max {
                break;
            }
            if *st == 0 {
                *st = 1;
                part.free -= 1;
                taken += 1;
                out.push(block_at(PieceIndex::new_unchecked(p), plen, i as u32));
            }
        }
        self.free_blocks -= taken as u64;
    }

    /// A request for `block` ended without data (timeout, choke, cancel, peer gone): one
    /// fewer peer is fetching it; with none left it is free again.
    pub fn abort(&mut self, block: BlockRef) {
        let p = block.piece().get();
        let Some(part) = self.partial.get_mut(&p) else {
            return;
        };
        let i = (block.offset() / BLOCK_LEN) as usize;
        if let Some(st) = part.blocks.get_mut(i) {
            if *st != RECEIVED && *st > 0 {
                *st -= 1;
                if *st == 0 {
                    part.free += 1;
                    self.free_blocks += 1;
                }
            }
        }
    }

    /// A block's data arrived and is about to be stored. Returns what it meant; the caller
    /// stores the data unless it is a duplicate.
    pub fn received(&mut self, block: BlockRef) -> Received {
        let p = block.piece().get();
        if !self.wants(block.piece()) {
            return Received::Duplicate;
        }
        let i = (block.offset() / BLOCK_LEN) as usize;
        if !self.partial.contains_key(&p) {
            // Data for a piece we never started (unrequested): accept it like a request.
            self.start(p);
        }
        // NOTE: the entry exists: it was present or created just above.
        let Some(part) = self.partial.get_mut(&p) else {
            return Received::Duplicate;
        };
        let Some(st) = part.blocks.get_mut(i) else {
            return Received::Duplicate;
        };
        match *st {
            RECEIVED => return Received::Duplicate,
            0 => {
                part.free -= 1;
                self.free_blocks -= 1;
            }
            _ => {}
        }
        *st = RECEIVED;
        part.received += 1;
        if part.received as usize == part.blocks.len() {
            self.partial.remove(&p);
            self.verifying.set(p);
            Received::PieceComplete(block.piece())
        } else {
            Received::Stored
        }
    }

    /// The hash check of a complete piece passed: it is had.
    pub fn piece_passed(&mut self, piece: PieceIndex) {
        self.verifying.clear(piece.get());
        self.have.set(piece.get());
    }

    /// The hash check failed: every block of the piece is free again.
    pub fn piece_failed(&mut self, piece: PieceIndex) {
        self.verifying.clear(piece.get());
        self.partial.remove(&piece.get());
        if !self.have.get(piece.get()) {
            // All its blocks were counted as not free; they are free again.
            self.free_blocks += u64::from(self.layout.num_blocks(piece));
        }
    }

    /// Whether a block's data is already stored (or its piece is had or being checked).
    pub fn is_block_received(&self, block: BlockRef) -> bool {
        let p = block.piece().get();
        if self.have.get(p) || self.verifying.get(p) {
            return true;
        }
        self.partial
            .get(&p)
            .and_then(|part| part.blocks.get((block.offset() / BLOCK_LEN) as usize))
            .is_some_and(|&s| s == RECEIVED)
    }
}

fn requested(part: &Partial) -> u32 {
    part.blocks.len() as u32 - part.free - part.received
}

fn block_at(piece: PieceIndex, plen: u32, i: u32) -> BlockRef {
    let offset = i * BLOCK_LEN;
    BlockRef::new_unchecked(piece, offset, (plen - offset).min(BLOCK_LEN))
}

#[cfg(test)]
mod tests;
