//! Schema 3 of [`super::FileDesc`] (`file-descs`): before open files of `/proc` ([`super::DescKind::Proc`]).
//! Kept exactly as it encoded; schemas 1 and 2 upgrade straight to the current one.

use serde::{Deserialize, Serialize};

use super::{
    DescId, EpollTarget, FileOwner, InetSocket, InotifyWatch, PtyState, TcpConnection,
    UnixDatagram, UnixPending,
};
use crate::records::upgrade::Upgrade;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileDescV3 {
    pub id: DescId,
    pub flags: u32,
    pub kind: DescKindV3,
    pub owner: Option<FileOwner>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DescKindV3 {
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
    Inet(InetSocket),
    UnixListen {
        name: Vec<u8>,
        sock_type: i32,
        unlinked: Option<bool>,
        backlog: Option<u32>,
        pending: Vec<UnixPending>,
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

impl Upgrade<super::FileDesc> for FileDescV3 {
    /// Every variant of schema 3 is in the current schema unchanged.
    fn upgrade(self) -> Result<super::FileDesc, String> {
        Ok(super::FileDesc {
            id: self.id,
            flags: self.flags,
            kind: kind(self.kind)?,
            owner: self.owner,
        })
    }
}

fn kind(k: DescKindV3) -> Result<super::DescKind, String> {
    use super::DescKind as K;
    use DescKindV3 as O;
    let k = match unix(k) {
        Ok(done) => return Ok(done),
        Err(other) => *other,
    };
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
        O::Inet(x) => K::Inet(x),
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
        O::TcpEstablished(x) => K::TcpEstablished(x),
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

/// The unix socket variants; any other back unchanged.
fn unix(k: DescKindV3) -> Result<super::DescKind, Box<DescKindV3>> {
    use super::DescKind as K;
    use DescKindV3 as O;
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
            backlog,
            pending,
        } => K::UnixListen {
            name,
            sock_type,
            unlinked,
            backlog,
            pending,
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
