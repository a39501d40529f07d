//! A fixed fine grid over log-PPL that merges exactly across shards.
//!
//! **Cells.** `n_cells` equal cells of width `h = (log_hi - log_lo) / n_cells` cover `[log_lo, log_hi)` in
//! `ln(ppl)`, plus an underflow cell (`ln ppl < log_lo`) and an overflow cell (`ln ppl >= log_hi`).
//! Default: `log_lo = 0`, `log_hi = 14` (PPL 1 .. 1.2e6), `n_cells = 14000`, i.e. `h = 0.001` nat.
//!
//! **Exact merge.** Each cell holds integer chunk and token counts; the grid holds fixed-point moment
//! sums `sum w*q`, `sum w*q^2` with `q = round(ppl * 2^24)` and `sum w*r`, `sum w*r^2` with
//! `r = round(ln(ppl) * 2^40)`, in 256-bit integers, plus min/max PPL and min/max chunk length.
//! Every merge operation is integer addition or min/max, so merging is exactly associative and
//! commutative: the merged grid is bit-identical whatever the shard order. (PPL must be < 2^63 for
//! the fixed point; the quantisation error, <= 2^-25 absolute on PPL, is far below any reported digit.)
//!
//! **Quantile error.** A grid quantile is the geometric midpoint of the value interval of the cell that
//! holds the exact quantile (cell bounds clipped to the observed [min, max]). The exact quantile lies
//! in that cell, so the relative PPL error is at most `exp(h/2) - 1` (5.0e-4 for the default grid), and
//! at most one cell (`exp(h) - 1`, 1.0e-3) in any case. Quantiles that fall into the under/overflow
//! cells are only bounded by `[min, exp(log_lo)]` / `[exp(log_hi), max]`.

use serde::{Deserialize, Serialize};

use crate::corpus::{Corpus, Overview};
use crate::error::{invalid, serialization, Error, Result};
use crate::wide::I256;

pub const PPL_FRAC_BITS: i32 = 24;
pub const LOG_FRAC_BITS: i32 = 40;
/// PPL values must stay below this for the fixed-point sums.
pub const PPL_LIMIT: f64 = 9.223_372_036_854_776e18; // 2^63
const GRID_FORMAT: &str = "pplaw.grid";
const GRID_VERSION: u32 = 1;

/// The grid's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    pub log_lo: f64,
    pub log_hi: f64,
    pub n_cells: usize,
}

impl Default for GridSpec {
    fn default() -> Self {
        GridSpec { log_lo: 0.0, log_hi: 14.0, n_cells: 14_000 }
    }
}

impl GridSpec {
    pub fn validate(&self) -> Result<()> {
        if !(self.log_lo.is_finite() && self.log_hi.is_finite() && self.log_lo < self.log_hi) {
            return Err(invalid(format!(
                "grid: log_lo and log_hi must be finite with log_lo < log_hi, got log_lo={} log_hi={}",
                self.log_lo, self.log_hi
            )));
        }
        if self.n_cells == 0 || self.n_cells > 50_000_000 {
            return Err(invalid(format!("grid: n_cells must be in [1, 50000000], got {}", self.n_cells)));
        }
        Ok(())
    }

    pub fn width(&self) -> f64 {
        (self.log_hi - self.log_lo) / self.n_cells as f64
    }

    /// Index in `[0, n_cells + 2)`: 0 = underflow, 1..=n_cells the cells, n_cells + 1 = overflow.
    #[inline]
    pub fn index(&self, ln_ppl: f64) -> usize {
        if ln_ppl < self.log_lo {
            0
        } else if ln_ppl >= self.log_hi {
            self.n_cells + 1
        } else {
            let t = ((ln_ppl - self.log_lo) * (self.n_cells as f64 / (self.log_hi - self.log_lo))) as usize;
            t.min(self.n_cells - 1) + 1
        }
    }

