//! Privileged test: the Kata layout dumped from a namespace where the sandbox shm's peer group is not
//! mounted fails with the error that names /dev/shm, its master group and the resolving flag.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use dormant_mounts::{dump_namespace, ExternalMap, MountError};
use nix::mount::MsFlags;
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;

fn agent(base: &Path) -> R {
    let a = Agent::build(base)?;
    let mut hold = Chan::new();
    let mut ready = Chan::new();
    let ctr = spawn(&mut ready.clone(), || {
        a.container_setup()?;
        ready.send("READY");
        let _ = hold.recv();
        Ok(())
    });
    let line = ready.recv();
    if line != "READY" {
        return Err(format!("container did not start: {line}"));
    }
    // The dumper: a namespace of its own whose copy of the sandbox shm is private, so group N of
    // /dev/shm's master:N is mounted nowhere it can see.
    let mut result = Chan::new();
    let dumper = spawn(&mut result.clone(), || {
        ctx(unshare(CloneFlags::CLONE_NEWNS), "unshare")?;
        propagation(&a.shm(), MsFlags::MS_PRIVATE)?;
        match dump_namespace(ctr.as_raw(), &ExternalMap::new()) {
            Ok(img) => Err(format!("dump succeeded: {img:?}")),
            Err(e @ MountError::UnreachableMaster { .. }) => {
                result.send(&format!("OK {e}"));
                Ok(())
            }
            Err(e) => Err(format!("wrong error: {e}")),
        }
    });
    let msg = result.recv();
    wait_ok(dumper, "dumper").map_err(|e| format!("{e}: {msg}"))?;
    let _ = kill(ctr, Signal::SIGKILL);
    let _ = waitpid(ctr, None);
    let shm = a.shm();
    let group = ctx(dormant_mounts::MountTree::read(None), "mountinfo")?
        .mounts
        .into_iter()
        .find(|m| Path::new(&m.mountpoint) == shm)
        .and_then(|m| m.shared)
        .ok_or("the agent's sandbox shm is not shared")?;
    for want in [
        "/dev/shm",
        &format!("master:{}", group.0),
        "--external mnt[/dev/shm]:KEY",
    ] {
        if !msg.contains(want) {
            return Err(format!("error {msg:?} does not name {want:?}"));
        }
    }
    Ok(())
}

#[test]
fn unreachable_external_master_is_refused_by_name() {
    require_root();
    let dir = scratch();
    let base = dir.path().join("agent");
    fs::create_dir(&base).unwrap();
    let mut report = Chan::new();
    let pid = spawn(&mut report, || agent(&base));
    if let Err(e) = wait_ok(pid, "agent") {
        panic!("{e}: {}", report.recv());
    }
}
