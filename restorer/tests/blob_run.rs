//! Runs the real restorer blob on hand-built argument blocks (no dumper needed): a child is forked with an
//! exact pid, the blob replaces its whole address space with a few mappings filled from a page file, maps
//! the vDSO at a chosen address, sets the mm layout and exe, a signal action and fs_base, then
//! rt_sigreturns into a small victim function whose registers and FPU state come from the frame. The
//! victim checks memory, registers, xmm0, fs_base and its signal mask and exits with 42 when all match.
//!
//! Privileged (clone3 set_tid, ptrace, map_files): fails with a message when not run as root.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use dormant_image::records::GpRegs;
use dormant_restorer::area::{self, BlobInput, ThreadInput};
use dormant_restorer::blob::Blob;
use dormant_restorer::launch::{self, FdMove, Launch};
use dormant_restorer::RestoreError;
use dormant_restorer_proto::{Step, VmaArg, VmaKind};
use dormant_sys::process::PrctlMmMap;
use dormant_sys::signal::{KernelSigaction as KSigAction, NSIG};
use nix::sys::wait::{waitpid, WaitStatus};

mod common;

use common::*;

struct Victim {
    launch: Launch,
    go: OwnedFd,
    data1: Vec<u8>,
    data2: Vec<u8>,
    _pages: tempfile::NamedTempFile,
}

