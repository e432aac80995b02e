//! The public entry point: [`Restore`] checks an image, prepares and starts the restored process.

use std::path::{Path, PathBuf};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid as NixPid;

use std::collections::HashMap;

use std::collections::BTreeMap;

use dormant_image::records::{FileId, Pid, RegFile};
use dormant_image::Image;

use crate::blob::Blob;
use crate::error::RestoreError;
use crate::external::{External, InheritFd};
use crate::image::TreeImage;
use crate::launch::{HelperKind, SessionPlan, TreeNode, TreeTask};
use crate::refusal::Unsupported;
use crate::tree::{Member, Node};
use crate::{image, launch, procself, task};

/// A restore of one image directory. Build it with [`Restore::builder`].
#[derive(Debug, Clone)]
pub struct Restore {
    images_dir: PathBuf,
    detached: bool,
    shell_job: bool,
    tcp_established: bool,
    pidfile: Option<PathBuf>,
    container: crate::container::ContainerOptions,
    inherit_fds: Vec<InheritFd>,
    inherited: crate::files::Inherited,
    root_parent: launch::RootParent,
    before_release: Option<ReleaseHook>,
    fresh_host_pids: bool,
}

/// A caller's step run once every restored task is in place and still stopped, right before the tree runs
/// (see [`RestoreBuilder::before_release`]). It gets the root's pid.
pub type ReleaseFn =
    dyn Fn(u32) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync;

/// A [`ReleaseFn`] held by a restore.
#[derive(Clone)]
pub struct ReleaseHook(pub std::sync::Arc<ReleaseFn>);

impl std::fmt::Debug for ReleaseHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReleaseHook")
    }
}

/// Options of a [`Restore`].
#[derive(Debug, Clone)]
pub struct RestoreBuilder {
    inner: Restore,
}

impl RestoreBuilder {
    /// Do not keep the restored process as a child to wait for: the caller will exit and leave it to
    /// init. [`Restored::wait`] is still available while the caller lives.
    pub fn detached(mut self, detached: bool) -> Self {
        self.inner.detached = detached;
        self
    }

    /// The process was dumped as a shell job: its terminal fds become this process's fds 0-2.
    pub fn shell_job(mut self, shell_job: bool) -> Self {
        self.inner.shell_job = shell_job;
        self
    }

    /// Rebuild established TCP connections of the image with `TCP_REPAIR` (CRIU's `--tcp-established`);
    /// without it an image holding one is refused.
    pub fn tcp_established(mut self, yes: bool) -> Self {
        self.inner.tcp_established = yes;
        self
    }

    /// Write the restored root pid to this file.
    pub fn pidfile(mut self, pidfile: Option<PathBuf>) -> Self {
        self.inner.pidfile = pidfile;
        self
    }

    /// Container images: the directory the container's root mount is bound from (`--root`). By default
    /// the directory the dump was given as `--root` (recorded in the image), else the outside mount the
    /// dumped root mount came from, found again in the restorer's namespace.
    pub fn root(mut self, dir: Option<PathBuf>) -> Self {
        self.inner.container.root = dir;
        self
    }

    /// Container images: where the external mounts and masters of the image are bound from (see
    /// [`External`]).
    pub fn externals(mut self, externals: impl IntoIterator<Item = External>) -> Self {
        self.inner.container.externals = externals.into_iter().collect();
        self
    }

    /// Container images: the network namespace the tree gets (`--net`).
    pub fn net(mut self, net: crate::ns::NetMode) -> Self {
        self.inner.container.ns.net = net;
        self
    }

    /// Container images: the cgroup the tree is restored into (`--cgroup-root`).
    pub fn cgroup_root(mut self, cgroup: crate::ns::CgroupTarget) -> Self {
        self.inner.container.ns.cgroup = cgroup;
        self
    }

    /// Descriptors of this process handed in for the image's external descriptions (see [`InheritFd`]).
    pub fn inherit_fds(mut self, fds: impl IntoIterator<Item = InheritFd>) -> Self {
        self.inner.inherit_fds = fds.into_iter().collect();
        self
    }

