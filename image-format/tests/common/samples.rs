//! A coherent image holding at least one record of every kind (every `DescKind`, every `VmaBacking`, every
//! namespace and mount source too), which every check of `Image::load` accepts. Tests mutate one part and
//! show the checks refuse it; the committed fixture `format-3.0-all-kinds` was written from it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dormant_image::records::*;
use dormant_image::{ImageWriter, InventoryInfo, ARCH};

/// Every record of the sample image, by file; change a field and [`Samples::write`] the image.
#[derive(Debug, Clone)]
pub struct Samples {
    pub tree: Vec<PsTreeEntry>,
    pub cores: Vec<TaskCore>,
    pub threads: Vec<ThreadCore>,
    pub mms: Vec<Mm>,
    pub fds: Vec<(Pid, Vec<Fd>)>,
    pub locks: Vec<(Pid, Vec<FileLock>)>,
    pub files: Vec<RegFile>,
    pub descs: Vec<FileDesc>,
    pub shmem: Vec<ShmemObject>,
    pub zombies: Vec<Zombie>,
    pub shared_tables: Vec<SharedTables>,
    pub nested_mntns: Vec<NestedMountNs>,
    pub ns_ids: Vec<TaskNamespaces>,
    pub cgroups: Vec<TaskCgroups>,
    pub uts: UtsNamespace,
    pub ipc: IpcNamespace,
    pub net: NsState,
    pub user: NsState,
    pub mounts: Vec<MountEntry>,
    pub masters: Vec<ExternalMaster>,
    pub tmpfs: Vec<TmpfsRecord>,
    pub ext_tmpfs: Vec<TmpfsRecord>,
    pub container_root: ContainerRoot,
    pub file_identity: FileIdentity,
    pub seccomp: Vec<TaskSeccomp>,
    pub attrs: Vec<ProcessAttrs>,
    pub inode_attrs: Vec<InodeAttrs>,
    pub deleted_files: Vec<DeletedFile>,
    pub inotify_carried: Vec<InotifyCarriedWatch>,
    pub udp_queues: Vec<UdpQueue>,
    pub desc_contents: Vec<StoredContent>,
}

pub const ROOT: Pid = Pid(100);
pub const CHILD: Pid = Pid(102);
pub const ZOMBIE: Pid = Pid(103);
pub const SHMEM: ShmemId = ShmemId(7);
pub const UTS: NsId = NsId(4026531838);
pub const IPC: NsId = NsId(4026531839);
pub const NET: NsId = NsId(4026531840);
pub const USER: NsId = NsId(4026531837);
pub const SHM_SEG: i32 = 5;
pub const TMPFS_MOUNT: MountId = MountId(23);
pub const EXT_TMPFS_MOUNT: MountId = MountId(25);

pub fn info() -> InventoryInfo {
    InventoryInfo {
        arch: ARCH.to_owned(),
        kernel_release: "6.18.0-sample".to_owned(),
        xsave_features: 0x2e7,
        xsave_size: 2440,
        tool_version: "samples".to_owned(),
        created_unix_secs: 1_765_000_000,
        root_pid: ROOT,
    }
}

/// A raw `siginfo_t` for signal `signo`.
pub fn siginfo(signo: i32) -> SigInfo {
    let mut b = vec![0u8; 128];
    b[..4].copy_from_slice(&signo.to_le_bytes());
    b[8..12].copy_from_slice(&(-1i32).to_le_bytes()); // si_code SI_QUEUE
    SigInfo(b)
}

