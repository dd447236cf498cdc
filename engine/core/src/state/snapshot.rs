//! Snapshot, restore and digest of one shard's state.
//!
//! Why one canonical form: the digest is the xxh3 of the snapshot bytes, so "same log ⇒ same
//! digest" and "snapshot → restore ⇒ same digest" are the same property. The form lists cards
//! in opening order, holds and timers sorted, keys in arrival order and side answers sorted;
//! nothing comes from hash-map iteration. The float is derived (recomputed on restore).
//! Restore validates with bytecheck (never unchecked access) and then checks the invariants a
//! hostile or corrupt snapshot could break, returning an error instead of panicking.
//!
//! Why [`Frozen`]: serialising millions of cards takes seconds, and a shard must not stop that
//! long. `State::freeze` shares the card chunks (copy-on-write) and copies the small tables, so
//! the shard pauses only for that; the bytes are made from the frozen copy on another thread,
//! identical to what `State::snapshot` would have produced at that instant.

use super::card::Card;
use super::idempotency::{FrozenKeys, KeyEntry, KeyEntryV1, KeyTable, Stored};
use super::timers::{Timer, Timers};
use super::{Hold, ProgramSlot, State, StateConfig, StateError, CHUNK};
use crate::money::Amount;
use crate::outcome::{CardStatus, FloatTotals, Outcome};
use crate::program::v1::ProgramV1;
use crate::program::Program;
use std::collections::HashMap;
use std::sync::Arc;

/// Format version of [`State::snapshot`] bytes.
/// 2: key entries remember the card their answer showed (96 bytes instead of 32). Version-1
///    snapshots still restore (their keys replay with the card as it is now).
/// 3: programs carry their `spend` block, and the shard's store table is kept (`stores`).
///    Cards gained `spend_count_today` and history entries `detail` in what was padding, which
///    rkyv writes as zero: cards of version-1 and -2 snapshots read them as 0 (no count yet
///    today, no channel or method), and those snapshots still restore.
/// 4: same layout as 3; key fingerprints are xxh3 of the command's archive
///    (`idempotency::fingerprint`). The keys of version-1 to -3 snapshots keep their
///    field-by-field fingerprints, flagged `K_FP_V3`, and still match their retries.
pub const SNAPSHOT_VERSION: u32 = 4;

/// The first version whose key fingerprints are today's form.
const FINGERPRINTS_SINCE: u32 = 4;

/// The snapshot form of version 1: as version 2 but for the key entries. Only its archived
/// form is read (and written by the test that pins it).
#[derive(rkyv::Archive, rkyv::Serialize)]
#[allow(dead_code)]
struct SnapV1<C> {
    version: u32,
    clock: i64,
    programs: Vec<ProgramV1>,
    cards: C,
    holds: Vec<(u64, u32, Hold)>,
    timers: Vec<Timer>,
    keys: Vec<(u128, KeyEntryV1)>,
    side: Vec<(u128, Outcome)>,
}

/// The snapshot form of version 2: as version 3 without the store table, with programs in
/// their old layout.
#[derive(rkyv::Archive, rkyv::Serialize)]
#[allow(dead_code)]
struct SnapV2<C> {
    version: u32,
    clock: i64,
    programs: Vec<ProgramV1>,
    cards: C,
    holds: Vec<(u64, u32, Hold)>,
    timers: Vec<Timer>,
    keys: Vec<(u128, KeyEntry)>,
    side: Vec<(u128, Outcome)>,
}

/// The snapshot form. `C` is the card list and `K` the key list: [`SnapRead`] names the archived
/// layout that restore reads; [`AsVec`]s of the card chunks and the key log write the same layout
/// straight from the live tables (no copy of millions of cards or keys).
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Snap<C, K> {
    version: u32,
    clock: i64,
    programs: Vec<Program>,
    cards: C,
    holds: Vec<(u64, u32, Hold)>,
    timers: Vec<Timer>,
    keys: K,
    side: Vec<(u128, Outcome)>,
    /// The store table, in index order.
    stores: Vec<String>,
}

