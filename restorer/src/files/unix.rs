//! Unix sockets: unnamed pairs (both ends made by one `socketpair` when the first is opened), listeners,
//! connected stream/seqpacket sockets of which one side is named (an accepted connection and its client),
//! and bound or connected datagram sockets. Queued messages are re-sent from the peer once every
//! description exists.
//!
//! A connection is rebuilt the way it was made: the client side (bound to its own name first, if it had
//! one) connects to a listener of the server side's name, and the accepted socket becomes the server side,
//! so `getsockname`/`getpeername` on both ends read back as at dump time. The listener is the restored one
//! when the image has a listener of that name (listeners are opened before anything else); otherwise a
//! temporary one is bound for the moment of the connect (a listener closed before the dump).
//!
//! A listener's connections waiting to be accepted are rebuilt by connecting their clients (each bound to
//! its own name first) to it in queue order, so `accept` returns them in the original order. Their
//! descriptions are opened after every other one: a connection accepted from the same listener is rebuilt
//! through it by connect + accept, which must not take a pending one.
//!
//! Datagram sockets are bound at open (one connected to an unnamed socket is made with it by `socketpair`:
//! nothing else connects to an unnamed socket); after every description exists their queues are re-sent
//! (each datagram from the restored socket of its sender's name, from an unnamed socket when the sender was
//! unnamed, or for an unnamed receiver from its socketpair partner), and only then are they connected or,
//! a socketpair end whose own connection was dissolved, disconnected (a connected socket accepts datagrams
//! only from its peer).
//!
//! Once every queue is filled, each socket's shutdown bits are re-applied with `shutdown` (after the queues:
//! a socket shut for receiving refuses what is sent to it), the ends made for peers that were closed at
//! dump time are closed (the survivor reads its queue, then EOF), and the paths that were unlinked at dump
//! time are unlinked again (after every connect: a restored connection may have gone through one).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

use dormant_image::records::{DescId, DescKind, FileDesc};
use nix::errno::Errno;

use super::error::{FileRestoreError, OpenFailure};
use super::raw::{check, owned};

/// Unix sockets opened so far that later descriptions refer to.
#[derive(Debug, Default)]
pub struct Sockets {
    /// Ends created with their peer's description, by inode, until their own description is opened.
    ends: HashMap<u64, OwnedFd>,
    /// Socket inode → the description holding it.
    descs: HashMap<u64, DescId>,
    /// Restored listening sockets by name (copies), for connections accepted from them.
    listeners: HashMap<Vec<u8>, OwnedFd>,
    /// Client inode of each connection waiting in a listener's queue → the listener's name.
    pending_client: HashMap<u64, Vec<u8>>,
    /// Listener name → its waiting connections in queue order: (client inode, client name); taken when
    /// the first client is opened.
    pending: HashMap<Vec<u8>, Vec<(u64, Vec<u8>)>>,
    /// Each datagram socket made with its partner by one `socketpair` → that partner.
    partners: HashMap<u64, u64>,
}

impl Sockets {
    /// Learns from every description what opening one needs to know of others: the clients of each
    /// listener's waiting connections and the socketpair partners of datagram sockets.
    pub(super) fn plan(&mut self, descs: &[FileDesc]) {
        let client_name = |want: u64| {
            descs.iter().find_map(|d| match &d.kind {
                DescKind::UnixConn { ino, name, .. } if *ino == want => Some(name.clone()),
                _ => None,
            })
        };
        for d in descs {
            match &d.kind {
                DescKind::UnixListen { name, pending, .. } if !pending.is_empty() => {
                    let queue = pending
                        .iter()
                        .map(|p| (p.client, client_name(p.client).unwrap_or_default()))
                        .collect();
                    for p in pending {
                        self.pending_client.insert(p.client, name.clone());
                    }
                    self.pending.insert(name.clone(), queue);
                }
                DescKind::UnixDgram {
                    ino,
                    peer: Some(peer),
                    peer_name,
                    ..
                } if peer_name.is_empty() => {
                    self.partners.insert(*ino, *peer);
                    self.partners.insert(*peer, *ino);
                }
                _ => {}
            }
        }
    }

    /// Whether `d` is the client of a connection waiting in a listener's queue (opened last: see the
    /// module docs).
    pub(super) fn is_pending_client(&self, d: &FileDesc) -> bool {
        matches!(&d.kind, DescKind::UnixConn { ino, .. } if self.pending_client.contains_key(ino))
    }
}

