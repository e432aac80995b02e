//! The namespace half of `check_references`: dangling pids, missing namespace files, shm page stores that
//! are missing or reach past their segment.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a failure is the test failing.

mod common;

use std::collections::BTreeSet;

use dormant_image::records::*;
use dormant_image::{ImageReader, ImageWriter};

fn ns(kind: NsKind, id: u64, external: bool) -> NsRef {
    NsRef {
        kind,
        id: NsId(id),
        external,
    }
}

fn seg(id: i32, size: u64) -> SysvShm {
    SysvShm {
        id,
        perm: IpcPerm::default(),
        size,
        locked: false,
    }
}

#[test]
fn namespace_references_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut w = ImageWriter::create(&target).unwrap();
    let tasks = [TaskNamespaces {
        pid: Pid(10),
        namespaces: vec![
            ns(NsKind::Uts, 1, false), // no uts-1 file
            ns(NsKind::Ipc, 2, false),
            ns(NsKind::Net, 3, true), // net-3 missing although external
            ns(NsKind::Mnt, 4, true),
        ],
    }];
    w.write_records(ns_names::NS_IDS, &tasks).unwrap();
    let ipc = IpcNamespace {
        id: NsId(2),
        sysctls: vec![],
        shm: vec![seg(5, 100), seg(6, 4096), seg(7, 4096)],
        sem: vec![],
        msg: vec![],
        posix_mq: vec![],
    };
    w.write_records(&ns_names::ipc(NsId(2)), &[ipc]).unwrap();
    // Segment 5: one page, fine. Segment 6: a page past its size. Segment 7: no page store.
    for (id, offset) in [(5, 0u64), (6, 4096)] {
        let s = w
            .page_store(&ns_names::sysv_shm_pages(NsId(2), id))
            .unwrap();
        s.write_extent(offset, page_flags::SHMEM, &[1u8; 4096])
            .unwrap();
        w.finish_page_store(s).unwrap();
    }
    w.write_records(
        ns_names::CGROUPS,
        &[TaskCgroups {
            pid: Pid(11),
            lines: vec![],
        }],
    )
    .unwrap();
    w.commit(common::info()).unwrap();

    let img = ImageReader::open(&target).unwrap();
    img.verify().unwrap();
    let pids: BTreeSet<Pid> = [Pid(10)].into();
    let check = |pids: &BTreeSet<Pid>| -> Vec<String> {
        dormant_image::image::check_namespaces(&img, pids)
            .iter()
            .map(|e| e.to_string())
            .collect()
    };
    let problems = check(&pids);
    let has = |s: &str| problems.iter().any(|p| p.contains(s));
    assert!(has("uts-1 is missing"), "{problems:?}");
    assert!(has("net-3 is missing"), "{problems:?}");
    assert!(has("past segment 6"), "{problems:?}");
    assert!(has("sysvshm-2-7"), "{problems:?}");
    assert!(has("cgroups: pid 11 is not in the tree"), "{problems:?}");
    // cgroups has one entry per task: the one of pid 10 is missing.
    assert!(has("cgroups: has no entry for pid 10"), "{problems:?}");
    assert_eq!(problems.len(), 6, "{problems:?}");

    let problems = check(&BTreeSet::new());
    assert!(problems
        .iter()
        .any(|p| p.contains("ns-ids: pid 10 is not in the tree")));
}
