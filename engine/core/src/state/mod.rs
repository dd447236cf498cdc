//! The state machine: pure and deterministic.
//!
//! `apply(request, now)` takes the batch time from outside; no I/O, no clock, no randomness.
//! The runtime logs each `Request` with its `now`; replay feeds them back and reaches the
//! same `digest()`. Nothing here iterates a hash map into an output: ticks run timers in a
//! total order, floats are listed by program id, snapshots list cards in opening order.
//!
//! This file holds [`State`] and `apply` (keys, then the operation, then the answer). Modules:
//! [`card`] (one card), [`lots`] (bonus lots), [`history`] (per-card transactions),
//! [`marketing`] (ladder, discounts, points, split), [`idempotency`] (keys),
//! [`timers`] (deadlines), `ops` (the operations), `tick` (expiries and reminders),
//! `reversal`, `snapshot` (snapshot, restore, digest), `programs` (program slots and lookup),
//! `float` (each program's float), `views` (card views and approvals in replies), `hasher`
//! (the card index's hasher), `prefetch` (cache hints ahead of `apply`), `memory` (counts and
//! heap use).
//!
//! Rules that SPEC.md leaves open, decided here:
//! - **Check order** (SPEC): input → card status → store rule → single cap → daily cap
//!   (amount, then count) → balance cap → velocity → funds. For spends, holds and increments
//!   the single cap is `spend.max_single` and the daily caps `velocity.max_daily_spend`
//!   (`velocity_limit`) and `spend.max_daily_count`, all on what is charged (after discount);
//!   an increment is checked and counted like a spend of its amount at its hold's store.
//! - **Partial approval** (`allow_partial` on spends and holds): funds short but not zero ⇒
//!   approved for the available balance (the largest merchant amount whose discounted price
//!   fits); discount, points and the principal/bonus split follow the approved amount. The
//!   answer says `partial` and the `requested` (merchant) amount; every other check declines as
//!   without it. A frozen card declines top-ups, spends, holds, redeems and cash-outs
//!   (`card_frozen`) but still settles what it authorized earlier: captures, voids and refunds
//!   go through. A closed card declines everything (`card_closed`).
//! - **Balance cap** (SPEC) applies to top-ups only and limits principal: principal + the
//!   top-up must stay within the cap (registered or anonymous); bonus never counts. Refunds,
//!   grants and redeems are not capped (they give back or give away).
//! - **Rules by record version**: a rule change that would alter what a logged request did
//!   applies only to requests logged under the new rules ([`Rules`]); records written before
//!   are decided as they were (see `Rules::Original` for what differed).
//! - **The 10^12 bound** (SPEC "Money"): no balance, lifetime total, daily counter, points
//!   or program float (per shard) passes 10^12 major units. An operation that would is declined
//!   `over_amount_limit`, checked last, before anything changes (`Parts::room_for`); a hold
//!   is bounded as if captured. `Amount` arithmetic panics on overflow in every build, and the
//!   card invariants are asserted after every operation in release builds too.
//! - **Daily caps** use the program's local day. The per-minute velocity counts approved spends
//!   and holds in the current UTC minute (a fixed window); `max_daily_spend` counts what spends
//!   and holds charged that local day.
//! - **Discounts**: tier and time window do not stack, the larger applies (the tier's on a
//!   tie); half-even; the answer names it (`discount_source`). Holds, and captures of holds
//!   placed under the current rules, take merchant amounts before discount; the rate is fixed
//!   by the hold (kept in the hold's history entry) and each capture is discounted at it.
//! - **Points**: floor to whole points on earning; refunds take back points pro rata
//!   (cumulative half-even), never below zero (points already redeemed stay redeemed).
//! - **Bonus lots** expire at the local midnight ending day `bonus_expiry_days` after the day of
//!   credit; bonus is drawn from the earliest-expiring lot first. A refund returns bonus to a
//!   lot with the expiry of the latest lot the spend drew from. Bonus that backs an active hold
//!   does not expire until the hold is released (then it expires at once).
//! - **Cash-out** needs no active holds. `consumer` pays min(principal, max(0, paid_in −
//!   consumed)); `merchant_fault` pays the principal a proportional split would have left,
//!   whatever the spend order: paid_in − consumed × paid_in ÷ (paid_in + bonus_given),
//!   at most what the card holds (paid from principal, then bonus); both are declined `refund_locked`
//!   while principal from top-ups of the last `refund_lock_days` is unused (consumption is
//!   attributed to the oldest principal first). Both forfeit the rest and close the card.
//!   `cooling_off` needs a top-up in the last 7 days and pays the unused principal of those
//!   top-ups in full (min(principal, their sum)), forfeits all bonus; the card stays active if
//!   older principal remains, and is closed otherwise.
//! - **Close** needs no principal and no holds (cash out first); remaining bonus is forfeited.
//! - **Reversal** (of the caller's own request, by idempotency key, on one card): see `reversal`.
//! - **Events**: low balance when any approved operation (or an expiry in a tick) takes
//!   `available` from at/above the threshold to below it, once per crossing; bonus expiring
//!   once per lot; anomalies: velocity breach (on a
//!   per-minute decline), quick cash-out (within 10 minutes of a top-up), repeated declines
//!   (the third decline in a row on a card).
//! - **Idempotent replays** return the first answer again: the stored decision, transaction
//!   id and amounts, and the card as that answer showed it (a key remembers the card's figures;
//!   a tier is shown by its place in the program's tier list, so a program change that renames
//!   tiers renames them in replays too). Keys are namespaced by caller and card.
//!
//! What an [`Approval`] carries, by kind (all amounts in minor units):
//! - top-up: `amount` = `principal` = money credited, `bonus` = `bonus_granted` = ladder bonus;
//! - spend: `amount` = charged after `discount` (`discount_source`), split into `principal` +
//!   `bonus` taken; `points_earned`; capture likewise, plus `released` (held − charged);
//! - hold: `amount` = held (after discount), `discount`, `expires_at`; void and hold expiry:
//!   `released`;
//! - refund: `principal` + `bonus` returned, `points_spent` = points taken back;
//! - cash-out: `amount` = cash paid out, `principal` + `bonus` = removed from the card,
//!   `forfeited` = bonus not paid out, `retained` = principal not paid out;
//!   close: `bonus` = `forfeited` = bonus dropped;
//! - redeem: `bonus_granted`, `points_spent`; grant: `bonus_granted`, `points_earned`;
//! - reversal: `reversed_txn`, `amount`/`principal`/`bonus` = the **signed** change to the
//!   card (negative when an undone top-up, refund, redeem or grant is taken back), points
//!   given back in `points_earned`, taken back in `points_spent`, `released` for a voided
//!   hold; a reversal of nothing has no `txn_id` and no card; a second reversal of the same
//!   request answers the first one's transaction again;
//! - tick (`TxnKind::Tick`): `released` = holds released, `forfeited` = bonus expired.

