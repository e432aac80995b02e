//! The settings of an ipc namespace that a workload changes away from their defaults and checks after a
//! restore: the limits (`kernel/sem`, `msgmax`, `msgmnb`, `msgmni`, `shmmax`, `shmall`, `shmmni`), a
//! semaphore set with two values, and the ids its next message queue, semaphore set and shared memory
//! segment will get (`kernel/*_next_id`), chosen without creating them. Used by `wl_ipc` (a namespace of
//! its own, which it sets up itself) and `wl_container`: a container's /proc/sys is read-only, so there
//! `ctr_agent` writes the limits when it builds the container (as a runtime applies an OCI spec's
//! `linux.sysctl`), and the workload checks them and its semaphore set; the next ids stay the kernel's.

use crate::workload::{Report, WorkloadError};

/// The limits, as `/proc/sys` names them, and the values written.
pub const SETTINGS: [(&str, &str); 7] = [
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

const NEXT_IDS: [(&str, i32); 3] = [
    ("kernel/msg_next_id", NEXT_MSG),
    ("kernel/sem_next_id", NEXT_SEM),
    ("kernel/shm_next_id", NEXT_SHM),
];

const SEM_VALUES: [u16; 2] = [7, 3];

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

/// Writes the limits of [`SETTINGS`] under `proc_sys` (a `/proc/sys` of the ipc namespace to change).
pub fn write_limits(proc_sys: &std::path::Path) -> std::io::Result<()> {
    for (name, value) in SETTINGS {
        std::fs::write(proc_sys.join(name), value)?;
    }
    Ok(())
}

/// What [`IpcSettings::apply`] or [`IpcSettings::observe`] set up, as read back right after.
#[derive(Debug)]
pub struct IpcSettings {
    set: i32,
    before: Vec<(String, Result<String, String>)>,
    next_ids: bool,
}

impl IpcSettings {
    /// Changes every setting of the caller's ipc namespace, creates the semaphore set and chooses the
    /// next ids (last: creating the set takes an id).
    pub fn apply() -> Result<Self, WorkloadError> {
        for (name, value) in SETTINGS {
            write(name, value).map_err(|e| WorkloadError::setup(name, e))?;
        }
        let set = Self::sem_set()?;
        for (name, id) in NEXT_IDS {
            write(name, &id.to_string()).map_err(|e| WorkloadError::setup(name, e))?;
        }
        Ok(Self::read_back(set, true))
    }

    /// Checks the limits someone else set ([`write_limits`]: the caller's /proc/sys is read-only) and
    /// creates the semaphore set; the next ids are left to the kernel.
    pub fn observe() -> Result<Self, WorkloadError> {
        for (name, value) in SETTINGS {
            let now = read(name).map_err(|e| WorkloadError::setup(name, e))?;
            if now.split_whitespace().ne(value.split_whitespace()) {
                return Err(WorkloadError::setup(
                    name,
                    format!("reads {now:?}, the container was given {value:?}"),
                ));
            }
        }
        let set = Self::sem_set()?;
        Ok(Self::read_back(set, false))
    }

    fn sem_set() -> Result<i32, WorkloadError> {
        // SAFETY: creates a semaphore set of this namespace.
        let set = unsafe { libc::semget(libc::IPC_PRIVATE, 2, libc::IPC_CREAT | 0o600) };
        if set < 0 {
            return Err(WorkloadError::setup("semget", last_err("semget")));
        }
        // SAFETY: SETALL reads one u16 per semaphore of the set from `SEM_VALUES`.
        if unsafe { libc::semctl(set, 0, libc::SETALL, SEM_VALUES.as_ptr()) } != 0 {
            return Err(WorkloadError::setup("semctl", last_err("SETALL")));
        }
        Ok(set)
    }

    fn read_back(set: i32, next_ids: bool) -> Self {
        let before = SETTINGS
            .iter()
            .map(|(n, _)| *n)
            .chain(NEXT_IDS.iter().filter(|_| next_ids).map(|(n, _)| *n))
            .map(|n| (n.to_string(), read(n)))
            .collect();
        Self {
            set,
            before,
            next_ids,
        }
    }

    /// What a restore that loses the settings leaves: `kernel/sem` back at the kernel default and
    /// `kernel/msg_next_id` one on (neither can be written where /proc/sys is read-only), and the
    /// semaphore set's first value changed.
    pub fn damage(&self) {
        let _ = write("kernel/sem", "32000 1024000000 500 32000");
        let _ = write("kernel/msg_next_id", &(NEXT_MSG + 1).to_string());
        // SAFETY: SETVAL takes the new value as an int argument.
        unsafe { libc::semctl(self.set, 0, libc::SETVAL, 1) };
    }

    /// One check per setting (named by its sysctl), `sem-set` and, after [`IpcSettings::apply`], `next-ids`.
    pub fn check(&self, report: &mut Report) {
        for (name, was) in &self.before {
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
            sem_values(self.set).and_then(|v| {
                if v == SEM_VALUES {
                    Ok(())
                } else {
                    Err(format!("set {} holds {v:?}, want {SEM_VALUES:?}", self.set))
                }
            }),
        );
        if self.next_ids {
            report.check("next-ids", next_ids());
        }
    }
}