/// The layout [`State::restore`] reads.
type SnapRead = Snap<Vec<Card>, Vec<(u128, KeyEntry)>>;

/// A list archived exactly as a `Vec<T>` would be, serialised from an iterator (walked twice,
/// hence `Clone`) instead of from a collected copy.
struct AsVec<T, I> {
    items: I,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T, I> AsVec<T, I> {
    fn new(items: I) -> Self {
        AsVec {
            items,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: rkyv::Archive, I: ExactSizeIterator> rkyv::Archive for AsVec<T, I> {
    type Archived = rkyv::vec::ArchivedVec<rkyv::Archived<T>>;
    type Resolver = rkyv::vec::VecResolver;
    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::vec::ArchivedVec::resolve_from_len(self.items.len(), resolver, out);
    }
}

impl<S, T, I> rkyv::Serialize<S> for AsVec<T, I>
where
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
    T: rkyv::Serialize<S>,
    I: ExactSizeIterator + Clone,
    I::Item: std::borrow::Borrow<T>,
{
    fn serialize(&self, s: &mut S) -> Result<Self::Resolver, S::Error> {
        rkyv::vec::ArchivedVec::<rkyv::Archived<T>>::serialize_from_iter::<T, _, S>(
            self.items.clone(),
            s,
        )
    }
}

/// An iterator that knows how many items are left (rkyv wants the length up front).
#[derive(Clone)]
struct Counted<I> {
    inner: I,
    left: usize,
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        self.left = self.left.saturating_sub(1);
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: Iterator> ExactSizeIterator for Counted<I> {}

/// The cards of the chunk table in order, archived exactly as a `Vec<Card>` would be.
fn all_cards(
    chunks: &[Arc<Vec<Card>>],
    len: usize,
) -> AsVec<Card, impl ExactSizeIterator<Item = &Card> + Clone + '_> {
    debug_assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), len);
    AsVec::new(Counted {
        inner: chunks.iter().flat_map(|c| c.iter()),
        left: len,
    })
}

/// Everything of a snapshot but the cards and the keys, owned; the keys are read one at a
/// time from the archive (millions of them: a collected copy was most of a restore's
/// transient memory).
struct SnapHead<'a> {
    version: u32,
    clock: i64,
    programs: Vec<Program>,
    stores: Vec<String>,
    holds: Vec<(u64, u32, Hold)>,
    timers: Vec<Timer>,
    keys: ArchivedKeys<'a>,
    side: Vec<(u128, Outcome)>,
}

/// The key entries of an archived snapshot, in today's form, with their number.
type ArchivedKeys<'a> = (
    usize,
    Box<dyn Iterator<Item = Result<(u128, KeyEntry), rkyv::rancor::Error>> + 'a>,
);

fn bad(s: impl Into<String>) -> StateError {
    StateError::InvalidSnapshot(s.into())
}

/// A shard's state frozen at one instant, to be serialised off the shard thread.
///
/// Holds the card chunks shared with the live state (the live state copies a chunk before its
/// first write after the freeze) and private copies of everything else. Dropping it releases
/// the chunks, after which the live state writes in place again.
pub struct Frozen {
    clock: i64,
    programs: Vec<Program>,
    chunks: Vec<Arc<Vec<Card>>>,
    cards: usize,
    holds: HashMap<(u64, u32), Hold, super::IdBuild>,
    timers: Timers,
    keys: FrozenKeys,
    stores: super::stores::Stores,
}

/// What is left of a frozen state once its snapshot is written: its card chunks, for the
/// shard thread to drop a few at a time ([`Leftover::shed`]).
///
/// Why: every chunk the live state wrote to after the freeze is a copy, so the frozen one is
/// the last owner of its cards and their histories, thousands of small blocks that the shard
/// thread allocated. Dropped by the writer thread, they all come back to the shard thread's
/// allocator as frees from another thread, which it collects in one go on a later allocation:
/// stops of up to 77 ms (`snapshot_stall`). Dropped by the shard thread a few chunks
/// per turn, each is a local free and a turn stays under a millisecond.
pub struct Leftover {
    chunks: Vec<Arc<Vec<Card>>>,
}

