//! The image directory is untrusted input (issue 11, part 4), through the CLI on an image of a real
//! process: a link in the image dir, a directory or file others can write, a file owned by another user
//! are refused alike by `verify`, `show`, `show --json` and `restore`, naming the path and the fix, never
//! printing a byte of what a link points to; the refused restore leaves the image's pid free; and the dump
//! that made the image removed the temporary directory a killed dump had left. On 1e0e57f
//! all of them were read (a link to /etc/shadow printed `bad magic [72, 6f, 6f, 74, ...]`) and restored.
//! Privileged: dumps a real process and chowns files.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::*;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

const SECRET: &str = "root:*:SECRET-CONTENT:19000:0:99999:7:::\n";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn untrusted_image_dirs_are_refused_by_every_reader() {
    require_root();
    let tmp = TempDir::new("untrusted");
    let img = tmp.0.join("img");
    let mut sleep = spawn_sleep();
    let pid = sleep.id();
    // What a dump killed before commit leaves (its pid is gone): the next dump into the parent removes it
    // and says so.
    let mut gone = std::process::Command::new("/bin/true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = tmp.0.join(format!(".img.tmp-{dead}-0"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join(format!("pages-task-{dead}.img")), [0u8; 4096]).unwrap();
    // The dump returns once the killed target's pid is free: reap it meanwhile.
    let dump = std::process::Command::new(DORMANT)
        .args(["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sleep.wait().unwrap();
    let o = dump.wait_with_output().unwrap();
    assert!(o.status.success(), "dump failed:\n{}", text(&o));
    assert!(
        !stale.exists(),
        "the stale temporary directory is still there"
    );
    assert!(
        text(&o).contains(&format!(
            "removed {}: the temporary directory (4096 bytes) of a dump by pid {dead}",
            stale.display()
        )),
        "the dump does not say it removed {}:\n{}",
        stale.display(),
        text(&o)
    );
    assert!(
        wait_for(|| !Path::new(&format!("/proc/{pid}")).exists()),
        "pid {pid} still taken after the dump"
    );
    let secret = tmp.0.join("shadow");
    std::fs::write(&secret, SECRET).unwrap();
    let core = format!("core-{pid}");
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let chown = |p: &Path, uid: u32| {
        nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap()
    };
    type Mutation<'a> = (&'a str, Box<dyn Fn(&Path) -> Vec<String> + 'a>);
    let cases: Vec<Mutation> = vec![
        (
            "inventory is a link to a secret",
            Box::new(|d: &Path| {
                std::fs::remove_file(d.join("inventory")).unwrap();
                symlink(&secret, d.join("inventory")).unwrap();
                vec!["inventory: is a symbolic link".into()]
            }),
        ),
        (
            "a listed file is a link to a secret",
            Box::new(|d: &Path| {
                std::fs::remove_file(d.join(&core)).unwrap();
                symlink(&secret, d.join(&core)).unwrap();
                vec![format!("{core}: is a symbolic link")]
            }),
        ),
        (
            "the inventory holds a secret",
            Box::new(|d: &Path| {
                std::fs::write(d.join("inventory"), SECRET).unwrap();
                vec!["inventory: bad magic".into()]
            }),
        ),
        (
            "a 0777 image dir",
            Box::new(|d: &Path| {
                chmod(d, 0o777);
                vec![
                    format!("{}: mode 0777", d.display()),
                    format!("chmod -R go-w {}", d.display()),
                ]
            }),
        ),
        (
            "a 0666 file",
            Box::new(|d: &Path| {
                let f = d.join(&core);
                chmod(&f, 0o666);
                vec![
                    format!("{}: mode 0666", f.display()),
                    format!("chmod go-w {}", f.display()),
                ]
            }),
        ),
        (
            "a file owned by nobody",
            Box::new(|d: &Path| {
                let f = d.join(&core);
                chown(&f, 65534);
                vec![
                    format!("{}: owned by uid 65534", f.display()),
                    format!("chown 0 {}", f.display()),
                ]
            }),
        ),
        (
            "an image dir owned by nobody",
            Box::new(|d: &Path| {
                chown(d, 65534);
                vec![
                    format!("{}: owned by uid 65534", d.display()),
                    format!("chown -R 0 {}", d.display()),
                ]
            }),
        ),
    ];
    for (i, (what, mutate)) in cases.iter().enumerate() {
        let copy = tmp.0.join(format!("case-{i}"));
        copy_dir(&img, &copy);
        let wanted = mutate(&copy);
        let d = copy.to_str().unwrap();
        for args in [
            vec!["verify", "-D", d],
            vec!["show", "-D", d],
            vec!["show", "--json", "-D", d],
            vec!["restore", "-d", "-D", d],
        ] {
            let o = dormant(&args);
            let msg = text(&o);
            assert!(
                !o.status.success(),
                "{what}: dormant {args:?} accepted it:\n{msg}"
            );
            for w in &wanted {
                assert!(
                    msg.contains(w.as_str()),
                    "{what}: dormant {args:?} does not say {w:?}:\n{msg}"
                );
            }
            assert!(
                !msg.contains("SECRET") && !msg.contains("72, 6f") && !msg.contains("root:"),
                "{what}: dormant {args:?} showed the secret:\n{msg}"
            );
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "{what}: dormant {args:?} left pid {pid}"
            );
        }
    }
    let o = dormant(&["verify", "-D", img.to_str().unwrap()]);
    assert!(o.status.success(), "the pristine image:\n{}", text(&o));
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}
