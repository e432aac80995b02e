//! The shape of a restored process tree: in which order processes are forked, how each one gets its
//! session and process group, and which helper processes stand in for leaders that no longer exist.
//!
//! Every process is forked by its own restored parent, so parent links (and ppids) come out right by
//! construction. Sessions and groups are recreated, not copied: a session leader calls `setsid()` before it
//! forks its members; a group leader calls `setpgid(0, 0)` before it forks; a member of a group that
//! already exists (its leader, or any earlier member, is forked before it) joins it with
//! `setpgid(0, pgid)`. Among siblings session leaders are forked first, then group leaders, then the rest
//! (each sibling's whole subtree is in place before the next sibling is forked).
//!
//! Leaders that are gone (exited and reaped, so not even a zombie is left) are stood in for by helpers:
//! short-lived processes forked with the leader's pid that exit before the restore ends.
//! - A session helper: a task whose session is neither its own nor its parent's and whose leader is not in
//!   the tree was reparented: its session leader (or an intermediate parent) exited and the orphan went to
//!   the nearest child subreaper, which is its dumped parent `P`. The helper is forked by `P` with the
//!   session's id as pid, calls `setsid()`, forks every such child of `P` in that session, and exits; its
//!   children are reparented to `P` again, which therefore must be a child subreaper while it forks
//!   (`Planned::subreaper_first`) or the init of the tree's pid namespace. `P`'s other children in that
//!   session are forked by the same helper; children of two different parents in one leaderless session
//!   are refused (one pid, one helper).
//! - A group helper: the first task (in fork order) of a process group whose leader is not in the tree
//!   forks, before it joins the group, a helper with the group's id as pid that calls `setpgid(0, 0)` and
//!   exits; the task then joins the group (the helper, a zombie until reaped, still holds it) and reaps the
//!   helper. Later members join the group the first one keeps alive.
//!
//! Leaders that are zombies hold their session or group as they are: a zombie is forked like a live task,
//! takes its session or group and exits. A member of a group led by a zombie joins it (the zombie is forked
//! first, among its siblings, as a group leader). A member of a session led by a zombie that is not its
//! ancestor was reparented when the leader exited: to its dumped parent `P`, which is the nearest child
//! subreaper above the leader or the init of the tree's pid namespace. The zombie forks it (it is in the
//! session by birth) before it exits, and it is reparented to `P` again (`P` is a subreaper while it forks,
//! like a session helper's parent).
//!
//! Processes that share an fd table or an fs struct (`shared-tables`) get it by birth: each is cloned by
//! its parent with `CLONE_FILES`/`CLONE_FS` ([`shares`]), so the parent must have the same table (be its
//! owner, the first process of the tree that has it, or share it in turn). The owner puts the fds (or
//! cwd, root, umask) in place once; the others leave them alone ([`Shares`]).
//!
//! What it does NOT do: restore a process sharing a table its restored parent does not have (refused:
//! the dump refuses it first when the dumped parent lacks it; a session helper or zombie leader as the
//! forking parent is found only here); restore a root whose session or group is led from outside the tree other than by
//! inheriting the restorer's (the root's own parent is the restorer); a task born in a session its parent
//! left later (CRIU's "born sid"), or a session led by a live task that is not its ancestor; helpers inside
//! a nested pid namespace (their inner pids are not recorded).

use std::collections::{BTreeMap, BTreeSet};

use dormant_image::records::{Pid, SharedTables, Zombie};

use crate::error::RestoreError;
use crate::launch::{SessionPlan, Shares};
use crate::refusal::Unsupported;

/// One process of the tree as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub pid: u32,
    /// `None` for the root.
    pub ppid: Option<u32>,
    pub pgid: u32,
    pub sid: u32,
    pub zombie: bool,
    /// Orphans of its descendants were reparented to it: it was a child subreaper at dump time, or it is
    /// the init of the tree's pid namespace (then `ns_init` too).
    pub reaper: bool,
    /// The init of the restored tree's pid namespace: reaps orphans without being a subreaper.
    pub ns_init: bool,
}