mod card;
mod float;
mod hasher;
mod history;
mod idempotency;
mod key_pack;
mod lots;
mod marketing;
mod memory;
mod ops;
mod packed_history;
mod parted;
mod prefetch;
mod programs;
mod reversal;
mod snapshot;
mod stores;
mod tick;
mod timers;
mod varint;
mod views;

use crate::command::{CallerId, CardId, Command, Millis, Query, Request};
use crate::money::Amount;
use crate::outcome::{
    CardView, DeclineCode, Event, EventKind, NotFoundKind, Outcome, Rejection, Reply, TxnKind,
};
use card::Card;
use history::TxnEntry;
use idempotency::{
    KeyEntry, KeyTable, ShownCard, Stored, K_CARD_AS_NOW, K_FP_V3, K_REVERSED, K_SHOWN,
};
use std::collections::HashMap;
use std::sync::Arc;
use stores::Stores;
use timers::Timers;

pub use hasher::IdBuild;
pub use memory::MemoryUse;
pub(crate) use programs::ProgramSlot;
pub use snapshot::{Frozen, Leftover, SNAPSHOT_VERSION};

/// The money rules a request is decided by.
///
/// Why: the log holds requests, not outcomes, so a rule that changes what a request does would
/// change what an old log replays to. Each log record names the rules it was written under (its
/// layout version, `record::rules_of`), and `apply_under` decides it by those rules: a
/// log written before a rule change replays to the balances it gave then, and records written
/// after it follow the new rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Rules {
    /// Log records of layout versions 1 and 2: the balance cap counted principal + bonus,
    /// `merchant_fault` paid the principal left whatever the spend order, low-balance reminders
    /// came from spends and captures only, captures were in held (discounted) amounts, a
    /// reversed capture left its hold captured, a second reversal answered with nothing.
    Original,
    /// SPEC as it stands (log records from layout version 3).
    #[default]
    Current,
}

