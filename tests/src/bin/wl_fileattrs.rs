//! Workload `wl_fileattrs`: attributes of open files that a restore must give back exactly (issue 13).
//!
//! `wl_fileattrs TRIGGER DIR KIND... [--inject-fault]`, KIND one of:
//! - `memfd`: a memfd with `O_APPEND|O_NONBLOCK` set by `F_SETFL` and seals `F_SEAL_SHRINK|F_SEAL_GROW`,
//!   and a second memfd reopened read-only through `/proc/self/fd` (the writable one closed) with owner
//!   1234:5678, mode 0640 and fixed access and modification times; after the trigger the status flags,
//!   access modes, seals, owner, mode, times, offsets and content are as before.
//! - `ghost`: a file of DIR with owner 4321:8765, mode 0604 and fixed times, unlinked while open (offset
//!   100), and a second one opened write-only and unlinked (`unlink_fstat`: the dumper cannot read it
//!   through the process's description); after the trigger `fstat` shows the same owner, mode, times and
//!   size with no link left, the access mode is the same and the content is.
//! - `mapshared`: a file of DIR opened read-write, mapped `MAP_SHARED` `PROT_READ` and closed, and one
//!   opened read-only and mapped the same way; after the trigger `mprotect(PROT_WRITE)` works on the first
//!   (a write through it reaches the file) and fails with EACCES on the second.
//! - `big`: a memfd of 100 MiB and 7 bytes and an unlinked file of DIR of 70 MiB, both sparse with data
//!   at the start, past 64 MiB and at the end (larger than one record entry of an image may be); after
//!   the trigger each has its size, offset and content (hashed whole, so holes read zero).
//! - `hugetlb`: a memfd backed by huge pages (`MFD_HUGETLB`), which the dump refuses; after the trigger
//!   it is still a memfd on hugetlbfs.
//!
//! `--inject-fault` clears the memfd's `O_APPEND`, touches the unlinked file's times, maps the first
//! shared file again from a read-only open, and writes a byte into the big memfd's hole, after the trigger
//! and before the checks.

