//! `inspect` reports what `open` would find, and never modifies the directory.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use wal::{inspect, snapshot, Lsn, Wal, WalError, WalOptions};

fn opts() -> WalOptions {
    WalOptions {
        segment_size_bytes: 64 << 10,
        ..Default::default()
    }
}

/// Every file's name and contents.
fn image(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect()
}

#[test]
fn healthy_log_with_snapshots() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    build_log(dir.path(), 1000, 7, opts())?;
    snapshot::write(dir.path(), Lsn(300), b"image at 300")?;
    snapshot::write(dir.path(), Lsn(900), b"image at 900")?;
    let before = image(dir.path());
    let ins = inspect(dir.path())?;
    assert_eq!(image(dir.path()), before, "inspect modified the directory");
    assert!(ins.refusal.is_none(), "{:?}", ins.refusal);
    assert!(ins.segments.len() >= 3);
    let mut next = 1;
    for s in &ins.segments {
        assert!(
            s.header_ok && s.bad_record.is_none() && s.torn_tail.is_none(),
            "{s:?}"
        );
        assert_eq!(s.first_lsn, Lsn(next));
        assert_eq!(s.size_bytes, 64 << 10);
        let last = s.last_lsn.expect("records").0;
        assert_eq!(s.records_ok, last - next + 1);
        next = last + 1;
    }
    assert_eq!(next, 1001);
    let snaps: Vec<_> = ins.snapshots.iter().map(|s| (s.lsn, s.valid)).collect();
    assert_eq!(snaps, vec![(Some(Lsn(900)), true), (Some(Lsn(300)), true)]);
    Ok(())
}

#[test]
fn torn_tail_is_reported_not_cut() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    build_log(dir.path(), 500, 5, opts())?;
    let seg = segment_files(dir.path()).pop().expect("segment");
    let recs = records_of(&std::fs::read(&seg)?);
    let tail = *recs.last().expect("records");
    let file = std::fs::OpenOptions::new().write(true).open(&seg)?;
    file.write_all_at(&[0xFF; 3], tail.offset + 16)?; // the tail record's payload is damaged
    let before = image(dir.path());
    let ins = inspect(dir.path())?;
    assert_eq!(image(dir.path()), before, "inspect modified the directory");
    assert!(ins.refusal.is_none(), "{:?}", ins.refusal);
    let last = ins.segments.last().expect("segment");
    assert_eq!(last.last_lsn, Some(Lsn(tail.lsn - 1)));
    assert_eq!(last.bad_record.as_ref().map(|b| b.0), Some(tail.offset));
    let torn = last.torn_tail.clone().expect("torn tail reported");
    let (_, rec) = Wal::open(dir.path(), opts())?;
    assert_eq!(
        rec.torn_tail,
        Some(torn),
        "open cuts exactly what inspect reported"
    );
    Ok(())
}

#[test]
fn corruption_is_reported_as_open_would_refuse_it() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    build_log(dir.path(), 1000, 5, opts())?;
    let seg = segment_files(dir.path())[1].clone();
    let recs = records_of(&std::fs::read(&seg)?);
    let victim = recs[recs.len() / 3];
    let file = std::fs::OpenOptions::new().write(true).open(&seg)?;
    file.write_all_at(&[0x55], victim.offset + 9)?; // inside the lsn field
    snapshot::write(dir.path(), Lsn(10), b"ok")?;
    std::fs::write(
        dir.path().join("snapshot-00000000000000000020.snap"),
        b"not a snapshot",
    )?;
    let before = image(dir.path());
    let ins = inspect(dir.path())?;
    assert_eq!(image(dir.path()), before, "inspect modified the directory");
    let refusal = ins.refusal.expect("refusal");
    let Err(WalError::Corruption {
        segment,
        offset,
        lsn,
        ..
    }) = Wal::open(dir.path(), opts())
    else {
        panic!("open must refuse");
    };
    assert_eq!(
        (segment.as_path(), offset, lsn),
        (seg.as_path(), victim.offset, Some(victim.lsn))
    );
    assert!(
        refusal.contains(&seg.display().to_string())
            && refusal.contains(&format!("offset {}", victim.offset)),
        "{refusal}"
    );
    let info = ins
        .segments
        .iter()
        .find(|s| seg.ends_with(&s.file_name))
        .expect("segment listed");
    assert_eq!(info.bad_record.as_ref().map(|b| b.0), Some(victim.offset));
    assert_eq!(info.last_lsn, Some(Lsn(victim.lsn - 1)));
    let snaps: Vec<_> = ins.snapshots.iter().map(|s| (s.lsn, s.valid)).collect();
    assert_eq!(snaps, vec![(Some(Lsn(20)), false), (Some(Lsn(10)), true)]);
    Ok(())
}
