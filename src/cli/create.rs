//! `bitmill create`: make a .torrent file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use bitmill::metainfo::{
    auto_piece_length, Layout, Metainfo, TorrentBuilder, MAX_PIECE_LENGTH, MIN_PIECE_LENGTH,
};
use bitmill::storage::scan::scan;
use bitmill::storage::FileSpec;
use clap::Args;

use super::hashing::{default_threads, hash_pieces, progress_bar};
use super::{human_bytes, parse_size, CliResult};

#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// The file or folder to share.
    path: PathBuf,
    /// Where to write the torrent (default: NAME.torrent in the current folder).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Piece length: bytes with an optional K/M suffix (256K), or a power of two exponent
    /// as mktorrent's -l takes it (18 = 256 KiB). Default: chosen from the size, aiming at
    /// 1,000 to 2,000 pieces.
    #[arg(short = 'l', long, value_name = "N")]
    piece_length: Option<String>,
    /// Tracker announce URL; repeat for more (each becomes its own tier).
    #[arg(short = 't', long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// Web seed URL (BEP 19); repeat for more.
    #[arg(short = 'w', long = "web-seed", value_name = "URL")]
    web_seeds: Vec<String>,
    /// Mark the torrent private (BEP 27: trackers only, no DHT or PEX).
    #[arg(short, long)]
    private: bool,
    /// A comment.
    #[arg(short, long)]
    comment: Option<String>,
    /// `source` field inside info (changes the info hash; private trackers use it).
    #[arg(short, long)]
    source: Option<String>,
    /// Leave out the creation date (for byte-identical output).
    #[arg(long)]
    no_date: bool,
    /// Leave out `created by`.
    #[arg(long)]
    no_created_by: bool,
    /// Overwrite the output file if it exists.
    #[arg(short, long)]
    force: bool,
    /// Hashing threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar or summary (the info hash is still printed on stdout).
    #[arg(short, long)]
    quiet: bool,
}

fn piece_length(arg: &str) -> Result<u32, String> {
    let n = match arg.parse::<u32>() {
        Ok(e) if e < 32 => 1u64 << e,
        _ => parse_size(arg)?,
    };
    match u32::try_from(n) {
        Ok(p) if p.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&p) => Ok(p),
        _ => Err(format!(
            "piece length {n} must be a power of two between {} and {}",
            human_bytes(u64::from(MIN_PIECE_LENGTH)),
            human_bytes(u64::from(MAX_PIECE_LENGTH))
        )),
    }
}

pub(crate) fn run(a: CreateArgs) -> CliResult {
    let scan = scan(&a.path).map_err(|e| format!("{}: {e}", a.path.display()))?;
    for w in &scan.warnings {
        eprintln!("warning: {w}");
    }
    let total = scan.total_length();
    if total == 0 {
        return Err(format!(
            "{}: nothing to share (no files, or only empty ones)",
            a.path.display()
        ));
    }
    let piece_length = match &a.piece_length {
        Some(s) => piece_length(s)?,
        None => auto_piece_length(total),
    };
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", scan.name)));
    // Refuse to clobber before spending time hashing.
    if output.exists() && !a.force {
        return Err(format!(
            "{} exists (use --force to overwrite)",
            output.display()
        ));
    }

    let lengths: Vec<u64> = scan.files.iter().map(|f| f.length).collect();
    let layout = Layout::new(piece_length, &lengths).map_err(|e| e.to_string())?;
    let specs: Vec<FileSpec> = scan
        .files
        .iter()
        .map(|f| FileSpec {
            path: f.full_path.clone(),
            pad: false,
        })
        .collect();
    let pieces: Vec<_> = layout.pieces().collect();
    let bar = progress_bar(total, a.quiet, "hashing");
    let started = std::time::Instant::now();
    let hashes = hash_pieces(
        &layout,
        &specs,
        &pieces,
        a.threads.unwrap_or_else(default_threads),
        &bar,
    )
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let mut piece_bytes = Vec::with_capacity(pieces.len() * 20);
    for h in hashes {
        // A file that changed size while we hashed shows up here as unavailable data.
        piece_bytes
            .extend_from_slice(&h.map_err(|e| format!("{e} (did a file change while hashing?)"))?);
    }

    let builder = TorrentBuilder {
        name: scan.name.clone(),
        files: scan
            .files
            .iter()
            .map(|f| (f.path.clone(), f.length))
            .collect(),
        single_file: scan.single_file,
        piece_length,
        pieces: piece_bytes,
        trackers: a.trackers,
        web_seeds: a.web_seeds,
        private: a.private,
        source: a.source,
        comment: a.comment,
        created_by: (!a.no_created_by).then(|| format!("bitmill {}", env!("CARGO_PKG_VERSION"))),
        creation_date: if a.no_date {
            None
        } else {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs() as i64)
        },
    };
    let bytes = builder.encode();
    // Parse our own output: the same checks any client will apply.
    let meta = Metainfo::from_bytes(&bytes)
        .map_err(|e| format!("internal error, created torrent is invalid: {e}"))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .create_new(!a.force)
        .open(&output)
        .map_err(|e| format!("{}: {e}", output.display()))?;
    f.write_all(&bytes)
        .map_err(|e| format!("{}: {e}", output.display()))?;
    if !a.quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{}: {} in {} file(s), {} pieces of {}, hashed in {:.2} s ({}/s)",
            output.display(),
            human_bytes(total),
            scan.files.len(),
            layout.num_pieces(),
            human_bytes(u64::from(piece_length)),
            secs,
            human_bytes((total as f64 / secs.max(1e-9)) as u64),
        );
    }
    // The result, for scripts: the info hash on stdout, even with --quiet.
    println!("{}", meta.info_hash);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_argument_forms() {
        assert_eq!(piece_length("18"), Ok(1 << 18));
        assert_eq!(piece_length("256K"), Ok(1 << 18));
        assert_eq!(piece_length("262144"), Ok(1 << 18));
        assert_eq!(piece_length("4M"), Ok(4 << 20));
        assert!(piece_length("13").is_err(), "8 KiB is below the minimum");
        assert!(piece_length("100000").is_err(), "not a power of two");
        assert!(piece_length("1G").is_err(), "above the maximum");
    }
}
