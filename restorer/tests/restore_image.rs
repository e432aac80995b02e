//! `Restore::run` on hand-written images (no dumper needed): the image describes the victim of
//! `common` with anonymous, shared-memory and file mappings, the running vDSO, an fd 0 reopened by path
//! (a FIFO), signal actions, umask and the exe. The restored process must come back with its pid, layout
//! and fds, and verify itself (exit 42). Refusals (changed file, taken pid, different vDSO) are checked too.
//!
//! Privileged: fails with a message when not run as root.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use dormant_image::records::*;
use dormant_image::{ImageWriter, InventoryInfo};
use dormant_restorer::{ExitStatus, Restore, RestoreError};

const CODE: u64 = 0x5000_0000_0000;
const DATA1: u64 = 0x5000_0001_0000;
const DATA2: u64 = 0x5000_0002_0000;
const STACK: u64 = 0x5000_0003_0000;
const FILEMAP: u64 = 0x5000_0004_0000;
const STACK_PAGES: u64 = 8;
const VDSO_AT: u64 = 0x5000_1000_0000;
const XMM0: u64 = 0x0fed_cba9_8765_4321;
const SIGUSR1_BIT: u64 = 1 << (libc::SIGUSR1 - 1);
const SHM: ShmemId = ShmemId(7);

struct Fixture {
    _tmp: tempfile::TempDir,
    image: PathBuf,
    exe: PathBuf,
    fifo: PathBuf,
    pid: u32,
    data1: Vec<u8>,
}

