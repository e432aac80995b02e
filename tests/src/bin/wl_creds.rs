//! Workload `wl_creds`: credentials that differ per thread, checked after a restore field by field and by
//! using them (what a dropped capability must still forbid).
//!
//! `wl_creds TRIGGER DIR [--inject-fault]`, run as root. Three threads each set their own credentials with
//! raw syscalls (per thread, as the kernel keeps them; glibc's setxid would set every thread's):
//! - `main`: uids 1000/1001/1002 fs 1003, gids 1010/1011/1012 fs 1013, groups 1000 27 44; permitted
//!   DAC_OVERRIDE DAC_READ_SEARCH NET_BIND_SERVICE NET_RAW, effective DAC_OVERRIDE DAC_READ_SEARCH (to
//!   see its trigger), inheritable NET_BIND_SERVICE NET_RAW, ambient NET_BIND_SERVICE; CHOWN and SYS_ADMIN
//!   dropped from the bounding set; securebits KEEP_CAPS NOROOT NOROOT_LOCKED; no_new_privs. Afterwards
//!   the process sets dumpable to 1 again (the uid change reset it to 0).
//! - `t1`: uid and gid 2000 everywhere, groups 2000; permitted DAC_READ_SEARCH NET_ADMIN, effective
//!   DAC_READ_SEARCH; SYS_ADMIN dropped from the bounding set; securebits 0; no no_new_privs.
//! - `t2`: stays uid 0, but drops CHOWN and SYS_ADMIN from its permitted, effective and bounding sets;
//!   securebits NO_SETUID_FIXUP.
//!
//! After the trigger each thread compares its `/proc/thread-self/status` credential lines (Uid, Gid,
//! Groups, CapInh/Prm/Eff/Bnd/Amb, NoNewPrivs) and its securebits with what it had when it said READY,
//! and tries what its dropped capabilities forbid: `t1` `setresuid(0, 0, 0)`, `t2` a capset raising
//! SYS_ADMIN and a chown of a file; `main` reads its ambient NET_BIND_SERVICE and the dumpable flag.
//! `--inject-fault` makes `main` change its fsuid and `t2` drop one more capability after the trigger.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const CAP_CHOWN: u32 = 0;
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

const SECBIT_NOROOT: u64 = 1 << 0;
const SECBIT_NOROOT_LOCKED: u64 = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
const SECBIT_KEEP_CAPS: u64 = 1 << 4;

/// The status lines that make up a thread's credentials.
const CRED_LINES: [&str; 9] = [
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
];

fn bit(cap: u32) -> u64 {
    1 << cap
}

/// A raw system call of the calling thread; `Err(errno)` on failure.
fn sys(nr: libc::c_long, a: [u64; 4]) -> Result<i64, i32> {
    // SAFETY: the callers pass plain integers or pointers to live locals for the calls they name.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], 0u64, 0u64) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

fn step(what: &str, r: Result<i64, i32>) -> Result<(), String> {
    r.map(drop)
        .map_err(|e| format!("{what}: {}", std::io::Error::from_raw_os_error(e)))
}

fn prctl(op: libc::c_int, a2: u64, a3: u64) -> Result<i64, i32> {
    sys(libc::SYS_prctl, [op as u64, a2, a3, 0])
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> Result<(u64, u64, u64), String> {
    let mut h = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    let hp = &mut h as *mut CapHeader as u64;
    step(
        "capget",
        sys(libc::SYS_capget, [hp, d.as_mut_ptr() as u64, 0, 0]),
    )?;
    let j = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    Ok((
        j(d[0].effective, d[1].effective),
        j(d[0].permitted, d[1].permitted),
        j(d[0].inheritable, d[1].inheritable),
    ))
}

fn capset(eff: u64, prm: u64, inh: u64) -> Result<i64, i32> {
    let mut h = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let half = |s: u32| CapData {
        effective: (eff >> s) as u32,
        permitted: (prm >> s) as u32,
        inheritable: (inh >> s) as u32,
    };
    let d = [half(0), half(32)];
    let hp = &mut h as *mut CapHeader as u64;
    sys(libc::SYS_capset, [hp, d.as_ptr() as u64, 0, 0])
}

/// The credentials a thread sets on itself.
struct Plan {
    groups: &'static [u32],
    uids: [u32; 4],
    gids: [u32; 4],
    prm: u64,
    eff: u64,
    inh: u64,
    amb: &'static [u32],
    drop_bounding: &'static [u32],
    securebits: u64,
    no_new_privs: bool,
}

/// Sets the calling thread's credentials to `p`, as a program would (keep-caps across the uid change).
fn set_own(p: &Plan) -> Result<(), String> {
    let g = p.groups.as_ptr() as u64;
    step(
        "setgroups",
        sys(libc::SYS_setgroups, [p.groups.len() as u64, g, 0, 0]),
    )?;
    step(
        "keep caps",
        prctl(libc::PR_SET_SECUREBITS, SECBIT_KEEP_CAPS, 0),
    )?;
    let [r, e, s, f] = p.gids.map(u64::from);
    step("setresgid", sys(libc::SYS_setresgid, [r, e, s, 0]))?;
    let _ = sys(libc::SYS_setfsgid, [f, 0, 0, 0]);
    let [r, e, s, f] = p.uids.map(u64::from);
    step("setresuid", sys(libc::SYS_setresuid, [r, e, s, 0]))?;
    // A uid change away from 0 cleared the effective set: take the permitted one back to go on.
    let (_, prm, _) = capget()?;
    step("capset (inheritable)", capset(prm, prm, p.inh))?;
    let _ = sys(libc::SYS_setfsuid, [f, 0, 0, 0]);
    for &cap in p.drop_bounding {
        step(
            "PR_CAPBSET_DROP",
            prctl(libc::PR_CAPBSET_DROP, cap.into(), 0),
        )?;
    }
    step(
        "securebits",
        prctl(libc::PR_SET_SECUREBITS, p.securebits, 0),
    )?;
    step("capset", capset(p.eff, p.prm, p.inh))?;
    for &cap in p.amb {
        step(
            "ambient raise",
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as u64,
                cap.into(),
            ),
        )?;
    }
    if p.no_new_privs {
        step("no_new_privs", prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0))?;
    }
    Ok(())
}

