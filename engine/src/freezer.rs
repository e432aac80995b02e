//! A container's cgroup freezer, v1 (`freezer.state`) and v2 (`cgroup.freeze`), and the policy a dump
//! of a frozen tree follows ([`ThawGuard`], a [`crate::tree::Freezer`] for [`crate::Dump`]).
//!
//! A checkpoint freezes the container before it is seized, so no task forks or exits behind the seize;
//! the seize then thaws it (a v1-frozen task reaches its ptrace stop only once thawed, and injected code
//! must run), and a container that was paused before is frozen again before it is let go. [`ThawGuard`]
//! holds that policy and thaws a container that was running on every path out, errors included. Its users
//! are kata-agent's checkpoints (dormant-agent-glue) and CRIU's `freeze_cgroup` option
//! (dormant-criu-rpc): a runtime may have paused the container before asking for the dump.
//!
//! The freezer is driven through descriptors opened when it is found, so a restore can freeze the
//! container after the process that holds them moved into the container's namespaces.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a freeze may take before it is given up (tasks in uninterruptible sleep delay it).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// The two freezer interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerKind {
    /// cgroup v1 freezer hierarchy: `freezer.state` (`THAWED`, `FREEZING`, `FROZEN`).
    V1,
    /// cgroup2: `cgroup.freeze` (`0`/`1`) and `frozen 0|1` in `cgroup.events`.
    V2,
}

/// A container's freezer cgroup, opened.
#[derive(Debug)]
pub struct CgroupFreezer {
    dir: PathBuf,
    kind: FreezerKind,
    /// `freezer.state` or `cgroup.freeze`, read-write.
    control: File,
    /// `freezer.state` or `cgroup.events`, where the settled state shows.
    state: File,
}

impl CgroupFreezer {
    /// The freezer among the container's cgroup directories: the first with `freezer.state` or
    /// `cgroup.freeze`. `Ok(None)` when none has one.
    pub fn find(dirs: &[PathBuf]) -> std::io::Result<Option<Self>> {
        for dir in dirs {
            let (kind, control, state) = if dir.join("freezer.state").exists() {
                (FreezerKind::V1, "freezer.state", "freezer.state")
            } else if dir.join("cgroup.freeze").exists() {
                (FreezerKind::V2, "cgroup.freeze", "cgroup.events")
            } else {
                continue;
            };
            return Ok(Some(CgroupFreezer {
                dir: dir.clone(),
                kind,
                control: OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(dir.join(control))?,
                state: File::open(dir.join(state))?,
            }));
        }
        Ok(None)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kind(&self) -> FreezerKind {
        self.kind
    }

    fn read_state(&self) -> std::io::Result<String> {
        let mut f = &self.state;
        f.seek(SeekFrom::Start(0))?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        Ok(s)
    }

    /// Whether the cgroup is frozen (or being frozen: the runtime paused it).
    pub fn is_frozen(&self) -> std::io::Result<bool> {
        Ok(match self.kind {
            FreezerKind::V1 => matches!(self.read_state()?.trim(), "FROZEN" | "FREEZING"),
            FreezerKind::V2 => {
                let mut f = &self.control;
                f.seek(SeekFrom::Start(0))?;
                let mut s = String::new();
                f.read_to_string(&mut s)?;
                s.trim() == "1"
            }
        })
    }

    /// Whether every task of the cgroup is frozen now.
    fn settled_frozen(&self) -> std::io::Result<bool> {
        let s = self.read_state()?;
        Ok(match self.kind {
            FreezerKind::V1 => s.trim() == "FROZEN",
            FreezerKind::V2 => s.lines().any(|l| l.trim() == "frozen 1"),
        })
    }

    fn write_control(&self, value: &str) -> std::io::Result<()> {
        let mut f = &self.control;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(value.as_bytes())
    }

    /// Freezes the cgroup and waits until every task is frozen.
    pub fn freeze(&self) -> std::io::Result<()> {
        let started = Instant::now();
        loop {
            // v1 may need the write repeated while it stays FREEZING.
            self.write_control(match self.kind {
                FreezerKind::V1 => "FROZEN",
                FreezerKind::V2 => "1",
            })?;
            if self.settled_frozen()? {
                return Ok(());
            }
            if started.elapsed() > FREEZE_TIMEOUT {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("not frozen after {FREEZE_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> std::io::Result<()> {
        self.write_control(match self.kind {
            FreezerKind::V1 => "THAWED",
            FreezerKind::V2 => "0",
        })
    }

    /// The processes in the cgroup (`cgroup.procs`).
    pub fn procs(&self) -> std::io::Result<Vec<u32>> {
        let text = std::fs::read_to_string(self.dir.join("cgroup.procs"))?;
        Ok(text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect())
    }
}

/// The freezer policy of one checkpoint: frozen from creation; thawed once the tree is seized; frozen
/// again before the tree is let go when it was paused before; thawed when dropped unless it was paused.
#[derive(Debug)]
pub struct ThawGuard {
    freezer: CgroupFreezer,
    was_paused: bool,
}

impl ThawGuard {
    /// Freezes `freezer` (unless the runtime already paused the container) and remembers which it was.
    pub fn freeze(freezer: CgroupFreezer) -> std::io::Result<Self> {
        let was_paused = freezer.is_frozen()?;
        let guard = ThawGuard {
            freezer,
            was_paused,
        };
        if !was_paused {
            // On failure the guard is dropped, which thaws what may be half frozen.
            guard.freezer.freeze()?;
        }
        Ok(guard)
    }

    pub fn was_paused(&self) -> bool {
        self.was_paused
    }

    pub fn freezer(&self) -> &CgroupFreezer {
        &self.freezer
    }
}

impl crate::tree::Freezer for ThawGuard {
    fn seized(&mut self) -> std::io::Result<()> {
        self.freezer.thaw()
    }

    fn before_detach(&mut self) -> std::io::Result<()> {
        if self.was_paused {
            self.freezer.freeze()?;
        }
        Ok(())
    }
}

impl Drop for ThawGuard {
    fn drop(&mut self) {
        let back = if self.was_paused {
            self.freezer.freeze()
        } else {
            self.freezer.thaw()
        };
        if let Err(e) = back {
            log::error!(
                "cgroup freezer {}: putting it back ({}): {e}",
                self.freezer.dir.display(),
                if self.was_paused { "frozen" } else { "thawed" }
            );
        }
    }
}
