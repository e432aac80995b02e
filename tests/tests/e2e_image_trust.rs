//! Restore trusts nothing verify would reject (issue 11, part 3): a real image of a small process tree
//! (wl_tree: sessions, groups, a zombie, shared anonymous memory) is taken through each class of damage
//! the corruption tests of image-format know, on copies of it, and `dormant verify` and `dormant restore`
//! must agree: both refuse, and the restore refuses before it forks a process or changes a namespace
//! (traced), leaving every pid of the image free. On 1e0e57f the restore took several of these (an fds
//! file dropped from the inventory with checksums fixed, an unlisted file, a flipped header minor byte, a
//! shared object owned outside the tree). The good image is then restored and passes its own check.
//! Privileged.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use dormant_image::record_file::{decode_records, encode_records};
use dormant_image::records::{names, Fd, FdFile, FileId, Pid as ImgPid, ShmemObject};
use dormant_image::{ImageReader, Record};
use dormant_tests::harness::{
    self, dormant_bin, pid_is_free, run_watched, tree_ids, wait_until, Result, Spec, Workload,
};

fn copy_image(from: &Path, to: &Path) {
    fs::create_dir(to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o700)).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Lists every file of the image again with its present length and crc32 (what a forger does), leaving
/// out the names in `drop`; the inventory keeps its format version.
fn reseal(dir: &Path, drop: &[&str]) {
    let mut inv = ImageReader::open(dir).unwrap().inventory().clone();
    inv.files.retain(|f| !drop.contains(&f.name.as_str()));
    for f in &mut inv.files {
        let bytes = fs::read(dir.join(&f.name)).unwrap();
        f.len = bytes.len() as u64;
        f.crc32 = crc32fast::hash(&bytes);
    }
    let mut bytes = encode_records("inventory", &[inv.clone()]).unwrap();
    bytes[8..10].copy_from_slice(&inv.format_major.to_le_bytes());
    bytes[10..12].copy_from_slice(&inv.format_minor.to_le_bytes());
    fs::write(dir.join("inventory"), bytes).unwrap();
}

/// Rewrites record file `name` with `edit` applied to its records.
fn edit_records<R: Record>(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<R>)) {
    let path = dir.join(name);
    let mut records: Vec<R> = decode_records(name, &fs::read(&path).unwrap()).unwrap();
    edit(&mut records);
    fs::write(&path, encode_records(name, &records).unwrap()).unwrap();
}

fn flip(dir: &Path, name: &str, at: usize) {
    let path = dir.join(name);
    let mut bytes = fs::read(&path).unwrap();
    bytes[at] ^= 0x01;
    fs::write(&path, bytes).unwrap();
}

fn truncate(dir: &Path, name: &str, by: u64) {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.join(name))
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - by).unwrap();
}

/// The root's files of the image.
struct Names {
    fds: String,
    core: String,
    mm: String,
    data: String,
    index: String,
    data_len: usize,
}

type Mutate = fn(&Path, &Names);

