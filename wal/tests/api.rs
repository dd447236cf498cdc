//! The public API, end to end on real files.

use std::path::Path;

use wal::{inspect, Lsn, SyncMethod, Wal, WalError, WalOptions};

fn opts(segment: u64, sync_method: SyncMethod) -> WalOptions {
    WalOptions {
        segment_size_bytes: segment,
        sync_method,
        ..WalOptions::default()
    }
}

fn collect(log: &Wal, from: Lsn) -> Result<Vec<(u64, Vec<u8>)>, WalError> {
    let mut out = Vec::new();
    log.read_from(from, |lsn, p| -> Result<(), WalError> {
        assert_eq!(
            p.as_ptr() as usize % 16,
            0,
            "payload of lsn {} not 16-byte aligned",
            lsn.0
        );
        out.push((lsn.0, p.to_vec()));
        Ok(())
    })?;
    Ok(out)
}

fn basic(dir: &Path, method: SyncMethod) -> Result<(), WalError> {
    let (mut log, rec) = Wal::open(dir, opts(64 << 10, method))?;
    assert!(rec.created);
    assert_eq!(
        (rec.first_lsn, rec.last_lsn, rec.next_lsn),
        (Lsn(0), Lsn(0), Lsn(1))
    );
    assert_eq!((log.next_lsn(), log.durable_lsn()), (Lsn(1), Lsn(0)));

    let a = log.append(b"first")?;
    let b = log.append(b"")?;
    assert_eq!((a, b), (Lsn(1), Lsn(2)));
    assert!(
        collect(&log, Lsn(1))?.is_empty(),
        "nothing is visible before commit"
    );
    let c = log.commit()?;
    assert_eq!(c.through, Lsn(2));
    assert!(c.covers(a) && c.covers(b) && !c.covers(Lsn(3)) && !c.covers(Lsn(0)));
    assert_eq!(log.durable_lsn(), Lsn(2));
    // An empty commit changes nothing and syncs nothing.
    assert_eq!(log.commit()?.through, Lsn(2));

    // Enough records to cross several 64 KiB segments.
    for i in 3..=3000u64 {
        let lsn = log.append(&i.to_le_bytes().repeat((i % 7) as usize))?;
        assert_eq!(lsn, Lsn(i));
        if i % 97 == 0 {
            log.commit()?;
        }
    }
    log.commit()?;
    assert!(log.segment_paths().len() > 3, "{:?}", log.segment_paths());
    let all = collect(&log, Lsn(0))?;
    assert_eq!(all.len(), 3000);
    assert_eq!(all[0], (1, b"first".to_vec()));
    assert_eq!(all[1], (2, Vec::new()));
    for (lsn, p) in &all[2..] {
        assert_eq!(p, &lsn.to_le_bytes().repeat((lsn % 7) as usize));
    }
    let tail = collect(&log, Lsn(2500))?;
    assert_eq!(tail.first().map(|r| r.0), Some(2500));
    assert_eq!(tail.len(), 501);
    assert!(collect(&log, Lsn(3001))?.is_empty());

    // The directory is locked while the log is open.
    assert!(matches!(
        Wal::open(dir, opts(64 << 10, method)),
        Err(WalError::Locked(_))
    ));
    drop(log);

    let (mut log, rec) = Wal::open(dir, opts(64 << 10, method))?;
    assert!(!rec.created && !rec.sealed && rec.torn_tail.is_none());
    assert_eq!(
        (rec.first_lsn, rec.last_lsn, rec.records),
        (Lsn(1), Lsn(3000), 3000)
    );
    assert_eq!(collect(&log, Lsn(1))?, all);

    // Removing segments keeps every record at or above the LSN, and the active segment.
    let before = log.segment_paths().len();
    log.remove_segments_before(Lsn(2000))?;
    let after = log.segment_paths().len();
    assert!(after < before);
    let kept = collect(&log, Lsn(0))?;
    assert!(
        kept.first().is_some_and(|r| r.0 <= 2000),
        "first kept {:?}",
        kept.first().map(|r| r.0)
    );
    assert_eq!(kept.last().map(|r| r.0), Some(3000));
    log.remove_segments_before(Lsn(u64::MAX))?;
    assert_eq!(log.segment_paths().len(), 1);
    log.append(b"after removal")?;
    log.close()?;

    let (log, rec) = Wal::open(dir, opts(64 << 10, method))?;
    assert!(rec.sealed, "close writes a seal");
    assert_eq!(rec.last_lsn, Lsn(3001));
    assert_eq!(
        collect(&log, Lsn(3001))?,
        vec![(3001, b"after removal".to_vec())]
    );
    drop(log);

    let ins = inspect(dir)?;
    assert!(ins.refusal.is_none(), "{:?}", ins.refusal);
    assert_eq!(ins.segments.len(), rec.segments);
    assert!(ins
        .segments
        .iter()
        .all(|s| s.header_ok && s.bad_record.is_none() && s.torn_tail.is_none()));
    assert_eq!(
        ins.segments.last().and_then(|s| s.last_lsn),
        Some(Lsn(3001))
    );
    assert!(ins.segments.last().is_some_and(|s| s.sealed));
    Ok(())
}

