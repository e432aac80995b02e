//! Failure paths of issue 3, through the CLI on real processes: an unwritable image directory, a pid that
//! is taken at restore, a corrupted image, and a file behind a mapping that changed. Each must give a clear
//! error, leave the target running untouched (dump) or leave no half-restored process behind (restore).
//! Privileged: these tests ptrace, mount and clone3 with set_tid, and must run as root.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::*;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `dormant dump` (killing the target) while this test, the target's parent, reaps it: dump returns only
/// once the pid is free, which needs the parent to reap concurrently.
fn dump_and_reap(target: &mut Child, img: &Path) -> Output {
    let dump = Command::new(DORMANT)
        .args([
            "dump",
            "-t",
            &target.id().to_string(),
            "-D",
            img.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dormant dump");
    let st = target.wait().unwrap();
    let out = dump.wait_with_output().unwrap();
    if out.status.success() {
        assert!(
            !st.success(),
            "the dumped target should have been killed, it ended with {st}"
        );
    }
    out
}

fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
}

/// The target runs on untouched: not traced, not stopped, same signal mask.
fn assert_untouched(pid: u32, sigblk_before: &str) {
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        status_field(pid, "TracerPid:").as_deref(),
        Some("0"),
        "pid {pid} is still traced"
    );
    let state = status_field(pid, "State:").unwrap_or_default();
    assert!(
        state.starts_with('S'),
        "pid {pid} should be sleeping, is {state}"
    );
    assert_eq!(
        status_field(pid, "SigBlk:").as_deref(),
        Some(sigblk_before),
        "pid {pid}: signal mask changed"
    );
}

fn wait_pid_free(pid: u32) {
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pid {pid} still exists"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unwritable_image_dir_fails_and_target_runs_on() {
    require_root();
    let tmp = TempDir::new("ro");
    let ro = tmp.0.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    // Root ignores permission bits: a read-only file system is what really refuses writes.
    nix::mount::mount(
        Some("tmpfs"),
        &ro,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .expect("mount a read-only tmpfs");
    let mut sleep = spawn(Command::new("/usr/bin/sleep").arg("1000"));
    let pid = sleep.id();
    std::thread::sleep(Duration::from_millis(100));
    let sigblk = status_field(pid, "SigBlk:").unwrap();
    let o = dormant(&[
        "dump",
        "-t",
        &pid.to_string(),
        "-D",
        ro.join("img").to_str().unwrap(),
    ]);
    let _ = nix::mount::umount(&ro);
    assert!(
        !o.status.success(),
        "dump into a read-only directory succeeded"
    );
    let msg = text(&o);
    assert!(
        msg.contains(&pid.to_string()) && msg.contains("Read-only file system"),
        "unclear error:\n{msg}"
    );
    assert_untouched(pid, &sigblk);
    sleep.kill().unwrap();
    sleep.wait().unwrap();
}

#[test]
fn restore_refuses_a_taken_pid_and_leaves_nothing() {
    require_root();
    let tmp = TempDir::new("taken");
    let img = tmp.0.join("img");
    let mut sleep = spawn(Command::new("/usr/bin/sleep").arg("1000"));
    let pid = sleep.id();
    // -R: the original keeps its pid, so the restore must find it taken.
    let o = dormant(&[
        "dump",
        "-R",
        "-t",
        &pid.to_string(),
        "-D",
        img.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "dump failed:\n{}", text(&o));
    let children_before = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        std::process::id(),
        std::process::id()
    ))
    .unwrap();
    let o = dormant(&["restore", "-D", img.to_str().unwrap()]);
    assert!(!o.status.success(), "restore over a live pid succeeded");
    let msg = text(&o);
    assert!(
        msg.contains(&pid.to_string()) && msg.contains("taken"),
        "unclear error:\n{msg}"
    );
    // The original is the one still there, untouched.
    assert_eq!(
        status_field(pid, "PPid:").unwrap(),
        std::process::id().to_string()
    );
    assert_eq!(status_field(pid, "TracerPid:").as_deref(), Some("0"));
    let children_after = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        std::process::id(),
        std::process::id()
    ))
    .unwrap();
    assert_eq!(children_before, children_after);
    sleep.kill().unwrap();
    sleep.wait().unwrap();
}

#[test]
fn corrupted_image_is_refused_before_anything_runs() {
    require_root();
    let tmp = TempDir::new("corrupt");
    let img = tmp.0.join("img");
    let mut sleep = spawn(Command::new("/usr/bin/sleep").arg("1000"));
    let pid = sleep.id();
    let o = dump_and_reap(&mut sleep, &img);
    assert!(o.status.success(), "dump failed:\n{}", text(&o));
    wait_pid_free(pid);
    // Flip one byte of the page data.
    let pages = img.join(format!("pages-task-{pid}.img"));
    let mut bytes = std::fs::read(&pages).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&pages, bytes).unwrap();
    let o = dormant(&["restore", "-D", img.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "restore of a corrupted image succeeded"
    );
    let msg = text(&o);
    assert!(
        msg.contains(&format!("pages-task-{pid}.img")),
        "error must name the file:\n{msg}"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "a half-restored pid {pid} was left behind"
    );
}

