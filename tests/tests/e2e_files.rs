//! End-to-end: open files of every supported kind survive dump → kill → restore (the `wl_files` workload
//! checks them itself), and an fd the dumper cannot carry fails the dump with an error naming the process,
//! the fd and its type while the target runs on untouched. Privileged (root); needs the dormant binary.

use std::time::Duration;

use dormant_tests::harness::{self, require_root, Result, Spec, Workload};

fn files(kinds: &[&str]) -> Spec {
    Spec::workload("wl_files", env!("CARGO_BIN_EXE_wl_files")).args(kinds.iter().copied())
}

#[test]
fn dup_fds_share_offset() -> Result<()> {
    harness::dump_restore(files(&["dup"]))?;
    Ok(())
}

#[test]
fn pipe_with_buffered_data() -> Result<()> {
    harness::dump_restore(files(&["pipe"]))?;
    Ok(())
}

#[test]
fn socketpairs_with_queued_messages() -> Result<()> {
    harness::dump_restore(files(&["socketpair"]))?;
    Ok(())
}

#[test]
fn tcp_listener_accepts_after_restore() -> Result<()> {
    harness::dump_restore(files(&["tcp"]))?;
    Ok(())
}

#[test]
fn eventfd_counter() -> Result<()> {
    harness::dump_restore(files(&["eventfd"]))?;
    Ok(())
}

#[test]
fn epoll_reports_readiness() -> Result<()> {
    harness::dump_restore(files(&["epoll"]))?;
    Ok(())
}

#[test]
fn pty_pair_termios_window_and_data() -> Result<()> {
    harness::dump_restore(files(&["pty"]))?;
    Ok(())
}

#[test]
fn timerfd_still_ticking() -> Result<()> {
    harness::dump_restore(files(&["timerfd"]))?;
    Ok(())
}

#[test]
fn memfd_content() -> Result<()> {
    harness::dump_restore(files(&["memfd"]))?;
    Ok(())
}

#[test]
fn signalfd_mask() -> Result<()> {
    harness::dump_restore(files(&["signalfd"]))?;
    Ok(())
}

#[test]
fn flock_and_posix_locks_held() -> Result<()> {
    harness::dump_restore(files(&["locks"]))?;
    Ok(())
}

#[test]
fn unix_listeners_accept_after_restore() -> Result<()> {
    harness::dump_restore(files(&["unixlisten"]))?;
    Ok(())
}

#[test]
fn unlinked_file_carried() -> Result<()> {
    harness::dump_restore(files(&["ghost"]))?;
    Ok(())
}

#[test]
fn udp_bound_receives_after_restore() -> Result<()> {
    harness::dump_restore(files(&["udp"]))?;
    Ok(())
}

#[test]
fn async_owner_and_signal() -> Result<()> {
    harness::dump_restore(files(&["owner"]))?;
    Ok(())
}

/// A file opened before a fork: parent and child share one description again after the restore (offsets
/// they leave for each other, O_APPEND).
#[test]
fn file_shared_across_fork_shares_offset() -> Result<()> {
    harness::dump_restore(files(&["forkshare"]))?;
    Ok(())
}

#[test]
fn fifo_reopened_with_buffered_data() -> Result<()> {
    harness::dump_restore(files(&["fifo"]))?;
    Ok(())
}

#[test]
fn unix_datagram_sockets_bound_and_queued() -> Result<()> {
    harness::dump_restore(files(&["unixdgram"]))?;
    Ok(())
}

#[test]
fn unix_accepted_connections_and_names() -> Result<()> {
    harness::dump_restore(files(&["unixaccept"]))?;
    Ok(())
}

/// inotify watches come back with the same wd numbers and masks (a one-shot watch stays one-shot), the
/// queue empty, O_NONBLOCK kept, and the kernel's next wd where it was.
#[test]
fn inotify_watches_same_wds() -> Result<()> {
    harness::dump_restore(files(&["inotify"]))?;
    Ok(())
}

/// A pidfd of the workload's own child (registered in an epoll set) still refers to that child: it turns
/// readable when the child exits after the restore, and waitid(P_PIDFD) reaps it with its status.
#[test]
fn pidfd_of_child_refers_to_it() -> Result<()> {
    harness::dump_restore(files(&["pidfd"]))?;
    Ok(())
}

