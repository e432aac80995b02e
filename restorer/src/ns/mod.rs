//! Namespaces at restore, one module per kind: user (with id maps), uts (names), ipc (System V objects
//! with their ids and contents), net (join one by path, or a private loopback-only one), cgroup membership
//! and cgroup namespace, pid (a tree that is the init of its own pid namespace, [`pid`]), time (the clock
//! offsets, set up right before the tree is forked, [`time`]).
//! The mount namespace is the `dormant-mounts` crate's, driven by [`crate::container`].
//!
//! Use: [`NsPlan::from_image`] reads and checks everything before any fork; [`NsPlan::enter`] runs in the
//! forked, single-threaded child that will become the parent of the restored tree, and moves it into its
//! namespaces in the order the kernel's ownership rules need: cgroups and an external netns while the child
//! still has its privileges in the initial user namespace, then the user namespace, then the namespaces it
//! owns (uts, ipc, a private net, cgroup), then their contents. A failure leaves a child that the caller
//! kills; new namespaces die with it.

mod cgroup;
mod error;
mod ipc;
mod net;
pub(crate) mod pid;
mod read;
mod sysv;
pub mod time;
mod user;
mod uts;

use std::path::PathBuf;

use dormant_image::records::{ns_names, NsKind, Pid, TaskNamespaces, UserNamespace, UtsNamespace};
use dormant_image::ImageReader;
use nix::sched::CloneFlags;

pub use cgroup::{
    join_cgroups, own_cgroup_mounts, parse_cgroup_mounts, resolve_cgroups, CgroupMount,
    CgroupTarget,
};
pub use error::{NsRestoreError, Result};
pub use ipc::{restore_ipc, IpcPlan};
pub use net::{interface_up, join_net_namespace, set_loopback};
pub use user::{create_user_namespace, to_inside, write_id_maps};

/// The root task's namespaces, checked to be every task's (`None`: the image has no namespace records).
fn root_namespaces(src: &read::Source<'_>, root: Pid) -> Result<Option<TaskNamespaces>> {
    if !src.img.has_file(ns_names::NS_IDS) {
        return Ok(None);
    }
    let tasks: Vec<TaskNamespaces> = src.records(ns_names::NS_IDS)?;
    let r = tasks
        .iter()
        .find(|t| t.pid == root)
        .cloned()
        .ok_or_else(|| {
            src.bad(format!(
                "{} has no entry for the root task {}",
                ns_names::NS_IDS,
                root.0
            ))
        })?;
    // A container: every task in the root's namespaces (the dump refused anything else first, with the
    // same message).
    for t in &tasks {
        dormant_restorable::check_namespaces(t, &r, true)
            .map_err(crate::refusal::Unsupported::from)?;
    }
    Ok(Some(r))
}

/// Which network namespace the restored tree gets. Its devices, addresses and routes are never in the
/// image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetMode {
    /// The restorer's own (the default: Kata pods share the sandbox's namespace, which outlives containers).
    #[default]
    Inherit,
    /// Join the namespace at this path (`/proc/PID/ns/net`, a bind-mounted `/var/run/netns/NAME`).
    External(PathBuf),
    /// A new namespace with only `lo`, up when it was up in the dumped tree (`--net private`).
    Private,
    /// `Private` when the dumped tree had a network namespace of its own, else `Inherit` (`--net dumped`;
    /// CRIU's behaviour when a runtime asks for an empty network namespace).
    AsDumped,
}

impl std::str::FromStr for NetMode {
    type Err = std::convert::Infallible;

    /// `inherit`, `private`, `dumped`, or the path of a namespace to join.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "inherit" => NetMode::Inherit,
            "private" => NetMode::Private,
            "dumped" => NetMode::AsDumped,
            path => NetMode::External(PathBuf::from(path)),
        })
    }
}

/// What the caller chooses at restore time (the image decides the rest).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NsOptions {
    pub net: NetMode,
    pub cgroup: CgroupTarget,
}

/// What happens to the network namespace, resolved from [`NetMode`] and the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetPlan {
    Inherit,
    Join(PathBuf),
    Private { loopback_up: bool },
}

/// Everything [`NsPlan::enter`] does, read and checked from an image before the fork.
#[derive(Debug)]
pub struct NsPlan {
    pub user: Option<UserNamespace>,
    pub uts: Option<UtsNamespace>,
    pub ipc: Option<IpcPlan>,
    pub net: NetPlan,
    /// Directories whose `cgroup.procs` the child joins.
    pub cgroups: Vec<PathBuf>,
    /// Those of them that did not exist when the plan was made (the child creates them).
    pub new_cgroups: Vec<PathBuf>,
    /// The tree had a cgroup namespace of its own: unshare one after joining the cgroups (its root is then
    /// the joined cgroup).
    pub new_cgroup_ns: bool,
}