    /// Whose child the restored root becomes: the restoring process's (the default), or its parent's
    /// ([`launch::RootParent::RestorersParent`], for a helper process that restores on behalf of its
    /// parent; [`Restored::wait`] is then the parent's job).
    pub fn root_parent(mut self, parent: launch::RootParent) -> Self {
        self.inner.root_parent = parent;
        self
    }

    /// Runs `hook` once every restored task is in place and still stopped, right before the tree runs
    /// (after a container's proc mounts are swapped). Its failure fails the restore, which kills the tree.
    /// Used to freeze a container's cgroup so that it is restored paused.
    pub fn before_release(mut self, hook: ReleaseHook) -> Self {
        self.inner.before_release = Some(hook);
        self
    }

    /// A container's tasks keep only their pids inside its pid namespace; their host pids are the kernel's
    /// choice (CRIU's behaviour). Needed when the dumped container still runs (a leave-running dump) or
    /// its pids are not free yet; without it every host pid is the dumped one.
    pub fn fresh_host_pids(mut self, yes: bool) -> Self {
        self.inner.fresh_host_pids = yes;
        self
    }

    /// Finishes the options; fails when the image directory does not exist or an inherited fd is not
    /// open (or its key is given twice).
    pub fn build(mut self) -> Result<Restore, RestoreError> {
        self.inner.inherited = crate::files::Inherited::new(&self.inner.inherit_fds)?;
        let dir = &self.inner.images_dir;
        if !dir.is_dir() {
            return Err(RestoreError::BadImage {
                dir: dir.clone(),
                reason: "not a directory".into(),
            });
        }
        Ok(self.inner)
    }
}

/// How the restored process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled { signal: i32, core_dumped: bool },
}

/// A restored, running process.
#[derive(Debug)]
pub struct Restored {
    pid: u32,
    detached: bool,
}

impl Restored {
    /// The pid of the restored root process (the dumped one).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the restore was requested detached.
    pub fn is_detached(&self) -> bool {
        self.detached
    }

    /// Waits for the restored process (a child of the caller) to end.
    pub fn wait(self) -> Result<ExitStatus, RestoreError> {
        let pid = NixPid::from_raw(self.pid as i32);
        loop {
            match waitpid(pid, None)
                .map_err(|e| RestoreError::sys(format!("waiting for pid {}", self.pid), e))?
            {
                WaitStatus::Exited(_, code) => return Ok(ExitStatus::Exited(code)),
                WaitStatus::Signaled(_, sig, core_dumped) => {
                    return Ok(ExitStatus::Signaled {
                        signal: sig as i32,
                        core_dumped,
                    })
                }
                _ => continue,
            }
        }
    }
}

impl Restore {
    /// Starts describing a restore of the image in `images_dir`.
    pub fn builder(images_dir: impl Into<PathBuf>) -> RestoreBuilder {
        RestoreBuilder {
            inner: Restore {
                images_dir: images_dir.into(),
                detached: false,
                shell_job: false,
                tcp_established: false,
                pidfile: None,
                container: Default::default(),
                inherit_fds: Vec::new(),
                inherited: Default::default(),
                root_parent: Default::default(),
                before_release: None,
                fresh_host_pids: false,
            },
        }
    }

    /// The image directory.
    pub fn images_dir(&self) -> &Path {
        &self.images_dir
    }

