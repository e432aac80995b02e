//! The child side of a tree restore: what each forked process runs between its clone3 and its blob
//! (allocation-free, see [`super`]): take its session and group, fork its own children one at a time with
//! their pids, then either end (a helper, a zombie) or put its task's state in place, kind by kind
//! ([`crate::task`]), and jump into the blob.

use std::ffi::CStr;
use std::os::fd::RawFd;

use dormant_restorer_proto::{Report, Step, REPORT_SIZE};
use nix::errno::Errno;

use super::fork::clone_exact;
use super::{FdMove, HelperKind, Launch, RlimitSet, SessionPlan, Shares, TreeNode, TreeTask};
use crate::task::{self, ChildFailed, ProcessCtl};

/// Data the child reads after the fork; prepared before it, so the child allocates nothing.
pub(super) struct ChildPlan<'a> {
    /// The exact pid (0: let the kernel choose, single-task tests only).
    pub(super) pid: u32,
    /// The pid inside the tree's nested pid namespace, 0 when there is none.
    pub(super) ns_pid: u32,
    /// `CLONE_FILES`/`CLONE_FS` when it shares its parent's fd table or fs struct ([`Shares`]).
    pub(super) clone_flags: u64,
    /// Root only: wait for one byte here (the tracer has seized us); -1 for others.
    sync_read: RawFd,
    /// Root only: the write end of `sync_read`, closed first, so the read sees the end of file when the
    /// restorer dies before it seized us; -1 for others.
    sync_write: RawFd,
    /// Non-root: write one byte here once this task's session, group and subtree exist; -1 for the root.
    forked_write: RawFd,
    /// Read end of `forked_write` (read by the parent after forking this task).
    forked_read: RawFd,
    /// Indices (into the plan array) of the children this task forks, in order.
    children: &'a [usize],
    /// Group helpers it forks before it joins their group (`SessionPlan::JoinGroup`) and reaps after.
    early: &'a [usize],
    /// `PR_SET_CHILD_SUBREAPER` before forking (a session helper's children come back to it).
    subreaper_first: bool,
    session: SessionPlan,
    /// Where its report goes (-1 for a helper or a zombie, which have none).
    report_write: RawFd,
    /// What it becomes once its subtree exists.
    end: End<'a>,
}

/// What a forked process does once its session, group and subtree exist.
enum End<'a> {
    /// A helper: exit 0 (its parent reaps it).
    Helper,
    /// A zombie: exit with this wait status.
    Zombie(u32),
    /// A live task: its state, then the blob.
    Task(TaskPlan<'a>),
}

/// A live task's state the child puts in place, kind by kind, and where its blob is.
struct TaskPlan<'a> {
    shares: Shares,
    /// The nested mount namespace to enter first (-1: none).
    mnt_ns: RawFd,
    moves: &'a [FdMove],
    actions: &'a [crate::files::ChildAction],
    keep: &'a [RawFd],
    umask: Option<u32>,
    rlimits: &'a [RlimitSet],
    cwd: Option<&'a CStr>,
    root: Option<&'a CStr>,
    removed_cwd: Option<crate::task::RemovedCwd>,
    prctl: ProcessCtl,
    comm: Option<&'a CStr>,
    personality: Option<u32>,
    entry: u64,
    args: u64,
    stack_top: u64,
}

/// Where a node is in the tree: its children, the group helpers it forks first, its pipes.
pub(super) struct Links<'a> {
    pub(super) children: &'a [usize],
    pub(super) early: &'a [usize],
    /// (read, write) of the pipe it reports its subtree on; -1s for the root.
    pub(super) forked: (RawFd, RawFd),
    /// The root's wait for the tracer and its write end; -1 for others.
    pub(super) sync: (RawFd, RawFd),
}

impl<'a> ChildPlan<'a> {
    /// The plan of node `i` of `nodes`.
    pub(super) fn new(nodes: &'a [TreeNode], i: usize, links: Links<'a>) -> Self {
        let n = &nodes[i];
        let (session, report_write, end, ns_pid) = match &n.task {
            TreeTask::Live(l) => (
                l.session,
                std::os::fd::AsRawFd::as_raw_fd(&l.report_write),
                End::Task(TaskPlan::new(nodes, i, l)),
                l.ns_pid.unwrap_or(0),
            ),
            TreeTask::Zombie {
                session,
                status,
                ns_pid,
                ..
            } => (*session, -1, End::Zombie(*status), *ns_pid),
            TreeTask::Helper { kind, .. } => {
                let session = match kind {
                    HelperKind::Session => SessionPlan::NewSession,
                    HelperKind::Group => SessionPlan::NewGroup,
                };
                (session, -1, End::Helper, 0)
            }
        };
        let clone_flags = match &n.task {
            TreeTask::Live(l) => l.shares.clone_flags(),
            _ => 0,
        };
        ChildPlan {
            pid: n.task.pid(),
            ns_pid,
            clone_flags,
            sync_read: links.sync.0,
            sync_write: links.sync.1,
            forked_write: links.forked.1,
            forked_read: links.forked.0,
            children: links.children,
            early: links.early,
            subreaper_first: n.subreaper_first,
            session,
            report_write,
            end,
        }
    }