/// End `ino` of an unnamed pair: the one created with its peer, or a new `socketpair` whose other end
/// waits for the peer's description.
pub(super) fn open_pair(
    st: &mut Sockets,
    id: DescId,
    ino: u64,
    peer: u64,
    sock_type: i32,
) -> Result<OwnedFd, OpenFailure> {
    st.descs.insert(ino, id);
    if let Some(fd) = st.ends.remove(&ino) {
        return Ok(fd);
    }
    let (a, b) = socketpair(sock_type)?;
    st.ends.insert(peer, b);
    Ok(a)
}

/// Both ends of a new `socketpair` of `sock_type`.
fn socketpair(sock_type: i32) -> Result<(OwnedFd, OwnedFd), OpenFailure> {
    let mut sv = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two fds into `sv`.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            sock_type | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    })
    .map_err(OpenFailure::sys("socketpair"))?;
    // SAFETY: both fds were just created by socketpair and are owned by nobody else.
    Ok(unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1]))
    })
}

/// A listener bound to `name`, kept (a copy) for the connections accepted from it.
pub(super) fn open_listener(
    st: &mut Sockets,
    name: &[u8],
    sock_type: i32,
    backlog: Option<u32>,
) -> Result<OwnedFd, OpenFailure> {
    let backlog = backlog.map_or(libc::SOMAXCONN, |b| b.min(i32::MAX as u32) as i32);
    let fd = listen_on(name, sock_type, backlog)?;
    let copy = fd
        .try_clone()
        .map_err(|e| OpenFailure::sys("dup")(super::raw::errno_of(&e)))?;
    st.listeners.insert(name.to_vec(), copy);
    Ok(fd)
}

/// End `ino` of a connection with a named side: the one created with its peer, or both ends made through
/// a listener (see the module docs).
pub(super) fn open_conn(
    st: &mut Sockets,
    id: DescId,
    (ino, peer): (u64, u64),
    sock_type: i32,
    name: &[u8],
    peer_name: &[u8],
) -> Result<OwnedFd, OpenFailure> {
    st.descs.insert(ino, id);
    if let Some(listener) = st.pending_client.get(&ino).cloned() {
        connect_pending(st, &listener, sock_type)?;
    }
    if let Some(fd) = st.ends.remove(&ino) {
        return Ok(fd);
    }
    let (mine, other) = open_connection(sock_type, name, peer_name, &st.listeners)?;
    st.ends.insert(peer, other);
    Ok(mine)
}

/// Connects the clients of the connections waiting on listener `name` to it, in queue order, each bound to
/// its name first; they wait in [`Sockets::ends`] for their descriptions. Once per listener.
fn connect_pending(st: &mut Sockets, name: &[u8], sock_type: i32) -> Result<(), (String, Errno)> {
    let Some(queue) = st.pending.remove(name) else {
        return Ok(());
    };
    for (client, client_name) in queue {
        // Non-blocking: a full queue fails instead of waiting (the dumped queue fitted its backlog).
        let fd = new_socket(sock_type | libc::SOCK_NONBLOCK)?;
        if !client_name.is_empty() {
            bind_named(&fd, &client_name)?;
        }
        connect_named(&fd, name)?;
        st.ends.insert(client, fd);
    }
    Ok(())
}

/// `name` for messages (`@` for the abstract namespace's leading NUL).
fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).replace('\0', "@")
}

/// The address of `name` (a path, or a leading NUL and an abstract name) and its length.
fn sockaddr(name: &[u8]) -> Result<(libc::sockaddr_un, libc::socklen_t), (String, Errno)> {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= sun.sun_path.len() {
        return Err((
            format!("unix name {:?} is empty or too long", shown(name)),
            Errno::ENAMETOOLONG,
        ));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sun.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>()
        + name.len()
        + usize::from(name.first() != Some(&0));
    Ok((sun, len as libc::socklen_t))
}

fn new_socket(sock_type: i32) -> Result<OwnedFd, (String, Errno)> {
    // SAFETY: socket returns a new fd.
    owned(unsafe { libc::socket(libc::AF_UNIX, sock_type | libc::SOCK_CLOEXEC, 0) })
        .map_err(|e| ("socket(AF_UNIX)".to_string(), e))
}

/// Binds `fd` to `name`; a socket file left at the path by the dumped socket is removed first (anything
/// else at the path fails the bind).
fn bind_named(fd: &OwnedFd, name: &[u8]) -> Result<(), (String, Errno)> {
    let (sun, len) = sockaddr(name)?;
    if name.first() != Some(&0) {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::FileTypeExt;
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(path).map_err(|e| {
                (
                    format!("removing the stale socket {}", shown(name)),
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                )
            })?;
        }
    }
    // SAFETY: bind reads `len` bytes of `sun` on our stack.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            len,
        )
    })
    .map(|_| ())
    .map_err(|e| (format!("bind to {}", shown(name)), e))
}

