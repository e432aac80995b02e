//! Starting the restored tasks: clone3 with the exact pid, the child's last preparations, the jump into the
//! blob, and the tracer side that catches each thread's final `rt_sigreturn`, removes the blob areas and lets
//! go.
//!
//! A process tree is forked top-down: the restore guard ([`guard`]: a process of the restorer's that reaps
//! whatever a failed or killed restore leaves) forks the root; every restored task, still running this
//! crate's code, first takes its session and process group, then forks its own children (each with its exact
//! pid, one at a time: a child reports on a pipe once its own subtree exists, so later siblings can join
//! process groups led inside it), and only then puts its fds in place and enters its blob. Zombies are forked
//! like the others and exit at once with their saved status. The restorer traces the whole tree
//! (TRACEFORK/TRACECLONE auto-attach, EXITKILL): a failure anywhere kills every restored process, and the
//! guard reaps them all before the restore returns or, if the restorer was killed, before its death can be
//! seen. Dismissing the guard once every task runs is the restore's commit.
//!
//! Modules: [`fork`] (clone3 with exact pids, the blob areas mapped for the children), [`guard`],
//! [`child`] (what each forked process runs), [`tracer`] (the restorer's side until the release).
//!
//! The caller must be single-threaded: the child runs ordinary (allocation-free) Rust between clone3 and
//! the jump, which is only safe when no other thread could have held a lock at the moment of the fork.

mod child;
mod fork;
mod guard;
mod proc_files;
mod stops;
mod tracer;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::area::Area;
use crate::error::RestoreError;
use crate::procself;
use child::ChildPlan;
use fork::{MappedArea, MaskGuard};
use tracer::Traced;

pub use crate::task::{Finish, ProcessCtl, ThreadSeccompInput};

/// One fd of the restored task: the helper fd `from` (open in this process, numbered above every target
/// fd) becomes `to` in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdMove {
    pub from: RawFd,
    pub to: RawFd,
    pub cloexec: bool,
}

/// The tables a process shares with its restored parent, which has them already (the first process of
/// the tree with a table puts it in place; see [`crate::tree`]): it is cloned with `CLONE_FILES` (its fd
/// table) and `CLONE_FS` (cwd, root, umask), and leaves those to the table's owner, so no fd is moved or
/// closed twice in one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shares {
    pub files: bool,
    pub fs: bool,
}

