//! Character devices reopened by path: the stateless ones (`/dev/null`, `/dev/zero`, `/dev/[u]random`) and,
//! for a shell job, `/dev/tty`, which names the session's controlling terminal: a shell job is restored into
//! the restorer's session, whose terminal is the one the job had.

/// Character devices reopened by path.
pub const PATH_DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];

/// Whether a character device at `path` with device number `rdev` is reopened by path; `shell_job`: the
/// dump was asked to inherit the terminal.
pub fn reopened_by_path(path: &str, rdev: u64, shell_job: bool) -> bool {
    PATH_DEVICES.contains(&path) || (shell_job && rdev == libc::makedev(5, 0))
}
