//! Round trips: records through the in-memory codec and through a committed image; page extents through a
//! committed page store (pwrite, splice from a pipe, read+write from a plain file, several threads).

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

mod common;

use std::io::Write;
use std::os::fd::AsFd;

use common::{info, pattern, Flat, Nested};
use dormant_image::record_file::{decode_records, encode_records};
use dormant_image::{
    ImageReader, ImageWriter, PageExtent, Record, RecordKind, VerifiedFileKind, PAGE_SIZE,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Round-trips random `Vec<R>`s: in memory (many cases), and through a committed image (fewer cases,
/// each one touches the file system). Generic so the real record kinds run through the same test.
fn roundtrip<R: Record + Arbitrary + PartialEq + Clone>() {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<R>(), 0..8), |items| {
            let bytes = encode_records("mem", &items).unwrap();
            prop_assert_eq!(decode_records::<R>("mem", &bytes).unwrap(), items);
            Ok(())
        })
        .unwrap();

    if matches!(R::KIND, RecordKind::Inventory | RecordKind::PageIndex) {
        // The image writer writes these kinds itself and refuses them as ordinary record files.
        let tmp = tempfile::tempdir().unwrap();
        let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
        assert!(matches!(
            w.write_records::<R>("x", &[]),
            Err(dormant_image::ImageError::BadName { .. })
        ));
        return;
    }
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<R>(), 0..8), |items| {
            let tmp = tempfile::tempdir().unwrap();
            let target = tmp.path().join("img");
            let mut w = ImageWriter::create(&target).unwrap();
            w.write_records("batch", &items).unwrap();
            let mut s = w.record_file::<R>("stream").unwrap();
            for item in &items {
                s.push(item).unwrap();
            }
            s.finish().unwrap();
            w.commit(info()).unwrap();

            let r = ImageReader::open(&target).unwrap();
            prop_assert_eq!(&r.read_records::<R>("batch").unwrap(), &items);
            prop_assert_eq!(&r.read_records::<R>("stream").unwrap(), &items);
            let report = r.verify().unwrap();
            prop_assert_eq!(report.files.len(), 2);
            prop_assert_eq!(
                report.files[0].kind,
                VerifiedFileKind::Records {
                    kind: R::KIND,
                    entries: items.len()
                }
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn roundtrip_nested_records() {
    roundtrip::<Nested>();
}

#[test]
fn roundtrip_flat_records() {
    roundtrip::<Flat>();
}

/// Every record kind of the table round-trips (the container's own and the schema's).
#[cfg(feature = "arbitrary")]
#[test]
fn roundtrip_every_kind() {
    struct RoundTrip;
    impl dormant_image::records::ArbitraryKindVisitor for RoundTrip {
        type Output = ();
        fn visit<R: Record + Clone + PartialEq + Arbitrary>(self) {
            roundtrip::<R>();
        }
    }
    for kind in RecordKind::ALL {
        kind.visit_arbitrary(RoundTrip);
    }
}

/// How one extent gets into the store.
#[derive(Debug, Clone, Copy)]
enum Via {
    Pwrite,
    Pipe,
    PlainFile,
    /// Spliced from a pipe with the crc given by the caller (the parasite's path): nothing read back.
    PipeWithCrc,
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![
        Just(Via::Pwrite),
        Just(Via::Pipe),
        Just(Via::PlainFile),
        Just(Via::PipeWithCrc)
    ]
}

fn write_via(
    ps: &dormant_image::PageStoreWriter,
    how: Via,
    vaddr: u64,
    flags: u32,
    data: &[u8],
) -> PageExtent {
    match how {
        Via::Pwrite => ps.write_extent(vaddr, flags, data).unwrap(),
        Via::Pipe | Via::PipeWithCrc => {
            let (rx, tx) = nix::unistd::pipe().unwrap();
            let feed = data.to_vec();
            let writer = std::thread::spawn(move || {
                let mut tx = std::fs::File::from(tx);
                tx.write_all(&feed).unwrap();
            });
            let len = data.len() as u64;
            let e = match how {
                Via::PipeWithCrc => ps
                    .write_extent_from_fd_with_crc(
                        vaddr,
                        flags,
                        rx.as_fd(),
                        len,
                        crc32fast::hash(data),
                    )
                    .unwrap(),
                _ => ps
                    .write_extent_from_fd(vaddr, flags, rx.as_fd(), len)
                    .unwrap(),
            };
            writer.join().unwrap();
            e
        }
        Via::PlainFile => {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(data).unwrap();
            std::io::Seek::rewind(&mut f).unwrap();
            ps.write_extent_from_fd(vaddr, flags, f.as_fd(), data.len() as u64)
                .unwrap()
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 32, ..Config::default() })]

    /// Random non-overlapping extents (random gaps, lengths, contents, write order and write path) come
    /// back byte-equal through read_extent and mmap, sorted by address, and the image verifies.
    #[test]
    fn roundtrip_page_extents(
        base in 0u64..(1 << 35),
        shape in proptest::collection::vec((0u64..4, 1u64..6, any::<u64>(), any::<u32>(), via()), 1..10),
        order_seed in any::<u64>(),
    ) {
        let mut planned = Vec::new();
        let mut next = base * PAGE_SIZE;
        for (gap, pages, seed, flags, how) in shape {
            next += gap * PAGE_SIZE;
            planned.push((next, pattern(seed, (pages * PAGE_SIZE) as usize), flags, how));
            next += pages * PAGE_SIZE;
        }
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|&i| (i as u64 + 1).wrapping_mul(order_seed | 1).rotate_left(17));

        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("img");
        let mut w = ImageWriter::create(&target).unwrap();
        let ps = w.page_store("task-1").unwrap();
        for &i in &order {
            let (vaddr, data, flags, how) = &planned[i];
            let e = write_via(&ps, *how, *vaddr, *flags, data);
            prop_assert_eq!(e.crc32, crc32fast::hash(data));
        }
        let total = w.finish_page_store(ps).unwrap();
        prop_assert_eq!(total, planned.iter().map(|p| p.1.len() as u64).sum::<u64>());
        w.commit(info()).unwrap();

        let r = ImageReader::open(&target).unwrap();
        r.verify().unwrap();
        let store = r.page_store("task-1").unwrap();
        prop_assert_eq!(store.extents().len(), planned.len());
        let map = store.mmap().unwrap();
        for (e, (vaddr, data, flags, _)) in store.extents().iter().zip(&planned) {
            prop_assert_eq!(e.vaddr, *vaddr);
            prop_assert_eq!(e.flags, *flags);
            prop_assert_eq!(e.file_offset % PAGE_SIZE, 0);
            let mut buf = vec![0u8; e.len as usize];
            store.read_extent(e, &mut buf).unwrap();
            prop_assert!(buf == *data);
            let off = e.file_offset as usize;
            prop_assert!(map[off..off + data.len()] == data[..]);
        }
        prop_assert_eq!(store.verify_all().unwrap(), total);
    }
}

