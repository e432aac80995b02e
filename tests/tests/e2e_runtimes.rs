//! dormant as `criu` under runc, podman and containerd (Debian's runc 1.1.5, podman 4.3.1, containerd
//! 1.6.20): each runtime checkpoints and restores a busybox container through dormant's `criu swrk`, and
//! the container's in-memory counter goes on from its dumped value. Refused requests (an option dormant
//! does not implement, a container holding an fd kind dormant refuses) fail with dormant's reason in the
//! log file the runtime names, and the container runs on.
//!
//! Privileged and real: they need root and the runtimes (`.ci/run` installs them); they never skip.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dormant_tests::harness::Scratch;
use dormant_tests::runtimes::{
    count_of, named_log, require_tools, run, run_ok, still_counting, wait_count, wait_for,
    Containerd, CriuShim, Podman, Runc, COMMAND_TIMEOUT, COUNTER, WAIT,
};

/// A container id unique to this test run.
fn id(name: &str) -> String {
    format!("dormant-{name}-{}", std::process::id())
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One mount as the comparison sees it: (fs type, per-mount options, superblock options, root).
type MountView = (String, String, String, String);

/// The mounts of `pid`'s namespace by mountpoint.
fn mounts(pid: i32) -> BTreeMap<String, MountView> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some((
                pre.get(4)?.to_string(),
                (
                    post.first()?.to_string(),
                    pre.get(5)?.to_string(),
                    post.get(2)?.to_string(),
                    pre.get(3)?.to_string(),
                ),
            ))
        })
        .collect()
}

/// Every mount runc built for the container is back with its flags. Two differences are CRIU's too, and
/// come from what runc asks at restore: the masked files are binds of the host's /dev/null (runc names it
/// for the key /dev/null), and the cgroup binds show the cgroups runc names for them.
fn assert_same_mounts(before: &BTreeMap<String, MountView>, after: &BTreeMap<String, MountView>) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the same mountpoints"
    );
    for (mp, b) in before {
        let a = &after[mp];
        assert_eq!(b.1, a.1, "{mp}: per-mount options");
        if b.3 == "/null" {
            assert_eq!(a.3, "/null", "{mp}: a bind of /dev/null");
            continue;
        }
        assert_eq!(b.0, a.0, "{mp}: filesystem type");
        assert_eq!(b.2, a.2, "{mp}: superblock options");
        if b.0 != "cgroup" {
            assert_eq!(b.3, a.3, "{mp}: root");
        }
    }
    for masked in [
        "/proc/keys",
        "/proc/timer_list",
        "/proc/acpi",
        "/sys/firmware",
    ] {
        assert!(after.contains_key(masked), "masked path {masked}");
    }
    for ro in ["/proc/sys", "/proc/bus", "/proc/irq", "/proc/fs"] {
        assert!(after[ro].1.split(',').any(|o| o == "ro"), "{ro} read-only");
        assert_eq!(after[ro].0, "proc", "{ro} is proc");
    }
}

/// `criu` (dormant through the symlink) answers `--version`, `check`, and VERSION on any socket fd.
#[test]
fn criu_as_dormant_answers_version_check_and_swrk() {
    require_tools().unwrap();
    let shim = CriuShim::new().unwrap();
    let out = run_ok(Command::new(shim.criu()).arg("--version")).unwrap();
    let v = text(&out);
    assert!(
        v.starts_with("Version: 4.2\n") && v.contains("dormant"),
        "{v}"
    );
    let out = run_ok(Command::new(shim.criu()).arg("check")).unwrap();
    assert_eq!(text(&out).trim(), "Looks good.");

    // The version probe: VERSION request `08 0a` on whatever fd the client's socket got (here 9).
    let (client, server) = seqpacket_pair();
    let mut cmd = Command::new(shim.criu());
    cmd.args(["swrk", "9"]);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&server);
    // SAFETY: dup2 in the child before exec only installs the server socket as fd 9.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 9) != 9 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(server);
    let mut client = client;
    client.write_all(&[0x08, 0x0a]).unwrap();
    let mut buf = [0u8; 256];
    let n = client.read(&mut buf).unwrap();
    // type VERSION, success true, then version {major 4, minor 2, name "dormant ..."}.
    assert_eq!(&buf[..4], &[0x08, 0x0a, 0x10, 0x01], "{:x?}", &buf[..n]);
    let body = &buf[..n];
    assert!(
        body.windows(4).any(|w| w == [0x08, 0x04, 0x10, 0x02]),
        "major 4, minor 2: {body:x?}"
    );
    assert!(body.windows(7).any(|w| w == b"dormant"), "{body:x?}");
    drop(client);
    assert!(
        child.wait().unwrap().success(),
        "the probe ends with exit 0"
    );
}

