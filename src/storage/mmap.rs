//! The memory-mapped backend.
//!
//! Files are mapped read-only and shared, in windows of [`MmapOptions::window`] bytes that
//! overlap by [`MAX_BLOCK_LEN`], so any block inside one file lies wholly inside one window
//! and can be handed out as a slice of it. Windows live in a small LRU cache bounded by
//! [`MmapOptions::max_mapped`]; a block handed out keeps its window alive (the `Bytes` owns a
//! reference), so evicting a window never invalidates a queued block. That bounds the
//! address space we use (32-bit devices, torrents larger than RAM) and is reported by
//! [`MmapStorage::mapped_bytes`].
//!
//! Writes use `pwrite`; the mapping sees them through the page cache. Nothing ever writes
//! through a mapping.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};

use super::{sigbus, FileSpec, Storage, StorageError};
use crate::metainfo::{BlockRef, Layout, PieceIndex, MAX_BLOCK_LEN};

/// Zeros for padding files (BEP 47) and reads of them.
static ZEROS: [u8; MAX_BLOCK_LEN as usize] = [0; MAX_BLOCK_LEN as usize];

/// How to open the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read existing files; never create or change anything (verify, create, seed).
    ReadOnly,
    /// Create missing folders and files, sparse, at their full length (download).
    ReadWrite,
}

/// How new files get their length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// `ftruncate`: a sparse file; disk blocks are allocated as data arrives.
    Sparse,
    /// `fallocate`: disk space is reserved up front (unwritten extents, no zeros written), so
    /// a full disk is found before the download starts, files do not fragment, and writes
    /// are much cheaper (on ext4, 16 KiB writes into a preallocated file cost a fifth of what
    /// they cost in a sparse one). Falls back to sparse where the file system cannot do it.
    Full,
}

/// Tuning of the mapped backend.
#[derive(Clone, Copy, Debug)]
pub struct MmapOptions {
    /// Bytes per mapping window (rounded up to a page multiple).
    pub window: u64,
    /// Upper bound on bytes the window cache keeps mapped. Blocks still queued for upload
    /// can keep evicted windows alive beyond this until they are sent.
    pub max_mapped: u64,
    /// How files created or extended in [`OpenMode::ReadWrite`] get their length.
    pub allocation: Allocation,
}

impl Default for MmapOptions {
    fn default() -> Self {
        #[cfg(target_pointer_width = "32")]
        let (window, max_mapped) = (16 << 20, 256 << 20);
        #[cfg(not(target_pointer_width = "32"))]
        let (window, max_mapped) = (64 << 20, 4 << 30);
        MmapOptions {
            window,
            max_mapped,
            allocation: Allocation::Sparse,
        }
    }
}

struct FileState {
    spec: FileSpec,
    /// Length the torrent says.
    need: u64,
    file: Option<File>,
    /// Length on disk when last checked (`None`: missing).
    disk_len: Option<u64>,
    /// Shrank or vanished under a mapping: refuse further use.
    truncated: bool,
    dirty: bool,
}

struct Window {
    file: usize,
    index: u64,
    base: u64,
    bytes: Bytes,
    last_use: u64,
}

/// Owns one mapping; counts it in the storage's live-mapped total until dropped.
struct MapOwner {
    map: memmap2::Mmap,
    live: Arc<AtomicU64>,
}

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for MapOwner {
    fn drop(&mut self) {
        self.live
            .fetch_sub(self.map.len() as u64, Ordering::Relaxed);
    }
}

/// A torrent's files, memory-mapped. See the module docs.
pub struct MmapStorage {
    layout: Layout,
    files: Vec<FileState>,
    mode: OpenMode,
    window: u64,
    max_mapped: u64,
    windows: Vec<Window>,
    cached: u64,
    tick: u64,
    live: Arc<AtomicU64>,
}

impl std::fmt::Debug for MmapStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapStorage")
            .field("files", &self.files.len())
            .field("mode", &self.mode)
            .field("windows", &self.windows.len())
            .finish()
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

