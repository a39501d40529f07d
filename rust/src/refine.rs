//! Local search on a subset of sorted members: best-improvement moves under the budget rule.
//!
//! Moves: swap (drop a selected chunk, add an unselected one), add, drop (and 2-for-1 / 1-for-2
//! exchanges on tiny inputs); every move keeps
//! `B <= tokens < B + w_max`. Objectives are functions of the token-weighted (mean, variance), kept as
//! running centred sums. For small problems every move is evaluated (exhaustive 1-swap
//! neighbourhood, one best move at a time); otherwise each drop candidate is paired with the
//! unselected chunks (from a candidate pool) nearest to the values that would put the mean or the
//! second moment on target, or that minimise the objective for that drop, and the proposals of a round
//! are applied best first while they still improve (batch rounds).
//! Each accepted move strictly lowers the objective, so the search cannot cycle; ties are broken by
//! position in the canonical order, so the result is reproducible and shard-invariant.

use crate::members::Member;

/// What to minimise.
pub struct Goal<'g> {
    /// Target mean and variance used to aim moves (`None` mean: keep the current mean).
    pub mean: Option<f64>,
    pub var: f64,
    pub objective: &'g (dyn Fn(f64, f64) -> f64 + Sync),
    /// Stop early once this holds.
    pub done: &'g (dyn Fn(f64, f64) -> bool + Sync),
}

pub struct Refiner<'a> {
    m: &'a [Member],
    pub sel: Vec<bool>,
    t: u64,
    s1: f64,
    s2: f64,
    c: f64,
    budget: u64,
    cap: u64,
    n_sel: usize,
    /// 65 statistic values at evenly spaced sorted positions (coarse grid for the 1-D aim search).
    grid: Vec<f64>,
    /// Optional pool of add candidates (ascending positions) searched instead of all members on
    /// large inputs, with their statistic values (cache-friendly binary search).
    pool: Vec<usize>,
    pool_x: Vec<f64>,
}

#[derive(Clone, Copy)]
enum Move {
    Swap(usize, usize),
    Add(usize),
    Drop(usize),
    /// Drop two, add one (exhaustive mode only).
    Swap21(usize, usize, usize),
    /// Drop one, add two (exhaustive mode only).
    Swap12(usize, usize, usize),
}

impl Move {
    /// (dropped, added) positions.
    fn parts(self) -> ([usize; 2], usize, [usize; 2], usize) {
        match self {
            Move::Swap(i, j) => ([i, 0], 1, [j, 0], 1),
            Move::Add(j) => ([0, 0], 0, [j, 0], 1),
            Move::Drop(i) => ([i, 0], 1, [0, 0], 0),
            Move::Swap21(i1, i2, j) => ([i1, i2], 2, [j, 0], 1),
            Move::Swap12(i, j1, j2) => ([i, 0], 1, [j1, j2], 2),
        }
    }
}

/// Drop candidates examined per heuristic round.
const ROUND: usize = 1024;

/// A real gain, not float noise, so long searches end.
#[inline]
fn improves(val: f64, cur: f64) -> bool {
    val < cur * (1.0 - 1e-10)
}

/// Candidates scanned on each side of an aim point.
const NEIGHBOURS: usize = 3;
/// Give up scanning past this many selected members on one side.
const SCAN_LIMIT: usize = 256;

impl<'a> Refiner<'a> {
    pub fn new(m: &'a [Member], positions: &[usize], budget: u64, w_max: u64, center: f64) -> Self {
        let mut sel = vec![false; m.len()];
        let grid = (0..=64).map(|k| m[(m.len() - 1) * k / 64].x()).collect();
        let (mut t, mut s1, mut s2) = (0u64, 0.0, 0.0);
        for &i in positions {
            sel[i] = true;
            let (w, y) = (m[i].w as f64, m[i].x() - center);
            t += m[i].w;
            s1 += w * y;
            s2 += w * y * y;
        }
        Refiner { m, sel, t, s1, s2, c: center, budget, cap: budget.saturating_add(w_max), n_sel: positions.len(), grid, pool: Vec::new(), pool_x: Vec::new() }
    }

