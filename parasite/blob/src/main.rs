//! The parasite blob: answers the dumper's requests from inside the seized task until its control socket
//! closes, then removes itself and returns the task to its own registers.
//!
//! The bootstrap code at the syscall site maps the area, checks that the host finished writing it, and
//! jumps to [`parasite_entry`] with `rdi` = the area's base, `rsi` = its length and `rsp` = the rescue
//! frame the host wrote on the thread's own stack (below the red zone). The blob switches to its own
//! stack in the area, creates a socketpair (the host, watching the syscall, takes one end), closes that end
//! here and serves requests. On EOF or any failure of its socket it closes every descriptor it made, takes
//! back a SIGPIPE its own writes raised, and jumps to the `munmap` at the site (outside the area, which is
//! gone after it) followed there by `rt_sigreturn` through the rescue frame. Every signal but SIGKILL and
//! SIGSTOP stays blocked meanwhile (the host set the mask; the frame restores the task's own).
//!
//! What it does NOT do: it never allocates, never uses libc or std, and never decides anything the host
//! could decide; vmsplice runs with SPLICE_F_NONBLOCK so a full pipe is an answer, not a hang.
#![no_std]
#![no_main]

use core::arch::{asm, naked_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use dormant_parasite_proto::{
    step, BootArgs, Iov, PipeInfo, PipeJob, Reply, Request, Snapshot, ThreadState,
    BOOT_SIGPIPE_PENDING, CMD_CLOSE, CMD_PIPES, CMD_SNAPSHOT, CMD_SYSCALL, CMD_THREAD_STATE,
    CMD_VMSPLICE, MAX_FDS, PROTO_VERSION, REQUEST_MAGIC,
};
use dormant_sys::process::{
    PR_GET_CHILD_SUBREAPER, PR_GET_DUMPABLE, PR_GET_PDEATHSIG, PR_GET_SECUREBITS,
    PR_GET_TID_ADDRESS,
};
use dormant_sys::raw::{self as sys, check};
use dormant_sys::signal::{sig_bit, KernelItimerval, KernelSigaction, StackT, NSIG, SIGPIPE, SIGSET_SIZE};

// The memory functions the compiler calls (no libc here).
use dormant_sys::rt as _;

const EINVAL: i64 = 22;
const EPIPE: i64 = 32;
const EMFILE: i64 = 24;
const EBADF: i64 = 9;
const EPROTO: i64 = 71;
const SPLICE_F_NONBLOCK: u64 = 2;
const AF_UNIX: u64 = 1;
const SOCK_SEQPACKET: u64 = 5;
const SOCK_CLOEXEC: u64 = 0o2000000;
const O_CLOEXEC: u64 = 0o2000000;
const MSG_NOSIGNAL: u64 = 0x4000;
const F_SETPIPE_SZ: u64 = 1031;
const F_GETPIPE_SZ: u64 = 1032;
/// Offset of `stack_top` in [`BootArgs`] (read by the entry code before there is a stack).
const BOOT_STACK_TOP: usize = core::mem::offset_of!(BootArgs, stack_top);

/// The state of this injection, for the panic handler (which must still clean up and return the task).
static CURRENT: AtomicU64 = AtomicU64::new(0);

/// Entry point: `rdi` = area base, `rsi` = area length (the boot block is its last page). Switches to the
/// blob's stack and calls [`run`], which never returns.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn parasite_entry() -> ! {
    naked_asm!(
        "lea rdx, [rdi + rsi - 4096]",
        "mov rsp, [rdx + {stack_top}]",
        "and rsp, -16",
        "xor ebp, ebp",
        "call {run}",
        "ud2",
        stack_top = const BOOT_STACK_TOP,
        run = sym run,
    )
}

/// What the blob keeps while it serves: where it is and what it must undo.
struct State {
    base: u64,
    len: u64,
    frame_sp: u64,
    munmap_syscall: u64,
    /// Every descriptor the blob made and still holds (-1 = free slot).
    fds: [i32; MAX_FDS],
    sigpipe_before: bool,
    sigpipe_raised: bool,
    serial: u32,
}

impl State {
    fn keep(&mut self, fd: i32) -> bool {
        match self.fds.iter_mut().find(|f| **f < 0) {
            Some(slot) => {
                *slot = fd;
                true
            }
            None => false,
        }
    }

    fn forget(&mut self, fd: i32) -> bool {
        match self.fds.iter_mut().find(|f| **f == fd && fd >= 0) {
            Some(slot) => {
                *slot = -1;
                true
            }
            None => false,
        }
    }
}

