//! dormant-sys: the x86-64 Linux kernel ABI dormant uses, written down once (in the spirit of rust-vmm's
//! kvm-bindings).
//!
//! What it holds:
//! - the kernel structs and constants that more than one place needs: `clone_args`, `prctl_mm_map`, the
//!   kernel `sigaction`, `stack_t`, `itimerval`, `sigevent`, the siginfo size, rseq, `user_regs_struct`,
//!   the ptrace requests and regsets libc lacks, the PAGEMAP_SCAN ioctl ([`process`], [`signal`],
//!   [`regs`], [`rseq`], [`ptrace`], [`pagemap`], [`mman`]), and what this CPU enables for FPU state
//!   ([`cpu`]);
//! - the x86-64 `rt_sigframe`/`ucontext`/`sigcontext`/fpstate layout and the one builder of such frames
//!   ([`sigframe`]), used by the parasite (its way back to the task's own state) and the restorer (its way
//!   into the restored state);
//! - the raw-syscall layer of the two no_std blobs ([`raw`], numbers in [`nr`]); with `blob-rt`, the
//!   memory functions a freestanding blob needs ([`rt`]);
//! - with `std`: the host-side wrappers that dump, restore and the kerndat probes all call, so a probe
//!   exercises the very code the real path runs ([`host`]), the /proc/PID/maps parser ([`procfs`]), and
//!   the read of a UDP socket's receive queue that leaves it queued ([`udp`]);
//! - with `loader`: the ELF loader of the blobs ([`blob`]); with `build`: the build-script helper that
//!   compiles them ([`build`]).
//!
//! What it does NOT do: no policy and no knowledge of images or of what the blobs do; errors are errnos
//! (and the loader's one error type). Without `std` it is `no_std` and allocation-free, so the blobs link
//! it.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod cpu;
pub mod mman;
pub mod nr;
pub mod pagemap;
pub mod process;
pub mod ptrace;
pub mod raw;
pub mod regs;
pub mod rseq;
pub mod sigframe;
pub mod signal;

#[cfg(feature = "blob-rt")]
pub mod rt;

#[cfg(feature = "std")]
pub mod host;
#[cfg(feature = "std")]
pub mod procfs;
#[cfg(feature = "std")]
pub mod udp;

#[cfg(feature = "loader")]
pub mod blob;
#[cfg(feature = "build")]
pub mod build;

/// Page size on x86-64.
pub const PAGE_SIZE: u64 = 4096;
