//! The check over a tree's facts that makes the refusals ([`Refusal`]), for the dumper and the restorer
//! alike.

use dormant_image::records::{NsKind, TaskNamespaces};

use crate::facts::{Runner, TaskFacts};
use crate::refusal::Refusal;

/// Suffix the kernel appends to the path of a removed directory or file.
const DELETED: &str = " (deleted)";

/// Namespace kinds a container carries for the whole tree (the root's), and that a tree outside a
/// container must share with dormant. Pid namespaces follow `NSpid` (see [`pid_levels`]); a time namespace
/// is carried in both modes, the root's for every task.
const TREE_KINDS: [NsKind; 6] = [
    NsKind::Mnt,
    NsKind::User,
    NsKind::Uts,
    NsKind::Ipc,
    NsKind::Net,
    NsKind::Cgroup,
];

/// Checks a tree (`tasks`, the root first) against everything this release cannot restore, for a restore
/// run by `runner`. Returns the first refusal in tree order.
pub fn check(tasks: &[TaskFacts], runner: &Runner) -> Result<(), Refusal> {
    let Some(root) = tasks.first() else {
        return Ok(());
    };
    let container = root.own_mount_namespace();
    if container && root.ns_pids.len() < 2 {
        return Err(Refusal::MountWithoutPid { pid: root.pid.0 });
    }
    let max_levels = pid_levels(root, container);
    for t in tasks {
        namespaces(t, root, container)?;
        if t.ns_pids.len() > max_levels {
            return Err(Refusal::PidNesting {
                pid: t.pid.0,
                levels: t.ns_pids.iter().map(|p| p.0).collect(),
            });
        }
        for (tid, c) in &t.creds {
            if t.own_user_namespace() {
                crate::creds::check_in_user_namespace(t.pid.0, *tid, c, &runner.creds)?;
            } else {
                crate::creds::check_thread(t.pid.0, *tid, c, &runner.creds)?;
            }
        }
        attributes(t, runner)?;
        // A removed working directory is recreated, entered and removed again; so is a removed root the
        // task works in (`chroot(".")` once it is removed). A removed root with the working directory
        // elsewhere would need the root entered from outside it, which nothing can name any more.
        if t.root.ends_with(DELETED) && t.cwd != t.root {
            return Err(Refusal::DeletedDirectory {
                pid: t.pid.0,
                path: t.root.trim_end_matches(DELETED).to_string(),
            });
        }
    }
    Ok(())
}

/// CAP_SYS_ADMIN and CAP_SYS_RESOURCE (`<linux/capability.h>`).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;

/// seccomp, scheduling policy and OOM score adjustment of task `t`, restored by `runner`.
fn attributes(t: &TaskFacts, runner: &Runner) -> Result<(), Refusal> {
    let pid = t.pid.0;
    if let Some(s) = &t.seccomp {
        if s.has_user_notif() {
            return Err(Refusal::SeccompNotify { pid });
        }
        if runner.creds.cap_eff & (1 << CAP_SYS_ADMIN) == 0 {
            return Err(Refusal::SeccompPrivilege { pid });
        }
    }
    const SCHED_DEADLINE: u32 = 6;
    if let Some(&(tid, _)) = t.sched_policies.iter().find(|(_, p)| *p == SCHED_DEADLINE) {
        return Err(Refusal::SchedDeadline { pid, tid });
    }
    match t.oom_score_adj {
        Some(value)
            if value < runner.oom_score_adj
                && runner.creds.cap_eff & (1 << CAP_SYS_RESOURCE) == 0 =>
        {
            Err(Refusal::OomScoreAdj {
                pid,
                value,
                runner: runner.oom_score_adj,
            })
        }
        _ => Ok(()),
    }
}

/// How many `NSpid` levels a task of the tree may have: two in a container (its own pid namespace, one
/// level below dormant's) or when the root is the init of a pid namespace one level down; one otherwise.
fn pid_levels(root: &TaskFacts, container: bool) -> usize {
    let root_is_init = matches!(root.ns_pids.as_slice(), [_, one] if one.0 == 1);
    if container || root_is_init {
        2
    } else {
        1
    }
}

/// The namespace rule for task `t` of a tree whose root is `root`.
fn namespaces(t: &TaskFacts, root: &TaskFacts, container: bool) -> Result<(), Refusal> {
    match (&t.namespaces, &root.namespaces) {
        (Some(task), Some(root)) => check_namespaces(task, root, container),
        // Namespaces not recorded (an image of a tree outside any container): only the pid levels tell.
        _ => Ok(()),
    }
}