fn build_victim(pid: u32, break_it: bool) -> Victim {
    let blob = Blob::embedded().unwrap();
    let code = victim_code();
    let (data1, data2) = (pattern(0xa1), pattern(0xb2));
    let pages = tempfile::NamedTempFile::new().unwrap();
    let mut code_page = code.clone();
    code_page.resize(PAGE as usize, 0xcc);
    pages.as_file().write_all_at(&code_page, 0).unwrap();
    pages.as_file().write_all_at(&data1, PAGE).unwrap();
    pages.as_file().write_all_at(&data2, 2 * PAGE).unwrap();

    let base = 10;
    let pages_fd = lift(pages.as_file(), base);
    let (go_read, go) = nix::unistd::pipe().unwrap();
    let go_helper = lift(&go_read, base);
    drop(go_read);
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let report_write = lift(&report_write, base);
    let exe = std::fs::File::open("/usr/bin/true").unwrap();
    let exe_fd = lift(&exe, base);

    let vma = |start: u64, pages: u64, prot: i32, kind: VmaKind, fd: RawFd, fill: bool| VmaArg {
        start,
        end: start + pages * PAGE,
        pgoff: 0,
        prot: prot as u32,
        kind: kind as u32,
        fd,
        fill: fill as u32,
        extra_flags: 0,
        madvise: 0,
        lock: 0,
        pkey: 0,
    };
    let mut vmas = vec![
        vma(
            CODE,
            1,
            libc::PROT_READ | libc::PROT_EXEC,
            VmaKind::Anon,
            -1,
            true,
        ),
        vma(
            DATA1,
            2,
            libc::PROT_READ | libc::PROT_WRITE,
            VmaKind::Anon,
            -1,
            true,
        ),
        vma(DATA2, 1, libc::PROT_READ, VmaKind::Anon, -1, true),
        vma(
            STACK,
            STACK_PAGES,
            libc::PROT_READ | libc::PROT_WRITE,
            VmaKind::AnonGrowsDown,
            -1,
            false,
        ),
    ];
    if break_it {
        vmas.push(vma(
            0x5000_0008_0000,
            1,
            libc::PROT_READ,
            VmaKind::FilePrivate,
            999,
            false,
        ));
    }
    let extents = vec![
        dormant_restorer_proto::ExtentArg {
            vaddr: CODE,
            len: PAGE,
            file_offset: 0,
        },
        dormant_restorer_proto::ExtentArg {
            vaddr: DATA1,
            len: PAGE,
            file_offset: PAGE,
        },
        dormant_restorer_proto::ExtentArg {
            vaddr: DATA2,
            len: PAGE,
            file_offset: 2 * PAGE,
        },
    ];

    let stack_top = STACK + STACK_PAGES * PAGE;
    let regs = GpRegs {
        rip: CODE,
        rdi: DATA1,
        rsi: first_word(&data1, 0),
        rdx: DATA2,
        r12: first_word(&data2, 0),
        r13: XMM0,
        rbp: SIGUSR1_BIT,
        rsp: stack_top - 128,
        fs_base: DATA1 + 8,
        cs: 0x33,
        ss: 0x2b,
        eflags: 0x202,
        ..Default::default()
    };
    let mm_map = PrctlMmMap {
        start_code: CODE,
        end_code: CODE + PAGE,
        start_data: DATA1,
        end_data: DATA1 + 2 * PAGE,
        start_brk: DATA2 + PAGE,
        brk: DATA2 + PAGE,
        start_stack: stack_top - 256,
        arg_start: DATA2,
        arg_end: DATA2 + 16,
        env_start: DATA2 + 16,
        env_end: DATA2 + 32,
        auxv: 0,
        auxv_size: 0,
        exe_fd: exe_fd.as_raw_fd() as u32,
    };
    let mut sigactions = Box::new([KSigAction::default(); NSIG]);
    sigactions[libc::SIGUSR2 as usize - 1] = KSigAction {
        handler: CODE,
        flags: 0x0400_0000, /* SA_RESTORER */
        restorer: CODE,
        mask: 0,
    };
    let input = BlobInput {
        vmas,
        extents,
        close_fds: vec![pages_fd.as_raw_fd(), exe_fd.as_raw_fd()],
        locks: Vec::new(),
        pages_fd: pages_fd.as_raw_fd(),
        report_fd: report_write.as_raw_fd(),
        inherited_rseq: inherited_rseq(),
        vdso_map_addr: Some(VDSO_AT),
        mm: Some((mm_map, vec![libc::AT_PAGESZ, PAGE, libc::AT_NULL, 0])),
        sigactions: Some(sigactions),
        itimers: None,
        timers: Vec::new(),
        siginfos: Vec::new(),
        mm_attrs: None,
        threads: vec![ThreadInput {
            tid: pid,
            regs,
            xstate: xstate_with_xmm0(XMM0),
            sigmask: SIGUSR1_BIT,
            altstack: None,
            clear_child_tid: None,
            rseq: None,
            robust_list: None,
            comm: String::new(),
            ns_tid: 0,
            creds: None,
            sched: Default::default(),
            seccomp: launch::ThreadSeccompInput::default(),
        }],
    };
    let size = area::size(&blob, &input);
    let mut occupied: Vec<(u64, u64)> = maps_of("self").iter().map(|m| (m.0, m.1)).collect();
    occupied.push((CODE, VDSO_AT + 0x10_0000));
    let at = area::find_hole(size, &occupied).unwrap();
    let area = area::build(&blob, &input, at).unwrap();
    let mut keep = vec![
        0,
        pages_fd.as_raw_fd(),
        exe_fd.as_raw_fd(),
        report_write.as_raw_fd(),
    ];
    keep.sort_unstable();
    let launch = Launch {
        finish: launch::Finish::default(),
        mnt_ns: None,
        pid: Some(pid),
        ns_pid: None,
        area,
        shares: Default::default(),
        fd_moves: vec![FdMove {
            from: go_helper.as_raw_fd(),
            to: 0,
            cloexec: false,
        }],
        keep_fds: keep,
        helper_fds: vec![pages_fd, go_helper, exe_fd],
        report_write,
        report_read,
        umask: Some(0o027),
        rlimits: Vec::new(),
        child_actions: Vec::new(),
        proc_files: Vec::new(),
        cwd: Some(c"/tmp".to_owned()),
        root: None,
        removed_cwd: None,
        prctl: Default::default(),
        expected_rip: CODE,
        other_threads: Vec::new(),
        thread_creds: vec![None],
        job_stop: None,
        sigchld_pending: false,
        session: dormant_restorer::launch::SessionPlan::NewSession,
        comm: Some(c"victim".to_owned()),
        personality: Some(libc::ADDR_NO_RANDOMIZE as u32),
    };
    Victim {
        launch,
        go,
        data1,
        data2,
        _pages: pages,
    }
}