impl MmapStorage {
    /// Opens the files of a torrent with this layout. `files` must list one entry per file of
    /// the layout, in order (see [`super::content_files`]).
    ///
    /// In [`OpenMode::ReadOnly`] a missing or short file is not an error here: reads that need
    /// its bytes fail with [`StorageError::Unavailable`]. In [`OpenMode::ReadWrite`] folders
    /// and files are created, and short files are extended (sparse) to their full length;
    /// longer files are left alone.
    pub fn open(
        layout: Layout,
        files: Vec<FileSpec>,
        mode: OpenMode,
        opts: MmapOptions,
    ) -> Result<MmapStorage, StorageError> {
        if files.len() != layout.files().len() {
            return Err(StorageError::io(
                files.first().map_or(std::path::Path::new("."), |f| &f.path),
                "open",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "file list does not match the torrent",
                ),
            ));
        }
        let page = page_size();
        let window = opts.window.max(u64::from(MAX_BLOCK_LEN)).div_ceil(page) * page;
        let mut states = Vec::with_capacity(files.len());
        for (spec, ext) in files.into_iter().zip(layout.files()) {
            let need = ext.length;
            let mut st = FileState {
                spec,
                need,
                file: None,
                disk_len: None,
                truncated: false,
                dirty: false,
            };
            if !st.spec.pad {
                match mode {
                    OpenMode::ReadWrite => open_rw(&mut st, opts.allocation)?,
                    OpenMode::ReadOnly => open_ro(&mut st)?,
                }
            }
            states.push(st);
        }
        Ok(MmapStorage {
            layout,
            files: states,
            mode,
            window,
            max_mapped: opts.max_mapped.max(window + u64::from(MAX_BLOCK_LEN)),
            windows: Vec::new(),
            cached: 0,
            tick: 0,
            live: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Bytes currently mapped: the window cache plus evicted windows that queued blocks still
    /// hold.
    pub fn mapped_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Re-reads every file's size; a file that shrank below what the torrent needs (or
    /// vanished) since it was opened is marked truncated and reported. Call it on a timer,
    /// and whenever a socket write from a mapped block fails with `EFAULT`.
    pub fn recheck_files(&mut self) -> Result<(), StorageError> {
        for i in 0..self.files.len() {
            let st = &self.files[i];
            if st.spec.pad || st.file.is_none() || st.truncated {
                continue;
            }
            let had = st.disk_len.unwrap_or(0).min(st.need);
            let now = fs::metadata(&st.spec.path).map(|m| m.len()).ok();
            if now.is_none_or(|n| n < had) {
                return Err(self.truncated(i));
            }
        }
        Ok(())
    }

    /// Whether every page of a block is in the page cache (reading it would not block on
    /// disk). `false` on any error; the caller then prefetches.
    pub fn is_resident(&mut self, block: BlockRef) -> bool {
        let mut resident = true;
        let spans: Vec<_> = self.layout.block_spans(block).collect();
        for s in spans {
            if self.files[s.file].spec.pad {
                continue;
            }
            match self.view(s.file, s.file_offset, s.len) {
                Ok(b) => resident &= mincore_all(&b),
                Err(_) => return false,
            }
        }
        resident
    }

    /// Whether every page of a piece is in the page cache. One `mincore` per file window
    /// the piece touches (a 256 KiB piece: one call), so checking once per piece instead of
    /// once per block saves most of those calls.
    pub fn is_piece_resident(&mut self, piece: PieceIndex) -> bool {
        let spans: Vec<_> = self.layout.piece_spans(piece).collect();
        for s in spans {
            if self.files[s.file].spec.pad {
                continue;
            }
            if self.check_available(s.file, s.file_offset, s.len).is_err() {
                return false;
            }
            let (mut pos, end) = (s.file_offset, s.file_offset + s.len);
            while pos < end {
                let Ok(w) = self.window_for(s.file, pos) else {
                    return false;
                };
                let (base, bytes) = (self.windows[w].base, self.windows[w].bytes.clone());
                let chunk_end = end.min(base + bytes.len() as u64);
                if !mincore_all(&bytes[(pos - base) as usize..(chunk_end - base) as usize]) {
                    return false;
                }
                pos = chunk_end;
            }
        }
        true
    }

    /// Asks the kernel to read a block's pages in the background (`MADV_WILLNEED`).
    pub fn prefetch(&mut self, block: BlockRef) {
        let spans: Vec<_> = self.layout.block_spans(block).collect();
        for s in spans {
            if self.files[s.file].spec.pad {
                continue;
            }
            if let Ok(b) = self.view(s.file, s.file_offset, s.len) {
                let (addr, len) = page_range(&b);
                // SAFETY: the range lies inside a live mapping (b keeps it alive); WILLNEED
                // only schedules reads and cannot change memory contents.
                unsafe {
                    libc::madvise(addr as *mut libc::c_void, len, libc::MADV_WILLNEED);
                }
            }
        }
    }

    fn truncated(&mut self, file: usize) -> StorageError {
        let st = &mut self.files[file];
        st.truncated = true;
        st.disk_len = fs::metadata(&st.spec.path).map(|m| m.len()).ok();
        let path = st.spec.path.clone();
        // Drop this file's windows: one may hold a page we patched with zeros.
        let mut freed = 0;
        self.windows.retain(|w| {
            if w.file == file {
                freed += w.bytes.len() as u64;
                false
            } else {
                true
            }
        });
        self.cached -= freed;
        StorageError::Truncated { path }
    }

    fn check_available(&self, file: usize, off: u64, len: u64) -> Result<(), StorageError> {
        let st = &self.files[file];
        if st.truncated {
            return Err(StorageError::Truncated {
                path: st.spec.path.clone(),
            });
        }
        match st.disk_len {
            Some(d) if off + len <= d => Ok(()),
            have => Err(StorageError::Unavailable {
                path: st.spec.path.clone(),
                have,
                need: st.need,
            }),
        }
    }

    /// A zero-copy view of `len` bytes at `off` in `file`; `len` must not exceed
    /// `MAX_BLOCK_LEN` unless the range lies within one window.
    fn view(&mut self, file: usize, off: u64, len: u64) -> Result<Bytes, StorageError> {
        self.check_available(file, off, len)?;
        let w = self.window_for(file, off)?;
        let start = (off - self.windows[w].base) as usize;
        let bytes = &self.windows[w].bytes;
        if start + len as usize > bytes.len() {
            // Only possible for ranges longer than the overlap; callers split those.
            return Err(StorageError::io(
                &self.files[file].spec.path,
                "map",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "range crosses a mapping window",
                ),
            ));
        }
        Ok(bytes.slice(start..start + len as usize))
    }

    /// Index into `self.windows` of the window holding offset `off` of `file`, mapping it if
    /// needed.
    fn window_for(&mut self, file: usize, off: u64) -> Result<usize, StorageError> {
        self.tick += 1;
        let index = off / self.window;
        if let Some(i) = self
            .windows
            .iter()
            .position(|w| w.file == file && w.index == index)
        {
            self.windows[i].last_use = self.tick;
            return Ok(i);
        }
        let st = &self.files[file];
        let base = index * self.window;
        let limit = st.need.min(st.disk_len.unwrap_or(0));
        let len = (self.window + u64::from(MAX_BLOCK_LEN)).min(limit.saturating_sub(base));
        let Some(f) = st.file.as_ref() else {
            return Err(StorageError::Unavailable {
                path: st.spec.path.clone(),
                have: None,
                need: st.need,
            });
        };
        // The budget counts windows, not bytes: the overlap must not make a file that fits
        // in `max_mapped` need one window more than the budget allows (that thrashes).
        let max_windows = (self.max_mapped / self.window).max(1) as usize;
        while self.windows.len() >= max_windows && !self.windows.is_empty() {
            let lru = self
                .windows
                .iter()
                .enumerate()
                .min_by_key(|(_, w)| w.last_use)
                .map(|(i, _)| i)
                .unwrap_or(0);
            let w = self.windows.swap_remove(lru);
            self.cached -= w.bytes.len() as u64;
        }
        // SAFETY: the mapping is read-only and shared. Other processes may change the file
        // under it; every byte read from it is treated as untrusted (pieces are hashed before
        // they count), and reads past a truncated end are caught by `sigbus::guarded`.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(base)
                .len(len as usize)
                .map(f)
        }
        .map_err(|e| StorageError::io(&st.spec.path, "mmap", e))?;
        self.live.fetch_add(map.len() as u64, Ordering::Relaxed);
        let bytes = Bytes::from_owner(MapOwner {
            map,
            live: Arc::clone(&self.live),
        });
        self.cached += len;
        self.windows.push(Window {
            file,
            index,
            base,
            bytes,
            last_use: self.tick,
        });
        Ok(self.windows.len() - 1)
    }

