//! Snapshot files: written to a temp file, fsynced, renamed, directory fsynced.
//!
//! A snapshot bounds replay: it holds a state image covering every record up to its LSN.
//! File name `snapshot-<lsn, 20 digits>.snap`; layout in `wal/FORMAT.md`:
//! `magic "SVSNAPSH" | version u32 | crc32c u32 | lsn u64 | len u64 | payload`, the crc
//! covering version, lsn, len and payload. The newest two are kept, so a snapshot damaged
//! on disk still leaves an older one (the caller must keep the log from that older LSN on;
//! see [`keep_log_from`]).

#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::{Lsn, WalError};
use crate::error::from_io;
use crate::format::{get_u32, get_u64};
use crate::segment::{map_read_only, sync_dir, Paced, PACED_CHUNK_BYTES};
use crate::storage::{Storage, StorageFile};

/// First 8 bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SVSNAPSH";
/// Bumped on any change of the snapshot file layout.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Bytes before the payload.
pub const SNAPSHOT_HEADER_BYTES: usize = 32;
/// Snapshots kept by [`write()`].
pub const SNAPSHOTS_KEPT: usize = 2;

const _: () = assert!(SNAPSHOT_HEADER_BYTES % 16 == 0);

/// A snapshot read back and validated.
#[derive(Debug)]
pub struct Snapshot {
    /// Every record up to this LSN is reflected in `bytes`.
    pub lsn: Lsn,
    /// The state image, as given to [`write()`].
    pub bytes: Payload,
    /// Newer snapshot files that failed validation and were passed over (path, reason).
    pub skipped: Vec<(PathBuf, String)>,
}

/// A snapshot's payload as a byte slice: mapped from its file (a multi-gigabyte snapshot is
/// then read in place from the page cache, and costs no heap while a state is restored from
/// it), or held in memory (the simulator's disk).
pub struct Payload(Held);

enum Held {
    /// The whole file; the payload follows its header.
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Held::Mapped(file) => file.get(SNAPSHOT_HEADER_BYTES..).unwrap_or_default(),
            Held::Owned(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.0 {
            Held::Mapped(_) => "mapped",
            Held::Owned(_) => "owned",
        };
        write!(f, "Payload({} bytes, {how})", self.len())
    }
}

fn file_name(lsn: Lsn) -> String {
    format!("snapshot-{:020}.snap", lsn.0)
}

/// The LSN in a snapshot file name, if it is one.
fn parse_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// Snapshot files in `dir`, newest first.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<(Lsn, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(lsn) = parse_name(&entry.file_name().to_string_lossy()) {
            out.push((lsn, entry.path()));
        }
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    Ok(out)
}

fn crc(version: u32, lsn: u64, len: u64, payload: &[u8]) -> u32 {
    let mut pre = [0u8; 20];
    for (dst, src) in pre.iter_mut().zip(
        version
            .to_le_bytes()
            .iter()
            .chain(&lsn.to_le_bytes())
            .chain(&len.to_le_bytes()),
    ) {
        *dst = *src;
    }
    crc32c::crc32c_append(crc32c::crc32c(&pre), payload)
}

/// The header of a snapshot file holding `bytes`.
fn header(lsn: Lsn, bytes: &[u8]) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let len = bytes.len() as u64;
    header_with(lsn, len, crc(SNAPSHOT_VERSION, lsn.0, len, bytes))
}

/// The header of a snapshot file whose `len`-byte payload has crc32c `payload_crc` (the
/// header's crc, over version, lsn, len and payload, is combined from it: a streamed payload
/// is never held whole).
fn header_streamed(lsn: Lsn, len: u64, payload_crc: u32) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let before = crc(SNAPSHOT_VERSION, lsn.0, len, &[]);
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    header_with(
        lsn,
        len,
        crc32c::crc32c_combine(before, payload_crc, len_usize),
    )
}

