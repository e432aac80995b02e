//! Starting the restored tasks: clone3 with the exact pid, the child's last preparations, the jump into the
//! blob, and the tracer side that catches each thread's final `rt_sigreturn`, removes the blob areas and lets
//! go.
//!
//! A process tree is forked top-down: the restorer forks the root; every restored task, still running this
//! crate's code, first takes its session and process group, then forks its own children (each with its exact
//! pid, one at a time: a child reports on a pipe once its own subtree exists, so later siblings can join
//! process groups led inside it), and only then puts its fds in place and enters its blob. Zombies are forked
//! like the others and exit at once with their saved status. The restorer traces the whole tree
//! (TRACEFORK/TRACECLONE auto-attach, EXITKILL): a failure anywhere kills every restored process.
//!
//! The caller must be single-threaded: the child runs ordinary (allocation-free) Rust between clone3 and
//! the jump, which is only safe when no other thread could have held a lock at the moment of the fork.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use dormant_parasite::{find_syscall_site, RemoteTask, Tid};
use dormant_restorer_proto::{Report, Step, REPORT_SIZE};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

use crate::area::Area;
use crate::error::RestoreError;
use crate::procself;

/// One fd of the restored task: the helper fd `from` (open in this process, numbered above every target
/// fd) becomes `to` in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdMove {
    pub from: RawFd,
    pub to: RawFd,
    pub cloexec: bool,
}

/// One resource limit to set in the child (already clamped to what this process may set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RlimitSet {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Everything needed to start one restored task.
#[derive(Debug)]
pub struct Launch {
    /// The exact pid to create (clone3 set_tid); `None` lets the kernel choose (tests only).
    pub pid: Option<u32>,
    /// In a container restore: the pid inside the tree's new pid namespace (`pid` is then the outer one);
    /// clone3 gets both. `None` outside containers.
    pub ns_pid: Option<u32>,
    /// The laid-out blob area (its args name the helper fds below).
    pub area: Area,
    pub fd_moves: Vec<FdMove>,
    /// Steps on the task's files after its fds are in place (epoll registrations); see [`crate::files`].
    pub child_actions: Vec<crate::files::ChildAction>,
    /// Every fd the child keeps when it enters the blob (target fds and the blob's helper fds), including
    /// the report pipe's write end.
    pub keep_fds: Vec<RawFd>,
    /// Helper fds owned by this process until the child has its copies; closed right after the fork.
    pub helper_fds: Vec<OwnedFd>,
    /// The report pipe's write end (also in `keep_fds`), numbered as `RestoreArgs::report_fd` says.
    pub report_write: OwnedFd,
    pub report_read: OwnedFd,
    pub umask: Option<u32>,
    pub rlimits: Vec<RlimitSet>,
    /// Working directory to change to (absolute), if known.
    pub cwd: Option<std::ffi::CString>,
    /// Root directory to `chroot` into after the `chdir` (absolute, in the restorer's view), when the task
    /// was chrooted.
    pub root: Option<std::ffi::CString>,
    /// Process attributes set with prctl in the child.
    pub prctl: ProcessCtl,
    /// The registers the task must have after its final rt_sigreturn (checked: rip).
    pub expected_rip: u64,
    /// Every other thread the blob creates.
    pub other_threads: Vec<OtherThread>,
    /// Stop the task with SIGSTOP once it is released (it was stopped when dumped).
    pub stopped: bool,
    /// Session and process group to give the task before it enters the blob.
    pub session: SessionPlan,
    /// The task's `comm` (PR_SET_NAME), so `ps` shows the restored program, not dormant.
    pub comm: Option<std::ffi::CString>,
    /// The task's execution domain (`personality(2)`), e.g. ADDR_NO_RANDOMIZE for later execs.
    pub personality: Option<u32>,
}

/// A thread the blob creates besides the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherThread {
    /// Its tid; 0 when the kernel chooses it (a container restored with fresh host pids).
    pub tid: u32,
    /// Its tid inside the tree's nested pid namespace, 0 when not in one.
    pub ns_tid: u32,
    /// The rip it must have after its rt_sigreturn.
    pub rip: u64,
}

/// The host pids the kernel chose for a tree restored with fresh host pids (by pid inside the tree's pid
/// namespace; empty otherwise): what the restorer hands to the kernel about a restored task (an fd's
/// owner) must name it by these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPids(std::collections::BTreeMap<u32, u32>);

impl HostPids {
    /// The host pid of the task or thread whose pid in the tree's namespace is `inner`.
    pub fn host(&self, inner: u32) -> Option<u32> {
        self.0.get(&inner).copied()
    }
}

/// What the child does about its session and process group.
///
/// A single restored process can lead a new session or group itself; joining a session or group led by
/// another process needs that leader restored first (process trees), so such a task stays in dormant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPlan {
    /// It led its session at dump time: `setsid()`.
    NewSession,
    /// It led its process group inside another session: `setpgid(0, 0)`.
    NewGroup,
    /// Its session and group were led by others: it keeps the restorer's (or its restored parent's).
    Inherit,
    /// Its group is led by another restored process of its session, which exists by then: `setpgid(0, g)`.
    JoinGroup(u32),
}

/// Per-process attributes the child sets with prctl before it enters the blob (`None`: not known, left
/// as inherited). Credentials are not restored (a task with other credentials is refused), so nothing
/// later resets dumpable or pdeathsig the way a uid change would.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCtl {
    pub child_subreaper: Option<bool>,
    /// 0 or 1 (the kernel refuses 2, `suid_dumpable`, through prctl; such a value is left as is).
    pub dumpable: Option<u32>,
    pub securebits: Option<u32>,
    /// Signal sent when the parent dies. Set by the child right after the fork, so "the parent" is its
    /// restored parent; [`start_tree`] drops it for the root, whose parent is the restorer.
    pub pdeathsig: Option<u32>,
}

