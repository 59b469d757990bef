//! Where the bytes of a torrent live: pieces, blocks and files.
//!
//! A torrent is one stream of bytes cut into pieces of `piece_length` (the last one shorter)
//! and, independently, into files laid end to end. A piece, or a 16 KiB block, may cross any
//! number of file boundaries; [`Layout::spans`] turns a range of the stream into the file
//! ranges that hold it.
//!
//! Invariants that the types carry:
//! - a [`PieceIndex`] is only made by [`Layout::piece`] and is `< num_pieces` of that layout;
//! - a [`BlockRef`] is only made by [`Layout::block`] / [`Layout::blocks`] and lies wholly
//!   inside its piece, with a length in `1..=MAX_BLOCK_LEN`.
//!
//! A `PieceIndex` from one layout must not be used with another; the engine keeps one layout
//! per torrent, so that cannot happen by accident.

use std::fmt;
use std::ops::Range;

/// The block size every client requests (BEP 3: 16 KiB).
pub const BLOCK_LEN: u32 = 16 * 1024;

/// The largest block a peer may request of us. Larger requests are refused (libtorrent and
/// Transmission refuse anything above 16 KiB too; some old clients sent 32 KiB).
pub const MAX_BLOCK_LEN: u32 = 128 * 1024;

/// The index of a piece known to exist in its torrent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The index as a number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The index as a `usize`, for indexing vectors with one entry per piece.
    pub fn idx(self) -> usize {
        self.0 as usize
    }

    /// For crate code that derives `i` from a layout (a bitfield of `num_pieces` bits, a
    /// vector with one entry per piece): the caller guarantees `i < num_pieces`.
    pub(crate) fn new_unchecked(i: u32) -> Self {
        PieceIndex(i)
    }
}

impl fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A range of bytes inside one piece, known to be in bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockRef {
    piece: PieceIndex,
    offset: u32,
    len: u32,
}

impl BlockRef {
    /// The piece holding the block.
    pub fn piece(self) -> PieceIndex {
        self.piece
    }

    /// Offset of the block inside its piece.
    pub fn offset(self) -> u32 {
        self.offset
    }

    /// Length of the block in bytes (never zero).
    pub fn len(self) -> u32 {
        self.len
    }

    /// For crate code that derives the block from the layout's own geometry: the caller
    /// guarantees it lies inside the piece.
    pub(crate) fn new_unchecked(piece: PieceIndex, offset: u32, len: u32) -> Self {
        BlockRef { piece, offset, len }
    }

    /// Always false: blocks are never empty. Present for API symmetry with `len`.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// One file's place in the torrent's byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileExtent {
    /// Offset of the file's first byte in the stream.
    pub offset: u64,
    /// Length of the file.
    pub length: u64,
}

/// A range of one file: part of a stream range mapped to the file holding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Index of the file in the torrent's file list.
    pub file: usize,
    /// Offset inside that file.
    pub file_offset: u64,
    /// Number of bytes.
    pub len: u64,
    /// Offset of these bytes relative to the start of the range asked for.
    pub range_offset: u64,
}

/// Why a layout cannot exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Piece length zero.
    ZeroPieceLength,
    /// All files together hold no bytes.
    Empty,
    /// The total length overflows 64 bits.
    TooLarge,
    /// More than 2^32 - 1 pieces.
    TooManyPieces,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::ZeroPieceLength => write!(f, "piece length is zero"),
            LayoutError::Empty => write!(f, "the torrent holds no data (total length 0)"),
            LayoutError::TooLarge => write!(f, "total length overflows 64 bits"),
            LayoutError::TooManyPieces => write!(f, "more than 4294967295 pieces"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// Piece and file geometry of one torrent. Pure arithmetic, no I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    piece_length: u32,
    total_length: u64,
    num_pieces: u32,
    files: Vec<FileExtent>,
}

