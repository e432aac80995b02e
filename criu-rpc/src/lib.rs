//! dormant-criu-rpc: dormant behind CRIU's RPC, so that container runtimes that checkpoint with CRIU
//! (runc, and podman and containerd through it) checkpoint with dormant when it is installed as `criu`.
//!
//! What it does: serves `criu swrk FD` ([`serve`]): requests and replies are CRIU's `rpc.proto` messages
//! ([`proto`], one per SOCK_SEQPACKET datagram) on the socket the client passed as FD. VERSION, CHECK and
//! FEATURE_CHECK are answered; DUMP and RESTORE run dormant's dumper and restorer in this process with
//! every option mapped or refused by name ([`opts`]), the client's callbacks sent in CRIU's order, the
//! client's fds reopened through its /proc ([`peer`]), and the log written where the client reads it
//! ([`mod@log`]).
//!
//! What it does NOT do: pre-dumps, lazy pages, page servers, or anything dormant's engine cannot do (those
//! requests fail with a message naming the option); nor parse CRIU's command line beyond `swrk` (that is
//! the `dormant` binary's job). It must run single-threaded (a restore forks from this process).

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap (project rule)

pub mod cgroup;
pub mod dump;
pub mod error;
pub mod log;
pub mod opts;
pub mod peer;
pub mod proto;
pub mod restore;
pub mod server;
pub mod session;
pub mod stats;
pub mod transport;

pub use error::RpcError;
pub use server::{serve, version};
pub use session::IMAGE_DIR;
