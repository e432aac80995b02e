//! dormant's mount namespaces: reads a namespace's mounts from mountinfo, decides how each comes back
//! (created anew, cloned from another dumped mount, or bound from outside), records the outside peer groups
//! its mounts are slaves of ("external masters", the Kata case), rebuilds the tree the mount-v2 way, and,
//! once the restored tree's pid namespace has its init, swaps the rebuilt proc mounts for ones of that
//! namespace (`procfs`).
//!
//! What this crate does NOT do: it does not enter namespaces or fork (restore runs in a process that has
//! already unshared its mount namespace), reads the content of only the tmpfs mounts it recreates
//! (through a clone of each, so what over-mounts hide is read too), and does not restore process state; the engine and restorer call it.

pub mod classify;
pub mod error;
pub mod exec;
pub mod external;
pub mod image;
pub mod mountinfo;
pub mod nested;
pub mod plan;
pub mod procfs;
pub mod reach;
pub mod sim;
pub mod sys;
pub mod tmpfs;

pub use classify::{classify, dump_namespace};
pub use dormant_image::records::{ExternalMaster, MountEntry, MountId, MountSource, PeerGroup};
pub use error::{MountError, Result};
pub use exec::restore_namespace;
pub use external::ExternalMap;
pub use image::MountImage;
pub use mountinfo::{MountInfo, MountTree};
pub use plan::{plan, Step};
