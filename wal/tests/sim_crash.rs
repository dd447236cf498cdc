//! Power-loss simulation of the log on [`wal::sim::MemStorage`], over many seeds.
//!
//! Each seed drives a log through appends, commits, rotations, clean closes, kills and power
//! losses on a disk that tears unsynced writes at sector granularity, loses unsynced renames,
//! and fails writes and syncs with `EIO` and segment creation with `ENOSPC`. After every
//! reopen:
//! - every record covered by a completed commit is there, byte for byte;
//! - nothing else is there but a prefix of what was appended after it (a torn tail is cut);
//! - what recovery accepted stays (a second power loss cannot take it back).
//!
//! At the end of a seed one synced sector holding acknowledged bytes before the last batch
//! is damaged (garbage or zeros): open must refuse with `WalError::Corruption` naming that
//! segment and an offset at the damage, never skip it.
//!
//! A failure names the seed: `SIM_SEED=<seed> cargo test -p svault-wal --test sim_crash`
//! reruns that one alone; `SIM_SEEDS=<n>` runs more.

// `u64::is_multiple_of` is newer than the workspace MSRV (1.85).
#![allow(clippy::manual_is_multiple_of)]

use wal::decode::{read_slot, SegmentHeader, Slot};
use wal::sim::{Damage, FaultRates, MemStorage, SimConfig, SimRng};
use wal::{Lsn, Recovery, SyncMethod, Wal, WalError, WalOptions, PAGE_BYTES, SEGMENT_HEADER_BYTES};

const FLAG_BATCH_START: u32 = 1 << 31;
const FLAG_SEAL: u32 = 1 << 30;

