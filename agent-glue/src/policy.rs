//! The mount policy, read from the container's OCI spec: which mounts are external, under which stable
//! keys, and where each key is bound from in a sandbox.
//!
//! External: every bind whose source lies under the shared directory (virtio-fs or 9p, the host's files:
//! volumes, the rootfs), and `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` and `/dev/shm` wherever
//! their source is. Each is keyed `kata:<destination>` (the container path, which a new sandbox's spec
//! has too, unlike the source paths, which hold the sandbox's container id). The root filesystem is keyed
//! `kata:rootfs` and is given as the restore's root.
//!
//! The peer groups those mounts are slaves of (the agent's shared-directory and sandbox-shm mounts) are
//! keyed `master:<key>` after the first mount key whose source lies on them; at restore the agent mount
//! holding that key's new source is where the group is joined from. So the image names no sandbox path,
//! and a restore in a new VM needs nothing but the new spec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dormant_engine::External as DumpExternal;
use dormant_mounts::{MountImage, MountTree};
use dormant_restorer::External as RestoreExternal;
use oci_spec::runtime::Spec;

use crate::error::GlueError;

/// Destinations that are external whatever their source.
const ALWAYS_EXTERNAL: [&str; 4] = [
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/hostname",
    "/dev/shm",
];
/// The key of the root filesystem.
pub const ROOTFS_KEY: &str = "kata:rootfs";
const MASTER_PREFIX: &str = "master:";

/// One external mount of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMount {
    pub key: String,
    /// Where the container sees it.
    pub destination: String,
    /// Its source in the agent's mount namespace.
    pub source: PathBuf,
}

/// A container's external mounts (and its root filesystem) in one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPolicy {
    pub rootfs: PathBuf,
    pub mounts: Vec<ExternalMount>,
}

fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

impl MountPolicy {
    /// The policy of `spec` in a sandbox whose shared directory is `shared` and whose container root
    /// filesystem is `rootfs` (both in the agent's mount namespace).
    pub fn from_spec(spec: &Spec, rootfs: &Path, shared: &Path) -> Self {
        let mut mounts = Vec::new();
        for m in spec.mounts().iter().flatten() {
            let Some(source) = m.source() else { continue };
            let destination = m.destination().to_string_lossy().into_owned();
            let wanted = ALWAYS_EXTERNAL.contains(&destination.as_str())
                || (is_bind(m) && source.starts_with(shared));
            if wanted
                && !mounts
                    .iter()
                    .any(|e: &ExternalMount| e.destination == destination)
            {
                mounts.push(ExternalMount {
                    key: format!("kata:{destination}"),
                    destination,
                    source: source.clone(),
                });
            }
        }
        MountPolicy {
            rootfs: rootfs.to_owned(),
            mounts,
        }
    }

    /// Every key with its source, the root filesystem first.
    fn sources(&self) -> impl Iterator<Item = (&str, &Path)> {
        std::iter::once((ROOTFS_KEY, self.rootfs.as_path())).chain(
            self.mounts
                .iter()
                .map(|m| (m.key.as_str(), m.source.as_path())),
        )
    }

    /// The dump's external mounts: DESTINATION as KEY for every external mount, and AGENT MOUNTPOINT as
    /// `master:KEY` for every shared agent mount a source lies on (`agent`: the agent's own mount tree).
    pub fn dump_externals(&self, agent: &MountTree) -> Vec<DumpExternal> {
        let mount = |mountpoint: &str, key: String| DumpExternal::Mount {
            mountpoint: mountpoint.to_string(),
            key,
        };
        let mut specs: Vec<DumpExternal> = self
            .mounts
            .iter()
            .map(|m| mount(&m.destination, m.key.clone()))
            .collect();
        let mut carriers: BTreeMap<String, String> = BTreeMap::new();
        for (key, source) in self.sources() {
            let Some(carrier) = carrier_of(agent, source) else {
                continue;
            };
            if carrier.shared.is_some() && !carriers.contains_key(&carrier.mountpoint) {
                carriers.insert(carrier.mountpoint.clone(), format!("{MASTER_PREFIX}{key}"));
            }
        }
        specs.extend(carriers.iter().map(|(mp, key)| mount(mp, key.clone())));
        specs
    }

