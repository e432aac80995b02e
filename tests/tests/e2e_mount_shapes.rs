//! Mount-tree shapes through `dormant-mounts`: each shape is built by a process in a fresh mount namespace
//! (root: a directory of the test's scratch space bound on itself, the shape under a tmpfs at `/t`), dumped
//! from the test's namespace while that process waits, rebuilt in another fresh namespace, and compared:
//! the canonical mountinfo (tree, root, options, fstype, source, super options, propagation with peer
//! groups renamed consistently) and then the shape's own checks (file content, what hides what, whether
//! propagation and unmounting behave).
//!
//! Shapes: shared binds (peers and a slave inside the tree; the restored bind unmounts), over-mounts (a
//! tmpfs hidden by another mount keeps its files; directories hidden by an over-mount still exist under
//! it), and bind mounts of single files.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use dormant_image::records::{TmpfsNodeKind, TmpfsRecord};
use dormant_mounts::{dump_namespace, restore_namespace, ExternalMap, MountImage, MountTree};
use dormant_tests::harness::{require_root, Scratch};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, fork, pipe, pivot_root, ForkResult, Pid};

type Check = fn() -> Result<(), String>;
type Build = fn(&Path) -> Result<(), String>;
/// Takes out of an image what the shape is about (what a dump or restore that skips it would give).
type Damage = fn(&mut MountImage);

fn e<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, String> {
    r.map_err(|err| format!("{what}: {err}"))
}

fn tmpfs(at: &Path, name: &str) -> Result<(), String> {
    fs::create_dir_all(at).map_err(|err| format!("mkdir {}: {err}", at.display()))?;
    e(
        mount(
            Some(name),
            at,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755"),
        ),
        &format!("mount tmpfs {}", at.display()),
    )
}

fn bind(src: &Path, dst: &Path) -> Result<(), String> {
    e(
        mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>),
        &format!("bind {} on {}", src.display(), dst.display()),
    )
}

fn propagation(at: &Path, flags: MsFlags) -> Result<(), String> {
    e(
        mount(None::<&str>, at, None::<&str>, flags, None::<&str>),
        &format!("{flags:?} {}", at.display()),
    )
}

fn write(p: &Path, text: &str) -> Result<(), String> {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).map_err(|err| format!("mkdir {}: {err}", d.display()))?;
    }
    fs::write(p, text).map_err(|err| format!("write {}: {err}", p.display()))
}

fn read(p: &str) -> Result<String, String> {
    fs::read_to_string(p).map_err(|err| format!("read {p}: {err}"))
}

fn expect(p: &str, want: &str) -> Result<(), String> {
    let got = read(p)?;
    if got == want {
        Ok(())
    } else {
        Err(format!("{p} holds {got:?}, want {want:?}"))
    }
}

fn umount(p: &str) -> Result<(), String> {
    e(umount2(p, MntFlags::empty()), &format!("umount {p}"))
}

/// Runs `f` in a forked child; returns its error text (empty when it succeeded).
fn in_child(f: impl FnOnce() -> Result<(), String>) -> String {
    let (r, w): (OwnedFd, OwnedFd) = pipe().unwrap();
    // SAFETY: the child only runs `f` and leaves with `_exit`.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(r);
            let msg = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(Ok(())) => String::new(),
                Ok(Err(e)) => e,
                Err(_) => "panicked".into(),
            };
            let _ = fs::File::from(w).write_all(msg.as_bytes());
            // SAFETY: ends the forked child without running the harness's exit handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            let _ = fs::File::from(r).read_to_string(&mut msg);
            match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, 0) => msg,
                other => format!("child ended with {other:?}: {msg}"),
            }
        }
    }
}

/// The process holding a shape: in its own mount namespace, rooted at the scratch directory.
struct Holder {
    pid: Pid,
    /// Closing it lets the holder exit.
    release: Option<OwnedFd>,
}