/// A SOCK_SEQPACKET pair, the client end as a stream-like file.
fn seqpacket_pair() -> (std::fs::File, std::os::fd::OwnedFd) {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::empty(),
    )
    .unwrap();
    (std::fs::File::from(a), b)
}

struct RuncCase {
    scratch: Scratch,
    _shim: CriuShim,
    runc: Runc,
    bundle: PathBuf,
    ids: Vec<String>,
}

impl RuncCase {
    fn new(name: &str, script: &str, annotations: &[(&str, &str)]) -> Self {
        require_tools().unwrap();
        let scratch = Scratch::new(name).unwrap();
        let shim = CriuShim::new().unwrap();
        let runc = Runc::new(scratch.path(), &shim);
        let bundle = Runc::bundle(&scratch.path().join("bundle"), script, annotations).unwrap();
        Self {
            scratch,
            _shim: shim,
            runc,
            bundle,
            ids: Vec::new(),
        }
    }

    fn id(&mut self, name: &str) -> String {
        let id = id(name);
        self.ids.push(id.clone());
        id
    }

    fn images(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    fn pid(&self, id: &str) -> i32 {
        match self.runc.state(id) {
            Some((status, pid)) if status == "running" => pid,
            other => panic!("container {id}: {other:?}, want running"),
        }
    }
}

impl Drop for RuncCase {
    fn drop(&mut self) {
        for id in &self.ids {
            self.runc.remove(id);
        }
    }
}

/// `runc checkpoint` kills the container; `runc restore -d` brings it back under the same id with new
/// stdio pipes (handed in through inherit_fd), its counter going on from the dumped value, and every mount
/// runc built for it back in place.
#[test]
fn runc_checkpoint_and_restore_continue_the_counter() {
    let mut c = RuncCase::new("runc-cr", COUNTER, &[]);
    let id = c.id("cr");
    let lines = c.runc.run(&c.bundle, &id).unwrap();
    lines.wait_number(50).unwrap();
    let pid = c.pid(&id);
    let before = mounts(pid);

    let images = c.images("checkpoint");
    let out = c.runc.checkpoint(&id, &images, &[]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        c.runc.state(&id).is_none(),
        "runc deleted the checkpointed container"
    );
    assert!(
        wait_for("the dumped init to die", WAIT, || (!std::path::Path::new(
            &format!("/proc/{pid}/root/tmp")
        )
        .exists())
        .then_some(()))
        .is_ok(),
        "the dumped container is gone"
    );
    let dumped = lines.last_number_at_close().unwrap();
    assert!(images.join("dormant-image/inventory").is_file());
    assert!(
        images.join("inventory.img").exists(),
        "CRIU's inventory name marks the checkpoint"
    );
    assert!(
        images.join("stats-dump").is_file(),
        "CRIU's dump statistics"
    );

    let after = c.runc.restore(&c.bundle, &id, &images, &[]).unwrap();
    let first = after.first_number().unwrap();
    assert!(
        goes_on_from(dumped, first),
        "the restored counter goes on from its last line {dumped}, not from zero: first line {first}"
    );
    let restored = c.pid(&id);
    assert_ne!(restored, pid);
    let nums = after.wait_number(first + 20).unwrap();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "every value once, in order: {nums:?}"
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{restored}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .map(|l| l.split_whitespace().last().unwrap().to_string()),
        Some("1".into()),
        "pid 1 of its pid namespace again"
    );
    assert_same_mounts(&before, &mounts(restored));

