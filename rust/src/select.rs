//! Exact token-weighted quantiles without sorting the column, and weighted prefix selection.
//!
//! **Quantile definition.** For a mass fraction `f = num/den` in [0, 1], the token-weighted quantile is
//! the smallest PPL value `x` present in the data such that the tokens of chunks with `ppl <= x` are at
//! least `f` of all tokens, compared exactly in integers: `W(x) * den >= num * total`.
//! (`f = 0` gives the minimum, `f = 1` the maximum.) A numpy brute force is
//! `s = np.sort(ppl); c = np.cumsum(tokens[np.argsort(ppl)]); s[np.searchsorted(c * den, num * total, 'left')]`.
//!
//! **Algorithm (radix select).** Positive finite f64 values order like their bit patterns, so the bits
//! shifted right by `s` give monotone buckets; `s` is chosen so that `[min, max]` spans at most 2^16
//! buckets (thousands of buckets per octave for real PPL ranges). One parallel pass builds the token
//! histogram; the bucket holding each quantile is found from its prefix sums; a second pass collects
//! only the chunks of those (at most `n_bins - 1`) buckets, which are sorted and walked. Two O(n)
//! passes, no copy of the column, exact.

use rayon::prelude::*;

use crate::corpus::{Corpus, Overview};

const MAX_BUCKETS: u64 = 1 << 16;

/// Monotone bucketing of positive finite f64 values in `[min, max]` by their bit patterns.
#[derive(Clone, Copy, Debug)]
pub struct Bucketing {
    shift: u32,
    base: u64,
    pub n: usize,
}

impl Bucketing {
    pub fn new(min: f64, max: f64) -> Self {
        Self::with_max(min, max, MAX_BUCKETS)
    }

    /// At most `max_buckets` buckets.
    pub fn with_max(min: f64, max: f64, max_buckets: u64) -> Self {
        let (lo, hi) = (min.to_bits(), max.to_bits());
        let mut shift = 0u32;
        while (hi >> shift) - (lo >> shift) >= max_buckets {
            shift += 1;
        }
        let base = lo >> shift;
        Bucketing { shift, base, n: ((hi >> shift) - base + 1) as usize }
    }

    #[inline]
    pub fn of(&self, x: f64) -> usize {
        ((x.to_bits() >> self.shift) - self.base) as usize
    }

    /// Smallest and largest f64 that fall into bucket `b`.
    pub fn bounds(&self, b: usize) -> (f64, f64) {
        let first = (self.base + b as u64) << self.shift;
        let last = first + ((1u64 << self.shift) - 1);
        (f64::from_bits(first), f64::from_bits(last))
    }
}

/// Token-weighted quantiles (see the module doc) for each `(num, den)` mass fraction, `num <= den`.
pub fn token_quantiles(c: &Corpus, ov: &Overview, fracs: &[(u128, u128)]) -> Vec<f64> {
    if ov.ppl_min == ov.ppl_max {
        return vec![ov.ppl_min; fracs.len()];
    }
    let bk = Bucketing::new(ov.ppl_min, ov.ppl_max);
    // Pass 1: tokens per bucket (integers, so the reduction order does not matter).
    let hist = c
        .map_parts(false, || vec![0u64; bk.n], |h, b| {
            for (&x, &w) in b.ppl.iter().zip(b.tokens) {
                h[bk.of(x)] += w;
            }
        })
        .into_par_iter()
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_default();
    let mut cum_before = Vec::with_capacity(bk.n + 1);
    let mut acc = 0u128;
    for &h in &hist {
        cum_before.push(acc);
        acc += h as u128;
    }
    cum_before.push(acc);
    let total = ov.total_tokens as u128;
    // The bucket holding each quantile: first bucket whose cumulative tokens reach the target.
    let target_bucket: Vec<usize> = fracs
        .iter()
        .map(|&(num, den)| {
            let b = cum_before[1..].partition_point(|&cum| cum * den < num * total);
            b.min(bk.n - 1)
        })
        .collect();
    let mut slot = vec![u32::MAX; bk.n];
    for &b in &target_bucket {
        slot[b] = 0;
    }
    // Pass 2: gather the chunks of the candidate buckets and sort them.
    let mut cand: Vec<(f64, u64)> = c
        .map_parts(false, Vec::new, |v: &mut Vec<(f64, u64)>, b| {
            for (&x, &w) in b.ppl.iter().zip(b.tokens) {
                if slot[bk.of(x)] != u32::MAX {
                    v.push((x, w));
                }
            }
        })
        .concat();
    cand.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    fracs
        .iter()
        .zip(&target_bucket)
        .map(|(&(num, den), &b)| {
            let start = cand.partition_point(|e| bk.of(e.0) < b);
            let mut cum = cum_before[b];
            let goal = num * total;
            let mut value = cand.get(start).map_or(ov.ppl_max, |e| e.0);
            for e in &cand[start..] {
                if bk.of(e.0) != b {
                    break;
                }
                cum += e.1 as u128;
                value = e.0;
                if cum * den >= goal {
                    break;
                }
            }
            value
        })
        .collect()
}

/// Bin of `x` under sorted `edges` (len n_bins+1): `k` with `edges[k] <= x < edges[k+1]`, the last bin
/// closed. With duplicate edges the empty ranges are skipped: `k = clamp(searchsorted_right(edges, x) - 1, 0, n_bins - 1)`.
#[inline]
pub fn bin_of(edges: &[f64], x: f64) -> usize {
    let n_bins = edges.len() - 1;
    edges.partition_point(|&e| e <= x).saturating_sub(1).min(n_bins - 1)
}