impl Leftover {
    /// Drops whole card chunks, the last ones first, until at least `cards` cards are gone
    /// (or none are left); whether any are left. Counted in cards, not chunks, so the work of
    /// one call does not depend on the chunk size.
    pub fn shed(&mut self, cards: usize) -> bool {
        let mut dropped = 0;
        while dropped < cards {
            let Some(chunk) = self.chunks.pop() else {
                break;
            };
            dropped += chunk.len().max(1);
        }
        !self.chunks.is_empty()
    }

    /// Card chunks not dropped yet.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }
}

impl Frozen {
    /// Keeps only the card chunks, to be dropped by the shard thread (see [`Leftover`]); the
    /// rest (a few large blocks) is dropped here.
    pub fn into_leftover(self) -> Leftover {
        Leftover {
            chunks: self.chunks,
        }
    }

    /// Cards in the frozen state.
    pub fn cards(&self) -> usize {
        self.cards
    }

    /// The snapshot bytes of the state as it was when frozen (same as `State::snapshot` then).
    pub fn to_bytes(&self) -> Vec<u8> {
        let history: usize = self
            .chunks
            .iter()
            .flat_map(|c| c.iter())
            .map(|c| c.history.len())
            .sum();
        let estimate = self.cards * 224 + history * 72 + self.keys.len() * 56 + 4096;
        let mut out = Vec::with_capacity(estimate);
        // Serialising plain owned data into memory cannot fail short of allocation failure:
        // relative pointers are 64-bit (workspace rkyv feature `pointer_width_64`), so sizes
        // past 2 GiB are addressable.
        self.write_to(&mut out)
            .expect("a snapshot serialises into memory");
        out
    }

    /// Writes [`Frozen::to_bytes`]'s bytes to `out` as they are produced, without holding them:
    /// a large shard's snapshot is gigabytes, and holding it whole (twice, with the file's
    /// header in front) was most of a snapshot's memory. Returns the bytes written; an error
    /// of `out` comes back as it was (a full disk stays `StorageFull`, not a serialiser error).
    pub fn write_to<W: std::io::Write>(&self, out: W) -> std::io::Result<u64> {
        let mut out = KeepError {
            inner: out,
            error: None,
            written: 0,
        };
        let writer = rkyv::ser::writer::IoWriter::new(&mut out);
        match rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&self.snap(), writer) {
            Ok(_) => Ok(out.written),
            Err(e) => Err(out
                .error
                .take()
                .unwrap_or_else(|| std::io::Error::other(e.to_string()))),
        }
    }

    /// The xxh3 of [`Frozen::to_bytes`], hashed as the bytes are produced instead of kept (a
    /// large shard's snapshot is gigabytes).
    pub fn digest(&self) -> u64 {
        let mut hashing = HashWriter(xxhash_rust::xxh3::Xxh3::new());
        // As in `to_bytes`: hashing plain owned data cannot fail.
        self.write_to(&mut hashing)
            .expect("a snapshot serialises into a hash");
        hashing.0.digest()
    }

    /// The canonical snapshot form (see the module doc for the order).
    #[allow(clippy::type_complexity)]
    fn snap(
        &self,
    ) -> Snap<
        AsVec<Card, impl ExactSizeIterator<Item = &Card> + Clone + '_>,
        AsVec<(u128, KeyEntry), impl ExactSizeIterator<Item = (u128, KeyEntry)> + Clone + '_>,
    > {
        let mut holds: Vec<(u64, u32, Hold)> =
            self.holds.iter().map(|(&(c, s), &h)| (c, s, h)).collect();
        holds.sort_unstable_by_key(|h| (h.0, h.1));
        let mut side: Vec<(u128, Outcome)> = self
            .keys
            .side
            .iter()
            .map(|(k, o)| (*k, o.clone()))
            .collect();
        side.sort_unstable_by_key(|s| s.0);
        Snap {
            version: SNAPSHOT_VERSION,
            clock: self.clock,
            programs: self.programs.clone(),
            cards: all_cards(&self.chunks, self.cards),
            holds,
            timers: self.timers.sorted(),
            keys: AsVec::new(Counted {
                inner: self.keys.entries(),
                left: self.keys.len(),
            }),
            side,
            stores: self.stores.names().map(|n| n.to_string()).collect(),
        }
    }
}

