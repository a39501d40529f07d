//! Distance-to-Optimum Selection (DOS).
//!
//! Minimise `J(S) = w_mu * (mu(S) - mu*)^2 + w_s * (sigma(S)^2 - sigma*^2)^2` over subsets `S` whose tokens
//! satisfy the budget rule `B <= tokens(S) < B + w_max` (`members.rs`); `mu`, `sigma` are the token-weighted
//! mean and std (plain when lengths are equal) in the chosen space. Default weights `1/mu*^2` and
//! `1/sigma*^4` make `J` the sum of squared relative errors of the mean and the variance.
//!
//! **Algorithm.** `J` depends on `S` only through the sufficient statistics (tokens, sum w x, sum w x^2).
//! Its only stationary point in (mean, variance) is the target itself, so:
//! 1. *Boundary candidates.* If the target is not realisable, the optimum lies on the boundary of the
//!    realisable region, whose lower edge (least variance for a given mean) is traced by contiguous
//!    windows of the sorted order and whose upper edge by "lowest a + highest" tail splits. Both
//!    families are scanned exhaustively in O(n) with prefix sums; the best of each is a candidate.
//! 2. *Interior candidate.* If the target is realisable, the maximum-entropy tilted order sample of
//!    `sample.rs` (inclusion probabilities matched to mu*, sigma*) is a candidate with `J` ~ sampling noise.
//! 3. *Local search.* From the best candidate (on inputs of <= 4000 chunks: from the 8 best windows,
//!    the 8 best tail splits, the tilted sample and, up to 64 chunks, 16 key-random fills), best-improvement
//!    swap/add/drop moves under the budget rule (`refine.rs`; exhaustive 1-swap neighbourhood when
//!    small) until no move improves `J`.
//!
//! Ties are broken by position in the canonical `(x, key)` order, where `key = chunk_key(seed, chunk_id)`,
//! so the result is deterministic and identical whatever the row order or shard split.

use rayon::prelude::*;

use crate::corpus::Corpus;
use crate::error::{invalid, Result};
use crate::hash::mix64;
use crate::members::{check_budget, exact_stats, prepare, region, rows_of, Member, Prefix, Window};
use crate::refine::{Goal, Refiner};
use crate::sample::{check_targets, tilted_draw, K_IN, K_OUT};
use crate::stats::{stats_of_indices, Selection, Space, Weighting};

/// Inputs up to this size get multi-start local search; up to TINY also random restarts.
const SMALL: usize = 4000;
const TINY: usize = 64;

/// Keep the `keep` lowest-objective entries (ties: first seen).
fn push_best(v: &mut Vec<(f64, usize, usize)>, keep: usize, e: (f64, usize, usize)) {
    if v.len() < keep || e.0 < v[v.len() - 1].0 {
        let at = v.partition_point(|x| x.0 <= e.0);
        v.insert(at, e);
        v.truncate(keep);
    }
}

#[derive(Clone, Debug)]
pub struct DosRequest {
    pub budget: i128,
    pub target_mean: f64,
    pub target_std: f64,
    pub space: Space,
    pub w_mu: Option<f64>,
    pub w_s: Option<f64>,
    pub seed: u64,
}

/// Resolve and validate the objective's weights.
pub fn weights(space: Space, mean: f64, std: f64, w_mu: Option<f64>, w_s: Option<f64>) -> Result<(f64, f64)> {
    if !mean.is_finite() || (space == Space::Ppl && mean <= 0.0) {
        return Err(invalid(format!("target_mean must be a finite {} , got {mean}", space.name())));
    }
    if !(std.is_finite() && std >= 0.0) {
        return Err(invalid(format!("target_std must be finite and >= 0, got {std}")));
    }
    let wm = match w_mu {
        Some(w) => w,
        None if mean != 0.0 => 1.0 / (mean * mean),
        None => return Err(invalid("w_mu must be given when target_mean is 0 (the default 1/mu*^2 is undefined)")),
    };
    let ws = match w_s {
        Some(w) => w,
        None if std > 0.0 => 1.0 / std.powi(4),
        None => return Err(invalid("w_s must be given when target_std is 0 (the default 1/sigma*^4 is undefined)")),
    };
    if !(wm.is_finite() && wm >= 0.0 && ws.is_finite() && ws >= 0.0) || wm + ws == 0.0 {
        return Err(invalid(format!("w_mu and w_s must be finite, >= 0 and not both 0, got w_mu={wm}, w_s={ws}")));
    }
    Ok((wm, ws))
}

