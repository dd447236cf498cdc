//! A simulated disk for crash tests: [`MemStorage`] keeps a durable and a volatile image of
//! every file, and a seed decides what a power loss keeps.
//!
//! Why: killing a process leaves every written byte in the page cache, so a kill test proves
//! "acknowledged ⇒ written". A power loss is harsher, and this disk reproduces it
//! deterministically from a seed:
//!
//! - **power loss** ([`MemStorage::power_loss`]): every sector written but not covered by a
//!   completed sync is dropped, kept, or — sector by sector — either (a torn write at sector
//!   granularity, 512 B or 4 KiB); creations, renames and removals not covered by a
//!   directory sync are lost from some point on (an in-order prefix survives);
//! - **latent sector error** ([`MemStorage::corrupt`]): a sector that was synced reads back
//!   different (garbage, or zeros as after a lost write);
//! - **I/O errors**: a write or a sync fails with `EIO` (a failed write may have written a
//!   prefix of its sectors; a failed sync persists some dirty sectors and, as Linux does,
//!   marks the rest clean, so a later sync does not persist them either, while the page
//!   cache still shows them; a failed directory sync persists no pending operation);
//!   creating a file fails with `ENOSPC` beyond the capacity or at random.
//!
//! What it does not model: a sector torn inside itself (sector writes are atomic here),
//! misdirected writes (a write landing on another sector), reads failing with `EIO`, bit rot
//! of bytes still in the page cache, and file-system metadata other than names (lengths are
//! fixed at creation). `docs/TESTING.md` compares this with TigerBeetle's storage faults.
//!
//! Everything is single-threaded and deterministic: the same seed and the same sequence of
//! calls give the same bytes.

#![deny(clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{Storage, StorageFile, StorageMap};
use crate::WalError;

/// What the simulated disk is like and how often it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Seed of every random choice the disk makes.
    pub seed: u64,
    /// Unit of atomic writes and of tearing: 512 or 4096.
    pub sector_bytes: u64,
    /// Creating a file that would take the files past this many bytes fails with `ENOSPC`.
    pub capacity_bytes: u64,
    /// The random failures.
    pub faults: FaultRates,
}

/// Chances of random failures, in parts per million of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultRates {
    /// A write (`pwrite`) fails with `EIO`.
    pub write_eio_ppm: u32,
    /// A file sync (`fdatasync`, `msync`) fails with `EIO`.
    pub sync_eio_ppm: u32,
    /// A directory sync fails with `EIO` (and persists none of the pending operations).
    pub dir_sync_eio_ppm: u32,
    /// Creating a file fails with `ENOSPC` although there is room.
    pub create_enospc_ppm: u32,
}

impl SimConfig {
    /// A reliable disk with 4 KiB sectors and room for anything: only power loss and the
    /// faults a test asks for.
    pub fn reliable(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            sector_bytes: 4096,
            capacity_bytes: u64::MAX,
            faults: FaultRates::default(),
        }
    }

    /// A disk whose sector size and failure rates are drawn from the seed (a few seeds in
    /// eight are reliable, the rest fail up to a few percent of their calls).
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut rng = SimRng::new(seed ^ 0x5EC7_0125);
        let sector_bytes = if rng.below(2) == 0 { 512 } else { 4096 };
        let mut rate = |max_ppm: u64| {
            if rng.below(4) == 0 {
                0
            } else {
                rng.below(max_ppm) as u32
            }
        };
        let faults = FaultRates {
            write_eio_ppm: rate(20_000),
            sync_eio_ppm: rate(20_000),
            dir_sync_eio_ppm: rate(20_000),
            create_enospc_ppm: rate(100_000),
        };
        SimConfig {
            seed,
            sector_bytes,
            capacity_bytes: u64::MAX,
            faults,
        }
    }
}

/// How a power loss treated the writes no sync had covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossMode {
    /// Every unsynced sector is lost.
    DropAll,
    /// Every unsynced sector reached the disk.
    KeepAll,
    /// Each unsynced sector reached the disk or not, independently.
    Torn,
    /// The unsynced sectors of each file reached the disk in order, up to some point.
    InOrder,
}

/// What one [`MemStorage::power_loss`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerLoss {
    /// How unsynced sectors were treated.
    pub mode: LossMode,
    /// Sectors that were written but not synced.
    pub unsynced_sectors: u64,
    /// Of those, the ones that reached the disk anyway.
    pub kept_sectors: u64,
    /// Directory operations (create, rename, remove) not covered by a directory sync.
    pub unsynced_dir_ops: u64,
    /// Of those, the ones that survived.
    pub kept_dir_ops: u64,
}

/// How a latent sector error damages a synced sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Every byte changes (XOR with a non-zero random byte).
    Garbage,
    /// The sector reads as zeros (a write the disk acknowledged but lost).
    Zeros,
}

