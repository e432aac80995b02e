//! Privileged tests of the kernel feature probes (`dormant check`): on this machine every required
//! probe passes and the probes report what the kernel really does; a probe whose syscall is denied by a
//! seccomp filter reports Missing, so no answer is hard-coded.
#![cfg(target_arch = "x86_64")]
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use dormant_engine::kerndat::{self, Feature, Probe, Status};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, geteuid, ForkResult};

fn require_root() {
    assert!(
        geteuid().is_root(),
        "the kerndat tests must run as root: the probes seize processes, read PFNs, create pids with \
         clone3 set_tid and freeze cgroups (run e.g. `sudo -E cargo test -p dormant-engine --test kerndat`)"
    );
}

fn find(probes: &[Probe], feature: Feature) -> &Probe {
    probes.iter().find(|p| p.feature == feature).unwrap()
}

#[test]
fn every_required_probe_passes_and_soft_dirty_is_missing() {
    require_root();
    let started = Instant::now();
    let detection = kerndat::detect();
    let elapsed = started.elapsed();
    println!("{}", kerndat::render_table(&detection.probes));
    println!("probe_all took {elapsed:?}");

    assert_eq!(detection.probes.len(), Feature::ALL.len());
    let fatal: Vec<_> = detection.missing_required().collect();
    assert!(
        fatal.is_empty(),
        "required features missing on this machine: {fatal:#?}"
    );
    assert!(elapsed < Duration::from_secs(5), "probing took {elapsed:?}");

    // This kernel has CONFIG_MEM_SOFT_DIRTY off although clear_refs accepts "4".
    let soft_dirty = find(&detection.probes, Feature::SoftDirty);
    match &soft_dirty.status {
        Status::Missing { reason } => assert!(reason.contains("bit 55"), "{reason}"),
        other => panic!("soft-dirty must be missing on this kernel, got {other:?}"),
    }
    assert!(!detection.features.has_soft_dirty);

    // The xstate regset must be exactly as large as CPUID leaf 0xD says for the enabled features.
    let cpuid = std::arch::x86_64::__cpuid_count(0xD, 0);
    assert_eq!(detection.features.xstate_size, Some(cpuid.ebx as usize));

    let f = &detection.features;
    assert!(f.has_ptrace_seize && f.has_rseq_config && f.has_pagemap_pfn && f.has_map_files);
    assert!(f.has_clone3_set_tid && f.has_pr_set_mm_map && f.has_memfd && f.has_pidfd_getfd);
    assert!(f.zero_page_pfn.is_some_and(|pfn| pfn != 0), "{f:?}");
}

/// The optional features digest §7.1 verified on these dev VMs (kernel 6.18, CHECKPOINT_RESTORE=y,
/// hybrid cgroups) must be found too: a probe that fails where the feature works would make
/// `dormant check` lie just as much as one that passes where it does not.
#[test]
fn optional_probes_find_what_this_vm_has() {
    require_root();
    let detection = kerndat::detect();
    let expected_available = [
        Feature::PagemapScan,
        Feature::ProcTimers,
        Feature::ArchMapVdso,
        Feature::Kcmp,
        Feature::UffdWpAsync,
        Feature::MountSetGroup,
        Feature::StatmountListmount,
        Feature::TimeNamespace,
        Feature::UnixDiag,
        Feature::InetDiag,
        Feature::FreezerV1,
        Feature::FreezerV2,
    ];
    for feature in expected_available {
        let probe = find(&detection.probes, feature);
        assert!(
            probe.status.is_available(),
            "{feature} should work on this VM: {:?}",
            probe.status
        );
    }
    let f = &detection.features;
    assert!(
        f.has_pagemap_scan && f.has_uffd_wp_async && f.has_statmount && f.has_move_mount_set_group
    );
    assert!(
        f.freezer_v1_mount.is_some() && f.freezer_v2_mount.is_some(),
        "{f:?}"
    );
}