    // Checkpointed and restored again: a restored container dumps like the original.
    let images2 = c.images("checkpoint2");
    let out = c.runc.checkpoint(&id, &images2, &[]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let again = c.runc.restore(&c.bundle, &id, &images2, &[]).unwrap();
    let n = again.first_number().unwrap();
    assert!(n > first + 20, "{n} after {first}");
}

/// Whether a counter whose first line after a restore is `first` went on from `last`, the last line it
/// printed before the dump: wherever the dump caught the loop (before or after its `echo`), the next line
/// is exactly one past it.
fn goes_on_from(last: u64, first: u64) -> bool {
    first == last + 1
}

/// Self-check of the continuity check: a container started again instead of restored fails it.
#[test]
fn counter_check_fails_for_a_restarted_container() {
    let mut c = RuncCase::new("runc-restart", COUNTER, &[]);
    let id = c.id("restart");
    let lines = c.runc.run(&c.bundle, &id).unwrap();
    lines.wait_number(50).unwrap();
    c.runc.remove(&id);
    let dumped = lines.last_number_at_close().unwrap();
    let again = c.runc.run(&c.bundle, &id).unwrap();
    let first = again.first_number().unwrap();
    assert!(
        !goes_on_from(dumped, first),
        "a restart counts from {first}, the check must refuse it ({dumped} before)"
    );
}

/// `checkpoint --leave-running`: the container runs on; restored under a new id, the copy goes on from
/// the value the original had at the dump, while the original keeps counting.
#[test]
fn runc_leave_running_then_restore_under_a_new_id() {
    let mut c = RuncCase::new("runc-lr", COUNTER, &[]);
    let a = c.id("lr-a");
    let b = c.id("lr-b");
    let lines_a = c.runc.run(&c.bundle, &a).unwrap();
    lines_a.wait_number(50).unwrap();
    let pid_a = c.pid(&a);
    let images = c.images("checkpoint");
    let out = c
        .runc
        .checkpoint(&a, &images, &["--leave-running"])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.pid(&a), pid_a, "the original runs on");
    let seen = *lines_a.numbers().last().unwrap();
    lines_a.wait_number(seen + 10).unwrap();

    let lines_b = c.runc.restore(&c.bundle, &b, &images, &[]).unwrap();
    let first = lines_b.first_number().unwrap();
    assert!(first > 50, "not from zero: {first}");
    assert!(
        lines_a.numbers().contains(&(first - 1)),
        "the copy goes on from the original's value at the dump ({})",
        first - 1
    );
    let pid_b = c.pid(&b);
    assert_ne!(pid_a, pid_b);
    lines_b.wait_number(first + 10).unwrap();
    let now_a = *lines_a.numbers().last().unwrap();
    lines_a.wait_number(now_a + 10).unwrap();
}

/// Refusals: an option dormant does not implement (`--manage-cgroups-mode full`), an option from the
/// container's CRIU configuration file, and a container holding a netlink socket. runc fails naming the
/// log file, which holds dormant's reason; the container runs on, untouched, and no image is left.
#[test]
fn runc_refusals_leave_the_container_running() {
    let scratch = Scratch::new("runc-conf").unwrap();
    let conf = scratch.path().join("criu.conf");
    std::fs::write(&conf, "tcp-close\n").unwrap();
    let script = format!("busybox uevent & {COUNTER}");
    let mut c = RuncCase::new(
        "runc-refuse",
        &script,
        &[("org.criu.config", conf.to_str().unwrap())],
    );
    let id = c.id("refuse");
    let _lines = c.runc.run(&c.bundle, &id).unwrap();
    let pid = c.pid(&id);
    wait_count(pid, 20).unwrap();
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &["--manage-cgroups-mode", "full"],
            "option manage_cgroups_mode",
            "mode",
        ),
        (&[], "option config_file", "conf"),
        (&[], "netlink socket", "netlink"),
    ];
    for (flags, reason, name) in cases {
        if name == "netlink" {
            // Without the configuration file the dump goes as far as the socket.
            std::fs::write(&conf, "# nothing\n").unwrap();
        }
        let images = c.images(name);
        let out = c.runc.checkpoint(&id, &images, flags).unwrap();
        let said = text(&out);
        assert!(!out.status.success(), "{name}: {said}");
        let (path, log) = named_log(&said, &images)
            .unwrap_or_else(|| panic!("{name}: runc names the log file: {said}"));
        let error = log
            .lines()
            .find(|l| l.contains(") Error (") && l.contains(reason))
            .unwrap_or_else(|| panic!("{name}: {} says {reason:?}:\n{log}", path.display()));
        assert!(error.contains("DUMP failed"), "{error}");
        assert_eq!(c.pid(&id), pid, "{name}: the container runs on");
        still_counting(pid).unwrap();
        assert!(
            !images.join("dormant-image").exists(),
            "{name}: no image is left"
        );
    }
}