    /// Checks the image, then forks the process with its original pid and restores it.
    ///
    /// Must be called while the calling process is single-threaded (checked): the restored process is
    /// forked from it and runs plain code between the fork and the restorer blob. On failure nothing of
    /// the restored process is left behind.
    pub fn run(self) -> Result<Restored, RestoreError> {
        let threads = procself::thread_count()?;
        if threads != 1 {
            return Err(RestoreError::NotSingleThreaded { threads });
        }
        let dir = self.images_dir.as_path();
        // Every check `verify` runs, on the image loaded once, before anything else.
        let img = image::load(dir)?;
        let tree = TreeImage::new(&img, &img.files);
        let identity = image::file_identity(&img)?;
        // Everything refused is refused before anything changes (see `refusal`): the options first.
        self.inherited.check(tree_descs(&tree))?;
        crate::files::refuse_established(tree_descs(&tree), self.tcp_established)?;
        refuse_shell_job(&tree, self.shell_job)?;
        let root_pid = img.root().pid();
        let ns_pids =
            crate::container::ns_pid_map(tree.tasks.iter().map(|t| t.tree.ns_pids.as_slice()))?;
        let container =
            crate::container::ContainerPlan::from_image(&img, root_pid, ns_pids, &self.container)?;
        // The pidfile is written after the pivot: reach it through its directory opened before.
        let pidfile = match (&container, &self.pidfile) {
            (Some(_), Some(p)) => Some(crate::container::hold_outside_path(p)?),
            _ => None,
        };
        // The kernel chooses the host pids of a container's tasks: none has to be free.
        let fresh = self.fresh_host_pids && container.is_some();
        let vdsos = check_tasks(&img, dir, &tree, !fresh)?;
        let mut pids = PidSpace::of(container.as_ref(), &tree)?;
        pids.fresh = fresh;
        let plan = plan_tree(&tree, container.as_ref(), &pids)?;
        refuse_pidfds(&tree, &plan, &pids.inner_ids(&tree))?;
        // A container image: enter its namespaces now, so its files are opened inside them. A plain
        // tree's nested mount namespaces are rebuilt now, and its files opened on them reopened there.
        let mut nested = crate::nested_mounts::NestedMounts::default();
        let (entered, relocated) = match &container {
            Some(plan) => {
                let (e, files) = enter_container(plan, dir, &img.files)?;
                (Some(e), Some(files))
            }
            None => {
                nested = crate::nested_mounts::NestedMounts::build(&img)?;
                let files = (!nested.is_empty()).then(|| nested.relocate(&img.files));
                (None, files)
            }
        };
        let tree = match &relocated {
            Some(files) => TreeImage::new(&img, files),
            None => tree,
        };
        let dir = entered.as_ref().map_or(dir, |e| e.images_dir.as_path());
        for task in &tree.tasks {
            image::check_files(dir, task, &identity)?;
        }
        // Every open file description once, before any fork: tasks that shared one inherit the same.
        let opened = crate::files::open_all_inheriting(
            tree_descs(&tree),
            (tree.inode_attrs, tree.desc_contents),
            tree.inotify_carried,
            tree.udp_queues,
            self.tcp_established,
            &self.inherited,
        )?;
        let policy = task::FdPolicy {
            shell_job: self.shell_job,
        };
        let mut nodes = tree_nodes(dir, &tree, &vdsos, &plan, &pids, policy, &opened)?;
        for n in &mut nodes {
            if let TreeTask::Live(l) = &mut n.task {
                l.mnt_ns = l.pid.and_then(|p| nested.ns_fd(Pid(p)));
            }
        }
        if let Some(p) = &pids.own {
            p.announce();
        }
        let ids = pids.inner_ids(&tree);
        let mut before_release = |root: u32, hosts: &launch::HostPids| {
            if fresh {
                // Owners were recorded by host pid: the same task's host pid now is another.
                opened.set_owners_mapped(&|pid| {
                    ids.inner(pid).and_then(|i| hosts.host(i)).unwrap_or(pid)
                })?;
            } else {
                opened.set_owners()?;
            }
            if container.is_some() {
                crate::container::show_tree_pid_namespace(root)?;
            }
            match &self.before_release {
                Some(hook) => (hook.0)(root)
                    .map_err(|source| RestoreError::BeforeRelease { pid: root, source }),
                None => Ok(()),
            }
        };
        let opts = launch::StartOptions {
            new_pid_ns: pids.nested(),
            root_parent: self.root_parent,
            time_ns: crate::ns::time::plan(&img, root_pid)?,
        };
        let started = launch::start_tree_with(nodes, opts, &mut before_release)?;
        if let Some(path) = &self.pidfile {
            write_pidfile(path, pidfile.as_ref(), started.pid)?;
        }
        Ok(Restored {
            pid: started.pid,
            detached: self.detached,
        })
    }
}

/// The tree's open file descriptions (tree-wide, carried by every task's image).
fn tree_descs<'a>(tree: &TreeImage<'a>) -> &'a [dormant_image::records::FileDesc] {
    tree.descs
}

