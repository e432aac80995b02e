//! Every option of a request, honoured or refused by name: [`DumpPlan::from_opts`] and
//! [`RestorePlan::from_opts`] turn CRIU's `criu_opts` into what dormant's dump and restore do, or fail
//! with [`RpcError::Refused`] naming the option. Nothing is silently dropped: an option whose CRIU meaning
//! dormant already has by design (it finds external masters by itself, carries unlinked files whatever
//! their size, ...) is accepted and logged; one it cannot honour is refused before anything is touched.
//!
//! Pure: no file, fd or process is looked at here (the tests feed options by hand).

use std::path::PathBuf;

use log::LevelFilter;

use crate::error::RpcError;
use crate::proto::{CgMode, CriuOpts};

/// `CLONE_NEWNET`, the only `empty_ns` bit dormant honours (it never dumps a network namespace's
/// contents; the restored tree gets a new one with `lo`).
const CLONE_NEWNET: u32 = libc::CLONE_NEWNET as u32;

/// Where the image directory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagesDir {
    /// A directory fd of the client.
    ClientFd(i32),
    /// A path (`images_dir`, when `images_dir_fd` is -1).
    Path(PathBuf),
}

/// Where and how much to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPlan {
    /// A file name in the work directory.
    pub file: Option<String>,
    pub level: LevelFilter,
    pub to_stderr: bool,
}

/// What every DUMP and RESTORE has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub images_dir: ImagesDir,
    /// A directory fd of the client for the log (default: the images directory).
    pub work_dir_fd: Option<i32>,
    pub log: LogPlan,
    /// Send the notify callbacks (CRIU's action scripts) to the client.
    pub notify: bool,
    /// A client fd to write one zero byte to once the request succeeded.
    pub status_fd: Option<i32>,
    /// Log the statistics at the end.
    pub display_stats: bool,
}

/// A DUMP as dormant runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPlan {
    pub common: Common,
    pub pid: u32,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub shell_job: bool,
    /// The container's root directory (checked against `/proc/PID/root`, recorded for the restore).
    pub root: Option<PathBuf>,
    /// External mounts (from `ext_mnt` and `external mnt[..]`): mountpoint -> recorded name, duplicates
    /// removed.
    pub externals: Vec<dormant_engine::External>,
    /// The freezer cgroup the tree is frozen through while it is seized.
    pub freeze_cgroup: Option<PathBuf>,
}

/// What the restored tree's network namespace is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetChoice {
    /// As dumped: a new namespace with `lo` if the tree had its own, else the restorer's.
    AsDumped,
    /// Join this namespace file (`join_ns` net).
    Join(PathBuf),
    /// Join the namespace open as our fd (an `inherit_fd` whose key names an external netns).
    JoinFd { fd: i32, key: String },
}

/// One cgroup to join before the restore (`cg_root`): the restored tree inherits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupJoin {
    /// `None`: every hierarchy; `Some("")`: the cgroup2 one; else a v1 controller (or `name=NAME`).
    pub ctrl: Option<String>,
    /// The cgroup, from the hierarchy's root.
    pub path: String,
}

/// A RESTORE as dormant runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub common: Common,
    /// The directory the container's root mount is bound from.
    pub root: Option<PathBuf>,
    /// External mounts (from `ext_mnt` and `external mnt[..]`): recorded name -> host path, duplicates
    /// removed.
    pub externals: Vec<dormant_restorer::External>,
    /// Our fds handed in for the image's external pipes (the first fd given for each key).
    pub inherit_fds: Vec<dormant_restorer::InheritFd>,
    /// The restored root is the client's child (CLONE_PARENT), not ours.
    pub sibling: bool,
    pub shell_job: bool,
    pub tcp_established: bool,
    pub net: NetChoice,
    /// Cgroups to join first (empty when cgroups are not managed).
    pub cgroups: Vec<CgroupJoin>,
}

fn refuse(option: &'static str, reason: impl Into<String>) -> RpcError {
    RpcError::Refused {
        option,
        reason: reason.into(),
    }
}

fn on(b: Option<bool>) -> bool {
    b.unwrap_or(false)
}

