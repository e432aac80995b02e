//! The one parser of `/proc/PID/maps` and `/proc/PID/smaps` (the dumper's VMA walk, the parasite's
//! syscall-site search, the restorer's view of itself, the kerndat probes and the tests all read it).

use std::fmt;

/// One mapping as maps/smaps lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MapsEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` in the permission column (`p` otherwise).
    pub shared: bool,
    /// Offset into the backing object, in bytes.
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The name column: a path (possibly with spaces, or ending in ` (deleted)`), `[heap]`, `[vdso]`...,
    /// or empty for anonymous memory.
    pub name: String,
    /// The two-letter `VmFlags` mnemonics (`rd`, `wr`, `gd`, `io`, `pf`, `dc`, ...); empty from maps.
    pub vm_flags: Vec<String>,
    /// The memory protection key (smaps `ProtectionKey`; 0, the default key, when absent or from maps).
    pub pkey: u32,
}

impl MapsEntry {
    /// Whether `VmFlags` lists `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }

    /// A mapping backed by a file named by path (not anonymous memory or a kernel special mapping).
    pub fn is_file(&self) -> bool {
        self.name.starts_with('/')
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never true for a parsed entry (the parser refuses empty ranges); kept for clippy's len/is_empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `[start, end)` lies inside this mapping.
    pub fn contains_range(&self, start: u64, end: u64) -> bool {
        self.start <= start && start <= end && end <= self.end
    }
}

/// A maps or smaps text that does not parse: the offending line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsError {
    pub line: String,
    pub why: String,
}

impl fmt::Display for MapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.why, self.line)
    }
}

impl std::error::Error for MapsError {}

/// Splits the first space-separated token off `s`.
fn token(s: &str) -> Option<(&str, &str)> {
    let t = s.trim_start_matches(' ');
    let end = t.find(' ').unwrap_or(t.len());
    let (tok, rest) = t.split_at(end);
    (!tok.is_empty()).then_some((tok, rest))
}

/// `None` when the line is not a mapping header at all; an error when it is one but malformed.
fn parse_header(line: &str) -> Option<Result<MapsEntry, String>> {
    // "start-end perms offset dev inode [name]"; the name may contain spaces.
    let (range, rest) = token(line)?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    Some(parse_header_rest(start, end, rest))
}

fn parse_header_rest(start: u64, end: u64, rest: &str) -> Result<MapsEntry, String> {
    let (perms, rest) = token(rest).ok_or("permissions missing")?;
    let perms = perms.as_bytes();
    if perms.len() != 4 {
        return Err(format!(
            "bad permissions {:?}",
            String::from_utf8_lossy(perms)
        ));
    }
    let (offset, rest) = token(rest).ok_or("offset missing")?;
    let offset = u64::from_str_radix(offset, 16).map_err(|e| format!("offset {offset:?}: {e}"))?;
    let (dev, rest) = token(rest).ok_or("device missing")?;
    let (maj, min) = dev
        .split_once(':')
        .ok_or_else(|| format!("bad device {dev:?}"))?;
    let dev_major = u32::from_str_radix(maj, 16).map_err(|e| format!("device {dev:?}: {e}"))?;
    let dev_minor = u32::from_str_radix(min, 16).map_err(|e| format!("device {dev:?}: {e}"))?;
    let (inode, rest) = token(rest).ok_or("inode missing")?;
    let inode = inode
        .parse::<u64>()
        .map_err(|e| format!("inode {inode:?}: {e}"))?;
    let name = rest.trim_start_matches(' ').to_string();
    if start >= end {
        return Err(format!("empty range {start:#x}-{end:#x}"));
    }
    Ok(MapsEntry {
        start,
        end,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset,
        dev_major,
        dev_minor,
        inode,
        name,
        vm_flags: Vec::new(),
        pkey: 0,
    })
}

/// Parses one maps line (`start-end perms offset dev inode [name]`).
pub fn parse_maps_line(line: &str) -> Result<MapsEntry, MapsError> {
    let err = |why: String| MapsError {
        line: line.to_string(),
        why,
    };
    match parse_header(line) {
        Some(r) => r.map_err(err),
        None => Err(err("not a mapping line".into())),
    }
}