// ---------------------------------------------------------------------------------------------------
// Denied features: a child installs a seccomp filter that makes one syscall fail, probes, and reports.

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// Makes syscall `nr` fail with `errno` in the calling (single-threaded) child and its descendants.
fn deny_syscall(nr: libc::c_long, errno: i32) -> Result<(), nix::errno::Errno> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let mut filter = [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4), // seccomp_data.arch
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0), // seccomp_data.nr
        jeq(nr as u32, 0, 1),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | errno as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    nix::errno::Errno::result(ret)?;
    // SAFETY: `prog` points at `filter`, both alive for the call; the kernel copies the program.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    nix::errno::Errno::result(ret).map(drop)
}

/// Probes `feature` in a forked child, optionally with syscall `deny` = (nr, errno) denied first, and
/// returns the status the child saw. The child only runs the probe and writes one line to a pipe.
fn probe_in_child(feature: Feature, deny: Option<(libc::c_long, i32)>) -> Status {
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // SAFETY: the child runs the probe (which takes no lock other test threads hold), writes its
    // answer and leaves through _exit, never returning into the test harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(read_end);
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                if let Some((nr, errno)) = deny {
                    if let Err(e) = deny_syscall(nr, errno) {
                        return format!("E:installing the seccomp filter failed: {e}");
                    }
                }
                match kerndat::probe(feature).status {
                    Status::Available { detail } => format!("A:{detail}"),
                    Status::Missing { reason } => format!("M:{reason}"),
                }
            }))
            .unwrap_or_else(|_| "E:the probe panicked".to_string());
            let _ = nix::unistd::write(&write_end, outcome.as_bytes());
            // SAFETY: ends the forked child without running the harness's code.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut answer = String::new();
            std::fs::File::from(read_end)
                .read_to_string(&mut answer)
                .unwrap();
            assert!(matches!(
                waitpid(child, None).unwrap(),
                WaitStatus::Exited(_, 0)
            ));
            match answer.split_once(':') {
                Some(("A", detail)) => Status::Available {
                    detail: detail.to_string(),
                },
                Some(("M", reason)) => Status::Missing {
                    reason: reason.to_string(),
                },
                _ => panic!("probe child for {feature} answered {answer:?}"),
            }
        }
    }
}

/// The probe must pass without the filter and fail, naming the call and the errno, with it.
fn assert_denial_detected(
    feature: Feature,
    nr: libc::c_long,
    errno: i32,
    call: &str,
    errno_name: &str,
) {
    require_root();
    let allowed = probe_in_child(feature, None);
    assert!(
        allowed.is_available(),
        "{feature} without a filter: {allowed:?}"
    );
    match probe_in_child(feature, Some((nr, errno))) {
        Status::Missing { reason } => {
            println!("{feature} with {call} denied: {reason}");
            assert!(
                reason.contains(call) && reason.contains(errno_name),
                "{feature} denied: reason {reason:?} should name {call} and {errno_name}"
            );
        }
        other => panic!("{feature} with {call} denied was reported {other:?}"),
    }
}

#[test]
fn clone3_denied_reports_set_tid_missing() {
    assert_denial_detected(
        Feature::Clone3SetTid,
        libc::SYS_clone3,
        libc::ENOSYS,
        "clone3",
        "ENOSYS",
    );
}

#[test]
fn pidfd_open_denied_reports_pidfd_missing() {
    assert_denial_detected(
        Feature::Pidfd,
        libc::SYS_pidfd_open,
        libc::ENOSYS,
        "pidfd_open",
        "ENOSYS",
    );
}

#[test]
fn userfaultfd_denied_reports_uffd_wp_missing() {
    assert_denial_detected(
        Feature::UffdWpAsync,
        libc::SYS_userfaultfd,
        libc::EPERM,
        "userfaultfd",
        "EPERM",
    );
}

#[test]
fn kcmp_denied_reports_kcmp_missing() {
    assert_denial_detected(
        Feature::Kcmp,
        libc::SYS_kcmp,
        libc::ENOSYS,
        "kcmp",
        "ENOSYS",
    );
}
