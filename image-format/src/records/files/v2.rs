//! Schema 2 of [`super::FileDesc`] (`file-descs`): before unix listeners carried their backlog and the
//! connections waiting to be accepted, and before inet sockets carried a peer (connected UDP). Kept exactly
//! as it encoded; schema 1 upgrades through it.

use serde::{Deserialize, Serialize};

use super::{DescId, EpollTarget, FileOwner, InotifyWatch, PtyState, TcpConnection, UnixDatagram};
use crate::records::upgrade::Upgrade;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileDescV2 {
    pub id: DescId,
    pub flags: u32,
    pub kind: DescKindV2,
    pub owner: Option<FileOwner>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InetSocketV2 {
    pub family: i32,
    pub sock_type: i32,
    pub protocol: i32,
    pub bound: Option<([u8; 16], u16)>,
    pub listen_backlog: Option<u32>,
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub keepalive: bool,
    pub nodelay: bool,
    pub v6only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DescKindV2 {
    PipeEnd {
        pipe: u64,
        write: bool,
        size: u32,
        data: Option<Vec<u8>>,
    },
    EventFd {
        count: u64,
        semaphore: bool,
    },
    TimerFd {
        clock: i32,
        interval_ns: u64,
        value_ns: u64,
        ticks: u64,
    },
    SignalFd {
        mask: u64,
    },
    Epoll {
        targets: Vec<EpollTarget>,
    },
    Memfd {
        name: String,
        data: Vec<u8>,
        pos: u64,
        seals: u32,
    },
    UnixPair {
        ino: u64,
        peer: u64,
        sock_type: i32,
        queued: Vec<Vec<u8>>,
        shutdown: Option<u8>,
    },
    Inet(InetSocketV2),
    UnixListen {
        name: Vec<u8>,
        sock_type: i32,
        unlinked: Option<bool>,
    },
    Ghost {
        path: String,
        mode: u32,
        data: Vec<u8>,
        pos: u64,
    },
    Fifo {
        path: String,
        dev: u64,
        ino: u64,
        size: u32,
        data: Option<Vec<u8>>,
    },
    UnixConn {
        ino: u64,
        peer: u64,
        sock_type: i32,
        name: Vec<u8>,
        peer_name: Vec<u8>,
        queued: Vec<Vec<u8>>,
        shutdown: Option<u8>,
        unlinked: Option<bool>,
    },
    UnixDgram {
        ino: u64,
        name: Vec<u8>,
        peer: Option<u64>,
        peer_name: Vec<u8>,
        queued: Vec<UnixDatagram>,
        shutdown: Option<u8>,
        unlinked: Option<bool>,
    },
    TcpEstablished(TcpConnection),
    External {
        key: String,
    },
    Pty {
        master: bool,
        index: u32,
        state: PtyState,
    },
    Inotify {
        watches: Vec<InotifyWatch>,
    },
    Pidfd {
        pid: u32,
    },
    UnixUnconnected {
        sock_type: i32,
        name: Vec<u8>,
        unlinked: bool,
        shutdown: u8,
    },
}

impl From<InetSocketV2> for super::InetSocket {
    fn from(s: InetSocketV2) -> Self {
        super::InetSocket {
            family: s.family,
            sock_type: s.sock_type,
            protocol: s.protocol,
            bound: s.bound,
            // Schema 2 refused connected inet sockets (except established TCP, a kind of its own).
            peer: None,
            listen_backlog: s.listen_backlog,
            reuseaddr: s.reuseaddr,
            reuseport: s.reuseport,
            keepalive: s.keepalive,
            nodelay: s.nodelay,
            v6only: s.v6only,
        }
    }
}

impl Upgrade<super::FileDesc> for FileDescV2 {
    /// Schema 2 did not record a unix listener's backlog (`None`: not known, restore uses the system
    /// maximum as schema 2 did) and refused listeners with connections waiting (so none are pending), and
    /// refused connected UDP sockets (so no inet socket has a peer).
    fn upgrade(self) -> Result<super::FileDesc, String> {
        let kind = match unix_kind(self.kind) {
            Ok(k) => k,
            Err(other) => other_kind(*other)?,
        };
        Ok(super::FileDesc {
            id: self.id,
            flags: self.flags,
            kind,
            owner: self.owner,
        })
    }
}

/// The unix socket variants, upgraded; any other variant back unchanged.
fn unix_kind(k: DescKindV2) -> Result<super::DescKind, Box<DescKindV2>> {
    use super::DescKind as K;
    use DescKindV2 as O;
    Ok(match k {
        O::UnixPair {
            ino,
            peer,
            sock_type,
            queued,
            shutdown,
        } => K::UnixPair {
            ino,
            peer,
            sock_type,
            queued,
            shutdown,
        },
        O::UnixListen {
            name,
            sock_type,
            unlinked,
        } => K::UnixListen {
            name,
            sock_type,
            unlinked,
            backlog: None,
            pending: Vec::new(),
        },
        O::UnixConn {
            ino,
            peer,
            sock_type,
            name,
            peer_name,
            queued,
            shutdown,
            unlinked,
        } => K::UnixConn {
            ino,
            peer,
            sock_type,
            name,
            peer_name,
            queued,
            shutdown,
            unlinked,
        },
        O::UnixDgram {
            ino,
            name,
            peer,
            peer_name,
            queued,
            shutdown,
            unlinked,
        } => K::UnixDgram {
            ino,
            name,
            peer,
            peer_name,
            queued,
            shutdown,
            unlinked,
        },
        O::UnixUnconnected {
            sock_type,
            name,
            unlinked,
            shutdown,
        } => K::UnixUnconnected {
            sock_type,
            name,
            unlinked,
            shutdown,
        },
        other => return Err(Box::new(other)),
    })
}

/// The variants other than unix sockets, upgraded (those have the same fields in both versions).
fn other_kind(k: DescKindV2) -> Result<super::DescKind, String> {
    use super::DescKind as K;
    use DescKindV2 as O;
    Ok(match k {
        O::PipeEnd {
            pipe,
            write,
            size,
            data,
        } => K::PipeEnd {
            pipe,
            write,
            size,
            data,
        },
        O::EventFd { count, semaphore } => K::EventFd { count, semaphore },
        O::TimerFd {
            clock,
            interval_ns,
            value_ns,
            ticks,
        } => K::TimerFd {
            clock,
            interval_ns,
            value_ns,
            ticks,
        },
        O::SignalFd { mask } => K::SignalFd { mask },
        O::Epoll { targets } => K::Epoll { targets },
        O::Memfd {
            name,
            data,
            pos,
            seals,
        } => K::Memfd {
            name,
            data,
            pos,
            seals,
        },
        O::Inet(s) => K::Inet(s.into()),
        O::Ghost {
            path,
            mode,
            data,
            pos,
        } => K::Ghost {
            path,
            mode,
            data,
            pos,
        },
        O::Fifo {
            path,
            dev,
            ino,
            size,
            data,
        } => K::Fifo {
            path,
            dev,
            ino,
            size,
            data,
        },
        O::TcpEstablished(c) => K::TcpEstablished(c),
        O::External { key } => K::External { key },
        O::Pty {
            master,
            index,
            state,
        } => K::Pty {
            master,
            index,
            state,
        },
        O::Inotify { watches } => K::Inotify { watches },
        O::Pidfd { pid } => K::Pidfd { pid },
        O::UnixPair { .. }
        | O::UnixListen { .. }
        | O::UnixConn { .. }
        | O::UnixDgram { .. }
        | O::UnixUnconnected { .. } => {
            return Err("a unix socket variant reached the upgrade of the other kinds".into())
        }
    })
}
