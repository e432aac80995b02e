//! `dormant show` and `dormant verify`.
//!
//! Both load the image whole with every check ([`Image::load`], what restore does too). `show --json`
//! prints every record of every file as JSON, keyed by file name (the counterpart of CRIU's `crit show`);
//! page data files are summarised, never dumped. `verify` prints what the checks found.

use std::path::Path;
use std::process::ExitCode;

use dormant_image::records::{self, KindVisitor, RecordKind};
use dormant_image::{Image, ImageError, ImageReader, Record};
use serde_json::{json, Map, Value};

use crate::error::CliError;
use crate::out::{self, outln};

/// The records of one file as JSON, decoded as the record type of `kind` (from the kind table).
struct RecordsJson<'a> {
    img: &'a ImageReader,
    name: &'a str,
}

impl KindVisitor for RecordsJson<'_> {
    type Output = Result<Value, CliError>;
    fn visit<R: Record + Clone + PartialEq>(self) -> Self::Output {
        let items: Vec<R> = self.img.read_records(self.name)?;
        serde_json::to_value(items).map_err(CliError::Json)
    }
}

fn file_json(img: &ImageReader, name: &str, len: u64) -> Result<Value, CliError> {
    use dormant_image::records::{file_role, FileRole};
    Ok(match file_role(name) {
        Some(FileRole::PageData) => json!({ "page_data_bytes": len }),
        Some(FileRole::Records(RecordKind::Inventory)) => {
            serde_json::to_value(img.inventory()).map_err(CliError::Json)?
        }
        Some(FileRole::Records(kind)) => kind.visit(RecordsJson { img, name })?,
        None => json!({ "unknown_file_bytes": len }),
    })
}

/// Prints a checked image (`dormant show` of an image `verify` rejects fails with the same problems).
pub fn show(dir: &Path, as_json: bool) -> Result<ExitCode, CliError> {
    let image = Image::load(dir)?;
    let img = image.reader();
    if as_json {
        let mut out = Map::new();
        out.insert(
            "inventory".into(),
            serde_json::to_value(img.inventory()).map_err(CliError::Json)?,
        );
        for f in &img.inventory().files {
            out.insert(f.name.clone(), file_json(img, &f.name, f.len)?);
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&Value::Object(out)).map_err(CliError::Json)?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    out::stdout(format_args!("{}", human(&image)))?;
    Ok(ExitCode::SUCCESS)
}

fn human(img: &Image) -> String {
    use records::*;
    use std::fmt::Write;
    let inv = img.inventory();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "image format {}.{} ({}), kernel {}, xsave {:#x}/{} bytes, dormant {}, root pid {}",
        inv.format_major,
        inv.format_minor,
        inv.arch,
        inv.kernel_release,
        inv.xsave_features,
        inv.xsave_size,
        inv.tool_version,
        inv.root_pid.0
    );
    let files = &img.files;
    let descs = &img.descs;
    let path_of = |id: FileId| files.get(&id).map(|f| f.path.as_str()).unwrap_or("?");
    for task in &img.tasks {
        let (t, core) = (&task.tree, &task.core);
        let _ = writeln!(
            s,
            "\npid {} ({}) ppid {:?} pgid {} sid {} threads {:?}",
            t.pid.0,
            core.comm,
            t.ppid.map(|p| p.0),
            t.pgid.0,
            t.sid.0,
            t.threads.iter().map(|x| x.0).collect::<Vec<_>>()
        );
        for th in &task.threads {
            let tid = th.tid;
            let _ = writeln!(
                s,
                "  thread {}: rip {:#x} rsp {:#x} rax {:#x} orig_rax {} sigmask {:#x} xstate {} bytes{}",
                tid.0,
                th.regs.rip,
                th.regs.rsp,
                th.regs.rax,
                th.regs.orig_rax as i64,
                th.sigmask,
                th.xstate.len(),
                th.rseq.map(|r| format!(" rseq {:#x}", r.addr)).unwrap_or_default()
            );
        }
        let mm = &task.mm;
        let _ = writeln!(s, "  exe {}", path_of(mm.exe));
        let store = &task.pages;
        for v in &mm.vmas {
            let stored: u64 = store
                .extents()
                .iter()
                .filter(|e| e.vaddr >= v.start && e.vaddr < v.end)
                .map(|e| e.len)
                .sum();
            let backing = match &v.backing {
                VmaBacking::File(id) => path_of(*id).to_string(),
                other => format!("{other:?}"),
            };
            let _ = writeln!(
                s,
                "  {:012x}-{:012x} {}{}{} {:>9} KiB stored  {}",
                v.start,
                v.end,
                if v.prot & 1 != 0 { 'r' } else { '-' },
                if v.prot & 2 != 0 { 'w' } else { '-' },
                if v.prot & 4 != 0 { 'x' } else { '-' },
                stored / 1024,
                backing
            );
        }
        for fd in &task.fds {
            let what = match fd.file {
                FdFile::Reg(id) => {
                    let f = files.get(&id);
                    format!(
                        "{} pos {} flags {:#o}",
                        path_of(id),
                        f.map_or(0, |f| f.pos),
                        f.map_or(0, |f| f.flags)
                    )
                }
                FdFile::InheritedTty => "inherited terminal".into(),
                FdFile::Desc(id) => match descs.iter().find(|d| d.id == id) {
                    Some(d) => {
                        let stored = img.desc_contents.get(&id).map(|(size, _)| *size);
                        format!(
                            "file description {}: {}",
                            id.0,
                            desc_summary(&d.kind, stored)
                        )
                    }
                    None => format!("file description {} (missing)", id.0),
                },
            };
            let _ = writeln!(
                s,
                "  fd {}{}: {what}",
                fd.fd,
                if fd.cloexec { " (cloexec)" } else { "" }
            );
        }
    }
    let total: u64 = inv.files.iter().map(|f| f.len).sum();
    let _ = writeln!(
        s,
        "\n{} files, {:.1} MiB",
        inv.files.len(),
        total as f64 / 1048576.0
    );
    s
}

