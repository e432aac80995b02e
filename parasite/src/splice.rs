//! Moving pages out of the target through the parasite: the blob vmsplices page ranges into pipes whose
//! read ends the dumper holds, with the crc32 of each piece taken in place, while dumper threads drain
//! the pipes into the caller's sink.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{mpsc, Mutex};

use dormant_parasite_proto::{self as proto, Iov, PipeJob, Request, MAX_MESSAGE};
use nix::errno::Errno;

use crate::blob::PAGE;
use crate::error::ParasiteError;
use crate::parasite::{PagePipe, Parasite};
use crate::pod::slice_as_bytes;

/// Most iovecs one vmsplice call accepts (UIO_MAXIOV).
const IOV_MAX: usize = 1024;

impl Parasite {
    /// Move the pages of `extents` (vaddr, len, tag; page aligned, readable, present) through the page
    /// pipes and hand each piece to `sink(piece, fd)`, which must consume exactly `piece.len` bytes
    /// from `fd` (e.g. splice them into the page store). Extents are split at pipe capacity; the tag
    /// (e.g. page flags) goes with every piece, and so does the crc32 of its bytes, taken by the blob
    /// right before the vmsplice (so the sink never reads the data). Returns the bytes moved.
    ///
    /// Pipelined: `drain_threads` dumper threads (at least 1, at most one per pipe) drain pipes while
    /// this thread has the blob fill the free ones, one request for all of them. It waits until half
    /// the pipes are free: open at least two pipes per drain thread, so one half fills while the other
    /// drains.
    pub fn splice_pages<E, F>(
        &mut self,
        extents: &[(u64, u64, u32)],
        drain_threads: usize,
        sink: F,
    ) -> Result<u64, SpliceError<E>>
    where
        E: Send,
        F: Fn(PagePiece, BorrowedFd<'_>) -> Result<(), E> + Sync,
    {
        if self.pipes.is_empty() {
            return Err(SpliceError::Parasite(ParasiteError::Blob(
                "splice_pages before open_page_pipes".into(),
            )));
        }
        let step = self
            .pipes
            .iter()
            .map(|p| p.capacity)
            .min()
            .unwrap_or(PAGE)
            .max(PAGE);
        let mut pieces = extents.iter().flat_map(move |&(vaddr, len, tag)| {
            (0..len.div_ceil(step)).map(move |i| {
                let off = i * step;
                PagePiece {
                    vaddr: vaddr + off,
                    len: step.min(len - off),
                    tag,
                    crc32: 0,
                }
            })
        });
        // The pipes leave `self` while the drain threads borrow them (commands need `&mut self`).
        let pipes = std::mem::take(&mut self.pipes);
        let drain_threads = drain_threads.clamp(1, pipes.len());
        let refill_at = (pipes.len() / 2).max(1);
        let max_iovs = split_payload(pipes.len()).max_iovs;
        let (job_tx, job_rx) = mpsc::channel::<(usize, Vec<PagePiece>)>();
        let job_rx = Mutex::new(job_rx);
        let (done_tx, done_rx) = mpsc::channel::<Result<usize, SpliceError<E>>>();
        let result = std::thread::scope(|s| {
            let workers: Vec<_> = (0..drain_threads)
                .map(|_| {
                    let (job_rx, done_tx, pipes, sink) = (&job_rx, done_tx.clone(), &pipes, &sink);
                    s.spawn(move || drain_worker(job_rx, &done_tx, pipes, sink))
                })
                .collect();
            drop(done_tx);
            let mut free: Vec<usize> = (0..pipes.len()).collect();
            let mut busy = 0usize;
            let mut total = 0u64;
            let mut pending = pieces.next();
            let mut failure: Option<SpliceError<E>> = None;
            let on_done = |r: Result<usize, SpliceError<E>>,
                           free: &mut Vec<usize>,
                           failure: &mut Option<SpliceError<E>>| {
                match r {
                    Ok(i) => free.push(i),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            };
            while pending.is_some() && failure.is_none() {
                while let Ok(r) = done_rx.try_recv() {
                    busy -= 1;
                    on_done(r, &mut free, &mut failure);
                }
                if failure.is_some() {
                    break;
                }
                if busy > 0 && free.len() < refill_at {
                    match done_rx.recv() {
                        Ok(r) => {
                            busy -= 1;
                            on_done(r, &mut free, &mut failure);
                        }
                        Err(_) => break, // every worker is gone; reported below
                    }
                    continue;
                }
                let mut rounds = fill_rounds(&free, &pipes, max_iovs, &mut pending, &mut pieces);
                match self.vmsplice_round(&pipes, &mut rounds) {
                    Ok(n) => total += n,
                    Err(e) => {
                        failure = Some(SpliceError::Parasite(e));
                        break;
                    }
                }
                for (i, round) in rounds {
                    free.retain(|&f| f != i);
                    busy += 1;
                    if job_tx.send((i, round)).is_err() {
                        busy -= 1;
                        failure.get_or_insert(SpliceError::Parasite(ParasiteError::Blob(
                            "every page drain thread has stopped".into(),
                        )));
                    }
                }
            }
            // No more work: let the drain threads finish what they hold, then stop.
            drop(job_tx);
            while busy > 0 {
                match done_rx.recv() {
                    Ok(r) => {
                        busy -= 1;
                        if let Err(e) = r {
                            failure.get_or_insert(e);
                        }
                    }
                    Err(_) => break,
                }
            }
            for w in workers {
                if w.join().is_err() {
                    failure.get_or_insert(SpliceError::Parasite(ParasiteError::Blob(
                        "page drain thread panicked".into(),
                    )));
                }
            }
            if busy > 0 {
                failure.get_or_insert(SpliceError::Parasite(ParasiteError::Blob(
                    "page drain threads stopped with pipes still full".into(),
                )));
            }
            match failure {
                Some(e) => Err(e),
                None => Ok(total),
            }
        });
        self.pipes = pipes;
        result
    }

    /// One command: the blob vmsplices each round's pieces into its pipe (`rounds`: pipe index and
    /// pieces) and answers their crcs, which are copied into the pieces. Returns the bytes moved.
    fn vmsplice_round(
        &mut self,
        pipes: &[PagePipe],
        rounds: &mut [(usize, Vec<PagePiece>)],
    ) -> Result<u64, ParasiteError> {
        let leader = self.leader();
        let iovs: usize = rounds.iter().map(|(_, r)| r.len()).sum();
        let split = split_payload(rounds.len());
        if iovs > split.max_iovs {
            return Err(ParasiteError::Blob(format!(
                "{iovs} iovecs do not fit one request"
            )));
        }
        let mut jobs = Vec::with_capacity(rounds.len());
        let mut iov_list = Vec::with_capacity(iovs);
        let mut expected = 0;
        for (pipe, round) in rounds.iter() {
            jobs.push(PipeJob {
                fd: pipes[*pipe].target_write_fd,
                iov_first: iov_list.len() as u32,
                iov_count: round.len() as u32,
                pad: 0,
            });
            for piece in round {
                iov_list.push(Iov {
                    base: piece.vaddr,
                    len: piece.len,
                });
                expected += piece.len;
            }
        }
        let mut payload = slice_as_bytes(&jobs).to_vec();
        payload.resize(split.iov_off, 0);
        payload.extend_from_slice(slice_as_bytes(&iov_list));
        let args = [rounds.len() as u64, split.iov_off as u64, 0, 0, 0, 0, 0];
        let (reply, crcs) = self.request(proto::CMD_VMSPLICE, args, &payload)?;
        if reply.ret < 0 {
            return Err(ParasiteError::Command {
                tid: leader,
                command: "vmsplice",
                step: reply.failed_step,
                errno: Errno::from_raw(-reply.ret as i32),
            });
        }
        if reply.ret as u64 != expected || crcs.len() != 4 * iovs {
            return Err(ParasiteError::Protocol {
                tid: leader,
                what: format!(
                    "vmsplice moved {} of {expected} bytes with {} crc bytes",
                    reply.ret,
                    crcs.len()
                ),
            });
        }
        let mut crcs = crcs.chunks_exact(4);
        for (_, round) in rounds.iter_mut() {
            for piece in round {
                let c = crcs.next().ok_or_else(|| ParasiteError::Protocol {
                    tid: leader,
                    what: "vmsplice answered too few crcs".into(),
                })?;
                piece.crc32 = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Ok(expected)
    }
}

/// One piece of [`Parasite::splice_pages`]: `len` bytes at `vaddr` of the target, the caller's tag,
/// and the crc32 (IEEE, crc32fast's value) of the bytes, computed inside the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePiece {
    pub vaddr: u64,
    pub len: u64,
    pub tag: u32,
    pub crc32: u32,
}

/// Fills each free pipe up to its capacity (a piece never exceeds the smallest one) with the pieces from
/// `pending` on, at most `max_iovs` in all; returns (pipe index, pieces) for each pipe that got any.
fn fill_rounds(
    free: &[usize],
    pipes: &[PagePipe],
    max_iovs: usize,
    pending: &mut Option<PagePiece>,
    pieces: &mut impl Iterator<Item = PagePiece>,
) -> Vec<(usize, Vec<PagePiece>)> {
    let mut rounds: Vec<(usize, Vec<PagePiece>)> = Vec::new();
    let mut iov_count = 0;
    'fill: for &i in free {
        let mut round = Vec::new();
        let mut used = 0;
        while let Some(piece) = *pending {
            if used + piece.len > pipes[i].capacity
                || round.len() == IOV_MAX
                || iov_count == max_iovs
            {
                rounds.push((i, round));
                continue 'fill;
            }
            round.push(piece);
            used += piece.len;
            iov_count += 1;
            *pending = pieces.next();
        }
        rounds.push((i, round));
        break;
    }
    rounds.retain(|(_, r)| !r.is_empty());
    rounds
}

/// Where the parts of a vmsplice request's payload sit: jobs, then iovecs.
struct PayloadSplit {
    iov_off: usize,
    /// Most iovecs that fit after the jobs in one request (the crcs of the reply fit as well).
    max_iovs: usize,
}

fn split_payload(jobs: usize) -> PayloadSplit {
    let iov_off = (jobs * std::mem::size_of::<PipeJob>()).div_ceil(16) * 16;
    let room = MAX_MESSAGE - std::mem::size_of::<Request>();
    PayloadSplit {
        iov_off,
        max_iovs: room.saturating_sub(iov_off) / std::mem::size_of::<Iov>(),
    }
}

/// A drain thread of [`Parasite::splice_pages`]: takes (pipe, pieces) jobs until the channel closes,
/// hands each piece to the sink and reports the pipe free again (or the failure, then stops).
fn drain_worker<E, F>(
    jobs: &Mutex<mpsc::Receiver<(usize, Vec<PagePiece>)>>,
    done: &mpsc::Sender<Result<usize, SpliceError<E>>>,
    pipes: &[PagePipe],
    sink: &F,
) where
    F: Fn(PagePiece, BorrowedFd<'_>) -> Result<(), E> + Sync,
{
    loop {
        // Nothing panics while the lock is held; a poisoned lock still guards a valid receiver.
        let job = jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv();
        let Ok((pipe, pieces)) = job else {
            return;
        };
        let fd = pipes[pipe].read.as_fd();
        let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pieces.iter().try_for_each(|&p| sink(p, fd))
        }));
        let report = match drained {
            Ok(Ok(())) => Ok(pipe),
            Ok(Err(e)) => Err(SpliceError::Sink(e)),
            Err(_) => Err(SpliceError::Parasite(ParasiteError::Blob(
                "page sink panicked".into(),
            ))),
        };
        let failed = report.is_err();
        if done.send(report).is_err() || failed {
            return;
        }
    }
}

/// Failure of [`Parasite::splice_pages`]: the parasite side, or the caller's sink.
#[derive(Debug)]
pub enum SpliceError<E> {
    Parasite(ParasiteError),
    Sink(E),
}

impl<E: std::fmt::Display> std::fmt::Display for SpliceError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpliceError::Parasite(e) => write!(f, "{e}"),
            SpliceError::Sink(e) => write!(f, "page sink: {e}"),
        }
    }
}
