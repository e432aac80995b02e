//! Workload `wl_ghostmap`: files that have no name any more while a process still uses them (issue 13).
//!
//! `wl_ghostmap TRIGGER DIR KIND... [--inject-fault]`, KIND one of:
//! - `mapped`: file `a` of DIR (4 pages), open read-write as an fd, mapped `MAP_SHARED` whole and
//!   `MAP_PRIVATE` at offset 1 page (2 pages, the first one written: dirty); file `b` (3 pages) mapped
//!   `MAP_SHARED` twice (read-write and read-only) and `MAP_PRIVATE` read-only at offset 2 pages, its fd
//!   closed; a shared write into each before both are unlinked. After the trigger `/proc/self/maps` names
//!   each mapping `PATH (deleted)` at its offset, every mapping holds what it held, all mappings of one
//!   file and the fd are one inode with no link, and a shared write still reaches the file (the fd, the
//!   other shared mapping, and the clean page of the private mapping see it).
//! - `exe`: the workload copies its own executable to DIR, execs the copy and deletes it; after the
//!   trigger `/proc/self/exe` reads `COPY (deleted)`, opening it gives an ELF of the same size and mode with
//!   no link, and `/proc/self/maps` maps the copy `(deleted)`.
//! - `big`: file `big` of DIR, 80 MiB and 123 bytes, sparse (a hole at its start), with data in its
//!   second page, at 70 MiB and in its partial last page, mapped `MAP_SHARED` read-only whole and
//!   unlinked. After the trigger the mapping is named `PATH (deleted)`, the file has the same size and no
//!   link, and the whole mapping hashes as it did (so holes read zero). Bigger than one record entry of
//!   the image may be: its content must be carried outside the records.
//! - `fifo`: FIFO `f` of DIR opened read-only (non-blocking) and write-only, 13 bytes written, then
//!   unlinked; after the trigger both ends are one FIFO with no link named `PATH (deleted)`, the 13 bytes
//!   are there, and bytes written to one end come out of the other.
//!
//! `--inject-fault` maps a new file (linked, same bytes) over `b`'s read-only shared mapping, reads the
//! FIFO's bytes away, maps an anonymous page over the second page of `big`, and the checks of `mapped`,
//! `big` and `fifo` fail as they would if the restore had not
//! rebuilt them.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const USAGE: &str = "KIND... [--inject-fault]";
const PAGE: usize = 4096;
const FIFO_BYTES: &[u8] = b"fifo-queued!\n";
/// Set in the environment of the copy `exe` runs as: the copy's path.
const COPY_ENV: &str = "WL_GHOSTMAP_COPY";

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn setup_err(what: &str) -> WorkloadError {
    WorkloadError::setup(what, std::io::Error::last_os_error())
}

fn cstr(p: &std::path::Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + seed as usize) % 251) as u8)
        .collect()
}

fn open(path: &std::path::Path, flags: i32) -> Result<RawFd, WorkloadError> {
    // SAFETY: open reads the NUL-terminated path.
    let fd = unsafe { libc::open(cstr(path).as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(setup_err(&format!("open {}", path.display())));
    }
    Ok(fd)
}

fn write_all(fd: RawFd, b: &[u8]) -> Result<(), WorkloadError> {
    // SAFETY: writes `b.len()` bytes from `b`.
    let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
    if n < 0 || n as usize != b.len() {
        return Err(setup_err("write"));
    }
    Ok(())
}

/// A mapping of `len` bytes of `fd` at `off`.
fn map(fd: RawFd, len: usize, prot: i32, flags: i32, off: usize) -> Result<usize, WorkloadError> {
    // SAFETY: a new mapping chosen by the kernel; nothing else is touched.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off as i64) };
    if p == libc::MAP_FAILED {
        return Err(setup_err("mmap"));
    }
    Ok(p as usize)
}

/// The bytes of this process's memory at `addr..addr+len` (a mapping this workload made).
fn mem(addr: usize, len: usize) -> &'static mut [u8] {
    // SAFETY: callers pass mappings of at least `len` bytes that live until the process exits.
    unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

fn unlink(path: &std::path::Path) -> Result<(), WorkloadError> {
    // SAFETY: unlink reads the NUL-terminated path.
    if unsafe { libc::unlink(cstr(path).as_ptr()) } != 0 {
        return Err(setup_err(&format!("unlink {}", path.display())));
    }
    Ok(())
}

fn fstat(fd: RawFd) -> Result<libc::stat, String> {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(os_err("fstat"));
    }
    Ok(st)
}

