//! Namespaces end to end, each in forked children that unshare, so the machine's own namespaces are never
//! touched: a source child sets up uts and ipc state (hostname, domain name, System V shm with contents,
//! a semaphore set, a message queue with three messages, an ipc limit), the engine dumps its namespaces, the
//! source checks the dump consumed no message and exits (its namespaces die), then a second child enters
//! fresh namespaces from the image and checks every value, id, owner and content byte. Also: an id that is
//! taken refuses the restore clearly; cgroup membership (v2 and v1 `pids`) from a given root; a private
//! netns with `lo` up; joining an external netns by path; a user namespace with its id maps.
//!
//! Privileged: fails with a message when not run as root. Runs without libtest's harness (forking from a
//! multi-threaded test runner is unsafe).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use dormant_engine::ns::{dump_namespaces, NsDumpSummary};
use dormant_image::records::*;
use dormant_image::{ImageReader, ImageWriter, InventoryInfo};
use dormant_restorer::ns::{
    interface_up, CgroupTarget, NetMode, NetPlan, NsOptions, NsPlan, NsRestoreError,
};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid as NixPid};

const HOSTNAME: &str = "dormant-ns-src";
const DOMAIN: &str = "ns.example.test";
const SHM_KEY: i32 = 0x6e73_0001;
const SHM_SIZE: usize = 3 * 4096 + 100;
const SEM_KEY: i32 = 0x6e73_0002;
const SEM_VALUES: [u16; 4] = [1, 7, 0, 32767];
const MSG_KEY: i32 = 0x6e73_0003;
const MSGMNB: &str = "20000";
const OWNER: (u32, u32) = (1234, 5678);
const CREATOR: (u32, u32) = (4321, 8765);

const MQ_NAME: &str = "dormant-q";
const MQ_MSG_MAX: &str = "20";

/// POSIX queue messages as sent (priority, data); received: highest priority first, FIFO within one.
fn mq_sent() -> Vec<(u32, Vec<u8>)> {
    vec![
        (1, b"low-a".to_vec()),
        (5, b"high".to_vec()),
        (1, b"low-b".to_vec()),
    ]
}

fn mq_expected() -> Vec<(u32, Vec<u8>)> {
    let s = mq_sent();
    vec![s[1].clone(), s[0].clone(), s[2].clone()]
}

fn mq_open(flags: i32) -> Result<libc::mqd_t, String> {
    let name = std::ffi::CString::new(format!("/{MQ_NAME}")).unwrap();
    // SAFETY: all-zero is a valid mq_attr.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = 5;
    attr.mq_msgsize = 64;
    // SAFETY: reads the name, and with O_CREAT a mode and one mq_attr.
    let fd = unsafe {
        libc::mq_open(
            name.as_ptr(),
            flags | libc::O_NONBLOCK,
            0o640,
            &attr as *const libc::mq_attr,
        )
    };
    if fd < 0 {
        return Err(errno("mq_open"));
    }
    Ok(fd)
}

type MqAttrs = (i64, i64, u32, u32, u32);
type MqMessages = Vec<(u32, Vec<u8>)>;

/// Attributes and owner of the queue, then its messages (dequeued).
fn mq_drain() -> Result<(MqAttrs, MqMessages), String> {
    let fd = mq_open(libc::O_RDONLY)?;
    // SAFETY: all-zero is a valid mq_attr / stat; the calls fill them.
    let (mut attr, mut st): (libc::mq_attr, libc::stat) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: mq_getattr and fstat write one struct each.
    if unsafe { libc::mq_getattr(fd, &mut attr) } != 0 || unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(errno("mq_getattr/fstat"));
    }
    let mut out = Vec::new();
    loop {
        let mut buf = [0u8; 64];
        let mut prio = 0;
        // SAFETY: writes at most 64 bytes and the priority.
        let n = unsafe { libc::mq_receive(fd, buf.as_mut_ptr().cast(), 64, &mut prio) };
        if n < 0 {
            break;
        }
        out.push((prio, buf[..n as usize].to_vec()));
    }
    // SAFETY: closes our descriptor.
    unsafe { libc::mq_close(fd) };
    Ok((
        (
            attr.mq_maxmsg,
            attr.mq_msgsize,
            st.st_uid,
            st.st_gid,
            st.st_mode & 0o777,
        ),
        out,
    ))
}

fn messages() -> Vec<(i64, Vec<u8>)> {
    vec![
        (1, b"first message".to_vec()),
        (7, Vec::new()),
        (1, (0..=255u8).cycle().take(3000).collect()),
    ]
}

/// Content of the keyed segment: pages 0 and 3 (its 100-byte tail) are written, page 1 and 2 stay holes.
fn shm_content() -> Vec<u8> {
    let mut v = vec![0u8; SHM_SIZE];
    for (i, b) in v[..4096].iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    for (i, b) in v[3 * 4096..].iter_mut().enumerate() {
        *b = 0xa0 ^ i as u8;
    }
    v
}