    /// Calls `f` on the bytes of `file` in `off..off + len`, window by window, with SIGBUS
    /// guarded.
    fn with_range(
        &mut self,
        file: usize,
        off: u64,
        len: u64,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), StorageError> {
        self.check_available(file, off, len)?;
        let end = off + len;
        let mut pos = off;
        while pos < end {
            let w = self.window_for(file, pos)?;
            let (base, bytes) = (self.windows[w].base, self.windows[w].bytes.clone());
            let chunk_end = end.min(base + bytes.len() as u64);
            let slice = &bytes[(pos - base) as usize..(chunk_end - base) as usize];
            let ((), faulted) = sigbus::guarded(|| f(slice));
            if faulted {
                return Err(self.truncated(file));
            }
            pos = chunk_end;
        }
        Ok(())
    }
}

fn open_rw(st: &mut FileState, allocation: Allocation) -> Result<(), StorageError> {
    let path = &st.spec.path;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, "create folder", e))?;
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StorageError::io(path, "open", e))?;
    let len = f
        .metadata()
        .map_err(|e| StorageError::io(path, "stat", e))?
        .len();
    if len < st.need {
        let mut done = false;
        if allocation == Allocation::Full {
            // SAFETY: fallocate on an open descriptor with in-range offsets; no memory is passed.
            let r = unsafe {
                libc::fallocate(
                    f.as_raw_fd(),
                    0,
                    len as libc::off_t,
                    (st.need - len) as libc::off_t,
                )
            };
            if r == 0 {
                done = true;
            } else {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => {}
                    _ => return Err(StorageError::io(path, "allocate", e)),
                }
            }
        }
        if !done {
            // Sparse: no zeros are written, the file system allocates blocks as data arrives.
            f.set_len(st.need)
                .map_err(|e| StorageError::io(path, "extend", e))?;
        }
    }
    st.disk_len = Some(len.max(st.need));
    st.file = Some(f);
    Ok(())
}

