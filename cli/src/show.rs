//! `dormant show` and `dormant verify`.
//!
//! `show --json` prints every record of every file as JSON, keyed by file name (the counterpart of CRIU's
//! `crit show`); page data files are summarised, never dumped. `verify` runs the container checks of
//! dormant-image (lengths, checksums, framing, page indexes) and the schema's cross references.

use std::path::Path;
use std::process::ExitCode;

use dormant_image::records;
use dormant_image::{ImageReader, Record};
use serde_json::{json, Map, Value};

use crate::error::CliError;

fn records_json<R: Record + serde::Serialize>(
    img: &ImageReader,
    name: &str,
) -> Result<Value, CliError> {
    let items: Vec<R> = img.read_records(name)?;
    serde_json::to_value(items).map_err(CliError::Json)
}

fn file_json(img: &ImageReader, name: &str, len: u64) -> Result<Value, CliError> {
    use dormant_image::records::*;
    Ok(match file_role(name) {
        Some(FileRole::PageData) => json!({ "page_data_bytes": len }),
        Some(FileRole::Records(kind)) => match kind {
            RecordKind::Inventory => {
                serde_json::to_value(img.inventory()).map_err(CliError::Json)?
            }
            RecordKind::PageIndex => records_json::<dormant_image::PageExtent>(img, name)?,
            RecordKind::PsTree => records_json::<PsTreeEntry>(img, name)?,
            RecordKind::TaskCore => records_json::<TaskCore>(img, name)?,
            RecordKind::ThreadCore => records_json::<ThreadCore>(img, name)?,
            RecordKind::Mm => records_json::<Mm>(img, name)?,
            RecordKind::RegFiles => records_json::<RegFile>(img, name)?,
            RecordKind::Fds => records_json::<Fd>(img, name)?,
            RecordKind::ShmemObjects => records_json::<ShmemObject>(img, name)?,
            RecordKind::FileDescs => records_json::<FileDesc>(img, name)?,
            RecordKind::FileLocks => records_json::<FileLock>(img, name)?,
            RecordKind::FileIdentity => records_json::<FileIdentity>(img, name)?,
            RecordKind::Zombie => records_json::<Zombie>(img, name)?,
            RecordKind::TaskNamespaces => records_json::<TaskNamespaces>(img, name)?,
            RecordKind::UtsNamespace => records_json::<UtsNamespace>(img, name)?,
            RecordKind::IpcNamespace => records_json::<IpcNamespace>(img, name)?,
            RecordKind::TaskCgroups => records_json::<TaskCgroups>(img, name)?,
            RecordKind::NsState => records_json::<NsState>(img, name)?,
            RecordKind::Mounts => records_json::<MountEntry>(img, name)?,
            RecordKind::ExternalMasters => records_json::<ExternalMaster>(img, name)?,
            RecordKind::ContainerRoot => records_json::<ContainerRoot>(img, name)?,
            RecordKind::TmpfsContent => records_json::<TmpfsRecord>(img, name)?,
        },
        None => json!({ "unknown_file_bytes": len }),
    })
}

pub fn show(dir: &Path, as_json: bool) -> Result<ExitCode, CliError> {
    let img = ImageReader::open(dir)?;
    if as_json {
        let mut out = Map::new();
        out.insert(
            "inventory".into(),
            serde_json::to_value(img.inventory()).map_err(CliError::Json)?,
        );
        for f in &img.inventory().files {
            out.insert(f.name.clone(), file_json(&img, &f.name, f.len)?);
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Object(out)).map_err(CliError::Json)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", human(&img)?);
    Ok(ExitCode::SUCCESS)
}

fn human(img: &ImageReader) -> Result<String, CliError> {
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
    let files: Vec<RegFile> = img.read_records(names::REG_FILES)?;
    let descs: Vec<FileDesc> = if img.has_file(names::FILE_DESCS) {
        img.read_records(names::FILE_DESCS)?
    } else {
        Vec::new()
    };
    let path_of = |id: FileId| {
        files
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.path.as_str())
            .unwrap_or("?")
    };
    for t in img.read_records::<PsTreeEntry>(names::PSTREE)? {
        let core: TaskCore = img.read_single(&names::core(t.pid))?;
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
        for tid in &t.threads {
            let th: ThreadCore = img.read_single(&names::thread(*tid))?;
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
        let mm: Mm = img.read_single(&names::mm(t.pid))?;
        let _ = writeln!(s, "  exe {}", path_of(mm.exe));
        let store = img.page_store(&names::task_pages(t.pid))?;
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
        for fd in img.read_records::<Fd>(&names::fds(t.pid))? {
            let what = match fd.file {
                FdFile::Reg(id) => {
                    let f = files.iter().find(|f| f.id == id);
                    format!(
                        "{} pos {} flags {:#o}",
                        path_of(id),
                        f.map_or(0, |f| f.pos),
                        f.map_or(0, |f| f.flags)
                    )
                }
                FdFile::InheritedTty => "inherited terminal".into(),
                FdFile::Desc(id) => match descs.iter().find(|d| d.id == id) {
                    Some(d) => format!("file description {}: {}", id.0, desc_summary(&d.kind)),
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
    Ok(s)
}

/// One line about a description for the human-readable view (`--json` has every field).
fn desc_summary(k: &records::DescKind) -> String {
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
        DescKind::Memfd { name, data, .. } => format!("memfd {name:?}, {} bytes", data.len()),
        DescKind::UnixPair { ino, peer, .. } => format!("unix socket {ino} paired with {peer}"),
        DescKind::Inet(i) => format!("inet socket family {} type {}", i.family, i.sock_type),
        DescKind::UnixListen { name, .. } => {
            format!(
                "unix listener {}",
                String::from_utf8_lossy(name).replace('\0', "@")
            )
        }
        DescKind::Ghost { path, data, .. } => {
            format!("unlinked file {path}, {} bytes", data.len())
        }
        DescKind::Fifo { path, .. } => format!("fifo {path}"),
        DescKind::UnixConn { ino, peer, .. } => format!("unix connection {ino} to {peer}"),
        DescKind::UnixDgram { ino, .. } => format!("unix datagram socket {ino}"),
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

pub fn verify(dir: &Path) -> Result<ExitCode, CliError> {
    let img = ImageReader::open(dir)?;
    let mut problems: Vec<String> = match img.verify() {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    };
    if problems.is_empty() {
        problems = records::check_references(&img);
    }
    if problems.is_empty() {
        println!(
            "{}: image OK ({} files)",
            dir.display(),
            img.inventory().files.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::Verify {
            dir: dir.to_owned(),
            problems: problems.join("\n"),
        })
    }
}
