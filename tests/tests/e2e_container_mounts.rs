//! The container harness's real layout (`ctr_agent`: busybox rootfs, /dev binds, /dev/shm a slave of the
//! agent's sandbox shm, hosts/resolv.conf from the shared dir) through `dormant-mounts`: dumped from the
//! agent's mount namespace with no flags, rebuilt in a fresh namespace, same tree modulo ids.
//! (Process state is not part of this test: the mount crate is not wired into `Dump`/`Restore` yet.)

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use dormant_mounts::{dump_namespace, restore_namespace, ExternalMap, MountSource, MountTree};
use dormant_tests::container::Container;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};

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

#[test]
fn container_mount_tree_dumps_and_rebuilds_with_external_masters() {
    let c = Container::start(
        Path::new(env!("CARGO_BIN_EXE_ctr_agent")),
        Path::new(env!("CARGO_BIN_EXE_wl_container")),
        &[],
    )
    .unwrap();
    let init = c.init_pid();
    let agent = c.agent_pid();
    let shm = c.sandbox_shm().to_string_lossy().into_owned();
    let rootfs = c.base().join("shared/ctr0/rootfs");
    let err = in_child(|| {
        let ns = fs::File::open(format!("/proc/{agent}/ns/mnt")).map_err(|e| e.to_string())?;
        setns(ns, CloneFlags::CLONE_NEWNS).map_err(|e| format!("setns into the agent: {e}"))?;
        let original = MountTree::read(Some(init)).map_err(|e| e.to_string())?;
        let img = dump_namespace(init, &ExternalMap::new()).map_err(|e| format!("dump: {e}"))?;
        let dev_shm = img
            .mounts
            .iter()
            .find(|m| m.mountpoint == "/dev/shm")
            .ok_or("no /dev/shm")?;
        if dev_shm.how != (MountSource::External { key: shm.clone() }) {
            return Err(format!("/dev/shm is {:?}", dev_shm.how));
        }
        if !img.masters.iter().any(|m| m.key == shm) {
            return Err(format!("no external master at {shm}: {:?}", img.masters));
        }
        let want = original.canonical();
        let err = in_child(|| {
            unshare(CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
            restore_namespace(&img, &rootfs, &ExternalMap::new())
                .map_err(|e| format!("restore: {e}"))?;
            let got = MountTree::read(None)
                .map_err(|e| e.to_string())?
                .canonical();
            if got != want {
                return Err(format!("tree differs:\nwant {want:#?}\ngot {got:#?}"));
            }
            if !Path::new("/bin/busybox").exists() || !Path::new("/dev/null").exists() {
                return Err("restored root lacks /bin/busybox or /dev/null".into());
            }
            Ok(())
        });
        if err.is_empty() {
            Ok(())
        } else {
            Err(err)
        }
    });
    assert!(err.is_empty(), "{err}\n{}", c.log_text());
}
