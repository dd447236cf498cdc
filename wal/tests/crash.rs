//! Real crashes: a child process appends and commits in a loop, printing each committed
//! LSN after `commit` returned; we SIGKILL it at random moments, reopen the log and check
//! that every printed LSN is there and intact. The same directory carries over from round
//! to round, so recovery runs over logs that already survived many crashes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use wal::{Lsn, Wal, WalError, WalOptions};

const ROUNDS: usize = 60;

#[test]
fn sigkill_never_loses_an_acknowledged_record() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let seed: u64 = rand::random();
    eprintln!("crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked_max = 0u64;
    let mut torn_seen = 0;
    let mut rounds_with_acks = 0;
    let mut scratch = Vec::new();
    for round in 0..ROUNDS {
        let method = if round % 2 == 0 { "msync" } else { "pwrite" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-writer"))
            .arg(dir.path())
            .arg((64u64 << 10).to_string())
            .arg(method)
            .arg(rng.gen::<u64>().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            // Only whole lines count: a line cut by the kill was never fully acknowledged.
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                if let Some(lsn) = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    if last == 0 {
                        let _ = first_tx.send(());
                    }
                    last = last.max(lsn);
                }
            }
            last
        });
        if round % 2 == 0 {
            // Kill while commits are flowing (however slow the shared machine is today)...
            let _ = first_rx.recv_timeout(Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..30)));
        } else {
            // ...or at any moment at all, open and segment creation included.
            std::thread::sleep(Duration::from_millis(rng.gen_range(1..60)));
        }
        child.kill()?; // SIGKILL
        let status = child.wait()?;
        assert!(!status.success(), "writer exited by itself: {status:?}");
        let printed = reader.join().map_err(|_| "reader thread panicked")?;
        if printed > acked_max {
            rounds_with_acks += 1;
        }
        acked_max = acked_max.max(printed);

        let (log, rec) = Wal::open(
            dir.path(),
            WalOptions {
                segment_size_bytes: 64 << 10,
                ..Default::default()
            },
        )?;
        if rec.torn_tail.is_some() {
            torn_seen += 1;
        }
        assert!(
            rec.last_lsn.0 >= acked_max,
            "round {round}: recovered through {} but {acked_max} was acknowledged",
            rec.last_lsn.0
        );
        let mut expected = 1u64;
        log.read_from(Lsn(1), |lsn, payload| -> Result<(), WalError> {
            assert_eq!(lsn.0, expected, "round {round}: lsn gap");
            assert!(
                wal::testkit::check_payload(lsn.0, payload, &mut scratch),
                "round {round}: payload of lsn {} differs",
                lsn.0
            );
            expected += 1;
            Ok(())
        })?;
        assert_eq!(expected - 1, rec.last_lsn.0);
        // What recovery kept (acknowledged or not) is durable now, and must stay.
        acked_max = rec.last_lsn.0;
    }
    eprintln!("{ROUNDS} rounds, {rounds_with_acks} with new acknowledgements, {acked_max} records, {torn_seen} torn tails cut");
    assert!(
        rounds_with_acks >= ROUNDS / 2,
        "too few rounds acknowledged anything: {rounds_with_acks}"
    );
    Ok(())
}
