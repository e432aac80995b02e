//! `ctr_agent`: builds a container the way kata-agent does, with plain syscalls, for the container tests.
//!
//! `ctr_agent BASE WORKLOAD [ARGS...]`: BASE is an empty 0700 directory, WORKLOAD the `wl_container` binary,
//! ARGS extra workload arguments (e.g. `--inject-fault`).
//!
//! The agent stands for kata-agent inside a Kata guest. It first moves into a mount namespace of its own
//! (all mounts private, so nothing reaches the machine's mounts) and builds the agent's side there:
//! - `BASE/shared` — a shared tmpfs standing for `/run/kata-containers/shared/containers/` (virtio-fs in
//!   Kata), holding `ID/rootfs` (busybox-static, the workload and the libraries it needs) and the `hosts` and
//!   `resolv.conf` files the agent bind-mounts into every container;
//! - `BASE/sandbox/shm` — a shared tmpfs standing for the sandbox's `/dev/shm`.
//!
//! Then it creates the container's init with new mount, pid, uts and ipc namespaces, which, like
//! kata-agent's container setup, makes `/` `MS_SLAVE|MS_REC` (so every mount of the container is a slave
//! of a peer group that lives only in the agent's namespace), bind-mounts the rootfs, mounts proc (with
//! `/proc/timer_list` masked by /dev/null and a read-only `/proc/sys`, as kata-agent does) and a
//! tmpfs /dev with /dev/null|zero|urandom bound from the agent, binds `BASE/sandbox/shm` on /dev/shm and the
//! shared `hosts` and `resolv.conf` on /etc, sets the hostname, `pivot_root`s and execs
//! `/bin/sh /run.sh`: a busybox shell that runs the workload as its child.
//!
//! The container's stdout and stderr are `BASE/../container.log`, a file outside the container's mount
//! namespace (as kata-agent hands a container its stdio). With `CTR_AGENT_STDOUT_FD=3` in the environment
//! the container's stdout is instead the agent's fd 3 (a pipe whose read end the test holds, as kata-agent
//! hands a container stdio pipes); the agent closes its own copy once the container is started.
//!
//! The agent prints `AGENT <agent pid> INIT <init pid>` and then reaps children until its stdin reaches EOF;
//! then it kills the container (if it is still its child) and exits, which tears its namespace down. Tests
//! run `dormant` inside the agent's mount namespace with `nsenter --mount=/proc/AGENT/ns/mnt`.
//!
//! With `CTR_AGENT_SOCKET=PATH` it is the stand-in for kata-agent with dormant linked in: the container's
//! init joins a freezer cgroup (`CTR_AGENT_CGROUP=v1|v2`, a new cgroup in the freezer hierarchy or in
//! cgroup2) and calls `setsid`, its stdin, stdout and stderr are pipes the agent holds (it copies stdout and
//! stderr into `container.log`), and after setting up the agent runs a multi-threaded tokio runtime that
//! serves dormant's ttrpc service (`dormant-agent-glue`) on a unix socket at PATH, as kata-agent serves its
//! own. `CTR_AGENT_SANDBOX_ONLY=1` builds the sandbox side only (a new VM waiting for a restore: a fresh
//! shared directory and sandbox shm, so other device numbers, and a rootfs of the same content and
//! mtimes); `CTR_AGENT_OMIT=DEST` leaves the mount of DEST out of its container spec (a sandbox missing
//! a key). The helper processes dormant runs are this binary re-executed
//! (`dormant_agent_glue::run_if_helper`); its SIGCHLD reaper collects children whatever they are, as
//! kata-agent's does.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, pivot_root, sethostname, Pid};

mod serve;

/// The hostname the container gets (the workload checks it).
pub const HOSTNAME: &str = "dormant-ctr";
/// The container id in the shared directory (and as the stand-in agent knows it).
const CONTAINER_ID: &str = "ctr0";

#[derive(Debug)]
struct Failure(String);

type Result<T> = std::result::Result<T, Failure>;

fn ctx<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: impl AsRef<str>) -> Result<T> {
    r.map_err(|e| Failure(format!("{}: {e}", what.as_ref())))
}