// ---------------------------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------------------------

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// A forked child running `f`; its verdict comes back through a pipe (empty = success).
struct Child {
    pid: NixPid,
    verdict: std::fs::File,
    cmd: Option<std::fs::File>,
}

impl Child {
    /// Forks a child that runs `f(commands)`; `commands` reads bytes the parent sends with [`Child::send`].
    fn spawn(f: impl FnOnce(&mut std::fs::File) -> Result<(), String>) -> Child {
        let (v_r, v_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (c_r, c_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        // SAFETY: this test binary runs without libtest's threads, so the child may run ordinary code; it
        // leaves with _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop((v_r, c_w));
                // SAFETY: marks every inherited fd from 3 up close-on-exec (none of this child's business).
                unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) };
                let mut cmd = std::fs::File::from(c_r);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut cmd)))
                    .unwrap_or_else(|_| Err("panicked".into()));
                let mut v = std::fs::File::from(v_w);
                let _ = v.write_all(r.err().unwrap_or_default().as_bytes());
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => Child {
                pid: child,
                verdict: std::fs::File::from(v_r),
                cmd: Some(std::fs::File::from(c_w)),
            },
        }
    }

    fn send(&mut self, b: u8) {
        self.cmd.as_mut().unwrap().write_all(&[b]).unwrap();
    }

    /// Waits for the child to end; `Err` with its message when it failed.
    fn wait(mut self) -> Result<(), String> {
        self.cmd = None;
        let mut msg = String::new();
        self.verdict.read_to_string(&mut msg).unwrap();
        let st = waitpid(self.pid, None).unwrap();
        if !matches!(st, WaitStatus::Exited(_, 0)) {
            return Err(format!("child ended with {st:?}: {msg}"));
        }
        if msg.is_empty() {
            Ok(())
        } else {
            Err(msg)
        }
    }
}

/// Runs `f` in a forked child and returns its verdict.
fn in_child(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    Child::spawn(|_| f()).wait()
}

fn wait_byte(cmd: &mut std::fs::File) -> Result<u8, String> {
    let mut b = [0u8; 1];
    cmd.read_exact(&mut b)
        .map_err(|e| format!("waiting for the parent: {e}"))?;
    Ok(b[0])
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

// ---------------------------------------------------------------------------------------------------------
// System V helpers (the test's own, so it does not trust the code under test)
// ---------------------------------------------------------------------------------------------------------

fn shm_stat(id: i32) -> Result<libc::shmid_ds, String> {
    // SAFETY: all-zero is a valid shmid_ds; IPC_STAT fills it.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } != 0 {
        return Err(errno(&format!("shmctl({id}, IPC_STAT)")));
    }
    Ok(ds)
}

fn shm_bytes(id: i32, len: usize) -> Result<Vec<u8>, String> {
    // SAFETY: attach read-only at a kernel-chosen address, copy `len` bytes (the segment size), detach.
    unsafe {
        let p = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY);
        if p as isize == -1 {
            return Err(errno("shmat"));
        }
        let v = std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec();
        libc::shmdt(p);
        Ok(v)
    }
}

fn sem_stat(id: i32) -> Result<libc::semid_ds, String> {
    // SAFETY: all-zero is a valid semid_ds.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one semid_ds; the variadic semun is the pointer.
    if unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) } != 0 {
        return Err(errno("semctl(IPC_STAT)"));
    }
    Ok(ds)
}

fn sem_values(id: i32, n: usize) -> Result<Vec<u16>, String> {
    let mut v = vec![0u16; n];
    // SAFETY: GETALL writes one u16 per semaphore; the set has `n`.
    if unsafe { libc::semctl(id, 0, libc::GETALL, v.as_mut_ptr()) } != 0 {
        return Err(errno("semctl(GETALL)"));
    }
    Ok(v)
}

fn msg_stat(id: i32) -> Result<libc::msqid_ds, String> {
    // SAFETY: all-zero is a valid msqid_ds.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one msqid_ds.
    if unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } != 0 {
        return Err(errno("msgctl(IPC_STAT)"));
    }
    Ok(ds)
}

/// Dequeues every message of queue `id`, oldest first.
fn drain(id: i32) -> Result<Vec<(i64, Vec<u8>)>, String> {
    let mut out = Vec::new();
    loop {
        let mut buf = vec![0u8; 8 + 8192];
        // SAFETY: msgrcv writes a long and at most 8192 bytes into `buf`.
        let n = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), 8192, 0, libc::IPC_NOWAIT) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMSG) {
                return Ok(out);
            }
            return Err(errno("msgrcv"));
        }
        let mtype = i64::from_ne_bytes(buf[..8].try_into().unwrap());
        out.push((mtype, buf[8..8 + n as usize].to_vec()));
    }
}