/// Limits of one shard's state. They change what `apply` answers (a key forgotten, a history
/// trimmed), so a data directory records the ones it runs with (`runtime::meta`) and replay
/// uses those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// How long an idempotency key is remembered (SPEC: at least 24 h).
    pub idempotency_ttl_ms: i64,
    /// Hard cap on remembered keys per shard; beyond it the oldest are forgotten before their
    /// TTL (a key costs ~120 B, so the default 16 Mi keys is ~2 GB per shard). This is the one
    /// place where SPEC's "keys live at least 24 h" yields to a memory bound: at sustained rates
    /// above cap ÷ 24 h per shard, keys live less than a day.
    pub idempotency_keys_max: usize,
    /// A card's history is trimmed (oldest half, if older than the key TTL) beyond this.
    pub history_per_card_max: usize,
    /// Most timers (hold expiries, bonus lot expiries, reminders) one tick handles. A tick is
    /// one apply on the shard thread, and with the demo program every bonus lot of a shard
    /// expires at the same local midnight: unbounded, that one apply would stop the shard for
    /// seconds. The rest stay due and the shard logs the next tick right after; replay, with
    /// the same bound from `meta`, handles the same timers in each tick. [`StateConfig::UNBOUNDED`]
    /// for data written before the bound existed (its ticks handled every due timer).
    pub timers_per_tick_max: usize,
}

impl StateConfig {
    /// `timers_per_tick_max` of logs written before ticks were bounded.
    pub const UNBOUNDED: usize = usize::MAX;
    /// Default `timers_per_tick_max`: about a millisecond or two of expiries per tick.
    pub const TIMERS_PER_TICK_DEFAULT: usize = 2048;

    /// The config a directory written before the state config was recorded ran with: the
    /// defaults of then, which had no tick bound.
    pub fn as_first_recorded() -> StateConfig {
        StateConfig {
            timers_per_tick_max: StateConfig::UNBOUNDED,
            ..StateConfig::default()
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            idempotency_ttl_ms: 24 * 3600 * 1000,
            idempotency_keys_max: 16 << 20,
            history_per_card_max: 1024,
            timers_per_tick_max: StateConfig::TIMERS_PER_TICK_DEFAULT,
        }
    }
}

/// The answer to a read.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryAnswer {
    Card(Option<crate::outcome::CardView>),
    Transactions(Option<Vec<crate::outcome::TxnRecord>>),
}

/// Cards are stored in fixed-size chunks so the table never doubles (and never moves). Each
/// chunk is shared (`Arc`) so a snapshot can freeze the whole table in microseconds
/// ([`State::freeze`]); a chunk the snapshot still holds is copied on its first write
/// ([`State::chunk_mut`]). 256 cards: one copy (cards and their histories) takes tens of
/// microseconds. With 4 Ki cards a copy took about a millisecond, and right after a freeze
/// nearly every request copies one: a shard of 4 M cards served 264 to 1 357 spends in the
/// first second after a freeze instead of ~300 k (`snapshot_stall`), and at 10 M cards the
/// copies alone are seconds of work that requests queued behind.
const CHUNK_BITS: u32 = 8;
const CHUNK: usize = 1 << CHUNK_BITS;

/// An active hold: what it reserves and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Hold {
    pub amount: Amount,
    pub expires_at: i64,
}

