//! "If a dump succeeds, its restore succeeds": every refusal the restore makes over an image's facts
//! ([`dormant_restorable::RefusalKind`]) is made by the dump first, on the live process, before anything is
//! injected, with the same message, and the target runs on. Each state is set up with plain tools
//! (`unshare`, `setpriv`, a removed directory), so the states are the ones a user meets.
//!
//! For each kind the test also dumps the process with the check switched off (the image a dump of main
//! 1e0e57f wrote) and shows the restore's check over that image, and `dormant restore` itself, refuse it
//! with the dump's own message.

#![allow(clippy::unwrap_used)] // tests may unwrap (project rule)

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dormant_engine::{Dump, DumpError, Pid};
use dormant_image::Image;
use dormant_restorable::{facts_from_image, RefusalKind, Runner};

/// The release `dormant` binary (`./scripts/test.sh` builds it before the tests).
fn dormant_bin() -> std::path::PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/dormant");
    assert!(
        bin.exists(),
        "{} is missing: build it with cargo build --release --workspace --bins",
        bin.display()
    );
    bin
}

/// A process tree in some state, killed (its whole process group) on drop.
struct Scenario {
    child: Child,
    /// The root of the tree to dump.
    pid: u32,
    _dir: tempfile::TempDir,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        // SAFETY: kill takes a process group id and a signal; no memory is involved.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect()
}

/// Every descendant of `pid`, breadth first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        for c in children(p) {
            out.push(c);
            next.push(c);
        }
    }
    out
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the last exec settle (the comm changes at exec, the mappings right after).
    std::thread::sleep(Duration::from_millis(100));
}

/// Runs `argv` in a process group of its own, in `cwd`, with fds 0-2 on /dev/null and no other (the test
/// runner's pipes would be pipes to a process outside the dump).
fn spawn(argv: &[&str], cwd: &Path) -> Child {
    spawn_filtered(argv, cwd, None)
}

/// Refusals a dump here cannot be made to reach, and why.
///
/// `SeccompPrivilege`: a dormant without CAP_SYS_ADMIN cannot seize with PTRACE_O_SUSPEND_SECCOMP, so
/// it fails before any check; the refusal guards a restore run with fewer privileges than its dump.
const NOT_PROVOKED: &[RefusalKind] = &[RefusalKind::SeccompPrivilege];

const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;

/// Sets this process's `oom_score_adj` (process-wide; raising it and lowering it back to 0 need no
/// privilege).
fn set_own_oom_score_adj(v: i32) {
    std::fs::write("/proc/self/oom_score_adj", v.to_string()).unwrap();
}

