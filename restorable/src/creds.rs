//! Credentials: what a restore can give a thread. The restorer rebuilds every thread's credentials
//! (ids, groups, capability sets, securebits, no_new_privs) from inside the task, as its last step, with
//! the capabilities dormant holds itself; so a thread is refused only when it holds what dormant cannot
//! hand out. A capability can be dropped, never raised: permitted and bounding sets must be within
//! dormant's, inheritable within dormant's inheritable and bounding sets (capset's rule). Changing ids,
//! groups and securebits at all needs CAP_SETUID, CAP_SETGID and CAP_SETPCAP.
//!
//! In a user namespace other than dormant's, ids and capabilities are relative to that namespace, which
//! the restorer only creates; there the old rule holds: the ids must be dormant's, and the credentials are
//! left as the namespace gives them.

use dormant_image::records::Creds;

use crate::refusal::Refusal;

/// Capability numbers the restorer needs to change credentials.
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;

/// Whether `c` differs from `runner` in anything the restorer would have to change (securebits not
/// recorded count as the same: they are left as inherited).
pub fn differ(c: &Creds, runner: &Creds) -> bool {
    c.uids != runner.uids
        || c.gids != runner.gids
        || c.groups != runner.groups
        || (c.cap_inh, c.cap_prm, c.cap_eff, c.cap_bnd, c.cap_amb)
            != (
                runner.cap_inh,
                runner.cap_prm,
                runner.cap_eff,
                runner.cap_bnd,
                runner.cap_amb,
            )
        || c.no_new_privs != runner.no_new_privs
        || c.securebits.is_some_and(|b| Some(b) != runner.securebits)
}