impl Member {
    pub fn zombie(z: &Zombie) -> Self {
        Member {
            pid: z.pid.0,
            ppid: Some(z.ppid.0),
            pgid: z.pgid.0,
            sid: z.sid.0,
            zombie: true,
            reaper: false,
            ns_init: false,
        }
    }

    pub fn live(pid: Pid, ppid: Option<Pid>, pgid: Pid, sid: Pid) -> Self {
        Member {
            pid: pid.0,
            ppid: ppid.map(|p| p.0),
            pgid: pgid.0,
            sid: sid.0,
            zombie: false,
            reaper: false,
            ns_init: false,
        }
    }

    /// Marks a process that was a child subreaper at dump time (`TaskCore::child_subreaper`).
    pub fn subreaper(mut self, yes: bool) -> Self {
        self.reaper |= yes;
        self
    }

    /// Marks the root as the init of the tree's own pid namespace.
    pub fn ns_init(mut self, yes: bool) -> Self {
        self.ns_init = yes;
        self.reaper |= yes;
        self
    }
}

/// What a planned process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// A process of the image: its index in the planner's input.
    Member(usize),
    /// A stand-in for the gone leader of session `sid` (its pid): `setsid()`, forks its children, exits.
    SessionHelper { sid: u32 },
    /// A stand-in for the gone leader of group `pgid` (its pid), forked by the group's first member before
    /// that member joins: `setpgid(0, 0)`, exits.
    GroupHelper { pgid: u32 },
}

impl Node {
    pub fn helper_pid(&self) -> Option<u32> {
        match *self {
            Node::Member(_) => None,
            Node::SessionHelper { sid } => Some(sid),
            Node::GroupHelper { pgid } => Some(pgid),
        }
    }
}

/// A planned process: what it is, its parent's position in the plan, its session plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub node: Node,
    pub parent: Option<usize>,
    pub session: SessionPlan,
    /// It must be a child subreaper before it forks its children: a session helper among them exits and
    /// its children must come back to it.
    pub subreaper_first: bool,
}

/// A process to fork: a member of the image or a session helper (group helpers are added while the
/// sessions are planned, right after the member that forks them).
#[derive(Debug, Clone, Copy)]
struct Vertex {
    pid: u32,
    pgid: u32,
    sid: u32,
    zombie: bool,
    ns_init: bool,
    node: Node,
    parent: Option<usize>,
    /// Orphans must come back to it while it forks: a session helper or a zombie session leader among its
    /// descendants forks children of its and exits.
    reaps_orphans: bool,
}

impl Vertex {
    /// Session leaders first, then group leaders, then the rest; live before zombies; then by pid.
    fn fork_rank(&self) -> (u8, bool, u32) {
        let rank = if self.sid == self.pid {
            0
        } else if self.pgid == self.pid {
            1
        } else {
            2
        };
        (rank, self.zombie, self.pid)
    }
}

/// Orders `members` (`members[0]` is the root) for forking, inserts helpers for leaders that are gone, and
/// decides each process's session plan. Every parent comes before its children in the result.
pub fn plan(members: &[Member]) -> Result<Vec<Planned>, RestoreError> {
    let Some(root) = members.first() else {
        return Ok(Vec::new());
    };
    let vs = vertices(members)?;
    let order = fork_order(&vs);
    if order.len() != vs.len() {
        return Err(Unsupported::NotDescendants {
            count: vs.len() - order.len(),
            root: root.pid,
        }
        .into());
    }
    session_plans(root, &vs, &order)
}