/// Parses the text of `/proc/PID/maps`: every line a mapping, ascending, not overlapping.
pub fn parse_maps(text: &str) -> Result<Vec<MapsEntry>, MapsError> {
    parse(text, false)
}

/// Parses the text of `/proc/PID/smaps`: as maps, each entry followed by key lines and a `VmFlags` line,
/// which every entry must carry.
pub fn parse_smaps(text: &str) -> Result<Vec<MapsEntry>, MapsError> {
    parse(text, true)
}

fn parse(text: &str, smaps: bool) -> Result<Vec<MapsEntry>, MapsError> {
    let err = |line: &str, why: String| MapsError {
        line: line.to_string(),
        why,
    };
    let mut out: Vec<MapsEntry> = Vec::new();
    let mut has_flags = true;
    for line in text.lines() {
        if smaps {
            if let Some(rest) = line.strip_prefix("VmFlags:") {
                let cur = out
                    .last_mut()
                    .ok_or_else(|| err(line, "VmFlags before the first mapping".into()))?;
                cur.vm_flags = rest.split_whitespace().map(str::to_string).collect();
                has_flags = true;
                continue;
            }
            if let Some(rest) = line.strip_prefix("ProtectionKey:") {
                let cur = out
                    .last_mut()
                    .ok_or_else(|| err(line, "ProtectionKey before the first mapping".into()))?;
                cur.pkey = rest
                    .trim()
                    .parse()
                    .map_err(|_| err(line, "bad protection key".into()))?;
                continue;
            }
            // Key lines ("Rss:   4 kB") have a key ending in ':' as their first token; headers never do.
            if line.split(' ').next().unwrap_or("").ends_with(':') {
                continue;
            }
        }
        match parse_header(line) {
            Some(Ok(entry)) => {
                if !has_flags {
                    return Err(err(line, "the mapping before has no VmFlags".into()));
                }
                if out.last().is_some_and(|prev| entry.start < prev.end) {
                    return Err(err(line, "overlaps the previous mapping".into()));
                }
                out.push(entry);
                has_flags = !smaps;
            }
            Some(Err(why)) => return Err(err(line, why)),
            None if line.trim().is_empty() => {}
            None => return Err(err(line, "unexpected line".into())),
        }
    }
    if !has_flags {
        return Err(err("", "the last mapping has no VmFlags".into()));
    }
    Ok(out)
}

