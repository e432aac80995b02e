//! [`MountImage`]: the mount records of one dumped namespace, and their place in a dormant image.

use std::collections::BTreeMap;

use dormant_image::records::{
    mount_names, ExternalMaster, MountEntry, MountId, MountSource, TmpfsRecord,
};
use dormant_image::{ImageReader, ImageWriter};

use crate::error::Result;
use crate::mountinfo::{DevId, MountInfo, MountTree};

/// Every mount of a dumped namespace (parents before children) and the outside peer groups its mounts are
/// slaves of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountImage {
    pub mounts: Vec<MountEntry>,
    pub masters: Vec<ExternalMaster>,
    /// Content of the tmpfs mounts restore creates anew (held in memory: meant for /dev, /tmp, /dev/shm
    /// sized content).
    pub tmpfs: BTreeMap<MountId, Vec<TmpfsRecord>>,
}

impl MountImage {
    /// Writes `mounts` and `mnt-masters` into the image being built.
    pub fn write(&self, w: &mut ImageWriter) -> Result<()> {
        w.write_records(mount_names::MOUNTS, &self.mounts)?;
        w.write_records(mount_names::MOUNT_MASTERS, &self.masters)?;
        for (id, recs) in &self.tmpfs {
            w.write_records(&mount_names::tmpfs(*id), recs)?;
        }
        Ok(())
    }

    /// Reads the mount records; `None` when the image has none (a dump without its mount namespace).
    pub fn read(r: &ImageReader) -> Result<Option<MountImage>> {
        if !r.has_file(mount_names::MOUNTS) {
            return Ok(None);
        }
        let mounts = r.read_records(mount_names::MOUNTS)?;
        let masters = if r.has_file(mount_names::MOUNT_MASTERS) {
            r.read_records(mount_names::MOUNT_MASTERS)?
        } else {
            Vec::new()
        };
        let mut tmpfs = BTreeMap::new();
        for m in &mounts {
            let m: &MountEntry = m;
            let name = mount_names::tmpfs(m.id);
            if m.how == MountSource::NewFs && r.has_file(&name) {
                tmpfs.insert(m.id, r.read_records(&name)?);
            }
        }
        Ok(Some(MountImage {
            mounts,
            masters,
            tmpfs,
        }))
    }

    /// The tree as a mountinfo would show it (device numbers are not kept: all read 0:0), for comparing a
    /// restored namespace with the dumped one through [`MountTree::canonical`].
    pub fn as_tree(&self) -> MountTree {
        let root_parent = dormant_image::records::MountId(0);
        MountTree {
            mounts: self
                .mounts
                .iter()
                .map(|m| MountInfo {
                    id: m.id,
                    parent: m.parent.unwrap_or(root_parent),
                    dev: DevId { major: 0, minor: 0 },
                    root: m.root.clone(),
                    mountpoint: m.mountpoint.clone(),
                    mount_opts: m.mount_opts.clone(),
                    shared: m.shared,
                    master: m.master,
                    propagate_from: None,
                    unbindable: m.unbindable,
                    fstype: m.fstype.clone(),
                    source: m.source.clone(),
                    super_opts: m.super_opts.clone(),
                })
                .collect(),
        }
    }
}
