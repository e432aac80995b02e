//! Corruption: every single-byte flip and every truncation of every file of a small image is reported by
//! open+verify with an error naming the file; garbage never makes the record reader panic.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

mod common;

use std::fs;
use std::path::Path;

use common::{open_and_verify, reseal_inventory, small_image, Flat, Nested};
use dormant_image::record_file::{decode_records, encode_records};
use dormant_image::{ImageError, ImageReader, PAGE_SIZE};
use proptest::prelude::*;

fn image_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Asserts that the corrupted image at `dir` is refused with an error naming `file`.
fn assert_refused(dir: &Path, file: &str, what: &str) -> Vec<ImageError> {
    match open_and_verify(dir) {
        Ok(report) => panic!("{file}: {what}: verify accepted a corrupt image: {report:?}"),
        Err(errors) => {
            assert!(
                errors.iter().any(|e| e.to_string().contains(file)),
                "{file}: {what}: no error names the file: {errors:?}"
            );
            errors
        }
    }
}

#[test]
fn every_byte_flip_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_image(tmp.path(), "img");
    open_and_verify(&dir).unwrap();
    let files = image_files(&dir);
    assert_eq!(
        files,
        ["flat", "inventory", "nested", "pagemap-t1", "pages-t1.img"]
    );
    let extents = ImageReader::open(&dir)
        .unwrap()
        .page_store("t1")
        .unwrap()
        .extents()
        .to_vec();

    for file in &files {
        let path = dir.join(file);
        let original = fs::read(&path).unwrap();
        for i in 0..original.len() {
            let mut bytes = original.clone();
            bytes[i] ^= 0xff;
            fs::write(&path, &bytes).unwrap();
            let errors = assert_refused(&dir, file, &format!("byte {i} flipped"));
            if file == "pages-t1.img" {
                // The extent holding the byte is named with its file offset.
                let e = extents
                    .iter()
                    .find(|e| (e.file_offset..e.file_offset + e.len).contains(&(i as u64)))
                    .unwrap();
                let needle = format!("checksum mismatch at byte {}", e.file_offset);
                assert!(
                    errors.iter().any(|err| err.to_string().contains(&needle)),
                    "byte {i}: {errors:?}"
                );
            }
        }
        fs::write(&path, &original).unwrap();
    }
    open_and_verify(&dir).unwrap();
}

#[test]
fn every_truncation_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_image(tmp.path(), "img");
    for file in image_files(&dir) {
        let path = dir.join(&file);
        let original = fs::read(&path).unwrap();
        for len in 0..original.len() {
            fs::write(&path, &original[..len]).unwrap();
            assert_refused(&dir, &file, &format!("truncated to {len}"));
        }
        fs::write(&path, &original).unwrap();
    }
    open_and_verify(&dir).unwrap();
}

#[test]
fn extra_missing_and_appended_files_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_image(tmp.path(), "img");
    fs::write(dir.join("stray"), b"x").unwrap();
    assert_refused(&dir, "stray", "unlisted file");
    fs::remove_file(dir.join("stray")).unwrap();

    let nested = fs::read(dir.join("nested")).unwrap();
    fs::remove_file(dir.join("nested")).unwrap();
    assert_refused(&dir, "nested", "missing file");
    fs::write(dir.join("nested"), &nested).unwrap();

    let mut longer = nested.clone();
    longer.extend_from_slice(&[0; 8]);
    fs::write(dir.join("nested"), &longer).unwrap();
    assert_refused(&dir, "nested", "appended bytes");
    fs::write(dir.join("nested"), &nested).unwrap();
    open_and_verify(&dir).unwrap();
}