/// All cards, programs, holds, idempotency keys and the float of one shard.
pub struct State {
    config: StateConfig,
    /// Latest batch time seen; a smaller `now` is raised to it (time never goes backwards).
    clock: i64,
    programs: Vec<ProgramSlot>,
    program_index: HashMap<String, u16>,
    chunks: Vec<Arc<Vec<Card>>>,
    card_index: parted::CardIndex,
    holds: HashMap<(u64, u32), Hold, IdBuild>,
    timers: Timers,
    keys: KeyTable,
    /// The stores approved spends and holds named (their history entries hold an index).
    stores: Stores,
    /// The rules of the request being applied (set by `apply_under`; not part of the state).
    rules: Rules,
    /// Timers ticks handled since this value was made (not part of the state: for [`Work`]).
    timers_fired: u64,
    /// Scratch space for keyed requests' fingerprints (not part of the state).
    fp_buf: idempotency::FpBuf,
}

/// Work of the kind that makes one apply slow, counted since the state was made (opened or
/// restored): the runtime compares two readings to say what happened during a slow batch. Not
/// part of the state (no snapshot, no digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Work {
    /// Timers (hold expiries, lot expiries, reminders) ticks handled.
    pub timers_fired: u64,
    /// Inserts that moved a whole part of the card or key index (it grew).
    pub index_rehashes: u64,
}

/// Why an operation did not go through.
pub(crate) enum Fail {
    Decline(DeclineCode),
    Reject(Rejection),
}

impl From<DeclineCode> for Fail {
    fn from(c: DeclineCode) -> Fail {
        Fail::Decline(c)
    }
}

pub(crate) fn invalid(field: &str, reason: &str) -> Fail {
    Fail::Reject(Rejection::Invalid {
        field: field.to_string(),
        reason: reason.to_string(),
    })
}

pub(crate) fn not_found(what: NotFoundKind) -> Fail {
    Fail::Reject(Rejection::NotFound { what })
}

/// An answer as the original rules printed it: a reversal's `amount` unsigned and every
/// point it moved in `points_spent`.
fn original_form(outcome: &mut Outcome) {
    if let Outcome::Approved(a) = outcome {
        if a.kind == TxnKind::Reversal {
            a.amount = Amount(a.amount.0.abs());
            a.points_spent += a.points_earned;
            a.points_earned = 0;
        }
    }
}

/// A partial approval names the amount its request asked for. It is not kept in the history
/// entry: a replay carries the same request (same fingerprint), so it is taken from there.
fn with_requested(outcome: &mut Outcome, cmd: &Command) {
    if let Outcome::Approved(a) = outcome {
        if a.partial {
            if let Command::Spend { amount, .. } | Command::Hold { amount, .. } = cmd {
                a.requested = Some(*amount);
            }
        }
    }
}

/// Threshold of the repeated-declines anomaly.
const REPEATED_DECLINES_AT: u8 = 3;

impl State {
    /// An empty state: no programs, no cards. Replay starts here when there is no snapshot.
    pub fn new(config: StateConfig) -> State {
        State {
            config,
            clock: i64::MIN,
            programs: Vec::new(),
            program_index: HashMap::new(),
            chunks: Vec::new(),
            card_index: parted::Parted::default(),
            holds: HashMap::default(),
            timers: Timers::default(),
            keys: KeyTable::default(),
            stores: Stores::default(),
            rules: Rules::Current,
            timers_fired: 0,
            fp_buf: idempotency::FpBuf::default(),
        }
    }

    /// Ticks' timers and index growth so far (see [`Work`]); O(1).
    pub fn work(&self) -> Work {
        Work {
            timers_fired: self.timers_fired,
            index_rehashes: self.card_index.rehashes() + self.keys.index_rehashes(),
        }
    }

    /// Applies one request of the default caller at batch time `now` under the current rules.
    /// Events produced are appended to `events`.
    pub fn apply(&mut self, request: &Request, now: Millis, events: &mut Vec<Event>) -> Reply {
        self.apply_logged(request, CallerId::DEFAULT, now, Rules::Current, events)
    }