#[test]
fn verify_and_restore_refuse_the_same_damaged_images() -> Result<()> {
    harness::require_root()?;
    let bin = dormant_bin()?;
    let mut w = Workload::start(Spec::workload("wl_tree", env!("CARGO_BIN_EXE_wl_tree")))?;
    let pids: Vec<i32> = tree_ids(w.pid()).unwrap().iter().map(|t| t.pid).collect();
    w.dump(false)?;
    let img = w.image_dir();
    let root = w.pid();
    let inv = ImageReader::open(&img).unwrap().inventory().clone();
    let listed = |name: &str| inv.file(name).is_some();
    let fds = names::fds(ImgPid(root as u32));
    let core = names::core(ImgPid(root as u32));
    let mm = names::mm(ImgPid(root as u32));
    let data = dormant_image::pages::data_file_name(&names::task_pages(ImgPid(root as u32)));
    let index = dormant_image::pages::index_file_name(&names::task_pages(ImgPid(root as u32)));
    let data_len = inv.file(&data).unwrap().len as usize;
    for name in [&fds, &core, &mm, &data, &index, &names::SHMEM.to_owned()] {
        assert!(listed(name), "the image of wl_tree lacks {name}: {inv:?}");
    }

    let n = Names {
        fds,
        core,
        mm,
        data,
        index,
        data_len,
    };
    let cases: Vec<(&str, Mutate)> = vec![
        (
            "the root's fds file dropped from the inventory, checksums fixed",
            |d, n| {
                fs::remove_file(d.join(&n.fds)).unwrap();
                reseal(d, &[&n.fds]);
            },
        ),
        (
            "an fd refers to a file the image lacks, checksums fixed",
            |d, n| {
                edit_records::<Fd>(d, &n.fds, |fds| {
                    fds.push(Fd {
                        fd: 77,
                        cloexec: false,
                        file: FdFile::Reg(FileId(0xdead)),
                    })
                });
                reseal(d, &[]);
            },
        ),
        ("an unlisted extra file", |d, _| {
            fs::write(d.join("core-1"), b"x").unwrap()
        }),
        ("a listed file missing", |d, n| {
            fs::remove_file(d.join(&n.core)).unwrap()
        }),
        (
            "a record file's header minor-version byte flipped",
            |d, n| flip(d, &n.core, 10),
        ),
        (
            "a record file's header minor-version byte flipped, checksums fixed",
            |d, n| {
                flip(d, &n.core, 10);
                reseal(d, &[]);
            },
        ),
        (
            "the inventory's header minor-version byte flipped",
            |d, _| flip(d, "inventory", 10),
        ),
        (
            "a shared memory object owned by a pid outside the tree, checksums fixed",
            |d, _| {
                edit_records::<ShmemObject>(d, names::SHMEM, |objects| {
                    objects[0].owner = ImgPid(1)
                });
                reseal(d, &[]);
            },
        ),
        ("a record file truncated by one byte", |d, n| {
            truncate(d, &n.mm, 1)
        }),
        (
            "a record file truncated by one byte, checksums fixed",
            |d, n| {
                truncate(d, &n.mm, 1);
                reseal(d, &[]);
            },
        ),
        ("page data truncated by a page", |d, n| {
            truncate(d, &n.data, 4096)
        }),
        ("page data truncated by a page, checksums fixed", |d, n| {
            truncate(d, &n.data, 4096);
            reseal(d, &[]);
        }),
        ("a bit flipped in page data", |d, n| {
            flip(d, &n.data, n.data_len / 2)
        }),
        ("a bit flipped in page data, checksums fixed", |d, n| {
            flip(d, &n.data, n.data_len - 1);
            reseal(d, &[]);
        }),
        (
            "a bit flipped in a record payload, checksums fixed",
            |d, n| {
                flip(d, &n.core, 30);
                reseal(d, &[]);
            },
        ),
        ("a bit flipped in a page index, checksums fixed", |d, n| {
            flip(d, &n.index, 24);
            reseal(d, &[]);
        }),
    ];

    let mut disagree = Vec::new();
    for (i, (what, mutate)) in cases.iter().enumerate() {
        let copy = w.scratch().join(format!("damaged-{i}"));
        copy_image(&img, &copy);
        mutate(&copy, &n);
        let verify = Command::new(&bin)
            .args(["verify", "-D"])
            .arg(&copy)
            .output()
            .unwrap();
        let verified = verify.status.success();
        let log = w.scratch().join(format!("restore-{i}.log"));
        let mut restore = Command::new(&bin);
        restore
            .args(["restore", "-d", "-D"])
            .arg(&copy)
            .arg("-o")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (status, made) = run_watched(restore, &bin);
        let text = fs::read_to_string(&log).unwrap_or_default();
        let all_free = wait_until(std::time::Duration::from_secs(5), || {
            pids.iter().all(|&p| pid_is_free(p))
        });
        if verified || status == 0 || !made.is_empty() || !all_free {
            disagree.push(format!(
                "{what}: verify {}, restore exit {status} after {made:?}, pids free: {all_free}\n\
                 verify said: {}\nrestore said: {text}",
                if verified {
                    "accepted it"
                } else {
                    "refused it"
                },
                String::from_utf8_lossy(&verify.stderr),
            ));
            // A restored tree would hold the pids the next cases need.
            for &p in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            wait_until(std::time::Duration::from_secs(10), || {
                pids.iter().all(|&p| pid_is_free(p))
            });
        }
    }
    assert!(
        disagree.is_empty(),
        "{} of {} damaged images were not refused by both before anything ran:\n{}",
        disagree.len(),
        cases.len(),
        disagree.join("\n")
    );

    // The undamaged image restores and the tree passes its own check.
    let mut r = w.restore()?;
    w.expect_restored_pid(&mut r)?;
    w.release()?;
    w.finish_restored(&mut r)?;
    Ok(())
}
