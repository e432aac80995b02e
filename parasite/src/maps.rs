//! Just enough of /proc/<tid>/maps to find executable mappings for the syscall site.

use std::path::PathBuf;

use crate::error::ParasiteError;
use crate::remote::Tid;

/// One line of /proc/<tid>/maps, reduced to what site selection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vma {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub executable: bool,
    pub offset: u64,
    /// Path or pseudo name (`[vdso]`, `[vsyscall]`); empty for anonymous memory.
    pub name: String,
}

impl Vma {
    /// A mapping backed by a file (as opposed to anonymous memory or a kernel special mapping).
    pub fn is_file(&self) -> bool {
        self.name.starts_with('/')
    }
}

pub(crate) fn read_maps(tid: Tid) -> Result<Vec<Vma>, ParasiteError> {
    let path = PathBuf::from(format!("/proc/{tid}/maps"));
    let text = std::fs::read_to_string(&path).map_err(|source| ParasiteError::Proc {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .map(|line| {
            parse_line(line).ok_or_else(|| ParasiteError::ProcParse {
                path: path.clone(),
                line: line.to_owned(),
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Option<Vma> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?.as_bytes();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let name = fields.next().unwrap_or("").trim_start().to_owned();
    let (start, end) = range.split_once('-')?;
    if perms.len() != 4 {
        return None;
    }
    Some(Vma {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        readable: perms[0] == b'r',
        executable: perms[2] == b'x',
        offset,
        name,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (project rule)
mod tests {
    use super::*;

    #[test]
    fn parses_file_anon_and_special_lines() {
        let v = parse_line("55d0c0a00000-55d0c0a45000 r-xp 00021000 fe:01 1234    /usr/bin/a b")
            .unwrap();
        assert_eq!(
            v,
            Vma {
                start: 0x55d0c0a00000,
                end: 0x55d0c0a45000,
                readable: true,
                executable: true,
                offset: 0x21000,
                name: "/usr/bin/a b".into()
            }
        );
        assert!(v.is_file());
        let anon = parse_line("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(anon.name, "");
        assert!(!anon.executable && !anon.is_file());
        let vs = parse_line("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]")
            .unwrap();
        assert_eq!(vs.name, "[vsyscall]");
        assert!(!vs.readable && vs.executable);
        assert!(parse_line("garbage").is_none());
    }
}
