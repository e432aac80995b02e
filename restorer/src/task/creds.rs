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
            })
        })
        .collect()
}
