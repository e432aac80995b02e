//! Kernel feature probes (`dormant check`).
//!
//! Every probe exercises its feature for real: it forks a child and seizes it, faults in pages and
//! reads them back through pagemap, creates a child with an exact pid, freezes a cgroup, and so on.
//! Nothing is concluded from version numbers or config files, because Kata's guest kernels differ
//! from the host's and some interfaces lie (clear_refs accepts "4" on kernels without soft-dirty).
//! Probes that change the calling process (unmapping the vdso, unsharing namespaces, write-protecting
//! memory, clear_refs, PR_SET_MM_MAP) run in a forked child, so the dormant process is never altered.
//! A failing probe reports [`Status::Missing`] with the reason; it never panics.

mod child;
mod error;
mod freezer;
mod memory;
mod mounts;
mod process;
mod procfs;
mod ptrace;
mod sockdiag;
mod sys;

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

pub use error::ProbeError;

/// A kernel feature the engine may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    /// PTRACE_SEIZE + PTRACE_INTERRUPT. Required: the only way to stop a task without sending it a
    /// signal it could observe, and to hold it in a stop the engine controls.
    PtraceSeize,
    /// PTRACE_GETREGSET NT_X86_XSTATE. Required: the FPU/SSE/AVX state of every thread is part of
    /// what must be restored, and the regset size sizes the image records.
    PtraceXstate,
    /// PTRACE_GET_RSEQ_CONFIGURATION. Required: glibc (2.35+) registers rseq on every thread; without
    /// reading the registration, the restored threads would run with glibc believing in an rseq area
    /// the kernel no longer updates.
    PtraceRseq,
    /// /proc/pid/pagemap with PFNs. Required: it tells which pages are populated, and the zero-page
    /// PFN lets the dump skip pages never written.
    Pagemap,
    /// The PAGEMAP_SCAN ioctl (6.7). Optional: reading pagemap entry by entry does the same, slower;
    /// needed only for uffd-wp based dirty tracking (pre-dump).
    PagemapScan,
    /// /proc/pid/map_files. Required: opening a mapped file through it works for deleted and
    /// unreachable files and proves the mapping's identity.
    MapFiles,
    /// /proc/pid/timers. Optional: needed only by tasks that own POSIX timers.
    ProcTimers,
    /// clone3 with set_tid (5.5). Required: restored tasks must get their exact pids back, and
    /// ns_last_pid (the old way) needs CONFIG_CHECKPOINT_RESTORE anyway.
    Clone3SetTid,
    /// prctl(PR_SET_MM, PR_SET_MM_MAP). Required: the restorer sets code/data/brk/stack/args/env/auxv
    /// of the new mm in one call; the per-field PR_SET_MM fallback needs CAP_SYS_RESOURCE, which the
    /// dormant process may not have (it does not on the dev VM).
    PrSetMmMap,
    /// arch_prctl(ARCH_MAP_VDSO_64). Optional: mremap of the running vdso/vvar is the fallback.
    ArchMapVdso,
    /// memfd_create. Required: shared anonymous memory and the restorer's own blob live in memfds.
    Memfd,
    /// pidfd_open + pidfd_getfd (5.6). Required: descriptors that cannot be reopened by path
    /// (sockets, eventfd, epoll, the userfaultfd for dirty tracking) are taken out of the task with it.
    Pidfd,
    /// kcmp(KCMP_FILE). Optional: telling shared open files apart falls back to fdinfo and inode
    /// comparisons.
    Kcmp,
    /// userfaultfd with UFFD_FEATURE_WP_ASYNC (6.7). Optional: only iterative pre-dump tracks dirty
    /// pages with it (soft-dirty being absent here).
    UffdWpAsync,
    /// open_tree/move_mount with MOVE_MOUNT_SET_GROUP (5.15). Optional for one process; needed to
    /// restore mount namespaces with shared or slave mounts.
    MountSetGroup,
    /// statmount/listmount (6.8). Optional: mountinfo parsing is the fallback.
    StatmountListmount,
    /// Time namespaces. Optional: needed only to restore tasks that lived in one, or to keep
    /// CLOCK_MONOTONIC continuous across hosts.
    TimeNamespace,
    /// Soft-dirty pagemap bits. Optional: uffd-wp async is the other dirty tracker.
    SoftDirty,
    /// NETLINK_SOCK_DIAG for AF_UNIX. Optional: needed only to dump unix sockets (peers, queues).
    UnixDiag,
    /// NETLINK_SOCK_DIAG for AF_INET. Optional: needed only to dump TCP/UDP sockets.
    InetDiag,
    /// The cgroup v1 freezer. Optional: freezing a container before seizing is an optimisation over
    /// seizing each task; either freezer will do.
    FreezerV1,
    /// The cgroup v2 freezer (`cgroup.freeze`). Optional, as the v1 one.
    FreezerV2,
}

