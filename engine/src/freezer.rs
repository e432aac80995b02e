//! Seizing through the cgroup freezer (CRIU's `--freeze-cgroup`, which container runtimes always pass).
//!
//! A tree seized task by task with ptrace keeps running until each of its tasks is reached; through the
//! freezer the whole cgroup stops at once. More importantly a runtime may have frozen the cgroup already
//! (`ctr c checkpoint` pauses the task first), and a frozen task never reaches the ptrace stop a seize waits
//! for. So, as CRIU does: freeze the cgroup if it is not frozen, `PTRACE_SEIZE` + `PTRACE_INTERRUPT` every
//! thread in it (and in its sub-cgroups), then thaw it: each thread leaves the refrigerator straight into its
//! interrupt stop, without running a user instruction, and the normal seize ([`crate::tree::SeizedTree`])
//! then only waits for those stops. Threads in the cgroup that are not part of the dumped tree stay stopped
//! until the tree is released, then are let go. After a `leave_running` dump a cgroup found frozen is frozen
//! again, so the runtime finds it as it left it.
//!
//! cgroup v1 (`freezer.state`) and v2 (`cgroup.freeze` / `cgroup.events`) are both handled.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid as NixPid;

use crate::error::{DumpError, Result};

/// A freezer cgroup and the state it was found in.
#[derive(Debug)]
pub struct Freezer {
    dir: PathBuf,
    v2: bool,
    /// It was frozen before the dump (by the runtime): frozen again after a leave-running dump.
    found_frozen: bool,
}

/// The cgroup's tasks, seized while it was frozen (see the module docs).
#[derive(Debug)]
pub struct FrozenCgroup {
    freezer: Freezer,
    /// Every thread seized and interrupted while frozen.
    preseized: BTreeSet<u32>,
}

fn err(dir: &Path, what: impl Into<String>) -> DumpError {
    DumpError::Freezer {
        dir: dir.to_owned(),
        what: what.into(),
    }
}

impl Freezer {
    /// Opens the freezer cgroup directory `dir` (v1 with `freezer.state`, or a v2 cgroup).
    pub fn open(dir: &Path) -> Result<Freezer> {
        let v2 = if dir.join("freezer.state").is_file() {
            false
        } else if dir.join("cgroup.freeze").is_file() {
            true
        } else {
            return Err(err(
                dir,
                "neither freezer.state (v1) nor cgroup.freeze (v2) is there",
            ));
        };
        let mut f = Freezer {
            dir: dir.to_owned(),
            v2,
            found_frozen: false,
        };
        f.found_frozen = f.is_frozen()?;
        Ok(f)
    }

    fn read(&self, file: &str) -> Result<String> {
        std::fs::read_to_string(self.dir.join(file))
            .map_err(|e| err(&self.dir, format!("reading {file}: {e}")))
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        std::fs::write(self.dir.join(file), value)
            .map_err(|e| err(&self.dir, format!("writing {value:?} to {file}: {e}")))
    }

    /// Whether every task of the cgroup is frozen (v1 `FROZEN`; v2 `frozen 1` in `cgroup.events`).
    pub fn is_frozen(&self) -> Result<bool> {
        if self.v2 {
            Ok(self
                .read("cgroup.events")?
                .lines()
                .any(|l| l.trim() == "frozen 1"))
        } else {
            Ok(self.read("freezer.state")?.trim() == "FROZEN")
        }
    }

    /// Whether it was frozen when opened.
    pub fn found_frozen(&self) -> bool {
        self.found_frozen
    }

