//! Workload `wl_registers`: register state held across a checkpoint, inside one asm block.
//!
//! `wl_registers TRIGGER DIR [auto|avx512|avx] [--inject-fault]`. One asm block loads known, per-run values
//! into the vector registers (zmm0-31 and the opmask registers k0-k7 with AVX-512, else ymm0-15), eight
//! general-purpose registers (rbx, rbp, r8-r10, r12-r14), four x87 stack registers, a non-default MXCSR
//! (round toward zero, FTZ, DAZ) and x87 control word (single precision, round down). Still inside the block
//! it writes `READY <pid>` with a raw write(2), then spins: `pause` loops, and between them a raw access(2)
//! on the trigger path and a raw clock_gettime(2) for a deadline. None of these syscalls touches the held
//! registers (syscall clobbers only rax, rcx, r11). When the trigger exists it stores every register to
//! memory, probes the rounding modes with real conversions (2.7 and -2.7 through cvtsd2si and fistp), puts
//! the caller's MXCSR, control word and k0 back, and returns; Rust code then compares. A checkpoint at any
//! moment after READY must be invisible to these comparisons.
//!
//! With `--inject-fault` the block zeroes one vector register after the trigger, proving the check bites.

use std::mem::offset_of;
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const USAGE: &str = "[auto|avx512|avx] [--inject-fault]";

/// Round toward zero (RC = 11), flush-to-zero, denormals-are-zero, all exceptions masked.
const MXCSR_IN: u32 = 0x1f80 | 0x6000 | 0x8000 | 0x0040;
/// Single precision (PC = 00), round down (RC = 01), all exceptions masked.
const FCW_IN: u16 = 0x007f | 0x0400;
/// `pause` iterations between two looks at the trigger.
const SPIN: u32 = 50_000;
/// Seconds the block spins at most before it gives up.
const DEADLINE_SECS: i64 = 900;

/// What the loop ended with.
const RESULT_TRIGGERED: u64 = 0;
const RESULT_DEADLINE: u64 = 1;
const RESULT_READY_FAILED: u64 = 2;

/// Everything the asm block reads and writes, addressed from r15.
#[repr(C, align(64))]
struct Block {
    vin: [[u64; 8]; 32],
    vout: [[u64; 8]; 32],
    kin: [u64; 8],
    kout: [u64; 8],
    gin: [u64; 8],
    gout: [u64; 8],
    x87in: [i64; 4],
    x87out: [i64; 4],
    probes: [f64; 2],
    sse_round: [i64; 2],
    x87_round: [i64; 2],
    saved_k0: u64,
    trigger: *const u8,
    ready_buf: *const u8,
    ready_len: u64,
    deadline: i64,
    now: [i64; 2],
    result: u64,
    written: i64,
    inject: u64,
    mxcsr_in: u32,
    mxcsr_out: u32,
    saved_mxcsr: u32,
    fcw_in: u16,
    fcw_out: u16,
    saved_fcw: u16,
}

const GPR_NAMES: [&str; 8] = ["rbx", "rbp", "r8", "r9", "r10", "r12", "r13", "r14"];

// The asm text shared by both variants, as string literals (asm! accepts macros expanding to literals).

macro_rules! prologue {
    () => {
        concat!(
            "push rbx\n",
            "push rbp\n",
            "stmxcsr dword ptr [r15 + {saved_mxcsr}]\n",
            "fnstcw word ptr [r15 + {saved_fcw}]\n",
        )
    };
}

