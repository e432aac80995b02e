//! A task's address space: every mapping classified by what backs it (from smaps, the files behind file
//! mappings registered in the file table), the mm layout (code, data, brk, stack, arg and env ranges), the
//! auxiliary vector and the executable. The page data of the mappings is [`super::pages`]' job.

use dormant_image::records::{FileId, MmAttrs, MmLayout, ShmemId, Vma, VmaBacking};
use dormant_parasite::{query, RemoteTask};

use crate::error::{DumpError, Result};
use crate::files::{self, FileTable};
use crate::proc::{self, smaps::SmapsEntry, stat::ProcStat};

/// `VmFlags` mnemonics and the madvise advice that re-creates them.
const MADVISE_FLAGS: [(&str, u32); 8] = [
    ("sr", libc::MADV_SEQUENTIAL as u32),
    ("rr", libc::MADV_RANDOM as u32),
    ("dc", libc::MADV_DONTFORK as u32),
    ("dd", libc::MADV_DONTDUMP as u32),
    ("wf", libc::MADV_WIPEONFORK as u32),
    ("hg", libc::MADV_HUGEPAGE as u32),
    ("nh", libc::MADV_NOHUGEPAGE as u32),
    ("mg", libc::MADV_MERGEABLE as u32),
];

/// `VmFlags` of state the restore does not rebuild, refused at dump (with what they mean).
const UNCARRIED_FLAGS: [(&str, &str); 5] = [
    ("um", "a userfaultfd registration (missing)"),
    ("uw", "a userfaultfd registration (write-protect)"),
    ("ui", "a userfaultfd registration (minor)"),
    ("sl", "a sealed mapping (mseal)"),
    ("dp", "a droppable mapping (MAP_DROPPABLE)"),
];

/// What a mapping is, before files are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmaClass {
    Anon,
    Shmem {
        ino: u64,
    },
    /// A System V shm attachment; maps show the segment id as the inode.
    SysvShm {
        shmid: u32,
    },
    File {
        path: String,
    },
    Vdso,
    Vvar,
    Vsyscall,
}

/// Classifies one smaps entry, or says why it cannot be dumped.
pub fn classify(e: &SmapsEntry) -> std::result::Result<VmaClass, String> {
    let name = e.name.as_str();
    match name {
        "[vdso]" => return Ok(VmaClass::Vdso),
        "[vvar]" | "[vvar_vclock]" => return Ok(VmaClass::Vvar),
        "[vsyscall]" => return Ok(VmaClass::Vsyscall),
        _ => {}
    }
    if e.has_flag("io") || e.has_flag("pf") {
        return Err("I/O or PFN mapping (VM_IO/VM_PFNMAP) cannot be dumped".into());
    }
    if e.has_flag("ht") {
        return Err("hugetlb mappings are not supported yet".into());
    }
    if e.has_flag("ss") {
        return Err("shadow-stack mappings are not supported yet".into());
    }
    if let Some(f) = UNCARRIED_FLAGS.iter().find(|(f, _)| e.has_flag(f)) {
        return Err(format!("{} (smaps {}) is not restored yet", f.1, f.0));
    }
    if name.starts_with("[anon_shmem:") {
        return Ok(VmaClass::Shmem { ino: e.inode });
    }
    if name.is_empty() || name == "[heap]" || name == "[stack]" || name.starts_with("[anon:") {
        if e.inode != 0 {
            return Err(format!("anonymous-looking mapping with inode {}", e.inode));
        }
        if e.shared {
            return Err("shared mapping without a shmem object".into());
        }
        return Ok(VmaClass::Anon);
    }
    if name.starts_with('[') {
        return Err("special mapping of unknown kind".into());
    }
    if e.shared && name == "/dev/zero (deleted)" {
        return Ok(VmaClass::Shmem { ino: e.inode });
    }
    if name.starts_with("/SYSV") {
        let shmid = u32::try_from(e.inode).map_err(|_| format!("SysV segment id {}", e.inode))?;
        return Ok(VmaClass::SysvShm { shmid });
    }
    if name.starts_with("/memfd:") {
        return Err("memfd mappings are not supported yet".into());
    }
    if !e.shared && name == "/dev/zero" {
        // A private mapping of /dev/zero is anonymous memory that still names the device.
        return Ok(VmaClass::Anon);
    }
    if name.starts_with('/') {
        return Ok(VmaClass::File {
            path: name.to_string(),
        });
    }
    Err("mapping of unknown kind".into())
}

