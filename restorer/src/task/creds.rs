//! Credentials, per thread: what each thread's blob sets as its last step (see `set_creds` in
//! `restorer/blob`). A thread whose credentials are the restorer's own (what it inherits) is left alone;
//! any other gets its ids, groups, capability sets, securebits and no_new_privs set exactly. The image
//! check (`dormant-restorable`) refused before anything was forked whatever the restorer's own
//! credentials cannot hand out, so every set here only narrows the restorer's.
//!
//! A task in a user namespace of its own keeps what the new namespace gives it: its ids are that
//! namespace's and must be the restorer's (checked with the image).

use dormant_image::records::Creds;
use dormant_restorable::creds::differ;

use crate::image::TaskImage;

/// One thread's credentials as the blob sets them; the groups are laid out in the blob area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCreds {
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_amb: u64,
    /// The restorer's bounding capabilities the thread does not have.
    pub cap_bnd_drop: u64,
    pub securebits: u32,
    pub no_new_privs: bool,
    /// The image's credentials of the thread: what the tracer checks in `/proc` before the release.
    pub want: Creds,
}

/// What every thread of `task` (the leader first) must set, for a restorer running with `runner`'s
/// credentials; `None` for a thread that keeps what it inherits.
pub fn prepare(task: &TaskImage, runner: &Creds) -> Vec<Option<ThreadCreds>> {
    task.threads()
        .map(|t| {
            // Images before threads carried their own: the process's (their dump refused others).
            let c = t.creds.as_ref().unwrap_or(&task.core.creds);
            (!task.own_user_ns && differ(c, runner)).then(|| ThreadCreds {
                uids: c.uids,
                gids: c.gids,
                groups: c.groups.clone(),
                cap_inh: c.cap_inh,
                cap_prm: c.cap_prm,
                cap_eff: c.cap_eff,
                cap_amb: c.cap_amb,
                cap_bnd_drop: runner.cap_bnd & !c.cap_bnd,
                // Not recorded: left as inherited.
                securebits: c.securebits.or(runner.securebits).unwrap_or(0),
                no_new_privs: c.no_new_privs,
                want: c.clone(),
            })
        })
        .collect()
}

/// Checks thread `tid` of `pid` against the image's credentials `want` as `/proc/TID/status` shows them
/// (securebits are not shown there; the blob set them exactly). A restore never lets a thread run with
/// credentials other than its image's, above all not with a capability it had dropped.
pub fn verify(pid: u32, tid: u32, want: &Creds) -> Result<(), crate::error::RestoreError> {
    let path = format!("/proc/{tid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|source| crate::error::RestoreError::Proc {
            path: path.clone().into(),
            source,
        })?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    let hex = |v: u64| format!("{v:016x}");
    let expected: [(&'static str, String); 9] = [
        ("Uid", join(&want.uids)),
        ("Gid", join(&want.gids)),
        ("Groups", join(&want.groups)),
        ("CapInh", hex(want.cap_inh)),
        ("CapPrm", hex(want.cap_prm)),
        ("CapEff", hex(want.cap_eff)),
        ("CapBnd", hex(want.cap_bnd)),
        ("CapAmb", hex(want.cap_amb)),
        ("NoNewPrivs", u32::from(want.no_new_privs).to_string()),
    ];
    for (what, want) in expected {
        let found = field(what);
        if found != want {
            return Err(crate::error::RestoreError::CredsMismatch {
                pid,
                tid,
                what,
                found,
                want,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The check reads what `/proc` shows: this thread's own credentials pass; a capability more than it
    /// holds (what a restore that lost a drop would show) fails, naming the set.
    #[test]
    fn verify_reads_proc_and_names_the_field() {
        let me = dormant_restorable::creds::current();
        let tid = nix::unistd::gettid().as_raw() as u32;
        verify(std::process::id(), tid, &me).unwrap();
        let mut fewer = me.clone();
        fewer.cap_prm &= !1;
        let e = verify(std::process::id(), tid, &fewer).unwrap_err();
        assert!(e.to_string().contains("CapPrm"), "{e}");
        let mut other = me;
        other.groups.push(4242);
        let e = verify(std::process::id(), tid, &other).unwrap_err();
        assert!(e.to_string().contains("Groups"), "{e}");
    }
}
