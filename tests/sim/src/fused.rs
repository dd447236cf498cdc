//! A process that can die at any I/O: [`Fused`] wraps the simulated disk and, once its fuse
//! has burnt down, fails every further mutating call as if the process had been killed just
//! before it.
//!
//! Why: crash points between steps (before an append, between append and commit, after a
//! commit before the reply) are easy; a kill *inside* a commit, a segment rotation, a
//! snapshot write or a recovery is not. Arming the fuse with "die at the n-th write, sync,
//! create, rename or remove from now" reaches every one of those points from a seed, through
//! the real log and snapshot code. What the dead process wrote before stays in the page cache
//! (a kill) or meets a power loss (`MemStorage::power_loss`), as the simulator then decides.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use wal::sim::{MemFile, MemLock, MemMap, MemStorage};
use wal::{Storage, StorageFile, StorageMap, WalError};

/// Mutating calls left before the process dies; shared by every disk of one process.
#[derive(Debug, Default)]
pub struct Fuse {
    left: AtomicU64,
    armed: AtomicBool,
    blown: AtomicBool,
}

impl Fuse {
    /// A fuse that never blows until armed.
    pub fn new() -> Arc<Fuse> {
        Arc::new(Fuse::default())
    }

    /// The process dies at the `n`-th mutating call from now (0: the next one).
    pub fn arm(&self, n: u64) {
        self.left.store(n, Relaxed);
        self.blown.store(false, Relaxed);
        self.armed.store(true, Relaxed);
    }

    /// No death pending (a restarted process).
    pub fn disarm(&self) {
        self.armed.store(false, Relaxed);
        self.blown.store(false, Relaxed);
    }

    /// `true` once the process died: everything it does from here on is lost.
    pub fn blown(&self) -> bool {
        self.blown.load(Relaxed)
    }

    /// `true` while armed and not yet blown.
    pub fn armed(&self) -> bool {
        self.armed.load(Relaxed) && !self.blown()
    }

    /// Counts one mutating call; `Err` when the process is (now) dead.
    fn burn(&self) -> io::Result<()> {
        if self.blown() {
            return Err(dead());
        }
        if !self.armed.load(Relaxed) {
            return Ok(());
        }
        let left = self.left.load(Relaxed);
        if left == 0 {
            self.blown.store(true, Relaxed);
            return Err(dead());
        }
        self.left.store(left - 1, Relaxed);
        Ok(())
    }
}

fn dead() -> io::Error {
    io::Error::other("simulated process death")
}

/// `true` when `e` is the fuse's error (the process died), not a disk fault.
pub fn is_death(e: &WalError) -> bool {
    match e {
        WalError::Io(io) => io.to_string().contains("simulated process death"),
        other => other.to_string().contains("simulated process death"),
    }
}

/// A [`MemStorage`] whose mutating calls burn a [`Fuse`].
#[derive(Debug, Clone)]
pub struct Fused {
    /// The disk.
    pub disk: MemStorage,
    /// The process's fuse.
    pub fuse: Arc<Fuse>,
}

/// A [`MemFile`] of a [`Fused`] disk.
pub struct FusedFile {
    inner: MemFile,
    fuse: Arc<Fuse>,
}

/// A [`MemMap`] of a [`Fused`] disk.
pub struct FusedMap {
    inner: MemMap,
    fuse: Arc<Fuse>,
}

impl Storage for Fused {
    type File = FusedFile;
    type Map = FusedMap;
    type Lock = MemLock;
    const BACKGROUND_PREALLOC: bool = false;

    fn lock(&self) -> Result<MemLock, WalError> {
        self.disk.lock()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.disk.path(name)
    }

    fn list_segments(&self) -> io::Result<Vec<String>> {
        self.disk.list_segments()
    }

    fn list_files(&self) -> io::Result<Vec<String>> {
        self.disk.list_files()
    }

    fn open(&self, name: &str) -> io::Result<FusedFile> {
        Ok(FusedFile {
            inner: self.disk.open(name)?,
            fuse: self.fuse.clone(),
        })
    }

    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<FusedFile> {
        self.fuse.burn()?;
        Ok(FusedFile {
            inner: self.disk.create_zeroed(name, len)?,
            fuse: self.fuse.clone(),
        })
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.fuse.burn()?;
        self.disk.rename(from, to)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.fuse.burn()?;
        self.disk.remove(name)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.fuse.burn()?;
        self.disk.sync_dir()
    }

    fn map(&self, file: FusedFile, len: u64) -> io::Result<FusedMap> {
        Ok(FusedMap {
            inner: self.disk.map(file.inner, len)?,
            fuse: file.fuse,
        })
    }

    fn new_log_id(&self) -> u64 {
        self.disk.new_log_id()
    }
}

impl StorageFile for FusedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fuse.burn()?;
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fuse.burn()?;
        self.inner.sync_data()
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        self.fuse.burn()?;
        self.inner.allocate(len)
    }

    fn drop_clean_cache(&mut self) -> io::Result<()> {
        self.inner.drop_clean_cache()
    }
}

impl StorageMap for FusedMap {
    fn bytes(&self) -> &[u8] {
        self.inner.bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.inner.bytes_mut()
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fuse.burn()?;
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fuse.burn()?;
        self.inner.sync_data()
    }

    fn sync_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        self.fuse.burn()?;
        self.inner.sync_range(from, to)
    }
}
