//! The Kata layout for the privileged mount tests, built with plain syscalls in forked children that
//! unshare their mount namespace first, so the machine's own mounts are never touched.
//!
//! The "agent" (a forked child of the test) makes its namespace private and builds, under a scratch
//! directory: `shared` (a shared tmpfs standing for /run/kata-containers/shared/containers, with
//! `ctr0/rootfs`, `ctr0/hosts`, `ctr0/resolv.conf`) and `sandbox/shm` (a shared tmpfs standing for the
//! sandbox's /dev/shm). The "container" (forked from the agent) unshares again, makes `/` `MS_SLAVE|MS_REC`
//! as kata-agent does, binds the rootfs, mounts proc, a tmpfs /dev with /dev/null bound in, binds the
//! sandbox shm on /dev/shm and hosts/resolv.conf on /etc, mounts a private tmpfs on /tmp, and pivots.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, fork, pipe, pivot_root, ForkResult, Pid};

pub type R<T = ()> = Result<T, String>;

pub fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: impl std::fmt::Display) -> R<T> {
    r.map_err(|e| format!("{what}: {e}"))
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this privileged test needs root (mount namespaces); it does not skip"
    );
}

/// A one-way message pipe between forked processes.
pub struct Chan {
    r: fs::File,
    w: fs::File,
}

impl Chan {
    pub fn new() -> Chan {
        let (r, w): (OwnedFd, OwnedFd) = pipe().unwrap();
        Chan {
            r: r.into(),
            w: w.into(),
        }
    }
    /// Another handle on the same pipe (for a child that reports on it while the parent keeps its own).
    pub fn clone(&self) -> Chan {
        Chan {
            r: self.r.try_clone().unwrap(),
            w: self.w.try_clone().unwrap(),
        }
    }
    pub fn send(&mut self, msg: &str) {
        // One message per line: newlines inside travel as the unit separator.
        let _ = self
            .w
            .write_all(format!("{}\n", msg.replace('\n', "\x1f")).as_bytes());
    }
    /// Reads one line (empty on EOF).
    pub fn recv(&mut self) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while let Ok(1) = self.r.read(&mut b) {
            if b[0] == b'\n' {
                break;
            }
            out.push(b[0]);
        }
        String::from_utf8_lossy(&out).replace('\x1f', "\n")
    }
}

/// Forks; the child runs `f` and exits 0 on `Ok`, or sends the error on `report` and exits 1.
pub fn spawn(report: &mut Chan, f: impl FnOnce() -> R) -> Pid {
    // SAFETY: the test binary's other threads only wait; the child runs `f` and leaves with `_exit`
    // without returning into the test harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    report.send(&format!("ERR {e}"));
                    1
                }
                Err(_) => {
                    report.send("ERR panicked");
                    2
                }
            };
            // SAFETY: ends the forked child immediately, skipping the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
    }
}

pub fn wait_ok(pid: Pid, what: &str) -> R {
    match ctx(waitpid(pid, None), format!("waiting for {what}"))? {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(format!("{what} ended with {other:?}")),
    }
}

fn tmpfs(target: &Path, name: &str) -> R {
    ctx(
        mount(
            Some(name),
            target,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755"),
        ),
        format!("mount tmpfs {name} on {}", target.display()),
    )
}

pub fn bind(src: &Path, dst: &Path) -> R {
    ctx(
        mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>),
        format!("bind {} on {}", src.display(), dst.display()),
    )
}

pub fn propagation(target: &Path, flags: MsFlags) -> R {
    ctx(
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>),
        format!("propagation {flags:?} of {}", target.display()),
    )
}

pub const HOSTS: &str = "127.0.0.1 localhost\n10.0.0.2 dormant-ctr\n";
pub const SHM_DATA: &str = "posix shm segment contents\n";

/// The agent side, in the calling (already private, unshared) namespace. Returns (rootfs, sandbox shm).
pub struct Agent {
    pub base: PathBuf,
}