/// What dormant does not implement: (asked, option, why). Refused whatever the request.
fn unimplemented(o: &CriuOpts) -> [(bool, &'static str, &'static str); 19] {
    let set = |s: &Option<String>| s.as_deref().is_some_and(|v| !v.is_empty());
    [
        (o.ps.is_some(), "ps", "dormant has no page server"),
        (
            set(&o.parent_img),
            "parent_img",
            "incremental dumps on top of a pre-dump are not implemented in dormant",
        ),
        (
            on(o.track_mem),
            "track_mem",
            "memory change tracking (for pre-dumps) is not implemented in dormant",
        ),
        (
            o.pidfd_store_sk.is_some(),
            "pidfd_store_sk",
            "pre-dumps are not implemented in dormant",
        ),
        (
            on(o.lazy_pages),
            "lazy_pages",
            "lazy restore of pages is not implemented in dormant",
        ),
        (
            !o.veths.is_empty(),
            "veths",
            "dormant does not restore network devices",
        ),
        (
            !o.exec_cmd.is_empty(),
            "exec_cmd",
            "dormant does not run a command after the restore",
        ),
        (
            !o.skip_mnt.is_empty(),
            "skip_mnt",
            "dormant dumps and restores every mount of the container",
        ),
        (
            !o.unix_sk_ino.is_empty(),
            "unix_sk_ino",
            "external unix sockets by inode are not implemented in dormant",
        ),
        (
            o.cgroup_props.is_some()
                || o.cgroup_props_file.is_some()
                || !o.cgroup_dump_controller.is_empty(),
            "cgroup_props",
            "dormant neither dumps nor restores cgroup properties",
        ),
        (
            on(o.tcp_skip_in_flight),
            "tcp_skip_in_flight",
            "dormant refuses a listening socket with connections waiting instead of dropping them",
        ),
        (on(o.tcp_close), "tcp_close", "not implemented in dormant"),
        (
            set(&o.lsm_profile),
            "lsm_profile",
            "dormant does not set LSM labels on restored processes",
        ),
        (
            set(&o.lsm_mount_context),
            "lsm_mount_context",
            "dormant does not set LSM mount contexts",
        ),
        (
            o.tls_cacert.is_some()
                || o.tls_cacrl.is_some()
                || o.tls_cert.is_some()
                || o.tls_key.is_some()
                || on(o.tls),
            "tls",
            "dormant has no page server to secure",
        ),
        (
            set(&o.cgroup_yard),
            "cgroup_yard",
            "dormant mounts no cgroup hierarchies of its own",
        ),
        (
            on(o.mntns_compat_mode),
            "mntns_compat_mode",
            "dormant restores mounts only the mount-v2 way",
        ),
        (
            on(o.unprivileged),
            "unprivileged",
            "dormant runs as root only",
        ),
        (
            on(o.leave_stopped),
            "leave_stopped",
            "not implemented in dormant",
        ),
    ]
}

