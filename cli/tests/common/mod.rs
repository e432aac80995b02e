//! What the CLI tests share: running `dormant`, spawning targets that hold only fds dormant supports, and
//! scratch directories.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a subset; a panic is the failure report

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub const DORMANT: &str = env!("CARGO_BIN_EXE_dormant");

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests dump and restore real processes and must run as root (ptrace, /proc/pid/mem, \
         clone3 set_tid, mount)"
    );
}

pub fn dormant(args: &[&str]) -> Output {
    Command::new(DORMANT)
        .args(args)
        .output()
        .expect("run dormant")
}

/// stdout and stderr of a finished command, for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts `cmd` with /dev/null on fds 0-2 and nothing else: fds the test runner holds are not inherited.
pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: one async-signal-safe syscall in the child before exec; CLOSE_RANGE_CLOEXEC (4) keeps std's
    // exec-error pipe working until exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn target")
}

/// `sleep 1000` from coreutils.
pub fn spawn_sleep() -> Child {
    spawn(Command::new("/usr/bin/sleep").arg("1000"))
}

/// A scratch directory (images hold process memory: 0700), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("dormant-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
