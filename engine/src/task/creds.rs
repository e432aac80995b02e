//! Credentials: uids, gids, supplementary groups, capability sets and no_new_privs from
//! `/proc/<pid>/status`, securebits asked from the task ([`super::remote`]). The restorer gives every thread
//! the process's credentials, so a thread whose own differ is refused here.

use dormant_image::records::Creds;

use crate::error::{DumpError, Result};
use crate::proc::status::ProcStatus;

/// The process's credentials: what status shows, with the securebits the task reported.
pub fn process(status: &ProcStatus, securebits: u32) -> Creds {
    Creds {
        securebits: Some(securebits),
        ..status.creds.clone()
    }
}

/// Refuses thread `tid` of `pid` when its credentials (`thread`, from its own status) differ from the
/// leader's: the restorer creates every thread with the process's credentials and has no way to give one
/// thread others.
pub fn check_thread(pid: u32, tid: u32, thread: &Creds, leader: &Creds) -> Result<()> {
    let (c, l) = (thread, leader);
    let what = if c.uids != l.uids {
        "uids"
    } else if c.gids != l.gids {
        "gids"
    } else if c.groups != l.groups {
        "supplementary groups"
    } else if (c.cap_inh, c.cap_prm, c.cap_eff, c.cap_bnd, c.cap_amb)
        != (l.cap_inh, l.cap_prm, l.cap_eff, l.cap_bnd, l.cap_amb)
    {
        "capabilities"
    } else if c.no_new_privs != l.no_new_privs {
        "no_new_privs"
    } else {
        return Ok(());
    };
    Err(DumpError::ThreadCredsDiffer { pid, tid, what })
}