/// What dormant does anyway, or what does not change its result: (asked, what). Accepted and logged, so
/// the log says what was asked.
fn accepted(o: &CriuOpts) -> [(bool, &'static str); 17] {
    [
        (on(o.ext_unix_sk), "ext_unix_sk: a unix socket connected outside the tree is still refused by name"),
        (on(o.evasive_devices), "evasive_devices: devices are reopened by path"),
        (on(o.link_remap), "link_remap: unlinked open files are carried in the image"),
        (on(o.auto_ext_mnt), "auto_ext_mnt: external mounts are found without it"),
        (on(o.ext_sharing), "ext_sharing: external peer groups are found without it"),
        (on(o.ext_masters), "ext_masters: external masters are found without it"),
        (on(o.force_irmap), "force_irmap: inotify watches are resolved by file handle"),
        (!o.irmap_scan_paths.is_empty(), "irmap_scan_paths: inotify watches are resolved by file handle"),
        (!o.enable_fs.is_empty(), "enable_fs: dormant decides by itself which file systems it can dump"),
        (o.ghost_limit.is_some(), "ghost_limit: unlinked files up to 256 MiB are carried"),
        (on(o.weak_sysctls), "weak_sysctls: no sysctl is written but the ipc namespace's"),
        (on(o.auto_dedup), "auto_dedup: there are no parent images to deduplicate"),
        (on(o.skip_file_rwx_check), "skip_file_rwx_check: files are reopened with their dumped flags"),
        (on(o.allow_uprobes), "allow_uprobes"),
        (on(o.ghost_fiemap), "ghost_fiemap: holes of unlinked files are not stored"),
        (o.timeout.is_some(), "timeout: a freezer cgroup is given 10 s to freeze"),
        (
            o.file_validation_method.is_some(),
            "file_validation_method: mapped files are checked by size, time and build-id (or crc32)",
        ),
    ]
}

/// Options neither dump nor restore can honour, refused whatever the request; the accepted ones logged.
fn refuse_common(o: &CriuOpts) -> Result<(), RpcError> {
    if let Some((_, option, why)) = unimplemented(o).into_iter().find(|u| u.0) {
        return Err(refuse(option, why));
    }
    let ns = o.empty_ns.unwrap_or(0);
    if ns & !CLONE_NEWNET != 0 {
        return Err(refuse(
            "empty_ns",
            format!(
                "{ns:#x}: only CLONE_NEWNET (whose contents dormant never dumps) is supported; dormant always \
                 dumps and restores the other namespaces of the tree"
            ),
        ));
    }
    if let Some(m) = o.manage_cgroups_mode {
        match CgMode::try_from(m) {
            Ok(CgMode::Ignore | CgMode::CgNone | CgMode::Soft | CgMode::Default) => {}
            Ok(other) => {
                return Err(refuse(
                    "manage_cgroups_mode",
                    format!(
                        "{other:?}: dormant does not dump cgroup properties (SOFT, the default, is what it \
                         does: the tree is put back in its cgroups, their settings stay the runtime's)"
                    ),
                ))
            }
            Err(_) => return Err(refuse("manage_cgroups_mode", format!("unknown mode {m}"))),
        }
    }
    for (asked, what) in accepted(o) {
        if asked {
            log::info!("option {what}");
        }
    }
    if on(o.tcp_established) && o.network_lock != Some(3) {
        log::warn!(
            "option network_lock: dormant does not lock the network while TCP connections are dumped; the \
             network-lock/unlock callbacks are still sent"
        );
    }
    Ok(())
}

fn common(o: &CriuOpts) -> Result<Common, RpcError> {
    refuse_common(o)?;
    setup(o)
}

/// What a request needs before anything else: where its images and its log go. Checked only as far as
/// that needs, so the other options' refusals land in the log.
pub fn setup(o: &CriuOpts) -> Result<Common, RpcError> {
    let images_dir = if o.images_dir_fd >= 0 {
        ImagesDir::ClientFd(o.images_dir_fd)
    } else {
        match o.images_dir.as_deref() {
            Some(p) if !p.is_empty() => ImagesDir::Path(PathBuf::from(p)),
            _ => {
                return Err(refuse(
                    "images_dir_fd",
                    "neither images_dir_fd nor images_dir names the image directory",
                ))
            }
        }
    };
    if let Some(f) = &o.log_file {
        if f.contains('/') || f.is_empty() || f == "." || f == ".." {
            return Err(refuse(
                "log_file",
                format!("{f:?}: a file name in the work directory is expected"),
            ));
        }
    }
    Ok(Common {
        images_dir,
        work_dir_fd: o.work_dir_fd.filter(|fd| *fd >= 0),
        log: LogPlan {
            file: o.log_file.clone(),
            level: crate::log::level_from_criu(o.log_level()),
            to_stderr: on(o.log_to_stderr),
        },
        notify: on(o.notify_scripts),
        status_fd: o.status_fd.filter(|fd| *fd >= 0),
        display_stats: on(o.display_stats),
    })
}

/// The (key, value) pairs of `ext_mnt` and `external mnt[KEY]:VALUE`; other `external` kinds go to
/// `other`.
fn mount_externals(
    o: &CriuOpts,
    other: &mut Vec<String>,
) -> Result<Vec<(String, String)>, RpcError> {
    let mut specs: Vec<(String, String)> = Vec::new();
    let mut add = |key: &str, val: &str| -> Result<(), RpcError> {
        match specs.iter().find(|(k, _)| k == key) {
            Some((_, v)) if v == val => Ok(()),
            Some((_, v)) => Err(refuse(
                "ext_mnt",
                format!("mount {key:?} is given twice, as {v:?} and as {val:?}"),
            )),
            None => {
                specs.push((key.to_string(), val.to_string()));
                Ok(())
            }
        }
    };
    for m in &o.ext_mnt {
        add(&m.key, &m.val)?;
    }
    for e in &o.external {
        match e.strip_prefix("mnt[").and_then(|r| r.split_once("]:")) {
            Some((key, val)) => add(key, val)?,
            None => other.push(e.clone()),
        }
    }
    Ok(specs)
}

/// The kind of an `external` spec other than `mnt`: `net[INODE]:KEY` -> "net".
fn external_kind(spec: &str) -> &str {
    spec.split_once('[').map_or(spec, |(k, _)| k)
}

/// What a CRIU configuration file (`config_file`, runc's `/etc/criu/runc.conf` or the container's
/// `org.criu.config` annotation) asks for, as far as dormant honours it. CRIU applies such a file over the
/// request's options; lines dormant cannot honour refuse the request, naming the line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    pub tcp_established: bool,
    pub shell_job: bool,
}