/// Refuses an image dumped as a shell job (fds on the dumping terminal) unless restored as one.
fn refuse_shell_job(tree: &TreeImage, shell_job: bool) -> Result<(), RestoreError> {
    if shell_job {
        return Ok(());
    }
    for t in &tree.tasks {
        if let Some(fd) = t
            .fds
            .iter()
            .find(|f| f.file == dormant_image::records::FdFile::InheritedTty)
        {
            return Err(RestoreError::ShellJobRequired {
                pid: t.pid.0,
                fd: fd.fd,
            });
        }
    }
    Ok(())
}

/// Refuses a pidfd whose target does not exist yet when its holder sets up its files, or has no pid
/// inside the tree's pid namespace (checked again, as the pidfds are aimed, in [`aim_pidfds`]).
fn refuse_pidfds(
    tree: &TreeImage,
    plan: &TreePlan,
    ids: &crate::ns::pid::InnerIds,
) -> Result<(), RestoreError> {
    use dormant_image::records::{DescKind, FdFile};
    let planned = plan.planned.as_slice();
    let at = |pid: u32| plan.at(pid);
    let descs = tree_descs(tree);
    for t in &tree.tasks {
        let Some(holder) = at(t.pid.0) else { continue };
        for f in t.fds.iter() {
            let FdFile::Desc(id) = f.file else { continue };
            let Some(DescKind::Pidfd { pid }) = descs.iter().find(|d| d.id == id).map(|d| &d.kind)
            else {
                continue;
            };
            let refused = |later| {
                let (pid, fd, target) = (t.pid.0, f.fd, *pid);
                if later {
                    Unsupported::PidfdTargetLater { pid, fd, target }
                } else {
                    Unsupported::PidfdTargetOutside { pid, fd, target }
                }
            };
            // A target outside the image is the image's fault, refused when the pidfd is aimed.
            if let Some(target) = at(*pid) {
                if !exists_before_actions(planned, holder, target) {
                    return Err(refused(true).into());
                }
                if ids.inner(*pid).is_none() {
                    return Err(refused(false).into());
                }
            }
        }
    }
    Ok(())
}

/// Moves the restoring process into the container's namespaces and points the tree's file paths at what
/// they name in there.
fn enter_container(
    plan: &crate::container::ContainerPlan,
    dir: &Path,
    files: &BTreeMap<FileId, RegFile>,
) -> Result<(crate::container::Entered, BTreeMap<FileId, RegFile>), RestoreError> {
    let e = plan.enter(dir, files.values().map(|f| f.path.as_str()))?;
    let mut files = files.clone();
    for f in files.values_mut() {
        e.relocate(&mut f.path);
        e.adopt_refilled(f);
    }
    Ok((e, files))
}

/// What is checked of every task before anything changes: what it holds that this restorer refuses (a
/// pending SIGTRAP, POSIX timers on a kernel that cannot give their ids back; credentials and the rest of
/// `dormant_restorable`'s list were refused when the image was loaded), its FPU
/// state against this CPU, its vDSO against the running one (returned: where it goes), the crc of every
/// page it will read, and that its pids (and the zombies') are free. Its files are checked once the
/// namespace they are opened in is entered.
fn check_tasks(
    img: &Image,
    dir: &Path,
    tree: &TreeImage,
    pids_free: bool,
) -> Result<Vec<Option<image::VdsoPlacement>>, RestoreError> {
    let mut vdsos = Vec::with_capacity(tree.tasks.len());
    for task in &tree.tasks {
        task::refuse(task)?;
        image::check_xstate(img, task)?;
        vdsos.push(image::check_vdso(dir, task)?);
        for t in task.threads().filter(|_| pids_free) {
            image::check_pid_free(Pid(t.tid.0))?;
        }
    }
    for z in tree.zombies.iter().filter(|_| pids_free) {
        image::check_pid_free(z.pid)?;
    }
    Ok(vdsos)
}

/// Where the restored tree's pids live: the restorer's pid namespace, a container's, or a new one of its
/// own (a tree whose root is the init of its own pid namespace without being a container).
struct PidSpace<'a> {
    container: Option<&'a crate::container::ContainerPlan>,
    own: Option<crate::ns::pid::PidNsPlan>,
    /// The zombies' pids inside (recorded with each zombie).
    zombies: std::collections::BTreeMap<u32, u32>,
    /// The kernel chooses the tasks' host pids (see `RestoreBuilder::fresh_host_pids`).
    fresh: bool,
}