/// Like [`spawn`], with (when `action` is given) a seccomp filter that returns `action` for getpriority
/// and allows the rest, installed before the exec.
fn spawn_filtered(argv: &[&str], cwd: &Path, action: Option<u32>) -> Child {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: close_range and seccomp are async-signal-safe; the program and filter live on this
    // child's stack for the duration of the call, and touch only this child.
    unsafe {
        cmd.pre_exec(move || {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let Some(action) = action else {
                return Ok(());
            };
            let code = |c: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code: c, jt, jf, k };
            let insns = [
                code((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0, 0, 0),
                code(
                    (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    0,
                    1,
                    libc::SYS_getpriority as u32,
                ),
                code((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, action),
                code((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, 0x7fff_0000),
            ];
            let prog = libc::sock_fprog {
                len: insns.len() as u16,
                filter: insns.as_ptr() as *mut libc::sock_filter,
            };
            // SECCOMP_SET_MODE_FILTER (1) with SECCOMP_FILTER_FLAG_NEW_LISTENER (8) for a notifying
            // filter (the listener is close-on-exec).
            let flags = if action == SECCOMP_RET_USER_NOTIF {
                8u32
            } else {
                0
            };
            if libc::syscall(
                libc::SYS_seccomp,
                1u32,
                flags,
                &prog as *const libc::sock_fprog,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    cmd.spawn().unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// A process (tree) in the state that `kind` refuses.
fn scenario(kind: RefusalKind) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let sleep = ["sleep", "1000"];
    let (child, pid) = match kind {
        RefusalKind::Credentials => {
            // A root process whose bounding set holds CAP_NET_ADMIN, dumped and restored by a dormant
            // that lacks it (see `as_runner`): dormant cannot hand out a capability it does not hold.
            let c = spawn(&sleep, dir.path());
            let pid = c.id();
            wait_until("sleep", || comm(pid) == "sleep");
            (c, pid)
        }
        RefusalKind::DeletedDirectory => {
            // A removed root with the working directory outside it (chroot leaves the cwd where it was).
            let gone = dir.path().join("gone");
            std::fs::create_dir(&gone).unwrap();
            let c = spawn(
                &[
                    "perl",
                    "-e",
                    "chroot('gone') or die; $0 = 'chrooted'; sleep 1000",
                ],
                dir.path(),
            );
            let pid = c.id();
            wait_until("perl to chroot", || {
                std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r.ends_with("gone"))
            });
            std::fs::remove_dir(&gone).unwrap();
            (c, pid)
        }
        RefusalKind::NotCarried => {
            let c = spawn(&[&["unshare", "--uts"], &sleep[..]].concat(), dir.path());
            let pid = c.id();
            wait_until("unshare to exec sleep", || comm(pid) == "sleep");
            (c, pid)
        }
        RefusalKind::MountWithoutPid => {
            let c = spawn(&[&["unshare", "--mount"], &sleep[..]].concat(), dir.path());
            let pid = c.id();
            wait_until("unshare to exec sleep", || comm(pid) == "sleep");
            (c, pid)
        }
        RefusalKind::Nested => {
            // A container (own mount and pid namespaces) whose child made a uts namespace of its own.
            let c = spawn(
                &[
                    "unshare",
                    "--mount",
                    "--pid",
                    "--fork",
                    "--kill-child",
                    "--mount-proc",
                    "sh",
                    "-c",
                    "unshare --uts sleep 1000 & wait",
                ],
                dir.path(),
            );
            let top = c.id();
            wait_until("the container's sleep", || {
                descendants(top).iter().any(|&p| comm(p) == "sleep")
            });
            let root = children(top)[0];
            (c, root)
        }
        RefusalKind::SeccompNotify => {
            // A filter that hands getpriority to a supervisor (its listener is gone with the exec; the
            // filter stays): no restore can give the filter a supervisor back.
            let c = spawn_filtered(&sleep, dir.path(), Some(SECCOMP_RET_USER_NOTIF));
            let pid = c.id();
            wait_until("sleep", || comm(pid) == "sleep");
            (c, pid)
        }
        RefusalKind::SchedDeadline => {
            let c = spawn(
                &[
                    &[
                        "chrt",
                        "--deadline",
                        "-T",
                        "1000000",
                        "-D",
                        "10000000",
                        "-P",
                        "10000000",
                        "0",
                    ],
                    &sleep[..],
                ]
                .concat(),
                dir.path(),
            );
            let pid = c.id();
            wait_until("chrt to exec sleep", || comm(pid) == "sleep");
            (c, pid)
        }
        RefusalKind::OomScoreAdj => {
            // A target at 0 under a dormant at 500 (raising needs no privilege; lowering the target
            // would need CAP_SYS_RESOURCE, which this machine lacks too): see `set_own_oom_score_adj`.
            let c = spawn(&sleep, dir.path());
            let pid = c.id();
            wait_until("sleep", || comm(pid) == "sleep");
            set_own_oom_score_adj(500);
            (c, pid)
        }
        RefusalKind::SeccompPrivilege => {
            unreachable!("SeccompPrivilege is not walked: see NOT_PROVOKED")
        }
        RefusalKind::PidNesting => {
            // A tree in dormant's pid namespace with a child that is the init of a pid namespace of its own.
            let c = spawn(
                &[
                    "sh",
                    "-c",
                    "unshare --pid --fork --kill-child sleep 1000 & wait",
                ],
                dir.path(),
            );
            let pid = c.id();
            wait_until("the nested sleep", || {
                descendants(pid).iter().any(|&p| comm(p) == "sleep")
            });
            (c, pid)
        }
    };
    Scenario {
        child,
        pid,
        _dir: dir,
    }
}

fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().to_string())
    })
}

/// The capability the runner of the `Credentials` case lacks: CAP_NET_ADMIN.
const DROPPED_BY_RUNNER: u64 = 12;

/// Drops `cap` from the calling thread's bounding, permitted and effective sets (as `setpriv
/// --bounding-set=-CAP` leaves the program it runs as root).
fn drop_own_capability(cap: u64) {
    // SAFETY: PR_CAPBSET_DROP takes a capability number and changes this thread only.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    assert_eq!(
        r, 0,
        "dropping capability {cap} from the runner's bounding set"
    );
    let mut header = [0x2008_0522u32, 0]; // _LINUX_CAPABILITY_VERSION_3, this thread
    let mut data = [0u32; 6]; // two {effective, permitted, inheritable}
                              // SAFETY: capget/capset read and write the two local arrays (the v3 layout); this thread only.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()),
            0
        );
        let (word, bit) = ((cap / 32) as usize * 3, 1u32 << (cap % 32));
        data[word] &= !bit;
        data[word + 1] &= !bit;
        assert_eq!(
            libc::syscall(libc::SYS_capset, header.as_mut_ptr(), data.as_ptr()),
            0
        );
    }
}

