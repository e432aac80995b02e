//! [`Image`]: a whole image read once into typed records and checked, the one form in which `verify`,
//! `show` and restore take an image.
//!
//! Loading runs the container checks of [`ImageReader::verify`] (every file's length and crc32, no
//! unlisted file, framing, schema versions, page indexes and extent crcs), decodes every record file once
//! (tree-wide records once for the whole tree, per-task records under their task), and runs every check
//! of every kind (`check_*` in [`crate::records`]): what each record refers to exists, each file holds
//! what its name says, and every listed file belongs to some record. An image that fails any of it is not
//! returned at all: a caller cannot act on half an image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::{ImageError, Problems, Result};
use crate::inventory::Inventory;
use crate::pages::PageStoreReader;
use crate::reader::{ImageReader, VerifyReport};
use crate::records::{self, names, ns, Record};
use crate::records::{
    ContainerRoot, DeletedContent, DeletedFile, DescId, ExternalMaster, Fd, FileDesc, FileId,
    FileIdentity, FileLock, InodeAttrs, InotifyCarriedWatch, IpcNamespace, Mm, MountEntry, MountId,
    NestedMountNs, NetNamespace, NsId, NsKind, NsState, Pid, ProcessAttrs, PsTreeEntry, RegFile,
    SharedTables, ShmemId, ShmemObject, StoredContent, TaskCgroups, TaskCore, TaskNamespaces,
    TaskSeccomp, ThreadCore, TmpfsRecord, UdpQueue, UserNamespace, UtsNamespace, Zombie,
};

/// A checked image, loaded whole (see the module doc).
#[derive(Debug)]
pub struct Image {
    reader: ImageReader,
    report: VerifyReport,
    /// Every live process, in `pstree` order: root first, parents before children.
    pub tasks: Vec<TaskRecords>,
    pub zombies: Vec<Zombie>,
    /// Processes that share an fd table or an fs struct (`shared-tables`; empty: none shares).
    pub shared_tables: Vec<SharedTables>,
    /// Files reopened by path (`reg-files`), by id.
    pub files: BTreeMap<FileId, RegFile>,
    /// Open file descriptions not reopened by path (`file-descs`), in image order (an epoll's targets
    /// before it).
    pub descs: Vec<FileDesc>,
    /// Owner, mode and times of the inodes of unlinked files and memfds (`inode-attrs`; empty in images
    /// that did not carry them).
    pub inode_attrs: Vec<InodeAttrs>,
    /// The unlinked files and memfds of `descs` whose content is in a page store (`desc-contents`): size
    /// and store, by description.
    pub desc_contents: BTreeMap<DescId, (u64, PageStoreReader)>,
    /// Files deleted while mapped or executed, with their content (`deleted-files`; empty when none).
    pub deleted_files: Vec<DeletedFile>,
    /// The page stores of the files of `deleted_files` that carry their content in one
    /// ([`DeletedContent::Stored`]), by file.
    pub deleted_pages: BTreeMap<FileId, PageStoreReader>,
    /// inotify watches on inodes the image carries (`inotify-carried`; empty when there are none).
    pub inotify_carried: Vec<InotifyCarriedWatch>,
    /// Datagrams waiting in UDP sockets (`udp-queues`; empty when none).
    pub udp_queues: Vec<UdpQueue>,
    /// Anonymous shared memory objects with their pages.
    pub shmem: BTreeMap<ShmemId, SharedObject>,
    /// How restore recognises mapped files and executables; `None`: by device and inode.
    pub file_identity: Option<FileIdentity>,
    /// Namespace records; `None` when the dump carried none (a plain process dump).
    pub namespaces: Option<Namespaces>,
    /// The mount namespace's records; `None` when the dump carried none.
    pub mounts: Option<Mounts>,
    /// The container root `dump --root` recorded, if any.
    pub container_root: Option<ContainerRoot>,
    /// Mount namespaces inside a plain tree (`nested-mntns`; empty when there are none).
    pub nested_mnt: Vec<NestedMountNs>,
}

