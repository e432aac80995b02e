//! Workload `wl_container`: the process inside the Kata-like container that `ctr_agent` builds.
//!
//! `wl_container TRIGGER DIR [--inject-fault]`, started by the container's busybox shell (pid 1 of the
//! container's pid namespace), so the container is a tree `sh → wl_container`.
//!
//! It sets up and, after the trigger, verifies:
//! - the hostname the container was given (uts namespace);
//! - a System V shared memory segment (ipc namespace) with a byte pattern, attached: same id, key and size,
//!   same bytes through the old attachment and a fresh one;
//! - the ipc namespace's limits (set by `ctr_agent`) and a semaphore set's values ([`dormant_tests::ipc`]);
//! - a POSIX shm file `/dev/shm/dormant-posix` mapped `MAP_SHARED` (tmpfs content of /dev/shm): the mapping
//!   still holds the pattern and is still the file's memory (a write through the mapping is read back
//!   through the file), and an unmapped file `/dev/shm/plain` keeps its content and mode;
//! - its own `/proc/self/mountinfo`, normalised (mount and peer-group ids renumbered, device numbers left
//!   out), is the same tree as before;
//! - its parent is still the shell, pid 1;
//! - the container's /proc shows the container's pid namespace: `/proc/self` is its own (inner) pid,
//!   `/proc/1` is the shell, and its `NSpid` has one level (a proc of an outer namespace shows two).

use std::fs;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::process::ExitCode;

use dormant_tests::ipc::IpcSettings;
use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const HOSTNAME: &str = "dormant-ctr";
const SYSV_KEY: libc::key_t = 0x4452_4d54;
const SYSV_SIZE: usize = 64 << 10;
const POSIX_PATH: &str = "/dev/shm/dormant-posix";
const POSIX_SIZE: usize = 256 << 10;
const PLAIN_PATH: &str = "/dev/shm/plain";
const PLAIN_TEXT: &str = "dev/shm content that must survive a checkpoint\n";

fn pattern(i: usize, salt: u8) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(salt)
}

fn hostname() -> Result<String, String> {
    nix::unistd::gethostname()
        .map_err(|e| format!("gethostname: {e}"))
        .map(|h| h.to_string_lossy().into_owned())
}

/// A System V segment, attached.
struct SysvShm {
    id: i32,
    addr: *mut u8,
}

impl SysvShm {
    fn create() -> Result<Self, WorkloadError> {
        // SAFETY: plain syscall wrappers; the segment is attached at an address the kernel chooses and is
        // written only within its SYSV_SIZE bytes.
        unsafe {
            let id = libc::shmget(
                SYSV_KEY,
                SYSV_SIZE,
                libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
            );
            if id < 0 {
                return Err(WorkloadError::setup(
                    "shmget",
                    std::io::Error::last_os_error(),
                ));
            }
            let addr = libc::shmat(id, std::ptr::null(), 0);
            if addr as isize == -1 {
                return Err(WorkloadError::setup(
                    "shmat",
                    std::io::Error::last_os_error(),
                ));
            }
            let addr = addr.cast::<u8>();
            for i in 0..SYSV_SIZE {
                *addr.add(i) = pattern(i, 3);
            }
            Ok(Self { id, addr })
        }
    }

    fn check_bytes(addr: *const u8, what: &str) -> Result<(), String> {
        for i in 0..SYSV_SIZE {
            // SAFETY: addr is an attachment of SYSV_SIZE bytes.
            let b = unsafe { *addr.add(i) };
            if b != pattern(i, 3) {
                return Err(format!(
                    "{what}: byte {i} is {b:#x}, want {:#x}",
                    pattern(i, 3)
                ));
            }
        }
        Ok(())
    }

