//! Bounds on client input that both doors (HTTP and the binary protocol) enforce, and replay
//! enforces again on what it reads from disk: one definition each, so the doors and the log
//! cannot drift apart. [`check_command`] holds a whole [`Command`] to them.

use crate::command::{CardId, Command, Request, TxnId};
use crate::money::{Amount, Currency};

/// Longest store id, in characters (Unicode scalar values, as JSON Schema's `maxLength`
/// counts them).
pub const STORE_LEN_MAX: usize = 64;
/// Longest program id, in bytes.
pub const PROGRAM_ID_LEN_MAX: usize = 64;
/// Longest hold time: 30 days.
pub const HOLD_TTL_SECONDS_MAX: u32 = 30 * 24 * 3600;
/// The characters a store id may hold: no control characters, nothing outside the Basic
/// Multilingual Plane. Within the BMP a character is one UTF-16 unit, so every schema validator
/// (code points or UTF-16 units) counts a store's length as the server does, and 64 of them
/// (at most 192 UTF-8 bytes) fit the binary protocol's one-byte length. The API document's
/// pattern for a store says the same ([`STORE_PATTERN`]).
fn store_char_ok(c: char) -> bool {
    !c.is_control() && u32::from(c) <= 0xFFFF
}

/// The store rule as an ECMA-262 / Rust `regex` pattern, for the API document.
pub const STORE_PATTERN: &str = r"^[\u0020-\u007E\u00A0-\uD7FF\uE000-\uFFFF]{1,64}$";

/// Validates a store id: 1–64 characters, no control characters, none outside the Basic
/// Multilingual Plane (`store_char_ok`). Counted in characters, as the API document's
/// `maxLength` is, so the document and the server agree on every string.
pub fn check_store(store: &str) -> Result<(), &'static str> {
    let mut n = 0usize;
    for c in store.chars() {
        n += 1;
        if n > STORE_LEN_MAX || !store_char_ok(c) {
            return Err(STORE_RULE);
        }
    }
    if n == 0 {
        Err(STORE_RULE)
    } else {
        Ok(())
    }
}

/// The store rule before stores were counted in characters: 1–64 bytes, no control
/// character, any plane. Only replay uses it, for records logged under it
/// ([`crate::record::check`]); the doors hold new requests to [`check_store`].
pub fn store_once_accepted(store: &str) -> bool {
    !store.is_empty() && store.len() <= STORE_LEN_MAX && !store.chars().any(char::is_control)
}

const STORE_RULE: &str =
    "a store is 1-64 characters of the Basic Multilingual Plane, no control characters";

/// Validates a hold's time to live: 1 second to 30 days.
pub fn check_hold_ttl(ttl_seconds: u32) -> Result<(), &'static str> {
    if (1..=HOLD_TTL_SECONDS_MAX).contains(&ttl_seconds) {
        Ok(())
    } else {
        Err("ttl_seconds is 1 to 2592000 (30 days)")
    }
}

/// Characters a program id may hold besides ASCII letters and digits.
const PROGRAM_ID_PUNCTUATION: [u8; 2] = [b'_', b'-'];

/// Validates a program id: 1–64 of `[A-Za-z0-9_-]`. The one rule for a program's own id
/// (program spec), the program a card opens with (HTTP body, binary frame).
pub fn check_program_id(id: &str) -> Result<(), &'static str> {
    let ok = !id.is_empty()
        && id.len() <= PROGRAM_ID_LEN_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || PROGRAM_ID_PUNCTUATION.contains(&b));
    if ok {
        Ok(())
    } else {
        Err("a program id is 1-64 of A-Z a-z 0-9 _ -")
    }
}

/// Longest accepted idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;

/// Validates an idempotency key (header, reversal body, binary protocol).
pub fn check_idempotency_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LEN_MAX {
        return Err("an idempotency key is 1-128 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("an idempotency key is visible ASCII without spaces");
    }
    Ok(())
}

/// All amounts are in the currency of the card's program; CNY is the only currency.
pub const REQUEST_CURRENCY: Currency = Currency::Cny;

/// Validates a card id: 1 to [`CardId::MAX`] ([`CardId::checked`]).
pub fn check_card(card: CardId) -> Result<CardId, &'static str> {
    CardId::checked(card.0).ok_or("a card id is 1-19 digits, no leading zero")
}

/// Validates a transaction id: its card is a card ([`check_card`]); any sequence number.
pub fn check_txn(txn: TxnId) -> Result<TxnId, &'static str> {
    check_card(txn.card).map(|_| txn)
}

/// Validates a request amount in minor units: positive, at most the currency's largest
/// ([`Currency::request_amount`]).
pub fn check_amount(amount: Amount) -> Result<Amount, &'static str> {
    REQUEST_CURRENCY
        .request_amount(amount.0)
        .map_err(|_| "an amount is positive and at most 10^12 major units")
}

/// Validates a number of points to redeem or grant: at least 1.
pub fn check_points(points: u64) -> Result<u64, &'static str> {
    if points == 0 {
        Err("points must be at least 1")
    } else {
        Ok(points)
    }
}

/// A field of a command that breaks its rule: the field as the HTTP API names it, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: &'static str,
}

fn at<T>(field: &'static str, r: Result<T, &'static str>) -> Result<(), Invalid> {
    r.map(|_| ()).map_err(|reason| Invalid { field, reason })
}

