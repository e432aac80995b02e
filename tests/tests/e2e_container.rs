//! Container tests: a container built the way kata-agent builds one (`ctr_agent`), whose /dev/shm is a
//! slave of a peer group that lives only outside the container's mount namespace.
//!
//! `kata_layout_is_what_kata_agent_builds` checks the layout itself and the workload's self-check without a
//! checkpoint: the harness is right before any dump is judged with it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use dormant_tests::container::Container;
use dormant_tests::harness::{dormant_bin, pid_is_free, wait_until, FINISH_TIMEOUT};

fn start(args: &[&str]) -> Container {
    Container::start(
        Path::new(env!("CARGO_BIN_EXE_ctr_agent")),
        Path::new(env!("CARGO_BIN_EXE_wl_container")),
        args,
    )
    .unwrap()
}

/// One mountinfo line, split: (mountpoint, optional fields).
fn mounts(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((
                f.get(4)?.to_string(),
                f[6..sep].iter().map(|s| s.to_string()).collect(),
            ))
        })
        .collect()
}

fn tag(opts: &[String], name: &str) -> Option<String> {
    opts.iter()
        .find_map(|o| o.strip_prefix(&format!("{name}:")).map(str::to_string))
}

fn run_ok(mut cmd: Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts the container's /dev/shm is a slave of a group that only the agent's sandbox shm carries, and
/// that propagation works both ways as it should: in from the outside master, nothing out.
pub fn assert_external_master_layout(c: &Container, init: i32) {
    let inside = mounts(&Container::mountinfo(init).unwrap());
    let outside = mounts(&Container::mountinfo(c.agent_pid()).unwrap());
    let (_, shm_opts) = inside
        .iter()
        .find(|(mp, _)| mp == "/dev/shm")
        .expect("/dev/shm is a mount in the container");
    let master = tag(shm_opts, "master").expect("/dev/shm is a slave");
    assert!(
        inside
            .iter()
            .all(|(_, o)| tag(o, "shared").as_deref() != Some(&master)),
        "no container mount may carry peer group {master}: it must be external"
    );
    let sandbox = c.sandbox_shm();
    let (_, out_opts) = outside
        .iter()
        .find(|(mp, _)| Path::new(mp) == sandbox)
        .expect("the agent has the sandbox shm mount");
    assert_eq!(tag(out_opts, "shared").as_deref(), Some(master.as_str()));

    // In: a mount under the outside master appears in the container.
    let sub = sandbox.join("probe-in");
    let mut mk = c.in_agent_ns("mkdir");
    mk.arg("-p").arg(&sub);
    run_ok(mk);
    let mut mnt = c.in_agent_ns("mount");
    mnt.args(["-t", "tmpfs", "probe-in"]).arg(&sub);
    run_ok(mnt);
    let seen = mounts(&Container::mountinfo(init).unwrap())
        .iter()
        .any(|(mp, _)| mp == "/dev/shm/probe-in");
    let mut um = c.in_agent_ns("umount");
    um.arg(&sub);
    run_ok(um);
    assert!(
        seen,
        "a mount under the outside master must propagate into the container"
    );

    // Out: a mount made inside the container (under a slave) does not reach the agent.
    let mut mnt = Command::new("nsenter");
    mnt.arg(format!("--mount=/proc/{init}/ns/mnt")).args([
        "--",
        "mount",
        "-t",
        "tmpfs",
        "probe-out",
        "/tmp",
    ]);
    run_ok(mnt);
    let leaked = mounts(&Container::mountinfo(c.agent_pid()).unwrap())
        .iter()
        .any(|(mp, _)| mp.ends_with("/rootfs/tmp"));
    // Lazy: the workload polls /tmp/trigger, and a path walk in flight makes a plain umount EBUSY.
    let mut um = Command::new("nsenter");
    um.arg(format!("--mount=/proc/{init}/ns/mnt"))
        .args(["--", "umount", "-l", "/tmp"]);
    run_ok(um);
    assert!(!leaked, "a mount inside the container must not leak out");
}

#[test]
fn kata_layout_is_what_kata_agent_builds() {
    let c = start(&[]);
    let init = c.init_pid();
    assert!(
        c.workload_pid().is_some(),
        "the shell has the workload as child"
    );
    assert_external_master_layout(&c, init);
    let hosts = std::fs::read_to_string(format!("/proc/{init}/root/etc/hosts")).unwrap();
    assert!(
        hosts.contains("dormant-ctr"),
        "hosts is the shared dir's: {hosts}"
    );
    c.trigger().unwrap();
    let log = c.wait_verdict().unwrap();
    assert!(
        log.contains("PASS wl_container") && log.contains("sh: workload exited 0"),
        "workload verdict:\n{log}"
    );
}

#[test]
fn container_workload_catches_damage() {
    let c = start(&["--inject-fault"]);
    c.trigger().unwrap();
    let log = c.wait_verdict().unwrap();
    assert!(
        log.contains("FAIL dev-shm-plain-file")
            && log.contains("FAIL sem-set")
            && log.contains("sh: workload exited 1"),
        "the damaged /dev/shm file and semaphore set must be caught:\n{log}"
    );
}

/// The `dormant` binary with `args`, run in the agent's mount namespace (where the container's external
/// masters are).
fn dormant_in_agent(c: &Container, args: &[&str]) -> std::process::Output {
    let mut cmd = c.in_agent_ns(dormant_bin().unwrap());
    cmd.args(args);
    cmd.output().unwrap()
}

/// Asserts a dump was refused for an unreachable external master, naming `mountpoint`, `master:GROUP` and
/// the flag, with no image left behind.
fn assert_refused(out: &std::process::Output, img: &Path, mountpoint: &str, group: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the dump must be refused: {err}");
    for want in [
        format!("mount {mountpoint} is a slave of peer group {group} (master:{group})"),
        format!("--external mnt[{mountpoint}]:KEY"),
    ] {
        assert!(err.contains(&want), "the error must say {want:?}: {err}");
    }
    assert!(
        !img.join("inventory").exists(),
        "no image may be committed by a refused dump"
    );
}

#[test]
fn container_without_outside_master_is_refused() {
    let c = start(&[]);
    let init = c.init_pid();
    let workload = c.workload_pid().unwrap();
    let inside = mounts(&Container::mountinfo(init).unwrap());
    let group_of = |mp: &str| {
        let (_, opts) = inside.iter().find(|(m, _)| m == mp).unwrap();
        tag(opts, "master").unwrap()
    };
    let img = c.scratch().join("img");

    // From the machine's mount namespace, not the agent's: none of the agent's groups is mounted here, the
    // first mount found without its master is the container root.
    let mut cmd = Command::new(dormant_bin().unwrap());
    cmd.args(["dump", "-t", &init.to_string(), "-D"]).arg(&img);
    assert_refused(&cmd.output().unwrap(), &img, "/", &group_of("/"));

    // From a copy of the agent's namespace (peer groups kept) where the sandbox shm, the outside master of
    // /dev/shm, is unmounted: its group lives on in the agent's namespace, but not where the dumper runs.
    let mut cmd = c.in_agent_ns("unshare");
    cmd.args(["-m", "--propagation", "unchanged", "sh", "-c"])
        .arg(format!(
            "umount {} && exec {} dump -t {init} -D {}",
            c.sandbox_shm().display(),
            dormant_bin().unwrap().display(),
            img.display()
        ));
    assert_refused(
        &cmd.output().unwrap(),
        &img,
        "/dev/shm",
        &group_of("/dev/shm"),
    );

    // The container is untouched: its /dev/shm is still a slave of the agent's sandbox shm.
    assert_external_master_layout(&c, init);

    // Nothing lost: the container runs on as before and passes its own check.
    assert!(!pid_is_free(init) && !pid_is_free(workload));
    c.trigger().unwrap();
    let log = c.wait_verdict().unwrap();
    assert!(
        log.contains("PASS wl_container") && log.contains("sh: workload exited 0"),
        "the container must run on after a refused dump:\n{log}"
    );
}

/// Kills a restored container's init (and with it its pid namespace) if the test ends before the container
/// ended itself: the restored init is no longer the agent's child, so the agent cannot.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Only while the pid is still a pid-namespace init (not reused by an unrelated process).
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0)).unwrap_or_default();
        let is_init = status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.split_whitespace().last() == Some("1"));
        if !is_init {
            return;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The restored container's init, found by the pidfile restore writes.
fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn container_dump_restore() {
    dump_restore(false, false);
}

/// `dump --root` names the container's rootfs directory in the agent's namespace; the restore, given no
/// `--root`, binds the container root from that recorded directory and says so in its log.
#[test]
fn container_dump_root_is_the_restore_default() {
    dump_restore(false, true);
}

/// `dump --root` with a directory that is not the container's root (the container's directory in the
/// shared dir, one level up; then a path that does not exist): refused, naming the directory given and
/// /proc/PID/root, nothing committed, and the container runs on and passes its own check.
#[test]
fn container_dump_with_a_wrong_root_is_refused() {
    let c = start(&[]);
    let init = c.init_pid();
    let workload = c.workload_pid().unwrap();
    let img = c.scratch().join("img");
    let img_s = img.to_str().unwrap();
    let parent = c.rootfs().parent().unwrap().to_owned();
    let missing = c.rootfs().join("no-such-dir");
    for (wrong, why) in [
        (parent.to_str().unwrap(), "device"),
        (missing.to_str().unwrap(), "No such file"),
    ] {
        let out = dormant_in_agent(
            &c,
            &[
                "dump",
                "-t",
                &init.to_string(),
                "-D",
                img_s,
                "--root",
                wrong,
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a wrong --root must refuse the dump");
        for want in [
            format!(
                "--root {wrong}: not the root of the tree's mount namespace (/proc/{init}/root)"
            ),
            why.to_string(),
        ] {
            assert!(err.contains(&want), "the error must say {want:?}: {err}");
        }
        assert!(
            !img.join("inventory").exists(),
            "no image may be committed by a refused dump"
        );
    }
    assert!(!pid_is_free(init) && !pid_is_free(workload));
    assert_external_master_layout(&c, init);
    c.trigger().unwrap();
    let log = c.wait_verdict().unwrap();
    assert!(
        log.contains("PASS wl_container") && log.contains("sh: workload exited 0"),
        "the container must run on after a refused dump:\n{log}"
    );
}

/// The sandbox's shm tmpfs is emptied between dump and restore (a new sandbox): /dev/shm's files come back
/// from the image, and the POSIX shm mapping is again the restored file's memory.
#[test]
fn container_dump_restore_into_an_empty_sandbox_shm() {
    dump_restore(true, false);
}

/// Dumps the Kata-like container from the agent's namespace with no mount flags (with `dump_root`: with
/// `--root` its rootfs directory), optionally empties the sandbox shm, restores it with no mount flags and
/// checks it from inside (the workload) and outside.
fn dump_restore(wipe_sandbox_shm: bool, dump_root: bool) {
    let c = start(&[]);
    let init = c.init_pid();
    let workload = c.workload_pid().unwrap();
    let before = mounts(&Container::mountinfo(init).unwrap());
    let img = c.scratch().join("img");
    let img_s = img.to_str().unwrap();
    let rootfs = c.rootfs();
    let init_s = init.to_string();
    let mut args = vec!["dump", "-t", &init_s, "-D", img_s];
    if dump_root {
        args.extend(["--root", rootfs.to_str().unwrap()]);
    }
    let out = dormant_in_agent(&c, &args);
    assert!(
        out.status.success(),
        "dump with no mount flags: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The inner pids are the pstree's NSpid levels: the retired ns-pids file is not written.
    assert!(
        !img.join("ns-pids").exists(),
        "no ns-pids file (kind 40 is retired)"
    );
    assert_eq!(
        img.join("container-root").exists(),
        dump_root,
        "container-root is recorded exactly when the dump is given --root"
    );
    let verify = dormant_in_agent(&c, &["verify", "-D", img_s]);
    assert!(
        verify.status.success(),
        "the image verifies (pstree NSpid levels, container-root): {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        wait_until(FINISH_TIMEOUT, || pid_is_free(init)
            && pid_is_free(workload)),
        "the dumped container must be gone"
    );
    if wipe_sandbox_shm {
        let mut rm = c.in_agent_ns("sh");
        rm.arg("-c")
            .arg(format!("rm -rf {}/*", c.sandbox_shm().display()));
        run_ok(rm);
        let left = std::fs::read_dir(format!(
            "/proc/{}/root{}",
            c.agent_pid(),
            c.sandbox_shm().display()
        ))
        .unwrap()
        .count();
        assert_eq!(left, 0, "the sandbox shm must be empty before the restore");
    }
    let pidfile = c.scratch().join("restored.pid");
    let restore_log = c.scratch().join("restore.log");
    let out = dormant_in_agent(
        &c,
        &[
            "restore",
            "-d",
            "-D",
            img_s,
            "--pidfile",
            pidfile.to_str().unwrap(),
            "-o",
            restore_log.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "restore with no mount flags: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logged = std::fs::read_to_string(&restore_log).unwrap();
    let why = if dump_root {
        "recorded by dump --root"
    } else {
        "found where the dumped root filesystem is mounted"
    };
    let want = format!("container restore: root {} ({why};", rootfs.display());
    assert!(
        logged.contains(&want),
        "the restore log must say which root it used ({want:?}):\n{logged}"
    );
    let restored = read_pid(&pidfile);
    let _guard = KillOnDrop(restored);
    assert_eq!(restored, init, "the init keeps its outside pid");
    let status = std::fs::read_to_string(format!("/proc/{restored}/status")).unwrap();
    assert!(
        status.contains(&format!("NSpid:\t{restored}\t1\n")),
        "the restored init is pid 1 of a new pid namespace:\n{status}"
    );
    // The container's own /proc (reached through its root) is a proc of its pid namespace: pid 1 there is
    // the init, with a single NSpid level.
    let inner = std::fs::read_to_string(format!("/proc/{restored}/root/proc/1/status")).unwrap();
    assert!(
        inner.contains("NSpid:\t1\n") && inner.contains("Name:\tsh\n"),
        "the container's /proc must show its own pid namespace:\n{inner}"
    );
    let child =
        std::fs::read_to_string(format!("/proc/{restored}/task/{restored}/children")).unwrap();
    assert_eq!(
        child.split_whitespace().collect::<Vec<_>>(),
        [workload.to_string()],
        "the shell's child is the workload again, with its pid"
    );
    let after = mounts(&Container::mountinfo(restored).unwrap());
    // The same mountpoints (the workload compares the whole normalised tree itself); mountinfo lists mounts
    // in creation order, which restore does not keep.
    let points = |m: &[(String, Vec<String>)]| {
        let mut v: Vec<String> = m.iter().map(|(p, _)| p.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(points(&before), points(&after), "the same mount tree");
    assert_external_master_layout(&c, restored);
    c.trigger().unwrap();
    let log = c.wait_verdict().unwrap();
    assert!(
        log.contains("PASS wl_container") && log.contains("sh: workload exited 0"),
        "the restored workload's verdict:\n{log}"
    );
}

/// The container's stdout is a pipe whose read end only the test holds (kata-agent's stdio pipes): the
/// dump records it as external (`pipe:[INODE]`); a restore without `--inherit-fd` fails naming the key and
/// the flag; a restore with `--inherit-fd fd[3]:pipe:[INODE]` and a fresh pipe's write end as dormant's
/// fd 3 gives the restored container that pipe: the verdict arrives on it, nothing more on the old one.
#[test]
fn container_stdout_pipe_is_inherited_at_restore() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    let c = Container::start_with_stdout_pipe(
        Path::new(env!("CARGO_BIN_EXE_ctr_agent")),
        Path::new(env!("CARGO_BIN_EXE_wl_container")),
        &[],
    )
    .unwrap();
    let init = c.init_pid();
    let workload = c.workload_pid().unwrap();
    let old = c.stdout_pipe().unwrap();
    let key = format!("pipe:[{}]", old.metadata().unwrap().ino());
    let img = c.scratch().join("img");
    let img_s = img.to_str().unwrap();
    let out = dormant_in_agent(&c, &["dump", "-t", &init.to_string(), "-D", img_s]);
    assert!(
        out.status.success(),
        "a container whose stdout pipe is held outside must dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(FINISH_TIMEOUT, || pid_is_free(init)
            && pid_is_free(workload)),
        "the dumped container must be gone"
    );

    // Without the flag: refused before anything is restored, naming the key and the flag.
    let out = dormant_in_agent(&c, &["restore", "-d", "-D", img_s]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restore without --inherit-fd: {err}");
    assert!(
        err.contains(&key) && err.contains(&format!("--inherit-fd fd[N]:{key}")),
        "the error must name {key} and the flag: {err}"
    );
    assert!(
        pid_is_free(init),
        "nothing may be left of a refused restore"
    );

    // With a fresh pipe handed in as dormant's fd 3.
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let pidfile = c.scratch().join("restored.pid");
    let mut cmd = c.in_agent_ns(dormant_bin().unwrap());
    cmd.args(["restore", "-d", "-D", img_s, "--pidfile"])
        .arg(&pidfile)
        .arg("--inherit-fd")
        .arg(format!("fd[3]:{key}"));
    dormant_tests::harness::pass_as_fd3(&mut cmd, w.as_raw_fd());
    let out = cmd.output().unwrap();
    drop(w);
    assert!(
        out.status.success(),
        "restore with --inherit-fd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = read_pid(&pidfile);
    let _guard = KillOnDrop(restored);
    assert_eq!(restored, init);
    let fresh = std::fs::File::from(r);
    let fresh_ino = fresh.metadata().unwrap().ino();
    for pid in [restored, workload] {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
        assert_eq!(
            link.to_string_lossy(),
            format!("pipe:[{fresh_ino}]"),
            "pid {pid}'s stdout must be the pipe handed in"
        );
    }
    dormant_tests::container::set_nonblocking(&fresh);
    c.trigger().unwrap();
    let seen = std::cell::RefCell::new(String::new());
    let text =
        dormant_tests::container::read_until(&fresh, &seen, "sh: workload exited", FINISH_TIMEOUT)
            .unwrap_or_else(|t| panic!("no verdict on the new pipe: {t:?}\nlog: {}", c.log_text()));
    assert!(
        text.contains("PASS wl_container") && text.contains("sh: workload exited 0"),
        "the restored workload's verdict on the new pipe:\n{text}"
    );
    let before = c.read_stdout_until("READY ", FINISH_TIMEOUT).unwrap();
    assert!(
        !before.contains("PASS") && !before.contains("sh: workload exited"),
        "nothing of the restored container may arrive on the old pipe: {before}"
    );
}