    fn verify(&self) -> Result<(), String> {
        // SAFETY: shmid_ds is plain data the kernel fills.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: ds is a valid out-pointer.
        if unsafe { libc::shmctl(self.id, libc::IPC_STAT, &mut ds) } < 0 {
            return Err(format!(
                "shmctl(IPC_STAT, id {}): {}",
                self.id,
                std::io::Error::last_os_error()
            ));
        }
        if ds.shm_perm.__key != SYSV_KEY || ds.shm_segsz != SYSV_SIZE {
            return Err(format!(
                "segment {} has key {:#x} size {}, want {SYSV_KEY:#x} {SYSV_SIZE}",
                self.id, ds.shm_perm.__key, ds.shm_segsz
            ));
        }
        // SAFETY: plain syscall.
        let by_key = unsafe { libc::shmget(SYSV_KEY, 0, 0) };
        if by_key != self.id {
            return Err(format!(
                "key {SYSV_KEY:#x} names id {by_key}, want {}",
                self.id
            ));
        }
        Self::check_bytes(self.addr, "old attachment")?;
        // SAFETY: a fresh read-only attachment, detached right after the check.
        let fresh = unsafe { libc::shmat(self.id, std::ptr::null(), libc::SHM_RDONLY) };
        if fresh as isize == -1 {
            return Err(format!("shmat again: {}", std::io::Error::last_os_error()));
        }
        let r = Self::check_bytes(fresh.cast::<u8>(), "fresh attachment");
        // SAFETY: detaching the attachment made above.
        unsafe { libc::shmdt(fresh) };
        r
    }
}

/// The POSIX shm file and its shared mapping.
struct PosixShm {
    file: fs::File,
    map: *mut u8,
}

impl PosixShm {
    fn create() -> Result<Self, WorkloadError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(POSIX_PATH)
            .map_err(|e| WorkloadError::setup(format!("create {POSIX_PATH}"), e))?;
        file.set_len(POSIX_SIZE as u64)
            .map_err(|e| WorkloadError::setup("ftruncate", e))?;
        use std::os::fd::AsRawFd;
        // SAFETY: a new shared mapping of the whole file; written only within POSIX_SIZE bytes.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                POSIX_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(WorkloadError::setup(
                "mmap posix shm",
                std::io::Error::last_os_error(),
            ));
        }
        let map = map.cast::<u8>();
        for i in 0..POSIX_SIZE {
            // SAFETY: inside the mapping.
            unsafe { *map.add(i) = pattern(i, 11) };
        }
        Ok(Self { file, map })
    }

    fn verify(&self) -> Result<(), String> {
        for i in 0..POSIX_SIZE {
            // SAFETY: inside the mapping.
            let b = unsafe { *self.map.add(i) };
            if b != pattern(i, 11) {
                return Err(format!("mapping byte {i} is {b:#x}"));
            }
        }
        let mut from_file = vec![0u8; POSIX_SIZE];
        self.file
            .read_exact_at(&mut from_file, 0)
            .map_err(|e| format!("read {POSIX_PATH}: {e}"))?;
        if let Some(i) = (0..POSIX_SIZE).find(|&i| from_file[i] != pattern(i, 11)) {
            return Err(format!("file byte {i} is {:#x}", from_file[i]));
        }
        // Still the same memory: a write through the mapping is seen through the file.
        // SAFETY: inside the mapping.
        unsafe { *self.map.add(4097) = 0xA5 };
        let mut one = [0u8; 1];
        self.file
            .read_exact_at(&mut one, 4097)
            .map_err(|e| format!("read back {POSIX_PATH}: {e}"))?;
        if one[0] != 0xA5 {
            return Err(format!(
                "a write through the mapping is not in the file (read {:#x}): mapping no longer shared",
                one[0]
            ));
        }
        Ok(())
    }
}

/// `/proc/self/mountinfo` with mount ids, parent ids and device numbers dropped, peer groups renumbered in
/// order of first appearance, lines sorted: two trees compare equal when they have the same shape.
fn normalised_mountinfo() -> Result<Vec<String>, String> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("mountinfo: {e}"))?;
    let mut lines: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            return Err(format!("mountinfo line without separator: {line}"));
        };
        if sep < 6 || f.len() < sep + 4 {
            return Err(format!("short mountinfo line: {line}"));
        }
        // mountpoint, root, fstype, source, per-mount options, super options, then optional fields.
        let mut out = vec![
            f[4].to_string(),
            f[3].to_string(),
            f[sep + 1].to_string(),
            f[sep + 2].to_string(),
            f[5].to_string(),
            f[sep + 3].to_string(),
        ];
        out.extend(f[6..sep].iter().map(|s| s.to_string()));
        lines.push(out);
    }
    lines.sort();
    let mut groups: Vec<String> = Vec::new();
    let mut result = Vec::new();
    for l in lines {
        let mut parts: Vec<String> = l[..6].to_vec();
        for opt in &l[6..] {
            let renamed = match opt.split_once(':') {
                Some((tag, n)) if ["shared", "master", "propagate_from"].contains(&tag) => {
                    let idx = groups.iter().position(|g| g == n).unwrap_or_else(|| {
                        groups.push(n.to_string());
                        groups.len() - 1
                    });
                    format!("{tag}:g{idx}")
                }
                _ => opt.clone(),
            };
            parts.push(renamed);
        }
        result.push(parts.join(" "));
    }
    Ok(result)
}

