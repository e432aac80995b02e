//! Workload `wl_nestedmnt`: children in mount namespaces of their own inside a plain tree.
//!
//! `wl_nestedmnt TRIGGER DIR [--inject-fault]` (needs root). The root mounts a shared tmpfs on
//! `DIR/base` (in the namespace it shares with dormant), writes `base/outer.txt` and opens it (fd A). It
//! forks:
//! - `slave`: `unshare(CLONE_NEWNS)`, `mount --make-rslave /` (its copy of `base` becomes a slave of the
//!   root's), mounts a tmpfs on `base/inner` with `inner.txt`, opens it (fd B), keeps the inherited fd A
//!   and works in `base/inner`;
//! - `peer`: `unshare(CLONE_NEWNS)` and keeps the copy shared (its `base` a peer of the root's), keeps
//!   fd A and opens `base/outer.txt` again after the unshare (fd C, on its own copy).
//!
//! Before the trigger each child saves its mountinfo in canonical form (ids and devices dropped, peer
//! groups its own mounts carry renamed in order) and every namespace's inode. After it, each child checks:
//! - `*-mountinfo`: its mountinfo (the mounts at or below `DIR`) equals the saved one;
//! - `*-ns`: its `/proc/self/ns/mnt` is not the root's nor the other child's, and the root's is the one
//!   it had;
//! - `*-propagation`: its `base` is a slave of (slave) or in the same peer group as (peer) the root's;
//! - `*-inherited-fd`: fd A's fdinfo `mnt_id` is the root's `base` mount: in the root's mountinfo and not
//!   in the child's;
//! - `slave-own-fd` / `peer-own-fd`: fd B (C) names the child's own `base/inner` (`base`) mount, which
//!   the root's mountinfo lacks, and reads what was written;
//! - `slave-tmpfs`: `inner.txt` is there by path, `.` is `base/inner`.
//!
//! With `--inject-fault`, after the trigger `slave` does what issue 13 reported: it reopens fd A in its
//! own namespace, and detaches its tmpfs; `slave-inherited-fd`, `slave-mountinfo`, `slave-own-fd` and
//! `slave-tmpfs` fail.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use dormant_tests::workload::{
    self, exit_now, wait_until, Report, SharedWords, WorkloadArgs, WorkloadError, INJECT_FAULT,
};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

const OUTER: &str = "outer file, root namespace";
const INNER: &str = "inner file, slave's tmpfs";
/// Words of the shared page.
const SLAVE_READY: usize = 0;
const PEER_READY: usize = 1;
const GO: usize = 2;
const FAULT: usize = 3;
/// fds the children keep.
const FD_A: i32 = 50;
const FD_OWN: i32 = 51;

fn e<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, String> {
    r.map_err(|err| format!("{what}: {err}"))
}

fn ns_ino(pid: &str) -> Result<u64, String> {
    e(
        std::fs::metadata(format!("/proc/{pid}/ns/mnt")).map(|m| m.ino()),
        "ns/mnt",
    )
}

/// One mountinfo line, the fields the checks use.
#[derive(Debug, Clone)]
struct Mount {
    id: u32,
    parent: u32,
    root: String,
    mountpoint: String,
    opts: String,
    shared: Option<u32>,
    master: Option<u32>,
    unbindable: bool,
    /// fstype, source, super options.
    fs: String,
}

impl Mount {
    fn render(&self) -> String {
        format!("{self:?}")
    }
}

#[derive(Clone)]
struct MountTree {
    mounts: Vec<Mount>,
}

impl MountTree {
    fn parse(text: &str) -> Option<MountTree> {
        let mut mounts = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let tag = |t: &str| f[6..].iter().find_map(|o| o.strip_prefix(t)?.parse().ok());
            mounts.push(Mount {
                id: f.first()?.parse().ok()?,
                parent: f.get(1)?.parse().ok()?,
                root: f.get(3)?.to_string(),
                mountpoint: f.get(4)?.to_string(),
                opts: f.get(5)?.to_string(),
                shared: tag("shared:"),
                master: tag("master:"),
                unbindable: f[6..].contains(&"unbindable"),
                fs: right.to_string(),
            });
        }
        Some(MountTree { mounts })
    }

    /// Mount ids and devices dropped, parents named by mountpoint, sorted; peer groups a mount of the
    /// tree carries renamed in that order, others (masters outside) kept.
    fn canonical(&self) -> Vec<String> {
        let mp = |id: u32| {
            self.mounts
                .iter()
                .find(|m| m.id == id)
                .map_or("-".to_string(), |m| m.mountpoint.clone())
        };
        let mut lines: Vec<(String, &Mount)> = self
            .mounts
            .iter()
            .map(|m| {
                (
                    format!(
                        "{} parent={} root={} {} {}",
                        m.mountpoint,
                        mp(m.parent),
                        m.root,
                        m.opts,
                        m.fs
                    ),
                    m,
                )
            })
            .collect();
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        let carried: Vec<u32> = self.mounts.iter().filter_map(|m| m.shared).collect();
        let mut names: Vec<u32> = Vec::new();
        let mut name = |g: u32| {
            if !carried.contains(&g) {
                return format!("x{g}");
            }
            let i = names.iter().position(|&n| n == g).unwrap_or_else(|| {
                names.push(g);
                names.len() - 1
            });
            format!("g{i}")
        };
        lines
            .into_iter()
            .map(|(l, m)| {
                let shared = m.shared.map(&mut name).unwrap_or_default();
                let master = m.master.map(&mut name).unwrap_or_default();
                format!(
                    "{l} shared={shared} master={master} unbindable={}",
                    m.unbindable
                )
            })
            .collect()
    }
}