/// The DOS objective at a (mean, variance).
#[inline]
pub fn objective(mean: f64, var: f64, target_mean: f64, target_std: f64, wm: f64, ws: f64) -> f64 {
    wm * (mean - target_mean).powi(2) + ws * (var - target_std * target_std).powi(2)
}

/// Result of a selection: sorted logical rows and the achieved statistics.
#[derive(Clone, Debug)]
pub struct DosResult {
    pub rows: Vec<u64>,
    pub tokens: u64,
    pub mean: f64,
    pub std: f64,
    pub objective: f64,
}

/// Drop and add candidates for local search on a large subset: a key-random sample of each side plus,
/// when the subset is made of a few runs of the sorted order (windows, tails), the members around the
/// run boundaries.
fn large_candidates(m: &[Member], positions: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let n = m.len();
    let mut sel = vec![false; n];
    positions.iter().for_each(|&i| sel[i] = true);
    // Re-hashed keys: the sampling keys themselves are correlated with what the tilted draw picked.
    let rk = |a: usize| mix64(m[a].key ^ 0x2545_f491_4f6c_dd1d);
    let by_key = |mut v: Vec<usize>, k: usize| {
        if v.len() > k {
            v.select_nth_unstable_by(k, |&a, &b| (rk(a), a).cmp(&(rk(b), b)));
            v.truncate(k);
        }
        v
    };
    let mut outs = by_key(positions.to_vec(), K_OUT);
    let mut pool = by_key((0..n).filter(|&i| !sel[i]).collect(), K_IN);
    let mut bounds: Vec<usize> = positions.windows(2).filter(|w| w[1] != w[0] + 1).flat_map(|w| [w[0] + 1, w[1]]).collect();
    if let (Some(&a), Some(&b)) = (positions.first(), positions.last()) {
        bounds.extend([a, b + 1]);
    }
    if bounds.len() <= 16 {
        for &b in &bounds {
            for k in b.saturating_sub(2048)..(b + 2048).min(n) {
                if sel[k] { outs.push(k) } else { pool.push(k) }
            }
        }
    }
    // Queue order: boundary members first, then by re-hashed key.
    let mut seen = vec![false; 0];
    seen.resize(n, false);
    let mut queue = Vec::with_capacity(outs.len());
    let n_random = outs.len().min(K_OUT);
    let (random, boundary) = outs.split_at(n_random);
    let mut random = random.to_vec();
    random.sort_unstable_by_key(|&a| (rk(a), a));
    for &i in boundary.iter().chain(&random) {
        if !seen[i] {
            seen[i] = true;
            queue.push(i);
        }
    }
    pool.sort_unstable();
    pool.dedup();
    (queue, pool)
}

