//! Unix sockets: connected pairs (socketpair, or two connected sockets both in the dump) with their queued
//! messages, peeked with `SO_PEEK_OFF` + `MSG_PEEK` so nothing is consumed. Peers, shutdown state, the
//! inode each socket bound, queue lengths and listeners' waiting connections come from a UNIX_DIAG dump.
//! Listening sockets are carried by name (path or abstract) with their backlog and the connections waiting
//! in their accept queue (each named by its client, in order; the client is a dumped connected socket
//! whose peer is the embryonic socket, [`PENDING_PEER`]). Connected stream sockets with a name on either side (an
//! accepted connection and its client) are carried with both names; datagram sockets that are bound or
//! connected to another socket with their name, their peer (inode and name) and their queued datagrams
//! (each with its sender's name); sockets neither connected nor listening with their name. Every socket
//! carries its shutdown bits and, for a path name, whether the path was unlinked since the bind. A stream
//! socket whose peer was closed (released: no process holds it, sock_diag no longer lists it) is carried as
//! connected to a peer restore creates and closes again, so it reads its queue and then EOF.
//!
//! Refused: a stream peer alive outside the dump; a datagram peer outside the dump that is unnamed or whose
//! path was unlinked (one whose name still reaches it is connected again by name, like CRIU's external
//! unix sockets); a datagram socket connected to a closed one; a queued datagram whose sender restore
//! could not send it from again; a waiting connection whose client sent bytes (only `accept` could read
//! them) or was closed; a path that now holds another file; and messages carrying fds (`SCM_RIGHTS`) or
//! credentials.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::unix::{CLOSED_PEER, PENDING_PEER};
use dormant_image::records::{DescId, DescKind, FileDesc, UnixDatagram, UnixPending};
use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, SockFlag, SockProtocol, SockType};

use super::error::FdError;
use super::sys;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UDIAG_SHOW_ICONS: u32 = 0x8;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
/// Size of `struct unix_diag_msg`; attributes follow it.
const UNIX_DIAG_MSG_LEN: usize = 16;
/// Largest single message peeked.
const PEEK_BUF: usize = 256 << 10;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// What sock_diag tells of one unix socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diag {
    /// The peer's inode when connected (0 or an inode no longer listed: the peer was closed).
    pub peer: Option<u64>,
    /// `sk_shutdown` ([`dormant_image::records::unix::RCV_SHUTDOWN`] and `SEND_SHUTDOWN` bits).
    pub shutdown: u8,
    /// The file the socket's own bind created: (device as the kernel encodes it, inode).
    pub vfs: Option<(u32, u32)>,
    /// `UNIX_DIAG_RQLEN`: for a listener (connections queued, `listen` backlog); for any other socket
    /// (bytes in its receive queue, bytes it sent that are not consumed yet).
    pub rqlen: Option<(u32, u32)>,
    /// `UNIX_DIAG_ICONS` of a listener: the client inode of each connection waiting to be accepted, in the
    /// order `accept` returns them (0 for a client that was closed). The embryonic sockets themselves have
    /// no inode (sock_diag reports 0 for them, and as the peer of their clients).
    pub icons: Vec<u64>,
}

/// Every unix socket of this network namespace, by inode.
pub type DiagMap = HashMap<u64, Diag>;

