//! Test-only fault injection, compiled only with the `test-hooks` feature (never in a release build of the
//! dormant binary: scripts/test.sh runs the crash tests that need it in a cargo invocation of their own).
//! Not part of the API.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The code written at the syscall site (for tests that look at what a dead dumper leaves there).
pub const SITE_CODE: &[u8] = &crate::site::CODE;

static STALL_AFTER_POKE: AtomicBool = AtomicBool::new(false);
static DIE_AT: AtomicU32 = AtomicU32::new(0);
/// How many more times DIE_AT's stage may pass before the process dies there.
static DIE_SKIP: AtomicU32 = AtomicU32::new(0);

/// Points of an injection where a crash test can kill the injecting process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// Registers loaded at the site and the mask blocked; the injected syscall not yet entered.
    SitePatched = 1,
    /// The parasite area is mapped (mmap's exit stop); the blob not written yet.
    AreaMapped = 2,
    /// Blob and boot block written, magic last; the thread not yet let into it.
    BlobLoaded = 3,
    /// A request was sent to the blob, its reply not read yet.
    CommandRunning = 4,
    /// Cure: the dumper's end of the socket is closed; the blob is cleaning up.
    CureReturned = 5,
    /// Cure: the blob's munmap done (its exit stop); exact registers not yet back.
    CureUnmapped = 6,
    /// At an injected syscall's entry stop, the real syscall number swapped in.
    SyscallEntered = 7,
    /// The dumper holds its end of the socket; the blob not yet let go.
    SocketTaken = 8,
    /// PTRACE_INTERRUPT sent at a syscall-exit stop; the interrupt stop not yet reached.
    Interrupted = 9,
    /// Ending a session: the mask is back, the registers not yet.
    MaskRestored = 10,
}

impl Stage {
    /// Every stage, in the order an injection passes them.
    pub const ALL: [Stage; 10] = [
        Stage::SitePatched,
        Stage::SyscallEntered,
        Stage::AreaMapped,
        Stage::BlobLoaded,
        Stage::SocketTaken,
        Stage::CommandRunning,
        Stage::Interrupted,
        Stage::CureReturned,
        Stage::CureUnmapped,
        Stage::MaskRestored,
    ];
}

/// Make every later injection stop forever right after the registers are loaded at the site, so a test
/// can kill the injecting process at that moment.
pub fn stall_after_poke(on: bool) {
    STALL_AFTER_POKE.store(on, Ordering::SeqCst);
}

/// SIGKILL this process when the injection reaches `stage` (a dumper crash at that point).
pub fn die_at(stage: Option<Stage>) {
    die_at_nth(stage, 0);
}

/// SIGKILL this process the `skip + 1`-th time the injection reaches `stage`.
pub fn die_at_nth(stage: Option<Stage>, skip: u32) {
    DIE_SKIP.store(skip, Ordering::SeqCst);
    DIE_AT.store(stage.map_or(0, |s| s as u32), Ordering::SeqCst);
}

pub(crate) fn stall_point() {
    if STALL_AFTER_POKE.load(Ordering::SeqCst) {
        log::warn!("test hook: stalling forever with the registers loaded at the site");
        loop {
            std::thread::park();
        }
    }
}

pub(crate) fn stage(stage: Stage) {
    if DIE_AT.load(Ordering::SeqCst) != stage as u32 {
        return;
    }
    if DIE_SKIP
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return;
    }
    log::warn!("test hook: dying at {stage:?}");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}

/// Closes the dumper's read ends of `p`'s page pipes (/dev/null takes their places), so that the blob's
/// next vmsplice meets pipes without readers, as after the dumper's death.
pub fn close_page_pipe_readers(p: &mut crate::Parasite) {
    for pipe in &mut p.pipes {
        if let Ok(null) = std::fs::File::open("/dev/null") {
            pipe.read = null.into();
        }
    }
}
