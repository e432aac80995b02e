//! Small wrappers around the raw system calls, ioctls and kernel structures the probes use and that
//! neither `nix` nor `libc` wrap (or that the installed headers predate, like PAGEMAP_SCAN). Every
//! `unsafe` block of the probes lives here, each wrapper doing one call.

use std::ffi::CString;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::ptr::NonNull;

pub(crate) use dormant_sys::process::PrctlMmMap;
use dormant_sys::process::{
    CloneArgs, ARCH_MAP_VDSO_64, PR_SET_MM, PR_SET_MM_MAP, PR_SET_MM_MAP_SIZE,
};
pub(crate) use dormant_sys::rseq::RseqConfiguration;
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::unistd::Pid;

use dormant_sys::host::{check, owned_fd};

fn c_path(path: &Path) -> Result<CString, Errno> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

// ---------------------------------------------------------------------------------------------------
// Anonymous memory the probes fault in and inspect.

/// A private anonymous mapping owned by the probe, unmapped on drop. Pages are touched through volatile
/// accesses so the compiler cannot elide the faults the probes depend on.
#[derive(Debug)]
pub(crate) struct AnonMap {
    addr: NonNull<libc::c_void>,
    pages: usize,
    page_size: usize,
}

impl AnonMap {
    pub(crate) fn new(pages: usize) -> Result<Self, Errno> {
        let page_size = page_size();
        let len = NonZeroUsize::new(pages * page_size).ok_or(Errno::EINVAL)?;
        // SAFETY: a fresh private anonymous mapping at an address the kernel chooses overlaps no memory
        // Rust knows about.
        let addr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS,
            )
        }?;
        Ok(AnonMap {
            addr,
            pages,
            page_size,
        })
    }

    pub(crate) fn start(&self) -> usize {
        self.addr.as_ptr() as usize
    }

    pub(crate) fn len(&self) -> usize {
        self.pages * self.page_size
    }

    pub(crate) fn page_addr(&self, page: usize) -> usize {
        self.start() + page * self.page_size
    }

    /// Write-faults `page` (ignored when out of range).
    pub(crate) fn write(&self, page: usize, value: u8) {
        if page < self.pages {
            let ptr = self.page_addr(page) as *mut u8;
            // SAFETY: `ptr` is inside this live read-write mapping, which only this struct hands out.
            unsafe { ptr.write_volatile(value) };
        }
    }

    /// Read-faults `page` (0 when out of range).
    pub(crate) fn read(&self, page: usize) -> u8 {
        if page >= self.pages {
            return 0;
        }
        let ptr = self.page_addr(page) as *const u8;
        // SAFETY: `ptr` is inside this live readable mapping.
        unsafe { ptr.read_volatile() }
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `new` and no reference into it outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.addr, self.len()) };
    }
}

pub(crate) fn page_size() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) if size > 0 => size as usize,
        _ => 4096,
    }
}

/// Unmaps a range of the *calling probe child*, which must never touch that range again (used to drop
/// the vdso before asking the kernel to map it anew).
///
/// # Safety
/// No live Rust reference or code path of the caller may use `[start, start + len)` afterwards.
pub(crate) unsafe fn munmap_range(start: usize, len: usize) -> Result<(), Errno> {
    let addr = NonNull::new(start as *mut libc::c_void).ok_or(Errno::EINVAL)?;
    // SAFETY: the caller guarantees nothing uses the range any more.
    unsafe { nix::sys::mman::munmap(addr, len) }
}

