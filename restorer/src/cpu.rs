//! What this CPU and kernel enable for user FPU state: XCR0 and the XSAVE area size.

use core::arch::x86_64::__cpuid_count;

/// CPUID.1:ECX.OSXSAVE: the kernel enabled XSAVE and XGETBV is usable.
const OSXSAVE: u32 = 1 << 27;

/// The state components the kernel enabled (XCR0); 0x3 (x87 + SSE) when XSAVE is not in use.
pub fn xcr0() -> u64 {
    // SAFETY: CPUID is available on every x86-64 CPU.
    #[allow(unused_unsafe)]
    let leaf1 = unsafe { __cpuid_count(1, 0) };
    if leaf1.ecx & OSXSAVE == 0 {
        return 0x3;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX=0 reads XCR0; OSXSAVE (checked above) guarantees it does not fault.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Size of the standard-format XSAVE area for the components enabled in XCR0 (CPUID.(0xD,0).EBX).
pub fn xsave_size() -> u32 {
    // SAFETY: CPUID is available on every x86-64 CPU.
    #[allow(unused_unsafe)]
    let leaf = unsafe { __cpuid_count(0xd, 0) };
    leaf.ebx
}

#[cfg(test)]
mod tests {
    #[test]
    fn xcr0_has_x87_and_sse_and_size_covers_header() {
        assert_eq!(super::xcr0() & 0x3, 0x3);
        assert!(super::xsave_size() >= 576);
    }
}