impl Holder {
    fn start(root: &Path, build: Build) -> Result<Holder, String> {
        let (ready_r, ready_w): (OwnedFd, OwnedFd) = pipe().unwrap();
        let (go_r, go_w): (OwnedFd, OwnedFd) = pipe().unwrap();
        // SAFETY: the child builds the shape with plain syscalls and leaves with `_exit`.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop(ready_r);
                drop(go_w);
                let msg = match Self::hold(root, build) {
                    Ok(()) => "READY".to_string(),
                    Err(e) => e,
                };
                let _ = fs::File::from(ready_w).write_all(msg.as_bytes());
                let mut buf = Vec::new();
                let _ = fs::File::from(go_r).read_to_end(&mut buf);
                // SAFETY: ends the forked child without running the harness's exit handlers.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                drop(ready_w);
                drop(go_r);
                let mut msg = String::new();
                let _ = fs::File::from(ready_r).read_to_string(&mut msg);
                let h = Holder {
                    pid: child,
                    release: Some(go_w),
                };
                if msg == "READY" {
                    Ok(h)
                } else {
                    Err(format!("building the shape: {msg}"))
                }
            }
        }
    }

    fn hold(root: &Path, build: Build) -> Result<(), String> {
        e(unshare(CloneFlags::CLONE_NEWNS), "unshare")?;
        propagation(Path::new("/"), MsFlags::MS_REC | MsFlags::MS_PRIVATE)?;
        bind(root, root)?;
        tmpfs(&root.join("t"), "shape-t")?;
        build(root)?;
        fs::create_dir_all(root.join(".old")).map_err(|err| format!("mkdir .old: {err}"))?;
        e(chdir(root), "chdir root")?;
        e(pivot_root(".", ".old"), "pivot_root")?;
        e(chdir("/"), "chdir /")?;
        e(
            umount2("/.old", MntFlags::MNT_DETACH),
            "umount the old root",
        )?;
        // Ready only once the READY line is written (by the caller), i.e. after every mount is made.
        Ok(())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.release.take();
        let _ = waitpid(self.pid, None);
    }
}

/// Restores `img` in a fresh namespace (rooted at `root`); compares its tree with `want` (when given) and
/// runs `check` there. Returns the error text, empty when all held.
fn restore_and_check(
    img: &MountImage,
    root: &Path,
    want: Option<&[String]>,
    check: Check,
) -> String {
    in_child(|| {
        e(unshare(CloneFlags::CLONE_NEWNS), "unshare")?;
        // The shapes have no /proc: the restored tree's mountinfo is read through ours.
        let proc_dir = e(fs::File::open("/proc/self"), "open /proc/self")?;
        restore_namespace(img, root, &ExternalMap::new()).map_err(|e| format!("restore: {e}"))?;
        let fd = e(
            nix::fcntl::openat(
                &proc_dir,
                "mountinfo",
                nix::fcntl::OFlag::O_RDONLY,
                nix::sys::stat::Mode::empty(),
            ),
            "open the restored mountinfo",
        )?;
        let mut text = String::new();
        e(
            fs::File::from(fd).read_to_string(&mut text),
            "read the restored mountinfo",
        )?;
        let got = MountTree::parse(&text)
            .map_err(|e| e.to_string())?
            .canonical();
        if let Some(want) = want {
            if got != want {
                return Err(format!("tree differs:\nwant {want:#?}\ngot {got:#?}"));
            }
        }
        check()
    })
}