impl<'a> PidSpace<'a> {
    fn of(
        container: Option<&'a crate::container::ContainerPlan>,
        tree: &TreeImage,
    ) -> Result<Self, RestoreError> {
        let own = match container {
            Some(_) => None,
            None => crate::ns::pid::PidNsPlan::from_tree(tree)?,
        };
        let zombies = tree
            .zombies
            .iter()
            .filter_map(|z| Some((z.pid.0, z.inner_pid?.0)))
            .collect();
        Ok(PidSpace {
            container,
            own,
            zombies,
            fresh: false,
        })
    }

    /// The tree is restored in a pid namespace of its own (a container's, or its own).
    fn nested(&self) -> bool {
        self.container.is_some() || self.own.is_some()
    }

    /// The pid inside the tree's namespace of the process with (outer) pid `pid`.
    fn inner(&self, pid: u32) -> Option<u32> {
        let task = match (self.container, &self.own) {
            (Some(c), _) => c.ns_pid(Pid(pid)),
            (None, Some(p)) => p.ns_pid(pid),
            (None, None) => return None,
        };
        task.or_else(|| self.zombies.get(&pid).copied())
    }

    /// How the tree's recorded ids read inside its namespace.
    fn inner_ids(&self, tree: &TreeImage) -> crate::ns::pid::InnerIds {
        if self.nested() {
            crate::ns::pid::InnerIds::nested(tree, |p| self.inner(p))
        } else {
            crate::ns::pid::InnerIds::same()
        }
    }

    /// A session plan with the group's pid as `setpgid` takes it inside a nested pid namespace.
    fn session_inside(&self, session: SessionPlan) -> Result<SessionPlan, RestoreError> {
        match session {
            SessionPlan::JoinGroup(g) if self.nested() => self
                .inner(g)
                .map(SessionPlan::JoinGroup)
                .ok_or(Unsupported::GroupInnerPidMissing { pgid: g }.into()),
            other => Ok(other),
        }
    }
}

/// The tree's processes (live ones, then zombies) and their fork plan.
struct TreePlan {
    members: Vec<Member>,
    /// In fork order, with helpers for gone leaders.
    planned: Vec<crate::tree::Planned>,
    /// What each planned process shares with its parent.
    shares: Vec<launch::Shares>,
}

impl TreePlan {
    /// Where the process of the image with pid `pid` is in the fork order.
    fn at(&self, pid: u32) -> Option<usize> {
        self.planned.iter().position(|p| {
            matches!(p.node, Node::Member(m) if self.members.get(m).is_some_and(|m| m.pid == pid))
        })
    }
}

/// Plans the tree's forks, with helpers for gone leaders (refusing one inside a nested pid namespace).
fn plan_tree(
    tree: &TreeImage,
    container: Option<&crate::container::ContainerPlan>,
    pids: &PidSpace<'_>,
) -> Result<TreePlan, RestoreError> {
    let mut members: Vec<Member> = tree
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Member::live(t.pid, t.tree.ppid, t.tree.pgid, t.tree.sid)
                .subreaper(t.core.child_subreaper == Some(true))
                .ns_init(i == 0 && pids.nested())
        })
        .collect();
    members.extend(tree.zombies.iter().map(Member::zombie));
    if let Some(plan) = container {
        plan.adopt_outside_session(&mut members);
    }
    let planned = crate::tree::plan(&members)?;
    for p in &planned {
        let Some(helper) = p.node.helper_pid() else {
            continue;
        };
        if pids.nested() {
            return Err(Unsupported::HelperInnerPidMissing { pid: helper }.into());
        }
        image::check_pid_free(Pid(helper))?;
        log::info!(
            "pid {helper}: a helper process stands in for a gone leader ({:?})",
            p.node
        );
    }
    let shares = crate::tree::shares(tree.shared_tables, &members, &planned)?;
    Ok(TreePlan {
        members,
        planned,
        shares,
    })
}