/// Parses a configuration file's text (CRIU's long option names, one per line, `#` comments; a missing
/// file, `None`, asks for nothing).
pub fn parse_config_file(path: &str, text: Option<&str>) -> Result<ConfigFile, RpcError> {
    let mut cfg = ConfigFile::default();
    for line in text
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line.split_once([' ', '=', '\t']).unwrap_or((line, ""));
        let name = name.trim_start_matches('-');
        let value = value.trim().trim_matches('"');
        match name {
            "tcp-established" => cfg.tcp_established = true,
            "shell-job" | "j" => cfg.shell_job = true,
            // What dormant does anyway, or what does not change its result.
            "file-locks"
            | "l"
            | "evasive-devices"
            | "link-remap"
            | "enable-external-masters"
            | "enable-external-sharing"
            | "force-irmap"
            | "skip-file-rwx-check"
            | "allow-uprobes"
            | "ghost-limit"
            | "weak-sysctls"
            | "ext-unix-sk"
            | "log-level"
            | "v"
            | "display-stats" => {
                log::info!("{path}: {line:?} accepted (what dormant does anyway)")
            }
            "manage-cgroups" if matches!(value, "" | "soft" | "ignore" | "none") => {}
            _ => {
                return Err(refuse(
                    "config_file",
                    format!("{path} sets {line:?}, which dormant does not implement"),
                ))
            }
        }
    }
    Ok(cfg)
}

impl DumpPlan {
    pub fn from_opts(o: &CriuOpts) -> Result<DumpPlan, RpcError> {
        let common = common(o)?;
        let pid = match o.pid {
            Some(p) if p > 0 => p as u32,
            Some(p) => return Err(refuse("pid", format!("{p} is not a process id"))),
            None => {
                return Err(refuse(
                    "pid",
                    "not given: dumping the requesting process itself is not supported",
                ))
            }
        };
        let mut other = Vec::new();
        let externals = mount_externals(o, &mut other)?
            .into_iter()
            .map(|(mountpoint, key)| dormant_engine::External::Mount { mountpoint, key })
            .collect();
        for e in &other {
            match external_kind(e) {
                // The network namespace's contents are never dumped; the runtime hands one in at restore.
                "net" => log::info!("external {e}: the network namespace is not dumped"),
                _ => {
                    return Err(refuse(
                        "external",
                        format!(
                            "{e:?}: only mnt[...] and net[...] externals are supported by dormant"
                        ),
                    ))
                }
            }
        }
        if !o.join_ns.is_empty() {
            return Err(refuse("join_ns", "a DUMP joins no namespace"));
        }
        if on(o.rst_sibling) || !o.inherit_fd.is_empty() {
            log::info!("options rst_sibling and inherit_fd are for restores; ignored by a dump");
        }
        Ok(DumpPlan {
            common,
            pid,
            leave_running: on(o.leave_running),
            tcp_established: on(o.tcp_established),
            shell_job: on(o.shell_job),
            root: o
                .root
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(PathBuf::from),
            externals,
            freeze_cgroup: o
                .freeze_cgroup
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(PathBuf::from),
        })
    }
}