/// Builds `build` in a holder, dumps it, restores it in a fresh namespace, compares the trees and runs
/// `check` there. The self-checks: `check` holds on the original (run in a copy of the holder's
/// namespace), and fails on a restore of the image with `damage` done to it.
fn round_trip(name: &str, build: Build, check: Check, damage: Damage) {
    require_root().unwrap();
    let scratch = Scratch::new(&format!("shape-{name}")).unwrap();
    let root = scratch.path().join("root");
    fs::create_dir_all(root.join("t")).unwrap();
    let holder = Holder::start(&root, build).unwrap();
    let pid = holder.pid.as_raw();
    let original = MountTree::read(Some(pid)).unwrap();
    let want = original.canonical();
    let img = dump_namespace(pid, &ExternalMap::new()).unwrap();
    // The check holds on the original tree (run in a copy of the holder's namespace, after the dump: the
    // check writes to the shape's files).
    let err = in_child(|| {
        let ns = e(fs::File::open(format!("/proc/{pid}/ns/mnt")), "open ns")?;
        e(nix::sched::setns(ns, CloneFlags::CLONE_NEWNS), "setns")?;
        e(unshare(CloneFlags::CLONE_NEWNS), "unshare")?;
        e(chdir("/"), "chdir")?;
        check()
    });
    assert!(
        err.is_empty(),
        "{name}: the check fails on the original: {err}"
    );
    drop(holder);
    let err = restore_and_check(&img, &root, Some(&want), check);
    assert!(err.is_empty(), "{name}: {err}");
    let mut damaged = img.clone();
    damage(&mut damaged);
    let err = restore_and_check(&damaged, &root, None, check);
    assert!(
        !err.is_empty(),
        "{name}: the check passes on a restore of the damaged image"
    );
    eprintln!("{name}: the damaged image fails the check as it should: {err}");
}

/// Drops from the content of the tmpfs at `mountpoint` (the lowest one there) the nodes whose path
/// starts with one of `prefixes` (all of them for `""`), and their data.
fn drop_content(img: &mut MountImage, mountpoint: &str, prefixes: &[&str]) {
    let id = img
        .mounts
        .iter()
        .find(|m| m.mountpoint == mountpoint)
        .map(|m| m.id)
        .unwrap();
    let recs = img.tmpfs.get_mut(&id).unwrap();
    let mut gone = std::collections::BTreeSet::new();
    recs.retain(|r| match r {
        TmpfsRecord::Node(n) => {
            let drop = !n.path.is_empty()
                && prefixes.iter().any(|p| n.path.starts_with(p.as_bytes()))
                || matches!(n.kind, TmpfsNodeKind::HardLink { to } if gone.contains(&to));
            if drop {
                gone.insert(n.index);
            }
            !drop
        }
        TmpfsRecord::Data { node, .. } => !gone.contains(node),
    });
}

#[test]
fn shared_binds_are_peers_and_unmount() {
    fn build(r: &Path) -> Result<(), String> {
        let t = r.join("t");
        tmpfs(&t.join("a"), "shape-a")?;
        write(&t.join("a/sub/file"), "in a")?;
        propagation(&t.join("a"), MsFlags::MS_SHARED)?;
        fs::create_dir_all(t.join("b")).map_err(|e| e.to_string())?;
        bind(&t.join("a"), &t.join("b"))?;
        // A bind of a subdirectory, a peer too.
        fs::create_dir_all(t.join("c")).map_err(|e| e.to_string())?;
        bind(&t.join("a/sub"), &t.join("c"))?;
        // A slave of the group.
        fs::create_dir_all(t.join("s")).map_err(|e| e.to_string())?;
        bind(&t.join("a"), &t.join("s"))?;
        propagation(&t.join("s"), MsFlags::MS_SLAVE)?;
        Ok(())
    }
    fn check() -> Result<(), String> {
        expect("/t/b/sub/file", "in a")?;
        expect("/t/c/file", "in a")?;
        // Peers: a mount under one shows in the others and in the slave; one under the slave stays there.
        fs::create_dir_all("/t/a/sub/m").map_err(|e| e.to_string())?;
        tmpfs(Path::new("/t/a/sub/m"), "prop")?;
        write(Path::new("/t/a/sub/m/f"), "propagated")?;
        for p in ["/t/b/sub/m/f", "/t/c/m/f", "/t/s/sub/m/f"] {
            expect(p, "propagated")?;
        }
        fs::create_dir_all("/t/s/only").map_err(|e| e.to_string())?;
        tmpfs(Path::new("/t/s/only"), "slave-only")?;
        write(Path::new("/t/s/only/f"), "slave")?;
        if Path::new("/t/a/only/f").exists() {
            return Err("a mount under the slave propagated to its master".into());
        }
        umount("/t/s/only")?;
        e(
            umount2("/t/a/sub/m", MntFlags::MNT_DETACH),
            "umount /t/a/sub/m",
        )?;
        // The restored binds unmount (no leftover peer or child keeps them busy).
        umount("/t/c")?;
        umount("/t/b")?;
        umount("/t/s")?;
        umount("/t/a")?;
        Ok(())
    }
    // Peer groups and masters not restored.
    fn damage(img: &mut MountImage) {
        for m in &mut img.mounts {
            m.shared = None;
            m.master = None;
        }
    }
    round_trip("shared-binds", build, check, damage);
}