fn stat_of(path: &Path) -> FileStat {
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

fn own_vdso() -> (Vec<(u64, u64, String)>, u64, Vec<u8>) {
    let maps = maps_of("self");
    let vdso = maps.iter().find(|m| m.3 == "[vdso]").unwrap();
    let vvars = maps
        .iter()
        .filter(|m| m.3.starts_with("[vvar"))
        .map(|m| (m.0, m.1, m.3.clone()))
        .collect();
    // SAFETY: [vdso] is mapped readable for the life of this process.
    let bytes =
        unsafe { std::slice::from_raw_parts(vdso.0 as *const u8, (vdso.1 - vdso.0) as usize) }
            .to_vec();
    (vvars, vdso.0, bytes)
}

fn vma(
    start: u64,
    pages: u64,
    prot: i32,
    flags: i32,
    pgoff: u64,
    backing: VmaBacking,
    name: &str,
) -> Vma {
    Vma {
        start,
        end: start + pages * PAGE,
        prot: prot as u32,
        map_flags: flags as u32,
        madvise: Vec::new(),
        pgoff,
        backing,
        name: name.to_owned(),
        lock_on_fault: false,
        pkey: Some(0),
    }
}

/// The records a test may change before the image is written.
struct Parts {
    tree: PsTreeEntry,
    core: TaskCore,
    thread: ThreadCore,
    fds: Vec<Fd>,
    descs: Vec<FileDesc>,
    zombies: Vec<Zombie>,
    xsave_features: u64,
}

fn write_image(pid: u32, corrupt_vdso: bool) -> Fixture {
    write_image_with(pid, corrupt_vdso, |_| {})
}

fn write_image_with(pid: u32, corrupt_vdso: bool, edit: impl FnOnce(&mut Parts)) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("victim-exe");
    std::fs::copy("/usr/bin/true", &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = tmp.path().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let image = tmp.path().join("img");
    let cwd = tmp.path().to_owned();

    let (code, data1, data2) = (victim_code(), pattern(0xc1), pattern(0xd2));
    let mut code_page = code.clone();
    code_page.resize(PAGE as usize, 0xcc);
    let (vvars, vdso_start, mut vdso_bytes) = own_vdso();
    if corrupt_vdso {
        vdso_bytes[100] ^= 0xff;
    }
    let vvar_base = vvars.iter().map(|v| v.0).min().unwrap();

    let mut w = ImageWriter::create(&image).unwrap();
    let p = Pid(pid);
    let tree = PsTreeEntry {
        pid: p,
        ppid: None,
        pgid: p,
        sid: p,
        threads: vec![Tid(pid)],
        ns_pids: Vec::new(),
    };
    let mut sigactions = vec![SigAction::default(); 64];
    sigactions[libc::SIGUSR2 as usize - 1] = SigAction {
        handler: CODE,
        flags: 0x0400_0000,
        restorer: CODE,
        mask: 0,
    };
    let core = TaskCore {
        pid: p,
        comm: "victim".into(),
        personality: 0,
        umask: 0o037,
        rlimits: vec![Rlimit {
            resource: libc::RLIMIT_NOFILE,
            soft: 512,
            hard: 1024,
        }],
        sigactions: Some(sigactions),
        itimers: None,
        creds: Creds::default(),
        dumpable: None,
        pdeathsig: None,
        child_subreaper: None,
        shared_pending: Vec::new(),
        stopped: false,
        job_stop: None,
        cwd: cwd.to_str().unwrap().into(),
        root: "/".into(),
        posix_timers: Vec::new(),
        cwd_removed: None,
        root_removed: None,
    };
    let stack_top = STACK + STACK_PAGES * PAGE;
    let regs = GpRegs {
        rip: CODE,
        rdi: DATA1,
        rsi: first_word(&data1, 0),
        rdx: DATA2,
        r12: first_word(&data2, 0),
        r13: XMM0,
        rbp: SIGUSR1_BIT,
        rsp: stack_top - 128,
        fs_base: DATA1 + 8,
        cs: 0x33,
        ss: 0x2b,
        eflags: 0x202,
        orig_rax: u64::MAX,
        ..Default::default()
    };
    let thread = ThreadCore {
        tid: Tid(pid),
        regs,
        xstate: xstate_with_xmm0(XMM0),
        sigmask: SIGUSR1_BIT,
        pending: Vec::new(),
        rseq: None,
        sigaltstack: None,
        clear_child_tid: None,
        comm: "victim".into(),
        robust_list: None,
        ns_tids: Vec::new(),
        creds: None,
    };

    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let private = libc::MAP_PRIVATE;
    let mut vmas = vec![
        vma(
            CODE,
            1,
            libc::PROT_READ | libc::PROT_EXEC,
            private,
            0,
            VmaBacking::Anon,
            "",
        ),
        vma(DATA1, 2, rw, private, 0, VmaBacking::Anon, ""),
        vma(
            DATA2,
            1,
            libc::PROT_READ,
            libc::MAP_SHARED,
            0,
            VmaBacking::Shmem(SHM),
            "/dev/zero (deleted)",
        ),
        vma(
            STACK,
            STACK_PAGES,
            rw,
            private | libc::MAP_GROWSDOWN,
            0,
            VmaBacking::Anon,
            "[stack]",
        ),
        vma(
            FILEMAP,
            1,
            libc::PROT_READ,
            private,
            0,
            VmaBacking::File(FileId(1)),
            exe.to_str().unwrap(),
        ),
    ];
    for (s, e, name) in &vvars {
        let start = VDSO_AT + (s - vvar_base);
        vmas.push(vma(
            start,
            (e - s) / PAGE,
            libc::PROT_READ,
            private,
            0,
            VmaBacking::Vvar,
            name,
        ));
    }
    let vdso_at = VDSO_AT + (vdso_start - vvar_base);
    vmas.push(vma(
        vdso_at,
        vdso_bytes.len() as u64 / PAGE,
        libc::PROT_READ | libc::PROT_EXEC,
        private,
        0,
        VmaBacking::Vdso,
        "[vdso]",
    ));
    vmas.sort_by_key(|v| v.start);
    let layout = MmLayout {
        start_code: CODE,
        end_code: CODE + PAGE,
        start_data: DATA1,
        end_data: DATA1 + 2 * PAGE,
        start_brk: DATA1 + 2 * PAGE,
        brk: DATA1 + 2 * PAGE,
        start_stack: stack_top - 256,
        // /proc/pid/cmdline only reads anonymous memory (FOLL_ANON), so the args live in DATA1.
        arg_start: DATA1,
        arg_end: DATA1 + 16,
        env_start: DATA1 + 16,
        env_end: DATA1 + 32,
    };
    let auxv = vec![
        libc::AT_PAGESZ,
        PAGE,
        libc::AT_SYSINFO_EHDR,
        vdso_at,
        libc::AT_NULL,
        0,
    ];
    w.write_records(
        &names::mm(p),
        &[Mm {
            layout,
            auxv,
            exe: FileId(1),
            vmas,
            attrs: None,
        }],
    )
    .unwrap();
    let files = [
        RegFile {
            id: FileId(1),
            path: exe.to_str().unwrap().into(),
            flags: 0,
            pos: 0,
            stat: stat_of(&exe),
        },
        RegFile {
            id: FileId(2),
            path: fifo.to_str().unwrap().into(),
            flags: libc::O_RDWR as u32,
            pos: 0,
            stat: stat_of(&fifo),
        },
    ];
    w.write_records(names::REG_FILES, &files).unwrap();
    let (xcr0, size) = {
        // SAFETY: CPUID is always available on x86-64.
        #[allow(unused_unsafe)]
        let leaf = unsafe { core::arch::x86_64::__cpuid_count(0xd, 0) };
        ((u64::from(leaf.edx) << 32) | u64::from(leaf.eax), leaf.ebx)
    };
    let mut parts = Parts {
        tree,
        core,
        thread,
        fds: vec![Fd {
            fd: 0,
            cloexec: false,
            file: FdFile::Reg(FileId(2)),
        }],
        descs: Vec::new(),
        zombies: Vec::new(),
        xsave_features: xcr0 & 0xe7,
    };
    edit(&mut parts);
    w.write_records(names::PSTREE, &[parts.tree]).unwrap();
    w.write_records(&names::core(p), &[parts.core]).unwrap();
    w.write_records(&names::thread(Tid(pid)), &[parts.thread])
        .unwrap();
    w.write_records(&names::fds(p), &parts.fds).unwrap();
    if !parts.descs.is_empty() {
        w.write_records(names::FILE_DESCS, &parts.descs).unwrap();
    }
    if !parts.zombies.is_empty() {
        w.write_records(names::ZOMBIES, &parts.zombies).unwrap();
    }
    w.write_records(
        names::SHMEM,
        &[ShmemObject {
            id: SHM,
            size: PAGE,
            owner: p,
        }],
    )
    .unwrap();

    let store = w.page_store(&names::task_pages(p)).unwrap();
    store
        .write_extent(CODE, page_flags::PRIVATE, &code_page)
        .unwrap();
    store
        .write_extent(DATA1, page_flags::PRIVATE, &data1)
        .unwrap();
    store
        .write_extent(vdso_at, page_flags::VDSO, &vdso_bytes)
        .unwrap();
    w.finish_page_store(store).unwrap();
    let shm = w.page_store(&names::shmem_pages(SHM)).unwrap();
    shm.write_extent(0, page_flags::SHMEM, &data2).unwrap();
    w.finish_page_store(shm).unwrap();

    w.commit(InventoryInfo {
        arch: dormant_image::ARCH.into(),
        kernel_release: "test".into(),
        xsave_features: parts.xsave_features,
        xsave_size: size,
        tool_version: "restore_image test".into(),
        created_unix_secs: 0,
        root_pid: p,
    })
    .unwrap();
    Fixture {
        _tmp: tmp,
        image,
        exe,
        fifo,
        pid,
        data1,
    }
}

fn restores_a_hand_written_image() {
    let f = write_image(free_pid(), false);
    let restored = Restore::builder(&f.image).build().unwrap().run().unwrap();
    let pid = restored.pid();
    assert_eq!(pid, f.pid);
    let maps = maps_of(&pid.to_string());
    let at = |start: u64| {
        maps.iter()
            .find(|m| m.0 == start)
            .unwrap_or_else(|| panic!("{start:#x}: {maps:#x?}"))
    };
    assert_eq!(at(CODE).2, "r-xp");
    assert_eq!(at(DATA2).2, "r--s");
    assert_eq!(
        at(DATA2).3,
        "/dev/zero (deleted)",
        "shared memory is an anonymous shmem object"
    );
    assert_eq!(at(FILEMAP).3, f.exe.to_str().unwrap());
    assert_eq!(at(STACK).3, "[stack]");
    assert_eq!(maps.iter().find(|m| m.3 == "[vvar]").unwrap().0, VDSO_AT);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        f.exe
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(),
        f.fifo
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        f.fifo.parent().unwrap()
    );
    assert_eq!(
        std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
        &f.data1[..16]
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l == "Umask:\t0037"), "{status}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(limits
        .lines()
        .any(|l| l.starts_with("Max open files") && l.contains(" 512 ") && l.contains(" 1024 ")));

    std::fs::OpenOptions::new()
        .write(true)
        .open(&f.fifo)
        .unwrap()
        .write_all(&[1])
        .unwrap();
    assert_eq!(
        restored.wait().unwrap(),
        ExitStatus::Exited(42),
        "the victim verified itself"
    );
}