impl Feature {
    /// Every feature, in the order `dormant check` shows them.
    pub const ALL: [Feature; 22] = [
        Feature::PtraceSeize,
        Feature::PtraceXstate,
        Feature::PtraceRseq,
        Feature::Pagemap,
        Feature::PagemapScan,
        Feature::MapFiles,
        Feature::ProcTimers,
        Feature::Clone3SetTid,
        Feature::PrSetMmMap,
        Feature::ArchMapVdso,
        Feature::Memfd,
        Feature::Pidfd,
        Feature::Kcmp,
        Feature::UffdWpAsync,
        Feature::MountSetGroup,
        Feature::StatmountListmount,
        Feature::TimeNamespace,
        Feature::SoftDirty,
        Feature::UnixDiag,
        Feature::InetDiag,
        Feature::FreezerV1,
        Feature::FreezerV2,
    ];

    /// The short name `dormant check` prints.
    pub fn name(self) -> &'static str {
        match self {
            Feature::PtraceSeize => "ptrace-seize",
            Feature::PtraceXstate => "ptrace-xstate",
            Feature::PtraceRseq => "ptrace-rseq",
            Feature::Pagemap => "pagemap",
            Feature::PagemapScan => "pagemap-scan",
            Feature::MapFiles => "map-files",
            Feature::ProcTimers => "proc-timers",
            Feature::Clone3SetTid => "clone3-set-tid",
            Feature::PrSetMmMap => "pr-set-mm-map",
            Feature::ArchMapVdso => "arch-map-vdso",
            Feature::Memfd => "memfd",
            Feature::Pidfd => "pidfd",
            Feature::Kcmp => "kcmp",
            Feature::UffdWpAsync => "uffd-wp-async",
            Feature::MountSetGroup => "mount-set-group",
            Feature::StatmountListmount => "statmount",
            Feature::TimeNamespace => "time-ns",
            Feature::SoftDirty => "soft-dirty",
            Feature::UnixDiag => "unix-diag",
            Feature::InetDiag => "inet-diag",
            Feature::FreezerV1 => "freezer-v1",
            Feature::FreezerV2 => "freezer-v2",
        }
    }

    /// What the engine needs the feature for.
    pub fn needed_for(self) -> &'static str {
        match self {
            Feature::PtraceSeize => "stopping tasks without signals",
            Feature::PtraceXstate => "FPU/AVX register state",
            Feature::PtraceRseq => "restoring glibc's rseq registration",
            Feature::Pagemap => "finding populated and zero pages",
            Feature::PagemapScan => "fast page walk, uffd-wp dirty tracking",
            Feature::MapFiles => "opening mapped (also deleted) files",
            Feature::ProcTimers => "dumping POSIX timers",
            Feature::Clone3SetTid => "restoring exact pids",
            Feature::PrSetMmMap => "restoring mm layout (brk, args, auxv)",
            Feature::ArchMapVdso => "placing the vdso (else mremap)",
            Feature::Memfd => "shared anonymous memory, restorer blob",
            Feature::Pidfd => "taking fds out of tasks, pid reuse checks",
            Feature::Kcmp => "spotting shared files (else fdinfo)",
            Feature::UffdWpAsync => "dirty tracking for pre-dump",
            Feature::MountSetGroup => "restoring mount propagation",
            Feature::StatmountListmount => "reading mounts (else mountinfo)",
            Feature::TimeNamespace => "restoring time namespaces",
            Feature::SoftDirty => "dirty tracking (legacy)",
            Feature::UnixDiag => "dumping unix sockets",
            Feature::InetDiag => "dumping TCP sockets",
            Feature::FreezerV1 => "freezing containers (cgroup v1)",
            Feature::FreezerV2 => "freezing containers (cgroup v2)",
        }
    }

    /// The kernel option (or minimum version, for always-built-in interfaces) that provides it.
    pub fn kernel_option(self) -> &'static str {
        match self {
            Feature::PtraceSeize => "built in (Linux 3.4+)",
            Feature::PtraceXstate => "built in on x86-64",
            Feature::PtraceRseq => "CONFIG_RSEQ (Linux 5.13+)",
            Feature::Pagemap => "CONFIG_PROC_PAGE_MONITOR",
            Feature::PagemapScan => "CONFIG_PROC_PAGE_MONITOR (Linux 6.7+)",
            Feature::MapFiles => "CONFIG_PROC_FS (Linux 4.3+)",
            Feature::ProcTimers => "CONFIG_CHECKPOINT_RESTORE, CONFIG_POSIX_TIMERS",
            Feature::Clone3SetTid => "built in (Linux 5.5+)",
            Feature::PrSetMmMap => "CONFIG_CHECKPOINT_RESTORE",
            Feature::ArchMapVdso => "CONFIG_CHECKPOINT_RESTORE",
            Feature::Memfd => "CONFIG_MEMFD_CREATE",
            Feature::Pidfd => "built in (Linux 5.6+)",
            Feature::Kcmp => "CONFIG_KCMP (CONFIG_CHECKPOINT_RESTORE selects it)",
            Feature::UffdWpAsync => "CONFIG_USERFAULTFD, CONFIG_PTE_MARKER_UFFD_WP (Linux 6.7+)",
            Feature::MountSetGroup => "built in (Linux 5.15+)",
            Feature::StatmountListmount => "built in (Linux 6.8+)",
            Feature::TimeNamespace => "CONFIG_TIME_NS",
            Feature::SoftDirty => "CONFIG_MEM_SOFT_DIRTY",
            Feature::UnixDiag => "CONFIG_UNIX_DIAG",
            Feature::InetDiag => "CONFIG_INET_DIAG, CONFIG_INET_TCP_DIAG",
            Feature::FreezerV1 => "CONFIG_CGROUP_FREEZER",
            Feature::FreezerV2 => "CONFIG_CGROUPS (cgroup2, Linux 5.2+)",
        }
    }

    /// Whether dumping and restoring a single process cannot do without it (see each variant's doc).
    pub fn required(self) -> bool {
        matches!(
            self,
            Feature::PtraceSeize
                | Feature::PtraceXstate
                | Feature::PtraceRseq
                | Feature::Pagemap
                | Feature::MapFiles
                | Feature::Clone3SetTid
                | Feature::PrSetMmMap
                | Feature::Memfd
                | Feature::Pidfd
        )
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Status {
    /// The feature worked; `detail` says what the probe saw.
    Available { detail: String },
    /// The feature did not work; `reason` says where it failed.
    Missing { reason: String },
}

impl Status {
    pub fn is_available(&self) -> bool {
        matches!(self, Status::Available { .. })
    }
}

/// The result of probing one feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub feature: Feature,
    pub status: Status,
    pub needed_for: &'static str,
    pub kernel_option: &'static str,
    pub required: bool,
}

