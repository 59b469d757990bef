//! `bitmill verify`: hash existing data against a torrent.

use std::path::{Path, PathBuf};

use bitmill::bitfield::Bitfield;
use bitmill::metainfo::Info;
use bitmill::storage::resume::{self, ResumeRecord};
use bitmill::storage::verify::VerifyReport;
use bitmill::storage::{content_files, StorageError};
use clap::Args;
use serde_json::json;

use super::hashing::{default_threads, hash_pieces, progress_bar};
use super::{default_resume_dir, human_bytes, load_torrent, CliResult};

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Where the data is: the folder holding the torrent's file or folder (as given to
    /// `download -o`), or the file or folder itself.
    path: PathBuf,
    /// Trust the resume record for files whose size and modification time are unchanged
    /// (what `download` and `seed` do at start-up); by default every piece is hashed.
    #[arg(long)]
    quick: bool,
    /// Neither read nor write a resume record.
    #[arg(long)]
    no_resume: bool,
    /// Folder of resume records (default: $XDG_STATE_HOME/bitmill/resume).
    #[arg(long, value_name = "DIR")]
    resume_dir: Option<PathBuf>,
    /// Hashing threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

/// The content path (file or folder) of `info` given what the user pointed at.
pub(crate) fn resolve_content(info: &Info, path: &Path) -> PathBuf {
    let inside = path.join(&info.name);
    if info.single_file {
        if path.is_dir() {
            inside
        } else {
            path.to_path_buf()
        }
    } else if inside.is_dir() {
        inside
    } else {
        path.to_path_buf()
    }
}

pub(crate) fn run(a: VerifyArgs) -> CliResult {
    let m = load_torrent(&a.torrent)?;
    let info = &m.info;
    let layout = info.layout();
    let content = resolve_content(info, &a.path);
    let content = std::fs::canonicalize(&content).unwrap_or(content);
    let specs = content_files(info, &content);
    let record_path = a
        .resume_dir
        .clone()
        .unwrap_or_else(default_resume_dir)
        .join(format!("{}.resume", m.info_hash));

    // Stamps first: a file written while we hash then looks changed next time.
    let stamps = resume::stamps(&specs);
    let record = if a.quick && !a.no_resume {
        match resume::load(&record_path, layout.num_pieces(), specs.len()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("warning: {e}; hashing everything");
                None
            }
        }
    } else {
        None
    };
    let plan = resume::plan(record.as_ref(), m.info_hash, &content, layout, &stamps);
    let to_check = plan.to_check;
    let check_bytes: u64 = to_check
        .iter()
        .map(|&p| u64::from(layout.piece_len(p)))
        .sum();

    let bar = progress_bar(check_bytes, a.quiet || a.json, "verifying");
    let started = std::time::Instant::now();
    let results = hash_pieces(
        layout,
        &specs,
        &to_check,
        a.threads.unwrap_or_else(default_threads),
        &bar,
    )
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();

    let mut report = VerifyReport::default();
    let mut have = Bitfield::new(layout.num_pieces());
    for p in plan.trusted.ones() {
        // NOTE: indices from a bitfield of num_pieces bits are in range.
        if let Some(p) = layout.piece(p) {
            report.good.push(p.get());
            have.set(p.get());
        }
    }
    let mut first_error: Option<String> = None;
    let mut checked = Bitfield::new(layout.num_pieces());
    for (&p, r) in to_check.iter().zip(results) {
        checked.set(p.get());
        match r {
            Ok(h) if &h == info.piece_hash(p) => {
                report.good.push(p.get());
                have.set(p.get());
            }
            Ok(_) => report.bad.push(p.get()),
            Err(StorageError::Unavailable { .. }) | Err(StorageError::Truncated { .. }) => {
                report.missing.push(p.get())
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
                report.bad.push(p.get());
            }
        }
    }
    // Pieces the record says we lack, in unchanged files: still missing.
    report.missing.extend(
        layout
            .pieces()
            .map(|p| p.get())
            .filter(|&p| !have.get(p) && !checked.get(p)),
    );
    report.sort();

    if !a.no_resume {
        let rec = ResumeRecord::new(m.info_hash, &content, have, stamps);
        if let Err(e) = resume::write_atomic(&record_path, &rec.encode()) {
            eprintln!(
                "warning: could not write resume record {}: {e}",
                record_path.display()
            );
        }
    }

    let n = layout.num_pieces();
    if a.json {
        println!(
            "{}",
            json!({
                "info_hash": m.info_hash.to_hex(),
                "content": content.display().to_string(),
                "pieces": n,
                "good": report.good.len(),
                "bad": report.bad,
                "missing": report.missing,
                "hashed_pieces": to_check.len(),
                "hashed_bytes": check_bytes,
                "seconds": secs,
                "complete": report.complete(),
                "error": first_error,
            })
        );
    } else {
        if let Some(e) = &first_error {
            eprintln!("error: {e}");
        }
        let pct = 100.0 * report.good.len() as f64 / f64::from(n);
        println!(
            "{}: {} good, {} bad, {} missing of {n} pieces ({pct:.1}% complete); hashed {} in {secs:.2} s",
            content.display(),
            report.good.len(),
            report.bad.len(),
            report.missing.len(),
            human_bytes(check_bytes),
        );
        if !report.bad.is_empty() {
            println!("bad pieces: {}", ranges(&report.bad));
        }
        if !report.missing.is_empty() {
            println!("missing pieces: {}", ranges(&report.missing));
        }
    }
    Ok(if report.complete() && first_error.is_none() {
        0
    } else {
        1
    })
}

/// `1-3,7,9-10` from a sorted list.
fn ranges(v: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_compress() {
        assert_eq!(super::ranges(&[1, 2, 3, 7, 9, 10]), "1-3,7,9-10");
        assert_eq!(super::ranges(&[]), "");
    }
}
