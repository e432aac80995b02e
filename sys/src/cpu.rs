//! What this CPU and kernel enable for user FPU state: XCR0 and the XSAVE area sizes (the dumper records
//! them in the inventory, the restorer checks an image against them, the probes compare them with the
//! regset).

use core::arch::x86_64::__cpuid_count;

/// CPUID.1:ECX.OSXSAVE: the kernel enabled XSAVE and XGETBV is usable.
const OSXSAVE: u32 = 1 << 27;

/// The state components the kernel enabled (XCR0); 0x3 (x87 + SSE) when XSAVE is not in use.
pub fn xcr0() -> u64 {
    // SAFETY: CPUID is available on every x86-64 CPU.
    #[allow(unused_unsafe)]
    let leaf1 = unsafe { __cpuid_count(1, 0) };
    if leaf1.ecx & OSXSAVE == 0 {
        return crate::regs::XFEATURES_FP_SSE;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX=0 reads XCR0; OSXSAVE (checked above) guarantees it does not fault.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
                         options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// CPUID.(0xD,0): (EBX, ECX) = the standard-format XSAVE area size for the components enabled in XCR0,
/// and the size for every component the CPU supports; (0, 0) without XSAVE.
pub fn xsave_sizes() -> (u32, u32) {
    // SAFETY: CPUID is available on every x86-64 CPU; leaf 0xD answers zeros on one without XSAVE.
    #[allow(unused_unsafe)]
    let leaf = unsafe { __cpuid_count(0xd, 0) };
    (leaf.ebx, leaf.ecx)
}

/// Size of the standard-format XSAVE area for the components enabled in XCR0; the legacy FXSAVE area
/// (512) without XSAVE.
pub fn xsave_size() -> u32 {
    match xsave_sizes().0 {
        0 => 512,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn xcr0_has_x87_and_sse_and_size_covers_header() {
        assert_eq!(super::xcr0() & 0x3, 0x3);
        // Legacy area + XSAVE header at least; not a multiple of 64 in general (2440 with PKRU on AMD).
        assert!(super::xsave_size() >= 576);
    }
}
