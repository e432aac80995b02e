//! End-to-end: open files of `/proc` (issue 13) reopened for the restored process by a real `dormant
//! dump` + `dormant restore`: `wl_procfiles` holding its own maps and status, its child's stat, its
//! thread's comm, a sysctl and its fd directory; a `/proc/PID` file of a process outside the tree refused
//! at dump; and python3 holding `/proc/self/status` read partly. Privileged (root); needs the dormant
//! binary.

use std::time::Duration;

use dormant_tests::harness::{self, require_root, Result, Spec, Workload};

fn procfiles(kinds: &[&str]) -> Spec {
    Spec::workload("wl_procfiles", env!("CARGO_BIN_EXE_wl_procfiles")).args(kinds.iter().copied())
}

#[test]
fn proc_files_reopened_for_the_restored_pid() -> Result<()> {
    let log = harness::dump_restore(procfiles(&["files"]))?;
    for check in [
        "maps",
        "status",
        "child-stat",
        "thread-comm",
        "sysctl",
        "fd-dir",
    ] {
        assert!(log.contains(&format!("ok {check}")), "{log}");
    }
    Ok(())
}

/// `/proc/PID/stat` of a process outside the dumped tree: refused naming the pid, the fd and the path;
/// that process is still running after the failed dump, and so is the target, which then reads the file
/// (still that process) and passes.
#[test]
fn proc_file_of_a_process_outside_the_tree_refused_target_resumes() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let mut w = Workload::start(procfiles(&["outside"]))?;
    let at = w.scratch().join("work/outside.pid");
    let text = std::fs::read_to_string(&at)
        .map_err(|e| w.fail(format!("reading {}: {e}", at.display())))?;
    let outside: i32 = text
        .trim()
        .parse()
        .map_err(|e| w.fail(format!("pid {text:?}: {e}")))?;
    let what = format!("pid {} fd ", w.pid());
    let path = format!("/proc/{outside}/stat");
    let why = format!("pid {outside} is not a process or thread of the dump");
    w.dump_refused(&[&what, &path, &why])?;
    match harness::proc_state(outside) {
        Some((state, _)) if state != 'Z' && state != 'X' => {}
        other => {
            return Err(w.fail(format!(
                "the outside process {outside} is not running after the failed dump: {other:?}"
            )))
        }
    }
    w.release_and_pass()
}

/// python3, which knows nothing of dormant, holds `/proc/self/status` unbuffered with 6 bytes read. After
/// the restore it finds the fd at offset 6, its link naming its own (restored) pid, and the rest of the
/// file saying `Pid:` its getpid().
#[test]
fn python_holding_proc_self_status() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let go = std::env::temp_dir().join(format!("dormant-procfiles-go-{}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let script = r#"
import os, sys, time
f = open('/proc/self/status', 'rb', buffering=0)
head = f.read(6)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
fd = f.fileno()
at = os.lseek(fd, 0, os.SEEK_CUR)
link = os.readlink('/proc/self/fd/%d' % fd)
rest = f.read().decode()
pid = [l.split()[1] for l in rest.splitlines() if l.startswith('Pid:')]
ok = head == b'Name:\t' and at == 6 and link == '/proc/%d/status' % os.getpid() and pid == [str(os.getpid())]
print('PID-OK' if ok else 'PID-BAD', os.getpid(), at, link, pid, flush=True)
sys.exit(0 if ok else 1)
"#;
    let spec = Spec::plain("python-proc-status", harness::python3()?)
        .args([
            std::ffi::OsString::from("-c"),
            script.into(),
            go.clone().into(),
        ])
        .blocked_in(&[
            libc::SYS_nanosleep,
            libc::SYS_clock_nanosleep,
            libc::SYS_select,
        ]);
    let mut w = Workload::start(spec)?;
    let pid = w.pid();
    w.dump(false)?;
    let mut r = w.restore()?;
    std::fs::write(&go, b"").map_err(|e| w.fail(format!("trigger: {e}")))?;
    let st = w.wait_restored(&mut r, Duration::from_secs(60))?;
    let log = w.log_text();
    if !st.success() || !log.contains(&format!("PID-OK {pid} 6 /proc/{pid}/status")) {
        return Err(w.fail(format!("restored python3 exited {st}: {log}")));
    }
    let _ = std::fs::remove_file(&go);
    Ok(())
}