macro_rules! load_scalar_state {
    () => {
        concat!(
            "fldcw word ptr [r15 + {fcw_in}]\n",
            "fild qword ptr [r15 + {x87in}]\n",
            "fild qword ptr [r15 + {x87in} + 8]\n",
            "fild qword ptr [r15 + {x87in} + 16]\n",
            "fild qword ptr [r15 + {x87in} + 24]\n",
            "ldmxcsr dword ptr [r15 + {mxcsr_in}]\n",
            "mov rbx, qword ptr [r15 + {gin}]\n",
            "mov rbp, qword ptr [r15 + {gin} + 8]\n",
            "mov r8, qword ptr [r15 + {gin} + 16]\n",
            "mov r9, qword ptr [r15 + {gin} + 24]\n",
            "mov r10, qword ptr [r15 + {gin} + 32]\n",
            "mov r12, qword ptr [r15 + {gin} + 40]\n",
            "mov r13, qword ptr [r15 + {gin} + 48]\n",
            "mov r14, qword ptr [r15 + {gin} + 56]\n",
        )
    };
}

/// READY, then the wait loop; ends at label 5 with `result` set.
macro_rules! ready_and_wait {
    () => {
        concat!(
            // write(1, ready_buf, ready_len)
            "mov eax, 1\n",
            "mov edi, 1\n",
            "mov rsi, qword ptr [r15 + {ready_buf}]\n",
            "mov rdx, qword ptr [r15 + {ready_len}]\n",
            "syscall\n",
            "mov qword ptr [r15 + {written}], rax\n",
            "cmp rax, qword ptr [r15 + {ready_len}]\n",
            "jne 5f\n",
            "2:\n",
            "mov ecx, {spin}\n",
            "3:\n",
            "pause\n",
            "dec ecx\n",
            "jnz 3b\n",
            // access(trigger, F_OK)
            "mov eax, 21\n",
            "mov rdi, qword ptr [r15 + {trigger}]\n",
            "xor esi, esi\n",
            "syscall\n",
            "test rax, rax\n",
            "jz 4f\n",
            // clock_gettime(CLOCK_MONOTONIC, &now)
            "mov eax, 228\n",
            "mov edi, 1\n",
            "lea rsi, [r15 + {now}]\n",
            "syscall\n",
            "mov rax, qword ptr [r15 + {now}]\n",
            "cmp rax, qword ptr [r15 + {deadline}]\n",
            "jl 2b\n",
            "mov qword ptr [r15 + {result}], {r_deadline}\n",
            "jmp 5f\n",
            "4:\n",
            "mov qword ptr [r15 + {result}], {r_triggered}\n",
            "5:\n",
        )
    };
}

macro_rules! store_scalar_state_and_restore {
    () => {
        concat!(
            "stmxcsr dword ptr [r15 + {mxcsr_out}]\n",
            "fnstcw word ptr [r15 + {fcw_out}]\n",
            "fistp qword ptr [r15 + {x87out} + 24]\n",
            "fistp qword ptr [r15 + {x87out} + 16]\n",
            "fistp qword ptr [r15 + {x87out} + 8]\n",
            "fistp qword ptr [r15 + {x87out}]\n",
            "cvtsd2si rax, qword ptr [r15 + {probes}]\n",
            "mov qword ptr [r15 + {sse_round}], rax\n",
            "cvtsd2si rax, qword ptr [r15 + {probes} + 8]\n",
            "mov qword ptr [r15 + {sse_round} + 8], rax\n",
            "fld qword ptr [r15 + {probes}]\n",
            "fistp qword ptr [r15 + {x87_round}]\n",
            "fld qword ptr [r15 + {probes} + 8]\n",
            "fistp qword ptr [r15 + {x87_round} + 8]\n",
            "mov qword ptr [r15 + {gout}], rbx\n",
            "mov qword ptr [r15 + {gout} + 8], rbp\n",
            "mov qword ptr [r15 + {gout} + 16], r8\n",
            "mov qword ptr [r15 + {gout} + 24], r9\n",
            "mov qword ptr [r15 + {gout} + 32], r10\n",
            "mov qword ptr [r15 + {gout} + 40], r12\n",
            "mov qword ptr [r15 + {gout} + 48], r13\n",
            "mov qword ptr [r15 + {gout} + 56], r14\n",
            "ldmxcsr dword ptr [r15 + {saved_mxcsr}]\n",
            "fldcw word ptr [r15 + {saved_fcw}]\n",
        )
    };
}

