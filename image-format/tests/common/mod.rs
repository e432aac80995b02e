//! Test-only record types and image builders shared by the integration tests.
#![allow(dead_code)]

pub mod samples;

use std::path::{Path, PathBuf};

use dormant_image::records::Pid;
use dormant_image::{
    ImageError, ImageReader, ImageWriter, InventoryInfo, Record, RecordKind, ARCH,
};
use proptest_derive::Arbitrary;
use serde::{Deserialize, Serialize};

/// A record with nesting: vectors, options, enums, byte blobs, arrays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
pub struct Nested {
    pub id: u32,
    pub name: String,
    pub blobs: Vec<Vec<u8>>,
    pub inner: Option<Inner>,
    pub shape: Shape,
    pub regs: [u64; 4],
    pub signed: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
pub struct Inner {
    pub flags: u16,
    pub tags: Vec<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
pub enum Shape {
    Empty,
    Word(u64),
    Blob { data: Vec<u8>, crc: Option<u32> },
    Many(Vec<Shape2>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
pub enum Shape2 {
    A,
    B(i32),
}

impl Record for Nested {
    const KIND: RecordKind = RecordKind::PsTree;
}

/// A small flat record of another kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
pub struct Flat {
    pub a: u64,
    pub b: bool,
    pub c: u8,
}

impl Record for Flat {
    const KIND: RecordKind = RecordKind::TaskCore;
}

pub fn info() -> InventoryInfo {
    InventoryInfo {
        arch: ARCH.to_owned(),
        kernel_release: "6.18.0-test".to_owned(),
        xsave_features: 0x2e7,
        xsave_size: 2432,
        tool_version: "test".to_owned(),
        created_unix_secs: 1_700_000_000,
        root_pid: Pid(1),
    }
}

/// Deterministic non-zero page content for extent `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

pub fn nested(i: u32) -> Nested {
    Nested {
        id: i,
        name: format!("task-{i}"),
        blobs: vec![vec![i as u8; 3], vec![]],
        inner: (i & 1 == 0).then(|| Inner {
            flags: 7,
            tags: vec![Some("x".into()), None],
        }),
        shape: Shape::Blob {
            data: vec![1, 2, 3],
            crc: Some(i),
        },
        regs: [1, 2, 3, u64::from(i)],
        signed: -i64::from(i),
    }
}

/// Builds a small image at `dir/name`: two record files of different kinds and one page store of two
/// one-page extents (so every byte can be flipped in seconds). Returns the image path.
pub fn small_image(dir: &Path, name: &str) -> PathBuf {
    let target = dir.join(name);
    let mut w = ImageWriter::create(&target).unwrap();
    w.write_records("nested", &[nested(1), nested(2)]).unwrap();
    w.write_records(
        "flat",
        &[
            Flat {
                a: 1,
                b: true,
                c: 2,
            },
            Flat {
                a: 3,
                b: false,
                c: 4,
            },
            Flat {
                a: 5,
                b: true,
                c: 6,
            },
        ],
    )
    .unwrap();
    let ps = w.page_store("t1").unwrap();
    ps.write_extent(0x7000, 1, &pattern(1, 4096)).unwrap();
    ps.write_extent(0x1000, 2, &pattern(2, 4096)).unwrap();
    w.finish_page_store(ps).unwrap();
    w.commit(info()).unwrap()
}

/// Opens and verifies; every error of either step.
pub fn open_and_verify(dir: &Path) -> Result<dormant_image::VerifyReport, Vec<ImageError>> {
    ImageReader::open(dir).map_err(|e| vec![e])?.verify()
}

/// Rewrites the inventory so its lengths and crcs match the files as they are now (simulating a writer bug
/// rather than on-disk corruption).
pub fn reseal_inventory(dir: &Path) {
    let mut inv = ImageReader::open(dir).unwrap().inventory().clone();
    for f in &mut inv.files {
        let bytes = std::fs::read(dir.join(&f.name)).unwrap();
        f.len = bytes.len() as u64;
        f.crc32 = crc32fast::hash(&bytes);
    }
    let mut bytes =
        dormant_image::record_file::encode_records("inventory", &[inv.clone()]).unwrap();
    bytes[8..10].copy_from_slice(&inv.format_major.to_le_bytes());
    bytes[10..12].copy_from_slice(&inv.format_minor.to_le_bytes());
    std::fs::write(dir.join("inventory"), bytes).unwrap();
}

/// Patches the format version in the header of record file `name` (the inventory is left as it is).
pub fn set_file_format(dir: &Path, name: &str, major: u16, minor: u16) {
    let path = dir.join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..10].copy_from_slice(&major.to_le_bytes());
    bytes[10..12].copy_from_slice(&minor.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
}
