//! The container's cgroup freezer, v1 (`freezer.state`) and v2 (`cgroup.freeze`), and the freeze-seize-
//! thaw policy of a checkpoint: they live in the engine ([`dormant_engine::freezer`]), which the CRIU RPC
//! server (`criu swrk`, CRIU's `freeze_cgroup`) shares with the agent.

pub use dormant_engine::freezer::{CgroupFreezer, FreezerKind, ThawGuard};
