//! The chunks a sampler may pick ("members": those inside the PPL window), in a canonical order.
//!
//! Members are sorted by `(x, key, tokens, row)` where `x` is the statistic (PPL or ln PPL) and `key`
//! the `(seed, chunk_id)` hash. Everything the samplers compute is a function of positions in this
//! order, so results depend only on the *set* of `(chunk_id, ppl, tokens)`, not on row order or
//! sharding (`row` only separates exact duplicates).
//!
//! **Budget rule** (sampling and DOS): a subset's tokens `T` satisfy `B <= T < B + w_max`, where `B` is
//! the token budget and `w_max` the largest chunk in the window: the budget is always met, and
//! overshot by less than one chunk.

use rayon::prelude::*;

use crate::corpus::{Corpus, Overview};
use crate::error::{invalid, Error, Realisable, Result};
use crate::hash::{key_with_salt, seed_salt};
use crate::select::{token_quantiles, Bucketing};
use crate::stats::Space;

/// Order-preserving map of f64 onto u64 (total order; -0.0 < +0.0).
#[inline]
pub fn fkey(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

#[inline]
pub fn from_fkey(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// One candidate chunk. Field order = sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub xk: u64,
    pub key: u64,
    pub w: u64,
    pub row: u64,
}

impl Member {
    #[inline]
    pub fn x(&self) -> f64 {
        from_fkey(self.xk)
    }
}

/// Optional PPL window: `ppl_min <= ppl <= ppl_max` and token-weighted quantile bounds
/// `Q(quantile_min) <= ppl <= Q(quantile_max)` (quantiles over the whole corpus, as in `select.rs`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub ppl_min: Option<f64>,
    pub ppl_max: Option<f64>,
    pub quantile_min: Option<f64>,
    pub quantile_max: Option<f64>,
}

/// The prepared members.
pub struct Prepared {
    pub members: Vec<Member>,
    pub total_w: u64,
    pub w_max: u64,
    pub ov: Overview,
    pub space: Space,
    /// The resolved PPL window `[lo, hi]`.
    pub lo: f64,
    pub hi: f64,
    pub sorted: bool,
}

fn check_opt(name: &str, v: Option<f64>, ok: impl Fn(f64) -> bool, what: &str) -> Result<()> {
    match v {
        Some(x) if !ok(x) => Err(invalid(format!("{name} must be {what}, got {x}"))),
        _ => Ok(()),
    }
}

/// Collect (and optionally sort) the members of the window.
pub fn prepare(c: &Corpus, space: Space, win: &Window, seed: u64, sort: bool) -> Result<Prepared> {
    check_opt("ppl_min", win.ppl_min, |x| x.is_finite() && x > 0.0, "a finite perplexity > 0")?;
    check_opt("ppl_max", win.ppl_max, |x| x.is_finite() && x > 0.0, "a finite perplexity > 0")?;
    check_opt("quantile_min", win.quantile_min, |q| (0.0..=1.0).contains(&q), "in [0, 1]")?;
    check_opt("quantile_max", win.quantile_max, |q| (0.0..=1.0).contains(&q), "in [0, 1]")?;
    if let (Some(a), Some(b)) = (win.ppl_min, win.ppl_max) {
        if a > b {
            return Err(invalid(format!("ppl_min ({a}) must be <= ppl_max ({b})")));
        }
    }
    if let (Some(a), Some(b)) = (win.quantile_min, win.quantile_max) {
        if a > b {
            return Err(invalid(format!("quantile_min ({a}) must be <= quantile_max ({b})")));
        }
    }
    let t0 = std::time::Instant::now();
    let ov = c.overview()?;
    crate::profile("prepare: overview", t0);
    let (mut lo, mut hi) = (win.ppl_min.unwrap_or(0.0), win.ppl_max.unwrap_or(f64::INFINITY));
    if win.quantile_min.is_some() || win.quantile_max.is_some() {
        let frac = |q: f64| ((q * (1u64 << 53) as f64).round() as u128, 1u128 << 53);
        let q = token_quantiles(c, &ov, &[frac(win.quantile_min.unwrap_or(0.0)), frac(win.quantile_max.unwrap_or(1.0))]);
        lo = lo.max(q[0]);
        hi = hi.min(q[1]);
    }
    let salt = seed_salt(seed);
    let all = lo <= ov.ppl_min && hi >= ov.ppl_max;
    let members: Vec<Member> = if sort {
        bucketed(c, space, salt, lo, hi, &ov)
    } else {
        let member = |i: usize| {
            let p = c.ppl_at(i);
            Member { xk: fkey(space.map(p)), key: key_with_salt(salt, c.id_at(i)), w: c.tokens_at(i), row: i as u64 }
        };
        // Indexed collect writes straight into the result (one allocation); a window needs a filter.
        let it = (0..c.len()).into_par_iter().with_min_len(1 << 14);
        if all {
            it.map(member).collect()
        } else {
            it.filter(|&i| (lo..=hi).contains(&c.ppl_at(i))).map(member).collect()
        }
    };
    crate::profile("prepare: members", t0);
    if members.is_empty() {
        return Err(Error::EmptyInput(format!(
            "no chunk has a perplexity inside the window [{lo}, {hi}] (ppl ranges over [{}, {}])",
            ov.ppl_min, ov.ppl_max
        )));
    }
    let total_w = members.par_iter().map(|m| m.w).sum();
    let w_max = members.par_iter().map(|m| m.w).max().unwrap_or(0);
    Ok(Prepared { members, total_w, w_max, ov, space, lo, hi, sorted: sort })
}

