//! `/proc/<pid>/smaps`: every mapping with its `VmFlags`.

/// One mapping as smaps lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmapsEntry {
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
    /// The name column: a path, `[heap]`, `[vdso]`..., or empty.
    pub name: String,
    /// The two-letter `VmFlags` mnemonics (`rd`, `wr`, `gd`, `io`, `pf`, `dc`, ...).
    pub vm_flags: Vec<String>,
}

impl SmapsEntry {
    /// Whether `VmFlags` lists `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }
}

/// Splits the first space-separated token off `s`.
fn token(s: &str) -> Option<(&str, &str)> {
    let t = s.trim_start_matches(' ');
    let end = t.find(' ').unwrap_or(t.len());
    let (tok, rest) = t.split_at(end);
    (!tok.is_empty()).then_some((tok, rest))
}

/// `None` when the line is not a mapping header at all; an error when it is one but malformed.
fn parse_header(line: &str) -> Option<Result<SmapsEntry, String>> {
    // "start-end perms offset dev inode [name]"; the name may contain spaces.
    let (range, rest) = token(line)?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    Some(parse_header_rest(start, end, rest))
}

fn parse_header_rest(start: u64, end: u64, rest: &str) -> Result<SmapsEntry, String> {
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
    Ok(SmapsEntry {
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
    })
}

/// Parses the text of `/proc/<pid>/smaps`. Each entry must carry a `VmFlags` line.
pub fn parse(text: &str) -> Result<Vec<SmapsEntry>, String> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    let mut has_flags = true;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            let cur = out.last_mut().ok_or("VmFlags before the first mapping")?;
            cur.vm_flags = rest.split_whitespace().map(str::to_string).collect();
            has_flags = true;
            continue;
        }
        // Key lines ("Rss:   4 kB") have a key ending in ':' as their first token; headers never do.
        let first = line.split(' ').next().unwrap_or("");
        if first.ends_with(':') {
            continue;
        }
        match parse_header(line) {
            Some(Ok(entry)) => {
                if !has_flags {
                    return Err(format!("mapping before {line:?} has no VmFlags"));
                }
                if let Some(prev) = out.last() {
                    if entry.start < prev.end {
                        return Err(format!("mapping {line:?} overlaps the previous one"));
                    }
                }
                out.push(entry);
                has_flags = false;
            }
            Some(Err(e)) => return Err(format!("{line:?}: {e}")),
            None if line.trim().is_empty() => {}
            None => return Err(format!("unexpected line {line:?}")),
        }
    }
    if !has_flags {
        return Err("last mapping has no VmFlags".into());
    }
    Ok(out)
}

#[cfg(test)]
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
VmFlags: rd mr pf io de dd 
7f0000000000-7f0000001000 rw-s 00000000 00:01 4242                       /dev/zero (deleted)
VmFlags: rd wr sh mr mw me ms sd 
";

    #[test]
    fn sample() {
        let e = parse(SAMPLE);
        // The sample is deliberately out of order at the end: overlapping/descending must be rejected.
        assert!(e.is_err());
        let ok: String = SAMPLE.lines().take(9).map(|l| format!("{l}\n")).collect();
        let v = parse(&ok).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].name, "/usr/bin/my prog");
        assert_eq!(v[0].inode, 1835041);
        assert_eq!((v[0].dev_major, v[0].dev_minor), (0xfe, 1));
        assert!(v[0].read && !v[0].write && !v[0].shared);
        assert!(v[1].has_flag("gd"));
        assert_eq!(v[2].name, "[vvar]");
        assert!(v[2].has_flag("io") && v[2].has_flag("pf"));
    }

    #[test]
    fn self_smaps_parses() {
        let t = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let v = parse(&t).unwrap();
        assert!(v.iter().any(|e| e.name == "[stack]"));
        assert!(v.iter().all(|e| !e.vm_flags.is_empty()));
    }

    proptest! {
        #[test]
        fn roundtrip(maps in proptest::collection::vec(
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
            let got = parse(&text).unwrap();
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
            let _ = parse(&t);
        }
    }
}
