//! Workload `wl_ipc`: the settings of an ipc namespace of its own.
//!
//! `wl_ipc TRIGGER DIR [--inject-fault]` unshares an ipc namespace (needs CAP_SYS_ADMIN), sets its limits
//! (`kernel/sem`, `msgmax`, `msgmnb`, `msgmni`, `shmmax`, `shmall`, `shmmni`) to values other than the
//! defaults, creates a semaphore set with two values, then chooses the ids of its next message queue,
//! semaphore set and shared memory segment (`kernel/*_next_id`) without creating them. After the trigger
//! every setting reads as before, the set has its id and values, and new objects get exactly the chosen ids.
//!
//! `--inject-fault` puts `kernel/sem` back to the kernel default and moves `kernel/msg_next_id` one on after
//! the trigger, before checking.

use std::process::ExitCode;

use dormant_tests::ipc::IpcSettings;
use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

fn body() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC)
        .map_err(|e| WorkloadError::setup("unshare(CLONE_NEWIPC)", e))?;
    let ipc = IpcSettings::apply()?;

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        ipc.damage();
    }

    let mut report = Report::new("wl_ipc");
    ipc.check(&mut report);
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_ipc", body)
}
