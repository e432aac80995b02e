//! User namespace id maps (`/proc/PID/uid_map`, `gid_map`, `setgroups`).

use std::path::PathBuf;

use dormant_image::records::{IdMapRange, NsId, Pid, UserNamespace};

use super::error::{NsError, Result};

/// Parses an id map: lines of three decimal numbers `INSIDE OUTSIDE COUNT`.
pub fn parse_id_map(text: &str) -> std::result::Result<Vec<IdMapRange>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |s: &str| s.parse::<u32>().map_err(|e| format!("{l:?}: {e}"));
            match f.as_slice() {
                [a, b, c] => Ok(IdMapRange {
                    inside: num(a)?,
                    outside: num(b)?,
                    count: num(c)?,
                }),
                _ => Err(format!("{l:?} is not INSIDE OUTSIDE COUNT")),
            }
        })
        .collect()
}

fn read_proc(pid: Pid, file: &str) -> Result<(PathBuf, String)> {
    let path = PathBuf::from(format!("/proc/{}/{file}", pid.0));
    let text = std::fs::read_to_string(&path).map_err(|source| NsError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    Ok((path, text))
}

/// The id maps of task `pid`'s user namespace `id`, as seen from the dumper's (parent) user namespace.
pub fn read_user_namespace(pid: Pid, id: NsId) -> Result<UserNamespace> {
    let map = |file| -> Result<Vec<IdMapRange>> {
        let (path, text) = read_proc(pid, file)?;
        parse_id_map(&text).map_err(|reason| NsError::Parse { pid, path, reason })
    };
    let (_, setgroups) = read_proc(pid, "setgroups")?;
    Ok(UserNamespace {
        id,
        uid_map: map("uid_map")?,
        gid_map: map("gid_map")?,
        setgroups_allowed: setgroups.trim() == "allow",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_maps() {
        let m = parse_id_map("         0     100000      65536\n  65536 5 1\n").unwrap();
        assert_eq!(
            m,
            vec![
                IdMapRange {
                    inside: 0,
                    outside: 100000,
                    count: 65536
                },
                IdMapRange {
                    inside: 65536,
                    outside: 5,
                    count: 1
                }
            ]
        );
        assert!(parse_id_map("0 1\n").is_err());
        assert!(parse_id_map("0 1 x\n").is_err());
    }

    #[test]
    fn reads_the_initial_user_namespace() {
        let me = Pid(std::process::id());
        let u = read_user_namespace(me, NsId(0)).unwrap();
        assert_eq!(
            u.uid_map,
            vec![IdMapRange {
                inside: 0,
                outside: 0,
                count: u32::MAX
            }]
        );
        assert!(u.setgroups_allowed);
    }
}