/// Runs `f` as the runner for `kind`: in a thread of its own that, for `Credentials`, first drops
/// CAP_NET_ADMIN (credentials are per thread, and the check reads the calling thread's), so it lacks
/// what the target holds.
fn as_runner<T: Send>(kind: RefusalKind, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            if kind == RefusalKind::Credentials {
                drop_own_capability(DROPPED_BY_RUNNER);
            }
            f()
        })
        .join()
        .unwrap()
    })
}

/// Every process of the tree still runs as before: sleeping, not stopped, not traced.
fn assert_runs_on(pids: &[u32]) {
    std::thread::sleep(Duration::from_millis(100));
    for &pid in pids {
        let state = status_field(pid, "State").unwrap_or_default();
        assert!(
            state.starts_with('S'),
            "pid {pid} is {state:?} after the refused dump"
        );
        assert_eq!(
            status_field(pid, "TracerPid").as_deref(),
            Some("0"),
            "pid {pid} is still traced"
        );
    }
}

/// The mappings of a process (to show the dump added none and removed none).
fn maps(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap()
}

#[test]
fn every_refusal_of_the_restore_is_made_by_the_dump_first() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the refusal tests need root (they set up namespaces and dump other users' processes)"
    );
    for kind in RefusalKind::ALL {
        if NOT_PROVOKED.contains(&kind) {
            continue;
        }
        let s = scenario(kind);
        let tree: Vec<u32> = std::iter::once(s.pid).chain(descendants(s.pid)).collect();
        let before: Vec<String> = tree.iter().map(|&p| maps(p)).collect();
        let out = tempfile::tempdir().unwrap();
        let img = out.path().join("img");
        let err = as_runner(kind, || {
            Dump::builder(Pid(s.pid))
                .images_dir(&img)
                .leave_running(true)
                .build()
                .unwrap()
                .run()
                .expect_err(&format!("the dump of a {kind:?} state succeeded"))
        });
        let DumpError::Unrestorable(refusal) = &err else {
            panic!("{kind:?}: the dump failed otherwise: {err}");
        };
        assert_eq!(refusal.kind(), kind, "{err}");
        assert!(!img.exists(), "{kind:?}: a refused dump left an image");
        assert_runs_on(&tree);
        let after: Vec<String> = tree.iter().map(|&p| maps(p)).collect();
        assert_eq!(
            before, after,
            "{kind:?}: the refused dump changed the mappings"
        );

        // The image a dump without the check writes: the restore's check refuses it, word for word.
        Dump::builder(Pid(s.pid))
            .images_dir(&img)
            .leave_running(true)
            .skip_restore_check()
            .build()
            .unwrap()
            .run()
            .unwrap_or_else(|e| panic!("{kind:?}: the unchecked dump failed: {e}"));
        let facts = facts_from_image(&Image::load(&img).unwrap());
        let at_restore = as_runner(kind, || {
            dormant_restorable::check(&facts, &Runner::current())
                .expect_err(&format!("{kind:?}: the restore's check accepts the image"))
        });
        assert_eq!(at_restore.to_string(), refusal.to_string());
        // And `dormant restore` itself refuses it so, before forking anything.
        let mut restore = if kind == RefusalKind::Credentials {
            let mut c = Command::new("setpriv");
            c.arg("--bounding-set=-net_admin").arg(dormant_bin());
            c
        } else {
            Command::new(dormant_bin())
        };
        let out = restore.args(["restore", "-D"]).arg(&img).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(&refusal.to_string()),
            "{kind:?}: dormant restore did not refuse with the dump's message:\n{stderr}"
        );
        eprintln!("{kind:?}: {refusal}");
        if kind == RefusalKind::OomScoreAdj {
            set_own_oom_score_adj(0);
        }
    }
}