fn mount_tmpfs(target: &Path, name: &str) -> Result<()> {
    ctx(
        mount(
            Some(name),
            target,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755"),
        ),
        format!("mount tmpfs {name} on {}", target.display()),
    )
}

fn bind(src: &Path, dst: &Path) -> Result<()> {
    ctx(
        mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>),
        format!("bind {} on {}", src.display(), dst.display()),
    )
}

fn set_propagation(target: &Path, flags: MsFlags) -> Result<()> {
    ctx(
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>),
        format!("propagation {flags:?} of {}", target.display()),
    )
}

fn mkdirs(path: &Path) -> Result<()> {
    ctx(
        fs::create_dir_all(path),
        format!("mkdir {}", path.display()),
    )
}

fn write_file(path: &Path, data: &str) -> Result<()> {
    ctx(fs::write(path, data), format!("write {}", path.display()))
}

/// The shared libraries `bin` needs, from `ldd` (absolute paths only).
fn libraries_of(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = ctx(Command::new("ldd").arg(bin).output(), "run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

/// The mtime every file the agent writes into a rootfs gets, so two sandboxes built apart hold files of
/// the same content identity (size, mtime, content), as two VMs given one image do.
const FIXED_MTIME: std::time::Duration = std::time::Duration::from_secs(1_700_000_000);

/// Copies `src` to `dst` with `src`'s mtime (following symlinks: the copy is the file itself).
fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    ctx(
        fs::copy(src, dst),
        format!("copy {} to {}", src.display(), dst.display()),
    )?;
    let mtime = ctx(
        fs::metadata(src).and_then(|m| m.modified()),
        format!("mtime of {}", src.display()),
    )?;
    set_mtime(dst, mtime)
}

fn set_mtime(path: &Path, mtime: std::time::SystemTime) -> Result<()> {
    ctx(
        fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(mtime)),
        format!("set the mtime of {}", path.display()),
    )
}

/// Writes a rootfs file with [`FIXED_MTIME`].
fn write_rootfs_file(path: &Path, data: &str) -> Result<()> {
    write_file(path, data)?;
    set_mtime(path, std::time::UNIX_EPOCH + FIXED_MTIME)
}

/// Copies `src` into `rootfs` at the same path.
fn copy_in(rootfs: &Path, src: &Path) -> Result<()> {
    let rel = src.strip_prefix("/").unwrap_or(src);
    let dst = rootfs.join(rel);
    if let Some(parent) = dst.parent() {
        mkdirs(parent)?;
    }
    copy_file(src, &dst)
}

/// Fills the container's root filesystem: busybox with its applets, the workload and its libraries.
fn build_rootfs(rootfs: &Path, workload: &Path, extra: &str) -> Result<()> {
    for d in ["bin", "proc", "dev", "etc", "tmp", "work", "run", ".old"] {
        mkdirs(&rootfs.join(d))?;
    }
    ctx(
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)),
        "chmod tmp",
    )?;
    if !Path::new("/bin/busybox").exists() {
        return Err(Failure("no /bin/busybox (install busybox-static)".into()));
    }
    copy_file(Path::new("/bin/busybox"), &rootfs.join("bin/busybox"))?;
    for applet in [
        "sh", "sleep", "cat", "echo", "hostname", "ls", "mount", "umount", "mkdir",
    ] {
        ctx(
            symlink("busybox", rootfs.join("bin").join(applet)),
            format!("symlink {applet}"),
        )?;
    }
    copy_file(workload, &rootfs.join("bin/wl_container"))?;
    for lib in libraries_of(workload)? {
        copy_in(rootfs, &lib)?;
    }
    for f in ["hosts", "resolv.conf", "hostname"] {
        write_rootfs_file(
            &rootfs.join("etc").join(f),
            "# placeholder, covered by a bind\n",
        )?;
    }
    // The shell stays the workload's parent, so the container is a tree: sh (pid 1) → wl_container.
    write_rootfs_file(
        &rootfs.join("run.sh"),
        &format!(
            "/bin/wl_container /tmp/trigger /work {extra}\nstatus=$?\necho \"sh: workload exited $status\"\nexit $status\n"
        ),
    )?;
    Ok(())
}

