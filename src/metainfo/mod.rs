//! .torrent files (BEP 3 metainfo, v1): parsing, creating, and the piece/file layout.
//!
//! The info hash is the SHA-1 of the raw bytes of the `info` dictionary exactly as they appear
//! in the file, never of a re-encoding: a torrent with unsorted keys or extra fields still gets
//! the hash every other client computes.
//!
//! Everything in a .torrent file is hostile until checked. Parsing refuses, with an error that
//! names the problem:
//! - paths that could escape the download folder: a `name` or path component that is empty,
//!   `.`, `..`, or contains `/`, `\` or NUL (an absolute path has an empty first component or a
//!   `/`); components longer than 255 bytes (no Linux file system can hold them);
//! - a piece length that is not a power of two in 16 KiB ..= 256 MiB;
//! - a `pieces` string whose length is not a multiple of 20 or whose count does not match
//!   the total length; a torrent with no files or no bytes;
//! - two files with the same path, or a file whose path is another file's folder;
//! - negative lengths, and both `length` and `files` (or neither).
//!
//! Parsing does no I/O: it takes bytes. Creating takes file lengths and piece hashes and
//! returns bytes; reading the files is the caller's job.

mod create;
pub mod layout;

pub use create::{auto_piece_length, TorrentBuilder};
pub use layout::{BlockRef, FileSpan, Layout, LayoutError, PieceIndex, BLOCK_LEN, MAX_BLOCK_LEN};

use std::fmt;

use sha1::{Digest, Sha1};

use crate::bencode::{self, DecodeError, Value};

/// Smallest piece length accepted (16 KiB, one block).
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;
/// Largest piece length accepted (256 MiB; the largest in common use is 64 MiB).
pub const MAX_PIECE_LENGTH: u32 = 256 * 1024 * 1024;
/// Longest path component accepted (the Linux NAME_MAX).
pub const MAX_COMPONENT_LEN: usize = 255;

/// The SHA-1 of a torrent's info dictionary: the torrent's identity on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// Lower-case hexadecimal, as clients display it.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Parses 40 hexadecimal digits.
    pub fn from_hex(s: &str) -> Option<InfoHash> {
        let b = s.as_bytes();
        if b.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in b.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(InfoHash(out))
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

/// Lower-case hex of any bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// One file of a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components relative to the torrent's root. For a single-file torrent this is
    /// `[name]`; for a multi-file torrent the components under the `name` folder.
    /// Every component has passed the path-safety checks.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// Offset of the file's first byte in the torrent's byte stream.
    pub offset: u64,
    /// A BEP 47 padding file (`attr` contains `p`): zeros that are never written to disk.
    pub pad: bool,
}

impl FileEntry {
    /// The path joined with `/`, for display.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }
}

/// The `info` dictionary, checked.
#[derive(Clone, Debug)]
pub struct Info {
    /// Suggested name of the file (single-file) or folder (multi-file); a safe component.
    pub name: String,
    /// SHA-1 of each piece.
    pub pieces: Vec<[u8; 20]>,
    /// Files in torrent order.
    pub files: Vec<FileEntry>,
    /// BEP 27: only use the torrent's trackers (no DHT, PEX, LSD).
    pub private: bool,
    /// The torrent has a single file at `name` rather than a folder.
    pub single_file: bool,
    /// `source` (private trackers use it to make info hashes unique), if any.
    pub source: Option<String>,
    layout: Layout,
}

impl Info {
    /// Piece and file geometry.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Expected SHA-1 of a piece.
    pub fn piece_hash(&self, p: PieceIndex) -> &[u8; 20] {
        &self.pieces[p.idx()]
    }

    /// Total bytes.
    pub fn total_length(&self) -> u64 {
        self.layout.total_length()
    }
}

