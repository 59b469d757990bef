//! SIGINT and SIGTERM as a flag the reactor polls, for a clean shutdown (flush storage, write
//! the resume record). The handler only sets an atomic; it is installed without
//! `SA_RESTART`, so a blocked `epoll_wait` returns `EINTR` and the loop sees the flag at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static PENDING: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

extern "C" fn on_signal(_sig: libc::c_int) {
    PENDING.store(true, Ordering::SeqCst);
}

/// Installs the handlers (once per process).
pub fn install() {
    INSTALL.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction with a handler that only stores to an atomic is
            // async-signal-safe; flags 0 means no SA_RESTART.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = 0;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
}

/// Whether a signal arrived since the last call (and clears it).
pub fn take() -> bool {
    PENDING.swap(false, Ordering::SeqCst)
}
