//! A small reader of `/proc/<pid>/smaps`, for comparing a process's mappings before and after a checkpoint.
//!
//! Only what a restore must reproduce is kept: the range, protections and sharing, file offset, backing
//! file and the `VmFlags` line (madvise state such as `nh`, `dd`). Adjacent entries that the kernel could
//! equally well have kept merged or split are joined by [`normalize`], because how many VMAs a range is cut
//! into is not visible to the program and legitimately differs after a restore.

use std::fmt;

/// One mapping as `/proc/<pid>/smaps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// `rwxp` / `rw-s` etc.
    pub perms: String,
    pub offset: u64,
    /// `major:minor` of the backing file, `00:00` for anonymous memory.
    pub dev: String,
    pub inode: u64,
    /// The path or pseudo-name (`[stack]`, `/dev/zero (deleted)`), empty for anonymous memory.
    pub path: String,
    /// The `VmFlags` two-letter codes, sorted.
    pub vm_flags: Vec<String>,
}

impl Vma {
    /// Whether the mapping is backed by a file (shared anonymous memory counts: it has a shmem inode).
    pub fn is_file(&self) -> bool {
        self.inode != 0
    }

    /// Whether the mapping is shared (`s` in the perms).
    pub fn is_shared(&self) -> bool {
        self.perms.ends_with('s')
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

impl fmt::Display for Vma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:x}-{:x} {} {:08x} {} {} {} [{}]",
            self.start,
            self.end,
            self.perms,
            self.offset,
            self.dev,
            self.inode,
            self.path,
            self.vm_flags.join(" ")
        )
    }
}

/// Why a smaps text could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("smaps line {line}: {why}: {text:?}")]
pub struct MapsParseError {
    pub line: usize,
    pub why: &'static str,
    pub text: String,
}

fn parse_header(n: usize, line: &str) -> Result<Vma, MapsParseError> {
    let err = |why| MapsParseError {
        line: n,
        why,
        text: line.to_string(),
    };
    let mut fields = line.splitn(6, ' ');
    let range = fields.next().ok_or_else(|| err("no range"))?;
    let perms = fields.next().ok_or_else(|| err("no perms"))?;
    let offset = fields.next().ok_or_else(|| err("no offset"))?;
    let dev = fields.next().ok_or_else(|| err("no device"))?;
    let inode = fields.next().ok_or_else(|| err("no inode"))?;
    let path = fields.next().unwrap_or("").trim_start();
    let (start, end) = range.split_once('-').ok_or_else(|| err("bad range"))?;
    Ok(Vma {
        start: u64::from_str_radix(start, 16).map_err(|_| err("bad start"))?,
        end: u64::from_str_radix(end, 16).map_err(|_| err("bad end"))?,
        perms: perms.to_string(),
        offset: u64::from_str_radix(offset, 16).map_err(|_| err("bad offset"))?,
        dev: dev.to_string(),
        inode: inode.parse().map_err(|_| err("bad inode"))?,
        path: path.to_string(),
        vm_flags: Vec::new(),
    })
}

/// `VmFlags` codes that are kernel bookkeeping, not state a program can observe: `ac` (the mapping was charged
/// to overcommit accounting: a PROT_NONE page keeps it if it was once writable, a fresh one lacks it) and
/// `sd` (soft-dirty tracking).
const IGNORED_FLAGS: [&str; 2] = ["ac", "sd"];

/// Parses the text of `/proc/<pid>/smaps` (or `/proc/<pid>/maps`, which yields empty `vm_flags`).
pub fn parse_smaps(text: &str) -> Result<Vec<Vma>, MapsParseError> {
    let mut out: Vec<Vma> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let vma = out.last_mut().ok_or(MapsParseError {
                line: n,
                why: "VmFlags before any mapping",
                text: line.to_string(),
            })?;
            let mut v: Vec<String> = flags
                .split_whitespace()
                .filter(|f| !IGNORED_FLAGS.contains(f))
                .map(str::to_string)
                .collect();
            v.sort();
            vma.vm_flags = v;
            continue;
        }
        // Mapping headers start with a hex range "start-end "; the statistic lines start with a name and ':'.
        let first = line.split(' ').next().unwrap_or("");
        let is_header =
            first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if is_header {
            out.push(parse_header(n, line)?);
        }
    }
    Ok(out)
}

