//! Cgroup membership of every task (`cgroups`), as `/proc/PID/cgroup` listed it.

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use std::collections::BTreeSet;

use crate::error::Problems;
use crate::records::file_names::CGROUPS;
use crate::records::ids::Pid;

/// The cgroups of one task (`cgroups`, one entry per task), as `/proc/PID/cgroup` listed them.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCgroups {
    pub pid: Pid,
    pub lines: Vec<CgroupLine>,
}

/// One line of `/proc/PID/cgroup`: `HIERARCHY:CONTROLLERS:PATH`. Hierarchy 0 with no controllers is the
/// cgroup v2 unified hierarchy; v1 hierarchies list their controllers (and `name=NAME` for named ones).
/// The path is relative to the reader's cgroup namespace root.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLine {
    pub hierarchy: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

impl CgroupLine {
    /// The unified (v2) hierarchy line.
    pub fn is_v2(&self) -> bool {
        self.hierarchy == 0 && self.controllers.is_empty()
    }
}

/// Checks that `cgroups` has exactly one entry for every process of the tree.
pub(crate) fn check_cgroups(cgroups: &[TaskCgroups], pids: &BTreeSet<Pid>, p: &mut Problems) {
    super::check_one_per_task(CGROUPS, cgroups.iter().map(|c| c.pid), pids, p);
}
