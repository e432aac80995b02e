//! Workload `wl_fdshare`: processes that share an fd table or an fs struct (cwd, root, umask), which a dump
//! must refuse until the restore rebuilds the sharing (issue 13). The check shows the sharing is there.
//!
//! `wl_fdshare TRIGGER DIR KIND [--inject-fault]`, KIND one of:
//! - `files`: a child cloned with `CLONE_FILES`; after the trigger it opens a file (its fd number written
//!   to a pipe) and the parent reads that file through the same fd number.
//! - `fs`: a child cloned with `CLONE_FS`; after the trigger it changes directory to DIR and umask to 027,
//!   and the parent sees both.
//!
//! `--inject-fault` makes the parent close the fd (`files`) or change directory back (`fs`) before it
//! checks.

use std::os::fd::RawFd;
use std::process::ExitCode;

use dormant_tests::workload::{self, Report, WorkloadArgs, WorkloadError, INJECT_FAULT};

const USAGE: &str = "KIND [--inject-fault]";
const STACK: usize = 256 << 10;
const CONTENT: &[u8] = b"opened by the child";

/// What the child gets: the pipe to wait on, the pipe to answer on, and the scratch directory.
struct ChildArgs {
    go: RawFd,
    answer: RawFd,
    dir: std::ffi::CString,
    file: std::ffi::CString,
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's ChildArgs, alive until the child exits (the parent waits for it).
    let a = unsafe { &*(arg as *const ChildArgs) };
    let mut b = [0u8; 1];
    // SAFETY: plain syscalls on fds and buffers of the parent's, which this child shares memory with.
    unsafe {
        while libc::read(a.go, b.as_mut_ptr().cast(), 1) != 1 {}
        let fd = libc::open(a.file.as_ptr(), libc::O_RDONLY);
        libc::chdir(a.dir.as_ptr());
        libc::umask(0o027);
        let n = fd.to_ne_bytes();
        libc::write(a.answer, n.as_ptr().cast(), 4);
        // Stay until the parent is done with the shared table.
        while libc::read(a.go, b.as_mut_ptr().cast(), 1) != 1 {}
        libc::syscall(libc::SYS_exit, 0);
    }
    0
}

fn pipe() -> Result<(RawFd, RawFd), WorkloadError> {
    let mut p = [0; 2];
    // SAFETY: pipe writes two fds.
    if unsafe { libc::pipe(p.as_mut_ptr()) } != 0 {
        return Err(WorkloadError::setup(
            "pipe",
            std::io::Error::last_os_error(),
        ));
    }
    Ok((p[0], p[1]))
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env(USAGE)?;
    let mut report = Report::new("wl_fdshare");
    let kind = args
        .rest
        .first()
        .cloned()
        .ok_or_else(|| WorkloadError::setup("kind", "none given"))?;
    let flag = match kind.as_str() {
        "files" => libc::CLONE_FILES,
        "fs" => libc::CLONE_FS,
        other => {
            return Err(WorkloadError::setup(
                "kind",
                format!("unknown kind {other}"),
            ))
        }
    };
    let file = args.dir.join("shared-file");
    std::fs::write(&file, CONTENT).map_err(|e| WorkloadError::setup("file", e))?;
    let (go_r, go_w) = pipe()?;
    let (ans_r, ans_w) = pipe()?;
    let cstr = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
    };
    let child_args = Box::new(ChildArgs {
        go: go_r,
        answer: ans_w,
        dir: cstr(&args.dir),
        file: cstr(&file),
    });
    let mut stack = vec![0u8; STACK];
    // SAFETY: the child runs child_main on its own stack (the top of `stack`, kept alive until it is
    // reaped) with `child_args`, also kept alive; SIGCHLD makes it a normal child to wait for.
    let child = unsafe {
        libc::clone(
            child_main,
            stack.as_mut_ptr().add(STACK).cast(),
            flag | libc::SIGCHLD,
            (&*child_args as *const ChildArgs).cast_mut().cast(),
        )
    };
    if child < 0 {
        return Err(WorkloadError::setup(
            "clone",
            std::io::Error::last_os_error(),
        ));
    }
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    let tell = || {
        // SAFETY: writes one byte to our pipe.
        unsafe { libc::write(go_w, b"g".as_ptr().cast(), 1) };
    };
    tell();
    let mut n = [0u8; 4];
    // SAFETY: reads 4 bytes into `n`.
    let got = unsafe { libc::read(ans_r, n.as_mut_ptr().cast(), 4) };
    let fd = i32::from_ne_bytes(n);
    if args.has_flag(INJECT_FAULT) {
        if flag == libc::CLONE_FILES {
            // SAFETY: closes the fd the child opened (in the table they share).
            unsafe { libc::close(fd) };
        } else {
            let _ = std::env::set_current_dir("/");
        }
    }
    let result = if got != 4 || fd < 0 {
        Err(format!("the child answered {got} bytes, fd {fd}"))
    } else if flag == libc::CLONE_FILES {
        std::fs::read(format!("/proc/self/fd/{fd}"))
            .map_err(|e| format!("fd {fd} the child opened is not in this table: {e}"))
            .and_then(|b| {
                (b == CONTENT)
                    .then_some(())
                    .ok_or_else(|| format!("fd {fd} reads {b:?}"))
            })
    } else {
        // SAFETY: umask twice puts the value back.
        let mask = unsafe { libc::umask(0o022) };
        // SAFETY: as above.
        unsafe { libc::umask(mask) };
        let cwd = std::env::current_dir().map_err(|e| e.to_string());
        match cwd {
            Ok(c) if c == args.dir && mask == 0o027 => Ok(()),
            other => Err(format!(
                "cwd {other:?} umask {mask:o}, want {} and 027 (set by the child)",
                args.dir.display()
            )),
        }
    };
    report.check(&kind, result);
    tell();
    let mut status = 0;
    // SAFETY: reaps our child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    drop(stack);
    drop(child_args);
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_fdshare", run)
}