fn restores_synthetic_task_and_sigreturns_into_it() {
    let pid = free_pid();
    let Victim {
        launch,
        go,
        data1,
        data2,
        _pages,
    } = build_victim(pid, false);
    let (area_start, area_end) = (launch.area.base, launch.area.end());
    let started = launch::start(launch).unwrap();
    assert_eq!(started.pid, pid, "restored with the exact pid");

    // The task now sits in its read(0) (it was released after rt_sigreturn): inspect it.
    let maps = maps_of(&pid.to_string());
    let find = |start: u64| {
        maps.iter()
            .find(|m| m.0 == start)
            .unwrap_or_else(|| panic!("{start:#x} in {maps:#x?}"))
    };
    assert_eq!(find(CODE).2, "r-xp");
    assert_eq!(
        (find(DATA1).1, find(DATA1).2.as_str()),
        (DATA1 + 2 * PAGE, "rw-p")
    );
    assert_eq!(find(DATA2).2, "r--p");
    assert!(
        maps.iter().all(|m| m.1 <= area_start || m.0 >= area_end),
        "blob area removed: {maps:#x?}"
    );
    let named = |n: &str| {
        maps.iter()
            .find(|m| m.3 == n)
            .unwrap_or_else(|| panic!("{n} in {maps:#x?}"))
            .0
    };
    // ARCH_MAP_VDSO_64 at the first vvar page: [vvar] 16K, [vvar_vclock] 8K, then [vdso].
    assert_eq!(named("[vvar]"), VDSO_AT);
    assert_eq!(named("[vvar_vclock]"), VDSO_AT + 4 * PAGE);
    assert_eq!(named("[vdso]"), VDSO_AT + 6 * PAGE);
    assert_eq!(
        named("[stack]"),
        STACK,
        "PR_SET_MM_MAP start_stack names the growsdown VMA [stack]"
    );
    // Nothing of the test binary is left, and the exe link was replaced through PR_SET_MM_MAP.
    let own_exe = std::fs::read_link("/proc/self/exe").unwrap();
    assert!(maps.iter().all(|m| m.3 != own_exe.to_str().unwrap()));
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        std::path::Path::new("/usr/bin/true")
    );
    assert_eq!(
        std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
        &data2[..16]
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(
        u64::from_str_radix(&field("SigBlk:"), 16).unwrap(),
        SIGUSR1_BIT
    );
    assert_eq!(
        u64::from_str_radix(&field("SigCgt:"), 16).unwrap(),
        1 << (libc::SIGUSR2 - 1)
    );
    assert_eq!(field("Umask:"), "0027");
    assert_eq!(field("Name:"), "victim");
    // /proc/PID/personality: the execution domain set before the blob ran.
    let pers = std::fs::read_to_string(format!("/proc/{pid}/personality")).unwrap();
    assert_eq!(
        u32::from_str_radix(pers.trim(), 16).unwrap(),
        libc::ADDR_NO_RANDOMIZE as u32
    );
    // SessionPlan::NewSession: the task leads its own session and group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(after_comm[2], pid.to_string(), "pgid: {stat}");
    assert_eq!(after_comm[3], pid.to_string(), "sid: {stat}");
    // Only fd 0 (the go pipe) is left in the task.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(fds, vec!["0".to_owned()]);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        std::path::Path::new("/tmp")
    );
    assert_eq!(first_word(&data1, 0) >> 32, 0xa1);

    std::fs::File::from(go).write_all(&[1]).unwrap();
    match waitpid(nix::unistd::Pid::from_raw(pid as i32), None).unwrap() {
        WaitStatus::Exited(_, 42) => {}
        other => panic!("victim did not verify itself: {other:?}"),
    }
}

