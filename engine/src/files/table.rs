//! The table of files a dump refers to by path (fds reopened by path, mapped files, executables), and the
//! helpers that stat them through `/proc/<pid>/...` links.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use dormant_image::records::{
    ContentDigest, FileCheck, FileDigest, FileId, FileIdentity, FileStat, RegFile,
};

use crate::error::{DumpError, Result};
use crate::proc;

/// Suffix the kernel appends to the path of an unlinked file.
pub const DELETED: &str = " (deleted)";

/// Every file a dump refers to by path, with its id. One per dump, shared by all tasks.
#[derive(Debug, Default)]
pub struct FileTable {
    files: Vec<RegFile>,
    /// Files behind mappings and executables are shared by identity (dev, ino); fds each get their own
    /// entry (one per open file description: without kcmp, dup'ed fds cannot be told apart from two opens).
    by_inode: HashMap<(u64, u64), FileId>,
    /// Where each of those can be read as the task sees it (`/proc/PID/exe`, `/proc/PID/map_files/..`),
    /// for their content digests ([`FileTable::identity`]).
    sources: Vec<(FileId, u32, String)>,
    /// Whether the shared mappings of a file were made from a writable open (smaps `mw`), per file; see
    /// [`FileTable::shared_mapping`].
    shared_access: HashMap<FileId, bool>,
    /// Files behind mappings or executables that were unlinked (their link read `PATH (deleted)`), with
    /// where the first task met on each reaches it: their content is carried ([`super::ghost::deleted`]).
    deleted: Vec<(FileId, u32, String)>,
}

impl FileTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_id(&self) -> FileId {
        FileId(self.files.len() as u32)
    }

    /// The entry for a mapped file or an executable: one per (dev, ino). `source` is the name under
    /// `/proc/PID/` through which task `pid` reaches it (`exe`, `map_files/START-END`). A `path` the kernel
    /// marked deleted is recorded without the mark, and the file is listed in [`FileTable::deleted`].
    pub fn by_identity(&mut self, path: &str, stat: FileStat, pid: u32, source: &str) -> FileId {
        if let Some(id) = self.by_inode.get(&(stat.dev, stat.ino)) {
            return *id;
        }
        let id = self.next_id();
        let path = match path.strip_suffix(DELETED) {
            Some(linked) => {
                self.deleted.push((id, pid, source.to_string()));
                linked
            }
            None => path,
        };
        self.sources.push((id, pid, source.to_string()));
        self.files.push(RegFile {
            id,
            path: path.to_string(),
            flags: libc::O_RDONLY as u32,
            pos: 0,
            stat,
        });
        self.by_inode.insert((stat.dev, stat.ino), id);
        id
    }

    /// Records that file `id` has a `MAP_SHARED` mapping whose `VM_MAYWRITE` is `may_write` (smaps `mw`:
    /// set exactly when the file was open for writing at `mmap`, so a later `mprotect(PROT_WRITE)` works).
    /// The entry's access mode becomes `O_RDWR` when it is, and restore opens the file so for its shared
    /// mappings. Shared mappings of one file from both kinds of opens cannot share one entry: refused with
    /// the reason.
    pub fn shared_mapping(
        &mut self,
        id: FileId,
        may_write: bool,
    ) -> std::result::Result<(), String> {
        match self.shared_access.insert(id, may_write) {
            Some(earlier) if earlier != may_write => Err(format!(
                "{} has shared mappings made from a writable open and from a read-only one (not supported)",
                self.files[id.0 as usize].path
            )),
            _ => {
                if may_write {
                    self.files[id.0 as usize].flags = libc::O_RDWR as u32;
                }
                Ok(())
            }
        }
    }

    /// A new entry for an open file description.
    pub fn open_file(&mut self, path: &str, flags: u32, pos: u64, stat: FileStat) -> FileId {
        let id = self.next_id();
        self.files.push(RegFile {
            id,
            path: path.to_string(),
            flags,
            pos,
            stat,
        });
        id
    }

    pub fn entries(&self) -> &[RegFile] {
        &self.files
    }

    /// The deleted files behind mappings and executables: each entry with the task and the name under
    /// its `/proc/PID/` through which it can be read.
    pub fn deleted(&self) -> impl Iterator<Item = (&RegFile, u32, &str)> {
        self.deleted
            .iter()
            .map(|(id, pid, source)| (&self.files[id.0 as usize], *pid, source.as_str()))
    }

    /// The `file-identity` record for `check`: with [`FileCheck::Content`], the digest of every file behind
    /// a mapping or an executable, read through the task's own view of it (so a container's files are read
    /// from its root, whatever the dumper's namespace shows at that path).
    pub fn identity(&self, check: FileCheck) -> Result<FileIdentity> {
        let mut digests = Vec::new();
        if check == FileCheck::Content {
            for (id, pid, source) in &self.sources {
                let path = proc::path(*pid, source);
                let read_err = |source| DumpError::ProcRead {
                    pid: *pid,
                    path: path.clone(),
                    source,
                };
                let mut f = std::fs::File::open(&path).map_err(read_err)?;
                let digest = ContentDigest::of(&mut f).map_err(read_err)?;
                log::debug!(
                    "pid {pid}: {} ({}): {digest}",
                    self.files[id.0 as usize].path,
                    path.display()
                );
                digests.push(FileDigest { id: *id, digest });
            }
        }
        Ok(FileIdentity { check, digests })
    }
}

/// [`FileStat`] from file metadata.
pub fn file_stat(md: &std::fs::Metadata) -> FileStat {
    FileStat {
        dev: md.dev(),
        ino: md.ino(),
        mode: md.mode(),
        size: md.size(),
        mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        rdev: md.rdev(),
    }
}

/// Stats a `/proc/<pid>/...` magic link (following it to the file the task sees).
pub fn stat_proc_link(pid: u32, name: &str, what: impl Fn() -> String) -> Result<FileStat> {
    let path = proc::path(pid, name);
    std::fs::metadata(&path)
        .map(|md| file_stat(&md))
        .map_err(|source| DumpError::Stat {
            pid,
            what: what(),
            path,
            source,
        })
}

/// Whether `path` names something in the dumper's own view that looks like `stat` (used by tests and checks).
pub fn same_file(path: &Path, stat: &FileStat) -> bool {
    std::fs::metadata(path)
        .map(|md| md.dev() == stat.dev && md.ino() == stat.ino)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_dedup() {
        let mut t = FileTable::new();
        let st = FileStat {
            dev: 1,
            ino: 2,
            ..Default::default()
        };
        let a = t.by_identity("/a", st, 1, "exe");
        let b = t.by_identity("/a", st, 2, "exe");
        let c = t.open_file("/a", 0, 5, st);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(t.entries().len(), 2);
        assert_eq!(t.entries()[c.0 as usize].pos, 5);
    }
}
