//! Shared by the restorer's privileged tests: a tiny position-independent victim function (it waits for a
//! byte on fd 0, then checks memory, registers, xmm0, fs_base and its signal mask and exits 42), and
//! helpers to build and inspect its state.
#![allow(dead_code, clippy::unwrap_used)]

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

std::arch::global_asm!(
    ".pushsection .text.dormant_victim,\"ax\"",
    ".globl dormant_victim_start",
    ".globl dormant_victim_end",
    "dormant_victim_start:",
    "mov rbx, rdx",
    "mov r14, rdi",
    "mov r15, rsi",
    // read(0, data1 + 0x1000, 1): wait for the test's go byte.
    "xor edi, edi",
    "lea rsi, [r14 + 0x1000]",
    "mov edx, 1",
    "xor eax, eax",
    "syscall",
    "mov edi, 2",
    "cmp rax, 1",
    "jne 9f",
    "mov edi, 3",
    "mov rax, [r14]",
    "cmp rax, r15",
    "jne 9f",
    "mov edi, 4",
    "mov rax, [rbx]",
    "cmp rax, r12",
    "jne 9f",
    "mov edi, 5",
    "movq rax, xmm0",
    "cmp rax, r13",
    "jne 9f",
    "mov edi, 6",
    "mov rax, qword ptr fs:[0]",
    "cmp rax, [r14 + 8]",
    "jne 9f",
    // rt_sigprocmask(SIG_BLOCK, NULL, data1 + 0x1008, 8)
    "xor edi, edi",
    "xor esi, esi",
    "lea rdx, [r14 + 0x1008]",
    "mov r10d, 8",
    "mov eax, 14",
    "syscall",
    "mov edi, 7",
    "test rax, rax",
    "jne 9f",
    "mov rax, [r14 + 0x1008]",
    "cmp rax, rbp",
    "jne 9f",
    "mov edi, 42",
    "9:",
    "mov eax, 231",
    "syscall",
    "ud2",
    "dormant_victim_end:",
    ".popsection",
);

unsafe extern "C" {
    static dormant_victim_start: u8;
    static dormant_victim_end: u8;
}

pub const PAGE: u64 = 4096;
pub const CODE: u64 = 0x5000_0000_0000;
pub const DATA1: u64 = 0x5000_0001_0000;
pub const DATA2: u64 = 0x5000_0002_0000;
pub const STACK: u64 = 0x5000_0003_0000;
pub const STACK_PAGES: u64 = 8;
pub const VDSO_AT: u64 = 0x5000_1000_0000;
pub const XMM0: u64 = 0x1234_5678_9abc_def0;
pub const SIGUSR1_BIT: u64 = 1 << (libc::SIGUSR1 - 1);

pub fn victim_code() -> Vec<u8> {
    // SAFETY: both symbols are labels of the global_asm block above, in this binary's text; the bytes
    // between them are that code.
    unsafe {
        let start = &raw const dormant_victim_start;
        let end = &raw const dormant_victim_end;
        std::slice::from_raw_parts(start, end as usize - start as usize).to_vec()
    }
}

pub fn pattern(seed: u64) -> Vec<u8> {
    (0..PAGE / 8)
        .flat_map(|i| (seed << 32 | i).to_le_bytes())
        .collect()
}

pub fn first_word(page: &[u8], index: usize) -> u64 {
    u64::from_le_bytes(page[index * 8..index * 8 + 8].try_into().unwrap())
}

/// XSAVE of this thread's state, with xmm0 replaced.
pub fn xstate_with_xmm0(value: u64) -> Vec<u8> {
    let size = {
        // SAFETY: CPUID is available on every x86-64 CPU.
        #[allow(unused_unsafe)]
        let leaf = unsafe { core::arch::x86_64::__cpuid_count(0xd, 0) };
        leaf.ebx as usize
    };
    let mut buf = vec![0u8; size + 64];
    let off = buf.as_ptr().align_offset(64);
    let area = &mut buf[off..off + size];
    // SAFETY: XSAVE writes at most `size` bytes (CPUID 0xD.EBX for the enabled XCR0) to a 64-byte aligned
    // buffer of that size; edx:eax = all components.
    unsafe {
        core::arch::asm!("xsave64 [{}]", in(reg) area.as_mut_ptr(), in("eax") u32::MAX, in("edx") u32::MAX);
    }
    let mut x = area.to_vec();
    x[160..168].copy_from_slice(&value.to_le_bytes());
    x[168..176].fill(0);
    x[512] |= 0x2; // xstate_bv: SSE state present
    x
}

pub fn free_pid() -> u32 {
    (31000..32000)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

pub fn lift(fd: impl AsFd, base: RawFd) -> OwnedFd {
    let n = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(base)).unwrap();
    // SAFETY: a fresh fd from F_DUPFD_CLOEXEC.
    unsafe { OwnedFd::from_raw_fd(n) }
}

pub fn maps_of(pid: &str) -> Vec<(u64, u64, String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let (s, e) = cols[0].split_once('-').unwrap();
            (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
                cols[1].to_owned(),
                cols[5..].join(" "),
            )
        })
        .collect()
}

/// This test process's own glibc rseq registration (inherited by a forked child).
pub fn inherited_rseq() -> dormant_restorer_proto::RseqArg {
    unsafe extern "C" {
        static __rseq_offset: isize;
        static __rseq_size: u32;
    }
    // SAFETY: glibc constants.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return dormant_restorer_proto::RseqArg::default();
    }
    let tp: u64;
    // SAFETY: fs:0 is the thread pointer on x86-64 glibc.
    unsafe { std::arch::asm!("mov {}, fs:0", out(reg) tp) };
    dormant_restorer_proto::RseqArg {
        addr: tp.wrapping_add_signed(offset as i64),
        len: size,
        sig: 0x5305_3053,
    }
}

/// Fails (never skips) when not root.
pub fn require_root(test: &str) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "{test}: these tests need root (clone3 set_tid, ptrace, map_files); run them as root"
        );
        std::process::exit(1);
    }
}
