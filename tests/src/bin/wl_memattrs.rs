//! Workload `wl_memattrs`: memory attributes a process sets on its own mappings and address space, checked
//! after a restore against what the process itself recorded before the checkpoint.
//!
//! `wl_memattrs TRIGGER DIR [--inject-fault]`. Before READY it maps one region per attribute and sets it:
//! `mlock` (`lo`), `mlock2(MLOCK_ONFAULT)` (`lo lf`), `MADV_HUGEPAGE` (`hg`), `MADV_NOHUGEPAGE` (`nh`),
//! `MADV_DONTFORK` (`dc`), `MADV_WIPEONFORK` (`wf`), `MADV_DONTDUMP` (`dd`), `MADV_MERGEABLE` (`mg`), a
//! protection key of its own (`pkey_mprotect`, with write access disabled for that key in PKRU),
//! `PR_SET_THP_DISABLE`, and last `mlockall(MCL_FUTURE | MCL_ONFAULT)`. Then it records, in its own
//! memory, the `VmFlags` and `ProtectionKey` of every mapping of its smaps, PKRU and the THP setting.
//!
//! After the trigger it checks:
//! - `vmflags`: every recorded mapping still starts a mapping whose `VmFlags` (except the ones in
//!   [`NOT_CARRIED`]) and protection key are the recorded ones;
//! - `thp-disable`: `PR_GET_THP_DISABLE` is 1;
//! - `mlock-future`: a page mapped now is locked on fault (`lo lf`), as `mlockall` asked;
//! - `pkru`: the PKRU register holds the recorded value.
//!
//! With `--inject-fault` it undoes the attributes before checking (what a restore that drops them leaves),
//! and the checks must fail.

use std::collections::BTreeMap;
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

/// `VmFlags` deliberately not compared, with why (docs/design-notes.md, "Memory attributes", lists them too):
/// - `ac`: overcommit accounting; a mapping restored writable and then made read-only keeps it, a fresh
///   read-only one lacks it. Not visible to the program.
/// - `sd`: soft-dirty tracking, reset by any restore (and absent on this kernel).
/// - `mr mw me ms`: the `may*` bits follow the mode the file behind a mapping was opened with, not a
///   property of the mapping the program set.
const NOT_CARRIED: [&str; 6] = ["ac", "sd", "mr", "mw", "me", "ms"];

const PAGE: usize = 4096;
const REGION: usize = 4 * PAGE;

/// One mapping as recorded: flags (sorted) and protection key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attrs {
    end: u64,
    name: String,
    flags: Vec<String>,
    pkey: u32,
}

fn os_err(what: &str) -> WorkloadError {
    WorkloadError::setup(what, std::io::Error::last_os_error())
}

/// The mappings of this process by start address.
fn smaps() -> Result<BTreeMap<u64, Attrs>, String> {
    let text = std::fs::read_to_string("/proc/self/smaps").map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    let mut cur: Option<(u64, Attrs)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            if let Some((_, a)) = cur.as_mut() {
                let mut f: Vec<String> = rest
                    .split_whitespace()
                    .filter(|f| !NOT_CARRIED.contains(f))
                    .map(str::to_string)
                    .collect();
                f.sort();
                a.flags = f;
            }
        } else if let Some(rest) = line.strip_prefix("ProtectionKey:") {
            if let Some((_, a)) = cur.as_mut() {
                a.pkey = rest
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad line {line}"))?;
            }
        } else {
            let first = line.split(' ').next().unwrap_or("");
            if let Some((s, e)) = first.split_once('-') {
                if let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) {
                    if let Some((start, a)) = cur.take() {
                        out.insert(start, a);
                    }
                    let name = line.split_whitespace().nth(5).unwrap_or("").to_string();
                    cur = Some((
                        s,
                        Attrs {
                            end: e,
                            name,
                            flags: Vec::new(),
                            pkey: 0,
                        },
                    ));
                }
            }
        }
    }
    if let Some((start, a)) = cur.take() {
        out.insert(start, a);
    }
    Ok(out)
}

fn map_region() -> Result<*mut libc::c_void, WorkloadError> {
    // SAFETY: a new private anonymous mapping chosen by the kernel; nothing else is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REGION,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(os_err("mmap"));
    }
    // Touch every page, so contents are dumped and lock state covers resident pages.
    for i in 0..REGION / PAGE {
        // SAFETY: inside the writable mapping just created.
        unsafe { p.cast::<u8>().add(i * PAGE).write_volatile(i as u8 + 1) };
    }
    Ok(p)
}

/// PKRU (`rdpkru`; the CPU has PKU, or pkey_alloc already failed).
fn rdpkru() -> u32 {
    let eax: u32;
    // SAFETY: rdpkru reads PKRU into eax and zeroes edx; ecx must be 0. No memory is touched.
    unsafe {
        std::arch::asm!("rdpkru", in("ecx") 0, out("eax") eax, out("edx") _, options(nomem, nostack));
    }
    eax
}

