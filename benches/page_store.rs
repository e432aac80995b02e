//! Page-store write throughput against plain `write()` of the same bytes to the same directory, measured
//! in the same run, alternating rounds.
//!
//! Baseline: `File::create` + `write_all` in 1 MiB chunks + fsync. Page store: `write_extent` per 1 MiB +
//! `finish_page_store` + `commit` (inventory, fsync of every file and the directory, rename), from one
//! thread and from two threads sharing the writer.
//!
//! Environment: `DORMANT_BENCH_MIB` (default 256), `DORMANT_BENCH_ROUNDS` (default 5), `DORMANT_BENCH_DIR`
//! (default: cargo's per-target temporary directory, on the same file system as the build).

use std::error::Error;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dormant_image::records::Pid;
use dormant_image::{ImageWriter, InventoryInfo, ARCH};

const CHUNK: usize = 1 << 20;

fn env_num(name: &str, default: usize) -> Result<usize, Box<dyn Error>> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v}: {e}"))?),
        Err(_) => Ok(default),
    }
}

fn info() -> InventoryInfo {
    InventoryInfo {
        arch: ARCH.to_owned(),
        kernel_release: "bench".to_owned(),
        xsave_features: 0,
        xsave_size: 0,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_unix_secs: 0,
        root_pid: Pid(1),
    }
}

fn baseline(dir: &Path, data: &[u8]) -> Result<Duration, Box<dyn Error>> {
    let path = dir.join("baseline.bin");
    let start = Instant::now();
    let mut f = File::create(&path)?;
    for chunk in data.chunks(CHUNK) {
        f.write_all(chunk)?;
    }
    f.sync_all()?;
    let took = start.elapsed();
    fs::remove_file(&path)?;
    Ok(took)
}

fn page_store(dir: &Path, data: &[u8], threads: usize) -> Result<Duration, Box<dyn Error>> {
    let target = dir.join("image");
    let start = Instant::now();
    let mut w = ImageWriter::create(&target)?;
    let ps = w.page_store("bench")?;
    let chunks: Vec<(usize, &[u8])> = data.chunks(CHUNK).enumerate().collect();
    std::thread::scope(|s| -> Result<(), Box<dyn Error>> {
        let workers: Vec<_> = chunks
            .chunks(chunks.len().div_ceil(threads).max(1))
            .map(|part| {
                let ps = &ps;
                s.spawn(move || -> Result<(), dormant_image::ImageError> {
                    for &(i, chunk) in part {
                        ps.write_extent((i * CHUNK) as u64, 0, chunk)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| "writer thread panicked")??;
        }
        Ok(())
    })?;
    let written = w.finish_page_store(ps)?;
    w.commit(info())?;
    let took = start.elapsed();
    if written != data.len() as u64 {
        return Err(format!("page store wrote {written} bytes, expected {}", data.len()).into());
    }
    fs::remove_dir_all(&target)?;
    Ok(took)
}

struct Series {
    name: &'static str,
    times: Vec<Duration>,
}

impl Series {
    fn best(&self) -> Duration {
        self.times.iter().copied().min().unwrap_or_default()
    }
    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t.get(t.len() / 2).copied().unwrap_or_default()
    }
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` passes `--bench`; this harness has no options of its own.
    let mib = env_num("DORMANT_BENCH_MIB", 256)?;
    let rounds = env_num("DORMANT_BENCH_ROUNDS", 5)?.max(1);
    let dir = match std::env::var_os("DORMANT_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("page_store_bench"),
    };
    fs::create_dir_all(&dir)?;
    let bytes = mib << 20;
    // Non-zero pattern, every page touched before timing.
    let data: Vec<u8> = (0..bytes)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 | 1)
        .collect();

    let mut series = [
        Series {
            name: "write()+fsync",
            times: Vec::new(),
        },
        Series {
            name: "page store, 1 thread",
            times: Vec::new(),
        },
        Series {
            name: "page store, 2 threads",
            times: Vec::new(),
        },
    ];
    for _ in 0..rounds {
        series[0].times.push(baseline(&dir, &data)?);
        series[1].times.push(page_store(&dir, &data, 1)?);
        series[2].times.push(page_store(&dir, &data, 2)?);
    }
    let _ = fs::remove_dir(&dir);

    println!(
        "page_store: {mib} MiB, {rounds} rounds, dir {}",
        dir.display()
    );
    for s in &series {
        println!(
            "  {:<24} best {:>8.1} MiB/s ({:>7.1} ms)   median {:>8.1} MiB/s ({:>7.1} ms)",
            s.name,
            mib_s(bytes, s.best()),
            s.best().as_secs_f64() * 1e3,
            mib_s(bytes, s.median()),
            s.median().as_secs_f64() * 1e3
        );
    }
    for s in &series[1..] {
        println!(
            "  ratio {} / write(): best {:.2}, median {:.2}",
            s.name,
            series[0].best().as_secs_f64() / s.best().as_secs_f64().max(1e-9),
            series[0].median().as_secs_f64() / s.median().as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}
