//! The resume record: which pieces were verified, and the size and modification time of
//! every file when that was established, so a restart can skip rehashing files that have not
//! changed and must rehash every piece touching a file that has.
//!
//! Format (bencoded dictionary, keys sorted):
//!
//! ```text
//! bitmill resume  1
//! content         <the content path the record is for>
//! files           list, one per torrent file: [] (missing) or [length, mtime_s, mtime_ns]
//! info-hash       <20 bytes>
//! pieces          <bitfield, BEP 3 bit order>
//! ```
//!
//! A record is written atomically (temporary file, fsync, rename, fsync of the folder), so a
//! crash leaves either the old record or the new one. Reading one is hostile input like any
//! other: a record that does not parse, is for another torrent or another place, or has the
//! wrong shape is ignored and everything is rehashed.
//!
//! File stamps must be taken *before* the pieces are hashed: a file written during hashing
//! then has a newer mtime than the record and is rehashed next time.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::bencode::{self, OwnedValue};
use crate::bitfield::Bitfield;
use crate::metainfo::{InfoHash, Layout, PieceIndex};

use super::FileSpec;

/// A file's size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes.
    pub length: u64,
    /// Modification time, seconds since the epoch.
    pub mtime_s: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_ns: i64,
}

/// The stamp of each file (`None`: missing, or a padding file).
pub fn stamps(files: &[FileSpec]) -> Vec<Option<FileStamp>> {
    files
        .iter()
        .map(|f| {
            if f.pad {
                return None;
            }
            let m = fs::metadata(&f.path).ok()?;
            m.is_file().then(|| FileStamp {
                length: m.len(),
                mtime_s: m.mtime(),
                mtime_ns: m.mtime_nsec(),
            })
        })
        .collect()
}

/// What a resume record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeRecord {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The content path (file or folder) the record describes, as bytes.
    pub content: Vec<u8>,
    /// Pieces verified.
    pub have: Bitfield,
    /// Each file's stamp when `have` was established.
    pub files: Vec<Option<FileStamp>>,
}

/// Why a record was not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeError(pub String);

impl std::fmt::Display for ResumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "resume record: {}", self.0)
    }
}

impl std::error::Error for ResumeError {}

impl ResumeRecord {
    /// A record for `content` (stored as its bytes).
    pub fn new(
        info_hash: InfoHash,
        content: &Path,
        have: Bitfield,
        files: Vec<Option<FileStamp>>,
    ) -> Self {
        ResumeRecord {
            info_hash,
            content: content.as_os_str().as_bytes().to_vec(),
            have,
            files,
        }
    }

    /// Bencoded form.
    pub fn encode(&self) -> Vec<u8> {
        let files = self
            .files
            .iter()
            .map(|s| match s {
                None => OwnedValue::List(vec![]),
                Some(s) => OwnedValue::List(vec![
                    OwnedValue::Int(s.length as i64),
                    OwnedValue::Int(s.mtime_s),
                    OwnedValue::Int(s.mtime_ns),
                ]),
            })
            .collect();
        let d = [
            (&b"bitmill resume"[..], OwnedValue::Int(1)),
            (b"content", OwnedValue::bytes(&self.content)),
            (b"files", OwnedValue::List(files)),
            (b"info-hash", OwnedValue::bytes(self.info_hash.0)),
            (b"pieces", OwnedValue::bytes(self.have.as_bytes())),
        ];
        OwnedValue::Dict(d.into_iter().map(|(k, v)| (k.to_vec(), v)).collect()).encode()
    }

    /// Parses a record for a torrent with `num_pieces` pieces and `num_files` files.
    pub fn decode(data: &[u8], num_pieces: u32, num_files: usize) -> Result<Self, ResumeError> {
        let bad = |what: &str| ResumeError(what.to_string());
        let v = bencode::decode(data).map_err(|e| ResumeError(e.to_string()))?;
        if v.get(b"bitmill resume").and_then(|x| x.as_int()) != Some(1) {
            return Err(bad("not a bitmill resume record (version 1)"));
        }
        let ih = v
            .get(b"info-hash")
            .and_then(|x| x.as_bytes())
            .ok_or_else(|| bad("no info-hash"))?;
        let info_hash = InfoHash(
            ih.try_into()
                .map_err(|_| bad("info-hash is not 20 bytes"))?,
        );
        let content = v
            .get(b"content")
            .and_then(|x| x.as_bytes())
            .ok_or_else(|| bad("no content"))?
            .to_vec();
        let pieces = v
            .get(b"pieces")
            .and_then(|x| x.as_bytes())
            .ok_or_else(|| bad("no pieces"))?;
        let have = Bitfield::from_bytes(pieces, num_pieces)
            .ok_or_else(|| bad("pieces bitfield has the wrong size"))?;
        let list = v
            .get(b"files")
            .and_then(|x| x.as_list())
            .ok_or_else(|| bad("no files"))?;
        if list.len() != num_files {
            return Err(bad("wrong number of files"));
        }
        let mut files = Vec::with_capacity(list.len());
        for f in list {
            let items = f.as_list().ok_or_else(|| bad("file entry is not a list"))?;
            files.push(match items {
                [] => None,
                [l, s, n] => {
                    let (Some(l), Some(s), Some(n)) = (l.as_int(), s.as_int(), n.as_int()) else {
                        return Err(bad("file entry holds a non-integer"));
                    };
                    let length = u64::try_from(l).map_err(|_| bad("negative file length"))?;
                    Some(FileStamp {
                        length,
                        mtime_s: s,
                        mtime_ns: n,
                    })
                }
                _ => return Err(bad("file entry has the wrong shape")),
            });
        }
        Ok(ResumeRecord {
            info_hash,
            content,
            have,
            files,
        })
    }
}

/// Which pieces a restart may trust and which it must hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePlan {
    /// Pieces the record says are verified, all of whose files are unchanged.
    pub trusted: Bitfield,
    /// Pieces that must be hashed: those touching a file whose stamp changed (or every piece
    /// when there is no usable record).
    pub to_check: Vec<PieceIndex>,
}

/// Compares a record (if any) with the files' current stamps.
pub fn plan(
    record: Option<&ResumeRecord>,
    info_hash: InfoHash,
    content: &Path,
    layout: &Layout,
    current: &[Option<FileStamp>],
) -> ResumePlan {
    let n = layout.num_pieces();
    let usable = record.filter(|r| {
        r.info_hash == info_hash
            && r.content == content.as_os_str().as_bytes()
            && r.have.len() == n
            && r.files.len() == current.len()
    });
    let Some(r) = usable else {
        return ResumePlan {
            trusted: Bitfield::new(n),
            to_check: layout.pieces().collect(),
        };
    };
    let unchanged: Vec<bool> = r.files.iter().zip(current).map(|(a, b)| a == b).collect();
    let mut trusted = Bitfield::new(n);
    let mut to_check = Vec::new();
    for p in layout.pieces() {
        if layout.piece_spans(p).all(|s| unchanged[s.file]) {
            if r.have.get(p.get()) {
                trusted.set(p.get());
            }
        } else {
            to_check.push(p);
        }
    }
    ResumePlan { trusted, to_check }
}

/// Reads a record file; `Ok(None)` when there is none.
pub fn load(
    path: &Path,
    num_pieces: u32,
    num_files: usize,
) -> Result<Option<ResumeRecord>, ResumeError> {
    match fs::read(path) {
        Ok(data) => ResumeRecord::decode(&data, num_pieces, num_files).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ResumeError(format!("{}: {e}", path.display()))),
    }
}

/// Writes `data` to `path` atomically: a crash leaves the old file or the new one.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
