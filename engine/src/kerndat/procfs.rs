//! /proc probes: map_files and timers, plus the small /proc/self/maps and mountinfo readers the other
//! probes share.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::ProbeError;
use super::sys::{self, TimerId};
use super::Found;

/// One line of /proc/self/maps (dormant-sys's parser, the one the dumper and the parasite use).
pub(crate) use dormant_sys::procfs::MapsEntry as MapsLine;

pub(crate) fn read_to_string(path: &str) -> Result<String, ProbeError> {
    std::fs::read_to_string(path).map_err(|e| ProbeError::read(path, e))
}

pub(crate) fn self_maps() -> Result<Vec<MapsLine>, ProbeError> {
    let text = read_to_string("/proc/self/maps")?;
    dormant_sys::procfs::parse_maps(&text)
        .map_err(|e| ProbeError::unexpected(format!("/proc/self/maps: {e}")))
}

/// One line of /proc/self/mountinfo, reduced to what the probes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountLine {
    pub mount_point: PathBuf,
    /// The `shared:N` peer group, if the mount is shared.
    pub shared: Option<u64>,
    pub fs_type: String,
    pub super_options: String,
}

pub(crate) fn self_mountinfo() -> Result<Vec<MountLine>, ProbeError> {
    let text = read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_mountinfo_line).collect())
}

fn parse_mountinfo_line(line: &str) -> Option<MountLine> {
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    let mount_point = PathBuf::from(dormant_mounts::mountinfo::unescape(head.get(4)?));
    let shared = head
        .iter()
        .skip(6)
        .find_map(|tag| tag.strip_prefix("shared:"))
        .and_then(|n| n.parse().ok());
    let mut tail = tail.split(' ');
    let fs_type = tail.next()?.to_string();
    let _source = tail.next()?;
    let super_options = tail.next().unwrap_or("").to_string();
    Some(MountLine {
        mount_point,
        shared,
        fs_type,
        super_options,
    })
}

/// /proc/self/map_files: the link of a file-backed mapping must read back the path /proc/self/maps
/// shows, and opening it must give that very inode (the engine opens mapped files, even deleted ones,
/// this way).
pub(crate) fn map_files() -> Result<Found, ProbeError> {
    let maps = self_maps()?;
    let mapping = maps
        .iter()
        .find(|m| m.name.starts_with('/') && m.inode != 0 && !m.name.ends_with(" (deleted)"))
        .ok_or_else(|| ProbeError::unexpected("no file-backed mapping in /proc/self/maps"))?;
    let link = PathBuf::from(format!(
        "/proc/self/map_files/{:x}-{:x}",
        mapping.start, mapping.end
    ));
    let target = std::fs::read_link(&link).map_err(|e| ProbeError::read(&link, e))?;
    if target != Path::new(&mapping.name) {
        return Err(ProbeError::unexpected(format!(
            "{} links to {}, maps says {}",
            link.display(),
            target.display(),
            mapping.name
        )));
    }
    let file = File::open(&link).map_err(|e| ProbeError::read(&link, e))?;
    let inode = file
        .metadata()
        .map_err(|e| ProbeError::read(&link, e))?
        .ino();
    if inode != mapping.inode {
        return Err(ProbeError::unexpected(format!(
            "{} opened inode {inode}, maps says {}",
            link.display(),
            mapping.inode
        )));
    }
    Ok(Found::detail(format!(
        "readlink and open of {} give {} (inode {inode})",
        link.display(),
        mapping.name
    )))
}

/// Deletes the probe's POSIX timer however the probe ends.
struct TimerGuard(TimerId);

impl Drop for TimerGuard {
    fn drop(&mut self) {
        let _ = sys::timer_delete(self.0);
    }
}

/// /proc/self/timers: a POSIX timer just created must be listed with its id and clock.
pub(crate) fn timers() -> Result<Found, ProbeError> {
    let id = sys::timer_create_silent(libc::CLOCK_MONOTONIC)
        .map_err(|e| ProbeError::sys("timer_create", e))?;
    let _guard = TimerGuard(id);
    let text = read_to_string("/proc/self/timers")?;
    let wanted = format!("ID: {}", id.0);
    let mut lines = text.lines().skip_while(|l| *l != wanted);
    if lines.next().is_none() {
        return Err(ProbeError::unexpected(format!(
            "timer {} is not listed in /proc/self/timers",
            id.0
        )));
    }
    let clock = lines
        .take_while(|l| !l.starts_with("ID: "))
        .find_map(|l| l.strip_prefix("ClockID: "))
        .unwrap_or("");
    if clock.trim() != libc::CLOCK_MONOTONIC.to_string() {
        return Err(ProbeError::unexpected(format!(
            "timer {} listed with ClockID {clock:?}, created on CLOCK_MONOTONIC",
            id.0
        )));
    }
    Ok(Found::detail(format!(
        "timer {} listed with ClockID {}",
        id.0,
        libc::CLOCK_MONOTONIC
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let line =
            "36 25 0:32 / /tmp/a\\040b rw,relatime shared:7 master:2 - tmpfs none rw,size=10k";
        let mi = parse_mountinfo_line(line).unwrap();
        assert_eq!(mi.mount_point, PathBuf::from("/tmp/a b"));
        assert_eq!(mi.shared, Some(7));
        assert_eq!(
            (mi.fs_type.as_str(), mi.super_options.as_str()),
            ("tmpfs", "rw,size=10k")
        );
        let private = parse_mountinfo_line("1 0 0:1 / / rw - ext4 /dev/vda rw").unwrap();
        assert_eq!(private.shared, None);
    }
}
