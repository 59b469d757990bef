//! Storage: where a torrent's bytes live, and the checks that make them trustworthy.
//!
//! [`Storage`] is the seam the engine uses: read a block, write a block, hash a piece, flush.
//! Two backends:
//!
//! - [`MmapStorage`]: the torrent's files, mapped read-only in bounded windows. A block read
//!   is a zero-copy [`bytes::Bytes`] pointing into the mapping (except a block that crosses
//!   a file boundary, which is copied once). Writes go through `pwrite`, never through a
//!   `&mut [u8]` over the map, so a mapping that backs blocks queued for upload is never
//!   aliased mutably. Files are created sparse at their full length. A file that is missing
//!   or shorter than the torrent says makes the affected reads fail with
//!   [`StorageError::Unavailable`]; a file truncated *after* it was mapped is detected
//!   (see `sigbus.rs`) and reported as [`StorageError::Truncated`] instead of crashing.
//! - [`MemStorage`]: one `Vec<u8>`, for tests and the virtual-time swarm harness.
//!
//! Also here: [`verify`] (hash every piece, classify good/bad/missing) and [`resume`] (the
//! record that lets a restart skip rehashing files that have not changed).
//!
//! This module does file I/O but never touches sockets, threads or the clock.

mod mem;
mod mmap;
pub mod resume;
pub mod scan;
mod sigbus;
pub mod verify;

pub use mem::MemStorage;
pub use mmap::{Allocation, MmapOptions, MmapStorage, OpenMode};

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::metainfo::{BlockRef, Info, Layout, PieceIndex};

/// The storage seam the engine talks to.
pub trait Storage {
    /// Geometry of the torrent this storage holds.
    fn layout(&self) -> &Layout;

    /// The bytes of a block. For [`MmapStorage`] a zero-copy view of the mapped file.
    fn read_block(&mut self, block: BlockRef) -> Result<Bytes, StorageError>;

    /// Stores a block. `data.len()` must equal `block.len()`.
    fn write_block(&mut self, block: BlockRef, data: &[u8]) -> Result<(), StorageError>;

    /// SHA-1 of a piece as stored now.
    fn hash_piece(&mut self, piece: PieceIndex) -> Result<[u8; 20], StorageError>;

    /// Makes written data durable.
    fn flush(&mut self) -> Result<(), StorageError>;

    /// Whether reading the block now would not wait for the disk (its pages are in memory).
    /// The reactor thread must never block on a page fault: a block that is not resident is
    /// [`Storage::prefetch`]ed and sent on a later tick.
    fn is_resident(&mut self, _block: BlockRef) -> bool {
        true
    }

    /// Starts reading a block's pages in the background.
    fn prefetch(&mut self, _block: BlockRef) {}

    /// Whether every page of a piece is in memory (see [`Storage::is_resident`]).
    fn is_piece_resident(&mut self, _piece: PieceIndex) -> bool {
        true
    }

    /// Re-checks that the files are still there at their sizes (call on a timer).
    fn recheck(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// One file of a torrent on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// Where it lives.
    pub path: PathBuf,
    /// A BEP 47 padding file: zeros, never created on disk.
    pub pad: bool,
}

/// The files of `info` under `content`: for a single-file torrent `content` is the file
/// itself; for a multi-file torrent it is the torrent's folder (normally `DIR/name`).
///
/// Every path component was checked when the torrent was parsed, so no path leaves
/// `content`.
pub fn content_files(info: &Info, content: &Path) -> Vec<FileSpec> {
    info.files
        .iter()
        .map(|f| {
            let path = if info.single_file {
                content.to_path_buf()
            } else {
                f.path.iter().fold(content.to_path_buf(), |p, c| p.join(c))
            };
            FileSpec { path, pad: f.pad }
        })
        .collect()
}

/// Why a storage operation failed.
#[derive(Debug)]
pub enum StorageError {
    /// An operating-system error on a file.
    Io {
        /// The file.
        path: PathBuf,
        /// What we were doing.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The bytes asked for are not on disk: the file is missing or shorter than the torrent
    /// says. Expected while a download is incomplete or when verifying partial data.
    Unavailable {
        /// The file.
        path: PathBuf,
        /// Its length on disk (`None`: it does not exist).
        have: Option<u64>,
        /// The length the torrent says.
        need: u64,
    },
    /// A file shrank or vanished under a live mapping. The torrent must stop using it.
    Truncated {
        /// The file.
        path: PathBuf,
    },
    /// A write to storage opened read-only.
    ReadOnly,
    /// A block write whose data length differs from the block's.
    WrongLength {
        /// The block's length.
        expected: u32,
        /// The data's length.
        got: usize,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, op, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            StorageError::Unavailable {
                path,
                have: None,
                need,
            } => {
                write!(
                    f,
                    "{} is missing (the torrent needs {need} bytes)",
                    path.display()
                )
            }
            StorageError::Unavailable {
                path,
                have: Some(h),
                need,
            } => {
                write!(
                    f,
                    "{} is {h} bytes, shorter than the {need} the torrent needs",
                    path.display()
                )
            }
            StorageError::Truncated { path } => {
                write!(
                    f,
                    "{} was truncated or removed while in use",
                    path.display()
                )
            }
            StorageError::ReadOnly => write!(f, "storage is open read-only"),
            StorageError::WrongLength { expected, got } => {
                write!(
                    f,
                    "block of {expected} bytes written with {got} bytes of data"
                )
            }
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl StorageError {
    pub(crate) fn io(path: &Path, op: &'static str, source: io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

#[cfg(test)]
mod tests;
