//! Finding the files under a path, for making a torrent of them.
//!
//! Order and selection follow `mktorrent`, so the same folder gives the same info hash:
//! every regular file under the folder, hidden ones and empty ones included, symbolic links
//! followed, sorted by their path relative to the folder compared byte by byte with `/` as
//! the separator (so `a.txt` sorts before `a/b`). Anything that is neither a file nor a
//! folder (sockets, fifos, devices) is skipped and reported; a link that leads back into a
//! folder being walked (a loop) is skipped and reported.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::metainfo::check_component;

/// One file found by [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedFile {
    /// Components relative to the scanned folder (for a single file: its name).
    pub path: Vec<String>,
    /// Where it is.
    pub full_path: PathBuf,
    /// Its length.
    pub length: u64,
}

/// What [`scan`] found.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The torrent's name: the file's or folder's own name.
    pub name: String,
    /// The path was a single file.
    pub single_file: bool,
    /// Files in torrent order.
    pub files: Vec<ScannedFile>,
    /// Things skipped, for the user.
    pub warnings: Vec<String>,
}

impl Scan {
    /// Total bytes.
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }
}

fn name_of(path: &Path, warnings: &mut Vec<String>) -> io::Result<String> {
    let raw = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no name", path.display())))?;
    let bytes = raw
        .to_str()
        .ok_or_else(|| io::Error::other(format!("{}: file name is not UTF-8", path.display())))?;
    check_component(bytes.as_bytes(), warnings)
        .map_err(|why| io::Error::other(format!("{}: {why}", path.display())))
}

/// Lists the files of `path` (a file or a folder) in torrent order.
pub fn scan(path: &Path) -> io::Result<Scan> {
    let abs = fs::canonicalize(path)?;
    let mut warnings = Vec::new();
    let name = name_of(&abs, &mut warnings)?;
    let md = fs::metadata(&abs)?;
    if md.is_file() {
        let files = vec![ScannedFile {
            path: vec![name.clone()],
            full_path: abs,
            length: md.len(),
        }];
        return Ok(Scan {
            name,
            single_file: true,
            files,
            warnings,
        });
    }
    if !md.is_dir() {
        return Err(io::Error::other(format!(
            "{} is neither a file nor a folder",
            path.display()
        )));
    }
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    walk(&abs, &mut Vec::new(), &mut files, &mut seen, &mut warnings)?;
    files.sort_by(|a, b| a.path.join("/").cmp(&b.path.join("/")));
    Ok(Scan {
        name,
        single_file: false,
        files,
        warnings,
    })
}

fn walk(
    dir: &Path,
    rel: &mut Vec<String>,
    out: &mut Vec<ScannedFile>,
    seen: &mut HashSet<(u64, u64)>, // folders on the current path (loop detection)
    warnings: &mut Vec<String>,
) -> io::Result<()> {
    let md = fs::metadata(dir)?;
    let id = (md.dev(), md.ino());
    if !seen.insert(id) {
        warnings.push(format!(
            "{}: link loop (folder inside itself); skipped",
            dir.display()
        ));
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let full = entry.path();
        let name = name_of(&full, warnings)?;
        let md = match fs::metadata(&full) {
            Ok(m) => m,
            Err(e) => {
                warnings.push(format!("{}: {e}; skipped", full.display()));
                continue;
            }
        };
        rel.push(name);
        if md.is_dir() {
            walk(&full, rel, out, seen, warnings)?;
        } else if md.is_file() {
            out.push(ScannedFile {
                path: rel.clone(),
                full_path: full,
                length: md.len(),
            });
        } else {
            warnings.push(format!("{}: not a regular file; skipped", full.display()));
        }
        rel.pop();
    }
    seen.remove(&id);
    Ok(())
}