impl ProcessCtl {
    /// Applies every known attribute to the calling process; on failure, which one (0 subreaper,
    /// 1 dumpable, 2 securebits, 3 pdeathsig) and the errno.
    fn apply(&self) -> Result<(), (u64, i32)> {
        let set = |which: u64, option: libc::c_int, value: libc::c_ulong| {
            // SAFETY: these prctl options take one integer argument and change only the calling process.
            if unsafe { libc::prctl(option, value, 0, 0, 0) } != 0 {
                return Err((which, errno()));
            }
            Ok(())
        };
        if let Some(on) = self.child_subreaper {
            set(0, libc::PR_SET_CHILD_SUBREAPER, on as libc::c_ulong)?;
        }
        if let Some(d) = self.dumpable.filter(|d| *d <= 1) {
            set(1, libc::PR_SET_DUMPABLE, d as libc::c_ulong)?;
        }
        if let Some(bits) = self.securebits {
            set(2, libc::PR_SET_SECUREBITS, bits as libc::c_ulong)?;
        }
        if let Some(sig) = self.pdeathsig {
            set(3, libc::PR_SET_PDEATHSIG, sig as libc::c_ulong)?;
        }
        Ok(())
    }
}

impl SessionPlan {
    /// The plan for a task with these ids at dump time.
    pub fn for_ids(pid: u32, pgid: u32, sid: u32) -> Self {
        if sid == pid {
            Self::NewSession
        } else if pgid == pid {
            Self::NewGroup
        } else {
            Self::Inherit
        }
    }
}

/// A restored, running task.
#[derive(Debug)]
pub struct Started {
    pub pid: u32,
}

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

/// Data the child reads after the fork; prepared before it, so the child allocates nothing.
struct ChildPlan<'a> {
    /// The exact pid (0: let the kernel choose, single-task tests only).
    pid: u32,
    /// The pid inside a container's pid namespace, 0 outside containers.
    ns_pid: u32,
    /// Root only: wait for one byte here (the tracer has seized us); -1 for others.
    sync_read: RawFd,
    /// Non-root: write one byte here once this task's session, group and subtree exist; -1 for the root.
    forked_write: RawFd,
    /// Read end of `forked_write` (read by the parent after forking this task).
    forked_read: RawFd,
    /// Indices (into the plan array) of the children this task forks, in order.
    children: &'a [usize],
    /// Group helpers it forks before it joins their group (`SessionPlan::JoinGroup`) and reaps after.
    early: &'a [usize],
    /// A helper: exit 0 once its children are forked (its parent reaps it).
    helper: bool,
    /// `PR_SET_CHILD_SUBREAPER` before forking (a session helper's children come back to it).
    subreaper_first: bool,
    /// A zombie: exit with this wait status once forked.
    zombie: Option<u32>,
    report_write: RawFd,
    moves: &'a [FdMove],
    actions: &'a [crate::files::ChildAction],
    keep: &'a [RawFd],
    umask: Option<u32>,
    rlimits: &'a [RlimitSet],
    cwd: Option<&'a std::ffi::CStr>,
    root: Option<&'a std::ffi::CStr>,
    prctl: ProcessCtl,
    session: SessionPlan,
    comm: Option<&'a std::ffi::CStr>,
    personality: Option<u32>,
    entry: u64,
    args: u64,
    stack_top: u64,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RestoreError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RestoreError::sys("pipe2", e))
}

/// Maps the area at its base in this process (it is inherited by the child through the fork).
struct MappedArea {
    base: u64,
    len: usize,
}