/// A namespace unshared for children not forked yet is carried by no image, so the dump alone refuses it.
#[test]
fn namespace_unshared_for_children_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = spawn(&["unshare", "--pid", "sleep", "1000"], dir.path());
    let pid = c.id();
    let s = Scenario {
        child: c,
        pid,
        _dir: dir,
    };
    wait_until("unshare to exec sleep", || comm(pid) == "sleep");
    let out = tempfile::tempdir().unwrap();
    let err = Dump::builder(Pid(s.pid))
        .images_dir(out.path().join("img"))
        .leave_running(true)
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    assert!(
        matches!(err, DumpError::ForChildren { pid: p, kind: "pid" } if p == pid),
        "{err}"
    );
    assert_runs_on(&[pid]);
}

/// A container (own mount and pid namespaces) whose child made a mount namespace of its own: only a plain
/// tree's nested mount namespaces are carried, so the dump refuses it naming the namespace kind.
#[test]
fn nested_mount_namespace_in_a_container_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = spawn(
        &[
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            "unshare --mount sleep 1000 & wait",
        ],
        dir.path(),
    );
    let top = c.id();
    wait_until("the container's sleep", || {
        descendants(top).iter().any(|&p| comm(p) == "sleep")
    });
    let root = children(top)[0];
    let tree: Vec<u32> = std::iter::once(root).chain(descendants(root)).collect();
    let s = Scenario {
        child: c,
        pid: root,
        _dir: dir,
    };
    let out = tempfile::tempdir().unwrap();
    let err = Dump::builder(Pid(s.pid))
        .images_dir(out.path().join("img"))
        .leave_running(true)
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    let DumpError::Unrestorable(refusal) = &err else {
        panic!("the dump failed otherwise: {err}");
    };
    assert_eq!(refusal.kind(), RefusalKind::Nested, "{err}");
    assert!(err.to_string().contains("another mnt namespace"), "{err}");
    assert_runs_on(&tree);
}

/// A plain tree whose child bound a directory in its own mount namespace: a bind is not a mount the
/// nested namespace's restore rebuilds, so the dump refuses it, naming the mount.
#[test]
fn nested_mount_namespace_with_a_bind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    let c = spawn(
        &[
            "sh",
            "-c",
            "unshare --mount sh -c 'mount --make-rprivate / && mount --bind a b && exec sleep 1000' & wait",
        ],
        dir.path(),
    );
    let pid = c.id();
    wait_until("the nested sleep", || {
        descendants(pid).iter().any(|&p| comm(p) == "sleep")
    });
    let tree: Vec<u32> = std::iter::once(pid).chain(descendants(pid)).collect();
    let s = Scenario {
        child: c,
        pid,
        _dir: dir,
    };
    let out = tempfile::tempdir().unwrap();
    let err = Dump::builder(Pid(s.pid))
        .images_dir(out.path().join("img"))
        .leave_running(true)
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, DumpError::Mounts { .. })
            && text.contains("nested mount namespace")
            && text.contains("/b"),
        "{text}"
    );
    assert!(
        !out.path().join("img").exists(),
        "a refused dump left an image"
    );
    assert_runs_on(&tree);
}