/// (dev, ino) of the file behind mapping `addr..addr+len`, through `/proc/self/map_files`.
fn mapped_inode(addr: usize, len: usize) -> Result<(u64, u64), String> {
    use std::os::unix::fs::MetadataExt;
    let p = format!("/proc/self/map_files/{addr:x}-{:x}", addr + len);
    let md = std::fs::metadata(&p).map_err(|e| format!("{p}: {e}"))?;
    Ok((md.dev(), md.ino()))
}

/// The `/proc/self/maps` line of the mapping starting at `addr`: (offset, path).
fn maps_entry(addr: usize) -> Result<(u64, String), String> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("maps: {e}"))?;
    let start = format!("{addr:x}-");
    let line = maps
        .lines()
        .find(|l| l.starts_with(&start))
        .ok_or_else(|| format!("no mapping at {addr:#x}"))?;
    let f: Vec<&str> = line.splitn(6, char::is_whitespace).collect();
    let off =
        u64::from_str_radix(f.get(2).copied().unwrap_or(""), 16).map_err(|e| e.to_string())?;
    Ok((off, f.get(5).map_or("", |s| s.trim_start()).to_string()))
}

fn fd_link(fd: RawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("<{e}>"))
}

/// `mapped`: see the module docs.
struct Mapped {
    a: String,
    b: String,
    fd_a: RawFd,
    /// (addr, len) of a's shared and private mappings, b's two shared ones and its private one.
    sa: (usize, usize),
    pa: (usize, usize),
    sb1: (usize, usize),
    sb2: (usize, usize),
    pb: (usize, usize),
    want_a: Vec<u8>,
    want_b: Vec<u8>,
    dir: std::path::PathBuf,
}

fn set_up_mapped(dir: &std::path::Path) -> Result<Mapped, WorkloadError> {
    let (a, b) = (dir.join("a"), dir.join("b"));
    let mut want_a = pattern(3, 4 * PAGE);
    let mut want_b = pattern(11, 3 * PAGE);
    let fd_a = open(&a, libc::O_CREAT | libc::O_RDWR)?;
    write_all(fd_a, &want_a)?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let sa = (map(fd_a, 4 * PAGE, rw, libc::MAP_SHARED, 0)?, 4 * PAGE);
    let pa = (map(fd_a, 2 * PAGE, rw, libc::MAP_PRIVATE, PAGE)?, 2 * PAGE);
    let fd_b = open(&b, libc::O_CREAT | libc::O_RDWR)?;
    write_all(fd_b, &want_b)?;
    let sb1 = (map(fd_b, 3 * PAGE, rw, libc::MAP_SHARED, 0)?, 3 * PAGE);
    let sb2 = (
        map(fd_b, 3 * PAGE, libc::PROT_READ, libc::MAP_SHARED, 0)?,
        3 * PAGE,
    );
    let pb = (
        map(fd_b, PAGE, libc::PROT_READ, libc::MAP_PRIVATE, 2 * PAGE)?,
        PAGE,
    );
    // SAFETY: closes our own fd; the mappings keep the file.
    unsafe { libc::close(fd_b) };
    // Shared writes land in the files; the private one only in a's private copy of its page.
    mem(sa.0, sa.1)[10..20].copy_from_slice(b"shared-pre");
    want_a[10..20].copy_from_slice(b"shared-pre");
    mem(sb1.0, sb1.1)[2 * PAGE + 5..2 * PAGE + 14].copy_from_slice(b"b-shared!");
    want_b[2 * PAGE + 5..2 * PAGE + 14].copy_from_slice(b"b-shared!");
    mem(pa.0, pa.1)[0..12].copy_from_slice(b"private-pre!");
    unlink(&a)?;
    unlink(&b)?;
    Ok(Mapped {
        a: a.display().to_string(),
        b: b.display().to_string(),
        fd_a,
        sa,
        pa,
        sb1,
        sb2,
        pb,
        want_a,
        want_b,
        dir: dir.to_path_buf(),
    })
}