impl Probe {
    /// A required feature that is missing: the engine cannot work on this kernel.
    pub fn is_fatal(&self) -> bool {
        self.required && !self.status.is_available()
    }
}

/// What the engine consults at run time, derived from the probes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KernelFeatures {
    pub has_ptrace_seize: bool,
    /// Size in bytes of the NT_X86_XSTATE regset (the per-thread XSAVE record), when readable.
    pub xstate_size: Option<usize>,
    pub has_rseq_config: bool,
    pub has_pagemap_pfn: bool,
    /// PFN of the shared zero page; pages mapping it need not be dumped.
    pub zero_page_pfn: Option<u64>,
    pub has_pagemap_scan: bool,
    pub has_map_files: bool,
    pub has_proc_timers: bool,
    pub has_clone3_set_tid: bool,
    pub has_pr_set_mm_map: bool,
    pub has_arch_map_vdso: bool,
    pub has_memfd: bool,
    pub has_pidfd_getfd: bool,
    pub has_kcmp: bool,
    pub has_uffd_wp_async: bool,
    pub has_move_mount_set_group: bool,
    pub has_statmount: bool,
    pub has_time_ns: bool,
    pub has_soft_dirty: bool,
    pub has_unix_diag: bool,
    pub has_inet_diag: bool,
    /// Mount point of the cgroup v1 freezer hierarchy, when the freezer worked there.
    pub freezer_v1_mount: Option<PathBuf>,
    /// Mount point of the cgroup2 hierarchy, when its freezer worked.
    pub freezer_v2_mount: Option<PathBuf>,
}