/// Faults injected so far, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultStats {
    /// Power losses simulated.
    pub power_losses: u64,
    /// Unsynced sectors dropped by power losses.
    pub sectors_dropped: u64,
    /// Unsynced sectors a power loss kept (written anyway).
    pub sectors_kept: u64,
    /// Power losses that kept some unsynced sectors of a file and dropped others.
    pub torn_files: u64,
    /// Unsynced directory operations a power loss undid.
    pub dir_ops_dropped: u64,
    /// Writes failed with `EIO`.
    pub write_eio: u64,
    /// Syncs failed with `EIO`.
    pub sync_eio: u64,
    /// File creations refused with `ENOSPC`.
    pub enospc: u64,
    /// Synced sectors damaged (latent sector errors).
    pub corrupted_sectors: u64,
}

impl FaultStats {
    /// Adds `other`'s counts to these (totals over many disks).
    pub fn add(&mut self, other: &FaultStats) {
        self.power_losses += other.power_losses;
        self.sectors_dropped += other.sectors_dropped;
        self.sectors_kept += other.sectors_kept;
        self.torn_files += other.torn_files;
        self.dir_ops_dropped += other.dir_ops_dropped;
        self.write_eio += other.write_eio;
        self.sync_eio += other.sync_eio;
        self.enospc += other.enospc;
        self.corrupted_sectors += other.corrupted_sectors;
    }
}

/// An in-memory disk holding one log directory: the [`Storage`] of crash-simulation tests.
///
/// Clones share the same disk. A power loss needs every file closed: drop the `Wal` first
/// (that is the crash), then call [`MemStorage::power_loss`], then open again.
#[derive(Clone)]
pub struct MemStorage {
    disk: Arc<Mutex<Disk>>,
}

impl std::fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStorage").finish_non_exhaustive()
    }
}

/// Small, fast, deterministic (splitmix64); not for anything but simulation.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// `true` with a chance of `ppm` parts per million.
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.below(1_000_000) < u64::from(ppm)
    }
}