impl MappedArea {
    fn map(area: &Area) -> Result<MappedArea, RestoreError> {
        let len = area.bytes.len();
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the new private anonymous range
        // belongs to us alone.
        let p = unsafe {
            libc::mmap(
                area.base as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED || p as u64 != area.base {
            let e = Errno::last();
            if p != libc::MAP_FAILED {
                // SAFETY: `p` is the mapping just created (the kernel placed it elsewhere).
                unsafe { libc::munmap(p, len) };
            }
            return Err(RestoreError::sys(
                format!("mapping the blob area at {:#x}", area.base),
                e,
            ));
        }
        let mapped = MappedArea {
            base: area.base,
            len,
        };
        // SAFETY: `p` is a fresh writable mapping of `len` bytes, and `area.bytes` has exactly `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(area.bytes.as_ptr(), p.cast::<u8>(), len) };
        Ok(mapped)
    }
}

impl Drop for MappedArea {
    fn drop(&mut self) {
        // SAFETY: the range is the area mapped in `map`; nothing of ours refers into it.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Blocks every signal but SIGTRAP for the lifetime of the guard (the child inherits that mask).
struct MaskGuard(libc::sigset_t);

impl MaskGuard {
    fn block() -> Result<MaskGuard, RestoreError> {
        // SAFETY: sigset_t is plain data; the libc calls only write the sets we pass.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigdelset(&mut all, libc::SIGTRAP);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) != 0 {
                return Err(RestoreError::sys("blocking signals", Errno::last()));
            }
            Ok(MaskGuard(old))
        }
    }
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// One process of a tree to start.
#[derive(Debug)]
pub enum TreeTask {
    /// A live process restored through its blob.
    Live(Box<Launch>),
    /// A zombie: forked with its pid, given its session and group, then exits with `status` (a raw wait
    /// status) so its parent can still reap it.
    Zombie {
        pid: u32,
        session: SessionPlan,
        status: u32,
        /// Its pid inside the tree's nested pid namespace, 0 when not in one.
        ns_pid: u32,
    },
    /// A stand-in for a session or group leader that is gone (see [`crate::tree`]): forked with the
    /// leader's pid, it takes the session or group, forks its children and exits 0; its parent reaps it.
    Helper { pid: u32, kind: HelperKind },
}

/// What a helper process stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperKind {
    /// A session leader: `setsid()`, then it forks its children (the session's members).
    Session,
    /// A group leader: `setpgid(0, 0)`. Its parent forks it before joining the group with
    /// `SessionPlan::JoinGroup`, and reaps it right after.
    Group,
}

impl TreeTask {
    fn pid(&self) -> u32 {
        match self {
            TreeTask::Live(l) => l.pid.unwrap_or(0),
            TreeTask::Zombie { pid, .. } | TreeTask::Helper { pid, .. } => *pid,
        }
    }
}

/// One node of the tree: the task and the index of its parent (`None` only for the root, index 0).
#[derive(Debug)]
pub struct TreeNode {
    pub parent: Option<usize>,
    pub task: TreeTask,
    /// Become a child subreaper before forking the children: a session helper among them exits, and
    /// its children must be reparented to this process (see [`crate::tree`]).
    pub subreaper_first: bool,
}

/// Starts the task described by `launch`, returns once it runs its own code again.
pub fn start(launch: Launch) -> Result<Started, RestoreError> {
    start_tree(vec![TreeNode {
        parent: None,
        task: TreeTask::Live(Box::new(launch)),
        subreaper_first: false,
    }])
}

/// What the tracer knows about one started process.
struct Traced {
    /// 0 until known: with fresh host pids the kernel chooses it, and the tracer learns it from the fork
    /// event of the parent (see [`adopt`]).
    pid: u32,
    /// Its pid inside the tree's nested pid namespace, 0 when not in one.
    ns_pid: u32,
    /// Every thread, leader first (its `tid` is `pid`); empty for a zombie or helper.
    threads: Vec<OtherThread>,
    area: Option<(u64, u64)>,
    stopped: bool,
    report: Option<File>,
    /// The wait status it must end with: a zombie's saved one, 0 for a helper; `None` for live tasks.
    zombie: Option<u32>,
    helper: bool,
}

/// Starts a whole tree (`nodes[0]` is the root; every parent comes before its children), returns once
/// every restored thread runs its own code again. On failure no restored process is left.
pub fn start_tree(nodes: Vec<TreeNode>) -> Result<Started, RestoreError> {
    start_tree_with(nodes, false, &mut |_, _| Ok(()))
}

/// A step [`start_tree_with`] runs once every task of the tree is restored and still stopped by the tracer,
/// right before they are let go; it gets the root's pid and the host pids the kernel chose.
pub type BeforeRelease<'a> = dyn FnMut(u32, &HostPids) -> Result<(), RestoreError> + 'a;

/// [`start_tree`], running `before_release` between the last traced step and the release (a container
/// restore swaps the container's proc mounts there); its failure kills the tree like any other. With
/// `sibling` the root is forked with `CLONE_PARENT`: it becomes a child of our parent (CRIU's
/// `rst_sibling`, so a container runtime that started the restorer waits for the restored init itself).
pub fn start_tree_with(
    nodes: Vec<TreeNode>,
    sibling: bool,
    before_release: &mut BeforeRelease<'_>,
) -> Result<Started, RestoreError> {
    let threads = procself::thread_count()?;
    if threads != 1 {
        return Err(RestoreError::NotSingleThreaded { threads });
    }
    if nodes
        .first()
        .is_none_or(|n| n.parent.is_some() || !matches!(n.task, TreeTask::Live(_)))
    {
        return Err(RestoreError::Blob(
            "the tree's first node must be a live root".into(),
        ));
    }
    let (sync_read, sync_write) = pipe()?;
    let mut forked_pipes: Vec<Option<(OwnedFd, OwnedFd)>> = Vec::with_capacity(nodes.len());
    let mut mapped = Vec::new();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut early: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if let Some(p) = n.parent {
            if p >= i {
                return Err(RestoreError::Blob(format!(
                    "tree node {i} (pid {}) comes before its parent",
                    n.task.pid()
                )));
            }
            if matches!(
                n.task,
                TreeTask::Helper {
                    kind: HelperKind::Group,
                    ..
                }
            ) {
                early[p].push(i);
            } else {
                children[p].push(i);
            }
            forked_pipes.push(Some(pipe()?));
        } else {
            forked_pipes.push(None);
        }
        if let TreeTask::Live(l) = &n.task {
            mapped.push(MappedArea::map(&l.area)?);
        }
    }
    let mut plans = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let (forked_read, forked_write) = forked_pipes[i]
            .as_ref()
            .map_or((-1, -1), |(r, w)| (r.as_raw_fd(), w.as_raw_fd()));
        let sync = if i == 0 { sync_read.as_raw_fd() } else { -1 };
        plans.push(match &n.task {
            TreeTask::Live(l) => ChildPlan {
                pid: l.pid.unwrap_or(0),
                ns_pid: l.ns_pid.unwrap_or(0),
                sync_read: sync,
                forked_write,
                forked_read,
                children: &children[i],
                early: &early[i],
                helper: false,
                subreaper_first: n.subreaper_first,
                zombie: None,
                report_write: l.report_write.as_raw_fd(),
                moves: &l.fd_moves,
                actions: &l.child_actions,
                keep: &l.keep_fds,
                umask: l.umask,
                rlimits: &l.rlimits,
                cwd: l.cwd.as_deref(),
                root: l.root.as_deref(),
                prctl: {
                    // The root's parent is the restorer; a task forked by a helper gets the signal when
                    // the helper exits. Either would fire a parent-death signal the task never had.
                    let forked_by_helper = n
                        .parent
                        .is_some_and(|p| matches!(nodes[p].task, TreeTask::Helper { .. }));
                    if i == 0 || forked_by_helper {
                        if l.prctl.pdeathsig.is_some_and(|s| s != 0) {
                            log::warn!(
                                "pid {}: parent-death signal {} not restored: its parent at restore \
                                 is {}",
                                l.pid.unwrap_or(0),
                                l.prctl.pdeathsig.unwrap_or(0),
                                if i == 0 { "the restorer" } else { "a session or group helper" }
                            );
                        }
                        ProcessCtl {
                            pdeathsig: None,
                            ..l.prctl
                        }
                    } else {
                        l.prctl
                    }
                },
                session: l.session,
                comm: l.comm.as_deref(),
                personality: l.personality,
                entry: l.area.entry,
                args: l.area.args,
                stack_top: l.area.stack_top,
            },
            TreeTask::Zombie { .. } | TreeTask::Helper { .. } => {
                let (session, zombie, helper) = match n.task {
                    TreeTask::Zombie {
                        session, status, ..
                    } => (session, Some(status), false),
                    TreeTask::Helper {
                        kind: HelperKind::Session,
                        ..
                    } => (SessionPlan::NewSession, None, true),
                    _ => (SessionPlan::NewGroup, None, true),
                };
                ChildPlan {
                    pid: n.task.pid(),
                    ns_pid: match n.task {
                        TreeTask::Zombie { ns_pid, .. } => ns_pid,
                        _ => 0,
                    },
                    sync_read: sync,
                    forked_write,
                    forked_read,
                    children: &children[i],
                    early: &early[i],
                    helper,
                    subreaper_first: n.subreaper_first,
                    zombie,
                    report_write: -1,
                    moves: &[],
                    actions: &[],
                    keep: &[],
                    umask: None,
                    rlimits: &[],
                    cwd: None,
                    root: None,
                    prctl: ProcessCtl::default(),
                    session,
                    comm: None,
                    personality: None,
                    entry: 0,
                    args: 0,
                    stack_top: 0,
                }
            }
        });
    }
    let want_pid = plans[0].pid;
    let mask = MaskGuard::block()?;
    let ret = clone_exact(want_pid, plans[0].ns_pid, sibling);
    if ret == 0 {
        child_main(&plans, 0);
    }
    drop(mask);
    drop(plans);
    drop(sync_read);
    drop(forked_pipes);
    // Only the children's copies of the helper fds and of the report pipes' write ends matter now; with ours
    // closed a report pipe reads EOF if its task dies.
    let mut traced = Vec::with_capacity(nodes.len());
    for n in nodes {
        match n.task {
            TreeTask::Live(l) => {
                let Launch {
                    pid,
                    ns_pid,
                    area,
                    helper_fds,
                    report_write,
                    report_read,
                    expected_rip,
                    other_threads,
                    stopped,
                    ..
                } = *l;
                drop(helper_fds);
                drop(report_write);
                let pid = pid.unwrap_or(if traced.is_empty() {
                    ret.max(0) as u32
                } else {
                    0
                });
                let ns_pid = ns_pid.unwrap_or(0);
                let mut threads = vec![OtherThread {
                    tid: pid,
                    ns_tid: ns_pid,
                    rip: expected_rip,
                }];
                threads.extend(other_threads);
                traced.push(Traced {
                    pid,
                    ns_pid,
                    threads,
                    area: Some((area.base, area.end())),
                    stopped,
                    report: Some(File::from(report_read)),
                    zombie: None,
                    helper: false,
                });
            }
            TreeTask::Zombie {
                pid,
                status,
                ns_pid,
                ..
            } => traced.push(Traced {
                pid,
                ns_pid,
                threads: Vec::new(),
                area: None,
                stopped: false,
                report: None,
                zombie: Some(status),
                helper: false,
            }),
            TreeTask::Helper { pid, .. } => traced.push(Traced {
                pid,
                ns_pid: 0,
                threads: Vec::new(),
                area: None,
                stopped: false,
                report: None,
                zombie: Some(0),
                helper: true,
            }),
        }
    }
    if ret < 0 {
        let e = Errno::from_raw(-ret as i32);
        return Err(match e {
            Errno::EEXIST => RestoreError::PidTaken {
                pid: want_pid,
                owner: None,
            },
            _ => RestoreError::sys(format!("clone3 with pid {want_pid}"), e),
        });
    }
    let pid = ret as u32;
    if let Some(root) = traced.first_mut() {
        root.pid = pid;
        if let Some(leader) = root.threads.first_mut() {
            leader.tid = pid;
        }
    }
    log::debug!("pid {pid}: forked the root of {} task(s)", traced.len());
    // From here on a failure kills the tree; EXITKILL covers our own death.
    let outcome = trace(pid, &mut traced, sync_write, mapped, before_release);
    if let Err(e) = &outcome {
        log::debug!("pid {pid}: restore failed ({e}); killing the restored tree");
        kill_all(&traced);
    }
    outcome.map(|()| Started { pid })
}