/// dormant's log of a podman container (in its work directory), for failure messages.
fn podman_log(podman: &Podman, name: &str, file: &str) -> String {
    podman
        .inspect(name, "{{.StaticDir}}")
        .and_then(|d| std::fs::read_to_string(Path::new(&d).join(file)).ok())
        .unwrap_or_else(|| format!("(no {file})"))
}

/// `podman container checkpoint` / `restore`, then `--export` to an archive and `restore --import`:
/// the counter goes on each time (read through the container's /tmp/count, in its rw layer).
#[test]
fn podman_checkpoint_restore_and_export_import() {
    require_tools().unwrap();
    let scratch = Scratch::new("podman").unwrap();
    let shim = CriuShim::new().unwrap();
    let podman = Podman::new(scratch.path(), &shim).unwrap();
    let name = id("pm");
    podman.run(&name, COUNTER, &[]).unwrap();
    let pid = wait_for("podman's container", WAIT, || podman.pid(&name)).unwrap();
    wait_count(pid, 50).unwrap();

    let out = run(
        podman
            .cmd()
            .args(["container", "checkpoint", "--print-stats", &name]),
        COMMAND_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("\"pages_written\""),
        "podman prints dormant's statistics: {}",
        text(&out)
    );
    assert!(podman.pid(&name).is_none(), "checkpointed: not running");
    let out = run(
        podman.cmd().args(["container", "restore", &name]),
        COMMAND_TIMEOUT,
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        podman_log(&podman, &name, "restore.log")
    );
    let pid2 = wait_for("the restored container", WAIT, || podman.pid(&name)).unwrap();
    assert_ne!(pid, pid2);
    // The count file is the container's (rw layer), kept across: its value right after the restore is
    // the dumped one or one past it, never a fresh count.
    let dumped = wait_for("the restored count", WAIT, || count_of(pid2)).unwrap();
    assert!(dumped >= 50, "goes on from the dumped value: {dumped}");
    let later = still_counting(pid2).unwrap();
    assert!(later > dumped);

    let archive = scratch.path().join("export.tar.gz");
    let out = run(
        podman
            .cmd()
            .args(["container", "checkpoint", "--export"])
            .arg(&archive)
            .arg(&name),
        COMMAND_TIMEOUT,
    )
    .unwrap();
    assert!(
        out.status.success() && !text(&out).contains("level=error"),
        "{}",
        text(&out)
    );
    run_ok(podman.cmd().args(["rm", "-f", &name])).unwrap();
    let out = run(
        podman
            .cmd()
            .args(["container", "restore", "--import"])
            .arg(&archive),
        COMMAND_TIMEOUT,
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        podman_log(&podman, &name, "restore.log")
    );
    let pid3 = wait_for("the imported container", WAIT, || podman.pid(&name)).unwrap();
    let imported = wait_for("the imported count", WAIT, || count_of(pid3)).unwrap();
    assert!(imported >= later, "{imported} after {later}");
    still_counting(pid3).unwrap();
}