/// Reads the first bytes at `addr` after the probe checked in /proc/self/maps that it is mapped.
///
/// # Safety
/// `[addr, addr + N)` must be mapped readable.
pub(crate) unsafe fn read_mapped<const N: usize>(addr: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        // SAFETY: the caller guarantees the range is mapped and readable.
        *byte = unsafe { ((addr + i) as *const u8).read_volatile() };
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// ptrace requests nix does not wrap.

/// PTRACE_GETREGSET NT_X86_XSTATE, the call the dumper and the parasite make: the regset's bytes.
pub(crate) fn ptrace_get_xstate(pid: Pid) -> Result<Vec<u8>, Errno> {
    dormant_sys::host::get_xstate(pid.as_raw())
}

/// PTRACE_GET_RSEQ_CONFIGURATION, the call the dumper makes: where the tracee registered its rseq area.
pub(crate) fn ptrace_get_rseq(pid: Pid) -> Result<RseqConfiguration, Errno> {
    dormant_sys::host::get_rseq_configuration(pid.as_raw())
}

/// CPUID leaf 0xD sub-leaf 0: (ebx, ecx) = XSAVE area size for the features enabled in XCR0, and the
/// size for every feature the CPU supports (dormant-sys's, what the inventory records).
#[cfg(target_arch = "x86_64")]
pub(crate) fn cpuid_xsave_sizes() -> (u32, u32) {
    dormant_sys::cpu::xsave_sizes()
}

// ---------------------------------------------------------------------------------------------------
// Processes: clone3 with set_tid, pidfds, kcmp, prctl, arch_prctl, POSIX timers.

/// Creates a child with clone3 asking for exactly `pid`, through the wrapper the restorer forks its tasks
/// with. The child checks that getpid() says `pid` and exits at once with 0 (yes) or 1 (no); the caller
/// reaps it.
pub(crate) fn clone3_exiting_child(pid: Pid) -> Result<Pid, Errno> {
    let set_tid: [libc::pid_t; 1] = [pid.as_raw()];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: a fork (no CLONE_VM); `set_tid` outlives the call. The child makes nothing but raw
    // getpid/exit syscalls, so it needs no lock another thread could have held.
    let child = unsafe { dormant_sys::host::clone3(&args) }?;
    if child == 0 {
        let me = dormant_sys::raw::getpid();
        let code = if me == i64::from(pid.as_raw()) { 0 } else { 1 };
        // SAFETY: ends the child at once, without running any of the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    Ok(Pid::from_raw(child))
}

pub(crate) fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    dormant_sys::host::pidfd_open(pid.as_raw(), 0)
}

pub(crate) fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: RawFd) -> Result<OwnedFd, Errno> {
    dormant_sys::host::pidfd_getfd(pidfd, target_fd)
}

/// kcmp(KCMP_FILE): 0 when both descriptors name the same open file description.
pub(crate) fn kcmp_file(
    pid1: Pid,
    fd1: RawFd,
    pid2: Pid,
    fd2: RawFd,
) -> Result<libc::c_long, Errno> {
    dormant_sys::host::kcmp_same_file(pid1.as_raw(), fd1, pid2.as_raw(), fd2).map(|same| {
        if same {
            0
        } else {
            1
        }
    })
}

/// Turns a raw result of the blobs' syscall layer into a Result.
fn raw_check(ret: i64) -> Result<i64, Errno> {
    dormant_sys::raw::check(ret).map_err(|e| Errno::from_raw(-e as i32))
}

/// PR_SET_MM_MAP_SIZE: the size of `struct prctl_mm_map` the kernel expects.
pub(crate) fn prctl_mm_map_size() -> Result<u32, Errno> {
    let mut size: u32 = 0;
    let ret = dormant_sys::raw::prctl(
        PR_SET_MM,
        PR_SET_MM_MAP_SIZE,
        &mut size as *mut u32 as u64,
        0,
        0,
    );
    raw_check(ret)?;
    Ok(size)
}

/// PR_SET_MM_MAP with `map` and `auxv` (the exe link is left alone), made the way the restorer blob
/// makes it: the same struct through the same raw syscall.
pub(crate) fn prctl_set_mm_map(map: &PrctlMmMap, auxv: &[u64]) -> Result<(), Errno> {
    let mut map = *map;
    map.auxv = auxv.as_ptr() as u64;
    map.auxv_size = u32::try_from(std::mem::size_of_val(auxv)).map_err(|_| Errno::E2BIG)?;
    map.exe_fd = u32::MAX;
    let ret = dormant_sys::raw::prctl(
        PR_SET_MM,
        PR_SET_MM_MAP,
        &map as *const PrctlMmMap as u64,
        std::mem::size_of::<PrctlMmMap>() as u64,
        0,
    );
    raw_check(ret).map(drop)
}

/// The current program break (brk(0) never moves it).
pub(crate) fn current_brk() -> u64 {
    // SAFETY: brk(0) only reports the current break.
    unsafe { libc::syscall(libc::SYS_brk, 0) as u64 }
}

/// arch_prctl(ARCH_MAP_VDSO_64), as the restorer blob calls it: maps the vdso (and its data pages) near
/// `addr`; fails with EEXIST if this process still has one.
pub(crate) fn arch_map_vdso_64(addr: usize) -> Result<(), Errno> {
    raw_check(dormant_sys::raw::arch_prctl(ARCH_MAP_VDSO_64, addr as u64)).map(drop)
}

/// A POSIX timer id as the kernel numbers it (the `ID:` of /proc/pid/timers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerId(pub libc::c_int);

/// timer_create with SIGEV_NONE, through the raw syscall so the id is the kernel's.
pub(crate) fn timer_create_silent(clock: libc::clockid_t) -> Result<TimerId, Errno> {
    // SAFETY: sigevent is a plain C struct for which all-zero bytes are a valid value.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_NONE;
    let mut id: libc::c_int = -1;
    // SAFETY: the kernel reads `sev` and writes the new timer id to `id`; both outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_timer_create,
            clock,
            &mut sev as *mut libc::sigevent,
            &mut id as *mut libc::c_int,
        )
    };
    check(ret)?;
    Ok(TimerId(id))
}

