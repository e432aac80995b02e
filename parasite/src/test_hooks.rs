//! Test-only fault injection. Not part of the API; used by this crate's crash tests.

use std::sync::atomic::{AtomicBool, Ordering};

static STALL_AFTER_POKE: AtomicBool = AtomicBool::new(false);

/// Make every later injection stop forever right after the syscall site is patched, so a test can
/// kill the injecting process at the most dangerous moment.
pub fn stall_after_poke(on: bool) {
    STALL_AFTER_POKE.store(on, Ordering::SeqCst);
}

pub(crate) fn stall_point() {
    if STALL_AFTER_POKE.load(Ordering::SeqCst) {
        log::warn!("test hook: stalling forever after poking the syscall site");
        loop {
            std::thread::park();
        }
    }
}