/// Radix selection by weight: the ascending indices `i < n` of the items that come first in the order
/// of `(key(i), i)` until their weights reach `budget` (all items if the total is below it).
/// Parallel and O(n): a token histogram over the top bits of the primary key finds the bucket where the
/// budget is crossed; only that bucket is sorted. Integer reductions, so the result is exact and
/// independent of the thread count.
pub fn weighted_cut(
    n: usize,
    key: impl Fn(usize) -> (u64, u64) + Sync,
    weight: impl Fn(usize) -> u64 + Sync,
    budget: u64,
) -> Vec<usize> {
    const CH: usize = 1 << 16;
    if n == 0 {
        return Vec::new();
    }
    let (lo, hi) = (0..n)
        .into_par_iter()
        .with_min_len(CH)
        .map(|i| (key(i).0, key(i).0))
        .reduce(|| (u64::MAX, 0), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let mut shift = 0u32;
    while (hi >> shift) - (lo >> shift) >= MAX_BUCKETS {
        shift += 1;
    }
    let base = lo >> shift;
    let nb = ((hi >> shift) - base + 1) as usize;
    let bucket = |k: u64| ((k >> shift) - base) as usize;
    let hist = (0..n)
        .into_par_iter()
        .with_min_len(CH)
        .fold(
            || vec![0u128; nb],
            |mut h, i| {
                h[bucket(key(i).0)] += weight(i) as u128;
                h
            },
        )
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_default();
    let budget = budget as u128;
    let mut cum = 0u128;
    let mut tb = nb;
    for (b, &h) in hist.iter().enumerate() {
        if cum + h >= budget {
            tb = b;
            break;
        }
        cum += h;
    }
    if tb == nb {
        return (0..n).collect();
    }
    let mut edge: Vec<(u64, u64, usize)> = (0..n)
        .into_par_iter()
        .with_min_len(CH)
        .filter_map(|i| {
            let k = key(i);
            (bucket(k.0) == tb).then_some((k.0, k.1, i))
        })
        .collect();
    edge.par_sort_unstable();
    let mut cut = edge[edge.len() - 1];
    for e in &edge {
        cum += weight(e.2) as u128;
        if cum >= budget {
            cut = *e;
            break;
        }
    }
    (0..n)
        .into_par_iter()
        .with_min_len(CH)
        .filter(|&i| {
            let k = key(i);
            let b = bucket(k.0);
            b < tb || (b == tb && (k.0, k.1, i) <= cut)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::testutil::*;

    fn brute(ppl: &[f64], tok: &[u64], idx: &[usize], num: u128, den: u128) -> f64 {
        let total: u128 = tok.iter().map(|&t| t as u128).sum();
        let mut cum = 0u128;
        for &i in idx {
            cum += tok[i] as u128;
            if cum * den >= num * total {
                return ppl[i];
            }
        }
        ppl[*idx.last().unwrap()]
    }

    #[test]
    fn quantiles_match_brute_force_sort() {
        for (n, seed) in [(1usize, 1u64), (7, 2), (1000, 3), (200_000, 4), (1_100_000, 5)] {
            let mut ppl = lognormal(n, seed, 2.5, 0.7);
            // Heavy ties: round a third of the values.
            for (i, p) in ppl.iter_mut().enumerate() {
                if i % 3 == 0 {
                    *p = (*p * 4.0).round().max(1.0) / 4.0;
                }
            }
            let tok: Vec<u64> = (0..n).map(|i| 1 + (crate::hash::chunk_key(seed, i as u64) % 900)).collect();
            let c = corpus(ppl.clone(), tok.clone());
            let ov = c.overview().unwrap();
            let fracs: Vec<(u128, u128)> = (0..=100).map(|k| (k as u128, 100u128)).collect();
            let q = token_quantiles(&c, &ov, &fracs);
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by(|&a, &b| ppl[a].total_cmp(&ppl[b]));
            for (k, &(num, den)) in fracs.iter().enumerate() {
                assert_eq!(q[k], brute(&ppl, &tok, &idx, num, den), "n={n} k={k}");
            }
            assert_eq!(q[0], ov.ppl_min);
            assert_eq!(q[100], ov.ppl_max);
        }
    }

    #[test]
    fn weighted_cut_is_minimal() {
        for seed in 0..60u64 {
            let n = 1 + (seed as usize * 3779) % 200_000;
            let key = |i: usize| (crate::hash::chunk_key(seed, i as u64) % (1 + seed * 1000), i as u64 % 3);
            let w = |i: usize| 1 + crate::hash::chunk_key(seed + 99, i as u64) % 50;
            let total: u64 = (0..n).map(w).sum();
            let budget = 1 + crate::hash::chunk_key(seed, 12345) % total;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&i| (key(i), i));
            let mut cum = 0;
            let mut expect = Vec::new();
            for &i in &order {
                if cum >= budget {
                    break;
                }
                cum += w(i);
                expect.push(i);
            }
            expect.sort_unstable();
            assert_eq!(weighted_cut(n, key, w, budget), expect, "seed {seed}");
        }
        assert_eq!(weighted_cut(3, |i| (i as u64, 0), |_| 1, 10), vec![0, 1, 2]);
    }
}