pub(crate) fn timer_delete(id: TimerId) -> Result<(), Errno> {
    // SAFETY: deleting a timer id this probe created.
    check(unsafe { libc::syscall(libc::SYS_timer_delete, id.0) }).map(drop)
}

// ---------------------------------------------------------------------------------------------------
// userfaultfd.

const UFFD_API: u64 = 0xAA;
pub(crate) const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
const UFFDIO_WRITEPROTECT: libc::c_ulong = 0xC018_AA06;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

pub(crate) fn userfaultfd() -> Result<OwnedFd, Errno> {
    // SAFETY: userfaultfd takes flags and returns a new fd.
    owned_fd(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) })
}

/// One ioctl whose argument is a struct the kernel reads and may write back.
///
/// # Safety
/// `T` must be the exact structure `request` expects, with any pointers in it valid.
unsafe fn ioctl_struct<T>(
    fd: BorrowedFd<'_>,
    request: libc::c_ulong,
    arg: &mut T,
) -> Result<libc::c_long, Errno> {
    // SAFETY: the caller guarantees `arg` matches `request`; it is live and writable for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg as *mut T) };
    check(libc::c_long::from(ret))
}

/// UFFDIO_API asking for `features`; returns the features the kernel granted.
pub(crate) fn uffdio_api(uffd: BorrowedFd<'_>, features: u64) -> Result<u64, Errno> {
    let mut api = UffdioApi {
        api: UFFD_API,
        features,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API takes a struct uffdio_api.
    unsafe { ioctl_struct(uffd, UFFDIO_API, &mut api) }?;
    Ok(api.features)
}

/// UFFDIO_REGISTER in write-protect mode.
pub(crate) fn uffdio_register_wp(
    uffd: BorrowedFd<'_>,
    start: usize,
    len: usize,
) -> Result<(), Errno> {
    let mut reg = UffdioRegister {
        range: UffdioRange {
            start: start as u64,
            len: len as u64,
        },
        mode: UFFDIO_REGISTER_MODE_WP,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_REGISTER takes a struct uffdio_register.
    unsafe { ioctl_struct(uffd, UFFDIO_REGISTER, &mut reg) }.map(drop)
}

/// UFFDIO_WRITEPROTECT: write-protects the range.
pub(crate) fn uffdio_writeprotect(
    uffd: BorrowedFd<'_>,
    start: usize,
    len: usize,
) -> Result<(), Errno> {
    let mut wp = UffdioWriteprotect {
        range: UffdioRange {
            start: start as u64,
            len: len as u64,
        },
        mode: UFFDIO_WRITEPROTECT_MODE_WP,
    };
    // SAFETY: UFFDIO_WRITEPROTECT takes a struct uffdio_writeprotect.
    unsafe { ioctl_struct(uffd, UFFDIO_WRITEPROTECT, &mut wp) }.map(drop)
}

// ---------------------------------------------------------------------------------------------------
// PAGEMAP_SCAN (Linux 6.7; include/uapi/linux/fs.h, newer than the installed headers).

use dormant_sys::pagemap::PmScanArg;
pub(crate) use dormant_sys::pagemap::{PageRegion, PAGE_IS_PFNZERO, PAGE_IS_PRESENT};

/// What one PAGEMAP_SCAN call asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanQuery {
    pub start: usize,
    pub end: usize,
    pub category_mask: u64,
    pub return_mask: u64,
}

/// Runs PAGEMAP_SCAN on a pagemap file; fills `out` and returns (regions filled, walk_end).
pub(crate) fn pagemap_scan(
    pagemap: impl AsFd,
    query: ScanQuery,
    out: &mut [PageRegion],
) -> Result<(usize, u64), Errno> {
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        start: query.start as u64,
        end: query.end as u64,
        vec: out.as_mut_ptr() as u64,
        vec_len: out.len() as u64,
        category_mask: query.category_mask,
        return_mask: query.return_mask,
        ..PmScanArg::default()
    };
    // SAFETY: `vec` points at `out`, writable for vec_len regions for the whole call.
    let filled = unsafe { dormant_sys::host::pagemap_scan(pagemap.as_fd(), &mut arg) }?;
    Ok((filled, arg.walk_end))
}

// ---------------------------------------------------------------------------------------------------
// Mounts: the new mount API and statmount/listmount (Linux 6.8; numbers are the same on every arch).