    /// Applies one request of the default caller under `rules`.
    pub fn apply_under(
        &mut self,
        request: &Request,
        now: Millis,
        rules: Rules,
        events: &mut Vec<Event>,
    ) -> Reply {
        self.apply_logged(request, CallerId::DEFAULT, now, rules, events)
    }

    /// Applies one request of `caller` under the current rules.
    pub fn apply_as(
        &mut self,
        request: &Request,
        caller: CallerId,
        now: Millis,
        events: &mut Vec<Event>,
    ) -> Reply {
        self.apply_logged(request, caller, now, Rules::Current, events)
    }

    /// Applies one request as its log record says: of `caller` (its idempotency key is looked
    /// up in the caller's namespace on the request's card), under `rules` (the rules the record
    /// was written under), at batch time `now`. Events produced are appended to `events`.
    pub fn apply_logged(
        &mut self,
        request: &Request,
        caller: CallerId,
        now: Millis,
        rules: Rules,
        events: &mut Vec<Event>,
    ) -> Reply {
        self.rules = rules;
        self.clock = self.clock.max(now.0);
        let now = Millis(self.clock);
        let Some(key) = request.idempotency_key.as_deref() else {
            let mut outcome = self.execute(&request.command, caller, now, events);
            with_requested(&mut outcome, &request.command);
            return Reply {
                outcome,
                replayed: false,
            };
        };
        self.keys.expire(
            now.0,
            self.config.idempotency_ttl_ms,
            self.config.idempotency_keys_max,
        );
        let scope = request.command.card();
        let kh = idempotency::key_hash(caller, scope, key);
        let fp = idempotency::fingerprint(caller, &request.command, &mut self.fp_buf);
        let card = scope.unwrap_or(CardId(0));
        if let Some(e) = self.keys.get(&kh) {
            if e.stored == Stored::ReversedEarly {
                // A reversal got here first: the request is declined and never applied.
                let outcome = Outcome::Declined {
                    code: DeclineCode::Reversed,
                    card: self.view_of(card),
                };
                let (flags, shown) = self.shown_of(card);
                // The key lives from the request's arrival, not the reversal's: a retry within
                // the TTL must find the decline, never execute the request. (The entry keeps its
                // place in the arrival log, so keys behind it may be forgotten later than their
                // TTL, never sooner.)
                self.keys.insert(
                    kh,
                    KeyEntry {
                        fingerprint: fp,
                        card,
                        at: now.0,
                        stored: Stored::Declined,
                        code: DeclineCode::Reversed as u8,
                        flags: (e.flags & !(K_SHOWN | K_FP_V3 | K_CARD_AS_NOW)) | flags,
                        shown,
                        ..e
                    },
                    None,
                );
                return Reply {
                    outcome,
                    replayed: false,
                };
            }
            let same = if e.flags & K_FP_V3 != 0 {
                e.fingerprint == idempotency::fingerprint_v3(&request.command)
            } else {
                e.fingerprint == fp
            };
            if !same {
                return Reply {
                    outcome: Outcome::Rejected(Rejection::IdempotencyKeyReused),
                    replayed: false,
                };
            }
            let mut outcome = self.stored_outcome(kh, &e);
            with_requested(&mut outcome, &request.command);
            return Reply {
                outcome,
                replayed: true,
            };
        }
        let mut outcome = self.execute(&request.command, caller, now, events);
        if self.rules == Rules::Original {
            // Reversal answers are kept whole (side table, snapshot, digest): keep them in the
            // form the original rules gave them, so an old log replays to the same digest.
            original_form(&mut outcome);
        }
        let (stored, seq, code, side) = idempotency::compact(request, &outcome);
        let (flags, shown) = match &outcome {
            Outcome::Approved(a) if a.card.is_some() => self.shown_of(card),
            Outcome::Declined { card: Some(_), .. } => self.shown_of(card),
            _ => (0, ShownCard::NONE),
        };
        let entry = KeyEntry {
            fingerprint: fp,
            card,
            at: now.0,
            seq,
            stored,
            code,
            flags,
            shown,
        };
        debug_assert!(
            side.is_some() || self.stored_outcome_of(&entry, None) == outcome,
            "a replay must repeat the first answer: {outcome:?}"
        );
        self.keys.insert(kh, entry, side);
        with_requested(&mut outcome, &request.command);
        Reply {
            outcome,
            replayed: false,
        }
    }

