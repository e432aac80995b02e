//! Format evolution (see `docs/image-format.md`): a record kind's encoding changes only with its schema
//! version; a reader decodes older versions through the decoders it keeps and refuses newer ones naming
//! both versions and the file; images written by earlier releases are read, never misread.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

mod common;

use std::path::{Path, PathBuf};

use common::samples::Samples;
use dormant_image::record_file::{decode_records, encode_records};
use dormant_image::records::{
    decode_upgraded, names, KindVisitor, Pid, Record, RecordKind, TaskCore, Upgrade,
};
use dormant_image::{Image, ImageError, ImageReader, ImageWriter, FORMAT_MAJOR, FORMAT_MINOR};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A record as an older release wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ThingV1 {
    pid: u32,
    name: String,
}

impl Record for ThingV1 {
    const KIND: RecordKind = RecordKind::PsTree;
    const VERSION: u16 = 1;
}

/// The same record a release later, with a field added: version 2, keeping the decoder of version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ThingV2 {
    pid: u32,
    name: String,
    /// Not known for records written at version 1: `None` says so (never a made-up value).
    added: Option<u64>,
}

impl Upgrade<ThingV2> for ThingV1 {
    fn upgrade(self) -> Result<ThingV2, String> {
        Ok(ThingV2 {
            pid: self.pid,
            name: self.name,
            added: None,
        })
    }
}

impl Record for ThingV2 {
    const KIND: RecordKind = RecordKind::PsTree;
    const VERSION: u16 = 2;
    fn decode_older(version: u16, payload: &[u8]) -> Option<Result<Self, String>> {
        match version {
            1 => Some(decode_upgraded::<ThingV1, ThingV2>(payload)),
            _ => None,
        }
    }
}

fn v1(i: u32) -> ThingV1 {
    ThingV1 {
        pid: i,
        name: format!("task {i}"),
    }
}

fn v2(i: u32) -> ThingV2 {
    ThingV2 {
        pid: i,
        name: format!("task {i}"),
        added: Some(u64::from(i) << 40),
    }
}

#[test]
fn new_reader_decodes_old_data_through_the_kept_decoder() {
    let old = encode_records("things", &[v1(1), v1(2)]).unwrap();
    assert_eq!(
        u16::from_le_bytes([old[14], old[15]]),
        1,
        "header carries the version"
    );
    let read: Vec<ThingV2> = decode_records("things", &old).unwrap();
    assert_eq!(
        read,
        [1, 2]
            .map(|i| ThingV2 {
                added: None,
                ..v2(i)
            })
            .to_vec()
    );
    // And the new reader reads its own version as it is.
    let new = encode_records("things", &[v2(3)]).unwrap();
    assert_eq!(decode_records::<ThingV2>("things", &new).unwrap(), [v2(3)]);
}

#[test]
fn old_reader_refuses_new_data_naming_both_versions() {
    let new = encode_records("things", &[v2(1)]).unwrap();
    let err = decode_records::<ThingV1>("things", &new).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::SchemaVersion {
                found: 2,
                current: 1,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("things") && text.contains("schema version 2") && text.contains("version 1"),
        "{text}"
    );
    // An empty file of the newer version is refused too: the version is checked before any entry.
    let empty = encode_records::<ThingV2>("empty", &[]).unwrap();
    assert!(decode_records::<ThingV1>("empty", &empty).is_err());

    // Through an image: the typed reader names the file.
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
    w.write_records("things", &[v2(7)]).unwrap();
    let dir = w.commit(common::info()).unwrap();
    let r = ImageReader::open(&dir).unwrap();
    let err = r.read_records::<ThingV1>("things").unwrap_err();
    assert!(err.to_string().starts_with("things: "), "{err}");
    assert_eq!(r.read_records::<ThingV2>("things").unwrap(), [v2(7)]);
}