const SYS_STATMOUNT: libc::c_long = 457;
const SYS_LISTMOUNT: libc::c_long = 458;
pub(crate) const LSMT_ROOT: u64 = u64::MAX;
pub(crate) const STATMOUNT_SB_BASIC: u64 = 0x1;
pub(crate) const STATMOUNT_MNT_BASIC: u64 = 0x2;
pub(crate) const MOVE_MOUNT_SET_GROUP: u32 = dormant_mounts::sys::MOVE_MOUNT_SET_GROUP;
const OPEN_TREE_CLONE: libc::c_uint = 1;

/// `struct mnt_id_req` (MNT_ID_REQ_SIZE_VER1; a zero mnt_ns_id means the caller's namespace).
#[repr(C)]
#[derive(Debug, Default)]
struct MntIdReq {
    size: u32,
    spare: u32,
    mnt_id: u64,
    param: u64,
    mnt_ns_id: u64,
}

/// The fixed part of `struct statmount` the probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatMount {
    pub mask: u64,
    pub sb_magic: u64,
    pub mnt_id: u64,
    pub mnt_parent_id: u64,
}

/// listmount: up to `out.len()` unique mount ids under `mnt_id` after `last` (0 = from the start).
pub(crate) fn listmount(mnt_id: u64, last: u64, out: &mut [u64]) -> Result<usize, Errno> {
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        mnt_id,
        param: last,
        ..MntIdReq::default()
    };
    // SAFETY: the kernel reads `req` and writes at most out.len() ids into `out`.
    let n = check(unsafe {
        libc::syscall(
            SYS_LISTMOUNT,
            &req as *const MntIdReq,
            out.as_mut_ptr(),
            out.len(),
            0 as libc::c_uint,
        )
    })?;
    Ok(n as usize)
}

/// statmount of one mount id, asking for `mask`.
pub(crate) fn statmount(mnt_id: u64, mask: u64) -> Result<StatMount, Errno> {
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        mnt_id,
        param: mask,
        ..MntIdReq::default()
    };
    let mut buf = vec![0u64; 512];
    // SAFETY: the kernel reads `req` and writes at most the given byte count into `buf`.
    check(unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            &req as *const MntIdReq,
            buf.as_mut_ptr(),
            buf.len() * 8,
            0 as libc::c_uint,
        )
    })?;
    // Offsets in 8-byte words: mask at 8, sb_magic at 24, mnt_id at 40, mnt_parent_id at 48.
    Ok(StatMount {
        mask: buf[1],
        sb_magic: buf[3],
        mnt_id: buf[5],
        mnt_parent_id: buf[6],
    })
}

/// statx(STATX_MNT_ID_UNIQUE): the 64-bit mount id statmount and listmount use.
pub(crate) fn unique_mount_id(path: &Path) -> Result<u64, Errno> {
    let path = c_path(path)?;
    // SAFETY: statx is a plain C struct for which all-zero bytes are valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stx` is writable; both outlive the call.
    let ret = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            0,
            libc::STATX_MNT_ID_UNIQUE,
            &mut stx,
        )
    };
    check(libc::c_long::from(ret))?;
    if stx.stx_mask & libc::STATX_MNT_ID_UNIQUE == 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(stx.stx_mnt_id)
}

/// open_tree(OPEN_TREE_CLONE): a detached copy of the mount at `path`.
pub(crate) fn open_tree_clone(path: &Path) -> Result<OwnedFd, Errno> {
    let path = c_path(path)?;
    // SAFETY: `path` is NUL-terminated; open_tree returns a new fd.
    owned_fd(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })
}

/// move_mount of a detached tree fd onto `to`, through the mount executor's own wrapper.
pub(crate) fn move_mount_fd(from: BorrowedFd<'_>, to: &Path) -> Result<(), Errno> {
    let to = c_path(to)?;
    // SAFETY: AT_FDCWD is a valid "descriptor" for the *at calls for as long as the process lives.
    let cwd = unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) };
    dormant_mounts::sys::move_mount(
        from,
        c"",
        cwd,
        &to,
        dormant_mounts::sys::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// move_mount between two paths with `flags` (MOVE_MOUNT_SET_GROUP here), through the mount executor's
/// own wrapper.
pub(crate) fn move_mount_paths(from: &Path, to: &Path, flags: u32) -> Result<(), Errno> {
    let from = c_path(from)?;
    let to = c_path(to)?;
    // SAFETY: AT_FDCWD is a valid "descriptor" for the *at calls for as long as the process lives.
    let cwd = unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) };
    dormant_mounts::sys::move_mount(cwd, &from, cwd, &to, flags)
}

/// unshare with raw clone flags (nix has no CLONE_NEWTIME).
pub(crate) fn unshare(flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: unshare takes flags only.
    check(libc::c_long::from(unsafe { libc::unshare(flags) })).map(drop)
}