/// The agent's own side: private namespace, shared directories, rootfs.
fn build_agent_side(base: &Path, workload: &Path, extra: &str) -> Result<(PathBuf, PathBuf)> {
    ctx(unshare(CloneFlags::CLONE_NEWNS), "unshare(CLONE_NEWNS)")?;
    set_propagation(Path::new("/"), MsFlags::MS_REC | MsFlags::MS_PRIVATE)?;
    mount_tmpfs(base, "agent")?;

    let shared = base.join("shared");
    mkdirs(&shared)?;
    mount_tmpfs(&shared, "kata-shared")?;
    set_propagation(&shared, MsFlags::MS_SHARED)?;
    let cdir = shared.join(CONTAINER_ID);
    let rootfs = cdir.join("rootfs");
    mkdirs(&rootfs)?;
    build_rootfs(&rootfs, workload, extra)?;
    write_file(
        &cdir.join("hosts"),
        "127.0.0.1 localhost\n10.0.0.2 dormant-ctr\n",
    )?;
    write_file(&cdir.join("resolv.conf"), "nameserver 10.0.0.1\n")?;
    write_file(&cdir.join("hostname"), &format!("{HOSTNAME}\n"))?;

    let shm = base.join("sandbox/shm");
    mkdirs(&shm)?;
    mount_tmpfs(&shm, "sandbox-shm")?;
    set_propagation(&shm, MsFlags::MS_SHARED)?;
    Ok((cdir, shm))
}

/// The container's stdio as the agent hands it over.
#[derive(Debug, Clone, Copy)]
enum StdioPlan {
    /// stdout (or the given fd) and stderr to the log file; stdin /dev/null inside the container.
    Log { log: RawFd, stdout: Option<RawFd> },
    /// stdin, stdout, stderr: pipes the agent holds the other ends of (kata-agent's way).
    Pipes([RawFd; 3]),
}

/// What differs for a container of the stand-in agent (serve mode): its cgroup and its session.
#[derive(Debug, Clone, Default)]
struct InitExtras {
    /// `cgroup.procs` of the cgroup the init joins first.
    cgroup: Option<PathBuf>,
    /// Call `setsid()` after the rootfs is set up (kata-agent's container init does).
    setsid: bool,
}

