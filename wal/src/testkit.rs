//! Deterministic payloads for tests, benches and the crash writer: the payload of a record
//! is derived from its LSN alone, so a reader can check every byte without a side channel.

/// Fills `out` with the payload of `lsn` (0 to 300 bytes, pseudo-random content).
pub fn payload_for(lsn: u64, out: &mut Vec<u8>) {
    out.clear();
    let mut x = lsn.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = (next() % 301) as usize;
    while out.len() < len {
        let v = next().to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(v.get(..take).unwrap_or(&[]));
    }
}

/// `true` when `payload` is exactly what [`payload_for`] makes for `lsn`.
pub fn check_payload(lsn: u64, payload: &[u8], scratch: &mut Vec<u8>) -> bool {
    payload_for(lsn, scratch);
    scratch.as_slice() == payload
}