    /// The card `id` as an answer shows it now, for a key entry: `(K_SHOWN, figures)`, or
    /// `(0, NONE)` when there is no such card.
    fn shown_of(&self, id: CardId) -> (u8, ShownCard) {
        let Some(c) = self.card(id) else {
            return (0, ShownCard::NONE);
        };
        let p = self.program_at(c.program);
        let tier = p
            .tiers
            .iter()
            .rposition(|t| c.paid_in >= t.lifetime_top_up)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(idempotency::NO_TIER);
        let shown = ShownCard {
            principal: c.principal,
            bonus: c.bonus,
            held: c.held,
            points: c.points,
            paid_in: c.paid_in,
            bonus_given: c.bonus_given,
            consumed: c.consumed,
            status: c.status,
            tier,
        };
        (K_SHOWN, shown)
    }

    /// The card view a key entry remembers (`None` when its answer showed no card). Entries
    /// restored from before cards were remembered show the card as it is now.
    fn shown_view(&self, e: &KeyEntry) -> Option<CardView> {
        let c = self.card(e.card)?;
        if e.flags & K_SHOWN == 0 {
            // The answer showed no card (it did not exist yet), unless the entry predates
            // remembered cards.
            return (e.flags & K_CARD_AS_NOW != 0).then(|| self.view(c));
        }
        let s = &e.shown;
        let slot = &self.programs[c.program as usize];
        Some(CardView {
            card_id: c.id,
            program: slot.names.id.clone(),
            currency: slot.program.currency,
            principal: s.principal,
            bonus: s.bonus,
            held: s.held,
            available: s.principal + s.bonus - s.held,
            points: s.points,
            tier: slot.names.tiers.get(usize::from(s.tier)).cloned(),
            status: s.status,
            paid_in: s.paid_in,
            bonus_given: s.bonus_given,
            consumed: s.consumed,
        })
    }

    /// Rebuilds the answer stored for a key: the first answer again, the card as it was then.
    fn stored_outcome(&self, kh: u128, e: &KeyEntry) -> Outcome {
        self.stored_outcome_of(e, self.keys.side.get(&kh))
    }

    fn stored_outcome_of(&self, e: &KeyEntry, side: Option<&Outcome>) -> Outcome {
        if e.flags & K_REVERSED != 0 {
            return Outcome::Declined {
                code: DeclineCode::Reversed,
                card: self.shown_view(e),
            };
        }
        match e.stored {
            Stored::Txn => {
                let Some(card) = self.card(e.card) else {
                    return Outcome::Rejected(Rejection::NotFound {
                        what: NotFoundKind::Card,
                    });
                };
                match card.entry(e.seq) {
                    Some(entry) => {
                        let mut a = self.approval(card, e.seq, &entry);
                        a.card = self.shown_view(e);
                        Outcome::Approved(Box::new(a))
                    }
                    // Trimmed history (only past the key TTL): answer with what is left.
                    None => Outcome::Rejected(Rejection::NotFound {
                        what: NotFoundKind::Txn,
                    }),
                }
            }
            Stored::Declined => Outcome::Declined {
                code: idempotency::decline_from_u8(e.code),
                card: self.shown_view(e),
            },
            Stored::NotFound => Outcome::Rejected(Rejection::NotFound {
                what: idempotency::not_found_from_u8(e.code),
            }),
            Stored::CardExists => Outcome::Rejected(Rejection::CardExists),
            Stored::Side => side
                .cloned()
                .unwrap_or(Outcome::Rejected(Rejection::NotFound {
                    what: NotFoundKind::IdempotencyKey,
                })),
            Stored::ReversedEarly => Outcome::Declined {
                code: DeclineCode::Reversed,
                card: None,
            },
        }
    }

