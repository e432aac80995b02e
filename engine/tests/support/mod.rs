//! Shared helpers of the dump tests: spawning target roles, waiting for their reports, poking them, and
//! reading images back.

#![allow(dead_code)]

pub mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dormant_engine::Pid;
use dormant_image::records::{self, names};
use dormant_image::{ImageReader, PageExtent};

pub const ROLE_ENV: &str = "DORMANT_ENGINE_TEST_ROLE";
pub const DIR_ENV: &str = "DORMANT_ENGINE_TEST_DIR";
pub const FILE_ENV: &str = "DORMANT_ENGINE_TEST_FILE";

/// A target process started from this test binary in a role; killed and reaped on drop.
pub struct Target {
    pub child: Option<Child>,
    pub pid: u32,
    /// The scratch directory the target reports into (`report`, `pong`, `log`).
    pub dir: tempfile::TempDir,
}

impl Target {
    /// Starts `role` with stdin from `stdin` (default /dev/null), waits for its `report` file.
    pub fn spawn(role: &str, env: &[(&str, String)], stdin: Option<Stdio>) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE_ENV, role)
            .env(DIR_ENV, dir.path())
            .stdin(stdin.unwrap_or(Stdio::null()))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        let t = Target {
            child: Some(child),
            pid,
            dir,
        };
        t.wait_ready();
        t
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn wait_ready(&self) {
        wait_for_file(&self.path("report"), Duration::from_secs(20))
            .unwrap_or_else(|| panic!("target {} never reported; log: {}", self.pid, self.log()));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("log")).unwrap_or_default()
    }

    /// The report as key → value.
    pub fn report(&self) -> BTreeMap<String, String> {
        parse_report(&std::fs::read_to_string(self.path("report")).unwrap())
    }

    pub fn report_u64(&self, key: &str) -> u64 {
        let r = self.report();
        let v = r
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in report {r:?}"));
        parse_u64(v)
    }

    pub fn pid(&self) -> Pid {
        Pid(self.pid)
    }

    /// Asks the target to answer (SIGUSR1 → it writes an incremented counter to `pong`) and waits for it.
    pub fn answers(&self) -> bool {
        let before = self.pongs();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.pongs() > before {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn pongs(&self) -> u64 {
        std::fs::read_to_string(self.path("pong"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Reaps the target, returning its wait status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn parse_report(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub fn parse_u64(v: &str) -> u64 {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => v.parse().unwrap(),
    }
}

pub fn wait_for_file(path: &Path, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(s) = std::fs::read_to_string(path) {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The state letter of /proc/<pid>/stat (after the comm).
pub fn proc_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..].trim_start().chars().next()
}

/// `/proc/<pid>/status` field.
pub fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().to_string())
    })
}

/// Waits until a traced/stopped-by-us state is gone and checks the target is not left in a tracing stop.
pub fn assert_running_untraced(pid: u32) {
    std::thread::sleep(Duration::from_millis(100));
    let st = proc_state(pid).expect("target vanished");
    assert_ne!(st, 't', "pid {pid} left in a tracing stop");
    assert_ne!(st, 'Z', "pid {pid} died");
    assert_eq!(
        status_field(pid, "TracerPid").as_deref(),
        Some("0"),
        "pid {pid} still traced"
    );
}

/// A fresh image path (not yet existing) in a fresh directory.
pub fn image_path() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("img");
    (d, p)
}

/// Reads back a page store as address → bytes of each extent.
pub fn read_store(img: &ImageReader, name: &str) -> Vec<(PageExtent, Vec<u8>)> {
    let store = img.page_store(name).unwrap();
    store
        .extents()
        .iter()
        .map(|e| {
            let mut buf = vec![0u8; e.len as usize];
            store.read_extent(e, &mut buf).unwrap();
            (*e, buf)
        })
        .collect()
}

/// Stored bytes for `addr..addr+len` page by page (None for pages not stored).
pub fn stored_pages(
    extents: &[(PageExtent, Vec<u8>)],
    addr: u64,
    len: u64,
) -> Vec<Option<Vec<u8>>> {
    (0..len / 4096)
        .map(|p| {
            let a = addr + p * 4096;
            extents
                .iter()
                .find(|(e, _)| e.vaddr <= a && a < e.vaddr + e.len)
                .map(|(e, b)| {
                    let off = (a - e.vaddr) as usize;
                    b[off..off + 4096].to_vec()
                })
        })
        .collect()
}

/// Opens an image and runs the image crate's whole-image and cross-reference checks.
pub fn open_verified(dir: &Path) -> ImageReader {
    if let Err(e) = dormant_image::Image::load(dir) {
        panic!("image does not verify: {e}");
    }
    ImageReader::open(dir).unwrap()
}

pub fn core_of(img: &ImageReader, pid: u32) -> records::TaskCore {
    img.read_single(&names::core(Pid(pid))).unwrap()
}

pub fn thread_of(img: &ImageReader, pid: u32) -> records::ThreadCore {
    img.read_single(&names::thread(records::Tid(pid))).unwrap()
}

pub fn mm_of(img: &ImageReader, pid: u32) -> records::Mm {
    img.read_single(&names::mm(Pid(pid))).unwrap()
}

/// Entries of a directory (to check nothing was left behind).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Reads live target memory.
pub fn read_live(pid: u32, addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, addr).unwrap();
    b
}
