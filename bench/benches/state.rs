//! The state machine alone, one core: `apply` throughput on 1 M cards for spends, keyed spends,
//! top-ups, hold + capture and refunds, with uniform and Zipf(1.1) card choice; and bytes per
//! card (a counting allocator). Run: `cargo bench -p bench --bench state -- --warm-up-time 1
//! --measurement-time 3`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mimalloc::MiMalloc;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use svault_core::command::{CardId, Channel, Command, Method, Millis, Request, TxnId};
use svault_core::money::Amount;
use svault_core::program::{Program, ProgramSpec};
use svault_core::state::{State, StateConfig};

/// Counts live heap bytes, to measure bytes per card, over mimalloc (as in the server binary).
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to mimalloc (the server binary's allocator) unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        // SAFETY: `p` was allocated by `MiMalloc` with layout `l`.
        unsafe { MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Relaxed);
        LIVE.fetch_sub(l.size(), Relaxed);
        // SAFETY: `p` was allocated by `MiMalloc` with layout `l`.
        unsafe { MiMalloc.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const CARDS: u64 = 1_000_000;
const T0: i64 = 1_704_081_600_000;
const FIRST_CARD: u64 = 6_200_000_000_000_000;

fn program() -> Program {
    // Every rule that a spend consults is on: ladder, points, tiers, window, reminders.
    let spec: ProgramSpec = serde_json::from_str(
        r#"{"id":"bench","currency":"CNY","utc_offset":"+08:00",
        "bonus_ladder":[{"nth":1,"min":"100","bonus":"15"},{"nth":2,"min":"100","rate":"0.10"},{"nth":3,"min":"100","rate":"0.05"}],
        "bonus_expiry_days":365,"points":{"earn_per_unit":"1","redeem_rate":"100"},
        "tiers":[{"name":"silver","lifetime_top_up":"1000","points_multiplier":"1.5"},{"name":"gold","lifetime_top_up":"5000","points_multiplier":"2","discount":"0.05"}],
        "discount_windows":[{"from":"20:00","to":"24:00","rate":"0.10"}],
        "reminders":{"low_balance":"20","bonus_expiring_days":30}}"#,
    )
    .expect("bench program");
    Program::from_spec(&spec).expect("bench program")
}

fn config() -> StateConfig {
    // Short key TTL and history so a long run stays bounded in memory.
    StateConfig {
        idempotency_ttl_ms: 1_000,
        history_per_card_max: 8,
        ..StateConfig::default()
    }
}

fn card(i: u64) -> CardId {
    CardId(FIRST_CARD + i)
}

/// 1 M cards, each topped up with 3000.00 (first-top-up bonus 15.00).
fn setup(cfg: StateConfig) -> State {
    let mut st = State::new(cfg);
    let mut ev = Vec::new();
    let now = Millis(T0);
    let req = |c| Request {
        idempotency_key: None,
        command: c,
    };
    st.apply(&req(Command::UpsertProgram(program())), now, &mut ev);
    for i in 0..CARDS {
        let c = card(i);
        st.apply(
            &req(Command::OpenCard {
                card_id: c,
                program: "bench".into(),
                registered: true,
                birthday: None,
            }),
            now,
            &mut ev,
        );
        st.apply(
            &req(Command::TopUp {
                card_id: c,
                amount: Amount(300_000),
                channel: Channel::Wechat,
            }),
            now,
            &mut ev,
        );
    }
    st
}

/// Card indices: uniform, or Zipf(1.1) by inverse CDF over the 1 M ranks.
fn choices(zipf: bool) -> Vec<u64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    const N: usize = 1 << 22;
    if !zipf {
        return (0..N).map(|_| rng.gen_range(0..CARDS)).collect();
    }
    let mut cdf = Vec::with_capacity(CARDS as usize);
    let mut s = 0.0f64;
    for k in 1..=CARDS {
        s += (k as f64).powf(-1.1);
        cdf.push(s);
    }
    // Spread hot ranks over the id space so they do not share cache lines by accident.
    (0..N)
        .map(|_| {
            let u = rng.gen::<f64>() * s;
            let rank = cdf.partition_point(|&c| c < u) as u64;
            (rank.wrapping_mul(0x9E37_79B9) ^ 0x5555) % CARDS
        })
        .collect()
}

struct Clock {
    n: i64,
}
impl Clock {
    /// 1 000 requests per simulated millisecond.
    fn tick(&mut self) -> Millis {
        self.n += 1;
        Millis(T0 + self.n / 1000)
    }
}

