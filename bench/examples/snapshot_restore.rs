//! What restoring a large shard from its snapshot costs: time and memory. Builds a state of
//! `CARDS` demo cards (default 1 M, each opened and topped up with keys), writes its snapshot
//! as the runtime's snapshot writer does, then restores it in a fresh process as a restart
//! does, and prints that process's restore time, its RSS once restored and its peak RSS.
//!
//! The restart reads the snapshot file mapped (`wal::snapshot::read_latest`); `in-memory` as
//! a second argument reads it onto the heap first (what restarts did before), for comparison.
//!
//! `cargo run --release -p bench --example snapshot_restore -- 1000000 [in-memory]`

use bench::cards::{demo_cards, T0};
use bench::memory::status_mib;
use std::path::Path;
use std::time::Instant;
use svault_core::command::Millis;
use svault_core::state::StateConfig;

/// The same allocator as the `svault` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("restore") => {
            let dir = args.next().expect("restore DIR");
            restore(Path::new(&dir), args.next().as_deref() == Some("in-memory"));
        }
        first => {
            let cards: u64 = first.and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
            let how = args.next().unwrap_or_default();
            let dir = tempfile::tempdir().expect("scratch directory");
            let st = demo_cards(cards);
            println!(
                "{cards} cards opened and topped up (keyed): RSS {} MiB",
                status_mib("VmRSS")
            );
            let t = Instant::now();
            let bytes = wal::snapshot::write_streamed(dir.path(), wal::Lsn(1), |out| {
                runtime::recovery::write_snapshot(&st.freeze(), Millis(T0), out)
            })
            .expect("snapshot write");
            println!(
                "snapshot written: {} MiB in {:.2} s",
                bytes >> 20,
                t.elapsed().as_secs_f64()
            );
            drop(st);
            // A fresh process, as after a restart: its RSS is the restore's alone.
            let status = std::process::Command::new(std::env::current_exe().expect("own path"))
                .arg("restore")
                .arg(dir.path())
                .arg(how)
                .status()
                .expect("restore process");
            assert!(status.success(), "restore failed: {status}");
        }
    }
}

fn restore(dir: &Path, in_memory: bool) {
    let t = Instant::now();
    let state = if in_memory {
        let name = std::fs::read_dir(dir)
            .expect("snapshot directory")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "snap"))
            .expect("a snapshot file");
        let file = std::fs::read(&name).expect("snapshot read");
        let (lsn, payload) = wal::snapshot::decode(&file, None).expect("valid snapshot");
        runtime::recovery::decode_snapshot(payload, lsn, StateConfig::default())
    } else {
        let snap = wal::snapshot::read_latest(dir)
            .expect("snapshot read")
            .expect("a snapshot");
        runtime::recovery::decode_snapshot(&snap.bytes, snap.lsn, StateConfig::default())
    };
    let (_, state) = state.expect("restore");
    println!(
        "restored ({}) {} cards, {} keys in {:.2} s: RSS {} MiB, peak {} MiB",
        if in_memory {
            "read onto the heap"
        } else {
            "mapped"
        },
        state.card_count(),
        state.key_count(),
        t.elapsed().as_secs_f64(),
        status_mib("VmRSS"),
        status_mib("VmHWM")
    );
}