/// A pidfd of a child that exited before the dump (a zombie, restored as one): readable at once after the
/// restore, and waitid(P_PIDFD) reaps that child with its status.
#[test]
fn pidfd_of_zombie_child_reaps_it() -> Result<()> {
    harness::dump_restore(files(&["pidfdzombie"]))?;
    Ok(())
}

/// Both kinds with the rest of a tree's file state, in one process with a child.
#[test]
fn inotify_and_pidfd_with_epoll_and_eventfd() -> Result<()> {
    harness::dump_restore(files(&["inotify", "pidfd", "epoll", "eventfd"]))?;
    Ok(())
}

#[test]
fn every_kind_leave_running_then_restore() -> Result<()> {
    harness::leave_running_then_restore(files(&[
        "dup",
        "pipe",
        "socketpair",
        "tcp",
        "eventfd",
        "epoll",
        "timerfd",
        "pty",
        "memfd",
        "signalfd",
        "locks",
        "unixlisten",
        "ghost",
        "udp",
        "owner",
        // Not "forkshare": the original's run appends to its files, which are not in the image, so the
        // restored O_APPEND offsets (the file's size) would differ from the exact ones it asserts.
        "fifo",
        "unixdgram",
        "unixaccept",
    ]))?;
    Ok(())
}

/// The dump must fail naming pid, fd and `what`; the target then runs on and passes its own check.
fn refused(kind: &str, what: &str) -> Result<()> {
    refused_naming(kind, |_| Ok(what.to_string()))
}

/// As [`refused`], with `what` read from the started workload.
fn refused_naming(kind: &str, what: impl Fn(&Workload) -> Result<String>) -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let mut w = Workload::start(files(&[kind]))?;
    let what = what(&w)?;
    let pid_fd = format!("pid {} fd ", w.pid());
    w.dump_refused(&[&pid_fd, &what])?;
    w.release_and_pass()
}

#[test]
fn established_tcp_refused_target_resumes() -> Result<()> {
    refused("established", "established TCP connection 127.0.0.1:")
}

#[test]
fn netlink_socket_refused_target_resumes() -> Result<()> {
    refused("netlink", "netlink socket")
}

/// A message carrying an fd waits in a socket's queue: the fd exists only in flight, so the dump refuses.
#[test]
fn in_flight_scm_rights_refused_target_resumes() -> Result<()> {
    refused("scmrights", "SCM_RIGHTS")
}

/// A unix stream socket whose peer is held by a process outside the dumped tree: refused, naming that
/// process.
#[test]
fn unix_peer_outside_the_tree_refused_target_resumes() -> Result<()> {
    refused_naming("unixoutside", |w| {
        let at = w.scratch().join("work/outside.pid");
        let pid = std::fs::read_to_string(&at)
            .map_err(|e| w.fail(format!("reading {}: {e}", at.display())))?;
        Ok(format!("held by pid {} outside the dump", pid.trim()))
    })
}

/// A pidfd of a process outside the dumped tree: refused naming the pid, the fd and the referenced
/// process; that process is still running after the failed dump, and so is the target, which then passes
/// its own check (it kills the outside process through the pidfd and sees it exit).
#[test]
fn pidfd_outside_the_tree_refused_target_resumes() -> Result<()> {
    require_root()?;
    harness::dormant_bin()?;
    let mut w = Workload::start(files(&["pidfdoutside"]))?;
    let at = w.scratch().join("work/pidfd-outside.pid");
    let text = std::fs::read_to_string(&at)
        .map_err(|e| w.fail(format!("reading {}: {e}", at.display())))?;
    let outside: i32 = text
        .trim()
        .parse()
        .map_err(|e| w.fail(format!("pid {text:?}: {e}")))?;
    let what = format!("pid {} fd ", w.pid());
    let whom = format!("pidfd of pid {outside}, which is outside the dumped tree");
    w.dump_refused(&[&what, &whom])?;
    match harness::proc_state(outside) {
        Some((state, _)) if state != 'Z' && state != 'X' => {}
        other => {
            return Err(w.fail(format!(
                "the outside process {outside} is not running after the failed dump: {other:?}"
            )))
        }
    }
    w.release_and_pass()?;
    let gone = || matches!(harness::proc_state(outside), None | Some(('Z' | 'X', _)));
    if !harness::wait_until(Duration::from_secs(10), gone) {
        return Err(w.fail(format!(
            "the outside process {outside} still exists after the workload killed it"
        )));
    }
    Ok(())
}