fn refuses_changed_file_taken_pid_and_other_vdso() {
    let f = write_image(free_pid(), false);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&f.exe)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    match Restore::builder(&f.image).build().unwrap().run() {
        Err(RestoreError::FileChanged { path, what }) => {
            assert_eq!(path, f.exe.to_str().unwrap());
            assert!(what.contains("size"), "{what}");
        }
        other => panic!("changed exe accepted: {other:?}"),
    }
    assert!(!Path::new(&format!("/proc/{}", f.pid)).exists());

    let me = std::process::id();
    let f = write_image(me, false);
    match Restore::builder(&f.image).build().unwrap().run() {
        Err(RestoreError::PidTaken { pid, .. }) => assert_eq!(pid, me),
        other => panic!("taken pid accepted: {other:?}"),
    }

    let f = write_image(free_pid(), true);
    let err = Restore::builder(&f.image)
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    assert!(matches!(err, RestoreError::VdsoMismatch { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("vDSO redirection is not implemented"));
}

/// Syscalls that create a process or change a namespace: none may run before a refusal.
const CHANGES: [(i64, &str); 6] = [
    (libc::SYS_clone, "clone"),
    (libc::SYS_fork, "fork"),
    (libc::SYS_vfork, "vfork"),
    (libc::SYS_clone3, "clone3"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
];

/// Runs `Restore::run` on `image` in a child traced syscall by syscall (a small strace); returns the error
/// it refused with and every syscall of [`CHANGES`] it made on the way.
fn run_watched(image: &Path) -> (String, Vec<&'static str>) {
    use nix::sys::ptrace;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    let (rd, wr) = nix::unistd::pipe().unwrap();
    // SAFETY: the test runs on its only thread; the child only restores and exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(rd);
            ptrace::traceme().unwrap();
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP).unwrap();
            let text = match Restore::builder(image).build().and_then(|r| r.run()) {
                Ok(_) => "restored".to_string(),
                Err(e) => e.to_string(),
            };
            let _ = nix::unistd::write(&wr, text.as_bytes());
            // SAFETY: ends the child without running the test harness's exit path.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            assert!(matches!(
                waitpid(child, None).unwrap(),
                WaitStatus::Stopped(_, _)
            ));
            ptrace::setoptions(
                child,
                ptrace::Options::PTRACE_O_TRACESYSGOOD
                    | ptrace::Options::PTRACE_O_EXITKILL
                    | ptrace::Options::PTRACE_O_TRACEFORK
                    | ptrace::Options::PTRACE_O_TRACEVFORK
                    | ptrace::Options::PTRACE_O_TRACECLONE,
            )
            .unwrap();
            let mut made = Vec::new();
            let mut entry = true;
            loop {
                ptrace::syscall(child, None).unwrap();
                match waitpid(child, None).unwrap() {
                    WaitStatus::PtraceSyscall(_) => {
                        if entry {
                            let nr = ptrace::getregs(child).unwrap().orig_rax as i64;
                            made.extend(CHANGES.iter().filter(|c| c.0 == nr).map(|c| c.1));
                        }
                        entry = !entry;
                    }
                    WaitStatus::PtraceEvent(_, _, _) => {
                        // The restore went past where it should have refused: stop it here
                        // (its traced children die with it, PTRACE_O_EXITKILL) so the test
                        // reports what it made instead of waiting on a stopped child.
                        made.push("a new process");
                        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    }
                    WaitStatus::Exited(..) | WaitStatus::Signaled(..) => break,
                    _ => {}
                }
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(rd), &mut text).unwrap();
            (text, made)
        }
    }
}