    /// Restrict heuristic add candidates to `pool` (ascending positions).
    pub fn set_pool(&mut self, pool: Vec<usize>) {
        self.pool_x = pool.iter().map(|&k| self.m[k].x()).collect();
        self.pool = pool;
    }

    fn stats(&self, t: u64, s1: f64, s2: f64) -> (f64, f64) {
        let tf = t as f64;
        let mu = s1 / tf;
        (self.c + mu, (s2 / tf - mu * mu).max(0.0))
    }

    pub fn mean_var(&self) -> (f64, f64) {
        self.stats(self.t, self.s1, self.s2)
    }

    /// Objective after a move (None if it breaks the budget rule).
    fn eval(&self, mv: Move, goal: &Goal) -> Option<f64> {
        let (mut t, mut s1, mut s2) = (self.t, self.s1, self.s2);
        let (drops, nd, adds, na) = mv.parts();
        for &i in &drops[..nd] {
            let (w, y) = (self.m[i].w, self.m[i].x() - self.c);
            t -= w;
            s1 -= w as f64 * y;
            s2 -= w as f64 * y * y;
        }
        for &j in &adds[..na] {
            let (w, y) = (self.m[j].w, self.m[j].x() - self.c);
            t += w;
            s1 += w as f64 * y;
            s2 += w as f64 * y * y;
        }
        if t < self.budget || t >= self.cap {
            return None;
        }
        let (mu, v) = self.stats(t, s1, s2);
        Some((goal.objective)(mu, v))
    }

    fn apply(&mut self, mv: Move) {
        let (drops, nd, adds, na) = mv.parts();
        for (&i, on) in drops[..nd].iter().map(|i| (i, false)).chain(adds[..na].iter().map(|j| (j, true))) {
            let (w, y) = (self.m[i].w, self.m[i].x() - self.c);
            let sign = if on { 1.0 } else { -1.0 };
            if on {
                self.t += w;
            } else {
                self.t -= w;
            }
            self.s1 += sign * w as f64 * y;
            self.s2 += sign * w as f64 * y * y;
            self.sel[i] = on;
        }
        self.n_sel = self.n_sel + na - nd;
    }

    /// Statistic values that would put the mean / second moment on target after dropping chunk `drop`
    /// (or nothing) and adding one chunk of weight `w`.
    fn aims(&self, drop: Option<usize>, w: f64, goal: &Goal) -> [Option<f64>; 3] {
        let (mut t, mut a, mut q) = (self.t as f64, self.s1, self.s2);
        if let Some(i) = drop {
            let (wi, y) = (self.m[i].w as f64, self.m[i].x() - self.c);
            t -= wi;
            a -= wi * y;
            q -= wi * y * y;
        }
        let t2 = t + w;
        let mean = goal.mean.unwrap_or_else(|| self.mean_var().0);
        let dm = mean - self.c;
        let y_mean = (t2 * dm - a) / w;
        let need = (t2 * (goal.var + dm * dm) - q) / w;
        let (yp, yn) = if need >= 0.0 { (Some(need.sqrt()), Some(-need.sqrt())) } else { (None, None) };
        [Some(self.c + y_mean), yp.map(|y| self.c + y), yn.map(|y| self.c + y)]
    }

    /// The statistic value whose addition (weight `w`, after dropping `drop`) minimises the objective,
    /// treating values as continuous: coarse grid over the data's quantiles, then golden-section search.
    fn best_x(&self, drop: Option<usize>, w: f64, goal: &Goal) -> f64 {
        let (mut t, mut a, mut q) = (self.t as f64, self.s1, self.s2);
        if let Some(i) = drop {
            let (wi, y) = (self.m[i].w as f64, self.m[i].x() - self.c);
            t -= wi;
            a -= wi * y;
            q -= wi * y * y;
        }
        let t2 = t + w;
        let f = |x: f64| {
            let y = x - self.c;
            let mu = (a + w * y) / t2;
            (goal.objective)(self.c + mu, ((q + w * y * y) / t2 - mu * mu).max(0.0))
        };
        let g = &self.grid;
        let k = (0..g.len()).min_by(|&i, &j| f(g[i]).total_cmp(&f(g[j]))).unwrap_or(0);
        let (mut lo, mut hi) = (g[k.saturating_sub(1)], g[(k + 1).min(g.len() - 1)]);
        const R: f64 = 0.618_033_988_749_895;
        let (mut x1, mut x2) = (hi - R * (hi - lo), lo + R * (hi - lo));
        let (mut f1, mut f2) = (f(x1), f(x2));
        for _ in 0..30 {
            if f1 <= f2 {
                hi = x2;
                x2 = x1;
                f2 = f1;
                x1 = hi - R * (hi - lo);
                f1 = f(x1);
            } else {
                lo = x1;
                x1 = x2;
                f1 = f2;
                x2 = lo + R * (hi - lo);
                f2 = f(x2);
            }
        }
        if f1 <= f2 {
            x1
        } else {
            x2
        }
    }