/// Source state in the calling child's new uts+ipc namespaces; returns (shm ids, sem id, msg id).
fn build_source() -> Result<(Vec<i32>, i32, i32), String> {
    unshare(CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC).map_err(|e| e.to_string())?;
    // SAFETY: both read `len` bytes of a live string.
    unsafe {
        if libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()) != 0
            || libc::setdomainname(DOMAIN.as_ptr().cast(), DOMAIN.len()) != 0
        {
            return Err(errno("sethostname"));
        }
    }
    std::fs::write("/proc/sys/kernel/msgmnb", MSGMNB).map_err(|e| e.to_string())?;
    // An id with a non-zero sequence number and slot, as a long-lived namespace has.
    std::fs::write("/proc/sys/kernel/shm_next_id", (3 * 32768 + 5).to_string())
        .map_err(|e| e.to_string())?;
    // SAFETY: plain syscalls; pointers are to live buffers.
    unsafe {
        let keyed = libc::shmget(SHM_KEY, SHM_SIZE, libc::IPC_CREAT | 0o640);
        if keyed < 0 {
            return Err(errno("shmget"));
        }
        let p = libc::shmat(keyed, std::ptr::null(), 0);
        let content = shm_content();
        std::ptr::copy_nonoverlapping(content.as_ptr(), p.cast::<u8>(), SHM_SIZE);
        libc::shmdt(p);
        let mut ds = shm_stat(keyed)?;
        ds.shm_perm.uid = OWNER.0;
        ds.shm_perm.gid = OWNER.1;
        if libc::shmctl(keyed, libc::IPC_SET, &mut ds) != 0 {
            return Err(errno("shmctl(IPC_SET)"));
        }
        // A private segment created by another user (creator ids are part of the state).
        libc::syscall(libc::SYS_setresgid, -1, CREATOR.1, -1);
        libc::syscall(libc::SYS_setresuid, -1, CREATOR.0, -1);
        let private = libc::shmget(libc::IPC_PRIVATE, 8192, 0o600);
        libc::syscall(libc::SYS_setresuid, -1, 0, -1);
        libc::syscall(libc::SYS_setresgid, -1, 0, -1);
        if private < 0 {
            return Err(errno("shmget as creator"));
        }

        let sem = libc::semget(SEM_KEY, SEM_VALUES.len() as i32, libc::IPC_CREAT | 0o604);
        if sem < 0 || libc::semctl(sem, 0, libc::SETALL, SEM_VALUES.as_ptr()) != 0 {
            return Err(errno("semget/SETALL"));
        }
        let msg = libc::msgget(MSG_KEY, libc::IPC_CREAT | 0o620);
        if msg < 0 {
            return Err(errno("msgget"));
        }
        for (t, text) in messages() {
            let mut buf = t.to_ne_bytes().to_vec();
            buf.extend_from_slice(&text);
            if libc::msgsnd(msg, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) != 0 {
                return Err(errno("msgsnd"));
            }
        }
        std::fs::write("/proc/sys/fs/mqueue/msg_max", MQ_MSG_MAX).map_err(|e| e.to_string())?;
        let mq = mq_open(libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY)?;
        for (prio, data) in mq_sent() {
            if libc::mq_send(mq, data.as_ptr().cast(), data.len(), prio) != 0 {
                return Err(errno("mq_send"));
            }
        }
        if libc::fchown(mq, OWNER.0, OWNER.1) != 0 {
            return Err(errno("fchown mq"));
        }
        libc::mq_close(mq);
        Ok((vec![keyed, private], sem, msg))
    }
}

fn ns_ino(who: &str, kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/{who}/ns/{kind}"))
        .unwrap()
        .ino()
}

