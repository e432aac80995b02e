//! Workload `wl_fs`: a working directory and a root directory that were removed while in use.
//!
//! `wl_fs TRIGGER DIR [--inject-fault]` (needs root: chown and chroot). The root makes `DIR/gone-cwd`
//! (mode 0751, owner 1234:2345), changes into it and removes it. It forks `k`, which makes
//! `DIR/gone-root` (mode 0705), changes into it, chroots to it (`chroot(".")`), and the root removes
//! it. After the trigger:
//! - `cwd-removed`: the root's `/proc/self/cwd` reads `DIR/gone-cwd (deleted)`, `getcwd` fails with
//!   ENOENT and `.` has no links;
//! - `cwd-attrs`: `.` has mode 0751 and owner 1234:2345;
//! - `root-removed`: `/proc/k/root` and `/proc/k/cwd` read `DIR/gone-root (deleted)`; inside `k`, `/` and
//!   `.` are one directory with no links, and `getcwd` fails with ENOENT;
//! - `root-attrs`: inside `k`, `/` has mode 0705.
//!
//! With `--inject-fault`, after the trigger, the root changes into a directory that exists (made with the
//! same mode and owner) and `k` chroots back to `DIR` through a descriptor it kept: what a restore that
//! recreates the directories without removing them leaves. `cwd-removed`, `root-removed` and
//! `root-attrs` fail.

use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use dormant_tests::workload::{
    self, exit_now, wait_until, Report, SharedWords, WorkloadArgs, WorkloadError, INJECT_FAULT,
};

const CWD_MODE: u32 = 0o751;
const ROOT_MODE: u32 = 0o705;
const OWNER: (u32, u32) = (1234, 2345);

/// Words of the shared page.
const K_READY: usize = 0;
const GO: usize = 1;
const FAULT: usize = 2;
/// `k`'s verdicts: 1 ok, else a failure code.
const K_REMOVED: usize = 3;
const K_ATTRS: usize = 4;
const K_DONE: usize = 5;

/// `getcwd` fails with ENOENT (the working directory was removed).
fn getcwd_enoent() -> Result<(), String> {
    let mut buf = [0u8; 4096];
    // SAFETY: getcwd writes at most buf.len() bytes into buf.
    let r = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if !r.is_null() {
        return Err("getcwd succeeded".into());
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOENT) => Ok(()),
        e => Err(format!("getcwd failed with errno {e:?}, not ENOENT")),
    }
}

/// `(mode & 07777, uid, gid, nlink, dev, ino)` of `path`.
fn stat(path: &str) -> Result<(u32, u32, u32, u64, u64, u64), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("stat {path}: {e}"))?;
    Ok((
        m.mode() & 0o7777,
        m.uid(),
        m.gid(),
        m.nlink(),
        m.dev(),
        m.ino(),
    ))
}

/// `k`: make the directory, chroot into it, tell the root, wait, check from inside, report.
fn k(page: &SharedWords, dir: &str) -> ! {
    let gone = format!("{dir}/gone-root");
    // Kept for the fault: a way back out of the chroot.
    let keep = std::fs::File::open(dir);
    let made = std::fs::create_dir(&gone).is_ok()
        && std::fs::set_permissions(
            &gone,
            std::os::unix::fs::PermissionsExt::from_mode(ROOT_MODE),
        )
        .is_ok()
        && std::env::set_current_dir(&gone).is_ok();
    if !made || nix::unistd::chroot(".").is_err() {
        exit_now(10);
    }
    page.word(K_READY).store(1, Ordering::Release);
    if !wait_until(|| page.word(GO).load(Ordering::Acquire) == 1) {
        exit_now(11);
    }
    if page.word(FAULT).load(Ordering::Acquire) == 1 {
        let Ok(keep) = keep else { exit_now(12) };
        if nix::unistd::fchdir(&keep).is_err() || nix::unistd::chroot(".").is_err() {
            exit_now(13);
        }
    }
    let removed = match (stat("/"), stat("."), getcwd_enoent()) {
        (Ok(r), Ok(d), Ok(())) if r.3 == 0 && (r.4, r.5) == (d.4, d.5) => 1,
        (Ok(r), Ok(_), Ok(())) if r.3 != 0 => 2,
        (Ok(_), Ok(_), Ok(())) => 3,
        (_, _, Err(_)) => 4,
        _ => 5,
    };
    let attrs = match stat("/") {
        Ok(r) if r.0 == ROOT_MODE => 1,
        Ok(r) => 100 + r.0,
        Err(_) => 2,
    };
    page.word(K_REMOVED).store(removed, Ordering::Release);
    page.word(K_ATTRS).store(attrs, Ordering::Release);
    page.word(K_DONE).store(1, Ordering::Release);
    exit_now(0)
}