/// Reads [`Diag`] of every unix socket of this network namespace.
pub fn peers() -> Result<DiagMap, FdError> {
    let sock: OwnedFd = socket::socket(
        socket::AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(FdError::errno("socket(NETLINK_SOCK_DIAG)"))?;
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.push(libc::AF_UNIX as u8);
    req.push(0);
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // all states
    req.extend_from_slice(&0u32.to_ne_bytes()); // ino
    let show = UDIAG_SHOW_PEER | UDIAG_SHOW_VFS | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // cookie
    socket::send(sock.as_raw_fd(), &req, MsgFlags::empty())
        .map_err(FdError::errno("sending the UNIX_DIAG request"))?;
    let mut map = HashMap::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match socket::recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(FdError::errno("reading the UNIX_DIAG reply")(e)),
        };
        if n == 0 {
            return Err(FdError::Parse(
                "UNIX_DIAG reply ended without NLMSG_DONE".into(),
            ));
        }
        let mut off = 0;
        while off + NLMSG_HDRLEN <= n {
            let len = u32_at(&buf, off).unwrap_or(0) as usize;
            let kind = u16_at(&buf, off + 4).unwrap_or(0);
            if len < NLMSG_HDRLEN || off + len > n {
                return Err(FdError::Parse("malformed UNIX_DIAG message".into()));
            }
            let msg = &buf[off + NLMSG_HDRLEN..off + len];
            match kind {
                NLMSG_DONE => return Ok(map),
                NLMSG_ERROR => {
                    let code = u32_at(msg, 0).unwrap_or(0) as i32;
                    return Err(FdError::errno("UNIX_DIAG")(Errno::from_raw(-code)));
                }
                SOCK_DIAG_BY_FAMILY => {
                    let ino = u32_at(msg, 4).unwrap_or(0);
                    let mut d = Diag::default();
                    let mut a = UNIX_DIAG_MSG_LEN;
                    while a + 4 <= msg.len() {
                        let alen = u16_at(msg, a).unwrap_or(0) as usize;
                        let atype = u16_at(msg, a + 2).unwrap_or(0);
                        if alen < 4 {
                            break;
                        }
                        match atype {
                            UNIX_DIAG_PEER => d.peer = u32_at(msg, a + 4).map(u64::from),
                            UNIX_DIAG_SHUTDOWN => d.shutdown = msg.get(a + 4).copied().unwrap_or(0),
                            UNIX_DIAG_VFS => {
                                d.vfs = u32_at(msg, a + 4)
                                    .zip(u32_at(msg, a + 8))
                                    .map(|(i, v)| (v, i))
                            }
                            UNIX_DIAG_RQLEN => d.rqlen = u32_at(msg, a + 4).zip(u32_at(msg, a + 8)),
                            UNIX_DIAG_ICONS => {
                                let end = (a + alen).min(msg.len());
                                d.icons = (a + 4..end)
                                    .step_by(4)
                                    .filter_map(|o| u32_at(msg, o).map(u64::from))
                                    .collect();
                            }
                            _ => {}
                        }
                        a += (alen + 3) & !3;
                    }
                    map.insert(u64::from(ino), d);
                }
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
}

/// Whether the socket has a name (path or abstract); socketpair ends have none.
fn is_named(dup: &OwnedFd) -> Result<bool, FdError> {
    let (_, len) = sys::sock_name(dup, false).map_err(FdError::sys("getsockname"))?;
    Ok(len as usize > std::mem::size_of::<libc::sa_family_t>())
}

/// The bound name (`sun_path` bytes, abstract names with their leading NUL).
fn name_of(dup: &OwnedFd) -> Result<Vec<u8>, FdError> {
    let (ss, len) = sys::sock_name(dup, false).map_err(FdError::sys("getsockname"))?;
    // SAFETY: the storage holds a sockaddr_un for an AF_UNIX socket and is large enough for one.
    let sun = unsafe { &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_un>() };
    Ok(sun_bytes(sun, len))
}

/// The peer's name; empty when the peer is unnamed or there is none.
fn peer_name_of(dup: &OwnedFd) -> Result<Vec<u8>, FdError> {
    match sys::sock_name(dup, true) {
        Ok((ss, len)) => {
            // SAFETY: the storage holds a sockaddr_un for an AF_UNIX socket and is large enough for one.
            let sun =
                unsafe { &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_un>() };
            Ok(sun_bytes(sun, len))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(Vec::new()),
        Err(e) => Err(FdError::sys("getpeername")(e)),
    }
}

/// A name for messages: ` (path)`, ` (@abstract)`, or nothing for an unnamed socket.
pub fn shown_name(name: &[u8]) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({})", String::from_utf8_lossy(name).replace('\0', "@"))
    }
}

/// [`holders_text`] of a socket no process holds.
const NO_HOLDER: &str =
    "which no process holds (it is in flight or its holders are hidden from the dumper)";

/// Which processes hold socket `ino` (scans `/proc/*/fd`; for error messages only).
pub fn holders_text(ino: u64) -> String {
    let want = format!("socket:[{ino}]");
    let mut pids = Vec::new();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            if fds
                .flatten()
                .any(|f| std::fs::read_link(f.path()).is_ok_and(|l| l.as_os_str() == want.as_str()))
            {
                pids.push(pid.to_string());
            }
        }
    }
    if pids.is_empty() {
        NO_HOLDER.into()
    } else {
        format!("held by pid {} outside the dump", pids.join(", "))
    }
}

/// `sun_path` bytes of an address of length `len`: a path without its terminating NUL, or an abstract name
/// with its leading NUL; empty for an unnamed socket.
fn sun_bytes(sun: &libc::sockaddr_un, len: libc::socklen_t) -> Vec<u8> {
    let off = std::mem::size_of::<libc::sa_family_t>();
    let n = (len as usize).saturating_sub(off).min(sun.sun_path.len());
    let mut name: Vec<u8> = sun.sun_path[..n].iter().map(|&c| c as u8).collect();
    if name.first() != Some(&0) {
        // A path: drop the terminating NUL and anything after it.
        if let Some(end) = name.iter().position(|&c| c == 0) {
            name.truncate(end);
        }
    }
    name
}