fn check_mapped(m: &Mapped) -> Vec<(&'static str, Result<(), String>)> {
    let names = || -> Result<(), String> {
        let want = [
            (m.sa.0, 0, &m.a),
            (m.pa.0, PAGE as u64, &m.a),
            (m.sb1.0, 0, &m.b),
            (m.sb2.0, 0, &m.b),
            (m.pb.0, 2 * PAGE as u64, &m.b),
        ];
        for (addr, off, path) in want {
            let got = maps_entry(addr)?;
            let w = (off, format!("{path} (deleted)"));
            if got != w {
                return Err(format!(
                    "mapping {addr:#x}: (offset, name) {got:?}, want {w:?}"
                ));
            }
        }
        let link = fd_link(m.fd_a);
        if link != format!("{} (deleted)", m.a) {
            return Err(format!("fd {} links to {link:?}", m.fd_a));
        }
        Ok(())
    };
    let content = || -> Result<(), String> {
        let mut priv_a = m.want_a[PAGE..3 * PAGE].to_vec();
        priv_a[0..12].copy_from_slice(b"private-pre!");
        let want: [(&str, (usize, usize), &[u8]); 5] = [
            ("a shared", m.sa, &m.want_a),
            ("a private", m.pa, &priv_a),
            ("b shared", m.sb1, &m.want_b),
            ("b shared read-only", m.sb2, &m.want_b),
            ("b private", m.pb, &m.want_b[2 * PAGE..]),
        ];
        for (what, (addr, len), bytes) in want {
            if mem(addr, len) != bytes {
                return Err(format!("{what} mapping at {addr:#x} differs"));
            }
        }
        Ok(())
    };
    let one_inode = || -> Result<(), String> {
        let st = fstat(m.fd_a)?;
        if st.st_nlink != 0 {
            return Err(format!("a has {} links", st.st_nlink));
        }
        let ia = (st.st_dev, st.st_ino);
        for r in [m.sa, m.pa] {
            if mapped_inode(r.0, r.1)? != ia {
                return Err(format!(
                    "mapping {:#x} is not the inode of fd {}",
                    r.0, m.fd_a
                ));
            }
        }
        let ib = mapped_inode(m.sb1.0, m.sb1.1)?;
        for r in [m.sb2, m.pb] {
            if mapped_inode(r.0, r.1)? != ib {
                return Err(format!("mapping {:#x} is another inode than b's", r.0));
            }
        }
        Ok(())
    };
    let shared_write = || -> Result<(), String> {
        // Through a's shared mapping into the fd, and into the clean second page of its private mapping.
        mem(m.sa.0, m.sa.1)[100..108].copy_from_slice(b"post-sa!");
        mem(m.sa.0, m.sa.1)[2 * PAGE + 50..2 * PAGE + 58].copy_from_slice(b"clean-pg");
        let mut buf = [0u8; 8];
        // SAFETY: reads 8 bytes into `buf`.
        let n = unsafe { libc::pread(m.fd_a, buf.as_mut_ptr().cast(), 8, 100) };
        if n != 8 || &buf != b"post-sa!" {
            return Err(format!("pread of a after a shared write: {n} {buf:?}"));
        }
        if &mem(m.pa.0, m.pa.1)[PAGE + 50..PAGE + 58] != b"clean-pg" {
            return Err("a's clean private page does not show the shared write".into());
        }
        mem(m.sb1.0, m.sb1.1)[200..207].copy_from_slice(b"post-sb");
        if &mem(m.sb2.0, m.sb2.1)[200..207] != b"post-sb" {
            return Err("b's second shared mapping does not show the write".into());
        }
        Ok(())
    };
    vec![
        ("mapped-names", names()),
        ("mapped-content", content()),
        ("mapped-one-inode", one_inode()),
        ("mapped-shared-write", shared_write()),
    ]
}

/// The `big` file: its mapping, size, path and the hash of its bytes at setup.
struct Big {
    path: String,
    map: (usize, usize),
    size: u64,
    hash: u64,
}

const BIG_SIZE: usize = (80 << 20) + 123;

/// FNV-1a over `b`: enough to tell a byte moved or lost.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn set_up_big(dir: &std::path::Path) -> Result<Big, WorkloadError> {
    let path = dir.join("big");
    let fd = open(&path, libc::O_CREAT | libc::O_RDWR)?;
    // SAFETY: ftruncate on our own fd.
    let ok = unsafe { libc::ftruncate(fd, BIG_SIZE as i64) } == 0
        && [
            (PAGE, pattern(5, PAGE)),
            (70 << 20, pattern(6, 3 * PAGE)),
            (BIG_SIZE - 123, pattern(7, 123)),
        ]
        .iter()
        .all(|(off, b)| {
            // SAFETY: writes `b.len()` bytes from `b` into our own fd.
            let n = unsafe { libc::pwrite(fd, b.as_ptr().cast(), b.len(), *off as i64) };
            n == b.len() as isize
        });
    if !ok {
        return Err(setup_err("filling big"));
    }
    let len = BIG_SIZE.next_multiple_of(PAGE);
    let addr = map(fd, len, libc::PROT_READ, libc::MAP_SHARED, 0)?;
    // SAFETY: our own fd; the mapping keeps the file.
    unsafe { libc::close(fd) };
    let hash = fnv(&mem(addr, BIG_SIZE)[..]);
    unlink(&path)?;
    Ok(Big {
        path: path.display().to_string(),
        map: (addr, len),
        size: BIG_SIZE as u64,
        hash,
    })
}