fn header_with(lsn: Lsn, len: u64, crc: u32) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut out = [0u8; SNAPSHOT_HEADER_BYTES];
    let version = SNAPSHOT_VERSION.to_le_bytes();
    let crc = crc.to_le_bytes();
    let (lsn, len) = (lsn.0.to_le_bytes(), len.to_le_bytes());
    let fields = SNAPSHOT_MAGIC
        .iter()
        .chain(&version)
        .chain(&crc)
        .chain(&lsn)
        .chain(&len);
    for (dst, src) in out.iter_mut().zip(fields) {
        *dst = *src;
    }
    out
}

/// The full file contents of a snapshot.
pub fn encode(lsn: Lsn, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + bytes.len());
    out.extend_from_slice(&header(lsn, bytes));
    out.extend_from_slice(bytes);
    out
}

/// Where [`write_streamed`]'s payload goes: gathered into pieces of [`PACED_CHUNK_BYTES`],
/// each handed to the file as it fills, with the crc and length kept as it passes.
struct PayloadWriter<'f> {
    paced: Paced<'f>,
    piece: Vec<u8>,
    crc: u32,
    len: u64,
}

impl PayloadWriter<'_> {
    fn put_piece(&mut self) -> io::Result<()> {
        self.paced.put(&self.piece)?;
        self.crc = crc32c::crc32c_append(self.crc, &self.piece);
        self.len += self.piece.len() as u64;
        self.piece.clear();
        Ok(())
    }
}