    fn execute(
        &mut self,
        cmd: &Command,
        caller: CallerId,
        now: Millis,
        events: &mut Vec<Event>,
    ) -> Outcome {
        match cmd {
            Command::UpsertProgram(p) => self.upsert_program(p),
            Command::OpenCard {
                card_id,
                program,
                registered,
                birthday,
            } => self.open_card(*card_id, program, *registered, *birthday, now),
            Command::Reversal { card_id, key } => self.reversal(caller, *card_id, key, now, events),
            Command::Tick => self.tick(now, events),
            _ => {
                let Some(card_id) = cmd.card() else {
                    return Outcome::Rejected(Rejection::NotFound {
                        what: NotFoundKind::Card,
                    });
                };
                let missing = match cmd {
                    Command::Capture { .. }
                    | Command::Void { .. }
                    | Command::IncrementHold { .. } => NotFoundKind::Hold,
                    Command::Refund { .. } => NotFoundKind::Txn,
                    _ => NotFoundKind::Card,
                };
                let Some(&slot) = self.card_index.get(&card_id.0.into()) else {
                    return Outcome::Rejected(Rejection::NotFound { what: missing });
                };
                self.card_op(slot, now, events, |st, slot, ev| {
                    st.card_command(cmd, slot, now, ev)
                })
            }
        }
    }

    /// Runs one operation on the card in `slot`: records the approved entry, keeps the float
    /// in step, counts declines, and builds the answer.
    fn card_op(
        &mut self,
        slot: u32,
        now: Millis,
        events: &mut Vec<Event>,
        op: impl FnOnce(&mut State, u32, &mut Vec<Event>) -> Result<TxnEntry, Fail>,
    ) -> Outcome {
        let before = self.float_part(slot);
        let available_before = self.card_at(slot).available();
        let result = op(self, slot, events);
        if result.is_ok() && self.rules == Rules::Current {
            // SPEC: any operation that takes `available` below the threshold reminds once.
            self.parts(slot)
                .remind_low_balance(available_before, now.0, events);
        }
        let after = self.float_part(slot);
        self.shift_float(slot, before, after);
        let hist_max = self.config.history_per_card_max;
        let keep = self.config.idempotency_ttl_ms;
        let max = self.max_amount_of(slot);
        let card = self.card_at_mut(slot);
        card.check(max);
        match result {
            Ok(entry) => {
                card.decline_streak = 0;
                let id = card.push(entry, hist_max, keep);
                let card = self.card_at(slot);
                Outcome::Approved(Box::new(self.approval(card, id.seq, &entry)))
            }
            Err(Fail::Decline(code)) => {
                card.decline_streak = card.decline_streak.saturating_add(1);
                if card.decline_streak == REPEATED_DECLINES_AT {
                    events.push(Event {
                        at: now,
                        card_id: card.id,
                        kind: EventKind::RepeatedDeclines {
                            count: u32::from(REPEATED_DECLINES_AT),
                        },
                    });
                }
                let card = self.card_at(slot);
                Outcome::Declined {
                    code,
                    card: Some(self.view(card)),
                }
            }
            Err(Fail::Reject(r)) => Outcome::Rejected(r),
        }
    }

    /// The 10^12 bound in the currency of the card in `slot`.
    pub(crate) fn max_amount_of(&self, slot: u32) -> Amount {
        self.program_at(self.card_at(slot).program)
            .currency
            .max_amount()
    }

    pub(crate) fn card_at(&self, slot: u32) -> &Card {
        &self.chunks[(slot >> CHUNK_BITS) as usize][slot as usize & (CHUNK - 1)]
    }

    /// Where the shared header of a card's chunk lives (its counts and its table's pointer):
    /// every access to the card reads it first, so prefetching starts there.
    pub(crate) fn chunk_header(&self, slot: u32) -> *const u8 {
        Arc::as_ptr(&self.chunks[(slot >> CHUNK_BITS) as usize]).cast()
    }