/// Members of the window in canonical order, by a parallel bucket sort: the monotone bucket of each
/// chunk's PPL bits (`select::Bucketing`) is counted per part, every member is written straight to
/// its slot (one allocation, no whole-array sort), then each bucket is sorted in parallel.
fn bucketed(c: &Corpus, space: Space, salt: u64, lo: f64, hi: f64, ov: &Overview) -> Vec<Member> {
    let (lo_b, hi_b) = (lo.max(ov.ppl_min), hi.min(ov.ppl_max));
    if lo_b > hi_b {
        return Vec::new();
    }
    let n_parts = c.n_parts();
    // Few enough buckets that the per-part offset tables stay small.
    let bk = Bucketing::with_max(lo_b, hi_b, (1u64 << 16).min((1u64 << 22) / n_parts as u64).max(256));
    let inside = |p: f64| p >= lo && p <= hi;
    let counts: Vec<Vec<u32>> = c.map_parts(false, || vec![0u32; bk.n], |h, b| {
        for &p in b.ppl {
            if inside(p) {
                h[bk.of(p)] += 1;
            }
        }
    });
    // Slot of the first member of (part, bucket): buckets in order, parts in order within a bucket.
    let mut bucket_len = vec![0usize; bk.n];
    for h in &counts {
        for (l, &v) in bucket_len.iter_mut().zip(h) {
            *l += v as usize;
        }
    }
    let total: usize = bucket_len.iter().sum();
    let mut starts = Vec::with_capacity(n_parts);
    let mut run = vec![0usize; bk.n];
    let mut acc = 0;
    for (r, &l) in run.iter_mut().zip(&bucket_len) {
        *r = acc;
        acc += l;
    }
    for h in &counts {
        starts.push(run.clone());
        for (r, &v) in run.iter_mut().zip(h) {
            *r += v as usize;
        }
    }
    drop(counts);
    let mut out: Vec<Member> = Vec::with_capacity(total);
    let dst = SyncPtr(out.as_mut_ptr());
    let dst = &dst;
    let mut unit = vec![(); c.len()];
    c.map_parts_out(&mut unit, true, |p| starts[p].clone(), |next, b, _| {
        for j in 0..b.len() {
            let p = b.ppl[j];
            if inside(p) {
                let slot = &mut next[bk.of(p)];
                let m = Member {
                    xk: fkey(space.map(p)),
                    key: key_with_salt(salt, b.ids[j]),
                    w: b.tokens[j],
                    row: (b.start + j) as u64,
                };
                // SAFETY: `starts` partitions 0..total into disjoint runs, one per (part, bucket),
                // each exactly as long as the members of that part in that bucket (same `inside`
                // test and bucketing as the counting pass); each part writes only its own runs, so
                // every slot below `total` (the capacity) is written exactly once, by one thread.
                unsafe { dst.0.add(*slot).write(m) };
                *slot += 1;
            }
        }
    });
    // SAFETY: all `total` slots were initialised above.
    unsafe { out.set_len(total) };
    let mut slices = Vec::with_capacity(bk.n);
    let mut rest: &mut [Member] = &mut out;
    for &l in &bucket_len {
        let (head, tail) = rest.split_at_mut(l);
        slices.push(head);
        rest = tail;
    }
    slices.into_par_iter().for_each(|s| s.sort_unstable());
    out
}

/// A raw destination pointer shared by the scatter pass (see the SAFETY notes there).
struct SyncPtr(*mut Member);
unsafe impl Sync for SyncPtr {}
unsafe impl Send for SyncPtr {}