    /// Unselected positions near value `x` (up to NEIGHBOURS on each side, from the pool when set)
    /// whose addition, after dropping `w_drop` tokens, keeps the budget rule.
    fn near(&self, x: f64, w_drop: u64, out: &mut Vec<usize>) {
        let base = self.t - w_drop;
        let ok = |k: usize| !self.sel[k] && base + self.m[k].w >= self.budget && base + self.m[k].w < self.cap;
        let (len, at): (usize, &dyn Fn(usize) -> usize) = if self.pool.is_empty() {
            (self.m.len(), &|k| k)
        } else {
            (self.pool.len(), &|k| self.pool[k])
        };
        let p = if self.pool.is_empty() {
            self.m.partition_point(|e| e.x() < x)
        } else {
            self.pool_x.partition_point(|&v| v < x)
        };
        let (mut found, mut scanned, mut k) = (0, 0, p);
        while k < len && found < NEIGHBOURS && scanned < SCAN_LIMIT {
            if ok(at(k)) {
                out.push(at(k));
                found += 1;
            }
            k += 1;
            scanned += 1;
        }
        let (mut found, mut scanned, mut k) = (0, 0, p);
        while k > 0 && found < NEIGHBOURS && scanned < SCAN_LIMIT {
            k -= 1;
            scanned += 1;
            if ok(at(k)) {
                out.push(at(k));
                found += 1;
            }
        }
    }

    /// Run the search. `queue`: drop candidates for the heuristic mode, in the order they should be
    /// tried (ignored when exhaustive); each round takes the next `ROUND` still-selected ones, cycling.
    /// Returns the number of moves made.
    pub fn run(&mut self, goal: &Goal, queue: Vec<usize>, max_moves: usize) -> usize {
        let mut cursor = 0usize;
        let mut idle_rounds = 0usize;
        let n = self.m.len();
        let mut moves = 0;
        let mut cur = {
            let (mu, v) = self.mean_var();
            (goal.objective)(mu, v)
        };
        let avg_w = self.m.iter().map(|e| e.w as f64).sum::<f64>() / n as f64;
        while moves < max_moves {
            let (mu, v) = self.mean_var();
            if (goal.done)(mu, v) {
                break;
            }
            let n_sel = self.n_sel;
            let exhaustive = (n_sel as u128) * ((n - n_sel) as u128) <= 250_000;
            let mut best: Option<(f64, Move)> = None;
            let mut consider = |mv: Move, this: &Self| {
                if let Some(val) = this.eval(mv, goal) {
                    if improves(val, cur) && best.is_none_or(|(b, _)| val < b) {
                        best = Some((val, mv));
                    }
                }
            };
            if exhaustive {
                let (ins, sels): (Vec<usize>, Vec<usize>) = (0..n).partition(|&k| !self.sel[k]);
                for &i in &sels {
                    consider(Move::Drop(i), self);
                    for &j in &ins {
                        consider(Move::Swap(i, j), self);
                    }
                }
                for &j in &ins {
                    consider(Move::Add(j), self);
                }
                // Pair exchanges matter when chunk lengths differ (the budget rule blocks 1-for-1 swaps).
                if (n as u128).pow(3) <= 250_000 {
                    for (a, &i1) in sels.iter().enumerate() {
                        for &i2 in &sels[a + 1..] {
                            for &j in &ins {
                                consider(Move::Swap21(i1, i2, j), self);
                            }
                        }
                    }
                    for &i in &sels {
                        for (a, &j1) in ins.iter().enumerate() {
                            for &j2 in &ins[a + 1..] {
                                consider(Move::Swap12(i, j1, j2), self);
                            }
                        }
                    }
                }
            } else {
                // Next window of the queue (drop candidates that are still selected).
                let mut outs = Vec::with_capacity(ROUND);
                let mut seen = 0;
                while outs.len() < ROUND && seen < queue.len() {
                    let i = queue[cursor % queue.len()];
                    cursor += 1;
                    seen += 1;
                    if self.sel[i] {
                        outs.push(i);
                    }
                }
                let (applied, now) = self.batch_round(goal, &mut outs, cur, avg_w, max_moves - moves);
                // Stop after 4 rounds (or a full pass over the queue) without any gain.
                idle_rounds = if applied == 0 { idle_rounds + 1 } else { 0 };
                if idle_rounds >= 4 || idle_rounds * ROUND >= queue.len().max(1) {
                    break;
                }
                moves += applied;
                cur = now;
                continue;
            }
            let Some((val, mv)) = best else { break };
            self.apply(mv);
            cur = val;
            moves += 1;
        }
        moves
    }