/// Holds a command to every rule above, field by field (the first bad field is named).
/// The doors check each field as they parse it, through the same functions; replay checks
/// every record it reads from disk here, so a log that carries what no door would accept is
/// refused, never applied.
pub fn check_command(command: &Command) -> Result<(), Invalid> {
    match command {
        Command::UpsertProgram(p) => at("id", check_program_id(&p.id)),
        Command::OpenCard {
            card_id, program, ..
        } => {
            at("program", check_program_id(program))?;
            at("card_id", check_card(*card_id))
        }
        Command::TopUp {
            card_id, amount, ..
        }
        | Command::Spend {
            card_id,
            amount,
            store: None,
            ..
        } => {
            at("card_id", check_card(*card_id))?;
            at("amount", check_amount(*amount))
        }
        Command::Spend {
            card_id,
            amount,
            store: Some(store),
            ..
        } => {
            at("card_id", check_card(*card_id))?;
            at("amount", check_amount(*amount))?;
            at("store", check_store(store))
        }
        Command::Hold {
            card_id,
            amount,
            ttl_seconds,
            store,
            ..
        } => {
            at("card_id", check_card(*card_id))?;
            at("amount", check_amount(*amount))?;
            at("ttl_seconds", check_hold_ttl(*ttl_seconds))?;
            match store {
                Some(s) => at("store", check_store(s)),
                None => Ok(()),
            }
        }
        Command::IncrementHold {
            hold_id,
            amount,
            ttl_seconds,
        } => {
            at("hold_id", check_txn(*hold_id))?;
            at("amount", check_amount(*amount))?;
            match ttl_seconds {
                Some(t) => at("ttl_seconds", check_hold_ttl(*t)),
                None => Ok(()),
            }
        }
        Command::Capture { hold_id, amount } => {
            at("hold_id", check_txn(*hold_id))?;
            match amount {
                Some(a) => at("amount", check_amount(*a)),
                None => Ok(()),
            }
        }
        Command::Void { hold_id } => at("hold_id", check_txn(*hold_id)),
        Command::Refund { txn_id, amount } => {
            at("txn_id", check_txn(*txn_id))?;
            at("amount", check_amount(*amount))
        }
        Command::Reversal { card_id, key } => {
            at("card_id", check_card(*card_id))?;
            at("idempotency_key", check_idempotency_key(key))
        }
        Command::RedeemPoints { card_id, points } => {
            at("card_id", check_card(*card_id))?;
            at("points", check_points(*points))
        }
        Command::Grant {
            card_id,
            bonus,
            points,
            ..
        } => {
            at("card_id", check_card(*card_id))?;
            if let Some(b) = bonus {
                at("bonus", check_amount(*b))?;
            }
            if let Some(p) = points {
                at("points", check_points(*p))?;
            }
            if bonus.is_none() && points.is_none() {
                return at::<()>("bonus", Err("a grant gives bonus, points or both"));
            }
            Ok(())
        }
        Command::CashOut { card_id, .. }
        | Command::Freeze { card_id }
        | Command::Unfreeze { card_id }
        | Command::Close { card_id } => at("card_id", check_card(*card_id)),
        Command::Tick => Ok(()),
    }
}

/// Holds a request to the rules: its idempotency key, when it has one, and its command.
pub fn check_request(request: &Request) -> Result<(), Invalid> {
    if let Some(key) = &request.idempotency_key {
        at("idempotency_key", check_idempotency_key(key))?;
    }
    check_command(&request.command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_ttls_are_bounded() {
        assert!(check_store("shop 1").is_ok());
        assert!(check_store(&"s".repeat(64)).is_ok());
        assert!(check_store(&"s".repeat(65)).is_err());
        assert!(check_store("").is_err());
        assert!(check_store("a\nb").is_err());
        assert!(check_store("a\u{85}b").is_err());
        // Counted in characters, not bytes: 64 three-byte characters are one store.
        assert!(check_store(&"店".repeat(64)).is_ok());
        assert!(check_store(&"店".repeat(65)).is_err());
        assert!(check_store(&"é".repeat(33)).is_ok());
        assert!(check_store("\u{FFFF}").is_ok());
        assert!(check_store("shop \u{1F600}").is_err());
        assert!(check_hold_ttl(1).is_ok());
        assert!(check_hold_ttl(HOLD_TTL_SECONDS_MAX).is_ok());
        assert!(check_hold_ttl(0).is_err());
        assert!(check_hold_ttl(HOLD_TTL_SECONDS_MAX + 1).is_err());
    }

    #[test]
    fn program_ids_are_bounded_letters_digits_underscore_dash() {
        assert!(check_program_id("demo").is_ok());
        assert!(check_program_id("Coffee_shop-2").is_ok());
        assert!(check_program_id(&"p".repeat(64)).is_ok());
        assert!(check_program_id(&"p".repeat(65)).is_err());
        assert!(check_program_id("").is_err());
        assert!(check_program_id("a.b").is_err());
        assert!(check_program_id("a b").is_err());
        assert!(check_program_id("café").is_err());
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_ascii() {
        assert!(check_idempotency_key("a").is_ok());
        assert!(check_idempotency_key(&"k".repeat(128)).is_ok());
        assert!(check_idempotency_key(&"k".repeat(129)).is_err());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("a b").is_err());
        assert!(check_idempotency_key("é").is_err());
    }
}