/// A structurally valid index whose extents overlap or leave the data file is refused with the index
/// entry's position, even when the inventory's whole-file crcs are made to match.
#[test]
fn bad_page_index_is_named_with_offset() {
    use dormant_image::PageExtent;
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_image(tmp.path(), "img");
    let good = ImageReader::open(&dir)
        .unwrap()
        .page_store("t1")
        .unwrap()
        .extents()
        .to_vec();
    let cases: Vec<(Vec<PageExtent>, usize, &str)> = vec![
        (
            vec![
                good[0],
                PageExtent {
                    vaddr: good[0].vaddr,
                    ..good[1]
                },
            ],
            1,
            "below the end",
        ),
        (
            vec![
                good[0],
                PageExtent {
                    file_offset: good[0].file_offset,
                    ..good[1]
                },
            ],
            1,
            "overlaps another extent's data",
        ),
        (
            vec![PageExtent {
                file_offset: 8 * PAGE_SIZE,
                ..good[0]
            }],
            0,
            "beyond the data file",
        ),
        (
            vec![PageExtent {
                len: 100,
                ..good[0]
            }],
            0,
            "not page-aligned",
        ),
        (
            vec![PageExtent {
                vaddr: u64::MAX - 4095,
                ..good[0]
            }],
            0,
            "wraps",
        ),
    ];
    for (extents, index, reason) in cases {
        let bytes = encode_records("pagemap-t1", &extents).unwrap();
        fs::write(dir.join("pagemap-t1"), &bytes).unwrap();
        reseal_inventory(&dir);
        let r = ImageReader::open(&dir).unwrap();
        let err = r.page_store("t1").map(|_| ()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pagemap-t1")
                && text.contains(&format!("page extent {index} (entry at byte "))
                && text.contains(reason),
            "{text}"
        );
        let errors = r.verify().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].to_string(), text);
    }
}

#[test]
fn wrong_kind_and_unknown_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_image(tmp.path(), "img");
    let r = ImageReader::open(&dir).unwrap();
    let err = r.read_records::<Flat>("nested").unwrap_err();
    assert!(matches!(err, ImageError::WrongKind { .. }), "{err}");
    assert!(err.to_string().contains("nested"));
    assert!(matches!(
        r.read_records::<Flat>("nope"),
        Err(ImageError::NotListed { .. })
    ));
    assert!(matches!(
        r.read_single::<Flat>("flat"),
        Err(ImageError::EntryCount { found: 3, .. })
    ));
    assert_eq!(
        r.read_records::<Nested>("nested").unwrap(),
        vec![common::nested(1), common::nested(2)]
    );
}

#[test]
fn huge_length_prefix_is_refused_before_allocating() {
    // Header of a valid Nested file, then an entry claiming 4 GiB - 1 and one claiming 60 MiB.
    let mut bytes = encode_records::<Nested>("x", &[]).unwrap();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    let err = decode_records::<Nested>("x", &bytes).unwrap_err();
    assert!(
        matches!(err, ImageError::EntryTooLarge { offset: 16, .. }),
        "{err}"
    );

    let mut bytes = encode_records::<Nested>("x", &[]).unwrap();
    bytes.extend_from_slice(&(60u32 << 20).to_le_bytes());
    bytes.extend_from_slice(&[0; 12]);
    let err = decode_records::<Nested>("x", &bytes).unwrap_err();
    assert!(
        matches!(err, ImageError::Truncated { offset: 24, wanted, left: 8, .. } if wanted == 60 << 20),
        "{err}"
    );
}

proptest! {
    /// Arbitrary bytes never panic the reader.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_records::<Nested>("garbage", &bytes);
        let _ = decode_records::<Flat>("garbage", &bytes);
    }

    /// Garbage behind a valid header (so the entry framing and the decoder see it) never panics either,
    /// and whatever error comes back names the file.
    #[test]
    fn garbage_after_valid_header_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = encode_records::<Nested>("g", &[]).unwrap();
        bytes.extend_from_slice(&tail);
        if let Err(e) = decode_records::<Nested>("garbage-file", &bytes) {
            prop_assert!(e.to_string().contains("garbage-file"));
        }
    }

    /// Valid framing (correct crcs) around random payloads: the decoder itself sees garbage.
    #[test]
    fn framed_garbage_never_panics(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..128), 0..6)) {
        let mut bytes = encode_records::<Nested>("g", &[]).unwrap();
        for p in &payloads {
            bytes.extend_from_slice(&(p.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            bytes.extend_from_slice(p);
        }
        let _ = decode_records::<Nested>("g", &bytes);
        let _ = decode_records::<Flat>("g", &bytes);
    }
}
