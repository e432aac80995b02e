//! Open files of `/proc` ([`DescKind::Proc`]): nothing is opened before the fork. A file about a process
//! can only be opened once that process (and, for `/proc/PID/task/TID/...`, that thread) exists, and the
//! blob creates threads last; so the fd number stays empty until every task and thread of the tree exists
//! and is stopped by the tracer, which then makes the task open the file itself with injected syscalls
//! (`launch/proc_files.rs`: `openat` of the recorded path with the dumped flags, `lseek` to the dumped offset,
//! `dup3` onto each fd number of the task that held the description, `close`). Pids are kept, so the
//! recorded `/proc/PID/...` names the restored process. A seq file (`maps`, `status`) is generated again
//! up to the offset: the bytes before and after it may differ from the dumped process's (CRIU does the
//! same).

use dormant_image::records::{DescKind, FileDesc, ProcFile};

/// One proc file description of a task, and the fd numbers it has there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcOpen {
    /// The path to open, as the task sees it.
    pub path: String,
    /// `openat` flags: the dumped status flags and access mode (`O_CLOEXEC` is per fd).
    pub flags: i32,
    pub pos: u64,
    /// The fd numbers, each with its close-on-exec.
    pub fds: Vec<(i32, bool)>,
}

/// The proc file of description `d`, if it is one.
pub fn of(d: &FileDesc) -> Option<&ProcFile> {
    match &d.kind {
        DescKind::Proc(f) => Some(f),
        _ => None,
    }
}

/// Adds fd `fd` of description `d` (a proc file) to `opens`: one entry per description.
pub fn add(opens: &mut Vec<ProcOpen>, d: &FileDesc, f: &ProcFile, fd: i32, cloexec: bool) {
    let path = f.full_path();
    if let Some(o) = opens
        .iter_mut()
        .find(|o| o.path == path && o.flags == d.flags as i32 && o.pos == f.pos)
    {
        o.fds.push((fd, cloexec));
        return;
    }
    opens.push(ProcOpen {
        path,
        flags: (d.flags & !(libc::O_CLOEXEC as u32)) as i32,
        pos: f.pos,
        fds: vec![(fd, cloexec)],
    });
}
