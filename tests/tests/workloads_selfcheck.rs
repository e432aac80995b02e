//! Every workload run WITHOUT dump or restore: set up, READY, trigger, verdict. Proves each workload's own
//! checks pass on an untouched process (so a failure after a restore is the restore's fault), and, with
//! `--inject-fault` or wrong terminal input, that the checks do fail when the state is damaged.
//!
//! Not privileged: these tests need no root.

use dormant_tests::harness::{self, Result, Spec, StdinKind};
use dormant_tests::workload::INJECT_FAULT;

/// Syscall numbers on x86-64 the syscall workloads block in (glibc's nanosleep is clock_nanosleep).
const NANOSLEEP: &[i64] = &[libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
const READ: &[i64] = &[libc::SYS_read];
const POLL: &[i64] = &[libc::SYS_poll, libc::SYS_ppoll];

fn memory() -> Spec {
    Spec::workload("wl_memory", env!("CARGO_BIN_EXE_wl_memory")).big()
}

fn registers() -> Spec {
    Spec::workload("wl_registers", env!("CARGO_BIN_EXE_wl_registers"))
}

fn signals() -> Spec {
    Spec::workload("wl_signals", env!("CARGO_BIN_EXE_wl_signals"))
}

fn syscalls() -> Spec {
    Spec::workload("wl_syscalls", env!("CARGO_BIN_EXE_wl_syscalls"))
}

fn python() -> Result<Spec> {
    Ok(Spec::workload("wl_python", harness::python3()?)
        .pre_args([harness::python_workload_script()])
        .big())
}

#[test]
fn memory_passes_untouched() -> Result<()> {
    let log = harness::self_check(memory())?;
    assert!(
        log.contains("ok big-holes") && log.contains("ok deep-stack"),
        "{log}"
    );
    Ok(())
}

#[test]
fn memory_detects_damage() -> Result<()> {
    harness::self_check_fails(memory().args([INJECT_FAULT]), &["big-data", "deep-stack"])?;
    Ok(())
}

#[test]
fn registers_pass_untouched() -> Result<()> {
    harness::self_check(registers())?;
    Ok(())
}

#[test]
fn registers_ymm_pass_untouched() -> Result<()> {
    harness::self_check(registers().args(["avx"]))?;
    Ok(())
}

#[test]
fn registers_detect_damage() -> Result<()> {
    let log = harness::self_check_fails(
        registers().args([INJECT_FAULT]),
        &[
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
            {
                "zmm0-31"
            } else {
                "ymm0-15"
            },
        ],
    )?;
    assert!(
        log.contains("zmm29 lane 0") || log.contains("ymm13 lane 0"),
        "{log}"
    );
    harness::self_check_fails(registers().args(["avx", INJECT_FAULT]), &["ymm0-15"])?;
    Ok(())
}

#[test]
fn syscalls_nanosleep_passes_untouched() -> Result<()> {
    let log = harness::self_check(syscalls().args(["nanosleep", "1"]).blocked_in(NANOSLEEP))?;
    assert!(log.contains("note nanosleep completed"), "{log}");
    Ok(())
}

#[test]
fn syscalls_read_pty_passes_untouched() -> Result<()> {
    let line = "a line typed into the terminal";
    harness::self_check(
        syscalls()
            .args(["read", line])
            .stdin(StdinKind::Pty { line: line.into() })
            .blocked_in(READ),
    )?;
    Ok(())
}

#[test]
fn syscalls_read_pty_detects_wrong_line() -> Result<()> {
    harness::self_check_fails(
        syscalls()
            .args(["read", "the expected line"])
            .stdin(StdinKind::Pty {
                line: "another line".into(),
            })
            .blocked_in(READ),
        &["read-line"],
    )?;
    Ok(())
}

#[test]
fn syscalls_poll_pty_passes_untouched() -> Result<()> {
    let line = "poll wake-up";
    harness::self_check(
        syscalls()
            .args(["poll", line])
            .stdin(StdinKind::Pty { line: line.into() })
            .blocked_in(POLL),
    )?;
    Ok(())
}

#[test]
fn python_passes_untouched() -> Result<()> {
    harness::self_check(python()?)?;
    Ok(())
}

#[test]
fn python_detects_damage() -> Result<()> {
    harness::self_check_fails(python()?.args([INJECT_FAULT]), &["dict"])?;
    Ok(())
}

#[test]
fn signals_pass_untouched() -> Result<()> {
    let log = harness::self_check(signals())?;
    assert!(
        log.contains("ok queued-on-altstack") && log.contains("ok posix-timer-id"),
        "{log}"
    );
    Ok(())
}

#[test]
fn signals_detect_damage() -> Result<()> {
    harness::self_check_fails(
        signals().args([INJECT_FAULT]),
        &["posix-timer-id", "posix-timer-ticks", "sigactions"],
    )?;
    Ok(())
}

fn files(kinds: &[&str]) -> Spec {
    Spec::workload("wl_files", env!("CARGO_BIN_EXE_wl_files")).args(kinds.iter().copied())
}

const FILE_KINDS: [&str; 21] = [
    "forkshare",
    "fifo",
    "unixdgram",
    "unixaccept",
    "scmrights",
    "unixoutside",
    "owner",
    "ghost",
    "udp",
    "unixlisten",
    "locks",
    "dup",
    "pipe",
    "socketpair",
    "tcp",
    "eventfd",
    "epoll",
    "timerfd",
    "pty",
    "memfd",
    "signalfd",
];

#[test]
fn files_pass_untouched() -> Result<()> {
    let log = harness::self_check(files(&FILE_KINDS))?;
    assert!(
        log.contains("ok socketpair") && log.contains("ok epoll"),
        "{log}"
    );
    Ok(())
}

#[test]
fn files_detect_damage() -> Result<()> {
    let mut args = FILE_KINDS.to_vec();
    args.push(INJECT_FAULT);
    harness::self_check_fails(
        files(&args),
        &[
            "locks",
            "pipe",
            "eventfd",
            "fifo",
            "forkshare",
            "timerfd",
            "pty",
        ],
    )?;
    Ok(())
}

fn tty() -> Spec {
    Spec::workload("wl_tty", env!("CARGO_BIN_EXE_wl_tty"))
        .root_from_ready()
        .stdin(StdinKind::Pty {
            line: String::new(),
        })
}

#[test]
fn tty_passes_untouched() -> Result<()> {
    harness::self_check(tty())?;
    Ok(())
}

#[test]
fn tty_detects_damage() -> Result<()> {
    harness::self_check_fails(
        tty().args([INJECT_FAULT]),
        &["dev-tty-is-the-session-terminal"],
    )?;
    Ok(())
}

/// Outside a time namespace of its own (what a restore into the host's gives), `wl_timens` fails every
/// check; the passing run is `e2e_single::timens_dump_restore`'s, which needs root for `unshare --time`.
#[test]
fn timens_detects_host_namespace() -> Result<()> {
    harness::self_check_fails(
        Spec::workload("wl_timens", env!("CARGO_BIN_EXE_wl_timens")).args(["864000", "1728000"]),
        &["clocks-ahead", "offsets"],
    )?;
    Ok(())
}

fn memattrs() -> Spec {
    Spec::workload("wl_memattrs", env!("CARGO_BIN_EXE_wl_memattrs"))
}

#[test]
fn memattrs_passes_untouched() -> Result<()> {
    harness::self_check(memattrs())?;
    Ok(())
}

/// The attributes undone (munlockall, THP re-enabled, the key taken off its mapping, PKRU cleared): what a
/// restore that drops them leaves. Every check must notice.
#[test]
fn memattrs_detects_damage() -> Result<()> {
    harness::self_check_fails(
        memattrs().args([INJECT_FAULT]),
        &["mlock-future", "pkru", "thp-disable", "vmflags"],
    )?;
    Ok(())
}

fn jobctl() -> Spec {
    Spec::workload("wl_jobctl", env!("CARGO_BIN_EXE_wl_jobctl"))
}

#[test]
fn jobctl_passes_untouched() -> Result<()> {
    harness::self_check(jobctl())?;
    Ok(())
}

/// A child continued instead of stopped, one stopped by the wrong signal, one whose collected stop is
/// reported again (what a restore that gets job control wrong leaves): every check notices.
#[test]
fn jobctl_detects_damage() -> Result<()> {
    harness::self_check_fails(
        jobctl().args([INJECT_FAULT]),
        &["a-stopped", "b-stopped", "c-stopped", "sigchld"],
    )?;
    Ok(())
}

fn seccomp() -> Spec {
    Spec::workload("wl_seccomp", env!("CARGO_BIN_EXE_wl_seccomp"))
}

#[test]
fn seccomp_passes_untouched() -> Result<()> {
    harness::self_check(seccomp())?;
    Ok(())
}

/// No filter installed and the child left out of strict mode (what a restore that drops seccomp leaves):
/// every filter check, the TSYNC one (whose filters must then act in the other thread) and the strict
/// ones notice; the child still answers, since read and write pass either way.
#[test]
fn seccomp_detects_damage() -> Result<()> {
    harness::self_check_fails(
        seccomp().args([INJECT_FAULT]),
        &[
            "main-filters",
            "t-filters",
            "u-filters",
            "tsync",
            "strict-mode",
            "strict-kills",
        ],
    )?;
    Ok(())
}

fn fileattrs(kinds: &[&str]) -> Spec {
    Spec::workload("wl_fileattrs", env!("CARGO_BIN_EXE_wl_fileattrs")).args(kinds.iter().copied())
}

#[test]
fn fileattrs_pass_untouched() -> Result<()> {
    harness::self_check(fileattrs(&["memfd", "ghost", "mapshared", "big"]))?;
    Ok(())
}

#[test]
fn fileattrs_detect_damage() -> Result<()> {
    harness::self_check_fails(
        fileattrs(&["memfd", "ghost", "mapshared", "big", INJECT_FAULT]),
        &["big", "ghost", "mapshared", "memfd"],
    )?;
    Ok(())
}

fn attrs() -> Spec {
    Spec::workload("wl_attrs", env!("CARGO_BIN_EXE_wl_attrs"))
}

#[test]
fn attrs_passes_untouched() -> Result<()> {
    harness::self_check(attrs())?;
    Ok(())
}

/// Every thread's attributes back at a fresh thread's defaults and the OOM score adjustment at 0 (what a
/// restore that skips them leaves): each thread's check and the process's notice.
#[test]
fn attrs_detects_damage() -> Result<()> {
    harness::self_check_fails(
        attrs().args([INJECT_FAULT]),
        &["main-attrs", "v-attrs", "w-attrs", "oom-score-adj"],
    )?;
    Ok(())
}

fn sharedfs() -> Spec {
    Spec::workload("wl_sharedfs", env!("CARGO_BIN_EXE_wl_sharedfs"))
}

#[test]
fn sharedfs_passes_untouched() -> Result<()> {
    harness::self_check(sharedfs())?;
    Ok(())
}

/// The sharers unshare what they shared (what a restore that gives every process its own tables leaves):
/// the sharing checks fail, the offsets one does not.
#[test]
fn sharedfs_detects_unshared_tables() -> Result<()> {
    let log = harness::self_check_fails(
        sharedfs().args([INJECT_FAULT]),
        &["kcmp", "files-shared", "fs-shared"],
    )?;
    assert!(log.contains("ok offsets"), "{log}");
    Ok(())
}

fn sockets(kinds: &[&str]) -> Spec {
    Spec::workload("wl_sockets", env!("CARGO_BIN_EXE_wl_sockets")).args(kinds.iter().copied())
}

#[test]
fn sockets_pass_untouched() -> Result<()> {
    harness::self_check(sockets(&[
        "shutdown",
        "unlinked",
        "unconnected",
        "peerclosed",
    ]))?;
    Ok(())
}

/// Sockets replaced by fresh ones with the same bytes (no shutdown, no name, a live peer) and unlinked
/// paths recreated: every check of the state under test fails.
#[test]
fn sockets_detect_lost_state() -> Result<()> {
    harness::self_check_fails(
        sockets(&["shutdown", "unlinked", "unconnected", "peerclosed"]).args([INJECT_FAULT]),
        &[
            "shut-wr-peer-reads-then-eof",
            "shut-wr-send-epipe",
            "shut-rd-reads-eof",
            "shut-wr-other-way-open",
            "shut-rd-peer-send-epipe",
            "shut-rd-other-way-open",
            "seqpacket-shut-rdwr",
            "unlinked-listener-path-absent",
            "unlinked-dgram-path-absent",
            "unconnected-names",
            "bound-listens-and-accepts",
            "pair-survivor-reads-then-eof",
            "accepted-survivor-reads-then-eof",
            "accepted-name",
        ],
    )?;
    Ok(())
}

fn sockpeers(kinds: &[&str]) -> Spec {
    Spec::workload("wl_sockpeers", env!("CARGO_BIN_EXE_wl_sockpeers")).args(kinds.iter().copied())
}

/// The outside socket `extpeer` connects to, bound in this (test) process.
fn outside_socket() -> Result<(harness::Scratch, std::os::unix::net::UnixDatagram, String)> {
    let dir = harness::Scratch::new("extpeer")?;
    let at = dir.path().join("outside.sock");
    let s = std::os::unix::net::UnixDatagram::bind(&at).map_err(|e| harness::HarnessError::Io {
        what: "binding the outside socket".into(),
        path: at.clone(),
        source: e,
    })?;
    Ok((dir, s, format!("extpeer:{}", at.display())))
}

#[test]
fn sockpeers_pass_untouched() -> Result<()> {
    let (_dir, _outside, ext) = outside_socket()?;
    harness::self_check(sockpeers(&["pending", "dgram", &ext, "udp", "udpqueue"]))?;
    Ok(())
}

/// Sockets replaced by fresh ones without the state under test (listeners without their queue and
/// backlog, clients and datagram sockets without names, peers or queues, UDP sockets unconnected): every
/// check fails.
#[test]
fn sockpeers_detect_lost_state() -> Result<()> {
    let (_dir, _outside, ext) = outside_socket()?;
    harness::self_check_fails(
        sockpeers(&["pending", "dgram", &ext, "udp", "udpqueue"]).args([INJECT_FAULT]),
        &[
            "pending-accept-order",
            "pending-client-shutdown",
            "pending-client-state",
            "pending-seqpacket-order",
            "pending-backlog",
            "pending-new-connection",
            "dgram-queue-senders",
            "dgram-clients",
            "extpeer-connected",
            "udp-names",
            "udp-traffic",
            "udp-options",
            "udpqueue-datagrams",
        ],
    )?;
    Ok(())
}

fn ipc() -> Spec {
    Spec::workload("wl_ipc", env!("CARGO_BIN_EXE_wl_ipc"))
}

#[test]
fn ipc_passes_untouched() -> Result<()> {
    harness::self_check(ipc())?;
    Ok(())
}

#[test]
fn ipc_detects_lost_settings() -> Result<()> {
    harness::self_check_fails(
        ipc().args([INJECT_FAULT]),
        &["kernel/sem", "kernel/msg_next_id", "sem-set", "next-ids"],
    )?;
    Ok(())
}

fn ghostmap(kinds: &[&str]) -> Spec {
    Spec::workload("wl_ghostmap", env!("CARGO_BIN_EXE_wl_ghostmap")).args(kinds.iter().copied())
}

#[test]
fn ghostmap_passes_untouched() -> Result<()> {
    harness::self_check(ghostmap(&["exe", "mapped", "fifo", "big"]))?;
    Ok(())
}

/// A new (linked) file mapped over one mapping, the FIFO's bytes read away and an anonymous page over the
/// big file: what a restore that opened paths again or lost the FIFO's queue or the big file's content
/// would leave.
#[test]
fn ghostmap_detects_damage() -> Result<()> {
    harness::self_check_fails(
        ghostmap(&["exe", "mapped", "fifo", "big", INJECT_FAULT]),
        &[
            "mapped-names",
            "mapped-one-inode",
            "mapped-shared-write",
            "fifo-queued",
            "big-named",
            "big-content",
        ],
    )?;
    Ok(())
}

fn fdedges(kinds: &[&str]) -> Spec {
    Spec::workload("wl_fdedges", env!("CARGO_BIN_EXE_wl_fdedges")).args(kinds.iter().copied())
}

/// The kinds of `wl_fdedges` that run unprivileged.
const FDEDGES: &[&str] = &["epoll", "inotify", "locks", "leases"];

#[test]
fn fdedges_pass_untouched() -> Result<()> {
    harness::self_check(fdedges(FDEDGES))?;
    Ok(())
}

#[test]
fn fdedges_detect_damage() -> Result<()> {
    let mut args = FDEDGES.to_vec();
    args.push(INJECT_FAULT);
    harness::self_check_fails(fdedges(&args), FDEDGES)?;
    Ok(())
}

fn procfiles() -> Spec {
    Spec::workload("wl_procfiles", env!("CARGO_BIN_EXE_wl_procfiles")).args(["files"])
}

/// The checks of each held proc file, by name.
const PROCFILES: &[&str] = &[
    "maps",
    "status",
    "child-stat",
    "thread-comm",
    "sysctl",
    "fd-dir",
];

#[test]
fn procfiles_pass_untouched() -> Result<()> {
    harness::self_check(procfiles())?;
    Ok(())
}

#[test]
fn procfiles_detect_damage() -> Result<()> {
    harness::self_check_fails(procfiles().args([INJECT_FAULT]), PROCFILES)?;
    Ok(())
}