/// clone3 as a fork, with `pid` as the exact pid when non-zero and, in a container, `ns_pid` (non-zero)
/// as its pid in the pid namespace one level down (set_tid is innermost first; `pid` 0 there lets the
/// kernel choose the outer one). With `parent` the child is our parent's (`CLONE_PARENT`). Returns 0 in the
/// child, the pid in the parent, `-errno` on failure. Allocation-free (also called in restored tasks
/// forking their children).
fn clone_exact(pid: u32, ns_pid: u32, parent: bool) -> i64 {
    let set_tid = match (pid, ns_pid) {
        (_, 0) => [pid as libc::pid_t, 0],
        (0, ns) => [ns as libc::pid_t, 0],
        (pid, ns) => [ns as libc::pid_t, pid as libc::pid_t],
    };
    let size = match (pid, ns_pid) {
        (0, 0) => 0,
        (_, 0) | (0, _) => 1,
        _ => 2,
    };
    let args = CloneArgs {
        flags: if parent { libc::CLONE_PARENT as u64 } else { 0 },
        // clone3 takes no exit signal with CLONE_PARENT: the child gets ours.
        exit_signal: if parent { 0 } else { libc::SIGCHLD as u64 },
        set_tid: if size != 0 {
            set_tid.as_ptr() as u64
        } else {
            0
        },
        set_tid_size: size,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM is a fork; the caller runs only allocation-free code in the child.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        -(Errno::last_raw() as i64)
    } else {
        ret
    }
}