    /// The restore's external mounts for every key of `image` this policy knows: KEY from SOURCE, and
    /// `master:KEY` from the MOUNTPOINT of the agent mount holding KEY's source. A `kata:` key the spec
    /// does not provide is refused by name; other keys (devices bound from the agent's /dev) keep their
    /// default, the same path.
    pub fn restore_externals(
        &self,
        id: &str,
        image: &MountImage,
        agent: &MountTree,
    ) -> Result<Vec<RestoreExternal>, GlueError> {
        let sources: BTreeMap<&str, &Path> = self.sources().collect();
        let missing = |key: &str, destination: &str| GlueError::MissingMountKey {
            id: id.to_string(),
            key: key.to_string(),
            destination: destination.to_string(),
        };
        let mut specs = Vec::new();
        for m in &image.mounts {
            let dormant_image::records::MountSource::External { key } = &m.how else {
                continue;
            };
            if !key.starts_with("kata:") {
                continue;
            }
            let source = sources
                .get(key.as_str())
                .ok_or_else(|| missing(key, &m.mountpoint))?;
            specs.push(RestoreExternal::Mount {
                key: key.clone(),
                path: source.to_path_buf(),
            });
        }
        for master in &image.masters {
            let Some(of) = master.key.strip_prefix(MASTER_PREFIX) else {
                continue;
            };
            let source = sources
                .get(of)
                .ok_or_else(|| missing(of, "(a mount's master)"))?;
            let carrier = carrier_of(agent, source).ok_or_else(|| GlueError::InvalidRequest {
                id: id.to_string(),
                reason: format!("no mount of the agent holds {}", source.display()),
            })?;
            specs.push(RestoreExternal::Mount {
                key: master.key.clone(),
                path: PathBuf::from(&carrier.mountpoint),
            });
        }
        Ok(specs)
    }
}

