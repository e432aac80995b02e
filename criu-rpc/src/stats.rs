//! CRIU's statistics files, `stats-dump` and `stats-restore` in the work directory: podman archives
//! `stats-dump` with a checkpoint (`--export`) and prints both with `--print-stats`. Their format is
//! CRIU's "service" image: two magic words, then one length-prefixed protobuf entry (`stats_entry`, field
//! numbers as CRIU publishes them). Times are in microseconds.

use std::io::Write;
use std::os::fd::BorrowedFd;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use prost::Message;

/// CRIU's magic of service files (stats, irmap cache), then the stats file's own.
const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
const STATS_MAGIC: u32 = 0x5709_3306;

/// `dump_stats_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DumpStatsEntry {
    #[prost(uint32, required, tag = "1")]
    pub freezing_time: u32,
    #[prost(uint32, required, tag = "2")]
    pub frozen_time: u32,
    #[prost(uint32, required, tag = "3")]
    pub memdump_time: u32,
    #[prost(uint32, required, tag = "4")]
    pub memwrite_time: u32,
    #[prost(uint64, required, tag = "5")]
    pub pages_scanned: u64,
    #[prost(uint64, required, tag = "6")]
    pub pages_skipped_parent: u64,
    #[prost(uint64, required, tag = "7")]
    pub pages_written: u64,
    #[prost(uint64, required, tag = "9")]
    pub pages_lazy: u64,
}

/// `restore_stats_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RestoreStatsEntry {
    #[prost(uint64, required, tag = "1")]
    pub pages_compared: u64,
    #[prost(uint64, required, tag = "2")]
    pub pages_skipped_cow: u64,
    #[prost(uint32, required, tag = "3")]
    pub forking_time: u32,
    #[prost(uint32, required, tag = "4")]
    pub restore_time: u32,
    #[prost(uint64, optional, tag = "5")]
    pub pages_restored: Option<u64>,
}

/// `stats_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatsEntry {
    #[prost(message, optional, tag = "1")]
    pub dump: Option<DumpStatsEntry>,
    #[prost(message, optional, tag = "2")]
    pub restore: Option<RestoreStatsEntry>,
}

/// Microseconds, saturated to what the format holds.
pub fn us(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The file's bytes.
pub fn encode(entry: &StatsEntry) -> Vec<u8> {
    let body = entry.encode_to_vec();
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend(IMG_SERVICE_MAGIC.to_le_bytes());
    out.extend(STATS_MAGIC.to_le_bytes());
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// The dump statistics of `s`.
pub fn of_dump(s: &dormant_engine::DumpStats) -> StatsEntry {
    let phase = |stage| {
        s.phases
            .iter()
            .filter(|(st, _)| *st == stage)
            .map(|(_, d)| *d)
            .sum::<std::time::Duration>()
    };
    StatsEntry {
        dump: Some(DumpStatsEntry {
            freezing_time: us(phase(dormant_engine::DumpStage::Seize)),
            frozen_time: us(s.frozen),
            memdump_time: us(phase(dormant_engine::DumpStage::Memory)),
            // Pages are written as they are read (no separate write phase).
            memwrite_time: 0,
            pages_scanned: s.pages_written,
            pages_skipped_parent: 0,
            pages_written: s.pages_written,
            pages_lazy: 0,
        }),
        restore: None,
    }
}

/// Writes `name` into directory `dir` (best effort: statistics never fail a request). By descriptor: after
/// a restore this process's /proc is the container's, where `/proc/self` does not name it.
pub fn write(dir: BorrowedFd<'_>, name: &str, entry: &StatsEntry) {
    let written = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(std::io::Error::from)
    .and_then(|fd| std::fs::File::from(fd).write_all(&encode(entry)));
    if let Err(e) = written {
        log::warn!("cannot write {name} in the work directory: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_magics_then_one_sized_entry() {
        let e = StatsEntry {
            dump: Some(DumpStatsEntry {
                freezing_time: 1,
                frozen_time: 2,
                memdump_time: 3,
                memwrite_time: 0,
                pages_scanned: 5,
                pages_skipped_parent: 0,
                pages_written: 5,
                pages_lazy: 0,
            }),
            restore: None,
        };
        let b = encode(&e);
        assert_eq!(&b[..8], &[0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57]);
        let len = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
        assert_eq!(len, b.len() - 12);
        let back = StatsEntry::decode(&b[12..]).unwrap();
        assert_eq!(back, e);
        // Required fields are present even when zero (a proto2 reader insists on them).
        let d = DumpStatsEntry::decode(&back.dump.unwrap().encode_to_vec()[..]).unwrap();
        assert_eq!(d.memwrite_time, 0);
    }
}