impl Agent {
    pub fn shared(&self) -> PathBuf {
        self.base.join("shared")
    }
    pub fn cdir(&self) -> PathBuf {
        self.shared().join("ctr0")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.cdir().join("rootfs")
    }
    pub fn shm(&self) -> PathBuf {
        self.base.join("sandbox/shm")
    }

    pub fn build(base: &Path) -> R<Agent> {
        ctx(unshare(CloneFlags::CLONE_NEWNS), "unshare(CLONE_NEWNS)")?;
        propagation(Path::new("/"), MsFlags::MS_REC | MsFlags::MS_PRIVATE)?;
        tmpfs(base, "agent")?;
        let a = Agent {
            base: base.to_path_buf(),
        };
        ctx(fs::create_dir_all(a.shared()), "mkdir shared")?;
        tmpfs(&a.shared(), "kata-shared")?;
        propagation(&a.shared(), MsFlags::MS_SHARED)?;
        for d in ["proc", "dev", "etc", "tmp", ".old"] {
            ctx(fs::create_dir_all(a.rootfs().join(d)), format!("mkdir {d}"))?;
        }
        for f in ["hosts", "resolv.conf"] {
            ctx(
                fs::write(a.rootfs().join("etc").join(f), "# placeholder\n"),
                "placeholder",
            )?;
        }
        ctx(fs::write(a.cdir().join("hosts"), HOSTS), "write hosts")?;
        ctx(
            fs::write(a.cdir().join("resolv.conf"), "nameserver 10.0.0.1\n"),
            "write resolv.conf",
        )?;
        ctx(fs::create_dir_all(a.shm()), "mkdir sandbox/shm")?;
        tmpfs(&a.shm(), "sandbox-shm")?;
        propagation(&a.shm(), MsFlags::MS_SHARED)?;
        ctx(
            fs::write(a.shm().join("seg"), SHM_DATA),
            "write shm segment",
        )?;
        Ok(a)
    }

    /// Runs in the container's process: kata-agent's container mount setup, then pivot_root.
    pub fn container_setup(&self) -> R {
        ctx(unshare(CloneFlags::CLONE_NEWNS), "unshare(CLONE_NEWNS)")?;
        propagation(Path::new("/"), MsFlags::MS_REC | MsFlags::MS_SLAVE)?;
        let rootfs = self.rootfs();
        ctx(
            mount(
                Some(&rootfs),
                &rootfs,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            ),
            "bind the rootfs on itself",
        )?;
        ctx(
            mount(
                Some("proc"),
                &rootfs.join("proc"),
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            ),
            "mount proc",
        )?;
        let dev = rootfs.join("dev");
        tmpfs(&dev, "ctr-dev")?;
        ctx(fs::write(dev.join("null"), ""), "mknod-less /dev/null")?;
        bind(Path::new("/dev/null"), &dev.join("null"))?;
        ctx(fs::create_dir(dev.join("shm")), "mkdir /dev/shm")?;
        bind(&self.shm(), &dev.join("shm"))?;
        bind(&self.cdir().join("hosts"), &rootfs.join("etc/hosts"))?;
        bind(
            &self.cdir().join("resolv.conf"),
            &rootfs.join("etc/resolv.conf"),
        )?;
        tmpfs(&rootfs.join("tmp"), "ctr-tmp")?;
        ctx(chdir(&rootfs), "chdir rootfs")?;
        ctx(pivot_root(".", ".old"), "pivot_root")?;
        ctx(chdir("/"), "chdir /")?;
        ctx(
            umount2("/.old", MntFlags::MNT_DETACH),
            "umount the old root",
        )?;
        Ok(())
    }
}

/// A scratch directory for the agent's tmpfs (empty again after the test: the tmpfs lived only in the
/// agent's namespace).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dormant-mounts-")
        .tempdir()
        .unwrap()
}