    /// Freezes the cgroup and waits until it is, for at most `timeout`.
    pub fn freeze(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // v1 may stay FREEZING when a task was busy at the first write; writing FROZEN again retries.
            if self.v2 {
                self.write("cgroup.freeze", "1")?;
            } else {
                self.write("freezer.state", "FROZEN")?;
            }
            if self.is_frozen()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(err(
                    &self.dir,
                    format!("not frozen after {} ms", timeout.as_millis()),
                ));
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> Result<()> {
        if self.v2 {
            self.write("cgroup.freeze", "0")
        } else {
            self.write("freezer.state", "THAWED")
        }
    }

    /// Every thread in the cgroup and its sub-cgroups.
    pub fn threads(&self) -> Result<BTreeSet<u32>> {
        let mut out = BTreeSet::new();
        let mut dirs = vec![self.dir.clone()];
        while let Some(dir) = dirs.pop() {
            let file = if self.v2 { "cgroup.threads" } else { "tasks" };
            let text = std::fs::read_to_string(dir.join(file))
                .map_err(|e| err(&dir, format!("reading {file}: {e}")))?;
            for w in text.split_whitespace() {
                let tid = w
                    .parse::<u32>()
                    .map_err(|_| err(&dir, format!("{file}: {w:?} is not a thread id")))?;
                out.insert(tid);
            }
            let entries =
                std::fs::read_dir(&dir).map_err(|e| err(&dir, format!("listing: {e}")))?;
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
        Ok(out)
    }
}

impl FrozenCgroup {
    /// Freezes `dir` if it is not frozen, seizes and interrupts every thread in it, and thaws it: the
    /// threads head for their interrupt stops. On failure every thread seized so far is let go and the
    /// freezer is put back as found.
    pub fn seize_all(dir: &Path, timeout: Duration) -> Result<FrozenCgroup> {
        let freezer = Freezer::open(dir)?;
        if !freezer.found_frozen {
            freezer.freeze(timeout)?;
        }
        let mut me = FrozenCgroup {
            freezer,
            preseized: BTreeSet::new(),
        };
        match me.seize_frozen() {
            Ok(()) => {
                log::info!(
                    "cgroup {}: {} thread(s) seized while frozen (found {}), thawed",
                    dir.display(),
                    me.preseized.len(),
                    if me.freezer.found_frozen {
                        "frozen"
                    } else {
                        "running"
                    }
                );
                Ok(me)
            }
            Err(e) => {
                me.release(&BTreeSet::new(), false);
                Err(e)
            }
        }
    }

    fn seize_frozen(&mut self) -> Result<()> {
        for tid in self.freezer.threads()? {
            let ntid = NixPid::from_raw(tid as i32);
            match ptrace::seize(ntid, dormant_parasite::SEIZE_OPTIONS) {
                Ok(()) => {}
                // Gone meanwhile.
                Err(Errno::ESRCH) => continue,
                Err(source) => {
                    return Err(DumpError::Ptrace {
                        pid: tid,
                        op: "PTRACE_SEIZE (frozen cgroup)",
                        source,
                    })
                }
            }
            self.preseized.insert(tid);
            // A thread in a job-control stop re-traps by itself once seized; an interrupt on top would
            // stay pending and fire at a later resume (see `crate::seize`).
            if crate::seize::read_stat(tid).is_ok_and(|st| st.state == 'T') {
                continue;
            }
            ptrace::interrupt(ntid).map_err(|source| DumpError::Ptrace {
                pid: tid,
                op: "PTRACE_INTERRUPT (frozen cgroup)",
                source,
            })?;
        }
        self.freezer.thaw()
    }

    /// The threads seized while frozen; [`crate::seize::SeizedTask`] only waits for their stops.
    pub fn preseized(&self) -> &BTreeSet<u32> {
        &self.preseized
    }

    /// Lets go of every pre-seized thread that is not in `tree` (the tree's own are released by the
    /// dump), and with `refreeze` freezes the cgroup again if it was found frozen. Must run after the
    /// tree was detached or killed.
    pub fn release(&self, tree: &BTreeSet<u32>, refreeze: bool) {
        for &tid in self.preseized.difference(tree) {
            detach_when_stopped(tid);
        }
        if self.freezer.found_frozen && refreeze {
            if let Err(e) = self.freezer.freeze(Duration::from_secs(10)) {
                log::warn!("after the dump: {e}");
            }
        } else if self.freezer.found_frozen {
            log::info!(
                "cgroup {}: found frozen, left thawed (its tasks are gone or failed to dump)",
                self.freezer.dir.display()
            );
        }
    }
}

/// Waits (at most 2 s) for `tid`'s interrupt stop, then detaches it; a thread that exited is collected.
fn detach_when_stopped(tid: u32) {
    let ntid = NixPid::from_raw(tid as i32);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match waitid(
            Id::Pid(ntid),
            WaitPidFlag::__WALL
                | WaitPidFlag::WNOHANG
                | WaitPidFlag::WSTOPPED
                | WaitPidFlag::WEXITED,
        ) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(_) => return,
            Ok(_) => break,
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    match ptrace::detach(ntid, None) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            log::warn!("tid {tid} (in the frozen cgroup, not in the tree): PTRACE_DETACH: {e}")
        }
    }
}