impl Write for PayloadWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = PACED_CHUNK_BYTES - self.piece.len();
        let n = bytes.len().min(room);
        self.piece
            .extend_from_slice(bytes.get(..n).unwrap_or_default());
        if self.piece.len() == PACED_CHUNK_BYTES {
            self.put_piece()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A header's fields once its magic and version are checked: `(crc, lsn, payload len)`.
fn parse_header(file: &[u8]) -> Result<(u32, u64, u64), String> {
    if file.get(..8) != Some(&SNAPSHOT_MAGIC[..]) {
        return Err("bad magic".into());
    }
    let version = get_u32(file, 8).ok_or("short header")?;
    if version != SNAPSHOT_VERSION {
        return Err(format!("unknown snapshot version {version}"));
    }
    let stored = get_u32(file, 12).ok_or("short header")?;
    let lsn = get_u64(file, 16).ok_or("short header")?;
    let len = get_u64(file, 24).ok_or("short header")?;
    Ok((stored, lsn, len))
}

/// Checks the payload against the header's crc and the LSN the file name promises.
fn check_payload(
    stored: u32,
    lsn: u64,
    payload: &[u8],
    expected: Option<Lsn>,
) -> Result<Lsn, String> {
    let computed = crc(SNAPSHOT_VERSION, lsn, payload.len() as u64, payload);
    if stored != computed {
        return Err(format!(
            "crc32c stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    if let Some(e) = expected {
        if e.0 != lsn {
            return Err(format!("file name says lsn {}, contents say {lsn}", e.0));
        }
    }
    Ok(Lsn(lsn))
}

/// Validates a snapshot file's contents; `expected` is the LSN its name promises.
/// Returns the LSN and the payload range, or why it is refused.
pub fn decode(file: &[u8], expected: Option<Lsn>) -> Result<(Lsn, &[u8]), String> {
    let (stored, lsn, len) = parse_header(file)?;
    let payload = file.get(SNAPSHOT_HEADER_BYTES..).ok_or("short header")?;
    if payload.len() as u64 != len {
        return Err(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    Ok((check_payload(stored, lsn, payload, expected)?, payload))
}

/// Maps and validates one snapshot file (a multi-gigabyte snapshot is read in place, never
/// copied onto the heap). The outer error is i/o, the inner one why the contents are refused.
fn read_file(path: &Path, expected: Lsn) -> io::Result<Result<(Lsn, Payload), String>> {
    let f = File::open(path)?;
    if f.metadata()?.len() < SNAPSHOT_HEADER_BYTES as u64 {
        return Ok(Err("short header".into()));
    }
    let file = map_read_only(&f)?;
    let checked = decode(&file, Some(expected)).map(|(lsn, _)| lsn);
    Ok(checked.map(|lsn| (lsn, Payload(Held::Mapped(file)))))
}

/// Durably writes a snapshot covering every record up to `lsn`, then deletes all but the
/// newest [`SNAPSHOTS_KEPT`]. When this returns `Ok`, the snapshot survives a crash.
pub fn write(dir: &Path, lsn: Lsn, bytes: &[u8]) -> Result<(), WalError> {
    write_streamed(dir, lsn, |payload| payload.write_all(bytes)).map(|_| ())
}

/// [`write()`] for a payload that `fill` produces as it writes it (a state serialised
/// straight to disk): the payload goes to the file in paced pieces and is never held whole.
/// Returns the payload's length. The header, whose crc covers the payload, is written last,
/// before the sync; the file only gets its final name once all of it is durable.
pub fn write_streamed(
    dir: &Path,
    lsn: Lsn,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<u64, WalError> {
    write_streamed_throttled(dir, lsn, 0, &AtomicBool::new(true), fill)
}

/// [`write_streamed`] at no more than `bytes_per_sec` (0: no bound) until `hurry` is set, then
/// as fast as the disk takes it: a server writes its snapshots in the background while its
/// log commits, and each commit's device flush carries what the snapshot wrote since the one
/// before (see `WalOptions::background_bytes_per_sec`).
pub fn write_streamed_throttled(
    dir: &Path,
    lsn: Lsn,
    bytes_per_sec: u64,
    hurry: &AtomicBool,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<u64, WalError> {
    std::fs::create_dir_all(dir)?;
    let name = file_name(lsn);
    let tmp = dir.join(format!("{name}.tmp"));
    let fin = dir.join(&name);
    let f: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(from_io)?;
    // The payload is paced: gigabytes written whole and synced at the end would queue ahead of
    // every log commit for seconds.
    let mut payload = PayloadWriter {
        paced: Paced::new(&f, SNAPSHOT_HEADER_BYTES as u64).throttled(bytes_per_sec, hurry),
        piece: Vec::with_capacity(PACED_CHUNK_BYTES),
        crc: 0,
        len: 0,
    };
    fill(&mut payload).map_err(from_io)?;
    payload.put_piece().map_err(from_io)?;
    let len = payload.len;
    f.write_all_at(&header_streamed(lsn, len, payload.crc), 0)
        .map_err(from_io)?;
    f.sync_all().map_err(from_io)?;
    drop(f);
    std::fs::rename(&tmp, &fin)?;
    sync_dir(dir)?;
    let all = list(dir)?;
    let mut removed = false;
    // Temp files of writes that crashed half-way.
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("snapshot-") && name.ends_with(".snap.tmp") {
            std::fs::remove_file(&path)?;
            removed = true;
        }
    }
    for (_, path) in all.iter().skip(SNAPSHOTS_KEPT) {
        std::fs::remove_file(path)?;
        removed = true;
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(len)
}

/// The newest valid snapshot in `dir`, if any. Invalid newer files are passed over and
/// named in [`Snapshot::skipped`] so the caller can report them.
pub fn read_latest(dir: &Path) -> Result<Option<Snapshot>, WalError> {
    let all = match list(dir) {
        Ok(all) => all,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut skipped = Vec::new();
    for (lsn, path) in all {
        match read_file(&path, lsn)? {
            Ok((lsn, bytes)) => {
                return Ok(Some(Snapshot {
                    lsn,
                    bytes,
                    skipped,
                }))
            }
            Err(why) => skipped.push((path, why)),
        }
    }
    Ok(None)
}

/// The oldest LSN the log must still hold so that every kept snapshot can be replayed
/// forward: `remove_segments_before(keep_log_from(dir)?)` is always safe.
pub fn keep_log_from(dir: &Path) -> Result<Lsn, WalError> {
    let all = list(dir)?;
    Ok(all
        .iter()
        .take(SNAPSHOTS_KEPT)
        .map(|(lsn, _)| Lsn(lsn.0 + 1))
        .min()
        .unwrap_or(Lsn(0)))
}

/// Snapshot files of `storage`, newest first, by name.
fn list_on<S: Storage>(storage: &S) -> io::Result<Vec<(Lsn, String)>> {
    let mut out: Vec<(Lsn, String)> = storage
        .list_files()?
        .into_iter()
        .filter_map(|n| parse_name(&n).map(|lsn| (lsn, n)))
        .collect();
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    Ok(out)
}

/// [`write()`] through a [`Storage`], for the simulated disk of the engine simulator: the same
/// steps (temp file, header and payload, sync, rename, directory sync, removal of temp files
/// and of all but the newest [`SNAPSHOTS_KEPT`], directory sync), each one a place where a
/// power loss, a kill or a failed sync can strike. The temp file is created at its full length
/// (the trait creates files zero-filled), where [`write()`] lets a real file grow; the engine
/// on real disks keeps using [`write()`].
pub fn write_on<S: Storage>(storage: &S, lsn: Lsn, bytes: &[u8]) -> Result<(), WalError> {
    let name = file_name(lsn);
    let tmp = format!("{name}.tmp");
    let len = (SNAPSHOT_HEADER_BYTES + bytes.len()) as u64;
    {
        let mut f = storage.create_zeroed(&tmp, len).map_err(from_io)?;
        f.write_all_at(&header(lsn, bytes), 0).map_err(from_io)?;
        f.write_all_at(bytes, SNAPSHOT_HEADER_BYTES as u64)
            .map_err(from_io)?;
        f.sync_data().map_err(from_io)?;
    }
    storage.rename(&tmp, &name)?;
    storage.sync_dir()?;
    let mut removed = false;
    for n in storage.list_files()? {
        if n.starts_with("snapshot-") && n.ends_with(".snap.tmp") {
            storage.remove(&n)?;
            removed = true;
        }
    }
    for (_, n) in list_on(storage)?.iter().skip(SNAPSHOTS_KEPT) {
        storage.remove(n)?;
        removed = true;
    }
    if removed {
        storage.sync_dir()?;
    }
    Ok(())
}

/// [`read_latest`] through a [`Storage`]: the newest snapshot whose contents pass
/// [`decode`], the newer ones refused named in [`Snapshot::skipped`].
pub fn read_latest_on<S: Storage>(storage: &S) -> Result<Option<Snapshot>, WalError> {
    let mut skipped = Vec::new();
    for (lsn, name) in list_on(storage)? {
        let f = storage.open(&name)?;
        let size = f.len()?;
        let Ok(size) = usize::try_from(size) else {
            skipped.push((
                storage.path(&name),
                format!("{size} bytes do not fit in memory"),
            ));
            continue;
        };
        let mut file = vec![0u8; size];
        f.read_exact_at(&mut file, 0)?;
        match decode(&file, Some(lsn)) {
            Ok((lsn, payload)) => {
                return Ok(Some(Snapshot {
                    lsn,
                    bytes: Payload(Held::Owned(payload.to_vec())),
                    skipped,
                }))
            }
            Err(why) => skipped.push((storage.path(&name), why)),
        }
    }
    Ok(None)
}

/// [`keep_log_from`] through a [`Storage`].
pub fn keep_log_from_on<S: Storage>(storage: &S) -> Result<Lsn, WalError> {
    Ok(list_on(storage)?
        .iter()
        .take(SNAPSHOTS_KEPT)
        .map(|(lsn, _)| Lsn(lsn.0 + 1))
        .min()
        .unwrap_or(Lsn(0)))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let f = encode(Lsn(0x0102), b"abc");
        let mut expected = b"SVSNAPSH".to_vec();
        expected.extend_from_slice(&[1, 0, 0, 0]);
        let c = crc(1, 0x0102, 3, b"abc");
        expected.extend_from_slice(&c.to_le_bytes());
        expected.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(b"abc");
        assert_eq!(f, expected);
        let mut pre = vec![1, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
        pre.extend_from_slice(b"abc");
        assert_eq!(c, crc32c::crc32c(&pre));
    }

    #[test]
    fn a_streamed_payload_is_the_file_encode_makes() {
        // Three and a half paced pieces, fed in writes of odd sizes that straddle the pieces.
        let payload: Vec<u8> = (0..PACED_CHUNK_BYTES * 7 / 2)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let len = write_streamed(dir.path(), Lsn(77), |w| {
            for part in payload.chunks(65_537) {
                w.write_all(part)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(len, payload.len() as u64);
        let file = std::fs::read(dir.path().join(file_name(Lsn(77)))).unwrap();
        assert_eq!(
            file,
            encode(Lsn(77), &payload),
            "header and crc as `encode` makes them"
        );
        let back = read_latest(dir.path()).unwrap().unwrap();
        assert_eq!((back.lsn, *back.bytes == payload[..]), (Lsn(77), true));
        // An empty payload too.
        write_streamed(dir.path(), Lsn(78), |_| Ok(())).unwrap();
        let file = std::fs::read(dir.path().join(file_name(Lsn(78)))).unwrap();
        assert_eq!(file, encode(Lsn(78), b""));
    }

    #[test]
    fn a_failed_fill_leaves_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), Lsn(5), b"older").unwrap();
        let r = write_streamed(dir.path(), Lsn(9), |w| {
            w.write_all(&[1; 3 << 20])?;
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        });
        assert!(r.is_err());
        let back = read_latest(dir.path()).unwrap().unwrap();
        assert_eq!((back.lsn, &back.bytes[..]), (Lsn(5), &b"older"[..]));
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let f = encode(Lsn(9), b"state image");
        for bit in 0..f.len() * 8 {
            let mut c = f.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&c, Some(Lsn(9))).is_err(), "bit {bit}");
        }
        assert!(
            decode(&f, Some(Lsn(8))).is_err(),
            "name and contents must agree"
        );
    }

    #[test]
    fn short_and_truncated_files_are_passed_over_with_a_reason() -> Result<(), WalError> {
        let dir = tempfile::tempdir()?;
        write(dir.path(), Lsn(10), b"state@10")?;
        write(dir.path(), Lsn(20), b"state@20")?;
        let newest = dir.path().join(file_name(Lsn(20)));
        let whole = std::fs::read(&newest)?;
        for (cut, reason) in [(whole.len() - 3, "header says"), (20, "short header")] {
            std::fs::write(&newest, &whole[..cut])?;
            let s = read_latest(dir.path())?.ok_or(WalError::InvalidOptions("none"))?;
            assert_eq!((s.lsn, &s.bytes[..]), (Lsn(10), &b"state@10"[..]));
            assert!(
                s.skipped.len() == 1 && s.skipped[0].1.contains(reason),
                "{:?}",
                s.skipped
            );
        }
        Ok(())
    }

    #[test]
    fn write_keeps_two_and_falls_back() -> Result<(), WalError> {
        let dir = tempfile::tempdir()?;
        assert!(read_latest(dir.path())?.is_none());
        for lsn in [10, 20, 30] {
            write(dir.path(), Lsn(lsn), format!("state@{lsn}").as_bytes())?;
        }
        let names: Vec<_> = list(dir.path())?.into_iter().map(|(l, _)| l.0).collect();
        assert_eq!(names, vec![30, 20]);
        assert_eq!(keep_log_from(dir.path())?, Lsn(21));
        let s = read_latest(dir.path())?.ok_or(WalError::InvalidOptions("none"))?;
        assert_eq!((s.lsn, &s.bytes[..]), (Lsn(30), &b"state@30"[..]));
        // Damage the newest: the older one is returned, and the damage is named.
        let newest = dir.path().join(file_name(Lsn(30)));
        let mut bytes = std::fs::read(&newest)?;
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&newest, bytes)?;
        let s = read_latest(dir.path())?.ok_or(WalError::InvalidOptions("none"))?;
        assert_eq!((s.lsn, &s.bytes[..]), (Lsn(20), &b"state@20"[..]));
        assert_eq!(s.skipped.len(), 1);
        // A write that crashed before its rename leaves a temp file: never read, cleaned up.
        std::fs::write(
            dir.path().join("snapshot-00000000000000000040.snap.tmp"),
            b"half",
        )?;
        assert_eq!(read_latest(dir.path())?.map(|s| s.lsn), Some(Lsn(20)));
        write(dir.path(), Lsn(50), b"state@50")?;
        assert!(!dir
            .path()
            .join("snapshot-00000000000000000040.snap.tmp")
            .exists());
        Ok(())
    }
}
