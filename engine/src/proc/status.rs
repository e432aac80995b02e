//! `/proc/<pid>/status`: credentials, umask, signal masks.

use dormant_image::records::Creds;

/// The fields of `/proc/<pid>/status` the dumper uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcStatus {
    pub umask: u32,
    pub creds: Creds,
    /// Thread-private and process-wide pending signal sets.
    pub sig_pnd: u64,
    pub shd_pnd: u64,
    /// Seccomp mode (0 = none).
    pub seccomp: u32,
    pub threads: u32,
    /// `NSpid`: the pid in each pid namespace from the reader's down to the process's own (empty on kernels
    /// without the line).
    pub ns_pids: Vec<u32>,
}

fn ids4(v: &str) -> Result<[u32; 4], String> {
    let parts: Vec<u32> = v
        .split_whitespace()
        .map(|s| s.parse::<u32>().map_err(|e| format!("{s:?}: {e}")))
        .collect::<Result<_, _>>()?;
    parts
        .try_into()
        .map_err(|p: Vec<u32>| format!("expected 4 ids, got {}", p.len()))
}

fn hex64(v: &str) -> Result<u64, String> {
    u64::from_str_radix(v.trim(), 16).map_err(|e| format!("{v:?}: {e}"))
}

/// Parses the text of `/proc/<pid>/status`. Every field below is required except `Umask` (absent on kernels
/// before 4.7, then 0o022 is assumed and logged by the caller), `Seccomp` and `NoNewPrivs`.
pub fn parse(text: &str) -> Result<ProcStatus, String> {
    let mut st = ProcStatus {
        umask: 0o022,
        ..Default::default()
    };
    let mut seen = 0u32;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let ctx = |e: String| format!("{key}: {e}");
        match key {
            "Umask" => {
                st.umask = u32::from_str_radix(value, 8).map_err(|e| ctx(e.to_string()))?;
            }
            "Uid" => {
                st.creds.uids = ids4(value).map_err(ctx)?;
                seen |= 1;
            }
            "Gid" => {
                st.creds.gids = ids4(value).map_err(ctx)?;
                seen |= 2;
            }
            "Groups" => {
                st.creds.groups = value
                    .split_whitespace()
                    .map(|s| s.parse::<u32>().map_err(|e| ctx(e.to_string())))
                    .collect::<Result<_, _>>()?;
            }
            "CapInh" => st.creds.cap_inh = hex64(value).map_err(ctx)?,
            "CapPrm" => st.creds.cap_prm = hex64(value).map_err(ctx)?,
            "CapEff" => st.creds.cap_eff = hex64(value).map_err(ctx)?,
            "CapBnd" => st.creds.cap_bnd = hex64(value).map_err(ctx)?,
            "CapAmb" => st.creds.cap_amb = hex64(value).map_err(ctx)?,
            "NoNewPrivs" => st.creds.no_new_privs = value == "1",
            "SigPnd" => {
                st.sig_pnd = hex64(value).map_err(ctx)?;
                seen |= 4;
            }
            "ShdPnd" => {
                st.shd_pnd = hex64(value).map_err(ctx)?;
                seen |= 8;
            }
            "Seccomp" => st.seccomp = value.parse().map_err(|e| ctx(format!("{e}")))?,
            "Threads" => st.threads = value.parse().map_err(|e| ctx(format!("{e}")))?,
            "NSpid" => {
                st.ns_pids = value
                    .split_whitespace()
                    .map(|s| s.parse::<u32>().map_err(|e| ctx(e.to_string())))
                    .collect::<Result<_, _>>()?;
            }
            _ => {}
        }
    }
    if seen != 15 {
        return Err("missing one of Uid, Gid, SigPnd, ShdPnd".into());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "Name:\tsleep\nUmask:\t0027\nState:\tS (sleeping)\nTgid:\t10\nPid:\t10\n\
Uid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\nGroups:\t10 20 \nThreads:\t1\nSigPnd:\t0000000000000100\n\
ShdPnd:\t0000000000000001\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n\
Seccomp:\t0\n";

    #[test]
    fn sample() {
        let s = parse(SAMPLE).unwrap();
        assert_eq!(s.umask, 0o027);
        assert_eq!(s.creds.uids, [0, 1, 2, 3]);
        assert_eq!(s.creds.gids, [4, 5, 6, 7]);
        assert_eq!(s.creds.groups, vec![10, 20]);
        assert_eq!(s.creds.cap_prm, 0x1ff_ffff_ffff);
        assert!(s.creds.no_new_privs);
        assert_eq!(s.sig_pnd, 0x100);
        assert_eq!(s.shd_pnd, 1);
        assert_eq!(s.threads, 1);
    }

    #[test]
    fn missing_uid_is_an_error() {
        assert!(parse("Gid:\t1 1 1 1\n").is_err());
    }

    proptest! {
        #[test]
        fn ids_roundtrip(u in proptest::array::uniform4(any::<u32>()), g in proptest::array::uniform4(any::<u32>()),
                         cap in any::<u64>(), mask in 0u32..0o777) {
            let t = format!("Umask:\t{mask:04o}\nUid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\nCapEff:\t{cap:016x}\n\
                             SigPnd:\t0\nShdPnd:\t0\n", u[0], u[1], u[2], u[3], g[0], g[1], g[2], g[3]);
            let s = parse(&t).unwrap();
            prop_assert_eq!(s.creds.uids, u);
            prop_assert_eq!(s.creds.gids, g);
            prop_assert_eq!(s.creds.cap_eff, cap);
            prop_assert_eq!(s.umask, mask);
        }

        #[test]
        fn never_panics(t in "\\PC{0,400}") {
            let _ = parse(&t);
        }
    }
}
