//! The blob area: one anonymous range holding the relocated blob, its argument block with every array it
//! points to, the thread's signal frame and the stack the blob runs on; and where to put it.
//!
//! Layout (each part aligned as it needs): blob | RestoreArgs | VmaArg[] | ExtentArg[] | close fds |
//! TimerArg[] | QueuedSigArg[] | auxv | ThreadArgs[] | each thread's supplementary groups | each thread's
//! seccomp filters (FilterArg[] and their programs) | one rt_sigframe per thread (64-aligned) | one
//! small stack per non-leader thread | the leader's stack. All pointers in the block are absolute
//! addresses for the final base, so the area can be built as bytes here and copied in place.

use dormant_image::records::{GpRegs, MmAttrs, RobustList, SigAltStack};
use dormant_restorer_proto::{
    CredsArg, ExtentArg, FilterArg, LockArg, QueuedSigArg, RestoreArgs, RseqArg, SchedArg,
    SeccompArg, ThreadArgs, TimerArg, VmaArg, PROTO_VERSION, THREAD_STACK_SIZE,
};
use dormant_sys::process::{PrctlMmMap, TASK_SIZE};
use dormant_sys::signal::{KernelItimerval, KernelSigaction, NSIG};

use crate::blob::Blob;
use crate::error::RestoreError;
use crate::sigframe;

const PAGE: u64 = 4096;
/// Stack the blob runs on.
const STACK_SIZE: u64 = 64 * 1024;
/// Kept free on both sides of the area.
pub const MARGIN: u64 = 16 * PAGE;
/// Lowest address considered for the area.
const LOW_LIMIT: u64 = 0x1_0000_0000;

/// One thread's state for the blob.
#[derive(Debug, Clone)]
pub struct ThreadInput {
    pub tid: u32,
    pub regs: GpRegs,
    pub xstate: Vec<u8>,
    pub sigmask: u64,
    pub altstack: Option<SigAltStack>,
    pub clear_child_tid: Option<u64>,
    pub rseq: Option<RseqArg>,
    pub robust_list: Option<RobustList>,
    /// The thread's name (at most 15 bytes are kept); empty: keep the inherited one.
    pub comm: String,
    /// Its tid inside the task's nested pid namespace, 0 when the task is not in one.
    pub ns_tid: u32,
    /// Credentials to set, `None`: keep the inherited ones.
    pub creds: Option<crate::task::ThreadCreds>,
    /// Scheduling attributes to set (`set == 0`: keep the inherited ones).
    pub sched: SchedArg,
    pub seccomp: crate::task::ThreadSeccompInput,
}

impl ThreadInput {
    fn comm_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let b = self.comm.as_bytes();
        let n = b.len().min(15);
        out[..n].copy_from_slice(&b[..n]);
        out
    }
}

/// Everything the blob needs, before it is laid out.
#[derive(Debug, Clone)]
pub struct BlobInput {
    pub vmas: Vec<VmaArg>,
    pub extents: Vec<ExtentArg>,
    pub close_fds: Vec<i32>,
    pub pages_fd: i32,
    pub report_fd: i32,
    pub inherited_rseq: RseqArg,
    /// First vvar page the vDSO is mapped at, if the task had one.
    pub vdso_map_addr: Option<u64>,
    /// The mm layout (its `auxv` pointer and size are filled in here) and the auxv words.
    pub mm: Option<(PrctlMmMap, Vec<u64>)>,
    pub sigactions: Option<Box<[KernelSigaction; NSIG]>>,
    pub itimers: Option<[KernelItimerval; 3]>,
    /// POSIX timers to re-create, ascending by id.
    pub timers: Vec<TimerArg>,
    /// Pending signals to re-queue (process-wide ones first, each queue in its saved order).
    pub siginfos: Vec<QueuedSigArg>,
    /// Every thread, the leader first.
    pub threads: Vec<ThreadInput>,
    /// The address space's `mlockall` flags for future mappings and THP setting (`None`: not known).
    pub mm_attrs: Option<MmAttrs>,
    /// POSIX record locks, taken after `close_fds` are closed.
    pub locks: Vec<LockArg>,
}

