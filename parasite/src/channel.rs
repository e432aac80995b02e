//! The dumper's end of the control socket: one [`Request`] out, one [`Reply`] back, while the blob runs
//! in the target on its own. The dumper holds the only other reference to the blob's socket, so its
//! death (or [`Channel`] being dropped) is the blob's EOF and the start of its cleanup.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use dormant_parasite_proto::{Reply, Request, MAX_MESSAGE, PROTO_VERSION, REQUEST_MAGIC};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, send, MsgFlags};

use crate::error::ParasiteError;
use crate::ids::Tid;
use crate::pod::{as_bytes, from_bytes, Pod};

/// How long one command may take before the dumper gives up on the blob.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the wait for a reply looks at the thread (a stop signal, a death).
const POLL_TICK: Duration = Duration::from_millis(50);

/// The dumper's end of the socket and the count of requests answered.
#[derive(Debug)]
pub(crate) struct Channel {
    sock: OwnedFd,
    serial: u32,
}

impl Channel {
    pub(crate) fn new(sock: OwnedFd) -> Channel {
        Channel { sock, serial: 0 }
    }

    /// Sends one request.
    pub(crate) fn send(
        &mut self,
        tid: Tid,
        command: u32,
        args: [u64; 7],
        payload: &[u8],
    ) -> Result<(), ParasiteError> {
        let req = Request {
            magic: REQUEST_MAGIC,
            version: PROTO_VERSION,
            command,
            len: u32::try_from(payload.len()).map_err(|_| too_big(tid, payload.len()))?,
            args,
        };
        let mut msg = Vec::with_capacity(std::mem::size_of::<Request>() + payload.len());
        msg.extend_from_slice(as_bytes(&req));
        msg.extend_from_slice(payload);
        if msg.len() > MAX_MESSAGE {
            return Err(too_big(tid, msg.len()));
        }
        let sent = send(
            std::os::fd::AsRawFd::as_raw_fd(&self.sock),
            &msg,
            MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(|source| ParasiteError::Local {
            what: format!("sending command {command} to the parasite in tid {tid}"),
            source,
        })?;
        if sent != msg.len() {
            return Err(ParasiteError::Protocol {
                tid,
                what: format!("sent {sent} of {} bytes of command {command}", msg.len()),
            });
        }
        Ok(())
    }

    /// Waits for the reply to the last request; `check` is called every tick with nothing in the
    /// socket (it looks after the thread: held-back stops, death) and may end the wait with an error.
    pub(crate) fn receive(
        &mut self,
        tid: Tid,
        command: u32,
        mut check: impl FnMut() -> Result<(), ParasiteError>,
    ) -> Result<(Reply, Vec<u8>), ParasiteError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            let tick =
                PollTimeout::try_from(POLL_TICK.as_millis() as i32).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, tick) {
                Ok(0) | Err(Errno::EINTR) => {
                    check()?;
                    if Instant::now() > deadline {
                        return Err(ParasiteError::Protocol {
                            tid,
                            what: format!("no answer to command {command} in {REPLY_TIMEOUT:?}"),
                        });
                    }
                }
                Ok(_) => break,
                Err(source) => {
                    return Err(ParasiteError::Local {
                        what: "polling the parasite socket".into(),
                        source,
                    })
                }
            }
        }
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = recv(
            std::os::fd::AsRawFd::as_raw_fd(&self.sock),
            &mut buf,
            MsgFlags::empty(),
        )
        .map_err(|source| ParasiteError::Local {
            what: format!("reading the parasite's answer to command {command}"),
            source,
        })?;
        let reply: Reply = from_bytes(&buf[..n]).ok_or_else(|| ParasiteError::Protocol {
            tid,
            what: format!("answer of {n} bytes to command {command} (the blob is gone?)"),
        })?;
        self.serial = self.serial.wrapping_add(1);
        let payload_end = std::mem::size_of::<Reply>() + reply.len as usize;
        if reply.command != command || reply.serial != self.serial || payload_end != n {
            return Err(ParasiteError::Protocol {
                tid,
                what: format!(
                    "answer {reply:?} ({n} bytes) to command {command}, request {}",
                    self.serial
                ),
            });
        }
        buf.truncate(payload_end);
        buf.drain(..std::mem::size_of::<Reply>());
        Ok((reply, buf))
    }
}

fn too_big(tid: Tid, len: usize) -> ParasiteError {
    ParasiteError::Protocol {
        tid,
        what: format!("a {len}-byte message does not fit the parasite's buffer"),
    }
}

/// Reads a plain-data value from the start of `bytes`, if long enough.
pub(crate) fn payload_as<T: Pod>(bytes: &[u8]) -> Option<T> {
    from_bytes(bytes)
}