    /// `[lo, hi)` in ln(ppl) of a cell index (infinite for under/overflow).
    pub fn log_bounds(&self, idx: usize) -> (f64, f64) {
        let h = self.width();
        if idx == 0 {
            (f64::NEG_INFINITY, self.log_lo)
        } else if idx == self.n_cells + 1 {
            (self.log_hi, f64::INFINITY)
        } else if idx == self.n_cells {
            (self.log_lo + (idx - 1) as f64 * h, self.log_hi)
        } else {
            (self.log_lo + (idx - 1) as f64 * h, self.log_lo + idx as f64 * h)
        }
    }
}

/// Overall statistics (landscape or grid).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n_chunks: u64,
    pub n_tokens: u64,
    pub mean: f64,
    pub std: f64,
    pub log_mean: f64,
    pub log_std: f64,
    pub weighted: bool,
    pub ppl_min: f64,
    pub ppl_max: f64,
}

/// The mergeable grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub spec: GridSpec,
    pub counts: Vec<u64>,
    pub tokens: Vec<u64>,
    pub n_chunks: u64,
    pub n_tokens: u64,
    pub ppl_min: f64,
    pub ppl_max: f64,
    pub tokens_min: u64,
    pub tokens_max: u64,
    pub sum_q: I256,
    pub sum_q2: I256,
    pub sum_r: I256,
    pub sum_r2: I256,
}

impl Grid {
    pub fn empty(spec: GridSpec) -> Grid {
        Grid {
            spec,
            counts: vec![0; spec.n_cells + 2],
            tokens: vec![0; spec.n_cells + 2],
            n_chunks: 0,
            n_tokens: 0,
            ppl_min: f64::INFINITY,
            ppl_max: f64::NEG_INFINITY,
            tokens_min: u64::MAX,
            tokens_max: 0,
            sum_q: I256::ZERO,
            sum_q2: I256::ZERO,
            sum_r: I256::ZERO,
            sum_r2: I256::ZERO,
        }
    }

    /// Add one chunk (`ppl` validated finite, > 0 and < 2^63; `ln_ppl = ppl.ln()`; `w > 0`).
    #[inline]
    pub fn push(&mut self, ppl: f64, ln_ppl: f64, w: u64) {
        let i = self.spec.index(ln_ppl);
        self.counts[i] += 1;
        self.tokens[i] += w;
        self.n_chunks += 1;
        self.n_tokens += w;
        self.ppl_min = self.ppl_min.min(ppl);
        self.ppl_max = self.ppl_max.max(ppl);
        self.tokens_min = self.tokens_min.min(w);
        self.tokens_max = self.tokens_max.max(w);
        // Round half away from zero via truncation (hardware conversions, no libm call).
        let qf = ppl * (1u64 << PPL_FRAC_BITS) as f64 + 0.5;
        if qf < 18_446_744_073_709_551_616.0 {
            // Fast path (ppl < 2^40): 64-bit fixed point, 64x64 -> 128-bit products.
            let q = qf as u64;
            self.sum_q.add_u128(q as u128 * w as u128);
            self.sum_q2.add_mul(q as u128 * q as u128, w);
        } else {
            let q = qf as u128;
            self.sum_q.add_mul(q, w);
            self.sum_q2.add(&I256::mul_u128(q, q).mul_u64(w));
        }
        let rf = ln_ppl * (1u64 << LOG_FRAC_BITS) as f64;
        let r = if rf >= 0.0 { (rf + 0.5) as i64 } else { -((-rf + 0.5) as i64) };
        self.sum_r.add_i128(r as i128 * w as i128);
        let ra = r.unsigned_abs() as u128;
        self.sum_r2.add_mul(ra * ra, w);
    }

    /// Exact merge; errors if the specs differ.
    pub fn merge(&self, other: &Grid) -> Result<Grid> {
        if self.spec != other.spec {
            return Err(invalid(format!(
                "cannot merge grids with different specs: {:?} vs {:?}",
                self.spec, other.spec
            )));
        }
        let mut g = self.clone();
        g.merge_in(other)?;
        Ok(g)
    }

