//! kata-agent's use of dormant, end to end: containers laid out as kata-agent lays them out (`ctr_agent`
//! in serve mode: rootfs bind from the shared directory, / made `MS_SLAVE|MS_REC`, /dev/shm a slave of
//! the sandbox shm, hosts, resolv.conf and hostname bound from the shared directory, own pid, uts, ipc and
//! mount namespaces, a freezer cgroup, an init that called setsid, stdio pipes the agent holds), driven
//! through dormant's ttrpc service with the `ttrpc` crate's client, as the Kata shim drives kata-agent.
//!
//! A "new sandbox" is a second stand-in agent that built the sandbox side only: a fresh shared directory
//! and sandbox shm (other device numbers and inodes) with a rootfs of the same content and mtimes, as a
//! new VM given the same image has.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dormant_agent_glue::proto::checkpoint as pb;
use dormant_tests::container::{Container, KataOptions};
use dormant_tests::harness::{dormant_bin, pid_is_free, wait_until, FINISH_TIMEOUT};
use dormant_tests::kata::{status_of, KataClient};

fn agent(opts: KataOptions) -> Container {
    Container::start_kata(
        Path::new(env!("CARGO_BIN_EXE_ctr_agent")),
        Path::new(env!("CARGO_BIN_EXE_wl_container")),
        &opts,
    )
    .unwrap()
}

fn with_cgroup(v: &'static str) -> KataOptions {
    KataOptions {
        cgroup: Some(v),
        ..Default::default()
    }
}

fn new_sandbox(v: &'static str) -> KataOptions {
    KataOptions {
        cgroup: Some(v),
        sandbox_only: true,
        ..Default::default()
    }
}

fn client(c: &Container) -> KataClient {
    KataClient::connect(c.socket().unwrap()).unwrap()
}

fn checkpoint_req(dir: &Path, leave_running: bool) -> pb::CheckpointContainerRequest {
    pb::CheckpointContainerRequest {
        container_id: "ctr0".into(),
        checkpoint_dir: dir.to_string_lossy().into_owned(),
        leave_running,
        ..Default::default()
    }
}

fn restore_req(dir: &Path, paused: bool) -> pb::RestoreContainerRequest {
    pb::RestoreContainerRequest {
        container_id: "ctr0".into(),
        checkpoint_dir: dir.to_string_lossy().into_owned(),
        paused,
        ..Default::default()
    }
}

/// What a library call must not change in the calling agent: namespaces, root, cwd, credentials,
/// capabilities, signal dispositions and mask, cgroups.
/// The agent's settled state: two reads 50 ms apart that agree. A thread creating a thread has every
/// signal blocked for a moment (glibc's `pthread_create`), and a fresh agent starts its runtime's threads
/// while the test already looks, so one read can catch that moment.
fn agent_state(pid: i32) -> String {
    let mut last = agent_state_once(pid);
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = agent_state_once(pid);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the agent {pid} never settled: last read\n{last}");
}

fn agent_state_once(pid: i32) -> String {
    let mut s = String::new();
    for ns in [
        "mnt",
        "pid",
        "pid_for_children",
        "uts",
        "ipc",
        "net",
        "cgroup",
        "user",
    ] {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        s += &format!("{ns} {}\n", link.display());
    }
    for l in ["root", "cwd"] {
        s += &format!(
            "{l} {:?}\n",
            std::fs::read_link(format!("/proc/{pid}/{l}")).unwrap()
        );
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for l in status.lines() {
        if [
            "Uid", "Gid", "Groups", "CapEff", "CapPrm", "SigBlk", "SigIgn", "SigCgt", "NSpid",
        ]
        .iter()
        .any(|k| l.starts_with(&format!("{k}:")))
        {
            s += l;
            s.push('\n');
        }
    }
    s + &std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
}

/// The freezer cgroup directory ctr_agent made for its container.
fn agent_cgroup(c: &Container, version: &str) -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mountpoint = mountinfo
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split(' ');
            let (fstype, super_opts) = (post.next()?, post.nth(1)?);
            let wanted = match version {
                "v2" => fstype == "cgroup2",
                _ => fstype == "cgroup" && super_opts.split(',').any(|o| o == "freezer"),
            };
            wanted.then(|| pre.split(' ').nth(4).map(PathBuf::from))?
        })
        .unwrap();
    mountpoint.join(format!("dormant-ctr-{}", c.agent_pid()))
}