/// Every member with its parent, plus a session helper under the parent of the members of each session
/// whose leader is gone (see the module docs).
fn vertices(members: &[Member]) -> Result<Vec<Vertex>, RestoreError> {
    let root = &members[0];
    let index_of: BTreeMap<u32, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.pid, i))
        .collect();
    let mut vs: Vec<Vertex> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Vertex {
            pid: m.pid,
            pgid: m.pgid,
            sid: m.sid,
            zombie: m.zombie,
            ns_init: m.ns_init,
            node: Node::Member(i),
            parent: None,
            reaps_orphans: false,
        })
        .collect();
    let mut session_helpers: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, m) in members.iter().enumerate().skip(1) {
        let pp = m.ppid.ok_or(Unsupported::SecondRoot { pid: m.pid })?;
        let Some(&pi) = index_of.get(&pp) else {
            return Err(Unsupported::ParentOutside {
                pid: m.pid,
                parent: pp,
                root: root.pid,
            }
            .into());
        };
        let parent = &members[pi];
        let mut pv = pi;
        if m.sid != m.pid && m.sid != parent.sid {
            pv = match index_of.get(&m.sid) {
                // A session whose leader is a zombie of the tree: the leader forks the member before it
                // exits, and the member is reparented to the reaper of the leader's orphans, its parent.
                Some(&z) if members[z].zombie && reaper_of(members, &index_of, z) == Some(pi) => z,
                // Led by a live process of the tree: refused when its session is planned.
                Some(_) => pi,
                None => {
                    if !parent.reaper {
                        return Err(Unsupported::SessionNotReparented {
                            pid: m.pid,
                            sid: m.sid,
                            parent: pp,
                        }
                        .into());
                    }
                    if m.sid == root.sid {
                        return Err(Unsupported::RootSessionOutside {
                            pid: m.pid,
                            sid: m.sid,
                        }
                        .into());
                    }
                    session_helper(&mut vs, &mut session_helpers, m.sid, pi)?
                }
            };
            if pv != pi {
                vs[pi].reaps_orphans = true;
            }
        }
        vs[i].parent = Some(pv);
    }
    Ok(vs)
}

/// The member that the orphans of member `z` are reparented to: its nearest ancestor that is a child
/// subreaper or the init of the tree's pid namespace.
fn reaper_of(members: &[Member], index_of: &BTreeMap<u32, usize>, z: usize) -> Option<usize> {
    let mut at = members[z].ppid.and_then(|p| index_of.get(&p).copied());
    while let Some(a) = at {
        if members[a].reaper {
            return Some(a);
        }
        at = members[a].ppid.and_then(|p| index_of.get(&p).copied());
    }
    None
}

/// The session helper of session `sid` under vertex `parent`, added on first use.
fn session_helper(
    vs: &mut Vec<Vertex>,
    helpers: &mut BTreeMap<u32, usize>,
    sid: u32,
    parent: usize,
) -> Result<usize, RestoreError> {
    match helpers.get(&sid) {
        Some(&h) if vs[h].parent == Some(parent) => Ok(h),
        Some(&h) => {
            let other = vs[h].parent.map_or(0, |p| vs[p].pid);
            Err(Unsupported::SessionUnderTwoParents {
                sid,
                first: other,
                second: vs[parent].pid,
            }
            .into())
        }
        None => {
            vs.push(Vertex {
                pid: sid,
                pgid: sid,
                sid,
                zombie: false,
                ns_init: false,
                node: Node::SessionHelper { sid },
                parent: Some(parent),
                reaps_orphans: false,
            });
            helpers.insert(sid, vs.len() - 1);
            Ok(vs.len() - 1)
        }
    }
}

/// Depth-first preorder from the root: a parent before its children, a sibling's subtree before the next
/// sibling, siblings by [`Vertex::fork_rank`]. Each entry is a vertex and its parent's position.
fn fork_order(vs: &[Vertex]) -> Vec<(usize, Option<usize>)> {
    let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (v, x) in vs.iter().enumerate() {
        if let Some(p) = x.parent {
            children.entry(p).or_default().push(v);
        }
    }
    for list in children.values_mut() {
        list.sort_by_key(|&v| vs[v].fork_rank());
    }
    let mut order: Vec<(usize, Option<usize>)> = Vec::with_capacity(vs.len());
    let mut stack: Vec<(usize, Option<usize>)> = vec![(0, None)];
    while let Some((v, parent_pos)) = stack.pop() {
        let pos = order.len();
        order.push((v, parent_pos));
        if let Some(kids) = children.get(&v) {
            for &k in kids.iter().rev() {
                stack.push((k, Some(pos)));
            }
        }
    }
    order
}