impl NsPlan {
    /// Plans the namespaces of the tree whose root task is `root`. An image without namespace records (a
    /// plain process dump) plans nothing but what `opts` asks for. Refuses what `dormant_restorable` lists
    /// (a task outside the root's namespaces).
    pub fn from_image(img: &ImageReader, root: Pid, opts: &NsOptions) -> Result<NsPlan> {
        let src = read::Source::new(img);
        let own = root_namespaces(&src, root)?;
        let private = |kind| {
            own.as_ref()
                .and_then(|t| t.get(kind))
                .filter(|n| !n.external)
                .map(|n| n.id)
        };
        let user = private(NsKind::User)
            .map(|id| user::read(&src, id))
            .transpose()?;
        let uts = private(NsKind::Uts)
            .map(|id| uts::read(&src, id))
            .transpose()?;
        let ipc = private(NsKind::Ipc)
            .map(|id| ipc::plan(&src, id))
            .transpose()?;
        let dumped_net = own.as_ref().and_then(|t| t.get(NsKind::Net)).map(|n| n.id);
        let net = net::plan(&src, &opts.net, private(NsKind::Net), dumped_net)?;
        let cgroups = cgroup::plan(&src, root, &opts.cgroup)?;
        let new_cgroups = cgroups.iter().filter(|d| !d.exists()).cloned().collect();
        Ok(NsPlan {
            new_cgroups,
            user,
            uts,
            ipc,
            net,
            cgroups,
            new_cgroup_ns: private(NsKind::Cgroup).is_some(),
        })
    }

    /// After a failed restore: removes the cgroup directories the child created (those still empty), so a
    /// refused restore leaves nothing behind. Returns the ones that could not be removed.
    pub fn remove_new_cgroups(&self) -> Vec<(PathBuf, std::io::Error)> {
        let mut left = Vec::new();
        // Deepest first: a created directory may hold another created one.
        for dir in self.new_cgroups.iter().rev() {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => left.push((dir.clone(), e)),
            }
        }
        left
    }

    /// The namespaces [`enter`](Self::enter) unshares after the user namespace.
    pub fn unshare_flags(&self) -> CloneFlags {
        let mut f = CloneFlags::empty();
        if self.uts.is_some() {
            f |= CloneFlags::CLONE_NEWUTS;
        }
        if self.ipc.is_some() {
            f |= CloneFlags::CLONE_NEWIPC;
        }
        if matches!(self.net, NetPlan::Private { .. }) {
            f |= CloneFlags::CLONE_NEWNET;
        }
        if self.new_cgroup_ns {
            f |= CloneFlags::CLONE_NEWCGROUP;
        }
        f
    }

    /// Moves the calling process (single-threaded: a forked child that becomes the parent of the restored
    /// tree) into the planned namespaces and recreates their state. Mount and pid namespaces are not
    /// touched (the caller unshares them after this, so they are owned by the user namespace made here).
    pub fn enter(&self) -> Result<()> {
        let sys = |step| move |source| NsRestoreError::Syscall { step, source };
        join_cgroups(0, &self.cgroups)?;
        if let NetPlan::Join(p) = &self.net {
            join_net_namespace(p)?;
        }
        if let Some(u) = &self.user {
            create_user_namespace(u)?;
        }
        let flags = self.unshare_flags();
        if !flags.is_empty() {
            nix::sched::unshare(flags).map_err(sys("unshare(uts, ipc, net, cgroup)"))?;
        }
        if let Some(uts) = &self.uts {
            uts::set_uts_name(libc::sethostname, &uts.hostname).map_err(sys("sethostname"))?;
            uts::set_uts_name(libc::setdomainname, &uts.domainname)
                .map_err(sys("setdomainname"))?;
        }
        if let Some(ipc) = &self.ipc {
            let maps = self
                .user
                .as_ref()
                .map(|u| (u.uid_map.as_slice(), u.gid_map.as_slice()));
            restore_ipc(ipc, maps)?;
        }
        if let NetPlan::Private { loopback_up } = self.net {
            set_loopback(loopback_up)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_from_flag_values() {
        assert_eq!("private".parse::<NetMode>().unwrap(), NetMode::Private);
        assert_eq!("inherit".parse::<NetMode>().unwrap(), NetMode::Inherit);
        assert_eq!(
            "/proc/1/ns/net".parse::<NetMode>().unwrap(),
            NetMode::External("/proc/1/ns/net".into())
        );
        assert_eq!("keep".parse::<CgroupTarget>().unwrap(), CgroupTarget::Keep);
        assert_eq!(
            "dumped".parse::<CgroupTarget>().unwrap(),
            CgroupTarget::AsDumped
        );
        assert_eq!(
            "/kata/c1".parse::<CgroupTarget>().unwrap(),
            CgroupTarget::Root("/kata/c1".into())
        );
    }
}