/// Every planned process as the launcher starts it: live tasks prepared kind by kind, zombies and helpers.
fn tree_nodes(
    dir: &Path,
    tree: &TreeImage,
    vdsos: &[Option<image::VdsoPlacement>],
    plan: &TreePlan,
    pids: &PidSpace<'_>,
    policy: task::FdPolicy,
    opened: &crate::files::OpenedFiles,
) -> Result<Vec<TreeNode>, RestoreError> {
    let blob = Blob::embedded()?;
    let mut shared = task::TreeShared {
        areas: Vec::new(),
        mm: Default::default(),
        reg: Default::default(),
        ids: pids.inner_ids(tree),
        fresh_host_pids: pids.fresh,
        runner: dormant_restorable::Runner::current(),
        own_slice: task::own_slice(),
    };
    let planned = plan.planned.as_slice();
    // Where each process of the image is in the fork order, for the pidfds tasks reopen.
    let planned_at: HashMap<u32, usize> = planned
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p.node {
            Node::Member(m) => plan.members.get(m).map(|m| (m.pid, i)),
            _ => None,
        })
        .collect();
    let mut nodes = Vec::with_capacity(planned.len());
    for (at, p) in planned.iter().enumerate() {
        let task = match p.node {
            Node::SessionHelper { sid } => TreeTask::Helper {
                pid: sid,
                kind: HelperKind::Session,
            },
            Node::GroupHelper { pgid } => TreeTask::Helper {
                pid: pgid,
                kind: HelperKind::Group,
            },
            Node::Member(input) => match tree.tasks.get(input) {
                Some(task) => {
                    let vdso = vdsos.get(input).copied().flatten();
                    let shares = plan.shares.get(at).copied().unwrap_or_default();
                    if shares.files {
                        same_fds_as_owner(dir, tree, task)?;
                    }
                    let mut launch =
                        task::prepare(dir, &blob, task, vdso, policy, &mut shared, opened, shares)?;
                    launch.ns_pid = pids.inner(task.pid.0);
                    if pids.fresh {
                        launch.pid = None;
                    }
                    launch.session = pids.session_inside(p.session)?;
                    let place = |pid: &u32| planned_at.get(pid).copied();
                    aim_pidfds(
                        dir,
                        task.pid.0,
                        &mut launch,
                        planned,
                        at,
                        place,
                        &shared.ids,
                    )?;
                    TreeTask::Live(Box::new(launch))
                }
                None => {
                    let z = tree.zombies[input - tree.tasks.len()];
                    TreeTask::Zombie {
                        pid: if pids.fresh { 0 } else { z.pid.0 },
                        session: pids.session_inside(p.session)?,
                        status: z.exit_status,
                        ns_pid: pids.inner(z.pid.0).unwrap_or(0),
                    }
                }
            },
        };
        nodes.push(TreeNode {
            parent: p.parent,
            task,
            subreaper_first: p.subreaper_first,
        });
    }
    keep_sharers_fds(&mut nodes);
    // Every task holds its own copies of the shared objects now (`shared` is dropped here).
    Ok(nodes)
}

/// Refuses an image in which a process sharing an fd table lists other fds than the table's owner: the
/// restore gives it the owner's.
fn same_fds_as_owner(
    dir: &Path,
    tree: &TreeImage,
    task: &image::TaskImage,
) -> Result<(), RestoreError> {
    let owner = dormant_image::records::SharedTables::of(tree.shared_tables, task.pid).files;
    let owner_fds = tree.tasks.iter().find(|t| t.pid == owner).map(|t| t.fds);
    if owner_fds == Some(task.fds) {
        return Ok(());
    }
    Err(RestoreError::BadImage {
        dir: dir.to_owned(),
        reason: format!(
            "pid {} shares the fd table of pid {}, but their fds differ",
            task.pid.0, owner.0
        ),
    })
}

/// The owner of an fd table closes every fd it does not keep, in the table its sharers use too: it keeps
/// theirs (their blob's helper fds and report pipes, numbered apart from its own by the restorer, which
/// holds them all at once). The sharers' ancestors up to the owner share the table, so the owner is the
/// nearest ancestor that does not share its parent's.
fn keep_sharers_fds(nodes: &mut [TreeNode]) {
    for i in 0..nodes.len() {
        let keep = match &nodes[i].task {
            TreeTask::Live(l) if l.shares.files => l.keep_fds.clone(),
            _ => continue,
        };
        let mut owner = nodes[i].parent;
        while let Some(o) = owner {
            match &mut nodes[o].task {
                TreeTask::Live(l) if l.shares.files => owner = nodes[o].parent,
                TreeTask::Live(l) => {
                    l.keep_fds.extend_from_slice(&keep);
                    l.keep_fds.sort_unstable();
                    l.keep_fds.dedup();
                    break;
                }
                _ => break,
            }
        }
    }
}