/// Kills every process of a failed restore and collects what the tracer must collect.
fn kill_all(traced: &[Traced]) {
    for t in traced {
        if t.pid != 0 {
            let _ = kill(NixPid::from_raw(t.pid as i32), Signal::SIGKILL);
        }
    }
    for t in traced.iter().rev() {
        // Traced threads stay zombies until their tracer collects them; only then is a leader's end
        // reported. A tid that never existed answers ECHILD at once.
        for th in t.threads.iter().skip(1).filter(|th| th.tid != 0) {
            let _ = waitpid(NixPid::from_raw(th.tid as i32), Some(WaitPidFlag::__WALL));
        }
        if t.pid != 0 {
            let _ = waitpid(NixPid::from_raw(t.pid as i32), Some(WaitPidFlag::__WALL));
        }
    }
}

fn ptrace_err(pid: u32, op: &'static str) -> impl Fn(Errno) -> RestoreError {
    move |source| RestoreError::Ptrace { pid, op, source }
}

/// How often the tracer polls its tracees while waiting for every thread to reach its trap.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// Waits for the next event of any of `tids` without blocking on one that does not exist (yet): a thread
/// is only traced once the leader has created it.
fn wait_any(pid: u32, tids: &[u32]) -> Result<WaitStatus, RestoreError> {
    loop {
        for &tid in tids {
            match waitpid(
                NixPid::from_raw(tid as i32),
                Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
            ) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) | Err(Errno::EINTR) => {}
                Ok(status) => return Ok(status),
                Err(e) => return Err(RestoreError::sys(format!("waitpid {tid} (of {pid})"), e)),
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Traces the restored tree from the fork until every thread has run its final `rt_sigreturn` and every
/// zombie has exited, then removes the blob areas and lets all threads go.
fn trace(
    pid: u32,
    traced: &mut [Traced],
    sync_write: OwnedFd,
    mapped: Vec<MappedArea>,
    before_release: &mut BeforeRelease<'_>,
) -> Result<(), RestoreError> {
    let npid = NixPid::from_raw(pid as i32);
    let opts = ptrace::Options::PTRACE_O_EXITKILL
        | ptrace::Options::PTRACE_O_TRACESYSGOOD
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEFORK;
    ptrace::seize(npid, opts).map_err(ptrace_err(pid, "SEIZE"))?;
    nix::unistd::write(&sync_write, &[1])
        .map_err(|e| RestoreError::sys("releasing the child", e))?;
    drop(sync_write);
    drop(mapped);

    // Every thread and zombie still to finish, with the index of its process. Those whose host pid the
    // kernel chooses join once their parent's fork (or clone) event names them.
    let mut pending: Vec<(u32, usize)> = Vec::new();
    for (i, t) in traced.iter().enumerate() {
        if t.zombie.is_some() && t.pid != 0 {
            pending.push((t.pid, i));
        }
        pending.extend(
            t.threads
                .iter()
                .filter(|th| th.tid != 0)
                .map(|th| (th.tid, i)),
        );
    }
    // Every traced thread, polled until the end: one that already passed its rt_sigreturn stays stopped,
    // so an event from it means it was killed. That happens when the init of the tree's pid namespace
    // fails: its exit kills the namespace, and it waits in the kernel until we reap the traced zombies,
    // so waiting only for its own event would wait forever.
    let mut all: Vec<u32> = pending.iter().map(|&(t, _)| t).collect();
    // 1. Each thread's int3 right before its final rt_sigreturn, each zombie's exit (or a failure).
    while !pending.is_empty() || unknown(traced) > 0 {
        if pending.is_empty() {
            // Every known task is done, so every fork has happened: one was never seen.
            return Err(RestoreError::ChildLost {
                pid,
                what: format!(
                    "{} task(s) or thread(s) of the tree never appeared",
                    unknown(traced)
                ),
            });
        }
        let status = wait_any(pid, &all)?;
        let tid = status.pid().map_or(0, |p| p.as_raw() as u32);
        let ntid = NixPid::from_raw(tid as i32);
        let Some(&(_, idx)) = pending.iter().find(|&&(t, _)| t == tid) else {
            // The task that failed wrote why before it exited; its report says more than the kill.
            for t in traced.iter_mut() {
                if let Some(r) = t.report.as_mut().and_then(ready_report) {
                    if r.step != Step::Done as u32 {
                        return Err(step_error(t.pid, &r));
                    }
                }
            }
            let owner = traced
                .iter()
                .find(|t| t.threads.iter().any(|th| th.tid == tid))
                .map_or(tid, |t| t.pid);
            return Err(RestoreError::ChildLost {
                pid: owner,
                what: format!(
                    "thread {tid}, already restored, ended while the rest of the tree was being \
                     restored ({status:?}): another task failed, or the init of its pid namespace did"
                ),
            });
        };
        let owner = &mut traced[idx];
        match status {
            WaitStatus::Stopped(_, Signal::SIGTRAP) if owner.zombie.is_none() => {
                if tid == owner.pid {
                    let report = owner.report.as_mut().and_then(read_report).ok_or_else(|| {
                        RestoreError::ChildLost {
                            pid: owner.pid,
                            what: "trapped without reporting success".into(),
                        }
                    })?;
                    if report.step != Step::Done as u32 {
                        return Err(step_error(owner.pid, &report));
                    }
                }
                let want = owner
                    .threads
                    .iter()
                    .find(|th| th.tid == tid)
                    .map_or(0, |th| th.rip);
                step_over_sigreturn(owner.pid, tid, want)?;
                pending.retain(|&(t, _)| t != tid);
            }
            WaitStatus::Exited(_, code) if owner.zombie.is_some() => {
                check_zombie(owner, zombie_status_exited(code))?;
                pending.retain(|&(t, _)| t != tid);
            }
            WaitStatus::Signaled(_, sig, core) if owner.zombie.is_some() => {
                check_zombie(owner, sig as u32 | if core { 0x80 } else { 0 })?;
                pending.retain(|&(t, _)| t != tid);
            }
            WaitStatus::Exited(_, code) => {
                let pid = owner.pid;
                return Err(failure(
                    pid,
                    owner.report.as_mut(),
                    format!("thread {tid} exited with {code}"),
                ));
            }
            WaitStatus::Signaled(_, sig, _) => {
                let pid = owner.pid;
                return Err(failure(
                    pid,
                    owner.report.as_mut(),
                    format!("thread {tid} killed by {sig}"),
                ));
            }
            // A zombie-to-be killing itself: a tracee stops on delivery; hand the signal over.
            WaitStatus::Stopped(_, sig) if owner.zombie.is_some() => {
                ptrace::cont(ntid, Some(sig)).map_err(ptrace_err(tid, "CONT"))?;
            }
            WaitStatus::Stopped(_, sig) => {
                let rip = ptrace::getregs(ntid).map(|r| r.rip).unwrap_or(0);
                return Err(RestoreError::ChildLost {
                    pid: owner.pid,
                    what: format!("thread {tid} got {sig} at rip {rip:#x} in the restorer"),
                });
            }
            // Fork and clone events, a new task's first stop (auto-attached by TRACEFORK/TRACECLONE).
            WaitStatus::PtraceEvent(_, _, event) => {
                if event == libc::PTRACE_EVENT_FORK || event == libc::PTRACE_EVENT_CLONE {
                    let new =
                        ptrace::getevent(ntid).map_err(ptrace_err(tid, "GETEVENTMSG"))? as u32;
                    if !all.contains(&new) {
                        if let Some(at) =
                            adopt(traced, idx, new, event == libc::PTRACE_EVENT_CLONE)?
                        {
                            pending.push((new, at));
                            all.push(new);
                        }
                    }
                }
                ptrace::cont(ntid, None).map_err(ptrace_err(tid, "CONT"))?;
            }
            other => {
                return Err(RestoreError::ChildLost {
                    pid: owner.pid,
                    what: format!("unexpected wait status {other:?}"),
                })
            }
        }
    }

    // 2. Every thread stopped in its own code: remove each blob area with one injected munmap in its
    // leader, from a syscall site outside it; then let everything go.
    for t in traced.iter() {
        let Some((base, end)) = t.area else { continue };
        let site = choose_site(t.pid, base, end)?;
        let mut remote = RemoteTask::with_site(Tid(t.pid as i32), site)
            .map_err(|source| RestoreError::Cleanup { pid: t.pid, source })?;
        remote
            .munmap(base, end - base)
            .map_err(|source| RestoreError::Cleanup { pid: t.pid, source })?;
    }
    let mut hosts = HostPids::default();
    for t in traced.iter() {
        for th in t.threads.iter().filter(|th| th.ns_tid != 0) {
            hosts.0.insert(th.ns_tid, th.tid);
        }
        if t.ns_pid != 0 {
            hosts.0.insert(t.ns_pid, t.pid);
        }
    }
    before_release(pid, &hosts)?;
    for t in traced.iter().rev() {
        if t.helper {
            continue;
        }
        for th in t.threads.iter().rev() {
            ptrace::detach(NixPid::from_raw(th.tid as i32), None)
                .map_err(ptrace_err(th.tid, "DETACH"))?;
        }
        if t.stopped {
            kill(NixPid::from_raw(t.pid as i32), Signal::SIGSTOP)
                .map_err(|e| RestoreError::sys(format!("stopping pid {}", t.pid), e))?;
        }
        log::info!("pid {}: restored ({} thread(s))", t.pid, t.threads.len());
    }
    Ok(())
}

/// How many tasks and threads of the tree the tracer has not seen yet (host pid chosen by the kernel).
fn unknown(traced: &[Traced]) -> usize {
    traced
        .iter()
        .map(|t| {
            let task = usize::from(t.pid == 0 && t.zombie.is_some());
            task + t.threads.iter().filter(|th| th.tid == 0).count()
        })
        .sum()
}

/// Takes `new`, just forked (or cloned, `thread`) by a task of process `parent` and not known yet, as the
/// task or thread of the tree whose pid inside the tree's pid namespace it has (`NSpid` of its status).
/// Returns the index of its process, `None` if it is nothing the tree expects.
fn adopt(
    traced: &mut [Traced],
    parent: usize,
    new: u32,
    thread: bool,
) -> Result<Option<usize>, RestoreError> {
    let path = format!("/proc/{new}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| RestoreError::Proc {
        path: path.clone().into(),
        source,
    })?;
    let inner = text
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|w| w.parse::<u32>().ok())
        .unwrap_or(0);
    if thread {
        let Some(t) = traced.get_mut(parent) else {
            return Ok(None);
        };
        if let Some(th) = t
            .threads
            .iter_mut()
            .find(|th| th.tid == 0 && th.ns_tid == inner)
        {
            th.tid = new;
            log::debug!("pid {}: thread {inner} inside is {new}", t.pid);
            return Ok(Some(parent));
        }
        return Ok(None);
    }
    let Some((at, t)) = traced
        .iter_mut()
        .enumerate()
        .find(|(_, t)| t.pid == 0 && t.ns_pid == inner && inner != 0)
    else {
        return Ok(None);
    };
    t.pid = new;
    if let Some(leader) = t.threads.first_mut() {
        leader.tid = new;
    }
    log::debug!("pid {inner} inside the tree's pid namespace is {new}");
    Ok(Some(at))
}