impl Layout {
    /// Builds the layout of files with these lengths, in this order.
    pub fn new(piece_length: u32, file_lengths: &[u64]) -> Result<Layout, LayoutError> {
        if piece_length == 0 {
            return Err(LayoutError::ZeroPieceLength);
        }
        let mut files = Vec::with_capacity(file_lengths.len());
        let mut offset: u64 = 0;
        for &length in file_lengths {
            files.push(FileExtent { offset, length });
            offset = offset.checked_add(length).ok_or(LayoutError::TooLarge)?;
        }
        if offset == 0 {
            return Err(LayoutError::Empty);
        }
        let num_pieces = offset.div_ceil(u64::from(piece_length));
        let num_pieces = u32::try_from(num_pieces).map_err(|_| LayoutError::TooManyPieces)?;
        Ok(Layout {
            piece_length,
            total_length: offset,
            num_pieces,
            files,
        })
    }

    /// The nominal piece length (every piece but the last has it).
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Total bytes in the torrent.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// The files, in torrent order.
    pub fn files(&self) -> &[FileExtent] {
        &self.files
    }

    /// The piece with index `i`, if there is one.
    pub fn piece(&self, i: u32) -> Option<PieceIndex> {
        (i < self.num_pieces).then_some(PieceIndex(i))
    }

    /// Every piece, in order.
    pub fn pieces(&self) -> impl DoubleEndedIterator<Item = PieceIndex> + ExactSizeIterator {
        (0..self.num_pieces).map(PieceIndex)
    }

    /// Offset of the piece's first byte in the stream.
    pub fn piece_offset(&self, p: PieceIndex) -> u64 {
        u64::from(p.0) * u64::from(self.piece_length)
    }

    /// Length of a piece (the last one may be shorter).
    pub fn piece_len(&self, p: PieceIndex) -> u32 {
        let rest = self.total_length - self.piece_offset(p);
        // NOTE: rest >= 1 for every valid index, and min() keeps it within u32.
        rest.min(u64::from(self.piece_length)) as u32
    }

    /// Number of [`BLOCK_LEN`] blocks in a piece.
    pub fn num_blocks(&self, p: PieceIndex) -> u32 {
        self.piece_len(p).div_ceil(BLOCK_LEN)
    }

    /// The block of `len` bytes at `offset` in piece `p`, if it lies inside the piece and its
    /// length is in `1..=MAX_BLOCK_LEN`.
    pub fn block(&self, p: PieceIndex, offset: u32, len: u32) -> Option<BlockRef> {
        if len == 0 || len > MAX_BLOCK_LEN {
            return None;
        }
        let end = offset.checked_add(len)?;
        (end <= self.piece_len(p)).then_some(BlockRef {
            piece: p,
            offset,
            len,
        })
    }

    /// The block at `(piece, offset, len)` given as raw numbers (as a peer sends them).
    pub fn block_checked(&self, piece: u32, offset: u32, len: u32) -> Option<BlockRef> {
        self.block(self.piece(piece)?, offset, len)
    }

    /// The standard 16 KiB blocks of a piece, in order; the last may be shorter.
    pub fn blocks(&self, p: PieceIndex) -> impl Iterator<Item = BlockRef> {
        let plen = self.piece_len(p);
        (0..plen.div_ceil(BLOCK_LEN)).map(move |i| {
            let offset = i * BLOCK_LEN;
            BlockRef {
                piece: p,
                offset,
                len: (plen - offset).min(BLOCK_LEN),
            }
        })
    }

    /// The stream range a piece covers.
    pub fn piece_range(&self, p: PieceIndex) -> Range<u64> {
        let start = self.piece_offset(p);
        start..start + u64::from(self.piece_len(p))
    }

    /// The stream range a block covers.
    pub fn block_range(&self, b: BlockRef) -> Range<u64> {
        let start = self.piece_offset(b.piece) + u64::from(b.offset);
        start..start + u64::from(b.len)
    }

