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

fn sockpeers(kinds: &[&str]) -> Spec {
    Spec::workload("wl_sockpeers", env!("CARGO_BIN_EXE_wl_sockpeers")).args(kinds.iter().copied())
}

/// Connections waiting in stream and seqpacket listeners' queues come back in order, each with its
/// client's name, flags and shutdown state, and the listeners keep their backlogs.
#[test]
fn unix_pending_connections() -> Result<()> {
    harness::dump_restore(sockpeers(&["pending"]))?;
    Ok(())
}

/// Datagram sockets connected to a server that is not their pair, and socketpair ends reconnected or
/// disconnected, keep their peers and queues (with each datagram's sender name).
#[test]
fn unix_datagram_peers() -> Result<()> {
    harness::dump_restore(sockpeers(&["dgram"]))?;
    Ok(())
}

/// A datagram socket connected by path to a socket of a process outside the dump is connected again by
/// that path: what it sends after the restore reaches the outside socket.
#[test]
fn unix_datagram_peer_outside_the_dump() -> Result<()> {
    let dir = harness::Scratch::new("extpeer")?;
    let at = dir.path().join("outside.sock");
    let outside =
        std::os::unix::net::UnixDatagram::bind(&at).map_err(|e| harness::HarnessError::Io {
            what: "binding the outside socket".into(),
            path: at.clone(),
            source: e,
        })?;
    let kind = format!("extpeer:{}", at.display());
    harness::dump_restore(sockpeers(&[&kind]))?;
    let mut got = Vec::new();
    outside.set_nonblocking(true).ok();
    let mut buf = [0u8; 64];
    while let Ok(n) = outside.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(got, ["before", "after"], "what the outside socket received");
    Ok(())
}

/// UDP sockets (IPv4, IPv4 connected, IPv6 dual stack) get their waiting datagrams back, in order, with
/// their senders, an empty one and one queued before the connect included.
#[test]
fn udp_queued_datagrams() -> Result<()> {
    harness::dump_restore(sockpeers(&["udpqueue"]))?;
    Ok(())
}

/// Connected UDP sockets (IPv4 bound, IPv4 with the port connect picked, IPv6) keep their local and peer
/// addresses and options, and exchange datagrams with their peers.
#[test]
fn udp_connected() -> Result<()> {
    harness::dump_restore(sockpeers(&["udp"]))?;
    Ok(())
}