/// What happens when the rule is broken (a field added without a version bump): postcard decoding is
/// exact, so the old reader fails on the new data and the new reader on the old data, with an error naming
/// the file; nothing is misread. (The schema lock test stops such a change from landing at all.)
#[test]
fn a_change_without_a_version_bump_fails_instead_of_misreading() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Sneaky {
        pid: u32,
        name: String,
        added: Option<u64>,
    }
    impl Record for Sneaky {
        const KIND: RecordKind = RecordKind::PsTree;
        const VERSION: u16 = 1;
    }
    let bytes = encode_records(
        "sneaky",
        &[Sneaky {
            pid: 1,
            name: "x".into(),
            added: Some(5),
        }],
    )
    .unwrap();
    let err = decode_records::<ThingV1>("sneaky", &bytes).unwrap_err();
    assert!(
        matches!(err, ImageError::Decode { .. }) && err.to_string().contains("sneaky"),
        "{err}"
    );
    let old = encode_records("old", &[v1(1)]).unwrap();
    let err = decode_records::<Sneaky>("old", &old).unwrap_err();
    assert!(
        matches!(err, ImageError::Decode { .. }) && err.to_string().contains("old"),
        "{err}"
    );
}

/// A real kind at a version newer than this build's: `verify` (and so restore) refuses the image naming
/// the file and both versions.
#[test]
fn a_newer_version_of_a_real_kind_is_refused_by_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Samples::new().write(tmp.path(), "img");
    Image::load(&dir).unwrap();
    let file = names::core(common::samples::ROOT);
    let newer = TaskCore::VERSION + 1;
    let path = dir.join(&file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[14..16].copy_from_slice(&newer.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    common::reseal_inventory(&dir);
    let text = Image::load(&dir).unwrap_err().to_string();
    let want = format!(
        "{file}: record kind 4 (TaskCore) is at schema version {newer}, newer than what this build reads (version {}",
        TaskCore::VERSION
    );
    assert!(text.contains(&want), "{text}");
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The image `dormant dump` of main 1e0e57f (format 2.0) wrote of `busybox sleep` is read as version 1 of
/// every kind, with every check passing, and says what it said then.
#[test]
fn format_2_0_images_are_read_as_version_1_of_every_kind() {
    let img = Image::load(&fixture("format-2.0-busybox-sleep")).unwrap();
    let inv = img.inventory();
    assert_eq!((inv.format_major, inv.format_minor), (2, 0));
    assert_eq!(inv.root_pid, Pid(10486));
    assert_eq!(img.tasks.len(), 1);
    let t = img.root();
    assert_eq!(t.core.comm, "busybox");
    assert_eq!(t.threads.len(), 1);
    assert_eq!(t.threads[0].tid.0, 10486);
    assert_eq!(t.threads[0].xstate.len(), inv.xsave_size as usize);
    assert!(
        img.files[&t.mm.exe].path.ends_with("busybox"),
        "{:?}",
        img.files[&t.mm.exe]
    );
    assert_eq!(t.fds.iter().map(|f| f.fd).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(t.pages.page_bytes(), 65536);
    assert!(t.mm.vmas.iter().any(|v| v.name == "[stack]"));
}

/// Any other format version is refused with a message naming it and the one this build reads.
#[test]
fn other_format_versions_are_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    std::fs::create_dir(&dir).unwrap();
    let src = fixture("format-2.0-busybox-sleep");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    for (major, minor) in [(2u16, 1u16), (1, 0), (FORMAT_MAJOR + 1, 0)] {
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().file_name().into_string().unwrap();
            if !f.starts_with("pages-") {
                common::set_file_format(&dir, &f, major, minor);
            }
        }
        let text = Image::load(&dir).unwrap_err().to_string();
        let want = format!(
            "image format {major}.{minor} is not readable by this build, which reads format {FORMAT_MAJOR}.{FORMAT_MINOR} \
             (and images of format 2.0)"
        );
        assert!(text.contains(&want), "{text}");
    }
}

/// The JSON of every file of an image, as `dormant show --json` prints it.
fn image_json(dir: &Path) -> Value {
    struct Json<'a>(&'a ImageReader, &'a str);
    impl KindVisitor for Json<'_> {
        type Output = Value;
        fn visit<R: Record + Clone + PartialEq>(self) -> Value {
            serde_json::to_value(self.0.read_records::<R>(self.1).unwrap()).unwrap()
        }
    }
    let r = ImageReader::open(dir).unwrap();
    let mut out = serde_json::Map::new();
    for f in &r.inventory().files {
        let v = match dormant_image::records::file_role(&f.name).unwrap() {
            dormant_image::records::FileRole::Records(kind) => kind.visit(Json(&r, &f.name)),
            dormant_image::records::FileRole::PageData => Value::from(f.len),
        };
        out.insert(f.name.clone(), v);
    }
    out.insert(
        "inventory".into(),
        serde_json::to_value(r.inventory()).unwrap(),
    );
    Value::Object(out)
}