extern "C" fn run(base: u64, len: u64, boot: *mut BootArgs) -> ! {
    // SAFETY: the bootstrap code only jumps here once the host wrote the whole boot block (magic last) in
    // the area's last page, which stays mapped until `leave`.
    let b = unsafe { &mut *boot };
    let mut st = State {
        base,
        len,
        frame_sp: b.frame_sp,
        munmap_syscall: b.munmap_syscall,
        fds: [-1; MAX_FDS],
        sigpipe_before: b.flags & BOOT_SIGPIPE_PENDING != 0,
        sigpipe_raised: false,
        serial: 0,
    };
    CURRENT.store(&mut st as *mut State as u64, Ordering::Relaxed);
    if b.version != PROTO_VERSION {
        leave(&mut st);
    }
    let sock = &mut b.sock as *mut [i32; 2] as u64;
    // The host watches this syscall's exit and takes sock[1] with pidfd_getfd before letting us go on.
    if check(sys::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock)).is_err() {
        leave(&mut st);
    }
    let (ours, theirs) = (b.sock[0], b.sock[1]);
    st.keep(ours);
    // Only the host holds the other end from now on: its death (or its close) is our EOF.
    sys::close(theirs);
    let half = b.buf_len / 2;
    serve(&mut st, ours, b.buf, half, b.buf + half, half);
    leave(&mut st)
}

/// Answers requests until the socket reads EOF or fails.
fn serve(st: &mut State, sock: i32, inbuf: u64, inlen: u64, outbuf: u64, outlen: u64) {
    let hdr = core::mem::size_of::<Reply>() as u64;
    loop {
        let n = sys::recvfrom(sock, inbuf, inlen, 0, 0, 0);
        if n < core::mem::size_of::<Request>() as i64 {
            return; // EOF (0), an error, or a message too short to be ours
        }
        // SAFETY: `n` bytes were received at `inbuf`, at least one Request.
        let req = unsafe { *(inbuf as *const Request) };
        let payload = inbuf + core::mem::size_of::<Request>() as u64;
        let have = n as u64 - core::mem::size_of::<Request>() as u64;
        let out = outbuf + hdr;
        let (ret, failed, len) = if req.magic != REQUEST_MAGIC
            || req.version != PROTO_VERSION
            || u64::from(req.len) != have
        {
            (-EPROTO, step::BAD_COMMAND, 0)
        } else {
            dispatch(st, &req, payload, out, outlen - hdr)
        };
        st.serial = st.serial.wrapping_add(1);
        let reply = Reply {
            ret,
            failed_step: failed,
            len: len as u32,
            command: req.command,
            serial: st.serial,
        };
        // SAFETY: `outbuf` is the reply half of the buffer, large enough for the header.
        unsafe { *(outbuf as *mut Reply) = reply };
        if sys::sendto(sock, outbuf, hdr + len, MSG_NOSIGNAL, 0, 0) < 0 {
            return;
        }
    }
}

/// Runs one request; (ret, failed step, reply payload length).
fn dispatch(st: &mut State, req: &Request, payload: u64, out: u64, room: u64) -> (i64, u32, u64) {
    let a = req.args;
    match req.command {
        CMD_SYSCALL => (sys::syscall6(a[0], a[1], a[2], a[3], a[4], a[5], a[6]), 0, 0),
        CMD_SNAPSHOT if room >= core::mem::size_of::<Snapshot>() as u64 => {
            // SAFETY: `out` has room for a Snapshot (checked); plain data.
            match fill_snapshot(unsafe { &mut *(out as *mut Snapshot) }) {
                Ok(()) => (0, 0, core::mem::size_of::<Snapshot>() as u64),
                Err((e, at)) => (e, at, 0),
            }
        }
        CMD_THREAD_STATE if room >= core::mem::size_of::<ThreadState>() as u64 => {
            // SAFETY: as above.
            match fill_thread(unsafe { &mut *(out as *mut ThreadState) }) {
                Ok(()) => (0, 0, core::mem::size_of::<ThreadState>() as u64),
                Err((e, at)) => (e, at, 0),
            }
        }
        CMD_PIPES => pipes(st, a[0], a[1], out, room),
        CMD_CLOSE => close_fds(st, payload, u64::from(req.len)),
        CMD_VMSPLICE => vmsplice(st, req, payload, out, room),
        _ => (-EINVAL, step::BAD_COMMAND, 0),
    }
}

