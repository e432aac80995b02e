//! Regular files and directories, reopened by path at restore with their open flags and offset. Files of
//! `/sys` are refused: they describe some device at dump time, and reopening the path later names
//! something else (or nothing). Files of `/proc` are a kind of their own ([`super::procfs`]).

/// `statfs` magic of procfs.
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// `statfs` magic of sysfs.
pub const SYSFS_MAGIC: i64 = 0x6265_6572;

/// The `statfs` magic of the file system fd `fd` of `pid` is on (`None` when it cannot be read).
pub fn fs_magic(pid: u32, fd: i32) -> Option<i64> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let st = nix::sys::statfs::statfs(path.as_str()).ok()?;
    Some(st.filesystem_type().0 as i64)
}
