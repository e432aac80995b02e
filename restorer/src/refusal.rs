//! Everything the restorer refuses to restore, as one typed list ([`Unsupported`]), checked before the
//! first fork and before the restoring process changes any namespace (see `Restore::run`).
//!
//! Two sorts, told apart by [`UnsupportedKind::found_in`]:
//! - state of the dumped processes that this release cannot rebuild ([`Found::Image`]): the dump must
//!   refuse it first (the rule "if a dump succeeds, its restore succeeds"), and the restorer refuses it
//!   again for images from elsewhere;
//! - what this machine lacks for an image that is otherwise fine ([`Found::Machine`]): a kernel feature the
//!   dumping machine had. Only the restorer can tell.
//!
//! A refusal that cannot be made before the first change of the restoring process lives outside this list
//! and is named in [`LATE_REFUSALS`].

use dormant_restorable::RefusalKind;

/// Where a refusal is found: what the dump can know, or only the restoring machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// In the image's process state: the dump refuses it first.
    Image,
    /// On the restoring machine (its kernel).
    Machine,
}

/// State the restorer refuses, with the pid and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    // --- the tree's shape: sessions, groups, parents -----------------------------------------------------
    #[error("pid {pid}: a second root in the tree")]
    SecondRoot { pid: u32 },
    #[error(
        "pid {pid}: its parent {parent} is not in the tree: not all processes are descendants of the root \
         {root}"
    )]
    ParentOutside { pid: u32, parent: u32, root: u32 },
    #[error("{count} process(es) of the tree are not descendants of the root {root}")]
    NotDescendants { count: usize, root: u32 },
    #[error(
        "pid {pid}: session {sid} has no leader in the tree and is not its parent {parent}'s, and {parent} \
         was not a child subreaper, so it was not reparented to it (a process born in a session its parent \
         left afterwards is not restored)"
    )]
    SessionNotReparented { pid: u32, sid: u32, parent: u32 },
    #[error("pid {pid}: its session {sid} is the root's, which is led from outside the tree")]
    RootSessionOutside { pid: u32, sid: u32 },
    #[error(
        "session {sid} has no leader in the tree and members that are children of both {first} and \
         {second}; one helper process with its pid can only be forked by one of them"
    )]
    SessionUnderTwoParents { sid: u32, first: u32, second: u32 },
    #[error(
        "pid {pid}: session {sid} is neither its own nor its parent {parent}'s, and its leader is in the \
         tree without being its ancestor (not restored)"
    )]
    SessionLeaderNotAncestor { pid: u32, sid: u32, parent: u32 },
    #[error("pid {pid}: its process group leader {pgid} would be forked after it")]
    GroupLeaderForkedLater { pid: u32, pgid: u32 },
    #[error(
        "pid {pid}: process group {pgid} is the root's, which is led from outside the tree (the root's \
         group is the restorer's after the restore)"
    )]
    RootGroupOutside { pid: u32, pgid: u32 },

    // --- pid namespaces ------------------------------------------------------------------------------------
    #[error(
        "pid {pid}: pids {levels:?} where the tree's pid namespace (root {root}) needs [outer, inner]"
    )]
    InnerPidMissing {
        pid: u32,
        levels: Vec<u32>,
        root: u32,
    },
    #[error(
        "pid {pid} thread {tid}: tids {levels:?} where the tree's pid namespace needs [outer, inner] (an \
         image from before inner tids were recorded?)"
    )]
    InnerTidMissing {
        pid: u32,
        tid: u32,
        levels: Vec<u32>,
    },
    #[error("zombie {pid} inside a nested pid namespace: its pid there is not recorded")]
    ZombieInnerPidMissing { pid: u32 },
    #[error(
        "the gone leader {pid} of a session or group inside the tree's pid namespace needs a helper \
         process, whose pid inside is not recorded"
    )]
    HelperInnerPidMissing { pid: u32 },
    #[error("process group {pgid}: its pid inside the tree's pid namespace is not recorded")]
    GroupInnerPidMissing { pgid: u32 },

    // --- what dormant-restorable lists (the dump checks the same, before touching the target) ----------
    /// Credentials, a removed directory, namespaces not carried or nested, nested pid namespaces: the
    /// dump refuses these first with this very message (see `dormant_restorable`).
    #[error(transparent)]
    Restorable(#[from] dormant_restorable::Refusal),

    // --- credentials, signals, files -------------------------------------------------------------------
    #[error("pid {pid}: a pending SIGTRAP cannot be re-queued (the restore itself traps)")]
    PendingSigtrap { pid: u32 },
    #[error(
        "pid {pid} fd {fd}: a pidfd of pid {target}, which is forked only after pid {pid} has set up its \
         files (a pidfd must refer to the task itself, an ancestor, a descendant or a process forked \
         before it)"
    )]
    PidfdTargetLater { pid: u32, fd: i32, target: u32 },
    #[error(
        "pid {pid} fd {fd}: the pid of {target} inside the tree's pid namespace (for its pidfd) is not \
         recorded"
    )]
    PidfdTargetOutside { pid: u32, fd: i32, target: u32 },
    #[error(
        "pid {pid}: it shares the {table} of pid {owner}, but is forked by {parent}, which does not have \
         it (a shared table is cloned from the parent)"
    )]
    SharedTableNotParent {
        pid: u32,
        table: &'static str,
        owner: u32,
        parent: u32,
    },

    // --- what this machine lacks -----------------------------------------------------------------------
    #[error(
        "pid {pid}: {count} POSIX timer(s) but this kernel lacks PR_TIMER_CREATE_RESTORE_IDS (Linux \
         6.17+), so their ids cannot be restored: {errno}"
    )]
    TimerIds {
        pid: u32,
        count: usize,
        errno: nix::Error,
    },
    #[error(
        "recreating System V {kind} objects with their ids needs {file}, which this kernel lacks \
         (CONFIG_CHECKPOINT_RESTORE)"
    )]
    IpcNextId {
        kind: &'static str,
        file: &'static str,
    },
}

