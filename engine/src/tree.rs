//! Seizing a whole process tree from its root: every live descendant is seized (and so stopped) before its
//! own children are listed, so no process of the tree can fork behind the scan; zombies are recorded, not
//! seized (ptrace cannot attach to them).
//!
//! Children come from `/proc/<pid>/task/<tid>/children` of every thread. Each seize re-checks the start time
//! read with the pid ([`crate::seize::SeizedTask::seize`]), so a pid reused meanwhile is refused.
//!
//! It does NOT collect any state (see [`crate::dump`]), and, like [`SeizedTask`], must stay on the thread
//! that seized.

use std::time::Duration;

use dormant_image::records::{Pid, Zombie};

use crate::error::{DumpError, Result};
use crate::proc;
use crate::seize::{self, SeizedTask};

/// One seized process of the tree.
#[derive(Debug)]
pub struct TreeTask {
    pub task: SeizedTask,
    /// Its parent in the tree; `None` for the root.
    pub ppid: Option<u32>,
}

/// The seized tree: processes in breadth-first order (every parent before its children), and zombies.
#[derive(Debug)]
pub struct SeizedTree {
    pub tasks: Vec<TreeTask>,
    pub zombies: Vec<Zombie>,
}

/// The pids listed as children by any thread of `pid`, ascending.
pub fn children(pid: u32, tids: &[u32]) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for tid in tids {
        let text = match proc::read_string(pid, &format!("task/{tid}/children")) {
            Ok(t) => t,
            Err(DumpError::ProcRead { source, .. }) if proc::is_gone(&source) => continue,
            Err(e) => return Err(e),
        };
        for word in text.split_whitespace() {
            let child = word.parse::<u32>().map_err(|e| DumpError::ProcParse {
                pid,
                file: "children",
                reason: format!("{word:?}: {e}"),
            })?;
            out.push(child);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A session led inside the tree loses its controlling terminal at restore (the leader calls setsid
/// there): refuse rather than restore a session whose /dev/tty is gone. A shell job's session is led from
/// outside and takes the restorer's terminal (--shell-job).
pub fn check_controlling_terminal(pid: u32, stat: &proc::stat::ProcStat) -> Result<()> {
    if stat.session == pid && stat.tty_nr != 0 {
        let dev = u64::from(stat.tty_nr);
        return Err(DumpError::ControllingTerminal {
            pid,
            major: libc::major(dev),
            minor: libc::minor(dev),
        });
    }
    Ok(())
}

fn zombie(pid: u32, ppid: u32) -> Result<Zombie> {
    let st = seize::read_stat(pid)?;
    Ok(Zombie {
        pid: Pid(pid),
        ppid: Pid(ppid),
        pgid: Pid(st.pgrp),
        sid: Pid(st.session),
        exit_status: st.exit_code,
        // A zombie's status still has its NSpid line; an unreadable one only loses the inner pid.
        inner_pid: crate::proc::read_string(pid, "status")
            .ok()
            .and_then(|s| crate::container::parse_ns_pids(&s))
            .and_then(|levels| levels.get(1).copied())
            .map(Pid),
    })
}

/// A cgroup freezer holding the tree still while it is seized (kata-agent's containers; the caller froze
/// the cgroup before the dump). The seize walks the frozen tree, so no task can fork or exit behind it.
pub trait Freezer {
    /// Every task of the frozen tree is seized and interrupted: thaw, so they reach their ptrace stops (a
    /// v1-frozen task stops only once thawed) and can run the code the dump injects.
    fn seized(&mut self) -> std::io::Result<()>;
    /// The tree is about to be let go (left running, or the dump failed): freeze it again if it was paused
    /// before the dump, so the tasks move from their ptrace stops straight into the freezer.
    fn before_detach(&mut self) -> std::io::Result<()>;
}

impl SeizedTree {
    /// Seizes `root` and all its descendants. On failure everything seized so far is let go.
    pub fn seize(root: u32) -> Result<Self> {
        let mut tree = SeizedTree {
            tasks: vec![TreeTask {
                task: SeizedTask::seize(root)?,
                ppid: None,
            }],
            zombies: Vec::new(),
        };
        let mut next = 0;
        while next < tree.tasks.len() {
            let parent = tree.tasks[next].task.pid();
            let tids = tree.tasks[next].task.tids();
            next += 1;
            for child in children(parent, &tids)? {
                match SeizedTask::seize(child) {
                    Ok(task) => tree.tasks.push(TreeTask {
                        task,
                        ppid: Some(parent),
                    }),
                    Err(DumpError::Zombie { .. }) => tree.zombies.push(zombie(child, parent)?),
                    Err(DumpError::NoSuchProcess { .. }) => {
                        // It died and was reaped (its parent is stopped, so only a non-parent waiter —
                        // none exists — or an auto-reap (SIGCHLD ignored) can have done that).
                        log::debug!("pid {parent}: child {child} vanished while seizing the tree");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        log::debug!(
            "tree of {root}: {} process(es), {} zombie(s)",
            tree.tasks.len(),
            tree.zombies.len()
        );
        Ok(tree)
    }

    /// [`SeizedTree::seize`] for a tree its cgroup freezer holds: attaches to every task of the frozen tree
    /// ([`SeizedTask::attach`]), lets `freezer` thaw it, then waits for every stop
    /// ([`SeizedTask::await_stops`]). A failure after the thaw freezes again (`before_detach`) before the
    /// tasks are let go.
    pub fn seize_frozen(root: u32, freezer: &mut dyn Freezer) -> Result<Self> {
        let mut tree = SeizedTree {
            tasks: vec![TreeTask {
                task: SeizedTask::attach(root)?,
                ppid: None,
            }],
            zombies: Vec::new(),
        };
        let mut next = 0;
        while next < tree.tasks.len() {
            let parent = tree.tasks[next].task.pid();
            let tids = tree.tasks[next].task.tids();
            next += 1;
            for child in children(parent, &tids)? {
                match SeizedTask::attach(child) {
                    Ok(task) => tree.tasks.push(TreeTask {
                        task,
                        ppid: Some(parent),
                    }),
                    Err(DumpError::Zombie { .. }) => tree.zombies.push(zombie(child, parent)?),
                    Err(DumpError::NoSuchProcess { .. }) => {
                        log::debug!("pid {parent}: child {child} vanished while seizing the tree");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        freezer.seized().map_err(|source| DumpError::Freezer {
            pid: root,
            what: "thawing the seized tree",
            source,
        })?;
        let stopped = tree.tasks.iter_mut().try_for_each(|t| t.task.await_stops());
        if let Err(e) = stopped {
            if let Err(f) = freezer.before_detach() {
                log::warn!("pid {root}: freezing the tree again after a failed seize: {f}");
            }
            return Err(e);
        }
        log::debug!(
            "frozen tree of {root}: {} process(es), {} zombie(s)",
            tree.tasks.len(),
            tree.zombies.len()
        );
        Ok(tree)
    }

    pub fn root(&self) -> &SeizedTask {
        &self.tasks[0].task
    }

    /// Lets every process go (children first, so none runs while its parent is still held).
    pub fn detach(self) -> Result<()> {
        let mut first_err = None;
        for t in self.tasks.into_iter().rev() {
            if let Err(e) = t.task.detach() {
                log::warn!("{e}");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Kills every process, parents first: a killed parent's children (and zombies) go to the reaper, which
    /// frees their pids; a child killed first would stay a zombie of its stopped parent.
    ///
    /// A root that is the init of its pid namespace (a container) cannot exit before every other task of
    /// the namespace is reaped, which waits for us as their tracer: all are signalled first, then
    /// collected children first (see [`crate::container::kill_order`]).
    pub fn kill(self, timeout: Duration) -> Result<()> {
        let pids: Vec<u32> = self.tasks.iter().map(|t| t.task.pid()).collect();
        let mut tasks = self.tasks;
        if crate::container::kill_order(&pids) {
            tasks.reverse();
        }
        for t in tasks {
            t.task.kill(timeout)?;
        }
        Ok(())
    }
}
