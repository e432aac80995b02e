//! Schema 1 of [`super::FileDesc`] (`file-descs`): before unix sockets carried their shutdown state and
//! whether their path was unlinked, and before unconnected unix sockets. Kept exactly as it encoded.

use serde::{Deserialize, Serialize};

use super::v2::{DescKindV2, FileDescV2, InetSocketV2 as InetSocket};
use super::{DescId, EpollTarget, FileOwner, InotifyWatch, PtyState, TcpConnection, UnixDatagram};
use crate::records::upgrade::Upgrade;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileDescV1 {
    pub id: DescId,
    pub flags: u32,
    pub kind: DescKindV1,
    pub owner: Option<FileOwner>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DescKindV1 {
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
    },
    Inet(InetSocket),
    UnixListen {
        name: Vec<u8>,
        sock_type: i32,
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
    },
    UnixDgram {
        ino: u64,
        name: Vec<u8>,
        peer: Option<u64>,
        peer_name: Vec<u8>,
        queued: Vec<UnixDatagram>,
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
}

impl Upgrade<super::FileDesc> for FileDescV1 {
    /// Through schema 2 (see [`FileDescV2`]'s upgrade).
    fn upgrade(self) -> Result<super::FileDesc, String> {
        <Self as Upgrade<FileDescV2>>::upgrade(self)?.upgrade()
    }
}

impl Upgrade<FileDescV2> for FileDescV1 {
    /// Schema 1 did not record a unix socket's shutdown state or whether its path was unlinked: both
    /// become "not known" (`None`), which restore leaves as schema 1 restored them.
    fn upgrade(self) -> Result<FileDescV2, String> {
        use DescKindV2 as K;
        let kind = match self.kind {
            DescKindV1::PipeEnd {
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
            DescKindV1::EventFd { count, semaphore } => K::EventFd { count, semaphore },
            DescKindV1::TimerFd {
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
            DescKindV1::SignalFd { mask } => K::SignalFd { mask },
            DescKindV1::Epoll { targets } => K::Epoll { targets },
            DescKindV1::Memfd {
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
            DescKindV1::UnixPair {
                ino,
                peer,
                sock_type,
                queued,
            } => K::UnixPair {
                ino,
                peer,
                sock_type,
                queued,
                shutdown: None,
            },
            DescKindV1::Inet(s) => K::Inet(s),
            DescKindV1::UnixListen { name, sock_type } => K::UnixListen {
                name,
                sock_type,
                unlinked: None,
            },
            DescKindV1::Ghost {
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
            DescKindV1::Fifo {
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
            DescKindV1::UnixConn {
                ino,
                peer,
                sock_type,
                name,
                peer_name,
                queued,
            } => K::UnixConn {
                ino,
                peer,
                sock_type,
                name,
                peer_name,
                queued,
                shutdown: None,
                unlinked: None,
            },
            DescKindV1::UnixDgram {
                ino,
                name,
                peer,
                peer_name,
                queued,
            } => K::UnixDgram {
                ino,
                name,
                peer,
                peer_name,
                queued,
                shutdown: None,
                unlinked: None,
            },
            DescKindV1::TcpEstablished(c) => K::TcpEstablished(c),
            DescKindV1::External { key } => K::External { key },
            DescKindV1::Pty {
                master,
                index,
                state,
            } => K::Pty {
                master,
                index,
                state,
            },
            DescKindV1::Inotify { watches } => K::Inotify { watches },
            DescKindV1::Pidfd { pid } => K::Pidfd { pid },
        };
        Ok(FileDescV2 {
            id: self.id,
            flags: self.flags,
            kind,
            owner: self.owner,
        })
    }
}