/// The kinds of [`Unsupported`], without their data: what a test walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnsupportedKind {
    SecondRoot,
    ParentOutside,
    NotDescendants,
    SessionNotReparented,
    RootSessionOutside,
    SessionUnderTwoParents,
    SessionLeaderNotAncestor,
    GroupLeaderForkedLater,
    RootGroupOutside,
    InnerPidMissing,
    InnerTidMissing,
    ZombieInnerPidMissing,
    HelperInnerPidMissing,
    GroupInnerPidMissing,
    /// One kind of `dormant_restorable`'s list.
    Restorable(dormant_restorable::RefusalKind),
    PendingSigtrap,
    PidfdTargetLater,
    PidfdTargetOutside,
    SharedTableNotParent,
    TimerIds,
    IpcNextId,
}

impl UnsupportedKind {
    pub const ALL: [UnsupportedKind; 26] = [
        UnsupportedKind::SecondRoot,
        UnsupportedKind::ParentOutside,
        UnsupportedKind::NotDescendants,
        UnsupportedKind::SessionNotReparented,
        UnsupportedKind::RootSessionOutside,
        UnsupportedKind::SessionUnderTwoParents,
        UnsupportedKind::SessionLeaderNotAncestor,
        UnsupportedKind::GroupLeaderForkedLater,
        UnsupportedKind::RootGroupOutside,
        UnsupportedKind::InnerPidMissing,
        UnsupportedKind::InnerTidMissing,
        UnsupportedKind::ZombieInnerPidMissing,
        UnsupportedKind::HelperInnerPidMissing,
        UnsupportedKind::GroupInnerPidMissing,
        UnsupportedKind::Restorable(RefusalKind::Credentials),
        UnsupportedKind::Restorable(RefusalKind::DeletedDirectory),
        UnsupportedKind::Restorable(RefusalKind::NotCarried),
        UnsupportedKind::Restorable(RefusalKind::Nested),
        UnsupportedKind::Restorable(RefusalKind::MountWithoutPid),
        UnsupportedKind::Restorable(RefusalKind::PidNesting),
        UnsupportedKind::PendingSigtrap,
        UnsupportedKind::PidfdTargetLater,
        UnsupportedKind::PidfdTargetOutside,
        UnsupportedKind::SharedTableNotParent,
        UnsupportedKind::TimerIds,
        UnsupportedKind::IpcNextId,
    ];

    /// Where the refused state is found (see the module docs).
    pub fn found_in(self) -> Found {
        match self {
            UnsupportedKind::TimerIds | UnsupportedKind::IpcNextId => Found::Machine,
            _ => Found::Image,
        }
    }
}

impl Unsupported {
    pub fn kind(&self) -> UnsupportedKind {
        use Unsupported as U;
        use UnsupportedKind as K;
        match self {
            U::SecondRoot { .. } => K::SecondRoot,
            U::ParentOutside { .. } => K::ParentOutside,
            U::NotDescendants { .. } => K::NotDescendants,
            U::SessionNotReparented { .. } => K::SessionNotReparented,
            U::RootSessionOutside { .. } => K::RootSessionOutside,
            U::SessionUnderTwoParents { .. } => K::SessionUnderTwoParents,
            U::SessionLeaderNotAncestor { .. } => K::SessionLeaderNotAncestor,
            U::GroupLeaderForkedLater { .. } => K::GroupLeaderForkedLater,
            U::RootGroupOutside { .. } => K::RootGroupOutside,
            U::InnerPidMissing { .. } => K::InnerPidMissing,
            U::InnerTidMissing { .. } => K::InnerTidMissing,
            U::ZombieInnerPidMissing { .. } => K::ZombieInnerPidMissing,
            U::HelperInnerPidMissing { .. } => K::HelperInnerPidMissing,
            U::GroupInnerPidMissing { .. } => K::GroupInnerPidMissing,
            U::Restorable(r) => K::Restorable(r.kind()),
            U::PendingSigtrap { .. } => K::PendingSigtrap,
            U::PidfdTargetLater { .. } => K::PidfdTargetLater,
            U::PidfdTargetOutside { .. } => K::PidfdTargetOutside,
            U::SharedTableNotParent { .. } => K::SharedTableNotParent,
            U::TimerIds { .. } => K::TimerIds,
            U::IpcNextId { .. } => K::IpcNextId,
        }
    }
}

/// Refusals that are made only after the restoring process changed something (entered a container's
/// namespaces), each with why it cannot come earlier. None of them is about the dumped processes' own
/// state: they compare the image with what the restore finds.
pub const LATE_REFUSALS: [(&str, &str); 3] = [
    (
        "a file changed since the dump (RestoreError::FileChanged)",
        "in a container, a file's path is resolved in the rebuilt mount namespace, which exists only once \
         entered",
    ),
    (
        "a FIFO that already holds bytes, an inotify watch whose path names another inode, a unix name in \
         use (files::FileRestoreError)",
        "found while the description is rebuilt, inside the container's namespaces",
    ),
    (
        "a System V object whose id is taken, a POSIX queue that cannot hold its messages \
         (ns::NsRestoreError)",
        "found while the ipc namespace is recreated (it is new and empty then; only a limit below the \
         image's can refuse)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for k in UnsupportedKind::ALL {
            assert!(seen.insert(k), "{k:?} twice");
        }
    }
}