fn check_big(b: &Big) -> Vec<(&'static str, Result<(), String>)> {
    let named = || -> Result<(), String> {
        let got = maps_entry(b.map.0)?;
        let want = (0, format!("{} (deleted)", b.path));
        if got != want {
            return Err(format!("(offset, name) {got:?}, want {want:?}"));
        }
        let f = format!("/proc/self/map_files/{:x}-{:x}", b.map.0, b.map.0 + b.map.1);
        let md = std::fs::metadata(&f).map_err(|e| format!("stat {f}: {e}"))?;
        use std::os::unix::fs::MetadataExt;
        if (md.size(), md.nlink()) != (b.size, 0) {
            return Err(format!(
                "(size, nlink) {:?}, want {:?}",
                (md.size(), md.nlink()),
                (b.size, 0)
            ));
        }
        Ok(())
    };
    let content = || -> Result<(), String> {
        let got = fnv(&mem(b.map.0, BIG_SIZE)[..]);
        if got != b.hash {
            return Err(format!("hash {got:#x}, want {:#x}", b.hash));
        }
        Ok(())
    };
    vec![("big-named", named()), ("big-content", content())]
}

fn inject_big(b: &Big) {
    // SAFETY: replaces one page of our own mapping with an anonymous one.
    unsafe {
        libc::mmap(
            (b.map.0 + PAGE) as *mut libc::c_void,
            PAGE,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        );
    }
}

fn inject_mapped(m: &Mapped) {
    let c = m.dir.join("c");
    let Ok(fd) = open(&c, libc::O_CREAT | libc::O_RDWR) else {
        return;
    };
    let _ = write_all(fd, &m.want_b);
    // SAFETY: replaces our own mapping sb2 (same length) with one of the new file.
    unsafe {
        libc::mmap(
            m.sb2.0 as *mut libc::c_void,
            m.sb2.1,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            0,
        );
        libc::close(fd);
    }
}

/// `exe`: the copy's path and what it was.
struct Exe {
    copy: String,
    size: i64,
    mode: u32,
}

/// Runs as a copy of this executable (exec'ing it on the first call), then deletes the copy.
fn set_up_exe(dir: &std::path::Path) -> Result<Exe, WorkloadError> {
    let copy = match std::env::var(COPY_ENV) {
        Ok(c) => c,
        Err(_) => {
            let copy = dir.join("wl_ghostmap.copy");
            std::fs::copy("/proc/self/exe", &copy)
                .map_err(|e| WorkloadError::setup("copying the executable", e))?;
            let args: Vec<CString> = std::env::args()
                .map(|a| CString::new(a).unwrap_or_default())
                .collect();
            let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
            argv.push(std::ptr::null());
            std::env::set_var(COPY_ENV, &copy);
            let path = cstr(&copy);
            // SAFETY: execv reads the NUL-terminated path and argv; on success it does not return.
            unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
            return Err(setup_err("exec of the copy"));
        }
    };
    let md = std::fs::metadata(&copy).map_err(|e| WorkloadError::setup("stat copy", e))?;
    use std::os::unix::fs::MetadataExt;
    unlink(std::path::Path::new(&copy))?;
    Ok(Exe {
        copy,
        size: md.size() as i64,
        mode: md.mode() & 0o7777,
    })
}

fn check_exe(e: &Exe) -> Vec<(&'static str, Result<(), String>)> {
    let want = format!("{} (deleted)", e.copy);
    let link = || -> Result<(), String> {
        let got = std::fs::read_link("/proc/self/exe").map_err(|e| format!("exe link: {e}"))?;
        if got.display().to_string() != want {
            return Err(format!("/proc/self/exe is {got:?}, want {want:?}"));
        }
        Ok(())
    };
    let stat = || -> Result<(), String> {
        let f = std::fs::File::open("/proc/self/exe").map_err(|e| format!("open exe: {e}"))?;
        use std::os::fd::AsRawFd;
        let st = fstat(f.as_raw_fd())?;
        let got = (st.st_size, st.st_mode & 0o7777, st.st_nlink);
        if got != (e.size, e.mode, 0) {
            return Err(format!(
                "exe (size, mode, nlink) {got:?}, want {:?}",
                (e.size, e.mode, 0)
            ));
        }
        let mut head = [0u8; 4];
        std::io::Read::read_exact(&mut &f, &mut head).map_err(|e| format!("read exe: {e}"))?;
        if &head != b"\x7fELF" {
            return Err(format!("exe starts with {head:?}"));
        }
        Ok(())
    };
    let maps = || -> Result<(), String> {
        let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("maps: {e}"))?;
        let text = maps
            .lines()
            .filter(|l| l.ends_with(&want))
            .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')))
            .count();
        if text == 0 {
            return Err(format!("no executable mapping of {want:?}"));
        }
        Ok(())
    };
    vec![
        ("exe-link", link()),
        ("exe-fstat", stat()),
        ("exe-maps", maps()),
    ]
}

