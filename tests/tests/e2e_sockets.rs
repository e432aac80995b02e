//! End-to-end: unix socket states survive dump → kill → restore exactly (the `wl_sockets` workload checks
//! them itself). Privileged (root); needs the dormant binary.

use dormant_tests::harness::{self, Result, Spec};

fn sockets(kinds: &[&str]) -> Spec {
    Spec::workload("wl_sockets", env!("CARGO_BIN_EXE_wl_sockets")).args(kinds.iter().copied())
}

/// Shutdown bits of stream and seqpacket pairs: EOF where the peer or the end shut down, EPIPE where
/// sending is shut, the open direction still open.
#[test]
fn unix_shutdown_state() -> Result<()> {
    harness::dump_restore(sockets(&["shutdown"]))?;
    Ok(())
}

/// A listener and a datagram socket whose paths were unlinked keep their names, and the paths stay
/// unlinked; a kept path is still a socket that accepts.
#[test]
fn unix_unlinked_paths_stay_unlinked() -> Result<()> {
    harness::dump_restore(sockets(&["unlinked"]))?;
    Ok(())
}

/// Unbound stream and seqpacket sockets and a bound, not listening one, with their types and names.
#[test]
fn unix_unconnected_sockets() -> Result<()> {
    harness::dump_restore(sockets(&["unconnected"]))?;
    Ok(())
}

/// Stream sockets whose peer was closed read their queue, then EOF.
#[test]
fn unix_peer_closed_reads_queue_then_eof() -> Result<()> {
    harness::dump_restore(sockets(&["peerclosed"]))?;
    Ok(())
}