fn commit(w: ImageWriter, root: u32) -> PathBuf {
    w.commit(InventoryInfo {
        arch: dormant_image::ARCH.into(),
        kernel_release: "test".into(),
        xsave_features: 0,
        xsave_size: 0,
        tool_version: "test".into(),
        created_unix_secs: 0,
        root_pid: Pid(root),
    })
    .unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------

struct Dumped {
    _tmp: tempfile::TempDir,
    image: PathBuf,
    root: Pid,
    shm_ids: Vec<i32>,
    sem_id: i32,
    msg_id: i32,
}

/// The source child, its dump, and the check that the dump left every message queued.
fn dump_source() -> Dumped {
    let (id_r, id_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut src = Child::spawn(move |cmd| {
        let (shm, sem, msg) = build_source()?;
        let mut w = std::fs::File::from(id_w);
        w.write_all(format!("{} {} {sem} {msg}\n", shm[0], shm[1]).as_bytes())
            .map_err(|e| e.to_string())?;
        drop(w);
        ensure(wait_byte(cmd)? == b'c', || {
            "expected the check command".into()
        })?;
        let ds = msg_stat(msg)?;
        ensure(ds.msg_qnum == 3, || {
            format!("after the dump the queue holds {} messages", ds.msg_qnum)
        })?;
        let got = drain(msg)?;
        ensure(got == messages(), || {
            format!("after the dump the queue holds {got:?}")
        })?;
        let (_, mq) = mq_drain()?;
        ensure(mq == mq_expected(), || {
            format!("after the dump the POSIX queue holds {mq:?}")
        })
    });
    let mut line = String::new();
    std::fs::File::from(id_r).read_to_string(&mut line).unwrap();
    let ids: Vec<i32> = line
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        4,
        "source child failed to set up: {:?}",
        src.wait()
    );
    assert_eq!(
        ids[0],
        3 * 32768 + 5,
        "the source's keyed segment did not get its id"
    );
    let root = Pid(src.pid.as_raw() as u32);

    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
    let summary: NsDumpSummary = dump_namespaces(&[root], &mut w).unwrap();
    let image = commit(w, root.0);
    src.send(b'c');
    src.wait().expect("the source's messages after the dump");

    assert_eq!(summary.shm_segments, 2);
    assert_eq!(summary.sem_sets, 1);
    assert_eq!(summary.msg_queues, 1);
    assert_eq!(summary.messages, 3);
    assert_eq!(summary.posix_queues, 1);
    let img = ImageReader::open(&image).unwrap();
    img.verify().unwrap();
    let ns: Vec<TaskNamespaces> = img.read_records(ns_names::NS_IDS).unwrap();
    assert_eq!(ns.len(), 1);
    for n in &ns[0].namespaces {
        let private = matches!(n.kind, NsKind::Uts | NsKind::Ipc);
        assert_eq!(n.external, !private, "{:?}", n);
    }
    let problems = dormant_image::image::check_namespaces(&img, &[root].into());
    assert!(problems.is_empty(), "{problems:?}");
    // Only written pages are stored: pages 0 and 3 of the keyed segment, nothing of the untouched one.
    let ipc: IpcNamespace = img
        .read_single(&ns_names::ipc(ns[0].get(NsKind::Ipc).unwrap().id))
        .unwrap();
    let stored = |shmid| {
        let ps = img
            .page_store(&ns_names::sysv_shm_pages(ipc.id, shmid))
            .unwrap();
        ps.extents()
            .iter()
            .map(|e| (e.vaddr, e.len))
            .collect::<Vec<_>>()
    };
    assert_eq!(stored(ids[0]), vec![(0, 4096), (3 * 4096, 4096)]);
    assert_eq!(stored(ids[1]), vec![]);
    Dumped {
        _tmp: tmp,
        image,
        root,
        shm_ids: ids[..2].to_vec(),
        sem_id: ids[2],
        msg_id: ids[3],
    }
}

/// Checks, inside restored namespaces, every value the source set.
fn check_restored(d: &Dumped) -> Result<(), String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let dom = std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    ensure(
        host.trim_end() == HOSTNAME && dom.trim_end() == DOMAIN,
        || format!("uts names {host:?} {dom:?}"),
    )?;
    let mnb = std::fs::read_to_string("/proc/sys/kernel/msgmnb").unwrap();
    ensure(mnb.trim_end() == MSGMNB, || format!("msgmnb {mnb:?}"))?;

    let keyed = shm_stat(d.shm_ids[0])?;
    let p = keyed.shm_perm;
    ensure(
        (
            p.__key,
            p.uid,
            p.gid,
            p.cuid,
            p.cgid,
            p.mode & 0o777,
            keyed.shm_segsz,
        ) == (SHM_KEY, OWNER.0, OWNER.1, 0, 0, 0o640, SHM_SIZE),
        || format!("keyed segment {}: {keyed:?}", d.shm_ids[0]),
    )?;
    let bytes = shm_bytes(d.shm_ids[0], SHM_SIZE)?;
    ensure(bytes == shm_content(), || {
        "keyed segment content differs".into()
    })?;
    let private = shm_stat(d.shm_ids[1])?;
    let p = private.shm_perm;
    ensure(
        (
            p.__key,
            p.uid,
            p.gid,
            p.cuid,
            p.cgid,
            p.mode & 0o777,
            private.shm_segsz,
        ) == (0, CREATOR.0, CREATOR.1, CREATOR.0, CREATOR.1, 0o600, 8192),
        || format!("private segment {}: {private:?}", d.shm_ids[1]),
    )?;
    ensure(
        shm_bytes(d.shm_ids[1], 8192)?.iter().all(|&b| b == 0),
        || "private segment is not all zero".into(),
    )?;

    let sem = sem_stat(d.sem_id)?;
    let p = sem.sem_perm;
    ensure(
        (p.__key, p.mode & 0o777, sem.sem_nsems as usize) == (SEM_KEY, 0o604, SEM_VALUES.len()),
        || format!("semaphore set {}: {sem:?}", d.sem_id),
    )?;
    let values = sem_values(d.sem_id, SEM_VALUES.len())?;
    ensure(values == SEM_VALUES, || {
        format!("semaphore values {values:?}")
    })?;

    let q = msg_stat(d.msg_id)?;
    ensure(
        (
            q.msg_perm.__key,
            q.msg_perm.mode & 0o777,
            q.msg_qnum,
            q.msg_qbytes,
        ) == (MSG_KEY, 0o620, 3, MSGMNB.parse().unwrap()),
        || format!("queue {}: {q:?}", d.msg_id),
    )?;
    let got = drain(d.msg_id)?;
    ensure(got == messages(), || format!("restored messages {got:?}"))?;
    let mq_max = std::fs::read_to_string("/proc/sys/fs/mqueue/msg_max").unwrap();
    ensure(mq_max.trim_end() == MQ_MSG_MAX, || {
        format!("fs.mqueue.msg_max {mq_max:?}")
    })?;
    let (attrs, mq) = mq_drain()?;
    ensure(attrs == (5, 64, OWNER.0, OWNER.1, 0o640), || {
        format!("POSIX queue attributes {attrs:?}")
    })?;
    ensure(mq == mq_expected(), || {
        format!("restored POSIX queue {mq:?}")
    })
}

