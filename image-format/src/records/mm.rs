//! Memory layout: a process's address space (`mm-<pid>`: mappings, brk and the other `PR_SET_MM_MAP`
//! fields, auxv, executable) and the anonymous shared memory objects its mappings use (`shmem`). The
//! contents of mappings are page stores (see [`super::pages`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[cfg(feature = "arbitrary")]
use proptest_derive::Arbitrary;

use super::file_names::{REG_FILES, SHMEM};
use super::files::RegFile;
use super::ids::{FileId, Pid, ShmemId};
use crate::error::Problems;

/// A process's address space (`mm-<pid>`, one entry). Its private pages are in the page store
/// [`super::names::task_pages`]; pages of shared objects are in [`super::names::shmem_pages`].
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mm {
    pub layout: MmLayout,
    /// `/proc/pid/auxv` as native words (pairs of type, value), terminated by `AT_NULL`.
    pub auxv: Vec<u64>,
    /// The executable (`/proc/pid/exe`).
    pub exe: FileId,
    /// Every mapping, ascending by address, as `/proc/pid/smaps` listed it.
    pub vmas: Vec<Vma>,
    /// The address-space-wide attributes (`None`: not known, an image of schema 1; left as a new process
    /// has them).
    pub attrs: Option<MmAttrs>,
}

/// Attributes of the whole address space that no single mapping shows.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MmAttrs {
    /// `mlockall` flags in force for future mappings (the mm's `def_flags`): 0, or `MCL_FUTURE`, or
    /// `MCL_FUTURE | MCL_ONFAULT`. Locks of existing mappings are per mapping ([`Vma::lock_on_fault`]).
    pub mlock_future: u32,
    /// What `PR_GET_THP_DISABLE` returned: 0, 1 (THP disabled), or 1 with `PR_THP_DISABLE_EXCEPT_ADVISED`
    /// (bit 1) set.
    pub thp_disable: u32,
}

/// The mm fields `PR_SET_MM_MAP` restores (from `/proc/pid/stat` and, for `brk`, the task itself).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MmLayout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

/// One mapping.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `MAP_SHARED` or `MAP_PRIVATE`, plus `MAP_GROWSDOWN` etc. as the kernel reported them.
    pub map_flags: u32,
    /// `madvise` state from smaps `VmFlags` (`MADV_*` advice numbers to re-apply, e.g. DONTFORK, DONTDUMP).
    pub madvise: Vec<u32>,
    /// Offset into the backing object, in bytes.
    pub pgoff: u64,
    pub backing: VmaBacking,
    /// The name column of `/proc/pid/maps` (`[heap]`, `[stack]`, a path, or empty), for humans and checks.
    pub name: String,
    /// With `MAP_LOCKED` in `map_flags`: the lock is `mlock2(MLOCK_ONFAULT)`'s (smaps `lf`), pages are
    /// locked as they fault in rather than all at once.
    pub lock_on_fault: bool,
    /// The memory protection key (smaps `ProtectionKey`); `None`: not known (schema 1), the default key.
    pub pkey: Option<u32>,
}

/// What a mapping is backed by, and so where restore gets its contents.
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaBacking {
    /// Private anonymous memory (heap, stack, malloc arenas): pages in the task's page store.
    Anon,
    /// Anonymous shared memory (`MAP_SHARED|MAP_ANONYMOUS`, or `/dev/zero` shared): one object, dumped once.
    Shmem(ShmemId),
    /// A file mapping. Private: clean pages are re-read from the file, written (COW'd) ones are in the task's
    /// page store. Shared: the data is the file's.
    File(FileId),
    /// The vDSO; its bytes are in the page store so restore can compare them with the running kernel's.
    Vdso,
    /// `[vvar]`, `[vvar_vclock]`: never restored from the image (the running kernel provides them).
    Vvar,
    /// `[vsyscall]`: fixed by the kernel, skipped.
    Vsyscall,
    /// An attachment of System V shared memory segment `shmid` (`/SYSV<key>` in maps). The segment and its
    /// contents belong to the ipc namespace's records; restore maps the segment restored under this id.
    SysvShm { shmid: u32 },
}

/// One shared-memory object (`shmem`, one entry per object across the whole tree).
#[cfg_attr(feature = "arbitrary", derive(Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmemObject {
    pub id: ShmemId,
    /// Object size in bytes (the largest end offset of any mapping of it).
    pub size: u64,
    /// The process whose mapping was read; the page store's virtual addresses are object offsets.
    pub owner: Pid,
}

