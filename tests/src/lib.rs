//! dormant-tests: self-verifying workloads and the privileged end-to-end test harness.
//!
//! Two halves share this crate. [`workload`] is linked into the workload programs (`src/bin/wl_*.rs`): the
//! protocol side (`READY <pid>`, the trigger file, one `ok`/`FAIL` line per check, the final verdict).
//! [`harness`] is used by the integration tests in `tests/`: it starts a workload, runs the `dormant` binary
//! to dump and restore it, and reads the workload's verdict. [`maps`] parses `/proc/<pid>/smaps`, which the
//! memory workload uses to compare its mappings before and after a checkpoint. [`runtimes`] drives runc,
//! podman and containerd with dormant installed as their `criu`.
//!
//! This crate does not dump or restore anything itself: it drives the `dormant` CLI exactly as a user would,
//! so the end-to-end tests test the shipped binary. The protocol is described in `tests/README.md`.

pub mod container;
pub mod harness;
pub mod ipc;
pub mod kata;
pub mod maps;
pub mod runtimes;
pub mod workload;