fn frozen(dir: &Path) -> bool {
    if let Ok(state) = std::fs::read_to_string(dir.join("freezer.state")) {
        return state.trim() == "FROZEN";
    }
    std::fs::read_to_string(dir.join("cgroup.events"))
        .unwrap()
        .lines()
        .any(|l| l == "frozen 1")
}

fn set_frozen(dir: &Path, on: bool) {
    if dir.join("freezer.state").exists() {
        std::fs::write(
            dir.join("freezer.state"),
            if on { "FROZEN" } else { "THAWED" },
        )
        .unwrap();
    } else {
        std::fs::write(dir.join("cgroup.freeze"), if on { "1" } else { "0" }).unwrap();
    }
    assert!(wait_until(FINISH_TIMEOUT, || frozen(dir) == on));
}

fn procs(dir: &Path) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap()
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    v.sort_unstable();
    v
}

fn ppid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn trigger(pid: i32) {
    std::fs::write(format!("/proc/{pid}/root/tmp/trigger"), b"").unwrap();
}

fn assert_passes(c: &Container, what: &str) {
    let log = c.wait_verdict().unwrap();
    assert!(
        log.contains("PASS wl_container") && log.contains("sh: workload exited 0"),
        "{what}: the workload's verdict:\n{log}"
    );
}

/// The `file-identity` record of an image, as `dormant show --json` prints it.
fn file_identity(img: &Path) -> String {
    let out = std::process::Command::new(dormant_bin().unwrap())
        .args(["show", "--json", "-D"])
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["file-identity"].to_string()
}

fn device_of(pid: i32, path: &Path) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/root{}", path.display()))
        .unwrap()
        .dev()
}

/// Checkpoint (killing the container), restore in a new sandbox with other device numbers: the init is
/// the new agent's child with its pid, in the new sandbox's cgroup, on its stdio pipes, its files
/// recognised by content; the workload continues with its memory, /dev/shm files, mounts and hostname.
/// Neither agent's namespaces, credentials, cwd, signal handling or cgroups change.
#[test]
fn kata_checkpoint_kill_and_restore_in_a_new_sandbox() {
    let a = agent(with_cgroup("v1"));
    let (init, workload) = (a.init_pid(), a.workload_pid().unwrap());
    let old_stdout = std::fs::read_link(format!("/proc/{init}/fd/1")).unwrap();
    assert!(
        old_stdout.to_string_lossy().starts_with("pipe:"),
        "{old_stdout:?}"
    );
    let a_state = agent_state(a.agent_pid());
    let img = a.scratch().join("img");
    let r = client(&a).checkpoint(checkpoint_req(&img, false)).unwrap();
    assert_eq!(r.checkpoint_dir, img.to_string_lossy());
    assert!(
        !r.was_paused && !r.left_running && r.bytes_written > 0,
        "{r:?}"
    );
    assert!(
        wait_until(FINISH_TIMEOUT, || pid_is_free(init)
            && pid_is_free(workload)),
        "the checkpointed container must be gone"
    );
    assert_eq!(
        agent_state(a.agent_pid()),
        a_state,
        "the agent is unchanged"
    );
    let identity = file_identity(&img);
    assert!(
        identity.contains("Content") && identity.contains("BuildId"),
        "the image records content identity: {identity}"
    );

    let b = agent(new_sandbox("v1"));
    let busybox = b.rootfs().join("bin/busybox");
    let (dev_a, dev_b) = (
        device_of(a.agent_pid(), &a.rootfs().join("bin/busybox")),
        device_of(b.agent_pid(), &busybox),
    );
    assert_ne!(
        dev_a, dev_b,
        "the new sandbox's rootfs is on another device"
    );
    let b_state = agent_state(b.agent_pid());
    let r = client(&b).restore(restore_req(&img, false)).unwrap();
    assert_eq!((r.init_pid as i32, r.paused), (init, false));
    assert_eq!(
        ppid(init),
        b.agent_pid(),
        "the init is the new agent's child"
    );
    assert_eq!(
        agent_state(b.agent_pid()),
        b_state,
        "the agent is unchanged"
    );
    assert_eq!(
        device_of(init, Path::new("/bin/busybox")),
        dev_b,
        "the restored container runs on the new sandbox's rootfs"
    );
    let cgroup = agent_cgroup(&b, "v1");
    assert_eq!(
        procs(&cgroup),
        vec![init, workload],
        "in the new sandbox's cgroup"
    );
    for (pid, fd) in [(init, 0), (init, 1), (init, 2), (workload, 1)] {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert!(
            link.to_string_lossy().starts_with("pipe:") && link != old_stdout,
            "pid {pid} fd {fd} is a new pipe of the new agent: {link:?}"
        );
    }
    trigger(init);
    assert_passes(&b, "restored in a new sandbox");
}

