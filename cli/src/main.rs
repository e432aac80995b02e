//! `dormant`: checkpoint a running Linux process tree into an image directory and restore it.
//!
//! This binary is a thin shell over the library crates: it parses arguments (CRIU's flag names where the
//! meaning is the same), sets up logging, and prints results. All real work is in dormant-engine (dump),
//! dormant-restorer (restore) and dormant-image (show, verify).

mod args;
mod criu;
mod demo;
mod error;
mod out;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;
use crate::out::{errln, outln};

#[derive(Debug, Parser)]
#[command(
    name = "dormant",
    version,
    about = "Checkpoint and restore Linux processes"
)]
struct Cli {
    /// Write the log to this file instead of stderr.
    #[arg(short = 'o', long = "log-file", global = true)]
    log_file: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short = 'v', action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe every kernel feature dump and restore use; exit non-zero if a required one is missing.
    Check {
        /// Print the probes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint the process PID into an image directory.
    Dump {
        /// The process to checkpoint.
        #[arg(short = 't', long = "tree")]
        pid: u32,
        /// Where to write the image (created; an existing image there is replaced).
        #[arg(short = 'D', long = "images-dir")]
        images_dir: PathBuf,
        /// Keep the process running after the dump instead of killing it.
        #[arg(short = 'R', long = "leave-running")]
        leave_running: bool,
        /// The process is a shell job: its terminal on fds 0-2 is inherited at restore.
        #[arg(long = "shell-job")]
        shell_job: bool,
        /// Do not inject the parasite blob; copy pages with process_vm_readv instead.
        #[arg(long = "no-parasite")]
        no_parasite: bool,
        /// How pages leave the target: `vm-readv` (default: process_vm_readv in parallel, /proc/PID/mem
        /// for PROT_NONE pages), `parasite` (the injected blob vmsplices them into pipes; process_vm_readv
        /// below 48 MiB of pages) or `proc-mem`.
        #[arg(long = "page-copy", default_value = "vm-readv", value_parser = args::page_copy)]
        page_copy: dormant_engine::CopyMethod,
        /// Dump established TCP connections with TCP_REPAIR instead of refusing them; when the process is
        /// killed after the dump its connections are dropped silently, for `restore --tcp-established`.
        #[arg(long = "tcp-established")]
        tcp_established: bool,
        /// Write the dump statistics as JSON to this file.
        #[arg(long = "stats-json", hide = true)]
        stats_json: Option<PathBuf>,
        /// A container mount to dump as external: `mnt[MOUNTPOINT]:KEY` (repeatable). The container root,
        /// binds from outside and outside masters are found without it.
        #[arg(long = "external", value_name = "mnt[MOUNTPOINT]:KEY", value_parser = args::dump_external)]
        external: Vec<dormant_engine::External>,
        /// Dump a pipe end whose other end only processes outside the dump hold as external
        /// (`pipe:[INODE]`), to be handed in at restore with `--inherit-fd` (always on for a container).
        #[arg(long = "external-pipes")]
        external_pipes: bool,
        /// Container dumps: the container's root filesystem as a directory of this mount namespace. Checked
        /// to be the root of the tree's mount namespace (same device and inode as /proc/PID/root) and
        /// recorded as the default of `restore --root`.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Recreate the checkpointed process from an image directory.
    Restore {
        #[arg(short = 'D', long = "images-dir")]
        images_dir: PathBuf,
        /// Exit once the process runs instead of waiting for it (it is reparented to init or a subreaper).
        #[arg(short = 'd', long = "restore-detached")]
        detached: bool,
        /// Write the restored root pid to this file.
        #[arg(long)]
        pidfile: Option<PathBuf>,
        /// Give the restored process this terminal (dormant's own fds 0-2) for its shell-job fds.
        #[arg(long = "shell-job")]
        shell_job: bool,
        /// Rebuild the established TCP connections of the image with TCP_REPAIR (the image must have been
        /// dumped with `--tcp-established`).
        #[arg(long = "tcp-established")]
        tcp_established: bool,
        /// Container images: the directory the container's root mount is bound from (default: the
        /// `dump --root` directory when the dump was given one, else where the dumped root's filesystem is
        /// mounted in this namespace).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Container images: `mnt[KEY]:PATH` binds the external mount or master stored under KEY from
        /// PATH (repeatable; a key not given is used as the path).
        #[arg(long = "external", value_name = "mnt[KEY]:PATH", value_parser = args::restore_external)]
        external: Vec<dormant_restorer::External>,
        /// Container images: `inherit` (default), `private` (new namespace with lo), `dumped` (private if
        /// the dumped tree had a network namespace of its own, else inherit) or a namespace path.
        #[arg(long, default_value = "inherit")]
        net: dormant_restorer::ns::NetMode,
        /// Container images: `keep` (default), `dumped`, or a cgroup path to restore into.
        #[arg(long = "cgroup-root", default_value = "keep")]
        cgroup_root: dormant_restorer::ns::CgroupTarget,
        /// `fd[N]:KEY`: every fd of the tree on the external description KEY (e.g. `pipe:[1234]`, as
        /// `dormant show` lists it) gets a copy of dormant's own fd N instead (repeatable).
        #[arg(long = "inherit-fd", value_name = "fd[N]:KEY", value_parser = args::inherit_fd)]
        inherit_fd: Vec<dormant_restorer::InheritFd>,
    },
    /// Print an image in human-readable form, or its records as JSON.
    Show {
        #[arg(short = 'D', long = "images-dir")]
        images_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check every checksum and cross-reference of an image.
    Verify {
        #[arg(short = 'D', long = "images-dir")]
        images_dir: PathBuf,
    },
    /// Start a built-in workload, dump it, kill it, restore it, and show that it continues intact.
    Demo {
        /// Patterned memory the workload holds, in MiB.
        #[arg(long, default_value_t = 512)]
        size_mib: u64,
    },
    /// Serve CRIU's RPC on the inherited socket FD (what `criu swrk FD` does), so container runtimes
    /// checkpoint and restore with dormant when it is installed as `criu`.
    Swrk {
        /// The inherited SOCK_SEQPACKET socket.
        fd: i32,
    },
    /// The demo's workload (internal).
    #[command(name = "__demo-workload", hide = true)]
    DemoWorkload {
        #[arg(long)]
        size_mib: u64,
        #[arg(long)]
        trigger: PathBuf,
    },
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = criu::dispatch(&args) {
        return code;
    }
    let cli = Cli::parse();
    if let Command::Swrk { fd } = cli.cmd {
        // The server logs where each request says (its work directory), never to our stderr.
        return ExitCode::from(dormant_criu_rpc::serve(fd).clamp(0, 255) as u8);
    }
    if let Err(e) = init_logging(cli.log_file.as_deref(), cli.verbose) {
        errln!("dormant: {e}");
        return ExitCode::from(2);
    }
    let logs_to_file = cli.log_file.is_some();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            if logs_to_file {
                log::error!("{e}");
            }
            errln!("dormant: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(file: Option<&std::path::Path>, verbose: u8) -> Result<(), CliError> {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let mut b = env_logger::Builder::new();
    b.filter_level(level).parse_default_env();
    if let Some(path) = file {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| CliError::LogFile {
                path: path.to_owned(),
                source,
            })?;
        b.target(env_logger::Target::Pipe(Box::new(f)));
        // A log file gets everything at info level at least: it is what a bug report attaches.
        b.filter_level(level.max(log::LevelFilter::Info));
    }
    b.init();
    Ok(())
}

fn run(cmd: Command) -> Result<ExitCode, CliError> {
    match cmd {
        Command::Check { json } => check(json),
        Command::Dump {
            pid,
            images_dir,
            leave_running,
            shell_job,
            no_parasite,
            page_copy,
            tcp_established,
            stats_json,
            external,
            external_pipes,
            root,
        } => {
            let mut externals = external;
            if external_pipes {
                externals.push(dormant_engine::External::Pipes);
            }
            let stats = dormant_engine::Dump::builder(dormant_image::records::Pid(pid))
                .images_dir(&images_dir)
                .externals(externals)
                .root(root)
                .leave_running(leave_running)
                .shell_job(shell_job)
                .page_copy(dormant_engine::PageCopy {
                    method: page_copy,
                    threads: 0,
                })
                .no_parasite(no_parasite)
                .tcp_established(tcp_established)
                .build()?
                .run()?;
            log::info!("dump of pid {pid} into {}: {stats:?}", images_dir.display());
            if let Some(path) = stats_json {
                let text = serde_json::to_string_pretty(&stats_json_value(&stats))
                    .map_err(CliError::Json)?;
                std::fs::write(&path, text).map_err(|source| CliError::Write { path, source })?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            images_dir,
            detached,
            pidfile,
            shell_job,
            tcp_established,
            root,
            external,
            net,
            cgroup_root,
            inherit_fd,
        } => {
            let restored = dormant_restorer::Restore::builder(&images_dir)
                .root(root)
                .externals(external)
                .net(net)
                .cgroup_root(cgroup_root)
                .detached(detached)
                .shell_job(shell_job)
                .tcp_established(tcp_established)
                .pidfile(pidfile)
                .inherit_fds(inherit_fd)
                .build()?
                .run()?;
            if detached {
                return Ok(ExitCode::SUCCESS);
            }
            // Like a shell: the exit code, or 128 + the signal that killed it.
            let code = match restored.wait()? {
                dormant_restorer::ExitStatus::Exited(c) => c,
                dormant_restorer::ExitStatus::Signaled { signal, .. } => 128 + signal,
            };
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        Command::Show { images_dir, json } => show::show(&images_dir, json),
        Command::Verify { images_dir } => show::verify(&images_dir),
        // Normally served by `main` before logging is set up (the server logs where each request says).
        Command::Swrk { fd } => Ok(ExitCode::from(
            dormant_criu_rpc::serve(fd).clamp(0, 255) as u8
        )),
        Command::Demo { size_mib } => demo::run(size_mib),
        Command::DemoWorkload { size_mib, trigger } => demo::workload(size_mib, &trigger),
    }
}

/// The dump statistics as JSON (milliseconds and bytes), for scripts, the demo and the benchmarks.
fn stats_json_value(stats: &dormant_engine::DumpStats) -> serde_json::Value {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let phases: serde_json::Map<String, serde_json::Value> = stats
        .phases
        .iter()
        .map(|(stage, d)| (format!("{stage:?}"), ms(*d).into()))
        .collect();
    serde_json::json!({
        "frozen_ms": ms(stats.frozen),
        "total_ms": ms(stats.total),
        "release_ms": ms(stats.release),
        "pages_written": stats.pages_written,
        "bytes_written": stats.bytes_written,
        "phases_ms": phases,
    })
}

fn check(json: bool) -> Result<ExitCode, CliError> {
    let probes = dormant_engine::kerndat::probe_all();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&probes).map_err(CliError::Json)?
        )?;
    } else {
        out::stdout(format_args!(
            "{}",
            dormant_engine::kerndat::render_table(&probes)
        ))?;
    }
    let missing: Vec<String> = probes
        .iter()
        .filter(|p| p.required && !p.status.is_available())
        .map(|p| format!("{:?} ({})", p.feature, p.kernel_option))
        .collect();
    if missing.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        errln!(
            "dormant: missing kernel features needed for dump/restore: {}",
            missing.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}
