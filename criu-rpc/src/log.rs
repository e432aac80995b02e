//! The server's log. CRIU writes one log file per request (`log_file` in the work directory, at
//! `log_level`), and that file is what a runtime's user reads when a request fails: runc prints its path
//! and quotes its lines that contain `Error`. So records are written in CRIU's shape,
//! `(SS.ssssss) Error (module): message`, and nothing goes to stderr unless asked (`log_to_stderr`): at
//! RESTORE our stderr is the restored container's.
//!
//! The destination is only known once a request names it, so records before that are held in memory and
//! written to the file when [`configure`] opens it (dropped if no request ever does, as for a VERSION probe).

use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Records held before the destination is known, at most this many.
const MAX_EARLY: usize = 1000;

enum Sink {
    Early(Vec<String>),
    File(File),
    Stderr,
}

struct RpcLog {
    start: Instant,
    sink: Mutex<Sink>,
}

static LOGGER: OnceLock<RpcLog> = OnceLock::new();

fn level_word(l: Level) -> &'static str {
    match l {
        Level::Error => "Error",
        Level::Warn => "Warn",
        Level::Info => "Info",
        Level::Debug => "Debug",
        Level::Trace => "Trace",
    }
}

impl Log for RpcLog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let t = self.start.elapsed();
        let line = format!(
            "({:02}.{:06}) {} ({}): {}\n",
            t.as_secs(),
            t.subsec_micros(),
            level_word(r.level()),
            r.target(),
            r.args()
        );
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        match &mut *sink {
            Sink::Early(lines) => {
                if lines.len() < MAX_EARLY {
                    lines.push(line);
                }
            }
            // A log that cannot be written must not fail the request it describes.
            Sink::File(f) => drop(f.write_all(line.as_bytes())),
            Sink::Stderr => drop(std::io::stderr().write_all(line.as_bytes())),
        }
    }

    fn flush(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            if let Sink::File(f) = &mut *sink {
                drop(f.flush());
            }
        }
    }
}

/// Installs the server's logger (once per process; later calls do nothing). Until [`configure`] runs,
/// records at info level and above are held in memory.
pub fn install() {
    let logger = LOGGER.get_or_init(|| RpcLog {
        start: Instant::now(),
        sink: Mutex::new(Sink::Early(Vec::new())),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// CRIU's `log_level` (0 messages only, 1 errors, 2 warnings, 3 info, 4 debug) as a filter.
pub fn level_from_criu(level: i32) -> LevelFilter {
    match level {
        i32::MIN..=1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    }
}

/// Sends the log to `file` (or stderr when `file` is `None` and `to_stderr`), writing the records held
/// so far first; with neither, the held records are dropped and nothing more is kept.
pub fn configure(file: Option<File>, level: LevelFilter, to_stderr: bool) {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let Ok(mut sink) = logger.sink.lock() else {
        return;
    };
    let early = match std::mem::replace(&mut *sink, Sink::Stderr) {
        Sink::Early(lines) => lines,
        _ => Vec::new(),
    };
    *sink = match (file, to_stderr) {
        (Some(mut f), _) => {
            for l in &early {
                drop(f.write_all(l.as_bytes()));
            }
            Sink::File(f)
        }
        (None, true) => {
            for l in &early {
                drop(std::io::stderr().write_all(l.as_bytes()));
            }
            Sink::Stderr
        }
        (None, false) => {
            log::set_max_level(LevelFilter::Off);
            return;
        }
    };
    log::set_max_level(level.max(LevelFilter::Error));
}