/// The agent's mount that `path` lies on: the deepest mountpoint containing it (the last mounted of
/// equals, which is the one on top).
fn carrier_of<'a>(agent: &'a MountTree, path: &Path) -> Option<&'a dormant_mounts::MountInfo> {
    agent
        .mounts
        .iter()
        .filter(|m| path.starts_with(&m.mountpoint))
        .max_by_key(|m| Path::new(&m.mountpoint).components().count())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const SPEC: &str = r#"{
        "ociVersion": "1.0.2",
        "root": {"path": "/run/kata-containers/shared/containers/c1/rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev/shm", "type": "bind", "source": "/run/kata-containers/sandbox/shm", "options": ["rbind"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/run/kata-containers/shared/containers/c1-abc-hosts", "options": ["rbind", "ro"]},
            {"destination": "/etc/hostname", "type": "bind", "source": "/run/kata-containers/shared/containers/c1-abc-hostname", "options": ["rbind"]},
            {"destination": "/data", "type": "bind", "source": "/run/kata-containers/shared/containers/c1-def-data", "options": ["rbind"]},
            {"destination": "/scratch", "type": "bind", "source": "/var/lib/scratch", "options": ["rbind"]}
        ]
    }"#;

    const AGENT: &str = "\
20 1 0:30 / /run rw - tmpfs tmpfs rw
21 20 0:31 / /run/kata-containers/shared/containers rw shared:5 - virtiofs kataShared rw
22 20 0:32 / /run/kata-containers/sandbox/shm rw shared:6 - tmpfs shm rw
23 20 0:33 / /var/lib/scratch rw - ext4 /dev/vda rw
";

    #[test]
    fn keys_come_from_destinations_and_masters_from_the_agent_mounts() {
        let p = MountPolicy::from_spec(
            &spec(SPEC),
            Path::new("/run/kata-containers/shared/containers/c1/rootfs"),
            Path::new("/run/kata-containers/shared"),
        );
        let keys: Vec<&str> = p.mounts.iter().map(|m| m.key.as_str()).collect();
        // /proc is not a bind; /scratch is a bind from outside the shared directory: both not external.
        assert_eq!(
            keys,
            [
                "kata:/dev/shm",
                "kata:/etc/hosts",
                "kata:/etc/hostname",
                "kata:/data"
            ]
        );
        let agent = MountTree::parse(AGENT).unwrap();
        let shown: Vec<String> = p
            .dump_externals(&agent)
            .into_iter()
            .map(|e| match e {
                DumpExternal::Mount { mountpoint, key } => format!("mnt[{mountpoint}]:{key}"),
                DumpExternal::Pipes => "pipes".into(),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "mnt[/dev/shm]:kata:/dev/shm",
                "mnt[/etc/hosts]:kata:/etc/hosts",
                "mnt[/etc/hostname]:kata:/etc/hostname",
                "mnt[/data]:kata:/data",
                // The rootfs comes first, so the shared directory's group is keyed after it.
                "mnt[/run/kata-containers/sandbox/shm]:master:kata:/dev/shm",
                "mnt[/run/kata-containers/shared/containers]:master:kata:rootfs",
            ]
        );
    }

    #[test]
    fn a_restore_maps_keys_to_the_new_sandbox_and_names_a_missing_one() {
        use dormant_image::records::{ExternalMaster, MountEntry, MountId, MountSource, PeerGroup};
        let entry = |id: u32, mp: &str, how: MountSource| MountEntry {
            id: MountId(id),
            parent: (id != 1).then_some(MountId(1)),
            mountpoint: mp.into(),
            root: "/".into(),
            fstype: "tmpfs".into(),
            source: "x".into(),
            mount_opts: "rw".into(),
            super_opts: "rw".into(),
            shared: None,
            master: None,
            unbindable: false,
            how,
        };
        let ext = |k: &str| MountSource::External { key: k.into() };
        let image = MountImage {
            mounts: vec![
                entry(1, "/", MountSource::Root),
                entry(2, "/etc/hosts", ext("kata:/etc/hosts")),
                entry(3, "/dev/null", ext("/dev/null")),
            ],
            masters: vec![ExternalMaster {
                group: PeerGroup(5),
                key: "master:kata:rootfs".into(),
                found_at: "/old/shared".into(),
            }],
            ..Default::default()
        };
        let agent = MountTree::parse(AGENT).unwrap();
        let new = MountPolicy::from_spec(
            &spec(&SPEC.replace("c1", "c2")),
            Path::new("/run/kata-containers/shared/containers/c2/rootfs"),
            Path::new("/run/kata-containers/shared"),
        );
        let shown: Vec<String> = new
            .restore_externals("c2", &image, &agent)
            .unwrap()
            .into_iter()
            .map(|RestoreExternal::Mount { key, path }| format!("mnt[{key}]:{}", path.display()))
            .collect();
        assert_eq!(
            shown,
            [
                "mnt[kata:/etc/hosts]:/run/kata-containers/shared/containers/c2-abc-hosts",
                "mnt[master:kata:rootfs]:/run/kata-containers/shared/containers",
            ]
        );
        let without_hosts = SPEC.replace("\"/etc/hosts\"", "\"/etc/other\"");
        let lacking = MountPolicy::from_spec(
            &spec(&without_hosts),
            Path::new("/r"),
            Path::new("/run/kata-containers/shared"),
        );
        let err = lacking.restore_externals("c2", &image, &agent).unwrap_err();
        assert!(
            matches!(&err, GlueError::MissingMountKey { key, destination, .. }
                if key == "kata:/etc/hosts" && destination == "/etc/hosts"),
            "{err}"
        );
    }
}
