//! Sampling a subset at a token budget, optionally at target mean/std of PPL (or log-PPL).
//!
//! **Keys.** Chunk `i` gets `key_i = chunk_key(seed, chunk_id_i)` (see `hash.rs`) and the uniform
//! `u_i = ((key_i >> 12) + 0.5) / 2^52`. Without `chunk_id` the logical row index is the id, which
//! makes the subset depend on row order (shard invariance is lost).
//!
//! **No target.** Simple random sampling without replacement: chunks in increasing key order until the
//! budget is met (weighted quickselect, O(n)).
//!
//! **Targets.** (1) Members of the window are put in canonical order (`members.rs`) and the realisable
//! region at the budget is computed exactly from prefix sums: the mean range (lowest/highest chunks),
//! the minimum std at the target mean (contiguous windows of the sorted order minimise the variance
//! for a given mean) and the maximum (lowest + highest tails maximise it). A target outside the region
//! (beyond the tolerances) raises `UnreachableTarget` with the ranges. (2) The maximum-entropy inclusion
//! probabilities `p_i = sigmoid(l0 + l1 z_i + l2 z_i^2)` matching budget, mean and second moment are
//! fitted (`tilt.rs`). (3) Order sampling (Rosén's Pareto scheme): chunks are taken in increasing
//! `logit(u_i) - logit(p_i)` until the budget is met, which realises inclusion probabilities ~p_i at a
//! fixed size. Moments now match up to sampling noise O(std / sqrt(chunks)). (4) Local swap search
//! (`refine.rs`) removes that noise, dropping the least certain picks (largest priority) for the chunks
//! nearest to the values that would put the moments on target, until mean and std are within a fifth
//! of the tolerances (1% mean, 2% std). (5) The exact statistics are verified; failure raises
//! `UnreachableTarget`. Every step depends only on the canonical order and the keys, so the subset is
//! the same whatever the row order or shard split.

use rayon::prelude::*;

use crate::corpus::Corpus;
use crate::error::{invalid, Error, Realisable, Result};
use crate::hash::unit_open;
use crate::members::{check_budget, exact_stats, fkey, prepare, region, rows_of, Member, Prefix, Window};
use crate::refine::{Goal, Refiner};
use crate::select::weighted_cut;
use crate::stats::Space;
use crate::tilt;

/// Relative tolerances promised for realisable targets.
pub const MEAN_TOL: f64 = 0.01;
pub const STD_TOL: f64 = 0.02;
/// The local search aims at this fraction of the tolerances.
const AIM: f64 = 0.2;
/// Drop candidates queued for the heuristic local search.
pub(crate) const K_OUT: usize = 65_536;
/// Add candidates (pool) kept for the heuristic local search.
pub(crate) const K_IN: usize = 65_536;

#[derive(Clone, Debug)]
pub struct SampleRequest {
    pub budget: i128,
    pub target_mean: Option<f64>,
    pub target_std: Option<f64>,
    pub space: Space,
    pub window: Window,
    pub seed: u64,
}

pub(crate) fn check_targets(space: Space, mean: Option<f64>, std: Option<f64>) -> Result<()> {
    if let Some(m) = mean {
        let ok = m.is_finite() && if space == Space::Ppl { m > 0.0 } else { m != 0.0 };
        if !ok {
            return Err(invalid(format!(
                "target_mean must be a finite {} (tolerances are relative to it), got {m}",
                if space == Space::Ppl { "perplexity > 0" } else { "non-zero log-perplexity" }
            )));
        }
    }
    if let Some(s) = std {
        if !(s.is_finite() && s > 0.0) {
            return Err(invalid(format!("target_std must be finite and > 0, got {s}")));
        }
    }
    Ok(())
}

