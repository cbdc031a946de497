//! Clean stops on SIGINT and SIGTERM.
//!
//! [`install`] replaces the default handlers with one that only records the request (an atomic
//! store, async-signal-safe). The runner checks [`requested`] between control steps: episodes in
//! progress are abandoned (a resume runs them again from their seed), every completed episode is
//! already flushed to `results.jsonl`, and `zplan run` exits with status 130 and says how to
//! resume. A second signal while stopping kills the process at once, as without a handler.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // Second signal: back to the default action, then deliver it again.
        // SAFETY: signal() and raise() are async-signal-safe (POSIX.1-2008).
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// Installs the SIGINT/SIGTERM handlers (idempotent).
pub fn install() {
    #[cfg(unix)]
    // SAFETY: `on_signal` is an `extern "C"` function that only touches an atomic and calls
    // async-signal-safe functions; installing it has no other effect on the process.
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Requests a stop as a signal would (used by tests and embedders).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}
