//! Piece verification: the only way a piece becomes "had".

use super::{Storage, StorageError};
use crate::metainfo::{Info, PieceIndex};

/// Proof that a piece's stored bytes matched its SHA-1 when checked. Only [`check_piece`]
/// makes one, so code that marks a piece as had or serves it can demand this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedPiece(PieceIndex);

impl VerifiedPiece {
    /// The piece.
    pub fn piece(self) -> PieceIndex {
        self.0
    }
}

/// The outcome of checking one piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The hash matched.
    Good(VerifiedPiece),
    /// The data is there but its hash does not match.
    Bad,
    /// Some of its bytes are not on disk (missing or short file).
    Missing,
}

/// Hashes one piece and compares it with the torrent. Missing data is a verdict, not an
/// error; I/O errors and truncation under a mapping are errors.
pub fn check_piece<S: Storage + ?Sized>(
    storage: &mut S,
    info: &Info,
    piece: PieceIndex,
) -> Result<Verdict, StorageError> {
    match storage.hash_piece(piece) {
        Ok(h) if &h == info.piece_hash(piece) => Ok(Verdict::Good(VerifiedPiece(piece))),
        Ok(_) => Ok(Verdict::Bad),
        Err(StorageError::Unavailable { .. }) | Err(StorageError::Truncated { .. }) => {
            Ok(Verdict::Missing)
        }
        Err(e) => Err(e),
    }
}

/// What a full check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Pieces whose hash matched.
    pub good: Vec<u32>,
    /// Pieces present but wrong.
    pub bad: Vec<u32>,
    /// Pieces not (wholly) on disk.
    pub missing: Vec<u32>,
}

impl VerifyReport {
    /// Records one verdict.
    pub fn add(&mut self, piece: PieceIndex, v: Verdict) {
        match v {
            Verdict::Good(_) => self.good.push(piece.get()),
            Verdict::Bad => self.bad.push(piece.get()),
            Verdict::Missing => self.missing.push(piece.get()),
        }
    }

    /// Sorts the lists (after a parallel check).
    pub fn sort(&mut self) {
        self.good.sort_unstable();
        self.bad.sort_unstable();
        self.missing.sort_unstable();
    }

    /// Every piece good.
    pub fn complete(&self) -> bool {
        self.bad.is_empty() && self.missing.is_empty()
    }
}
