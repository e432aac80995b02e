//! Test-only fault injection, compiled only with the `test-hooks` feature (never in a release build of the
//! dormant binary: scripts/test.sh runs the crash tests that need it in a cargo invocation of their own).
//! Not part of the API.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static STALL_AFTER_POKE: AtomicBool = AtomicBool::new(false);
static DIE_AT: AtomicU32 = AtomicU32::new(0);

/// Points of an injection where a crash test can kill the injecting process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// `syscall; int3` written at the site, the injected syscall not yet run.
    SitePatched = 1,
    /// The memfd area is mapped in the target, its fd still open there.
    AreaMapped = 2,
    /// Blob copied and relocated, frames not yet written, no command run.
    BlobLoaded = 3,
    /// The target was resumed into a command and is running blob code.
    CommandRunning = 4,
    /// Cure: every thread has executed its rt_sigreturn, the area is still mapped.
    CureReturned = 5,
    /// Cure: area unmapped, exact registers not yet put back.
    CureUnmapped = 6,
}

impl Stage {
    /// Every stage, in the order an injection passes them.
    pub const ALL: [Stage; 6] = [
        Stage::SitePatched,
        Stage::AreaMapped,
        Stage::BlobLoaded,
        Stage::CommandRunning,
        Stage::CureReturned,
        Stage::CureUnmapped,
    ];
}

/// Make every later injection stop forever right after the syscall site is patched, so a test can
/// kill the injecting process at the most dangerous moment.
pub fn stall_after_poke(on: bool) {
    STALL_AFTER_POKE.store(on, Ordering::SeqCst);
}

/// SIGKILL this process when the injection reaches `stage` (a dumper crash at that point).
pub fn die_at(stage: Option<Stage>) {
    DIE_AT.store(stage.map_or(0, |s| s as u32), Ordering::SeqCst);
}

pub(crate) fn stall_point() {
    stage(Stage::SitePatched);
    if STALL_AFTER_POKE.load(Ordering::SeqCst) {
        log::warn!("test hook: stalling forever after poking the syscall site");
        loop {
            std::thread::park();
        }
    }
}

pub(crate) fn stage(stage: Stage) {
    if DIE_AT.load(Ordering::SeqCst) == stage as u32 {
        log::warn!("test hook: dying at {stage:?}");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