/// Check a token budget against the window.
pub fn check_budget(p: &Prepared, budget: i128) -> Result<u64> {
    if budget <= 0 {
        return Err(Error::Budget(format!("token_budget must be > 0, got {budget}")));
    }
    if budget > p.total_w as i128 {
        let windowed = p.lo > p.ov.ppl_min || p.hi < p.ov.ppl_max;
        return Err(Error::Budget(format!(
            "token_budget = {budget} exceeds the {} tokens available{} ({} chunks)",
            p.total_w,
            if windowed { format!(" inside the PPL window [{}, {}]", p.lo, p.hi) } else { " in the corpus".into() },
            p.members.len()
        )));
    }
    Ok(budget as u64)
}

/// Prefix sums over sorted members: tokens (exact) and centred token-weighted moments (f64, in a
/// fixed sequential order, hence reproducible).
pub struct Prefix {
    pub center: f64,
    pub p0: Vec<u64>,
    pub p1: Vec<f64>,
    pub p2: Vec<f64>,
}

impl Prefix {
    pub fn new(m: &[Member]) -> Prefix {
        const CH: usize = 1 << 16;
        let n = m.len();
        // Fixed chunking + ordered combination: reproducible for a given member set.
        let sums = |chunk: &[Member], c: f64| {
            chunk.iter().fold((0u64, 0.0f64, 0.0f64), |(a0, a1, a2), e| {
                let (w, d) = (e.w as f64, e.x() - c);
                (a0 + e.w, a1 + w * d, a2 + w * d * d)
            })
        };
        let raw: Vec<(u64, f64, f64)> = m.par_chunks(CH).map(|ch| sums(ch, 0.0)).collect();
        let total: f64 = raw.iter().map(|r| r.0 as f64).sum();
        let center = raw.iter().map(|r| r.1).sum::<f64>() / total;
        let parts: Vec<(u64, f64, f64)> = m.par_chunks(CH).map(|ch| sums(ch, center)).collect();
        let mut offsets = Vec::with_capacity(parts.len());
        let (mut a0, mut a1, mut a2) = (0u64, 0.0f64, 0.0f64);
        for p in &parts {
            offsets.push((a0, a1, a2));
            a0 += p.0;
            a1 += p.1;
            a2 += p.2;
        }
        let (mut p0, mut p1, mut p2) = (vec![0u64; n + 1], vec![0.0f64; n + 1], vec![0.0f64; n + 1]);
        p0[1..]
            .par_chunks_mut(CH)
            .zip(p1[1..].par_chunks_mut(CH))
            .zip(p2[1..].par_chunks_mut(CH))
            .zip(m.par_chunks(CH))
            .zip(offsets.par_iter())
            .for_each(|((((q0, q1), q2), ch), &(mut b0, mut b1, mut b2))| {
                for (k, e) in ch.iter().enumerate() {
                    let (w, d) = (e.w as f64, e.x() - center);
                    b0 += e.w;
                    b1 += w * d;
                    b2 += w * d * d;
                    q0[k] = b0;
                    q1[k] = b1;
                    q2[k] = b2;
                }
            });
        Prefix { center, p0, p1, p2 }
    }

    pub fn n(&self) -> usize {
        self.p0.len() - 1
    }

    /// (tokens, mean, variance) of positions `[a, b)`.
    #[inline]
    pub fn range(&self, a: usize, b: usize) -> (u64, f64, f64) {
        self.combine(&[(a, b)])
    }

    /// (tokens, mean, variance) of a union of disjoint position ranges.
    #[inline]
    pub fn combine(&self, ranges: &[(usize, usize)]) -> (u64, f64, f64) {
        let (mut w, mut s1, mut s2) = (0u64, 0.0, 0.0);
        for &(a, b) in ranges {
            w += self.p0[b] - self.p0[a];
            s1 += self.p1[b] - self.p1[a];
            s2 += self.p2[b] - self.p2[a];
        }
        let wf = w as f64;
        let m = s1 / wf;
        (w, self.center + m, (s2 / wf - m * m).max(0.0))
    }

    /// Every minimal contiguous window `[a, b)` with tokens >= budget: `f(a, b, tokens, mean, var)`.
    /// These are the minimum-variance subsets for their mean (up to the fractional end chunks).
    pub fn for_windows(&self, budget: u64, mut f: impl FnMut(usize, usize, u64, f64, f64)) {
        let n = self.n();
        let mut b = 0;
        for a in 0..n {
            while b <= n && self.p0[b] - self.p0[a] < budget {
                b += 1;
            }
            if b > n {
                break;
            }
            let (t, m, v) = self.range(a, b);
            f(a, b, t, m, v);
        }
    }

