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
        fill_tmp(&rootfs.join("tmp"))?;
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

/// A 1 MiB sparse file with data at 4 KiB and at 512 KiB.
pub const SPARSE_LEN: u64 = 1 << 20;

/// Content of the container's private /tmp tmpfs: modes, owners, an xattr, a symlink, a hard link, a fifo, a
/// sparse file.
pub fn fill_tmp(tmp: &Path) -> R {
    use std::os::unix::fs::{symlink, FileExt, PermissionsExt};
    ctx(fs::create_dir(tmp.join("d")), "mkdir d")?;
    ctx(fs::write(tmp.join("d/f"), "hello tmpfs\n"), "write d/f")?;
    ctx(
        fs::set_permissions(tmp.join("d/f"), fs::Permissions::from_mode(0o640)),
        "chmod d/f",
    )?;
    ctx(
        nix::unistd::chown(&tmp.join("d/f"), Some(1234.into()), Some(5678.into())),
        "chown d/f",
    )?;
    ctx(
        fs::set_permissions(tmp.join("d"), fs::Permissions::from_mode(0o1750)),
        "chmod d",
    )?;
    ctx(symlink("d/f", tmp.join("link")), "symlink")?;
    ctx(
        fs::hard_link(tmp.join("d/f"), tmp.join("hard")),
        "hard link",
    )?;
    ctx(
        nix::unistd::mkfifo(
            &tmp.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o620),
        ),
        "mkfifo",
    )?;
    ctx(
        fs::set_permissions(tmp.join("fifo"), fs::Permissions::from_mode(0o620)),
        "chmod fifo",
    )?;
    let f = ctx(fs::File::create(tmp.join("sparse")), "create sparse")?;
    ctx(f.set_len(SPARSE_LEN), "truncate sparse")?;
    ctx(f.write_all_at(&[0xab; 100], 4096), "write sparse")?;
    ctx(f.write_all_at(&[0xcd; 100], 512 << 10), "write sparse")?;
    let name = std::ffi::CString::new("user.dormant").unwrap();
    let path = std::ffi::CString::new(tmp.join("d/f").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated strings and a 5-byte value that outlive the call.
    let r = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"value".as_ptr().cast(), 5, 0) };
    if r != 0 {
        return Err(format!("setxattr: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Checks what [`fill_tmp`] made, in the restored /tmp.
pub fn check_tmp(tmp: &Path) -> R {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let f = tmp.join("d/f");
    let m = ctx(fs::symlink_metadata(&f), "stat d/f")?;
    if ctx(fs::read_to_string(&f), "read d/f")? != "hello tmpfs\n" {
        return Err("d/f content".into());
    }
    if (m.mode() & 0o7777, m.uid(), m.gid(), m.nlink()) != (0o640, 1234, 5678, 2) {
        return Err(format!(
            "d/f mode/owner/links {:o} {} {} {}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.nlink()
        ));
    }
    if ctx(fs::symlink_metadata(tmp.join("hard")), "stat hard")?.ino() != m.ino() {
        return Err("hard is not a hard link of d/f".into());
    }
    if ctx(fs::symlink_metadata(tmp.join("d")), "stat d")?.mode() & 0o7777 != 0o1750 {
        return Err("d mode".into());
    }
    if ctx(fs::read_link(tmp.join("link")), "readlink")? != Path::new("d/f") {
        return Err("symlink target".into());
    }
    let fifo = ctx(fs::symlink_metadata(tmp.join("fifo")), "stat fifo")?;
    if fifo.mode() != (libc::S_IFIFO | 0o620) {
        return Err(format!("fifo mode {:o}", fifo.mode()));
    }
    let name = std::ffi::CString::new("user.dormant").unwrap();
    let path = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: NUL-terminated strings; `buf` is writable for its length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n != 5 || &buf[..5] != b"value" {
        return Err(format!("xattr user.dormant: {n}"));
    }
    let s = ctx(fs::File::open(tmp.join("sparse")), "open sparse")?;
    let sm = ctx(s.metadata(), "stat sparse")?;
    if sm.len() != SPARSE_LEN || sm.blocks() * 512 > 64 << 10 {
        return Err(format!("sparse size {} blocks {}", sm.len(), sm.blocks()));
    }
    let mut b = [0u8; 100];
    for (off, v) in [(4096u64, 0xab), (512 << 10, 0xcd)] {
        ctx(s.read_exact_at(&mut b, off), "read sparse")?;
        if b.iter().any(|x| *x != v) {
            return Err(format!("sparse data at {off}"));
        }
    }
    ctx(s.read_exact_at(&mut b, 8192), "read hole")?;
    if b.iter().any(|x| *x != 0) {
        return Err("hole is not zero".into());
    }
    Ok(())
}