/// The payload of `lsn` in the run of `seed`, from its length: the run keeps lengths only.
fn payload(seed: u64, lsn: u64, len: usize) -> Vec<u8> {
    let mut rng = SimRng::new(seed.wrapping_mul(0x1000_0000_01B3) ^ lsn);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What happened across the seeds (printed, and checked to be non-trivial).
#[derive(Debug, Default)]
struct Totals {
    seeds: u64,
    steps: u64,
    records_acked: u64,
    power_losses: u64,
    kills: u64,
    torn_tails_cut: u64,
    reopen_failures: u64,
    disk_full: u64,
    poisoned: u64,
    corruptions_refused: u64,
    rotations: u64,
    /// What the simulated disks injected, summed.
    faults: wal::sim::FaultStats,
}

struct Run {
    trace: bool,
    seed: u64,
    rng: SimRng,
    storage: MemStorage,
    options: WalOptions,
    /// Lengths of every appended payload, by LSN - 1 (acknowledged or not).
    appended: Vec<usize>,
    /// Every LSN up to this one was acknowledged by a completed commit (or recovered).
    acked: u64,
    wal: Option<Wal<MemStorage>>,
}

impl Run {
    fn fail(&self, step: u64, what: impl std::fmt::Display) -> String {
        format!(
            "seed {} step {step}: {what} (rerun: SIM_SEED={} cargo test -p svault-wal --test sim_crash)",
            self.seed, self.seed
        )
    }

    fn log(&self, step: u64, what: impl std::fmt::Display) {
        if self.trace {
            eprintln!("[{step}] {what} | stats {:?}", self.storage.stats());
        }
    }

    fn max_payload(&self) -> u64 {
        self.options.segment_size_bytes - SEGMENT_HEADER_BYTES - 16
    }

    /// Opens the log until it opens (faults may fail an open, which is then retried after
    /// another crash) and checks what it holds.
    fn reopen(&mut self, step: u64, t: &mut Totals) -> Result<(), String> {
        let mut attempts = 0;
        let (wal, rec) = loop {
            match Wal::open_on(self.storage.clone(), self.options.clone()) {
                Ok(x) => break x,
                Err(WalError::Corruption { .. }) | Err(WalError::Locked(_)) => {
                    let e = Wal::open_on(self.storage.clone(), self.options.clone()).err();
                    return Err(self.fail(step, format!("open refused a crashed log: {e:?}")));
                }
                Err(e) => {
                    self.log(step, format!("open failed: {e}"));
                    t.reopen_failures += 1;
                    attempts += 1;
                    if attempts > 20 {
                        // A disk that keeps failing: let it heal, the log must open then.
                        self.storage.set_faults(FaultRates::default());
                    }
                    if self.rng.below(2) == 0 {
                        let p = self.storage.power_loss();
                        self.log(step, format!("power loss {p:?}"));
                        t.power_losses += 1;
                    }
                }
            }
        };
        self.log(step, format!("opened: {rec:?}"));
        self.check_recovered(step, &wal, &rec)?;
        if rec.torn_tail.is_some() {
            t.torn_tails_cut += 1;
        }
        self.wal = Some(wal);
        Ok(())
    }

    fn check_recovered(
        &mut self,
        step: u64,
        wal: &Wal<MemStorage>,
        rec: &Recovery,
    ) -> Result<(), String> {
        let last = rec.last_lsn.0;
        if last < self.acked {
            return Err(self.fail(
                step,
                format!("lost acknowledged records: recovered through lsn {last}, acknowledged through {}", self.acked),
            ));
        }
        if last > self.appended.len() as u64 {
            return Err(self.fail(
                step,
                format!(
                    "recovered lsn {last}, only {} appended",
                    self.appended.len()
                ),
            ));
        }
        let from = 1 + self.rng.below(last.max(1));
        let mut next = from;
        let seed = self.seed;
        let appended = &self.appended;
        let seen = wal.read_from(Lsn(from), |lsn, p| -> Result<(), WalError> {
            let ok = lsn.0 == next
                && appended
                    .get(lsn.0 as usize - 1)
                    .is_some_and(|&len| p == payload(seed, lsn.0, len).as_slice());
            if !ok {
                return Err(WalError::InvalidOptions(
                    "record differs from what was appended",
                ));
            }
            next += 1;
            Ok(())
        });
        if let Err(e) = seen {
            return Err(self.fail(step, format!("reading lsn {next}: {e}")));
        }
        if last >= from && next != last + 1 {
            return Err(self.fail(
                step,
                format!("read_from({from}) stopped before lsn {next}, last is {last}"),
            ));
        }
        // What recovery accepted is durable now, acknowledged or not: later batches build on it.
        self.appended.truncate(last as usize);
        self.acked = last;
        Ok(())
    }

    fn crash(&mut self, step: u64, t: &mut Totals) -> Result<(), String> {
        drop(self.wal.take());
        if self.rng.below(3) == 0 {
            self.log(step, "kill");
            t.kills += 1; // the process dies, the page cache survives
        } else {
            let p = self.storage.power_loss();
            self.log(step, format!("power loss {p:?}"));
            t.power_losses += 1;
        }
        self.reopen(step, t)
    }

    fn step(&mut self, step: u64, t: &mut Totals) -> Result<(), String> {
        let Some(mut wal) = self.wal.take() else {
            return self.reopen(step, t);
        };
        if wal.is_poisoned() {
            t.poisoned += 1;
            drop(wal);
            return self.crash(step, t);
        }
        match self.rng.below(100) {
            0..=54 => self.append_some(&mut wal, step, t)?,
            55..=84 => match wal.commit() {
                Ok(c) => {
                    self.log(step, format!("commit through {}", c.through.0));
                    if c.through.0 != self.appended.len() as u64 {
                        return Err(self.fail(
                            step,
                            format!(
                                "commit through {:?}, {} appended",
                                c.through,
                                self.appended.len()
                            ),
                        ));
                    }
                    self.acked = c.through.0;
                }
                Err(e @ WalError::Sync(_)) | Err(e @ WalError::Poisoned) => {
                    self.log(step, format!("commit failed: {e}"));
                }
                Err(e) => {
                    return Err(self.fail(step, format!("commit failed without poisoning: {e}")))
                }
            },
            85..=87 => {
                let through = self.appended.len() as u64;
                let closed = wal.close();
                self.log(step, format!("close through {through}: {closed:?}"));
                if closed.is_ok() {
                    self.acked = through;
                }
                if self.rng.below(2) == 0 {
                    let p = self.storage.power_loss();
                    self.log(step, format!("power loss {p:?}"));
                    t.power_losses += 1;
                }
                return self.reopen(step, t);
            }
            88..=89 => {
                // Disk full for a while, then space again.
                let used = self.storage.used_bytes();
                let cap = if self.rng.below(2) == 0 {
                    used
                } else {
                    u64::MAX
                };
                self.log(step, format!("capacity {cap}"));
                self.storage.set_capacity(cap);
            }
            _ => {
                drop(wal);
                return self.crash(step, t);
            }
        }
        self.wal = Some(wal);
        Ok(())
    }

    fn append_some(
        &mut self,
        wal: &mut Wal<MemStorage>,
        step: u64,
        t: &mut Totals,
    ) -> Result<(), String> {
        let n = 1 + self.rng.below(6);
        let max = self.max_payload();
        for _ in 0..n {
            let len = match self.rng.below(20) {
                0 => self.rng.below(max + 1),
                1..=4 => 0,
                _ => self.rng.below(600),
            } as usize;
            let lsn = self.appended.len() as u64 + 1;
            let before = wal.segment_paths().len();
            let r = wal.append(&payload(self.seed, lsn, len));
            self.log(step, format!("append lsn {lsn} len {len}: {r:?}"));
            match r {
                Ok(got) if got == Lsn(lsn) => {
                    self.appended.push(len);
                    if wal.segment_paths().len() > before {
                        t.rotations += 1;
                    }
                }
                Ok(got) => {
                    return Err(self.fail(step, format!("append gave {got:?}, expected lsn {lsn}")))
                }
                Err(WalError::DiskFull) => t.disk_full += 1,
                Err(_) => break,
            }
        }
        Ok(())
    }
}

/// Where every record of a segment image sits: `(offset, size, flags)`, seals included.
fn layout(seg: &[u8]) -> Vec<(u64, u64, u32)> {
    let Ok(h) = SegmentHeader::decode(seg) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    while pos + 16 <= seg.len() as u64 {
        match read_slot(seg, pos, h.epoch, true) {
            Slot::Zero if pos % PAGE_BYTES == 0 => break,
            Slot::Zero => pos = pos.next_multiple_of(PAGE_BYTES),
            Slot::Record(r) => {
                out.push((pos, r.size, r.flags));
                pos += r.size;
            }
            Slot::Bad(_) => break,
        }
    }
    out
}

/// Damages one synced sector holding acknowledged bytes before the last batch, and checks
/// that open refuses, naming that segment and an offset at the damage.
fn damage_the_middle(run: &mut Run, t: &mut Totals) -> Result<(), String> {
    let step = u64::MAX;
    drop(run.wal.take());
    run.storage.set_faults(FaultRates::default());
    run.storage.set_capacity(u64::MAX);
    run.reopen(step, t)?;
    drop(run.wal.take());
    let segments: Vec<String> = run
        .storage
        .files()
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    let sector = run.storage.sector_bytes();
    // Candidate sectors: (segment, sector offset).
    let mut candidates: Vec<(String, u64)> = Vec::new();
    for (i, name) in segments.iter().enumerate() {
        let Some(image) = run.storage.durable_image(name) else {
            continue;
        };
        let recs = layout(&image);
        let is_last = i + 1 == segments.len();
        let protected_end = if is_last {
            recs.iter()
                .rev()
                .find(|r| r.2 & FLAG_BATCH_START != 0)
                .map_or(0, |r| r.0)
        } else {
            u64::MAX
        };
        candidates.push((name.clone(), 0)); // the header
                                            // User records only: a seal carries no data (losing one in a finished segment is harmless).
        for &(off, size, _) in recs
            .iter()
            .filter(|r| r.0 < protected_end && r.2 & FLAG_SEAL == 0)
        {
            let mut s = off - off % sector;
            while s < off + size {
                let bytes = image.get(s as usize..(s + sector) as usize).unwrap_or(&[]);
                if bytes.iter().any(|&b| b != 0) {
                    candidates.push((name.clone(), s));
                }
                s += sector;
            }
        }
    }
    candidates.dedup();
    let (name, at) = candidates.swap_remove(run.rng.below(candidates.len() as u64) as usize);
    let damage = if run.rng.below(2) == 0 {
        Damage::Garbage
    } else {
        Damage::Zeros
    };
    let image = run.storage.durable_image(&name).unwrap_or_default();
    // Where the valid records stop: inside the first record touching the sector, or at the end
    // of the last record before it (when the sector starts a record).
    let recs = layout(&image);
    let first_record = match recs.iter().find(|r| r.0 + r.1 > at) {
        Some(r) if r.0 < at => r.0,
        _ => recs
            .iter()
            .filter(|r| r.0 + r.1 <= at)
            .map(|r| r.0 + r.1)
            .max()
            .unwrap_or(at),
    };
    run.storage
        .corrupt(&name, at, damage)
        .map_err(|e| run.fail(step, e))?;
    let what = format!("{damage:?} damage to sector at {at} of {name}");
    match Wal::open_on(run.storage.clone(), run.options.clone()) {
        Err(WalError::Corruption {
            segment, offset, ..
        }) => {
            let expected = run.storage_path(&name);
            // The first bad spot is the first record touching the sector (or, for a sector of
            // zeros starting a record, where the records stop), or at most the next page, where
            // a later batch shows records missing.
            let (lo, hi) = (
                first_record.min(at),
                (at + sector).next_multiple_of(PAGE_BYTES),
            );
            if segment != expected || offset < lo || offset > hi {
                return Err(run.fail(
                    step,
                    format!("{what}: refused naming {} offset {offset}, expected {} offset in {lo}..={hi}", segment.display(), expected.display()),
                ));
            }
            t.corruptions_refused += 1;
            Ok(())
        }
        Err(e) => Err(run.fail(
            step,
            format!("{what}: open failed with {e} instead of a corruption error"),
        )),
        Ok((_, rec)) => Err(run.fail(step, format!("{what}: open accepted the log ({rec:?})"))),
    }
}

impl Run {
    fn storage_path(&self, name: &str) -> std::path::PathBuf {
        use wal::Storage;
        self.storage.path(name)
    }
}

fn run_seed(seed: u64, steps: u64, t: &mut Totals) -> Result<(), String> {
    let mut rng = SimRng::new(seed);
    let options = WalOptions {
        segment_size_bytes: [8192, 16384, 32768][rng.below(3) as usize],
        sync_method: if rng.below(2) == 0 {
            SyncMethod::Msync
        } else {
            SyncMethod::PwriteFdatasync
        },
        ..WalOptions::default()
    };
    let mut run = Run {
        trace: std::env::var("SIM_TRACE").is_ok(),
        seed,
        rng,
        storage: MemStorage::new(SimConfig::from_seed(seed)),
        options,
        appended: Vec::new(),
        acked: 0,
        wal: None,
    };
    for step in 0..steps {
        run.step(step, t)?;
        t.steps += 1;
    }
    t.records_acked += run.acked;
    if run.acked > 0 {
        damage_the_middle(&mut run, t)?;
    }
    t.faults.add(&run.storage.stats());
    t.seeds += 1;
    Ok(())
}

#[test]
fn no_acknowledged_record_is_lost_and_damage_is_refused() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            (0..n).collect()
        }
    };
    let mut t = Totals::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        if let Err(e) = run_seed(seed, 400, &mut t) {
            failures.push(e);
        }
    }
    println!("{t:#?}");
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
    if seeds.len() > 50 {
        // The run exercised what it claims to.
        assert!(
            t.power_losses > 100 && t.torn_tails_cut > 10 && t.rotations > 100,
            "{t:#?}"
        );
        assert!(
            t.disk_full > 0 && t.poisoned > 0 && t.corruptions_refused > 50,
            "{t:#?}"
        );
    }
}

