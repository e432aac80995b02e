//! `/proc/PID/mountinfo`: one [`MountInfo`] per line, and the [`MountTree`] of a namespace.
//!
//! Line format (proc(5)): `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT MOUNT_OPTS [OPTIONAL...] - FSTYPE SOURCE
//! SUPER_OPTS`. The kernel escapes space, tab, newline and backslash in paths as `\ooo` (octal); parsing
//! undoes that and rendering redoes it, so a render → parse round trip is exact.

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use dormant_image::records::{MountId, PeerGroup};

use crate::error::{MountError, Result};

/// A device number as mountinfo shows it (`major:minor` of the superblock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevId {
    pub major: u32,
    pub minor: u32,
}

/// One mountinfo line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: MountId,
    pub parent: MountId,
    pub dev: DevId,
    pub root: String,
    pub mountpoint: String,
    pub mount_opts: String,
    pub shared: Option<PeerGroup>,
    pub master: Option<PeerGroup>,
    pub propagate_from: Option<PeerGroup>,
    pub unbindable: bool,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

impl MountInfo {
    /// The image's entry for this mount: `parent` as the image has it (`None` for the namespace's root),
    /// restored as `how`.
    pub fn entry(
        &self,
        parent: Option<dormant_image::records::MountId>,
        how: dormant_image::records::MountSource,
    ) -> dormant_image::records::MountEntry {
        dormant_image::records::MountEntry {
            id: self.id,
            parent,
            mountpoint: self.mountpoint.clone(),
            root: self.root.clone(),
            fstype: self.fstype.clone(),
            source: self.source.clone(),
            mount_opts: self.mount_opts.clone(),
            super_opts: self.super_opts.clone(),
            shared: self.shared,
            master: self.master,
            unbindable: self.unbindable,
            how,
        }
    }
}

/// Undoes the kernel's `\ooo` escapes; a backslash not followed by three octal digits stays as it is.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = u32::from(digits[0] - b'0') * 64
                    + u32::from(digits[1] - b'0') * 8
                    + u32::from(digits[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes what the kernel escapes in mountinfo fields (space, tab, newline, backslash).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            _ => out.push(c),
        }
    }
    out
}

fn field_err(line: &str, why: &str) -> MountError {
    MountError::Parse {
        line: line.chars().take(200).collect(),
        why: why.to_string(),
    }
}

impl MountInfo {
    /// Parses one line.
    pub fn parse(line: &str) -> Result<MountInfo> {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields
            .iter()
            .position(|f| *f == "-")
            .ok_or_else(|| field_err(line, "no ` - ` separator"))?;
        if sep < 6 || fields.len() != sep + 4 {
            return Err(field_err(line, "wrong number of fields"));
        }
        let num = |i: usize, what: &str| -> Result<u32> {
            fields[i]
                .parse()
                .map_err(|_| field_err(line, &format!("{what} is not a number")))
        };
        let (major, minor) = fields[2]
            .split_once(':')
            .ok_or_else(|| field_err(line, "device is not MAJOR:MINOR"))?;
        let dev = DevId {
            major: major
                .parse()
                .map_err(|_| field_err(line, "bad major number"))?,
            minor: minor
                .parse()
                .map_err(|_| field_err(line, "bad minor number"))?,
        };
        let mut mi = MountInfo {
            id: MountId(num(0, "mount id")?),
            parent: MountId(num(1, "parent id")?),
            dev,
            root: unescape(fields[3]),
            mountpoint: unescape(fields[4]),
            mount_opts: fields[5].to_string(),
            shared: None,
            master: None,
            propagate_from: None,
            unbindable: false,
            fstype: unescape(fields[sep + 1]),
            source: unescape(fields[sep + 2]),
            super_opts: fields[sep + 3].to_string(),
        };
        for opt in &fields[6..sep] {
            let group = |v: &str| -> Result<PeerGroup> {
                v.parse()
                    .map(PeerGroup)
                    .map_err(|_| field_err(line, &format!("bad peer group in {opt}")))
            };
            if let Some(v) = opt.strip_prefix("shared:") {
                mi.shared = Some(group(v)?);
            } else if let Some(v) = opt.strip_prefix("master:") {
                mi.master = Some(group(v)?);
            } else if let Some(v) = opt.strip_prefix("propagate_from:") {
                mi.propagate_from = Some(group(v)?);
            } else if *opt == "unbindable" {
                mi.unbindable = true;
            } else if !opt.is_empty() {
                // Newer kernels may add optional fields; proc(5) says to ignore unknown ones.
                log::debug!("mountinfo: ignoring optional field {opt:?}");
            }
        }
        Ok(mi)
    }

    /// Renders the line as the kernel would (without a trailing newline).
    pub fn render(&self) -> String {
        let mut s = format!(
            "{} {} {}:{} {} {} {}",
            self.id.0,
            self.parent.0,
            self.dev.major,
            self.dev.minor,
            escape(&self.root),
            escape(&self.mountpoint),
            self.mount_opts
        );
        if let Some(g) = self.shared {
            let _ = write!(s, " shared:{}", g.0);
        }
        if let Some(g) = self.master {
            let _ = write!(s, " master:{}", g.0);
        }
        if let Some(g) = self.propagate_from {
            let _ = write!(s, " propagate_from:{}", g.0);
        }
        if self.unbindable {
            s.push_str(" unbindable");
        }
        let _ = write!(
            s,
            " - {} {} {}",
            escape(&self.fstype),
            escape(&self.source),
            self.super_opts
        );
        s
    }
}

