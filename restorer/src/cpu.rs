//! What this CPU and kernel enable for user FPU state: XCR0 and the XSAVE area size (dormant-sys's, the
//! values the dumper records).

pub use dormant_sys::cpu::{xcr0, xsave_size};
