//! Disk full for real: the real `svault serve` on a 64 MiB tmpfs that a filler file fills
//! during load. Writes must answer `503` naming the disk, reads keep working, nothing
//! acknowledged is lost across a restart, and writes resume by themselves once space is freed.
//!
//! Mounting needs root (or CAP_SYS_ADMIN). Where mounting is refused the test fails and says
//! why: it never skips, so a CI runner without the privilege is noticed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use svault_tests::api::{Client, Resp, Server};
use svault_tests::svault_bin;

/// A mounted tmpfs, unmounted when dropped (on every path, panics included).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Tmpfs { dir },
            Ok(o) => panic!(
                "cannot mount a {size} tmpfs at {} ({}: {}): this test needs root or CAP_SYS_ADMIN \
                 to mount a small file system it can fill; it fails rather than skip",
                dir.path().display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!(
                "cannot run mount(8): {e}; this test mounts a tmpfs and fails rather than skip"
            ),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it (a server that has not exited yet): detach it anyway.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Fills the file system holding `path` with one file, 1 MiB at a time, until it is full.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler file");
    let chunk = vec![0xA5u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    written
}

/// `ENOSPC` on Linux (the tests crate does not depend on libc).
const ENOSPC: i32 = 28;

const CARDS: usize = 4;

fn card_id(i: usize) -> String {
    format!("77000{i}")
}

fn top_up(s: &Client, card: &str, key: &str) -> Resp {
    s.req("POST", &format!("/v1/cards/{card}/top-ups"))
        .key(key)
        .json(json!({"amount":"1.00","channel":"wechat"}))
        .send()
}

/// Principal of a card in fen, through `GET /v1/cards/{id}`.
fn principal(s: &Server, card: &str) -> i64 {
    let r = s.req("GET", &format!("/v1/cards/{card}")).send();
    assert_eq!(r.status, 200, "read of {card}: {}", r.body);
    let text = r.s("principal");
    let (i, f) = text.split_once('.').expect("two decimals");
    i.parse::<i64>().expect("int") * 100 + f.parse::<i64>().expect("fen")
}

/// What the loaders saw: acknowledged top-ups per card, and the refusals.
#[derive(Default)]
struct Seen {
    acked: [i64; CARDS],
    refused: u64,
    refusal_bodies: Vec<String>,
    acked_after_free: u64,
}

fn start(data: &Path) -> Server {
    Server::start_in(
        svault_bin!(),
        data,
        &[
            "--shards",
            "1",
            "--wal-segment-mib",
            "1",
            "--durability",
            "group",
        ],
    )
}

#[test]
fn a_full_disk_refuses_writes_with_503_keeps_reads_and_loses_nothing() {
    let fs = Tmpfs::mount("64m");
    let data: PathBuf = fs.path().join("data");
    let filler = fs.path().join("filler");
    let mut server = start(&data);
    for i in 0..CARDS {
        let r = server
            .req("POST", "/v1/cards")
            .key(&format!("open-{i}"))
            .json(json!({"program":"demo","card_id":card_id(i),"registered":true}))
            .send();
        assert_eq!(r.status, 200, "open: {}", r.body);
    }

    // Load: one thread per card, top-ups of 1.00 until told to stop.
    let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let freed = Arc::new(AtomicBool::new(false));
    let client = server.client();
    let loaders: Vec<_> = (0..CARDS)
        .map(|i| {
            let (seen, stop, freed, s) =
                (seen.clone(), stop.clone(), freed.clone(), client.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let after_free = freed.load(Ordering::SeqCst);
                    let r = top_up(&s, &card_id(i), &format!("t-{i}-{n}"));
                    let (lock, changed) = &*seen;
                    let mut seen = lock.lock().expect("seen");
                    changed.notify_all();
                    match r.status {
                        200 => {
                            seen.acked[i] += 100;
                            if after_free {
                                seen.acked_after_free += 1;
                            }
                        }
                        503 => {
                            seen.refused += 1;
                            if seen.refusal_bodies.len() < 4 {
                                seen.refusal_bodies.push(r.body.clone());
                            }
                        }
                        other => panic!("top-up answered {other}: {}", r.body),
                    }
                }
            })
        })
        .collect();
    // Woken by every answer a loader gets; the deadline only bounds a hung server.
    let wait_for = |what: &str, cond: &dyn Fn(&Seen) -> bool| {
        let (lock, changed) = &*seen;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut guard = lock.lock().expect("seen");
        while !cond(&guard) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what} never happened");
            guard = changed.wait_timeout(guard, left).expect("seen").0;
        }
    };

    wait_for("50 acknowledged top-ups", &|s| {
        s.acked.iter().sum::<i64>() >= 50 * 100
    });
    let filled = fill(&filler);
    assert!(filled > 0, "the tmpfs had no room for the filler");
    // The active segment (1 MiB) and at most one preallocated one absorb what comes next;
    // then the log cannot rotate and writes are refused.
    wait_for("20 refusals", &|s| s.refused >= 20);

    // While full: reads work and show exactly what was acknowledged.
    {
        let seen = seen.0.lock().expect("seen");
        for (i, body) in seen.refusal_bodies.iter().enumerate() {
            assert!(
                body.contains("unavailable") && body.contains("disk full"),
                "refusal {i}: {body}"
            );
        }
        for i in 0..CARDS {
            assert_eq!(
                principal(&server, &card_id(i)),
                seen.acked[i],
                "card {i} while the disk is full"
            );
        }
    }

    // Space is back: writes resume by themselves, no restart.
    std::fs::remove_file(&filler).expect("remove filler");
    freed.store(true, Ordering::SeqCst);
    wait_for("a top-up acknowledged after space came back", &|s| {
        s.acked_after_free >= 20
    });
    stop.store(true, Ordering::SeqCst);
    for l in loaders {
        l.join().expect("loader");
    }
    let seen = seen.0.lock().expect("seen");
    for i in 0..CARDS {
        assert_eq!(
            principal(&server, &card_id(i)),
            seen.acked[i],
            "card {i} after space came back"
        );
    }

    let mut acked = seen.acked;
    println!(
        "disk full: filler {} MiB, {} acknowledged, {} refused with 503, {} acknowledged after space came back",
        filled >> 20,
        acked.iter().sum::<i64>() / 100,
        seen.refused,
        seen.acked_after_free
    );
    drop(seen);

    // Full again, and this time the process dies: it must start on the full disk, serve
    // reads, refuse writes, and take them again once space is back.
    fill(&filler);
    write_until_refused(&server.client(), &mut acked);
    server.kill();
    let mut server = start(&data);
    for (i, fen) in acked.iter().enumerate() {
        assert_eq!(
            principal(&server, &card_id(i)),
            *fen,
            "card {i} after a restart on a full disk"
        );
    }
    write_until_refused(&server.client(), &mut acked);
    std::fs::remove_file(&filler).expect("remove filler");
    let r = top_up(&server.client(), &card_id(0), "after-restart");
    assert_eq!(r.status, 200, "a write once space is back: {}", r.body);
    acked[0] += 100;

    // Nothing acknowledged is lost: kill -9, restart on the same data, read again.
    server.kill();
    let server = start(&data);
    for (i, fen) in acked.iter().enumerate() {
        assert_eq!(
            principal(&server, &card_id(i)),
            *fen,
            "card {i} after the last restart"
        );
    }
    drop(server);
}

/// Tops up card 0 until a write is refused with `503 disk full` (the active segment may still
/// have room for some).
fn write_until_refused(client: &Client, acked: &mut [i64; CARDS]) {
    for n in 0..100_000 {
        let r = top_up(
            client,
            &card_id(0),
            &format!("until-refused-{}-{n}", acked[0]),
        );
        match r.status {
            200 => acked[0] += 100,
            503 => {
                assert!(r.body.contains("disk full"), "{}", r.body);
                return;
            }
            other => panic!("top-up answered {other}: {}", r.body),
        }
    }
    panic!("writes were never refused on a full disk");
}
