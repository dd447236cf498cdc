//! Bounds on client input that both doors (HTTP and the binary protocol) enforce: one
//! definition each, so the two doors cannot drift apart.

/// Longest store name, in bytes.
pub const STORE_LEN_MAX: usize = 64;
/// Longest program id, in bytes.
pub const PROGRAM_ID_LEN_MAX: usize = 64;
/// Longest hold time: 30 days.
pub const HOLD_TTL_SECONDS_MAX: u32 = 30 * 24 * 3600;
/// Validates a store name: 1–64 bytes, no control characters.
pub fn check_store(store: &str) -> Result<(), &'static str> {
    if store.is_empty() || store.len() > STORE_LEN_MAX || store.chars().any(char::is_control) {
        Err("a store is 1-64 characters, no control characters")
    } else {
        Ok(())
    }
}

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
