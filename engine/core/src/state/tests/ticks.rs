//! Bounded ticks: one tick handles at most `timers_per_tick_max` timers, what is left stays
//! due and the following ticks finish it, and a replay of the same log (ticks included)
//! reaches the same state.

use super::*;

/// One-day bonus: every card topped up at the same instant has its lot expire at the same one.
const GYM: &str = r#"{"id":"gym","currency":"CNY","utc_offset":"+00:00",
    "bonus_ladder":[{"nth":1,"min":"50","bonus":"5"}],"bonus_expiry_days":1}"#;

/// Applies `command` at `now` and keeps the request, as the log would.
fn logged(st: &mut State, log: &mut Vec<(Request, i64)>, now: i64, command: Command) -> Outcome {
    let r = Request {
        idempotency_key: None,
        command,
    };
    let out = st.apply(&r, Millis(now), &mut Vec::new()).outcome;
    log.push((r, now));
    out
}

/// Opens `cards` gym cards and tops each up at `T0`; then ticks two days later until nothing is
/// due. Returns the bonus-expired events of each tick, the state and the log.
fn expire_all(cards: u64, bound: usize) -> (Vec<usize>, State, Vec<(Request, i64)>) {
    let config = StateConfig {
        timers_per_tick_max: bound,
        ..StateConfig::default()
    };
    let mut st = State::new(config);
    let mut log = Vec::new();
    let spec: ProgramSpec = serde_json::from_str(GYM).unwrap();
    let program = Command::UpsertProgram(Program::from_spec(&spec).unwrap());
    assert!(matches!(
        logged(&mut st, &mut log, T0, program),
        Outcome::Approved(_)
    ));
    for c in 1..=cards {
        let open = Command::OpenCard {
            card_id: CardId(c),
            program: "gym".into(),
            registered: true,
            birthday: None,
        };
        assert!(matches!(
            logged(&mut st, &mut log, T0, open),
            Outcome::Approved(_)
        ));
        let top_up = Command::TopUp {
            card_id: CardId(c),
            amount: y(100),
            channel: Channel::Wechat,
        };
        assert!(matches!(
            logged(&mut st, &mut log, T0, top_up),
            Outcome::Approved(_)
        ));
    }
    assert_eq!(st.float()[0].1.bonus, y(5 * cards as i64));
    let later = T0 + 2 * DAY;
    let mut per_tick = Vec::new();
    while st.tick_due(Millis(later)) {
        let mut ev = Vec::new();
        let r = Request {
            idempotency_key: None,
            command: Command::Tick,
        };
        st.apply(&r, Millis(later), &mut ev);
        log.push((r, later));
        per_tick.push(
            ev.iter()
                .filter(|e| matches!(e.kind, EventKind::BonusExpired { .. }))
                .count(),
        );
        assert!(per_tick.len() <= cards as usize, "ticks never finish");
    }
    (per_tick, st, log)
}

#[test]
fn a_tick_handles_at_most_its_bound_and_the_next_ticks_finish_the_rest() {
    let (per_tick, st, log) = expire_all(50, 7);
    assert!(per_tick.iter().all(|n| *n <= 7), "{per_tick:?}");
    assert_eq!(per_tick.len(), 50usize.div_ceil(7), "{per_tick:?}");
    assert_eq!(per_tick.iter().sum::<usize>(), 50);
    // Every lot expired in the end: no bonus left, the float agrees.
    assert_eq!(st.float()[0].1.bonus, Amount::ZERO);
    assert_eq!(st.float(), st.float_recomputed());

    // Replay of the same log under the same bound: the same state, bit for bit.
    let mut again = State::new(StateConfig {
        timers_per_tick_max: 7,
        ..StateConfig::default()
    });
    for (r, now) in &log {
        again.apply(r, Millis(*now), &mut Vec::new());
    }
    assert_eq!(again.digest(), st.digest());
}

#[test]
fn an_unbounded_tick_handles_everything_due_at_once() {
    // As ticks did before the bound: what logs written then replay with.
    let (per_tick, _, _) = expire_all(50, StateConfig::UNBOUNDED);
    assert_eq!(per_tick, vec![50]);
}