/// Sorted logical row indices of the sample (see the module doc).
pub fn sample_subset(c: &Corpus, r: &SampleRequest) -> Result<Vec<u64>> {
    check_targets(r.space, r.target_mean, r.target_std)?;
    if r.target_mean.is_none() && r.target_std.is_none() {
        let p = prepare(c, r.space, &r.window, r.seed, false)?;
        let budget = check_budget(&p, r.budget)?;
        let m = &p.members;
        // Members are in logical row order, so the chosen indices give ascending rows.
        let idx = weighted_cut(m.len(), |i| (m[i].key, m[i].xk), |i| m[i].w, budget);
        return Ok(idx.iter().map(|&i| m[i].row).collect());
    }
    let t0 = std::time::Instant::now();
    let p = prepare(c, r.space, &r.window, r.seed, true)?;
    crate::profile("sample: prepare+sort", t0);
    let budget = check_budget(&p, r.budget)?;
    let m = &p.members;
    let pre = Prefix::new(m);
    crate::profile("sample: prefix", t0);
    let (_, wmean, wvar) = pre.range(0, m.len());
    let m_ref = r.target_mean.unwrap_or(wmean);
    let reg = region(&p, &pre, budget, Some(m_ref));
    crate::profile("sample: region", t0);
    let unreachable = |why: String, reg: &Realisable| Error::UnreachableTarget {
        message: format!("{why}; {reg}"),
        realisable: Box::new(reg.clone()),
    };
    let space = r.space.name();
    if let Some(mt) = r.target_mean {
        let tol = MEAN_TOL * mt.abs();
        if mt < reg.mean.0 - tol || mt > reg.mean.1 + tol {
            return Err(unreachable(format!("target_mean = {mt} ({space}) is not realisable at token_budget = {budget}"), &reg));
        }
    }
    let std_range = reg.std_at_target_mean.unwrap_or(reg.std);
    if let Some(st) = r.target_std {
        if st < std_range.0 * (1.0 - STD_TOL) || st > std_range.1 * (1.0 + STD_TOL) {
            return Err(unreachable(
                format!("target_std = {st} ({space}) is not realisable at token_budget = {budget} with mean {m_ref}"),
                &reg,
            ));
        }
    }
    // Fit the tilt to a target pulled slightly inside the region (the boundary itself needs infinite multipliers).
    let inside = |v: f64, (lo, hi): (f64, f64)| {
        let e = 0.002 * (hi - lo);
        if hi - lo > 0.0 {
            v.clamp(lo + e, hi - e)
        } else {
            v
        }
    };
    let m_c = r.target_mean.map_or(m_ref, |mt| inside(mt, reg.mean));
    let s_c = r.target_std.map_or(wvar.sqrt(), |st| inside(st, std_range));
    let scale = r.target_std.unwrap_or(wvar.sqrt()).max(1e-300);
    let (t1, t2) = ((m_c - m_ref) / scale, (s_c * s_c + (m_c - m_ref).powi(2)) / (scale * scale));
    let (positions, outs, pool) =
        tilted_draw(m, budget, p.total_w, m_ref, scale, t1, t2, r.target_mean.is_some(), r.target_std.is_some());

    let (tm, ts) = (r.target_mean, r.target_std);
    let objective = move |mu: f64, var: f64| {
        let a = tm.map_or(0.0, |t| ((mu - t) / (MEAN_TOL * t.abs())).powi(2));
        let b = ts.map_or(0.0, |t| ((var.sqrt() - t) / (STD_TOL * t)).powi(2));
        a + b
    };
    let within = move |mu: f64, var: f64, f: f64| {
        tm.is_none_or(|t| (mu - t).abs() <= f * MEAN_TOL * t.abs()) && ts.is_none_or(|t| (var.sqrt() - t).abs() <= f * STD_TOL * t)
    };
    let done = move |mu: f64, var: f64| within(mu, var, AIM);
    let goal = Goal { mean: tm, var: ts.map_or(wvar, |t| t * t), objective: &objective, done: &done };
    let mut refiner = Refiner::new(m, &positions, budget, p.w_max, pre.center);
    refiner.set_pool(pool);
    crate::profile("sample: draw", t0);
    let moves = refiner.run(&goal, outs, 3000);
    crate::profile(&format!("sample: refine ({moves} moves)"), t0);
    let chosen = refiner.positions();
    let (_, mu, var) = exact_stats(m, &chosen);
    if !within(mu, var, 1.0) {
        return Err(unreachable(
            format!(
                "could not reach target (mean={}, std={}) in {space} within 1%/2% at token_budget = {budget}: the closest \
                 subset found has mean={mu:.6}, std={:.6} (the target is at the edge of what the corpus can realise)",
                tm.map_or("any".into(), |v| v.to_string()),
                ts.map_or("any".into(), |v| v.to_string()),
                var.sqrt()
            ),
            &reg,
        ));
    }
    Ok(rows_of(m, &chosen))
}