fn bench_state(c: &mut Criterion) {
    let before = LIVE.load(Relaxed);
    let mut st = setup(config());
    let after = LIVE.load(Relaxed);
    let m = st.memory();
    eprintln!(
        "state: {} cards: {:.1} B/card live heap (one top-up each, one lot, 2 history entries); \
         breakdown per card: cards {:.1}, index {:.1}, timers {:.1}, history {:.1}",
        CARDS,
        (after - before) as f64 / CARDS as f64,
        m.cards as f64 / CARDS as f64,
        m.card_index as f64 / CARDS as f64,
        m.timers as f64 / CARDS as f64,
        m.history as f64 / CARDS as f64,
    );
    let uniform = choices(false);
    let zipf = choices(true);
    let mut ev = Vec::new();

    let mut g = c.benchmark_group("state");
    g.throughput(Throughput::Elements(1));
    for (name, picks) in [("uniform", &uniform), ("zipf1.1", &zipf)] {
        let mut i = 0usize;
        let mut clock = Clock { n: 0 };
        let mut req = Request {
            idempotency_key: None,
            command: Command::Spend {
                card_id: card(0),
                amount: Amount(100),
                method: Method::Qr,
                store: None,
                allow_partial: false,
            },
        };
        g.bench_function(format!("spend/{name}"), |b| {
            b.iter(|| {
                i = (i + 1) & (picks.len() - 1);
                if let Command::Spend { card_id, .. } = &mut req.command {
                    *card_id = card(picks[i]);
                }
                ev.clear();
                st.apply(&req, clock.tick(), &mut ev)
            })
        });
    }
    {
        let mut i = 0usize;
        let mut clock = Clock { n: 10_000_000_000 };
        let mut req = Request {
            idempotency_key: Some(String::with_capacity(24)),
            command: Command::Spend {
                card_id: card(0),
                amount: Amount(100),
                method: Method::Qr,
                store: None,
                allow_partial: false,
            },
        };
        let keys0 = st.key_count();
        g.bench_function("spend_keyed/uniform", |b| {
            b.iter(|| {
                i = (i + 1) & (uniform.len() - 1);
                if let Command::Spend { card_id, .. } = &mut req.command {
                    *card_id = card(uniform[i]);
                }
                let n = clock.n;
                if let Some(k) = req.idempotency_key.as_mut() {
                    k.clear();
                    let _ = write!(k, "key-{n}");
                }
                ev.clear();
                st.apply(&req, clock.tick(), &mut ev)
            })
        });
        let m = st.memory();
        eprintln!(
            "state: {} live keys after keyed spends, {:.1} B/key (table + arrival queue)",
            st.key_count() - keys0,
            m.keys as f64 / st.key_count().max(1) as f64
        );
    }
    {
        let mut i = 0usize;
        let mut clock = Clock { n: 20_000_000_000 };
        let mut req = Request {
            idempotency_key: None,
            command: Command::TopUp {
                card_id: card(0),
                amount: Amount(10_000),
                channel: Channel::Alipay,
            },
        };
        g.bench_function("top_up/uniform", |b| {
            b.iter(|| {
                i = (i + 1) & (uniform.len() - 1);
                if let Command::TopUp { card_id, .. } = &mut req.command {
                    *card_id = card(uniform[i]);
                }
                ev.clear();
                st.apply(&req, clock.tick(), &mut ev)
            })
        });
    }
    {
        let mut i = 0usize;
        let mut clock = Clock { n: 30_000_000_000 };
        let hold = |c| Request {
            idempotency_key: None,
            command: Command::Hold {
                card_id: c,
                amount: Amount(500),
                ttl_seconds: 600,
                method: Method::Card,
                store: None,
                allow_partial: false,
            },
        };
        g.throughput(Throughput::Elements(2));
        g.bench_function("hold+capture/uniform", |b| {
            b.iter(|| {
                i = (i + 1) & (uniform.len() - 1);
                ev.clear();
                let now = clock.tick();
                let r = st.apply(&hold(card(uniform[i])), now, &mut ev);
                let hold_id = match r.outcome {
                    svault_core::outcome::Outcome::Approved(a) => a.txn_id,
                    _ => None,
                };
                let cap = Request {
                    idempotency_key: None,
                    command: Command::Capture {
                        hold_id: hold_id.unwrap_or(TxnId {
                            card: card(0),
                            seq: 1,
                        }),
                        amount: Some(Amount(400)),
                    },
                };
                st.apply(&cap, now, &mut ev)
            })
        });
        g.throughput(Throughput::Elements(1));
    }
    {
        // Incremental authorization: the hold + capture pair with an increment between, so
        // the increment's cost is this per-op figure against hold+capture's.
        let mut i = 0usize;
        let mut clock = Clock { n: 40_000_000_000 };
        let req = |command| Request {
            idempotency_key: None,
            command,
        };
        g.throughput(Throughput::Elements(3));
        g.bench_function("hold+increment+capture/uniform", |b| {
            b.iter(|| {
                i = (i + 1) & (uniform.len() - 1);
                ev.clear();
                let now = clock.tick();
                let r = st.apply(
                    &req(Command::Hold {
                        card_id: card(uniform[i]),
                        amount: Amount(500),
                        ttl_seconds: 600,
                        method: Method::Card,
                        store: None,
                        allow_partial: false,
                    }),
                    now,
                    &mut ev,
                );
                let hold_id = match r.outcome {
                    svault_core::outcome::Outcome::Approved(a) => a.txn_id,
                    _ => None,
                }
                .unwrap_or(TxnId {
                    card: card(0),
                    seq: 1,
                });
                st.apply(
                    &req(Command::IncrementHold {
                        hold_id,
                        amount: Amount(100),
                        ttl_seconds: None,
                    }),
                    now,
                    &mut ev,
                );
                st.apply(
                    &req(Command::Capture {
                        hold_id,
                        amount: Some(Amount(400)),
                    }),
                    now,
                    &mut ev,
                )
            })
        });
        g.throughput(Throughput::Elements(1));
    }
    {
        // Partial approval: a 1.00 top-up then a spend. The baseline spends the 1.00; the
        // partial case asks 100 000.00 with allow_partial and is approved for what the card
        // has (its whole balance the first time, the 1.00 just topped up after).
        let mut clock = Clock { n: 50_000_000_000 };
        let req = |command| Request {
            idempotency_key: None,
            command,
        };
        for (name, asked, allow_partial) in [
            ("top_up+spend/uniform", 100, false),
            ("top_up+spend_partial/uniform", 10_000_000, true),
        ] {
            let mut i = 0usize;
            g.throughput(Throughput::Elements(2));
            g.bench_function(name, |b| {
                b.iter(|| {
                    i = (i + 1) & (uniform.len() - 1);
                    ev.clear();
                    let now = clock.tick();
                    let c = card(uniform[i]);
                    st.apply(
                        &req(Command::TopUp {
                            card_id: c,
                            amount: Amount(100),
                            channel: Channel::Alipay,
                        }),
                        now,
                        &mut ev,
                    );
                    st.apply(
                        &req(Command::Spend {
                            card_id: c,
                            amount: Amount(asked),
                            method: Method::Qr,
                            store: None,
                            allow_partial,
                        }),
                        now,
                        &mut ev,
                    )
                })
            });
        }
        g.throughput(Throughput::Elements(1));
    }
    drop(st);

    // Refunds: every card gets one 2000.00 spend first; each iteration refunds 0.01 of it.
    let mut st = setup(StateConfig {
        history_per_card_max: 64,
        ..config()
    });
    let mut spend_seq = vec![0u32; CARDS as usize];
    for (i, seq) in spend_seq.iter_mut().enumerate() {
        let r = st.apply(
            &Request {
                idempotency_key: None,
                command: Command::Spend {
                    card_id: card(i as u64),
                    amount: Amount(200_000),
                    method: Method::Qr,
                    store: None,
                    allow_partial: false,
                },
            },
            Millis(T0),
            &mut ev,
        );
        if let svault_core::outcome::Outcome::Approved(a) = r.outcome {
            *seq = a.txn_id.map_or(0, |t| t.seq);
        }
    }
    let mut i = 0usize;
    let mut clock = Clock { n: 0 };
    let mut req = Request {
        idempotency_key: None,
        command: Command::Refund {
            txn_id: TxnId {
                card: card(0),
                seq: 0,
            },
            amount: Amount(1),
        },
    };
    g.bench_function("refund/uniform", |b| {
        b.iter(|| {
            i = (i + 1) & (uniform.len() - 1);
            let k = uniform[i];
            if let Command::Refund { txn_id, .. } = &mut req.command {
                *txn_id = TxnId {
                    card: card(k),
                    seq: spend_seq[k as usize],
                };
            }
            ev.clear();
            st.apply(&req, clock.tick(), &mut ev)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_state);
criterion_main!(benches);