fn connect_named(fd: &OwnedFd, name: &[u8]) -> Result<(), (String, Errno)> {
    let (sun, len) = sockaddr(name)?;
    // SAFETY: connect reads `len` bytes of `sun` on our stack.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            len,
        )
    })
    .map(|_| ())
    .map_err(|e| (format!("connect to {}", shown(name)), e))
}

/// A unix socket bound to `name` (a stale socket file of the dumped one removed first), listening.
fn listen_on(name: &[u8], sock_type: i32, backlog: i32) -> Result<OwnedFd, (String, Errno)> {
    let fd = new_socket(sock_type)?;
    bind_named(&fd, name)?;
    // SAFETY: listen on our own socket.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) })
        .map_err(|e| ("listen".to_string(), e))?;
    Ok(fd)
}

/// Both ends of a connection whose ends are named `name` (this end) and `peer_name`; returns (this end,
/// the peer's end). `listeners` are the restored listeners by name.
fn open_connection(
    sock_type: i32,
    name: &[u8],
    peer_name: &[u8],
    listeners: &HashMap<Vec<u8>, OwnedFd>,
) -> Result<(OwnedFd, OwnedFd), (String, Errno)> {
    // Which side was accepted: the one named like a restored listener, else the named one.
    let mine_is_server = if listeners.contains_key(name) {
        true
    } else if listeners.contains_key(peer_name) {
        false
    } else {
        !name.is_empty()
    };
    let (server_name, client_name) = if mine_is_server {
        (name, peer_name)
    } else {
        (peer_name, name)
    };
    let temp;
    let listener = match listeners.get(server_name) {
        Some(l) => l,
        None => {
            temp = listen_on(server_name, sock_type, libc::SOMAXCONN)?;
            &temp
        }
    };
    let client = new_socket(sock_type)?;
    if !client_name.is_empty() {
        bind_named(&client, client_name)?;
    }
    connect_named(&client, server_name)?;
    let mut p = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one pollfd on our stack; the connection is queued by the connect above.
    if unsafe { libc::poll(&mut p, 1, 1000) } != 1 {
        return Err((
            format!("no connection to accept on {}", shown(server_name)),
            Errno::EAGAIN,
        ));
    }
    // SAFETY: accept4 on our listener; no address is asked for.
    let accepted = owned(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })
    .map_err(|e| (format!("accept on {}", shown(server_name)), e))?;
    Ok(if mine_is_server {
        (accepted, client)
    } else {
        (client, accepted)
    })
}

/// A socket of `sock_type` that is neither connected nor listening, bound to `name` (unbound when empty).
pub(super) fn open_unconnected(sock_type: i32, name: &[u8]) -> Result<OwnedFd, (String, Errno)> {
    let fd = new_socket(sock_type)?;
    if !name.is_empty() {
        bind_named(&fd, name)?;
    }
    Ok(fd)
}

use dormant_image::records::unix::CLOSED_PEER;