/// An `io::Write` that remembers its inner writer's first error, which rkyv would otherwise
/// flatten into a message, and counts what it passed on.
struct KeepError<W> {
    inner: W,
    error: Option<std::io::Error>,
    written: u64,
}

impl<W: std::io::Write> std::io::Write for KeepError<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.inner.write(bytes) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let again = std::io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(again)
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
impl Frozen {
    /// The snapshot bytes made the plain way, from collected copies of the cards and keys: what
    /// the lists streamed from the chunks must reproduce byte for byte.
    pub(crate) fn to_bytes_collected(&self) -> Vec<u8> {
        let s = self.snap();
        let collected: SnapRead = Snap {
            version: s.version,
            clock: s.clock,
            programs: s.programs,
            cards: self.chunks.iter().flat_map(|c| c.iter().cloned()).collect(),
            holds: s.holds,
            timers: s.timers,
            keys: self.keys.entries().collect(),
            side: s.side,
            stores: s.stores,
        };
        rkyv::to_bytes::<rkyv::rancor::Error>(&collected)
            .expect("a snapshot serialises into memory")
            .into_vec()
    }
}

/// A writer that hashes the bytes instead of keeping them: [`Frozen::write_to`] produces the
/// same bytes whatever it writes to, so the hash is that of the bytes `to_bytes` returns.
struct HashWriter(xxhash_rust::xxh3::Xxh3);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl State {
    /// Freezes the state for a snapshot made elsewhere: O(chunks) for the cards plus a copy of
    /// the hold, timer and key tables. This is the whole pause a snapshot costs the shard.
    pub fn freeze(&self) -> Frozen {
        Frozen {
            clock: self.clock,
            programs: self.programs.iter().map(|p| p.program.clone()).collect(),
            chunks: self.chunks.clone(),
            cards: self.card_index.len(),
            holds: self.holds.clone(),
            timers: self.timers.clone(),
            keys: self.keys.freeze(),
            stores: self.stores.clone(),
        }
    }

    /// Serialises the whole state for a snapshot (a freeze, serialised at once).
    pub fn snapshot(&self) -> Vec<u8> {
        self.freeze().to_bytes()
    }

    /// A hash of the whole state: same log ⇒ same digest. It is the xxh3 of
    /// [`State::snapshot`]'s bytes.
    pub fn digest(&self) -> u64 {
        self.freeze().digest()
    }