/// Several threads share one page store writer; every extent lands intact and the whole-file crc that
/// finish computes from the extent crcs matches the file's real crc (verify re-reads the file).
#[test]
fn parallel_writers_share_one_store() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut w = ImageWriter::create(&target).unwrap();
    let ps = w.page_store("big").unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let ps = &ps;
            s.spawn(move || {
                for i in 0..16u64 {
                    let n = t * 16 + i;
                    ps.write_extent(
                        n * 4 * PAGE_SIZE,
                        0,
                        &pattern(n, (1 + n as usize % 3) * PAGE_SIZE as usize),
                    )
                    .unwrap();
                }
            });
        }
    });
    let total = w.finish_page_store(ps).unwrap();
    w.commit(info()).unwrap();

    let r = ImageReader::open(&target).unwrap();
    let report = r.verify().unwrap();
    assert!(report.files.iter().any(|f| f.name == "pagemap-big"
        && f.kind
            == VerifiedFileKind::PageIndex {
                extents: 64,
                page_bytes: total
            }));
    let store = r.page_store("big").unwrap();
    for (n, e) in store.extents().iter().enumerate() {
        assert_eq!(e.vaddr, n as u64 * 4 * PAGE_SIZE);
        let mut buf = vec![0u8; e.len as usize];
        store.read_extent(e, &mut buf).unwrap();
        assert_eq!(buf, pattern(n as u64, (1 + n % 3) * PAGE_SIZE as usize));
    }
    let listed = r.inventory().file("pages-big.img").unwrap();
    let bytes = std::fs::read(target.join("pages-big.img")).unwrap();
    assert_eq!(listed.crc32, crc32fast::hash(&bytes));
    assert_eq!(listed.len, bytes.len() as u64);
}