/// Bytes whose start is 16-byte aligned, as a map's would be (records are read in place).
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes (allocated zeroed, never written).
    fn zeroed(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + 15];
        let start = raw.as_ptr().align_offset(16).min(15);
        AlignedBuf { raw, start, len }
    }

    fn from_slice(bytes: &[u8]) -> AlignedBuf {
        let mut raw = vec![0u8; bytes.len() + 15];
        let start = raw.as_ptr().align_offset(16).min(15);
        if let Some(dst) = raw.get_mut(start..start + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        AlignedBuf {
            raw,
            start,
            len: bytes.len(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        self.raw
            .get(self.start..self.start + self.len)
            .unwrap_or(&[])
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.raw
            .get_mut(self.start..self.start + self.len)
            .unwrap_or(&mut [])
    }
}

struct Inode {
    /// What the platters hold.
    durable: Vec<u8>,
    /// The page cache; `None` while a handle has it checked out.
    cache: Option<AlignedBuf>,
    /// Sectors a failed sync marked clean without persisting them (Linux's behaviour):
    /// later syncs skip them, a power loss forgets them.
    lost: BTreeSet<u64>,
    /// A handle wrote since the last power loss: the page cache may differ from the platters.
    /// Files no handle wrote are passed over by a power loss without comparing their bytes.
    touched: bool,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(String, usize),
    Rename(String, String),
    Unlink(String),
}

/// Applies `op` to `dir`, counting the names of every inode in `refs` (both directories of a
/// disk count there) and noting in `orphans` each inode whose last name went.
fn apply(
    dir: &mut BTreeMap<String, usize>,
    op: &DirOp,
    refs: &mut Vec<u32>,
    orphans: &mut Vec<usize>,
) {
    let mut unref = |i: usize| {
        if let Some(r) = refs.get_mut(i) {
            *r = r.saturating_sub(1);
            if *r == 0 {
                orphans.push(i);
            }
        }
    };
    match op {
        DirOp::Link(name, ino) => {
            if let Some(old) = dir.insert(name.clone(), *ino) {
                unref(old);
            }
            if refs.len() <= *ino {
                refs.resize(*ino + 1, 0);
            }
            if let Some(r) = refs.get_mut(*ino) {
                *r += 1;
            }
        }
        DirOp::Rename(from, to) => {
            if let Some(ino) = dir.remove(from) {
                if let Some(old) = dir.insert(to.clone(), ino) {
                    unref(old);
                }
            }
        }
        DirOp::Unlink(name) => {
            if let Some(old) = dir.remove(name) {
                unref(old);
            }
        }
    }
}

struct Disk {
    config: SimConfig,
    rng: SimRng,
    inodes: Vec<Inode>,
    /// The inodes that may hold bytes (every other inode is an emptied, unreachable file):
    /// what [`Disk::used_bytes`] and [`Disk::sync_dir`] look at, so long simulations that
    /// create thousands of files do not pay for the dead ones at every call.
    held: BTreeSet<usize>,
    /// Per inode: the names `dir` and `durable_dir` give it, together.
    refs: Vec<u32>,
    /// Inodes whose names all went since the last directory sync: the only ones a sync may
    /// free (so a sync costs what changed, not what the directory holds).
    orphans: Vec<usize>,
    /// Names as processes see them.
    dir: BTreeMap<String, usize>,
    /// Names as the disk holds them.
    durable_dir: BTreeMap<String, usize>,
    /// Operations since the last directory sync, in order.
    pending: Vec<DirOp>,
    locked: bool,
    stats: FaultStats,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl Disk {
    fn inode(&mut self, ino: usize) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(ino)
            .ok_or_else(|| io::Error::other("simulated disk: no such inode"))
    }

    /// Bytes of the files a name reaches or a handle holds.
    fn used_bytes(&self) -> u64 {
        let mut live: Vec<usize> = self.dir.values().copied().collect();
        live.sort_unstable();
        self.held
            .iter()
            .filter_map(|&i| self.inodes.get(i).map(|n| (i, n)))
            .filter(|(i, n)| live.binary_search(i).is_ok() || n.cache.is_none())
            .map(|(_, n)| n.durable.len() as u64)
            .sum()
    }

    /// Sectors of `image` in `[from, to)` that differ from `durable` and were not lost.
    fn dirty(
        &self,
        durable: &[u8],
        image: &[u8],
        lost: &BTreeSet<u64>,
        from: u64,
        to: u64,
    ) -> Vec<u64> {
        let s = self.config.sector_bytes;
        let to = to.min(image.len() as u64);
        let mut out = Vec::new();
        // Mostly nothing differs: one comparison of the whole span first.
        let span = (from / s * s) as usize..(to.div_ceil(s) * s).min(image.len() as u64) as usize;
        if let (Some(d), Some(i)) = (durable.get(span.clone()), image.get(span)) {
            if d == i {
                return out;
            }
        }
        let mut sector = from / s;
        while sector * s < to {
            let (a, b) = (
                (sector * s) as usize,
                ((sector + 1) * s).min(image.len() as u64) as usize,
            );
            if durable.get(a..b) != image.get(a..b) && !lost.contains(&sector) {
                out.push(sector);
            }
            sector += 1;
        }
        out
    }

    /// Persists the dirty sectors of `[from, to)`; a failed sync persists some and loses the rest.
    fn sync(&mut self, ino: usize, image: &[u8], from: u64, to: u64) -> io::Result<()> {
        let fail = self.rng.chance_ppm(self.config.faults.sync_eio_ppm);
        let s = self.config.sector_bytes as usize;
        let node = self
            .inodes
            .get(ino)
            .ok_or_else(|| io::Error::other("simulated disk: no such inode"))?;
        let dirty = self.dirty(&node.durable, image, &node.lost, from, to);
        let mut keep = Vec::with_capacity(dirty.len());
        for _ in &dirty {
            keep.push(!fail || self.rng.below(2) == 0);
        }
        let node = self.inode(ino)?;
        for (&sector, keep) in dirty.iter().zip(keep) {
            let a = sector as usize * s;
            let b = (a + s).min(image.len());
            if keep {
                if let (Some(dst), Some(src)) = (node.durable.get_mut(a..b), image.get(a..b)) {
                    dst.copy_from_slice(src);
                }
            } else {
                node.lost.insert(sector);
            }
        }
        if fail {
            self.stats.sync_eio += 1;
            return Err(eio());
        }
        Ok(())
    }

    /// A write into a checked-out image; a failed one may have written a prefix of its sectors.
    fn write(&mut self, ino: usize, image: &mut [u8], buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= image.len() as u64)
            .ok_or_else(|| io::Error::other("simulated disk: write past the end of the file"))?;
        let (a, b) = (offset as usize, end as usize);
        // Rewritten sectors are dirty again: a later sync persists them.
        let s = self.config.sector_bytes;
        let node = self.inode(ino)?;
        let first = offset / s;
        node.lost.retain(|&x| x < first || x * s >= end);
        if self.rng.chance_ppm(self.config.faults.write_eio_ppm) {
            self.stats.write_eio += 1;
            let s = self.config.sector_bytes;
            let sectors = (end - offset).div_ceil(s);
            let written = (self.rng.below(sectors + 1) * s).min(end - offset) as usize;
            if let (Some(dst), Some(src)) = (image.get_mut(a..a + written), buf.get(..written)) {
                dst.copy_from_slice(src);
            }
            return Err(eio());
        }
        if let Some(dst) = image.get_mut(a..b) {
            dst.copy_from_slice(buf);
        }
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        if self.rng.chance_ppm(self.config.faults.dir_sync_eio_ppm) {
            self.stats.sync_eio += 1;
            return Err(eio());
        }
        for op in std::mem::take(&mut self.pending) {
            apply(
                &mut self.durable_dir,
                &op,
                &mut self.refs,
                &mut self.orphans,
            );
        }
        // Files no name reaches, now or after any power loss, and no handle holds: their bytes
        // can go (long simulations remove thousands of segments and snapshots).
        let mut still_open = Vec::new();
        for i in std::mem::take(&mut self.orphans) {
            if self.refs.get(i).is_some_and(|&r| r > 0) {
                continue; // named again since
            }
            let Some(node) = self.inodes.get_mut(i) else {
                continue;
            };
            if node.cache.is_none() {
                still_open.push(i); // a handle holds it: a later sync frees it
                continue;
            }
            if self.held.remove(&i) {
                node.durable = Vec::new();
                node.cache = Some(AlignedBuf::from_slice(&[]));
                node.lost.clear();
            }
        }
        self.orphans = still_open;
        Ok(())
    }

    /// Empties inode `i` if no name reaches it, now or after a power loss, and no handle
    /// holds it.
    fn forget_if_unreachable(&mut self, i: usize) {
        let named = self.refs.get(i).is_some_and(|&r| r > 0);
        let Some(node) = self.inodes.get_mut(i) else {
            return;
        };
        if !named && node.cache.is_some() {
            node.durable = Vec::new();
            node.cache = Some(AlignedBuf::from_slice(&[]));
            node.lost.clear();
            self.held.remove(&i);
        }
    }

    /// One name of inode `i` went (outside [`apply`]).
    fn unref(&mut self, i: usize) {
        if let Some(r) = self.refs.get_mut(i) {
            *r = r.saturating_sub(1);
        }
    }

    fn dir_op(&mut self, op: DirOp) {
        apply(&mut self.dir, &op, &mut self.refs, &mut self.orphans);
        self.pending.push(op);
    }
}

impl MemStorage {
    /// An empty disk.
    pub fn new(config: SimConfig) -> MemStorage {
        let rng = SimRng::new(config.seed);
        MemStorage {
            disk: Arc::new(Mutex::new(Disk {
                config,
                rng,
                inodes: Vec::new(),
                held: BTreeSet::new(),
                refs: Vec::new(),
                orphans: Vec::new(),
                dir: BTreeMap::new(),
                durable_dir: BTreeMap::new(),
                pending: Vec::new(),
                locked: false,
                stats: FaultStats::default(),
            })),
        }
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic while holding the lock leaves consistent data (no invariant spans the
        // unlock points), so a poisoned lock is still usable.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power: the process is gone (every file must be closed: drop the `Wal`
    /// first) and the page cache with it; the seed decides which unsynced writes and
    /// directory operations reached the disk.
    pub fn power_loss(&self) -> PowerLoss {
        let mode = match self.disk().rng.below(4) {
            0 => LossMode::DropAll,
            1 => LossMode::KeepAll,
            2 => LossMode::Torn,
            _ => LossMode::InOrder,
        };
        self.power_loss_as(mode)
    }

    /// [`MemStorage::power_loss`] with the treatment of unsynced writes chosen by the caller.
    pub fn power_loss_as(&self, mode: LossMode) -> PowerLoss {
        let mut d = self.disk();
        assert!(
            d.inodes.iter().all(|n| n.cache.is_some()),
            "power_loss with a file still open: drop the Wal first"
        );
        let s = d.config.sector_bytes as usize;
        let mut report = PowerLoss {
            mode,
            unsynced_sectors: 0,
            kept_sectors: 0,
            unsynced_dir_ops: d.pending.len() as u64,
            kept_dir_ops: 0,
        };
        let mut inodes = std::mem::take(&mut d.inodes);
        for (ino, node) in inodes.iter_mut().enumerate() {
            if !d.held.contains(&ino) {
                // An emptied file: nothing to lose (the draw keeps the sequence of a full pass).
                d.rng.below(1);
                continue;
            }
            if !node.touched {
                debug_assert!(
                    node.lost.is_empty()
                        && node
                            .cache
                            .as_ref()
                            .is_none_or(|c| c.as_slice() == node.durable),
                    "a file no handle wrote differs from its disk image"
                );
                d.rng.below(1); // the draw of a clean file's cut, as below
                continue;
            }
            let Some(cache) = node.cache.take() else {
                continue;
            };
            node.touched = false;
            let image = cache.as_slice();
            let dirty = d.dirty(&node.durable, image, &node.lost, 0, image.len() as u64);
            let cut = d.rng.below(dirty.len() as u64 + 1) as usize;
            if dirty.is_empty() && node.lost.is_empty() {
                // Clean: the page cache is the disk's image already.
                node.cache = Some(cache);
                continue;
            }
            let mut kept = 0u64;
            for (i, &sector) in dirty.iter().enumerate() {
                let keep = match mode {
                    LossMode::DropAll => false,
                    LossMode::KeepAll => true,
                    LossMode::Torn => d.rng.below(2) == 0,
                    LossMode::InOrder => i < cut,
                };
                if keep {
                    let a = sector as usize * s;
                    let b = (a + s).min(image.len());
                    if let (Some(dst), Some(src)) = (node.durable.get_mut(a..b), image.get(a..b)) {
                        dst.copy_from_slice(src);
                    }
                    kept += 1;
                }
            }
            report.unsynced_sectors += dirty.len() as u64;
            report.kept_sectors += kept;
            if kept > 0 && kept < dirty.len() as u64 {
                d.stats.torn_files += 1;
            }
            node.lost.clear();
            node.cache = Some(AlignedBuf::from_slice(&node.durable));
        }
        d.inodes = inodes;
        let pending = std::mem::take(&mut d.pending);
        let keep = match mode {
            LossMode::DropAll => 0,
            LossMode::KeepAll => pending.len(),
            LossMode::Torn | LossMode::InOrder => d.rng.below(pending.len() as u64 + 1) as usize,
        };
        let mut durable = std::mem::take(&mut d.durable_dir);
        for op in pending.iter().take(keep) {
            apply(&mut durable, op, &mut Vec::new(), &mut Vec::new());
        }
        d.dir = durable.clone();
        d.durable_dir = durable;
        // Names were lost: count them again; every held inode left without one is an orphan.
        let mut refs = vec![0u32; d.inodes.len()];
        for &i in d.dir.values().chain(d.durable_dir.values()) {
            if let Some(r) = refs.get_mut(i) {
                *r += 1;
            }
        }
        let orphans: Vec<usize> = d
            .held
            .iter()
            .copied()
            .filter(|&i| refs.get(i).is_none_or(|&r| r == 0))
            .collect();
        d.refs = refs;
        d.orphans = orphans;
        d.locked = false;
        report.kept_dir_ops = keep as u64;
        d.stats.power_losses += 1;
        d.stats.sectors_kept += report.kept_sectors;
        d.stats.sectors_dropped += report.unsynced_sectors - report.kept_sectors;
        d.stats.dir_ops_dropped += report.unsynced_dir_ops - report.kept_dir_ops;
        report
    }

    /// A latent sector error: the synced sector holding `offset` of `name` reads back
    /// damaged from now on. The file must be closed.
    pub fn corrupt(&self, name: &str, offset: u64, damage: Damage) -> io::Result<()> {
        let mut d = self.disk();
        let ino = *d
            .dir
            .get(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let s = d.config.sector_bytes;
        let mut noise: Vec<u8> = (0..s).map(|_| 1 + d.rng.below(255) as u8).collect();
        if damage == Damage::Zeros {
            noise.clear();
        }
        let node = d.inode(ino)?;
        let Some(cache) = node.cache.as_mut() else {
            return Err(io::Error::other(
                "simulated disk: corrupt needs the file closed",
            ));
        };
        let a = ((offset / s) * s) as usize;
        let b = (a + s as usize).min(node.durable.len());
        for image in [node.durable.as_mut_slice(), cache.as_mut_slice()] {
            let Some(sector) = image.get_mut(a..b) else {
                return Err(io::Error::other("simulated disk: offset past the end"));
            };
            match damage {
                Damage::Garbage => sector.iter_mut().zip(&noise).for_each(|(x, n)| *x ^= n),
                Damage::Zeros => sector.fill(0),
            }
        }
        d.stats.corrupted_sectors += 1;
        Ok(())
    }

    /// Names of the files, sorted.
    pub fn files(&self) -> Vec<String> {
        self.disk().dir.keys().cloned().collect()
    }

    /// The bytes of `name` as the disk holds them (not the page cache).
    pub fn durable_image(&self, name: &str) -> Option<Vec<u8>> {
        let d = self.disk();
        let ino = *d.dir.get(name)?;
        d.inodes.get(ino).map(|n| n.durable.clone())
    }

    /// Places `bytes` as file `name`, synced and durably named, replacing any file of that
    /// name: a disk image assembled from known bytes (a log copied together for a replay)
    /// without the writes, syncs and directory syncs that would copy it several times.
    pub fn install(&self, name: &str, bytes: Vec<u8>) {
        let mut d = self.disk();
        let cache = AlignedBuf::from_slice(&bytes);
        d.inodes.push(Inode {
            durable: bytes,
            cache: Some(cache),
            lost: BTreeSet::new(),
            touched: false,
        });
        let ino = d.inodes.len() - 1;
        d.held.insert(ino);
        d.refs.resize(ino + 1, 0);
        if let Some(r) = d.refs.get_mut(ino) {
            *r = 2;
        }
        let old = d.dir.insert(name.to_string(), ino);
        let old_durable = d.durable_dir.insert(name.to_string(), ino);
        for i in old.into_iter().chain(old_durable) {
            d.unref(i);
            d.forget_if_unreachable(i);
        }
    }

    /// Removes file `name` at once and durably (no pending directory operation): the
    /// counterpart of [`MemStorage::install`].
    pub fn discard(&self, name: &str) {
        let mut d = self.disk();
        let old = d.dir.remove(name);
        let old_durable = d.durable_dir.remove(name);
        d.pending.retain(|op| match op {
            DirOp::Link(n, _) | DirOp::Unlink(n) => n != name,
            DirOp::Rename(from, to) => from != name && to != name,
        });
        for i in old.into_iter().chain(old_durable) {
            d.unref(i);
            d.forget_if_unreachable(i);
        }
    }

    /// The sector size this disk tears at.
    pub fn sector_bytes(&self) -> u64 {
        self.disk().config.sector_bytes
    }

    /// Changes the random failure rates (e.g. to none, to check a recovered log).
    pub fn set_faults(&self, faults: FaultRates) {
        self.disk().config.faults = faults;
    }

    /// Changes the capacity: below the bytes in use, every new file is refused with `ENOSPC`.
    pub fn set_capacity(&self, bytes: u64) {
        self.disk().config.capacity_bytes = bytes;
    }

    /// Bytes held by live files.
    pub fn used_bytes(&self) -> u64 {
        self.disk().used_bytes()
    }

    /// Faults injected so far.
    pub fn stats(&self) -> FaultStats {
        self.disk().stats
    }

    fn checkout(&self, ino: usize) -> io::Result<MemFile> {
        let mut d = self.disk();
        let node = d.inode(ino)?;
        let buf = node
            .cache
            .take()
            .ok_or_else(|| io::Error::other("simulated disk: file already open"))?;
        Ok(MemFile {
            disk: self.clone(),
            ino,
            buf: Some(buf),
            wrote: false,
        })
    }
}

/// The directory lock of a [`MemStorage`].
pub struct MemLock {
    disk: MemStorage,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.disk.disk().locked = false;
    }
}

/// An open file of a [`MemStorage`]: holds the file's page cache until dropped.
pub struct MemFile {
    disk: MemStorage,
    ino: usize,
    /// Always `Some` until drop hands it back.
    buf: Option<AlignedBuf>,
    /// This handle wrote (or handed out its bytes to be written).
    wrote: bool,
}

impl MemFile {
    fn image(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.as_slice())
    }

    fn image_mut(&mut self) -> &mut [u8] {
        self.wrote = true;
        self.buf.as_mut().map_or(&mut [], |b| b.as_mut_slice())
    }

    fn sync_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let disk = self.disk.clone();
        let mut d = disk.disk();
        d.sync(self.ino, self.image(), from, to)
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        let buf = self.buf.take();
        let ino = self.ino;
        let wrote = self.wrote;
        let mut d = self.disk.disk();
        if let Some(node) = d.inodes.get_mut(ino) {
            node.cache = buf;
            node.touched |= wrote;
        }
    }
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.image().len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let src = self
            .image()
            .get(offset as usize..)
            .and_then(|s| s.get(..buf.len()))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let disk = self.disk.clone();
        let mut d = disk.disk();
        let ino = self.ino;
        d.write(ino, self.image_mut(), buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync_range(0, u64::MAX)
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        if len <= self.image().len() as u64 {
            return Ok(());
        }
        let mut bytes = self.image().to_vec();
        bytes.resize(len as usize, 0);
        self.buf = Some(AlignedBuf::from_slice(&bytes));
        self.wrote = true;
        let disk = self.disk.clone();
        let mut d = disk.disk();
        let node = d.inode(self.ino)?;
        node.durable.resize(len as usize, 0);
        Ok(())
    }

    fn drop_clean_cache(&mut self) -> io::Result<()> {
        let disk = self.disk.clone();
        let mut d = disk.disk();
        let s = d.config.sector_bytes as usize;
        let node = d.inode(self.ino)?;
        let lost = std::mem::take(&mut node.lost);
        if lost.is_empty() {
            return Ok(());
        }
        let durable = node.durable.clone();
        let image = self.image_mut();
        for sector in lost {
            let a = sector as usize * s;
            let b = (a + s).min(image.len());
            if let (Some(dst), Some(src)) = (image.get_mut(a..b), durable.get(a..b)) {
                dst.copy_from_slice(src);
            }
        }
        Ok(())
    }
}

/// A mapped [`MemFile`]: reads and stores go straight to its page cache.
pub struct MemMap {
    file: MemFile,
    len: usize,
}

impl StorageMap for MemMap {
    fn bytes(&self) -> &[u8] {
        self.file.image().get(..self.len).unwrap_or(&[])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        let image = self.file.image_mut();
        let n = len.min(image.len());
        image.get_mut(..n).unwrap_or(&mut [])
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let page = crate::format::PAGE_BYTES;
        self.file.sync_range(from - from % page, to)
    }
}

impl Storage for MemStorage {
    type File = MemFile;
    type Map = MemMap;
    type Lock = MemLock;
    const BACKGROUND_PREALLOC: bool = false;

    fn lock(&self) -> Result<MemLock, WalError> {
        let mut d = self.disk();
        if d.locked {
            return Err(WalError::Locked(PathBuf::from("sim:")));
        }
        d.locked = true;
        Ok(MemLock { disk: self.clone() })
    }

    fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("sim:{name}"))
    }

    fn list_segments(&self) -> io::Result<Vec<String>> {
        Ok(self
            .disk()
            .dir
            .keys()
            .filter(|n| n.ends_with(".wal"))
            .cloned()
            .collect())
    }

    fn list_files(&self) -> io::Result<Vec<String>> {
        Ok(self.disk().dir.keys().cloned().collect())
    }

    fn open(&self, name: &str) -> io::Result<MemFile> {
        let ino = *self
            .disk()
            .dir
            .get(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.checkout(ino)
    }

    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<MemFile> {
        let ino = {
            let mut d = self.disk();
            let ppm = d.config.faults.create_enospc_ppm;
            let random_enospc = d.rng.chance_ppm(ppm);
            // Without a capacity (most of the time) the disk cannot be full.
            let full = d.config.capacity_bytes != u64::MAX && {
                let replaced = d
                    .dir
                    .get(name)
                    .and_then(|&i| d.inodes.get(i))
                    .map_or(0, |n| n.durable.len() as u64);
                d.used_bytes() - replaced + len > d.config.capacity_bytes
            };
            if random_enospc || full {
                d.stats.enospc += 1;
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            d.inodes.push(Inode {
                durable: vec![0u8; len as usize],
                cache: Some(AlignedBuf::zeroed(len as usize)),
                lost: BTreeSet::new(),
                touched: false,
            });
            let ino = d.inodes.len() - 1;
            d.held.insert(ino);
            d.dir_op(DirOp::Link(name.to_string(), ino));
            ino
        };
        self.checkout(ino)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut d = self.disk();
        if !d.dir.contains_key(from) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        d.dir_op(DirOp::Rename(from.to_string(), to.to_string()));
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut d = self.disk();
        if !d.dir.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        d.dir_op(DirOp::Unlink(name.to_string()));
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.disk().sync_dir()
    }

    fn map(&self, file: MemFile, len: u64) -> io::Result<MemMap> {
        if file.image().len() < len as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "segment file shorter than its size",
            ));
        }
        Ok(MemMap {
            file,
            len: len as usize,
        })
    }

    fn new_log_id(&self) -> u64 {
        self.disk().rng.next_u64()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn disk(seed: u64) -> MemStorage {
        MemStorage::new(SimConfig::reliable(seed))
    }

    #[test]
    fn synced_bytes_survive_and_unsynced_ones_may_not() {
        let mut dropped = 0;
        let mut kept = 0;
        for seed in 0..64 {
            let d = disk(seed);
            let mut f = d.create_zeroed("a", 16384).unwrap();
            d.sync_dir().unwrap();
            f.write_all_at(&[1u8; 4096], 0).unwrap();
            f.sync_data().unwrap();
            f.write_all_at(&[2u8; 8192], 4096).unwrap();
            drop(f);
            let loss = d.power_loss();
            assert_eq!(loss.unsynced_sectors, 2);
            let img = d.durable_image("a").unwrap();
            assert!(img[..4096].iter().all(|&b| b == 1));
            for sector in [&img[4096..8192], &img[8192..12288]] {
                // Whole sectors: either all new or all old, never mixed.
                assert!(sector.iter().all(|&b| b == 2) || sector.iter().all(|&b| b == 0));
                if sector[0] == 2 {
                    kept += 1;
                } else {
                    dropped += 1;
                }
            }
        }
        assert!(kept > 10 && dropped > 10, "kept {kept}, dropped {dropped}");
    }

    #[test]
    fn unsynced_renames_can_be_lost_and_synced_ones_cannot() {
        let mut lost = 0;
        for seed in 0..32 {
            let d = disk(seed);
            drop(d.create_zeroed("tmp", 4096).unwrap());
            d.rename("tmp", "a.wal").unwrap();
            d.sync_dir().unwrap();
            drop(d.create_zeroed("tmp", 4096).unwrap());
            d.rename("tmp", "b.wal").unwrap();
            d.power_loss();
            let files = d.files();
            assert!(files.contains(&"a.wal".to_string()));
            if !files.contains(&"b.wal".to_string()) {
                lost += 1;
            }
        }
        assert!(lost > 0);
    }

    #[test]
    fn a_failed_sync_loses_sectors_for_good() {
        let d = MemStorage::new(SimConfig {
            faults: FaultRates {
                sync_eio_ppm: 1_000_000,
                ..FaultRates::default()
            },
            ..SimConfig::reliable(3)
        });
        let mut f = d.create_zeroed("a", 65536).unwrap();
        f.write_all_at(&[9u8; 65536], 0).unwrap();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        d.set_faults(FaultRates::default());
        // The retry "succeeds", but the sectors the failed sync dropped stay dropped.
        f.sync_data().unwrap();
        drop(f);
        let lost = d
            .durable_image("a")
            .unwrap()
            .chunks(4096)
            .filter(|c| c[0] == 0)
            .count();
        assert!(
            lost > 0,
            "a failed sync of 16 sectors persisted all of them"
        );
        assert_eq!(d.stats().sync_eio, 1);
    }

    #[test]
    fn capacity_refuses_new_files_until_space_is_freed() {
        let d = disk(1);
        d.set_capacity(10_000);
        drop(d.create_zeroed("a", 8192).unwrap());
        let e = d.create_zeroed("b", 8192).err().unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        d.remove("a").unwrap();
        drop(d.create_zeroed("b", 8192).unwrap());
    }

    #[test]
    fn corruption_hits_one_sector_of_both_images() {
        let d = MemStorage::new(SimConfig {
            sector_bytes: 512,
            ..SimConfig::reliable(5)
        });
        let mut f = d.create_zeroed("a", 4096).unwrap();
        f.write_all_at(&[7u8; 4096], 0).unwrap();
        f.sync_data().unwrap();
        drop(f);
        d.corrupt("a", 1000, Damage::Garbage).unwrap();
        let img = d.durable_image("a").unwrap();
        assert!(img[512..1024].iter().all(|&b| b != 7));
        assert!(img[..512].iter().chain(&img[1024..]).all(|&b| b == 7));
        let f = d.open("a").unwrap();
        let mut buf = [0u8; 512];
        f.read_exact_at(&mut buf, 512).unwrap();
        assert_eq!(&buf[..], &img[512..1024]);
    }

    #[test]
    fn same_seed_same_disk() {
        let run = |seed| {
            let d = MemStorage::new(SimConfig::from_seed(seed));
            let mut out = Vec::new();
            for i in 0..20u8 {
                if let Ok(mut f) = d.create_zeroed(&format!("f{i}"), 8192) {
                    let _ = f.write_all_at(&[i; 8192], 0);
                    out.push(f.sync_data().is_ok());
                }
                let _ = d.sync_dir();
            }
            d.power_loss();
            (out, d.files(), d.stats())
        };
        for seed in 0..8 {
            assert_eq!(run(seed), run(seed));
        }
    }

    #[test]
    fn files_no_name_reaches_are_freed_at_the_next_directory_sync() {
        let d = disk(5);
        d.set_capacity(1 << 20); // used_bytes is computed only on a disk with a capacity
        drop(d.create_zeroed("a", 4096).unwrap());
        d.sync_dir().unwrap();
        assert_eq!(d.used_bytes(), 4096);
        d.remove("a").unwrap();
        d.sync_dir().unwrap();
        assert_eq!(d.used_bytes(), 0);
        // Created but never named durably: a power loss forgets the name, the next sync the bytes.
        let f = d.create_zeroed("b", 8192).unwrap();
        drop(f);
        d.power_loss_as(LossMode::DropAll);
        assert!(d.files().is_empty());
        d.sync_dir().unwrap();
        assert_eq!(d.used_bytes(), 0);
        // Open files keep their bytes until closed and the directory synced again.
        drop(d.create_zeroed("c", 4096).unwrap());
        d.sync_dir().unwrap();
        let open = d.open("c").unwrap();
        d.remove("c").unwrap();
        d.sync_dir().unwrap();
        assert_eq!(d.used_bytes(), 4096);
        drop(open);
        d.sync_dir().unwrap();
        assert_eq!(d.used_bytes(), 0);
    }

    #[test]
    fn installed_files_are_durable_and_discarded_ones_gone() {
        let d = disk(6);
        d.install("x.wal", vec![7u8; 8192]);
        d.install("y.wal", vec![1u8; 4096]);
        d.install("y.wal", vec![2u8; 4096]); // replaces
        d.power_loss_as(LossMode::DropAll);
        assert_eq!(d.files(), vec!["x.wal".to_string(), "y.wal".to_string()]);
        let f = d.open("y.wal").unwrap();
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, 100).unwrap();
        assert_eq!(b, [2; 4]);
        drop(f);
        assert_eq!(d.durable_image("x.wal").unwrap(), vec![7u8; 8192]);
        d.discard("x.wal");
        d.power_loss_as(LossMode::KeepAll);
        assert_eq!(d.files(), vec!["y.wal".to_string()]);
        d.set_capacity(1 << 20);
        assert_eq!(d.used_bytes(), 4096);
    }
}
