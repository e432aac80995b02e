//! dormant-engine: the dumper. Seizes a process, reads its state from /proc and ptrace (plus the few things
//! only the task can tell, through `dormant-parasite`), and writes a checkpoint image with `dormant-image`;
//! `kerndat` probes which kernel features it can rely on.
//!
//! Entry point: [`Dump::builder`]: a whole process tree from its root ([`tree::SeizedTree`]), every thread of
//! every process ([`threads`]), zombies as records; one [`files::FileTable`] per dump. Containers (nested
//! pid namespaces) come later: the nested pids are recorded, not used.
//!
//! What it does NOT do: restore (that is dormant-restorer); print or exit (callers get typed errors and `log`
//! records); keep global state. All ptrace requests run on the thread that calls [`Dump::run`]; page copying
//! uses a small local thread pool (`process_vm_readv`, `/proc/<pid>/mem` for unreadable pages) or, when asked
//! (`CopyMethod::Parasite`, above `parasite_pages::PARASITE_MIN_BYTES`), the parasite's vmsplice into pipes
//! that dumper threads splice into the page store.
#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap (project rule)
pub mod kerndat;
pub mod ns;

pub mod container;
pub mod dump;
pub mod error;
pub mod files;
pub mod freezer;
pub mod inventory;
pub mod mem;
pub mod pagemap;
pub mod parasite_pages;
pub mod proc;
pub mod regs;
pub mod seize;
pub mod threads;
pub mod timers;
pub mod tree;

pub use dormant_image::records::Pid;
pub use dump::{Dump, DumpBuilder, DumpEvent, DumpStage, DumpStats};
pub use error::DumpError;
pub use mem::{CopyMethod, PageCopy};

/// The page size of x86-64 user mappings.
pub const PAGE_SIZE: u64 = 4096;
