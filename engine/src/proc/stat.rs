//! `/proc/<pid>/stat`: state, start time (the pid-reuse guard) and the mm layout fields.

/// The fields of `/proc/<pid>/stat` the dumper uses (field numbers as in proc(5), 1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcStat {
    /// Field 3.
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    pub tty_nr: u32,
    pub num_threads: u32,
    /// Field 22, in clock ticks since boot: with the pid it identifies a process across pid reuse.
    pub start_time: u64,
    /// Fields 26-28.
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    /// Fields 45-51.
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Field 52: the wait status of a zombie (0 while the process lives, or when the kernel is too old to
    /// show it).
    pub exit_code: u32,
}

/// Parses the text of `/proc/<pid>/stat`. The comm field may hold spaces and parentheses, so the fixed
/// fields are counted from the last `)`.
pub fn parse(text: &str) -> Result<ProcStat, String> {
    let close = text.rfind(')').ok_or("no ')' after comm")?;
    let rest = &text[close + 1..];
    // rest[0] is field 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<&str, String> {
        fields
            .get(n - 3)
            .copied()
            .ok_or_else(|| format!("field {n} missing"))
    };
    let num = |n: usize| -> Result<u64, String> {
        let f = field(n)?;
        // The fields read here are never negative (tpgid, which can be -1, is not read).
        f.parse::<u64>()
            .map_err(|e| format!("field {n} {f:?}: {e}"))
    };
    let small = |n: usize| -> Result<u32, String> {
        let v = num(n)?;
        u32::try_from(v).map_err(|_| format!("field {n} out of range: {v}"))
    };
    let state = field(3)?.chars().next().ok_or("empty state field")?;
    Ok(ProcStat {
        state,
        ppid: small(4)?,
        pgrp: small(5)?,
        session: small(6)?,
        tty_nr: small(7)?,
        num_threads: small(20)?,
        start_time: num(22)?,
        start_code: num(26)?,
        end_code: num(27)?,
        start_stack: num(28)?,
        start_data: num(45)?,
        end_data: num(46)?,
        start_brk: num(47)?,
        arg_start: num(48)?,
        arg_end: num(49)?,
        env_start: num(50)?,
        env_end: num(51)?,
        exit_code: small(52).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(comm: &str, vals: &[u64]) -> String {
        let mut s = format!("1234 ({comm}) S");
        for v in vals {
            s.push(' ');
            s.push_str(&v.to_string());
        }
        s.push('\n');
        s
    }

    #[test]
    fn real_line() {
        let t = "42 (sleep) S 1 42 42 34816 42 4194304 100 0 0 0 0 0 0 0 20 0 1 0 777 2000000 100 \
                 18446744073709551615 94000000 94100000 140720000000000 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 \
                 94200000 94300000 94400000 140720000001000 140720000001100 140720000001100 \
                 140720000002000 0\n";
        let s = parse(t).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.num_threads, 1);
        assert_eq!(s.start_time, 777);
        assert_eq!(s.start_code, 94000000);
        assert_eq!(s.end_code, 94100000);
        assert_eq!(s.start_stack, 140720000000000);
        assert_eq!(s.start_data, 94200000);
        assert_eq!(s.start_brk, 94400000);
        assert_eq!(s.env_end, 140720000002000);
    }

    #[test]
    fn truncated_is_an_error() {
        assert!(parse("1 (x) S 1 2 3").is_err());
        assert!(parse("garbage").is_err());
    }

    proptest! {
        #[test]
        fn any_comm_and_values(comm in "[ -~]{0,16}", vals in proptest::collection::vec(0u64..=u64::from(u32::MAX), 50)) {
            let s = parse(&line(&comm, &vals)).unwrap();
            // Field n is vals[n - 4] (vals start at field 4).
            prop_assert_eq!(s.start_time, vals[22 - 4]);
            prop_assert_eq!(s.start_code, vals[26 - 4]);
            prop_assert_eq!(s.start_stack, vals[28 - 4]);
            prop_assert_eq!(s.start_data, vals[45 - 4]);
            prop_assert_eq!(s.env_end, vals[51 - 4]);
        }

        #[test]
        fn never_panics(t in "\\PC{0,300}") {
            let _ = parse(&t);
        }
    }
}