/// Every value `expected` has is in `actual` (which may have fields added since); names the first that is
/// not.
fn contains(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().try_for_each(|(k, v)| match a.get(k) {
            Some(av) => contains(v, av, &format!("{at}.{k}")),
            None => Err(format!("{at}.{k} is gone")),
        }),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .try_for_each(|(i, (ev, av))| contains(ev, av, &format!("{at}[{i}]"))),
        _ if expected == actual => Ok(()),
        _ => Err(format!("{at}: was {expected}, reads as {actual}")),
    }
}

/// The all-kinds image this release wrote (one record of every kind, every descriptor kind, mapping
/// kind, namespace and mount source) is read by this build, passes every check, and every value it held
/// reads back the same (`format-3.0-all-kinds.json` is what this release read from it).
#[test]
fn format_3_0_all_kinds_image_is_read() {
    let dir = fixture("format-3.0-all-kinds");
    let img = Image::load(&dir).unwrap();
    assert_eq!(img.tasks.len(), 2);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("format-3.0-all-kinds.json")).unwrap(),
    )
    .unwrap();
    if let Err(e) = contains(&expected, &image_json(&dir), "") {
        panic!("the format 3.0 all-kinds image reads differently: {e}");
    }
}

/// The format 3.1 all-kinds image (`ThreadCore` version 2, every thread's own credentials) reads back
/// the same; in the 3.0 one, written at version 1, threads have no credentials of their own.
#[test]
fn format_3_1_all_kinds_image_is_read() {
    let dir = fixture("format-3.1-all-kinds");
    let img = Image::load(&dir).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("format-3.1-all-kinds.json")).unwrap(),
    )
    .unwrap();
    if let Err(e) = contains(&expected, &image_json(&dir), "") {
        panic!("the format 3.1 all-kinds image reads differently: {e}");
    }
    let creds = img.tasks[0].threads[0].creds.as_ref().unwrap();
    assert_eq!(creds.uids, [1000, 1001, 1002, 1003]);
    let old = Image::load(&fixture("format-3.0-all-kinds")).unwrap();
    assert!(old
        .tasks
        .iter()
        .flat_map(|t| &t.threads)
        .all(|t| t.creds.is_none()));
}