fn fill_snapshot(s: &mut Snapshot) -> Result<(), (i64, u32)> {
    for sig in 1..=NSIG {
        let slot: *mut KernelSigaction = &mut s.sigactions[sig - 1];
        check(sys::rt_sigaction(sig as u64, 0, slot as u64, SIGSET_SIZE))
            .map_err(|e| (e, step::SIGACTION))?;
    }
    for (which, slot) in s.itimers.iter_mut().enumerate() {
        let slot: *mut KernelItimerval = slot;
        check(sys::getitimer(which as u64, slot as u64)).map_err(|e| (e, step::ITIMER))?;
    }
    s.brk = check(sys::brk(0)).map_err(|e| (e, step::BRK))? as u64;
    fill_thread(&mut s.thread)?;
    let mut int = 0i32;
    let int_ptr = &mut int as *mut i32 as u64;
    check(sys::prctl(PR_GET_PDEATHSIG, int_ptr, 0, 0, 0)).map_err(|e| (e, step::PDEATHSIG))?;
    s.pdeathsig = int;
    s.dumpable =
        check(sys::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)).map_err(|e| (e, step::DUMPABLE))? as i32;
    int = 0;
    check(sys::prctl(PR_GET_CHILD_SUBREAPER, int_ptr, 0, 0, 0))
        .map_err(|e| (e, step::CHILD_SUBREAPER))?;
    s.child_subreaper = int;
    s.securebits = check(sys::prctl(PR_GET_SECUREBITS, 0, 0, 0, 0))
        .map_err(|e| (e, step::SECUREBITS))? as i32;
    Ok(())
}

fn fill_thread(t: &mut ThreadState) -> Result<(), (i64, u32)> {
    let alt: *mut StackT = &mut t.altstack;
    check(sys::sigaltstack(0, alt as u64)).map_err(|e| (e, step::SIGALTSTACK))?;
    let mut addr = 0u64;
    match check(sys::prctl(PR_GET_TID_ADDRESS, &mut addr as *mut u64 as u64, 0, 0, 0)) {
        Ok(_) => {
            t.tid_address = addr;
            t.tid_address_ok = 1;
        }
        Err(e) if e == -EINVAL => t.tid_address_ok = 0,
        Err(e) => return Err((e, step::TID_ADDRESS)),
    }
    t.tid = sys::gettid() as i32;
    Ok(())
}

/// Makes `count` pipes of up to `size` bytes, keeping both ends in the descriptor table.
fn pipes(st: &mut State, count: u64, size: u64, out: u64, room: u64) -> (i64, u32, u64) {
    let each = core::mem::size_of::<PipeInfo>() as u64;
    if count.saturating_mul(each) > room {
        return (-EINVAL, step::PIPE, 0);
    }
    for i in 0..count {
        let mut fds = [-1i32; 2];
        if let Err(e) = check(sys::pipe2(fds.as_mut_ptr() as u64, O_CLOEXEC)) {
            return (e, step::PIPE, i * each);
        }
        if !st.keep(fds[0]) {
            sys::close(fds[0]);
            sys::close(fds[1]);
            return (-EMFILE, step::TOO_MANY_FDS, i * each);
        }
        if !st.keep(fds[1]) {
            st.forget(fds[0]);
            sys::close(fds[0]);
            sys::close(fds[1]);
            return (-EMFILE, step::TOO_MANY_FDS, i * each);
        }
        // Above fs.pipe-max-size without CAP_SYS_RESOURCE this fails: the pipe keeps what it has.
        let _ = sys::fcntl(fds[1], F_SETPIPE_SZ, size);
        let capacity = match check(sys::fcntl(fds[1], F_GETPIPE_SZ, 0)) {
            Ok(c) => c as u32,
            Err(e) => return (e, step::PIPE_SIZE, i * each),
        };
        let info = PipeInfo {
            read_fd: fds[0],
            write_fd: fds[1],
            capacity,
            pad: 0,
        };
        // SAFETY: `i < count` and `count * each <= room` (checked above).
        unsafe { *((out + i * each) as *mut PipeInfo) = info };
    }
    (count as i64, 0, count * each)
}

/// Closes descriptors the blob made; refuses any other.
fn close_fds(st: &mut State, payload: u64, len: u64) -> (i64, u32, u64) {
    for i in 0..len / 4 {
        // SAFETY: `i < len / 4`: inside the received payload.
        let fd = unsafe { *((payload + 4 * i) as *const i32) };
        if !st.forget(fd) {
            return (-EBADF, step::NOT_OURS, 0);
        }
        sys::close(fd);
    }
    (0, 0, 0)
}

