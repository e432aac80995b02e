//! Typed ids of the tasks this crate works on.

use std::fmt;

use nix::unistd::Pid;

/// A kernel thread id (as in /proc/<tid>, PTRACE_* and waitpid), in the dumper's pid namespace.
/// ptrace works per thread, so this is the thread, not the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid(pub i32);

impl Tid {
    /// The same id as nix wants it.
    pub fn pid(self) -> Pid {
        Pid::from_raw(self.0)
    }
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