    /// Best improving move that drops `i` (a swap with a nearby pool chunk, or a plain drop).
    fn best_for(&self, i: usize, goal: &Goal, cur: f64, cands: &mut Vec<usize>) -> Option<(f64, Move)> {
        let mut best: Option<(f64, Move)> = None;
        let mut consider = |mv: Move| {
            if let Some(val) = self.eval(mv, goal) {
                if improves(val, cur) && best.is_none_or(|(b, _)| val < b) {
                    best = Some((val, mv));
                }
            }
        };
        consider(Move::Drop(i));
        cands.clear();
        let wi = self.m[i].w as f64;
        let extra = [Some(self.best_x(Some(i), wi, goal)), Some(2.0 * self.mean_var().0 - self.m[i].x())];
        for x in self.aims(Some(i), wi, goal).into_iter().chain(extra).flatten() {
            self.near(x, self.m[i].w, cands);
        }
        for &j in cands.iter() {
            consider(Move::Swap(i, j));
        }
        best
    }

    /// One heuristic round: every drop candidate's best move is scored on the round's starting state;
    /// candidates are then revisited best first, their best move recomputed on the current state and
    /// applied if it still improves. Many small corrections per round make large subsets converge in a
    /// few rounds. Returns (moves applied, objective).
    fn batch_round(&mut self, goal: &Goal, outs: &mut Vec<usize>, mut cur: f64, avg_w: f64, budget: usize) -> (usize, f64) {
        outs.retain(|&i| self.sel[i]);
        let mut cands = Vec::new();
        let mut ranked: Vec<(f64, usize)> =
            outs.iter().filter_map(|&i| self.best_for(i, goal, cur, &mut cands).map(|(v, _)| (v, i))).collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut applied = 0;
        for (_, i) in ranked {
            if applied >= budget || (goal.done)(self.mean_var().0, self.mean_var().1) {
                break;
            }
            if !self.sel[i] {
                continue;
            }
            if let Some((v, mv)) = self.best_for(i, goal, cur, &mut cands) {
                self.apply(mv);
                cur = v;
                applied += 1;
                if let Move::Swap(_, j) = mv {
                    outs.push(j);
                }
            }
        }
        // Adds (only possible when chunk lengths differ).
        cands.clear();
        let extra = Some(self.best_x(None, avg_w, goal));
        for x in self.aims(None, avg_w, goal).into_iter().chain([extra]).flatten() {
            self.near(x, 0, &mut cands);
        }
        let add = cands.iter().filter_map(|&j| self.eval(Move::Add(j), goal).map(|v| (v, j))).min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((v, j)) = add {
            if improves(v, cur) && applied < budget {
                self.apply(Move::Add(j));
                outs.push(j);
                cur = v;
                applied += 1;
            }
        }
        if std::env::var_os("PPLAW_PROFILE").is_some() {
            eprintln!("[pplaw] refine round: {applied} moves, objective {cur:.3e}, mean/var {:?}", self.mean_var());
        }
        (applied, cur)
    }

    pub fn positions(&self) -> Vec<usize> {
        (0..self.m.len()).filter(|&k| self.sel[k]).collect()
    }
}