/// One line about a description for the human-readable view (`--json` has every field). `stored`: the
/// size of its content when a page store holds it (`desc-contents`) rather than the record.
fn desc_summary(k: &records::DescKind, stored: Option<u64>) -> String {
    let bytes = |data: &[u8]| stored.unwrap_or(data.len() as u64);
    use records::DescKind;
    match k {
        DescKind::PipeEnd { pipe, write, .. } => {
            format!(
                "pipe:[{pipe}] {} end",
                if *write { "write" } else { "read" }
            )
        }
        DescKind::EventFd { count, .. } => format!("eventfd count {count}"),
        DescKind::TimerFd { clock, .. } => format!("timerfd clock {clock}"),
        DescKind::SignalFd { mask } => format!("signalfd mask {mask:#x}"),
        DescKind::Epoll { targets } => format!("epoll, {} registrations", targets.len()),
        DescKind::Memfd { name, data, .. } => format!("memfd {name:?}, {} bytes", bytes(data)),
        DescKind::UnixPair { ino, peer, .. } => format!("unix socket {ino} paired with {peer}"),
        DescKind::Inet(i) => format!("inet socket family {} type {}", i.family, i.sock_type),
        DescKind::UnixListen { name, pending, .. } => {
            format!(
                "unix listener {}, {} connection(s) waiting",
                String::from_utf8_lossy(name).replace('\0', "@"),
                pending.len()
            )
        }
        DescKind::Ghost { path, data, .. } => {
            format!("unlinked file {path}, {} bytes", bytes(data))
        }
        DescKind::Fifo { path, .. } => format!("fifo {path}"),
        DescKind::UnixConn { ino, peer, .. } => format!("unix connection {ino} to {peer}"),
        DescKind::UnixDgram { ino, .. } => format!("unix datagram socket {ino}"),
        DescKind::UnixUnconnected { name, .. } => format!(
            "unconnected unix socket {}",
            String::from_utf8_lossy(name).replace('\0', "@")
        ),
        DescKind::TcpEstablished(c) => format!("TCP connection, local port {}", c.local.1),
        DescKind::External { key } => format!("external {key}"),
        DescKind::Inotify { watches } => {
            let ws: Vec<String> = watches
                .iter()
                .map(|w| format!("wd {} mask {:#x} {}", w.wd, w.mask, w.path))
                .collect();
            format!("inotify [{}]", ws.join(", "))
        }
        DescKind::Pidfd { pid } => format!("pidfd of pid {pid}"),
        DescKind::Proc(f) => format!("proc file {} at {}", f.full_path(), f.pos),
        DescKind::Pty {
            master,
            index,
            state,
        } => format!(
            "pty {} {index}, window {}x{}",
            if *master { "master of" } else { "slave" },
            state.winsize[0],
            state.winsize[1]
        ),
    }
}

/// Loads the image with every check; prints a one-line summary, or fails with every problem found.
pub fn verify(dir: &Path) -> Result<ExitCode, CliError> {
    match Image::load(dir) {
        Ok(image) => {
            outln!(
                "{}: image OK (format {}.{}, {} files, {} processes)",
                dir.display(),
                image.inventory().format_major,
                image.inventory().format_minor,
                image.inventory().files.len(),
                image.tasks.len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(ImageError::Rejected { problems, .. }) => Err(CliError::Verify {
            dir: dir.to_owned(),
            problems: problems
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }),
        Err(e) => Err(e.into()),
    }
}