/// Re-applies shutdown bits, closes the ends of closed peers and unlinks the paths unlinked at dump time
/// (see the module docs). Runs after [`fill_queues`].
pub(super) fn finish(
    st: &mut Sockets,
    descs: &[FileDesc],
    fds: &std::collections::BTreeMap<DescId, OwnedFd>,
) -> Result<(), FileRestoreError> {
    use dormant_image::records::unix::{RCV_SHUTDOWN, SEND_SHUTDOWN};
    for d in descs {
        let (shutdown, name, unlinked) = match &d.kind {
            DescKind::UnixPair { shutdown, .. } => (shutdown.unwrap_or(0), &[][..], false),
            DescKind::UnixListen { name, unlinked, .. } => (0, &name[..], *unlinked == Some(true)),
            DescKind::UnixConn {
                shutdown,
                name,
                unlinked,
                ..
            }
            | DescKind::UnixDgram {
                shutdown,
                name,
                unlinked,
                ..
            } => (shutdown.unwrap_or(0), &name[..], *unlinked == Some(true)),
            DescKind::UnixUnconnected {
                shutdown,
                name,
                unlinked,
                ..
            } => (*shutdown, &name[..], *unlinked),
            _ => continue,
        };
        let how = match (shutdown & RCV_SHUTDOWN != 0, shutdown & SEND_SHUTDOWN != 0) {
            (false, false) => None,
            (true, false) => Some(libc::SHUT_RD),
            (false, true) => Some(libc::SHUT_WR),
            (true, true) => Some(libc::SHUT_RDWR),
        };
        if let Some(how) = how {
            let fd = fds.get(&d.id).ok_or_else(|| FileRestoreError::Bad {
                id: d.id.0,
                kind: "unix socket",
                reason: "not opened".into(),
            })?;
            // SAFETY: shutdown on a socket we own.
            check(unsafe { libc::shutdown(fd.as_raw_fd(), how) }).map_err(|source| {
                FileRestoreError::Sys {
                    id: d.id.0,
                    kind: "unix socket",
                    what: format!("shutdown({how})"),
                    source,
                }
            })?;
        }
        if unlinked && name.first().is_some_and(|&c| c != 0) {
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::fs::FileTypeExt;
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
            // Only the socket file a bind of this restore left (anything else failed that bind).
            let ours = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
            match if ours {
                std::fs::remove_file(path)
            } else {
                Ok(())
            } {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    return Err(FileRestoreError::Sys {
                        id: d.id.0,
                        kind: "unix socket",
                        what: format!("unlinking {} (unlinked at dump time)", shown(name)),
                        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    })
                }
            }
        }
    }
    st.ends.retain(|ino, _| ino & CLOSED_PEER == 0);
    Ok(())
}

/// Datagram socket `ino` bound to `name` (unbound when empty): made with its partner by one `socketpair`
/// when it has one ([`Sockets::plan`]), else a new socket; queue and connection come later
/// ([`fill_datagrams`]).
pub(super) fn open_datagram(
    st: &mut Sockets,
    id: DescId,
    ino: u64,
    name: &[u8],
) -> Result<OwnedFd, OpenFailure> {
    st.descs.insert(ino, id);
    let fd = match (st.ends.remove(&ino), st.partners.get(&ino)) {
        (Some(fd), _) => fd,
        (None, Some(&partner)) => {
            let (mine, other) = socketpair(libc::SOCK_DGRAM)?;
            st.ends.insert(partner, other);
            mine
        }
        (None, None) => new_socket(libc::SOCK_DGRAM)?,
    };
    if !name.is_empty() {
        bind_named(&fd, name)?;
    }
    Ok(fd)
}