impl Shares {
    /// Its clone3 flags.
    pub fn clone_flags(self) -> u64 {
        let files = if self.files { libc::CLONE_FILES } else { 0 };
        let fs = if self.fs { libc::CLONE_FS } else { 0 };
        (files | fs) as u64
    }
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
    /// The tables it shares with its parent: it has no fds (`Shares::files`) or no cwd, root and umask
    /// (`Shares::fs`) of its own to put in place.
    pub shares: Shares,
    pub fd_moves: Vec<FdMove>,
    /// Steps on the task's files after its fds are in place (epoll registrations); see [`crate::files`].
    pub child_actions: Vec<crate::files::ChildAction>,
    /// Files of `/proc` the tracer makes the task open once every task and thread of the tree exists
    /// ([`crate::files::procfs`]).
    pub proc_files: Vec<crate::files::ProcOpen>,
    /// Every fd the child keeps when it enters the blob (target fds and the blob's helper fds), including
    /// the report pipe's write end; an fd table's owner also keeps those of the processes sharing it.
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
    /// The working directory was removed: `cwd` is a stand-in the child creates, enters and removes.
    pub removed_cwd: Option<crate::task::RemovedCwd>,
    /// Process attributes set with prctl in the child.
    pub prctl: ProcessCtl,
    /// The registers the task must have after its final rt_sigreturn (checked: rip).
    pub expected_rip: u64,
    /// Every other thread the blob creates.
    pub other_threads: Vec<OtherThread>,
    /// The credentials every thread (the leader first) must have once its blob is done, checked before
    /// the release; `None`: left as inherited, not checked.
    pub thread_creds: Vec<Option<dormant_image::records::Creds>>,
    /// The job-control stop to put the task back in once it is released (it was stopped when dumped).
    pub job_stop: Option<dormant_image::records::JobStop>,
    /// A SIGCHLD was pending for the whole process when it was dumped (see
    /// [`crate::task::TaskAttrs::sigchld_pending`]).
    pub sigchld_pending: bool,
    /// Session and process group to give the task before it enters the blob.
    pub session: SessionPlan,
    /// The task's `comm` (PR_SET_NAME), so `ps` shows the restored program, not dormant.
    pub comm: Option<std::ffi::CString>,
    /// The task's execution domain (`personality(2)`), e.g. ADDR_NO_RANDOMIZE for later execs.
    pub personality: Option<u32>,
    /// What the tracer sets and checks from outside before the release.
    pub finish: crate::task::Finish,
    /// The nested mount namespace (a descriptor the restorer holds) the child enters first, if any.
    pub mnt_ns: Option<RawFd>,
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

/// The host pids the kernel chose for a tree restored with fresh host pids, by pid inside the tree's pid
/// namespace: what the restorer hands to the kernel about a restored task (an fd's owner) must name it
/// by these.
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

/// Starts a whole tree (`nodes[0]` is the root; every parent comes before its children), returns once
/// every restored thread runs its own code again. On failure no restored process is left.
pub fn start_tree(nodes: Vec<TreeNode>) -> Result<Started, RestoreError> {
    start_tree_with(nodes, StartOptions::default(), &mut |_, _| Ok(()))
}

/// How a tree is started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// The root is forked as the init of a new pid namespace (a container, or a tree that was the init of
    /// its own); every task then needs its `ns_pid`.
    pub new_pid_ns: bool,
    /// Whose child the root becomes.
    pub root_parent: RootParent,
    /// The tree's own time namespace, created with these offsets for the forked root (`None`: the
    /// restorer's).
    pub time_ns: Option<dormant_image::records::TimeNamespace>,
}

/// Whose child the restored root becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RootParent {
    /// The restore guard's while the tree is restored ([`guard`]), the restoring process's once it runs
    /// (it can wait for the root).
    #[default]
    Restorer,
    /// The restoring process's parent's (clone3 `CLONE_PARENT`): a helper process restores on behalf of
    /// its parent (kata-agent), which then waits for the root as for any child it started, and reaps what
    /// a failed restore leaves (there is no guard: it could not be the root's parent). The restorer still
    /// traces the tree until it runs.
    RestorersParent,
}

/// A step [`start_tree_with`] runs once every task of the tree is restored and still stopped by the tracer,
/// right before they are let go; it gets the root's pid and the host pids the kernel chose.
pub type BeforeRelease<'a> = dyn FnMut(u32, &HostPids) -> Result<(), RestoreError> + 'a;