#[test]
fn basic_msync() -> Result<(), WalError> {
    basic(tempfile::tempdir()?.path(), SyncMethod::Msync)
}

#[test]
fn basic_pwrite() -> Result<(), WalError> {
    basic(tempfile::tempdir()?.path(), SyncMethod::PwriteFdatasync)
}

#[test]
fn sync_methods_read_each_others_logs() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Wal::open(dir.path(), opts(16 << 10, SyncMethod::Msync))?;
    for i in 0..500u64 {
        log.append(&i.to_le_bytes())?;
    }
    log.commit()?;
    drop(log);
    let (mut log, rec) = Wal::open(dir.path(), opts(16 << 10, SyncMethod::PwriteFdatasync))?;
    assert_eq!(rec.last_lsn, Lsn(500));
    for i in 500..1000u64 {
        log.append(&i.to_le_bytes())?;
    }
    log.commit()?;
    drop(log);
    let (log, rec) = Wal::open(dir.path(), opts(16 << 10, SyncMethod::Msync))?;
    assert_eq!(rec.last_lsn, Lsn(1000));
    let all = collect(&log, Lsn(1))?;
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, (lsn, p))| *lsn == i as u64 + 1 && p == &(i as u64).to_le_bytes()));
    Ok(())
}

#[test]
fn limits_are_typed_errors() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    assert!(matches!(
        Wal::open(dir.path(), opts(4096, SyncMethod::Msync)),
        Err(WalError::InvalidOptions(_))
    ));
    assert!(matches!(
        Wal::open(dir.path(), opts(10_000, SyncMethod::Msync)),
        Err(WalError::InvalidOptions(_))
    ));
    let (mut log, _) = Wal::open(dir.path(), opts(8192, SyncMethod::Msync))?;
    let max = 8192 - 4096 - 16;
    assert!(matches!(
        log.append(&vec![1; max + 1]),
        Err(WalError::RecordTooLarge { .. })
    ));
    // The largest record fills a segment on its own; the log goes on after the refusal.
    assert_eq!(log.append(&vec![1; max])?, Lsn(1));
    assert_eq!(log.append(&vec![2; max])?, Lsn(2));
    log.commit()?;
    assert_eq!(log.segment_paths().len(), 2);
    drop(log);
    let (log, rec) = Wal::open(dir.path(), opts(8192, SyncMethod::Msync))?;
    assert_eq!(rec.last_lsn, Lsn(2));
    assert_eq!(collect(&log, Lsn(2))?, vec![(2, vec![2; max])]);
    Ok(())
}

#[test]
fn a_segment_size_change_applies_to_new_segments() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Wal::open(dir.path(), opts(16 << 10, SyncMethod::Msync))?;
    for i in 0..100u64 {
        log.append(&[i as u8; 200])?;
    }
    log.commit()?;
    drop(log);
    let (mut log, rec) = Wal::open(dir.path(), opts(64 << 10, SyncMethod::Msync))?;
    assert_eq!(rec.last_lsn, Lsn(100));
    for i in 100..1000u64 {
        log.append(&[i as u8; 200])?;
    }
    log.commit()?;
    let sizes: Vec<u64> = inspect(dir.path())?
        .segments
        .iter()
        .map(|s| s.size_bytes)
        .collect();
    assert!(
        sizes.contains(&(16 << 10)) && sizes.contains(&(64 << 10)),
        "{sizes:?}"
    );
    assert_eq!(collect(&log, Lsn(1))?.len(), 1000);
    Ok(())
}