/// A pidfd of a child already reaped (`Pid: -1`) cannot be pointed at anything again: refused.
#[test]
fn pidfd_of_reaped_child_refused_target_resumes() -> Result<()> {
    refused("pidfdreaped", "exited and been reaped")
}

/// An inotify instance with unread events: refused (events are not carried), target runs on and reads it.
#[test]
fn inotify_with_unread_events_refused_target_resumes() -> Result<()> {
    refused("inotifyqueued", "inotify fd with unread events")
}

/// Runs redis-cli against `port` with `args`, optionally feeding `stdin`; returns stdout.
fn redis_cli(
    cli: &std::path::Path,
    port: u16,
    args: &[String],
    stdin: Option<&[u8]>,
) -> std::io::Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(cli);
    cmd.arg("-p").arg(port.to_string()).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let (Some(data), Some(mut sin)) = (stdin, child.stdin.take()) {
        sin.write_all(data)?;
    }
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `st` of a listening socket in /proc/net/tcp.
const TCP_LISTEN: u8 = 0x0A;
/// `st` of a closed connection that no fd holds any more.
const TCP_TIME_WAIT: u8 = 0x06;

/// The states of the IPv4 TCP sockets whose local port is `port` (from /proc/net/tcp).
fn tcp_sockets_on_port(port: u16) -> std::io::Result<Vec<u8>> {
    let text = std::fs::read_to_string("/proc/net/tcp")?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let local = cols.nth(1)?;
            let state = cols.nth(1)?;
            let (_, p) = local.split_once(':')?;
            (u16::from_str_radix(p, 16).ok()? == port)
                .then(|| u8::from_str_radix(state, 16).ok())
                .flatten()
        })
        .collect())
}

/// redis-server on a free loopback port with 10,000 keys: dumped after its client disconnected, restored,
/// and every key read back (redis runs background threads: multi-threaded dump/restore plus its self-pipe,
/// epoll set and TCP listener).
#[test]
fn redis_keys_survive() -> Result<()> {
    redis_round_trip(&[], |_| Ok(()))
}