    /// The file ranges holding stream bytes `range` (clamped to the stream), in order.
    /// Empty files are never returned.
    pub fn spans(&self, range: Range<u64>) -> Spans<'_> {
        let end = range.end.min(self.total_length);
        let start = range.start.min(end);
        // First file whose end is past `start` (empty files never are, unless at the end).
        let file = self.files.partition_point(|f| f.offset + f.length <= start);
        Spans {
            files: &self.files,
            file,
            pos: start,
            start,
            end,
        }
    }

    /// The file ranges holding a piece.
    pub fn piece_spans(&self, p: PieceIndex) -> Spans<'_> {
        self.spans(self.piece_range(p))
    }

    /// The file ranges holding a block.
    pub fn block_spans(&self, b: BlockRef) -> Spans<'_> {
        self.spans(self.block_range(b))
    }

    /// The pieces holding at least one byte of file `file`; empty for an empty file or an
    /// index out of range.
    pub fn file_pieces(&self, file: usize) -> Range<u32> {
        match self.files.get(file) {
            Some(f) if f.length > 0 => {
                let pl = u64::from(self.piece_length);
                let first = f.offset / pl;
                let last = (f.offset + f.length - 1) / pl;
                // NOTE: both are < num_pieces, which fits in u32.
                first as u32..last as u32 + 1
            }
            _ => 0..0,
        }
    }
}

/// Iterator returned by [`Layout::spans`].
#[derive(Clone, Debug)]
pub struct Spans<'a> {
    files: &'a [FileExtent],
    file: usize,
    pos: u64,
    start: u64,
    end: u64,
}

