//! Privileged end-to-end tests of the dumper on real processes: dump, then check the image content.
//!
//! `harness = false`: the binary re-executes itself as a single-threaded target when
//! `DORMANT_ENGINE_TEST_ROLE` is set (see support/target.rs). Run a subset with
//! `cargo test -p dormant-engine --test dump -- <substring>`.

#![allow(clippy::unwrap_used)] // tests may unwrap (project rule)

mod support;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dormant_engine::files::FdKind;
use dormant_engine::task::regs;
use dormant_engine::{Dump, DumpError, DumpStage, External, Pid};
use dormant_image::records::{
    names, page_flags, Fd, FdFile, RegFile, ShmemId, ShmemObject, VmaBacking,
};
use support::target::{self as t, PAGE};
use support::*;

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        t::run(&role);
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the dump tests need root (ptrace, /proc/<pid>/mem, map_files); run them as root"
    );
    let tests: &[(&str, fn())] = &[
        ("memory_image_matches_target", memory_image_matches_target),
        (
            "registers_spinning_in_user_code",
            registers_spinning_in_user_code,
        ),
        (
            "registers_in_nanosleep_get_eintr",
            registers_in_nanosleep_get_eintr,
        ),
        (
            "restart_rule_pause_reexecutes",
            restart_rule_pause_reexecutes,
        ),
        (
            "process_state_and_files_recorded",
            process_state_and_files_recorded,
        ),
        (
            "pipe_on_stdin_fails_and_target_keeps_working",
            pipe_on_stdin_fails_and_target_keeps_working,
        ),
        (
            "pipe_on_stdin_dumped_as_external_on_request",
            pipe_on_stdin_dumped_as_external_on_request,
        ),
        ("tty_needs_shell_job", tty_needs_shell_job),
        (
            "every_injected_failure_leaves_target_untouched",
            every_injected_failure_leaves_target_untouched,
        ),
        (
            "target_killed_mid_dump_is_a_clean_error",
            target_killed_mid_dump_is_a_clean_error,
        ),
        ("stopped_target_stays_stopped", stopped_target_stays_stopped),
        (
            "kill_after_dump_frees_the_pid",
            kill_after_dump_frees_the_pid,
        ),
        (
            "kill_after_dump_of_own_child_leaves_reaping_to_us",
            kill_after_dump_of_own_child_leaves_reaping_to_us,
        ),
        (
            "multi_threaded_target_dumps_every_thread",
            multi_threaded_target_dumps_every_thread,
        ),
        (
            "tree_with_child_and_zombie_is_dumped",
            tree_with_child_and_zombie_is_dumped,
        ),
        (
            "stopped_multi_threaded_target_stays_stopped",
            stopped_multi_threaded_target_stays_stopped,
        ),
        (
            "posix_timers_and_pending_signals_recorded",
            posix_timers_and_pending_signals_recorded,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        eprintln!("test {name} ...");
        let start = Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                eprintln!("test {name} ... ok ({:.2}s)", start.elapsed().as_secs_f64());
                passed += 1;
            }
            Err(_) => {
                eprintln!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    eprintln!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

fn dump_leave_running(
    target: &Target,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    dormant_engine::DumpStats,
) {
    let (d, img) = image_path();
    let stats = Dump::builder(target.pid())
        .images_dir(&img)
        .leave_running(true)
        .build()
        .unwrap()
        .run()
        .unwrap_or_else(|e| panic!("dump failed: {e}\ntarget log: {}", target.log()));
    (d, img, stats)
}

/// 64 MiB anon buffer with a hole and zero-page reads, a PROT_NONE page, a shared anon region and a COW'd
/// private file mapping: the image holds exactly the expected bytes, and nothing for holes, zero pages,
/// clean file pages or vvar.
fn memory_image_matches_target() {
    let fdir = tempfile::tempdir().unwrap();
    let fpath = fdir.path().join("mapped");
    let content: Vec<u8> = (0..t::FILE_PAGES)
        .flat_map(|p| t::pattern_page(t::SEED_FILE, p))
        .collect();
    std::fs::write(&fpath, &content).unwrap();
    let target = Target::spawn(
        "memory",
        &[(FILE_ENV, fpath.to_str().unwrap().to_string())],
        None,
    );
    let (anon, prot_none, shared, file) = (
        target.report_u64("anon"),
        target.report_u64("prot_none"),
        target.report_u64("shared"),
        target.report_u64("file"),
    );
    // Job-control stop it first so its memory stays exactly as dumped for the comparison with live memory.
    let npid = nix::unistd::Pid::from_raw(target.pid as i32);
    nix::sys::signal::kill(npid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_state(target.pid, 'T');
    let (_d, img_dir, stats) = dump_leave_running(&target);

    let img = open_verified(&img_dir);
    assert_eq!(img.inventory().root_pid, Pid(target.pid));
    let store = read_store(&img, &names::task_pages(Pid(target.pid)));

    // Anonymous buffer: every written page stored with its pattern; hole and zero-page reads not stored.
    let pages = stored_pages(&store, anon, (t::ANON_PAGES * PAGE) as u64);
    for (p, got) in pages.iter().enumerate() {
        if t::HOLE.contains(&p) || t::READ_ONLY_TOUCHED.contains(&p) {
            assert!(
                got.is_none(),
                "anon page {p} (hole/zero page) must not be stored"
            );
        } else {
            let got = got
                .as_ref()
                .unwrap_or_else(|| panic!("anon page {p} missing"));
            assert!(
                got == &t::pattern_page(t::SEED_ANON, p),
                "anon page {p} differs"
            );
        }
    }
    // PROT_NONE page written before mprotect.
    let pn = stored_pages(&store, prot_none, PAGE as u64);
    assert_eq!(
        pn[0].as_deref(),
        Some(&t::pattern_page(t::SEED_PROT_NONE, 0)[..]),
        "PROT_NONE page"
    );
    // Private file mapping: only the COW'd pages, with the written content.
    let fp = stored_pages(&store, file, (t::FILE_PAGES * PAGE) as u64);
    for (p, got) in fp.iter().enumerate() {
        if t::FILE_WRITTEN.contains(&p) {
            assert_eq!(
                got.as_deref(),
                Some(&t::pattern_page(t::SEED_FILE_WRITE, p)[..]),
                "file page {p}"
            );
        } else {
            assert!(got.is_none(), "clean file page {p} must not be stored");
        }
    }
    // Every stored private extent equals live memory (the target is still stopped) and carries PRIVATE or VDSO.
    // The kernel-written fields of the thread's rseq area are the exception: the kernel stores the current cpu
    // (cpu_id_start, cpu_id, node_id, mm_cid) on every return to user mode after a migration, and the parasite
    // returns to user mode on whatever cpu the scheduler picks.
    assert_eq!(proc_state(target.pid), Some('T'));
    let rseq = thread_of(&img, target.pid)
        .rseq
        .expect("glibc registers rseq");
    let kernel_written = [rseq.addr..rseq.addr + 8, rseq.addr + 20..rseq.addr + 28];
    let masked = |vaddr: u64, mut b: Vec<u8>| {
        for r in &kernel_written {
            for a in r.clone() {
                if let Some(i) = a.checked_sub(vaddr).filter(|&i| i < b.len() as u64) {
                    b[i as usize] = 0;
                }
            }
        }
        b
    };
    for (e, bytes) in &store {
        assert!(
            e.flags == page_flags::PRIVATE || e.flags == page_flags::VDSO,
            "flags {:#x}",
            e.flags
        );
        let live = masked(e.vaddr, read_live(target.pid, e.vaddr, e.len as usize));
        let bytes = &masked(e.vaddr, bytes.clone());
        if live != *bytes {
            let page = live
                .chunks(PAGE)
                .zip(bytes.chunks(PAGE))
                .position(|(l, b)| l != b)
                .unwrap_or(0);
            let at = e.vaddr + (page * PAGE) as u64;
            let diff: Vec<String> = live[page * PAGE..(page + 1) * PAGE]
                .iter()
                .zip(&bytes[page * PAGE..(page + 1) * PAGE])
                .enumerate()
                .filter(|(_, (l, b))| l != b)
                .map(|(i, (l, b))| format!("{i:#x}:{b:#x}->{l:#x}"))
                .collect();
            eprintln!("differing bytes: {diff:?}");
            let syscall = std::fs::read_to_string(format!("/proc/{}/syscall", target.pid));
            eprintln!("syscall now: {syscall:?}");
            let maps = std::fs::read_to_string(format!("/proc/{}/maps", target.pid)).unwrap();
            panic!(
                "extent {:#x}+{:#x} differs from live at page {at:#x}\nmaps:\n{maps}",
                e.vaddr, e.len
            );
        }
    }
    nix::sys::signal::kill(npid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_running_untraced(target.pid);
    assert!(target.answers(), "target must keep working after the dump");

    let mm = mm_of(&img, target.pid);
    let vma_at = |a: u64| {
        mm.vmas
            .iter()
            .find(|v| v.start <= a && a < v.end)
            .unwrap()
            .clone()
    };
    // vdso stored whole with the VDSO flag; vvar not at all.
    let vdso = mm
        .vmas
        .iter()
        .find(|v| v.backing == VmaBacking::Vdso)
        .expect("vdso vma");
    let vdso_pages = stored_pages(&store, vdso.start, vdso.end - vdso.start);
    assert!(vdso_pages.iter().all(Option::is_some), "vdso stored whole");
    assert!(store
        .iter()
        .filter(|(e, _)| e.vaddr >= vdso.start && e.vaddr < vdso.end)
        .all(|(e, _)| e.flags == page_flags::VDSO));
    for v in mm.vmas.iter().filter(|v| v.backing == VmaBacking::Vvar) {
        assert!(
            stored_pages(&store, v.start, v.end - v.start)
                .iter()
                .all(Option::is_none),
            "vvar {:?} stored",
            v.name
        );
    }
    assert!(
        mm.vmas.iter().any(|v| v.backing == VmaBacking::Vvar),
        "vvar recorded as a mapping"
    );
    assert_eq!(vma_at(prot_none).prot, 0);

    // The file mapping refers to a reg-files entry for the file, with its identity.
    let fvma = vma_at(file);
    let VmaBacking::File(fid) = fvma.backing else {
        panic!("file vma {fvma:?}")
    };
    let regs: Vec<RegFile> = img.read_records(names::REG_FILES).unwrap();
    let rf = regs.iter().find(|r| r.id == fid).unwrap();
    assert_eq!(rf.path, fpath.to_str().unwrap());
    assert_eq!(rf.stat.size, content.len() as u64);
    assert_eq!(
        fvma.map_flags & libc::MAP_PRIVATE as u32,
        libc::MAP_PRIVATE as u32
    );

    // Shared anonymous memory: one object, in its own store at object offsets, written pages only.
    let svma = vma_at(shared);
    let VmaBacking::Shmem(sid) = svma.backing else {
        panic!("shared vma {svma:?}")
    };
    let objs: Vec<ShmemObject> = img.read_records(names::SHMEM).unwrap();
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0].id, sid);
    assert_eq!(objs[0].size, (t::SHARED_PAGES * PAGE) as u64);
    assert_eq!(objs[0].owner, Pid(target.pid));
    let sstore = read_store(&img, &names::shmem_pages(ShmemId(sid.0)));
    let sp = stored_pages(&sstore, 0, (t::SHARED_PAGES * PAGE) as u64);
    for (p, got) in sp.iter().enumerate() {
        if t::SHARED_WRITTEN.contains(&p) {
            assert_eq!(
                got.as_deref(),
                Some(&t::pattern_page(t::SEED_SHARED, p)[..]),
                "shared page {p}"
            );
        } else {
            assert!(
                got.is_none(),
                "untouched shared page {p} must not be stored"
            );
        }
    }
    assert!(sstore.iter().all(|(e, _)| e.flags == page_flags::SHMEM));
    // Shared pages are not duplicated in the task store.
    assert!(
        stored_pages(&store, shared, (t::SHARED_PAGES * PAGE) as u64)
            .iter()
            .all(Option::is_none)
    );

    let stored: u64 = store.iter().chain(sstore.iter()).map(|(e, _)| e.len).sum();
    assert_eq!(stats.bytes_written, stored);
    assert_eq!(stats.pages_written, stored / PAGE as u64);
    assert!(stats.frozen <= stats.total);
    eprintln!(
        "  {} MiB in {:?} (frozen {:?}): {:?}",
        stored >> 20,
        stats.total,
        stats.frozen,
        stats.phases
    );
}

fn callee_saved_match(r: &dormant_image::records::GpRegs) {
    assert_eq!(r.rbx, t::RBX, "rbx");
    assert_eq!(r.r12, t::R12, "r12");
    assert_eq!(r.r13, t::R13, "r13");
    assert_eq!(r.r14, t::R14, "r14");
    assert_eq!(r.r15, t::R15, "r15");
}

/// A task spinning in user code: registers as loaded, rip on the loop, not in a syscall, full xstate.
fn registers_spinning_in_user_code() {
    let target = Target::spawn("spin", &[], None);
    let lp = target.report_u64("loop");
    // Give it time to reach the loop.
    std::thread::sleep(Duration::from_millis(100));
    let (_d, img_dir, _) = dump_leave_running(&target);
    assert_running_untraced(target.pid);
    assert_eq!(proc_state(target.pid), Some('R'), "spinner keeps spinning");
    let img = open_verified(&img_dir);
    let th = thread_of(&img, target.pid);
    callee_saved_match(&th.regs);
    assert_eq!(th.regs.rip, lp, "rip on the spin loop");
    assert_eq!(th.regs.orig_rax, u64::MAX, "not in a syscall");
    assert_eq!(
        th.xstate.len(),
        regs::xsave_size(),
        "xstate length = CPUID leaf 0xD size"
    );
    assert_eq!(img.inventory().xsave_size as usize, th.xstate.len());
    assert_eq!(
        img.inventory().xsave_features & 0b111,
        0b111,
        "x87, SSE, AVX enabled"
    );
    assert!(th.rseq.is_some(), "glibc registers rseq");
    assert_eq!(th.rseq.unwrap().signature, 0x5305_3053);
}

/// A task in nanosleep: restart-block syscall → saved rax = -EINTR, rip after the syscall.
fn registers_in_nanosleep_get_eintr() {
    let target = Target::spawn("nanosleep", &[], None);
    let after = target.report_u64("after");
    wait_in_syscall(target.pid, 35);
    let (_d, img_dir, _) = dump_leave_running(&target);
    assert_running_untraced(target.pid);
    assert_eq!(proc_state(target.pid), Some('S'), "back in nanosleep");
    let th = thread_of(&open_verified(&img_dir), target.pid);
    callee_saved_match(&th.regs);
    assert_eq!(th.regs.orig_rax, 35);
    assert_eq!(th.regs.rax as i64, -(libc::EINTR as i64));
    assert_eq!(th.regs.rip, after);
}

/// A task in pause(): -ERESTARTNOHAND → saved rax = the syscall number, rip on the `syscall` instruction.
fn restart_rule_pause_reexecutes() {
    let target = Target::spawn("pause", &[], None);
    let after = target.report_u64("after");
    wait_in_syscall(target.pid, 34);
    let (_d, img_dir, _) = dump_leave_running(&target);
    assert_running_untraced(target.pid);
    let th = thread_of(&open_verified(&img_dir), target.pid);
    callee_saved_match(&th.regs);
    assert_eq!(th.regs.rax, 34, "rax = orig_rax (pause)");
    assert_eq!(th.regs.rip, after - 2);
    assert_eq!(
        read_live(target.pid, th.regs.rip, 2),
        [0x0f, 0x05],
        "rip on a syscall instruction"
    );
}

fn wait_state(pid: u32, state: char) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while proc_state(pid) != Some(state) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never reached state {state}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until /proc/<pid>/syscall shows the task blocked in `nr`.
fn wait_in_syscall(pid: u32, nr: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let s = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if s.split_whitespace().next() == Some(&nr.to_string()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("pid {pid} never blocked in syscall {nr}");
}

/// TaskCore, fds, exe and creds against what /proc says; sigactions from the parasite show our handler.
fn process_state_and_files_recorded() {
    let target = Target::spawn("idle", &[], None);
    let (_d, img_dir, _) = dump_leave_running(&target);
    let img = open_verified(&img_dir);
    let core = core_of(&img, target.pid);
    assert_eq!(core.pid, Pid(target.pid));
    assert_eq!(
        core.comm,
        std::fs::read_to_string(format!("/proc/{}/comm", target.pid))
            .unwrap()
            .trim()
    );
    assert!(!core.stopped);
    assert_eq!(core.rlimits.len(), 16);
    let umask = status_field(target.pid, "Umask").unwrap();
    assert_eq!(core.umask, u32::from_str_radix(&umask, 8).unwrap());
    assert_eq!(core.creds.uids, [0, 0, 0, 0]);
    let sigactions = core
        .sigactions
        .as_ref()
        .expect("sigactions from the parasite");
    assert_eq!(sigactions.len(), 64);
    assert_ne!(
        sigactions[libc::SIGUSR1 as usize - 1].handler,
        0,
        "SIGUSR1 handler recorded"
    );
    assert_ne!(
        sigactions[libc::SIGUSR1 as usize - 1].flags & libc::SA_RESTART as u64,
        0
    );

    let fds: Vec<Fd> = img.read_records(&names::fds(Pid(target.pid))).unwrap();
    assert_eq!(fds.iter().map(|f| f.fd).collect::<Vec<_>>(), vec![0, 1, 2]);
    let files: Vec<RegFile> = img.read_records(names::REG_FILES).unwrap();
    let path_of = |fd: &Fd| match fd.file {
        FdFile::Reg(id) => files.iter().find(|f| f.id == id).unwrap().path.clone(),
        FdFile::InheritedTty => "tty".into(),
        FdFile::Desc(id) => format!("desc {}", id.0),
    };
    assert_eq!(path_of(&fds[0]), "/dev/null");
    let log = target.path("log");
    assert_eq!(path_of(&fds[1]), log.to_str().unwrap());
    assert_eq!(path_of(&fds[2]), log.to_str().unwrap());

    let mm = mm_of(&img, target.pid);
    let exe = files.iter().find(|f| f.id == mm.exe).unwrap();
    assert_eq!(exe.path, std::env::current_exe().unwrap().to_str().unwrap());
    assert!(mm.layout.start_code < mm.layout.end_code);
    assert!(mm.layout.start_brk <= mm.layout.brk);
    assert!(mm.layout.arg_start < mm.layout.arg_end);
    assert_eq!(mm.auxv.len() % 2, 0);
    assert_eq!(mm.auxv[mm.auxv.len() - 2], 0, "auxv ends with AT_NULL");
    let pagesz = mm
        .auxv
        .chunks(2)
        .find(|kv| kv[0] == libc::AT_PAGESZ)
        .unwrap()[1];
    assert_eq!(pagesz, 4096);
    assert!(target.answers());
}

/// Both POSIX timers come out of /proc/<pid>/timers and timer_gettime with id, clock, notify, signal, value
/// and times; the sigqueue'd signal is in the shared queue with its value.
fn posix_timers_and_pending_signals_recorded() {
    let target = Target::spawn("timers", &[], None);
    let armed = target.report_u64("armed") as i32;
    let idle = target.report_u64("idle") as i32;
    let (_d, img_dir, _) = dump_leave_running(&target);
    let img = open_verified(&img_dir);
    let core = core_of(&img, target.pid);
    let timers = &core.posix_timers;
    assert_eq!(timers.len(), 2, "{timers:?}");
    let a = timers.iter().find(|t| t.id == armed).unwrap();
    assert_eq!(a.clock, libc::CLOCK_MONOTONIC);
    assert_eq!(a.notify, libc::SIGEV_SIGNAL);
    assert_eq!(a.signo, libc::SIGRTMIN() + 2);
    assert_eq!(a.value, 0x309);
    assert_eq!(a.notify_tid, None);
    assert_eq!(a.interval_ns, 2_000_000_000);
    assert!(
        a.value_ns > 0 && a.value_ns <= 5_000_000_000,
        "{}",
        a.value_ns
    );
    let i = timers.iter().find(|t| t.id == idle).unwrap();
    assert_eq!(i.clock, libc::CLOCK_REALTIME);
    assert_eq!(i.notify, libc::SIGEV_NONE);
    assert_eq!((i.interval_ns, i.value_ns), (0, 0));
    let queued: Vec<_> = core
        .shared_pending
        .iter()
        .filter(|si| si.0[0..4] == (libc::SIGRTMIN() + 1).to_le_bytes())
        .collect();
    assert_eq!(queued.len(), 1, "{:?}", core.shared_pending);
    assert_eq!(queued[0].0.len(), 128);
    assert_eq!(queued[0].0[24..32], 4242u64.to_le_bytes());
    assert!(target.answers());
}

/// A pipe on fd 0 whose write end only the test holds: the dump fails naming pid, fd and type (restoring it
/// would cut the target off); the target resumes its read() and gets the data.
fn pipe_on_stdin_fails_and_target_keeps_working() {
    let mut target = Target::spawn("stdin_reader", &[], Some(Stdio::piped()));
    wait_in_syscall(target.pid, 0);
    let (d, img) = image_path();
    let err = Dump::builder(target.pid())
        .images_dir(&img)
        .leave_running(true)
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            DumpError::FileDesc {
                fd: 0,
                kind: FdKind::Pipe { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.starts_with(&format!(
            "pid {} fd 0 (pipe): the write end of pipe:[",
            target.pid
        )),
        "{msg}"
    );
    assert!(msg.contains("outside the dump"), "{msg}");
    assert!(!img.exists());
    assert!(
        dir_entries(d.path()).is_empty(),
        "left behind: {:?}",
        dir_entries(d.path())
    );
    assert_running_untraced(target.pid);
    let mut stdin = target.child.as_mut().unwrap().stdin.take().unwrap();
    stdin.write_all(b"hello").unwrap();
    let got = wait_for_file(&target.path("got"), Duration::from_secs(10));
    assert_eq!(
        got.as_deref(),
        Some("hello"),
        "the interrupted read() must still deliver the data"
    );
}

/// The same pipe with `external_pipes`: the dump succeeds and fd 0 is an external description keyed by the
/// pipe's inode (`pipe:[INODE]`, handed in at restore with `--inherit-fd`), carrying none of its state.
fn pipe_on_stdin_dumped_as_external_on_request() {
    use std::os::unix::fs::MetadataExt;
    let mut target = Target::spawn("stdin_reader", &[], Some(Stdio::piped()));
    wait_in_syscall(target.pid, 0);
    let ino = std::fs::metadata(format!("/proc/{}/fd/0", target.pid))
        .unwrap()
        .ino();
    let (_d, img_dir) = image_path();
    Dump::builder(target.pid())
        .images_dir(&img_dir)
        .leave_running(true)
        .externals([External::Pipes])
        .build()
        .unwrap()
        .run()
        .unwrap();
    let img = open_verified(&img_dir);
    let fds: Vec<dormant_image::records::Fd> =
        img.read_records(&names::fds(Pid(target.pid))).unwrap();
    let descs: Vec<dormant_image::records::FileDesc> = img.read_records(names::FILE_DESCS).unwrap();
    let fd0 = fds.iter().find(|f| f.fd == 0).unwrap();
    let dormant_image::records::FdFile::Desc(id) = fd0.file else {
        panic!("fd 0 is {fd0:?}")
    };
    let d = descs.iter().find(|d| d.id == id).unwrap();
    assert_eq!(
        d.kind,
        dormant_image::records::DescKind::External {
            key: format!("pipe:[{ino}]")
        }
    );
    assert_running_untraced(target.pid);
    let mut stdin = target.child.as_mut().unwrap().stdin.take().unwrap();
    stdin.write_all(b"hello").unwrap();
    let got = wait_for_file(&target.path("got"), Duration::from_secs(10));
    assert_eq!(got.as_deref(), Some("hello"));
}

/// A terminal on fds 0-2 is refused without shell_job and recorded as InheritedTty with it.
fn tty_needs_shell_job() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave: std::fs::File = pty.slave.into();
    let target = Target::spawn("idle", &[], Some(Stdio::from(slave)));
    let (_d, img) = image_path();
    let err = Dump::builder(target.pid())
        .images_dir(&img)
        .leave_running(true)
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    assert!(
        matches!(
            err,
            DumpError::FileDesc {
                fd: 0,
                kind: FdKind::PtySlave { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/dev/pts/")
            && err
                .to_string()
                .contains("its master is held by no process of the dump")
            && err.to_string().contains("--shell-job"),
        "{err}"
    );
    assert_running_untraced(target.pid);
    let (_d2, img2) = image_path();
    Dump::builder(target.pid())
        .images_dir(&img2)
        .leave_running(true)
        .shell_job(true)
        .build()
        .unwrap()
        .run()
        .unwrap();
    let fds: Vec<Fd> = open_verified(&img2)
        .read_records(&names::fds(Pid(target.pid)))
        .unwrap();
    assert_eq!(fds[0].file, FdFile::InheritedTty);
    assert!(matches!(fds[1].file, FdFile::Reg(_)));
    assert!(target.answers());
    drop(pty.master);
}

/// Fault injection at every stage: an error naming the stage, no image and no temp dir, the target not
/// traced, not stopped, its maps and signal mask as before, and still answering.
fn every_injected_failure_leaves_target_untouched() {
    let target = Target::spawn("idle", &[], None);
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", target.pid)).unwrap();
    let blk_before = status_field(target.pid, "SigBlk").unwrap();
    for stage in DumpStage::ALL {
        let (d, img) = image_path();
        let err = Dump::builder(target.pid())
            .images_dir(&img)
            .leave_running(true)
            .fail_at(stage)
            .build()
            .unwrap()
            .run()
            .unwrap_err();
        assert!(
            matches!(err, DumpError::InjectedFailure { pid, stage: s } if pid == target.pid && s == stage),
            "{stage:?}: {err:?}"
        );
        assert!(err.to_string().contains(&target.pid.to_string()));
        assert!(!img.exists(), "{stage:?}: image left");
        assert!(
            dir_entries(d.path()).is_empty(),
            "{stage:?}: left behind {:?}",
            dir_entries(d.path())
        );
        assert_running_untraced(target.pid);
        assert_eq!(
            std::fs::read_to_string(format!("/proc/{}/maps", target.pid)).unwrap(),
            maps_before,
            "{stage:?}"
        );
        assert_eq!(
            status_field(target.pid, "SigBlk").unwrap(),
            blk_before,
            "{stage:?}"
        );
        assert!(target.answers(), "{stage:?}: target does not answer");
    }
}

/// SIGKILL from the stage hook right after the registers are read: a clean error naming the pid, no image.
fn target_killed_mid_dump_is_a_clean_error() {
    let mut target = Target::spawn("idle", &[], None);
    let (d, img) = image_path();
    let err = Dump::builder(target.pid())
        .images_dir(&img)
        .leave_running(true)
        .on_stage(|stage, pid| {
            if stage == DumpStage::Registers {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid.0 as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
            }
        })
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    assert!(
        matches!(err, DumpError::ProcessGone { pid, .. } if pid == target.pid),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("pid {}", target.pid)),
        "{err}"
    );
    assert!(!img.exists());
    assert!(dir_entries(d.path()).is_empty());
    assert_eq!(target.wait().signal(), Some(libc::SIGKILL));
}

/// A job-control-stopped task is recorded as stopped and stays stopped after a leave-running dump.
fn stopped_target_stays_stopped() {
    let target = Target::spawn("idle", &[], None);
    let npid = nix::unistd::Pid::from_raw(target.pid as i32);
    nix::sys::signal::kill(npid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_state(target.pid, 'T');
    let (_d, img_dir, _) = dump_leave_running(&target);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        proc_state(target.pid),
        Some('T'),
        "still stopped after the dump"
    );
    assert_eq!(status_field(target.pid, "TracerPid").as_deref(), Some("0"));
    assert!(core_of(&open_verified(&img_dir), target.pid).stopped);
    nix::sys::signal::kill(npid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(target.answers());
}

/// Without leave_running, when the dumper is not the parent: run() returns only once the pid is free, and
/// the parent saw SIGKILL.
fn kill_after_dump_frees_the_pid() {
    let reaper = Target::spawn("reaper", &[], None);
    let child = reaper.report_u64("child") as u32;
    let start_before = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap();
    let (_d, img) = image_path();
    Dump::builder(Pid(child))
        .images_dir(&img)
        .build()
        .unwrap()
        .run()
        .unwrap();
    let now = std::fs::read_to_string(format!("/proc/{child}/stat")).ok();
    assert!(
        now.is_none() || now.as_deref() != Some(start_before.as_str()),
        "pid {child} not free on return"
    );
    let status = wait_for_file(&reaper.path("status"), Duration::from_secs(10)).unwrap();
    assert!(status.contains("signal=Some(9)"), "{status}");
    let core = core_of(&open_verified(&img), child);
    assert_eq!(core.pid, Pid(child));
}

/// Without leave_running, when the dumper is the parent: run() returns with the target dead, and our
/// waitpid reports SIGKILL.
fn kill_after_dump_of_own_child_leaves_reaping_to_us() {
    let mut target = Target::spawn("idle", &[], None);
    let (_d, img) = image_path();
    Dump::builder(target.pid())
        .images_dir(&img)
        .build()
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(
        proc_state(target.pid),
        Some('Z'),
        "dead, waiting for us to reap"
    );
    assert_eq!(target.wait().signal(), Some(libc::SIGKILL));
    assert!(img.exists());
}

/// Starts python3 running `script` (which writes one line to its stdout pipe when set up, then closes
/// it) and returns that line.
fn python_target(script: &str) -> (std::process::Child, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: only close_range runs between fork and exec (no stray test fds in the target).
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // Until EOF: every process has closed the pipe, which the dump would refuse.
    let mut line = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut line).unwrap();
    assert!(line.starts_with("up"), "{line:?}");
    (child, line)
}

/// Every thread is dumped: the pstree lists each tid (leader first), each has its own thread record with
/// its registers and its robust list (glibc registers one per thread), and the process goes on untraced.
fn multi_threaded_target_dumps_every_thread() {
    let (mut child, _) = python_target(
        "import os,threading,time\nw=os.dup(1)\nos.dup2(os.open('/dev/null',os.O_RDWR),1)\nthreading.Thread(target=time.sleep,args=(100,)).start()\nos.write(w,b'up\\n')\nos.close(w)\ntime.sleep(100)",
    );
    let pid = child.id();
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    tids.sort_unstable();
    assert_eq!(tids.len(), 2, "{tids:?}");
    let (_d, img) = image_path();
    Dump::builder(Pid(pid))
        .images_dir(&img)
        .leave_running(true)
        .build()
        .unwrap()
        .run()
        .unwrap();
    assert_running_untraced(pid);
    let r = open_verified(&img);
    let tree: Vec<dormant_image::records::PsTreeEntry> = r.read_records(names::PSTREE).unwrap();
    assert_eq!(tree.len(), 1);
    let listed: Vec<u32> = tree[0].threads.iter().map(|t| t.0).collect();
    assert_eq!(listed[0], pid, "leader first");
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, tids);
    let mut fs_bases = Vec::new();
    for &tid in &tids {
        let t = thread_of(&r, tid);
        assert_eq!(t.tid.0, tid);
        assert!(!t.xstate.is_empty());
        assert!(t.robust_list.is_some(), "tid {tid}: no robust list");
        fs_bases.push(t.regs.fs_base);
    }
    assert_ne!(fs_bases[0], fs_bases[1], "each thread has its own TLS");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A job-control-stopped process with two threads: every thread is dumped, and after a leave-running dump
/// the process is still stopped (no stray trap resumes or re-stops a thread), untraced, and runs on SIGCONT.
fn stopped_multi_threaded_target_stays_stopped() {
    let (mut child, _) = python_target(
        "import os,threading,time\nw=os.dup(1)\nos.dup2(os.open('/dev/null',os.O_RDWR),1)\nthreading.Thread(target=time.sleep,args=(100,)).start()\nos.write(w,b'up\\n')\nos.close(w)\ntime.sleep(100)",
    );
    let pid = child.id();
    let npid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(npid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_state(pid, 'T');
    let (_d, img) = image_path();
    let t0 = Instant::now();
    Dump::builder(Pid(pid))
        .images_dir(&img)
        .leave_running(true)
        .build()
        .unwrap()
        .run()
        .unwrap();
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .collect();
    assert_eq!(tids.len(), 2);
    for tid in &tids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert_eq!(
            state, "T",
            "thread {tid} not stopped after the dump ({took:?})"
        );
    }
    assert_eq!(status_field(pid, "TracerPid").as_deref(), Some("0"));
    let r = open_verified(&img);
    assert!(core_of(&r, pid).stopped);
    let tree: Vec<dormant_image::records::PsTreeEntry> = r.read_records(names::PSTREE).unwrap();
    assert_eq!(tree[0].threads.len(), 2);
    nix::sys::signal::kill(npid, nix::sys::signal::Signal::SIGCONT).unwrap();
    wait_state(pid, 'S');
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A process with a live child and an unreaped child (a zombie): both children are in the image, the live
/// one with its parent link and its own records, the zombie with its exit status; all keep running.
fn tree_with_child_and_zombie_is_dumped() {
    let (mut child, line) = python_target(
        "import os,time\nw=os.dup(1)\nos.dup2(os.open('/dev/null',os.O_RDWR),1)\nc=os.fork()\nif c==0:\n    os.close(w); time.sleep(100); os._exit(0)\nz=os.fork()\nif z==0:\n    os._exit(3)\nwhile open(f'/proc/{z}/stat').read().rsplit(')',1)[1].split()[0]!='Z': time.sleep(0.01)\nos.write(w,f'up {c} {z}\\n'.encode())\nos.close(w)\ntime.sleep(100)",
    );
    let pid = child.id();
    let ids: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse().unwrap())
        .collect();
    let (live, zombie) = (ids[0], ids[1]);
    let (_d, img) = image_path();
    Dump::builder(Pid(pid))
        .images_dir(&img)
        .leave_running(true)
        .build()
        .unwrap()
        .run()
        .unwrap();
    assert_running_untraced(pid);
    assert_running_untraced(live);
    let r = open_verified(&img);
    let tree: Vec<dormant_image::records::PsTreeEntry> = r.read_records(names::PSTREE).unwrap();
    let pids: Vec<(u32, Option<u32>)> = tree
        .iter()
        .map(|e| (e.pid.0, e.ppid.map(|p| p.0)))
        .collect();
    assert_eq!(pids, [(pid, None), (live, Some(pid))]);
    assert_eq!(core_of(&r, live).pid.0, live);
    let zombies: Vec<dormant_image::records::Zombie> = r.read_records(names::ZOMBIES).unwrap();
    assert_eq!(zombies.len(), 1);
    assert_eq!((zombies[0].pid.0, zombies[0].ppid.0), (zombie, pid));
    assert_eq!(zombies[0].exit_status, 3 << 8);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(live as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