/// Runs in the container's init (pid 1 of its pid namespace): mounts, pivot_root, exec the shell.
fn container_init(cdir: &Path, shm: &Path, stdio: StdioPlan, extras: &InitExtras) -> Result<()> {
    if let Some(procs) = &extras.cgroup {
        write_file(procs, "0")?;
    }
    // kata-agent: every mount of the container becomes a slave of the agent's.
    set_propagation(Path::new("/"), MsFlags::MS_REC | MsFlags::MS_SLAVE)?;
    let rootfs = cdir.join("rootfs");
    ctx(
        mount(
            Some(&rootfs),
            &rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
        "bind the rootfs on itself",
    )?;
    ctx(
        mount(
            Some("proc"),
            &rootfs.join("proc"),
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        ),
        "mount proc",
    )?;
    // Masked and read-only paths under /proc, as kata-agent sets them: submounts of the container's proc.
    bind(Path::new("/dev/null"), &rootfs.join("proc/timer_list"))?;
    let sys = rootfs.join("proc/sys");
    // The container's ipc limits, as a runtime writes an OCI spec's `linux.sysctl` before /proc/sys is
    // made read-only.
    ctx(
        dormant_tests::ipc::write_limits(&sys),
        "write the ipc limits",
    )?;
    bind(&sys, &sys)?;
    ctx(
        mount(
            None::<&str>,
            &sys,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        ),
        "make /proc/sys read-only",
    )?;
    let dev = rootfs.join("dev");
    mount_tmpfs(&dev, "ctr-dev")?;
    for node in ["null", "zero", "urandom"] {
        let target = dev.join(node);
        write_file(&target, "")?;
        bind(&Path::new("/dev").join(node), &target)?;
    }
    mkdirs(&dev.join("shm"))?;
    bind(shm, &dev.join("shm"))?;
    for f in ["hosts", "resolv.conf", "hostname"] {
        bind(&cdir.join(f), &rootfs.join("etc").join(f))?;
    }
    ctx(sethostname(HOSTNAME), "sethostname")?;

    ctx(chdir(&rootfs), "chdir rootfs")?;
    ctx(pivot_root(".", ".old"), "pivot_root")?;
    ctx(chdir("/"), "chdir /")?;
    ctx(
        umount2("/.old", MntFlags::MNT_DETACH),
        "umount the old root",
    )?;
    if extras.setsid {
        ctx(nix::unistd::setsid(), "setsid")?;
    }

    match stdio {
        StdioPlan::Log { log, stdout } => {
            dup_onto(stdout.unwrap_or(log), 1)?;
            dup_onto(log, 2)?;
            let null = ctx(
                fs::OpenOptions::new().read(true).open("/dev/null"),
                "open /dev/null",
            )?;
            dup_onto(null.as_raw_fd(), 0)?;
        }
        StdioPlan::Pipes(fds) => {
            // Each target number may hold a later source: lift them all above 2 first.
            let lifted: Vec<RawFd> = fds
                .iter()
                .map(|&fd| ctx(nix::unistd::dup(fd_ref(fd)), "dup a stdio pipe"))
                .map(|r| r.map(std::os::fd::IntoRawFd::into_raw_fd))
                .collect::<Result<_>>()?;
            for (to, from) in lifted.into_iter().enumerate() {
                dup_onto(from, to as RawFd)?;
            }
        }
    }
    close_from(3);
    let sh = CString::from(c"/bin/sh");
    let script = CString::from(c"/run.sh");
    ctx(nix::unistd::execv(&sh, &[&sh, &script]), "exec /bin/sh")?;
    Ok(())
}

/// Borrows a descriptor number this process holds.
fn fd_ref(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the descriptor stays open for as long as the container init runs (until its exec).
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Puts a copy of `from` at descriptor number `to` (stdio set-up before exec).
fn dup_onto(from: RawFd, to: RawFd) -> Result<()> {
    // SAFETY: dup2 on descriptor numbers; `from` is open for the duration of the call.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(Failure(format!(
            "dup2({from}, {to}): {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Closes every descriptor from `first` up, so the container holds only its stdio.
fn close_from(first: u32) {
    // SAFETY: close_range only closes descriptors; nothing in this process uses them afterwards.
    unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, 0);
    }
}

/// Forks the container's init into new mount, pid, uts and ipc namespaces.
fn start_container(cdir: &Path, shm: &Path, stdio: StdioPlan, extras: InitExtras) -> Result<Pid> {
    let mut stack = vec![0u8; 1 << 20];
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    let cdir = cdir.to_path_buf();
    let shm = shm.to_path_buf();
    let child = Box::new(move || match container_init(&cdir, &shm, stdio, &extras) {
        Ok(()) => 0,
        Err(Failure(msg)) => {
            let _ = writeln!(std::io::stderr(), "ctr_agent: container init: {msg}");
            127
        }
    });
    // SAFETY: the agent is single-threaded here (its runtime starts later); the child runs the closure on
    // its own stack and then execs or exits, touching nothing the parent still needs.
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) };
    ctx(pid, "clone the container init")
}

/// Opens (creating, append) the log the container's output goes to.
fn open_log(log: &Path) -> Result<fs::File> {
    ctx(
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log),
        format!("create {}", log.display()),
    )
}

/// The freezer cgroup of the stand-in agent's container (`CTR_AGENT_CGROUP=v1|v2`): a new cgroup in the
/// v1 freezer hierarchy or in cgroup2, named after the agent. Returns its directory.
fn make_cgroup(version: &str) -> Result<PathBuf> {
    let mountinfo = ctx(
        fs::read_to_string("/proc/self/mountinfo"),
        "read /proc/self/mountinfo",
    )?;
    let mountpoint = mountinfo
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split(' ');
            let (fstype, super_opts) = (post.next()?, post.nth(1)?);
            let wanted = match version {
                "v2" => fstype == "cgroup2",
                _ => fstype == "cgroup" && super_opts.split(',').any(|o| o == "freezer"),
            };
            wanted.then(|| pre.split(' ').nth(4).map(PathBuf::from))?
        })
        .ok_or_else(|| Failure(format!("no {version} freezer hierarchy is mounted")))?;
    let dir = mountpoint.join(format!("dormant-ctr-{}", std::process::id()));
    ctx(fs::create_dir(&dir), format!("mkdir {}", dir.display()))?;
    Ok(dir)
}

