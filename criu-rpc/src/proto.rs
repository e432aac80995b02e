//! The messages of CRIU's RPC (`criu swrk`), as clients encode them: the field numbers and wire types of
//! CRIU's published `rpc.proto` (proto2), written here with prost derives. Only the layout is shared with
//! CRIU; the names follow the proto's so a reader can match them, and every field a client may send is
//! listed, so that [`crate::opts`] can honour or refuse each one by name. Unknown fields (a newer client)
//! are skipped by prost while decoding.

/// What a request asks for (`criu_req_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReqType {
    Empty = 0,
    Dump = 1,
    Restore = 2,
    Check = 3,
    PreDump = 4,
    PageServer = 5,
    Notify = 6,
    CpuinfoDump = 7,
    CpuinfoCheck = 8,
    FeatureCheck = 9,
    Version = 10,
    WaitPid = 11,
    PageServerChld = 12,
    SinglePreDump = 13,
}

impl ReqType {
    /// The name CRIU's clients print (`criu failed: type DUMP ...`).
    pub fn name(self) -> &'static str {
        match self {
            ReqType::Empty => "EMPTY",
            ReqType::Dump => "DUMP",
            ReqType::Restore => "RESTORE",
            ReqType::Check => "CHECK",
            ReqType::PreDump => "PRE_DUMP",
            ReqType::PageServer => "PAGE_SERVER",
            ReqType::Notify => "NOTIFY",
            ReqType::CpuinfoDump => "CPUINFO_DUMP",
            ReqType::CpuinfoCheck => "CPUINFO_CHECK",
            ReqType::FeatureCheck => "FEATURE_CHECK",
            ReqType::Version => "VERSION",
            ReqType::WaitPid => "WAIT_PID",
            ReqType::PageServerChld => "PAGE_SERVER_CHLD",
            ReqType::SinglePreDump => "SINGLE_PRE_DUMP",
        }
    }
}

/// How cgroups are handled at restore (`criu_cg_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CgMode {
    Ignore = 0,
    CgNone = 1,
    Props = 2,
    Soft = 3,
    Full = 4,
    Strict = 5,
    Default = 6,
}

/// `criu_page_server_info`: where a page server listens (dormant has none; only refused by name).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PageServerInfo {
    #[prost(string, optional, tag = "1")]
    pub address: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub port: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub pid: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    pub fd: Option<i32>,
}

/// `criu_veth_pair` (deprecated in CRIU; refused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct VethPair {
    #[prost(string, required, tag = "1")]
    pub if_in: String,
    #[prost(string, required, tag = "2")]
    pub if_out: String,
}

/// `ext_mount_map`: one external mount. At DUMP `key` is the mountpoint in the container and `val` the
/// name recorded in the image; at RESTORE `key` is that recorded name and `val` the path to bind from.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtMountMap {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub val: String,
}

/// `join_namespace`: restore into an existing namespace (`ns` is "net", "uts", "ipc", ...).
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinNamespace {
    #[prost(string, required, tag = "1")]
    pub ns: String,
    #[prost(string, required, tag = "2")]
    pub ns_file: String,
    #[prost(string, optional, tag = "3")]
    pub extra_opt: Option<String>,
}

/// `inherit_fd`: the restored tree's external resource `key` (e.g. `pipe:[1234]`) is the server's fd `fd`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InheritFd {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(int32, required, tag = "2")]
    pub fd: i32,
}

/// `cgroup_root`: the cgroup (path in controller `ctrl`'s hierarchy; no ctrl: every one) to restore into.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CgroupRoot {
    #[prost(string, optional, tag = "1")]
    pub ctrl: Option<String>,
    #[prost(string, required, tag = "2")]
    pub path: String,
}

/// `unix_sk` (deprecated in CRIU; refused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnixSk {
    #[prost(uint32, required, tag = "1")]
    pub inode: u32,
}

