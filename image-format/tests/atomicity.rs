//! The writer's contract: nothing appears at the target until commit, an uncommitted writer leaves nothing
//! behind, modes are exact whatever the umask, existing images are replaced and other directories are not,
//! and the reader checks what the inventory claims (format major, architecture, header/content agreement).

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{info, nested, open_and_verify, small_image, Flat, Nested};
use dormant_image::record_file::encode_records;
use dormant_image::{ImageError, ImageReader, ImageWriter, FORMAT_MAJOR};

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn dropped_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    {
        let mut w = ImageWriter::create(&target).unwrap();
        w.write_records("nested", &[nested(1)]).unwrap();
        let ps = w.page_store("p").unwrap();
        ps.write_extent(0, 0, &[1u8; 4096]).unwrap();
        assert!(w.temp_dir().join("pages-p.img").is_file());
        assert!(
            w.temp_dir().starts_with(tmp.path()),
            "temporary directory must be a sibling"
        );
        assert!(!target.exists());
    }
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn dropped_record_file_writer_removes_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut w = ImageWriter::create(&target).unwrap();
    {
        let mut s = w.record_file::<Flat>("partial").unwrap();
        s.push(&Flat {
            a: 1,
            b: true,
            c: 0,
        })
        .unwrap();
    }
    assert!(!w.temp_dir().join("partial").exists());
    w.write_records(
        "partial",
        &[Flat {
            a: 2,
            b: false,
            c: 1,
        }],
    )
    .unwrap();
    w.commit(info()).unwrap();
    let r = ImageReader::open(&target).unwrap();
    assert_eq!(
        r.read_single::<Flat>("partial").unwrap(),
        Flat {
            a: 2,
            b: false,
            c: 1
        }
    );
}

/// Modes are exact even under a umask that would strip the owner's bits. Only this test in this binary
/// touches the umask.
#[test]
fn commit_sets_exact_modes_whatever_the_umask() {
    // SAFETY: umask(2) only swaps the process's file mode mask; it cannot fail.
    let old = unsafe { libc::umask(0o277) };
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_image(tmp.path(), "img");
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    assert_eq!(mode(&dir), 0o700);
    let names = entries(&dir);
    assert_eq!(names.len(), 5);
    for name in names {
        assert_eq!(mode(&dir.join(&name)), 0o600, "{name}");
    }
    assert_eq!(
        entries(tmp.path()),
        ["img"],
        "no temporary or old directory left"
    );
}

#[test]
fn commit_replaces_an_image_or_an_empty_dir_but_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    fs::create_dir(&target).unwrap();
    let mut w = ImageWriter::create(&target).unwrap();
    w.write_records("nested", &[nested(1)]).unwrap();
    w.commit(info()).unwrap();

    let mut w = ImageWriter::create(&target).unwrap();
    w.write_records(
        "flat",
        &[Flat {
            a: 9,
            b: true,
            c: 9,
        }],
    )
    .unwrap();
    w.commit(info()).unwrap();
    let r = ImageReader::open(&target).unwrap();
    assert!(!r.has_file("nested"));
    assert_eq!(r.read_single::<Flat>("flat").unwrap().a, 9);
    assert_eq!(entries(tmp.path()), ["img"]);

    let other = tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("precious"), b"keep").unwrap();
    assert!(matches!(
        ImageWriter::create(&other),
        Err(ImageError::Exists { .. })
    ));
    // Also when the directory fills up between create and commit.
    let late = tmp.path().join("late");
    let mut w = ImageWriter::create(&late).unwrap();
    w.write_records(
        "flat",
        &[Flat {
            a: 1,
            b: true,
            c: 1,
        }],
    )
    .unwrap();
    fs::create_dir(&late).unwrap();
    fs::write(late.join("precious"), b"keep").unwrap();
    assert!(matches!(w.commit(info()), Err(ImageError::Exists { .. })));
    assert_eq!(fs::read(late.join("precious")).unwrap(), b"keep");
    assert_eq!(fs::read(other.join("precious")).unwrap(), b"keep");
    assert_eq!(entries(tmp.path()), ["img", "late", "other"]);
}

#[test]
fn unfinished_page_store_blocks_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut w = ImageWriter::create(&target).unwrap();
    let ps = w.page_store("p").unwrap();
    ps.write_extent(0, 0, &[1u8; 4096]).unwrap();
    drop(ps);
    let err = w.commit(info()).unwrap_err();
    assert!(
        matches!(&err, ImageError::Unfinished { file } if file.contains("-p")),
        "{err}"
    );
    assert!(!target.exists());
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn page_store_of_another_writer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = ImageWriter::create(&tmp.path().join("a")).unwrap();
    let mut b = ImageWriter::create(&tmp.path().join("b")).unwrap();
    let ps = a.page_store("p").unwrap();
    let _other = b.page_store("p").unwrap();
    assert!(matches!(
        b.finish_page_store(ps),
        Err(ImageError::ForeignPageStore { .. })
    ));
}

#[test]
fn bad_and_duplicate_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
    for name in [
        "",
        "a/b",
        ".hidden",
        "inventory",
        "pages-x.img",
        "pagemap-x",
        "..",
        &"n".repeat(256),
    ] {
        assert!(
            matches!(
                w.write_records::<Flat>(name, &[]),
                Err(ImageError::BadName { .. })
            ),
            "{name:?}"
        );
    }
    assert!(matches!(
        w.page_store("a/b"),
        Err(ImageError::BadName { .. })
    ));
    assert!(matches!(w.page_store(""), Err(ImageError::BadName { .. })));
    w.write_records::<Flat>("f", &[]).unwrap();
    assert!(matches!(
        w.write_records::<Flat>("f", &[]),
        Err(ImageError::Duplicate { .. })
    ));
    let _p = w.page_store("p").unwrap();
    assert!(matches!(
        w.page_store("p"),
        Err(ImageError::Duplicate { .. })
    ));
    let mut arch = info();
    arch.arch = "sparc".into();
    assert!(matches!(w.commit(arch), Err(ImageError::Arch { .. })));
}