    /// Restores a state from `snapshot` bytes, validating them.
    pub fn restore(bytes: &[u8], config: StateConfig) -> Result<State, StateError> {
        // Validate in place when the bytes are already aligned (a mapped or freshly read file
        // usually is); copy only otherwise. Cards are then deserialised one at a time, so the
        // peak is the snapshot bytes plus the state, not a second owned copy of every card.
        let copy;
        let buf: &[u8] = if (bytes.as_ptr() as usize).is_multiple_of(16) {
            bytes
        } else {
            let mut a = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
            a.extend_from_slice(bytes);
            copy = a;
            &copy
        };
        let de = |e: rkyv::rancor::Error| bad(e.to_string());
        // The head of any layout, with its programs and key entries in today's form.
        macro_rules! head {
            ($arch:expr, $program:ty, $entry:ty, $stores:expr) => {
                SnapHead {
                    version: $arch.version.to_native(),
                    clock: $arch.clock.to_native(),
                    programs: $arch
                        .programs
                        .iter()
                        .map(rkyv::deserialize::<$program, rkyv::rancor::Error>)
                        .map(|p| p.map(Program::from))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(de)?,
                    stores: $stores,
                    holds: rkyv::deserialize::<Vec<(u64, u32, Hold)>, rkyv::rancor::Error>(
                        &$arch.holds,
                    )
                    .map_err(de)?,
                    timers: rkyv::deserialize::<Vec<Timer>, rkyv::rancor::Error>(&$arch.timers)
                        .map_err(de)?,
                    keys: (
                        $arch.keys.len(),
                        Box::new($arch.keys.iter().map(|a| {
                            rkyv::deserialize::<(u128, $entry), rkyv::rancor::Error>(a)
                                .map(|(k, e)| (k, KeyEntry::from(e)))
                        })),
                    ),
                    side: rkyv::deserialize::<Vec<(u128, Outcome)>, rkyv::rancor::Error>(
                        &$arch.side,
                    )
                    .map_err(de)?,
                }
            };
        }
        let current = rkyv::access::<rkyv::Archived<SnapRead>, rkyv::rancor::Error>(buf);
        let v2 = || rkyv::access::<ArchivedSnapV2<Vec<Card>>, rkyv::rancor::Error>(buf);
        let v1 = || rkyv::access::<ArchivedSnapV1<Vec<Card>>, rkyv::rancor::Error>(buf);
        let (snap, arch_cards) = match current {
            Ok(arch) if (3..=SNAPSHOT_VERSION).contains(&arch.version.to_native()) => {
                let stores = rkyv::deserialize::<Vec<String>, rkyv::rancor::Error>(&arch.stores)
                    .map_err(de)?;
                (head!(arch, Program, KeyEntry, stores), &arch.cards)
            }
            other => match (v2(), v1()) {
                (Ok(arch), _) if arch.version.to_native() == 2 => {
                    (head!(arch, ProgramV1, KeyEntry, Vec::new()), &arch.cards)
                }
                (_, Ok(arch)) if arch.version.to_native() == 1 => {
                    (head!(arch, ProgramV1, KeyEntryV1, Vec::new()), &arch.cards)
                }
                _ => {
                    return Err(match other {
                        Ok(arch) => bad(format!(
                            "version {} (expected 1 to {SNAPSHOT_VERSION})",
                            arch.version.to_native()
                        )),
                        Err(e) => bad(e.to_string()),
                    })
                }
            },
        };
        debug_assert!((1..=SNAPSHOT_VERSION).contains(&snap.version));
        let cards = arch_cards
            .iter()
            .map(|c| rkyv::deserialize::<Card, rkyv::rancor::Error>(c).map_err(de));
        let mut st = State::new(config);
        st.clock = snap.clock;
        st.stores = super::stores::Stores::from_names(snap.stores)
            .ok_or_else(|| bad("store table repeats a store or is too long"))?;
        for p in snap.programs {
            if st.program_index.contains_key(&p.id) {
                return Err(bad(format!("program {} twice", p.id)));
            }
            let i = u16::try_from(st.programs.len()).map_err(|_| bad("too many programs"))?;
            st.program_index.insert(p.id.clone(), i);
            st.programs.push(ProgramSlot::new(p));
        }
        // Size the tables once: growing a multi-million-entry hash table rehashes it each time.
        st.chunks.reserve((arch_cards.len()).div_ceil(CHUNK));
        st.card_index.reserve(arch_cards.len());
        for c in cards {
            let c = c?;
            if usize::from(c.program) >= st.programs.len() {
                return Err(bad(format!("card {} names program #{}", c.id, c.program)));
            }
            if st.card_index.contains_key(&c.id.0.into()) {
                return Err(bad(format!("card {} twice", c.id)));
            }
            let seq_end = u64::from(c.hist_first_seq) + c.history.len() as u64;
            if seq_end > u64::from(u32::MAX) || c.hist_first_seq == 0 {
                return Err(bad(format!("card {} history numbering out of range", c.id)));
            }
            // `valid` first: it sums the lots without overflowing, which `broken` relies on.
            if !c.lots.valid() {
                return Err(bad(format!("card {} lots inconsistent", c.id)));
            }
            let program = &st.programs[usize::from(c.program)];
            if let Some(why) = c.broken(program.program.currency.max_amount()) {
                return Err(bad(format!("card {}: {why}", c.id)));
            }
            st.push_card(c);
        }
        for (card, seq, h) in snap.holds {
            if !st.card_index.contains_key(&card.into()) {
                return Err(bad(format!("hold on unknown card {card}")));
            }
            st.holds.insert((card, seq), h);
        }
        st.timers = Timers::from_sorted(snap.timers);
        let mut keys = KeyTable::default();
        let (key_count, archived_keys) = snap.keys;
        keys.reserve(key_count);
        for entry in archived_keys {
            let (k, mut e) = entry.map_err(de)?;
            if snap.version < FINGERPRINTS_SINCE {
                e.flags |= super::idempotency::K_FP_V3;
            }
            keys.insert(k, e, None);
        }
        for (k, o) in snap.side {
            if keys.get(&k).map(|e| e.stored) != Some(Stored::Side) {
                return Err(bad("side answer without its key"));
            }
            keys.side.insert(k, o);
        }
        st.keys = keys;
        // The float, summed without overflow: a snapshot whose cards add up past the bound is
        // refused here rather than carried into operations that assume it holds.
        let mut float = vec![FloatTotals::default(); st.programs.len()];
        for c in st.cards() {
            let (f, slot) = (
                &mut float[usize::from(c.program)],
                &st.programs[usize::from(c.program)],
            );
            let max = slot.program.currency.max_amount();
            let add = |to: &mut Amount, a: Amount| match to.checked_add(a) {
                Some(s) if s <= max => {
                    *to = s;
                    Ok(())
                }
                _ => Err(bad(format!(
                    "float of program {} past 10^12",
                    slot.program.id
                ))),
            };
            add(&mut f.principal, c.principal)?;
            add(&mut f.bonus, c.bonus)?;
            add(&mut f.held, c.held)?;
            f.cards += u64::from(c.status != CardStatus::Closed);
        }
        for (p, f) in st.programs.iter_mut().zip(float) {
            p.float = f;
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CallerId, CardId, Channel, Command, Method, Millis, Request};
    use crate::state::idempotency::{fingerprint_v3, key_hash, K_REVERSED};

    #[test]
    fn a_version_2_snapshot_restores_and_its_keys_still_replay() {
        // A state as the release before the `spend` block wrote it: programs in their old
        // layout, no store table.
        let mut st = State::new(StateConfig::default());
        let mut ev = Vec::new();
        let now = Millis(1_704_081_600_000);
        let mut run = |st: &mut State, key: Option<&str>, command: Command| {
            let r = Request {
                idempotency_key: key.map(str::to_string),
                command,
            };
            st.apply(&r, now, &mut ev)
        };
        run(&mut st, None, Command::UpsertProgram(Program::demo()));
        let open = Command::OpenCard {
            card_id: CardId(5),
            program: "demo".into(),
            registered: true,
            birthday: None,
        };
        run(&mut st, Some("o"), open);
        run(
            &mut st,
            Some("t"),
            Command::TopUp {
                card_id: CardId(5),
                amount: Amount(10_000),
                channel: Channel::Cash,
            },
        );
        let spend = Command::Spend {
            card_id: CardId(5),
            amount: Amount(1_000),
            method: Method::Qr,
            store: None,
            allow_partial: false,
        };
        let first = run(&mut st, Some("s"), spend.clone());
        let f = st.freeze();
        let v2 = SnapV2 {
            version: 2,
            clock: f.clock,
            programs: f.programs.iter().map(ProgramV1::from_current).collect(),
            cards: all_cards(&f.chunks, f.cards),
            holds: Vec::new(),
            timers: f.timers.sorted(),
            // As that release wrote them: fingerprints field by field.
            keys: f
                .keys
                .entries()
                .map(|(k, mut e)| {
                    if k == key_hash(CallerId::DEFAULT, Some(CardId(5)), "s") {
                        e.fingerprint = fingerprint_v3(&spend);
                    }
                    (k, e)
                })
                .collect(),
            side: Vec::new(),
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&v2).unwrap();
        let mut restored = State::restore(&bytes, StateConfig::default()).unwrap();
        assert_eq!(restored.program("demo"), Some(&Program::demo()));
        let again = run(&mut restored, Some("s"), spend.clone());
        assert!(
            again.replayed,
            "a retry after the upgrade matches its first answer"
        );
        assert_eq!(again.outcome, first.outcome);
        let other = Command::Spend {
            card_id: CardId(5),
            amount: Amount(1_001),
            method: Method::Qr,
            store: None,
            allow_partial: false,
        };
        assert_eq!(
            run(&mut restored, Some("s"), other).outcome,
            Outcome::Rejected(crate::outcome::Rejection::IdempotencyKeyReused)
        );
        // Written as today's version, it restores to itself (old fingerprints still flagged).
        let again = State::restore(&restored.snapshot(), StateConfig::default()).unwrap();
        assert_eq!(again.digest(), restored.digest());
    }

    #[test]
    fn a_version_1_snapshot_restores_and_its_keys_still_replay() {
        // A state as the previous release built it: keys hashed alone (version-2 requests).
        let mut st = State::new(StateConfig::default());
        let mut ev = Vec::new();
        let mut run = |st: &mut State, key: Option<&str>, command: Command| {
            let r = Request {
                idempotency_key: key.map(str::to_string),
                command,
            };
            st.apply_as(&r, CallerId::UNSCOPED, Millis(1_704_081_600_000), &mut ev)
        };
        run(&mut st, None, Command::UpsertProgram(Program::demo()));
        let open = Command::OpenCard {
            card_id: CardId(5),
            program: "demo".into(),
            registered: true,
            birthday: None,
        };
        run(&mut st, Some("o"), open);
        let top_up = Command::TopUp {
            card_id: CardId(5),
            amount: crate::money::Amount(10_000),
            channel: Channel::Cash,
        };
        let first = run(&mut st, Some("t"), top_up.clone());
        // Its bytes in the version-1 layout (32-byte key entries).
        let f = st.freeze();
        let v1 = SnapV1 {
            version: 1,
            clock: f.clock,
            programs: f.programs.iter().map(ProgramV1::from_current).collect(),
            cards: all_cards(&f.chunks, f.cards),
            holds: Vec::new(),
            timers: f.timers.sorted(),
            keys: f
                .keys
                .entries()
                .map(|(k, e)| {
                    let old = KeyEntryV1 {
                        fingerprint: if k == key_hash(CallerId::UNSCOPED, None, "t") {
                            fingerprint_v3(&top_up)
                        } else {
                            e.fingerprint
                        },
                        card: e.card,
                        at: e.at,
                        seq: e.seq,
                        stored: e.stored,
                        code: e.code,
                        flags: e.flags & K_REVERSED,
                    };
                    (k, old)
                })
                .collect(),
            side: Vec::new(),
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&v1).unwrap();
        let mut restored = State::restore(&bytes, StateConfig::default()).unwrap();
        assert_eq!(restored.key_count(), 2);
        let again = run(&mut restored, Some("t"), top_up);
        assert!(again.replayed);
        assert_eq!(
            again.outcome, first.outcome,
            "the card has not changed since"
        );
        // And it is written back as version 2.
        let v2 = State::restore(&restored.snapshot(), StateConfig::default()).unwrap();
        assert_eq!(v2.digest(), restored.digest());
    }
}

/// The snapshot layout `engine/core/FORMAT.md` documents, pinned: a change to any archived type the
/// snapshot holds fails here, and is a `SNAPSHOT_VERSION` change.
#[cfg(test)]
mod layout {
    use super::*;
    use crate::command::{CardId, Channel, Command, Method, Millis, Request};
    use crate::state::history::TxnEntry;
    use crate::state::lots::{Lot, Lots};
    use std::mem::{offset_of, size_of};