/// podman with a container dormant refuses (a netlink socket), and with an option it does not implement
/// (from the container's CRIU configuration file, `org.criu.config`): the checkpoint fails naming the log
/// file, which holds dormant's reason, and the container runs on.
#[test]
fn podman_refusals_leave_the_container_running() {
    require_tools().unwrap();
    let scratch = Scratch::new("podman-refuse").unwrap();
    let shim = CriuShim::new().unwrap();
    let podman = Podman::new(scratch.path(), &shim).unwrap();
    let conf = scratch.path().join("criu.conf");
    std::fs::write(&conf, "tcp-close\n").unwrap();
    let netlink = id("pm-netlink");
    podman
        .run(&netlink, &format!("busybox uevent & {COUNTER}"), &[])
        .unwrap();
    let conf_name = id("pm-conf");
    let note = format!("org.criu.config={}", conf.display());
    podman
        .run(&conf_name, COUNTER, &["--annotation", &note])
        .unwrap();
    for (name, reason) in [
        (&netlink, "netlink socket"),
        (&conf_name, "option config_file"),
    ] {
        let pid = wait_for("podman's container", WAIT, || podman.pid(name)).unwrap();
        wait_count(pid, 20).unwrap();
        let out = run(
            podman.cmd().args(["container", "checkpoint", name]),
            COMMAND_TIMEOUT,
        )
        .unwrap();
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        let (path, log) = named_log(&said, Path::new("/"))
            .unwrap_or_else(|| panic!("podman names the log file: {said}"));
        assert!(
            log.lines()
                .any(|l| l.contains(") Error (") && l.contains(reason)),
            "{} says {reason:?}:\n{log}",
            path.display()
        );
        assert_eq!(podman.pid(name), Some(pid), "the container runs on");
        still_counting(pid).unwrap();
    }
}

/// containerd: `ctr c checkpoint --task` (the task is paused, dumped and left running) into a checkpoint
/// image, then the container is removed and `ctr c restore --live` brings it back with its counter going
/// on. A container dormant refuses fails with dormant's reason in the log containerd names, and runs on.
#[test]
fn containerd_checkpoint_task_and_restore_live() {
    require_tools().unwrap();
    let scratch = Scratch::new("containerd").unwrap();
    let shim = CriuShim::new().unwrap();
    let archive = scratch.path().join("busybox-oci.tar");
    {
        let podman = Podman::new(&scratch.path().join("podman"), &shim).unwrap();
        podman.save_oci(&archive).unwrap();
    }
    let ctd = Containerd::start(&scratch.path().join("containerd"), &shim).unwrap();
    ctd.import(&archive).unwrap();

    let name = id("ctd");
    ctd.run(&name, COUNTER, &[]).unwrap();
    let pid = wait_for("the task", WAIT, || ctd.pid(&name)).unwrap();
    let before = wait_count(pid, 100).unwrap();
    let image = format!("localhost/dormant-checkpoint:{name}");
    let out = run(
        ctd.ctr()
            .args(["c", "checkpoint", "--task", "--rw", &name, &image]),
        COMMAND_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), ctd.log());
    assert_eq!(ctd.pid(&name), Some(pid), "the task runs on");
    still_counting(pid).unwrap();
    ctd.remove(&name);
    let out = run(
        ctd.ctr()
            .args(["c", "restore", "--live", "--rw", &name, &image]),
        COMMAND_TIMEOUT,
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        text(&out),
        named_log(&text(&out), Path::new("/")).map_or(String::new(), |(_, l)| l),
        ctd.log()
    );
    let pid2 = wait_for("the restored task", WAIT, || ctd.pid(&name)).unwrap();
    assert_ne!(pid, pid2);
    // The rw layer comes back with the checkpoint (--rw): files the shell had open are there again.
    let first = wait_for("the restored count", WAIT, || count_of(pid2)).unwrap();
    assert!(
        first > before,
        "goes on from the dumped value (> {before}), not from zero: {first}"
    );
    still_counting(pid2).unwrap();

    let refused = id("ctd-netlink");
    ctd.run(&refused, &format!("busybox uevent & {COUNTER}"), &[])
        .unwrap();
    let rpid = wait_for("the task", WAIT, || ctd.pid(&refused)).unwrap();
    wait_count(rpid, 20).unwrap();
    let image = format!("localhost/dormant-checkpoint:{refused}");
    let out = run(
        ctd.ctr()
            .args(["c", "checkpoint", "--task", &refused, &image]),
        COMMAND_TIMEOUT,
    )
    .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    let (path, log) = named_log(&said, Path::new("/"))
        .unwrap_or_else(|| panic!("containerd names the log file: {said}"));
    assert!(
        log.lines()
            .any(|l| l.contains(") Error (") && l.contains("netlink socket")),
        "{} says why:\n{log}",
        path.display()
    );
    assert_eq!(ctd.pid(&refused), Some(rpid), "the task runs on");
    still_counting(rpid).unwrap();
}