/// The format 3.2 all-kinds image (`FileDescs` version 2) reads back the same; in the older ones, written
/// at version 1, unix sockets' shutdown state and unlinked paths read as not known.
#[test]
fn format_3_2_all_kinds_image_is_read() {
    use dormant_image::records::DescKind;
    let dir = fixture("format-3.2-all-kinds");
    let img = Image::load(&dir).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("format-3.2-all-kinds.json")).unwrap(),
    )
    .unwrap();
    if let Err(e) = contains(&expected, &image_json(&dir), "") {
        panic!("the format 3.2 all-kinds image reads differently: {e}");
    }
    let conn = |img: &Image| {
        img.descs
            .iter()
            .find_map(|d| match &d.kind {
                DescKind::UnixConn {
                    shutdown, unlinked, ..
                } => Some((*shutdown, *unlinked)),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(conn(&img), (Some(1), Some(true)));
    assert!(img
        .descs
        .iter()
        .any(|d| matches!(d.kind, DescKind::UnixUnconnected { .. })));
    let old = Image::load(&fixture("format-3.1-all-kinds")).unwrap();
    assert_eq!(conn(&old), (None, None));
}

/// The format 3.3 all-kinds image (`TaskCore` version 2) reads back the same, with a child's job-control
/// stop and a removed working directory; in the 3.2 one, written at version 1, neither is known.
#[test]
fn format_3_3_all_kinds_image_is_read() {
    let dir = fixture("format-3.3-all-kinds");
    let img = Image::load(&dir).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("format-3.3-all-kinds.json")).unwrap(),
    )
    .unwrap();
    if let Err(e) = contains(&expected, &image_json(&dir), "") {
        panic!("the format 3.3 all-kinds image reads differently: {e}");
    }
    assert!(img.tasks.iter().any(|t| t.core.job_stop.is_some()));
    assert!(img.tasks.iter().any(|t| t.core.cwd_removed.is_some()));
    let old = Image::load(&fixture("format-3.2-all-kinds")).unwrap();
    assert!(old
        .tasks
        .iter()
        .all(|t| t.core.job_stop.is_none() && t.core.cwd_removed.is_none()));
}

/// The format 3.4 all-kinds image reads back the same: a file deleted while mapped, an inotify watch on a
/// carried inode, a unix listener with its backlog and a waiting connection (`FileDescs` version 3) and a
/// lease (`FileLocks` version 2); the 3.3 one has none of them.
#[test]
fn format_3_4_all_kinds_image_is_read() {
    use dormant_image::records::{DescKind, LockKind};
    let dir = fixture("format-3.4-all-kinds");
    let img = Image::load(&dir).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("format-3.4-all-kinds.json")).unwrap(),
    )
    .unwrap();
    if let Err(e) = contains(&expected, &image_json(&dir), "") {
        panic!("the format 3.4 all-kinds image reads differently: {e}");
    }
    let waiting = |img: &Image| {
        img.descs.iter().find_map(|d| match &d.kind {
            DescKind::UnixListen {
                backlog, pending, ..
            } => Some((*backlog, pending.len())),
            _ => None,
        })
    };
    let leases = |img: &Image| {
        img.tasks
            .iter()
            .flat_map(|t| &t.locks)
            .filter(|l| l.kind == LockKind::Lease)
            .count()
    };
    assert_eq!(waiting(&img), Some((Some(16), 1)));
    assert_eq!(leases(&img), 1);
    assert_eq!(img.deleted_files.len(), 1);
    assert_eq!(img.inotify_carried.len(), 1);
    let old = Image::load(&fixture("format-3.3-all-kinds")).unwrap();
    assert_eq!(waiting(&old), Some((None, 0)));
    assert_eq!(leases(&old), 0);
    assert!(old.deleted_files.is_empty() && old.inotify_carried.is_empty());
}

/// The format 3.5 all-kinds image reads back the same: processes sharing an fd table, a nested mount
/// namespace, a UDP socket's queued datagrams and a file of /proc (`FileDescs` version 4); the 3.4 one has
/// none of them.
#[test]
fn format_3_5_all_kinds_image_is_read() {
    use dormant_image::records::DescKind;
    let dir = fixture("format-3.5-all-kinds");
    let img = Image::load(&dir).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("format-3.5-all-kinds.json")).unwrap(),
    )
    .unwrap();
    if let Err(e) = contains(&expected, &image_json(&dir), "") {
        panic!("the format 3.5 all-kinds image reads differently: {e}");
    }
    let proc_files = |img: &Image| {
        img.descs
            .iter()
            .filter(|d| matches!(d.kind, DescKind::Proc(_)))
            .count()
    };
    assert_eq!(proc_files(&img), 1);
    assert_eq!(img.shared_tables.len(), 1);
    assert_eq!(img.nested_mnt.len(), 1);
    assert_eq!(img.udp_queues.len(), 1);
    assert_eq!(img.udp_queues[0].datagrams.len(), 2);
    let old = Image::load(&fixture("format-3.4-all-kinds")).unwrap();
    assert_eq!(proc_files(&old), 0);
    assert!(old.shared_tables.is_empty() && old.nested_mnt.is_empty() && old.udp_queues.is_empty());
}

