//! Namespaces other than mount and pid: which ones each task is in, and the state of those dormant carries in
//! the image (uts names, System V IPC, cgroup membership, the network namespace's mode, user id maps).
//!
//! A namespace the dumper shares with the task is external (the host's or the agent's) and only named. The
//! others are read without disturbing them: uts, ipc and net state is read by a short-lived helper thread that
//! `setns()`es into the task's namespace (those three kinds may be entered per thread), so the dumper itself
//! never changes namespace. Mount and pid namespaces belong to the mount-tree and process-tree dumpers.

mod cgroup;
mod dump;
mod error;
mod ipc;
pub mod membership;
mod mqueue;
mod net;
mod sysv;
mod time;
mod user;
mod uts;

pub use cgroup::read_cgroups;
pub use dump::{dump_namespaces, NsDumpSummary};
pub use error::{NsError, Result};
pub use ipc::read_ipc_namespace;
pub use membership::task_namespaces;
pub use net::read_net_namespace;
pub use time::read_time_namespace;
pub use user::read_user_namespace;
pub use uts::read_uts_namespace;