macro_rules! epilogue {
    () => {
        concat!("vzeroupper\n", "pop rbp\n", "pop rbx\n")
    };
}

/// Holds zmm0-31, k0-k7 and the scalar state across the wait.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW (checked by the caller).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn hold_avx512(b: &mut Block) {
    let p: *mut Block = b;
    // SAFETY: the block only reads and writes `*p` (through r15, which it never changes) and makes the
    // write/access/clock_gettime syscalls on memory inside `*p`. Every register it changes is declared
    // clobbered, except rbx, rbp and k0 (not allowed as operands) which it saves and restores itself, as it
    // does MXCSR and the x87 control word; the x87 stack is empty again at the end. It pushes two registers
    // (so no `nostack`), and the caller guarantees the CPU features.
    unsafe {
        std::arch::asm!(
            prologue!(),
            "kmovq qword ptr [r15 + {saved_k0}], k0",
            concat!(
                "vmovdqu64 zmm0, zmmword ptr [r15 + {vin} + 0*64]\n",
                "vmovdqu64 zmm1, zmmword ptr [r15 + {vin} + 1*64]\n",
                "vmovdqu64 zmm2, zmmword ptr [r15 + {vin} + 2*64]\n",
                "vmovdqu64 zmm3, zmmword ptr [r15 + {vin} + 3*64]\n",
                "vmovdqu64 zmm4, zmmword ptr [r15 + {vin} + 4*64]\n",
                "vmovdqu64 zmm5, zmmword ptr [r15 + {vin} + 5*64]\n",
                "vmovdqu64 zmm6, zmmword ptr [r15 + {vin} + 6*64]\n",
                "vmovdqu64 zmm7, zmmword ptr [r15 + {vin} + 7*64]\n",
                "vmovdqu64 zmm8, zmmword ptr [r15 + {vin} + 8*64]\n",
                "vmovdqu64 zmm9, zmmword ptr [r15 + {vin} + 9*64]\n",
                "vmovdqu64 zmm10, zmmword ptr [r15 + {vin} + 10*64]\n",
                "vmovdqu64 zmm11, zmmword ptr [r15 + {vin} + 11*64]\n",
                "vmovdqu64 zmm12, zmmword ptr [r15 + {vin} + 12*64]\n",
                "vmovdqu64 zmm13, zmmword ptr [r15 + {vin} + 13*64]\n",
                "vmovdqu64 zmm14, zmmword ptr [r15 + {vin} + 14*64]\n",
                "vmovdqu64 zmm15, zmmword ptr [r15 + {vin} + 15*64]\n",
                "vmovdqu64 zmm16, zmmword ptr [r15 + {vin} + 16*64]\n",
                "vmovdqu64 zmm17, zmmword ptr [r15 + {vin} + 17*64]\n",
                "vmovdqu64 zmm18, zmmword ptr [r15 + {vin} + 18*64]\n",
                "vmovdqu64 zmm19, zmmword ptr [r15 + {vin} + 19*64]\n",
                "vmovdqu64 zmm20, zmmword ptr [r15 + {vin} + 20*64]\n",
                "vmovdqu64 zmm21, zmmword ptr [r15 + {vin} + 21*64]\n",
                "vmovdqu64 zmm22, zmmword ptr [r15 + {vin} + 22*64]\n",
                "vmovdqu64 zmm23, zmmword ptr [r15 + {vin} + 23*64]\n",
                "vmovdqu64 zmm24, zmmword ptr [r15 + {vin} + 24*64]\n",
                "vmovdqu64 zmm25, zmmword ptr [r15 + {vin} + 25*64]\n",
                "vmovdqu64 zmm26, zmmword ptr [r15 + {vin} + 26*64]\n",
                "vmovdqu64 zmm27, zmmword ptr [r15 + {vin} + 27*64]\n",
                "vmovdqu64 zmm28, zmmword ptr [r15 + {vin} + 28*64]\n",
                "vmovdqu64 zmm29, zmmword ptr [r15 + {vin} + 29*64]\n",
                "vmovdqu64 zmm30, zmmword ptr [r15 + {vin} + 30*64]\n",
                "vmovdqu64 zmm31, zmmword ptr [r15 + {vin} + 31*64]\n",
            ),
            concat!(
                "kmovq k0, qword ptr [r15 + {kin} + 0]\n",
                "kmovq k1, qword ptr [r15 + {kin} + 8]\n",
                "kmovq k2, qword ptr [r15 + {kin} + 16]\n",
                "kmovq k3, qword ptr [r15 + {kin} + 24]\n",
                "kmovq k4, qword ptr [r15 + {kin} + 32]\n",
                "kmovq k5, qword ptr [r15 + {kin} + 40]\n",
                "kmovq k6, qword ptr [r15 + {kin} + 48]\n",
                "kmovq k7, qword ptr [r15 + {kin} + 56]\n",
            ),
            load_scalar_state!(),
            ready_and_wait!(),
            "cmp qword ptr [r15 + {inject}], 0",
            "je 6f",
            "vpxorq zmm29, zmm29, zmm29",
            "6:",
            concat!(
                "vmovdqu64 zmmword ptr [r15 + {vout} + 0*64], zmm0\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 1*64], zmm1\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 2*64], zmm2\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 3*64], zmm3\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 4*64], zmm4\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 5*64], zmm5\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 6*64], zmm6\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 7*64], zmm7\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 8*64], zmm8\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 9*64], zmm9\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 10*64], zmm10\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 11*64], zmm11\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 12*64], zmm12\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 13*64], zmm13\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 14*64], zmm14\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 15*64], zmm15\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 16*64], zmm16\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 17*64], zmm17\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 18*64], zmm18\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 19*64], zmm19\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 20*64], zmm20\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 21*64], zmm21\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 22*64], zmm22\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 23*64], zmm23\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 24*64], zmm24\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 25*64], zmm25\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 26*64], zmm26\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 27*64], zmm27\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 28*64], zmm28\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 29*64], zmm29\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 30*64], zmm30\n",
                "vmovdqu64 zmmword ptr [r15 + {vout} + 31*64], zmm31\n",
            ),
            concat!(
                "kmovq qword ptr [r15 + {kout} + 0], k0\n",
                "kmovq qword ptr [r15 + {kout} + 8], k1\n",
                "kmovq qword ptr [r15 + {kout} + 16], k2\n",
                "kmovq qword ptr [r15 + {kout} + 24], k3\n",
                "kmovq qword ptr [r15 + {kout} + 32], k4\n",
                "kmovq qword ptr [r15 + {kout} + 40], k5\n",
                "kmovq qword ptr [r15 + {kout} + 48], k6\n",
                "kmovq qword ptr [r15 + {kout} + 56], k7\n",
            ),
            store_scalar_state_and_restore!(),
            "kmovq k0, qword ptr [r15 + {saved_k0}]",
            epilogue!(),
            in("r15") p,
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _, out("r12") _, out("r13") _, out("r14") _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
            out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _,
            out("zmm18") _, out("zmm19") _, out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
            out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _, out("zmm28") _, out("zmm29") _,
            out("zmm30") _, out("zmm31") _,
            out("k1") _, out("k2") _, out("k3") _, out("k4") _, out("k5") _, out("k6") _, out("k7") _,
            out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
            out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
            vin = const offset_of!(Block, vin),
            vout = const offset_of!(Block, vout),
            kin = const offset_of!(Block, kin),
            kout = const offset_of!(Block, kout),
            saved_k0 = const offset_of!(Block, saved_k0),
            gin = const offset_of!(Block, gin),
            gout = const offset_of!(Block, gout),
            x87in = const offset_of!(Block, x87in),
            x87out = const offset_of!(Block, x87out),
            probes = const offset_of!(Block, probes),
            sse_round = const offset_of!(Block, sse_round),
            x87_round = const offset_of!(Block, x87_round),
            trigger = const offset_of!(Block, trigger),
            ready_buf = const offset_of!(Block, ready_buf),
            ready_len = const offset_of!(Block, ready_len),
            deadline = const offset_of!(Block, deadline),
            now = const offset_of!(Block, now),
            result = const offset_of!(Block, result),
            written = const offset_of!(Block, written),
            inject = const offset_of!(Block, inject),
            mxcsr_in = const offset_of!(Block, mxcsr_in),
            mxcsr_out = const offset_of!(Block, mxcsr_out),
            saved_mxcsr = const offset_of!(Block, saved_mxcsr),
            fcw_in = const offset_of!(Block, fcw_in),
            fcw_out = const offset_of!(Block, fcw_out),
            saved_fcw = const offset_of!(Block, saved_fcw),
            spin = const SPIN,
            r_deadline = const RESULT_DEADLINE,
            r_triggered = const RESULT_TRIGGERED,
        );
    }
}