/// The canonical lines of the mounts at or below `dir` (the workload's own: other tests may mount and
/// unmount elsewhere meanwhile; the restore itself compares the whole namespace with the dump).
fn own_mounts(tree: &MountTree, dir: &str) -> String {
    tree.canonical()
        .into_iter()
        .filter(|l| l.starts_with(dir))
        .collect::<Vec<_>>()
        .join("\n")
}

fn mountinfo(pid: &str) -> Result<MountTree, String> {
    let text = e(
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")),
        "mountinfo",
    )?;
    MountTree::parse(&text).ok_or_else(|| format!("/proc/{pid}/mountinfo does not parse"))
}

fn mnt_id(fd: i32) -> Result<u32, String> {
    let text = e(
        std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")),
        "fdinfo",
    )?;
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("fd {fd}: no mnt_id in fdinfo"))
}

/// The id of the mount at `mp` (the topmost) in `tree`.
fn mount_at(tree: &MountTree, mp: &str) -> Result<Mount, String> {
    tree.mounts
        .iter()
        .rev()
        .find(|m| m.mountpoint == mp)
        .cloned()
        .ok_or_else(|| format!("no mount at {mp}"))
}

fn read_fd(fd: i32) -> Result<String, String> {
    // SAFETY: borrows fd for the read only; ManuallyDrop keeps it open.
    let f = std::mem::ManuallyDrop::new(unsafe {
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    // pread from 0: fd A is one description shared by both children, which check at the same time; a
    // rewind and read would race on its shared offset.
    let mut buf = vec![0u8; 4096];
    let n = e(
        std::os::unix::fs::FileExt::read_at(&*f, &mut buf, 0),
        "pread",
    )?;
    buf.truncate(n);
    String::from_utf8(buf).map_err(|err| format!("fd {fd}: {err}"))
}

fn keep_at(f: std::fs::File, fd: i32) -> Result<(), String> {
    // SAFETY: dup2 onto a number the workload reserves for this fd.
    if unsafe { libc::dup2(f.as_raw_fd(), fd) } != fd {
        return Err(format!("dup2 to {fd}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Which child.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Slave,
    Peer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Slave => "slave",
            Kind::Peer => "peer",
        }
    }
}

/// A child's setup: its namespace, its mounts and fds; then its saved state.
fn child_setup(kind: Kind, dir: &str) -> Result<(), String> {
    e(
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
        "unshare",
    )?;
    let base = format!("{dir}/base");
    let own = match kind {
        Kind::Slave => {
            e(
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_SLAVE,
                    None::<&str>,
                ),
                "make-rslave",
            )?;
            let inner = format!("{base}/inner");
            e(
                mount(
                    Some("nested-inner"),
                    inner.as_str(),
                    Some("tmpfs"),
                    MsFlags::empty(),
                    Some("mode=0755,size=1m"),
                ),
                "mount inner",
            )?;
            e(
                std::fs::write(format!("{inner}/inner.txt"), INNER),
                "write inner",
            )?;
            e(std::env::set_current_dir(&inner), "chdir inner")?;
            format!("{inner}/inner.txt")
        }
        Kind::Peer => format!("{base}/outer.txt"),
    };
    keep_at(e(std::fs::File::open(&own), "open own")?, FD_OWN)?;
    let canon = own_mounts(&mountinfo("self")?, dir);
    e(
        std::fs::write(format!("{dir}/{}.mountinfo", kind.name()), canon),
        "save mountinfo",
    )?;
    let ino = ns_ino("self")?;
    e(
        std::fs::write(format!("{dir}/{}.ns", kind.name()), ino.to_string()),
        "save ns",
    )
}

fn saved(dir: &str, kind: Kind, what: &str) -> Result<String, String> {
    e(
        std::fs::read_to_string(format!("{dir}/{}.{what}", kind.name())),
        "saved state",
    )
}

/// The checks of a child after the trigger, each `(name, result)`.
fn child_checks(kind: Kind, dir: &str, root_ns: u64) -> Vec<(String, Result<(), String>)> {
    let name = kind.name();
    let other = if kind == Kind::Slave {
        Kind::Peer
    } else {
        Kind::Slave
    };
    let ppid = nix::unistd::getppid().to_string();
    let base = format!("{dir}/base");
    let mut out = Vec::new();
    let mine = mountinfo("self");
    let parents = mountinfo(&ppid);
    out.push((
        format!("{name}-mountinfo"),
        (|| {
            let now = own_mounts(&mine.clone()?, dir);
            let before = saved(dir, kind, "mountinfo")?;
            if now != before {
                return Err(format!("mountinfo now:\n{now}\nbefore:\n{before}"));
            }
            Ok(())
        })(),
    ));
    out.push((
        format!("{name}-ns"),
        (|| {
            let (me, parent) = (ns_ino("self")?, ns_ino(&ppid)?);
            let sib: u64 = saved(dir, other, "ns")?
                .parse()
                .map_err(|_| "bad saved ns")?;
            if me == parent || me == sib || parent != root_ns {
                return Err(format!(
                    "ns {me}, parent {parent} (was {root_ns}), sibling (dump time) {sib}"
                ));
            }
            Ok(())
        })(),
    ));
    out.push((
        format!("{name}-propagation"),
        (|| {
            let (m, p) = (
                mount_at(&mine.clone()?, &base)?,
                mount_at(&parents.clone()?, &base)?,
            );
            let ok = match kind {
                Kind::Slave => m.master.is_some() && m.master == p.shared && m.shared.is_none(),
                Kind::Peer => m.shared.is_some() && m.shared == p.shared && m.master.is_none(),
            };
            if !ok {
                return Err(format!(
                    "base: mine {}, parent's {}",
                    m.render(),
                    p.render()
                ));
            }
            Ok(())
        })(),
    ));
    out.push((
        format!("{name}-inherited-fd"),
        (|| {
            let id = mnt_id(FD_A)?;
            let (m, p) = (mine.clone()?, parents.clone()?);
            let root_base = mount_at(&p, &base)?;
            if id != root_base.id || m.mounts.iter().any(|x| x.id == id) {
                return Err(format!(
                    "fd A on mount {id}, the root's base is {}",
                    root_base.id
                ));
            }
            let text = read_fd(FD_A)?;
            (text == OUTER)
                .then_some(())
                .ok_or(format!("fd A reads {text:?}"))
        })(),
    ));
    out.push((
        format!("{name}-own-fd"),
        (|| {
            let id = mnt_id(FD_OWN)?;
            let (m, p) = (mine.clone()?, parents.clone()?);
            let (mp, want) = match kind {
                Kind::Slave => (format!("{base}/inner"), INNER),
                Kind::Peer => (base.clone(), OUTER),
            };
            let at = mount_at(&m, &mp)?;
            if id != at.id || p.mounts.iter().any(|x| x.id == id) {
                return Err(format!("fd on mount {id}, own {mp} is {}", at.id));
            }
            let text = read_fd(FD_OWN)?;
            (text == want)
                .then_some(())
                .ok_or(format!("own fd reads {text:?}"))
        })(),
    ));
    if kind == Kind::Slave {
        out.push((
            "slave-tmpfs".into(),
            (|| {
                let text = e(
                    std::fs::read_to_string(format!("{base}/inner/inner.txt")),
                    "inner.txt",
                )?;
                let cwd = e(std::fs::read_link("/proc/self/cwd"), "cwd")?;
                if text != INNER || cwd.to_string_lossy() != format!("{base}/inner") {
                    return Err(format!("inner.txt {text:?}, cwd {cwd:?}"));
                }
                Ok(())
            })(),
        ));
    }
    out
}

/// A child: setup, ready, wait, (fault), checks written to `DIR/<name>.verdict`.
fn child(kind: Kind, page: &SharedWords, dir: &str, root_ns: u64) -> ! {
    let ready = if kind == Kind::Slave {
        SLAVE_READY
    } else {
        PEER_READY
    };
    if let Err(err) = child_setup(kind, dir) {
        let _ = std::fs::write(
            format!("{dir}/{}.verdict", kind.name()),
            format!("setup: {err}"),
        );
        page.word(ready).store(2, Ordering::Release);
        exit_now(10);
    }
    page.word(ready).store(1, Ordering::Release);
    if !wait_until(|| page.word(GO).load(Ordering::Acquire) == 1) {
        exit_now(11);
    }
    if kind == Kind::Slave && page.word(FAULT).load(Ordering::Acquire) == 1 {
        // The defect: the inherited fd reopened on the child's own copy; its tmpfs gone.
        if let Ok(f) = std::fs::File::open(format!("{dir}/base/outer.txt")) {
            let _ = keep_at(f, FD_A);
        }
        let _ = umount2(format!("{dir}/base/inner").as_str(), MntFlags::MNT_DETACH);
    }
    let verdict: Vec<String> = child_checks(kind, dir, root_ns)
        .into_iter()
        .map(|(n, r)| match r {
            Ok(()) => format!("{n}\tok"),
            Err(err) => format!("{n}\t{}", err.replace('\n', "\\n")),
        })
        .collect();
    let _ = std::fs::write(format!("{dir}/{}.verdict", kind.name()), verdict.join("\n"));
    exit_now(0)
}

fn setup_base(dir: &str) -> Result<(), WorkloadError> {
    let base = format!("{dir}/base");
    let fail = |what: &str, err: String| WorkloadError::setup(what.to_string(), err);
    std::fs::create_dir_all(&base).map_err(|err| fail("mkdir base", err.to_string()))?;
    mount(
        Some("nested-base"),
        base.as_str(),
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755,size=1m"),
    )
    .map_err(|err| fail("mount base", err.to_string()))?;
    mount(
        None::<&str>,
        base.as_str(),
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|err| fail("make base shared", err.to_string()))?;
    std::fs::create_dir(format!("{base}/inner"))
        .map_err(|err| fail("mkdir inner", err.to_string()))?;
    std::fs::write(format!("{base}/outer.txt"), OUTER)
        .map_err(|err| fail("write outer", err.to_string()))?;
    let f = std::fs::File::open(format!("{base}/outer.txt"))
        .map_err(|err| fail("open outer", err.to_string()))?;
    keep_at(f, FD_A).map_err(|err| fail("keep fd A", err))
}

fn run() -> Result<ExitCode, WorkloadError> {
    let args = WorkloadArgs::from_env("[--inject-fault]")?;
    let dir = std::fs::canonicalize(&args.dir)
        .map_err(|err| WorkloadError::setup("canonical workload dir", err))?
        .to_string_lossy()
        .into_owned();
    let root_ns = ns_ino("self").map_err(|err| WorkloadError::setup("ns", err))?;
    setup_base(&dir)?;
    let page = SharedWords::new()?;
    let mut kids = Vec::new();
    for kind in [Kind::Slave, Kind::Peer] {
        match workload::fork()? {
            0 => child(kind, &page, &dir, root_ns),
            pid => kids.push((kind, pid)),
        }
        let ready = if kind == Kind::Slave {
            SLAVE_READY
        } else {
            PEER_READY
        };
        if !wait_until(|| page.word(ready).load(Ordering::Acquire) != 0)
            || page.word(ready).load(Ordering::Acquire) != 1
        {
            let why = std::fs::read_to_string(format!("{dir}/{}.verdict", kind.name()))
                .unwrap_or_default();
            return Err(WorkloadError::setup(kind.name().to_string(), why));
        }
    }
    workload::ready()?;
    workload::wait_for_trigger(&args.trigger)?;
    if args.has_flag(INJECT_FAULT) {
        page.word(FAULT).store(1, Ordering::Release);
    }
    page.word(GO).store(1, Ordering::Release);
    let mut report = Report::new("wl_nestedmnt");
    for (kind, pid) in kids {
        let status = workload::wait_status(pid);
        let verdict =
            std::fs::read_to_string(format!("{dir}/{}.verdict", kind.name())).unwrap_or_default();
        if !status.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0)
            || verdict.is_empty()
        {
            report.check(
                kind.name(),
                Err(format!("ended with {status:?}: {verdict}")),
            );
            continue;
        }
        for line in verdict.lines() {
            let (name, result) = line.split_once('\t').unwrap_or((line, "no verdict"));
            report.check(
                name,
                if result == "ok" {
                    Ok(())
                } else {
                    Err(result.to_string())
                },
            );
        }
    }
    report.check(
        "root-ns",
        ns_ino("self").and_then(|n| {
            (n == root_ns)
                .then_some(())
                .ok_or(format!("root's ns {n}, was {root_ns}"))
        }),
    );
    let _ = umount2(format!("{dir}/base").as_str(), MntFlags::MNT_DETACH);
    Ok(report.finish())
}

fn main() -> ExitCode {
    workload::main_with("wl_nestedmnt", run)
}
