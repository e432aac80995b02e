//! The task's registers: each thread's general-purpose registers and XSAVE area go into its signal frame
//! (laid out by [`crate::area`]), and the tracer checks each thread's rip after its final `rt_sigreturn`.

use dormant_image::records::{GpRegs, ThreadCore};

use crate::image::TaskImage;

/// The registers thread `t` returns into.
pub fn of(t: &ThreadCore) -> (GpRegs, Vec<u8>) {
    (t.regs, t.xstate.clone())
}

/// The rip the leader must have after its final `rt_sigreturn`, and every other thread's tid and rip.
pub fn expected_rips(task: &TaskImage) -> (u64, Vec<(u32, u64)>) {
    let others = task
        .other_threads
        .iter()
        .map(|o| (o.tid.0, o.regs.rip))
        .collect();
    (task.thread.regs.rip, others)
}
