//! End-to-end: established TCP connections under `--tcp-established` (TCP_REPAIR). The `wl_tcp` workload
//! checks its side itself; for a connection to a server outside the dumped tree, this test is the server
//! and checks that its socket survives the dump untouched (no FIN, no RST) and carries on with the
//! restored process without a reconnect. Privileged (root); needs the dormant binary.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use dormant_tests::harness::{self, require_root, Result, Spec, Workload};

const FLAG: &str = "--tcp-established";
const CLIENT_PENDING_LEN: usize = 4000;
const SERVER_PENDING_LEN: usize = 3000;
const CLIENT_NEW: &[u8] = b"client: written after the restore\n";
const SERVER_REPLY: &[u8] = b"server: got everything\n";

/// As the workload's pattern: `len` bytes counting up from `tag`, period 251.
fn pattern(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_add((i % 251) as u8))
        .collect()
}

fn tcp(mode: &[&str]) -> Spec {
    Spec::workload("wl_tcp", env!("CARGO_BIN_EXE_wl_tcp")).args(mode.iter().copied())
}

/// A server on 127.0.0.1 and the workload connected to it, with the server's pending bytes sent (and
/// not read by the workload) and the workload's pending bytes left unread here.
fn connected(dump_args: &[&str], restore_args: &[&str]) -> Result<(Workload, TcpStream)> {
    connected_with(&[], dump_args, restore_args)
}

/// [`connected`] with extra workload arguments.
fn connected_with(
    extra: &[&str],
    dump_args: &[&str],
    restore_args: &[&str],
) -> Result<(Workload, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| io("listen", e))?;
    let port = l
        .local_addr()
        .map_err(|e| io("listener address", e))?
        .port();
    // The workload waits for the server's bytes before READY, so accept and send from a thread.
    let server = std::thread::spawn(move || -> std::io::Result<TcpStream> {
        let (mut s, _) = l.accept()?;
        s.write_all(&pattern(b's', SERVER_PENDING_LEN))?;
        Ok(s)
    });
    let spec = tcp(&["peer", &port.to_string()])
        .args(extra.iter().copied())
        .dump_args(dump_args.iter().copied())
        .restore_args(restore_args.iter().copied());
    let w = Workload::start(spec)?;
    let s = server
        .join()
        .map_err(|_| w.fail("the server thread panicked"))?
        .map_err(|e| w.fail(format!("server accept/send: {e}")))?;
    Ok((w, s))
}

fn io(what: &str, e: std::io::Error) -> harness::HarnessError {
    harness::HarnessError::Io {
        what: what.into(),
        path: "127.0.0.1".into(),
        source: e,
    }
}

