//! Writing .torrent files. Pure: the caller supplies file lengths and piece hashes.

use std::collections::BTreeMap;

use crate::bencode::OwnedValue;

/// Chooses a piece length for `total` bytes when the user gives none.
///
/// Aims at roughly 1,000 to 2,000 pieces, the range libtorrent's and Transmission's creators
/// steer towards, so the .torrent file stays small (20 bytes a piece) while pieces stay small
/// enough to trade early. Clamped to 32 KiB ..= 16 MiB.
pub fn auto_piece_length(total: u64) -> u32 {
    const MIN: u64 = 32 * 1024;
    const MAX: u64 = 16 * 1024 * 1024;
    let target = total / 1500;
    // NOTE: the clamp keeps it within u32.
    target.next_power_of_two().clamp(MIN, MAX) as u32
}

/// Builds the bencoded bytes of a v1 .torrent.
///
/// The `info` dictionary holds exactly what `mktorrent` writes (`files` or `length`, `name`,
/// `piece length`, `pieces`, `private` when set, `source` when set), so the same data and
/// options give the same info hash.
#[derive(Clone, Debug, Default)]
pub struct TorrentBuilder {
    /// Name of the file (single-file) or root folder.
    pub name: String,
    /// `None` for a single-file torrent (its length is `files[0]`); for a multi-file torrent
    /// the files as (path components, length), in the order they are hashed.
    pub files: Vec<(Vec<String>, u64)>,
    /// Single file rather than a folder.
    pub single_file: bool,
    /// Piece length.
    pub piece_length: u32,
    /// Concatenated 20-byte piece hashes.
    pub pieces: Vec<u8>,
    /// Tracker URLs: the first is `announce`; with more than one, all go into `announce-list`,
    /// one tier each (as mktorrent does with repeated `-a`).
    pub trackers: Vec<String>,
    /// Web seed URLs (`url-list`).
    pub web_seeds: Vec<String>,
    /// BEP 27 private flag.
    pub private: bool,
    /// `source` inside info.
    pub source: Option<String>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date` (seconds since the epoch).
    pub creation_date: Option<i64>,
}

impl TorrentBuilder {
    /// The bencoded `info` dictionary alone (its SHA-1 is the info hash).
    pub fn info_bytes(&self) -> Vec<u8> {
        self.info_value().encode()
    }

    fn info_value(&self) -> OwnedValue {
        let mut info = BTreeMap::new();
        if self.single_file {
            let len = self.files.first().map_or(0, |f| f.1);
            info.insert(b"length".to_vec(), OwnedValue::Int(len as i64));
        } else {
            let files = self
                .files
                .iter()
                .map(|(path, len)| {
                    let mut f = BTreeMap::new();
                    f.insert(b"length".to_vec(), OwnedValue::Int(*len as i64));
                    f.insert(
                        b"path".to_vec(),
                        OwnedValue::List(path.iter().map(OwnedValue::bytes).collect()),
                    );
                    OwnedValue::Dict(f)
                })
                .collect();
            info.insert(b"files".to_vec(), OwnedValue::List(files));
        }
        info.insert(b"name".to_vec(), OwnedValue::bytes(&self.name));
        info.insert(
            b"piece length".to_vec(),
            OwnedValue::Int(i64::from(self.piece_length)),
        );
        info.insert(b"pieces".to_vec(), OwnedValue::bytes(&self.pieces));
        if self.private {
            info.insert(b"private".to_vec(), OwnedValue::Int(1));
        }
        if let Some(s) = &self.source {
            info.insert(b"source".to_vec(), OwnedValue::bytes(s));
        }
        OwnedValue::Dict(info)
    }

    /// The whole .torrent file.
    pub fn encode(&self) -> Vec<u8> {
        let mut root = BTreeMap::new();
        if let Some(first) = self.trackers.first() {
            root.insert(b"announce".to_vec(), OwnedValue::bytes(first));
        }
        if self.trackers.len() > 1 {
            let tiers = self
                .trackers
                .iter()
                .map(|t| OwnedValue::List(vec![OwnedValue::bytes(t)]))
                .collect();
            root.insert(b"announce-list".to_vec(), OwnedValue::List(tiers));
        }
        if let Some(c) = &self.comment {
            root.insert(b"comment".to_vec(), OwnedValue::bytes(c));
        }
        if let Some(c) = &self.created_by {
            root.insert(b"created by".to_vec(), OwnedValue::bytes(c));
        }
        if let Some(d) = self.creation_date {
            root.insert(b"creation date".to_vec(), OwnedValue::Int(d));
        }
        root.insert(b"info".to_vec(), self.info_value());
        match self.web_seeds.len() {
            0 => {}
            1 => {
                root.insert(b"url-list".to_vec(), OwnedValue::bytes(&self.web_seeds[0]));
            }
            _ => {
                root.insert(
                    b"url-list".to_vec(),
                    OwnedValue::List(self.web_seeds.iter().map(OwnedValue::bytes).collect()),
                );
            }
        }
        OwnedValue::Dict(root).encode()
    }
}
