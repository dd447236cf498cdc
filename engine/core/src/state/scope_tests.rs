//! Idempotency scopes: a key names one request of one caller on one card; a replay repeats the
//! first answer with the card as it was; a reversal reaches only the caller's own request;
//! version-2 requests keep the unscoped keys they were written with.

use super::*;
use crate::command::{Channel, Method, TxnId};
use crate::program::Program;

const T0: i64 = 1_704_081_600_000;
const A: CallerId = CallerId(11);
const B: CallerId = CallerId(22);

struct T {
    st: State,
    now: i64,
}

impl T {
    fn new() -> T {
        let mut t = T {
            st: State::new(StateConfig::default()),
            now: T0,
        };
        t.as_(
            CallerId::DEFAULT,
            None,
            Command::UpsertProgram(Program::demo()),
        );
        for c in [1, 2, 3] {
            let open = Command::OpenCard {
                card_id: CardId(c),
                program: "demo".into(),
                registered: true,
                birthday: None,
            };
            assert!(matches!(
                t.as_(CallerId::DEFAULT, None, open).outcome,
                Outcome::Approved(_)
            ));
        }
        t
    }
    fn as_(&mut self, caller: CallerId, key: Option<&str>, command: Command) -> Reply {
        self.now += 1000;
        let request = Request {
            idempotency_key: key.map(str::to_string),
            command,
        };
        self.st
            .apply_as(&request, caller, Millis(self.now), &mut Vec::new())
    }
    fn available(&self, c: u64) -> Amount {
        match self
            .st
            .query(&Query::Card { card_id: CardId(c) }, Millis(self.now))
        {
            QueryAnswer::Card(Some(v)) => v.available,
            a => panic!("{a:?}"),
        }
    }
}

fn top_up(card: u64, yuan: i64) -> Command {
    Command::TopUp {
        card_id: CardId(card),
        amount: Amount(yuan * 100),
        channel: Channel::Wechat,
    }
}

fn spend(card: u64, yuan: i64) -> Command {
    Command::Spend {
        card_id: CardId(card),
        amount: Amount(yuan * 100),
        method: Method::Qr,
        store: None,
        allow_partial: false,
    }
}

fn txn(r: &Reply) -> Option<TxnId> {
    match &r.outcome {
        Outcome::Approved(a) => a.txn_id,
        o => panic!("{o:?}"),
    }
}

#[test]
fn keys_are_namespaced_by_caller_and_by_card() {
    let mut t = T::new();
    let a = t.as_(A, Some("k"), top_up(1, 10));
    let b = t.as_(B, Some("k"), top_up(1, 20));
    assert!(!b.replayed);
    assert_ne!(txn(&a), txn(&b), "two callers, one key: two requests");
    let other_card = t.as_(A, Some("k"), top_up(2, 30));
    assert!(
        !other_card.replayed,
        "one caller, one key, two cards: two requests"
    );
    assert_eq!(
        t.available(2),
        Amount(3000),
        "below the ladder minimum: no bonus"
    );
    // Each caller's retry is its own replay; a different body under its key is a conflict.
    assert_eq!(t.as_(A, Some("k"), top_up(1, 10)).outcome, a.outcome);
    assert!(t.as_(B, Some("k"), top_up(1, 20)).replayed);
    assert_eq!(
        t.as_(B, Some("k"), top_up(1, 21)).outcome,
        Outcome::Rejected(Rejection::IdempotencyKeyReused)
    );
    // Program changes are a scope of their own: the same key names no card request.
    let p = t.as_(A, Some("k"), Command::UpsertProgram(Program::demo()));
    assert!(!p.replayed && matches!(p.outcome, Outcome::Approved(_)));
}

#[test]
fn a_replay_shows_the_card_as_the_first_answer_showed_it() {
    let mut t = T::new();
    let first = t.as_(A, Some("t"), top_up(1, 100));
    let declined = t.as_(A, Some("big"), spend(1, 1000));
    assert!(matches!(declined.outcome, Outcome::Declined { .. }));
    t.as_(A, Some("s"), spend(1, 30));
    t.as_(A, Some("t2"), top_up(1, 5000));
    let again = t.as_(A, Some("t"), top_up(1, 100));
    assert!(again.replayed);
    assert_eq!(
        again.outcome, first.outcome,
        "the tier, balances and totals of then"
    );
    let again = t.as_(A, Some("big"), spend(1, 1000));
    assert_eq!(again.outcome, declined.outcome);
    // Through a snapshot too.
    let restored = State::restore(&t.st.snapshot(), StateConfig::default()).unwrap();
    t.st = restored;
    assert_eq!(t.as_(A, Some("t"), top_up(1, 100)).outcome, first.outcome);
}

#[test]
fn a_reversal_reaches_only_the_callers_own_request_on_its_card() {
    let mut t = T::new();
    t.as_(A, Some("t"), top_up(1, 100));
    let s = t.as_(A, Some("s"), spend(1, 10));
    let after = t.available(1);
    let reverse = |card: u64| Command::Reversal {
        card_id: CardId(card),
        key: "s".into(),
    };
    // B names A's key: nothing of A's moves, and B's answer is that of an unknown key.
    let rb = t.as_(B, Some("rb"), reverse(1));
    let unknown = t.as_(
        B,
        Some("ru"),
        Command::Reversal {
            card_id: CardId(1),
            key: "never-used".into(),
        },
    );
    match (&rb.outcome, &unknown.outcome) {
        (Outcome::Approved(x), Outcome::Approved(y)) => {
            assert_eq!((x.reversed_txn, &x.card), (None, &None));
            assert_eq!((y.reversed_txn, &y.card), (None, &None));
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(t.available(1), after);
    // A on another card: nothing either.
    let wrong = t.as_(A, Some("rw"), reverse(2));
    assert!(matches!(&wrong.outcome, Outcome::Approved(a) if a.reversed_txn.is_none()));
    assert_eq!(t.available(1), after);
    // A on the card: undone.
    let ra = t.as_(A, Some("ra"), reverse(1));
    match &ra.outcome {
        Outcome::Approved(a) => assert_eq!(a.reversed_txn, txn(&s)),
        o => panic!("{o:?}"),
    }
    assert_eq!(t.available(1), Amount(11_500));
    // B's own later "s" is the request B reversed early.
    assert!(matches!(
        t.as_(B, Some("s"), spend(1, 10)).outcome,
        Outcome::Declined {
            code: DeclineCode::Reversed,
            ..
        }
    ));
}

#[test]
fn version_2_requests_keep_the_unscoped_keys_they_were_written_with() {
    // A v2 log replays to the answers it gave: one key on two cards of a shard was one
    // request (the second a conflict), and a reversal named only the key.
    let mut t = T::new();
    let u = CallerId::UNSCOPED;
    let first = t.as_(u, Some("k"), top_up(1, 10));
    assert_eq!(
        t.as_(u, Some("k"), top_up(2, 10)).outcome,
        Outcome::Rejected(Rejection::IdempotencyKeyReused)
    );
    let legacy = Command::Reversal {
        card_id: CardId(0),
        key: "k".into(),
    };
    match t.as_(u, Some("r"), legacy).outcome {
        Outcome::Approved(a) => assert_eq!(a.reversed_txn, txn(&first)),
        o => panic!("{o:?}"),
    }
    // Scoped callers never meet those keys.
    assert!(!t.as_(CallerId::DEFAULT, Some("k"), top_up(2, 10)).replayed);
}