impl Iterator for Spans<'_> {
    type Item = FileSpan;

    fn next(&mut self) -> Option<FileSpan> {
        while self.pos < self.end {
            let f = self.files.get(self.file)?;
            let file_end = f.offset + f.length;
            if file_end <= self.pos {
                self.file += 1;
                continue;
            }
            let take = file_end.min(self.end) - self.pos;
            let span = FileSpan {
                file: self.file,
                file_offset: self.pos - f.offset,
                len: take,
                range_offset: self.pos - self.start,
            };
            self.pos += take;
            self.file += 1;
            return Some(span);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_file_with_short_last_piece() {
        let l = Layout::new(32768, &[100_000]).unwrap();
        assert_eq!(l.num_pieces(), 4);
        let last = l.piece(3).unwrap();
        assert_eq!(l.piece_len(last), 100_000 - 3 * 32768);
        assert!(l.piece(4).is_none());
        let blocks: Vec<_> = l.blocks(last).map(|b| (b.offset(), b.len())).collect();
        assert_eq!(blocks, vec![(0, 1696)]);
        let first: Vec<_> = l
            .blocks(l.piece(0).unwrap())
            .map(|b| (b.offset(), b.len()))
            .collect();
        assert_eq!(first, vec![(0, 16384), (16384, 16384)]);
        assert!(l.block(last, 0, 1697).is_none());
        assert!(l.block(last, 1, 1696).is_none());
        assert!(l.block(last, 0, 0).is_none());
        assert!(l.block(last, u32::MAX, 2).is_none());
        assert!(l.block_checked(9, 0, 1).is_none());
    }

    #[test]
    fn blocks_and_pieces_cross_files_including_empty_and_one_byte_files() {
        // files: 0, 1, 16383, 0, 20000, 1 bytes; piece length 16 KiB.
        let l = Layout::new(16384, &[0, 1, 16383, 0, 20000, 1]).unwrap();
        assert_eq!(l.total_length(), 36385);
        assert_eq!(l.num_pieces(), 3);
        let p0: Vec<_> = l.piece_spans(l.piece(0).unwrap()).collect();
        assert_eq!(
            p0,
            vec![
                FileSpan {
                    file: 1,
                    file_offset: 0,
                    len: 1,
                    range_offset: 0
                },
                FileSpan {
                    file: 2,
                    file_offset: 0,
                    len: 16383,
                    range_offset: 1
                },
            ]
        );
        // Piece 2 holds the end of file 4 and the 1-byte file 5.
        let p2: Vec<_> = l.piece_spans(l.piece(2).unwrap()).collect();
        assert_eq!(
            p2,
            vec![
                FileSpan {
                    file: 4,
                    file_offset: 16384,
                    len: 3616,
                    range_offset: 0
                },
                FileSpan {
                    file: 5,
                    file_offset: 0,
                    len: 1,
                    range_offset: 3616
                },
            ]
        );
        // A block crossing from file 2 into file 4 (skipping empty file 3).
        let b = l.block(l.piece(0).unwrap(), 16380, 4).unwrap();
        let spans: Vec<_> = l
            .block_spans(b)
            .map(|s| (s.file, s.file_offset, s.len))
            .collect();
        assert_eq!(spans, vec![(2, 16379, 4)]);
        assert_eq!(l.file_pieces(0), 0..0);
        assert_eq!(l.file_pieces(3), 0..0);
        assert_eq!(l.file_pieces(4), 1..3);
        assert_eq!(l.file_pieces(5), 2..3);
        assert_eq!(l.file_pieces(99), 0..0);
    }

    #[test]
    fn refuses_impossible_layouts() {
        assert_eq!(Layout::new(0, &[1]), Err(LayoutError::ZeroPieceLength));
        assert_eq!(Layout::new(16384, &[]), Err(LayoutError::Empty));
        assert_eq!(Layout::new(16384, &[0, 0]), Err(LayoutError::Empty));
        assert_eq!(
            Layout::new(16384, &[u64::MAX, 1]),
            Err(LayoutError::TooLarge)
        );
        assert_eq!(Layout::new(1, &[1 << 33]), Err(LayoutError::TooManyPieces));
    }

    /// The brute-force model: the file holding stream byte `x`.
    fn owner(lengths: &[u64], x: u64) -> (usize, u64) {
        let mut off = 0;
        for (i, &len) in lengths.iter().enumerate() {
            if x < off + len {
                return (i, x - off);
            }
            off += len;
        }
        unreachable!("byte {x} past the end")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn spans_match_a_byte_by_byte_model(
            lengths in proptest::collection::vec(0u64..300, 1..12),
            pl_log in 0u32..9,
            start in 0u64..3000,
            len in 0u64..700,
        ) {
            prop_assume!(lengths.iter().sum::<u64>() > 0);
            let l = Layout::new(1 << pl_log, &lengths).unwrap();
            let total = l.total_length();
            let range = start.min(total)..(start + len).min(total);
            let spans: Vec<FileSpan> = l.spans(range.clone()).collect();
            // Expand spans to bytes and compare with the model.
            let mut got = Vec::new();
            for s in &spans {
                prop_assert!(s.len > 0);
                for k in 0..s.len {
                    got.push((s.file, s.file_offset + k, s.range_offset + k));
                }
            }
            let want: Vec<_> = range.clone().map(|x| {
                let (f, o) = owner(&lengths, x);
                (f, o, x - range.start)
            }).collect();
            prop_assert_eq!(got, want);
            // Pieces cover the stream exactly once, blocks cover each piece exactly once.
            let mut next = 0u64;
            for p in l.pieces() {
                let r = l.piece_range(p);
                prop_assert_eq!(r.start, next);
                next = r.end;
                let mut bnext = r.start;
                for b in l.blocks(p) {
                    let br = l.block_range(b);
                    prop_assert_eq!(br.start, bnext);
                    prop_assert!(b.len() <= BLOCK_LEN && b.len() > 0);
                    bnext = br.end;
                }
                prop_assert_eq!(bnext, r.end);
            }
            prop_assert_eq!(next, total);
            // file_pieces agrees with the model.
            for (i, &flen) in lengths.iter().enumerate() {
                let pr = l.file_pieces(i);
                let want: Vec<u32> = l.pieces()
                    .filter(|&p| l.piece_spans(p).any(|s| s.file == i))
                    .map(|p| p.get()).collect();
                prop_assert_eq!(pr.collect::<Vec<_>>(), want);
                if flen == 0 { prop_assert!(l.file_pieces(i).is_empty()); }
            }
        }
    }
}
