//! Privileged end-to-end test: the Kata layout (see `common`) is dumped from the agent's namespace with no
//! flags, torn down, rebuilt by the executor in a fresh namespace, and checked: same tree modulo ids,
//! propagation in from the outside master works, nothing leaks out, /dev/shm and /etc/hosts content intact.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use dormant_image::records::MountSource;
use dormant_image::{ImageReader, ImageWriter, InventoryInfo};
use dormant_mounts::{dump_namespace, restore_namespace, ExternalMap, MountImage, MountTree};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;

fn info() -> InventoryInfo {
    InventoryInfo {
        arch: dormant_image::ARCH.into(),
        kernel_release: "test".into(),
        xsave_features: 0,
        xsave_size: 0,
        tool_version: "test".into(),
        created_unix_secs: 0,
        root_pid: dormant_image::records::Pid(1),
    }
}

fn agent(base: &Path, img_dir: &Path) -> R {
    let a = Agent::build(base)?;
    let mut hold = Chan::new();
    let mut ready = Chan::new();

    // The container: set up, say so, wait until killed. Failures come back on `ready` as `ERR ...`.
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
    let original = ctx(MountTree::read(Some(ctr.as_raw())), "mountinfo")?;

    let img =
        dump_namespace(ctr.as_raw(), &ExternalMap::new()).map_err(|e| format!("dump: {e}"))?;
    let shm = img
        .mounts
        .iter()
        .find(|m| m.mountpoint == "/dev/shm")
        .ok_or("no /dev/shm dumped")?;
    let shm_key = a.shm().to_string_lossy().into_owned();
    if shm.how
        != (MountSource::External {
            key: shm_key.clone(),
        })
    {
        return Err(format!("/dev/shm classified as {:?}", shm.how));
    }
    if !img
        .masters
        .iter()
        .any(|m| m.key == shm_key && Some(m.group) == shm.master)
    {
        return Err(format!(
            "no external master for /dev/shm: {:?}",
            img.masters
        ));
    }
    let tmp = img
        .mounts
        .iter()
        .find(|m| m.mountpoint == "/tmp")
        .ok_or("no /tmp dumped")?;
    let tmp_recs = img.tmpfs.get(&tmp.id).map_or(0, Vec::len);
    if tmp_recs < 7 {
        return Err(format!(
            "/tmp content has {tmp_recs} records: {:?}",
            img.tmpfs
        ));
    }
    let mut w = ctx(ImageWriter::create(img_dir), "image writer")?;
    img.write(&mut w).map_err(|e| format!("write: {e}"))?;
    ctx(w.commit(info()), "commit")?;
    let img2 = MountImage::read(&ctx(ImageReader::open(img_dir), "open image")?)
        .map_err(|e| format!("read: {e}"))?
        .ok_or("image has no mounts")?;
    if img2 != img {
        return Err("image round trip changed the mount records".into());
    }

    // Tear the container down.
    ctx(kill(ctr, Signal::SIGKILL), "kill container")?;
    let _ = waitpid(ctr, None);

    // Restore in a fresh namespace, then run the checks inside it.
    let mut to_agent = Chan::new();
    let mut to_restored = Chan::new();
    let rootfs = a.rootfs();
    let restored = spawn(&mut to_agent.clone(), || {
        ctx(unshare(CloneFlags::CLONE_NEWNS), "unshare(CLONE_NEWNS)")?;
        restore_namespace(&img2, &rootfs, &ExternalMap::new())
            .map_err(|e| format!("restore: {e}"))?;
        let now = ctx(MountTree::read(None), "mountinfo")?;
        let (want, got) = (original.canonical(), now.canonical());
        if want != got {
            return Err(format!(
                "restored tree differs:\nwant {want:#?}\ngot {got:#?}"
            ));
        }
        if ctx(fs::read_to_string("/dev/shm/seg"), "read /dev/shm/seg")? != SHM_DATA {
            return Err("/dev/shm content changed".into());
        }
        check_tmp(Path::new("/tmp")).map_err(|e| {
            format!(
                "{e}; /tmp holds {:?}",
                fs::read_dir("/tmp")
                    .map(|d| d.map(|e| e.map(|e| e.file_name())).collect::<Vec<_>>())
            )
        })?;
        if ctx(fs::read_to_string("/etc/hosts"), "read /etc/hosts")? != HOSTS {
            return Err("/etc/hosts content changed".into());
        }
        // Inside mounts: one under the private /tmp, one under the slave /dev/shm; neither may leak out.
        ctx(fs::create_dir("/tmp/inner"), "mkdir /tmp/inner")?;
        ctx(
            mount(
                Some("inner"),
                "/tmp/inner",
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            ),
            "mount /tmp/inner",
        )?;
        ctx(fs::create_dir("/dev/shm/fromin"), "mkdir /dev/shm/fromin")?;
        ctx(
            mount(
                Some("fromin"),
                "/dev/shm/fromin",
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            ),
            "mount /dev/shm/fromin",
        )?;
        to_agent.send("MOUNTED");
        // The agent mounted under the outside master: it must show up here.
        if to_restored.recv() != "OUTSIDE" {
            return Err("agent did not answer".into());
        }
        let now = ctx(MountTree::read(None), "mountinfo")?;
        if !now
            .mounts
            .iter()
            .any(|m| m.mountpoint == "/dev/shm/fromout" && m.source == "fromout")
        {
            return Err(format!(
                "a mount under the outside master did not propagate in:\n{}",
                now.render()
            ));
        }
        Ok(())
    });
    let line = to_agent.recv();
    if line != "MOUNTED" {
        let _ = wait_ok(restored, "restored namespace");
        return Err(line);
    }
    let outside = ctx(MountTree::read(None), "mountinfo")?;
    if let Some(leak) = outside
        .mounts
        .iter()
        .find(|m| m.source == "inner" || m.source == "fromin")
    {
        return Err(format!("inside mount leaked out: {}", leak.render()));
    }
    ctx(fs::create_dir(a.shm().join("fromout")), "mkdir fromout")?;
    ctx(
        mount(
            Some("fromout"),
            &a.shm().join("fromout"),
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        ),
        "mount under the outside master",
    )?;
    to_restored.send("OUTSIDE");
    wait_ok(restored, "restored namespace").map_err(|e| format!("{e}: {}", to_agent.recv()))
}

#[test]
fn kata_layout_round_trips_with_external_masters() {
    require_root();
    let dir = scratch();
    let base = dir.path().join("agent");
    fs::create_dir(&base).unwrap();
    let img_dir = dir.path().join("img");
    let mut report = Chan::new();
    let pid = spawn(&mut report, || agent(&base, &img_dir));
    if let Err(e) = wait_ok(pid, "agent") {
        panic!("{e}: {}", report.recv());
    }
}
