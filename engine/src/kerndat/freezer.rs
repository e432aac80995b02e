//! cgroup freezer probes, v1 (`freezer.state`) and v2 (`cgroup.freeze` / `cgroup.events`): create a
//! child cgroup, move a sleeper in, freeze it, thaw it, and remove everything again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::unistd::getpid;

use super::child::{Sleeper, CHILD_TIMEOUT};
use super::error::ProbeError;
use super::procfs::self_mountinfo;
use super::{Fact, Found};

/// The two freezer interfaces.
#[derive(Debug, Clone, Copy)]
enum Version {
    V1,
    V2,
}

impl Version {
    /// The file that freezes, the value that freezes, the value that thaws.
    fn control(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Version::V1 => ("freezer.state", "FROZEN", "THAWED"),
            Version::V2 => ("cgroup.freeze", "1", "0"),
        }
    }

    /// The file that reports the state and the line it shows once frozen / thawed.
    fn report(self, frozen: bool) -> (&'static str, &'static str) {
        match (self, frozen) {
            (Version::V1, true) => ("freezer.state", "FROZEN"),
            (Version::V1, false) => ("freezer.state", "THAWED"),
            (Version::V2, true) => ("cgroup.events", "frozen 1"),
            (Version::V2, false) => ("cgroup.events", "frozen 0"),
        }
    }

    /// Where this hierarchy is mounted, from mountinfo: v1 is a `cgroup` mount with the `freezer`
    /// option, v2 the `cgroup2` mount.
    fn mount_point(self) -> Result<PathBuf, ProbeError> {
        let mounts = self_mountinfo()?;
        let found = mounts.into_iter().find(|m| match self {
            Version::V1 => {
                m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "freezer")
            }
            Version::V2 => m.fs_type == "cgroup2",
        });
        found.map(|m| m.mount_point).ok_or_else(|| {
            ProbeError::unexpected(match self {
                Version::V1 => "no cgroup v1 hierarchy with the freezer controller is mounted",
                Version::V2 => "no cgroup2 hierarchy is mounted",
            })
        })
    }
}

fn write(path: &Path, value: &str) -> Result<(), ProbeError> {
    std::fs::write(path, value).map_err(|e| ProbeError::write(path, value, e))
}

/// A probe cgroup holding a sleeper. On drop it is thawed (a v1-frozen task cannot even die), the
/// sleeper is killed and reaped, and the directory removed.
struct ProbeCgroup {
    dir: PathBuf,
    version: Version,
    member: Option<Sleeper>,
}

impl Drop for ProbeCgroup {
    fn drop(&mut self) {
        let (file, _, thaw) = self.version.control();
        let _ = std::fs::write(self.dir.join(file), thaw);
        drop(self.member.take());
        for _ in 0..50 {
            match std::fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => {
                    log::warn!(
                        "kerndat: cannot remove probe cgroup {}: {e}",
                        self.dir.display()
                    );
                    return;
                }
                Ok(()) => return,
            }
        }
    }
}

impl ProbeCgroup {
    /// Polls the state file until it shows the wanted line.
    fn wait_for(&self, frozen: bool) -> Result<(), ProbeError> {
        let (file, line) = self.version.report(frozen);
        let path = self.dir.join(file);
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&path).map_err(|e| ProbeError::read(&path, e))?;
            if text.lines().any(|l| l.trim() == line) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProbeError::unexpected(format!(
                    "{} never showed {line:?} (last: {:?})",
                    path.display(),
                    text.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Tells apart the cgroups of probes running at the same time in one process.
static PROBE_SEQ: AtomicU32 = AtomicU32::new(0);

fn freeze_and_thaw(version: Version) -> Result<Found, ProbeError> {
    let root = version.mount_point()?;
    let seq = PROBE_SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = root.join(format!("dormant-probe-{}-{seq}", getpid()));
    std::fs::create_dir(&dir).map_err(|source| ProbeError::Create {
        path: dir.clone(),
        source,
    })?;
    let sleeper = Sleeper::spawn()?;
    let pid = sleeper.pid();
    let cgroup = ProbeCgroup {
        dir,
        version,
        member: Some(sleeper),
    };
    write(&cgroup.dir.join("cgroup.procs"), &pid.to_string())?;
    let (file, freeze, thaw) = version.control();
    write(&cgroup.dir.join(file), freeze)?;
    cgroup.wait_for(true)?;
    write(&cgroup.dir.join(file), thaw)?;
    cgroup.wait_for(false)?;
    Ok(Found {
        detail: format!("froze and thawed pid {pid} in {}", cgroup.dir.display()),
        fact: Fact::CgroupMount(root),
    })
}

/// cgroup v1 freezer.
pub(crate) fn freezer_v1() -> Result<Found, ProbeError> {
    freeze_and_thaw(Version::V1)
}

/// cgroup v2 freezer.
pub(crate) fn freezer_v2() -> Result<Found, ProbeError> {
    freeze_and_thaw(Version::V2)
}