fn small(method: SyncMethod, segment_size_bytes: u64) -> WalOptions {
    WalOptions {
        segment_size_bytes,
        sync_method: method,
        ..WalOptions::default()
    }
}

fn all_records(log: &Wal<MemStorage>) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    log.read_from(Lsn(1), |l, p| -> Result<(), WalError> {
        out.push((l.0, p.to_vec()));
        Ok(())
    })
    .expect("read");
    out
}

/// A writer killed between a segment's rename and the directory sync leaves a name the next
/// process sees but the disk may not hold: recovery must make it durable before records go in.
#[test]
fn a_segment_named_by_a_killed_writer_survives_a_later_power_loss() {
    for method in [SyncMethod::Msync, SyncMethod::PwriteFdatasync] {
        let disk = MemStorage::new(SimConfig::reliable(1));
        let opts = small(method, 8192);
        let (mut log, _) = Wal::open_on(disk.clone(), opts.clone()).expect("open");
        log.append(&[1u8; 3000]).expect("append");
        log.commit().expect("commit");
        disk.set_faults(FaultRates {
            dir_sync_eio_ppm: 1_000_000,
            ..FaultRates::default()
        });
        // The record needs the next segment: renamed into place, but the directory sync fails.
        assert!(matches!(log.append(&[2u8; 3000]), Err(WalError::Sync(_))));
        drop(log); // the poisoned process exits
        disk.set_faults(FaultRates::default());
        let (mut log, rec) = Wal::open_on(disk.clone(), opts.clone()).expect("reopen");
        assert_eq!((rec.last_lsn, rec.segments), (Lsn(1), 2));
        assert_eq!(log.append(&[3u8; 3000]).expect("append"), Lsn(2));
        log.commit().expect("commit"); // acknowledged
        drop(log);
        disk.power_loss_as(wal::sim::LossMode::DropAll);
        let (log, rec) = Wal::open_on(disk.clone(), opts).expect("open after power loss");
        assert_eq!(
            rec.last_lsn,
            Lsn(2),
            "{method:?}: the acknowledged record 2 is gone"
        );
        assert_eq!(all_records(&log)[1], (2, vec![3u8; 3000]));
    }
}