impl RestorePlan {
    pub fn from_opts(o: &CriuOpts) -> Result<RestorePlan, RpcError> {
        let common = common(o)?;
        if o.freeze_cgroup.as_deref().is_some_and(|c| !c.is_empty()) {
            log::info!("option freeze_cgroup is for dumps; ignored by a restore");
        }
        let mut other = Vec::new();
        let externals = mount_externals(o, &mut other)?
            .into_iter()
            .map(|(key, path)| dormant_restorer::External::Mount {
                key,
                path: PathBuf::from(path),
            })
            .collect();
        if let Some(e) = other.first() {
            return Err(refuse(
                "external",
                format!("{e:?}: only mnt[...] externals are supported by a dormant restore"),
            ));
        }
        let mut net = NetChoice::AsDumped;
        for j in &o.join_ns {
            match j.ns.as_str() {
                "net" => net = NetChoice::Join(PathBuf::from(&j.ns_file)),
                other => {
                    return Err(refuse(
                        "join_ns",
                        format!(
                            "{other} namespace {}: dormant restores the tree's {other} namespace itself and \
                             joins only a network namespace",
                            j.ns_file
                        ),
                    ))
                }
            }
        }
        let mut inherit_fds = Vec::new();
        for i in &o.inherit_fd {
            if i.fd < 0 {
                return Err(refuse("inherit_fd", format!("{}: fd {}", i.key, i.fd)));
            }
            if i.key.starts_with("pipe:[") {
                // runc lists stdout and stderr on one pipe twice; the first fd stands for the key, as
                // with CRIU.
                if inherit_fds
                    .iter()
                    .any(|f: &dormant_restorer::InheritFd| f.key == i.key)
                {
                    log::info!(
                        "inherit_fd fd {} for {}: the key is already inherited; the first fd is used",
                        i.fd,
                        i.key
                    );
                } else {
                    inherit_fds.push(dormant_restorer::InheritFd {
                        fd: i.fd,
                        key: i.key.clone(),
                    });
                }
            } else if i.key.starts_with("extRootNetNS") || i.key.starts_with("net[") {
                net = NetChoice::JoinFd {
                    fd: i.fd,
                    key: i.key.clone(),
                };
            } else {
                return Err(refuse(
                    "inherit_fd",
                    format!(
                        "{:?}: dormant inherits pipes (pipe:[INODE]) and an external network namespace only",
                        i.key
                    ),
                ));
            }
        }
        let managed = on(o.manage_cgroups)
            && !matches!(
                o.manage_cgroups_mode.map(CgMode::try_from),
                Some(Ok(CgMode::Ignore | CgMode::CgNone))
            );
        let cgroups = if managed {
            o.cg_root
                .iter()
                .map(|c| CgroupJoin {
                    ctrl: c.ctrl.clone(),
                    path: c.path.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(RestorePlan {
            common,
            root: o
                .root
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(PathBuf::from),
            externals,
            inherit_fds,
            sibling: on(o.rst_sibling),
            shell_job: on(o.shell_job),
            tcp_established: on(o.tcp_established),
            net,
            cgroups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{CgroupRoot, ExtMountMap, InheritFd, JoinNamespace};

    /// The options runc 1.1.5 sends for `runc checkpoint` (as captured on these machines).
    fn runc_dump() -> CriuOpts {
        CriuOpts {
            images_dir_fd: 9,
            pid: Some(4242),
            leave_running: Some(false),
            ext_unix_sk: Some(false),
            tcp_established: Some(false),
            shell_job: Some(false),
            file_locks: Some(false),
            log_level: Some(4),
            log_file: Some("dump.log".into()),
            notify_scripts: Some(true),
            root: Some("/run/bundle/rootfs".into()),
            manage_cgroups: Some(true),
            ext_mnt: vec![
                ExtMountMap {
                    key: "/proc/keys".into(),
                    val: "/dev/null".into(),
                },
                ExtMountMap {
                    key: "/dev/null".into(),
                    val: "/dev/null".into(),
                },
                ExtMountMap {
                    key: "/dev/null".into(),
                    val: "/dev/null".into(),
                },
            ],
            empty_ns: Some(libc::CLONE_NEWNET as u32),
            freeze_cgroup: Some("/sys/fs/cgroup/freezer/ct1".into()),
            orphan_pts_master: Some(true),
            lazy_pages: Some(false),
            auto_dedup: Some(false),
            config_file: Some("/etc/criu/runc.conf".into()),
            ..Default::default()
        }
    }

    #[test]
    fn runc_dump_options_are_honoured() {
        let p = DumpPlan::from_opts(&runc_dump()).unwrap();
        assert_eq!(p.pid, 4242);
        assert_eq!(p.common.images_dir, ImagesDir::ClientFd(9));
        assert_eq!(p.common.log.file.as_deref(), Some("dump.log"));
        assert_eq!(p.common.log.level, LevelFilter::Debug);
        assert!(p.common.notify);
        assert_eq!(p.root, Some(PathBuf::from("/run/bundle/rootfs")));
        let mount = |mountpoint: &str, key: &str| dormant_engine::External::Mount {
            mountpoint: mountpoint.into(),
            key: key.into(),
        };
        assert_eq!(
            p.externals,
            vec![
                mount("/proc/keys", "/dev/null"),
                mount("/dev/null", "/dev/null")
            ],
            "duplicates collapse"
        );
        assert_eq!(
            p.freeze_cgroup,
            Some(PathBuf::from("/sys/fs/cgroup/freezer/ct1"))
        );
        assert!(!p.leave_running);
    }

    #[test]
    fn runc_restore_options_are_honoured() {
        let o = CriuOpts {
            images_dir_fd: 10,
            work_dir_fd: Some(11),
            evasive_devices: Some(true),
            log_file: Some("restore.log".into()),
            rst_sibling: Some(true),
            root: Some("/run/runc/ct1/criu-root".into()),
            manage_cgroups: Some(true),
            notify_scripts: Some(true),
            empty_ns: Some(libc::CLONE_NEWNET as u32),
            orphan_pts_master: Some(true),
            ext_mnt: vec![ExtMountMap {
                key: "/sys/fs/cgroup/cpu".into(),
                val: "/sys/fs/cgroup/cpu/x".into(),
            }],
            inherit_fd: vec![
                InheritFd {
                    key: "pipe:[1234]".into(),
                    fd: 1,
                },
                InheritFd {
                    key: "pipe:[1234]".into(),
                    fd: 2,
                },
            ],
            cg_root: vec![
                CgroupRoot {
                    ctrl: Some("cpu".into()),
                    path: "/ct1".into(),
                },
                CgroupRoot {
                    ctrl: Some(String::new()),
                    path: "/ct1".into(),
                },
            ],
            ..Default::default()
        };
        let p = RestorePlan::from_opts(&o).unwrap();
        assert!(p.sibling);
        assert_eq!(p.common.work_dir_fd, Some(11));
        assert_eq!(
            p.externals,
            vec![dormant_restorer::External::Mount {
                key: "/sys/fs/cgroup/cpu".into(),
                path: "/sys/fs/cgroup/cpu/x".into()
            }]
        );
        assert_eq!(
            p.inherit_fds,
            vec![dormant_restorer::InheritFd {
                fd: 1,
                key: "pipe:[1234]".into()
            }]
        );
        assert_eq!(p.net, NetChoice::AsDumped);
        assert_eq!(p.cgroups.len(), 2);
        assert_eq!(p.cgroups[1].ctrl.as_deref(), Some(""));
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        let cases: Vec<(&str, CriuOpts)> = vec![
            (
                "parent_img",
                CriuOpts {
                    parent_img: Some("../pre".into()),
                    ..runc_dump()
                },
            ),
            (
                "track_mem",
                CriuOpts {
                    track_mem: Some(true),
                    ..runc_dump()
                },
            ),
            (
                "lazy_pages",
                CriuOpts {
                    lazy_pages: Some(true),
                    ..runc_dump()
                },
            ),
            (
                "empty_ns",
                CriuOpts {
                    empty_ns: Some((libc::CLONE_NEWNET | libc::CLONE_NEWUTS) as u32),
                    ..runc_dump()
                },
            ),
            (
                "lsm_profile",
                CriuOpts {
                    lsm_profile: Some("apparmor:x".into()),
                    ..runc_dump()
                },
            ),
            (
                "manage_cgroups_mode",
                CriuOpts {
                    manage_cgroups_mode: Some(CgMode::Full as i32),
                    ..runc_dump()
                },
            ),
            (
                "pid",
                CriuOpts {
                    pid: None,
                    ..runc_dump()
                },
            ),
            (
                "external",
                CriuOpts {
                    external: vec!["pid[4026531836]:extRootPidNS".into()],
                    ..runc_dump()
                },
            ),
            (
                "ext_mnt",
                CriuOpts {
                    ext_mnt: vec![
                        ExtMountMap {
                            key: "/a".into(),
                            val: "x".into(),
                        },
                        ExtMountMap {
                            key: "/a".into(),
                            val: "y".into(),
                        },
                    ],
                    ..runc_dump()
                },
            ),
            (
                "log_file",
                CriuOpts {
                    log_file: Some("../dump.log".into()),
                    ..runc_dump()
                },
            ),
        ];
        for (name, o) in cases {
            let err = DumpPlan::from_opts(&o).unwrap_err();
            assert!(
                matches!(&err, RpcError::Refused { option, .. } if *option == name),
                "{name}: {err}"
            );
            assert!(
                err.to_string().starts_with(&format!("option {name}: ")),
                "{err}"
            );
        }
        let join = CriuOpts {
            images_dir_fd: 3,
            join_ns: vec![JoinNamespace {
                ns: "uts".into(),
                ns_file: "/proc/1/ns/uts".into(),
                extra_opt: None,
            }],
            ..Default::default()
        };
        let err = RestorePlan::from_opts(&join).unwrap_err();
        assert!(err.to_string().starts_with("option join_ns: "), "{err}");
    }

    #[test]
    fn joined_network_namespace() {
        let o = CriuOpts {
            images_dir_fd: 3,
            join_ns: vec![JoinNamespace {
                ns: "net".into(),
                ns_file: "/run/netns/x".into(),
                extra_opt: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            RestorePlan::from_opts(&o).unwrap().net,
            NetChoice::Join("/run/netns/x".into())
        );
        let o = CriuOpts {
            images_dir_fd: 3,
            inherit_fd: vec![InheritFd {
                key: "extRootNetNS".into(),
                fd: 5,
            }],
            ..Default::default()
        };
        assert_eq!(
            RestorePlan::from_opts(&o).unwrap().net,
            NetChoice::JoinFd {
                fd: 5,
                key: "extRootNetNS".into()
            }
        );
    }

    #[test]
    fn config_files() {
        let f = "/etc/criu/runc.conf";
        assert_eq!(parse_config_file(f, None).unwrap(), ConfigFile::default());
        assert_eq!(
            parse_config_file(f, Some("# nothing\n\n")).unwrap(),
            ConfigFile::default()
        );
        let cfg = parse_config_file(
            f,
            Some("tcp-established\nenable-external-masters\nfile-locks\n"),
        )
        .unwrap();
        assert!(cfg.tcp_established && !cfg.shell_job);
        let err = parse_config_file(f, Some("tcp-close\n")).unwrap_err();
        assert!(
            err.to_string().starts_with("option config_file: ")
                && err.to_string().contains("tcp-close"),
            "{err}"
        );
        assert!(parse_config_file(f, Some("manage-cgroups full\n")).is_err());
    }

    #[test]
    fn images_dir_by_path_and_missing() {
        let o = CriuOpts {
            images_dir_fd: -1,
            images_dir: Some("/img".into()),
            pid: Some(1),
            ..Default::default()
        };
        assert_eq!(
            DumpPlan::from_opts(&o).unwrap().common.images_dir,
            ImagesDir::Path("/img".into())
        );
        let o = CriuOpts {
            images_dir_fd: -1,
            pid: Some(1),
            ..Default::default()
        };
        assert!(DumpPlan::from_opts(&o).is_err());
    }
}