/// The server's socket saw neither FIN nor RST, and holds exactly the workload's pending bytes.
fn server_untouched(w: &Workload, s: &TcpStream) -> Result<()> {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll reads and writes one pollfd on our stack.
    let r = unsafe { libc::poll(&mut p, 1, 200) };
    if r < 0 || p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
        return Err(w.fail(format!(
            "the server's socket was told the connection ended (poll {r}, revents {:#x})",
            p.revents
        )));
    }
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n` on our stack.
    unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    if n as usize != CLIENT_PENDING_LEN {
        return Err(w.fail(format!(
            "{n} bytes wait at the server, want {CLIENT_PENDING_LEN}"
        )));
    }
    Ok(())
}

/// The server's part after the release: the old pending bytes, then the new message, then the reply.
fn serve(w: &Workload, s: &mut TcpStream) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| io("read timeout", e))?;
    let mut want = pattern(b'c', CLIENT_PENDING_LEN);
    want.extend_from_slice(CLIENT_NEW);
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got)
        .map_err(|e| w.fail(format!("server reading the pending and new bytes: {e}")))?;
    if got != want {
        return Err(w.fail("the server read other bytes than the workload sent"));
    }
    s.write_all(SERVER_REPLY)
        .map_err(|e| w.fail(format!("server reply: {e}")))?;
    Ok(())
}

/// (1) The workload is dumped (and killed) with its connection to this test's server, restored, and
/// both sides carry on: queued bytes intact both ways, new bytes both ways, on the server's original
/// socket. Between dump and restore, restoring without the flag is refused.
#[test]
fn established_connection_to_outside_server_survives() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let (mut w, mut s) = connected(&[FLAG], &[FLAG])?;
    w.dump(false)?;
    server_untouched(&w, &s)?;
    let r = restore_without_flag(&w)?;
    if !r.contains("--tcp-established") {
        return Err(w.fail(format!(
            "restore without the flag failed without naming it: {r}"
        )));
    }
    let mut r = w.restore()?;
    w.expect_restored_pid(&mut r)?;
    server_untouched(&w, &s)?;
    w.release()?;
    serve(&w, &mut s)?;
    w.finish_restored(&mut r)?;
    Ok(())
}

/// Runs `dormant restore` of the workload's image without `--tcp-established`; it must fail. Returns
/// its output.
fn restore_without_flag(w: &Workload) -> Result<String> {
    let bin = harness::dormant_bin()?;
    let out = std::process::Command::new(&bin)
        .arg("restore")
        .arg("-D")
        .arg(w.image_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| io("running dormant restore", e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        return Err(w.fail(format!(
            "restore without --tcp-established succeeded: {text}"
        )));
    }
    Ok(text)
}

/// (2) Without the flag the dump refuses the connection, naming it, and the target runs on with a
/// working connection (nothing was left in repair mode).
#[test]
fn established_connection_refused_without_flag() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let (mut w, mut s) = connected(&[], &[])?;
    let pid = w.pid();
    let logs = match w.dump(false) {
        Ok(()) => return Err(w.fail("dump of an established connection succeeded")),
        Err(e) => e.to_string(),
    };
    if !logs.contains(&format!("pid {pid} fd ")) || !logs.contains("established TCP connection") {
        return Err(w.fail(format!("dump error does not name the connection: {logs}")));
    }
    server_untouched(&w, &s)?;
    w.release()?;
    serve(&w, &mut s)?;
    let st = w.wait_exit(Duration::from_secs(60))?;
    w.expect_pass(st)
}

/// A dump with the flag that fails after the connection went into repair mode (a netlink socket met
/// later) switches repair mode off again: the target runs on with a working connection.
#[test]
fn failed_dump_leaves_connection_working() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let (mut w, mut s) = connected_with(&["--also-netlink"], &[FLAG], &[FLAG])?;
    let logs = match w.dump(false) {
        Ok(()) => return Err(w.fail("dump of a netlink socket succeeded")),
        Err(e) => e.to_string(),
    };
    if !logs.contains("netlink socket") {
        return Err(w.fail(format!(
            "dump error does not name the netlink socket: {logs}"
        )));
    }
    server_untouched(&w, &s)?;
    w.release()?;
    serve(&w, &mut s)?;
    let st = w.wait_exit(Duration::from_secs(60))?;
    w.expect_pass(st)
}

/// With `--leave-running` the connection leaves repair mode again and the original carries on.
#[test]
fn established_connection_leave_running_carries_on() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let (mut w, mut s) = connected(&[FLAG], &[FLAG])?;
    w.dump(true)?;
    server_untouched(&w, &s)?;
    w.release()?;
    serve(&w, &mut s)?;
    let st = w.wait_exit(Duration::from_secs(60))?;
    w.expect_pass(st)
}

/// (3) Both ends of a loopback connection in the dumped process, with bytes queued both ways (and a send
/// queue backed up behind a small receive buffer), plus the listener they came from.
#[test]
fn loopback_connection_both_ends_survives() -> Result<()> {
    harness::dump_restore(tcp(&["loop"]).dump_args([FLAG]).restore_args([FLAG]))?;
    Ok(())
}