/// Removes the agent's cgroup once its processes are gone.
fn remove_cgroup(dir: &Path) {
    for _ in 0..200 {
        if fs::remove_dir(dir).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    eprintln!("ctr_agent: cannot remove {}", dir.display());
}

fn env_flag(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn run() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(base), Some(workload)) = (args.next(), args.next()) else {
        return Err(Failure("usage: ctr_agent BASE WORKLOAD".into()));
    };
    let base = PathBuf::from(base);
    let workload = ctx(fs::canonicalize(PathBuf::from(workload)), "workload path")?;
    let extra: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let log = base
        .parent()
        .ok_or_else(|| Failure("BASE has no parent".into()))?
        .join("container.log");
    let (cdir, shm) = build_agent_side(&base, &workload, &extra.join(" "))?;
    if let Some(socket) = env_flag("CTR_AGENT_SOCKET") {
        let cgroup = env_flag("CTR_AGENT_CGROUP")
            .map(|v| make_cgroup(&v))
            .transpose()?;
        let sandbox = serve::Sandbox {
            shared: base.join("shared"),
            cdir: cdir.clone(),
            shm: shm.clone(),
            log: log.clone(),
            cgroup: cgroup.clone(),
            omit: env_flag("CTR_AGENT_OMIT"),
        };
        let host = serve::Host::new(sandbox);
        let mut init = 0;
        if env_flag("CTR_AGENT_SANDBOX_ONLY").is_none() {
            let (stdio, stdin) = serve::stdio_pipes(&log)?;
            let fds = [&stdio.stdin, &stdio.stdout, &stdio.stderr]
                .map(|f| f.as_ref().map_or(-1, |f| f.as_raw_fd()));
            let extras = InitExtras {
                cgroup: cgroup.as_ref().map(|c| c.join("cgroup.procs")),
                setsid: true,
            };
            let pid = start_container(&cdir, &shm, StdioPlan::Pipes(fds), extras)?;
            // Only the container keeps its ends.
            drop(stdio);
            init = pid.as_raw() as u32;
            host.add(init, stdin)?;
        }
        let served = serve::serve(Path::new(&socket), host, init);
        if let Some(dir) = &cgroup {
            remove_cgroup(dir);
        }
        return served;
    }
    let stdout: Option<RawFd> = match std::env::var("CTR_AGENT_STDOUT_FD") {
        Ok(v) => Some(ctx(v.parse(), "CTR_AGENT_STDOUT_FD")?),
        Err(_) => None,
    };
    let log_file = open_log(&log)?;
    let plan = StdioPlan::Log {
        log: log_file.as_raw_fd(),
        stdout,
    };
    let init = start_container(&cdir, &shm, plan, InitExtras::default())?;
    drop(log_file);
    if let Some(fd) = stdout {
        // SAFETY: the agent's own copy of the container's stdout, used by nothing else here.
        unsafe { libc::close(fd) };
    }
    println!("AGENT {} INIT {}", std::process::id(), init);
    ctx(std::io::stdout().flush(), "flush stdout")?;

    // Reap until stdin closes; a non-blocking stdin lets one thread do both.
    let stdin = std::io::stdin();
    // SAFETY: fcntl on our own stdin descriptor.
    unsafe {
        let fl = libc::fcntl(0, libc::F_GETFL);
        libc::fcntl(0, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut buf = [0u8; 256];
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) => eprintln!("ctr_agent: reaped {st:?}"),
            }
        }
        match stdin.lock().read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = kill(init, Signal::SIGKILL);
    let _ = waitpid(init, None);
    Ok(())
}

fn main() -> ExitCode {
    // dormant's helper processes are this binary re-executed (as kata-agent's are kata-agent).
    dormant_agent_glue::run_if_helper();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("ctr_agent: {msg}");
            ExitCode::from(1)
        }
    }
}
