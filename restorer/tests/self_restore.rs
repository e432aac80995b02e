//! A real process through `Restore::run`, without the dumper: a forked copy of this test binary (glibc,
//! Rust std, heap, TLS, rseq) fills a heap buffer with a pattern and blocks in `read` on a FIFO. The test
//! captures it itself (ptrace regs/xstate/sigmask/rseq, /proc maps, stat, auxv and memory), writes an image
//! with `ImageWriter`, kills and reaps it, restores it with the same pid and releases it through the FIFO;
//! the restored process checks its heap and exits 42.
//!
//! Privileged: fails with a message when not run as root.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use common::require_root;
use dormant_engine::task::regs;
use dormant_engine::task::signals;
use dormant_image::records::*;
use dormant_image::{ImageWriter, InventoryInfo};
use dormant_restorer::{ExitStatus, Restore};
use nix::sys::ptrace;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid as NixPid};

const PATTERN_LEN: usize = 1 << 20;

fn pattern_byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

/// The victim: never returns.
fn victim(fifo: &Path, ready: std::os::fd::OwnedFd) -> ! {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let go = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fifo)
        .unwrap();
    // SAFETY: plain fd syscalls on fds this (child) process owns.
    unsafe {
        for fd in 0..3 {
            libc::dup2(null.as_raw_fd(), fd);
        }
        libc::dup2(go.as_raw_fd(), 3);
    }
    let buf: Vec<u8> = (0..PATTERN_LEN).map(pattern_byte).collect();
    let ready_fd = ready.as_raw_fd();
    std::mem::forget(null);
    std::mem::forget(go);
    // SAFETY: one byte to the parent, then close every fd above 3 (including `ready`).
    unsafe {
        libc::write(ready_fd, [1u8].as_ptr().cast(), 1);
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
    }
    let mut byte = [0u8; 1];
    // SAFETY: reads one byte from fd 3 (the FIFO) into our stack buffer.
    let n = unsafe { libc::read(3, byte.as_mut_ptr().cast(), 1) };
    let ok = n == 1 && buf.iter().enumerate().all(|(i, b)| *b == pattern_byte(i));
    // SAFETY: ends the process without unwinding.
    unsafe { libc::_exit(if ok { 42 } else { 1 }) }
}

struct MapLine {
    start: u64,
    end: u64,
    perms: String,
    offset: u64,
    inode: u64,
    path: String,
}

fn maps(pid: i32) -> Vec<MapLine> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            let (s, e) = c[0].split_once('-').unwrap();
            MapLine {
                start: u64::from_str_radix(s, 16).unwrap(),
                end: u64::from_str_radix(e, 16).unwrap(),
                perms: c[1].to_owned(),
                offset: u64::from_str_radix(c[2], 16).unwrap(),
                inode: c[4].parse().unwrap(),
                path: c[5..].join(" "),
            }
        })
        .collect()
}