/// Whether path `name` of a socket held by task `pid` was unlinked: no file is at the path any more (seen
/// from the task's root, or its cwd for a relative name). `vfs` is the file the socket's own bind created,
/// when it bound the name itself (an accepted socket has its listener's name and no file of its own).
/// Abstract and empty names are never unlinked. A path that now holds another file is refused: restore
/// could neither bind there nor give the socket its name elsewhere.
fn path_unlinked(pid: u32, name: &[u8], vfs: Option<(u32, u32)>) -> Result<bool, FdError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if name.is_empty() || name[0] == 0 {
        return Ok(false);
    }
    let rel = std::ffi::OsStr::from_bytes(name);
    let at = if name[0] == b'/' {
        std::path::PathBuf::from(format!("/proc/{pid}/root")).join(
            std::path::Path::new(rel)
                .strip_prefix("/")
                .unwrap_or(std::path::Path::new(rel)),
        )
    } else {
        std::path::PathBuf::from(format!("/proc/{pid}/cwd")).join(rel)
    };
    let md = match std::fs::symlink_metadata(&at) {
        Ok(md) => md,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(true),
        Err(e) => return Err(FdError::sys(format!("stat of {}", at.display()))(e)),
    };
    let same = match vfs {
        // The kernel's dev_t: 12 bits of major above 20 bits of minor.
        Some((dev, ino)) => {
            md.ino() == u64::from(ino)
                && md.dev() == libc::makedev(dev >> 20, dev & 0xf_ffff) as u64
        }
        None => md.file_type().is_socket(),
    };
    if same {
        return Ok(false);
    }
    Err(FdError::Socket(format!(
        "unix socket bound to{}: its path was unlinked and now holds another file, so restore could not \
         give the socket its name back",
        shown_name(name)
    )))
}

/// A listening socket: its name, its backlog and the connections waiting in its accept queue (see
/// [`pending_of`]).
fn listener(
    pid: u32,
    dup: &OwnedFd,
    sock_type: i32,
    diag: &Diag,
    all: &DiagMap,
) -> Result<DescKind, FdError> {
    let name = name_of(dup)?;
    if name.is_empty() {
        return Err(FdError::Socket(
            "listening unix socket without a name".into(),
        ));
    }
    let pending = pending_of(&name, diag, all)?;
    let mut p = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(dup),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one pollfd on our stack without waiting.
    if unsafe { libc::poll(&mut p, 1, 0) } < 0 {
        return Err(FdError::last_os("poll"));
    }
    if p.revents & libc::POLLIN != 0 && pending.is_empty() {
        return Err(FdError::Socket(format!(
            "listening unix socket{} has connections waiting to be accepted, but sock_diag names none \
             (UNIX_DIAG_ICONS): they would be lost",
            shown_name(&name)
        )));
    }
    let unlinked = Some(path_unlinked(pid, &name, diag.vfs)?);
    Ok(DescKind::UnixListen {
        name,
        sock_type,
        unlinked,
        backlog: diag.rqlen.map(|(_, backlog)| backlog),
        pending,
    })
}

/// The connections waiting in the accept queue of the listener named `name`, in order, each named by its
/// client (whose process must be in the dump: [`check_peers`]). Refused: a connection whose client already
/// sent data (it sits in the embryonic socket's receive queue, which only `accept` could read, taking the
/// connection from the process), and one whose client was closed (its name, which `accept` reports, went
/// with it).
fn pending_of(name: &[u8], diag: &Diag, all: &DiagMap) -> Result<Vec<UnixPending>, FdError> {
    let mut pending = Vec::with_capacity(diag.icons.len());
    for (i, &client) in diag.icons.iter().enumerate() {
        let refuse = |why: String| {
            FdError::Socket(format!(
                "connection {} of {} waiting to be accepted on unix socket{}: {why}",
                i + 1,
                diag.icons.len(),
                shown_name(name)
            ))
        };
        let Some(c) = all.get(&client).filter(|_| client != 0) else {
            return Err(refuse(
                "its client socket was closed, and with it the name accept() would report (not \
                 supported)"
                    .into(),
            ));
        };
        // The client's send buffer in use: what it sent that waits in the embryonic socket.
        let sent = c.rqlen.map_or(0, |(_, out)| out);
        if sent > 0 {
            return Err(refuse(format!(
                "its client socket {client} already sent data ({sent} bytes of buffer), which only \
                 accept() could read (not supported: the dump would have to take the connection from \
                 the process)"
            )));
        }
        pending.push(UnixPending { client });
    }
    Ok(pending)
}