/// The status lines of every thread of `pid` that make up its credentials, by tid.
fn redis_creds(pid: u32) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let text = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let lines = text
            .lines()
            .filter(|l| {
                [
                    "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapAmb:",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .map(str::to_string)
            .collect();
        out.push((t.file_name().to_string_lossy().into_owned(), lines));
    }
    out.sort();
    out
}

/// Debian's redis-server as its package runs it, under its own `redis` user (`setpriv --reuid redis
/// --regid redis --init-groups`, no capabilities), with 10,000 keys: restored, every key reads back, and
/// every thread runs as redis with its groups and no capability, exactly as dumped.
#[test]
fn redis_as_redis_user_keys_survive() -> Result<()> {
    let uid = std::process::Command::new("id")
        .args(["-u", "redis"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        !uid.is_empty(),
        "no redis user (the redis-server package makes it)"
    );
    let mut before = Vec::new();
    redis_round_trip(
        &["--reuid", "redis", "--regid", "redis", "--init-groups"],
        |(pid, dumped)| {
            let now = redis_creds(pid);
            if dumped {
                before = now;
                return Ok(());
            }
            let as_redis = |line: &String| {
                !line.starts_with("Uid:") || line.split_whitespace().skip(1).all(|v| v == uid)
            };
            let no_caps =
                |line: &String| !line.starts_with("Cap") || line.ends_with("0000000000000000");
            let all_redis = now
                .iter()
                .all(|(_, l)| l.iter().all(|x| as_redis(x) && no_caps(x)));
            if now != before || !all_redis || now.len() < 2 {
                return Err(format!("credentials {now:?}, dumped {before:?}"));
            }
            Ok(())
        },
    )
}

/// redis-server (under `setpriv PRIV` when `privs` is not empty) with 10,000 keys, dumped once its
/// client is gone, restored, PINGed and read back; `check((pid, before_dump))` runs right before the
/// dump and after the restore.
fn redis_round_trip(
    privs: &[&str],
    mut check: impl FnMut((u32, bool)) -> std::result::Result<(), String>,
) -> Result<()> {
    const KEYS: usize = 10_000;
    require_root()?;
    harness::dormant_bin()?;
    let server = harness::find_program("redis-server")?;
    let cli = harness::find_program("redis-cli")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| harness::HarnessError::Io {
            what: "picking a free port".into(),
            path: "127.0.0.1:0".into(),
            source: e,
        })?;
    let port_s = port.to_string();
    // Its own working directory, which the redis user can enter: redis loads `dump.rdb` from there.
    let dir = harness::Scratch::new("redis")?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| harness::HarnessError::Io {
        what: "opening the redis directory to its user".into(),
        path: dir.path().into(),
        source: e,
    })?;
    let dir_s = dir.path().to_string_lossy().into_owned();
    let server_s = server.to_string_lossy().into_owned();
    let mut argv: Vec<&str> = Vec::new();
    if !privs.is_empty() {
        argv.extend_from_slice(privs);
        argv.push(&server_s);
    }
    argv.extend_from_slice(&[
        "--port",
        &port_s,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        &dir_s,
    ]);
    let program = if privs.is_empty() {
        server.clone()
    } else {
        harness::find_program("setpriv")?
    };
    let mut w = Workload::start(Spec::plain("redis", &program).args(argv))?;
    let ping = || {
        harness::wait_until(Duration::from_secs(30), || {
            redis_cli(&cli, port, &["PING".into()], None).is_ok_and(|o| o.trim() == "PONG")
        })
    };
    if !ping() {
        return Err(w.fail("redis-server does not answer PING"));
    }
    let mut load = Vec::new();
    for i in 0..KEYS {
        let (k, v) = (format!("key:{i}"), format!("value:{i}"));
        load.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            )
            .as_bytes(),
        );
    }
    redis_cli(&cli, port, &["--pipe".into()], Some(&load))
        .map_err(|e| w.fail(format!("load: {e}")))?;
    let size = redis_cli(&cli, port, &["DBSIZE".into()], None).unwrap_or_default();
    if size.trim() != KEYS.to_string() {
        return Err(w.fail(format!("DBSIZE {size:?} after loading")));
    }
    // redis-cli has exited, but the server may not have closed its end yet (CLOSE_WAIT), and a dump
    // without --tcp-established refuses any TCP connection: wait until only the listener is left.
    if !harness::wait_until(Duration::from_secs(10), || {
        tcp_sockets_on_port(port).is_ok_and(|states| {
            states
                .iter()
                .all(|&s| s == TCP_LISTEN || s == TCP_TIME_WAIT)
        })
    }) {
        return Err(w.fail(format!(
            "redis-server kept a client connection: {:?}",
            tcp_sockets_on_port(port)
        )));
    }
    check((w.pid() as u32, true)).map_err(|e| w.fail(e))?;
    w.dump(false)?;
    let mut r = w.restore()?;
    let result = (|| {
        if !ping() {
            return Err(w.fail("restored redis-server does not answer PING"));
        }
        check((w.pid() as u32, false)).map_err(|e| w.fail(format!("after restore: {e}")))?;
        let mut mget = vec!["MGET".to_string()];
        mget.extend((0..KEYS).map(|i| format!("key:{i}")));
        let out = redis_cli(&cli, port, &mget, None).map_err(|e| w.fail(format!("MGET: {e}")))?;
        let got: Vec<&str> = out.lines().collect();
        let bad = (0..KEYS)
            .filter(|&i| got.get(i) != Some(&format!("value:{i}").as_str()))
            .count();
        if got.len() != KEYS || bad != 0 {
            return Err(w.fail(format!(
                "{bad} of {KEYS} keys wrong after restore ({} lines)",
                got.len()
            )));
        }
        Ok(())
    })();
    r.kill();
    result
}