/// Everything the image says about one process.
#[derive(Debug)]
pub struct TaskRecords {
    /// Its entry in the process tree (parent, group, session, threads).
    pub tree: PsTreeEntry,
    pub core: TaskCore,
    /// Every thread, the leader first, in the order the tree lists them.
    pub threads: Vec<ThreadCore>,
    pub mm: Mm,
    pub fds: Vec<Fd>,
    pub locks: Vec<FileLock>,
    /// Its threads' seccomp modes and filters; `None` when no thread was under seccomp (or the image
    /// predates the record, whose dump did not look).
    pub seccomp: Option<TaskSeccomp>,
    /// Its threads' scheduling attributes and its OOM score adjustment; `None` in images before the
    /// record (not known: left as inherited).
    pub attrs: Option<ProcessAttrs>,
    /// Its private pages.
    pub pages: PageStoreReader,
}

impl TaskRecords {
    pub fn pid(&self) -> Pid {
        self.tree.pid
    }
}

/// One anonymous shared memory object and its pages (offsets in the object).
#[derive(Debug)]
pub struct SharedObject {
    pub object: ShmemObject,
    pub pages: PageStoreReader,
}

/// The namespace records of a container dump.
#[derive(Debug, Default)]
pub struct Namespaces {
    /// The namespaces of every task (`ns-ids`), in tree order.
    pub tasks: Vec<TaskNamespaces>,
    /// The cgroups of every task (`cgroups`).
    pub cgroups: Vec<TaskCgroups>,
    pub uts: BTreeMap<NsId, UtsNamespace>,
    pub ipc: BTreeMap<NsId, IpcRecords>,
    pub net: BTreeMap<NsId, NetNamespace>,
    pub user: BTreeMap<NsId, UserNamespace>,
    pub time: BTreeMap<NsId, records::TimeNamespace>,
}

impl Namespaces {
    /// The namespace records of an image read on their own, with the checks that need nothing else of
    /// the image (the tree's processes are taken to be those `ns-ids` and `cgroups` name). For tools and
    /// tests that build only these records; `verify` and restore load the whole image.
    pub fn read(img: &ImageReader) -> Result<Option<Namespaces>> {
        let mut pids = BTreeSet::new();
        if img.has_file(names::NS_IDS) {
            let tasks: Vec<TaskNamespaces> = img.read_records(names::NS_IDS)?;
            pids.extend(tasks.iter().map(|t| t.pid));
        }
        if img.has_file(names::CGROUPS) {
            let tasks: Vec<TaskCgroups> = img.read_records(names::CGROUPS)?;
            pids.extend(tasks.iter().map(|t| t.pid));
        }
        let mut l = Loader::new(img);
        let ns = load_namespaces(&mut l, &pids);
        l.finish().map_err(|problems| ImageError::Rejected {
            dir: img.dir().to_path_buf(),
            problems,
        })?;
        Ok(ns)
    }
}

/// One dumped ipc namespace with the pages of its shared memory segments (in `ns.shm` order).
#[derive(Debug)]
pub struct IpcRecords {
    pub ns: IpcNamespace,
    pub shm_pages: Vec<PageStoreReader>,
}

/// The mount namespace's records.
#[derive(Debug, Default)]
pub struct Mounts {
    pub mounts: Vec<MountEntry>,
    pub masters: Vec<ExternalMaster>,
    /// Content of the tmpfs mounts restore creates (`tmpfs-<id>`), by mount.
    pub tmpfs: BTreeMap<MountId, Vec<TmpfsRecord>>,
    /// Content of external tmpfs mounts (`ext-tmpfs-<id>`), by mount.
    pub ext_tmpfs: BTreeMap<MountId, Vec<TmpfsRecord>>,
}

/// Reads the files of one image and collects every problem, remembering which files some record used.
struct Loader<'r> {
    img: &'r ImageReader,
    p: Problems,
    used: BTreeSet<String>,
}

