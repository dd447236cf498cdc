//! `svault inspect`: what is on disk, per shard — segments, LSN ranges, checksum failures,
//! torn tails, snapshots — read-only (`wal::inspect` never modifies a file). Every record of
//! every segment is verified, so on a large log it draws a progress bar on a terminal.

use crate::progress::Progress;
use crate::{meta, recovery};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One shard's files.
#[derive(Debug, Clone)]
pub struct ShardInspection {
    pub shard: usize,
    pub wal_dir: PathBuf,
    pub inspection: wal::Inspection,
    /// `shard-N/archive/`: segments snapshots covered, kept as history (no snapshots here).
    pub archive: wal::Inspection,
}

/// Why a directory could not be inspected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    #[error("{0} is not a svault data directory (no meta file)")]
    NotADataDir(PathBuf),
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
    #[error("shard {shard}: {source}")]
    Wal { shard: usize, source: wal::WalError },
}

/// Inspects every shard of `data`.
pub fn inspect(data: &Path) -> Result<Vec<ShardInspection>, InspectError> {
    inspect_with(data, false)
}

/// Inspects every shard of `data`; with `progress`, draws a bar (bytes read, records, records
/// per second, time left) when stderr is a terminal.
pub fn inspect_with(data: &Path, progress: bool) -> Result<Vec<ShardInspection>, InspectError> {
    let m = meta::read(data)?.ok_or_else(|| InspectError::NotADataDir(data.to_path_buf()))?;
    let mut dirs = Vec::with_capacity(m.shards);
    for k in 0..m.shards {
        dirs.push((k, recovery::shard_paths(data, k)));
    }
    let bar = if progress {
        let total: u64 = dirs
            .iter()
            .flat_map(|(_, p)| {
                let snaps = (p.snapshots != p.wal).then_some(&p.snapshots);
                [Some(&p.wal), snaps, Some(&p.archive)]
            })
            .flatten()
            .map(|d| dir_bytes(d))
            .sum();
        Progress::new(total, "inspect")
    } else {
        Progress::hidden()
    };
    let read = |dir: &Path, k: usize| {
        wal::inspect_with_progress(dir, |bytes, records| bar.inc_records(bytes, records))
            .map_err(|source| InspectError::Wal { shard: k, source })
    };
    let mut out = Vec::with_capacity(m.shards);
    for (k, paths) in dirs {
        let mut inspection = if paths.wal.exists() {
            read(&paths.wal, k)?
        } else {
            wal::Inspection::default()
        };
        if paths.snapshots.exists() && paths.snapshots != paths.wal {
            let snaps = read(&paths.snapshots, k)?;
            inspection.snapshots.extend(snaps.snapshots);
        }
        let archive = if paths.archive.exists() {
            read(&paths.archive, k)?
        } else {
            wal::Inspection::default()
        };
        out.push(ShardInspection {
            shard: k,
            wal_dir: paths.wal,
            inspection,
            archive,
        });
    }
    bar.finish();
    Ok(out)
}

/// Bytes of the files directly in `dir` (0 if it cannot be read: the bar is only an estimate).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Human-readable report; `true` in the second value when something is wrong (a bad record,
/// a refusal, a bad header or an invalid snapshot).
pub fn render(shards: &[ShardInspection]) -> (String, bool) {
    let mut s = String::new();
    let mut bad = false;
    for sh in shards {
        let i = &sh.inspection;
        let _ = writeln!(s, "shard {} ({})", sh.shard, sh.wal_dir.display());
        let first = i.segments.iter().map(|g| g.first_lsn.0).min();
        let last = i
            .segments
            .iter()
            .filter_map(|g| g.last_lsn.map(|l| l.0))
            .max();
        let records: u64 = i.segments.iter().map(|g| g.records_ok).sum();
        let _ = writeln!(
            s,
            "  segments: {}  records: {records}  lsn range: {}",
            i.segments.len(),
            match (first, last) {
                (Some(f), Some(l)) => format!("{f}..={l}"),
                _ => "empty".into(),
            }
        );
        bad |= render_segments(&mut s, &i.segments);
        if !sh.archive.segments.is_empty() {
            let a = &sh.archive;
            let first = a.segments.iter().map(|g| g.first_lsn.0).min();
            let last = a
                .segments
                .iter()
                .filter_map(|g| g.last_lsn.map(|l| l.0))
                .max();
            let records: u64 = a.segments.iter().map(|g| g.records_ok).sum();
            let _ = writeln!(
                s,
                "  archive: segments: {}  records: {records}  lsn range: {}",
                a.segments.len(),
                match (first, last) {
                    (Some(f), Some(l)) => format!("{f}..={l}"),
                    _ => "empty".into(),
                }
            );
            bad |= render_segments(&mut s, &a.segments);
            let live_first = i.segments.iter().map(|g| g.first_lsn.0).min();
            if let (Some(l), Some(f)) = (last, live_first) {
                if l + 1 != f {
                    bad = true;
                    let _ = writeln!(
                        s,
                        "  GAP: the archive ends at lsn {l}, the live log starts at {f}"
                    );
                }
            }
            if let Some(r) = &a.refusal {
                bad = true;
                let _ = writeln!(s, "  ARCHIVE DAMAGED: {r}");
            }
        }
        for snap in &i.snapshots {
            let _ = writeln!(
                s,
                "  snapshot {:<28} {:>12} B  lsn {}  {}",
                snap.file_name,
                snap.size_bytes,
                snap.lsn
                    .map(|l| l.0.to_string())
                    .unwrap_or_else(|| "?".into()),
                if snap.valid { "valid" } else { "INVALID" }
            );
            if !snap.valid {
                bad = true;
            }
        }
        if let Some(r) = &i.refusal {
            bad = true;
            let _ = writeln!(s, "  RECOVERY WOULD REFUSE: {r}");
        }
    }
    (s, bad)
}

/// One line per segment; `true` when one of them is damaged.
fn render_segments(s: &mut String, segments: &[wal::SegmentInfo]) -> bool {
    let mut bad = false;
    for g in segments {
        let lsns = match g.last_lsn {
            Some(l) => format!("{}..={}", g.first_lsn.0, l.0),
            None => format!("{}.. (empty)", g.first_lsn.0),
        };
        let _ = write!(
            s,
            "  {:<28} {:>12} B  epoch {:<6} lsn {:<24} records {:<10} header {}{}",
            g.file_name,
            g.size_bytes,
            g.epoch,
            lsns,
            g.records_ok,
            if g.header_ok { "ok" } else { "BAD" },
            if g.sealed { "  sealed" } else { "" }
        );
        if !g.header_ok {
            bad = true;
        }
        if let Some(t) = &g.torn_tail {
            let _ = write!(
                s,
                "  torn tail at offset {} ({} bytes)",
                t.offset, t.bytes_cut
            );
        }
        if let Some((offset, reason)) = &g.bad_record {
            bad = true;
            let _ = write!(s, "  BAD RECORD at offset {offset}: {reason}");
        }
        let _ = writeln!(s);
    }
    bad
}