fn open_ro(st: &mut FileState) -> Result<(), StorageError> {
    let path = &st.spec.path;
    match File::open(path) {
        Ok(f) => {
            let md = f
                .metadata()
                .map_err(|e| StorageError::io(path, "stat", e))?;
            if md.is_file() {
                st.disk_len = Some(md.len());
                st.file = Some(f);
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, "open", e)),
    }
}

fn page_range(b: &[u8]) -> (usize, usize) {
    let page = page_size() as usize;
    let start = b.as_ptr() as usize & !(page - 1);
    let end = (b.as_ptr() as usize + b.len()).div_ceil(page) * page;
    (start, end - start)
}

fn mincore_all(b: &[u8]) -> bool {
    if b.is_empty() {
        return true;
    }
    let (addr, len) = page_range(b);
    let pages = len / page_size() as usize;
    let mut vec = vec![0u8; pages];
    // SAFETY: addr..addr+len is page-aligned and inside a live mapping; vec has one byte per
    // page as mincore requires.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    r == 0 && vec.iter().all(|v| v & 1 == 1)
}

impl Storage for MmapStorage {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn read_block(&mut self, block: BlockRef) -> Result<Bytes, StorageError> {
        let mut spans = self.layout.block_spans(block);
        let Some(first) = spans.next() else {
            return Ok(Bytes::new());
        };
        if first.len == u64::from(block.len()) {
            // The common case: one file, zero copy.
            if self.files[first.file].spec.pad {
                return Ok(Bytes::from_static(&ZEROS[..block.len() as usize]));
            }
            return self.view(first.file, first.file_offset, first.len);
        }
        // The block crosses file boundaries: copy it once.
        let mut out = BytesMut::with_capacity(block.len() as usize);
        let all: Vec<_> = std::iter::once(first).chain(spans).collect();
        for s in all {
            if self.files[s.file].spec.pad {
                out.extend_from_slice(&ZEROS[..s.len as usize]);
            } else {
                self.with_range(s.file, s.file_offset, s.len, |b| out.extend_from_slice(b))?;
            }
        }
        Ok(out.freeze())
    }

    fn write_block(&mut self, block: BlockRef, data: &[u8]) -> Result<(), StorageError> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StorageError::ReadOnly);
        }
        if data.len() != block.len() as usize {
            return Err(StorageError::WrongLength {
                expected: block.len(),
                got: data.len(),
            });
        }
        for s in self.layout.block_spans(block) {
            let st = &mut self.files[s.file];
            if st.spec.pad {
                continue;
            }
            let Some(f) = st.file.as_ref() else {
                return Err(StorageError::Unavailable {
                    path: st.spec.path.clone(),
                    have: None,
                    need: st.need,
                });
            };
            let part = &data[s.range_offset as usize..(s.range_offset + s.len) as usize];
            f.write_all_at(part, s.file_offset)
                .map_err(|e| StorageError::io(&st.spec.path, "write", e))?;
            st.dirty = true;
            let end = s.file_offset + s.len;
            st.disk_len = Some(st.disk_len.map_or(end, |d| d.max(end)));
        }
        Ok(())
    }

    fn hash_piece(&mut self, piece: PieceIndex) -> Result<[u8; 20], StorageError> {
        let mut h = Sha1::new();
        let spans: Vec<_> = self.layout.piece_spans(piece).collect();
        for s in spans {
            if self.files[s.file].spec.pad {
                let mut left = s.len as usize;
                while left > 0 {
                    let n = left.min(ZEROS.len());
                    h.update(&ZEROS[..n]);
                    left -= n;
                }
            } else {
                self.with_range(s.file, s.file_offset, s.len, |b| h.update(b))?;
            }
        }
        Ok(h.finalize().into())
    }

    fn is_resident(&mut self, block: BlockRef) -> bool {
        MmapStorage::is_resident(self, block)
    }

    fn prefetch(&mut self, block: BlockRef) {
        MmapStorage::prefetch(self, block)
    }

    fn is_piece_resident(&mut self, piece: PieceIndex) -> bool {
        MmapStorage::is_piece_resident(self, piece)
    }

    fn recheck(&mut self) -> Result<(), StorageError> {
        self.recheck_files()
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        for st in &mut self.files {
            if st.dirty {
                if let Some(f) = &st.file {
                    f.sync_data()
                        .map_err(|e| StorageError::io(&st.spec.path, "sync", e))?;
                }
                st.dirty = false;
            }
        }
        Ok(())
    }
}