fn page(seed: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn stat(ino: u64, mode: u32) -> FileStat {
    FileStat {
        dev: 0x803,
        ino,
        mode,
        size: 4096 * ino,
        mtime_ns: 1_700_000_000_123_456_789,
        rdev: 0,
    }
}

fn core(pid: Pid, comm: &str) -> TaskCore {
    TaskCore {
        pid,
        comm: comm.into(),
        personality: 0,
        umask: 0o022,
        rlimits: vec![
            Rlimit {
                resource: 3,
                soft: 8 << 20,
                hard: u64::MAX,
            },
            Rlimit {
                resource: 7,
                soft: 1024,
                hard: 4096,
            },
        ],
        sigactions: Some(
            (0..64)
                .map(|i| SigAction {
                    handler: if i == 9 { 0x401000 } else { 0 },
                    flags: if i == 9 { 0x0400_0000 } else { 0 },
                    restorer: if i == 9 { 0x402000 } else { 0 },
                    mask: 1 << i,
                })
                .collect(),
        ),
        itimers: Some([
            ITimer {
                interval_us: 0,
                value_us: 0,
            },
            ITimer {
                interval_us: 1000,
                value_us: 500,
            },
            ITimer::default(),
        ]),
        creds: Creds {
            uids: [0; 4],
            gids: [0; 4],
            groups: vec![0, 10],
            cap_inh: 0,
            cap_prm: 0x1ff_ffff_ffff,
            cap_eff: 0x1ff_ffff_ffff,
            cap_bnd: 0x1ff_ffff_ffff,
            cap_amb: 0,
            no_new_privs: false,
            securebits: Some(0),
        },
        dumpable: Some(1),
        pdeathsig: Some(0),
        child_subreaper: Some(pid == ROOT),
        shared_pending: vec![siginfo(10)],
        stopped: pid != ROOT,
        job_stop: (pid != ROOT).then_some(JobStop {
            signal: 20,
            parent_waited: true,
        }),
        cwd: "/work/gone (deleted)".into(),
        root: "/".into(),
        posix_timers: vec![PosixTimer {
            id: 0,
            clock: 1,
            notify: 4, // SIGEV_THREAD_ID (with SIGEV_SIGNAL, 0)
            signo: 12,
            value: 0xfeed,
            notify_tid: Some(Tid(pid.0)),
            interval_ns: 1_000_000,
            value_ns: 250_000,
            overrun: 0,
        }],
        cwd_removed: Some(RemovedDir {
            mode: 0o1750,
            uid: 1000,
            gid: 1001,
        }),
        root_removed: None,
    }
}

fn thread(tid: u32, inner: u32) -> ThreadCore {
    ThreadCore {
        tid: Tid(tid),
        regs: GpRegs {
            rip: 0x401234 + u64::from(tid),
            rsp: 0x7ffd_0000_0000,
            rax: u64::MAX - 3, // -EINTR
            orig_rax: 230,
            cs: 0x33,
            ss: 0x2b,
            eflags: 0x246,
            fs_base: 0x7f00_0000_0000 + u64::from(tid),
            ..GpRegs::default()
        },
        xstate: (0..64u32).map(|i| i as u8).collect(),
        sigmask: 1 << 13,
        pending: vec![siginfo(14)],
        rseq: Some(Rseq {
            addr: 0x7f00_0000_1000,
            len: 32,
            signature: 0x53053053,
        }),
        sigaltstack: Some(SigAltStack {
            sp: 0x7f00_0010_0000,
            flags: 0,
            size: 8192,
        }),
        clear_child_tid: Some(0x7f00_0000_2000),
        comm: format!("t{tid}"),
        robust_list: Some(RobustList {
            head: 0x7f00_0000_3000,
            len: 24,
        }),
        ns_tids: vec![Tid(tid), Tid(inner)],
        // A thread with credentials of its own (threads can differ from their process).
        creds: Some(Creds {
            uids: [1000, 1001, 1002, 1003],
            gids: [2000, 2001, 2002, 2003],
            groups: vec![27, 100],
            cap_inh: 1 << 10,
            cap_prm: 1 << 10 | 1 << 12,
            cap_eff: 1 << 12,
            cap_bnd: 0x1ff_ffff_fffe,
            cap_amb: 1 << 10,
            no_new_privs: true,
            securebits: Some(0x10 | (tid % 2)),
        }),
    }
}

fn vma(start: u64, pages: u64, prot: u32, map_flags: u32, backing: VmaBacking, name: &str) -> Vma {
    Vma {
        start,
        end: start + pages * 4096,
        prot,
        map_flags,
        madvise: if name == "[heap]" { vec![10] } else { vec![] },
        pgoff: 0,
        backing,
        name: name.into(),
        lock_on_fault: false,
        pkey: Some(if name == "[heap]" { 1 } else { 0 }),
    }
}

fn mm(exe: FileId) -> Mm {
    Mm {
        layout: MmLayout {
            start_code: 0x400000,
            end_code: 0x401000,
            start_data: 0x402000,
            end_data: 0x403000,
            start_brk: 0x500000,
            brk: 0x502000,
            start_stack: 0x7ffd_0000_0000,
            arg_start: 0x7ffd_0000_1000,
            arg_end: 0x7ffd_0000_1010,
            env_start: 0x7ffd_0000_1010,
            env_end: 0x7ffd_0000_1100,
        },
        auxv: vec![6, 4096, 0, 0],
        exe,
        vmas: vec![
            vma(0x400000, 2, 5, 2, VmaBacking::File(exe), "/bin/sample"),
            vma(0x500000, 2, 3, 0x22, VmaBacking::Anon, "[heap]"),
            vma(
                0x7f00_0000_0000,
                1,
                3,
                0x21,
                VmaBacking::Shmem(SHMEM),
                "/dev/zero (deleted)",
            ),
            vma(
                0x7f00_0010_0000,
                1,
                3,
                1,
                VmaBacking::SysvShm {
                    shmid: SHM_SEG as u32,
                },
                "/SYSV00000005",
            ),
            vma(0x7ffd_0000_0000, 2, 3, 0x122, VmaBacking::Anon, "[stack]"),
            vma(0x7ffd_1000_0000, 1, 1, 0x22, VmaBacking::Vvar, "[vvar]"),
            vma(0x7ffd_1000_1000, 1, 5, 0x22, VmaBacking::Vdso, "[vdso]"),
            vma(
                0xffff_ffff_ff60_0000,
                1,
                4,
                0x22,
                VmaBacking::Vsyscall,
                "[vsyscall]",
            ),
        ],
        attrs: Some(MmAttrs {
            mlock_future: (libc::MCL_FUTURE | libc::MCL_ONFAULT) as u32,
            thp_disable: 1,
        }),
    }
}

fn tcp() -> TcpConnection {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[127, 0, 0, 1]);
    TcpConnection {
        family: 2,
        local: (a, 4000),
        peer: (a, 5000),
        send_seq: 1000,
        recv_seq: 2000,
        send_queue: b"unacked".to_vec(),
        recv_queue: b"unread".to_vec(),
        mss: 65483,
        options: 7,
        snd_wscale: 7,
        rcv_wscale: 7,
        timestamp: 123456,
        window: TcpWindow {
            snd_wl1: 1999,
            snd_wnd: 65536,
            max_window: 65536,
            rcv_wnd: 65536,
            rcv_wup: 2000,
        },
        reuseaddr: true,
        reuseport: false,
        keepalive: false,
        nodelay: true,
        v6only: false,
        sndbuf: 2_626_560,
        rcvbuf: 131_072,
    }
}