/// Whether socket `ino` is the client of a connection waiting in the queue of a listener of this network
/// namespace.
fn is_waiting_client(ino: u64, diag: &DiagMap) -> bool {
    diag.values().any(|d| d.icons.contains(&ino))
}

/// Whether socket `peer` was closed: sock_diag lists it no more (or names no inode) and no process holds
/// it.
fn peer_closed(peer: u64, diag: &DiagMap) -> bool {
    peer == 0 || (!diag.contains_key(&peer) && holders_text(peer) == NO_HOLDER)
}

/// One end of a connected pair or connection, a datagram socket, a listener, or an unconnected socket,
/// held by task `pid`.
pub fn dump(pid: u32, ino: u64, diag: &DiagMap, dup: &OwnedFd) -> Result<DescKind, FdError> {
    let sock_type =
        sys::sockopt_int(dup, libc::SOL_SOCKET, libc::SO_TYPE).map_err(FdError::sys("SO_TYPE"))?;
    let me = diag.get(&ino).cloned().unwrap_or_default();
    if sys::sockopt_int(dup, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(0) != 0 {
        return listener(pid, dup, sock_type, &me, diag);
    }
    let name = if is_named(dup)? {
        name_of(dup)?
    } else {
        Vec::new()
    };
    let unlinked = path_unlinked(pid, &name, me.vfs)?;
    let peer = me.peer;
    let peer_name = if peer.is_some() {
        peer_name_of(dup)?
    } else {
        Vec::new()
    };
    let shutdown = Some(me.shutdown);
    if sock_type == libc::SOCK_DGRAM {
        let mutual = peer.is_some_and(|p| diag.get(&p).and_then(|d| d.peer) == Some(ino));
        if !(mutual && name.is_empty() && peer_name.is_empty()) {
            if peer.is_some() && peer_name.is_empty() {
                // Only a socketpair connects to an unnamed socket; when the partner then connected
                // elsewhere the kernel purged its queue and left a one-shot ECONNRESET (sk_err) on this
                // one, which neither a dump can read without clearing nor a restore set.
                return Err(FdError::Socket(
                    "datagram socket connected to an unnamed socket that is not its pair (not \
                     supported: its pending ECONNRESET cannot be carried)"
                        .into(),
                ));
            }
            if peer.is_some_and(|p| peer_closed(p, diag)) {
                return Err(FdError::Socket(format!(
                    "unix datagram socket{} is connected to a socket{} that was closed (its next send \
                     fails with ECONNREFUSED; not supported)",
                    shown_name(&name),
                    shown_name(&peer_name)
                )));
            }
            let queued = peek_all(dup)?;
            return Ok(DescKind::UnixDgram {
                ino,
                name,
                peer,
                peer_name,
                queued,
                shutdown,
                unlinked: Some(unlinked),
            });
        }
    }
    let Some(mut peer) = peer else {
        return Ok(DescKind::UnixUnconnected {
            sock_type,
            name,
            unlinked,
            shutdown: me.shutdown,
        });
    };
    // A client connected to an embryonic socket (restore connects it to the listener again) is not one
    // whose peer was closed, though sock_diag names no peer inode for either.
    let waiting = peer == PENDING_PEER && is_waiting_client(ino, diag);
    if !waiting && peer_closed(peer, diag) {
        if !peer_name.is_empty() && peer_name[0] != 0 {
            return Err(FdError::Socket(format!(
                "unix socket {ino}{}: its peer was closed while bound to{} (not supported: restore \
                 would have to recreate that path)",
                shown_name(&name),
                shown_name(&peer_name)
            )));
        }
        // A peer restore creates and closes: no dumped socket has this inode.
        peer = closed_peer_of(ino);
    }
    let queued = peek_all(dup)?.into_iter().map(|m| m.data).collect();
    if name.is_empty() && peer_name.is_empty() {
        return Ok(DescKind::UnixPair {
            ino,
            peer,
            sock_type,
            queued,
            shutdown,
        });
    }
    Ok(DescKind::UnixConn {
        ino,
        peer,
        sock_type,
        name,
        peer_name,
        queued,
        shutdown,
        unlinked: Some(unlinked),
    })
}

/// The stand-in inode of the closed peer of socket `ino`: above every real inode (those are 32-bit), so
/// no description has it and [`check_peers`] and restore know it for a closed peer.
pub fn closed_peer_of(ino: u64) -> u64 {
    CLOSED_PEER | ino
}

/// Whether datagram socket `kind` (held by task `pid`) is connected by path to a socket whose path is gone
/// (unlinked): restore can rebuild that connection only when the peer is in the dump ([`check_peers`]). A
/// path that now holds another file is refused.
pub fn peer_path_gone(pid: u32, kind: &DescKind, diag: &DiagMap) -> Result<bool, FdError> {
    match kind {
        DescKind::UnixDgram {
            peer: Some(peer),
            peer_name,
            ..
        } => path_unlinked(pid, peer_name, diag.get(peer).and_then(|d| d.vfs)),
        _ => Ok(false),
    }
}

/// Checks what only the whole dump can tell: every connected unix socket's peer is in it (or was closed),
/// except a datagram socket connected by name to a peer outside the dump whose name still reaches it
/// (`peer_path_gone` holds those whose peer's path was unlinked); every client of a connection waiting in a
/// listener's queue is in it; every queued datagram can be sent again from its sender's name
/// ([`check_senders`]). Refuses the first that fails, naming its description.
pub fn check_peers(
    descs: &[FileDesc],
    peer_path_gone: &HashSet<u64>,
) -> Result<(), (DescId, FdError)> {
    let inos: HashSet<u64> = descs
        .iter()
        .filter_map(|d| match d.kind {
            DescKind::UnixPair { ino, .. }
            | DescKind::UnixConn { ino, .. }
            | DescKind::UnixDgram { ino, .. } => Some(ino),
            _ => None,
        })
        .collect();
    // The clients of connections waiting in a dumped listener's queue.
    let mut waiting = HashSet::new();
    for d in descs {
        let DescKind::UnixListen { name, pending, .. } = &d.kind else {
            continue;
        };
        for p in pending {
            if !inos.contains(&p.client) {
                return Err((
                    d.id,
                    FdError::Socket(format!(
                        "a connection waiting to be accepted on unix socket{}: its client socket {} is \
                         {}",
                        shown_name(name),
                        p.client,
                        holders_text(p.client)
                    )),
                ));
            }
            waiting.insert(p.client);
        }
    }
    for d in descs {
        let (ino, peer, peer_name) = match &d.kind {
            DescKind::UnixPair { ino, peer, .. } => (*ino, *peer, &[][..]),
            DescKind::UnixConn {
                ino,
                peer,
                peer_name,
                ..
            } => (*ino, *peer, peer_name.as_slice()),
            DescKind::UnixDgram {
                ino,
                peer: Some(peer),
                peer_name,
                ..
            } if peer_name.is_empty() || peer_path_gone.contains(ino) => {
                (*ino, *peer, peer_name.as_slice())
            }
            _ => continue,
        };
        let in_queue = peer == PENDING_PEER && waiting.contains(&ino);
        if peer & CLOSED_PEER == 0 && !inos.contains(&peer) && !in_queue {
            let holders = holders_text(peer);
            return Err((
                d.id,
                FdError::UnixPeerOutside {
                    ino,
                    peer,
                    peer_name: shown_name(peer_name),
                    holders: if peer_name.is_empty() {
                        holders
                    } else {
                        format!("{holders}, and its path was unlinked")
                    },
                },
            ));
        }
    }
    check_senders(descs)
}

/// The socketpair partner of each unnamed datagram socket connected to an unnamed socket: restore rebuilds
/// both with one `socketpair` (only a socketpair connects to an unnamed socket).
pub fn dgram_partners(descs: &[FileDesc]) -> HashMap<u64, u64> {
    let mut partners = HashMap::new();
    for d in descs {
        if let DescKind::UnixDgram {
            ino,
            peer: Some(peer),
            peer_name,
            ..
        } = &d.kind
        {
            if peer_name.is_empty() {
                partners.insert(*ino, *peer);
                partners.insert(*peer, *ino);
            }
        }
    }
    partners
}

/// Every datagram queued on a unix datagram socket can be sent again the way it came: from the dumped
/// datagram socket bound to its sender's name (or an unnamed socket when the sender was unnamed); on an
/// unnamed socket, which only its socketpair partner can reach, from that partner.
fn check_senders(descs: &[FileDesc]) -> Result<(), (DescId, FdError)> {
    let names: HashMap<&[u8], u64> = descs
        .iter()
        .filter_map(|d| match &d.kind {
            DescKind::UnixDgram { ino, name, .. } if !name.is_empty() => {
                Some((name.as_slice(), *ino))
            }
            _ => None,
        })
        .collect();
    let partners = dgram_partners(descs);
    let name_of_ino = |want: u64| {
        descs.iter().find_map(|d| match &d.kind {
            DescKind::UnixDgram { ino, name, .. } if *ino == want => Some(name.as_slice()),
            _ => None,
        })
    };
    for d in descs {
        let DescKind::UnixDgram {
            ino, name, queued, ..
        } = &d.kind
        else {
            continue;
        };
        let partner_name = if name.is_empty() {
            partners.get(ino).and_then(|p| name_of_ino(*p))
        } else {
            None
        };
        for (i, m) in queued.iter().enumerate() {
            let why = if name.is_empty() {
                match partner_name {
                    None => Some(
                        "only its socketpair partner could have sent it, and that partner is not in \
                         the dump"
                            .to_string(),
                    ),
                    Some(p) if p != m.from.as_slice() => Some(format!(
                        "its sender{} is not the socketpair partner{}, the only socket that can reach \
                         this one",
                        shown_name(&m.from),
                        shown_name(p)
                    )),
                    Some(_) => None,
                }
            } else if !m.from.is_empty() && !names.contains_key(m.from.as_slice()) {
                Some(format!(
                    "its sender{} is not a datagram socket of the dump, so restore could not send it \
                     from that name",
                    shown_name(&m.from)
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err((
                    d.id,
                    FdError::Socket(format!(
                        "datagram {} of {} queued on unix datagram socket{}: {why}",
                        i + 1,
                        queued.len(),
                        if name.is_empty() {
                            " (unnamed)".to_string()
                        } else {
                            shown_name(name)
                        }
                    )),
                ));
            }
        }
    }
    Ok(())
}

/// Every queued message with its sender's name (empty when unnamed, and for stream sockets), peeked from
/// offset 0 on with `SO_PEEK_OFF`; the socket's own peek offset is put back afterwards.
fn peek_all(dup: &OwnedFd) -> Result<Vec<UnixDatagram>, FdError> {
    let dgram = sys::sockopt_int(dup, libc::SOL_SOCKET, libc::SO_TYPE)
        .map_err(FdError::sys("SO_TYPE"))?
        == libc::SOCK_DGRAM;
    let old = sys::sockopt_int(dup, libc::SOL_SOCKET, libc::SO_PEEK_OFF)
        .map_err(FdError::sys("SO_PEEK_OFF"))?;
    sys::set_sockopt_int(dup, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
        .map_err(FdError::sys("setting SO_PEEK_OFF"))?;
    let got = peek_loop(dup, dgram);
    let reset = sys::set_sockopt_int(dup, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old);
    let got = got?;
    reset.map_err(FdError::sys(format!("putting SO_PEEK_OFF back to {old}")))?;
    Ok(got)
}

/// Most messages peeked from one socket (a guard against a queue that never ends).
const MAX_MESSAGES: usize = 1 << 20;

/// Closes every fd an `SCM_RIGHTS` control message of `mh` installed in this process (a peek installs
/// copies of the fds in flight); returns how many there were.
fn close_passed_fds(mh: &libc::msghdr) -> usize {
    let mut closed = 0;
    // SAFETY: `mh` was filled by recvmsg; the CMSG_* macros walk its control buffer within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                let header = libc::CMSG_LEN(0) as usize;
                let n = ((*c).cmsg_len as usize).saturating_sub(header)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..n {
                    libc::close(data.add(i).read_unaligned());
                    closed += 1;
                }
            }
            c = libc::CMSG_NXTHDR(mh, c);
        }
    }
    closed
}

fn peek_loop(dup: &OwnedFd, dgram: bool) -> Result<Vec<UnixDatagram>, FdError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; PEEK_BUF];
    let mut cmsg = [0u64; 64];
    loop {
        if out.len() >= MAX_MESSAGES {
            return Err(FdError::Socket(format!(
                "more than {MAX_MESSAGES} queued messages"
            )));
        }
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: sockaddr_un is plain data; all-zero is valid.
        let mut from: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        // SAFETY: msghdr is plain data; all-zero is valid.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_name = (&mut from as *mut libc::sockaddr_un).cast();
        mh.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cmsg.as_mut_ptr().cast();
        mh.msg_controllen = std::mem::size_of_val(&cmsg);
        // SAFETY: the kernel writes into `buf`, `from` and `cmsg` within the lengths given in `mh`.
        let n = unsafe {
            libc::recvmsg(
                dup.as_raw_fd(),
                &mut mh,
                libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                return Ok(out);
            }
            return Err(FdError::sys("peeking the queue")(e));
        }
        if close_passed_fds(&mh) > 0 {
            return Err(FdError::Socket(format!(
                "message {} of the receive queue carries open files in flight (SCM_RIGHTS), which cannot be \
                 carried; the sender's fds exist only in the queue",
                out.len() + 1
            )));
        }
        if mh.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(FdError::Socket(format!(
                "message {} of the receive queue carries more ancillary data (SCM_RIGHTS) than fits",
                out.len() + 1
            )));
        }
        if mh.msg_controllen > 0 {
            return Err(FdError::Socket(
                "a queued message carries credentials (SCM_CREDENTIALS), which is not supported"
                    .into(),
            ));
        }
        if mh.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(FdError::Socket(format!(
                "a queued message is larger than {PEEK_BUF} bytes"
            )));
        }
        if n == 0 && !dgram {
            // Stream end-of-data (peer shut down).
            return Ok(out);
        }
        let name = if dgram {
            sun_bytes(&from, mh.msg_namelen)
        } else {
            Vec::new()
        };
        out.push(UnixDatagram {
            from: name,
            data: buf[..n as usize].to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dormant_image::records::UnixDatagram as Queued;
    use std::os::unix::net::{UnixDatagram, UnixStream};

    fn dup_of(fd: &impl std::os::fd::AsFd) -> OwnedFd {
        fd.as_fd().try_clone_to_owned().unwrap()
    }

    fn ino_of(fd: &impl AsRawFd) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    /// A bound datagram socket's queue comes with each sender's name (empty datagrams included), and
    /// stays queued.
    #[test]
    fn bound_datagram_queue_with_senders() {
        let dir = tempfile::tempdir().unwrap();
        let (at, from) = (dir.path().join("srv"), dir.path().join("cli"));
        let srv = UnixDatagram::bind(&at).unwrap();
        let cli = UnixDatagram::bind(&from).unwrap();
        cli.send_to(b"one", &at).unwrap();
        UnixDatagram::unbound().unwrap().send_to(b"", &at).unwrap();
        cli.send_to(b"three", &at).unwrap();
        let ino = ino_of(&srv);
        let got = dump(std::process::id(), ino, &peers().unwrap(), &dup_of(&srv)).unwrap();
        let DescKind::UnixDgram {
            name, peer, queued, ..
        } = got
        else {
            panic!("{got:?}")
        };
        assert_eq!(name, at.as_os_str().as_encoded_bytes());
        assert_eq!(peer, None);
        let from = from.as_os_str().as_encoded_bytes().to_vec();
        let q = |from: &[u8], data: &[u8]| Queued {
            from: from.to_vec(),
            data: data.to_vec(),
        };
        assert_eq!(
            queued,
            vec![q(&from, b"one"), q(b"", b""), q(&from, b"three")]
        );
        let mut buf = [0u8; 8];
        assert_eq!(srv.recv(&mut buf).unwrap(), 3, "nothing was consumed");
    }

    /// An fd in flight is refused by name, and the copy the peek installed here is closed again.
    #[test]
    fn scm_rights_refused_without_leaking() {
        let (a, b) = UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passed");
        let passed = std::fs::File::create(&path).unwrap();
        let fds = [passed.as_raw_fd()];
        let iov = [std::io::IoSlice::new(b"x")];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        nix::sys::socket::sendmsg::<()>(a.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
            .unwrap();
        // Fds of this process open on the passed file (other tests run in parallel: count only these).
        let count = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == path))
                .count()
        };
        let (dup, peers) = (dup_of(&b), peers().unwrap());
        let before = count();
        let err = dump(std::process::id(), ino_of(&b), &peers, &dup)
            .unwrap_err()
            .to_string();
        assert!(err.contains("SCM_RIGHTS"), "{err}");
        assert_eq!(count(), before, "the peeked fd was closed");
    }

    fn desc(id: u32, kind: DescKind) -> FileDesc {
        FileDesc {
            id: DescId(id),
            flags: 0,
            kind,
            owner: None,
        }
    }

    fn dump_own(fd: &impl std::os::fd::AsFd) -> Result<DescKind, FdError> {
        let raw = fd.as_fd().as_raw_fd();
        dump(
            std::process::id(),
            ino_of(&raw),
            &peers().unwrap(),
            &dup_of(fd),
        )
    }

    fn listen(at: &std::path::Path, backlog: i32) -> OwnedFd {
        let l = std::os::unix::net::UnixListener::bind(at).unwrap();
        // SAFETY: listen on our own socket with another backlog.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), backlog) }, 0);
        OwnedFd::from(l)
    }

    /// A listener's waiting connections come in queue order with their clients, and its backlog; the
    /// clients' descriptions name the embryonic sockets as peers, which the whole-dump check accepts.
    #[test]
    fn listener_with_pending_connections() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("l");
        let l = listen(&at, 5);
        let c1 = UnixStream::connect(&at).unwrap();
        let c2 = UnixStream::connect(&at).unwrap();
        let got = dump_own(&l).unwrap();
        let DescKind::UnixListen {
            backlog, pending, ..
        } = &got
        else {
            panic!("{got:?}")
        };
        assert_eq!(*backlog, Some(5));
        let clients: Vec<u64> = pending.iter().map(|p| p.client).collect();
        assert_eq!(clients, vec![ino_of(&c1), ino_of(&c2)]);
        let pending = pending.clone();
        let mut descs = vec![desc(1, got.clone())];
        for (i, c) in [&c1, &c2].into_iter().enumerate() {
            let k = dump_own(c).unwrap();
            let DescKind::UnixConn { peer, .. } = &k else {
                panic!("{k:?}")
            };
            assert_eq!((*peer, pending[i].client), (PENDING_PEER, ino_of(c)));
            descs.push(desc(2 + i as u32, k));
        }
        check_peers(&descs, &HashSet::new()).unwrap();
        // Without its second client the dump is refused, naming the connection.
        descs.pop();
        let err = check_peers(&descs, &HashSet::new())
            .unwrap_err()
            .1
            .to_string();
        assert!(
            err.contains("waiting to be accepted") && err.contains("client socket"),
            "{err}"
        );
        // Nothing was accepted.
        assert!(UnixListenerRef(&l).accepts_two());
    }

    struct UnixListenerRef<'a>(&'a OwnedFd);
    impl UnixListenerRef<'_> {
        fn accepts_two(&self) -> bool {
            (0..2).all(|_| {
                // SAFETY: accept4 on our listener, non-blocking; the accepted fd is closed at once.
                let fd = unsafe {
                    libc::accept4(
                        self.0.as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK,
                    )
                };
                // SAFETY: closing the fd accept4 just gave us.
                fd >= 0 && unsafe { libc::close(fd) } == 0
            })
        }
    }

    /// A waiting connection whose client already sent bytes is refused (they cannot be read without
    /// accepting), and so is one whose client was closed.
    #[test]
    fn pending_with_data_or_closed_client_refused() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("l");
        let l = listen(&at, 5);
        let mut c = UnixStream::connect(&at).unwrap();
        std::io::Write::write_all(&mut c, b"hello").unwrap();
        let err = dump_own(&l).unwrap_err().to_string();
        assert!(err.contains("already sent data"), "{err}");
        let at2 = dir.path().join("l2");
        let l2 = listen(&at2, 5);
        drop(UnixStream::connect(&at2).unwrap());
        let err = dump_own(&l2).unwrap_err().to_string();
        assert!(err.contains("client socket was closed"), "{err}");
    }

    /// A queued datagram whose sender is no datagram socket of the dump is refused by the whole-dump
    /// check; with the sender in the dump it passes.
    #[test]
    fn queued_datagram_sender_must_be_dumped() {
        let dir = tempfile::tempdir().unwrap();
        let (at, from) = (dir.path().join("srv"), dir.path().join("cli"));
        let srv = UnixDatagram::bind(&at).unwrap();
        let cli = UnixDatagram::bind(&from).unwrap();
        cli.send_to(b"one", &at).unwrap();
        let mut descs = vec![desc(1, dump_own(&srv).unwrap())];
        let err = check_peers(&descs, &HashSet::new())
            .unwrap_err()
            .1
            .to_string();
        assert!(
            err.contains("is not a datagram socket of the dump"),
            "{err}"
        );
        descs.push(desc(2, dump_own(&cli).unwrap()));
        check_peers(&descs, &HashSet::new()).unwrap();
    }

    /// A datagram socket connected to a closed one is refused; a stream socket whose peer is alive
    /// outside the dump is refused naming who holds the peer.
    #[test]
    fn dead_and_outside_peers_refused() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("srv");
        let srv = UnixDatagram::bind(&at).unwrap();
        let cli = UnixDatagram::unbound().unwrap();
        cli.connect(&at).unwrap();
        drop(srv);
        let err = dump_own(&cli).unwrap_err().to_string();
        assert!(err.contains("was closed"), "{err}");
        let (a, _b) = UnixStream::pair().unwrap();
        let descs = vec![desc(1, dump_own(&a).unwrap())];
        let err = check_peers(&descs, &HashSet::new())
            .unwrap_err()
            .1
            .to_string();
        assert!(err.contains("held by pid"), "{err}");
    }
}