/// Checks that every pidfd target of the task planned at `at` exists when it sets up its files, and aims
/// the pidfd at the target's pid as the task sees it.
fn aim_pidfds(
    dir: &Path,
    holder: u32,
    launch: &mut crate::launch::Launch,
    planned: &[crate::tree::Planned],
    at: usize,
    place: impl Fn(&u32) -> Option<usize>,
    ids: &crate::ns::pid::InnerIds,
) -> Result<(), RestoreError> {
    for a in &mut launch.child_actions {
        let crate::files::ChildAction::PidfdOpen { fd, pid, .. } = a else {
            continue;
        };
        let target = place(pid).ok_or_else(|| RestoreError::BadImage {
            dir: dir.to_owned(),
            reason: format!(
                "pid {holder} fd {fd}: a pidfd of pid {pid}, which is not in the image"
            ),
        })?;
        if !exists_before_actions(planned, at, target) {
            return Err(Unsupported::PidfdTargetLater {
                pid: holder,
                fd: *fd,
                target: *pid,
            }
            .into());
        }
        *pid = ids.inner(*pid).ok_or(Unsupported::PidfdTargetOutside {
            pid: holder,
            fd: *fd,
            target: *pid,
        })?;
    }
    Ok(())
}

/// Writes the restored root's pid to `path` (through `held`, its directory held from outside a
/// container).
fn write_pidfile(
    path: &Path,
    held: Option<&(std::os::fd::OwnedFd, std::ffi::OsString)>,
    pid: u32,
) -> Result<(), RestoreError> {
    let text = format!("{pid}\n");
    let written = match held {
        Some((dir, name)) => crate::container::write_at(dir, name, text.as_bytes()),
        None => std::fs::write(path, text),
    };
    written.map_err(|source| RestoreError::Pidfile {
        path: path.to_owned(),
        source,
    })
}

/// Whether the process planned at `target` exists when the one at `holder` sets up its files: the tree is
/// forked in depth-first order and every task sets up its files after its own subtree exists, so the
/// processes planned before it and those of its subtree do; the ones after it outside its subtree do not.
fn exists_before_actions(planned: &[crate::tree::Planned], holder: usize, target: usize) -> bool {
    if target <= holder {
        return true;
    }
    let mut at = Some(target);
    while let Some(i) = at {
        if i == holder {
            return true;
        }
        at = planned.get(i).and_then(|p| p.parent);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fork order root, A, A's child, B: a task sees its ancestors, its subtree and what was forked before
    /// it when it sets up its files (pidfd targets), never a later sibling's subtree.
    #[test]
    fn pidfd_targets_that_exist_in_time() {
        let node = |parent| crate::tree::Planned {
            node: Node::Member(0),
            parent,
            session: SessionPlan::Inherit,
            subreaper_first: false,
        };
        let planned = [node(None), node(Some(0)), node(Some(1)), node(Some(0))];
        assert!(exists_before_actions(&planned, 1, 0));
        assert!(exists_before_actions(&planned, 1, 1));
        assert!(exists_before_actions(&planned, 1, 2));
        assert!(!exists_before_actions(&planned, 1, 3));
        assert!(!exists_before_actions(&planned, 2, 3));
        assert!(exists_before_actions(&planned, 3, 2));
        assert!(exists_before_actions(&planned, 0, 3));
    }

    #[test]
    fn refuses_to_fork_from_a_multithreaded_process() {
        let dir = tempfile::tempdir().unwrap();
        // Keep a second thread alive for sure (the test harness may run this on its main thread alone).
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || rx.recv());
        let err = Restore::builder(dir.path())
            .build()
            .unwrap()
            .run()
            .unwrap_err();
        assert!(
            matches!(err, RestoreError::NotSingleThreaded { threads } if threads >= 2),
            "{err}"
        );
        drop(tx);
        helper.join().unwrap().unwrap_err();
    }

    #[test]
    fn builder_refuses_a_missing_directory() {
        let err = Restore::builder("/nonexistent/dormant-image")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