/// Checks one address space: mappings page-aligned, non-empty, ascending without overlap; every file it
/// maps (and the executable) is in `reg-files`; every shared object it maps is in `shmem`.
pub(crate) fn check_mm(
    file: &str,
    mm: &Mm,
    files: &BTreeMap<FileId, RegFile>,
    shmem: &BTreeSet<ShmemId>,
    p: &mut Problems,
) {
    let file_ref = |what: String, id: FileId, p: &mut Problems| {
        if !files.contains_key(&id) {
            p.add(file, format!("{what}: file {} is not in {REG_FILES}", id.0));
        }
    };
    file_ref("exe".into(), mm.exe, p);
    if let Some(a) = &mm.attrs {
        let known = (libc::MCL_FUTURE | libc::MCL_ONFAULT) as u32;
        if a.mlock_future & !known != 0
            || (a.mlock_future != 0 && a.mlock_future & libc::MCL_FUTURE as u32 == 0)
        {
            p.add(file, format!("mlockall flags {:#x}", a.mlock_future));
        }
        if a.thp_disable > 3 || a.thp_disable == 2 {
            p.add(file, format!("THP disable value {}", a.thp_disable));
        }
    }
    let mut prev_end = 0;
    for v in &mm.vmas {
        if v.madvise.iter().any(|a| *a >= 32) {
            p.add(
                file,
                format!("mapping {:#x}: madvise advice {:?}", v.start, v.madvise),
            );
        }
        if v.pkey.is_some_and(|k| k >= 16) {
            p.add(
                file,
                format!("mapping {:#x}: protection key {:?}", v.start, v.pkey),
            );
        }
        if v.lock_on_fault && v.map_flags & libc::MAP_LOCKED as u32 == 0 {
            p.add(
                file,
                format!("mapping {:#x}: locked on fault but not locked", v.start),
            );
        }
        if v.start >= v.end || v.start < prev_end || v.start % 4096 != 0 || v.end % 4096 != 0 {
            p.add(
                file,
                format!(
                    "mapping {:#x}-{:#x} is empty, unaligned or overlaps",
                    v.start, v.end
                ),
            );
        }
        prev_end = v.end;
        match &v.backing {
            VmaBacking::File(id) => file_ref(format!("mapping {:#x}", v.start), *id, p),
            VmaBacking::Shmem(id) if !shmem.contains(id) => p.add(
                file,
                format!(
                    "mapping {:#x} uses shared object {} that is not in {SHMEM}",
                    v.start, id.0
                ),
            ),
            _ => {}
        }
    }
}

/// Checks the shared objects: each listed once and owned by a process of the tree (whose mapping the
/// dump read: the restore creates the object there).
pub(crate) fn check_shmem_objects(objects: &[ShmemObject], pids: &BTreeSet<Pid>, p: &mut Problems) {
    let mut seen = BTreeSet::new();
    for obj in objects {
        if !seen.insert(obj.id) {
            p.add(SHMEM, format!("object {} is listed twice", obj.id.0));
        }
        if !pids.contains(&obj.owner) {
            p.add(
                SHMEM,
                format!(
                    "object {} is owned by pid {}, not in the tree",
                    obj.id.0, obj.owner.0
                ),
            );
        }
    }
}

/// Schema 1 of [`Mm`]: no [`MmAttrs`], no lock-on-fault bit, no protection key.
pub(crate) mod v1 {
    use serde::{Deserialize, Serialize};

    use super::{MmLayout, VmaBacking};
    use crate::records::ids::FileId;
    use crate::records::upgrade::Upgrade;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Mm {
        pub layout: MmLayout,
        pub auxv: Vec<u64>,
        pub exe: FileId,
        pub vmas: Vec<Vma>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Vma {
        pub start: u64,
        pub end: u64,
        pub prot: u32,
        pub map_flags: u32,
        pub madvise: Vec<u32>,
        pub pgoff: u64,
        pub backing: VmaBacking,
        pub name: String,
    }

    impl Upgrade<super::Mm> for Mm {
        /// A locked mapping fails the conversion: schema 1 did not say whether its lock was on fault.
        fn upgrade(self) -> Result<super::Mm, String> {
            let vmas = self
                .vmas
                .into_iter()
                .map(|v| {
                    if v.map_flags & libc::MAP_LOCKED as u32 != 0 {
                        return Err(format!(
                            "mapping {:#x} is locked, and schema 1 did not record whether on fault",
                            v.start
                        ));
                    }
                    Ok(super::Vma {
                        start: v.start,
                        end: v.end,
                        prot: v.prot,
                        map_flags: v.map_flags,
                        madvise: v.madvise,
                        pgoff: v.pgoff,
                        backing: v.backing,
                        name: v.name,
                        lock_on_fault: false,
                        pkey: None,
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(super::Mm {
                layout: self.layout,
                auxv: self.auxv,
                exe: self.exe,
                vmas,
                attrs: None,
            })
        }
    }
}
