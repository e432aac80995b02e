//! The task's registers: each thread's general-purpose registers and XSAVE area go into its signal frame
//! (laid out by [`crate::area`]), and the tracer checks each thread's rip after its final `rt_sigreturn`.

use dormant_image::records::{GpRegs, ThreadCore};

use crate::area::ThreadInput;
use crate::image::TaskImage;
use crate::launch::OtherThread;

/// The registers thread `t` returns into.
pub fn of(t: &ThreadCore) -> (GpRegs, Vec<u8>) {
    (t.regs, t.xstate.clone())
}

/// The rip the leader must have after its final `rt_sigreturn`, and every other thread's ids (as the blob
/// creates it, `threads`) and rip.
pub fn expected_rips(task: &TaskImage, threads: &[ThreadInput]) -> (u64, Vec<OtherThread>) {
    let others = threads
        .iter()
        .zip(task.threads())
        .skip(1)
        .map(|(input, o)| OtherThread {
            tid: input.tid,
            ns_tid: input.ns_tid,
            rip: o.regs.rip,
        })
        .collect();
    (task.thread.regs.rip, others)
}