/// The calling thread's credentials as the kernel shows them: its status lines and securebits.
fn snapshot() -> Vec<(String, String)> {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let mut out: Vec<(String, String)> = CRED_LINES
        .iter()
        .map(|key| {
            let v = status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}:")))
                .map_or_else(|| "(missing)".to_string(), |v| v.trim().to_string());
            (key.to_string(), v)
        })
        .collect();
    let bits = prctl(libc::PR_GET_SECUREBITS, 0, 0).unwrap_or(-1);
    out.push(("securebits".into(), format!("{bits:#x}")));
    out
}

/// One thread's checks: every field against its READY snapshot, then the probes.
type Checks = Vec<(String, Result<(), String>)>;

fn compare(name: &str, before: &[(String, String)], after: &[(String, String)]) -> Checks {
    before
        .iter()
        .zip(after)
        .map(|((k, b), (_, a))| {
            let r = if a == b {
                Ok(())
            } else {
                Err(format!("{a:?}, was {b:?}"))
            };
            (format!("{name}-{k}"), r)
        })
        .collect()
}

/// Waits until `word` is at least `v`.
fn wait_for(word: &AtomicU32, v: u32) {
    while word.load(Ordering::Acquire) < v {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Shared progress: threads count up `set` once their credentials are set; `main` sets `go` after the
/// trigger.
struct Sync {
    set: AtomicU32,
    go: AtomicU32,
}

fn t1_plan() -> Plan {
    Plan {
        groups: &[2000],
        uids: [2000; 4],
        gids: [2000; 4],
        prm: bit(CAP_DAC_READ_SEARCH) | bit(CAP_NET_ADMIN),
        eff: bit(CAP_DAC_READ_SEARCH),
        inh: 0,
        amb: &[],
        drop_bounding: &[CAP_SYS_ADMIN],
        securebits: 0,
        no_new_privs: false,
    }
}

fn t1(sync: &Sync) -> Checks {
    if let Err(e) = set_own(&t1_plan()) {
        sync.set.fetch_add(1, Ordering::Release);
        return vec![("t1-setup".into(), Err(e))];
    }
    let before = snapshot();
    sync.set.fetch_add(1, Ordering::Release);
    wait_for(&sync.go, 1);
    let mut checks = compare("t1", &before, &snapshot());
    let back_to_root = sys(libc::SYS_setresuid, [0, 0, 0, 0]);
    checks.push((
        "t1-cannot-become-root".into(),
        match back_to_root {
            Err(libc::EPERM) => Ok(()),
            other => Err(format!("setresuid(0, 0, 0) gave {other:?}")),
        },
    ));
    checks
}

fn t2(sync: &Sync, file: &std::path::Path, fault: bool) -> Checks {
    let setup = (|| {
        for cap in [CAP_CHOWN, CAP_SYS_ADMIN] {
            step(
                "PR_CAPBSET_DROP",
                prctl(libc::PR_CAPBSET_DROP, cap.into(), 0),
            )?;
        }
        let (eff, prm, inh) = capget()?;
        let gone = bit(CAP_CHOWN) | bit(CAP_SYS_ADMIN);
        step("capset", capset(eff & !gone, prm & !gone, inh))?;
        step(
            "securebits",
            prctl(libc::PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0),
        )
    })();
    if let Err(e) = setup {
        sync.set.fetch_add(1, Ordering::Release);
        return vec![("t2-setup".into(), Err(e))];
    }
    let before = snapshot();
    sync.set.fetch_add(1, Ordering::Release);
    wait_for(&sync.go, 1);
    if fault {
        if let Ok((eff, prm, inh)) = capget() {
            let _ = capset(eff & !bit(CAP_NET_RAW), prm & !bit(CAP_NET_RAW), inh);
        }
    }
    let mut checks = compare("t2", &before, &snapshot());
    let (eff, prm, inh) = capget().unwrap_or_default();
    let raised = capset(eff | bit(CAP_SYS_ADMIN), prm | bit(CAP_SYS_ADMIN), inh);
    checks.push((
        "t2-cannot-raise-sys-admin".into(),
        match raised {
            Err(libc::EPERM) => Ok(()),
            other => Err(format!("capset raising CAP_SYS_ADMIN gave {other:?}")),
        },
    ));
    let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap_or_default();
    let chown = sys(libc::SYS_chown, [path.as_ptr() as u64, 4242, 4242, 0]);
    checks.push((
        "t2-cannot-chown".into(),
        match chown {
            Err(libc::EPERM) => Ok(()),
            other => Err(format!("chown without CAP_CHOWN gave {other:?}")),
        },
    ));
    checks
}

fn main_plan() -> Plan {
    Plan {
        groups: &[1000, 27, 44],
        uids: [1000, 1001, 1002, 1003],
        gids: [1010, 1011, 1012, 1013],
        prm: bit(CAP_DAC_OVERRIDE)
            | bit(CAP_DAC_READ_SEARCH)
            | bit(CAP_NET_BIND_SERVICE)
            | bit(CAP_NET_RAW),
        eff: bit(CAP_DAC_OVERRIDE) | bit(CAP_DAC_READ_SEARCH),
        inh: bit(CAP_NET_BIND_SERVICE) | bit(CAP_NET_RAW),
        amb: &[CAP_NET_BIND_SERVICE],
        drop_bounding: &[CAP_CHOWN, CAP_SYS_ADMIN],
        securebits: SECBIT_KEEP_CAPS | SECBIT_NOROOT | SECBIT_NOROOT_LOCKED,
        no_new_privs: true,
    }
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    let fault = args.has_flag(INJECT_FAULT);
    // SAFETY: plain id query.
    if unsafe { libc::geteuid() } != 0 {
        return Err(WorkloadError::setup(
            "credentials",
            "wl_creds must run as root",
        ));
    }
    let file = args.dir.join("owned-by-root");
    std::fs::write(&file, b"x").map_err(|e| WorkloadError::setup("a file to chown", e))?;
    let sync = Arc::new(Sync {
        set: AtomicU32::new(0),
        go: AtomicU32::new(0),
    });
    let s1 = Arc::clone(&sync);
    let h1 = std::thread::Builder::new()
        .name("t1".into())
        .spawn(move || t1(&s1))
        .map_err(|e| WorkloadError::setup("thread t1", e))?;
    let s2 = Arc::clone(&sync);
    let f2 = file.clone();
    let h2 = std::thread::Builder::new()
        .name("t2".into())
        .spawn(move || t2(&s2, &f2, fault))
        .map_err(|e| WorkloadError::setup("thread t2", e))?;
    wait_for(&sync.set, 2);
    set_own(&main_plan()).map_err(|e| WorkloadError::setup("main's credentials", e))?;
    // The uid change reset dumpable to 0 (suid_dumpable); a program that wants its core files sets it.
    step("dumpable", prctl(libc::PR_SET_DUMPABLE, 1, 0))
        .map_err(|e| WorkloadError::setup("dumpable", e))?;
    let before = snapshot();

    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;

    let mut report = Report::new("wl_creds");
    if fault {
        let _ = sys(libc::SYS_setfsuid, [1000, 0, 0, 0]);
    }
    for (what, r) in compare("main", &before, &snapshot()) {
        report.check(&what, r);
    }
    let ambient = prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_IS_SET as u64,
        CAP_NET_BIND_SERVICE.into(),
    );
    report.check(
        "main-ambient-net-bind-service",
        match ambient {
            Ok(1) => Ok(()),
            other => Err(format!("PR_CAP_AMBIENT_IS_SET gave {other:?}")),
        },
    );
    let dumpable = prctl(libc::PR_GET_DUMPABLE, 0, 0);
    report.check(
        "dumpable",
        match dumpable {
            Ok(1) => Ok(()),
            other => Err(format!("PR_GET_DUMPABLE gave {other:?}")),
        },
    );
    sync.go.store(1, Ordering::Release);
    for h in [h1, h2] {
        match h.join() {
            Ok(checks) => checks.into_iter().for_each(|(w, r)| report.check(&w, r)),
            Err(_) => report.check("thread", Err("a thread panicked".into())),
        }
    }
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_creds", run)
}
