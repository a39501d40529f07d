//! Per-chunk random keys.
//!
//! A chunk's key is a pure function of `(seed, chunk_id)`:
//!
//! ```text
//! mix64(z)        = splitmix64 finaliser: z ^= z >> 30; z *= 0xbf58476d1ce4e5b9;
//!                                         z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31
//! chunk_key(s, i) = mix64(i + mix64(s + 0x9e3779b97f4a7c15))      (wrapping u64 arithmetic)
//! ```
//!
//! Because nothing else enters the key, every algorithm that orders chunks by key (or breaks ties by
//! it) selects the same chunks whatever the row order or the sharding of the corpus.

/// The splitmix64 finaliser (Stafford's "Mix13"): a bijection of u64 with full avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The per-seed salt; hoisted out of loops by callers.
#[inline]
pub fn seed_salt(seed: u64) -> u64 {
    mix64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15))
}

/// Key of one chunk given a precomputed [`seed_salt`].
#[inline]
pub fn key_with_salt(salt: u64, chunk_id: u64) -> u64 {
    mix64(chunk_id.wrapping_add(salt))
}

/// `chunk_key(seed, chunk_id)`, the documented hash.
#[inline]
pub fn chunk_key(seed: u64, chunk_id: u64) -> u64 {
    key_with_salt(seed_salt(seed), chunk_id)
}

/// A uniform number in the open interval (0, 1) from a key: the top 52 bits, offset by half a step
/// (`((key >> 12) + 0.5) / 2^52`, exactly representable, never 0 or 1).
#[inline]
pub fn unit_open(key: u64) -> f64 {
    ((key >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // splitmix64 with state 0: first output = mix64(0x9e3779b97f4a7c15).
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        assert_eq!(chunk_key(0, 0), mix64(mix64(0x9e37_79b9_7f4a_7c15)));
    }

    #[test]
    fn unit_open_is_inside() {
        assert!(unit_open(0) > 0.0);
        assert!(unit_open(u64::MAX) < 1.0);
    }
}
