//! `/proc/<pid>/fdinfo/<fd>`: file position, open flags, mount id.

/// The common fields of an fdinfo file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FdInfo {
    pub pos: u64,
    /// `O_*` flags, including `O_CLOEXEC` for the fd.
    pub flags: u32,
    pub mnt_id: u64,
}

/// Parses the text of an fdinfo file; `pos` and `flags` are required.
pub fn parse(text: &str) -> Result<FdInfo, String> {
    let mut info = FdInfo::default();
    let mut seen = 0u8;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "pos" => {
                info.pos = value.parse().map_err(|e| format!("pos {value:?}: {e}"))?;
                seen |= 1;
            }
            "flags" => {
                info.flags =
                    u32::from_str_radix(value, 8).map_err(|e| format!("flags {value:?}: {e}"))?;
                seen |= 2;
            }
            "mnt_id" => {
                info.mnt_id = value
                    .parse()
                    .map_err(|e| format!("mnt_id {value:?}: {e}"))?;
            }
            _ => {}
        }
    }
    if seen != 3 {
        return Err("pos or flags missing".into());
    }
    Ok(info)
}

/// The value of `key:` in fdinfo text (the kind-specific fields: `eventfd-count`, `clockid`, `Pid`, ...).
pub fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The hexadecimal value of `key:` in fdinfo text.
pub fn hex_field(info: &str, key: &str) -> Result<u64, String> {
    let v = field(info, key).ok_or_else(|| format!("fdinfo has no {key}"))?;
    u64::from_str_radix(v, 16).map_err(|e| format!("fdinfo {key} {v:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sample() {
        let i = parse("pos:\t12\nflags:\t02100002\nmnt_id:\t25\nino:\t77\n").unwrap();
        assert_eq!(i.pos, 12);
        assert_eq!(i.flags, 0o2100002);
        assert_eq!(i.mnt_id, 25);
    }

    proptest! {
        #[test]
        fn roundtrip(pos in any::<u64>(), flags in any::<u32>(), mnt in any::<u64>()) {
            let i = parse(&format!("pos:\t{pos}\nflags:\t{flags:o}\nmnt_id:\t{mnt}\n")).unwrap();
            prop_assert_eq!(i, FdInfo { pos, flags, mnt_id: mnt });
        }

        #[test]
        fn never_panics(t in "\\PC{0,200}") {
            let _ = parse(&t);
        }
    }
}