/// The format 3.6 all-kinds image reads back the same: its deleted file's content is in a page store of
/// its own (`DeletedFiles` version 2), and so is its unlinked file's (`DescContents`); the 3.5 one carried
/// both inline (`DeletedFiles` version 1), still read.
#[test]
fn format_3_6_all_kinds_image_is_read() {
    use dormant_image::records::{DeletedContent, FileId};
    let dir = fixture("format-3.6-all-kinds");
    let img = Image::load(&dir).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("format-3.6-all-kinds.json")).unwrap(),
    )
    .unwrap();
    if let Err(e) = contains(&expected, &image_json(&dir), "") {
        panic!("the format 3.6 all-kinds image reads differently: {e}");
    }
    assert_eq!(img.deleted_files.len(), 1);
    assert!(matches!(
        img.deleted_files[0].content,
        DeletedContent::Stored { size: 5000, .. }
    ));
    let pages = &img.deleted_pages[&FileId(2)];
    assert_eq!(pages.extents().len(), 1);
    assert_eq!(pages.extents()[0].vaddr, 4096);
    let old = Image::load(&fixture("format-3.5-all-kinds")).unwrap();
    assert!(matches!(
        old.deleted_files[0].content,
        DeletedContent::Data { .. }
    ));
    assert!(old.deleted_pages.is_empty());
    let (size, pages) = &img.desc_contents[&dormant_image::records::DescId(10)];
    assert_eq!((*size, pages.extents().len()), (4100, 2));
    assert!(old.desc_contents.is_empty());
}

/// The image `dormant dump` of this release wrote of `busybox sleep` is read with every check passing.
#[test]
fn format_3_0_busybox_image_is_read() {
    let img = Image::load(&fixture("format-3.0-busybox-sleep")).unwrap();
    let inv = img.inventory();
    assert_eq!((inv.format_major, inv.format_minor), (3, 0));
    assert_eq!(img.root().core.comm, "busybox");
    assert!(img.files[&img.root().mm.exe].path.ends_with("busybox"));
}

/// The sample image has a file of every kind the table knows, so the all-kinds fixture of a release covers
/// every kind of that release.
#[test]
fn the_sample_image_has_every_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Samples::new().write(tmp.path(), "img");
    let img = Image::load(&dir).unwrap();
    let mut kinds: Vec<RecordKind> = img
        .report()
        .files
        .iter()
        .filter_map(|f| match f.kind {
            dormant_image::VerifiedFileKind::Records { kind, .. } => Some(kind),
            dormant_image::VerifiedFileKind::PageIndex { .. } => Some(RecordKind::PageIndex),
            dormant_image::VerifiedFileKind::PageData => None,
        })
        .chain([RecordKind::Inventory])
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, RecordKind::ALL);
}

/// Writes this release's all-kinds fixture (run once per release that changes a kind; never rewrites one
/// that exists): `cargo test -p dormant-image --test evolution -- --ignored write_all_kinds_fixture`.
#[test]
#[ignore]
fn write_all_kinds_fixture() {
    let name = format!("format-{FORMAT_MAJOR}.{FORMAT_MINOR}-all-kinds");
    let dir = fixture(&name);
    assert!(
        !dir.exists(),
        "{} exists: a release's fixture is never rewritten",
        dir.display()
    );
    let tmp = tempfile::tempdir_in(fixture("")).unwrap();
    let written = Samples::new().write(tmp.path(), "img");
    std::fs::rename(&written, &dir).unwrap();
    let json = serde_json::to_string_pretty(&image_json(&dir)).unwrap();
    std::fs::write(fixture(&format!("{name}.json")), json + "\n").unwrap();
}