use std::os::fd::RawFd;
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const USAGE: &str = "KIND... [--inject-fault]";
const MEMFD_BYTES: &[u8] = b"memfd content with flags";
const OWNER: (u32, u32) = (1234, 5678);
const GHOST_OWNER: (u32, u32) = (4321, 8765);
/// Access and modification times set on the carried inodes (seconds, nanoseconds).
const ATIME: (i64, i64) = (1_000_000_000, 123_456_789);
const MTIME: (i64, i64) = (1_100_000_000, 987_654_321);
const GHOST_LEN: usize = 5000;
const PAGE: usize = 4096;

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn cvt(r: libc::c_int, what: &str) -> Result<libc::c_int, WorkloadError> {
    if r < 0 {
        Err(WorkloadError::setup(what, std::io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

fn cstr(p: &std::path::Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

fn write_all(fd: RawFd, b: &[u8]) -> Result<(), WorkloadError> {
    // SAFETY: writes `b.len()` bytes from `b`.
    let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
    if n as usize != b.len() {
        return Err(WorkloadError::setup("write", os_err("write")));
    }
    Ok(())
}

fn ghost_pattern() -> Vec<u8> {
    (0..GHOST_LEN as u32)
        .map(|i| (i % 17) as u8 + b'A')
        .collect()
}

fn stat(fd: RawFd) -> Result<libc::stat, String> {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(os_err("fstat"));
    }
    Ok(st)
}

fn set_attrs(fd: RawFd, owner: (u32, u32), mode: u32) -> Result<(), WorkloadError> {
    // SAFETY: fchown/fchmod/futimens on our own fd; futimens reads two timespecs.
    cvt(unsafe { libc::fchown(fd, owner.0, owner.1) }, "fchown")?;
    // SAFETY: as above.
    cvt(unsafe { libc::fchmod(fd, mode) }, "fchmod")?;
    let ts = [
        libc::timespec {
            tv_sec: ATIME.0,
            tv_nsec: ATIME.1,
        },
        libc::timespec {
            tv_sec: MTIME.0,
            tv_nsec: MTIME.1,
        },
    ];
    // SAFETY: as above.
    cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }, "futimens")?;
    Ok(())
}

/// Owner, mode, times, size and link count of `fd` against what was set.
fn check_attrs(
    fd: RawFd,
    owner: (u32, u32),
    mode: u32,
    size: usize,
    nlink: u64,
) -> Result<(), String> {
    let st = stat(fd)?;
    let got = (
        (st.st_uid, st.st_gid),
        st.st_mode & 0o7777,
        (st.st_atime, st.st_atime_nsec),
        (st.st_mtime, st.st_mtime_nsec),
        st.st_size as usize,
        st.st_nlink,
    );
    let want = (owner, mode, ATIME, MTIME, size, nlink);
    if got != want {
        return Err(format!(
            "fd {fd}: (owner, mode, atime, mtime, size, nlink) is {got:?}, want {want:?}"
        ));
    }
    Ok(())
}

fn getfl(fd: RawFd) -> i32 {
    // SAFETY: F_GETFL on our own fd.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

const FL_MASK: i32 = libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC;

fn pread_all(fd: RawFd, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    // SAFETY: reads at most `len` bytes into `buf`.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), len, 0) };
    if n < 0 {
        return Err(os_err("pread"));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn pos(fd: RawFd) -> i64 {
    // SAFETY: lseek on our own fd.
    unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }
}

#[derive(Debug)]
enum State {
    Memfd {
        flagged: RawFd,
        reopened: RawFd,
    },
    Ghost {
        rw: RawFd,
        wronly: RawFd,
    },
    MapShared {
        rw_map: usize,
        ro_map: usize,
        rw_path: std::path::PathBuf,
    },
    /// (fd, size, offset, hash) of the big memfd and the big unlinked file.
    Big(Vec<(RawFd, u64, i64, u64)>),
    Hugetlb(RawFd),
}

fn hugetlb() -> Result<State, WorkloadError> {
    let name = std::ffi::CString::new("huge").unwrap_or_default();
    // SAFETY: memfd_create reads the NUL-terminated name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_HUGETLB) };
    if fd < 0 {
        return Err(WorkloadError::setup(
            "memfd_create(MFD_HUGETLB)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(State::Hugetlb(fd))
}

fn check_hugetlb(fd: RawFd) -> Result<(), String> {
    // SAFETY: fstatfs into a zeroed struct on our own fd.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 {
        return Err(format!("fstatfs: {}", std::io::Error::last_os_error()));
    }
    if st.f_type != libc::HUGETLBFS_MAGIC {
        return Err(format!("file system {:#x}, not hugetlbfs", st.f_type));
    }
    Ok(())
}

/// FNV-1a over `len` bytes of `fd` from offset 0, read in 1 MiB chunks.
fn hash_fd(fd: RawFd, len: u64) -> Result<u64, String> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut h, mut off) = (0xcbf2_9ce4_8422_2325u64, 0u64);
    while off < len {
        let n = ((len - off) as usize).min(buf.len());
        // SAFETY: reads at most `n` bytes into `buf`.
        let got = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), n, off as i64) };
        if got <= 0 {
            return Err(format!("pread at {off}: {got}"));
        }
        for &b in &buf[..got as usize] {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        off += got as u64;
    }
    Ok(h)
}

/// A sparse file of `size` bytes in `fd` with 3 data runs (start, 65 MiB, end), at offset 4097.
fn fill_big(fd: RawFd, size: u64) -> Result<(RawFd, u64, i64, u64), WorkloadError> {
    let runs: [(u64, &[u8]); 3] = [
        (0, b"the start of a big file"),
        (65 << 20, &[0x5a; 9000]),
        (size - 5, b"end!\n"),
    ];
    // SAFETY: ftruncate and lseek on our own fd.
    let ok = unsafe { libc::ftruncate(fd, size as i64) } == 0
        && runs.iter().all(|(off, b)| {
            // SAFETY: writes `b.len()` bytes from `b`.
            let n = unsafe { libc::pwrite(fd, b.as_ptr().cast(), b.len(), *off as i64) };
            n == b.len() as isize
        })
        && unsafe { libc::lseek(fd, 4097, libc::SEEK_SET) } == 4097;
    if !ok {
        return Err(WorkloadError::setup(
            "filling a big file",
            std::io::Error::last_os_error(),
        ));
    }
    let hash = hash_fd(fd, size).map_err(|e| WorkloadError::setup("hashing", e))?;
    Ok((fd, size, 4097, hash))
}

fn big(dir: &std::path::Path) -> Result<State, WorkloadError> {
    let name = std::ffi::CString::new("big").unwrap_or_default();
    // SAFETY: memfd_create reads the NUL-terminated name.
    let memfd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    let path = dir.join("big-unlinked");
    // SAFETY: open reads the NUL-terminated path.
    let file = unsafe {
        libc::open(
            cstr(&path).as_ptr(),
            libc::O_CREAT | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    if memfd < 0 || file < 0 {
        return Err(WorkloadError::setup(
            "creating the big files",
            std::io::Error::last_os_error(),
        ));
    }
    let m = fill_big(memfd, (100 << 20) + 7)?;
    let f = fill_big(file, 70 << 20)?;
    std::fs::remove_file(&path).map_err(|e| WorkloadError::setup("unlink", e))?;
    Ok(State::Big(vec![m, f]))
}

fn check_big(files: &[(RawFd, u64, i64, u64)]) -> Result<(), String> {
    for &(fd, size, at, hash) in files {
        // SAFETY: fstat into a zeroed struct on our own fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_size as u64 != size {
            return Err(format!("fd {fd}: size {}, want {size}", st.st_size));
        }
        if pos(fd) != at {
            return Err(format!("fd {fd}: offset {}, want {at}", pos(fd)));
        }
        let got = hash_fd(fd, size)?;
        if got != hash {
            return Err(format!("fd {fd}: content hash {got:#x}, want {hash:#x}"));
        }
    }
    Ok(())
}

fn memfd() -> Result<State, WorkloadError> {
    let name = c"wl-fileattrs";
    // SAFETY: memfd_create reads the name and returns a new fd.
    let flagged = cvt(
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING) },
        "memfd_create",
    )?;
    write_all(flagged, MEMFD_BYTES)?;
    let fl = libc::O_APPEND | libc::O_NONBLOCK;
    // SAFETY: fcntl on our own fd.
    let r = unsafe { libc::fcntl(flagged, libc::F_SETFL, fl) };
    cvt(r, "F_SETFL")?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    // SAFETY: fcntl on our own fd.
    let r = unsafe { libc::fcntl(flagged, libc::F_ADD_SEALS, seals) };
    cvt(r, "F_ADD_SEALS")?;
    // SAFETY: as above.
    let first = cvt(
        unsafe { libc::memfd_create(name.as_ptr(), 0) },
        "memfd_create",
    )?;
    write_all(first, MEMFD_BYTES)?;
    let path = std::ffi::CString::new(format!("/proc/self/fd/{first}")).unwrap_or_default();
    // SAFETY: open reads the path.
    let reopened = cvt(
        unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) },
        "reopen",
    )?;
    // SAFETY: closes our own fd.
    unsafe { libc::close(first) };
    // SAFETY: lseek on our own fd.
    unsafe { libc::lseek(reopened, 5, libc::SEEK_SET) };
    set_attrs(reopened, OWNER, 0o640)?;
    Ok(State::Memfd { flagged, reopened })
}