#[test]
fn directory_without_inventory_is_not_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        ImageReader::open(tmp.path()),
        Err(ImageError::NotAnImage { .. })
    ));
    fs::write(tmp.path().join("core-1"), b"x").unwrap();
    assert!(matches!(
        ImageReader::open(tmp.path()),
        Err(ImageError::NotAnImage { .. })
    ));
}

/// Rewrites the inventory with `edit` applied, then patches the header's version fields.
fn rewrite_inventory(
    dir: &Path,
    base: &dormant_image::Inventory,
    edit: impl FnOnce(&mut dormant_image::Inventory),
    major: u16,
    minor: u16,
) {
    let mut inv = base.clone();
    edit(&mut inv);
    let mut bytes = encode_records("inventory", &[inv]).unwrap();
    bytes[8..10].copy_from_slice(&major.to_le_bytes());
    bytes[10..12].copy_from_slice(&minor.to_le_bytes());
    fs::write(dir.join("inventory"), bytes).unwrap();
}

#[test]
fn versions_and_arch_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_image(tmp.path(), "img");
    let inv = ImageReader::open(&dir).unwrap().inventory().clone();
    assert_eq!(
        (inv.format_major, inv.format_minor),
        (FORMAT_MAJOR, dormant_image::FORMAT_MINOR)
    );
    assert_eq!(
        inv.files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["flat", "nested", "pagemap-t1", "pages-t1.img"]
    );

    // A newer minor is accepted when every file says so (what a newer minor adds is refused where it is
    // met); files of another minor than the inventory's are refused (one writer writes all of them).
    for f in ["flat", "nested", "pagemap-t1"] {
        common::set_file_format(&dir, f, FORMAT_MAJOR, 7);
    }
    common::reseal_inventory(&dir);
    rewrite_inventory(
        &dir,
        &ImageReader::open(&dir).unwrap().inventory().clone(),
        |i| i.format_minor = 7,
        FORMAT_MAJOR,
        7,
    );
    open_and_verify(&dir).unwrap();
    common::set_file_format(&dir, "flat", FORMAT_MAJOR, 0);
    common::reseal_inventory(&dir);
    let errors = open_and_verify(&dir).unwrap_err();
    assert!(
        errors.iter().any(|e| e
            .to_string()
            .contains("flat: header says format 3.0, the inventory 3.7")),
        "{errors:?}"
    );
    for f in ["nested", "pagemap-t1"] {
        common::set_file_format(&dir, f, FORMAT_MAJOR, 0);
    }
    common::reseal_inventory(&dir);
    let inv = ImageReader::open(&dir).unwrap().inventory().clone();
    rewrite_inventory(&dir, &inv, |i| i.format_minor = 0, FORMAT_MAJOR, 0);
    let inv = ImageReader::open(&dir).unwrap().inventory().clone();
    open_and_verify(&dir).unwrap();
    // Another major is refused, with both versions in the message.
    rewrite_inventory(
        &dir,
        &inv,
        |i| i.format_major = FORMAT_MAJOR + 1,
        FORMAT_MAJOR + 1,
        0,
    );
    let err = ImageReader::open(&dir).unwrap_err();
    assert!(
        matches!(err, ImageError::Version { found_major, .. } if found_major == FORMAT_MAJOR + 1),
        "{err}"
    );
    assert!(
        err.to_string().contains("inventory")
            && err
                .to_string()
                .contains(&format!("format {}.0 is not readable", FORMAT_MAJOR + 1))
            && err.to_string().contains(&format!(
                "reads format {FORMAT_MAJOR}.{}",
                dormant_image::FORMAT_MINOR
            )),
        "{err}"
    );
    // Header and content disagreeing is refused.
    rewrite_inventory(
        &dir,
        &inv,
        |i| i.format_major = FORMAT_MAJOR,
        FORMAT_MAJOR,
        3,
    );
    assert!(matches!(
        ImageReader::open(&dir),
        Err(ImageError::Inconsistent { .. })
    ));
    // Another architecture is refused.
    rewrite_inventory(&dir, &inv, |i| i.arch = "aarch64".into(), FORMAT_MAJOR, 0);
    assert!(matches!(
        ImageReader::open(&dir),
        Err(ImageError::Arch { .. })
    ));
    // A listed name that escapes the directory is refused.
    rewrite_inventory(
        &dir,
        &inv,
        |i| i.files[0].name = "../x".into(),
        FORMAT_MAJOR,
        0,
    );
    assert!(matches!(
        ImageReader::open(&dir),
        Err(ImageError::Inconsistent { .. })
    ));
    // A record file of another major is refused by the record reader: by its whole-file crc, and by its
    // header once the inventory's crc is made to match.
    rewrite_inventory(&dir, &inv, |_| {}, FORMAT_MAJOR, 0);
    open_and_verify(&dir).unwrap();
    let mut nested_bytes = fs::read(dir.join("nested")).unwrap();
    nested_bytes[8] = 9;
    fs::write(dir.join("nested"), &nested_bytes).unwrap();
    let r = ImageReader::open(&dir).unwrap();
    assert!(matches!(
        r.read_records::<Nested>("nested"),
        Err(ImageError::FileChecksum { .. })
    ));
    common::reseal_inventory(&dir);
    let r = ImageReader::open(&dir).unwrap();
    assert!(matches!(
        r.read_records::<Nested>("nested"),
        Err(ImageError::Version { found_major: 9, .. })
    ));
}