fn setup_cwd(dir: &str) -> Result<(), WorkloadError> {
    let gone = format!("{dir}/gone-cwd");
    let fail = |what: &str, e: std::io::Error| WorkloadError::setup(format!("{what} {gone}"), e);
    std::fs::create_dir(&gone).map_err(|e| fail("mkdir", e))?;
    std::os::unix::fs::chown(&gone, Some(OWNER.0), Some(OWNER.1)).map_err(|e| fail("chown", e))?;
    std::fs::set_permissions(
        &gone,
        std::os::unix::fs::PermissionsExt::from_mode(CWD_MODE),
    )
    .map_err(|e| fail("chmod", e))?;
    std::env::set_current_dir(&gone).map_err(|e| fail("chdir", e))?;
    std::fs::remove_dir(&gone).map_err(|e| fail("rmdir", e))
}

/// The fault for the root: a working directory that exists, with the right mode and owner.
fn fault_cwd(dir: &str) -> Result<(), WorkloadError> {
    let other = format!("{dir}/kept-cwd");
    let fail = |e: std::io::Error| WorkloadError::setup(format!("fault: {other}"), e);
    std::fs::create_dir(&other).map_err(fail)?;
    std::os::unix::fs::chown(&other, Some(OWNER.0), Some(OWNER.1)).map_err(fail)?;
    std::fs::set_permissions(
        &other,
        std::os::unix::fs::PermissionsExt::from_mode(CWD_MODE),
    )
    .map_err(fail)?;
    std::env::set_current_dir(&other).map_err(fail)
}

fn check_cwd(dir: &str) -> Result<(), String> {
    let link = std::fs::read_link("/proc/self/cwd").map_err(|e| format!("/proc/self/cwd: {e}"))?;
    let want = format!("{dir}/gone-cwd (deleted)");
    if link.to_string_lossy() != want {
        return Err(format!("/proc/self/cwd reads {link:?}, want {want:?}"));
    }
    getcwd_enoent()?;
    let (_, _, _, nlink, _, _) = stat(".")?;
    if nlink != 0 {
        return Err(format!(". has {nlink} links"));
    }
    Ok(())
}

fn check_cwd_attrs() -> Result<(), String> {
    let (mode, uid, gid, ..) = stat(".")?;
    if (mode, uid, gid) != (CWD_MODE, OWNER.0, OWNER.1) {
        return Err(format!(
            ". has mode {mode:o} owner {uid}:{gid}, want {CWD_MODE:o} {}:{}",
            OWNER.0, OWNER.1
        ));
    }
    Ok(())
}

fn check_k_links(k: libc::pid_t, dir: &str) -> Result<(), String> {
    let want = format!("{dir}/gone-root (deleted)");
    for link in ["root", "cwd"] {
        let path = format!("/proc/{k}/{link}");
        let got = std::fs::read_link(&path).map_err(|e| format!("{path}: {e}"))?;
        if got.to_string_lossy() != want {
            return Err(format!("{path} reads {got:?}, want {want:?}"));
        }
    }
    Ok(())
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    let dir = std::fs::canonicalize(&args.dir)
        .map_err(|e| WorkloadError::setup("canonical workload dir", e))?
        .to_string_lossy()
        .into_owned();
    let page = SharedWords::new()?;
    let child = match workload::fork()? {
        0 => k(&page, &dir),
        pid => pid,
    };
    if !wait_until(|| page.word(K_READY).load(Ordering::Acquire) == 1) {
        return Err(WorkloadError::setup("k's chroot", "k did not get there"));
    }
    std::fs::remove_dir(format!("{dir}/gone-root"))
        .map_err(|e| WorkloadError::setup("rmdir gone-root", e))?;
    setup_cwd(&dir)?;

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    let fault = args.has_flag(INJECT_FAULT);
    if fault {
        fault_cwd(&dir)?;
        page.word(FAULT).store(1, Ordering::Release);
    }

    let mut report = Report::new("wl_fs");
    report.check("cwd-removed", check_cwd(&dir));
    report.check("cwd-attrs", check_cwd_attrs());
    // /proc/k/* before k is let go (the fault moves k's root).
    let links = check_k_links(child, &dir);
    page.word(GO).store(1, Ordering::Release);
    let status = workload::wait_status(child);
    let k_ok = status.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0)
        && page.word(K_DONE).load(Ordering::Acquire) == 1;
    let verdict = |word: usize, what: &str| match page.word(word).load(Ordering::Acquire) {
        1 => Ok(()),
        v => Err(format!("{what}: k reports {v}")),
    };
    if !k_ok {
        report.check("root-removed", Err(format!("k ended with {status:?}")));
    } else {
        report.check(
            "root-removed",
            links.and_then(|()| verdict(K_REMOVED, "/ and . one removed directory")),
        );
        report.check("root-attrs", verdict(K_ATTRS, "mode of /"));
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_fs", run)
}
