//! Bounds on client input that both doors (HTTP and the binary protocol) enforce: one
//! definition each, so the two doors cannot drift apart.

/// Longest store name, in bytes.
pub const STORE_LEN_MAX: usize = 64;
/// Longest program id, in bytes.
pub const PROGRAM_ID_LEN_MAX: usize = 64;
/// Longest hold time: 30 days.
pub const HOLD_TTL_SECONDS_MAX: u32 = 30 * 24 * 3600;
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
    fn idempotency_keys_are_bounded_visible_ascii() {
        assert!(check_idempotency_key("a").is_ok());
        assert!(check_idempotency_key(&"k".repeat(128)).is_ok());
        assert!(check_idempotency_key(&"k".repeat(129)).is_err());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("a b").is_err());
        assert!(check_idempotency_key("é").is_err());
    }
}