/// `criu_opts`: every option of a DUMP, PRE_DUMP or RESTORE request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuOpts {
    #[prost(int32, required, tag = "1", default = "-1")]
    pub images_dir_fd: i32,
    /// Used when `images_dir_fd` is -1.
    #[prost(string, optional, tag = "68")]
    pub images_dir: Option<String>,
    /// DUMP: the root of the tree (CRIU dumps the requesting process when unset).
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
    #[prost(bool, optional, tag = "3")]
    pub leave_running: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub ext_unix_sk: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub tcp_established: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub evasive_devices: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub shell_job: Option<bool>,
    #[prost(bool, optional, tag = "8")]
    pub file_locks: Option<bool>,
    #[prost(int32, optional, tag = "9", default = "2")]
    pub log_level: Option<i32>,
    /// A file name in the work directory (no subdirectories).
    #[prost(string, optional, tag = "10")]
    pub log_file: Option<String>,
    #[prost(message, optional, tag = "11")]
    pub ps: Option<PageServerInfo>,
    #[prost(bool, optional, tag = "12")]
    pub notify_scripts: Option<bool>,
    #[prost(string, optional, tag = "13")]
    pub root: Option<String>,
    #[prost(string, optional, tag = "14")]
    pub parent_img: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub track_mem: Option<bool>,
    #[prost(bool, optional, tag = "16")]
    pub auto_dedup: Option<bool>,
    #[prost(int32, optional, tag = "17")]
    pub work_dir_fd: Option<i32>,
    #[prost(bool, optional, tag = "18")]
    pub link_remap: Option<bool>,
    #[prost(message, repeated, tag = "19")]
    pub veths: Vec<VethPair>,
    #[prost(uint32, optional, tag = "20", default = "4294967295")]
    pub cpu_cap: Option<u32>,
    #[prost(bool, optional, tag = "21")]
    pub force_irmap: Option<bool>,
    #[prost(string, repeated, tag = "22")]
    pub exec_cmd: Vec<String>,
    #[prost(message, repeated, tag = "23")]
    pub ext_mnt: Vec<ExtMountMap>,
    #[prost(bool, optional, tag = "24")]
    pub manage_cgroups: Option<bool>,
    #[prost(message, repeated, tag = "25")]
    pub cg_root: Vec<CgroupRoot>,
    #[prost(bool, optional, tag = "26")]
    pub rst_sibling: Option<bool>,
    #[prost(message, repeated, tag = "27")]
    pub inherit_fd: Vec<InheritFd>,
    #[prost(bool, optional, tag = "28")]
    pub auto_ext_mnt: Option<bool>,
    #[prost(bool, optional, tag = "29")]
    pub ext_sharing: Option<bool>,
    #[prost(bool, optional, tag = "30")]
    pub ext_masters: Option<bool>,
    #[prost(string, repeated, tag = "31")]
    pub skip_mnt: Vec<String>,
    #[prost(string, repeated, tag = "32")]
    pub enable_fs: Vec<String>,
    #[prost(message, repeated, tag = "33")]
    pub unix_sk_ino: Vec<UnixSk>,
    #[prost(enumeration = "CgMode", optional, tag = "34")]
    pub manage_cgroups_mode: Option<i32>,
    #[prost(uint32, optional, tag = "35", default = "1048576")]
    pub ghost_limit: Option<u32>,
    #[prost(string, repeated, tag = "36")]
    pub irmap_scan_paths: Vec<String>,
    /// CRIU's `--external` specs: `mnt[KEY]:VAL`, `net[INODE]:KEY`, `tty[RDEV:DEV]`, ...
    #[prost(string, repeated, tag = "37")]
    pub external: Vec<String>,
    /// CLONE_NEW* bits of namespaces whose contents are neither dumped nor restored.
    #[prost(uint32, optional, tag = "38")]
    pub empty_ns: Option<u32>,
    #[prost(message, repeated, tag = "39")]
    pub join_ns: Vec<JoinNamespace>,
    #[prost(string, optional, tag = "41")]
    pub cgroup_props: Option<String>,
    #[prost(string, optional, tag = "42")]
    pub cgroup_props_file: Option<String>,
    #[prost(string, repeated, tag = "43")]
    pub cgroup_dump_controller: Vec<String>,
    /// DUMP: the freezer cgroup of the tree (v1 directory with `freezer.state`, or a v2 directory).
    #[prost(string, optional, tag = "44")]
    pub freeze_cgroup: Option<String>,
    #[prost(uint32, optional, tag = "45")]
    pub timeout: Option<u32>,
    #[prost(bool, optional, tag = "46")]
    pub tcp_skip_in_flight: Option<bool>,
    #[prost(bool, optional, tag = "47")]
    pub weak_sysctls: Option<bool>,
    #[prost(bool, optional, tag = "48")]
    pub lazy_pages: Option<bool>,
    #[prost(int32, optional, tag = "49")]
    pub status_fd: Option<i32>,
    #[prost(bool, optional, tag = "50")]
    pub orphan_pts_master: Option<bool>,
    #[prost(string, optional, tag = "51")]
    pub config_file: Option<String>,
    #[prost(bool, optional, tag = "52")]
    pub tcp_close: Option<bool>,
    #[prost(string, optional, tag = "53")]
    pub lsm_profile: Option<String>,
    #[prost(string, optional, tag = "54")]
    pub tls_cacert: Option<String>,
    #[prost(string, optional, tag = "55")]
    pub tls_cacrl: Option<String>,
    #[prost(string, optional, tag = "56")]
    pub tls_cert: Option<String>,
    #[prost(string, optional, tag = "57")]
    pub tls_key: Option<String>,
    #[prost(bool, optional, tag = "58")]
    pub tls: Option<bool>,
    #[prost(bool, optional, tag = "59")]
    pub tls_no_cn_verify: Option<bool>,
    #[prost(string, optional, tag = "60")]
    pub cgroup_yard: Option<String>,
    /// 1 SPLICE (default), 2 VM_READ.
    #[prost(int32, optional, tag = "61")]
    pub pre_dump_mode: Option<i32>,
    #[prost(int32, optional, tag = "62")]
    pub pidfd_store_sk: Option<i32>,
    #[prost(string, optional, tag = "63")]
    pub lsm_mount_context: Option<String>,
    /// 1 IPTABLES (default), 2 NFTABLES, 3 SKIP.
    #[prost(int32, optional, tag = "64")]
    pub network_lock: Option<i32>,
    #[prost(bool, optional, tag = "65")]
    pub mntns_compat_mode: Option<bool>,
    #[prost(bool, optional, tag = "66")]
    pub skip_file_rwx_check: Option<bool>,
    #[prost(bool, optional, tag = "67")]
    pub unprivileged: Option<bool>,
    #[prost(bool, optional, tag = "69")]
    pub leave_stopped: Option<bool>,
    #[prost(bool, optional, tag = "70")]
    pub display_stats: Option<bool>,
    #[prost(bool, optional, tag = "71")]
    pub log_to_stderr: Option<bool>,
    #[prost(bool, optional, tag = "72")]
    pub allow_uprobes: Option<bool>,
    #[prost(bool, optional, tag = "73")]
    pub ghost_fiemap: Option<bool>,
    /// 1 FILE_SIZE, 2 BUILD_ID (default).
    #[prost(int32, optional, tag = "74")]
    pub file_validation_method: Option<i32>,
}

