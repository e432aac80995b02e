//! Workload `wl_root`: a chrooted process with its own working directory and umask.
//!
//! `wl_root TRIGGER DIR`: the jail is the trigger's directory (DIR must be under it). Creates `DIR/sub` and
//! `JAIL/marker`, sets umask 027, `chroot(JAIL)` and changes into `DIR/sub` as seen from inside, then
//! announces READY and waits for the trigger (`/NAME` from inside). After the trigger it checks that it
//! is still confined (`/marker` holds what it wrote, the jail's own absolute path does not resolve inside,
//! the root's inode is the jail's), that its working directory is unchanged, and that the umask is 027.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError};

const MARKER: &str = "written before the chroot";
const UMASK: libc::mode_t = 0o027;

fn main() -> ExitCode {
    workload::main_with("wl_root", run)
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("(no arguments)")?;
    let canon = |p: &Path, what: &str| {
        std::fs::canonicalize(p)
            .map_err(|e| WorkloadError::setup(format!("canonicalize {what}"), e))
    };
    // The jail is the directory holding the trigger (the harness's scratch directory, DIR's parent), so
    // the trigger stays reachable from inside.
    let jail = canon(
        args.trigger.parent().unwrap_or(Path::new("/")),
        "the trigger's directory",
    )?;
    let dir = canon(&args.dir, "DIR")?;
    let inside = dir
        .strip_prefix(&jail)
        .map_err(|_| WorkloadError::setup("DIR", "DIR must be under the trigger's directory"))?;
    let sub = PathBuf::from("/").join(inside).join("sub");
    std::fs::create_dir_all(dir.join("sub")).map_err(|e| WorkloadError::setup("mkdir sub", e))?;
    std::fs::write(jail.join("marker"), MARKER).map_err(|e| WorkloadError::setup("marker", e))?;
    let jail_ino = std::fs::metadata(&jail)
        .map_err(|e| WorkloadError::setup("stat the jail", e))?
        .ino();
    let trigger_name = args
        .trigger
        .file_name()
        .ok_or_else(|| WorkloadError::setup("trigger", "no file name"))?;
    let trigger = PathBuf::from("/").join(trigger_name);

    // SAFETY: umask cannot fail and only changes this process's file-creation mask.
    unsafe { libc::umask(UMASK) };
    nix::unistd::chroot(&jail).map_err(|e| WorkloadError::setup("chroot", e))?;
    nix::unistd::chdir(&sub).map_err(|e| WorkloadError::setup("chdir into the jail", e))?;

    workload::ready()?;
    workload::wait_for_trigger(&trigger)?;

    let mut report = Report::new("wl_root");
    report.check(
        "cwd",
        match nix::unistd::getcwd() {
            Ok(p) if p == sub => Ok(()),
            other => Err(format!("getcwd {other:?}, want {}", sub.display())),
        },
    );
    report.check(
        "marker",
        match std::fs::read_to_string("/marker") {
            Ok(s) if s == MARKER => Ok(()),
            other => Err(format!("/marker: {other:?}")),
        },
    );
    report.check(
        "root inode",
        match std::fs::metadata("/") {
            Ok(m) if m.ino() == jail_ino => Ok(()),
            other => Err(format!("/ is {other:?}, want inode {jail_ino}")),
        },
    );
    report.check(
        "confined",
        if jail.join("marker").exists() {
            Err(format!("{} resolves inside the chroot", jail.display()))
        } else {
            Ok(())
        },
    );
    // SAFETY: umask cannot fail; the old value is put back right away.
    let mask = unsafe { libc::umask(0) };
    // SAFETY: as above.
    unsafe { libc::umask(mask) };
    report.check(
        "umask",
        if mask == UMASK {
            Ok(())
        } else {
            Err(format!("umask {mask:o}, want {UMASK:o}"))
        },
    );
    Ok(report.finish())
}