    fn is_helper(&self) -> bool {
        matches!(self.end, End::Helper)
    }
}

impl<'a> TaskPlan<'a> {
    fn new(nodes: &[TreeNode], i: usize, l: &'a Launch) -> Self {
        TaskPlan {
            shares: l.shares,
            mnt_ns: l.mnt_ns.unwrap_or(-1),
            moves: &l.fd_moves,
            actions: &l.child_actions,
            keep: &l.keep_fds,
            umask: l.umask,
            rlimits: &l.rlimits,
            cwd: l.cwd.as_deref(),
            root: l.root.as_deref(),
            removed_cwd: l.removed_cwd,
            prctl: prctl_at(nodes, i, l),
            comm: l.comm.as_deref(),
            personality: l.personality,
            entry: l.area.entry,
            args: l.area.args,
            stack_top: l.area.stack_top,
        }
    }
}

/// The prctl attributes of live node `i`, without a parent-death signal where its parent at restore is
/// not its dumped parent: the root's parent is the restorer; a task forked by a helper gets the signal
/// when the helper exits. Either would fire a parent-death signal the task never had.
fn prctl_at(nodes: &[TreeNode], i: usize, l: &Launch) -> ProcessCtl {
    let forked_by_helper = nodes[i]
        .parent
        .is_some_and(|p| matches!(nodes[p].task, TreeTask::Helper { .. }));
    if i != 0 && !forked_by_helper {
        return l.prctl;
    }
    if l.prctl.pdeathsig.is_some_and(|s| s != 0) {
        log::warn!(
            "pid {}: parent-death signal {} not restored: its parent at restore is {}",
            l.pid.unwrap_or(0),
            l.prctl.pdeathsig.unwrap_or(0),
            if i == 0 {
                "the restorer"
            } else {
                "a session or group helper"
            }
        );
    }
    ProcessCtl {
        pdeathsig: None,
        ..l.prctl
    }
}

/// The process forked for `plans[index]`: its session and subtree, then its end.
pub(super) fn child_main(plans: &[ChildPlan<'_>], index: usize) -> ! {
    let plan = &plans[index];
    let rep = plan.report_write;
    let mut byte = [0u8; 1];
    if plan.sync_read >= 0 {
        // SAFETY: closes our copy of the restorer's write end (a no-op when the guard closed it).
        unsafe { libc::close(plan.sync_write) };
        // SAFETY: reads one byte into our stack buffer.
        if unsafe { libc::read(plan.sync_read, byte.as_mut_ptr().cast(), 1) } != 1 {
            child_fail(rep, Step::ChildSync, errno(), 0);
        }
    }
    take_session(plans, plan);
    if plan.subreaper_first {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer and changes only this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            child_fail(rep, Step::ChildSession, errno(), 2);
        }
    }
    // Children one at a time: each reports once its own subtree exists.
    for &c in plan.children {
        fork_child(plans, c, rep);
        if plans[c].is_helper() {
            reap_helper(plans[c].pid, rep);
        }
    }
    if plan.forked_write >= 0 {
        // SAFETY: writes one byte from our stack buffer.
        if unsafe { libc::write(plan.forked_write, byte.as_ptr().cast(), 1) } != 1 {
            child_fail(rep, Step::ChildFork, errno(), 0);
        }
    }
    match &plan.end {
        End::Helper => {
            // SAFETY: ends this helper process without running any destructor of the parent's copy; its
            // children are reparented to its parent (a subreaper or the pid namespace's init).
            unsafe { libc::syscall(libc::SYS_exit_group, 0) };
            loop {
                std::hint::spin_loop();
            }
        }
        End::Zombie(status) => become_zombie(*status),
        End::Task(t) => {
            if let Err(f) = enter_task(t) {
                child_fail(rep, f.step, f.errno, f.detail);
            }
            // SAFETY: switches to the blob's stack inside the area (mapped, inherited from the parent) and
            // jumps to its entry with the args pointer; nothing of this function runs afterwards.
            unsafe {
                std::arch::asm!(
                    "mov rsp, {stack}",
                    "jmp {entry}",
                    stack = in(reg) t.stack_top,
                    entry = in(reg) t.entry,
                    in("rdi") t.args,
                    options(noreturn)
                )
            }
        }
    }
}

