//! Regular files unlinked while open ("ghost" files), and files deleted while mapped or executed (a
//! library or binary upgraded under a running process). An unlinked fd's description carries the content
//! (read with `pread`, the shared offset does not move) and mode; a deleted mapped file or executable
//! carries it in `deleted-files`, once per inode (through the unlinked fd's description when the inode is
//! also open through one). Restore recreates the file at its old path, opens, maps or executes it from
//! there, and unlinks it again, so the names read `PATH (deleted)` as they did.

use std::os::fd::OwnedFd;

use dormant_image::records::{DeletedContent, DeletedFile, DescId, DescKind};

use super::error::FdError;
use super::inode::{self, Carried};
use super::memfd;
use super::table::FileTable;
use crate::error::{DumpError, Result};
use crate::proc;

/// The description of an unlinked file whose link target is `target` (`PATH (deleted)`), at position
/// `pos`.
pub fn dump(target: &str, pos: u64, dup: &OwnedFd) -> Result<DescKind, FdError> {
    let st = nix::sys::stat::fstat(dup).map_err(FdError::errno("fstat"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink != 0 {
        return Err(FdError::NotUnlinkedFile {
            target: target.to_string(),
        });
    }
    let data = memfd::read_content(dup, "unlinked file")?;
    Ok(DescKind::Ghost {
        path: target.trim_end_matches(" (deleted)").to_string(),
        mode: st.st_mode & 0o7777,
        data,
        pos,
    })
}

/// The `deleted-files` entries of the deleted files behind mappings and executables of `table`: through
/// the description of `carried` that holds the same inode, else with the content read now (the tree is
/// stopped, so shared writes are all in the page cache), refused above [`memfd::MEMFD_MAX`].
pub fn deleted(table: &FileTable, carried: &Carried) -> Result<Vec<DeletedFile>> {
    let mut out = Vec::new();
    for (f, pid, source) in table.deleted() {
        let content = match carried.desc_of(f.stat.dev, f.stat.ino) {
            Some(id) => DeletedContent::Desc(id),
            None => read(pid, source).map_err(|e| DumpError::DeletedFile {
                pid,
                what: if source == "exe" {
                    "executable".to_string()
                } else {
                    format!("mapping {}", source.trim_start_matches("map_files/"))
                },
                path: f.path.clone(),
                source: Box::new(e),
            })?,
        };
        out.push(DeletedFile {
            file: f.id,
            content,
        });
    }
    Ok(out)
}

/// The content and attributes of the file task `pid` reaches through `/proc/PID/<source>`, read through
/// an `O_NOATIME` open of it (the dump must not change the access time it carries).
fn read(pid: u32, source: &str) -> Result<DeletedContent, FdError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = proc::path(pid, source);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(&path)
        .map_err(FdError::sys(format!("opening {}", path.display())))?;
    let fd = OwnedFd::from(file);
    let st = nix::sys::stat::fstat(&fd).map_err(FdError::errno("fstat"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FdError::NotUnlinkedFile {
            target: path.display().to_string(),
        });
    }
    let attrs = inode::attrs_of(DescId(0), &st);
    let data = memfd::read_all(&fd, st.st_size.max(0) as u64, "deleted mapped file")?;
    Ok(DeletedContent::Data {
        data,
        uid: attrs.uid,
        gid: attrs.gid,
        mode: attrs.mode,
        atime: attrs.atime,
        mtime: attrs.mtime,
    })
}