impl KernelFeatures {
    /// Runs every probe and keeps only the answers the engine consults.
    pub fn detect() -> Self {
        detect().features
    }

    fn record(&mut self, feature: Feature, available: bool, fact: Fact) {
        match fact {
            Fact::None => {}
            Fact::XstateSize(size) => self.xstate_size = Some(size),
            Fact::ZeroPagePfn(pfn) => self.zero_page_pfn = pfn,
            Fact::CgroupMount(path) => match feature {
                Feature::FreezerV1 => self.freezer_v1_mount = Some(path),
                Feature::FreezerV2 => self.freezer_v2_mount = Some(path),
                _ => {}
            },
        }
        let flag = match feature {
            Feature::PtraceSeize => &mut self.has_ptrace_seize,
            Feature::PtraceRseq => &mut self.has_rseq_config,
            Feature::Pagemap => &mut self.has_pagemap_pfn,
            Feature::PagemapScan => &mut self.has_pagemap_scan,
            Feature::MapFiles => &mut self.has_map_files,
            Feature::ProcTimers => &mut self.has_proc_timers,
            Feature::Clone3SetTid => &mut self.has_clone3_set_tid,
            Feature::PrSetMmMap => &mut self.has_pr_set_mm_map,
            Feature::ArchMapVdso => &mut self.has_arch_map_vdso,
            Feature::Memfd => &mut self.has_memfd,
            Feature::Pidfd => &mut self.has_pidfd_getfd,
            Feature::Kcmp => &mut self.has_kcmp,
            Feature::UffdWpAsync => &mut self.has_uffd_wp_async,
            Feature::MountSetGroup => &mut self.has_move_mount_set_group,
            Feature::StatmountListmount => &mut self.has_statmount,
            Feature::TimeNamespace => &mut self.has_time_ns,
            Feature::SoftDirty => &mut self.has_soft_dirty,
            Feature::UnixDiag => &mut self.has_unix_diag,
            Feature::InetDiag => &mut self.has_inet_diag,
            // Carried by their facts above.
            Feature::PtraceXstate | Feature::FreezerV1 | Feature::FreezerV2 => return,
        };
        *flag = available;
    }
}

/// Every probe's result together with the features derived from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub probes: Vec<Probe>,
    pub features: KernelFeatures,
}

impl Detection {
    /// The required features that are missing.
    pub fn missing_required(&self) -> impl Iterator<Item = &Probe> {
        self.probes.iter().filter(|p| p.is_fatal())
    }
}

/// A value a probe measured on the way, kept for [`KernelFeatures`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fact {
    None,
    XstateSize(usize),
    ZeroPagePfn(Option<u64>),
    CgroupMount(PathBuf),
}

/// What a successful probe reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub detail: String,
    pub fact: Fact,
}

impl Found {
    pub(crate) fn detail(detail: String) -> Self {
        Found {
            detail,
            fact: Fact::None,
        }
    }
}

fn run(feature: Feature) -> Result<Found, ProbeError> {
    match feature {
        Feature::PtraceSeize => ptrace::seize_interrupt(),
        Feature::PtraceXstate => ptrace::xstate(),
        Feature::PtraceRseq => ptrace::rseq_configuration(),
        Feature::Pagemap => memory::pagemap(),
        Feature::PagemapScan => memory::pagemap_scan(),
        Feature::MapFiles => procfs::map_files(),
        Feature::ProcTimers => procfs::timers(),
        Feature::Clone3SetTid => process::clone3_set_tid(),
        Feature::PrSetMmMap => process::pr_set_mm_map(),
        Feature::ArchMapVdso => process::arch_map_vdso(),
        Feature::Memfd => memory::memfd(),
        Feature::Pidfd => process::pidfd(),
        Feature::Kcmp => process::kcmp(),
        Feature::UffdWpAsync => memory::uffd_wp_async(),
        Feature::MountSetGroup => mounts::move_mount_set_group(),
        Feature::StatmountListmount => mounts::statmount_listmount(),
        Feature::TimeNamespace => process::time_namespace(),
        Feature::SoftDirty => memory::soft_dirty(),
        Feature::UnixDiag => sockdiag::unix_diag(),
        Feature::InetDiag => sockdiag::inet_diag(),
        Feature::FreezerV1 => freezer::freezer_v1(),
        Feature::FreezerV2 => freezer::freezer_v2(),
    }
}