/// Session and group first: children forked afterwards inherit them.
fn take_session(plans: &[ChildPlan<'_>], plan: &ChildPlan<'_>) {
    let rep = plan.report_write;
    match plan.session {
        // SAFETY: setsid/setpgid change only this (child) process's ids.
        SessionPlan::NewSession => unsafe {
            if libc::setsid() < 0 {
                child_fail(rep, Step::ChildSession, errno(), 0);
            }
        },
        // SAFETY: as above.
        SessionPlan::NewGroup => unsafe {
            if libc::setpgid(0, 0) != 0 {
                child_fail(rep, Step::ChildSession, errno(), 1);
            }
        },
        SessionPlan::JoinGroup(g) => {
            // A group whose leader is gone: its helper creates it (and, a zombie until reaped below,
            // keeps it alive while we join).
            for &c in plan.early {
                fork_child(plans, c, rep);
            }
            // SAFETY: as above.
            if unsafe { libc::setpgid(0, g as libc::pid_t) } != 0 {
                child_fail(rep, Step::ChildSession, errno(), g as u64);
            }
            for &c in plan.early {
                reap_helper(plans[c].pid, rep);
            }
        }
        SessionPlan::Inherit => {}
    }
}

/// The task's state the child sets itself, kind by kind; the blob does the rest. The fds and the fs
/// struct of a process that shares them are its parent's, in place already or put there by the table's
/// owner: moving or closing fds here would move or close them in the owner's table too.
fn enter_task(t: &TaskPlan<'_>) -> Result<(), ChildFailed> {
    // First: its working and root directories are looked up in its namespace, and the fd is closed
    // with the other helper fds below.
    // SAFETY: setns on a namespace fd inherited from the restorer; it changes only this process.
    if t.mnt_ns >= 0 && unsafe { libc::setns(t.mnt_ns, libc::CLONE_NEWNS) } != 0 {
        return Err(ChildFailed::new(
            Step::ChildMountNs,
            errno(),
            t.mnt_ns as u64,
        ));
    }
    if !t.shares.files {
        task::apply_fds(t.moves, t.keep, t.actions)?;
    }
    if !t.shares.fs {
        task::apply_fs(t.cwd, t.root, t.umask, t.removed_cwd)?;
    }
    task::apply_attrs(&t.prctl, t.comm, t.personality)?;
    task::apply_rlimits(t.rlimits)
}

/// Ends a zombie-to-be with `status` (a raw wait status): `exit_group` with the code, or death by the
/// signal with its default action.
fn become_zombie(status: u32) -> ! {
    let sig = (status & 0x7f) as i32;
    if sig != 0 {
        // SAFETY: resets the signal's action to the default, unblocks it and sends it to ourselves; no
        // core file is written (the dumped process had already written its own, if any).
        unsafe {
            let lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &lim);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
    }
    // SAFETY: ends this (child) process without running any destructor of the parent's copy.
    unsafe { libc::syscall(libc::SYS_exit_group, ((status >> 8) & 0xff) as libc::c_int) };
    loop {
        std::hint::spin_loop();
    }
}

fn child_fail(report_fd: RawFd, step: Step, errno: i32, detail: u64) -> ! {
    let r = Report {
        step: step as u32,
        errno,
        detail,
    };
    // SAFETY: writes the plain-data report from our stack (a zombie-to-be has no report pipe: -1 fails
    // harmlessly); then ends the process without running any destructor or atexit handler of the parent's
    // copy.
    unsafe {
        libc::write(report_fd, (&r as *const Report).cast(), REPORT_SIZE);
        libc::syscall(
            libc::SYS_exit_group,
            dormant_restorer_proto::EXIT_BASE + step as i32,
        );
    }
    // exit_group does not return.
    loop {
        std::hint::spin_loop();
    }
}

fn errno() -> i32 {
    Errno::last_raw()
}

/// Forks child `c` of the plan with its exact pid and waits until it reports that its own session, group
/// and subtree exist.
fn fork_child(plans: &[ChildPlan<'_>], c: usize, rep: RawFd) {
    let child = &plans[c];
    let ret = clone_exact(child.pid, child.ns_pid, child.clone_flags);
    if ret == 0 {
        child_main(plans, c);
    }
    if ret < 0 {
        child_fail(rep, Step::ChildFork, (-ret) as i32, child.pid as u64);
    }
    let mut byte = [0u8; 1];
    // SAFETY: reads one byte into our stack buffer.
    if unsafe { libc::read(child.forked_read, byte.as_mut_ptr().cast(), 1) } != 1 {
        child_fail(rep, Step::ChildFork, errno(), child.pid as u64);
    }
}

/// Reaps helper `pid` (our child) once it exited 0 (the tracer collects it first), and drops the SIGCHLD it
/// sent: none was pending at dump time that the blob does not queue again itself.
fn reap_helper(pid: u32, rep: RawFd) {
    let mut status = 0;
    // SAFETY: waits for our own child; the status goes to our stack.
    let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::__WALL) };
    if got != pid as libc::pid_t || status != 0 {
        let e = if got < 0 { errno() } else { 0 };
        child_fail(rep, Step::ChildFork, e, pid as u64);
    }
    // SAFETY: sigset_t is plain data on our stack; a zero timeout only polls for a pending SIGCHLD.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
    }
}