fn file_stat(path: &str) -> FileStat {
    let m = std::fs::metadata(path).unwrap();
    FileStat {
        dev: m.dev(),
        ino: m.ino(),
        mode: m.mode(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        rdev: m.rdev(),
    }
}

fn capture(pid: i32, image: &Path, fifo: &Path) {
    let npid = NixPid::from_raw(pid);
    ptrace::seize(npid, ptrace::Options::empty()).unwrap();
    ptrace::interrupt(npid).unwrap();
    waitpid(npid, None).unwrap();

    // The capture uses the dumper's own register readers (restart rule included): this test is about
    // the restorer, not about reading registers again.
    let tid = pid as u32;
    let mut regs = regs::get_gpregs(tid).unwrap();
    regs::apply_restart_rule(&mut regs);
    let xstate = regs::get_xstate(tid).unwrap();
    let sigmask = signals::get_sigmask(tid).unwrap();
    let rseq = regs::get_rseq(tid).unwrap();

    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .map(|x| x.parse::<i64>().unwrap_or(0) as u64)
        .collect();
    let field = |n: usize| f[n - 3];
    let auxv_bytes = std::fs::read(format!("/proc/{pid}/auxv")).unwrap();
    let auxv: Vec<u64> = auxv_bytes
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();

    let mut w = ImageWriter::create(image).unwrap();
    let p = Pid(pid as u32);
    let mut files: BTreeMap<String, RegFile> = BTreeMap::new();
    let mut file_id = |path: &str, flags: u32| -> FileId {
        let next = FileId(files.len() as u32 + 1);
        files
            .entry(path.to_owned())
            .or_insert_with(|| RegFile {
                id: next,
                path: path.into(),
                flags,
                pos: 0,
                stat: file_stat(path),
            })
            .id
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let exe_id = file_id(exe.to_str().unwrap(), 0);
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let store = w.page_store(&names::task_pages(p)).unwrap();
    let mut vmas = Vec::new();
    let mut heap_end = 0;
    for m in maps(pid) {
        let prot = (m.perms.contains('r') as u32)
            | (m.perms.contains('w') as u32) << 1
            | (m.perms.contains('x') as u32) << 2;
        assert!(
            m.perms.ends_with('p'),
            "shared mapping {} not handled by this capture",
            m.path
        );
        let mut map_flags = libc::MAP_PRIVATE as u32;
        let backing = match m.path.as_str() {
            "[vdso]" => VmaBacking::Vdso,
            "[vvar]" | "[vvar_vclock]" => VmaBacking::Vvar,
            "[vsyscall]" => VmaBacking::Vsyscall,
            "[stack]" => {
                map_flags |= libc::MAP_GROWSDOWN as u32;
                VmaBacking::Anon
            }
            "[heap]" => {
                heap_end = m.end;
                VmaBacking::Anon
            }
            path if m.inode != 0 => VmaBacking::File(file_id(path, 0)),
            _ => VmaBacking::Anon,
        };
        let flags = match backing {
            VmaBacking::Vdso => Some(page_flags::VDSO),
            VmaBacking::Anon | VmaBacking::File(_) => Some(page_flags::PRIVATE),
            _ => None,
        };
        if let Some(flags) = flags {
            let mut data = vec![0u8; (m.end - m.start) as usize];
            mem.read_exact_at(&mut data, m.start).unwrap();
            let file_backed = matches!(backing, VmaBacking::File(_) | VmaBacking::Vdso);
            for (i, page) in data.chunks(4096).enumerate() {
                if file_backed || page.iter().any(|b| *b != 0) {
                    store
                        .write_extent(m.start + i as u64 * 4096, flags, page)
                        .unwrap();
                }
            }
        }
        vmas.push(Vma {
            start: m.start,
            end: m.end,
            prot,
            map_flags,
            madvise: Vec::new(),
            pgoff: m.offset,
            backing,
            name: m.path.clone(),
            lock_on_fault: false,
            pkey: Some(0),
        });
    }
    w.finish_page_store(store).unwrap();
    let layout = MmLayout {
        start_code: field(26),
        end_code: field(27),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        brk: heap_end.max(field(47)),
        start_stack: field(28),
        arg_start: field(48),
        arg_end: field(49),
        env_start: field(50),
        env_end: field(51),
    };
    w.write_records(
        &names::mm(p),
        &[Mm {
            layout,
            auxv,
            exe: exe_id,
            vmas,
            attrs: None,
        }],
    )
    .unwrap();
    let null = file_id("/dev/null", libc::O_RDWR as u32);
    let go = file_id(fifo.to_str().unwrap(), libc::O_RDWR as u32);
    let fds: Vec<Fd> = (0..4)
        .map(|fd| Fd {
            fd,
            cloexec: false,
            file: FdFile::Reg(if fd < 3 { null } else { go }),
        })
        .collect();
    w.write_records(&names::fds(p), &fds).unwrap();
    w.write_records(names::REG_FILES, &files.into_values().collect::<Vec<_>>())
        .unwrap();
    w.write_records(
        names::PSTREE,
        &[PsTreeEntry {
            pid: p,
            ppid: None,
            pgid: p,
            sid: p,
            threads: vec![Tid(p.0)],
            ns_pids: Vec::new(),
        }],
    )
    .unwrap();
    let thread = ThreadCore {
        tid: Tid(p.0),
        regs,
        xstate,
        sigmask,
        pending: Vec::new(),
        rseq,
        sigaltstack: None,
        clear_child_tid: None,
        comm: "victim".into(),
        robust_list: None,
        ns_tids: Vec::new(),
        creds: None,
    };
    w.write_records(&names::thread(Tid(p.0)), &[thread])
        .unwrap();
    let core = TaskCore {
        pid: p,
        comm: "victim".into(),
        personality: 0,
        umask: 0o022,
        rlimits: Vec::new(),
        sigactions: None,
        itimers: None,
        creds: Creds::default(),
        dumpable: None,
        pdeathsig: None,
        child_subreaper: None,
        shared_pending: Vec::new(),
        stopped: false,
        job_stop: None,
        cwd: "/".into(),
        root: "/".into(),
        posix_timers: Vec::new(),
        cwd_removed: None,
        root_removed: None,
    };
    w.write_records(&names::core(p), &[core]).unwrap();
    w.commit(InventoryInfo {
        arch: dormant_image::ARCH.into(),
        kernel_release: "test".into(),
        xsave_features: 0x3,
        xsave_size: 0,
        tool_version: "self_restore test".into(),
        created_unix_secs: 0,
        root_pid: p,
    })
    .unwrap();
}

fn restores_a_forked_rust_process() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (ready_read, ready_write) = nix::unistd::pipe().unwrap();
    // SAFETY: this test binary is single-threaded (harness = false); the child only runs `victim`.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => victim(&fifo, ready_write),
        ForkResult::Parent { child } => child,
    };
    drop(ready_write);
    let mut ready = std::fs::File::from(ready_read);
    let mut buf = Vec::new();
    ready.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, [1], "victim ready");
    std::thread::sleep(std::time::Duration::from_millis(200));

    let image = tmp.path().join("img");
    capture(child.as_raw(), &image, &fifo);
    nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
    waitpid(child, None).unwrap();

    let restored = Restore::builder(&image).build().unwrap().run().unwrap();
    assert_eq!(restored.pid(), child.as_raw() as u32, "same pid");
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::io::Write::write_all(&mut w, &[1]).unwrap();
    assert_eq!(
        restored.wait().unwrap(),
        ExitStatus::Exited(42),
        "restored process verified its heap"
    );
}

fn main() {
    require_root("self_restore");
    eprint!("test restores_a_forked_rust_process ... ");
    restores_a_forked_rust_process();
    eprintln!("ok");
}