/// The mounts of one namespace as one process sees them, in mountinfo order (creation order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountTree {
    pub mounts: Vec<MountInfo>,
}

impl MountTree {
    /// Parses a whole mountinfo text; empty lines are skipped.
    pub fn parse(text: &str) -> Result<MountTree> {
        let mounts = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(MountInfo::parse)
            .collect::<Result<Vec<_>>>()?;
        Ok(MountTree { mounts })
    }

    /// Reads `/proc/PID/mountinfo` (`None`: the caller's own).
    pub fn read(pid: Option<i32>) -> Result<MountTree> {
        let path = match pid {
            Some(p) => format!("/proc/{p}/mountinfo"),
            None => "/proc/self/mountinfo".to_string(),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| MountError::Io {
            what: "reading mountinfo".into(),
            path: path.clone().into(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn render(&self) -> String {
        self.mounts.iter().map(|m| m.render() + "\n").collect()
    }

    pub fn get(&self, id: MountId) -> Option<&MountInfo> {
        self.mounts.iter().find(|m| m.id == id)
    }

    /// The namespace's root mount as seen by the reader: the mount on `/` whose parent is not listed (mounts
    /// stacked on it are its children).
    pub fn root(&self) -> Option<&MountInfo> {
        self.mounts
            .iter()
            .find(|m| m.mountpoint == "/" && self.get(m.parent).is_none())
    }

    /// The mounts reachable from the root, parents before children (creation order among siblings).
    pub fn tree_order(&self) -> Vec<&MountInfo> {
        let Some(root) = self.root() else {
            return Vec::new();
        };
        let mut children: BTreeMap<MountId, Vec<&MountInfo>> = BTreeMap::new();
        for m in &self.mounts {
            if m.id != root.id {
                children.entry(m.parent).or_default().push(m);
            }
        }
        let mut out = vec![root];
        let mut i = 0;
        while i < out.len() {
            if let Some(kids) = children.get(&out[i].id) {
                out.extend(kids.iter().copied());
            }
            i += 1;
        }
        out
    }

    /// A form of the tree that ignores everything restore cannot keep: mount ids and device numbers, and
    /// the numbering of peer groups that live inside the tree (renamed in order of first appearance).
    /// Groups that no mount of the tree carries (external masters) keep their number: restore joins those
    /// very groups. One line per mount, depth-first with siblings by mountpoint, each naming its parent by
    /// mountpoint.
    pub fn canonical(&self) -> Vec<String> {
        let Some(root) = self.root() else {
            return Vec::new();
        };
        let mut children: BTreeMap<MountId, Vec<&MountInfo>> = BTreeMap::new();
        for m in &self.mounts {
            if m.id != root.id {
                children.entry(m.parent).or_default().push(m);
            }
        }
        for kids in children.values_mut() {
            kids.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
        }
        let mut order = Vec::new();
        let mut stack = vec![root];
        while let Some(m) = stack.pop() {
            order.push(m);
            if let Some(kids) = children.get(&m.id) {
                stack.extend(kids.iter().rev().copied());
            }
        }
        let internal: std::collections::BTreeSet<PeerGroup> =
            order.iter().filter_map(|m| m.shared).collect();
        let mut names: BTreeMap<PeerGroup, usize> = BTreeMap::new();
        let mut name = |g: PeerGroup| -> String {
            if internal.contains(&g) {
                let n = names.len();
                format!("g{}", *names.entry(g).or_insert(n))
            } else {
                format!("x{}", g.0)
            }
        };
        let by_id: BTreeMap<MountId, &MountInfo> = order.iter().map(|m| (m.id, *m)).collect();
        order
            .iter()
            .map(|m| {
                let parent = if m.id == root.id {
                    "-".to_string()
                } else {
                    by_id
                        .get(&m.parent)
                        .map(|p| p.mountpoint.clone())
                        .unwrap_or_default()
                };
                format!(
                    "{} parent={} root={} {} {} {} {} shared={} master={}{}",
                    m.mountpoint,
                    parent,
                    m.root,
                    m.mount_opts,
                    m.fstype,
                    m.source,
                    m.super_opts,
                    m.shared.map(&mut name).unwrap_or_default(),
                    m.master.map(&mut name).unwrap_or_default(),
                    if m.unbindable { " unbindable" } else { "" }
                )
            })
            .collect()
    }
}

/// `inner` as a path below `outer` (both fs-relative roots): `Some("")` when equal, `Some("a/b")` below.
pub fn sub_path<'a>(outer: &str, inner: &'a str) -> Option<&'a str> {
    if outer == "/" {
        return Some(inner.trim_start_matches('/'));
    }
    let rest = inner.strip_prefix(outer)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}