fn check_memfd(flagged: RawFd, reopened: RawFd) -> Result<(), String> {
    let want = libc::O_RDWR | libc::O_APPEND | libc::O_NONBLOCK;
    if getfl(flagged) & FL_MASK != want {
        return Err(format!(
            "status flags {:#o}, want {want:#o}",
            getfl(flagged) & FL_MASK
        ));
    }
    // SAFETY: F_GET_SEALS on our own fd.
    let seals = unsafe { libc::fcntl(flagged, libc::F_GET_SEALS) };
    if seals != libc::F_SEAL_SHRINK | libc::F_SEAL_GROW {
        return Err(format!("seals {seals:#x}"));
    }
    if getfl(reopened) & FL_MASK != libc::O_RDONLY {
        return Err(format!("reopened memfd flags {:#o}", getfl(reopened)));
    }
    // Before any read, which may move the access time.
    check_attrs(reopened, OWNER, 0o640, MEMFD_BYTES.len(), 0)?;
    if pos(reopened) != 5 || pos(flagged) != MEMFD_BYTES.len() as i64 {
        return Err(format!("offsets {} and {}", pos(reopened), pos(flagged)));
    }
    for fd in [flagged, reopened] {
        if pread_all(fd, 100)? != MEMFD_BYTES {
            return Err(format!("content of fd {fd}"));
        }
    }
    // SAFETY: writes 1 byte from a static.
    if unsafe { libc::write(reopened, b"x".as_ptr().cast(), 1) } != -1 {
        return Err("the read-only memfd took a write".into());
    }
    Ok(())
}

