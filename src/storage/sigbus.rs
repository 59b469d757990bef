//! Turning SIGBUS on a mapped file into an error.
//!
//! Reading a page of a file mapping that lies past the end of the file (because someone
//! truncated the file after we mapped it) raises SIGBUS, which kills the process by default.
//! A seeding box must instead fail that one torrent. Sizes are checked before every mapping,
//! but a truncation can always race with a read, so this module closes the gap:
//!
//! - [`guarded`] runs a closure that reads mapped memory with a per-thread flag set;
//! - the process-wide SIGBUS handler, when that flag is set, maps a private zero page over
//!   the faulting page (so the interrupted read completes, seeing zeros) and counts the
//!   fault; when the flag is not set, the fault is not ours: it restores the default action
//!   and lets the fault happen again, so real bugs still crash loudly;
//! - [`guarded`] reports whether a fault happened, and the caller discards what it read and
//!   fails the torrent (the window with the patched page is dropped).
//!
//! The kernel reading a mapping for `writev` gets `EFAULT` instead of a signal, so queued
//! zero-copy blocks need no guard: the reactor sees a write error.

use std::cell::Cell;
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::Once;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static FAULTS: Cell<u64> = const { Cell::new(0) };
}

static INSTALL: Once = Once::new();

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // Only async-signal-safe work here: thread-local cells, mmap, sigaction.
    let ours = ACTIVE.with(Cell::get);
    if ours && !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers.
        let addr = unsafe { (*info).si_addr() } as usize;
        // SAFETY: sysconf is async-signal-safe.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let base = addr & !(page - 1);
        // SAFETY: the page belongs to a file mapping that a `guarded` closure is reading on
        // this thread; replacing it with an anonymous page changes only what that read sees.
        let r = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if r != libc::MAP_FAILED {
            FAULTS.with(|f| f.set(f.get() + 1));
            return;
        }
    }
    // Not ours (or we could not patch it): fall back to the default action, so the
    // re-executed instruction faults again and the process dies as it would have.
    // SAFETY: resetting a signal disposition is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting point; we set handler, mask, flags.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
    });
}

/// Runs `f`, which reads mapped file memory, and reports whether any page it touched was
/// beyond the end of its file (the result of `f` is then garbage: zeros were read).
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> (R, bool) {
    install();
    let before = FAULTS.with(Cell::get);
    let was = ACTIVE.with(|a| a.replace(true));
    // Keep the compiler from moving reads of mapped memory outside the flagged region.
    compiler_fence(Ordering::SeqCst);
    let r = f();
    compiler_fence(Ordering::SeqCst);
    ACTIVE.with(|a| a.set(was));
    (r, FAULTS.with(Cell::get) != before)
}