/// `fifo`: the path and both ends.
struct Fifo {
    path: String,
    rd: RawFd,
    wr: RawFd,
}

fn set_up_fifo(dir: &std::path::Path) -> Result<Fifo, WorkloadError> {
    let p = dir.join("f");
    // SAFETY: mkfifo reads the NUL-terminated path.
    if unsafe { libc::mkfifo(cstr(&p).as_ptr(), 0o640) } != 0 {
        return Err(setup_err("mkfifo"));
    }
    let rd = open(&p, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let wr = open(&p, libc::O_WRONLY)?;
    write_all(wr, FIFO_BYTES)?;
    unlink(&p)?;
    Ok(Fifo {
        path: p.display().to_string(),
        rd,
        wr,
    })
}

fn read_some(fd: RawFd) -> Result<Vec<u8>, String> {
    let mut buf = [0u8; 256];
    // SAFETY: reads at most 256 bytes into `buf`.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(os_err("read"));
    }
    Ok(buf[..n as usize].to_vec())
}

fn check_fifo(f: &Fifo) -> Vec<(&'static str, Result<(), String>)> {
    let same = || -> Result<(), String> {
        let (r, w) = (fstat(f.rd)?, fstat(f.wr)?);
        if (r.st_dev, r.st_ino) != (w.st_dev, w.st_ino) {
            return Err("the two ends are two FIFOs".into());
        }
        if r.st_mode & libc::S_IFMT != libc::S_IFIFO || r.st_nlink != 0 {
            return Err(format!("mode {:o} nlink {}", r.st_mode, r.st_nlink));
        }
        let want = format!("{} (deleted)", f.path);
        for fd in [f.rd, f.wr] {
            if fd_link(fd) != want {
                return Err(format!("fd {fd} links to {:?}, want {want:?}", fd_link(fd)));
            }
        }
        Ok(())
    };
    let queued = || -> Result<(), String> {
        let got = read_some(f.rd)?;
        if got != FIFO_BYTES {
            return Err(format!("read {got:?}, want {FIFO_BYTES:?}"));
        }
        Ok(())
    };
    let through = || -> Result<(), String> {
        write_all(f.wr, b"after").map_err(|e| e.to_string())?;
        let got = read_some(f.rd)?;
        if got != b"after" {
            return Err(format!("read {got:?} after writing \"after\""));
        }
        Ok(())
    };
    vec![
        ("fifo-one-unlinked", same()),
        ("fifo-queued", queued()),
        ("fifo-through", through()),
    ]
}

enum State {
    Mapped(Mapped),
    Exe(Exe),
    Fifo(Fifo),
    Big(Big),
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let mut report = Report::new("wl_ghostmap");
    let kinds = args.kinds()?;
    // The exec of `exe` first: it restarts the process.
    let mut states = Vec::new();
    if kinds.iter().any(|k| *k == "exe") {
        states.push(State::Exe(set_up_exe(&args.dir)?));
    }
    for k in kinds {
        states.push(match k.as_str() {
            "mapped" => State::Mapped(set_up_mapped(&args.dir)?),
            "fifo" => State::Fifo(set_up_fifo(&args.dir)?),
            "big" => State::Big(set_up_big(&args.dir)?),
            "exe" => continue,
            other => return Err(WorkloadError::setup("kind", format!("unknown {other}"))),
        });
    }
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        for s in &states {
            match s {
                State::Mapped(m) => inject_mapped(m),
                State::Fifo(f) => drop(read_some(f.rd)),
                State::Big(b) => inject_big(b),
                State::Exe(_) => {}
            }
        }
    }
    for s in &states {
        let checks = match s {
            State::Mapped(m) => check_mapped(m),
            State::Exe(e) => check_exe(e),
            State::Fifo(f) => check_fifo(f),
            State::Big(b) => check_big(b),
        };
        for (what, r) in checks {
            report.check(what, r);
        }
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_ghostmap", run)
}