/// Every refusal a plain image can provoke comes before the restore forks anything or changes a
/// namespace: the restore says why, and made none of those syscalls.
fn refuses_before_it_changes_anything() {
    fn siginfo(sig: i32) -> SigInfo {
        let mut b = vec![0u8; 128];
        b[..4].copy_from_slice(&sig.to_le_bytes());
        SigInfo(b)
    }
    let tcp = TcpConnection {
        family: libc::AF_INET,
        local: ([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4000),
        peer: ([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4001),
        send_seq: 1,
        recv_seq: 1,
        send_queue: Vec::new(),
        recv_queue: Vec::new(),
        mss: 1400,
        options: 0,
        snd_wscale: 0,
        rcv_wscale: 0,
        timestamp: 0,
        window: TcpWindow::default(),
        reuseaddr: false,
        reuseport: false,
        keepalive: false,
        nodelay: false,
        v6only: false,
        sndbuf: 0,
        rcvbuf: 0,
    };
    let zombie = free_pid() + 1;
    type Edit = Box<dyn FnOnce(&mut Parts)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "a pending SIGTRAP",
            Box::new(|p| p.thread.pending = vec![siginfo(libc::SIGTRAP)]),
            "a pending SIGTRAP cannot be re-queued",
        ),
        (
            "a capability dormant does not hold",
            Box::new(|p| {
                p.core.creds.uids = [4242; 4];
                p.core.creds.cap_prm = 1 << 62;
            }),
            "which dormant does not hold",
        ),
        (
            "nested pid namespaces",
            Box::new(|p| p.tree.ns_pids = vec![p.tree.pid, Pid(7), Pid(1)]),
            "nested pid namespaces [",
        ),
        (
            "a session not reparented to a subreaper",
            Box::new(move |p| {
                p.zombies = vec![Zombie {
                    pid: Pid(zombie),
                    ppid: p.tree.pid,
                    pgid: Pid(zombie),
                    sid: Pid(1),
                    exit_status: 0,
                    inner_pid: None,
                }]
            }),
            "was not a child subreaper",
        ),
        (
            "a shell job's terminal",
            Box::new(|p| {
                p.fds.push(Fd {
                    fd: 1,
                    cloexec: false,
                    file: FdFile::InheritedTty,
                })
            }),
            "restore with --shell-job",
        ),
        (
            "an established TCP connection",
            Box::new(move |p| {
                p.descs = vec![FileDesc {
                    id: DescId(1),
                    flags: libc::O_RDWR as u32,
                    kind: DescKind::TcpEstablished(tcp),
                    owner: None,
                }];
                p.fds.push(Fd {
                    fd: 3,
                    cloexec: false,
                    file: FdFile::Desc(DescId(1)),
                });
            }),
            "restore it with --tcp-established",
        ),
        (
            "xsave features this CPU lacks",
            Box::new(|p| p.xsave_features |= 1 << 62),
            "are not a subset of this CPU's XCR0",
        ),
    ];
    for (what, edit, want) in cases {
        let f = write_image_with(free_pid(), false, edit);
        let (err, made) = run_watched(&f.image);
        assert!(
            err.contains(want),
            "{what}: refused with {err:?}, want {want:?}"
        );
        assert!(
            made.is_empty(),
            "{what}: {made:?} before the refusal ({err})"
        );
    }
    // The other vDSO, a changed file and a taken pid: refused as early.
    let f = write_image(free_pid(), true);
    let (err, made) = run_watched(&f.image);
    assert!(err.contains("vDSO redirection"), "{err}");
    assert!(made.is_empty(), "other vDSO: {made:?}");
    let f = write_image(free_pid(), false);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&f.exe)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let (err, made) = run_watched(&f.image);
    assert!(err.contains("changed since the dump"), "{err}");
    assert!(made.is_empty(), "changed file: {made:?}");
    let f = write_image(std::process::id(), false);
    let (err, made) = run_watched(&f.image);
    assert!(err.contains("already taken"), "{err}");
    assert!(made.is_empty(), "taken pid: {made:?}");
}

fn main() {
    require_root("restore_image");
    let tests: [(&str, fn()); 3] = [
        (
            "restores_a_hand_written_image",
            restores_a_hand_written_image,
        ),
        (
            "refuses_changed_file_taken_pid_and_other_vdso",
            refuses_changed_file_taken_pid_and_other_vdso,
        ),
        (
            "refuses_before_it_changes_anything",
            refuses_before_it_changes_anything,
        ),
    ];
    for (name, test) in tests {
        eprint!("test {name} ... ");
        test();
        eprintln!("ok");
    }
}
