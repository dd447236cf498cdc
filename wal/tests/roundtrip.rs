//! Millions of random records across many small segments, with reopens in between.

use rand::{Rng, SeedableRng};
use wal::{Lsn, SyncMethod, Wal, WalError, WalOptions};

/// Payload of `lsn` under `seed`: 0..48 random bytes, reproducible.
fn payload(seed: u64, lsn: u64, out: &mut Vec<u8>) {
    let mut x = (seed ^ lsn.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = next() % 48;
    out.clear();
    out.extend((0..len).map(|_| next() as u8));
}

fn check_all(log: &Wal, seed: u64, from: u64, through: u64) -> Result<(), WalError> {
    let mut expected = from;
    let mut want = Vec::new();
    log.read_from(Lsn(from), |lsn, p| -> Result<(), WalError> {
        assert_eq!(lsn.0, expected);
        payload(seed, lsn.0, &mut want);
        assert_eq!(p, want.as_slice(), "payload of lsn {}", lsn.0);
        expected += 1;
        Ok(())
    })?;
    assert_eq!(expected - 1, through);
    Ok(())
}

#[test]
fn two_million_records_many_segments_with_reopen() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    let seed: u64 = rand::random();
    eprintln!("roundtrip seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let opts = |m| WalOptions {
        segment_size_bytes: 2 << 20,
        sync_method: m,
        ..WalOptions::default()
    };
    let total = 2_000_000u64;
    let mut buf = Vec::new();
    let mut lsn = 1;
    for (round, method) in [
        SyncMethod::Msync,
        SyncMethod::PwriteFdatasync,
        SyncMethod::Msync,
    ]
    .into_iter()
    .enumerate()
    {
        let (mut log, rec) = Wal::open(dir.path(), opts(method))?;
        assert_eq!(rec.last_lsn, Lsn(lsn - 1), "round {round}");
        assert!(rec.torn_tail.is_none());
        let until = total * (round as u64 + 1) / 3;
        while lsn <= until {
            let batch = rng.gen_range(1..5000u64).min(until - lsn + 1);
            for _ in 0..batch {
                payload(seed, lsn, &mut buf);
                assert_eq!(log.append(&buf)?, Lsn(lsn));
                lsn += 1;
            }
            assert_eq!(log.commit()?.through, Lsn(lsn - 1));
        }
        check_all(&log, seed, 1, lsn - 1)?;
        if round == 1 {
            log.close()?;
        }
    }
    let (log, rec) = Wal::open(dir.path(), opts(SyncMethod::Msync))?;
    assert_eq!(
        (rec.first_lsn, rec.last_lsn, rec.records),
        (Lsn(1), Lsn(total), total)
    );
    assert!(rec.segments > 20, "only {} segments", rec.segments);
    check_all(&log, seed, 1, total)?;
    check_all(&log, seed, total / 2 + 17, total)?;
    Ok(())
}