    pub(crate) fn card_at_mut(&mut self, slot: u32) -> &mut Card {
        &mut Self::chunk_mut(&mut self.chunks, (slot >> CHUNK_BITS) as usize)
            [slot as usize & (CHUNK - 1)]
    }

    /// The chunk for writing: copied first when a frozen snapshot still shares it (each chunk
    /// at most once per snapshot; the copy keeps the full chunk capacity so pushes never move).
    pub(crate) fn chunk_mut(chunks: &mut [Arc<Vec<Card>>], c: usize) -> &mut Vec<Card> {
        let shared = &mut chunks[c];
        if Arc::get_mut(shared).is_none() {
            let mut copy = Vec::with_capacity(CHUNK);
            copy.extend(shared.iter().cloned());
            *shared = Arc::new(copy);
        }
        // Cannot fail: either it was unique, or it was just replaced by a fresh Arc.
        Arc::get_mut(shared).expect("chunk is unique after copy-on-write")
    }

    pub(crate) fn card(&self, id: CardId) -> Option<&Card> {
        self.card_index.get(&id.0.into()).map(|&s| self.card_at(s))
    }

    fn push_card(&mut self, card: Card) -> u32 {
        let n = self.card_index.len();
        if n.is_multiple_of(CHUNK) {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let id = card.id.0;
        let last = self.chunks.len() - 1;
        Self::chunk_mut(&mut self.chunks, last).push(card);
        self.card_index.insert(id.into(), n as u32);
        n as u32
    }

    fn cards(&self) -> impl Iterator<Item = &Card> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    fn open_card(
        &mut self,
        card_id: CardId,
        program: &str,
        registered: bool,
        birthday: Option<crate::command::MonthDay>,
        now: Millis,
    ) -> Outcome {
        let Some(&p) = self.program_index.get(program) else {
            return Outcome::Rejected(Rejection::NotFound {
                what: NotFoundKind::Program,
            });
        };
        if self.card_index.contains_key(&card_id.0.into()) {
            return Outcome::Rejected(Rejection::CardExists);
        }
        if let Some(b) = birthday {
            if !(1..=12).contains(&b.month) || !(1..=31).contains(&b.day) {
                return Outcome::Rejected(Rejection::Invalid {
                    field: "birthday".to_string(),
                    reason: "not a month and day".to_string(),
                });
            }
        }
        let slot = self.push_card(Card::new(card_id, p, registered, birthday));
        if let Some(ps) = self.programs.get_mut(p as usize) {
            ps.float.cards += 1;
        }
        self.card_op(slot, now, &mut Vec::new(), |_, _, _| {
            Ok(TxnEntry::new(TxnKind::Open, now))
        })
    }

    /// `true` when a `Command::Tick` at `now` would expire or remind something. May say `true`
    /// once for a deadline that became moot (a hold captured before it expired); that Tick
    /// then changes nothing but the timer list.
    pub fn tick_due(&self, now: Millis) -> bool {
        self.timers
            .next_at()
            .is_some_and(|t| t <= now.0.max(self.clock))
    }

    /// Answers a read (a card, a page of its history) without changing anything; reads are never
    /// logged.
    pub fn query(&self, query: &Query, now: Millis) -> QueryAnswer {
        let _ = now;
        match query {
            Query::Card { card_id } => QueryAnswer::Card(self.view_of(*card_id)),
            Query::Transactions {
                card_id,
                limit,
                before,
            } => QueryAnswer::Transactions(self.card(*card_id).map(|c| {
                let first = c.hist_first_seq;
                let end = before.map_or(c.history.len(), |b| {
                    (b.saturating_sub(first) as usize).min(c.history.len())
                });
                c.history
                    .to_vec()
                    .get(..end)
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                    .rev()
                    .take(*limit as usize)
                    .map(|(i, e)| self.txn_record(c, first + i as u32, e))
                    .collect()
            })),
        }
    }
}

/// Why [`State::restore`] refused a snapshot's bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("snapshot is invalid: {0}")]
    InvalidSnapshot(String),
}

#[cfg(test)]
mod scope_tests;
#[cfg(test)]
mod tests;