fn ghost(dir: &std::path::Path) -> Result<State, WorkloadError> {
    let mk = |name: &str, flags: i32| -> Result<RawFd, WorkloadError> {
        let p = dir.join(name);
        // SAFETY: open reads the path.
        let fd = cvt(
            unsafe {
                libc::open(
                    cstr(&p).as_ptr(),
                    flags | libc::O_CREAT | libc::O_TRUNC,
                    0o600,
                )
            },
            "open",
        )?;
        write_all(fd, &ghost_pattern())?;
        set_attrs(fd, GHOST_OWNER, 0o604)?;
        std::fs::remove_file(&p).map_err(|e| WorkloadError::setup("unlink", e))?;
        Ok(fd)
    };
    let rw = mk("ghost-rw", libc::O_RDWR)?;
    // SAFETY: lseek on our own fd.
    unsafe { libc::lseek(rw, 100, libc::SEEK_SET) };
    let wronly = mk("ghost-wronly", libc::O_WRONLY)?;
    Ok(State::Ghost { rw, wronly })
}

fn check_ghost(rw: RawFd, wronly: RawFd) -> Result<(), String> {
    check_attrs(rw, GHOST_OWNER, 0o604, GHOST_LEN, 0)?;
    check_attrs(wronly, GHOST_OWNER, 0o604, GHOST_LEN, 0)?;
    if getfl(wronly) & libc::O_ACCMODE != libc::O_WRONLY
        || getfl(rw) & libc::O_ACCMODE != libc::O_RDWR
    {
        return Err(format!(
            "access modes {:#o} {:#o}",
            getfl(rw),
            getfl(wronly)
        ));
    }
    if pos(rw) != 100 || pos(wronly) != GHOST_LEN as i64 {
        return Err(format!("offsets {} {}", pos(rw), pos(wronly)));
    }
    if pread_all(rw, GHOST_LEN + 10)? != ghost_pattern() {
        return Err("content of the read-write file".into());
    }
    let again = std::fs::read(format!("/proc/self/fd/{wronly}")).map_err(|e| e.to_string())?;
    if again != ghost_pattern() {
        return Err("content of the write-only file".into());
    }
    Ok(())
}

fn map_file(path: &std::path::Path, flags: i32) -> Result<usize, WorkloadError> {
    // SAFETY: open reads the path.
    let fd = cvt(
        unsafe { libc::open(cstr(path).as_ptr(), flags | libc::O_CREAT, 0o600) },
        "open",
    )?;
    if flags & libc::O_ACCMODE != libc::O_RDONLY {
        write_all(fd, &[b'0'; PAGE])?;
    }
    // SAFETY: a new shared read-only mapping of our own file.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    // SAFETY: the mapping keeps the file.
    unsafe { libc::close(fd) };
    if p == libc::MAP_FAILED {
        return Err(WorkloadError::setup("mmap", os_err("mmap")));
    }
    Ok(p as usize)
}

fn map_shared(dir: &std::path::Path) -> Result<State, WorkloadError> {
    let rw_path = dir.join("shared-rw");
    let ro_path = dir.join("shared-ro");
    let rw_map = map_file(&rw_path, libc::O_RDWR)?;
    std::fs::write(&ro_path, [b'r'; PAGE]).map_err(|e| WorkloadError::setup("write", e))?;
    let ro_map = map_file(&ro_path, libc::O_RDONLY)?;
    Ok(State::MapShared {
        rw_map,
        ro_map,
        rw_path,
    })
}