fn uts_and_ipc_roundtrip(d: &Dumped) {
    let img = ImageReader::open(&d.image).unwrap();
    let plan = NsPlan::from_image(&img, d.root, &NsOptions::default()).unwrap();
    assert!(plan.uts.is_some() && plan.ipc.is_some() && plan.user.is_none());
    assert_eq!(plan.net, NetPlan::Inherit);
    let (uts, ipc) = (ns_ino("self", "uts"), ns_ino("self", "ipc"));
    in_child(|| {
        plan.enter().map_err(|e| e.to_string())?;
        ensure(
            ns_ino("self", "uts") != uts && ns_ino("self", "ipc") != ipc,
            || "restore did not make fresh namespaces".into(),
        )?;
        check_restored(d)
    })
    .expect("restored uts and ipc namespaces");
}

fn taken_ipc_id_is_refused(d: &Dumped) {
    let img = ImageReader::open(&d.image).unwrap();
    let plan = NsPlan::from_image(&img, d.root, &NsOptions::default()).unwrap();
    let ipc = plan.ipc.as_ref().unwrap();
    let want = d.shm_ids[0];
    // The same id exists already.
    in_child(|| {
        unshare(CloneFlags::CLONE_NEWIPC).unwrap();
        std::fs::write("/proc/sys/kernel/shm_next_id", want.to_string()).unwrap();
        // SAFETY: plain syscall.
        let got = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, 0o600) };
        ensure(got == want, || {
            format!("setup: got shm id {got}, wanted {want}")
        })?;
        match dormant_restorer::ns::restore_ipc(ipc, None) {
            Err(NsRestoreError::IpcIdTaken { id, .. }) if id == want => Ok(()),
            other => Err(format!("expected IpcIdTaken for {want}, got {other:?}")),
        }
    })
    .expect("an existing id is refused");
    // Its slot is used by an object with another sequence number.
    in_child(|| {
        unshare(CloneFlags::CLONE_NEWIPC).unwrap();
        let other = want % 32768 + 32768 * ((want / 32768 + 1) % 4);
        std::fs::write("/proc/sys/kernel/shm_next_id", other.to_string()).unwrap();
        // SAFETY: plain syscall.
        let got = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, 0o600) };
        ensure(got == other, || {
            format!("setup: got shm id {got}, wanted {other}")
        })?;
        match dormant_restorer::ns::restore_ipc(ipc, None) {
            Err(e @ NsRestoreError::IpcIdTaken { .. }) => {
                let msg = e.to_string();
                ensure(
                    msg.contains(&want.to_string()) && msg.contains(&other.to_string()),
                    || format!("message does not name both ids: {msg}"),
                )
            }
            other => Err(format!("expected IpcIdTaken, got {other:?}")),
        }
    })
    .expect("a slot taken by another id is refused");
}

fn private_net_has_lo_up(d: &Dumped) {
    let img = ImageReader::open(&d.image).unwrap();
    let opts = NsOptions {
        net: NetMode::Private,
        ..Default::default()
    };
    let plan = NsPlan::from_image(&img, d.root, &opts).unwrap();
    assert_eq!(plan.net, NetPlan::Private { loopback_up: true });
    let net = ns_ino("self", "net");
    in_child(|| {
        plan.enter().map_err(|e| e.to_string())?;
        ensure(ns_ino("self", "net") != net, || {
            "no new network namespace".into()
        })?;
        let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap();
        let names: Vec<&str> = dev
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(str::trim)
            .collect();
        ensure(names == ["lo"], || format!("interfaces {names:?}"))?;
        let flags = interface_up("lo", None).map_err(|e| e.to_string())?;
        ensure(flags & libc::IFF_UP != 0, || format!("lo flags {flags:#x}"))?;
        // lo really carries traffic.
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let mut c =
            std::net::TcpStream::connect(l.local_addr().unwrap()).map_err(|e| e.to_string())?;
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        l.accept().unwrap().0.read_exact(&mut b).unwrap();
        ensure(&b == b"x", || "loopback lost a byte".into())?;
        check_restored(d)
    })
    .expect("private network namespace");
}

