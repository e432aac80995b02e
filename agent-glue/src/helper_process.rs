//! The helper's side of [`crate::helper`]: the re-executed binary reads its request, runs the checkpoint
//! or restore in this single-threaded process, and writes the answer with its log records. Apart from the
//! caller's side, which the checkpoint and restore modules use to send their requests, so that they need
//! not import the dispatcher that calls them back here.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use crate::error::FailureKind;
use crate::helper::{
    Answer, Failure, FeatureProbe, LogLine, Request, Response, ANSWER_FD, HELPER_ARG, LOG_ENV,
    REQUEST_FD, STDIO_FD,
};

/// Becomes the helper and exits when the first argument is [`HELPER_ARG`]; returns otherwise. Call it
/// first thing in `main`, before any runtime or thread starts.
pub fn run_if_helper() {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(HELPER_ARG)) {
        std::process::exit(helper_main());
    }
}

/// The log records of the helper, sent back with the answer.
struct Collector {
    lines: Mutex<Vec<LogLine>>,
}

static COLLECTOR: Collector = Collector {
    lines: Mutex::new(Vec::new()),
};

impl log::Log for Collector {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            if let Ok(mut lines) = self.lines.lock() {
                lines.push(LogLine {
                    level: r.level() as usize,
                    target: r.target().to_string(),
                    message: r.args().to_string(),
                });
            }
        }
    }

    fn flush(&self) {}
}

/// Takes ownership of a descriptor number the helper inherited.
fn inherited(fd: RawFd) -> Option<OwnedFd> {
    // F_GETFD tells whether it is open; nothing else in this process owns these numbers.
    nix::fcntl::fcntl(
        // SAFETY: fd is only borrowed for the F_GETFD query.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .ok()?;
    // SAFETY: the helper's launcher put this descriptor here for the helper alone; it is taken once.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn helper_main() -> i32 {
    if log::set_logger(&COLLECTOR).is_ok() {
        let level = std::env::var(LOG_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(log::LevelFilter::Info);
        log::set_max_level(level);
    }
    let (Some(req), Some(ans)) = (inherited(REQUEST_FD), inherited(ANSWER_FD)) else {
        eprintln!("{HELPER_ARG}: started without its request and answer descriptors");
        return 2;
    };
    let mut text = String::new();
    let answer = match File::from(req).read_to_string(&mut text) {
        Err(e) => Answer::Failed(Failure::new(
            FailureKind::Internal,
            format!("reading the request: {e}"),
        )),
        Ok(_) => match serde_json::from_str::<Request>(&text) {
            Err(e) => Answer::Failed(Failure::new(
                FailureKind::Internal,
                format!("bad request: {e}"),
            )),
            Ok(req) => serve(req),
        },
    };
    let log = COLLECTOR
        .lines
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    let Ok(bytes) = serde_json::to_vec(&Response { answer, log }) else {
        return 3;
    };
    match File::from(ans).write_all(&bytes) {
        Ok(()) => 0,
        Err(_) => 4,
    }
}

fn serve(req: Request) -> Answer {
    let result = match req {
        Request::Checkpoint {
            container,
            options,
            paths,
        } => crate::checkpoint::in_helper(&container, &options, &paths).map(Answer::Checkpointed),
        Request::Restore(r) => {
            let stdio = [0, 1, 2].map(|n| {
                if r.stdio[n] {
                    inherited(STDIO_FD + n as RawFd)
                } else {
                    None
                }
            });
            crate::restore::in_helper(&r, &stdio).map(|init_pid| Answer::Restored { init_pid })
        }
        Request::Features => Ok(Answer::Features(features())),
    };
    result.unwrap_or_else(Answer::Failed)
}

/// `dormant check`'s probes (they fork: run in the helper only).
fn features() -> Vec<FeatureProbe> {
    use dormant_engine::kerndat::Status;
    dormant_engine::kerndat::detect()
        .probes
        .into_iter()
        .map(|p| {
            let (available, detail) = match p.status {
                Status::Available { detail } => (true, detail),
                Status::Missing { reason } => (false, reason),
            };
            FeatureProbe {
                name: p.feature.name().to_string(),
                available,
                required: p.required,
                detail,
                needed_for: p.needed_for.to_string(),
                kernel_option: p.kernel_option.to_string(),
            }
        })
        .collect()
}