/// Sends every socket's queued messages from its peer, once every description exists; then the datagram
/// queues ([`fill_datagrams`]).
pub(super) fn fill_queues(
    st: &Sockets,
    descs: &[FileDesc],
    fds: &std::collections::BTreeMap<DescId, OwnedFd>,
) -> Result<(), FileRestoreError> {
    for d in descs {
        let (DescKind::UnixPair { peer, queued, .. } | DescKind::UnixConn { peer, queued, .. }) =
            &d.kind
        else {
            continue;
        };
        if queued.is_empty() {
            continue;
        }
        let peer_fd = st
            .descs
            .get(peer)
            .and_then(|pid| fds.get(pid))
            .or_else(|| st.ends.get(peer))
            .ok_or_else(|| FileRestoreError::Bad {
                id: d.id.0,
                kind: "unix socket",
                reason: format!("peer socket {peer} was not created"),
            })?;
        for m in queued {
            // SAFETY: send reads `m.len()` bytes from `m`.
            let n = unsafe {
                libc::send(
                    peer_fd.as_raw_fd(),
                    m.as_ptr().cast(),
                    m.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 || n as usize != m.len() {
                return Err(FileRestoreError::Sys {
                    id: d.id.0,
                    kind: "unix socket",
                    what: format!("re-queueing a {} byte message", m.len()),
                    source: Errno::last(),
                });
            }
        }
    }
    fill_datagrams(st, descs, fds)
}

/// Re-sends every datagram socket's queue, then connects the connected ones and disconnects the
/// socketpair ends whose own connection was dissolved (see the module docs).
fn fill_datagrams(
    st: &Sockets,
    descs: &[FileDesc],
    fds: &std::collections::BTreeMap<DescId, OwnedFd>,
) -> Result<(), FileRestoreError> {
    let by_name: HashMap<&[u8], DescId> = descs
        .iter()
        .filter_map(|d| match &d.kind {
            DescKind::UnixDgram { name, .. } if !name.is_empty() => Some((name.as_slice(), d.id)),
            _ => None,
        })
        .collect();
    let fail = |id: DescId, what: String, source: Errno| FileRestoreError::Sys {
        id: id.0,
        kind: "unix datagram socket",
        what,
        source,
    };
    let bad = |id: DescId, reason: String| FileRestoreError::Bad {
        id: id.0,
        kind: "unix datagram socket",
        reason,
    };
    let unnamed = new_socket(libc::SOCK_DGRAM).map_err(|(w, e)| FileRestoreError::Sys {
        id: 0,
        kind: "unix datagram socket",
        what: w,
        source: e,
    })?;
    for d in descs {
        let DescKind::UnixDgram {
            ino, name, queued, ..
        } = &d.kind
        else {
            continue;
        };
        if queued.is_empty() {
            continue;
        }
        // An unnamed socket is reached through its socketpair partner, a named one by its name.
        let to = if name.is_empty() {
            None
        } else {
            Some(sockaddr(name).map_err(|(w, e)| fail(d.id, w, e))?)
        };
        let partner = st
            .partners
            .get(ino)
            .and_then(|p| st.descs.get(p))
            .and_then(|id| fds.get(id));
        for m in queued {
            let sender = match (&to, m.from.is_empty()) {
                (None, _) => partner.ok_or_else(|| {
                    bad(
                        d.id,
                        format!(
                            "{} queued datagrams on an unnamed socket without a socketpair partner",
                            queued.len()
                        ),
                    )
                })?,
                (Some(_), true) => &unnamed,
                (Some(_), false) => by_name
                    .get(m.from.as_slice())
                    .and_then(|id| fds.get(id))
                    .ok_or_else(|| {
                        bad(
                            d.id,
                            format!(
                                "a datagram queued on {} came from {}, which is not in the image",
                                shown(name),
                                shown(&m.from)
                            ),
                        )
                    })?,
            };
            let (addr, len) = match &to {
                Some((sun, len)) => ((sun as *const libc::sockaddr_un).cast(), *len),
                None => (std::ptr::null(), 0),
            };
            // SAFETY: sendto reads `m.data`, and `len` bytes of the address on our stack (none when
            // sending to the connected partner).
            let n = unsafe {
                libc::sendto(
                    sender.as_raw_fd(),
                    m.data.as_ptr().cast(),
                    m.data.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    addr,
                    len,
                )
            };
            if n < 0 || n as usize != m.data.len() {
                return Err(fail(
                    d.id,
                    format!(
                        "re-queueing a {} byte datagram on {}",
                        m.data.len(),
                        shown(name)
                    ),
                    Errno::last(),
                ));
            }
        }
    }
    for d in descs {
        let DescKind::UnixDgram {
            ino,
            peer,
            peer_name,
            ..
        } = &d.kind
        else {
            continue;
        };
        let fd = fds
            .get(&d.id)
            .ok_or_else(|| bad(d.id, "not opened".into()))?;
        match peer {
            // Connected by the socketpair already.
            Some(_) if peer_name.is_empty() => {}
            Some(_) => connect_named(fd, peer_name).map_err(|(w, e)| fail(d.id, w, e))?,
            // A socketpair end whose partner is connected to it, but not it to the partner.
            None if st.partners.contains_key(ino) => disconnect(fd)
                .map_err(|e| fail(d.id, "dissolving the socketpair connection".into(), e))?,
            None => {}
        }
    }
    Ok(())
}

/// `connect(AF_UNSPEC)`: dissolves a datagram socket's connection.
fn disconnect(fd: &OwnedFd) -> Result<(), Errno> {
    // SAFETY: sockaddr is plain data; all-zero with AF_UNSPEC is the disconnect address.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: connect reads the address on our stack.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &sa,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}
