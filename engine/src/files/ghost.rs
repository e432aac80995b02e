//! Regular files unlinked while open ("ghost" files), and files deleted while mapped or executed (a
//! library or binary upgraded under a running process). An unlinked fd's description carries the mode,
//! its content goes to a page store of the description (read through a description of the dumper's own,
//! the shared offset does not move); a deleted mapped file or executable carries it in `deleted-files`, once per inode (through the unlinked fd's description when the inode is
//! also open through one). Restore recreates the file at its old path, opens, maps or executes it from
//! there, and unlinks it again, so the names read `PATH (deleted)` as they did.

use std::os::fd::OwnedFd;

use dormant_image::records::{names, DeletedContent, DeletedFile, DescId, DescKind, FileId};
use dormant_image::ImageWriter;

use super::error::FdError;
use super::inode::{self, Carried};
use super::memfd;
use super::table::FileTable;
use crate::error::{DumpError, Result};
use crate::proc;

/// The description of an unlinked file whose link target is `target` (`PATH (deleted)`), at position
/// `pos`, and its content (stored apart: the description's `data` is empty).
pub fn dump(target: &str, pos: u64, dup: &OwnedFd) -> Result<(DescKind, memfd::Content), FdError> {
    let st = nix::sys::stat::fstat(dup).map_err(FdError::errno("fstat"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink != 0 {
        return Err(FdError::NotUnlinkedFile {
            target: target.to_string(),
        });
    }
    let content = memfd::content(dup, "unlinked file")?;
    let desc = DescKind::Ghost {
        path: target.trim_end_matches(" (deleted)").to_string(),
        mode: st.st_mode & 0o7777,
        data: Vec::new(),
        pos,
    };
    Ok((desc, content))
}

/// The `deleted-files` entries of the deleted files behind mappings and executables of `table`: through
/// the description of `carried` that holds the same inode, else with the content stored now in a page
/// store of its own (the tree is stopped, so shared writes are all in the page cache; no size limit, and
/// holes and zero pages are not stored).
pub fn deleted(
    table: &FileTable,
    carried: &Carried,
    writer: &mut ImageWriter,
) -> Result<Vec<DeletedFile>> {
    let mut out = Vec::new();
    for (f, pid, source) in table.deleted() {
        let what = if source == "exe" {
            "executable".to_string()
        } else {
            format!("mapping {}", source.trim_start_matches("map_files/"))
        };
        let content = match carried.desc_of(f.stat.dev, f.stat.ino) {
            Some(id) => DeletedContent::Desc(id),
            None => store(pid, source, f.id, &f.path, writer).map_err(|e| match e {
                Failed::File(e) => DumpError::DeletedFile {
                    pid,
                    what,
                    path: f.path.clone(),
                    source: Box::new(e),
                },
                Failed::Image(e) => e,
            })?,
        };
        out.push(DeletedFile {
            file: f.id,
            content,
        });
    }
    Ok(out)
}

/// The attributes of the file task `pid` reaches through `/proc/PID/<source>`, with its content put in
/// page store [`names::deleted_pages`] of `id`; read through an `O_NOATIME` open of it (the dump must not
/// change the access time it carries).
fn store(
    pid: u32,
    source: &str,
    id: FileId,
    path: &str,
    writer: &mut ImageWriter,
) -> Result<DeletedContent, Failed> {
    use std::os::unix::fs::OpenOptionsExt;
    let at = proc::path(pid, source);
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(&at)
    {
        Ok(f) => f,
        Err(e) => return Err(FdError::sys(format!("opening {}", at.display()))(e).into()),
    };
    let st = nix::sys::stat::fstat(&file).map_err(FdError::errno("fstat"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FdError::NotUnlinkedFile {
            target: at.display().to_string(),
        }
        .into());
    }
    let size = st.st_size.max(0) as u64;
    let name = names::deleted_pages(id);
    let image_err = |source| {
        Failed::Image(DumpError::Image {
            pid,
            what: format!("content of deleted file {path}"),
            source,
        })
    };
    let pages = writer.page_store(&name).map_err(image_err)?;
    pages
        .store_file(&file, size, 0, &format!("deleted file {path}"))
        .map_err(image_err)?;
    writer.finish_page_store(pages).map_err(image_err)?;
    let attrs = inode::attrs_of(DescId(0), &st);
    Ok(DeletedContent::Stored {
        size,
        uid: attrs.uid,
        gid: attrs.gid,
        mode: attrs.mode,
        atime: attrs.atime,
        mtime: attrs.mtime,
    })
}

/// Why a deleted file's content was not stored: the file could not be read (a refusal about the file),
/// or the image could not be written.
enum Failed {
    File(FdError),
    Image(DumpError),
}

impl From<FdError> for Failed {
    fn from(e: FdError) -> Self {
        Failed::File(e)
    }
}
