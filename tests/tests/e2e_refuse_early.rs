//! A restore refuses before it forks anything or changes a namespace: a container image whose pids are
//! taken is refused by `dormant restore` before it enters the container's namespaces. The restore runs
//! under a small syscall tracer that records every clone, fork, unshare and setns it makes. Privileged.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use dormant_tests::container::Container;
use dormant_tests::harness::{self, dormant_bin, run_watched, tree_ids, wait_until};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// A process holding `pid` (clone3 with `set_tid`), until killed.
fn hold_pid(pid: i32) -> Pid {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let tid = [pid];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tid.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM is a fork; the child only pauses until it is killed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        loop {
            // SAFETY: waits for a signal; the child is killed by the test.
            unsafe { libc::pause() };
        }
    }
    assert!(
        ret > 0,
        "clone3 with pid {pid}: {}",
        std::io::Error::last_os_error()
    );
    Pid::from_raw(ret as i32)
}

#[test]
fn container_restore_with_a_taken_pid_is_refused_before_entering_it() {
    harness::require_root().unwrap();
    let c = Container::start(
        Path::new(env!("CARGO_BIN_EXE_ctr_agent")),
        Path::new(env!("CARGO_BIN_EXE_wl_container")),
        &[],
    )
    .unwrap();
    let init = c.init_pid();
    let pids: Vec<i32> = tree_ids(init).unwrap().iter().map(|t| t.pid).collect();
    let img = c.scratch().join("img");
    let mut dump = c.in_agent_ns(dormant_bin().unwrap());
    dump.args(["dump", "-t", &init.to_string(), "-D"]).arg(&img);
    let out = dump.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(Duration::from_secs(30), || pids
        .iter()
        .all(|&p| harness::pid_is_free(p))));
    let workload = *pids.iter().find(|&&p| p != init).unwrap();
    let holder = hold_pid(workload);
    let log = c.scratch().join("restore.log");
    let mut restore = c.in_agent_ns(dormant_bin().unwrap());
    restore
        .args(["restore", "-d", "-D"])
        .arg(&img)
        .arg("-o")
        .arg(&log);
    let (status, made) = run_watched(restore, &dormant_bin().unwrap());
    let _ = kill(holder, Signal::SIGKILL);
    let _ = waitpid(holder, None);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_ne!(status, 0, "the restore must be refused:\n{text}");
    assert!(
        text.contains(&format!("pid {workload} is already taken")),
        "the refusal names the taken pid:\n{text}"
    );
    assert!(
        made.is_empty(),
        "dormant restore made {made:?} before refusing:\n{text}"
    );
    // The image is good: restored once the pid is free, the container passes.
    let mut again = c.in_agent_ns(dormant_bin().unwrap());
    again.args(["restore", "-d", "-D"]).arg(&img);
    let out = again.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.trigger().unwrap();
    let verdict = c.wait_verdict().unwrap();
    assert!(verdict.contains("PASS wl_container"), "{verdict}");
}