fn zombie_status_exited(code: i32) -> u32 {
    ((code as u32) & 0xff) << 8
}

fn check_zombie(t: &Traced, got: u32) -> Result<(), RestoreError> {
    let want = t.zombie.unwrap_or(0);
    // Only the exit code or signal matters; the core-dump bit depends on the core limit.
    if got & 0xff7f != want & 0xff7f {
        let what = if t.helper {
            "helper process (stand-in for a gone session or group leader)"
        } else {
            "zombie"
        };
        return Err(RestoreError::ChildLost {
            pid: t.pid,
            what: format!("{what} ended with wait status {got:#x}, expected {want:#x}"),
        });
    }
    Ok(())
}

/// Steps thread `tid` (stopped at its trap) over `rt_sigreturn` (entry, exit) and checks that it ended
/// up at `expected_rip`; it stays stopped there.
fn step_over_sigreturn(pid: u32, tid: u32, expected_rip: u64) -> Result<(), RestoreError> {
    let ntid = NixPid::from_raw(tid as i32);
    for (stage, op) in [
        ("entry", "SYSCALL to rt_sigreturn entry"),
        ("exit", "SYSCALL to rt_sigreturn exit"),
    ] {
        ptrace::syscall(ntid, None).map_err(ptrace_err(tid, op))?;
        match waitpid(ntid, Some(WaitPidFlag::__WALL))
            .map_err(|e| RestoreError::sys("waitpid", e))?
        {
            WaitStatus::PtraceSyscall(_) => {}
            other => {
                return Err(RestoreError::ChildLost {
                    pid,
                    what: format!("thread {tid} at rt_sigreturn {stage}: {other:?}"),
                });
            }
        }
    }
    let regs = ptrace::getregs(ntid).map_err(ptrace_err(tid, "GETREGS"))?;
    if regs.rip != expected_rip {
        return Err(RestoreError::ChildLost {
            pid,
            what: format!(
                "thread {tid}: after rt_sigreturn rip is {:#x}, expected {:#x}",
                regs.rip, expected_rip
            ),
        });
    }
    Ok(())
}