    type A<T> = rkyv::Archived<T>;

    /// (offset of each field in declaration order, size) of an archived type.
    macro_rules! layout {
        ($t:ty; $($f:ident),*) => {
            (vec![$(offset_of!($t, $f)),*], size_of::<$t>())
        };
    }

    #[test]
    fn the_archived_layout_is_pinned() {
        assert_eq!(
            layout!(rkyv::Archived<SnapRead>; version, clock, programs, cards, holds, timers, keys, side, stores),
            (vec![0, 8, 16, 32, 48, 64, 80, 96, 112], 128)
        );
        assert_eq!(
            layout!(A<Card>; id, principal, bonus, held, points, paid_in, bonus_given, consumed,
                top_up_today, spend_today, reminded_until, lots, history, hist_first_seq,
                top_up_count, day, minute, spends_in_minute, program, status, registered,
                birth_month, birth_day, decline_streak, spend_count_today),
            (
                vec![
                    0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 120, 136, 140, 144, 148, 152,
                    154, 156, 157, 158, 159, 160, 164
                ],
                168
            )
        );
        assert_eq!(
            layout!(A<TxnEntry>; at, amount, principal, bonus, extra, aux, points, refers_to, kind, flags, detail),
            (vec![0, 8, 16, 24, 32, 40, 48, 56, 60, 61, 62], 64)
        );
        assert_eq!(
            layout!(A<Timer>; at, kind, card, seq),
            (vec![0, 8, 16, 24], 32)
        );
        assert_eq!(
            layout!(A<KeyEntry>; fingerprint, card, at, seq, stored, code, flags, shown),
            (vec![0, 8, 16, 24, 28, 29, 30, 32], 96)
        );
        assert_eq!(
            layout!(A<crate::state::idempotency::ShownCard>; principal, bonus, held, points, paid_in, bonus_given, consumed,
                status, tier),
            (vec![0, 8, 16, 24, 32, 40, 48, 56, 57], 64)
        );
        assert_eq!(layout!(A<Hold>; amount, expires_at), (vec![0, 8], 16));
        assert_eq!((size_of::<A<Lots>>(), size_of::<A<Lot>>()), (32, 16));
        assert_eq!(
            (
                size_of::<A<(u64, u32, Hold)>>(),
                size_of::<A<(u128, KeyEntry)>>(),
                size_of::<A<(u128, Outcome)>>(),
                size_of::<A<Program>>(),
                size_of::<A<Outcome>>()
            ),
            (32, 112, 160, 304, 144)
        );
    }

