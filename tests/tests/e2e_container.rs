//! Container tests: a container built the way kata-agent builds one (`ctr_agent`), whose /dev/shm is a
//! slave of a peer group that lives only outside the container's mount namespace.
//!
//! `kata_layout_is_what_kata_agent_builds` checks the layout itself and the workload's self-check without a
//! checkpoint: the harness is right before any dump is judged with it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use dormant_tests::container::Container;

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
    let mut um = Command::new("nsenter");
    um.arg(format!("--mount=/proc/{init}/ns/mnt"))
        .args(["--", "umount", "/tmp"]);
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
        log.contains("FAIL dev-shm-plain-file") && log.contains("sh: workload exited 1"),
        "the damaged /dev/shm file must be caught:\n{log}"
    );
}
