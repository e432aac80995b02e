//! The syscall site: where the injected code goes, and the code itself.
//!
//! The site is bytes the target itself can never execute: the page padding past the end (`p_memsz`) of an
//! executable ELF segment, which no instruction of the program jumps to and no data access of it reaches
//! (its data is mapped elsewhere). The largest such padding is chosen: past the code, it may also hold
//! the rescue frame's fpstate when a thread's stack has too little room (see `remote`). The code
//! written there has three entries, each of which ends in `rt_sigreturn` through the rescue frame
//! (see `remote`):
//! - [`CALL`]: `syscall; mov eax, 15; syscall`, for one injected syscall;
//! - [`BOOT`]: `syscall` (an mmap of the parasite area), then: if it failed, `rt_sigreturn`; if the host
//!   has not finished loading the blob (the boot block's magic is missing), `munmap` the area and
//!   `rt_sigreturn`; else jump into the blob;
//! - [`MUNMAP_SYSCALL`]: where the blob jumps when it is done: `munmap` of its own area (from outside
//!   it), then `rt_sigreturn`.
//!
//! Every entry is entered with `rax` = 15 (`rt_sigreturn`) and the real syscall number is swapped in at
//! the syscall-entry stop, so a tracer that dies before that moment leaves a thread that returns at once.
//! If the tracer dies while the code is in place, it stays in the padding, never executed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use dormant_sys::procfs::{parse_maps, MapsEntry};

use crate::error::ParasiteError;
use crate::ids::Tid;

/// Bytes the site needs (the code, rounded up).
pub(crate) const SITE_LEN: usize = 64;

/// The code, assembled from (Intel syntax):
/// ```text
///  0: syscall                      ; CALL: the injected syscall
///  2: mov eax, 15
///  7: syscall                      ; rt_sigreturn
///  9: syscall                      ; BOOT: mmap(0, len, rwx, private|anon, -1, 0)
///  b: cmp rax, -4095
/// 11: jae 2f                       ; mmap failed: rt_sigreturn
/// 13: cmp [rax + rsi - 0x1000], r13 ; boot block magic (r13) written last by the host?
/// 1b: jne 25
/// 1d: mov rdi, rax                 ; rdi = base, rsi = len
/// 20: add rax, r14                 ; r14 = entry offset
/// 23: jmp rax
/// 25: mov rdi, rax                 ; not loaded: munmap(base, len)
/// 28: mov eax, 11
/// 2d: syscall                      ; MUNMAP_SYSCALL
/// 2f: mov eax, 15
/// 34: syscall                      ; rt_sigreturn
/// ```
pub(crate) const CODE: [u8; 0x36] = [
    0x0f, 0x05, // syscall
    0xb8, 0x0f, 0x00, 0x00, 0x00, // mov eax, 15
    0x0f, 0x05, // syscall
    0x0f, 0x05, // syscall
    0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, // cmp rax, -4095
    0x73, 0x1c, // jae +0x1c
    0x4c, 0x39, 0xac, 0x30, 0x00, 0xf0, 0xff, 0xff, // cmp [rax+rsi-0x1000], r13
    0x75, 0x08, // jne +8
    0x48, 0x89, 0xc7, // mov rdi, rax
    0x4c, 0x01, 0xf0, // add rax, r14
    0xff, 0xe0, // jmp rax
    0x48, 0x89, 0xc7, // mov rdi, rax
    0xb8, 0x0b, 0x00, 0x00, 0x00, // mov eax, 11
    0x0f, 0x05, // syscall
    0xb8, 0x0f, 0x00, 0x00, 0x00, // mov eax, 15
    0x0f, 0x05, // syscall
];

/// Entry for one injected syscall.
pub(crate) const CALL: u64 = 0x0;
/// Entry of the bootstrap (mmap of the area, then into the blob).
pub(crate) const BOOT: u64 = 0x9;
/// The `syscall` of the area's `munmap`, followed by `rt_sigreturn`.
pub(crate) const MUNMAP_SYSCALL: u64 = 0x2d;

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PAGE_MASK: u64 = !0xfff;

/// Pick a syscall site in the address space of `tid`: the start (64-byte aligned) of the largest page
/// padding past an executable segment, of at least [`SITE_LEN`] bytes. Refuses (rather than patch code
/// the task could run) when there is none.
pub fn find_syscall_site(tid: Tid) -> Result<u64, ParasiteError> {
    let maps = read_maps(tid)?;
    let mut best: Option<(u64, u64, &str)> = None;
    for vma in maps
        .iter()
        .filter(|v| v.read && v.exec && v.is_file() && v.name != "[vsyscall]")
    {
        match padding_site(tid, vma) {
            Ok(Some(site)) if best.is_none_or(|(_, room, _)| vma.end - site > room) => {
                best = Some((site, vma.end - site, &vma.name));
            }
            Ok(_) => {}
            Err(e) => log::debug!("tid {tid}: no padding site in {}: {e}", vma.name),
        }
    }
    let (site, room, name) = best.ok_or(ParasiteError::NoSyscallSite { tid })?;
    log::debug!("tid {tid}: syscall site {site:#x} in {room} bytes of ELF padding of {name}");
    Ok(site)
}

/// Bytes of padding from `site` to the end of its mapping (what the code and, if the stack is short, the
/// rescue frame's fpstate may use).
pub(crate) fn padding_after(maps: &[MapsEntry], site: u64) -> u64 {
    maps.iter()
        .find(|m| m.start <= site && site < m.end)
        .map_or(0, |m| m.end - site)
}

/// The 64-byte aligned start of the padding past the executable PT_LOAD segment that `vma` maps, if at
/// least [`SITE_LEN`] bytes of it remain in the mapping; `None` otherwise.
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
        let site = seg_end.div_ceil(64) * 64;
        if site <= vma.end && vma.end - site >= SITE_LEN as u64 {
            return Ok(Some(site));
        }
        return Ok(None);
    }
    Ok(None)
}

/// The mappings of `tid`.
pub(crate) fn read_maps(tid: Tid) -> Result<Vec<MapsEntry>, ParasiteError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_fits_the_site_and_entries_are_syscalls() {
        assert!(CODE.len() <= SITE_LEN);
        for entry in [CALL, BOOT, MUNMAP_SYSCALL] {
            assert_eq!(&CODE[entry as usize..entry as usize + 2], &[0x0f, 0x05]);
        }
        // Each path ends in `mov eax, 15; syscall`.
        assert_eq!(&CODE[2..9], &[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05]);
        assert_eq!(&CODE[0x2f..0x36], &[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05]);
        // The jae and jne land on the rt_sigreturn and the munmap paths.
        assert_eq!(0x13 + CODE[0x12] as usize, 0x2f);
        assert_eq!(0x1d + CODE[0x1c] as usize, 0x25);
    }
}