/// Misaligned or overlapping extents are refused at write or finish time.
#[test]
fn page_store_refuses_bad_extents() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
    let ps = w.page_store("x").unwrap();
    let page = pattern(1, PAGE_SIZE as usize);
    assert!(ps
        .write_extent(0x1001, 0, &page)
        .unwrap_err()
        .to_string()
        .contains("not a multiple of the page size"));
    assert!(ps.write_extent(0x1000, 0, &page[..100]).is_err());
    assert!(ps.write_extent(0x1000, 0, &[]).is_err());
    ps.write_extent(0x1000, 0, &page).unwrap();
    ps.write_extent(0x1000, 0, &page).unwrap();
    let err = w.finish_page_store(ps).unwrap_err();
    assert!(err.to_string().contains("overlap"), "{err}");
}

/// A source that ends early is reported (with the file offset), and the gap it leaves in the data file
/// does not break the image: finish falls back to reading the file back for its crc.
#[test]
fn short_source_is_reported_and_image_stays_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut w = ImageWriter::create(&target).unwrap();
    let ps = w.page_store("s").unwrap();
    let (rx, tx) = nix::unistd::pipe().unwrap();
    std::fs::File::from(tx)
        .write_all(&pattern(3, PAGE_SIZE as usize))
        .unwrap();
    let err = ps
        .write_extent_from_fd(0x10000, 0, rx.as_fd(), 2 * PAGE_SIZE)
        .unwrap_err();
    assert!(
        matches!(
            err,
            dormant_image::ImageError::ShortSource {
                offset: 0,
                wanted: 8192,
                got: 4096,
                ..
            }
        ),
        "{err}"
    );
    let e = ps
        .write_extent(0x20000, 0, &pattern(4, PAGE_SIZE as usize))
        .unwrap();
    assert_eq!(e.file_offset, 2 * PAGE_SIZE);
    assert_eq!(w.finish_page_store(ps).unwrap(), PAGE_SIZE);
    w.commit(info()).unwrap();
    let r = ImageReader::open(&target).unwrap();
    r.verify().unwrap();
    let bytes = std::fs::read(target.join("pages-s.img")).unwrap();
    assert_eq!(bytes.len() as u64, 3 * PAGE_SIZE);
    assert_eq!(
        r.inventory().file("pages-s.img").unwrap().crc32,
        crc32fast::hash(&bytes)
    );
}

/// A file's content through a page store and back: a hole, a page of data, a zero page, data again and a
/// partial last page. Only the two data runs are stored; the file written back is byte-equal, with the
/// same size, and a file larger than one record entry may be goes through the same way.
#[test]
fn file_content_through_a_page_store() {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let src_path = tmp.path().join("src");
    let src = std::fs::File::create_new(&src_path).unwrap();
    let page = PAGE_SIZE as usize;
    let size = 4 * PAGE_SIZE + 100;
    src.set_len(size).unwrap(); // page 0 stays a hole
    src.write_all_at(&pattern(1, page), PAGE_SIZE).unwrap();
    src.write_all_at(&vec![0u8; page], 2 * PAGE_SIZE).unwrap(); // written, but zero
    src.write_all_at(&pattern(2, page + 100), 3 * PAGE_SIZE)
        .unwrap();
    let src = std::fs::File::open(&src_path).unwrap();

    let target = tmp.path().join("img");
    let mut w = ImageWriter::create(&target).unwrap();
    let ps = w.page_store("deleted-9").unwrap();
    let stored = ps.store_file(&src, size, 0, "src").unwrap();
    assert_eq!(stored, 3 * PAGE_SIZE);
    w.finish_page_store(ps).unwrap();
    w.commit(info()).unwrap();

    let r = ImageReader::open(&target).unwrap();
    r.verify().unwrap();
    let store = r.page_store("deleted-9").unwrap();
    let runs: Vec<(u64, u64)> = store.extents().iter().map(|e| (e.vaddr, e.len)).collect();
    assert_eq!(
        runs,
        [(PAGE_SIZE, PAGE_SIZE), (3 * PAGE_SIZE, 2 * PAGE_SIZE)]
    );
    let back_path = tmp.path().join("back");
    let back = std::fs::File::create_new(&back_path).unwrap();
    store.write_into(&back, size, "back").unwrap();
    drop(back);
    let (a, b) = (
        std::fs::read(&src_path).unwrap(),
        std::fs::read(&back_path).unwrap(),
    );
    assert_eq!(b.len() as u64, size);
    assert!(a == b, "the content written back differs");

    // Written into a smaller size than the store covers: refused, naming the extent.
    let short = std::fs::File::create_new(tmp.path().join("short")).unwrap();
    let err = store
        .write_into(&short, 2 * PAGE_SIZE, "short")
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
}