/// `criu_dump_resp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DumpResp {
    /// Set when the dumping process itself was restored (self-dump); never by dormant.
    #[prost(bool, optional, tag = "1")]
    pub restored: Option<bool>,
}

/// `criu_restore_resp`: the restored tree's root, as a pid of the client's pid namespace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RestoreResp {
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
}

/// `criu_notify`: a callback ("action script") the client runs before the server goes on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Notify {
    #[prost(string, optional, tag = "1")]
    pub script: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
}

/// `criu_features`: asked in a FEATURE_CHECK request, answered with what is available.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Features {
    #[prost(bool, optional, tag = "1")]
    pub mem_track: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub lazy_pages: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub pidfd_store: Option<bool>,
}

/// `criu_req`: one request datagram.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuReq {
    #[prost(enumeration = "ReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub opts: Option<CriuOpts>,
    /// In a NOTIFY answer: whether the client's callback succeeded.
    #[prost(bool, optional, tag = "3")]
    pub notify_success: Option<bool>,
    /// Serve another request on the same connection afterwards.
    #[prost(bool, optional, tag = "4")]
    pub keep_open: Option<bool>,
    #[prost(message, optional, tag = "5")]
    pub features: Option<Features>,
    /// WAIT_PID's pid.
    #[prost(uint32, optional, tag = "6")]
    pub pid: Option<u32>,
}

/// `criu_version`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Version {
    #[prost(int32, required, tag = "1")]
    pub major_number: i32,
    #[prost(int32, required, tag = "2")]
    pub minor_number: i32,
    #[prost(string, optional, tag = "3")]
    pub gitid: Option<String>,
    #[prost(int32, optional, tag = "4")]
    pub sublevel: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    pub extra: Option<i32>,
    #[prost(string, optional, tag = "6")]
    pub name: Option<String>,
}

