//! The image directory is untrusted input (issue 11, part 4): nothing in it is followed, no error shows a
//! byte of what a file holds, an image that anyone but its reader (or root) could have changed is refused
//! with the fix named, and the temporary directories of killed dumps are removed by the next dump into
//! the same parent when their writer is gone. Run as root (the owner checks chown to another uid).

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{open_and_verify, reseal_inventory, small_image};
use dormant_image::{ImageError, ImageReader, ImageWriter};

/// What reading `dir` the way verify, show and restore do reports, as text (empty when it passes).
fn load_errors(dir: &Path) -> String {
    match open_and_verify(dir) {
        Ok(_) => String::new(),
        Err(errors) => errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
}

const SECRET: &[u8] = b"root:*:SECRET-CONTENT:19000:0:99999:7:::\n";

/// A link in place of a listed file or of the inventory is refused as a link, its target never read;
/// a regular file of foreign content in their place is refused by its magic, without showing a byte.
#[test]
fn links_and_foreign_files_are_refused_without_showing_their_content() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_image(tmp.path(), "img");
    let secret = tmp.path().join("shadow");
    fs::write(&secret, SECRET).unwrap();
    chmod(&secret, 0o600);
    let leaked = |text: &str| {
        text.contains("SECRET")
            || text.contains("72, 6f")
            || text.contains("0x72")
            || text.contains("root:")
    };
    for name in ["flat", "pages-t1.img", "inventory"] {
        let path = dir.join(name);
        let original = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        symlink(&secret, &path).unwrap();
        if name != "inventory" {
            // The inventory agrees with the link's target: only the link itself can be refused.
            reseal_inventory_following(&dir, name, &secret);
        }
        let text = match ImageReader::open(&dir) {
            Err(e) => e.to_string(),
            Ok(_) => load_errors(&dir),
        };
        assert!(
            text.contains(name) && text.contains("symbolic link") && !leaked(&text),
            "{name} as a link to a secret: {text}"
        );
        fs::remove_file(&path).unwrap();
        fs::write(&path, SECRET).unwrap();
        chmod(&path, 0o600);
        if name != "inventory" {
            reseal_inventory(&dir);
        }
        let text = match ImageReader::open(&dir) {
            Err(e) => e.to_string(),
            Ok(_) => load_errors(&dir),
        };
        // (Page data is refused through its index, which names the index file.)
        assert!(
            !text.is_empty() && !leaked(&text),
            "{name} holding a secret: {text}"
        );
        if name != "pages-t1.img" {
            assert!(text.contains("bad magic"), "{name}: {text}");
        }
        fs::write(&path, &original).unwrap();
        reseal_inventory(&dir);
    }
    open_and_verify(&dir).unwrap();
}

/// Lists `name` in the inventory with the length and crc of `target` (what a link would show if followed).
fn reseal_inventory_following(dir: &Path, name: &str, target: &Path) {
    let link = dir.join(name);
    fs::remove_file(&link).unwrap();
    fs::copy(target, &link).unwrap();
    reseal_inventory(dir);
    fs::remove_file(&link).unwrap();
    symlink(target, &link).unwrap();
}

/// ssh's StrictModes for images: a directory or file writable by group or others, or owned by another
/// user than the reader (root reads root's images only), is refused naming the path, what is wrong with
/// it and the command that fixes it.
#[test]
fn images_others_could_change_are_refused_with_the_fix() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run as root: the test chowns to another uid"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_image(tmp.path(), "img");
    let shown = dir.display().to_string();
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    for (mode, who) in [
        (0o777, "group and others"),
        (0o770, "its group"),
        (0o702, "others"),
    ] {
        chmod(&dir, mode);
        let e = ImageReader::open(&dir).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ImageError::Untrusted { .. }), "{text}");
        assert!(
            text.contains(&format!("{shown}: mode {mode:04o} (writable by {who})"))
                && text.contains(&format!("chmod -R go-w {shown}")),
            "{text}"
        );
    }
    chmod(&dir, 0o755);
    open_and_verify(&dir).unwrap();
    chmod(&dir, 0o700);

    let flat = dir.join("flat");
    chmod(&flat, 0o666);
    let text = load_errors(&dir);
    assert!(
        text.contains(&format!(
            "{shown}/flat: mode 0666 (writable by group and others)"
        )) && text.contains(&format!("chmod go-w {shown}/flat")),
        "{text}"
    );
    chmod(&flat, 0o644);
    open_and_verify(&dir).unwrap();

    chown(&flat, 65534);
    let text = load_errors(&dir);
    assert!(
        text.contains(&format!("{shown}/flat: owned by uid 65534"))
            && text.contains(&format!("chown 0 {shown}/flat")),
        "{text}"
    );
    chown(&flat, 0);
    chown(&dir, 65534);
    let text = ImageReader::open(&dir).unwrap_err().to_string();
    assert!(
        text.contains(&format!("{shown}: owned by uid 65534"))
            && text.contains(&format!("chown -R 0 {shown}")),
        "{text}"
    );
    chown(&dir, 0);
    open_and_verify(&dir).unwrap();
}

/// A pid that existed and is gone (reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn stale_dir(parent: &Path, name: &str) -> std::path::PathBuf {
    let d = parent.join(name);
    fs::create_dir(&d).unwrap();
    chmod(&d, 0o700);
    fs::write(d.join("pages-task-1.img"), vec![7u8; 8192]).unwrap();
    d
}

/// A dump starting into a parent removes the temporary directories killed dumps left there (writer pid
/// gone, lock free, only regular files), and leaves everything else: a running writer's (live pid), a
/// directory whose lock someone holds (a writer in another pid namespace), anything else in the name's
/// place.
#[test]
fn stale_temporary_directories_of_dead_writers_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path();
    let (dead, dead2, dead3) = (dead_pid(), dead_pid(), dead_pid());
    let mut live = Command::new("/bin/sleep").arg("100").spawn().unwrap();
    let stale = stale_dir(parent, &format!(".img.tmp-{dead}-0"));
    let stale_other_name = stale_dir(parent, &format!(".other.img.tmp-{dead}-7"));
    let running = stale_dir(parent, &format!(".img.tmp-{}-0", live.id()));
    let locked = stale_dir(parent, &format!(".img.tmp-{dead2}-1"));
    let lock = nix::fcntl::Flock::lock(
        fs::File::open(&locked).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let nested = stale_dir(parent, &format!(".img.tmp-{dead3}-2"));
    fs::create_dir(nested.join("sub")).unwrap();
    let unrelated = stale_dir(parent, &format!(".img.tmp-{dead3}-x"));

    let w = ImageWriter::create(&parent.join("img")).unwrap();
    for gone in [&stale, &stale_other_name] {
        assert!(!gone.exists(), "{} was not removed", gone.display());
    }
    for kept in [&running, &locked, &nested, &unrelated] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    // The new writer's own directory is locked: a second dump does not take it for stale even with
    // its pid unseen.
    let own = w.temp_dir().to_path_buf();
    assert!(nix::fcntl::Flock::lock(
        fs::File::open(&own).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock
    )
    .is_err());
    drop(w);
    drop(lock);
    live.kill().unwrap();
    live.wait().unwrap();
    let _w = ImageWriter::create(&parent.join("img")).unwrap();
    for gone in [&running, &locked] {
        assert!(!gone.exists(), "{} was not removed", gone.display());
    }
    assert!(nested.exists() && unrelated.exists());
}