/// Reads and parses `/proc/PID/maps` of `pid` (a thread id works too).
pub fn read_maps(pid: i32) -> std::io::Result<Vec<MapsEntry>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    parse_maps(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads and parses this process's `/proc/self/maps`.
pub fn self_maps() -> std::io::Result<Vec<MapsEntry>> {
    let text = std::fs::read_to_string("/proc/self/maps")?;
    parse_maps(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (project rule)
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 fe:01 1835041                    /usr/bin/my prog
Size:                  8 kB
Rss:                   8 kB
VmFlags: rd mr mw me sd 
7ffd1c5e0000-7ffd1c601000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
VmFlags: rd wr mr mw me gd ac 
7ffd1c7f0000-7ffd1c7f4000 r--p 00000000 00:00 0                          [vvar]
ProtectionKey:         3
VmFlags: rd mr pf io de dd 
7f0000000000-7f0000001000 rw-s 00000000 00:01 4242                       /dev/zero (deleted)
VmFlags: rd wr sh mr mw me ms sd 
";

    #[test]
    fn smaps_sample() {
        // The sample is deliberately out of order at the end: overlapping/descending must be rejected.
        assert!(parse_smaps(SAMPLE).is_err());
        let ok: String = SAMPLE.lines().take(10).map(|l| format!("{l}\n")).collect();
        let v = parse_smaps(&ok).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].name, "/usr/bin/my prog");
        assert_eq!(v[0].inode, 1835041);
        assert_eq!((v[0].dev_major, v[0].dev_minor), (0xfe, 1));
        assert!(v[0].read && !v[0].write && !v[0].shared);
        assert!(v[1].has_flag("gd"));
        assert_eq!(v[2].name, "[vvar]");
        assert!(v[2].has_flag("io") && v[2].has_flag("pf"));
        assert_eq!((v[1].pkey, v[2].pkey), (0, 3));
        // An entry without VmFlags is refused by the smaps parser.
        assert!(parse_smaps("1000-2000 rw-p 00000000 00:00 0\n").is_err());
    }

    #[test]
    fn maps_file_anon_and_special_lines() {
        let v =
            parse_maps_line("55d0c0a00000-55d0c0a45000 r-xp 00021000 fe:01 1234    /usr/bin/a b")
                .unwrap();
        assert_eq!(
            (v.start, v.end, v.offset),
            (0x55d0c0a00000, 0x55d0c0a45000, 0x21000)
        );
        assert!(v.read && v.exec && !v.write && v.is_file());
        assert_eq!(v.name, "/usr/bin/a b");
        let anon = parse_maps_line("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(anon.name, "");
        assert!(!anon.exec && !anon.is_file());
        let vs =
            parse_maps_line("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]")
                .unwrap();
        assert_eq!(vs.name, "[vsyscall]");
        assert!(!vs.read && vs.exec);
        assert!(parse_maps_line("garbage").is_err());
        let all = parse_maps(
            "7f38caa05000-7f38caa07000 r-xp 00000000 00:00 0                          [vdso]\n\
             7f38caa08000-7f38caa09000 rw-p 00000000 00:00 0 \n",
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name, "[vdso]");
    }

    #[test]
    fn self_maps_and_smaps_parse() {
        // Other test threads map and unmap memory (thread stacks, malloc
        // arenas) while this runs, so compare maps and smaps only from a
        // window in which maps did not change around the smaps read.
        for _ in 0..100 {
            let before = self_maps().unwrap();
            let v = parse_smaps(&std::fs::read_to_string("/proc/self/smaps").unwrap()).unwrap();
            let after = self_maps().unwrap();
            assert!(v.iter().any(|e| e.name == "[stack]"));
            assert!(v.iter().all(|e| !e.vm_flags.is_empty()));
            let starts = |m: &[MapsEntry]| m.iter().map(|e| e.start).collect::<Vec<_>>();
            if starts(&before) != starts(&after) {
                continue;
            }
            assert_eq!(
                starts(&before),
                v.iter().map(|e| e.start).collect::<Vec<_>>()
            );
            return;
        }
        panic!("/proc/self/maps never held still across 100 reads");
    }

    proptest! {
        #[test]
        fn smaps_roundtrip(maps in proptest::collection::vec(
            (1u64..1000, 1u64..100, any::<[bool; 4]>(), 0u64..1 << 30, 0u32..256, 0u32..256, any::<u64>(),
             "[ -~]{0,30}", proptest::collection::vec("[a-z]{2}", 1..8)), 0..10)) {
            let mut text = String::new();
            let mut addr = 0x1000u64;
            let mut want = Vec::new();
            for (gap, pages, p, off, maj, min, ino, name, flags) in maps {
                let start = addr + gap * 4096;
                let end = start + pages * 4096;
                addr = end;
                let name = name.trim_start().to_string();
                let perms: String = [if p[0] {'r'} else {'-'}, if p[1] {'w'} else {'-'},
                                     if p[2] {'x'} else {'-'}, if p[3] {'s'} else {'p'}].iter().collect();
                text.push_str(&format!("{start:x}-{end:x} {perms} {off:08x} {maj:02x}:{min:02x} {ino} {name}\n"));
                text.push_str("Rss:                   8 kB\n");
                text.push_str(&format!("VmFlags: {} \n", flags.join(" ")));
                want.push((start, end, p, off, maj, min, ino, name, flags));
            }
            let got = parse_smaps(&text).unwrap();
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                prop_assert_eq!((g.start, g.end), (w.0, w.1));
                prop_assert_eq!([g.read, g.write, g.exec, g.shared], w.2);
                prop_assert_eq!(g.offset, w.3);
                prop_assert_eq!((g.dev_major, g.dev_minor), (w.4, w.5));
                prop_assert_eq!(g.inode, w.6);
                prop_assert_eq!(&g.name, &w.7);
                prop_assert_eq!(&g.vm_flags, &w.8);
            }
        }

        #[test]
        fn never_panics(t in "\\PC{0,400}") {
            let _ = parse_smaps(&t);
            let _ = parse_maps(&t);
        }
    }
}