const MAPPER: &str = r#"
import mmap, os, sys, time
path = sys.argv[1]
with open(path, "r+b") as f:
    m = mmap.mmap(f.fileno(), 8192, flags=mmap.MAP_PRIVATE)
m[0:5] = b"dirty"
print("READY", flush=True)
time.sleep(1000)
"#;

#[test]
fn changed_file_behind_a_mapping_is_refused() {
    require_root();
    let tmp = TempDir::new("mapping");
    let data = tmp.0.join("data.bin");
    std::fs::write(&data, vec![7u8; 8192]).unwrap();
    let script = tmp.0.join("mapper.py");
    std::fs::write(&script, MAPPER).unwrap();
    let log = tmp.0.join("log");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(&script).arg(&data);
    let mut py = spawn(&mut cmd);
    let pid = py.id();
    // spawn() sends stdout to /dev/null; wait for the mapping to appear instead of READY.
    let start = Instant::now();
    loop {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        if maps.contains(data.to_str().unwrap()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "python never mapped the file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let img = tmp.0.join("img");
    let o = dump_and_reap(&mut py, &img);
    assert!(o.status.success(), "dump failed:\n{}", text(&o));
    wait_pid_free(pid);
    // Change the file behind the mapping (its size and mtime).
    std::fs::write(&data, vec![9u8; 12288]).unwrap();
    let o = dormant(&[
        "restore",
        "-D",
        img.to_str().unwrap(),
        "-o",
        log.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "restore over a changed file succeeded");
    let msg = text(&o);
    assert!(
        msg.contains(data.to_str().unwrap()) && msg.contains("size"),
        "error must name the file and what changed:\n{msg}"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "a half-restored pid {pid} was left behind"
    );
}

#[test]
fn sysfs_fd_is_refused_and_target_runs_on() {
    require_root();
    let tmp = TempDir::new("sysfd");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args([
        "-c",
        "import time; f = open('/sys/devices/system/cpu/online'); time.sleep(1000)",
    ]);
    let mut py = spawn(&mut cmd);
    let pid = py.id();
    let start = Instant::now();
    while !std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() > 3)
        .unwrap_or(false)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "python never opened the file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let sigblk = status_field(pid, "SigBlk:").unwrap();
    let img = tmp.0.join("img");
    let o = dormant(&["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "a /sys file was accepted as a regular file"
    );
    let msg = text(&o);
    assert!(
        msg.contains("fd 3") && msg.contains("sysfs file"),
        "error must name the fd and sysfs:\n{msg}"
    );
    assert!(!img.exists(), "a failed dump left an image behind");
    assert_untouched(pid, &sigblk);
    py.kill().unwrap();
    py.wait().unwrap();
}

/// `sleep 1000` run as uid 65534.
fn spawn_nobody_sleep() -> Child {
    let mut cmd = Command::new("/usr/bin/sleep");
    cmd.arg("1000");
    // SAFETY: setgroups/setgid/setuid in the child before exec; async-signal-safe syscalls only.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn(&mut cmd)
}

/// `dormant dump -t PID -D IMG` run as uid 65534 with no capabilities (setpriv drops them with the uid).
fn dump_as_nobody(pid: u32, img: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", DORMANT])
        .args(["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()])
        .output()
        .expect("run setpriv dormant dump")
}

/// A dump by an unprivileged user fails before the target is touched and names the capability it lacks:
/// CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN) for the target's own process (map_files), CAP_SYS_PTRACE for
/// another user's. On 1e0e57f the first failed halfway with `cannot stat mapping ... map_files: Operation
/// not permitted`, the second with a bare `PTRACE_SEIZE failed: EPERM`.
#[test]
fn unprivileged_dump_names_the_missing_capability() {
    use std::os::unix::fs::PermissionsExt;
    require_root();
    let tmp = TempDir::new("unpriv");
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let img = tmp.0.join("img");

    let mut own = spawn_nobody_sleep();
    let pid = own.id();
    std::thread::sleep(Duration::from_millis(100));
    let sigblk = status_field(pid, "SigBlk:").unwrap();
    let o = dump_as_nobody(pid, &img);
    let msg = text(&o);
    assert!(
        !o.status.success(),
        "an unprivileged dump succeeded:\n{msg}"
    );
    assert!(
        msg.contains(&format!("pid {pid}"))
            && msg.contains("CAP_CHECKPOINT_RESTORE")
            && msg.contains("CAP_SYS_ADMIN")
            && msg.contains("map_files"),
        "the error does not name the missing capability:\n{msg}"
    );
    assert_untouched(pid, &sigblk);
    assert!(!img.exists(), "a refused dump left an image");
    own.kill().unwrap();
    own.wait().unwrap();

    let mut roots = spawn_sleep();
    let pid = roots.id();
    std::thread::sleep(Duration::from_millis(100));
    let sigblk = status_field(pid, "SigBlk:").unwrap();
    let o = dump_as_nobody(pid, &img);
    let msg = text(&o);
    assert!(
        !o.status.success(),
        "an unprivileged dump of root's process succeeded:\n{msg}"
    );
    assert!(
        msg.contains(&format!("pid {pid}")) && msg.contains("CAP_SYS_PTRACE"),
        "the error does not name CAP_SYS_PTRACE:\n{msg}"
    );
    assert_untouched(pid, &sigblk);
    roots.kill().unwrap();
    roots.wait().unwrap();
}