    pub(crate) fn merge_in(&mut self, o: &Grid) -> Result<()> {
        self.counts.iter_mut().zip(&o.counts).for_each(|(a, b)| *a += b);
        self.tokens.iter_mut().zip(&o.tokens).for_each(|(a, b)| *a += b);
        self.n_chunks += o.n_chunks;
        self.n_tokens = self
            .n_tokens
            .checked_add(o.n_tokens)
            .ok_or_else(|| invalid("merged grid: the total token count overflows 64 bits"))?;
        self.ppl_min = self.ppl_min.min(o.ppl_min);
        self.ppl_max = self.ppl_max.max(o.ppl_max);
        self.tokens_min = self.tokens_min.min(o.tokens_min);
        self.tokens_max = self.tokens_max.max(o.tokens_max);
        self.sum_q.add(&o.sum_q);
        self.sum_q2.add(&o.sum_q2);
        self.sum_r.add(&o.sum_r);
        self.sum_r2.add(&o.sum_r2);
        Ok(())
    }

    /// Overall statistics from the exact sums (token-weighted; identical to unweighted for equal lengths).
    pub fn summary(&self) -> Summary {
        let w = self.n_tokens as f64;
        let sq = (1u64 << PPL_FRAC_BITS) as f64;
        let sr = (1u64 << LOG_FRAC_BITS) as f64;
        let mean = self.sum_q.to_f64() / sq / w;
        let var = (self.sum_q2.to_f64() / (sq * sq) / w - mean * mean).max(0.0);
        let log_mean = self.sum_r.to_f64() / sr / w;
        let log_var = (self.sum_r2.to_f64() / (sr * sr) / w - log_mean * log_mean).max(0.0);
        Summary {
            n_chunks: self.n_chunks,
            n_tokens: self.n_tokens,
            mean,
            std: var.sqrt(),
            log_mean,
            log_std: log_var.sqrt(),
            weighted: self.tokens_min != self.tokens_max,
            ppl_min: self.ppl_min,
            ppl_max: self.ppl_max,
        }
    }

    /// Token-weighted quantile edges (`n_bins + 1` values) from the grid; see the module doc for the error bound.
    pub fn quantiles(&self, n_bins: usize) -> Result<Vec<f64>> {
        if n_bins == 0 {
            return Err(invalid("n_bins must be >= 1"));
        }
        let total = self.n_tokens as u128;
        let mut out = Vec::with_capacity(n_bins + 1);
        out.push(self.ppl_min);
        let (mut cell, mut cum) = (0usize, self.tokens[0] as u128);
        for k in 1..n_bins {
            while cum * (n_bins as u128) < (k as u128) * total && cell + 1 < self.tokens.len() {
                cell += 1;
                cum += self.tokens[cell] as u128;
            }
            let (llo, lhi) = self.spec.log_bounds(cell);
            let lo = llo.exp().max(self.ppl_min);
            let hi = lhi.exp().min(self.ppl_max);
            out.push((lo * hi).sqrt().clamp(self.ppl_min, self.ppl_max));
        }
        out.push(self.ppl_max);
        Ok(out)
    }