/// Holds ymm0-15 and the scalar state across the wait (CPUs without AVX-512).
///
/// # Safety
/// The CPU must support AVX (checked by the caller).
#[target_feature(enable = "avx")]
unsafe fn hold_avx(b: &mut Block) {
    let p: *mut Block = b;
    // SAFETY: as in `hold_avx512`, without the AVX-512 registers; the caller guarantees AVX.
    unsafe {
        std::arch::asm!(
            prologue!(),
            concat!(
                "vmovdqu ymm0, ymmword ptr [r15 + {vin} + 0*64]\n",
                "vmovdqu ymm1, ymmword ptr [r15 + {vin} + 1*64]\n",
                "vmovdqu ymm2, ymmword ptr [r15 + {vin} + 2*64]\n",
                "vmovdqu ymm3, ymmword ptr [r15 + {vin} + 3*64]\n",
                "vmovdqu ymm4, ymmword ptr [r15 + {vin} + 4*64]\n",
                "vmovdqu ymm5, ymmword ptr [r15 + {vin} + 5*64]\n",
                "vmovdqu ymm6, ymmword ptr [r15 + {vin} + 6*64]\n",
                "vmovdqu ymm7, ymmword ptr [r15 + {vin} + 7*64]\n",
                "vmovdqu ymm8, ymmword ptr [r15 + {vin} + 8*64]\n",
                "vmovdqu ymm9, ymmword ptr [r15 + {vin} + 9*64]\n",
                "vmovdqu ymm10, ymmword ptr [r15 + {vin} + 10*64]\n",
                "vmovdqu ymm11, ymmword ptr [r15 + {vin} + 11*64]\n",
                "vmovdqu ymm12, ymmword ptr [r15 + {vin} + 12*64]\n",
                "vmovdqu ymm13, ymmword ptr [r15 + {vin} + 13*64]\n",
                "vmovdqu ymm14, ymmword ptr [r15 + {vin} + 14*64]\n",
                "vmovdqu ymm15, ymmword ptr [r15 + {vin} + 15*64]\n",
            ),
            load_scalar_state!(),
            ready_and_wait!(),
            "cmp qword ptr [r15 + {inject}], 0",
            "je 6f",
            "vpxor ymm13, ymm13, ymm13",
            "6:",
            concat!(
                "vmovdqu ymmword ptr [r15 + {vout} + 0*64], ymm0\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 1*64], ymm1\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 2*64], ymm2\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 3*64], ymm3\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 4*64], ymm4\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 5*64], ymm5\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 6*64], ymm6\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 7*64], ymm7\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 8*64], ymm8\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 9*64], ymm9\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 10*64], ymm10\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 11*64], ymm11\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 12*64], ymm12\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 13*64], ymm13\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 14*64], ymm14\n",
                "vmovdqu ymmword ptr [r15 + {vout} + 15*64], ymm15\n",
            ),
            store_scalar_state_and_restore!(),
            epilogue!(),
            in("r15") p,
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _, out("r12") _, out("r13") _, out("r14") _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
            out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
            out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
            vin = const offset_of!(Block, vin),
            vout = const offset_of!(Block, vout),
            gin = const offset_of!(Block, gin),
            gout = const offset_of!(Block, gout),
            x87in = const offset_of!(Block, x87in),
            x87out = const offset_of!(Block, x87out),
            probes = const offset_of!(Block, probes),
            sse_round = const offset_of!(Block, sse_round),
            x87_round = const offset_of!(Block, x87_round),
            trigger = const offset_of!(Block, trigger),
            ready_buf = const offset_of!(Block, ready_buf),
            ready_len = const offset_of!(Block, ready_len),
            deadline = const offset_of!(Block, deadline),
            now = const offset_of!(Block, now),
            result = const offset_of!(Block, result),
            written = const offset_of!(Block, written),
            inject = const offset_of!(Block, inject),
            mxcsr_in = const offset_of!(Block, mxcsr_in),
            mxcsr_out = const offset_of!(Block, mxcsr_out),
            saved_mxcsr = const offset_of!(Block, saved_mxcsr),
            fcw_in = const offset_of!(Block, fcw_in),
            fcw_out = const offset_of!(Block, fcw_out),
            saved_fcw = const offset_of!(Block, saved_fcw),
            spin = const SPIN,
            r_deadline = const RESULT_DEADLINE,
            r_triggered = const RESULT_TRIGGERED,
        );
    }
}