/// Refuses thread `tid` of `pid` with credentials `c` when a restore run with `runner`'s could not give
/// them.
pub fn check_thread(pid: u32, tid: u32, c: &Creds, runner: &Creds) -> Result<(), Refusal> {
    let refuse = |reason: String| Err(Refusal::Credentials { pid, tid, reason });
    if !differ(c, runner) {
        return Ok(());
    }
    let beyond = |mine: u64, allowed: u64| mine & !allowed;
    if beyond(c.cap_prm, runner.cap_prm) != 0 {
        return refuse(format!(
            "its permitted capabilities {:#x} include {:#x}, which dormant does not hold",
            c.cap_prm,
            beyond(c.cap_prm, runner.cap_prm)
        ));
    }
    if beyond(c.cap_bnd, runner.cap_bnd) != 0 {
        return refuse(format!(
            "its bounding set {:#x} includes {:#x}, outside dormant's",
            c.cap_bnd,
            beyond(c.cap_bnd, runner.cap_bnd)
        ));
    }
    if beyond(c.cap_inh, runner.cap_inh | runner.cap_bnd) != 0 {
        return refuse(format!(
            "its inheritable capabilities {:#x} include {:#x}, outside dormant's inheritable and \
             bounding sets",
            c.cap_inh,
            beyond(c.cap_inh, runner.cap_inh | runner.cap_bnd)
        ));
    }
    if runner.no_new_privs && !c.no_new_privs {
        return refuse("it runs without no_new_privs, which dormant has set".into());
    }
    let needed = [
        (CAP_SETUID, "CAP_SETUID"),
        (CAP_SETGID, "CAP_SETGID"),
        (CAP_SETPCAP, "CAP_SETPCAP"),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(cap, _)| runner.cap_eff & (1 << cap) == 0)
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return refuse(format!(
            "its credentials (uids {:?}, gids {:?}) differ from dormant's (uids {:?}, gids {:?}), and \
             changing them needs {}, which dormant lacks",
            c.uids,
            c.gids,
            runner.uids,
            runner.gids,
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The rule in a user namespace other than dormant's (see the module docs): the ids must be dormant's.
pub fn check_in_user_namespace(
    pid: u32,
    tid: u32,
    c: &Creds,
    runner: &Creds,
) -> Result<(), Refusal> {
    if c.uids[..3] == runner.uids[..3] && c.gids[..3] == runner.gids[..3] {
        return Ok(());
    }
    Err(Refusal::Credentials {
        pid,
        tid,
        reason: format!(
            "it runs in a user namespace of its own with uids {:?} and gids {:?} (real, effective, \
             saved, fs), other than dormant's {:?} and {:?}; credentials inside a restored user \
             namespace are not restored yet",
            c.uids, c.gids, runner.uids, runner.gids
        ),
    })
}

/// The calling thread's credentials, from `/proc/thread-self/status` and `PR_GET_SECUREBITS`. A field
/// that cannot be read counts as nothing held (no capability), which only makes the check refuse more.
pub fn current() -> Creds {
    let text = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let mut c = Creds::default();
    let ids = |v: &str| {
        let mut out = [u32::MAX; 4];
        for (o, w) in out.iter_mut().zip(v.split_whitespace()) {
            *o = w.parse().unwrap_or(u32::MAX);
        }
        out
    };
    let hex = |v: &str| u64::from_str_radix(v.trim(), 16).unwrap_or(0);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "Uid" => c.uids = ids(value),
            "Gid" => c.gids = ids(value),
            "Groups" => {
                c.groups = value
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect()
            }
            "CapInh" => c.cap_inh = hex(value),
            "CapPrm" => c.cap_prm = hex(value),
            "CapEff" => c.cap_eff = hex(value),
            "CapBnd" => c.cap_bnd = hex(value),
            "CapAmb" => c.cap_amb = hex(value),
            "NoNewPrivs" => c.no_new_privs = value.trim() == "1",
            _ => {}
        }
    }
    // SAFETY: PR_GET_SECUREBITS takes no pointer and only reads the calling thread's credentials.
    let bits = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    c.securebits = u32::try_from(bits).ok();
    c
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn root() -> Creds {
        Creds {
            uids: [0; 4],
            gids: [0; 4],
            groups: vec![],
            cap_inh: 0,
            cap_prm: 0x1ff_feff_ffff,
            cap_eff: 0x1ff_feff_ffff,
            cap_bnd: 0x1ff_feff_ffff,
            cap_amb: 0,
            no_new_privs: false,
            securebits: Some(0),
        }
    }

    #[test]
    fn what_root_can_hand_out() {
        let r = root();
        let mut user = Creds {
            uids: [1000, 1001, 1002, 1003],
            gids: [1000; 4],
            groups: vec![27],
            cap_inh: 1 << 10,
            cap_prm: 1 << 10,
            cap_eff: 0,
            cap_bnd: 0xff,
            cap_amb: 1 << 10,
            no_new_privs: true,
            securebits: Some(0x2f),
        };
        assert!(differ(&user, &r));
        check_thread(1, 2, &user, &r).unwrap();
        // CAP_SYS_RESOURCE (24) is not dormant's.
        user.cap_prm |= 1 << 24;
        let e = check_thread(1, 2, &user, &r).unwrap_err();
        assert!(e.to_string().contains("0x1000000"), "{e}");
        user.cap_prm = 0;
        user.cap_bnd = 1 << 24;
        assert!(check_thread(1, 2, &user, &r).is_err());
        user.cap_bnd = 0;
        let mut nnp = r.clone();
        nnp.no_new_privs = true;
        user.no_new_privs = false;
        assert!(check_thread(1, 2, &user, &nnp).is_err());
    }

    #[test]
    fn an_unprivileged_runner_restores_only_its_own() {
        let me = Creds {
            uids: [1000; 4],
            gids: [1000; 4],
            cap_bnd: 0x1ff_feff_ffff,
            securebits: Some(0),
            ..Creds::default()
        };
        check_thread(1, 1, &me.clone(), &me).unwrap();
        let mut other = me.clone();
        other.uids = [1001; 4];
        let e = check_thread(1, 1, &other, &me).unwrap_err();
        assert!(
            e.to_string()
                .contains("CAP_SETUID, CAP_SETGID, CAP_SETPCAP"),
            "{e}"
        );
        // Securebits not recorded are left as inherited.
        let unknown = Creds {
            securebits: None,
            ..me.clone()
        };
        assert!(!differ(&unknown, &me));
    }
}