/// A parsed .torrent file.
#[derive(Clone, Debug)]
pub struct Metainfo {
    /// SHA-1 of the raw `info` dictionary.
    pub info_hash: InfoHash,
    /// The checked info dictionary.
    pub info: Info,
    /// `announce`: the tracker URL, if any.
    pub announce: Option<String>,
    /// `announce-list` (BEP 12): tiers of tracker URLs. Empty when absent.
    pub announce_list: Vec<Vec<String>>,
    /// `url-list` (BEP 19 web seeds), kept for later use.
    pub url_list: Vec<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date`, seconds since the Unix epoch.
    pub creation_date: Option<i64>,
    /// `comment`.
    pub comment: Option<String>,
    /// Things that were odd but harmless (ignored or replaced fields), for the user to see.
    pub warnings: Vec<String>,
}

impl Metainfo {
    /// The tracker tiers to use: `announce-list` when present (BEP 12), else `announce`.
    pub fn tracker_tiers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            self.announce_list.clone()
        } else {
            self.announce.iter().map(|a| vec![a.clone()]).collect()
        }
    }

    /// Parses and checks a .torrent file.
    pub fn from_bytes(data: &[u8]) -> Result<Metainfo, MetainfoError> {
        let root = bencode::decode(data).map_err(MetainfoError::Bencode)?;
        if root.as_dict().is_none() {
            return Err(MetainfoError::WrongType {
                key: "(top level)",
                expected: "dictionary",
            });
        }
        let info_v = root.get(b"info").ok_or(MetainfoError::Missing("info"))?;
        if info_v.as_dict().is_none() {
            return Err(MetainfoError::WrongType {
                key: "info",
                expected: "dictionary",
            });
        }
        let info_hash = InfoHash(Sha1::digest(info_v.raw).into());
        let mut warnings = Vec::new();
        let info = parse_info(info_v, &mut warnings)?;

        let announce = opt_string(&root, "announce", &mut warnings);
        let mut announce_list = Vec::new();
        if let Some(tiers) = root.get(b"announce-list") {
            match tiers.as_list() {
                Some(tiers) => {
                    for tier in tiers {
                        let urls: Vec<String> = tier
                            .as_list()
                            .unwrap_or(&[])
                            .iter()
                            .filter_map(|u| u.as_str().map(str::to_owned))
                            .filter(|u| !u.is_empty())
                            .collect();
                        if !urls.is_empty() {
                            announce_list.push(urls);
                        }
                    }
                }
                None => warnings.push("announce-list is not a list; ignored".into()),
            }
        }
        let mut url_list = Vec::new();
        match root.get(b"url-list") {
            None => {}
            Some(v) => {
                if let Some(s) = v.as_str() {
                    if !s.is_empty() {
                        url_list.push(s.to_owned());
                    }
                } else if let Some(l) = v.as_list() {
                    url_list.extend(l.iter().filter_map(|u| u.as_str().map(str::to_owned)));
                } else {
                    warnings.push("url-list is neither a string nor a list; ignored".into());
                }
            }
        }
        let created_by = opt_string(&root, "created by", &mut warnings);
        let comment = opt_string(&root, "comment", &mut warnings);
        let creation_date = match root.get(b"creation date") {
            None => None,
            Some(v) => {
                let d = v.as_int();
                if d.is_none() {
                    warnings.push("creation date is not an integer; ignored".into());
                }
                d
            }
        };
        Ok(Metainfo {
            info_hash,
            info,
            announce,
            announce_list,
            url_list,
            created_by,
            creation_date,
            comment,
            warnings,
        })
    }
}

/// Why a .torrent file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetainfoError {
    /// Not valid bencode.
    Bencode(DecodeError),
    /// A required key is absent.
    Missing(&'static str),
    /// A key holds the wrong type.
    WrongType {
        /// The key.
        key: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// Piece length not a power of two in the accepted range.
    BadPieceLength(i64),
    /// `pieces` length not a multiple of 20.
    PiecesNotMultipleOf20(usize),
    /// The number of hashes does not match the total length.
    PieceCountMismatch {
        /// Pieces implied by total length and piece length.
        expected: u64,
        /// Hashes present.
        got: usize,
    },
    /// A negative file length.
    NegativeLength(String),
    /// Both `length` and `files`, or neither.
    LengthAndFiles,
    /// `files` is an empty list.
    NoFiles,
    /// The files hold no bytes, or more than 2^64.
    Layout(LayoutError),
    /// A name or path component that could escape the download folder, or cannot be a file
    /// name on Linux.
    UnsafePath {
        /// The path as given (lossy UTF-8).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two files with the same path, or a file that is also another file's folder.
    DuplicatePath(String),
    /// A BitTorrent v2-only torrent (BEP 52), which this client does not support yet.
    V2Only,
}

impl fmt::Display for MetainfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetainfoError::Bencode(e) => write!(f, "not a valid torrent file: {e}"),
            MetainfoError::Missing(k) => write!(f, "missing required key '{k}'"),
            MetainfoError::WrongType { key, expected } => {
                write!(f, "'{key}' should be a {expected}")
            }
            MetainfoError::BadPieceLength(n) => write!(
                f,
                "piece length {n} is not a power of two between {MIN_PIECE_LENGTH} and {MAX_PIECE_LENGTH}"
            ),
            MetainfoError::PiecesNotMultipleOf20(n) => {
                write!(f, "'pieces' is {n} bytes long, not a multiple of 20")
            }
            MetainfoError::PieceCountMismatch { expected, got } => {
                write!(f, "'pieces' holds {got} hashes but the files need {expected} pieces")
            }
            MetainfoError::NegativeLength(p) => write!(f, "file '{p}' has a negative length"),
            MetainfoError::LengthAndFiles => {
                write!(f, "info must have exactly one of 'length' (single file) or 'files'")
            }
            MetainfoError::NoFiles => write!(f, "'files' is empty"),
            MetainfoError::Layout(e) => write!(f, "{e}"),
            MetainfoError::UnsafePath { path, reason } => {
                write!(f, "unsafe path {path:?}: {reason}")
            }
            MetainfoError::DuplicatePath(p) => write!(f, "path '{p}' appears twice"),
            MetainfoError::V2Only => {
                write!(f, "BitTorrent v2-only torrents (BEP 52) are not supported")
            }
        }
    }
}

impl std::error::Error for MetainfoError {}

fn opt_string(dict: &Value<'_>, key: &str, warnings: &mut Vec<String>) -> Option<String> {
    let v = dict.get(key.as_bytes())?;
    match v.as_bytes() {
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Some(s.to_owned()),
            Err(_) => {
                warnings.push(format!(
                    "'{key}' is not UTF-8; shown with replacement characters"
                ));
                Some(String::from_utf8_lossy(b).into_owned())
            }
        },
        None => {
            warnings.push(format!("'{key}' is not a string; ignored"));
            None
        }
    }
}

/// Checks one path component; returns it as a `String`.
///
/// Refused: empty, `.`, `..`, containing `/`, `\` or NUL, longer than 255 bytes. Invalid
/// UTF-8 is replaced (U+FFFD) and reported in `warnings`, since old torrents in legacy
/// encodings are common and replacement cannot create a separator.
pub fn check_component(raw: &[u8], warnings: &mut Vec<String>) -> Result<String, &'static str> {
    if raw.is_empty() {
        return Err("empty path component (or absolute path)");
    }
    if raw == b"." || raw == b".." {
        return Err("'.' or '..' path component");
    }
    if raw.contains(&b'/') {
        return Err("path component contains '/'");
    }
    if raw.contains(&b'\\') {
        return Err("path component contains '\\'");
    }
    if raw.contains(&0) {
        return Err("path component contains NUL");
    }
    if raw.len() > MAX_COMPONENT_LEN {
        return Err("path component longer than 255 bytes");
    }
    match std::str::from_utf8(raw) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => {
            let s = String::from_utf8_lossy(raw).into_owned();
            warnings.push(format!(
                "path component {s:?} is not UTF-8; invalid bytes replaced"
            ));
            if s.len() > MAX_COMPONENT_LEN {
                return Err("path component longer than 255 bytes");
            }
            Ok(s)
        }
    }
}

fn unsafe_path(raw: &[&[u8]], reason: &'static str) -> MetainfoError {
    let path = raw
        .iter()
        .map(|c| String::from_utf8_lossy(c))
        .collect::<Vec<_>>()
        .join("/");
    MetainfoError::UnsafePath { path, reason }
}

/// The value of `key`, preferring its `key.utf-8` variant when that is a string.
fn utf8_variant<'v, 'a>(d: &'v Value<'a>, key: &str) -> Option<&'v Value<'a>> {
    let alt = format!("{key}.utf-8");
    match d.get(alt.as_bytes()) {
        Some(v) if v.as_bytes().is_some() || v.as_list().is_some() => Some(v),
        _ => d.get(key.as_bytes()),
    }
}

fn parse_info(info: &Value<'_>, warnings: &mut Vec<String>) -> Result<Info, MetainfoError> {
    let name_v = utf8_variant(info, "name").ok_or(MetainfoError::Missing("name"))?;
    let name_raw = name_v.as_bytes().ok_or(MetainfoError::WrongType {
        key: "name",
        expected: "string",
    })?;
    let name = check_component(name_raw, warnings).map_err(|r| unsafe_path(&[name_raw], r))?;

    let pl = info
        .get(b"piece length")
        .ok_or(MetainfoError::Missing("piece length"))?
        .as_int()
        .ok_or(MetainfoError::WrongType {
            key: "piece length",
            expected: "integer",
        })?;
    let piece_length = match u32::try_from(pl) {
        Ok(p) if p.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&p) => p,
        _ => return Err(MetainfoError::BadPieceLength(pl)),
    };

    let pieces_raw = match info.get(b"pieces") {
        Some(v) => v.as_bytes().ok_or(MetainfoError::WrongType {
            key: "pieces",
            expected: "string",
        })?,
        None => {
            return Err(if info.get(b"file tree").is_some() {
                MetainfoError::V2Only
            } else {
                MetainfoError::Missing("pieces")
            })
        }
    };
    if pieces_raw.len() % 20 != 0 {
        return Err(MetainfoError::PiecesNotMultipleOf20(pieces_raw.len()));
    }

    let private = match info.get(b"private") {
        None => false,
        Some(v) => match v.as_int() {
            Some(i) => i == 1,
            None => {
                warnings.push("'private' is not an integer; treated as not private".into());
                false
            }
        },
    };
    let source = opt_string(info, "source", warnings);

    let (single_file, files) = match (info.get(b"length"), info.get(b"files")) {
        (Some(len), None) => {
            let l = len.as_int().ok_or(MetainfoError::WrongType {
                key: "length",
                expected: "integer",
            })?;
            let length =
                u64::try_from(l).map_err(|_| MetainfoError::NegativeLength(name.clone()))?;
            let pad = is_pad(info);
            (
                true,
                vec![FileEntry {
                    path: vec![name.clone()],
                    length,
                    offset: 0,
                    pad,
                }],
            )
        }
        (None, Some(files)) => (false, parse_files(files, warnings)?),
        _ => return Err(MetainfoError::LengthAndFiles),
    };

    let lengths: Vec<u64> = files.iter().map(|f| f.length).collect();
    let layout = Layout::new(piece_length, &lengths).map_err(MetainfoError::Layout)?;
    let got = pieces_raw.len() / 20;
    if got as u64 != u64::from(layout.num_pieces()) {
        return Err(MetainfoError::PieceCountMismatch {
            expected: u64::from(layout.num_pieces()),
            got,
        });
    }
    let pieces = pieces_raw
        .chunks_exact(20)
        .map(|c| {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            h
        })
        .collect();
    let files = files
        .into_iter()
        .zip(layout.files())
        .map(|(f, ext)| FileEntry {
            offset: ext.offset,
            ..f
        })
        .collect();
    Ok(Info {
        name,
        pieces,
        files,
        private,
        single_file,
        source,
        layout,
    })
}

fn is_pad(d: &Value<'_>) -> bool {
    d.get(b"attr")
        .and_then(Value::as_bytes)
        .is_some_and(|a| a.contains(&b'p'))
}

fn parse_files(
    files: &Value<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = files.as_list().ok_or(MetainfoError::WrongType {
        key: "files",
        expected: "list",
    })?;
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let mut out = Vec::with_capacity(list.len());
    for f in list {
        if f.as_dict().is_none() {
            return Err(MetainfoError::WrongType {
                key: "files",
                expected: "list of dictionaries",
            });
        }
        let path_v = utf8_variant(f, "path").ok_or(MetainfoError::Missing("path"))?;
        let comps = path_v.as_list().ok_or(MetainfoError::WrongType {
            key: "path",
            expected: "list of strings",
        })?;
        let raw: Vec<&[u8]> = comps
            .iter()
            .map(|c| {
                c.as_bytes().ok_or(MetainfoError::WrongType {
                    key: "path",
                    expected: "list of strings",
                })
            })
            .collect::<Result<_, _>>()?;
        if raw.is_empty() {
            return Err(unsafe_path(&raw, "empty path"));
        }
        let mut path = Vec::with_capacity(raw.len());
        for c in &raw {
            path.push(check_component(c, warnings).map_err(|r| unsafe_path(&raw, r))?);
        }
        let l = f
            .get(b"length")
            .ok_or(MetainfoError::Missing("length"))?
            .as_int()
            .ok_or(MetainfoError::WrongType {
                key: "length",
                expected: "integer",
            })?;
        let length = u64::try_from(l).map_err(|_| MetainfoError::NegativeLength(path.join("/")))?;
        out.push(FileEntry {
            path,
            length,
            offset: 0,
            pad: is_pad(f),
        });
    }
    check_duplicates(&out)?;
    Ok(out)
}

/// Refuses two real (non-padding) files with the same path, and a file whose path is a
/// prefix folder of another file's path (it could not be both a file and a folder).
fn check_duplicates(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut paths: Vec<&[String]> = files
        .iter()
        .filter(|f| !f.pad)
        .map(|f| &f.path[..])
        .collect();
    paths.sort_unstable();
    for w in paths.windows(2) {
        // After sorting, a path that is a prefix of another sorts right before its first
        // extension, so comparing neighbours finds both kinds of conflict.
        if w[1].starts_with(w[0]) {
            return Err(MetainfoError::DuplicatePath(w[0].join("/")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
