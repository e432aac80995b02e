//! The new mount API calls nix does not wrap (`move_mount`, `mount_setattr`, `fsopen`, `fsconfig`,
//! `fsmount`, `open_tree`), each in one small function.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x0000_0004;
pub const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x0000_0040;
pub const MOVE_MOUNT_SET_GROUP: u32 = 0x0000_0100;
pub const MOVE_MOUNT_BENEATH: u32 = 0x0000_0200;

const FSOPEN_CLOEXEC: u32 = 0x0000_0001;
const FSMOUNT_CLOEXEC: u32 = 0x0000_0001;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_SET_FD: u32 = 5;
const FSCONFIG_CMD_CREATE: u32 = 6;

pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub const MOUNT_ATTR_ATIME_MASK: u64 = 0x0000_0070;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// `struct mount_attr` (linux/mount.h, first version, 32 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// `move_mount(2)`.
pub fn move_mount(
    from: BorrowedFd<'_>,
    from_path: &CStr,
    to: BorrowedFd<'_>,
    to_path: &CStr,
    flags: u32,
) -> Result<(), Errno> {
    // SAFETY: both paths are valid NUL-terminated strings and both fds are open for the whole call; the
    // kernel reads nothing else from our memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            from_path.as_ptr(),
            to.as_raw_fd(),
            to_path.as_ptr(),
            flags,
        )
    };
    Errno::result(r).map(drop)
}

const OPEN_TREE_CLONE: u32 = 0x0000_0001;

/// `open_tree(2)` with `OPEN_TREE_CLONE`: a detached copy of the mount (not its submounts) at `path`
/// under `dir` (`path` empty: `dir` itself), close-on-exec.
pub fn clone_tree(dir: BorrowedFd<'_>, path: &CStr) -> Result<OwnedFd, Errno> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as u32;
    }
    // SAFETY: `path` is NUL-terminated and `dir` open for the call; the returned descriptor is new and
    // owned by us alone.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), path.as_ptr(), flags) };
    // SAFETY: on success the kernel returned a new descriptor that nothing else owns.
    Errno::result(r).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `mount_setattr(2)` on the mount `fd` is the root of (`AT_EMPTY_PATH`), not recursive.
pub fn mount_setattr(fd: BorrowedFd<'_>, attr: &MountAttr) -> Result<(), Errno> {
    setattr_flags(fd, attr, 0)
}

/// `mount_setattr(2)` on the mount `fd` is the root of and every mount below it (`AT_RECURSIVE`).
pub fn mount_setattr_recursive(fd: BorrowedFd<'_>, attr: &MountAttr) -> Result<(), Errno> {
    setattr_flags(fd, attr, libc::AT_RECURSIVE as u32)
}

fn setattr_flags(fd: BorrowedFd<'_>, attr: &MountAttr, flags: u32) -> Result<(), Errno> {
    // SAFETY: the path is a static empty C string, `attr` points to a live `MountAttr` whose size is passed
    // along, and the fd is open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as u32 | flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// One `fsconfig(2)` setting of a filesystem context made by [`fsopen`].
#[derive(Debug, Clone, Copy)]
pub enum FsParam<'a> {
    /// A flag option (`FSCONFIG_SET_FLAG`).
    Flag(&'a CStr),
    /// `key=value` (`FSCONFIG_SET_STRING`).
    Str(&'a CStr, &'a CStr),
    /// An option whose value is a descriptor (`FSCONFIG_SET_FD`), e.g. proc's `pidns`.
    Fd(&'a CStr, BorrowedFd<'a>),
}

/// `fsopen(2)`: a new filesystem context of type `fstype` (close-on-exec).
pub fn fsopen(fstype: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: `fstype` is NUL-terminated; the returned descriptor is new and owned by us alone.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    // SAFETY: a non-negative result is a descriptor nobody else owns.
    Errno::result(r).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `fsconfig(2)`: sets one parameter of the context `fs`.
pub fn fsconfig(fs: BorrowedFd<'_>, param: FsParam<'_>) -> Result<(), Errno> {
    let (cmd, key, value, aux) = match param {
        FsParam::Flag(k) => (FSCONFIG_SET_FLAG, k.as_ptr(), std::ptr::null(), 0),
        FsParam::Str(k, v) => (FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0),
        FsParam::Fd(k, fd) => (
            FSCONFIG_SET_FD,
            k.as_ptr(),
            std::ptr::null(),
            fd.as_raw_fd(),
        ),
    };
    // SAFETY: key and value are NUL-terminated (or null where the command takes none) and live for the
    // call; the descriptors are open for the call.
    let r = unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key, value, aux) };
    Errno::result(r).map(drop)
}

/// `fsconfig(FSCONFIG_CMD_CREATE)` then `fsmount(2)`: creates the superblock of the context `fs` and returns
/// a detached mount of it with the `MOUNT_ATTR_*` flags `attrs`.
pub fn fsmount(fs: BorrowedFd<'_>, attrs: u64) -> Result<OwnedFd, Errno> {
    // SAFETY: a command without key or value on an open context.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(r)?;
    // SAFETY: plain syscall on an open context; the result is a new descriptor.
    let r = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    // SAFETY: a non-negative result is a descriptor nobody else owns.
    Errno::result(r).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The id of the mount `fd` is on (`statx` `STATX_MNT_ID`).
pub fn mount_id_of(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    // SAFETY: statx is plain data the kernel fills.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: empty path with AT_EMPTY_PATH on an open fd; `st` is a valid out-pointer.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    Errno::result(r)?;
    Ok(st.stx_mnt_id)
}

fn c_path(p: &std::path::Path) -> Result<std::ffi::CString, Errno> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// `llistxattr(2)`: the attribute names of `p` (not following a symlink).
pub fn list_xattrs(p: &std::path::Path) -> Result<Vec<Vec<u8>>, Errno> {
    let cp = c_path(p)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `cp` is NUL-terminated and `buf` is writable for `buf.len()` bytes.
        let n = unsafe { libc::llistxattr(cp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match Errno::result(n) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            Err(Errno::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// `lgetxattr(2)`.
pub fn get_xattr(p: &std::path::Path, name: &[u8]) -> Result<Vec<u8>, Errno> {
    let cp = c_path(p)?;
    let cn = std::ffi::CString::new(name).map_err(|_| Errno::EINVAL)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: both strings are NUL-terminated and `buf` is writable for `buf.len()` bytes.
        let n = unsafe {
            libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        match Errno::result(n) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            Err(Errno::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// `lsetxattr(2)`.
pub fn set_xattr(p: &std::path::Path, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    let cp = c_path(p)?;
    let cn = std::ffi::CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: both strings are NUL-terminated and `value` is readable for `value.len()` bytes.
    let r = unsafe {
        libc::lsetxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}