/// The plan in fork order: each process's session plan, with a group helper right after the member that
/// forks it.
fn session_plans(
    root: &Member,
    vs: &[Vertex],
    order: &[(usize, Option<usize>)],
) -> Result<Vec<Planned>, RestoreError> {
    let member_pos: BTreeMap<u32, usize> = order
        .iter()
        .enumerate()
        .filter(|(_, &(v, _))| matches!(vs[v].node, Node::Member(_)))
        .map(|(pos, &(v, _))| (vs[v].pid, pos))
        .collect();
    // Groups that exist once the process at a position is forked (each earlier process has taken its
    // group before forking anything): a member of one of them joins it.
    let mut groups: BTreeSet<u32> = BTreeSet::new();
    let root_leads_group = root.pgid == root.pid || root.sid == root.pid;
    let root_group_outside = (!root_leads_group).then_some(root.pgid);
    let mut out: Vec<Planned> = Vec::with_capacity(order.len());
    let mut new_pos = vec![0usize; order.len()];
    for (pos, &(v, parent_pos)) in order.iter().enumerate() {
        let me = vs[v];
        let parent = parent_pos.map(|pp| (new_pos[pp], vs[order[pp].0]));
        new_pos[pos] = out.len();
        let (session, group_helper) = match parent {
            None => (SessionPlan::for_ids(me.pid, me.pgid, me.sid), None),
            Some((_, p)) => session_of(&me, &p, &groups, &member_pos, pos, root_group_outside)?,
        };
        out.push(Planned {
            node: me.node,
            parent: parent.map(|(np, _)| np),
            session,
            // The init of the tree's pid namespace reaps orphans without being a subreaper.
            subreaper_first: me.reaps_orphans && !me.ns_init,
        });
        if let Some(pgid) = group_helper {
            out.push(Planned {
                node: Node::GroupHelper { pgid },
                parent: Some(new_pos[pos]),
                session: SessionPlan::NewGroup,
                subreaper_first: false,
            });
        }
        if parent.is_some() || root_leads_group {
            groups.insert(me.pgid);
        }
    }
    Ok(out)
}

/// The session plan of `me` (not the root), and the pid of a group helper it must fork first, if any.
fn session_of(
    me: &Vertex,
    parent: &Vertex,
    groups: &BTreeSet<u32>,
    member_pos: &BTreeMap<u32, usize>,
    pos: usize,
    root_group_outside: Option<u32>,
) -> Result<(SessionPlan, Option<u32>), RestoreError> {
    if me.sid == me.pid {
        return Ok((SessionPlan::NewSession, None));
    }
    if me.sid != parent.sid {
        return Err(Unsupported::SessionLeaderNotAncestor {
            pid: me.pid,
            sid: me.sid,
            parent: parent.pid,
        }
        .into());
    }
    if me.pgid == me.pid {
        return Ok((SessionPlan::NewGroup, None));
    }
    if me.pgid == parent.pgid {
        return Ok((SessionPlan::Inherit, None));
    }
    if groups.contains(&me.pgid) {
        return Ok((SessionPlan::JoinGroup(me.pgid), None));
    }
    if member_pos.get(&me.pgid).is_some_and(|&l| l > pos) {
        return Err(Unsupported::GroupLeaderForkedLater {
            pid: me.pid,
            pgid: me.pgid,
        }
        .into());
    }
    if root_group_outside == Some(me.pgid) {
        return Err(Unsupported::RootGroupOutside {
            pid: me.pid,
            pgid: me.pgid,
        }
        .into());
    }
    Ok((SessionPlan::JoinGroup(me.pgid), Some(me.pgid)))
}

