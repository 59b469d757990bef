//! The in-memory backend: the whole torrent in one buffer. For tests and simulations.

use bytes::Bytes;
use sha1::{Digest, Sha1};

use super::{Storage, StorageError};
use crate::metainfo::{BlockRef, Layout, PieceIndex};

/// A torrent's bytes held in memory. Reads copy (tests do not care about zero copy).
#[derive(Clone, Debug)]
pub struct MemStorage {
    layout: Layout,
    data: Vec<u8>,
}

impl MemStorage {
    /// Zero-filled storage for a torrent with this layout.
    pub fn new(layout: Layout) -> Self {
        let data = vec![0; layout.total_length() as usize];
        MemStorage { layout, data }
    }

    /// Storage holding `data` (its length must be the layout's total length).
    pub fn with_data(layout: Layout, data: Vec<u8>) -> Option<Self> {
        (data.len() as u64 == layout.total_length()).then_some(MemStorage { layout, data })
    }

    /// The whole torrent's bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    fn range(&self, r: std::ops::Range<u64>) -> std::ops::Range<usize> {
        r.start as usize..r.end as usize
    }
}

impl Storage for MemStorage {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn read_block(&mut self, block: BlockRef) -> Result<Bytes, StorageError> {
        let r = self.range(self.layout.block_range(block));
        Ok(Bytes::copy_from_slice(&self.data[r]))
    }

    fn write_block(&mut self, block: BlockRef, data: &[u8]) -> Result<(), StorageError> {
        if data.len() != block.len() as usize {
            return Err(StorageError::WrongLength {
                expected: block.len(),
                got: data.len(),
            });
        }
        let r = self.range(self.layout.block_range(block));
        self.data[r].copy_from_slice(data);
        Ok(())
    }

    fn hash_piece(&mut self, piece: PieceIndex) -> Result<[u8; 20], StorageError> {
        let r = self.range(self.layout.piece_range(piece));
        Ok(Sha1::digest(&self.data[r]).into())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}