    /// Every split "lowest `a` + highest from `c`" with `c` the largest start reaching the budget:
    /// `f(a, c, tokens, mean, var)`. These are the maximum-variance subsets for their mean.
    pub fn for_tails(&self, budget: u64, mut f: impl FnMut(usize, usize, u64, f64, f64)) {
        let n = self.n();
        let total = self.p0[n];
        let mut c = 0usize;
        for a in 0..=n {
            // largest c >= a with p0[a] + total - p0[c] >= budget; non-decreasing in a.
            if self.p0[a] + (total - self.p0[a]) < budget {
                break;
            }
            c = c.max(a);
            while c < n && self.p0[a] + (total - self.p0[c + 1]) >= budget {
                c += 1;
            }
            let (t, m, v) = self.combine(&[(0, a), (c, n)]);
            f(a, c, t, m, v);
            if self.p0[a] >= budget {
                break;
            }
        }
    }
}

/// The realisable region at a budget (see [`Realisable`]); `target_mean` adds the std range there.
pub fn region(p: &Prepared, pre: &Prefix, budget: u64, target_mean: Option<f64>) -> Realisable {
    let (mut mean_lo, mut mean_hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut std_lo, mut std_hi) = (f64::INFINITY, 0.0f64);
    let mut at_lo: Option<f64> = None;
    let mut at_hi: Option<f64> = None;
    // Linear interpolation of the std where consecutive candidates' means straddle the target.
    let straddle = |prev: &Option<(f64, f64)>, m: f64, s: f64, t: f64| -> Option<f64> {
        let (pm, ps) = (*prev)?;
        if (pm - t) * (m - t) <= 0.0 {
            let f = if m == pm { 0.0 } else { (t - pm) / (m - pm) };
            Some(ps + f * (s - ps))
        } else {
            None
        }
    };
    let mut prev = None;
    pre.for_windows(budget, |_, _, _, m, v| {
        let s = v.sqrt();
        mean_lo = mean_lo.min(m);
        mean_hi = mean_hi.max(m);
        std_lo = std_lo.min(s);
        if let Some(t) = target_mean {
            if let Some(x) = straddle(&prev, m, s, t).or_else(|| (m == t).then_some(s)) {
                at_lo = Some(at_lo.map_or(x, |y: f64| y.min(x)));
            }
        }
        prev = Some((m, s));
    });
    let mut prev = None;
    pre.for_tails(budget, |_, _, _, m, v| {
        let s = v.sqrt();
        mean_lo = mean_lo.min(m);
        mean_hi = mean_hi.max(m);
        std_hi = std_hi.max(s);
        if let Some(t) = target_mean {
            if let Some(x) = straddle(&prev, m, s, t).or_else(|| (m == t).then_some(s)) {
                at_hi = Some(at_hi.map_or(x, |y: f64| y.max(x)));
            }
        }
        prev = Some((m, s));
    });
    Realisable {
        mean: (mean_lo, mean_hi),
        std: (std_lo.min(std_hi), std_hi),
        std_at_target_mean: match (at_lo, at_hi) {
            (Some(a), Some(b)) => Some((a.min(b), b.max(a))),
            _ => None,
        },
        budget,
        window_chunks: p.members.len() as u64,
        window_tokens: p.total_w,
        space: p.space.name(),
    }
}

/// Exact token-weighted (mean, variance) of selected sorted positions, summed in position order.
pub fn exact_stats(m: &[Member], positions: &[usize]) -> (u64, f64, f64) {
    let reference = positions.first().map_or(0.0, |&i| m[i].x());
    let (mut t, mut s1, mut s2) = (0u64, 0.0, 0.0);
    for &i in positions {
        let d = m[i].x() - reference;
        let w = m[i].w as f64;
        t += m[i].w;
        s1 += w * d;
        s2 += w * d * d;
    }
    let mu = s1 / t as f64;
    (t, reference + mu, (s2 / t as f64 - mu * mu).max(0.0))
}

/// Sorted logical rows of the chosen positions.
pub fn rows_of(m: &[Member], positions: &[usize]) -> Vec<u64> {
    let mut rows: Vec<u64> = positions.iter().map(|&i| m[i].row).collect();
    rows.par_sort_unstable();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fkey_orders_like_f64() {
        let v = [-1e300, -2.5, -0.0, 0.0, 1e-300, 1.0, 3.5, f64::INFINITY];
        for w in v.windows(2) {
            assert!(fkey(w[0]) <= fkey(w[1]));
            assert_eq!(from_fkey(fkey(w[0])).to_bits(), w[0].to_bits());
        }
    }
}