fn failed_step_is_reported_and_leaves_nothing() {
    let pid = free_pid();
    let v = build_victim(pid, true);
    let err = launch::start(v.launch).unwrap_err();
    match &err {
        RestoreError::StepFailed {
            pid: p,
            step,
            errno,
            detail,
            ..
        } => {
            assert_eq!(*p, pid);
            assert_eq!(*step, Step::MapVma as u32, "{err}");
            assert_eq!(*errno, nix::errno::Errno::EBADF, "{err}");
            assert_eq!(*detail, 0x5000_0008_0000);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "no half-restored process left"
    );
}

/// A pid after `pid` that is free (for a second task of a tree).
fn free_pid_after(pid: u32) -> u32 {
    (pid + 1..32768)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap()
}

/// (state, ppid, pgid, sid) from /proc/PID/stat.
fn stat_ids(pid: u32) -> Option<(char, u32, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<String> = stat
        .rsplit(')')
        .next()?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Some((
        f[0].chars().next()?,
        f[1].parse().ok()?,
        f[2].parse().ok()?,
        f[3].parse().ok()?,
    ))
}

fn gone_within(pid: u32, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// A tree of the victim and two zombie children: each is forked by the restored victim with its exact pid,
/// in the victim's session and group, and sits there as its zombie, one with the saved exit code, one
/// killed by the saved signal (the tracer checks both statuses).
fn tree_with_a_zombie_child() {
    let pid = free_pid();
    let zpid = free_pid_after(pid);
    let zpid2 = free_pid_after(zpid);
    let v = build_victim(pid, false);
    let nodes = vec![
        launch::TreeNode {
            parent: None,
            task: launch::TreeTask::Live(Box::new(v.launch)),
            subreaper_first: false,
        },
        launch::TreeNode {
            parent: Some(0),
            task: launch::TreeTask::Zombie {
                pid: zpid,
                session: launch::SessionPlan::Inherit,
                status: 5 << 8,
                ns_pid: 0,
            },
            subreaper_first: false,
        },
        launch::TreeNode {
            parent: Some(0),
            task: launch::TreeTask::Zombie {
                pid: zpid2,
                session: launch::SessionPlan::Inherit,
                status: libc::SIGTERM as u32,
                ns_pid: 0,
            },
            subreaper_first: false,
        },
    ];
    let started = launch::start_tree(nodes).unwrap();
    assert_eq!(started.pid, pid);
    assert_eq!(stat_ids(zpid), Some(('Z', pid, pid, pid)));
    assert_eq!(stat_ids(zpid2), Some(('Z', pid, pid, pid)));
    std::fs::File::from(v.go).write_all(&[1]).unwrap();
    match waitpid(nix::unistd::Pid::from_raw(pid as i32), None).unwrap() {
        WaitStatus::Exited(_, 42) => {}
        other => panic!("victim did not verify itself: {other:?}"),
    }
    assert!(
        gone_within(zpid, 5),
        "the orphaned zombie is reaped by init"
    );
}

/// Helpers for gone leaders: a session helper (forked by the subreaper victim) forks a zombie into its
/// session and exits, so the zombie comes back to the victim; another zombie of the victim forks a group
/// helper, joins its group and reaps it. Afterwards both zombies have the victim as parent and the gone
/// leaders' ids as session and group, and neither helper pid exists.
fn tree_with_helpers_for_gone_leaders() {
    let pid = free_pid();
    let sid = free_pid_after(pid);
    let z1 = free_pid_after(sid);
    let z2 = free_pid_after(z1);
    let pgid = free_pid_after(z2);
    let v = build_victim(pid, false);
    let zombie = |zpid, session| launch::TreeTask::Zombie {
        pid: zpid,
        session,
        status: 3 << 8,
        ns_pid: 0,
    };
    let nodes = vec![
        launch::TreeNode {
            parent: None,
            task: launch::TreeTask::Live(Box::new(v.launch)),
            subreaper_first: true,
        },
        launch::TreeNode {
            parent: Some(0),
            task: launch::TreeTask::Helper {
                pid: sid,
                kind: launch::HelperKind::Session,
            },
            subreaper_first: false,
        },
        launch::TreeNode {
            parent: Some(1),
            task: zombie(z1, launch::SessionPlan::Inherit),
            subreaper_first: false,
        },
        launch::TreeNode {
            parent: Some(0),
            task: zombie(z2, launch::SessionPlan::JoinGroup(pgid)),
            subreaper_first: false,
        },
        launch::TreeNode {
            parent: Some(3),
            task: launch::TreeTask::Helper {
                pid: pgid,
                kind: launch::HelperKind::Group,
            },
            subreaper_first: false,
        },
    ];
    let started = launch::start_tree(nodes).unwrap();
    assert_eq!(started.pid, pid);
    let (_, _, _, root_sid) = stat_ids(pid).unwrap();
    assert_eq!(stat_ids(z1), Some(('Z', pid, sid, sid)));
    assert_eq!(stat_ids(z2), Some(('Z', pid, pgid, root_sid)));
    assert!(gone_within(sid, 5) && gone_within(pgid, 5), "helpers left");
    std::fs::File::from(v.go).write_all(&[1]).unwrap();
    match waitpid(nix::unistd::Pid::from_raw(pid as i32), None).unwrap() {
        WaitStatus::Exited(_, 42) => {}
        other => panic!("victim did not verify itself: {other:?}"),
    }
    assert!(
        gone_within(z1, 5) && gone_within(z2, 5),
        "the orphaned zombies are reaped by init"
    );
}

/// A zombie that cannot end the way the image says (SIGCHLD's default action is to ignore it, so it exits
/// 0 instead) fails the restore, and every process of the tree is gone afterwards.
fn tree_failure_kills_every_restored_process() {
    let pid = free_pid();
    let zpid = free_pid_after(pid);
    let v = build_victim(pid, false);
    let nodes = vec![
        launch::TreeNode {
            parent: None,
            task: launch::TreeTask::Live(Box::new(v.launch)),
            subreaper_first: false,
        },
        launch::TreeNode {
            parent: Some(0),
            task: launch::TreeTask::Zombie {
                pid: zpid,
                session: launch::SessionPlan::Inherit,
                status: libc::SIGCHLD as u32,
                ns_pid: 0,
            },
            subreaper_first: false,
        },
    ];
    let err = launch::start_tree(nodes).unwrap_err();
    assert!(
        err.to_string().contains("zombie ended with wait status"),
        "{err}"
    );
    assert!(gone_within(pid, 5), "restored root {pid} left behind");
    assert!(gone_within(zpid, 5), "zombie {zpid} left behind");
}

/// The restorer's own signal mask and subreaper flag as they were: the restore guard and the fork around it
/// change both only for their time. The restored root is its only child left.
fn restore_leaves_the_restorer_as_it_was() {
    // SAFETY: sigset_t is plain data; sigprocmask only reads the current mask into it.
    let mask = || unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
        (1..=64)
            .filter(|&s| libc::sigismember(&set, s) == 1)
            .collect::<Vec<i32>>()
    };
    let subreaper = || {
        let mut v: libc::c_int = -1;
        // SAFETY: writes one int.
        unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut v as *mut libc::c_int) };
        v
    };
    let (mask_before, subreaper_before) = (mask(), subreaper());
    let pid = free_pid();
    let v = build_victim(pid, false);
    let go = v.go;
    let started = launch::start(v.launch).unwrap();
    assert_eq!(mask(), mask_before, "signal mask after the restore");
    assert_eq!(
        subreaper(),
        subreaper_before,
        "subreaper flag after the restore"
    );
    let children =
        std::fs::read_to_string(format!("/proc/self/task/{}/children", std::process::id()))
            .unwrap();
    assert_eq!(
        children.split_whitespace().collect::<Vec<_>>(),
        [pid.to_string()]
    );
    nix::unistd::write(&go, &[1]).unwrap();
    assert!(matches!(
        waitpid(nix::unistd::Pid::from_raw(started.pid as i32), None).unwrap(),
        WaitStatus::Exited(_, 42)
    ));
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "blob_run: these tests need root (clone3 set_tid, ptrace, map_files); run them as root"
        );
        std::process::exit(1);
    }
    let tests: [(&str, fn()); 6] = [
        ("tree_with_a_zombie_child", tree_with_a_zombie_child),
        (
            "tree_with_helpers_for_gone_leaders",
            tree_with_helpers_for_gone_leaders,
        ),
        (
            "tree_failure_kills_every_restored_process",
            tree_failure_kills_every_restored_process,
        ),
        (
            "restores_synthetic_task_and_sigreturns_into_it",
            restores_synthetic_task_and_sigreturns_into_it,
        ),
        (
            "failed_step_is_reported_and_leaves_nothing",
            failed_step_is_reported_and_leaves_nothing,
        ),
        (
            "restore_leaves_the_restorer_as_it_was",
            restore_leaves_the_restorer_as_it_was,
        ),
    ];
    for (name, test) in tests {
        eprint!("test {name} ... ");
        test();
        eprintln!("ok");
    }
}