/// One mapping with what the dumper needs to handle its contents.
#[derive(Debug, Clone)]
pub struct CollectedVma {
    pub vma: Vma,
    pub class: VmaClass,
}

fn map_files_name(e: &SmapsEntry) -> String {
    format!("map_files/{:x}-{:x}", e.start, e.end)
}

/// Reads smaps, classifies every mapping and registers the files behind file mappings in `table`.
pub fn collect_vmas(pid: u32, table: &mut FileTable) -> Result<Vec<CollectedVma>> {
    let text = proc::read_string(pid, "smaps")?;
    let entries = proc::smaps::parse(&text).map_err(|reason| DumpError::ProcParse {
        pid,
        file: "smaps",
        reason,
    })?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let unsupported = |reason: String| DumpError::UnsupportedVma {
            pid,
            start: e.start,
            end: e.end,
            name: e.name.clone(),
            reason,
        };
        let class = classify(&e).map_err(unsupported)?;
        let what = || format!("mapping {:#x}-{:#x}", e.start, e.end);
        let backing = match &class {
            VmaClass::Anon => VmaBacking::Anon,
            VmaClass::Shmem { ino } => VmaBacking::Shmem(ShmemId(*ino)),
            VmaClass::SysvShm { shmid } => VmaBacking::SysvShm { shmid: *shmid },
            VmaClass::Vdso => VmaBacking::Vdso,
            VmaClass::Vvar => VmaBacking::Vvar,
            VmaClass::Vsyscall => VmaBacking::Vsyscall,
            VmaClass::File { path } => {
                // A deleted file (` (deleted)`) is carried with its content (files::ghost::deleted).
                let source = map_files_name(&e);
                let stat = files::stat_proc_link(pid, &source, what)
                    .map_err(crate::caps::explain_map_files)?;
                if stat.mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(unsupported(format!(
                        "backed by a non-regular file (mode {:o})",
                        stat.mode
                    )));
                }
                let id = table.by_identity(path, stat, pid, &source);
                if e.shared {
                    table
                        .shared_mapping(id, e.has_flag("mw"))
                        .map_err(unsupported)?;
                }
                VmaBacking::File(id)
            }
        };
        let mut map_flags = if e.shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        } as u32;
        if matches!(class, VmaClass::Anon | VmaClass::Shmem { .. }) {
            map_flags |= libc::MAP_ANONYMOUS as u32;
        }
        if e.has_flag("gd") {
            map_flags |= libc::MAP_GROWSDOWN as u32;
        }
        if e.has_flag("nr") {
            map_flags |= libc::MAP_NORESERVE as u32;
        }
        if e.has_flag("lo") {
            map_flags |= libc::MAP_LOCKED as u32;
        }
        let lock_on_fault = e.has_flag("lo") && e.has_flag("lf");
        let prot = (if e.read { libc::PROT_READ } else { 0 }
            | if e.write { libc::PROT_WRITE } else { 0 }
            | if e.exec { libc::PROT_EXEC } else { 0 }) as u32;
        let madvise = MADVISE_FLAGS
            .iter()
            .filter(|(f, _)| e.has_flag(f))
            .map(|(_, a)| *a)
            .collect();
        out.push(CollectedVma {
            vma: Vma {
                start: e.start,
                end: e.end,
                prot,
                map_flags,
                madvise,
                pgoff: e.offset,
                backing,
                name: e.name.clone(),
                lock_on_fault,
                pkey: Some(e.pkey),
            },
            class,
        });
    }
    Ok(out)
}

/// The address-space attributes only the task can tell, asked in an injection session of `task` (the
/// caller ends it): THP disable and the `mlockall` flags for future mappings. The latter are seen on a
/// probe page mapped and unmapped again, only when the task has locked memory (`VmLck`): a task that
/// called `mlockall(MCL_FUTURE)` and has mapped nothing since is not told apart (see docs/design-notes.md, "Memory attributes").
pub fn query_attrs(pid: u32, task: &mut RemoteTask) -> Result<MmAttrs> {
    let perr = |what: &'static str| {
        move |e: dormant_parasite::ParasiteError| DumpError::Parasite {
            pid,
            what,
            reason: e.to_string(),
        }
    };
    let thp_disable = query::thp_disable(task).map_err(perr("THP disable"))?;
    let status = proc::read_string(pid, "status")?;
    let locked_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mut mlock_future = 0;
    if locked_kb > 0 {
        let addr = query::probe_mapping(task).map_err(perr("probe mapping"))?;
        let flags = proc::read_string(pid, "smaps").and_then(|text| {
            proc::smaps::parse(&text)
                .map_err(|reason| DumpError::ProcParse {
                    pid,
                    file: "smaps",
                    reason,
                })
                .map(|v| v.into_iter().find(|e| e.start <= addr && addr < e.end))
        });
        let unmapped = task.munmap(addr, 4096).map_err(perr("probe unmapping"));
        let probe = flags?;
        unmapped?;
        if let Some(e) = probe.filter(|e| e.has_flag("lo")) {
            mlock_future = libc::MCL_FUTURE as u32;
            if e.has_flag("lf") {
                mlock_future |= libc::MCL_ONFAULT as u32;
            }
        }
    }
    Ok(MmAttrs {
        mlock_future,
        thp_disable,
    })
}