fn check_map_shared(rw_map: usize, ro_map: usize, rw_path: &std::path::Path) -> Result<(), String> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: our own mapping of PAGE bytes.
    if unsafe { libc::mprotect(rw_map as *mut libc::c_void, PAGE, rw) } != 0 {
        return Err(os_err(
            "mprotect(PROT_WRITE) of the mapping of a read-write open",
        ));
    }
    // SAFETY: the mapping is writable now.
    unsafe { *(rw_map as *mut u8) = b'W' };
    // SAFETY: as above.
    unsafe { libc::msync(rw_map as *mut libc::c_void, PAGE, libc::MS_SYNC) };
    let on_disk = std::fs::read(rw_path).map_err(|e| e.to_string())?;
    if on_disk.first() != Some(&b'W') {
        return Err("a write through the shared mapping did not reach the file".into());
    }
    // SAFETY: our own mapping of PAGE bytes.
    let r = unsafe { libc::mprotect(ro_map as *mut libc::c_void, PAGE, rw) };
    let e = std::io::Error::last_os_error().raw_os_error();
    if r == 0 || e != Some(libc::EACCES) {
        return Err(format!(
            "mprotect(PROT_WRITE) of the mapping of a read-only open returned {r} ({e:?}), want EACCES"
        ));
    }
    Ok(())
}

fn set_up(kind: &str, args: &WorkloadArgs) -> Result<State, WorkloadError> {
    match kind {
        "memfd" => memfd(),
        "ghost" => ghost(&args.dir),
        "mapshared" => map_shared(&args.dir),
        "big" => big(&args.dir),
        "hugetlb" => hugetlb(),
        other => Err(WorkloadError::setup(
            "kind",
            format!("unknown kind {other}"),
        )),
    }
}

fn check(s: &State) -> Result<(), String> {
    match s {
        State::Memfd { flagged, reopened } => check_memfd(*flagged, *reopened),
        State::Ghost { rw, wronly } => check_ghost(*rw, *wronly),
        State::MapShared {
            rw_map,
            ro_map,
            rw_path,
        } => check_map_shared(*rw_map, *ro_map, rw_path),
        State::Big(files) => check_big(files),
        State::Hugetlb(fd) => check_hugetlb(*fd),
    }
}

fn inject_fault(s: &State) {
    match s {
        State::Memfd { flagged, .. } => {
            // SAFETY: fcntl on our own fd.
            unsafe { libc::fcntl(*flagged, libc::F_SETFL, libc::O_NONBLOCK) };
        }
        State::Hugetlb(_) => {}
        State::Big(files) => {
            // SAFETY: writes one byte from a static into our own memfd's hole.
            unsafe { libc::pwrite(files[0].0, b"!".as_ptr().cast(), 1, 80 << 20) };
        }
        State::Ghost { rw, .. } => {
            // SAFETY: futimens with NULL sets both times to now.
            unsafe { libc::futimens(*rw, std::ptr::null()) };
        }
        State::MapShared {
            rw_map, rw_path, ..
        } => {
            if let Ok(f) = std::fs::File::open(rw_path) {
                use std::os::fd::AsRawFd;
                // SAFETY: replaces our own mapping with a read-only-open one at the same place.
                unsafe {
                    libc::mmap(
                        *rw_map as *mut libc::c_void,
                        PAGE,
                        libc::PROT_READ,
                        libc::MAP_SHARED | libc::MAP_FIXED,
                        f.as_raw_fd(),
                        0,
                    )
                };
            }
        }
    }
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let mut report = Report::new("wl_fileattrs");
    let kinds = args.kinds()?;
    let mut states = Vec::new();
    for k in &kinds {
        states.push((k.clone(), set_up(k, &args)?));
    }
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        states.iter().for_each(|(_, s)| inject_fault(s));
    }
    for (k, s) in &states {
        report.check(k, check(s));
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_fileattrs", run)
}
