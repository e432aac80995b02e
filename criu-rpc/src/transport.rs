//! The connection to the client: the SOCK_SEQPACKET socket the client handed us as an inherited fd. One
//! protobuf message per datagram, no length prefix (a client reads a fixed-size buffer, 40 KiB for runc).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    getsockopt, recv, recvmsg, sendmsg, sockopt, ControlMessage, MsgFlags, SockType,
};
use prost::Message;

use crate::error::RpcError;
use crate::proto::{CriuReq, CriuResp};

/// Largest request accepted (CRIU's own clients stay far below: a RESTORE of runc is a few KiB).
const MAX_REQUEST: usize = 1 << 20;

/// The client connection.
#[derive(Debug)]
pub struct Conn {
    sock: OwnedFd,
    peer_pid: u32,
}

impl Conn {
    /// Takes the inherited socket `fd`: it must be an AF_UNIX SOCK_SEQPACKET socket whose peer is the
    /// client (its pid, from SO_PEERCRED, is how the client's fds are opened, see [`crate::peer`]).
    pub fn from_inherited(fd: RawFd) -> Result<Conn, RpcError> {
        let borrowed = borrow_inherited(fd)?;
        let bad = |what: String| RpcError::BadSocket { fd, what };
        let ty = getsockopt(&borrowed, sockopt::SockType)
            .map_err(|e| bad(format!("not a socket ({e})")))?;
        if ty != SockType::SeqPacket {
            return Err(bad(format!("a {ty:?} socket, not SOCK_SEQPACKET")));
        }
        let cred = getsockopt(&borrowed, sockopt::PeerCredentials)
            .map_err(|e| bad(format!("SO_PEERCRED: {e}")))?;
        let peer_pid = u32::try_from(cred.pid())
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("peer pid {} (no connected client)", cred.pid())))?;
        // SAFETY: the fd was checked above to be an open socket; the client passed it to us to own (it is
        // the server end of its socketpair), and nothing else in this process uses it.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Conn { sock, peer_pid })
    }

    /// The client's pid (SO_PEERCRED), in our pid namespace.
    pub fn peer_pid(&self) -> u32 {
        self.peer_pid
    }

    /// The next request; `None` when the client closed the connection.
    pub fn recv(&self) -> Result<Option<CriuReq>, RpcError> {
        // Peek with MSG_TRUNC: a SOCK_SEQPACKET recv then returns the whole datagram's length.
        let mut probe = [0u8; 1];
        let len = loop {
            match recv(
                self.sock.as_raw_fd(),
                &mut probe,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Err(Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) => return Ok(None),
                other => break other.map_err(|source| RpcError::Io { op: "recv", source })?,
            }
        };
        if len == 0 {
            return Ok(None);
        }
        if len > MAX_REQUEST {
            return Err(RpcError::Protocol(format!(
                "a request of {len} bytes (more than {MAX_REQUEST})"
            )));
        }
        let mut buf = vec![0u8; len];
        let got = loop {
            match recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                other => break other.map_err(|source| RpcError::Io { op: "recv", source })?,
            }
        };
        let req = CriuReq::decode(&buf[..got])
            .map_err(|e| RpcError::Protocol(format!("undecodable request: {e}")))?;
        Ok(Some(req))
    }

    /// Sends one answer or notification.
    pub fn send(&self, resp: &CriuResp) -> Result<(), RpcError> {
        self.send_with_fd(resp, None)
    }

    /// Sends one message, with `fd` attached (SCM_RIGHTS) when given.
    pub fn send_with_fd(
        &self,
        resp: &CriuResp,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), RpcError> {
        let bytes = resp.encode_to_vec();
        let iov = [IoSlice::new(&bytes)];
        let raw = fd.map(|f| [f.as_raw_fd()]);
        let cmsgs: Vec<ControlMessage<'_>> = raw
            .as_ref()
            .map(|r| vec![ControlMessage::ScmRights(r)])
            .unwrap_or_default();
        loop {
            match sendmsg::<()>(
                self.sock.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(Errno::EINTR) => continue,
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    return Err(RpcError::Protocol(format!(
                        "short send: {n} of {} bytes",
                        bytes.len()
                    )))
                }
                Err(source) => return Err(RpcError::Io { op: "send", source }),
            }
        }
    }

    /// Receives a datagram that may carry fds (tests use it as the client side).
    #[doc(hidden)]
    pub fn recv_raw(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>), RpcError> {
        let mut iov = [IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .map_err(|source| RpcError::Io {
            op: "recvmsg",
            source,
        })?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|source| RpcError::Io {
            op: "recvmsg",
            source,
        })? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(list) = c {
                // SAFETY: SCM_RIGHTS installed these fds in our table just now; we are their only owner.
                fds.extend(list.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        Ok((msg.bytes, fds))
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Borrows an fd number the process inherited, after checking it is open.
fn borrow_inherited(fd: RawFd) -> Result<BorrowedFd<'static>, RpcError> {
    if fd < 0 {
        return Err(RpcError::BadSocket {
            fd,
            what: "a negative fd number".into(),
        });
    }
    // SAFETY: F_GETFD only reads the fd's flags; it fails with EBADF when `fd` is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(RpcError::BadSocket {
            fd,
            what: format!("not an open fd ({})", Errno::last()),
        });
    }
    // SAFETY: the fd is open (F_GETFD succeeded) and stays open for as long as the process runs or until
    // `from_inherited` takes ownership of it, after the checks that use this borrow.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}