/// A leave-running checkpoint into the default directory: the container runs on, thawed, and passes; the
/// image (copied out, as the host would) restores in a new sandbox with cgroup v2's freezer.
#[test]
fn kata_leave_running_checkpoint_with_the_v2_freezer() {
    let a = agent(with_cgroup("v2"));
    let (init, workload) = (a.init_pid(), a.workload_pid().unwrap());
    let r = client(&a).checkpoint(pb::CheckpointContainerRequest {
        container_id: "ctr0".into(),
        leave_running: true,
        ..Default::default()
    });
    let r = r.unwrap();
    let default_dir = a.base().join("shared/checkpoints/ctr0/checkpoint");
    assert_eq!(r.checkpoint_dir, default_dir.to_string_lossy());
    assert!(r.left_running && !r.was_paused, "{r:?}");
    let cgroup = agent_cgroup(&a, "v2");
    assert!(!frozen(&cgroup), "thawed after the checkpoint");
    assert_eq!(
        procs(&cgroup),
        vec![init, workload],
        "the container runs on"
    );
    // The host sees the shared directory; it hands the image to the next sandbox.
    let img = a.scratch().join("img");
    let src = format!("/proc/{}/root{}", a.agent_pid(), default_dir.display());
    let cp = std::process::Command::new("cp")
        .args(["-a", &src])
        .arg(&img)
        .status()
        .unwrap();
    assert!(cp.success());
    trigger(init);
    assert_passes(&a, "left running");
    assert!(wait_until(FINISH_TIMEOUT, || pid_is_free(init)
        && pid_is_free(workload)));

    let b = agent(new_sandbox("v2"));
    let r = client(&b).restore(restore_req(&img, false)).unwrap();
    assert_eq!(r.init_pid as i32, init);
    assert_eq!(procs(&agent_cgroup(&b, "v2")), vec![init, workload]);
    trigger(init);
    assert_passes(&b, "restored from a leave-running checkpoint");
}

/// A container the freezer paused: a leave-running checkpoint keeps it paused, a second one (killing it)
/// reports it paused, and a paused restore freezes it before it runs: the triggered workload does not
/// move until the new sandbox's cgroup is thawed, then passes.
#[test]
fn kata_paused_container_checkpointed_and_restored_paused() {
    let a = agent(with_cgroup("v1"));
    let (init, workload) = (a.init_pid(), a.workload_pid().unwrap());
    let cgroup = agent_cgroup(&a, "v1");
    set_frozen(&cgroup, true);
    let ca = client(&a);
    let img = a.scratch().join("img");
    let r = ca
        .checkpoint(checkpoint_req(&a.scratch().join("img0"), true))
        .unwrap();
    assert!(r.was_paused && r.left_running, "{r:?}");
    assert!(
        frozen(&cgroup),
        "still paused after a leave-running checkpoint"
    );
    let r = ca.checkpoint(checkpoint_req(&img, false)).unwrap();
    assert!(r.was_paused && !r.left_running, "{r:?}");
    assert!(wait_until(FINISH_TIMEOUT, || pid_is_free(init)
        && pid_is_free(workload)));

    let b = agent(new_sandbox("v1"));
    let r = client(&b).restore(restore_req(&img, true)).unwrap();
    assert_eq!((r.init_pid as i32, r.paused), (init, true));
    let cgroup = agent_cgroup(&b, "v1");
    assert!(frozen(&cgroup), "restored paused");
    assert_eq!(
        procs(&cgroup),
        vec![init, workload],
        "only the container is in its cgroup (the helper left it before freezing)"
    );
    trigger(init);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        b.log_text(),
        "",
        "a paused container must not run (its output would be in the new agent's log)"
    );
    set_frozen(&cgroup, false);
    assert_passes(&b, "restored paused, then resumed");
}

