//! Processes and their memory layout: `clone_args`, `prctl_mm_map`, prctl and arch_prctl numbers.

/// Highest address of user space on x86-64 with 4-level paging (`TASK_SIZE_MAX`).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

pub const CLONE_VM: u64 = 0x100;
pub const CLONE_FS: u64 = 0x200;
pub const CLONE_FILES: u64 = 0x400;
pub const CLONE_SIGHAND: u64 = 0x800;
pub const CLONE_PARENT: u64 = 0x8000;
pub const CLONE_THREAD: u64 = 0x10000;
pub const CLONE_SYSVSEM: u64 = 0x40000;

/// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7); clone3 takes its size,
/// so the same struct serves kernels from 5.5 on as long as `cgroup` stays 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    /// `*const pid_t`: the pids wanted, innermost pid namespace first.
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

pub const PR_SET_PDEATHSIG: u64 = 1;
pub const PR_GET_PDEATHSIG: u64 = 2;
pub const PR_GET_DUMPABLE: u64 = 3;
pub const PR_SET_DUMPABLE: u64 = 4;
pub const PR_SET_NAME: u64 = 15;
/// `prctl(PR_SET_THP_DISABLE, on, flags)`; flags may hold `PR_THP_DISABLE_EXCEPT_ADVISED` (bit 1).
pub const PR_SET_THP_DISABLE: u64 = 41;
pub const PR_CAPBSET_DROP: u64 = 24;
pub const PR_GET_SECUREBITS: u64 = 27;
pub const PR_SET_SECUREBITS: u64 = 28;
pub const PR_SET_NO_NEW_PRIVS: u64 = 38;
pub const PR_CAP_AMBIENT: u64 = 47;
pub const PR_CAP_AMBIENT_RAISE: u64 = 2;
pub const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;
pub const PR_SET_MM: u64 = 35;
pub const PR_SET_MM_MAP: u64 = 14;
pub const PR_SET_MM_MAP_SIZE: u64 = 15;
pub const PR_GET_CHILD_SUBREAPER: u64 = 37;
pub const PR_GET_TID_ADDRESS: u64 = 40;
/// `PR_TIMER_CREATE_RESTORE_IDS` (6.17): timer_create takes the id in `*timer_id` while it is on.
pub const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
pub const PR_TIMER_CREATE_RESTORE_IDS_OFF: u64 = 0;
pub const PR_TIMER_CREATE_RESTORE_IDS_ON: u64 = 1;

/// Securebits (`linux/securebits.h`): uid changes leave the capability sets alone.
pub const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
/// Securebits: a change away from uid 0 keeps the permitted set.
pub const SECBIT_KEEP_CAPS: u64 = 1 << 4;

/// `_LINUX_CAPABILITY_VERSION_3`: capget/capset with two `CapData` (64 capability bits).
pub const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapHeader {
    pub version: u32,
    /// 0: the calling thread.
    pub pid: i32,
}

/// `struct __user_cap_data_struct`: 32 bits of each set; version 3 takes two (low bits first).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

pub const PR_SET_TIMERSLACK: u64 = 29;
pub const PR_SET_SECCOMP: u64 = 22;

/// `SECCOMP_MODE_*` (the `Seccomp:` field of `/proc/PID/status`).
pub const SECCOMP_MODE_DISABLED: u32 = 0;
pub const SECCOMP_MODE_STRICT: u32 = 1;
pub const SECCOMP_MODE_FILTER: u32 = 2;
/// `seccomp(2)` operations and filter flags.
pub const SECCOMP_SET_MODE_STRICT: u64 = 0;
pub const SECCOMP_SET_MODE_FILTER: u64 = 1;
pub const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
pub const SECCOMP_FILTER_FLAG_LOG: u64 = 2;
/// The action a filter returns to hand a syscall to a user-space supervisor (`SECCOMP_RET_USER_NOTIF`).
pub const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// The mask of a filter return value's action (`SECCOMP_RET_ACTION_FULL`).
pub const SECCOMP_RET_ACTION_FULL: u32 = 0xffff_0000;
/// Most instructions one filter may have (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// `struct sock_filter`: one classic BPF instruction.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `struct sock_fprog`: a filter program (`filter` is the address of `len` instructions).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockFprog {
    pub len: u16,
    pub _pad: [u16; 3],
    pub filter: u64,
}

/// Scheduling policies (`SCHED_*`) and the one flag `sched_getattr` reports back besides them.
pub const SCHED_OTHER: u32 = 0;
pub const SCHED_FIFO: u32 = 1;
pub const SCHED_RR: u32 = 2;
pub const SCHED_BATCH: u32 = 3;
pub const SCHED_IDLE: u32 = 5;
pub const SCHED_DEADLINE: u32 = 6;
pub const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;
pub const SCHED_FLAG_UTIL_CLAMP_MIN: u64 = 0x20;
pub const SCHED_FLAG_UTIL_CLAMP_MAX: u64 = 0x40;
/// The largest utilization clamp (`SCHED_CAPACITY_SCALE`): `util_max`'s default.
pub const SCHED_CAPACITY_SCALE: u32 = 1024;

/// `struct sched_attr` (`SCHED_ATTR_SIZE_VER1`, with the utilization clamps).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// `IOPRIO_CLASS_*` as the top bits of an I/O priority (`ioprio >> 13`).
pub const IOPRIO_CLASS_SHIFT: u32 = 13;
pub const IOPRIO_CLASS_NONE: u32 = 0;

pub const FUTEX_WAIT_PRIVATE: u64 = 128;
pub const FUTEX_WAKE_PRIVATE: u64 = 129;

pub const ARCH_SET_GS: u64 = 0x1001;
pub const ARCH_SET_FS: u64 = 0x1002;
/// Maps the vDSO (and its data pages) at a given address; fails with EEXIST while one is mapped.
pub const ARCH_MAP_VDSO_64: u64 = 0x2003;

/// The kernel's `struct prctl_mm_map` (`PR_SET_MM`, `PR_SET_MM_MAP`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrctlMmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Address of the saved auxv (native words).
    pub auxv: u64,
    /// Size of the auxv in bytes.
    pub auxv_size: u32,
    /// fd of the executable, or `u32::MAX` to leave `/proc/self/exe` alone.
    pub exe_fd: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        // CLONE_ARGS_SIZE_VER2 and sizeof(struct prctl_mm_map).
        assert_eq!(core::mem::size_of::<CloneArgs>(), 88);
        assert_eq!(core::mem::size_of::<PrctlMmMap>(), 104);
    }

    #[cfg(feature = "std")]
    #[test]
    fn clone_args_match_libc() {
        assert_eq!(
            core::mem::size_of::<CloneArgs>(),
            core::mem::size_of::<libc::clone_args>()
        );
        assert_eq!(
            core::mem::offset_of!(CloneArgs, set_tid),
            core::mem::offset_of!(libc::clone_args, set_tid)
        );
    }
}