/// fsyncgate: after a failed sync, Linux marks the pages clean; a new process reads them from
/// the page cache as if they were written, and its fsync succeeds without writing them.
/// Recovery must read what the disk holds, or a later batch vouches for records that vanish
/// at the next power loss (and the log no longer opens).
#[test]
fn records_whose_sync_failed_are_not_read_back_from_the_page_cache() {
    let mut hit = 0;
    for seed in 0..16 {
        for method in [SyncMethod::Msync, SyncMethod::PwriteFdatasync] {
            let disk = MemStorage::new(SimConfig::reliable(seed));
            let opts = small(method, 32768);
            let (mut log, _) = Wal::open_on(disk.clone(), opts.clone()).expect("open");
            log.append(&[1u8; 100]).expect("append");
            log.commit().expect("commit");
            log.append(&[2u8; 100]).expect("append");
            disk.set_faults(FaultRates {
                sync_eio_ppm: 1_000_000,
                ..FaultRates::default()
            });
            assert!(matches!(log.commit(), Err(WalError::Sync(_))));
            drop(log);
            disk.set_faults(FaultRates::default());
            let name = disk
                .files()
                .into_iter()
                .find(|n| n.ends_with(".wal"))
                .expect("segment");
            let on_disk = disk.durable_image(&name).expect("image");
            if on_disk[8192..8192 + 116].iter().any(|&b| b != 0) {
                continue; // this seed's failed sync happened to persist the record
            }
            hit += 1;
            let (mut log, rec) = Wal::open_on(disk.clone(), opts.clone()).expect("reopen");
            assert_eq!(
                rec.last_lsn,
                Lsn(1),
                "seed {seed} {method:?}: recovered a record the disk does not hold"
            );
            assert_eq!(log.append(&[3u8; 100]).expect("append"), Lsn(2));
            log.commit().expect("commit");
            drop(log);
            disk.power_loss_as(wal::sim::LossMode::DropAll);
            let (log, rec) = Wal::open_on(disk.clone(), opts).expect("open after power loss");
            assert_eq!(rec.last_lsn, Lsn(2));
            assert_eq!(all_records(&log)[1], (2, vec![3u8; 100]));
        }
    }
    assert!(
        hit > 4,
        "only {hit} runs lost the record in the failed sync"
    );
}

