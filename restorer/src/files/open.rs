//! Opening one description: a dispatch into the module of its kind, then the dumped status flags.

use std::os::fd::OwnedFd;

use dormant_image::records::{DescKind, FileDesc, InodeAttrs};
use dormant_image::PageStoreReader;

use super::error::{kind_name, FileRestoreError, OpenFailure};
use super::ghost::Content;
use super::{
    epoll, eventfd, external, fifo, ghost, inet, inotify, memfd, pidfd, pipe, pty, signalfd, tcp,
    timerfd, unix,
};

/// What the kinds keep between descriptions: ends created with an earlier description and waiting for
/// their own (the other end of a pipe, of a socket pair, the slave of a pty), restored listeners, and the
/// fds handed in for external descriptions.
#[derive(Debug, Default)]
pub(super) struct State {
    pipes: pipe::PendingEnds,
    ptys: pty::Slaves,
    pub(super) unix: unix::Sockets,
    /// Unlinked FIFOs recreated, for their other ends.
    fifos: fifo::Unlinked,
    /// `--inherit-fd` descriptors for external descriptions.
    inherited: external::Inherited,
    /// The watches on carried inodes of the inotify instance opened next: (wd, mask, restored fd).
    pub(super) inotify_carried: Vec<(i32, u32, std::os::fd::RawFd)>,
    /// The datagrams waiting in the UDP socket opened next.
    pub(super) udp_queue: Vec<dormant_image::records::UdpDatagram>,
}

impl State {
    /// Nothing opened yet; external descriptions are taken from `inherited`.
    pub(super) fn new(inherited: external::Inherited) -> Self {
        State {
            pipes: Default::default(),
            ptys: Default::default(),
            unix: Default::default(),
            fifos: Default::default(),
            inherited,
            inotify_carried: Vec::new(),
            udp_queue: Vec::new(),
        }
    }
}

/// Opens description `d` (both ends of a pipe or pair on the first of them).
/// `attrs`: the dumped owner, mode and times of a carried inode (unlinked file, memfd); `stored`: its size
/// and page store when its content is in one (`desc-contents`).
pub(super) fn open_one(
    d: &FileDesc,
    attrs: Option<&InodeAttrs>,
    stored: Option<&(u64, PageStoreReader)>,
    st: &mut State,
) -> Result<OwnedFd, FileRestoreError> {
    fn content<'a>(stored: Option<&'a (u64, PageStoreReader)>, data: &'a [u8]) -> Content<'a> {
        match stored {
            Some((size, pages)) => Content::Stored { size: *size, pages },
            None => Content::Inline(data),
        }
    }
    let kind = kind_name(&d.kind);
    let fd = match &d.kind {
        DescKind::PipeEnd {
            pipe,
            write,
            size,
            data,
        } => pipe::open(&mut st.pipes, *pipe, *write, *size, data.as_deref()),
        DescKind::Pty {
            master: false,
            index,
            ..
        } => pty::open_slave(&mut st.ptys, *index),
        DescKind::Pty {
            master: true,
            index,
            state,
        } => pty::open_master(&mut st.ptys, *index, state),
        DescKind::EventFd { count, semaphore } => eventfd::open(*count, *semaphore),
        DescKind::TimerFd {
            clock,
            interval_ns,
            value_ns,
            ticks,
        } => timerfd::open(*clock, *interval_ns, *value_ns, *ticks),
        DescKind::SignalFd { mask } => signalfd::open(*mask),
        DescKind::Epoll { .. } => epoll::open(),
        DescKind::Memfd {
            name,
            data,
            pos,
            seals,
        } => memfd::open(name, content(stored, data), *pos, *seals, d.flags, attrs),
        DescKind::UnixPair {
            ino,
            peer,
            sock_type,
            ..
        } => unix::open_pair(&mut st.unix, d.id, *ino, *peer, *sock_type),
        DescKind::UnixListen {
            name,
            sock_type,
            backlog,
            ..
        } => unix::open_listener(&mut st.unix, name, *sock_type, *backlog),
        DescKind::UnixUnconnected {
            sock_type, name, ..
        } => unix::open_unconnected(*sock_type, name).map_err(Into::into),
        DescKind::UnixConn {
            ino,
            peer,
            sock_type,
            name,
            peer_name,
            ..
        } => unix::open_conn(
            &mut st.unix,
            d.id,
            (*ino, *peer),
            *sock_type,
            name,
            peer_name,
        ),
        DescKind::UnixDgram { ino, name, .. } => {
            unix::open_datagram(&mut st.unix, d.id, *ino, name)
        }
        DescKind::Ghost {
            path,
            mode,
            data,
            pos,
        } => ghost::open(path, *mode, d.flags, content(stored, data), *pos, attrs)
            .map_err(Into::into),
        DescKind::Fifo {
            path,
            dev,
            ino,
            size,
            data,
        } => fifo::open(
            path,
            *dev,
            *ino,
            d.flags,
            *size,
            data.as_deref(),
            attrs,
            &mut st.fifos,
        )
        .map_err(Into::into),
        // The caller's description as it is: its status flags are the caller's business.
        DescKind::External { key } => return st.inherited.dup(d.id.0, key),
        DescKind::Inet(s) => inet::open(s, &std::mem::take(&mut st.udp_queue)).map_err(Into::into),
        DescKind::TcpEstablished(c) => tcp::open(c)
            .map_err(|(what, e)| OpenFailure::from((format!("{}: {what}", tcp::shown(c)), e))),
        DescKind::Inotify { watches } => {
            inotify::open(watches, &std::mem::take(&mut st.inotify_carried)).map_err(Into::into)
        }
        DescKind::Pidfd { .. } => pidfd::open_stand_in(),
        DescKind::Proc(_) => Err(OpenFailure::Bad(
            "a proc file is opened by its task, not before the fork".into(),
        )),
    }
    .map_err(|e| e.at(d.id.0, kind))?;
    Ok(fd)
}

/// The status flags `F_SETFL` can change; the others (access mode, creation flags) are the open's.
const SETFL_FLAGS: i32 =
    libc::O_APPEND | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME | libc::O_NONBLOCK;

/// Gives description `d` (open as `fd`) exactly the dumped status flags `F_SETFL` can set (`O_APPEND`,
/// `O_NONBLOCK`, `O_ASYNC`, `O_DIRECT`, `O_NOATIME`): set the ones it had, cleared the ones it did not.
/// Run once every description is filled (queues re-sent, connections out of repair mode), so nothing the
/// restore itself writes meets `O_NONBLOCK` or `O_APPEND`. External descriptions are the caller's.
pub(super) fn set_status_flags(d: &FileDesc, fd: &OwnedFd) -> Result<(), FileRestoreError> {
    if matches!(d.kind, DescKind::External { .. }) {
        return Ok(());
    }
    let fail = |what: String| move |e| OpenFailure::sys(what)(e).at(d.id.0, kind_name(&d.kind));
    let cur = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(fail("F_GETFL".to_string()))?;
    let want = (cur & !SETFL_FLAGS) | (d.flags as i32 & SETFL_FLAGS);
    if want != cur {
        let fl = nix::fcntl::OFlag::from_bits_retain(want);
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(fl))
            .map_err(fail(format!("F_SETFL {fl:?}")))?;
    }
    Ok(())
}
