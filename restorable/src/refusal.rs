//! The refusals: what this release cannot restore, with the message both sides give ([`crate::check`]
//! makes them).

/// State this release cannot restore. The message is the same whether the dump or the restore finds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("pid {pid} thread {tid}: {reason}; a restore could not give it its credentials")]
    Credentials { pid: u32, tid: u32, reason: String },
    #[error(
        "pid {pid}: its root directory {path} was removed and its working directory is elsewhere; a removed \
         root is only restored when the task works in it"
    )]
    DeletedDirectory {
        pid: u32,
        /// The removed root directory, without the kernel's " (deleted)".
        path: String,
    },
    #[error(
        "pid {pid} is in a {kind} namespace other than dormant's; a tree outside a container (one that \
         shares dormant's mount namespace) is restored into dormant's namespaces, where it would lose it"
    )]
    NotCarried { pid: u32, kind: &'static str },
    #[error(
        "pid {pid} is in another {kind} namespace than the root task {root}; namespaces created inside the \
         tree are not restored (but mount namespaces in a tree outside a container)"
    )]
    Nested {
        pid: u32,
        kind: &'static str,
        root: u32,
    },
    #[error(
        "pid {pid} is in a mount namespace of its own but in dormant's pid namespace: a tree in its own \
         mount namespace is restored as a container, in a new pid namespace, where pid {pid} cannot be kept"
    )]
    MountWithoutPid { pid: u32 },
    /// `levels`: the task's pid in each pid namespace, dormant's first (`NSpid`).
    #[error(
        "pid {pid}: nested pid namespaces {levels:?} (only one level below dormant's, for a tree whose root \
         is the init of its own pid namespace or a container)"
    )]
    PidNesting { pid: u32, levels: Vec<u32> },
    #[error(
        "pid {pid}: a seccomp filter hands syscalls to a user-space supervisor (SECCOMP_RET_USER_NOTIF), \
         whose listener is not carried"
    )]
    SeccompNotify { pid: u32 },
    #[error(
        "pid {pid}: it runs under seccomp, and installing its filters with the restorer unfiltered \
         (PTRACE_O_SUSPEND_SECCOMP) needs CAP_SYS_ADMIN, which dormant lacks"
    )]
    SeccompPrivilege { pid: u32 },
    #[error(
        "pid {pid} thread {tid}: SCHED_DEADLINE is not restored (a deadline task cannot create the \
         threads a restore creates, and its bandwidth is admitted per machine)"
    )]
    SchedDeadline { pid: u32, tid: u32 },
    #[error(
        "pid {pid}: oom_score_adj {value} is below dormant's {runner}, and lowering it needs \
         CAP_SYS_RESOURCE, which dormant lacks"
    )]
    OomScoreAdj { pid: u32, value: i32, runner: i32 },
}

/// The kinds of [`Refusal`], without their data: what a test walks to show every refusal is made by the
/// dump first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalKind {
    Credentials,
    DeletedDirectory,
    NotCarried,
    Nested,
    MountWithoutPid,
    PidNesting,
    SeccompNotify,
    SeccompPrivilege,
    SchedDeadline,
    OomScoreAdj,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 10] = [
        RefusalKind::Credentials,
        RefusalKind::DeletedDirectory,
        RefusalKind::NotCarried,
        RefusalKind::Nested,
        RefusalKind::MountWithoutPid,
        RefusalKind::PidNesting,
        RefusalKind::SeccompNotify,
        RefusalKind::SeccompPrivilege,
        RefusalKind::SchedDeadline,
        RefusalKind::OomScoreAdj,
    ];
}

impl Refusal {
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Credentials { .. } => RefusalKind::Credentials,
            Refusal::DeletedDirectory { .. } => RefusalKind::DeletedDirectory,
            Refusal::NotCarried { .. } => RefusalKind::NotCarried,
            Refusal::Nested { .. } => RefusalKind::Nested,
            Refusal::MountWithoutPid { .. } => RefusalKind::MountWithoutPid,
            Refusal::PidNesting { .. } => RefusalKind::PidNesting,
            Refusal::SeccompNotify { .. } => RefusalKind::SeccompNotify,
            Refusal::SeccompPrivilege { .. } => RefusalKind::SeccompPrivilege,
            Refusal::SchedDeadline { .. } => RefusalKind::SchedDeadline,
            Refusal::OomScoreAdj { .. } => RefusalKind::OomScoreAdj,
        }
    }

    /// The task the refusal is about.
    pub fn pid(&self) -> u32 {
        match self {
            Refusal::Credentials { pid, .. }
            | Refusal::DeletedDirectory { pid, .. }
            | Refusal::NotCarried { pid, .. }
            | Refusal::Nested { pid, .. }
            | Refusal::MountWithoutPid { pid }
            | Refusal::PidNesting { pid, .. }
            | Refusal::SeccompNotify { pid }
            | Refusal::SeccompPrivilege { pid }
            | Refusal::SchedDeadline { pid, .. }
            | Refusal::OomScoreAdj { pid, .. } => *pid,
        }
    }
}