    pub fn to_json(&self) -> String {
        let cells = self
            .counts
            .iter()
            .zip(&self.tokens)
            .enumerate()
            .filter(|(_, (&c, _))| c > 0)
            .map(|(i, (&c, &t))| [i as u64, c, t])
            .collect();
        let doc = GridDoc {
            format: GRID_FORMAT.into(),
            version: GRID_VERSION,
            spec: self.spec,
            ppl_frac_bits: PPL_FRAC_BITS,
            log_frac_bits: LOG_FRAC_BITS,
            n_chunks: self.n_chunks,
            n_tokens: self.n_tokens,
            ppl_min: self.ppl_min,
            ppl_max: self.ppl_max,
            tokens_min: self.tokens_min,
            tokens_max: self.tokens_max,
            sum_q: self.sum_q.to_hex(),
            sum_q2: self.sum_q2.to_hex(),
            sum_r: self.sum_r.to_hex(),
            sum_r2: self.sum_r2.to_hex(),
            cells,
        };
        serde_json::to_string(&doc).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Grid> {
        let doc: GridDoc = serde_json::from_str(s).map_err(|e| serialization(format!("not a pplaw grid JSON document: {e}")))?;
        Grid::from_doc(doc)
    }

    pub(crate) fn to_doc_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.to_json()).unwrap_or(serde_json::Value::Null)
    }

    pub(crate) fn from_doc_value(v: serde_json::Value) -> Result<Grid> {
        let doc: GridDoc = serde_json::from_value(v).map_err(|e| serialization(format!("bad grid in document: {e}")))?;
        Grid::from_doc(doc)
    }

    fn from_doc(doc: GridDoc) -> Result<Grid> {
        if doc.format != GRID_FORMAT || doc.version != GRID_VERSION {
            return Err(serialization(format!(
                "expected format {GRID_FORMAT:?} version {GRID_VERSION}, got {:?} version {}",
                doc.format, doc.version
            )));
        }
        if doc.ppl_frac_bits != PPL_FRAC_BITS || doc.log_frac_bits != LOG_FRAC_BITS {
            return Err(serialization("grid fixed-point scales differ from this version's"));
        }
        doc.spec.validate().map_err(|e| serialization(format!("grid spec: {e}")))?;
        let mut g = Grid::empty(doc.spec);
        for [i, c, t] in doc.cells {
            let i = usize::try_from(i).ok().filter(|&i| i < g.counts.len());
            let i = i.ok_or_else(|| serialization("grid cell index out of range"))?;
            g.counts[i] = c;
            g.tokens[i] = t;
        }
        let hex = |s: &str| I256::from_hex(s).ok_or_else(|| serialization("grid sums must be 64 hex digits"));
        g.sum_q = hex(&doc.sum_q)?;
        g.sum_q2 = hex(&doc.sum_q2)?;
        g.sum_r = hex(&doc.sum_r)?;
        g.sum_r2 = hex(&doc.sum_r2)?;
        g.n_chunks = doc.n_chunks;
        g.n_tokens = doc.n_tokens;
        g.ppl_min = doc.ppl_min;
        g.ppl_max = doc.ppl_max;
        g.tokens_min = doc.tokens_min;
        g.tokens_max = doc.tokens_max;
        let (c, t): (u64, u128) = (g.counts.iter().sum(), g.tokens.iter().map(|&t| t as u128).sum());
        if c != g.n_chunks || t != g.n_tokens as u128 || g.n_chunks == 0 {
            return Err(serialization("grid cell counts do not add up to its totals (corrupt document)"));
        }
        Ok(g)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridDoc {
    format: String,
    version: u32,
    spec: GridSpec,
    ppl_frac_bits: i32,
    log_frac_bits: i32,
    n_chunks: u64,
    n_tokens: u64,
    ppl_min: f64,
    ppl_max: f64,
    tokens_min: u64,
    tokens_max: u64,
    sum_q: String,
    sum_q2: String,
    sum_r: String,
    sum_r2: String,
    /// Non-empty cells as `[index, chunks, tokens]`.
    cells: Vec<[u64; 3]>,
}

/// Check that every PPL fits the fixed point; names the first row that does not.
pub fn check_ppl_range(c: &Corpus, ov: &Overview) -> Result<()> {
    if ov.ppl_max < PPL_LIMIT {
        return Ok(());
    }
    let row = (0..c.len()).find(|&i| c.ppl_at(i) >= PPL_LIMIT).unwrap_or(0);
    Err(Error::InvalidInput(format!(
        "column '{}': row {row} has perplexity {} which exceeds the grid's fixed-point range (< 2^63 ~ 9.2e18)",
        c.ppl.name,
        c.ppl_at(row)
    )))
}

/// Build the grid of a corpus (standalone; the landscape builds it in its own pass).
pub fn build_grid(c: &Corpus, spec: GridSpec) -> Result<Grid> {
    spec.validate()?;
    let ov = c.overview()?;
    check_ppl_range(c, &ov)?;
    let parts = c.map_parts(false, || Grid::empty(spec), |g, b| {
        for (&x, &w) in b.ppl.iter().zip(b.tokens) {
            g.push(x, x.ln(), w);
        }
    });
    let mut g = Grid::empty(spec);
    for p in &parts {
        g.merge_in(p)?;
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::testutil::*;
    use crate::select::token_quantiles;

    #[test]
    fn merge_is_associative_and_commutative_bit_identical() {
        let n = 30_000;
        let ppl = lognormal(n, 11, 3.0, 1.2);
        let tok: Vec<u64> = (0..n).map(|i| 1 + (crate::hash::chunk_key(3, i as u64) % 2048)).collect();
        let shard = |lo: usize, hi: usize| build_grid(&corpus(ppl[lo..hi].to_vec(), tok[lo..hi].to_vec()), GridSpec::default()).unwrap();
        let (a, b, c) = (shard(0, 7000), shard(7000, 19_000), shard(19_000, n));
        let left = a.merge(&b).unwrap().merge(&c).unwrap();
        let right = a.merge(&b.merge(&c).unwrap()).unwrap();
        let swapped = c.merge(&a).unwrap().merge(&b).unwrap();
        let whole = shard(0, n);
        assert_eq!(left, right);
        assert_eq!(left, swapped);
        assert_eq!(left, whole);
        assert_eq!(left.to_json(), swapped.to_json());
        let s1 = left.summary();
        let s2 = swapped.summary();
        assert_eq!(s1.mean.to_bits(), s2.mean.to_bits());
        assert_eq!(s1.log_std.to_bits(), s2.log_std.to_bits());
        // Row permutation gives the same bits too.
        let mut perm: Vec<usize> = (0..n).collect();
        perm.sort_by_key(|&i| crate::hash::chunk_key(77, i as u64));
        let g_perm = build_grid(
            &corpus(perm.iter().map(|&i| ppl[i]).collect(), perm.iter().map(|&i| tok[i]).collect()),
            GridSpec::default(),
        )
        .unwrap();
        assert_eq!(g_perm, whole);
    }

    #[test]
    fn summary_and_quantiles_are_accurate() {
        let n = 50_000;
        let ppl = lognormal(n, 5, 2.2, 0.8);
        let tok: Vec<u64> = (0..n).map(|i| 1 + (i % 300) as u64).collect();
        let c = corpus(ppl.clone(), tok.clone());
        let g = build_grid(&c, GridSpec::default()).unwrap();
        let s = g.summary();
        let w: f64 = tok.iter().map(|&t| t as f64).sum();
        let mean: f64 = ppl.iter().zip(&tok).map(|(p, &t)| p * t as f64).sum::<f64>() / w;
        let var: f64 = ppl.iter().zip(&tok).map(|(p, &t)| (p - mean).powi(2) * t as f64).sum::<f64>() / w;
        assert!((s.mean / mean - 1.0).abs() < 1e-9, "{} vs {}", s.mean, mean);
        assert!((s.std / var.sqrt() - 1.0).abs() < 1e-9);
        assert!(s.weighted);
        let ov = c.overview().unwrap();
        let fr: Vec<(u128, u128)> = (0..=100).map(|k| (k, 100)).collect();
        let exact = token_quantiles(&c, &ov, &fr);
        let approx = g.quantiles(100).unwrap();
        let bound = (GridSpec::default().width() / 2.0).exp() - 1.0 + 1e-12;
        for (e, a) in exact.iter().zip(&approx) {
            assert!((a / e - 1.0).abs() <= bound, "{a} vs {e}");
        }
    }

    #[test]
    fn json_round_trip_and_errors() {
        let c = corpus(vec![1.5, 2.5, 1e7, 0.5], vec![3, 4, 5, 6]);
        let g = build_grid(&c, GridSpec::default()).unwrap();
        assert_eq!(g.counts[0], 1);
        assert_eq!(g.counts[g.spec.n_cells + 1], 1);
        let back = Grid::from_json(&g.to_json()).unwrap();
        assert_eq!(back, g);
        assert!(matches!(Grid::from_json("{}"), Err(Error::Serialization(_))));
        let other = g.to_json().replace("\"version\":1", "\"version\":99");
        assert!(matches!(Grid::from_json(&other), Err(Error::Serialization(_))));
        let spec2 = GridSpec { n_cells: 10, ..GridSpec::default() };
        let g2 = build_grid(&c, spec2).unwrap();
        assert!(matches!(g.merge(&g2), Err(Error::InvalidInput(_))));
        assert!(matches!(build_grid(&c, GridSpec { log_lo: 1.0, log_hi: 0.0, n_cells: 5 }), Err(Error::InvalidInput(_))));
    }
}
