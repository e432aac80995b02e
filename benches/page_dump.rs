//! Page-dump throughput of the dumper by copy method and thread count, as a ratio to plain `write()` +
//! fsync of the same number of bytes to the same directory, in the same run.
//!
//! Methods: `/proc/<pid>/mem` (pread), `process_vm_readv`, and the parasite's vmsplice into pipes spliced
//! into the page store (the default), each with one copying thread and with the default pool. The
//! parasite rows measure `CopyMethod::Parasite` as the dumper runs it: below
//! `parasite_pages::PARASITE_MIN_BYTES` of pages it does not inject and copies with process_vm_readv, so
//! at those sizes the rows show that automatic choice. The
//! target is this binary re-run as a workload holding N MiB of written anonymous memory; every dump runs
//! with `leave_running`, so one target serves all rows. Guest memory is touched once up front (the host
//! backs it lazily, and first-touch faults would be charged to whichever row runs first).
//!
//! Needs root. Environment: `DORMANT_BENCH_SIZES_MIB` (default `1024,4096`), `DORMANT_BENCH_REPS` (default
//! 3; each row prints the median ratio and all of them), `DORMANT_BENCH_DIR`, `DORMANT_BENCH_ROWS` (only
//! rows whose name contains one of these `;`-separated strings, e.g. `readv, parallel;parasite`). Each row
//! also prints the stage durations of its median sample, to show where a dump's time goes.

use std::error::Error;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dormant_engine::{CopyMethod, Dump, PageCopy, Pid};

const ROLE: &str = "DORMANT_PAGE_DUMP_WORKLOAD_MIB";

fn workload(mib: usize) -> ! {
    let words = mib << 17;
    let mem: Vec<u64> = (0..words as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        .collect();
    println!("READY");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        std::hint::black_box(&mem);
    }
}

fn warm_guest_memory(max_mib: usize) {
    let mut v = vec![0u8; (3 * max_mib + 1024) << 20];
    for page in v.chunks_mut(4096) {
        page[0] = 1;
    }
    std::hint::black_box(&v);
}

fn baseline_write(path: &Path, bytes: u64) -> Result<Duration, Box<dyn Error>> {
    let buf: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 + 1) as u8).collect();
    let start = Instant::now();
    let mut f = File::create(path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    let took = start.elapsed();
    fs::remove_file(path)?;
    Ok(took)
}

fn main() -> Result<(), Box<dyn Error>> {
    if let Ok(mib) = std::env::var(ROLE) {
        workload(mib.parse()?);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("the page-dump bench must run as root (ptrace)".into());
    }
    let dir = std::env::var_os("DORMANT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("page_dump"));
    fs::create_dir_all(&dir)?;
    let sizes: Vec<usize> = std::env::var("DORMANT_BENCH_SIZES_MIB")
        .unwrap_or_else(|_| "1024,4096".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let reps: usize = std::env::var("DORMANT_BENCH_REPS")
        .unwrap_or_else(|_| "3".into())
        .parse()?;
    warm_guest_memory(sizes.iter().copied().max().unwrap_or(0));
    let rows = [
        ("/proc/pid/mem, 1 thread", CopyMethod::ProcMem, 1),
        ("/proc/pid/mem, parallel", CopyMethod::ProcMem, 0),
        ("process_vm_readv, 1 thread", CopyMethod::VmReadv, 1),
        ("process_vm_readv, parallel", CopyMethod::VmReadv, 0),
        ("parasite vmsplice, 1 thread", CopyMethod::Parasite, 1),
        ("parasite vmsplice, parallel", CopyMethod::Parasite, 0),
    ];
    let only = std::env::var("DORMANT_BENCH_ROWS").unwrap_or_default();
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|(name, _, _)| only.split(';').any(|f| name.contains(f.trim())))
        .collect();
    println!(
        "page dump throughput vs write()+fsync, dir {}",
        dir.display()
    );
    for mib in sizes {
        let log = dir.join("workload.log");
        let out = File::create(&log)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ROLE, mib.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: one async-signal-safe syscall in the child before exec; CLOSE_RANGE_CLOEXEC (4) keeps
        // std's exec-error pipe working until exec. The target must hold only fds dormant can dump.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let start = Instant::now();
        while !fs::read_to_string(&log)?.contains("READY") {
            if start.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                return Err("workload never got ready".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "{mib} MiB (each sample right after its own write()+fsync baseline of the same bytes):"
        );
        for &(name, method, threads) in &rows {
            // Disk and page-cache speed drift during a run: each measurement gets its own baseline,
            // taken just before it, and a row reports the median of its `reps` ratios.
            let mut samples = Vec::new();
            for _ in 0..reps {
                let base = baseline_write(&dir.join("baseline.bin"), (mib as u64) << 20)?;
                let base_rate = mib as f64 / base.as_secs_f64();
                let img = dir.join("img");
                let stats = Dump::builder(Pid(child.id()))
                    .images_dir(&img)
                    .leave_running(true)
                    .page_copy(PageCopy { method, threads })
                    .build()?
                    .run()?;
                let rate = stats.bytes_written as f64 / 1048576.0 / stats.total.as_secs_f64();
                let phases: Vec<String> = stats
                    .phases
                    .iter()
                    .map(|(stage, d)| format!("{stage:?} {:.0}", d.as_secs_f64() * 1e3))
                    .collect();
                samples.push((
                    rate / base_rate,
                    rate,
                    base_rate,
                    stats.frozen,
                    phases.join(", "),
                ));
                fs::remove_dir_all(&img)?;
            }
            samples.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (ratio, rate, base_rate, frozen, phases) = &samples[samples.len() / 2];
            let spread: Vec<String> = samples.iter().map(|s| format!("{:.2}", s.0)).collect();
            println!(
                "  {name:<28} {rate:>7.0} MiB/s  write() {base_rate:>7.0} MiB/s  median ratio {ratio:.2} of [{}]  (frozen {:.0} ms)",
                spread.join(" "),
                frozen.as_secs_f64() * 1e3
            );
            println!("    median sample's stages (ms): {phases}");
        }
        child.kill()?;
        child.wait()?;
    }
    Ok(())
}
