//! Choosing where the `syscall; int3` bytes go.
//!
//! The site must be executable in the target. We prefer bytes the target itself can never execute:
//! the tail of an executable ELF segment's last page, past the segment's `p_memsz` (page padding that
//! no instruction of the program jumps to). If the tracer dies while the site is patched, ptrace
//! detaches the task and lets it run: with a padding site the stale `syscall; int3` is never reached,
//! so the task keeps running correctly. Only when no mapping has at least 8 bytes of padding do we fall
//! back to the start of the first r-x mapping (logged), where that guarantee does not hold.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use dormant_sys::procfs::{parse_maps, MapsEntry};

use crate::error::ParasiteError;
use crate::ids::Tid;

/// Bytes we patch at the site: `syscall` (0f 05) followed by six `int3` (cc).
pub(crate) const SITE_LEN: usize = 8;

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PAGE_MASK: u64 = !0xfff;

/// Pick a syscall site in the address space of `tid` (see the module docs for the policy).
pub fn find_syscall_site(tid: Tid) -> Result<u64, ParasiteError> {
    let maps = read_maps(tid)?;
    let candidates = maps
        .iter()
        .filter(|v| v.read && v.exec && v.name != "[vsyscall]");
    for vma in candidates.clone().filter(|v| v.is_file()) {
        match padding_site(tid, vma) {
            Ok(Some(site)) => {
                log::debug!(
                    "tid {tid}: syscall site {site:#x} in ELF padding of {}",
                    vma.name
                );
                return Ok(site);
            }
            Ok(None) => {}
            Err(e) => log::debug!("tid {tid}: no padding site in {}: {e}", vma.name),
        }
    }
    let mut candidates = candidates;
    let first = candidates
        .find(|v| v.end - v.start >= SITE_LEN as u64)
        .ok_or(ParasiteError::NoSyscallSite { tid })?;
    log::warn!(
        "tid {tid}: no ELF padding usable as syscall site; using the start of {:#x}-{:#x} {} \
         (a tracer crash mid-injection could leave code the task executes patched)",
        first.start,
        first.end,
        first.name
    );
    Ok(first.start)
}

/// The last 8-byte slot of `vma` if it lies past the end of the executable PT_LOAD segment that
/// `vma` maps; `None` if the segment fills the mapping.
fn padding_site(tid: Tid, vma: &MapsEntry) -> Result<Option<u64>, ParasiteError> {
    // map_files opens the mapped object itself, so this works for deleted or replaced files too.
    let path = PathBuf::from(format!(
        "/proc/{tid}/map_files/{:x}-{:x}",
        vma.start, vma.end
    ));
    let file = File::open(&path).map_err(|source| ParasiteError::Proc {
        path: path.clone(),
        source,
    })?;
    let read = |off: u64, buf: &mut [u8]| {
        file.read_exact_at(buf, off)
            .map_err(|source| ParasiteError::Proc {
                path: path.clone(),
                source,
            })
    };
    let mut ehdr = [0u8; 64];
    read(0, &mut ehdr)?;
    // ELF magic, ELFCLASS64, little endian.
    if ehdr[..4] != *b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 {
        return Ok(None);
    }
    let phoff = le_u64(&ehdr[0x20..0x28]);
    let phentsize = u64::from(le_u16(&ehdr[0x36..0x38]));
    let phnum = u64::from(le_u16(&ehdr[0x38..0x3a]));
    if phentsize < 56 || phnum > 4096 {
        return Ok(None);
    }
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        read(phoff + i * phentsize, &mut ph)?;
        let p_type = le_u32(&ph[0..4]);
        let p_flags = le_u32(&ph[4..8]);
        let p_offset = le_u64(&ph[8..16]);
        let p_memsz = le_u64(&ph[40..48]);
        if p_type != PT_LOAD || p_flags & PF_X == 0 || p_offset & PAGE_MASK != vma.offset {
            continue;
        }
        // The mapping starts at the page holding p_offset; the segment ends p_memsz bytes later.
        let seg_end = vma.start + (p_offset - vma.offset) + p_memsz;
        if seg_end <= vma.end && vma.end - seg_end >= SITE_LEN as u64 {
            return Ok(Some(vma.end - SITE_LEN as u64));
        }
        return Ok(None);
    }
    Ok(None)
}

/// The mappings of `tid`.
fn read_maps(tid: Tid) -> Result<Vec<MapsEntry>, ParasiteError> {
    let path = PathBuf::from(format!("/proc/{tid}/maps"));
    let text = std::fs::read_to_string(&path).map_err(|source| ParasiteError::Proc {
        path: path.clone(),
        source,
    })?;
    parse_maps(&text).map_err(|e| ParasiteError::ProcParse {
        path,
        line: e.to_string(),
    })
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}