    /// A small fixed state: the demo program, two cards, a keyed top-up and spend, a hold.
    fn fixed_state() -> State {
        let mut st = State::new(StateConfig::default());
        let now = Millis(1_767_578_400_000);
        let mut run = |key: Option<&str>, command: Command| {
            let r = Request {
                idempotency_key: key.map(str::to_string),
                command,
            };
            st.apply(&r, now, &mut Vec::new());
        };
        run(None, Command::UpsertProgram(Program::demo()));
        for c in [7, 8] {
            run(
                Some(&format!("o{c}")),
                Command::OpenCard {
                    card_id: CardId(c),
                    program: "demo".into(),
                    registered: true,
                    birthday: None,
                },
            );
        }
        run(
            Some("t"),
            Command::TopUp {
                card_id: CardId(7),
                amount: Amount(20_000),
                channel: Channel::Cash,
            },
        );
        run(
            Some("s"),
            Command::Spend {
                card_id: CardId(7),
                amount: Amount(1_234),
                method: Method::Qr,
                store: None,
                allow_partial: false,
            },
        );
        run(
            Some("h"),
            Command::Hold {
                card_id: CardId(7),
                amount: Amount(500),
                ttl_seconds: 60,
                method: Method::Card,
                store: None,
                allow_partial: false,
            },
        );
        st
    }

    #[test]
    fn a_fixed_state_snapshots_to_fixed_bytes() {
        let bytes = fixed_state().snapshot();
        let got = (bytes.len(), xxhash_rust::xxh3::xxh3_64(&bytes));
        assert_eq!(
            got,
            (1952, 0x967b7a76f59eb2e7),
            "the snapshot of a fixed state changed: either the layout (a SNAPSHOT_VERSION change: \
             update engine/core/FORMAT.md) or what the operations store; update this pin on purpose"
        );
    }
}
