//! POSIX message queues of an ipc namespace. Names come from the namespace's own mqueue filesystem, mounted
//! detached (`fsopen`/`fsmount`: never attached to any mount tree) by the helper thread inside the
//! namespace. POSIX queues have no `MSG_COPY`: messages are received without blocking and sent back at once
//! in the order they came, which rebuilds the same queue (priority order, FIFO within a priority). That is
//! only exact when no task can slip in meanwhile, so queues that are full (a sender may be blocked on them)
//! or carry an `mq_notify` registration are refused by name.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use dormant_image::records::{NsId, PosixMq, PosixMqMsg};

use super::error::{NsError, Result};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

fn sys_fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `rc` is a descriptor the kernel just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

/// A detached mount of the calling thread's ipc namespace's mqueue filesystem.
fn mount_mqueue() -> io::Result<OwnedFd> {
    // SAFETY: fsopen reads the NUL-terminated fs name.
    let fs =
        sys_fd(unsafe { libc::syscall(libc::SYS_fsopen, c"mqueue".as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsmount takes the configured context fd and flags.
    sys_fd(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })
}

/// An open POSIX queue; closed on drop.
struct Mq(libc::mqd_t);

impl Drop for Mq {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this value owns.
        unsafe { libc::mq_close(self.0) };
    }
}

fn unsupported(ns: NsId, name: &str, reason: String) -> NsError {
    NsError::IpcUnsupported {
        ns,
        object: format!("POSIX queue /{name}"),
        reason,
    }
}

/// Reads every POSIX queue of the calling thread's ipc namespace `ns`.
pub(super) fn read_posix_queues(ns: NsId) -> Result<Vec<PosixMq>> {
    let io_err = |object: String, op: &'static str| {
        move |e: io::Error| NsError::Ipc {
            ns,
            object,
            op,
            source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    };
    let mnt = mount_mqueue().map_err(io_err("mqueue filesystem".into(), "fsopen/fsmount"))?;
    let root = format!("/proc/thread-self/fd/{}", mnt.as_raw_fd());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(io_err("mqueue filesystem".into(), "readdir"))? {
        let entry = entry.map_err(io_err("mqueue filesystem".into(), "readdir"))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut queues = Vec::with_capacity(names.len());
    for name in names {
        let path = format!("{root}/{name}");
        let object = format!("POSIX queue /{name}");
        let meta = std::fs::metadata(&path).map_err(io_err(object.clone(), "stat"))?;
        let status = std::fs::read_to_string(&path).map_err(io_err(object.clone(), "read"))?;
        let notify_pid = status
            .split_whitespace()
            .find_map(|f| f.strip_prefix("NOTIFY_PID:"))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        if notify_pid != 0 {
            return Err(unsupported(
                ns,
                &name,
                format!(
                    "pid {notify_pid} registered mq_notify on it; notifications are not restored"
                ),
            ));
        }
        let cname = CString::new(format!("/{name}"))
            .map_err(|_| unsupported(ns, &name, "the name holds a NUL byte".into()))?;
        // SAFETY: mq_open reads the NUL-terminated name; no O_CREAT, so no variadic arguments.
        let fd = unsafe {
            libc::mq_open(
                cname.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io_err(object, "mq_open")(io::Error::last_os_error()));
        }
        let mq = Mq(fd);
        // SAFETY: all-zero is a valid mq_attr; mq_getattr fills it.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        // SAFETY: mq_getattr writes one mq_attr.
        if unsafe { libc::mq_getattr(mq.0, &mut attr) } != 0 {
            return Err(io_err(object, "mq_getattr")(io::Error::last_os_error()));
        }
        if attr.mq_curmsgs > 0 && attr.mq_curmsgs >= attr.mq_maxmsg {
            return Err(unsupported(
                ns,
                &name,
                format!(
                    "is full ({} messages): a sender may be blocked on it, and reading would let its message in",
                    attr.mq_curmsgs
                ),
            ));
        }
        let mut messages = Vec::with_capacity(attr.mq_curmsgs as usize);
        let mut buf = vec![0u8; attr.mq_msgsize.max(1) as usize];
        loop {
            let mut prio = 0u32;
            // SAFETY: mq_receive writes at most buf.len() bytes (the queue's message size) and the priority.
            let n =
                unsafe { libc::mq_receive(mq.0, buf.as_mut_ptr().cast(), buf.len(), &mut prio) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    break;
                }
                // Put back what was taken before reporting.
                let _ = send_all(&mq, &messages);
                return Err(io_err(object, "mq_receive")(e));
            }
            messages.push(PosixMqMsg {
                priority: prio,
                data: buf[..n as usize].to_vec(),
            });
        }
        send_all(&mq, &messages)
            .map_err(io_err(object.clone(), "mq_send (putting messages back)"))?;
        queues.push(PosixMq {
            name,
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.permissions().mode() & 0o777,
            maxmsg: attr.mq_maxmsg as u64,
            msgsize: attr.mq_msgsize as u64,
            messages,
        });
    }
    Ok(queues)
}

/// Sends `messages` in order without blocking.
fn send_all(mq: &Mq, messages: &[PosixMqMsg]) -> io::Result<()> {
    for m in messages {
        // SAFETY: mq_send reads `data.len()` bytes.
        if unsafe { libc::mq_send(mq.0, m.data.as_ptr().cast(), m.data.len(), m.priority) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