fn pty_state() -> PtyState {
    PtyState {
        iflag: 0x500,
        oflag: 5,
        cflag: 0xbf,
        lflag: 0x8a3b,
        line: 0,
        cc: (0..32).collect(),
        ispeed: 15,
        ospeed: 15,
        winsize: [24, 80, 0, 0],
        packet: false,
        locked: false,
    }
}

/// One description of every kind, an epoll after the ones it watches.
fn descs() -> Vec<FileDesc> {
    let d = |id: u32, flags: u32, kind: DescKind| FileDesc {
        id: DescId(id),
        flags,
        kind,
        owner: None,
    };
    let mut v = vec![
        d(
            1,
            0,
            DescKind::PipeEnd {
                pipe: 9001,
                write: false,
                size: 65536,
                data: Some(b"queued".to_vec()),
            },
        ),
        d(
            2,
            1,
            DescKind::PipeEnd {
                pipe: 9001,
                write: true,
                size: 65536,
                data: None,
            },
        ),
        d(
            3,
            0o4002,
            DescKind::EventFd {
                count: 5,
                semaphore: false,
            },
        ),
        d(
            4,
            2,
            DescKind::TimerFd {
                clock: 1,
                interval_ns: 1_000_000,
                value_ns: 5000,
                ticks: 2,
            },
        ),
        d(5, 2, DescKind::SignalFd { mask: 1 << 9 }),
        d(
            6,
            2,
            DescKind::Memfd {
                name: "memfd:sample".into(),
                data: b"memfd data".to_vec(),
                pos: 3,
                seals: 1,
            },
        ),
        d(
            7,
            2,
            DescKind::UnixPair {
                ino: 9100,
                peer: 9101,
                sock_type: 1,
                queued: vec![b"to 9100".to_vec()],
                shutdown: Some(2),
            },
        ),
        d(
            8,
            2,
            DescKind::Inet(InetSocket {
                family: 10,
                sock_type: 1,
                protocol: 6,
                bound: Some(([0; 16], 8080)),
                peer: None,
                listen_backlog: Some(128),
                reuseaddr: true,
                reuseport: false,
                keepalive: false,
                nodelay: false,
                v6only: true,
            }),
        ),
        d(
            9,
            2,
            DescKind::UnixListen {
                name: b"\0sample-listener".to_vec(),
                sock_type: 1,
                unlinked: Some(false),
                backlog: Some(16),
                pending: vec![UnixPending { client: 7002 }],
            },
        ),
        d(
            10,
            2,
            DescKind::Ghost {
                path: "/tmp/gone".into(),
                mode: 0o600,
                data: Vec::new(),
                pos: 2,
            },
        ),
        d(
            11,
            0,
            DescKind::Fifo {
                path: "/tmp/fifo".into(),
                dev: 0x803,
                ino: 77,
                size: 65536,
                data: Some(b"f".to_vec()),
            },
        ),
        d(
            12,
            2,
            DescKind::UnixConn {
                ino: 9200,
                peer: 9201,
                sock_type: 1,
                name: b"/tmp/sock".to_vec(),
                peer_name: vec![],
                queued: vec![b"conn".to_vec()],
                shutdown: Some(1),
                unlinked: Some(true),
            },
        ),
        d(
            13,
            2,
            DescKind::UnixDgram {
                ino: 9300,
                name: b"/tmp/dgram".to_vec(),
                peer: Some(9301),
                peer_name: b"/tmp/peer".to_vec(),
                queued: vec![UnixDatagram {
                    from: b"/tmp/peer".to_vec(),
                    data: b"dgram".to_vec(),
                }],
                shutdown: Some(0),
                unlinked: Some(false),
            },
        ),
        d(14, 2, DescKind::TcpEstablished(tcp())),
        d(
            15,
            0,
            DescKind::External {
                key: "pipe:[424242]".into(),
            },
        ),
        d(
            16,
            2,
            DescKind::Pty {
                master: true,
                index: 3,
                state: pty_state(),
            },
        ),
        d(
            17,
            2,
            DescKind::Pty {
                master: false,
                index: 3,
                state: PtyState {
                    packet: false,
                    ..pty_state()
                },
            },
        ),
        d(
            18,
            0,
            DescKind::Inotify {
                watches: vec![InotifyWatch {
                    wd: 1,
                    mask: 0x100,
                    path: "/tmp".into(),
                    ino: 2,
                    dev: 0x803,
                    symlink: false,
                }],
            },
        ),
        d(19, 0o4000, DescKind::Pidfd { pid: CHILD.0 }),
        d(
            20,
            2,
            DescKind::Epoll {
                targets: vec![
                    EpollTarget {
                        file: FdFile::Desc(DescId(3)),
                        fd: 5,
                        events: 1,
                        data: 55,
                    },
                    EpollTarget {
                        file: FdFile::Reg(FileId(3)),
                        fd: 3,
                        events: 4,
                        data: 33,
                    },
                ],
            },
        ),
        d(
            21,
            2,
            DescKind::UnixUnconnected {
                sock_type: 5,
                name: b"/tmp/unconnected".to_vec(),
                unlinked: true,
                shutdown: 3,
            },
        ),
        d(
            22,
            0o100000,
            DescKind::Proc(ProcFile {
                mount: "/proc".into(),
                pid: Some(CHILD.0),
                path: "stat".into(),
                pos: 7,
                dir: false,
            }),
        ),
        d(
            23,
            2,
            DescKind::Inet(InetSocket {
                family: 2,
                sock_type: 2,
                protocol: 17,
                bound: Some(([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 5353)),
                peer: None,
                listen_backlog: None,
                reuseaddr: false,
                reuseport: false,
                keepalive: false,
                nodelay: false,
                v6only: false,
            }),
        ),
    ];
    v[6].owner = Some(FileOwner {
        kind: 1,
        pid: ROOT.0,
        signal: 0,
    });
    v
}

fn mount(id: u32, parent: Option<u32>, at: &str, fstype: &str, how: MountSource) -> MountEntry {
    MountEntry {
        id: MountId(id),
        parent: parent.map(MountId),
        mountpoint: at.into(),
        root: "/".into(),
        fstype: fstype.into(),
        source: fstype.into(),
        mount_opts: "rw,relatime".into(),
        super_opts: "rw".into(),
        shared: None,
        master: None,
        unbindable: false,
        how,
    }
}

fn tmpfs_content(seed: u8) -> Vec<TmpfsRecord> {
    let node = |index: u32, path: &str, kind: TmpfsNodeKind| {
        TmpfsRecord::Node(TmpfsNode {
            index,
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 1_700_000_000_000_000_000,
            xattrs: vec![Xattr {
                name: b"user.k".to_vec(),
                value: vec![seed],
            }],
        })
    };
    vec![
        node(0, "", TmpfsNodeKind::Dir),
        node(1, "f", TmpfsNodeKind::File { size: 5 }),
        TmpfsRecord::Data {
            node: 1,
            offset: 0,
            bytes: vec![seed; 5],
        },
        node(
            2,
            "l",
            TmpfsNodeKind::Symlink {
                target: b"f".to_vec(),
            },
        ),
        node(3, "p", TmpfsNodeKind::Fifo),
        node(4, "c", TmpfsNodeKind::CharDev { rdev: 0x103 }),
        node(5, "b", TmpfsNodeKind::BlockDev { rdev: 0x800 }),
        node(6, "h", TmpfsNodeKind::HardLink { to: 1 }),
    ]
}

impl Samples {
    pub fn new() -> Self {
        let ns_refs = |external_net: bool| {
            NsKind::ALL
                .iter()
                .map(|&kind| {
                    let (id, external) = match kind {
                        NsKind::Uts => (UTS, false),
                        NsKind::Ipc => (IPC, false),
                        NsKind::Net => (NET, external_net),
                        NsKind::User => (USER, false),
                        other => (NsId(4026532000 + other as u64), true),
                    };
                    NsRef { kind, id, external }
                })
                .collect::<Vec<_>>()
        };
        let cg = |pid| TaskCgroups {
            pid,
            lines: vec![CgroupLine {
                hierarchy: 0,
                controllers: vec![],
                path: "/sample".into(),
            }],
        };
        let mut slave = mount(
            26,
            Some(21),
            "/ext",
            "ext4",
            MountSource::External {
                key: "/srv/ext".into(),
            },
        );
        slave.master = Some(PeerGroup(900));
        let mut shared = mount(22, Some(21), "/proc", "proc", MountSource::NewFs);
        shared.shared = Some(PeerGroup(1));
        Samples {
            tree: vec![
                PsTreeEntry {
                    pid: ROOT,
                    ppid: None,
                    pgid: ROOT,
                    sid: ROOT,
                    threads: vec![Tid(100), Tid(101)],
                    ns_pids: vec![ROOT, Pid(1)],
                },
                PsTreeEntry {
                    pid: CHILD,
                    ppid: Some(ROOT),
                    pgid: ROOT,
                    sid: ROOT,
                    threads: vec![Tid(102)],
                    ns_pids: vec![CHILD, Pid(2)],
                },
            ],
            cores: vec![core(ROOT, "sample"), core(CHILD, "child")],
            threads: vec![thread(100, 1), thread(101, 4), thread(102, 2)],
            mms: vec![mm(FileId(1)), mm(FileId(2))],
            fds: vec![
                (
                    ROOT,
                    std::iter::once(Fd {
                        fd: 0,
                        cloexec: false,
                        file: FdFile::InheritedTty,
                    })
                    .chain(std::iter::once(Fd {
                        fd: 3,
                        cloexec: true,
                        file: FdFile::Reg(FileId(3)),
                    }))
                    .chain((1..=20).map(|i| Fd {
                        fd: 10 + i,
                        cloexec: i % 2 == 0,
                        file: FdFile::Desc(DescId(i as u32)),
                    }))
                    .collect(),
                ),
                (
                    CHILD,
                    vec![Fd {
                        fd: 1,
                        cloexec: false,
                        file: FdFile::Desc(DescId(2)),
                    }],
                ),
            ],
            locks: vec![(
                ROOT,
                vec![
                    FileLock {
                        fd: 3,
                        kind: LockKind::Posix,
                        write: true,
                        start: 0,
                        len: 10,
                    },
                    FileLock {
                        fd: 3,
                        kind: LockKind::Flock,
                        write: false,
                        start: 0,
                        len: 0,
                    },
                    FileLock {
                        fd: 3,
                        kind: LockKind::Ofd,
                        write: true,
                        start: 100,
                        len: 1,
                    },
                    FileLock {
                        fd: 3,
                        kind: LockKind::Lease,
                        write: false,
                        start: 0,
                        len: 0,
                    },
                ],
            )],
            files: vec![
                RegFile {
                    id: FileId(1),
                    path: "/bin/sample".into(),
                    flags: 0,
                    pos: 0,
                    stat: stat(1, 0o100755),
                },
                RegFile {
                    id: FileId(2),
                    path: "/bin/child".into(),
                    flags: 0,
                    pos: 0,
                    stat: stat(2, 0o100755),
                },
                RegFile {
                    id: FileId(3),
                    path: "/var/log/sample.log".into(),
                    flags: 0o2001,
                    pos: 42,
                    stat: stat(3, 0o100644),
                },
            ],
            descs: descs(),
            shmem: vec![ShmemObject {
                id: SHMEM,
                size: 4096,
                owner: ROOT,
            }],
            zombies: vec![Zombie {
                pid: ZOMBIE,
                ppid: ROOT,
                pgid: ROOT,
                sid: ROOT,
                exit_status: 3 << 8,
                inner_pid: Some(Pid(3)),
            }],
            shared_tables: vec![SharedTables {
                pid: CHILD,
                files: ROOT,
                fs: CHILD,
            }],
            nested_mntns: vec![NestedMountNs {
                ns: 4026532999,
                pids: vec![CHILD],
                files: vec![FileId(2)],
                mounts: vec![
                    NestedMount {
                        entry: mount(61, None, "/", "ext4", MountSource::Root),
                        tmpfs: Vec::new(),
                    },
                    NestedMount {
                        entry: mount(
                            62,
                            Some(61),
                            "/srv",
                            "ext4",
                            MountSource::External { key: "/srv".into() },
                        ),
                        tmpfs: Vec::new(),
                    },
                    NestedMount {
                        entry: mount(63, Some(61), "/scratch", "tmpfs", MountSource::NewFs),
                        tmpfs: tmpfs_content(9),
                    },
                ],
                outer: Vec::new(),
            }],
            ns_ids: vec![
                TaskNamespaces {
                    pid: ROOT,
                    namespaces: ns_refs(true),
                },
                TaskNamespaces {
                    pid: CHILD,
                    namespaces: ns_refs(true),
                },
            ],
            cgroups: vec![cg(ROOT), cg(CHILD)],
            uts: UtsNamespace {
                id: UTS,
                hostname: "sample".into(),
                domainname: "(none)".into(),
            },
            ipc: IpcNamespace {
                id: IPC,
                sysctls: vec![IpcSysctl {
                    name: "kernel/shmmax".into(),
                    value: "18446744073692774399".into(),
                }],
                shm: vec![SysvShm {
                    id: SHM_SEG,
                    perm: IpcPerm {
                        key: 5,
                        uid: 0,
                        gid: 0,
                        cuid: 0,
                        cgid: 0,
                        mode: 0o600,
                    },
                    size: 4000,
                    locked: false,
                }],
                sem: vec![SysvSem {
                    id: 32768,
                    perm: IpcPerm::default(),
                    values: vec![1, 2, 3],
                }],
                msg: vec![SysvMsgQueue {
                    id: 65536,
                    perm: IpcPerm::default(),
                    qbytes: 16384,
                    messages: vec![SysvMsg {
                        mtype: 1,
                        text: b"msg".to_vec(),
                    }],
                }],
                posix_mq: vec![PosixMq {
                    name: "sample".into(),
                    uid: 0,
                    gid: 0,
                    mode: 0o600,
                    maxmsg: 10,
                    msgsize: 8192,
                    messages: vec![PosixMqMsg {
                        priority: 1,
                        data: b"mq".to_vec(),
                    }],
                }],
            },
            net: NsState::Net(NetNamespace {
                id: NET,
                external: true,
                loopback_up: true,
                interfaces: vec!["lo".into(), "eth0".into()],
            }),
            user: NsState::User(UserNamespace {
                id: USER,
                uid_map: vec![IdMapRange {
                    inside: 0,
                    outside: 100000,
                    count: 65536,
                }],
                gid_map: vec![IdMapRange {
                    inside: 0,
                    outside: 100000,
                    count: 65536,
                }],
                setgroups_allowed: true,
            }),
            mounts: vec![
                mount(21, None, "/", "ext4", MountSource::Root),
                shared,
                mount(TMPFS_MOUNT.0, Some(21), "/tmp", "tmpfs", MountSource::NewFs),
                mount(
                    24,
                    Some(21),
                    "/mnt",
                    "tmpfs",
                    MountSource::BindOf { of: TMPFS_MOUNT },
                ),
                mount(
                    EXT_TMPFS_MOUNT.0,
                    Some(21),
                    "/dev/shm",
                    "tmpfs",
                    MountSource::External {
                        key: "/dev/shm".into(),
                    },
                ),
                slave,
            ],
            masters: vec![ExternalMaster {
                group: PeerGroup(900),
                key: "/srv/ext".into(),
                found_at: "/srv/ext".into(),
            }],
            tmpfs: tmpfs_content(1),
            ext_tmpfs: tmpfs_content(2),
            container_root: ContainerRoot {
                path: "/run/sample/rootfs".into(),
                dev: 0x803,
                ino: 2,
            },
            file_identity: FileIdentity {
                check: FileCheck::Content,
                digests: vec![
                    FileDigest {
                        id: FileId(1),
                        digest: ContentDigest::BuildId(vec![0xab; 20]),
                    },
                    FileDigest {
                        id: FileId(2),
                        digest: ContentDigest::Crc32(0x1234_5678),
                    },
                ],
            },
            seccomp: vec![TaskSeccomp {
                pid: ROOT,
                filters: vec![
                    SeccompFilter {
                        prev: None,
                        flags: 0,
                        insns: vec![BpfInsn {
                            code: 0x06,
                            jt: 0,
                            jf: 0,
                            k: 0x7fff_0000,
                        }],
                    },
                    SeccompFilter {
                        prev: Some(0),
                        flags: 2,
                        insns: vec![
                            BpfInsn {
                                code: 0x20,
                                jt: 0,
                                jf: 0,
                                k: 0,
                            },
                            BpfInsn {
                                code: 0x06,
                                jt: 0,
                                jf: 0,
                                k: 0x0005_002a,
                            },
                        ],
                    },
                ],
                threads: vec![
                    ThreadSeccomp {
                        tid: Tid(100),
                        mode: SeccompMode::Filter { last: 1 },
                    },
                    ThreadSeccomp {
                        tid: Tid(101),
                        mode: SeccompMode::Filter { last: 0 },
                    },
                ],
            }],
            deleted_files: vec![DeletedFile {
                file: FileId(2),
                content: DeletedContent::Stored {
                    size: 5000,
                    uid: 0,
                    gid: 0,
                    mode: 0o755,
                    atime: FileTime { sec: 1, nsec: 2 },
                    mtime: FileTime { sec: 3, nsec: 4 },
                },
            }],
            inotify_carried: vec![InotifyCarriedWatch {
                inotify: DescId(18),
                wd: 2,
                mask: 0x2,
                file: DescId(10),
            }],
            desc_contents: vec![StoredContent {
                desc: DescId(10),
                size: 4100,
            }],
            udp_queues: vec![UdpQueue {
                socket: DescId(23),
                datagrams: vec![
                    UdpDatagram {
                        from: ([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 40000),
                        data: Vec::new(),
                    },
                    UdpDatagram {
                        from: ([10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 53),
                        data: b"queued datagram".to_vec(),
                    },
                ],
            }],
            inode_attrs: [6, 10]
                .into_iter()
                .map(|d| InodeAttrs {
                    desc: DescId(d),
                    uid: 1000,
                    gid: 100,
                    mode: 0o640,
                    atime: FileTime {
                        sec: 1_700_000_000,
                        nsec: 5,
                    },
                    mtime: FileTime {
                        sec: 1_600_000_000,
                        nsec: 999_999_999,
                    },
                })
                .collect(),
            attrs: vec![
                ProcessAttrs {
                    pid: ROOT,
                    oom_score_adj: 321,
                    threads: vec![
                        ThreadAttrs {
                            tid: Tid(100),
                            sched: SchedParams {
                                policy: 3,
                                nice: 5,
                                runtime: 1_400_000,
                                util_max: 1024,
                                ..SchedParams::default()
                            },
                            ioprio: 2 << 13 | 6,
                            timer_slack_ns: 123_456,
                            affinity: vec![0b10],
                            pdeathsig: 0,
                        },
                        ThreadAttrs {
                            tid: Tid(101),
                            sched: SchedParams {
                                policy: 1,
                                flags: 1,
                                priority: 7,
                                ..SchedParams::default()
                            },
                            ioprio: 3 << 13,
                            timer_slack_ns: 0,
                            affinity: vec![0b01],
                            pdeathsig: 28,
                        },
                    ],
                },
                ProcessAttrs {
                    pid: CHILD,
                    oom_score_adj: 0,
                    threads: vec![ThreadAttrs {
                        tid: Tid(102),
                        sched: SchedParams::default(),
                        ioprio: 0,
                        timer_slack_ns: 50_000,
                        affinity: vec![0b11],
                        pdeathsig: 0,
                    }],
                },
            ],
        }
    }

    /// Writes the image at `dir/name` and returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let mut w = ImageWriter::create(&dir.join(name)).unwrap();
        w.write_records(names::PSTREE, &self.tree).unwrap();
        for c in &self.cores {
            w.write_records(&names::core(c.pid), std::slice::from_ref(c))
                .unwrap();
        }
        for t in &self.threads {
            w.write_records(&names::thread(t.tid), std::slice::from_ref(t))
                .unwrap();
        }
        for (pid, m) in [ROOT, CHILD].into_iter().zip(&self.mms) {
            w.write_records(&names::mm(pid), std::slice::from_ref(m))
                .unwrap();
        }
        for (pid, fds) in &self.fds {
            w.write_records(&names::fds(*pid), fds).unwrap();
        }
        for (pid, locks) in &self.locks {
            w.write_records(&names::locks(*pid), locks).unwrap();
        }
        for s in &self.seccomp {
            w.write_records(&names::seccomp(s.pid), std::slice::from_ref(s))
                .unwrap();
        }
        w.write_records(names::INODE_ATTRS, &self.inode_attrs)
            .unwrap();
        w.write_records(names::DELETED_FILES, &self.deleted_files)
            .unwrap();
        w.write_records(names::INOTIFY_CARRIED, &self.inotify_carried)
            .unwrap();
        w.write_records(names::UDP_QUEUES, &self.udp_queues)
            .unwrap();
        w.write_records(names::DESC_CONTENTS, &self.desc_contents)
            .unwrap();
        for a in &self.attrs {
            w.write_records(&names::attrs(a.pid), std::slice::from_ref(a))
                .unwrap();
        }
        w.write_records(names::REG_FILES, &self.files).unwrap();
        w.write_records(names::FILE_DESCS, &self.descs).unwrap();
        w.write_records(names::SHMEM, &self.shmem).unwrap();
        w.write_records(names::ZOMBIES, &self.zombies).unwrap();
        w.write_records(names::NESTED_MNT_NS, &self.nested_mntns)
            .unwrap();
        w.write_records(names::SHARED_TABLES, &self.shared_tables)
            .unwrap();
        w.write_records(names::NS_IDS, &self.ns_ids).unwrap();
        w.write_records(names::CGROUPS, &self.cgroups).unwrap();
        w.write_records(&names::uts(UTS), std::slice::from_ref(&self.uts))
            .unwrap();
        w.write_records(&names::ipc(IPC), std::slice::from_ref(&self.ipc))
            .unwrap();
        w.write_records(&names::net(NET), std::slice::from_ref(&self.net))
            .unwrap();
        w.write_records(&names::user(USER), std::slice::from_ref(&self.user))
            .unwrap();
        w.write_records(names::MOUNTS, &self.mounts).unwrap();
        w.write_records(names::MOUNT_MASTERS, &self.masters)
            .unwrap();
        w.write_records(&names::tmpfs(TMPFS_MOUNT), &self.tmpfs)
            .unwrap();
        w.write_records(&names::ext_tmpfs(EXT_TMPFS_MOUNT), &self.ext_tmpfs)
            .unwrap();
        w.write_records(
            names::CONTAINER_ROOT,
            std::slice::from_ref(&self.container_root),
        )
        .unwrap();
        w.write_records(
            names::FILE_IDENTITY,
            std::slice::from_ref(&self.file_identity),
        )
        .unwrap();
        // Pages: the root's heap, stack and vDSO; the child's heap; the shared object; the segment; the
        // second page of the deleted file (its first is a hole); both pages of the unlinked file.
        let store = |w: &mut ImageWriter, name: &str, extents: &[(u64, u32, u8)]| {
            let s = w.page_store(name).unwrap();
            for &(vaddr, flags, seed) in extents {
                s.write_extent(vaddr, flags, &page(seed)).unwrap();
            }
            w.finish_page_store(s).unwrap();
        };
        store(
            &mut w,
            &names::task_pages(ROOT),
            &[
                (0x500000, page_flags::PRIVATE, 1),
                (0x7ffd_0000_1000, page_flags::PRIVATE, 2),
                (0x7ffd_1000_1000, page_flags::VDSO, 3),
            ],
        );
        store(
            &mut w,
            &names::task_pages(CHILD),
            &[(0x501000, page_flags::PRIVATE, 4)],
        );
        store(
            &mut w,
            &names::shmem_pages(SHMEM),
            &[(0, page_flags::SHMEM, 5)],
        );
        store(
            &mut w,
            &ns_names::sysv_shm_pages(IPC, SHM_SEG),
            &[(0, page_flags::SHMEM, 6)],
        );
        store(&mut w, &names::deleted_pages(FileId(2)), &[(4096, 0, 7)]);
        store(
            &mut w,
            &names::desc_pages(DescId(10)),
            &[(0, 0, 8), (4096, 0, 9)],
        );
        w.commit(info()).unwrap()
    }
}

impl Default for Samples {
    fn default() -> Self {
        Self::new()
    }
}