/// splitmix64's finaliser: distinct, per-run values for every register lane.
fn mix(x: u64, seed: u64) -> u64 {
    let mut z = x ^ seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    Avx512,
    Avx,
}

fn choose_width(arg: Option<&str>) -> Result<Width, WorkloadError> {
    let avx512 = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
    let avx = is_x86_feature_detected!("avx");
    let need = |ok: bool, what: &str, w: Width| {
        if ok {
            Ok(w)
        } else {
            Err(WorkloadError::setup(
                "register width",
                format!("this CPU lacks {what}"),
            ))
        }
    };
    match arg.unwrap_or("auto") {
        "avx512" => need(avx512, "AVX-512F/BW", Width::Avx512),
        "avx" => need(avx, "AVX", Width::Avx),
        "auto" if avx512 => Ok(Width::Avx512),
        "auto" => need(avx, "AVX", Width::Avx),
        other => Err(WorkloadError::setup(
            "register width",
            format!("unknown mode {other:?}"),
        )),
    }
}

fn compare<T: PartialEq + std::fmt::Debug>(
    what: impl Fn(usize) -> String,
    want: &[T],
    got: &[T],
) -> Result<(), String> {
    let bad: Vec<String> = want
        .iter()
        .zip(got)
        .enumerate()
        .filter(|(_, (w, g))| w != g)
        .map(|(i, (w, g))| format!("{} want {w:x?} got {g:x?}", what(i)))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let width = choose_width(
        args.rest
            .iter()
            .map(String::as_str)
            .find(|a| !a.starts_with("--")),
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = mix(now, u64::from(std::process::id()));

    let trigger = std::ffi::CString::new(args.trigger.as_os_str().as_encoded_bytes())
        .map_err(|e| WorkloadError::setup("trigger path", e))?;
    let ready = format!("READY {}\n", std::process::id()).into_bytes();
    workload::set_ready_pid(std::process::id());
    let start = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| WorkloadError::setup("clock_gettime", e))?;

    let mut b = Box::new(Block {
        vin: std::array::from_fn(|r| std::array::from_fn(|l| mix((r * 8 + l) as u64, seed))),
        vout: [[0; 8]; 32],
        kin: std::array::from_fn(|k| mix(1000 + k as u64, seed)),
        kout: [0; 8],
        gin: std::array::from_fn(|g| mix(2000 + g as u64, seed)),
        gout: [0; 8],
        x87in: std::array::from_fn(|i| (mix(3000 + i as u64, seed) >> 2) as i64 - (1 << 61)),
        x87out: [0; 4],
        probes: [2.7, -2.7],
        sse_round: [0; 2],
        x87_round: [0; 2],
        saved_k0: 0,
        trigger: trigger.as_ptr().cast(),
        ready_buf: ready.as_ptr(),
        ready_len: ready.len() as u64,
        deadline: start.tv_sec() + DEADLINE_SECS,
        now: [0; 2],
        result: RESULT_READY_FAILED,
        written: 0,
        inject: u64::from(args.has_flag(INJECT_FAULT)),
        mxcsr_in: MXCSR_IN,
        mxcsr_out: 0,
        saved_mxcsr: 0,
        fcw_in: FCW_IN,
        fcw_out: 0,
        saved_fcw: 0,
    });

    match width {
        // SAFETY: the features were detected at run time by `choose_width`.
        Width::Avx512 => unsafe { hold_avx512(&mut b) },
        // SAFETY: as above.
        Width::Avx => unsafe { hold_avx(&mut b) },
    }

    let mut report = Report::new("wl_registers");
    match b.result {
        RESULT_TRIGGERED => {}
        RESULT_DEADLINE => {
            return Err(WorkloadError::TriggerTimeout {
                path: args.trigger.clone(),
                timeout: std::time::Duration::from_secs(DEADLINE_SECS as u64),
            })
        }
        _ => {
            return Err(WorkloadError::setup(
                "READY",
                format!("raw write returned {}", b.written),
            ))
        }
    }
    match width {
        Width::Avx512 => {
            report.note("holding zmm0-31 and k0-k7");
            let want: Vec<u64> = b.vin.iter().flatten().copied().collect();
            let got: Vec<u64> = b.vout.iter().flatten().copied().collect();
            report.check(
                "zmm0-31",
                compare(|i| format!("zmm{} lane {}", i / 8, i % 8), &want, &got),
            );
            report.check("k0-7", compare(|i| format!("k{i}"), &b.kin, &b.kout));
        }
        Width::Avx => {
            report.note("holding ymm0-15 (no AVX-512)");
            let want: Vec<u64> = b.vin[..16].iter().flat_map(|r| r[..4].to_vec()).collect();
            let got: Vec<u64> = b.vout[..16].iter().flat_map(|r| r[..4].to_vec()).collect();
            report.check(
                "ymm0-15",
                compare(|i| format!("ymm{} lane {}", i / 4, i % 4), &want, &got),
            );
        }
    }
    report.check(
        "gpr",
        compare(|i| GPR_NAMES[i].to_string(), &b.gin, &b.gout),
    );
    report.check(
        "x87-stack",
        compare(|i| format!("x87 value {i}"), &b.x87in, &b.x87out),
    );
    report.check(
        "mxcsr",
        if b.mxcsr_out == MXCSR_IN {
            Ok(())
        } else {
            Err(format!("{:#06x}, want {MXCSR_IN:#06x}", b.mxcsr_out))
        },
    );
    report.check(
        "x87-control-word",
        if b.fcw_out == FCW_IN {
            Ok(())
        } else {
            Err(format!("{:#06x}, want {FCW_IN:#06x}", b.fcw_out))
        },
    );
    // Round toward zero for SSE, round down for x87; round-to-nearest would give 3 and -3.
    report.check(
        "sse-rounding",
        compare(
            |i| format!("cvtsd2si({})", b.probes[i]),
            &[2, -2],
            &b.sse_round,
        ),
    );
    report.check(
        "x87-rounding",
        compare(
            |i| format!("fistp({})", b.probes[i]),
            &[2, -3],
            &b.x87_round,
        ),
    );
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_registers", run)
}
