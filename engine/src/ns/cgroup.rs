//! cgroup membership from `/proc/PID/cgroup` (v1 hierarchies and the v2 unified line alike).

use std::path::PathBuf;

use dormant_image::records::{CgroupLine, Pid, TaskCgroups};

use super::error::{NsError, Result};

/// Parses `/proc/PID/cgroup` text: `HIERARCHY:CONTROLLERS:PATH` per line; the path may contain `:`.
pub fn parse_cgroup_file(text: &str) -> std::result::Result<Vec<CgroupLine>, String> {
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(hier), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "line {}: {line:?} is not HIERARCHY:CONTROLLERS:PATH",
                n + 1
            ));
        };
        let hierarchy = hier
            .parse()
            .map_err(|e| format!("line {}: hierarchy id {hier:?}: {e}", n + 1))?;
        let controllers = ctrl
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        lines.push(CgroupLine {
            hierarchy,
            controllers,
            path: path.to_owned(),
        });
    }
    Ok(lines)
}

/// The cgroups task `pid` is in, paths relative to the dumper's cgroup namespace.
pub fn read_cgroups(pid: Pid) -> Result<TaskCgroups> {
    let path = PathBuf::from(format!("/proc/{}/cgroup", pid.0));
    let text = std::fs::read_to_string(&path).map_err(|source| NsError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    let lines = parse_cgroup_file(&text).map_err(|reason| NsError::Parse { pid, path, reason })?;
    Ok(TaskCgroups { pid, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_hierarchy_lines() {
        let text = "9:name=systemd:/\n4:memory:/a/b:c\n3:cpu,cpuacct:/x\n0::/unified/path\n";
        let lines = parse_cgroup_file(text).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].controllers, vec!["name=systemd".to_string()]);
        assert_eq!(lines[1].path, "/a/b:c");
        assert_eq!(lines[2].controllers, vec!["cpu", "cpuacct"]);
        assert!(lines[3].is_v2());
        assert!(!lines[2].is_v2());
        assert!(parse_cgroup_file("garbage\n").is_err());
        assert!(parse_cgroup_file("x::/\n").is_err());
    }

    #[test]
    fn reads_own_cgroups() {
        let own = read_cgroups(Pid(std::process::id())).unwrap();
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert_eq!(own.lines.len(), text.lines().count());
    }
}