fn external_net_is_joined(d: &Dumped) {
    let mut holder = Child::spawn(|cmd| {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
        wait_byte(cmd).map(drop)
    });
    // Wait until the holder is in its namespace.
    let holder_pid = holder.pid.as_raw();
    let outer = ns_ino("self", "net");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ns_ino(&holder_pid.to_string(), "net") == outer {
        assert!(
            std::time::Instant::now() < deadline,
            "holder never unshared its netns"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let target = ns_ino(&holder_pid.to_string(), "net");
    let img = ImageReader::open(&d.image).unwrap();
    let opts = NsOptions {
        net: NetMode::External(format!("/proc/{holder_pid}/ns/net").into()),
        ..Default::default()
    };
    let plan = NsPlan::from_image(&img, d.root, &opts).unwrap();
    let r = in_child(|| {
        plan.enter().map_err(|e| e.to_string())?;
        let now = ns_ino("self", "net");
        ensure(now == target, || format!("in netns {now}, wanted {target}"))
    });
    // A path that is no namespace is refused with the path in the message.
    let bad = NsOptions {
        net: NetMode::External("/nonexistent/netns".into()),
        ..Default::default()
    };
    let bad_plan = NsPlan::from_image(&img, d.root, &bad).unwrap();
    let refused = in_child(|| match bad_plan.enter() {
        Err(e) if e.to_string().contains("/nonexistent/netns") => Ok(()),
        other => Err(format!("expected a refusal naming the path, got {other:?}")),
    });
    holder.send(b'q');
    holder.wait().unwrap();
    r.expect("joined the external netns");
    refused.expect("missing netns path refused");
}

/// Restores into `/sys/fs/cgroup/unified/<name>` (v2) and `/sys/fs/cgroup/pids/<name>` (v1) from an image
/// whose task was in both hierarchies, and checks `/proc/self/cgroup`.
fn cgroup_root_is_joined() {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let pids_line = own.lines().find(|l| l.split(':').nth(1) == Some("pids"));
    let has_v2 = own.lines().any(|l| l.starts_with("0::"));
    assert!(
        has_v2,
        "this test expects the cgroup v2 hierarchy to be mounted (see /sys/fs/cgroup)"
    );
    let mut lines = vec![CgroupLine {
        hierarchy: 0,
        controllers: vec![],
        path: "/".into(),
    }];
    if let Some(l) = pids_line {
        lines.push(CgroupLine {
            hierarchy: l.split(':').next().unwrap().parse().unwrap(),
            controllers: vec!["pids".into()],
            path: "/".into(),
        });
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
    w.write_records(
        ns_names::CGROUPS,
        &[TaskCgroups {
            pid: Pid(1),
            lines: lines.clone(),
        }],
    )
    .unwrap();
    let image = commit(w, 1);
    let img = ImageReader::open(&image).unwrap();
    let name = format!("dormant-ns-test-{}", std::process::id());
    let opts = NsOptions {
        cgroup: CgroupTarget::Root(format!("/{name}").into()),
        ..Default::default()
    };
    let plan = NsPlan::from_image(&img, Pid(1), &opts).unwrap();
    assert_eq!(plan.cgroups.len(), lines.len());
    let r = in_child(|| {
        plan.enter().map_err(|e| e.to_string())?;
        let now = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        for l in &lines {
            let want = format!("{}:{}:/{name}", l.hierarchy, l.controllers.join(","));
            ensure(now.lines().any(|x| x == want), || {
                format!("no line {want:?} in {now:?}")
            })?;
        }
        Ok(())
    });
    // With a cgroup namespace of its own in the image, the joined cgroup becomes the namespace's root.
    let tmp_ns = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp_ns.path().join("img")).unwrap();
    w.write_records(
        ns_names::CGROUPS,
        &[TaskCgroups {
            pid: Pid(1),
            lines: lines.clone(),
        }],
    )
    .unwrap();
    let cgroup_ns = TaskNamespaces {
        pid: Pid(1),
        namespaces: vec![NsRef {
            kind: NsKind::Cgroup,
            id: NsId(1),
            external: false,
        }],
    };
    w.write_records(ns_names::NS_IDS, &[cgroup_ns]).unwrap();
    let img_ns = ImageReader::open(&commit(w, 1)).unwrap();
    let plan_ns = NsPlan::from_image(&img_ns, Pid(1), &opts).unwrap();
    assert!(plan_ns.new_cgroup_ns);
    let cgroupns = ns_ino("self", "cgroup");
    let r_ns = in_child(|| {
        plan_ns.enter().map_err(|e| e.to_string())?;
        ensure(ns_ino("self", "cgroup") != cgroupns, || {
            "no new cgroup namespace".into()
        })?;
        let now = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        for l in &lines {
            let want = format!("{}:{}:/", l.hierarchy, l.controllers.join(","));
            ensure(now.lines().any(|x| x == want), || {
                format!("no line {want:?} in {now:?}")
            })?;
        }
        let procs = std::fs::read_to_string(plan_ns.cgroups[0].join("cgroup.procs")).unwrap();
        ensure(
            procs.lines().any(|p| p == std::process::id().to_string()),
            || format!("not in {}: {procs:?}", plan_ns.cgroups[0].display()),
        )
    });
    assert_eq!(
        plan.new_cgroups, plan.cgroups,
        "the test's cgroups existed before"
    );
    assert!(plan.remove_new_cgroups().is_empty());
    for dir in &plan.cgroups {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    r.expect("joined the given cgroups");
    r_ns.expect("cgroup namespace rooted at the joined cgroup");
    // A hierarchy that is not mounted here is refused with its name.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp2.path().join("img")).unwrap();
    let missing = CgroupLine {
        hierarchy: 42,
        controllers: vec!["name=dormant-none".into()],
        path: "/".into(),
    };
    w.write_records(
        ns_names::CGROUPS,
        &[TaskCgroups {
            pid: Pid(1),
            lines: vec![missing],
        }],
    )
    .unwrap();
    let img = ImageReader::open(&commit(w, 1)).unwrap();
    let err = NsPlan::from_image(&img, Pid(1), &opts).unwrap_err();
    assert!(err.to_string().contains("name=dormant-none"), "{err}");
}

/// A segment removed while still attached cannot be recreated: the dump refuses it by id, and the source
/// keeps its segment.
fn removed_attached_segment_is_refused() {
    let (id_r, id_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut src = Child::spawn(move |cmd| {
        unshare(CloneFlags::CLONE_NEWIPC).map_err(|e| e.to_string())?;
        // SAFETY: plain syscalls; the attachment stays mapped until this child exits.
        let id = unsafe {
            let id = libc::shmget(libc::IPC_PRIVATE, 4096, 0o600);
            let p = libc::shmat(id, std::ptr::null(), 0);
            if id < 0 || p as isize == -1 {
                return Err(errno("shmget/shmat"));
            }
            p.cast::<u8>().write(42);
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            id
        };
        std::fs::File::from(id_w)
            .write_all(format!("{id}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        wait_byte(cmd)?;
        let ds = shm_stat(id)?;
        ensure(ds.shm_nattch == 1, || format!("after the dump: {ds:?}"))
    });
    let mut line = String::new();
    std::fs::File::from(id_r).read_to_string(&mut line).unwrap();
    let id: i32 = line.trim().parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
    let err = dump_namespaces(&[Pid(src.pid.as_raw() as u32)], &mut w).unwrap_err();
    src.send(b'c');
    src.wait().expect("the source keeps its segment");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("shm {id}")) && msg.contains("IPC_RMID"),
        "{msg}"
    );
}

/// A task of the tree in a uts namespace other than the root's is refused by pid and kind.
fn nested_namespace_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
    let task = |pid, uts| TaskNamespaces {
        pid: Pid(pid),
        namespaces: vec![NsRef {
            kind: NsKind::Uts,
            id: NsId(uts),
            external: true,
        }],
    };
    w.write_records(ns_names::NS_IDS, &[task(1, 7), task(2, 8)])
        .unwrap();
    let img = ImageReader::open(&commit(w, 1)).unwrap();
    let err = NsPlan::from_image(&img, Pid(1), &NsOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("pid 2 is in another uts namespace"), "{msg}");
}

/// A full POSIX queue cannot be read without letting a blocked sender in: the dump refuses it by name and
/// the queue keeps its message.
fn full_posix_queue_is_refused() {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut src = Child::spawn(move |cmd| {
        unshare(CloneFlags::CLONE_NEWIPC).map_err(|e| e.to_string())?;
        let name = std::ffi::CString::new("/full-q").unwrap();
        // SAFETY: all-zero is a valid mq_attr.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = 1;
        attr.mq_msgsize = 8;
        // SAFETY: reads the name, a mode and one mq_attr; then sends 3 bytes.
        let fd = unsafe {
            let fd = libc::mq_open(
                name.as_ptr(),
                libc::O_CREAT | libc::O_RDWR | libc::O_NONBLOCK,
                0o600,
                &attr as *const libc::mq_attr,
            );
            if fd < 0 || libc::mq_send(fd, b"one".as_ptr().cast(), 3, 0) != 0 {
                return Err(errno("mq_open/mq_send"));
            }
            fd
        };
        drop(ready_w); // the queue exists
        wait_byte(cmd)?; // the dump is over
                         // SAFETY: mq_getattr writes one mq_attr.
        if unsafe { libc::mq_getattr(fd, &mut attr) } != 0 {
            return Err(errno("mq_getattr"));
        }
        ensure(attr.mq_curmsgs == 1, || {
            format!("after the dump: {} messages", attr.mq_curmsgs)
        })
    });
    let mut b = [0u8; 1];
    let _ = std::fs::File::from(ready_r).read(&mut b);
    let pid = Pid(src.pid.as_raw() as u32);
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
    let err = dump_namespaces(&[pid], &mut w).unwrap_err();
    src.send(b'c');
    src.wait().expect("the full queue keeps its message");
    let msg = err.to_string();
    assert!(
        msg.contains("POSIX queue /full-q") && msg.contains("full"),
        "{msg}"
    );
}

/// A child in its own user (and uts) namespace: dumped with its id maps, restored into a new user
/// namespace with the same maps.
fn user_namespace_roundtrip() {
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut src = Child::spawn(move |cmd| {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| e.to_string())?;
        drop(go_w); // tells the parent the namespace exists
        ensure(wait_byte(cmd)? == b'm', || "expected maps".into())?;
        unshare(CloneFlags::CLONE_NEWUTS).map_err(|e| e.to_string())?;
        // SAFETY: reads `len` bytes of a live string.
        if unsafe { libc::sethostname(b"in-userns".as_ptr().cast(), 9) } != 0 {
            return Err(errno("sethostname in userns"));
        }
        wait_byte(cmd).map(drop)
    });
    let mut b = [0u8; 1];
    let _ = std::fs::File::from(go_r).read(&mut b);
    let pid = src.pid.as_raw();
    std::fs::write(format!("/proc/{pid}/uid_map"), "0 100000 1000\n").unwrap();
    std::fs::write(format!("/proc/{pid}/gid_map"), "0 200000 1000\n").unwrap();
    src.send(b'm');
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ns_ino(&pid.to_string(), "uts") == ns_ino("self", "uts") {
        assert!(
            std::time::Instant::now() < deadline,
            "source never unshared uts"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(&tmp.path().join("img")).unwrap();
    let root = Pid(pid as u32);
    let summary = dump_namespaces(&[root], &mut w).unwrap();
    src.send(b'q');
    src.wait().unwrap();
    assert!(summary.dumped.iter().any(|(k, _)| *k == NsKind::User));
    let img = ImageReader::open(&commit(w, root.0)).unwrap();
    let plan = NsPlan::from_image(&img, root, &NsOptions::default()).unwrap();
    let user = plan.user.clone().expect("user namespace in the plan");
    assert_eq!(
        user.uid_map,
        vec![IdMapRange {
            inside: 0,
            outside: 100_000,
            count: 1000
        }]
    );
    let userns = ns_ino("self", "user");
    in_child(|| {
        plan.enter().map_err(|e| e.to_string())?;
        ensure(ns_ino("self", "user") != userns, || {
            "no new user namespace".into()
        })?;
        let read = |f: &str| -> Vec<String> {
            std::fs::read_to_string(format!("/proc/self/{f}"))
                .unwrap()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        ensure(read("uid_map") == ["0", "100000", "1000"], || {
            format!("uid_map {:?}", read("uid_map"))
        })?;
        ensure(read("gid_map") == ["0", "200000", "1000"], || {
            format!("gid_map {:?}", read("gid_map"))
        })?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        ensure(host.trim_end() == "in-userns", || {
            format!("hostname {host:?}")
        })
    })
    .expect("restored user namespace");
}

fn require_root() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("namespaces: these tests create namespaces and cgroups and must run as root");
        std::process::exit(1);
    }
}

fn main() {
    require_root();
    eprint!("test dump_uts_and_ipc_without_consuming_messages ... ");
    let d = dump_source();
    eprintln!("ok");
    let tests: [(&str, &dyn Fn()); 4] = [
        ("uts_and_ipc_roundtrip", &|| uts_and_ipc_roundtrip(&d)),
        ("taken_ipc_id_is_refused", &|| taken_ipc_id_is_refused(&d)),
        ("private_net_has_lo_up", &|| private_net_has_lo_up(&d)),
        ("external_net_is_joined", &|| external_net_is_joined(&d)),
    ];
    for (name, test) in tests {
        eprint!("test {name} ... ");
        test();
        eprintln!("ok");
    }
    for (name, test) in [
        ("cgroup_root_is_joined", cgroup_root_is_joined as fn()),
        ("user_namespace_roundtrip", user_namespace_roundtrip),
        ("nested_namespace_is_refused", nested_namespace_is_refused),
        ("full_posix_queue_is_refused", full_posix_queue_is_refused),
        (
            "removed_attached_segment_is_refused",
            removed_attached_segment_is_refused,
        ),
    ] {
        eprint!("test {name} ... ");
        test();
        eprintln!("ok");
    }
}
