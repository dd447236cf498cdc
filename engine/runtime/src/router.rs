//! Which shard owns a card, and where each command goes.
//!
//! The mapping must never change for a data directory: a card's balances, holds and
//! idempotency keys live in exactly one shard's log. It is `xxh3_64(card_id as 8 little-endian
//! bytes) mod shards` — xxh3 is a fixed, specified function (no per-process seed), and the shard
//! count is recorded in the directory's `meta` file.

use svault_core::command::{CardId, Command};

/// The shard index of `card` among `shards` shards (`shards` ≥ 1).
pub fn shard_of(card: CardId, shards: usize) -> usize {
    let h = xxhash_rust::xxh3::xxh3_64(&card.0.to_le_bytes());
    (h % shards.max(1) as u64) as usize
}

/// Where a command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The one shard owning the card.
    Shard(usize),
    /// Every shard (program changes), replies merged.
    Broadcast,
}

/// Routes a mutating command: by card (a reversal names the card of the request it reverses,
/// whose key lives in that card's shard); by the card inside a `TxnId` for capture, void and
/// refund; program upserts go everywhere (every shard replays alone).
pub fn route(command: &Command, shards: usize) -> Route {
    match (command.card(), command) {
        (Some(card), _) => Route::Shard(shard_of(card, shards)),
        (None, Command::UpsertProgram(_)) => Route::Broadcast,
        // A tick names no card: shard 0.
        (None, _) => Route::Shard(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svault_core::command::TxnId;
    use svault_core::money::Amount;

    #[test]
    fn mapping_is_pinned() {
        // Literal shards, written down once: changing the hash, its input bytes or the modulo
        // would move cards between the logs of existing directories, and fails here.
        const CARDS: [u64; 8] = [
            0,
            1,
            2,
            77,
            123,
            6_200_000_000_000_001,
            6_200_000_000_000_002,
            u64::MAX,
        ];
        let pinned: [(usize, [usize; 8]); 4] = [
            (2, [1, 0, 1, 0, 0, 1, 0, 1]),
            (3, [2, 2, 1, 1, 0, 2, 2, 2]),
            (4, [1, 2, 3, 0, 0, 3, 2, 3]),
            (16, [9, 14, 3, 12, 8, 11, 10, 3]),
        ];
        for (shards, expected) in pinned {
            for (card, want) in CARDS.iter().zip(expected) {
                assert_eq!(
                    shard_of(CardId(*card), shards),
                    want,
                    "card {card} with {shards} shards"
                );
            }
        }
        for card in CARDS {
            assert_eq!(shard_of(CardId(card), 1), 0);
        }
    }

    #[test]
    fn spreads_cards() {
        let mut counts = [0usize; 2];
        for i in 0..10_000u64 {
            counts[shard_of(CardId(i), 2)] += 1;
        }
        assert!(counts[0] > 4_500 && counts[1] > 4_500, "{counts:?}");
    }

    #[test]
    fn txn_commands_follow_their_card() {
        let card = CardId(987_654);
        let txn = TxnId { card, seq: 3 };
        let want = Route::Shard(shard_of(card, 4));
        assert_eq!(
            route(
                &Command::Capture {
                    hold_id: txn,
                    amount: None
                },
                4
            ),
            want
        );
        assert_eq!(route(&Command::Void { hold_id: txn }, 4), want);
        assert_eq!(
            route(
                &Command::Refund {
                    txn_id: txn,
                    amount: Amount(1)
                },
                4
            ),
            want
        );
        assert_eq!(route(&Command::Freeze { card_id: card }, 4), want);
        assert_eq!(
            route(
                &Command::Reversal {
                    card_id: card,
                    key: "k".into()
                },
                4
            ),
            want,
            "a reversal goes to its card's shard only"
        );
    }
}