/// Joins adjacent mappings that differ only in where the kernel happened to split them.
pub fn normalize(vmas: &[Vma]) -> Vec<Vma> {
    let mut out: Vec<Vma> = Vec::with_capacity(vmas.len());
    for v in vmas {
        if let Some(last) = out.last_mut() {
            let file_contiguous = !last.is_file() || last.offset + last.len() == v.offset;
            if last.end == v.start
                && last.perms == v.perms
                && last.dev == v.dev
                && last.inode == v.inode
                && last.path == v.path
                && last.vm_flags == v.vm_flags
                && file_contiguous
            {
                last.end = v.end;
                continue;
            }
        }
        out.push(v.clone());
    }
    out
}

/// The mappings that lie at least partly inside one of `ranges` (each `[start, end)`).
pub fn within(vmas: &[Vma], ranges: &[(u64, u64)]) -> Vec<Vma> {
    vmas.iter()
        .filter(|v| ranges.iter().any(|&(s, e)| v.start < e && s < v.end))
        .cloned()
        .collect()
}

/// Compares two lists of mappings; `with_inode` also compares inode numbers (which differ for a restored
/// shared anonymous mapping: it is a new shmem object). Returns a description of every difference.
pub fn diff(before: &[Vma], after: &[Vma], with_inode: bool) -> Vec<String> {
    let mut out = Vec::new();
    let key = |v: &Vma| {
        let mut k = v.clone();
        if !with_inode {
            k.inode = 0;
        }
        k
    };
    let b: Vec<Vma> = before.iter().map(key).collect();
    let a: Vec<Vma> = after.iter().map(key).collect();
    for v in &b {
        if !a.contains(v) {
            out.push(format!("lost: {v}"));
        }
    }
    for v in &a {
        if !b.contains(v) {
            out.push(format!("new: {v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
7f0000000000-7f0000002000 rw-p 00000000 00:00 0 
Size:                  8 kB
VmFlags: rd wr mr mw me ac nh
7f0000002000-7f0000003000 rw-p 00000000 00:00 0 
Size:                  4 kB
VmFlags: rd wr mr mw me ac nh
7f0000003000-7f0000004000 ---p 00000000 00:00 0 
VmFlags: mr mw me ac
7f0000010000-7f0000011000 rw-s 00000000 00:01 4242                       /dev/zero (deleted)
VmFlags: rd wr sh mr mw me ms
7f0000020000-7f0000021000 r--p 00001000 fe:00 77                         /tmp/x y
VmFlags: rd mr mw me
";

    #[test]
    fn parses_headers_and_flags() {
        let v = parse_smaps(SAMPLE).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v[0].start, 0x7f00_0000_0000);
        assert_eq!(v[0].vm_flags, ["me", "mr", "mw", "nh", "rd", "wr"]);
        assert_eq!(v[3].path, "/dev/zero (deleted)");
        assert!(v[3].is_shared() && v[3].is_file());
        assert_eq!(v[4].path, "/tmp/x y");
        assert_eq!(v[4].offset, 0x1000);
    }

    #[test]
    fn normalize_merges_only_equivalent_neighbours() {
        let v = normalize(&parse_smaps(SAMPLE).unwrap());
        assert_eq!(v.len(), 4);
        assert_eq!((v[0].start, v[0].end), (0x7f00_0000_0000, 0x7f00_0000_3000));
        assert_eq!(v[1].perms, "---p");
    }

    #[test]
    fn diff_reports_changed_protection() {
        let before = parse_smaps(SAMPLE).unwrap();
        let mut after = before.clone();
        after[2].perms = "r--p".into();
        let d = diff(&before, &after, true);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("lost: 7f0000003000-7f0000004000 ---p"));
        assert!(diff(&before, &before, true).is_empty());
    }

    #[test]
    fn within_selects_overlapping() {
        let v = parse_smaps(SAMPLE).unwrap();
        let w = within(&v, &[(0x7f00_0000_2800, 0x7f00_0000_3001)]);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn rejects_garbage_header() {
        // Not a header (not hex): skipped like any statistic line.
        assert!(parse_smaps("zz-00 rw-p 0 00:00 0\n").unwrap().is_empty());
        assert!(parse_smaps("1000-2000 rw-p xyz 00:00 0\n").is_err());
        assert!(parse_smaps("VmFlags: rd\n").is_err());
    }
}