fn probe_with_fact(feature: Feature) -> (Probe, Fact) {
    let started = Instant::now();
    let (status, fact) = match run(feature) {
        Ok(found) => (
            Status::Available {
                detail: found.detail,
            },
            found.fact,
        ),
        Err(e) => (
            Status::Missing {
                reason: e.to_string(),
            },
            Fact::None,
        ),
    };
    log::debug!(
        "kerndat: {feature} probed in {:?}: {status:?}",
        started.elapsed()
    );
    let probe = Probe {
        feature,
        status,
        needed_for: feature.needed_for(),
        kernel_option: feature.kernel_option(),
        required: feature.required(),
    };
    (probe, fact)
}

/// Runs the probe of one feature.
pub fn probe(feature: Feature) -> Probe {
    probe_with_fact(feature).0
}

/// Runs every probe, in [`Feature::ALL`] order, and derives [`KernelFeatures`] from them.
pub fn detect() -> Detection {
    let mut features = KernelFeatures::default();
    let probes = Feature::ALL
        .iter()
        .map(|&feature| {
            let (probe, fact) = probe_with_fact(feature);
            features.record(feature, probe.status.is_available(), fact);
            probe
        })
        .collect();
    Detection { probes, features }
}

/// Runs every probe, in [`Feature::ALL`] order.
pub fn probe_all() -> Vec<Probe> {
    detect().probes
}

/// The table `dormant check` prints: one row per feature, with what the probe saw (or why it
/// failed) on an indented line below.
pub fn render_table(probes: &[Probe]) -> String {
    const HEADERS: [&str; 5] = [
        "FEATURE",
        "STATUS",
        "REQUIRED",
        "NEEDED FOR",
        "KERNEL OPTION",
    ];
    let rows: Vec<[&str; 5]> = probes
        .iter()
        .map(|p| {
            [
                p.feature.name(),
                if p.status.is_available() {
                    "ok"
                } else {
                    "MISSING"
                },
                if p.required { "yes" } else { "no" },
                p.needed_for,
                p.kernel_option,
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[&str; 5]| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&HEADERS);
    for (probe, row) in probes.iter().zip(&rows) {
        out.push_str(&line(row));
        let note = match &probe.status {
            Status::Available { detail } => detail,
            Status::Missing { reason } => reason,
        };
        out.push_str(&format!("    {note}\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_is_listed_once_with_metadata() {
        let mut seen = std::collections::HashSet::new();
        for f in Feature::ALL {
            assert!(seen.insert(f), "{f} listed twice");
            assert!(!f.needed_for().is_empty() && !f.kernel_option().is_empty());
        }
        let names: std::collections::HashSet<_> = Feature::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Feature::ALL.len());
    }

    #[test]
    fn table_has_a_row_and_a_note_per_probe() {
        let probes = vec![
            Probe {
                feature: Feature::Memfd,
                status: Status::Available {
                    detail: "fine".into(),
                },
                needed_for: Feature::Memfd.needed_for(),
                kernel_option: Feature::Memfd.kernel_option(),
                required: true,
            },
            Probe {
                feature: Feature::SoftDirty,
                status: Status::Missing {
                    reason: "bit 55 never set".into(),
                },
                needed_for: Feature::SoftDirty.needed_for(),
                kernel_option: Feature::SoftDirty.kernel_option(),
                required: false,
            },
        ];
        let table = render_table(&probes);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("FEATURE"));
        assert!(
            lines[1].starts_with("memfd")
                && lines[1].contains(" ok ")
                && lines[1].contains("CONFIG_MEMFD_CREATE")
        );
        assert_eq!(lines[2], "    fine");
        assert!(lines[3].contains("MISSING") && lines[3].ends_with("CONFIG_MEM_SOFT_DIRTY"));
        assert_eq!(lines[4], "    bit 55 never set");
    }
}