/// A laid-out area: `bytes` must be copied to `base`.
#[derive(Debug)]
pub struct Area {
    pub base: u64,
    pub bytes: Vec<u8>,
    /// Address of the blob entry.
    pub entry: u64,
    /// Address of the [`RestoreArgs`].
    pub args: u64,
    /// Initial stack pointer (16-byte aligned).
    pub stack_top: u64,
    /// Where the leader's frame's `ucontext` is (what rt_sigreturn is entered with).
    pub sigframe_uc: u64,
}

impl Area {
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn end(&self) -> u64 {
        self.base + self.len()
    }
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Offsets of each part from the base.
struct Offsets {
    args: u64,
    vmas: u64,
    extents: u64,
    close_fds: u64,
    locks: u64,
    timers: u64,
    siginfos: u64,
    auxv: u64,
    threads: u64,
    /// Each thread's groups.
    groups: Vec<u64>,
    /// Each thread's `FilterArg[]` and the program of each of its filters.
    filters: Vec<(u64, Vec<u64>)>,
    /// One frame per thread.
    frames: Vec<u64>,
    /// Bottom of the first non-leader thread stack.
    thread_stacks: u64,
    stack_bottom: u64,
    total: u64,
}

fn offsets(blob: &Blob, input: &BlobInput) -> Offsets {
    let args = align(blob.span(), PAGE);
    let vmas = align(args + size_of::<RestoreArgs>() as u64, 16);
    let extents = align(vmas + (input.vmas.len() * size_of::<VmaArg>()) as u64, 16);
    let close_fds = align(
        extents + (input.extents.len() * size_of::<ExtentArg>()) as u64,
        16,
    );
    let locks = align(close_fds + (input.close_fds.len() * 4) as u64, 16);
    let timers = align(
        locks + (input.locks.len() * size_of::<LockArg>()) as u64,
        16,
    );
    let siginfos = align(
        timers + (input.timers.len() * size_of::<TimerArg>()) as u64,
        16,
    );
    let auxv = align(
        siginfos + (input.siginfos.len() * size_of::<QueuedSigArg>()) as u64,
        16,
    );
    let auxv_len = input.mm.as_ref().map_or(0, |(_, a)| a.len() * 8) as u64;
    let threads = align(auxv + auxv_len, 16);
    let mut next = threads + (input.threads.len() * size_of::<ThreadArgs>()) as u64;
    let mut groups = Vec::with_capacity(input.threads.len());
    for t in &input.threads {
        next = align(next, 16);
        groups.push(next);
        next += t.creds.as_ref().map_or(0, |c| c.groups.len() * 4) as u64;
    }
    let mut filters = Vec::with_capacity(input.threads.len());
    for t in &input.threads {
        let args = align(next, 16);
        next = args + (t.seccomp.chain.len() * size_of::<FilterArg>()) as u64;
        let mut progs = Vec::with_capacity(t.seccomp.chain.len());
        for (_, insns) in &t.seccomp.chain {
            next = align(next, 8);
            progs.push(next);
            next += std::mem::size_of_val(insns.as_slice()) as u64;
        }
        filters.push((args, progs));
    }
    let mut frames = Vec::with_capacity(input.threads.len());
    for t in &input.threads {
        let frame = align(next, 64);
        frames.push(frame);
        next = frame + sigframe::frame_len(t.xstate.len()) as u64;
    }
    let thread_stacks = align(next, PAGE);
    let others = input.threads.len().saturating_sub(1) as u64;
    let stack_bottom = thread_stacks + others * THREAD_STACK_SIZE;
    let total = stack_bottom + STACK_SIZE;
    Offsets {
        args,
        vmas,
        extents,
        close_fds,
        locks,
        timers,
        siginfos,
        auxv,
        threads,
        groups,
        filters,
        frames,
        thread_stacks,
        stack_bottom,
        total,
    }
}

/// Bytes the area for `input` needs.
pub fn size(blob: &Blob, input: &BlobInput) -> u64 {
    offsets(blob, input).total
}

fn put<T: Copy>(bytes: &mut [u8], off: u64, items: &[T]) {
    let len = std::mem::size_of_val(items);
    let off = off as usize;
    // SAFETY: `T` is one of the proto's repr(C) plain-data types (or an integer): viewing `items` as bytes
    // reads exactly its initialized memory. Padding bytes inside those types are never read by the blob.
    let src = unsafe { std::slice::from_raw_parts(items.as_ptr().cast::<u8>(), len) };
    bytes[off..off + len].copy_from_slice(src);
}

/// Lays out the area for `input` at `base`.
pub fn build(blob: &Blob, input: &BlobInput, base: u64) -> Result<Area, RestoreError> {
    if input.threads.is_empty() {
        return Err(RestoreError::Blob("no thread to restore".into()));
    }
    let o = offsets(blob, input);
    let mut bytes = vec![0u8; o.total as usize];
    blob.load_into(&mut bytes, base)?;

    let stack_top = base + o.total - 16;
    let mut thread_args = Vec::with_capacity(input.threads.len());
    let mut leader_uc = 0;
    for (i, (t, &frame_off)) in input.threads.iter().zip(&o.frames).enumerate() {
        let frame = sigframe::build(
            base + frame_off,
            &t.regs,
            &t.xstate,
            t.sigmask,
            t.altstack.as_ref(),
        )
        .map_err(|e| RestoreError::Xstate {
            tid: t.tid,
            len: t.xstate.len(),
            reason: e.0,
        })?;
        put(&mut bytes, frame_off, &frame.bytes);
        if i == 0 {
            leader_uc = frame.uc_addr();
        }
        let own_stack_top = if i == 0 {
            stack_top
        } else {
            base + o.thread_stacks + i as u64 * THREAD_STACK_SIZE - 16
        };
        thread_args.push(ThreadArgs {
            tid: t.tid,
            has_clear_child_tid: t.clear_child_tid.is_some() as u32,
            clear_child_tid: t.clear_child_tid.unwrap_or(0),
            fs_base: t.regs.fs_base,
            gs_base: t.regs.gs_base,
            rseq: t.rseq.unwrap_or_default(),
            sigframe_uc: frame.uc_addr(),
            stack_top: own_stack_top,
            has_robust_list: t.robust_list.is_some() as u32,
            ns_tid: t.ns_tid,
            robust_head: t.robust_list.map_or(0, |r| r.head),
            robust_len: t.robust_list.map_or(0, |r| r.len),
            comm: t.comm_bytes(),
            creds: creds_arg(t.creds.as_ref(), base + o.groups[i]),
            creds_pending: base + o.args + std::mem::offset_of!(RestoreArgs, creds_pending) as u64,
            sched: t.sched,
            seccomp: seccomp_arg(&t.seccomp, base + o.filters[i].0),
        });
        if let Some(c) = &t.creds {
            put(&mut bytes, o.groups[i], &c.groups);
        }
        let (args_off, progs) = &o.filters[i];
        let filter_args: Vec<FilterArg> = t
            .seccomp
            .chain
            .iter()
            .zip(progs)
            .map(|((flags, insns), &off)| {
                put(&mut bytes, off, insns);
                FilterArg {
                    flags: *flags,
                    insns: base + off,
                    len: insns.len() as u32,
                    _pad: 0,
                }
            })
            .collect();
        put(&mut bytes, *args_off, &filter_args);
    }
    put(&mut bytes, o.threads, &thread_args);
    put(&mut bytes, o.vmas, &input.vmas);
    put(&mut bytes, o.extents, &input.extents);
    put(&mut bytes, o.close_fds, &input.close_fds);
    put(&mut bytes, o.locks, &input.locks);
    put(&mut bytes, o.timers, &input.timers);
    put(&mut bytes, o.siginfos, &input.siginfos);

    let mut mm_map = PrctlMmMap::default();
    if let Some((map, auxv)) = &input.mm {
        put(&mut bytes, o.auxv, auxv);
        mm_map = *map;
        mm_map.auxv = base + o.auxv;
        mm_map.auxv_size = (auxv.len() * 8) as u32;
    }
    let args = RestoreArgs {
        version: PROTO_VERSION,
        report_fd: input.report_fd,
        pages_fd: input.pages_fd,
        has_sigactions: input.sigactions.is_some() as u32,
        area_start: base,
        area_end: base + o.total,
        inherited_rseq: input.inherited_rseq,
        vmas: base + o.vmas,
        nr_vmas: input.vmas.len() as u64,
        extents: base + o.extents,
        nr_extents: input.extents.len() as u64,
        close_fds: base + o.close_fds,
        nr_close_fds: input.close_fds.len() as u64,
        has_vdso: input.vdso_map_addr.is_some() as u32,
        has_mm_map: input.mm.is_some() as u32,
        vdso_map_addr: input.vdso_map_addr.unwrap_or(0),
        mm_map,
        sigactions: input
            .sigactions
            .as_deref()
            .copied()
            .unwrap_or([KernelSigaction::default(); NSIG]),
        has_itimers: input.itimers.is_some() as u32,
        nr_threads: input.threads.len() as u32,
        itimers: input.itimers.unwrap_or_default(),
        threads: base + o.threads,
        timers: base + o.timers,
        nr_timers: input.timers.len() as u64,
        siginfos: base + o.siginfos,
        nr_siginfos: input.siginfos.len() as u64,
        has_mm_attrs: input.mm_attrs.is_some() as u32,
        mlock_future: input.mm_attrs.map_or(0, |m| m.mlock_future),
        thp_disable: input.mm_attrs.map_or(0, |m| m.thp_disable),
        creds_pending: input.threads.len() as u32 - 1,
        _pad: 0,
        locks: base + o.locks,
        nr_locks: input.locks.len() as u64,
    };
    put(&mut bytes, o.args, &[args]);
    debug_assert!(o.stack_bottom < o.total);
    Ok(Area {
        base,
        bytes,
        entry: base + blob.entry_offset(),
        args: base + o.args,
        stack_top,
        sigframe_uc: leader_uc,
    })
}

/// The blob's form of a thread's credentials, its groups laid out at `groups`.
fn creds_arg(c: Option<&crate::task::ThreadCreds>, groups: u64) -> CredsArg {
    let Some(c) = c else {
        return CredsArg::default();
    };
    CredsArg {
        set: 1,
        nr_groups: c.groups.len() as u32,
        groups,
        uids: c.uids,
        gids: c.gids,
        cap_inh: c.cap_inh,
        cap_prm: c.cap_prm,
        cap_eff: c.cap_eff,
        cap_amb: c.cap_amb,
        cap_bnd_drop: c.cap_bnd_drop,
        securebits: c.securebits,
        no_new_privs: c.no_new_privs as u32,
    }
}

/// The blob's form of a thread's seccomp state, its filter descriptions laid out at `filters`.
fn seccomp_arg(s: &crate::task::ThreadSeccompInput, filters: u64) -> SeccompArg {
    SeccompArg {
        mode: s.mode,
        inherited: s.inherited,
        filters,
        nr_filters: s.chain.len() as u32,
        _pad: 0,
    }
}

/// The highest page-aligned base for `size` bytes such that `[base - MARGIN, base + size + MARGIN)`
/// overlaps none of `occupied` (half-open ranges, any order) and stays in `[LOW_LIMIT, TASK_SIZE)`.
pub fn find_hole(size: u64, occupied: &[(u64, u64)]) -> Option<u64> {
    let mut ranges: Vec<(u64, u64)> = occupied
        .iter()
        .map(|&(s, e)| (s.saturating_sub(MARGIN), e.saturating_add(MARGIN)))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let ranges = merged;
    // Walk the gaps from the top down.
    let mut ceiling = TASK_SIZE - MARGIN;
    for &(start, end) in ranges.iter().rev() {
        if end <= ceiling {
            let gap_start = end.max(LOW_LIMIT);
            if ceiling >= gap_start && ceiling - gap_start >= size {
                return Some((ceiling - size) / PAGE * PAGE);
            }
        }
        ceiling = ceiling.min(start);
        if ceiling < LOW_LIMIT {
            return None;
        }
    }
    (ceiling >= LOW_LIMIT + size).then(|| (ceiling - size) / PAGE * PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hole_avoids_every_range_with_margin() {
        let occ = [
            (0x7fff_f000_0000, 0x7fff_ffff_0000),
            (0x7fff_e000_0000, 0x7fff_efff_0000),
        ];
        let b = find_hole(0x10_0000, &occ).unwrap();
        for &(s, e) in &occ {
            assert!(
                b + 0x10_0000 + MARGIN <= s || b >= e + MARGIN,
                "{b:#x} overlaps {s:#x}-{e:#x}"
            );
        }
        assert_eq!(b % PAGE, 0);
        // Between the two ranges there is a 64K-margin gap only: too small for 1M, so it goes below both.
        assert!(b + 0x10_0000 <= 0x7fff_e000_0000 - MARGIN);
        assert!(find_hole(TASK_SIZE, &occ).is_none());
    }

    #[test]
    fn area_pointers_are_absolute_and_inside() {
        let blob = Blob::embedded().unwrap();
        let input = BlobInput {
            vmas: vec![VmaArg {
                start: 0x1000,
                end: 0x2000,
                pgoff: 0,
                prot: 3,
                kind: 1,
                fd: -1,
                fill: 1,
                extra_flags: 0,
                madvise: 0,
                lock: 0,
                pkey: 0,
            }],
            extents: vec![ExtentArg {
                vaddr: 0x1000,
                len: 0x1000,
                file_offset: 0,
            }],
            close_fds: vec![5, 6],
            locks: Vec::new(),
            pages_fd: 5,
            report_fd: 7,
            inherited_rseq: RseqArg::default(),
            vdso_map_addr: None,
            mm: Some((PrctlMmMap::default(), vec![6, 4096, 0, 0])),
            sigactions: None,
            itimers: None,
            timers: vec![TimerArg::default()],
            siginfos: vec![QueuedSigArg {
                shared: 1,
                signo: 10,
                tid: 1,
                _pad: 0,
                info: [0; 128],
            }],
            threads: vec![ThreadInput {
                tid: 1,
                regs: GpRegs::default(),
                xstate: vec![0; 2432],
                sigmask: 0,
                altstack: None,
                clear_child_tid: None,
                rseq: None,
                robust_list: None,
                comm: String::new(),
                ns_tid: 0,
                creds: None,
                sched: SchedArg::default(),
                seccomp: crate::task::ThreadSeccompInput {
                    mode: 2,
                    inherited: 0,
                    chain: vec![(0, vec![Default::default(); 3])],
                },
            }],
            mm_attrs: None,
        };
        let base = 0x7100_0000_0000;
        let area = build(&blob, &input, base).unwrap();
        assert_eq!(area.len(), size(&blob, &input));
        assert_eq!(area.len() % PAGE, 0);
        let off = (area.args - base) as usize;
        // SAFETY: the bytes at `off` were written from a RestoreArgs by `build`; read_unaligned copies.
        let args: RestoreArgs =
            unsafe { std::ptr::read_unaligned(area.bytes[off..].as_ptr().cast()) };
        assert_eq!(args.version, PROTO_VERSION);
        assert_eq!((args.area_start, args.area_end), (base, area.end()));
        for p in [
            args.vmas,
            args.extents,
            args.close_fds,
            args.threads,
            args.timers,
            args.siginfos,
            args.mm_map.auxv,
            area.sigframe_uc,
        ] {
            assert!(p >= base && p < area.end(), "{p:#x}");
        }
        assert_eq!(args.mm_map.auxv_size, 32);
        assert_eq!(area.stack_top % 16, 0);
        assert!(area.entry >= base && area.entry < base + blob.span());
    }
}
