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

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const SETTINGS: [(&str, &str); 7] = [
    ("kernel/sem", "250\t32000\t32\t128"),
    ("kernel/msgmax", "4096"),
    ("kernel/msgmnb", "8192"),
    ("kernel/msgmni", "100"),
    ("kernel/shmmax", "16777216"),
    ("kernel/shmall", "65536"),
    ("kernel/shmmni", "2000"),
];

/// Ids chosen for the next objects: slot 5 of sequence 2, slot 2 of sequence 1, slot 3 of sequence 3.
const NEXT_MSG: i32 = 2 * 32768 + 5;
const NEXT_SEM: i32 = 32768 + 2;
const NEXT_SHM: i32 = 3 * 32768 + 3;

fn read(name: &str) -> Result<String, String> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|e| format!("/proc/sys/{name}: {e}"))
}

fn write(name: &str, value: &str) -> Result<(), String> {
    std::fs::write(format!("/proc/sys/{name}"), value)
        .map_err(|e| format!("writing {value:?} to /proc/sys/{name}: {e}"))
}

fn last_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn sem_values(id: i32) -> Result<[u16; 2], String> {
    let mut v = [0u16; 2];
    // SAFETY: GETALL writes one u16 per semaphore of the set (two) into `v`.
    if unsafe { libc::semctl(id, 0, libc::GETALL, v.as_mut_ptr()) } != 0 {
        return Err(last_err("semctl(GETALL)"));
    }
    Ok(v)
}

/// Creates one object of each kind and checks each got the chosen id; removes them again.
fn next_ids() -> Result<(), String> {
    let flags = libc::IPC_CREAT | 0o600;
    // SAFETY: plain System V calls creating objects of this namespace.
    let (msg, sem, shm) = unsafe {
        (
            libc::msgget(libc::IPC_PRIVATE, flags),
            libc::semget(libc::IPC_PRIVATE, 1, flags),
            libc::shmget(libc::IPC_PRIVATE, 4096, flags),
        )
    };
    // SAFETY: removing the objects just created (a failed one is -1 and the call fails harmlessly).
    unsafe {
        libc::msgctl(msg, libc::IPC_RMID, std::ptr::null_mut());
        libc::semctl(sem, 0, libc::IPC_RMID);
        libc::shmctl(shm, libc::IPC_RMID, std::ptr::null_mut());
    }
    if (msg, sem, shm) != (NEXT_MSG, NEXT_SEM, NEXT_SHM) {
        return Err(format!(
            "new msg/sem/shm ids are {msg}/{sem}/{shm}, want {NEXT_MSG}/{NEXT_SEM}/{NEXT_SHM}"
        ));
    }
    Ok(())
}

fn body() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC)
        .map_err(|e| WorkloadError::setup("unshare(CLONE_NEWIPC)", e))?;
    for (name, value) in SETTINGS {
        write(name, value).map_err(|e| WorkloadError::setup(name, e))?;
    }
    // SAFETY: creates a semaphore set of this namespace.
    let set = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
    if set < 0 {
        return Err(WorkloadError::setup("semget", last_err("semget")));
    }
    let values = [7u16, 3u16];
    // SAFETY: SETALL reads one u16 per semaphore of the set from `values`.
    if unsafe { libc::semctl(set, 0, libc::SETALL, values.as_ptr()) } != 0 {
        return Err(WorkloadError::setup("semctl", last_err("SETALL")));
    }
    for (name, id) in [
        ("kernel/msg_next_id", NEXT_MSG),
        ("kernel/sem_next_id", NEXT_SEM),
        ("kernel/shm_next_id", NEXT_SHM),
    ] {
        write(name, &id.to_string()).map_err(|e| WorkloadError::setup(name, e))?;
    }
    let before: Vec<(String, Result<String, String>)> = SETTINGS
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(["kernel/msg_next_id".into(), "kernel/sem_next_id".into()])
        .chain(["kernel/shm_next_id".into()])
        .map(|n| {
            let v = read(&n);
            (n, v)
        })
        .collect();

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        let _ = write("kernel/sem", "32000 1024000000 500 32000");
        let _ = write("kernel/msg_next_id", &(NEXT_MSG + 1).to_string());
    }

    let mut report = Report::new("wl_ipc");
    for (name, was) in &before {
        let now = read(name);
        report.check(
            name,
            if &now == was {
                Ok(())
            } else {
                Err(format!("reads {now:?}, was {was:?}"))
            },
        );
    }
    report.check(
        "sem-set",
        sem_values(set).and_then(|v| {
            if v == values {
                Ok(())
            } else {
                Err(format!("set {set} holds {v:?}, want {values:?}"))
            }
        }),
    );
    report.check("next-ids", next_ids());
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_ipc", body)
}
