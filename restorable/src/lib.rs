//! dormant-restorable: the one list of process state this release cannot restore ([`Refusal`]).
//!
//! The rule it serves: if a dump succeeds, its restore succeeds. The dumper checks a seized tree against
//! this list before it changes anything in the target (before the first injection) and refuses with the
//! message of a [`Refusal`]; the target runs on. The restorer checks the loaded image against the same list
//! before it forks anything and refuses with the same message, so an image from elsewhere (an older
//! dormant, a hand-edited one) is refused the same way. Both call [`check`] over [`TaskFacts`]: the dumper
//! reads them from `/proc`, the restorer from the image ([`facts_from_image`]).
//!
//! Namespaces follow one rule, decided per kind from `/proc/PID/ns/*` against dormant's own whatever mode
//! the dump runs in: a task is carried with every namespace it is in, or refused. A tree outside any
//! container (its root shares dormant's mount namespace) is restored into the restorer's namespaces, so
//! every task must share dormant's, except a pid namespace whose init is the tree's root. A container (its
//! root in a mount namespace of its own) carries the root's mount, user, uts, ipc, net and cgroup
//! namespaces and a pid namespace one level below dormant's, and every task must be in the root's. A time
//! namespace is carried in both modes (the root's, shared by every task).
//!
//! When support for a refused state lands (deleted working directories), its variant goes: the dump then
//! carries the state and the restore rebuilds it. Credentials and time namespaces are restored; what remains
//! refused of credentials is what dormant's own credentials cannot hand out ([`creds`]).
//!
//! What it does NOT do: read `/proc` or the image beyond [`facts_from_image`], or check what depends on
//! the restoring machine (kernel features, CPU features, free pids): those stay the restorer's own
//! refusals.

mod check;
pub mod creds;
mod facts;
mod refusal;

pub use check::{check, check_namespaces};
pub use facts::{facts_from_image, Runner, TaskFacts};
pub use refusal::{Refusal, RefusalKind};