/// Run DOS (see the module doc).
pub fn select_dos(c: &Corpus, r: &DosRequest) -> Result<DosResult> {
    let (wm, ws) = weights(r.space, r.target_mean, r.target_std, r.w_mu, r.w_s)?;
    if r.target_std > 0.0 {
        check_targets(r.space, None, Some(r.target_std))?;
    }
    let t0 = std::time::Instant::now();
    let p = prepare(c, r.space, &Window::default(), r.seed, true)?;
    crate::profile("dos: prepare+sort", t0);
    let budget = check_budget(&p, r.budget)?;
    let m = &p.members;
    let n = m.len();
    let pre = Prefix::new(m);
    let (mu_t, sd_t) = (r.target_mean, r.target_std);
    let j = move |mu: f64, var: f64| objective(mu, var, mu_t, sd_t, wm, ws);

    // Best few windows and tail splits (one on large inputs, several as multi-start on small ones).
    let keep = if n <= SMALL { 8 } else { 1 };
    let mut wins: Vec<(f64, usize, usize)> = Vec::new();
    pre.for_windows(budget, |a, b, _, mu, var| push_best(&mut wins, keep, (j(mu, var), a, b)));
    let mut tails: Vec<(f64, usize, usize)> = Vec::new();
    pre.for_tails(budget, |a, cc, _, mu, var| push_best(&mut tails, keep, (j(mu, var), a, cc)));
    let mut cands: Vec<Vec<usize>> = Vec::new();
    cands.extend(wins.iter().map(|&(_, a, b)| (a..b).collect()));
    cands.extend(tails.iter().map(|&(_, a, cc)| (0..a).chain(cc..n).collect()));
    if n <= TINY {
        // Random restarts: members in the order of re-hashed keys, filled to the budget.
        for r in 1..=16u64 {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&i| (mix64(m[i].key ^ r.wrapping_mul(0x9e37_79b9_7f4a_7c15)), i));
            let (mut t, mut pos) = (0u64, Vec::new());
            for i in order {
                if t >= budget {
                    break;
                }
                t += m[i].w;
                pos.push(i);
            }
            pos.sort_unstable();
            cands.push(pos);
        }
    }
    crate::profile("dos: prefix+scans", t0);
    let reg = region(&p, &pre, budget, Some(mu_t));
    crate::profile("dos: region", t0);
    let inside = reg.mean.0 <= mu_t
        && mu_t <= reg.mean.1
        && reg.std_at_target_mean.is_some_and(|(lo, hi)| lo <= sd_t && sd_t <= hi)
        && sd_t > 0.0;
    if inside {
        let (pos, _, _) = tilted_draw(m, budget, p.total_w, mu_t, sd_t, 0.0, 1.0, true, true);
        cands.push(pos);
    }
    crate::profile("dos: candidates", t0);
    let scale = wm * mu_t * mu_t + ws * sd_t.powi(4);
    let done = move |mu: f64, var: f64| j(mu, var) <= 1e-12 * scale;
    let goal = Goal { mean: Some(mu_t), var: sd_t * sd_t, objective: &j, done: &done };
    let score = |pos: &[usize]| {
        let (_, mu, var) = exact_stats(m, pos);
        j(mu, var)
    };
    // Local search from every candidate when small, else from the best one.
    let mut order: Vec<(f64, usize)> = cands.iter().enumerate().map(|(i, c)| (score(c), i)).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let starts = if n <= SMALL { order.len() } else { 1 };
    let results: Vec<Vec<usize>> = order[..starts]
        .par_iter()
        .map(|&(_, i)| {
            let mut rf = Refiner::new(m, &cands[i], budget, p.w_max, pre.center);
            let (outs, pool) = if n <= SMALL { (cands[i].clone(), Vec::new()) } else { large_candidates(m, &cands[i]) };
            rf.set_pool(pool);
            let mv = rf.run(&goal, outs, if n <= SMALL { 100_000 } else { 20_000 });
            crate::profile(&format!("dos: refine {mv} moves, J {:?}", rf.mean_var()), t0);
            rf.positions()
        })
        .collect();
    let best = results
        .into_iter()
        .map(|pos| (score(&pos), pos))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, pos)| pos)
        .unwrap_or_default();
    crate::profile("dos: local search", t0);
    let (tokens, mean, var) = exact_stats(m, &best);
    Ok(DosResult { rows: rows_of(m, &best), tokens, mean, std: var.sqrt(), objective: j(mean, var) })
}

/// `J` of a given selection (token-weighted statistics, as DOS uses).
#[allow(clippy::too_many_arguments)]
pub fn dos_objective(
    c: &Corpus,
    sel: &Selection,
    space: Space,
    target_mean: f64,
    target_std: f64,
    w_mu: Option<f64>,
    w_s: Option<f64>,
) -> Result<f64> {
    let (wm, ws) = weights(space, target_mean, target_std, w_mu, w_s)?;
    let idx = crate::stats::selection_indices(sel, c.len())?;
    let s = stats_of_indices(c, &idx, space, Weighting::Tokens)?;
    Ok(objective(s.mean, s.std * s.std, target_mean, target_std, wm, ws))
}