/// [`start_tree`], running `before_release` between the last traced step and the release (a container
/// restore swaps the container's proc mounts there); its failure kills the tree like any other.
pub fn start_tree_with(
    nodes: Vec<TreeNode>,
    opts: StartOptions,
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
    let shape = Shape::of(&nodes)?;
    let mapped = nodes
        .iter()
        .filter_map(|n| match &n.task {
            TreeTask::Live(l) => Some(MappedArea::map(&l.area)),
            _ => None,
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (sync_read, sync_write) = fork::pipe()?;
    let plans: Vec<ChildPlan<'_>> = (0..nodes.len())
        .map(|i| ChildPlan::new(&nodes, i, shape.links(i, (&sync_read, &sync_write))))
        .collect();
    let want_pid = plans[0].pid;
    // Before anything is forked: the guard, and the root through it, enter the new time namespace.
    let time_ns = opts
        .time_ns
        .as_ref()
        .map(crate::ns::time::ChildrenTimeNs::enter)
        .transpose()?;
    // The guard forks the root and reaps whatever of the tree a failure or our death leaves; a root that
    // becomes our parent's child is forked by us. Either blocks every signal but SIGTRAP around the fork:
    // the root inherits that mask.
    let started = match opts.root_parent {
        RootParent::Restorer => guard::Guard::start(guard::RootFork {
            plans: &plans,
            new_pid_ns: opts.new_pid_ns,
            close_first: &[sync_write.as_raw_fd()],
        })
        .map(|(g, ret)| (Some(g), ret)),
        RootParent::RestorersParent => MaskGuard::block().and_then(|mask| {
            let ret = fork::fork_root_to_parent(&plans, opts.new_pid_ns);
            drop(mask);
            ret.map(|ret| (None, ret))
        }),
    };
    drop(time_ns);
    drop(plans);
    drop(sync_read);
    drop(shape);
    let (guard, ret) = started?;
    // Only the children's copies of the helper fds and of the report pipes' write ends matter now.
    let forked_pid = ret.max(0) as u32;
    let mut traced: Vec<Traced> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let stand_in = if traced.is_empty() { forked_pid } else { 0 };
        traced.push(Traced::new(n.task, stand_in));
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
    log::debug!("pid {pid}: forked the root of {} task(s)", traced.len());
    // From here on a failure kills the tree; EXITKILL covers our own death, the guard what is left.
    if let Some(g) = &guard {
        log::debug!("pid {pid}: restore guard {}", g.pid());
    }
    if let Err(e) = tracer::trace(pid, &mut traced, sync_write, mapped, before_release) {
        log::debug!("pid {pid}: restore failed ({e}); killing the restored tree");
        tracer::kill_all(&traced);
        // The guard reaps what is left of the tree before it goes.
        drop(guard);
        return Err(e);
    }
    // Every task runs its own code: dismissing the guard is the commit. Until then our death kills the
    // tree (the guard kills what was already let go); from then on the restore stands.
    if let Some(Err(e)) = guard.map(guard::Guard::dismiss) {
        log::warn!("pid {pid}: {e}");
    }
    Ok(Started { pid })
}

/// Who forks whom: each node's children (in fork order) and the group helpers it forks before it joins
/// their group, and the pipe each non-root node reports its subtree on.
struct Shape {
    children: Vec<Vec<usize>>,
    early: Vec<Vec<usize>>,
    forked_pipes: Vec<Option<(OwnedFd, OwnedFd)>>,
}

impl Shape {
    fn of(nodes: &[TreeNode]) -> Result<Shape, RestoreError> {
        let mut shape = Shape {
            children: vec![Vec::new(); nodes.len()],
            early: vec![Vec::new(); nodes.len()],
            forked_pipes: Vec::with_capacity(nodes.len()),
        };
        for (i, n) in nodes.iter().enumerate() {
            let Some(p) = n.parent else {
                shape.forked_pipes.push(None);
                continue;
            };
            if p >= i {
                return Err(RestoreError::Blob(format!(
                    "tree node {i} (pid {}) comes before its parent",
                    n.task.pid()
                )));
            }
            let group_helper = matches!(
                n.task,
                TreeTask::Helper {
                    kind: HelperKind::Group,
                    ..
                }
            );
            if group_helper {
                shape.early[p].push(i);
            } else {
                shape.children[p].push(i);
            }
            shape.forked_pipes.push(Some(fork::pipe()?));
        }
        Ok(shape)
    }

    fn links<'a>(&'a self, i: usize, (rd, wr): (&OwnedFd, &OwnedFd)) -> child::Links<'a> {
        child::Links {
            children: &self.children[i],
            early: &self.early[i],
            forked: self.forked_pipes[i]
                .as_ref()
                .map_or((-1, -1), |(r, w)| (r.as_raw_fd(), w.as_raw_fd())),
            sync: if i == 0 {
                (rd.as_raw_fd(), wr.as_raw_fd())
            } else {
                (-1, -1)
            },
        }
    }
}
