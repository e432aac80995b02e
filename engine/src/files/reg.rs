//! Regular files and directories, reopened by path at restore with their open flags and offset. Files of
//! `/proc` and `/sys` are refused: they describe some process or device at dump time, and reopening the
//! path later names something else (or nothing).

/// The pseudo file system an open fd lives on (`procfs`, `sysfs`), if it does.
pub fn pseudo_fs(pid: u32, fd: i32) -> Option<&'static str> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    let path = format!("/proc/{pid}/fd/{fd}");
    let st = nix::sys::statfs::statfs(path.as_str()).ok()?;
    match st.filesystem_type().0 as i64 {
        PROC_SUPER_MAGIC => Some("procfs file"),
        SYSFS_MAGIC => Some("sysfs file"),
        _ => None,
    }
}