fn choose_site(pid: u32, base: u64, end: u64) -> Result<u64, RestoreError> {
    let tid = Tid(pid as i32);
    let site = find_syscall_site(tid).map_err(|source| RestoreError::Cleanup { pid, source })?;
    if site < base || site >= end {
        return Ok(site);
    }
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|source| RestoreError::Proc {
        path: path.into(),
        source,
    })?;
    text.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with("r-x") || p.starts_with("r-xp"))
        })
        .filter_map(|l| {
            let (s, e) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        })
        .find(|&(s, e)| (e <= base || s >= end) && s < 0x7fff_ffff_f000 && e - s >= 8)
        .map(|(s, _)| s)
        .ok_or_else(|| RestoreError::ChildLost {
            pid,
            what: "no executable mapping outside the blob area".into(),
        })
}

fn read_report(file: &mut File) -> Option<Report> {
    let mut buf = [0u8; REPORT_SIZE];
    file.read_exact(&mut buf).ok()?;
    Some(Report {
        step: u32::from_ne_bytes(buf[0..4].try_into().ok()?),
        errno: i32::from_ne_bytes(buf[4..8].try_into().ok()?),
        detail: u64::from_ne_bytes(buf[8..16].try_into().ok()?),
    })
}

/// The report in `file` if one can be read at once (a task that is still running has written none).
fn ready_report(file: &mut File) -> Option<Report> {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        file.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
        Ok(1)
            if fds[0]
                .revents()
                .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN)) =>
        {
            read_report(file)
        }
        _ => None,
    }
}

fn step_error(pid: u32, r: &Report) -> RestoreError {
    let what = Step::from_u32(r.step).map_or("unknown step", Step::describe);
    RestoreError::StepFailed {
        pid,
        step: r.step,
        what,
        errno: Errno::from_raw(r.errno),
        detail: r.detail,
    }
}