/// `criu_resp`: one answer or notification datagram.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuResp {
    #[prost(enumeration = "ReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    #[prost(message, optional, tag = "3")]
    pub dump: Option<DumpResp>,
    #[prost(message, optional, tag = "4")]
    pub restore: Option<RestoreResp>,
    #[prost(message, optional, tag = "5")]
    pub notify: Option<Notify>,
    #[prost(message, optional, tag = "6")]
    pub ps: Option<PageServerInfo>,
    #[prost(int32, optional, tag = "7")]
    pub cr_errno: Option<i32>,
    #[prost(message, optional, tag = "8")]
    pub features: Option<Features>,
    #[prost(string, optional, tag = "9")]
    pub cr_errmsg: Option<String>,
    #[prost(message, optional, tag = "10")]
    pub version: Option<Version>,
    #[prost(int32, optional, tag = "11")]
    pub status: Option<i32>,
}

impl CriuResp {
    /// A successful answer of type `t` with nothing else set.
    pub fn ok(t: ReqType) -> Self {
        CriuResp {
            r#type: t as i32,
            success: true,
            ..Default::default()
        }
    }

    /// A failed answer: `errno` and dormant's message.
    pub fn failed(t: ReqType, errno: i32, msg: String) -> Self {
        CriuResp {
            r#type: t as i32,
            success: false,
            cr_errno: Some(errno),
            cr_errmsg: Some(msg),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The bytes a client sends for a VERSION request, as seen on the wire (`08 0a`).
    #[test]
    fn version_request_wire_bytes() {
        let req = CriuReq::decode(&[0x08u8, 0x0a][..]).unwrap();
        assert_eq!(req.r#type(), ReqType::Version);
        assert!(req.opts.is_none());
    }

    /// The NOTIFY ack a client sends (`08 06 18 01`).
    #[test]
    fn notify_ack_wire_bytes() {
        let req = CriuReq::decode(&[0x08u8, 0x06, 0x18, 0x01][..]).unwrap();
        assert_eq!(req.r#type(), ReqType::Notify);
        assert_eq!(req.notify_success, Some(true));
        let ours = CriuReq {
            r#type: ReqType::Notify as i32,
            notify_success: Some(true),
            ..Default::default()
        };
        assert_eq!(ours.encode_to_vec(), vec![0x08, 0x06, 0x18, 0x01]);
    }

    /// Required fields are on the wire even when false/zero: a client rejects a reply without them.
    #[test]
    fn required_fields_always_encoded() {
        let resp = CriuResp::failed(ReqType::Empty, 0, String::new());
        let bytes = resp.encode_to_vec();
        // type (field 1, varint 0) and success (field 2, varint 0) come first.
        assert_eq!(&bytes[..4], &[0x08, 0x00, 0x10, 0x00]);
    }

    /// Field numbers and wire types of options a runtime sends, checked by hand-encoded bytes.
    #[test]
    fn options_by_field_number() {
        let mut bytes = vec![0x08, 0x01, 0x12]; // type DUMP, opts (field 2, length-delimited)
        let mut opts = vec![
            0x08, 0x07, // images_dir_fd 7
            0x10, 0xd2, 0x09, // pid 1234
            0x18, 0x01, // leave_running
        ];
        opts.extend([0xba, 0x01, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b']); // ext_mnt (23) {a -> b}
        opts.extend([0xb0, 0x02, 0x80, 0x80, 0x80, 0x80, 0x04]); // empty_ns (38) 0x40000000
        opts.extend([0xe2, 0x02, 0x02, b'/', b'f']); // freeze_cgroup (44) "/f"
        opts.extend([0x90, 0x03, 0x01]); // orphan_pts_master (50)
        bytes.push(opts.len() as u8);
        bytes.extend(opts);
        let req = CriuReq::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.r#type(), ReqType::Dump);
        let o = req.opts.unwrap();
        assert_eq!(o.images_dir_fd, 7);
        assert_eq!(o.pid, Some(1234));
        assert_eq!(o.leave_running, Some(true));
        assert_eq!(o.ext_mnt.len(), 1);
        assert_eq!(
            (o.ext_mnt[0].key.as_str(), o.ext_mnt[0].val.as_str()),
            ("a", "b")
        );
        assert_eq!(o.empty_ns, Some(0x4000_0000));
        assert_eq!(o.freeze_cgroup.as_deref(), Some("/f"));
        assert_eq!(o.orphan_pts_master, Some(true));
        assert_eq!(o.log_level(), 2, "proto default");
    }

    #[test]
    fn restore_reply_round_trip() {
        let resp = CriuResp {
            restore: Some(RestoreResp { pid: 4321 }),
            ..CriuResp::ok(ReqType::Restore)
        };
        let back = CriuResp::decode(resp.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.restore.as_ref().unwrap().pid, 4321);
        assert!(back.success);
        assert_eq!(back.r#type(), ReqType::Restore);
    }
}