impl<'r> Loader<'r> {
    fn new(img: &'r ImageReader) -> Self {
        Loader {
            img,
            p: Problems::default(),
            used: BTreeSet::new(),
        }
    }

    /// Every record of a file the image must have.
    fn records<R: Record>(&mut self, name: &str) -> Option<Vec<R>> {
        self.used.insert(name.to_owned());
        match self.img.read_records(name) {
            Ok(r) => Some(r),
            Err(e) => {
                self.p.push(e);
                None
            }
        }
    }

    /// Every record of a file the image may have (none when it does not).
    fn optional<R: Record>(&mut self, name: &str) -> Vec<R> {
        if self.img.has_file(name) {
            self.records(name).unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    /// The one record of a file the image must have.
    fn single<R: Record>(&mut self, name: &str) -> Option<R> {
        let records = self.records::<R>(name)?;
        match <[R; 1]>::try_from(records) {
            Ok([r]) => Some(r),
            Err(v) => {
                self.p.push(ImageError::EntryCount {
                    file: name.to_owned(),
                    expected: "exactly 1",
                    found: v.len(),
                });
                None
            }
        }
    }

    /// A page store the image must have.
    fn store(&mut self, store: &str) -> Option<PageStoreReader> {
        self.used.insert(crate::pages::index_file_name(store));
        self.used.insert(crate::pages::data_file_name(store));
        match self.img.page_store(store) {
            Ok(s) => Some(s),
            Err(e) => {
                self.p.push(e);
                None
            }
        }
    }

    /// Every listed file no record referred to.
    fn check_all_used(&mut self) {
        for f in &self.img.inventory().files {
            if records::file_role(&f.name).is_none() {
                self.p.add(&f.name, "not a file of this image format");
            } else if !self.used.contains(&f.name) {
                self.p.add(
                    &f.name,
                    "listed in the inventory, but no record refers to it",
                );
            }
        }
    }

    fn finish(self) -> Result<(), Vec<ImageError>> {
        if self.p.is_empty() {
            Ok(())
        } else {
            Err(self.p.into_vec())
        }
    }
}

impl Image {
    /// Opens, verifies, loads and checks the image at `dir` (see the module doc). Every problem found is
    /// returned at once, in an [`ImageError::Rejected`] (or the one error that kept the inventory from
    /// being read).
    pub fn load(dir: &Path) -> Result<Image> {
        let reader = ImageReader::open(dir)?;
        let rejected = |problems| ImageError::Rejected {
            dir: dir.to_path_buf(),
            problems,
        };
        let report = reader.verify().map_err(rejected)?;
        let mut l = Loader::new(&reader);
        let parts = load_parts(&mut l);
        l.check_all_used();
        l.finish().map_err(rejected)?;
        let Parts {
            tasks,
            zombies,
            shared_tables,
            files,
            descs,
            inode_attrs,
            desc_contents,
            deleted_files,
            deleted_pages,
            inotify_carried,
            udp_queues,
            shmem,
            file_identity,
            namespaces,
            mounts,
            container_root,
            nested_mnt,
        } = parts;
        Ok(Image {
            reader,
            report,
            tasks,
            zombies,
            shared_tables,
            files,
            descs,
            inode_attrs,
            desc_contents,
            deleted_files,
            deleted_pages,
            inotify_carried,
            udp_queues,
            shmem,
            file_identity,
            namespaces,
            mounts,
            container_root,
            nested_mnt,
        })
    }

    /// The reader the image was loaded with (its directory, inventory and files).
    pub fn reader(&self) -> &ImageReader {
        &self.reader
    }

    pub fn dir(&self) -> &Path {
        self.reader.dir()
    }

    pub fn inventory(&self) -> &Inventory {
        self.reader.inventory()
    }

    /// What the container checks found (every file, its kind and size).
    pub fn report(&self) -> &VerifyReport {
        &self.report
    }

    /// The root process of the tree.
    pub fn root(&self) -> &TaskRecords {
        // `load` refuses an empty tree.
        &self.tasks[0]
    }

    /// The process `pid`, if it is one of the tree.
    pub fn task(&self, pid: Pid) -> Option<&TaskRecords> {
        self.tasks.iter().find(|t| t.pid() == pid)
    }
}

/// Checks the namespace records of an image on their own, against the tree's processes `pids` (the
/// namespace half of [`Image::load`], for tests that build only those records).
pub fn check_namespaces(img: &ImageReader, pids: &BTreeSet<Pid>) -> Vec<ImageError> {
    let mut l = Loader::new(img);
    load_namespaces(&mut l, pids);
    l.finish().err().unwrap_or_default()
}

/// Checks the mount records of an image on their own (the mount half of [`Image::load`]).
pub fn check_mounts(img: &ImageReader) -> Vec<ImageError> {
    let mut l = Loader::new(img);
    load_mounts(&mut l);
    l.finish().err().unwrap_or_default()
}

/// What [`Image`] holds besides the reader.
struct Parts {
    tasks: Vec<TaskRecords>,
    zombies: Vec<Zombie>,
    shared_tables: Vec<SharedTables>,
    files: BTreeMap<FileId, RegFile>,
    descs: Vec<FileDesc>,
    inode_attrs: Vec<InodeAttrs>,
    desc_contents: BTreeMap<DescId, (u64, PageStoreReader)>,
    deleted_files: Vec<DeletedFile>,
    deleted_pages: BTreeMap<FileId, PageStoreReader>,
    inotify_carried: Vec<InotifyCarriedWatch>,
    udp_queues: Vec<UdpQueue>,
    shmem: BTreeMap<ShmemId, SharedObject>,
    file_identity: Option<FileIdentity>,
    namespaces: Option<Namespaces>,
    mounts: Option<Mounts>,
    container_root: Option<ContainerRoot>,
    nested_mnt: Vec<NestedMountNs>,
}

/// Loads and checks every record, tree-wide ones first.
fn load_parts(l: &mut Loader<'_>) -> Parts {
    let tree: Vec<PsTreeEntry> = l.records(names::PSTREE).unwrap_or_default();
    records::tree::check_tree(&tree, l.img.inventory().root_pid, &mut l.p);
    records::ns::pid::check_ns_pids(&tree, &mut l.p);
    let pids: BTreeSet<Pid> = tree.iter().map(|t| t.pid).collect();

    let zombies: Vec<Zombie> = l.optional(names::ZOMBIES);
    records::tree::check_zombies(&zombies, &pids, &mut l.p);
    let shared_tables: Vec<SharedTables> = l.optional(names::SHARED_TABLES);
    records::tree::check_shared_tables(&shared_tables, &tree, &mut l.p);
    let reg: Vec<RegFile> = l.records(names::REG_FILES).unwrap_or_default();
    records::files::check_reg_files(&reg, &mut l.p);
    let files: BTreeMap<FileId, RegFile> = reg.into_iter().map(|f| (f.id, f)).collect();
    let file_identity = if l.img.has_file(names::FILE_IDENTITY) {
        let entries: Vec<FileIdentity> = l.optional(names::FILE_IDENTITY);
        records::file_identity::check_file_identity(&entries, &files, &mut l.p);
        entries.into_iter().next()
    } else {
        None
    };
    let descs: Vec<FileDesc> = l.optional(names::FILE_DESCS);
    let processes: BTreeSet<Pid> = pids
        .iter()
        .copied()
        .chain(zombies.iter().map(|z| z.pid))
        .collect();
    let file_ids: BTreeSet<FileId> = files.keys().copied().collect();
    // What a proc file may be about: live processes and their threads (restore keeps their ids).
    let live: BTreeSet<Pid> = tree
        .iter()
        .flat_map(|t| std::iter::once(t.pid).chain(t.threads.iter().map(|tid| Pid(tid.0))))
        .collect();
    records::files::check_descs(&descs, &file_ids, &processes, &live, &mut l.p);
    let inode_attrs: Vec<InodeAttrs> = l.optional(names::INODE_ATTRS);
    records::files::inode::check_inode_attrs(&inode_attrs, &descs, &mut l.p);
    let desc_contents = load_desc_contents(l, &descs);
    let (deleted_files, deleted_pages) = load_deleted(l, &file_ids, &descs);
    let inotify_carried: Vec<InotifyCarriedWatch> = l.optional(names::INOTIFY_CARRIED);
    records::files::inotify::check_inotify_carried(&inotify_carried, &descs, &mut l.p);
    let udp_queues: Vec<UdpQueue> = l.optional(names::UDP_QUEUES);
    records::files::inet::check_udp_queues(&udp_queues, &descs, &mut l.p);
    let desc_ids: BTreeSet<DescId> = descs.iter().map(|d| d.id).collect();
    let shmem = load_shmem(l, &pids);
    let shmem_ids: BTreeSet<ShmemId> = shmem.keys().copied().collect();

    let refs = TaskRefs {
        files: &files,
        descs: &desc_ids,
        shmem: &shmem_ids,
    };
    let tasks = tree
        .into_iter()
        .filter_map(|t| load_task(l, t, &refs))
        .collect();
    let namespaces = load_namespaces(l, &pids);
    let mounts = load_mounts(l);
    let nested_mnt: Vec<NestedMountNs> = l.optional(names::NESTED_MNT_NS);
    records::mounts::check_nested(&nested_mnt, &pids, &file_ids, &mut l.p);
    let container_root = if l.img.has_file(names::CONTAINER_ROOT) {
        let roots: Vec<ContainerRoot> = l.optional(names::CONTAINER_ROOT);
        records::container::check_container_root(&roots, &mut l.p);
        roots.into_iter().next()
    } else {
        None
    };
    Parts {
        tasks,
        zombies,
        shared_tables,
        files,
        descs,
        inode_attrs,
        desc_contents,
        deleted_files,
        deleted_pages,
        inotify_carried,
        udp_queues,
        shmem,
        file_identity,
        namespaces,
        mounts,
        container_root,
        nested_mnt,
    }
}

/// The unlinked files and memfds whose content is in a page store, with their size and store.
fn load_desc_contents(
    l: &mut Loader<'_>,
    descs: &[FileDesc],
) -> BTreeMap<DescId, (u64, PageStoreReader)> {
    let stored: Vec<StoredContent> = l.optional(names::DESC_CONTENTS);
    records::files::inode::check_stored_contents(&stored, descs, &mut l.p);
    let mut out = BTreeMap::new();
    for c in stored {
        let store = names::desc_pages(c.desc);
        if let Some(s) = l.store(&store) {
            let what = format!("description {}", c.desc.0);
            let end = c.size.next_multiple_of(crate::PAGE_SIZE);
            records::pages::check_object_pages(&store, &what, end, s.extents(), &mut l.p);
            out.insert(c.desc, (c.size, s));
        }
    }
    out
}

/// The deleted files with the page stores of those whose content is stored in one.
fn load_deleted(
    l: &mut Loader<'_>,
    file_ids: &BTreeSet<FileId>,
    descs: &[FileDesc],
) -> (Vec<DeletedFile>, BTreeMap<FileId, PageStoreReader>) {
    let deleted: Vec<DeletedFile> = l.optional(names::DELETED_FILES);
    records::files::ghost::check_deleted_files(&deleted, file_ids, descs, &mut l.p);
    let mut pages = BTreeMap::new();
    for d in &deleted {
        let DeletedContent::Stored { size, .. } = d.content else {
            continue;
        };
        let store = names::deleted_pages(d.file);
        if let Some(s) = l.store(&store) {
            let what = format!("file {}", d.file.0);
            let end = size.next_multiple_of(crate::PAGE_SIZE);
            records::pages::check_object_pages(&store, &what, end, s.extents(), &mut l.p);
            pages.insert(d.file, s);
        }
    }
    (deleted, pages)
}

/// The shared memory objects with their page stores.
fn load_shmem(l: &mut Loader<'_>, pids: &BTreeSet<Pid>) -> BTreeMap<ShmemId, SharedObject> {
    let objects: Vec<ShmemObject> = l.optional(names::SHMEM);
    records::mm::check_shmem_objects(&objects, pids, &mut l.p);
    let mut out = BTreeMap::new();
    for object in objects {
        let store = names::shmem_pages(object.id);
        let Some(pages) = l.store(&store) else {
            continue;
        };
        records::pages::check_object_pages(
            &store,
            "the object",
            object.size,
            pages.extents(),
            &mut l.p,
        );
        out.insert(object.id, SharedObject { object, pages });
    }
    out
}

/// The tree-wide records a process's records refer to.
struct TaskRefs<'a> {
    files: &'a BTreeMap<FileId, RegFile>,
    descs: &'a BTreeSet<DescId>,
    shmem: &'a BTreeSet<ShmemId>,
}

/// Loads and checks the records of one process; `None` when one it must have is missing or unreadable
/// (the problem is recorded).
fn load_task(l: &mut Loader<'_>, tree: PsTreeEntry, refs: &TaskRefs<'_>) -> Option<TaskRecords> {
    let pid = tree.pid;
    let core: Option<TaskCore> = l.single(&names::core(pid));
    if let Some(c) = &core {
        records::attrs::check_task_core(&names::core(pid), pid, c, &mut l.p);
    }
    let mut threads = Vec::with_capacity(tree.threads.len());
    for tid in &tree.threads {
        let name = names::thread(*tid);
        if let Some(t) = l.single::<ThreadCore>(&name) {
            records::threads::check_thread(&name, *tid, &t, &mut l.p);
            threads.push(t);
        }
    }
    let mm: Option<Mm> = l.single(&names::mm(pid));
    if let Some(mm) = &mm {
        records::mm::check_mm(&names::mm(pid), mm, refs.files, refs.shmem, &mut l.p);
    }
    let fds: Option<Vec<Fd>> = l.records(&names::fds(pid));
    if let Some(fds) = &fds {
        records::files::check_fds(&names::fds(pid), fds, refs.files, refs.descs, &mut l.p);
    }
    let locks: Vec<FileLock> = l.optional(&names::locks(pid));
    if let Some(fds) = &fds {
        let (lf, ff) = (names::locks(pid), names::fds(pid));
        records::files::locks::check_locks(&lf, &ff, &locks, fds, &mut l.p);
    }
    let seccomp: Option<TaskSeccomp> = l
        .img
        .has_file(&names::seccomp(pid))
        .then(|| l.single(&names::seccomp(pid)))
        .flatten();
    if let Some(s) = &seccomp {
        records::seccomp::check_seccomp(&names::seccomp(pid), pid, &tree.threads, s, &mut l.p);
    }
    let attrs: Option<ProcessAttrs> = l
        .img
        .has_file(&names::attrs(pid))
        .then(|| l.single(&names::attrs(pid)))
        .flatten();
    if let Some(a) = &attrs {
        records::attrs::check_process_attrs(&names::attrs(pid), pid, &tree.threads, a, &mut l.p);
    }
    let store = names::task_pages(pid);
    let pages = l.store(&store);
    if let (Some(pages), Some(mm)) = (&pages, &mm) {
        records::pages::check_task_pages(&store, pid, mm, pages.extents(), &mut l.p);
    }
    if threads.len() != tree.threads.len() {
        return None;
    }
    Some(TaskRecords {
        tree,
        core: core?,
        threads,
        mm: mm?,
        fds: fds?,
        locks,
        seccomp,
        attrs,
        pages: pages?,
    })
}

/// The namespace records, when the image has them.
fn load_namespaces(l: &mut Loader<'_>, pids: &BTreeSet<Pid>) -> Option<Namespaces> {
    if !l.img.has_file(names::NS_IDS) && !l.img.has_file(names::CGROUPS) {
        return None;
    }
    let mut out = Namespaces {
        tasks: l.optional(names::NS_IDS),
        cgroups: l.optional(names::CGROUPS),
        ..Default::default()
    };
    if l.img.has_file(names::NS_IDS) {
        ns::check_task_namespaces(&out.tasks, pids, &mut l.p);
    }
    if l.img.has_file(names::CGROUPS) {
        ns::cgroup::check_cgroups(&out.cgroups, pids, &mut l.p);
    }
    for (kind, id) in ns::dumped_namespaces(&out.tasks) {
        let Some(file) = ns::state_file(kind, id) else {
            continue;
        };
        if !l.img.has_file(&file) {
            l.p.add(
                names::NS_IDS,
                format!(
                    "{} namespace {} is dumped but {file} is missing",
                    kind.proc_name(),
                    id.0
                ),
            );
            continue;
        }
        match kind {
            NsKind::Uts => {
                if let Some(uts) = l.single::<UtsNamespace>(&file) {
                    ns::uts::check_uts(&file, id, &uts, &mut l.p);
                    out.uts.insert(id, uts);
                }
            }
            NsKind::Ipc => {
                if let Some(ipc) = load_ipc(l, &file, id) {
                    out.ipc.insert(id, ipc);
                }
            }
            _ => match l.single::<NsState>(&file) {
                Some(state) => {
                    ns::check_ns_state(&file, kind, id, &state, &mut l.p);
                    match state {
                        NsState::Net(n) if kind == NsKind::Net => {
                            out.net.insert(id, n);
                        }
                        NsState::User(u) if kind == NsKind::User => {
                            out.user.insert(id, u);
                        }
                        NsState::Time(t) if kind == NsKind::Time => {
                            out.time.insert(id, t);
                        }
                        _ => {}
                    }
                }
                None => continue,
            },
        }
    }
    Some(out)
}

/// One ipc namespace with the page stores of its shared memory segments.
fn load_ipc(l: &mut Loader<'_>, file: &str, id: NsId) -> Option<IpcRecords> {
    let ipc: IpcNamespace = l.single(file)?;
    ns::ipc::check_ipc(file, id, &ipc, &mut l.p);
    let mut shm_pages = Vec::with_capacity(ipc.shm.len());
    for seg in &ipc.shm {
        let store = ns::ns_names::sysv_shm_pages(id, seg.id);
        if let Some(pages) = l.store(&store) {
            let what = format!("segment {}", seg.id);
            let size = seg.size.next_multiple_of(crate::PAGE_SIZE);
            records::pages::check_object_pages(&store, &what, size, pages.extents(), &mut l.p);
            shm_pages.push(pages);
        }
    }
    (shm_pages.len() == ipc.shm.len()).then_some(IpcRecords { ns: ipc, shm_pages })
}

/// The mount records, when the image has them.
fn load_mounts(l: &mut Loader<'_>) -> Option<Mounts> {
    if !l.img.has_file(names::MOUNTS) {
        return None;
    }
    let mut out = Mounts {
        mounts: l.records(names::MOUNTS).unwrap_or_default(),
        masters: l.optional(names::MOUNT_MASTERS),
        ..Default::default()
    };
    for m in &out.mounts {
        for (name, into) in [
            (names::tmpfs(m.id), &mut out.tmpfs),
            (names::ext_tmpfs(m.id), &mut out.ext_tmpfs),
        ] {
            if l.img.has_file(&name) {
                into.insert(m.id, l.optional(&name));
            }
        }
    }
    let content: Vec<MountId> = out.tmpfs.keys().copied().collect();
    records::mounts::check_mounts(&out.mounts, &out.masters, content.into_iter(), &mut l.p);
    Some(out)
}