/// The namespace rule for one task (`task`) of a tree whose root task is in `root`'s namespaces:
/// `container` (the root is in a mount namespace other than dormant's) carries the root's namespaces and
/// needs every task in them; otherwise every task must be in dormant's, but for mount namespaces, which a
/// plain tree carries (pid namespaces are judged by `NSpid` in [`check`]). Either way every task must be in the root's time namespace (its own or dormant's),
/// which the restore recreates with its clock offsets.
pub fn check_namespaces(
    task: &TaskNamespaces,
    root: &TaskNamespaces,
    container: bool,
) -> Result<(), Refusal> {
    let pid = task.pid.0;
    if task.get(NsKind::Time).map(|n| n.id) != root.get(NsKind::Time).map(|n| n.id) {
        return Err(Refusal::Nested {
            pid,
            kind: NsKind::Time.proc_name(),
            root: root.pid.0,
        });
    }
    for kind in TREE_KINDS {
        let mine = task.get(kind);
        if container {
            if mine.map(|n| n.id) != root.get(kind).map(|n| n.id) {
                return Err(Refusal::Nested {
                    pid,
                    kind: kind.proc_name(),
                    root: root.pid.0,
                });
            }
        } else if kind != NsKind::Mnt && mine.is_some_and(|n| !n.external) {
            // A mount namespace of its own is carried in a plain tree (`nested-mntns`).
            return Err(Refusal::NotCarried {
                pid,
                kind: kind.proc_name(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::refusal::RefusalKind;
    use dormant_image::records::{Creds, NsId, NsRef, Pid};

    fn root_creds() -> Creds {
        Creds {
            cap_prm: 0x1ff_feff_ffff,
            cap_eff: 0x1ff_feff_ffff,
            cap_bnd: 0x1ff_feff_ffff,
            securebits: Some(0),
            ..Creds::default()
        }
    }

    fn task(pid: u32, ns_pids: &[u32], own: &[(NsKind, u64)]) -> TaskFacts {
        let namespaces = NsKind::ALL
            .iter()
            .map(|&kind| {
                let mine = own.iter().find(|(k, _)| *k == kind);
                NsRef {
                    kind,
                    id: NsId(mine.map_or(1000 + kind as u64, |(_, id)| *id)),
                    external: mine.is_none(),
                }
            })
            .collect();
        TaskFacts {
            pid: Pid(pid),
            creds: vec![(pid, root_creds())],
            cwd: "/".into(),
            root: "/".into(),
            ns_pids: ns_pids.iter().copied().map(Pid).collect(),
            namespaces: Some(TaskNamespaces {
                pid: Pid(pid),
                namespaces,
            }),
            seccomp: None,
            sched_policies: Vec::new(),
            oom_score_adj: None,
        }
    }

    fn kind_of(tasks: &[TaskFacts]) -> Option<RefusalKind> {
        check(
            tasks,
            &Runner {
                creds: root_creds(),
                oom_score_adj: 0,
            },
        )
        .err()
        .map(|r| r.kind())
    }

    #[test]
    fn plain_trees() {
        assert_eq!(kind_of(&[task(10, &[10], &[])]), None);
        assert_eq!(
            kind_of(&[task(10, &[10], &[(NsKind::Uts, 5)])]),
            Some(RefusalKind::NotCarried)
        );
        // A child's mount namespace of its own is carried (`nested-mntns`), other kinds are not.
        assert_eq!(
            kind_of(&[task(10, &[10], &[]), task(11, &[11], &[(NsKind::Mnt, 5)])]),
            None
        );
        // A time namespace of its own is carried; a child in another one than the root's is not.
        assert_eq!(kind_of(&[task(10, &[10], &[(NsKind::Time, 5)])]), None);
        assert_eq!(
            kind_of(&[
                task(10, &[10], &[(NsKind::Time, 5)]),
                task(11, &[11], &[(NsKind::Time, 6)])
            ]),
            Some(RefusalKind::Nested)
        );
        // The init of a pid namespace one level down, with a child in it.
        let pidns = [(NsKind::Pid, 7)];
        assert_eq!(
            kind_of(&[task(10, &[10, 1], &pidns), task(11, &[11, 2], &pidns)]),
            None
        );
        // A child in a pid namespace of its own below a root in dormant's.
        assert_eq!(
            kind_of(&[task(10, &[10], &[]), task(11, &[11, 1], &pidns)]),
            Some(RefusalKind::PidNesting)
        );
    }

    #[test]
    fn containers() {
        let ctr = [(NsKind::Mnt, 3), (NsKind::Pid, 4), (NsKind::Uts, 5)];
        assert_eq!(
            kind_of(&[task(10, &[10, 1], &ctr), task(11, &[11, 2], &ctr)]),
            None
        );
        let mut nested = ctr.to_vec();
        nested[2] = (NsKind::Uts, 6);
        assert_eq!(
            kind_of(&[task(10, &[10, 1], &ctr), task(11, &[11, 2], &nested)]),
            Some(RefusalKind::Nested)
        );
        assert_eq!(
            kind_of(&[task(10, &[10], &[(NsKind::Mnt, 3)])]),
            Some(RefusalKind::MountWithoutPid)
        );
        assert_eq!(
            kind_of(&[task(10, &[10, 1], &ctr), task(11, &[11, 2, 1], &ctr)]),
            Some(RefusalKind::PidNesting)
        );
    }

    #[test]
    fn credentials_and_directories() {
        let root = Runner {
            creds: root_creds(),
            oom_score_adj: 0,
        };
        // Another user with fewer capabilities: restored.
        let mut t = task(10, &[10], &[]);
        t.creds[0].1.uids = [65534; 4];
        t.creds[0].1.cap_prm = 0;
        assert_eq!(kind_of(&[t.clone()]), None);
        // A second thread holding a capability dormant lacks (24, CAP_SYS_RESOURCE): refused by its tid.
        let mut more = root_creds();
        more.cap_prm |= 1 << 24;
        t.creds.push((11, more));
        let r = check(&[t], &root).unwrap_err();
        assert_eq!(r.kind(), RefusalKind::Credentials);
        assert!(r.to_string().contains("pid 10 thread 11"), "{r}");
        // In a user namespace of its own, the ids must be dormant's.
        let mut t = task(10, &[10], &[(NsKind::User, 9)]);
        t.creds[0].1.uids = [1000; 4];
        assert!(crate::creds::check_in_user_namespace(10, 10, &t.creds[0].1, &root.creds).is_err());
        // A removed working directory is restored, and so is a removed root the task works in.
        let mut t = task(10, &[10], &[]);
        t.cwd = "/tmp/gone (deleted)".into();
        assert_eq!(kind_of(&[t.clone()]), None);
        t.root = t.cwd.clone();
        assert_eq!(kind_of(&[t.clone()]), None);
        // A removed root with the working directory elsewhere is not.
        t.cwd = "/tmp".into();
        let r = check(&[t], &root).unwrap_err();
        assert_eq!(
            r,
            Refusal::DeletedDirectory {
                pid: 10,
                path: "/tmp/gone".into()
            }
        );
        // An image of a tree outside a container records no namespaces: nothing to refuse there.
        let mut t = task(10, &[10], &[]);
        t.namespaces = None;
        assert_eq!(kind_of(&[t]), None);
    }

    /// A user-notification filter, seccomp without CAP_SYS_ADMIN, SCHED_DEADLINE and an OOM score
    /// adjustment below dormant's without CAP_SYS_RESOURCE are refused; the same task without them passes.
    #[test]
    fn attributes() {
        use dormant_image::records::{
            BpfInsn, SeccompFilter, SeccompMode, TaskSeccomp, ThreadSeccomp, Tid,
        };
        let root = Runner {
            creds: root_creds(),
            oom_score_adj: 0,
        };
        let filter = |k: u32| TaskSeccomp {
            pid: Pid(10),
            filters: vec![SeccompFilter {
                prev: None,
                flags: 0,
                insns: vec![BpfInsn {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k,
                }],
            }],
            threads: vec![ThreadSeccomp {
                tid: Tid(10),
                mode: SeccompMode::Filter { last: 0 },
            }],
        };
        let mut t = task(10, &[10], &[]);
        t.seccomp = Some(filter(0x7fff_0000));
        t.sched_policies = vec![(10, 1)];
        t.oom_score_adj = Some(500);
        assert_eq!(check(&[t.clone()], &root), Ok(()));
        let mut bad = t.clone();
        bad.seccomp = Some(filter(0x7fc0_0000));
        assert_eq!(kind_of(&[bad]), Some(RefusalKind::SeccompNotify));
        let mut weak = root.clone();
        weak.creds.cap_eff &= !(1 << CAP_SYS_ADMIN);
        assert_eq!(
            check(&[t.clone()], &weak).map_err(|r| r.kind()),
            Err(RefusalKind::SeccompPrivilege)
        );
        let mut bad = t.clone();
        bad.sched_policies.push((11, 6));
        assert_eq!(
            check(&[bad], &root),
            Err(Refusal::SchedDeadline { pid: 10, tid: 11 })
        );
        let mut bad = t;
        bad.oom_score_adj = Some(-1);
        assert_eq!(kind_of(&[bad.clone()]), Some(RefusalKind::OomScoreAdj));
        let mut strong = root;
        strong.creds.cap_eff |= 1 << CAP_SYS_RESOURCE;
        assert_eq!(check(&[bad], &strong), Ok(()));
    }

    #[test]
    fn every_kind_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for k in RefusalKind::ALL {
            assert!(seen.insert(k), "{k:?} twice");
        }
    }
}
