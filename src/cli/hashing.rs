//! Hashing many pieces on every core, with a progress bar.
//!
//! Each worker thread opens its own read-only [`MmapStorage`] over the same files and takes
//! runs of pieces from a shared atomic counter, so the work stays sequential on disk within a
//! run and no locks are involved. Used by `create` and `verify`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bitmill::metainfo::{Layout, PieceIndex};
use bitmill::storage::{FileSpec, MmapOptions, MmapStorage, OpenMode, Storage, StorageError};
use indicatif::{ProgressBar, ProgressStyle};

/// Pieces a worker takes at a time.
const RUN: usize = 16;

/// How the progress of a long hash is shown.
pub(crate) fn progress_bar(total_bytes: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// The default number of hashing threads: one per core.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Hashes `pieces` of the files `specs` laid out by `layout`, on `threads` threads.
/// Returns one result per piece, in the order of `pieces`.
pub(crate) fn hash_pieces(
    layout: &Layout,
    specs: &[FileSpec],
    pieces: &[PieceIndex],
    threads: usize,
    bar: &ProgressBar,
) -> Result<Vec<Result<[u8; 20], StorageError>>, StorageError> {
    let threads = threads.clamp(1, 64).min(pieces.len().max(1));
    let next = AtomicUsize::new(0);
    let done_bytes = AtomicU64::new(0);
    let finished = AtomicUsize::new(0);
    // Open all storages up front so an open error is reported once, before any work.
    let mut storages = Vec::with_capacity(threads);
    for _ in 0..threads {
        storages.push(MmapStorage::open(
            layout.clone(),
            specs.to_vec(),
            OpenMode::ReadOnly,
            MmapOptions::default(),
        )?);
    }
    let mut results: Vec<Option<Result<[u8; 20], StorageError>>> =
        (0..pieces.len()).map(|_| None).collect();
    let main_thread = std::thread::current();
    std::thread::scope(|scope| {
        let handles: Vec<_> = storages
            .into_iter()
            .map(|mut storage| {
                let (next, done_bytes, finished) = (&next, &done_bytes, &finished);
                let main_thread = main_thread.clone();
                scope.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let start = next.fetch_add(RUN, Ordering::Relaxed);
                        if start >= pieces.len() {
                            break;
                        }
                        for (i, &p) in pieces.iter().enumerate().skip(start).take(RUN) {
                            out.push((i, storage.hash_piece(p)));
                            done_bytes.fetch_add(u64::from(layout.piece_len(p)), Ordering::Relaxed);
                        }
                    }
                    finished.fetch_add(1, Ordering::Release);
                    main_thread.unpark();
                    out
                })
            })
            .collect();
        while finished.load(Ordering::Acquire) < handles.len() {
            bar.set_position(done_bytes.load(Ordering::Relaxed));
            std::thread::park_timeout(Duration::from_millis(100));
        }
        for h in handles {
            // A worker only panics on a bug: re-raise it here rather than hide it.
            for (i, r) in h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
                results[i] = Some(r);
            }
        }
    });
    bar.set_position(done_bytes.load(Ordering::Relaxed));
    Ok(results.into_iter().map(|r| r.unwrap()).collect()) // NOTE(unwrap): every index was handed to one worker
}
