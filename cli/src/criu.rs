//! `dormant` invoked as `criu` (a symlink named `criu` first on PATH, or `runc --criu PATH`): container
//! runtimes run `criu swrk FD` for every checkpoint and restore, and some tools ask `criu --version` or
//! `criu check`. Those three are answered here, CRIU's way; anything else is refused with a pointer to
//! dormant's own commands.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use crate::out::{errln, outln};

/// Whether this process was started as `criu` (the last component of argv[0]).
fn invoked_as_criu(argv0: &OsString) -> bool {
    Path::new(argv0).file_name().is_some_and(|n| n == "criu")
}

/// Handles the command line of a process started as `criu`; `None` when it was started as anything
/// else (dormant's own command line then applies).
pub fn dispatch(args: &[OsString]) -> Option<ExitCode> {
    if !invoked_as_criu(args.first()?) {
        return None;
    }
    let rest: Vec<&str> = args[1..].iter().filter_map(|a| a.to_str()).collect();
    Some(match rest.as_slice() {
        ["swrk", fd, ..] => match fd.parse::<i32>() {
            Ok(fd) => ExitCode::from(dormant_criu_rpc::serve(fd).clamp(0, 255) as u8),
            Err(_) => {
                errln!("criu (dormant): swrk: {fd:?} is not an fd number");
                ExitCode::from(1)
            }
        },
        ["--version" | "-V", ..] => {
            let v = dormant_criu_rpc::version();
            let _ = outln!("Version: {}.{}", v.major_number, v.minor_number);
            let _ = outln!("Name: {}", v.name.unwrap_or_default());
            ExitCode::SUCCESS
        }
        ["check", opts @ ..] => check(opts),
        _ => {
            errln!(
                "criu (dormant): only `criu swrk FD`, `criu check` and `criu --version` are served; \
                 run `dormant --help` for dormant's own commands"
            );
            ExitCode::from(1)
        }
    })
}

/// `criu check [--feature NAME]...`: "Looks good." when every kernel feature dormant needs is there;
/// named features (CRIU's optional ones, such as mem_dirty_track or lazy_pages) are not provided.
fn check(opts: &[&str]) -> ExitCode {
    let mut features = Vec::new();
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        match *o {
            "--feature" => features.extend(it.next()),
            f if f.starts_with("--feature=") => features.push(&f[10..]),
            _ => {}
        }
    }
    if let Some(f) = features.first() {
        let _ = outln!("Feature {f} is not supported by dormant");
        return ExitCode::from(1);
    }
    let missing: Vec<String> = dormant_engine::kerndat::probe_all()
        .iter()
        .filter(|p| p.required && !p.status.is_available())
        .map(|p| format!("{:?} ({})", p.feature, p.kernel_option))
        .collect();
    if missing.is_empty() {
        let _ = outln!("Looks good.");
        ExitCode::SUCCESS
    } else {
        let _ = outln!("Error: missing kernel features: {}", missing.join(", "));
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_program_named_criu_is_criu() {
        assert!(invoked_as_criu(&"criu".into()));
        assert!(invoked_as_criu(&"/usr/local/bin/criu".into()));
        assert!(!invoked_as_criu(&"/usr/bin/dormant".into()));
        assert!(!invoked_as_criu(&"criu-wrapper".into()));
        assert!(dispatch(&["dormant".into(), "swrk".into(), "3".into()]).is_none());
    }
}
