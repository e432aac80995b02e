//! End-to-end: open files of every supported kind survive dump → kill → restore (the `wl_files` workload
//! checks them itself), and an fd the dumper cannot carry fails the dump with an error naming the process,
//! the fd and its type while the target runs on untouched. Privileged (root); needs the dormant binary.

use std::time::Duration;

use dormant_tests::harness::{self, require_root, Result, Spec, Workload};

fn files(kinds: &[&str]) -> Spec {
    Spec::workload("wl_files", env!("CARGO_BIN_EXE_wl_files")).args(kinds.iter().copied())
}

#[test]
fn dup_fds_share_offset() -> Result<()> {
    harness::dump_restore(files(&["dup"]))?;
    Ok(())
}

#[test]
fn pipe_with_buffered_data() -> Result<()> {
    harness::dump_restore(files(&["pipe"]))?;
    Ok(())
}

#[test]
fn socketpairs_with_queued_messages() -> Result<()> {
    harness::dump_restore(files(&["socketpair"]))?;
    Ok(())
}

#[test]
fn tcp_listener_accepts_after_restore() -> Result<()> {
    harness::dump_restore(files(&["tcp"]))?;
    Ok(())
}

#[test]
fn eventfd_counter() -> Result<()> {
    harness::dump_restore(files(&["eventfd"]))?;
    Ok(())
}

#[test]
fn epoll_reports_readiness() -> Result<()> {
    harness::dump_restore(files(&["epoll"]))?;
    Ok(())
}

#[test]
fn timerfd_still_ticking() -> Result<()> {
    harness::dump_restore(files(&["timerfd"]))?;
    Ok(())
}

#[test]
fn memfd_content() -> Result<()> {
    harness::dump_restore(files(&["memfd"]))?;
    Ok(())
}

#[test]
fn signalfd_mask() -> Result<()> {
    harness::dump_restore(files(&["signalfd"]))?;
    Ok(())
}

#[test]
fn flock_and_posix_locks_held() -> Result<()> {
    harness::dump_restore(files(&["locks"]))?;
    Ok(())
}

#[test]
fn every_kind_leave_running_then_restore() -> Result<()> {
    harness::leave_running_then_restore(files(&[
        "dup",
        "pipe",
        "socketpair",
        "tcp",
        "eventfd",
        "epoll",
        "timerfd",
        "memfd",
        "signalfd",
        "locks",
    ]))?;
    Ok(())
}

/// The dump must fail naming pid, fd and `what`; the target then runs on and passes its own check.
fn refused(kind: &str, what: &str) -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let mut w = Workload::start(files(&[kind]))?;
    let pid = w.pid();
    let logs = match w.dump(false) {
        Ok(()) => return Err(w.fail(format!("dump of an fd of kind {kind} succeeded"))),
        Err(e) => e.to_string(),
    };
    if !logs.contains(&format!("pid {pid} fd ")) || !logs.contains(what) {
        return Err(w.fail(format!(
            "dump error does not name pid {pid}, the fd and {what:?}: {logs}"
        )));
    }
    w.release()?;
    let st = w.wait_exit(Duration::from_secs(60))?;
    w.expect_pass(st)?;
    Ok(())
}

#[test]
fn established_tcp_refused_target_resumes() -> Result<()> {
    refused("established", "established TCP connection 127.0.0.1:")
}

#[test]
fn netlink_socket_refused_target_resumes() -> Result<()> {
    refused("netlink", "netlink socket")
}