/// Maps one region per attribute and sets it; returns the region with the protection key and the key.
fn set_up() -> Result<(*mut libc::c_void, i32), WorkloadError> {
    let locked = map_region()?;
    // SAFETY: locks the mapping just created.
    if unsafe { libc::mlock(locked, REGION) } != 0 {
        return Err(os_err("mlock"));
    }
    let on_fault = map_region()?;
    // SAFETY: as above, lock on fault.
    if unsafe { libc::mlock2(on_fault, REGION, libc::MLOCK_ONFAULT) } != 0 {
        return Err(os_err("mlock2(MLOCK_ONFAULT)"));
    }
    for (advice, what) in [
        (libc::MADV_HUGEPAGE, "MADV_HUGEPAGE"),
        (libc::MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE"),
        (libc::MADV_DONTFORK, "MADV_DONTFORK"),
        (libc::MADV_WIPEONFORK, "MADV_WIPEONFORK"),
        (libc::MADV_DONTDUMP, "MADV_DONTDUMP"),
        (libc::MADV_MERGEABLE, "MADV_MERGEABLE"),
    ] {
        let p = map_region()?;
        // SAFETY: advice on the mapping just created.
        if unsafe { libc::madvise(p, REGION, advice) } != 0 {
            return Err(os_err(what));
        }
    }
    // SAFETY: allocates a key with writes disabled through it (PKRU of this thread changes).
    let pkey = unsafe {
        libc::syscall(libc::SYS_pkey_alloc, 0, 2 /* PKEY_DISABLE_WRITE */)
    } as i32;
    if pkey <= 0 {
        return Err(os_err("pkey_alloc"));
    }
    let keyed = map_region()?;
    // SAFETY: gives the mapping just created the key (reads stay allowed; writes are not done).
    if unsafe {
        libc::syscall(
            libc::SYS_pkey_mprotect,
            keyed,
            REGION,
            libc::PROT_READ,
            pkey,
        )
    } != 0
    {
        return Err(os_err("pkey_mprotect"));
    }
    // SAFETY: this prctl takes integers and changes only this process.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(os_err("PR_SET_THP_DISABLE"));
    }
    // SAFETY: changes only how future mappings of this process are locked.
    if unsafe { libc::mlockall(libc::MCL_FUTURE | libc::MCL_ONFAULT) } != 0 {
        return Err(os_err("mlockall"));
    }
    Ok((keyed, pkey))
}

/// What a restore that drops the attributes leaves behind.
fn undo(keyed: *mut libc::c_void) {
    // SAFETY: these calls change only this process's own mappings and settings.
    unsafe {
        libc::munlockall();
        libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
        libc::syscall(libc::SYS_pkey_mprotect, keyed, REGION, libc::PROT_READ, 0);
        std::arch::asm!("wrpkru", in("eax") 0u32, in("ecx") 0, in("edx") 0, options(nostack));
    }
}

fn compare(before: &BTreeMap<u64, Attrs>) -> Result<(), String> {
    let after = smaps()?;
    let mut bad = Vec::new();
    for (start, b) in before {
        // The recorded mapping may have been merged into its neighbour; its flags are the neighbour's.
        match after.range(..=*start).next_back() {
            Some((s, a)) if a.end > *start => {
                if a.flags != b.flags || a.pkey != b.pkey {
                    bad.push(format!(
                        "{start:x} {}: flags {:?} key {} became {:?} key {} (at {s:x})",
                        b.name, b.flags, b.pkey, a.flags, a.pkey
                    ));
                }
            }
            _ => bad.push(format!("{start:x} {}: gone", b.name)),
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn future_locked() -> Result<(), String> {
    // SAFETY: a new private anonymous mapping chosen by the kernel.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    let found = smaps()?
        .range(..=p as u64)
        .next_back()
        .map(|(_, a)| a.flags.clone());
    match found {
        Some(f) if f.iter().any(|x| x == "lo") && f.iter().any(|x| x == "lf") => Ok(()),
        other => Err(format!("a new mapping has flags {other:?}, not lo lf")),
    }
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    let (keyed, _pkey) = set_up()?;
    let before = smaps().map_err(|e| WorkloadError::setup("reading smaps", e))?;
    let pkru = rdpkru();

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        undo(keyed);
    }

    let mut report = Report::new("wl_memattrs");
    report.check("vmflags", compare(&before));
    // SAFETY: PR_GET_THP_DISABLE returns its value and takes no pointer.
    let thp = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    report.check(
        "thp-disable",
        if thp == 1 {
            Ok(())
        } else {
            Err(format!("PR_GET_THP_DISABLE {thp}"))
        },
    );
    report.check("mlock-future", future_locked());
    let now = rdpkru();
    report.check(
        "pkru",
        if now == pkru {
            Ok(())
        } else {
            Err(format!("PKRU {now:#x}, was {pkru:#x}"))
        },
    );
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_memattrs", run)
}