/// The tables each planned process shares with its parent (see the module docs), in plan order; refuses
/// a sharer whose parent in the plan does not have the table.
pub fn shares(
    entries: &[SharedTables],
    members: &[Member],
    planned: &[Planned],
) -> Result<Vec<Shares>, RestoreError> {
    let pid_at = |i: usize| match planned[i].node {
        Node::Member(m) => members.get(m).filter(|m| !m.zombie).map(|m| m.pid),
        _ => None,
    };
    let mut out = Vec::with_capacity(planned.len());
    for (i, p) in planned.iter().enumerate() {
        let Some(pid) = pid_at(i) else {
            out.push(Shares::default());
            continue;
        };
        let own = SharedTables::of(entries, Pid(pid));
        let parent = p.parent.and_then(pid_at);
        let theirs = parent.map(|pp| SharedTables::of(entries, Pid(pp)));
        let mut shares = Shares::default();
        for (table, id, parent_id, flag) in [
            (
                "fd table",
                own.files,
                theirs.map(|t| t.files),
                &mut shares.files,
            ),
            ("fs struct", own.fs, theirs.map(|t| t.fs), &mut shares.fs),
        ] {
            if id.0 == pid {
                continue;
            }
            if parent_id != Some(id) {
                return Err(Unsupported::SharedTableNotParent {
                    pid,
                    table,
                    owner: id.0,
                    parent: p
                        .parent
                        .and_then(|pp| planned[pp].node.helper_pid())
                        .or(parent)
                        .unwrap_or(0),
                }
                .into());
            }
            *flag = true;
        }
        out.push(shares);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(pid: u32, ppid: Option<u32>, pgid: u32, sid: u32) -> Member {
        Member::live(Pid(pid), ppid.map(Pid), Pid(pgid), Pid(sid))
    }

    /// (pid, parent pid, session plan, subreaper_first) of every planned process, in order.
    fn shape(members: &[Member], plan: &[Planned]) -> Vec<(u32, Option<u32>, SessionPlan, bool)> {
        let pid = |p: &Planned| match p.node {
            Node::Member(i) => members[i].pid,
            other => other.helper_pid().unwrap_or(0),
        };
        plan.iter()
            .map(|p| {
                (
                    pid(p),
                    p.parent.map(|pp| pid(&plan[pp])),
                    p.session,
                    p.subreaper_first,
                )
            })
            .collect()
    }

    #[test]
    fn session_leader_with_two_groups_and_a_grandchild() {
        // 100 leads session and group; 101 leads group 101 with member 103 (its child) and 102 (a sibling,
        // listed first in the image); 104 is a zombie in group 100.
        let members = [
            live(100, None, 100, 100),
            live(102, Some(100), 101, 100),
            live(101, Some(100), 101, 100),
            live(103, Some(101), 101, 100),
            Member {
                zombie: true,
                ..live(104, Some(100), 100, 100)
            },
        ];
        let plan = plan(&members).unwrap();
        assert!(plan.iter().all(|p| matches!(p.node, Node::Member(_))));
        assert_eq!(
            shape(&members, &plan),
            [
                (100, None, SessionPlan::NewSession, false),
                (101, Some(100), SessionPlan::NewGroup, false),
                (103, Some(101), SessionPlan::Inherit, false),
                (102, Some(100), SessionPlan::JoinGroup(101), false),
                (104, Some(100), SessionPlan::Inherit, false),
            ]
        );
    }

    #[test]
    fn gone_group_leader_gets_a_helper_forked_by_its_first_member() {
        // Group 50 (leader gone) has two members, children of the subreaper root 10: the first forks the
        // helper 50 before it joins, the second joins the group the first keeps alive.
        let members = [
            live(10, None, 10, 10).subreaper(true),
            live(52, Some(10), 50, 10),
            live(51, Some(10), 50, 10),
            live(53, Some(51), 50, 10),
        ];
        let plan = plan(&members).unwrap();
        assert_eq!(
            shape(&members, &plan),
            [
                (10, None, SessionPlan::NewSession, false),
                (51, Some(10), SessionPlan::JoinGroup(50), false),
                (50, Some(51), SessionPlan::NewGroup, false),
                (53, Some(51), SessionPlan::Inherit, false),
                (52, Some(10), SessionPlan::JoinGroup(50), false),
            ]
        );
        assert_eq!(plan[2].node, Node::GroupHelper { pgid: 50 });
    }

    #[test]
    fn gone_session_leader_gets_a_helper_under_the_subreaper() {
        // Session 60 (leader gone, double fork): 61 (group 60) and 62 (own group, with child 63) were
        // reparented to the subreaper root 10; 64 is an ordinary child of the root.
        let members = [
            live(10, None, 10, 10).subreaper(true),
            live(64, Some(10), 10, 10),
            live(62, Some(10), 62, 60),
            live(61, Some(10), 60, 60),
            live(63, Some(62), 62, 60),
        ];
        let plan = plan(&members).unwrap();
        assert_eq!(
            shape(&members, &plan),
            [
                (10, None, SessionPlan::NewSession, true),
                (60, Some(10), SessionPlan::NewSession, false),
                (62, Some(60), SessionPlan::NewGroup, false),
                (63, Some(62), SessionPlan::Inherit, false),
                (61, Some(60), SessionPlan::Inherit, false),
                (64, Some(10), SessionPlan::Inherit, false),
            ]
        );
        assert_eq!(plan[1].node, Node::SessionHelper { sid: 60 });
        // The init of the tree's pid namespace reaps orphans without being a subreaper.
        let mut in_ns = members;
        in_ns[0] = live(10, None, 10, 10).ns_init(true);
        let plan = super::plan(&in_ns).unwrap();
        assert!(!plan[0].subreaper_first);
        assert_eq!(plan[1].node, Node::SessionHelper { sid: 60 });
    }

    #[test]
    fn a_session_helper_and_a_group_helper_inside_its_session() {
        // Session 70 gone; its member 71 (reparented to the root) is in group 72, whose leader is gone too.
        let members = [
            live(10, None, 10, 10).subreaper(true),
            live(71, Some(10), 72, 70),
        ];
        let plan = plan(&members).unwrap();
        assert_eq!(
            shape(&members, &plan),
            [
                (10, None, SessionPlan::NewSession, true),
                (70, Some(10), SessionPlan::NewSession, false),
                (71, Some(70), SessionPlan::JoinGroup(72), false),
                (72, Some(71), SessionPlan::NewGroup, false),
            ]
        );
    }

    #[test]
    fn refuses_what_a_helper_cannot_recreate() {
        // Not a subreaper: the child cannot have been reparented to it.
        let members = [live(10, None, 10, 10), live(11, Some(10), 11, 98)];
        let err = plan(&members).unwrap_err();
        assert!(err.to_string().contains("not a child subreaper"), "{err}");
        // One leaderless session with members under two parents.
        let members = [
            live(10, None, 10, 10).subreaper(true),
            live(11, Some(10), 11, 10).subreaper(true),
            live(12, Some(10), 12, 98),
            live(13, Some(11), 13, 98),
        ];
        let err = plan(&members).unwrap_err();
        assert!(err.to_string().contains("children of both"), "{err}");
        // The root's group is led from outside: a child that joins it later cannot.
        let members = [
            live(10, None, 5, 5),
            live(11, Some(10), 11, 5),
            live(12, Some(11), 5, 5),
        ];
        let err = plan(&members).unwrap_err();
        assert!(err.to_string().contains("led from outside"), "{err}");
        // A session led by a live process of the tree that is not an ancestor.
        let members = [
            live(10, None, 10, 10).subreaper(true),
            live(11, Some(10), 11, 11),
            live(12, Some(10), 12, 11),
        ];
        let err = plan(&members).unwrap_err();
        assert!(err.to_string().contains("session 11"), "{err}");
    }

    #[test]
    fn zombie_leaders_keep_their_session_and_group() {
        // Inside a pid namespace (root 1 is its init): zombie 5 led session 5, whose member 6 was
        // reparented to the init; zombie 7 leads group 7 of the init's session, with member 8.
        let zombie = |pid, ppid, pgid, sid| Member {
            zombie: true,
            ..live(pid, Some(ppid), pgid, sid)
        };
        let members = [
            live(1, None, 1, 1).ns_init(true),
            live(6, Some(1), 5, 5),
            live(8, Some(1), 7, 1),
            zombie(5, 1, 5, 5),
            zombie(7, 1, 7, 1),
        ];
        let plan = plan(&members).unwrap();
        assert_eq!(
            shape(&members, &plan),
            [
                (1, None, SessionPlan::NewSession, false),
                (5, Some(1), SessionPlan::NewSession, false),
                (6, Some(5), SessionPlan::Inherit, false),
                (7, Some(1), SessionPlan::NewGroup, false),
                (8, Some(1), SessionPlan::JoinGroup(7), false),
            ]
        );
        // Outside a pid namespace the reaper is a subreaper, which must be one while it forks.
        let mut outside = members;
        outside[0] = live(1, None, 1, 1).subreaper(true);
        let plan = super::plan(&outside).unwrap();
        assert!(plan[0].subreaper_first);
        assert_eq!(plan[2].parent, Some(1));
        // Not reparented to its parent: a zombie leader whose orphans go elsewhere is refused.
        let mut elsewhere = outside;
        elsewhere[0] = live(1, None, 1, 1);
        let err = super::plan(&elsewhere).unwrap_err();
        assert!(err.to_string().contains("session 5"), "{err}");
    }

    #[test]
    fn refuses_members_outside_the_root() {
        let members = [live(10, None, 10, 10), live(11, Some(77), 10, 10)];
        let err = plan(&members).unwrap_err();
        assert!(
            err.to_string().contains("parent 77 is not in the tree"),
            "{err}"
        );
    }

    fn tables(pid: u32, files: u32, fs: u32) -> SharedTables {
        SharedTables {
            pid: Pid(pid),
            files: Pid(files),
            fs: Pid(fs),
        }
    }

    #[test]
    fn sharers_are_cloned_with_their_parents_tables() {
        // 101 shares 100's fd table, 102 its fs struct, 103 (a child of 101) the fd table too; 104 none.
        let members = [
            live(100, None, 100, 100),
            live(101, Some(100), 100, 100),
            live(102, Some(100), 100, 100),
            live(103, Some(101), 100, 100),
            live(104, Some(100), 100, 100),
        ];
        let entries = [
            tables(101, 100, 101),
            tables(102, 102, 100),
            tables(103, 100, 103),
        ];
        let plan = plan(&members).unwrap();
        let shares = shares(&entries, &members, &plan).unwrap();
        let by_pid = |pid: u32| {
            let at = plan
                .iter()
                .position(|p| matches!(p.node, Node::Member(i) if members[i].pid == pid))
                .unwrap();
            shares[at]
        };
        let s = |files, fs| Shares { files, fs };
        assert_eq!(by_pid(100), s(false, false));
        assert_eq!(by_pid(101), s(true, false));
        assert_eq!(by_pid(102), s(false, true));
        assert_eq!(by_pid(103), s(true, false));
        assert_eq!(by_pid(104), s(false, false));
    }

    #[test]
    fn sharer_whose_parent_lacks_the_table_is_refused() {
        // 102 shares 100's fd table, but its parent 101 has its own.
        let members = [
            live(100, None, 100, 100),
            live(101, Some(100), 100, 100),
            live(102, Some(101), 100, 100),
        ];
        let plan = plan(&members).unwrap();
        let err = shares(&[tables(102, 100, 102)], &members, &plan).unwrap_err();
        assert!(
            matches!(
                err,
                RestoreError::Unsupported(Unsupported::SharedTableNotParent {
                    pid: 102,
                    owner: 100,
                    parent: 101,
                    ..
                })
            ),
            "{err}"
        );
    }
}
