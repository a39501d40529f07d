//! A 256-bit two's-complement integer accumulator.
//!
//! The fine grid keeps its moment sums in fixed point so that merging shards is exactly associative
//! and commutative: wrapping 256-bit addition is a group operation, and the true sums stay far below
//! 2^255 (at most ~2^246 for 2^40 chunks of PPL < 2^63), so no information is ever lost.

use std::fmt;

/// Little-endian limbs of a two's-complement 256-bit integer.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct I256(pub [u64; 4]);

impl fmt::Debug for I256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "I256({})", self.to_hex())
    }
}

impl I256 {
    pub const ZERO: I256 = I256([0; 4]);

    pub fn from_u128(v: u128) -> Self {
        I256([v as u64, (v >> 64) as u64, 0, 0])
    }

    pub fn from_i128(v: i128) -> Self {
        let ext = if v < 0 { u64::MAX } else { 0 };
        I256([v as u64, ((v as u128) >> 64) as u64, ext, ext])
    }

    /// Wrapping addition.
    #[inline]
    pub fn add(&mut self, o: &I256) {
        let mut carry = false;
        for k in 0..4 {
            let (s1, c1) = self.0[k].overflowing_add(o.0[k]);
            let (s2, c2) = s1.overflowing_add(carry as u64);
            self.0[k] = s2;
            carry = c1 || c2;
        }
    }

    #[inline]
    pub fn add_u128(&mut self, v: u128) {
        let (l0, c0) = self.0[0].overflowing_add(v as u64);
        let (l1a, c1a) = self.0[1].overflowing_add((v >> 64) as u64);
        let (l1, c1b) = l1a.overflowing_add(c0 as u64);
        self.0[0] = l0;
        self.0[1] = l1;
        if c1a || c1b {
            let (l2, c2) = self.0[2].overflowing_add(1);
            self.0[2] = l2;
            self.0[3] = self.0[3].wrapping_add(c2 as u64);
        }
    }

    /// Add the exact product `a * b` (a < 2^128, b < 2^64; at most 192 bits).
    #[inline]
    pub fn add_mul(&mut self, a: u128, b: u64) {
        let lo = (a as u64 as u128) * (b as u128);
        let hi = ((a >> 64) as u64 as u128) * (b as u128);
        // lo + hi << 64 as three limbs.
        let (m1, c) = ((lo >> 64) as u64).overflowing_add(hi as u64);
        let limbs = [lo as u64, m1, ((hi >> 64) as u64).wrapping_add(c as u64), 0];
        self.add(&I256(limbs));
    }

    #[inline]
    pub fn add_i128(&mut self, v: i128) {
        self.add(&I256::from_i128(v));
    }

    /// Wrapping multiplication by an unsigned 64-bit factor.
    pub fn mul_u64(&self, m: u64) -> I256 {
        let mut out = [0u64; 4];
        let mut carry: u128 = 0;
        for k in 0..4 {
            let p = (self.0[k] as u128) * (m as u128) + carry;
            out[k] = p as u64;
            carry = p >> 64;
        }
        I256(out)
    }

    /// Exact product of two unsigned 128-bit integers (fits in 256 bits).
    pub fn mul_u128(a: u128, b: u128) -> I256 {
        let a = [a as u64, (a >> 64) as u64];
        let b = [b as u64, (b >> 64) as u64];
        let mut out = [0u64; 4];
        for (i, &ai) in a.iter().enumerate() {
            let mut carry: u128 = 0;
            for (j, &bj) in b.iter().enumerate() {
                let p = (ai as u128) * (bj as u128) + out[i + j] as u128 + carry;
                out[i + j] = p as u64;
                carry = p >> 64;
            }
            out[i + 2] = carry as u64;
        }
        I256(out)
    }

    pub fn is_negative(&self) -> bool {
        (self.0[3] >> 63) == 1
    }

    fn negated(&self) -> I256 {
        let mut inv = I256([!self.0[0], !self.0[1], !self.0[2], !self.0[3]]);
        inv.add(&I256([1, 0, 0, 0]));
        inv
    }

    /// Nearest-ish f64 (exact limbs scaled and summed from the top; deterministic).
    pub fn to_f64(&self) -> f64 {
        if self.is_negative() {
            return -self.negated().to_f64();
        }
        let mut acc = 0.0f64;
        for k in (0..4).rev() {
            acc = acc * 18_446_744_073_709_551_616.0 + self.0[k] as f64;
        }
        acc
    }

    /// 64 lowercase hex digits, most significant first (two's complement).
    pub fn to_hex(&self) -> String {
        format!("{:016x}{:016x}{:016x}{:016x}", self.0[3], self.0[2], self.0[1], self.0[0])
    }

    pub fn from_hex(s: &str) -> Option<I256> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u64; 4];
        for k in 0..4 {
            let part = &s[(3 - k) * 16..(4 - k) * 16];
            out[k] = u64::from_str_radix(part, 16).ok()?;
        }
        Some(I256(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_matches_i128() {
        let vals: [i128; 6] = [0, 1, -1, 123_456_789_012_345, -987_654_321_987, i128::MAX / 3];
        for &a in &vals {
            for &b in &vals {
                let mut x = I256::from_i128(a);
                x.add(&I256::from_i128(b));
                if let Some(s) = a.checked_add(b) {
                    assert_eq!(x, I256::from_i128(s));
                    assert_eq!(x.to_f64(), s as f64);
                }
            }
        }
        let p = I256::mul_u128(u64::MAX as u128 + 5, 1 << 70);
        assert_eq!(p.to_f64(), (u64::MAX as f64 + 5.0) * 2f64.powi(70));
        assert_eq!(I256::from_u128(3).mul_u64(7), I256::from_u128(21));
        let h = I256::from_i128(-42).to_hex();
        assert_eq!(I256::from_hex(&h), Some(I256::from_i128(-42)));
        assert_eq!(I256::from_hex("zz"), None);
    }
}
