//! The stages of a dump, in order. A module of its own, depending on nothing, so that errors
//! ([`crate::error`]) can name a stage without depending on the orchestration ([`crate::dump`]).

/// The stages of a dump, in order. Used for per-phase timings, for errors saying when a target vanished,
/// and by tests to inject failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DumpStage {
    /// The target is seized and stopped.
    Seize,
    /// Registers, XSAVE area, signal mask, pending signals, rseq read with ptrace.
    Registers,
    /// In-process state asked from the task (sigactions, itimers, brk, ...).
    Remote,
    /// `/proc` state: creds, limits, mm layout, auxv, exe.
    ProcState,
    /// File descriptors.
    Files,
    /// Mappings and page data.
    Memory,
    /// Record files written.
    Records,
    /// Image committed (an injected failure here fires just before the commit).
    Commit,
}

impl DumpStage {
    /// Every stage, in order.
    pub const ALL: [DumpStage; 8] = [
        DumpStage::Seize,
        DumpStage::Registers,
        DumpStage::Remote,
        DumpStage::ProcState,
        DumpStage::Files,
        DumpStage::Memory,
        DumpStage::Records,
        DumpStage::Commit,
    ];

    /// The stage after this one (the last stays the last).
    pub fn next(self) -> DumpStage {
        let i = DumpStage::ALL.iter().position(|x| *x == self).unwrap_or(0);
        DumpStage::ALL[(i + 1).min(DumpStage::ALL.len() - 1)]
    }
}