fn failure(pid: u32, report: Option<&mut File>, how: String) -> RestoreError {
    match report.and_then(read_report) {
        Some(r) if r.step != Step::Done as u32 => step_error(pid, &r),
        _ => RestoreError::ChildLost {
            pid,
            what: format!("{how} before finishing the restore"),
        },
    }
}

// ---------------------------------------------------------------------------------------------------------
// The child
// ---------------------------------------------------------------------------------------------------------

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
    let ret = clone_exact(child.pid, child.ns_pid, false);
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

fn child_main(plans: &[ChildPlan<'_>], index: usize) -> ! {
    let plan = &plans[index];
    let rep = plan.report_write;
    let mut byte = [0u8; 1];
    if plan.sync_read >= 0 {
        // SAFETY: reads one byte into our stack buffer.
        if unsafe { libc::read(plan.sync_read, byte.as_mut_ptr().cast(), 1) } != 1 {
            child_fail(rep, Step::ChildSync, errno(), 0);
        }
    }
    // Session and group first: children forked below inherit them.
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
    if plan.subreaper_first {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer and changes only this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            child_fail(rep, Step::ChildSession, errno(), 2);
        }
    }
    // Children one at a time: each reports once its own subtree exists.
    for &c in plan.children {
        fork_child(plans, c, rep);
        if plans[c].helper {
            reap_helper(plans[c].pid, rep);
        }
    }
    if plan.forked_write >= 0 {
        // SAFETY: writes one byte from our stack buffer.
        if unsafe { libc::write(plan.forked_write, byte.as_ptr().cast(), 1) } != 1 {
            child_fail(rep, Step::ChildFork, errno(), 0);
        }
    }
    if plan.helper {
        // SAFETY: ends this helper process without running any destructor of the parent's copy; its
        // children are reparented to its parent (a subreaper or the pid namespace's init).
        unsafe { libc::syscall(libc::SYS_exit_group, 0) };
    }
    if let Some(status) = plan.zombie {
        become_zombie(status);
    }
    for m in plan.moves {
        // SAFETY: `from` is a helper fd inherited from the parent, `to` a target fd number below every
        // helper fd, so no helper is overwritten.
        if unsafe { libc::dup2(m.from, m.to) } != m.to {
            child_fail(rep, Step::ChildDupFd, errno(), m.to as u64);
        }
        let flags = if m.cloexec { libc::FD_CLOEXEC } else { 0 };
        // SAFETY: sets the fd flags of the fd just installed.
        if unsafe { libc::fcntl(m.to, libc::F_SETFD, flags) } != 0 {
            child_fail(rep, Step::ChildDupFd, errno(), m.to as u64);
        }
    }
    // Close every fd outside `keep` (sorted ascending), gap by gap.
    let mut next: u32 = 0;
    for &k in plan.keep.iter().chain(std::iter::once(&-1)) {
        let hi = if k < 0 { u32::MAX } else { k as u32 };
        if hi > next {
            // SAFETY: close_range only closes fds of this (child) process.
            if unsafe { libc::syscall(libc::SYS_close_range, next, hi - 1, 0) } != 0 {
                child_fail(rep, Step::ChildCloseFds, errno(), next as u64);
            }
        }
        if k < 0 {
            break;
        }
        next = k as u32 + 1;
    }
    // After the close: closing any fd of a file drops the process's POSIX locks on it, so they are taken
    // only once the helper copies are gone.
    for a in plan.actions {
        if let Err(e) = crate::files::run_child_action(a) {
            child_fail(rep, Step::ChildDupFd, e, 0);
        }
    }
    if let Some(dir) = plan.cwd {
        // SAFETY: `dir` is a NUL-terminated path prepared before the fork.
        if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
            child_fail(rep, Step::ChildChdir, errno(), 0);
        }
    }
    // After the chdir (the saved cwd is a path in the restorer's view, under the root) and after this
    // task forked its children (each changes directory itself, from the restorer's view, before its own
    // chroot).
    if let Some(dir) = plan.root {
        // SAFETY: `dir` is a NUL-terminated path prepared before the fork.
        if unsafe { libc::chroot(dir.as_ptr()) } != 0 {
            child_fail(rep, Step::ChildChroot, errno(), 0);
        }
    }
    if let Err((which, e)) = plan.prctl.apply() {
        child_fail(rep, Step::ChildPrctl, e, which);
    }
    if let Some(name) = plan.comm {
        // SAFETY: PR_SET_NAME reads at most 16 bytes of the NUL-terminated string prepared before the fork.
        if unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) } != 0 {
            child_fail(rep, Step::ChildComm, errno(), 0);
        }
    }
    if let Some(p) = plan.personality {
        // SAFETY: personality only changes this (child) task's execution domain flags.
        if unsafe { libc::personality(p as libc::c_ulong) } < 0 {
            child_fail(rep, Step::ChildPersonality, errno(), p as u64);
        }
    }
    if let Some(mask) = plan.umask {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    for r in plan.rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: setrlimit reads the struct on our stack.
        if unsafe { libc::setrlimit(r.resource as _, &lim) } != 0 {
            child_fail(rep, Step::ChildRlimit, errno(), r.resource as u64);
        }
    }
    // SAFETY: switches to the blob's stack inside the area (mapped, inherited from the parent) and jumps
    // to its entry with the args pointer; nothing of this function runs afterwards.
    unsafe {
        std::arch::asm!(
            "mov rsp, {stack}",
            "jmp {entry}",
            stack = in(reg) plan.stack_top,
            entry = in(reg) plan.entry,
            in("rdi") plan.args,
            options(noreturn)
        )
    }
}