/// Draw a fixed-budget order sample with max-entropy tilted probabilities. Returns the chosen sorted
/// positions, the least certain of them (drop candidates for the local search, largest priority
/// first) and the next unselected ones in priority order (add candidates, ascending).
#[allow(clippy::too_many_arguments)]
pub(crate) fn tilted_draw(
    m: &[Member],
    budget: u64,
    total: u64,
    center: f64,
    scale: f64,
    t1: f64,
    t2: f64,
    use_mean: bool,
    use_sq: bool,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let t0 = std::time::Instant::now();
    let tilt = tilt::fit(m, budget, total, center, scale, t1, t2, use_mean, use_sq);
    crate::profile("draw: tilt fit", t0);
    // Pareto order sampling: priority logit(u) - logit(p), ties by key then position.
    let prio: Vec<u64> = m
        .par_iter()
        .map(|e| {
            let u = unit_open(e.key);
            fkey((u / (1.0 - u)).ln() - tilt.eta(e.x()))
        })
        .collect();
    let order = |i: usize| (prio[i], m[i].key);
    let positions = weighted_cut(m.len(), order, |i| m[i].w, budget);
    crate::profile("draw: priorities + cut", t0);
    // Drop candidates: the least certain picks (largest priority) first.
    let k_out = K_OUT.min(positions.len());
    let mut by_prio: Vec<(u64, u64, usize)> = positions.iter().map(|&i| (prio[i], m[i].key, i)).collect();
    if k_out < by_prio.len() {
        let at = by_prio.len() - k_out;
        by_prio.select_nth_unstable(at);
        by_prio.drain(..at);
    }
    by_prio.sort_unstable_by(|a, b| b.cmp(a));
    let outs: Vec<usize> = by_prio.iter().map(|t| t.2).collect();
    // The next chunks in priority order (about K_IN of them) form the pool of add candidates.
    let avg_w = (total as f64 / m.len() as f64).ceil() as u64;
    let extended = weighted_cut(m.len(), order, |i| m[i].w, budget.saturating_add(K_IN as u64 * avg_w).min(total));
    let mut pool = Vec::with_capacity(extended.len() - positions.len());
    let mut it = positions.iter().peekable();
    for &i in &extended {
        if it.peek() == Some(&&i) {
            it.next();
        } else {
            pool.push(i);
        }
    }
    crate::profile("draw: candidates", t0);
    (positions, outs, pool)
}

/// What the window can realise at a budget (see `members::region`; windows/tails are exact for the
/// sorted order, and ranges at a given mean are interpolated between neighbouring candidates).
pub fn realisable_range(c: &Corpus, budget: i128, space: Space, window: &Window) -> Result<Realisable> {
    let p = prepare(c, space, window, 0, true)?;
    let budget = check_budget(&p, budget)?;
    let pre = Prefix::new(&p.members);
    Ok(region(&p, &pre, budget, None))
}

/// The two edges of the realisable region at a budget, as (mean, std) points in the sorted order:
/// `lower` from every minimal contiguous window (the least spread for its mean), `upper` from every
/// "lowest `a` + highest tail" split (the most spread). `region` reduces the same candidates to ranges.
#[derive(Clone, Debug, Default)]
pub struct RegionEdges {
    pub lower: Vec<(f64, f64)>,
    pub upper: Vec<(f64, f64)>,
}

/// The edges of what the window can realise at a budget (see [`RegionEdges`]).
pub fn realisable_edges(c: &Corpus, budget: i128, space: Space, window: &Window) -> Result<RegionEdges> {
    let p = prepare(c, space, window, 0, true)?;
    let budget = check_budget(&p, budget)?;
    let pre = Prefix::new(&p.members);
    let mut edges = RegionEdges::default();
    pre.for_windows(budget, |_, _, _, m, v| edges.lower.push((m, v.sqrt())));
    pre.for_tails(budget, |_, _, _, m, v| edges.upper.push((m, v.sqrt())));
    Ok(edges)
}
