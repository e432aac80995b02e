//! The shape of a restored process tree: in which order processes are forked and how each one gets its
//! session and process group.
//!
//! Every process is forked by its own restored parent, so parent links (and ppids) come out right by
//! construction. Sessions and groups are recreated, not copied: a session leader calls `setsid()` before it
//! forks its members; a group leader calls `setpgid(0, 0)` before it forks; a member of a group led by
//! another process joins it with `setpgid(0, pgid)`, which needs that leader to exist already, so among
//! siblings session leaders are forked first, then group leaders, then the rest (each sibling's whole
//! subtree is in place before the next sibling is forked).
//!
//! What it does NOT do: create helper processes for sessions or groups whose leader is gone (such trees
//! are refused with an error naming the process), or nested pid namespaces.

use std::collections::BTreeMap;

use dormant_image::records::{Pid, Zombie};

use crate::error::RestoreError;
use crate::launch::SessionPlan;

/// One process of the tree as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub pid: u32,
    /// `None` for the root.
    pub ppid: Option<u32>,
    pub pgid: u32,
    pub sid: u32,
    pub zombie: bool,
}

impl Member {
    pub fn zombie(z: &Zombie) -> Self {
        Member {
            pid: z.pid.0,
            ppid: Some(z.ppid.0),
            pgid: z.pgid.0,
            sid: z.sid.0,
            zombie: true,
        }
    }

    pub fn live(pid: Pid, ppid: Option<Pid>, pgid: Pid, sid: Pid) -> Self {
        Member {
            pid: pid.0,
            ppid: ppid.map(|p| p.0),
            pgid: pgid.0,
            sid: sid.0,
            zombie: false,
        }
    }

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

/// A planned process: its index in the input, its parent's position in the plan, its session plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub input: usize,
    pub parent: Option<usize>,
    pub session: SessionPlan,
}

/// Orders `members` (`members[0]` is the root) for forking and decides each one's session plan.
pub fn plan(members: &[Member]) -> Result<Vec<Planned>, RestoreError> {
    let Some(root) = members.first() else {
        return Ok(Vec::new());
    };
    let mut children: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, m) in members.iter().enumerate().skip(1) {
        let pp = m.ppid.ok_or_else(|| {
            RestoreError::Unsupported(format!("pid {}: a second root in the tree", m.pid))
        })?;
        children.entry(pp).or_default().push(i);
    }
    for list in children.values_mut() {
        list.sort_by_key(|&i| members[i].fork_rank());
    }
    // Depth-first preorder: a parent before its children, a sibling's subtree before the next sibling.
    let mut order: Vec<(usize, Option<usize>)> = Vec::with_capacity(members.len());
    let mut stack: Vec<(usize, Option<usize>)> = vec![(0, None)];
    while let Some((i, parent_pos)) = stack.pop() {
        let pos = order.len();
        order.push((i, parent_pos));
        if let Some(kids) = children.get(&members[i].pid) {
            for &k in kids.iter().rev() {
                stack.push((k, Some(pos)));
            }
        }
    }
    if order.len() != members.len() {
        return Err(RestoreError::Unsupported(format!(
            "{} process(es) of the tree are not descendants of the root {}",
            members.len() - order.len(),
            root.pid
        )));
    }
    let position: BTreeMap<u32, usize> = order
        .iter()
        .enumerate()
        .map(|(pos, &(i, _))| (members[i].pid, pos))
        .collect();
    let mut out = Vec::with_capacity(order.len());
    for (pos, &(i, parent_pos)) in order.iter().enumerate() {
        let m = &members[i];
        let session = match parent_pos {
            None => SessionPlan::for_ids(m.pid, m.pgid, m.sid),
            Some(pp) => {
                let parent = &members[order[pp].0];
                session_of(m, parent, &position, pos)?
            }
        };
        out.push(Planned {
            input: i,
            parent: parent_pos,
            session,
        });
    }
    Ok(out)
}

fn session_of(
    m: &Member,
    parent: &Member,
    position: &BTreeMap<u32, usize>,
    pos: usize,
) -> Result<SessionPlan, RestoreError> {
    if m.sid == m.pid {
        return Ok(SessionPlan::NewSession);
    }
    if m.sid != parent.sid {
        return Err(RestoreError::Unsupported(format!(
            "pid {}: session {} is neither its own nor its parent {}'s (session leaders that are not \
             ancestors need helper processes, not implemented)",
            m.pid, m.sid, parent.pid
        )));
    }
    if m.pgid == m.pid {
        return Ok(SessionPlan::NewGroup);
    }
    if m.pgid == parent.pgid {
        return Ok(SessionPlan::Inherit);
    }
    match position.get(&m.pgid) {
        Some(&leader) if leader < pos => Ok(SessionPlan::JoinGroup(m.pgid)),
        Some(_) => Err(RestoreError::Unsupported(format!(
            "pid {}: its process group leader {} would be forked after it",
            m.pid, m.pgid
        ))),
        None => Err(RestoreError::Unsupported(format!(
            "pid {}: process group {} has no leader in the tree (helper processes not implemented)",
            m.pid, m.pgid
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(pid: u32, ppid: Option<u32>, pgid: u32, sid: u32) -> Member {
        Member {
            pid,
            ppid,
            pgid,
            sid,
            zombie: false,
        }
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
        let pids: Vec<u32> = plan.iter().map(|p| members[p.input].pid).collect();
        assert_eq!(pids, [100, 101, 103, 102, 104]);
        let sessions: Vec<SessionPlan> = plan.iter().map(|p| p.session).collect();
        assert_eq!(
            sessions,
            [
                SessionPlan::NewSession,
                SessionPlan::NewGroup,
                SessionPlan::Inherit,
                SessionPlan::JoinGroup(101),
                SessionPlan::Inherit,
            ]
        );
        let parents: Vec<Option<u32>> = plan
            .iter()
            .map(|p| p.parent.map(|pp| members[plan[pp].input].pid))
            .collect();
        assert_eq!(parents, [None, Some(100), Some(101), Some(100), Some(100)]);
    }

    #[test]
    fn refuses_a_group_without_leader_and_a_foreign_session() {
        let members = [live(10, None, 10, 10), live(11, Some(10), 99, 10)];
        let err = plan(&members).unwrap_err();
        assert!(err.to_string().contains("group 99 has no leader"), "{err}");
        let members = [live(10, None, 10, 10), live(11, Some(10), 11, 98)];
        let err = plan(&members).unwrap_err();
        assert!(err.to_string().contains("session 98"), "{err}");
    }

    #[test]
    fn refuses_members_outside_the_root() {
        let members = [live(10, None, 10, 10), live(11, Some(77), 10, 10)];
        let err = plan(&members).unwrap_err();
        assert!(err.to_string().contains("not descendants"), "{err}");
    }
}