/// Records lost at the end of a finished segment are refused naming that segment and the
/// offset where they are missing, not the next segment.
#[test]
fn records_missing_at_the_end_of_a_finished_segment_name_that_segment() {
    let disk = MemStorage::new(SimConfig::reliable(2));
    let opts = small(SyncMethod::PwriteFdatasync, 16384);
    let (mut log, _) = Wal::open_on(disk.clone(), opts.clone()).expect("open");
    for i in 0..5u8 {
        log.append(&[i + 1; 3000]).expect("append");
        log.commit().expect("commit"); // one page per batch: records at 4096, 8192, 12288
    }
    assert_eq!(log.segment_paths().len(), 2);
    drop(log);
    let first = disk
        .files()
        .into_iter()
        .find(|n| n.ends_with(".wal"))
        .expect("segment");
    disk.corrupt(&first, 12288, Damage::Zeros).expect("corrupt");
    match Wal::open_on(disk.clone(), opts) {
        Err(WalError::Corruption {
            segment, offset, ..
        }) => {
            assert_eq!(segment, std::path::PathBuf::from(format!("sim:{first}")));
            assert_eq!(offset, 8192 + wal::decode::record_size(3000));
        }
        other => panic!(
            "expected a corruption error, got {:?}",
            other.map(|(_, r)| r)
        ),
    }
}