#[test]
fn over_mounts_keep_what_they_hide() {
    fn build(r: &Path) -> Result<(), String> {
        let t = r.join("t");
        // A directory of /t hidden by a tmpfs over it.
        write(&t.join("d/hidden.txt"), "under the over-mount")?;
        fs::create_dir_all(t.join("d/keep")).map_err(|e| e.to_string())?;
        tmpfs(&t.join("d"), "over-d")?;
        write(&t.join("d/over.txt"), "on d")?;
        // A tmpfs hidden by a tmpfs stacked on the same path.
        tmpfs(&t.join("x"), "under-x")?;
        write(&t.join("x/under.txt"), "in the lower tmpfs")?;
        tmpfs(&t.join("x"), "over-x")?;
        write(&t.join("x/over.txt"), "in the upper tmpfs")?;
        // A mount inside a tmpfs that is then hidden as a whole.
        tmpfs(&t.join("y"), "lower-y")?;
        tmpfs(&t.join("y/inner"), "inner-y")?;
        write(&t.join("y/inner/f"), "inner")?;
        write(&t.join("y/lower.txt"), "lower y")?;
        tmpfs(&t.join("y"), "upper-y")?;
        Ok(())
    }
    fn check() -> Result<(), String> {
        expect("/t/d/over.txt", "on d")?;
        expect("/t/x/over.txt", "in the upper tmpfs")?;
        if Path::new("/t/x/under.txt").exists() || Path::new("/t/y/lower.txt").exists() {
            return Err("a hidden file shows through its over-mount".into());
        }
        umount("/t/d")?;
        expect("/t/d/hidden.txt", "under the over-mount")?;
        if !Path::new("/t/d/keep").is_dir() {
            return Err("/t/d/keep, hidden by the over-mount, is gone".into());
        }
        umount("/t/x")?;
        expect("/t/x/under.txt", "in the lower tmpfs")?;
        umount("/t/y")?;
        expect("/t/y/lower.txt", "lower y")?;
        expect("/t/y/inner/f", "inner")?;
        Ok(())
    }
    // What over-mounts hide not dumped: the directory under /t/d, the lower tmpfs of /t/x and /t/y.
    fn damage(img: &mut MountImage) {
        drop_content(img, "/t", &["d"]);
        drop_content(img, "/t/x", &[""]);
        drop_content(img, "/t/y", &[""]);
    }
    round_trip("over-mounts", build, check, damage);
}

#[test]
fn file_bind_mounts() {
    fn build(r: &Path) -> Result<(), String> {
        let t = r.join("t");
        write(&t.join("one"), "first")?;
        write(&t.join("two"), "second")?;
        bind(&t.join("one"), &t.join("two"))?;
        tmpfs(&t.join("src"), "file-src")?;
        write(&t.join("src/data"), "from another tmpfs")?;
        write(&t.join("etc/conf"), "placeholder")?;
        bind(&t.join("src/data"), &t.join("etc/conf"))?;
        Ok(())
    }
    fn check() -> Result<(), String> {
        expect("/t/two", "first")?;
        expect("/t/etc/conf", "from another tmpfs")?;
        // The same file, not a copy.
        fs::write("/t/etc/conf", "written through the bind").map_err(|e| e.to_string())?;
        expect("/t/src/data", "written through the bind")?;
        umount("/t/two")?;
        expect("/t/two", "second")?;
        umount("/t/etc/conf")?;
        expect("/t/etc/conf", "placeholder")?;
        Ok(())
    }
    // The files under the file binds not dumped (the binds' mountpoints made up empty).
    fn damage(img: &mut MountImage) {
        drop_content(img, "/t", &["two", "etc"]);
    }
    round_trip("file-binds", build, check, damage);
}