/// Checks that /proc is a proc of this process's own pid namespace.
fn proc_is_own_pid_namespace() -> Result<(), String> {
    let me = std::process::id().to_string();
    let link = fs::read_link("/proc/self").map_err(|e| format!("readlink /proc/self: {e}"))?;
    if link.to_string_lossy() != me {
        return Err(format!(
            "/proc/self is {}, but getpid() is {me}: /proc shows another pid namespace",
            link.display()
        ));
    }
    let init = fs::read_to_string("/proc/1/status").map_err(|e| format!("/proc/1/status: {e}"))?;
    let name = init.lines().find_map(|l| l.strip_prefix("Name:\t"));
    if name != Some("sh") {
        return Err(format!("/proc/1 is {name:?}, want the container's shell"));
    }
    let own =
        fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let nspid = own.lines().find_map(|l| l.strip_prefix("NSpid:"));
    if nspid.map(|v| v.split_whitespace().collect::<Vec<_>>()) != Some(vec![me.as_str()]) {
        return Err(format!(
            "NSpid is {nspid:?} in /proc/self/status, want only {me}"
        ));
    }
    Ok(())
}

fn body() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    let host = hostname().map_err(|e| WorkloadError::setup("hostname", e))?;
    if host != HOSTNAME {
        return Err(WorkloadError::setup(
            "hostname",
            format!("is {host}, the container should be {HOSTNAME}"),
        ));
    }
    proc_is_own_pid_namespace().map_err(|e| WorkloadError::setup("/proc", e))?;
    let sysv = SysvShm::create()?;
    let ipc = IpcSettings::observe()?;
    let posix = PosixShm::create()?;
    fs::write(PLAIN_PATH, PLAIN_TEXT).map_err(|e| WorkloadError::setup(PLAIN_PATH, e))?;
    fs::set_permissions(PLAIN_PATH, fs::Permissions::from_mode(0o640))
        .map_err(|e| WorkloadError::setup(PLAIN_PATH, e))?;
    let mounts = normalised_mountinfo().map_err(|e| WorkloadError::setup("mountinfo", e))?;
    let ppid = nix::unistd::getppid().as_raw();

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        let _ = fs::write(PLAIN_PATH, "damaged\n");
        ipc.damage();
    }

    let mut report = Report::new("wl_container");
    report.check(
        "hostname",
        hostname().and_then(|h| {
            if h == HOSTNAME {
                Ok(())
            } else {
                Err(format!("is {h}, want {HOSTNAME}"))
            }
        }),
    );
    report.check("sysv-shm", sysv.verify());
    ipc.check(&mut report);
    report.check("posix-shm-mapping", posix.verify());
    report.check(
        "dev-shm-plain-file",
        fs::metadata(PLAIN_PATH)
            .map_err(|e| format!("{PLAIN_PATH}: {e}"))
            .and_then(|md| {
                let text = fs::read_to_string(PLAIN_PATH).map_err(|e| e.to_string())?;
                let mode = md.permissions().mode() & 0o7777;
                if text != PLAIN_TEXT || mode != 0o640 {
                    Err(format!("content {text:?} mode {mode:o}"))
                } else {
                    Ok(())
                }
            }),
    );
    report.check(
        "mountinfo",
        normalised_mountinfo().and_then(|now| {
            if now == mounts {
                Ok(())
            } else {
                let gone: Vec<_> = mounts.iter().filter(|l| !now.contains(l)).collect();
                let new: Vec<_> = now.iter().filter(|l| !mounts.contains(l)).collect();
                Err(format!(
                    "tree changed: before only {gone:?}; now only {new:?}"
                ))
            }
        }),
    );
    report.check("proc-shows-own-pid-namespace", proc_is_own_pid_namespace());
    report.check(
        "parent-is-container-shell",
        match nix::unistd::getppid().as_raw() {
            p if p == ppid && p == 1 => Ok(()),
            p => Err(format!("ppid is {p}, was {ppid}, want 1")),
        },
    );
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_container", body)
}