/// Moves each job's pages into its pipe without blocking; stops at the first pipe that is full (EAGAIN:
/// the host sized the jobs wrongly) or fails. A partly moved iovec is advanced in place (the array is
/// the received request). Each iovec's crc32 goes to the reply first.
fn vmsplice(st: &mut State, req: &Request, payload: u64, out: u64, room: u64) -> (i64, u32, u64) {
    let jobs_n = req.args[0];
    let iov_off = req.args[1];
    let jobs = payload as *const PipeJob;
    let iovs = (payload + iov_off) as *mut Iov;
    let iov_total = (u64::from(req.len).saturating_sub(iov_off)) / core::mem::size_of::<Iov>() as u64;
    if jobs_n * core::mem::size_of::<PipeJob>() as u64 > iov_off || iov_total * 4 > room {
        return (-EINVAL, step::VMSPLICE, 0);
    }
    let crcs = out as *mut u32;
    let mut total = 0i64;
    for j in 0..jobs_n as usize {
        // SAFETY: `j < jobs_n`, and the jobs lie before `iov_off` in the payload (checked).
        let job = unsafe { *jobs.add(j) };
        let mut next = job.iov_first as u64;
        let end = next + u64::from(job.iov_count);
        if end > iov_total || !st.fds.contains(&job.fd) {
            return (-EINVAL, step::VMSPLICE, 0);
        }
        for k in next..end {
            // SAFETY: `k < iov_total`: inside the payload's iovecs; one crc slot per iovec fits the reply
            // (checked). The iovec names pages of this task's own readable mappings that the host found
            // present, and every other thread is stopped, so they are readable and unchanged until the
            // vmsplice below.
            unsafe {
                let iov = *iovs.add(k as usize);
                let bytes = core::slice::from_raw_parts(iov.base as *const u8, iov.len as usize);
                *crcs.add(k as usize) = crc32fast::hash(bytes);
            }
        }
        while next < end {
            // SAFETY: `next < end <= iov_total`.
            let iov = unsafe { iovs.add(next as usize) };
            let ret = sys::vmsplice(job.fd, iov as u64, end - next, SPLICE_F_NONBLOCK);
            let mut moved = match check(ret) {
                Ok(0) => return (-11, step::VMSPLICE, iov_total * 4),
                Ok(moved) => moved as u64,
                Err(e) => {
                    if e == -EPIPE {
                        st.sigpipe_raised = true;
                    }
                    return (e, step::VMSPLICE, iov_total * 4);
                }
            };
            total += moved as i64;
            while moved > 0 && next < end {
                // SAFETY: `next < end`, as above.
                let cur = unsafe { &mut *iovs.add(next as usize) };
                if moved < cur.len {
                    cur.base += moved;
                    cur.len -= moved;
                    moved = 0;
                } else {
                    moved -= cur.len;
                    next += 1;
                }
            }
        }
    }
    (total, 0, iov_total * 4)
}

/// Undoes everything the blob did and returns the task to its own state: closes its descriptors, takes
/// back a SIGPIPE its own writes queued (the thread's private queue holds at most one; one that was
/// there before stays), then runs the site's `munmap` of the area and `rt_sigreturn` through the rescue
/// frame. Never returns.
fn leave(st: &mut State) -> ! {
    for fd in st.fds {
        if fd >= 0 {
            sys::close(fd);
        }
    }
    if st.sigpipe_raised && !st.sigpipe_before {
        let set = sig_bit(SIGPIPE);
        let zero = [0i64; 2];
        let _ = sys::rt_sigtimedwait(
            &set as *const u64 as u64,
            0,
            zero.as_ptr() as u64,
            SIGSET_SIZE,
        );
    }
    let (base, len, sp, target) = (st.base, st.len, st.frame_sp, st.munmap_syscall);
    // SAFETY: `target` is the site's `syscall` (munmap, then `mov eax, 15; syscall`), outside the area;
    // `sp` points at the rescue frame the host wrote from the task's own state. Nothing of the blob runs
    // after the jump (its area is gone with the munmap).
    unsafe {
        asm!(
            "mov rsp, {sp}",
            "jmp {target}",
            sp = in(reg) sp,
            target = in(reg) target,
            in("rdi") base,
            in("rsi") len,
            in("rax") dormant_sys::nr::MUNMAP,
            options(noreturn)
        );
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    let st = CURRENT.load(Ordering::Relaxed) as *mut State;
    if st.is_null() {
        // Unreachable: `run` sets CURRENT before anything that can panic.
        loop {
            core::hint::spin_loop();
        }
    }
    // SAFETY: CURRENT points at `run`'s state, alive for the whole injection.
    leave(unsafe { &mut *st })
}