/// The failure paths: an unknown container, a checkpoint directory on a full filesystem, pre-dumps, a
/// restore into a sandbox missing a mount key. Each gives a clear status and changes nothing: the
/// container runs on thawed with no image left; the new sandbox holds no process and its shm stays empty;
/// the image still restores into a complete sandbox.
#[test]
fn kata_failures_give_clear_statuses_and_change_nothing() {
    let a = agent(with_cgroup("v2"));
    let (init, workload) = (a.init_pid(), a.workload_pid().unwrap());
    let ca = client(&a);
    let cgroup = agent_cgroup(&a, "v2");

    let e = ca.checkpoint(pb::CheckpointContainerRequest {
        container_id: "no-such-ctr".into(),
        ..Default::default()
    });
    let (code, msg) = status_of(&e.unwrap_err()).unwrap();
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{msg}");
    assert!(msg.contains("no-such-ctr"), "{msg}");

    let e = ca.pre_dump(pb::PreDumpContainerRequest {
        container_id: "ctr0".into(),
        ..Default::default()
    });
    assert_eq!(
        status_of(&e.unwrap_err()).unwrap().0,
        ttrpc::Code::UNIMPLEMENTED
    );

    let f = ca.features().unwrap();
    assert!(f.ready, "{f:?}");
    assert!(
        f.features
            .iter()
            .any(|p| p.name == "ptrace-seize" && p.available && p.required),
        "{f:?}"
    );

    // A 64 KiB tmpfs in the agent's namespace: no room for the image.
    let full = a.base().join("full");
    let mut mk = a.in_agent_ns("sh");
    mk.arg("-c").arg(format!(
        "mkdir -p {0} && mount -t tmpfs -o size=64k full {0}",
        full.display()
    ));
    assert!(mk.status().unwrap().success());
    let e = ca.checkpoint(checkpoint_req(&full.join("img"), false));
    let (code, msg) = status_of(&e.unwrap_err()).unwrap();
    assert_eq!(code, ttrpc::Code::RESOURCE_EXHAUSTED, "{msg}");
    assert!(
        msg.contains("ctr0") && msg.contains("No space left"),
        "{msg}"
    );
    assert!(!frozen(&cgroup), "thawed after the failure");
    assert_eq!(
        procs(&cgroup),
        vec![init, workload],
        "the container runs on"
    );
    let left = std::fs::read_dir(format!("/proc/{}/root{}", a.agent_pid(), full.display()))
        .unwrap()
        .count();
    assert_eq!(left, 0, "no image or temporary directory is left");

    let img = a.scratch().join("img");
    ca.checkpoint(checkpoint_req(&img, false)).unwrap();
    assert!(wait_until(FINISH_TIMEOUT, || pid_is_free(init)
        && pid_is_free(workload)));

    let b = agent(KataOptions {
        omit: Some("/etc/hostname"),
        ..new_sandbox("v2")
    });
    let b_state = agent_state(b.agent_pid());
    let e = client(&b).restore(restore_req(&img, false));
    let (code, msg) = status_of(&e.unwrap_err()).unwrap();
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    assert!(
        msg.contains("kata:/etc/hostname") && msg.contains("does not provide"),
        "{msg}"
    );
    assert!(
        pid_is_free(init) && pid_is_free(workload),
        "nothing restored"
    );
    assert!(procs(&agent_cgroup(&b, "v2")).is_empty());
    let shm = std::fs::read_dir(format!(
        "/proc/{}/root{}",
        b.agent_pid(),
        b.sandbox_shm().display()
    ))
    .unwrap()
    .count();
    assert_eq!(shm, 0, "the sandbox shm is untouched");
    assert_eq!(agent_state(b.agent_pid()), b_state);

    let e = client(&b).restore(restore_req(&a.scratch().join("nothing-here"), false));
    assert_eq!(
        status_of(&e.unwrap_err()).unwrap().0,
        ttrpc::Code::NOT_FOUND
    );

    let c = agent(new_sandbox("v2"));
    client(&c).restore(restore_req(&img, false)).unwrap();
    trigger(init);
    assert_passes(&c, "restored after the failed attempts");
}