/// The mm layout from `/proc/<pid>/stat`, with the program break `brk` the task reported (`None`: it could
/// not be asked; then the end of `[heap]`, else where the heap starts).
pub fn layout(stat: &ProcStat, brk: Option<u64>, vmas: &[CollectedVma]) -> MmLayout {
    let brk = brk.unwrap_or_else(|| {
        vmas.iter()
            .find(|v| v.vma.name == "[heap]")
            .map(|v| v.vma.end)
            .unwrap_or(stat.start_brk)
    });
    MmLayout {
        start_code: stat.start_code,
        end_code: stat.end_code,
        start_data: stat.start_data,
        end_data: stat.end_data,
        start_brk: stat.start_brk,
        brk,
        start_stack: stat.start_stack,
        arg_start: stat.arg_start,
        arg_end: stat.arg_end,
        env_start: stat.env_start,
        env_end: stat.env_end,
    }
}

/// `/proc/<pid>/auxv` as native words, up to and including the `AT_NULL` pair.
pub fn read_auxv(pid: u32) -> Result<Vec<u64>> {
    Ok(proc::parse_auxv(&proc::read_bytes(pid, "auxv")?))
}

/// The executable, as a file-table entry (a deleted one is carried with its content, like a deleted
/// mapped file).
pub fn dump_exe(pid: u32, table: &mut FileTable) -> Result<FileId> {
    let path = proc::read_link(pid, "exe")?;
    let stat = files::stat_proc_link(pid, "exe", || "executable".to_string())?;
    Ok(table.by_identity(&path, stat, pid, "exe"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, shared: bool, inode: u64, flags: &[&str]) -> SmapsEntry {
        SmapsEntry {
            start: 0x1000,
            end: 0x3000,
            read: true,
            shared,
            inode,
            name: name.into(),
            vm_flags: flags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn classes() {
        assert_eq!(classify(&entry("", false, 0, &["rd"])), Ok(VmaClass::Anon));
        assert_eq!(
            classify(&entry("[heap]", false, 0, &[])),
            Ok(VmaClass::Anon)
        );
        assert_eq!(
            classify(&entry("[stack]", false, 0, &["gd"])),
            Ok(VmaClass::Anon)
        );
        assert_eq!(
            classify(&entry("[vdso]", false, 0, &[])),
            Ok(VmaClass::Vdso)
        );
        assert_eq!(
            classify(&entry("[vvar]", false, 0, &["io", "pf"])),
            Ok(VmaClass::Vvar)
        );
        assert_eq!(
            classify(&entry("[vvar_vclock]", false, 0, &["io", "pf"])),
            Ok(VmaClass::Vvar)
        );
        assert_eq!(
            classify(&entry("[vsyscall]", false, 0, &[])),
            Ok(VmaClass::Vsyscall)
        );
        assert_eq!(
            classify(&entry("/dev/zero (deleted)", true, 77, &[])),
            Ok(VmaClass::Shmem { ino: 77 })
        );
        assert_eq!(
            classify(&entry("/usr/lib/libc.so.6", false, 9, &[])),
            Ok(VmaClass::File {
                path: "/usr/lib/libc.so.6".into()
            })
        );
        assert!(classify(&entry("/dev/mem", true, 9, &["io", "pf"])).is_err());
        assert!(classify(&entry("[uprobes]", false, 0, &[])).is_err());
        // A SysV attachment names its segment id as the inode.
        assert_eq!(
            classify(&entry("/SYSV00000000 (deleted)", true, 5, &[])),
            Ok(VmaClass::SysvShm { shmid: 5 })
        );
        assert!(classify(&entry("/memfd:x (deleted)", true, 5, &[])).is_err());
    }
}
