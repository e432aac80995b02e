//! dormant-engine: the dumper. Seizes a process tree, reads its state from /proc and ptrace (plus the few
//! things only the task can tell, through `dormant-parasite`), and writes a checkpoint image with
//! `dormant-image`; `kerndat` probes which kernel features it can rely on.
//!
//! Entry point: [`Dump::builder`]: a whole process tree from its root ([`tree::SeizedTree`]), every thread of
//! every process, zombies as records; one [`files::FileTable`] per dump. Each kind of process state has one
//! module, named as its records in `dormant-image` and its restore in `dormant-restorer`: [`task`] (regs,
//! threads, mm, pages, signals, timers, creds, rlimits, fs, attrs), [`files`] (one module per fd kind),
//! [`ns`] (one per namespace), [`container`] (a tree in its own mount namespace: mounts and namespaces,
//! through `dormant-mounts`), [`tree`] (the process tree, sessions, zombies).
//!
//! What it does NOT do: restore (that is dormant-restorer); parse command lines (callers pass typed
//! options such as [`External`]); print or exit (callers get typed errors and `log` records); keep global
//! state. All ptrace requests run on the thread that calls [`Dump::run`]; page copying uses a small local
//! thread pool (`process_vm_readv`, `/proc/<pid>/mem` for unreadable pages) or, when asked
//! ([`CopyMethod::Parasite`], above `task::pages::parasite::PARASITE_MIN_BYTES`), the parasite's vmsplice
//! into pipes that dumper threads splice into the page store.
#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap (project rule)
pub mod kerndat;
pub mod ns;

pub mod caps;
pub mod container;
pub mod dump;
pub mod error;
pub mod external;
pub mod files;
pub mod freezer;
pub mod inventory;
pub mod nested_mounts;
pub mod proc;
pub mod progress;
pub mod restorable;
pub mod seize;
pub mod stage;
pub mod task;
pub mod tree;

pub use dormant_image::records::Pid;
pub use dump::{Dump, DumpBuilder, DumpEvent, DumpStats};
pub use error::DumpError;
pub use external::External;
pub use stage::DumpStage;
pub use task::pages::walk::PAGE_SIZE;
pub use task::pages::{CopyMethod, PageCopy};
