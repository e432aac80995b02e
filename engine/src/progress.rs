//! Progress of one dump through its [`DumpStage`]s: per-stage timings, the test hooks, injected failures.

use std::time::{Duration, Instant};

use dormant_image::records::Pid;

use crate::error::{DumpError, Result};
use crate::stage::DumpStage;

/// Called on the dumping thread after each stage completes (a test hook).
pub type StageHook = Box<dyn FnMut(DumpStage, Pid)>;

/// Per-run progress: the stage being worked on and the timings so far.
pub struct Progress {
    pid: u32,
    current: DumpStage,
    started: Instant,
    phases: Vec<(DumpStage, Duration)>,
    fail_at: Option<DumpStage>,
    hook: Option<StageHook>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("pid", &self.pid)
            .field("current", &self.current)
            .field("phases", &self.phases)
            .field("fail_at", &self.fail_at)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// Starts at [`DumpStage::Seize`] at `started`.
    pub fn new(
        pid: u32,
        started: Instant,
        fail_at: Option<DumpStage>,
        hook: Option<StageHook>,
    ) -> Self {
        Self {
            pid,
            current: DumpStage::Seize,
            started,
            phases: Vec::new(),
            fail_at,
            hook,
        }
    }

    /// The stage being worked on (the one a failure happened in).
    pub fn current(&self) -> DumpStage {
        self.current
    }

    /// The completed stages with their durations, in order.
    pub fn into_phases(self) -> Vec<(DumpStage, Duration)> {
        self.phases
    }

    /// Marks `stage` complete: records its time, runs the hook, fires an injected failure.
    pub fn done(&mut self, stage: DumpStage) -> Result<()> {
        self.record(stage);
        self.fail_point(stage)
    }

    /// Records the time of `stage` without running its hook or failure point.
    pub fn record(&mut self, stage: DumpStage) {
        let now = Instant::now();
        self.phases.push((stage, now - self.started));
        self.started = now;
    }

    /// Runs the hook and fires an injected failure for `stage`.
    pub fn fail_point(&mut self, stage: DumpStage) -> Result<()> {
        if let Some(hook) = self.hook.as_mut() {
            hook(stage, Pid(self.pid));
        }
        if self.fail_at == Some(stage) {
            return Err(DumpError::InjectedFailure {
                pid: self.pid,
                stage,
            });
        }
        self.current = stage.next();
        Ok(())
    }
}
