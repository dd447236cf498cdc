//! LEB128 varints and zig-zag signs: small numbers in few bytes, for the packed forms that
//! memory holds (key entries, card histories). Only ever reads bytes this crate wrote.

/// A signed number as an unsigned one whose size follows its magnitude (0, -1, 1, -2, …).
pub(crate) fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// [`zigzag`] undone.
pub(crate) fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

/// Bytes [`put`] takes for `x`.
pub(crate) fn len(x: u64) -> usize {
    ((64 - x.leading_zeros() as usize).max(1)).div_ceil(7)
}

/// Appends `x`: seven bits a byte, low first.
pub(crate) fn put(out: &mut Vec<u8>, mut x: u64) {
    loop {
        let low = (x & 0x7f) as u8;
        x >>= 7;
        if x == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Reads bytes written by [`put`] (or key_pack's writer). Past the end it reads zeros, which
/// only a bug of this crate could reach (debug builds assert).
pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl Reader<'_> {
    pub fn byte(&mut self) -> u8 {
        let b = self.buf.get(self.pos).copied();
        debug_assert!(b.is_some(), "a packed form read past its end");
        self.pos += 1;
        b.unwrap_or(0)
    }

    pub fn varint(&mut self) -> u64 {
        let mut x = 0u64;
        let mut shift = 0;
        loop {
            let b = self.byte();
            x |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 || shift >= 63 {
                return x;
            }
            shift += 7;
        }
    }
}

/// What the packing tests draw from.
#[cfg(test)]
pub(crate) mod testing {
    /// 0, ±1, the extremes, `extra`, and both sides of every varint length's edge, both signs.
    pub(crate) fn edges(extra: &[i64]) -> Vec<i64> {
        let mut edges = vec![0i64, 1, -1, i64::MAX, i64::MIN];
        edges.extend_from_slice(extra);
        for bits in (6..63).step_by(7) {
            let b = 1i64 << bits;
            edges.extend([b - 1, b, -b, -b - 1]);
        }
        edges
    }

    /// A fixed xorshift sequence: `draw(n)` is in `0..n`, the same mixes every run.
    pub(crate) fn drawer() -> impl FnMut(usize) -> usize {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        move |n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_signs_round_trip_at_their_edges() {
        let edges = testing::edges(&[]);
        let mut out = Vec::new();
        for &x in &edges {
            let before = out.len();
            put(&mut out, zigzag(x));
            assert_eq!(out.len() - before, len(zigzag(x)));
            put(&mut out, x as u64);
        }
        let mut r = Reader { buf: &out, pos: 0 };
        for &x in &edges {
            assert_eq!(unzigzag(r.varint()), x);
            assert_eq!(r.varint(), x as u64);
        }
        assert_eq!(r.pos, out.len());
        // Small magnitudes take one byte whatever their sign.
        assert_eq!(zigzag(-64), 127);
        assert_eq!(zigzag(63), 126);
    }
}
