//! Moments and subset statistics.
//!
//! **Weighting rule** (shared by landscape bins, subset statistics, sampling and DOS): when all chunks
//! in question have the same token count, means and variances are plain averages over chunks; when
//! lengths differ they are token-weighted. (The two coincide mathematically for equal lengths.)
//! Variances are population variances (ddof = 0).

use rayon::prelude::*;

use crate::column::{BoolColumn, IntColumn};
use crate::corpus::{Buffers, Corpus, BLOCK};
use crate::error::{invalid, Error, Result};

/// Statistic space: raw perplexity or its natural log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Ppl,
    LogPpl,
}

impl Space {
    pub fn parse(s: &str) -> Result<Space> {
        match s {
            "ppl" => Ok(Space::Ppl),
            "log_ppl" => Ok(Space::LogPpl),
            other => Err(invalid(format!("space must be 'ppl' or 'log_ppl', got {other:?}"))),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Space::Ppl => "ppl",
            Space::LogPpl => "log_ppl",
        }
    }
    #[inline]
    pub fn map(&self, ppl: f64) -> f64 {
        match self {
            Space::Ppl => ppl,
            Space::LogPpl => ppl.ln(),
        }
    }
}

/// Weighting of subset statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighting {
    /// `Chunks` when every selected chunk has the same token count, else `Tokens`.
    Auto,
    Tokens,
    Chunks,
}

impl Weighting {
    pub fn parse(s: &str) -> Result<Weighting> {
        match s {
            "auto" => Ok(Weighting::Auto),
            "tokens" => Ok(Weighting::Tokens),
            "chunks" => Ok(Weighting::Chunks),
            other => Err(invalid(format!("weighting must be 'auto', 'tokens' or 'chunks', got {other:?}"))),
        }
    }
}

/// Weighted first and second moments around a fixed reference (shifted data keeps the sums small,
/// which avoids cancellation in `E[d^2] - E[d]^2`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    pub w: f64,
    pub s1: f64,
    pub s2: f64,
}

impl Moments {
    #[inline]
    pub fn push(&mut self, wt: f64, d: f64) {
        self.w += wt;
        self.s1 += wt * d;
        self.s2 += wt * d * d;
    }
    pub fn add(&mut self, o: &Moments) {
        self.w += o.w;
        self.s1 += o.s1;
        self.s2 += o.s2;
    }
    /// The same moments around reference `new` instead of `old`.
    pub fn shifted(&self, old: f64, new: f64) -> Moments {
        let delta = old - new;
        Moments { w: self.w, s1: self.s1 + self.w * delta, s2: self.s2 + 2.0 * delta * self.s1 + self.w * delta * delta }
    }
    /// (mean, population variance) given the reference; NaN when empty.
    pub fn mean_var(&self, reference: f64) -> (f64, f64) {
        if self.w <= 0.0 {
            return (f64::NAN, f64::NAN);
        }
        let m = self.s1 / self.w;
        (reference + m, (self.s2 / self.w - m * m).max(0.0))
    }
}

/// Statistics of a subset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SubsetStats {
    pub count: u64,
    pub tokens: u64,
    pub mean: f64,
    pub std: f64,
    pub weighted: bool,
}

/// A selection of logical rows.
pub enum Selection {
    Indices(IntColumn),
    Mask(BoolColumn),
}

/// Validate a selection against `n` logical rows and return its indices (ascending for masks, as given
/// for index arrays). Duplicates and out-of-range indices are errors.
pub fn selection_indices(sel: &Selection, n: usize) -> Result<Vec<u64>> {
    match sel {
        Selection::Mask(m) => {
            if m.len() != n {
                return Err(Error::LengthMismatch(format!(
                    "the boolean mask '{}' has {} entries but there are {n} rows",
                    m.name,
                    m.len()
                )));
            }
            Ok(m.set_indices())
        }
        Selection::Indices(ix) => {
            if let Some(i) = ix.first_null() {
                return Err(invalid(format!("'{}' has a null at position {i}", ix.name)));
            }
            if let Some((i, v)) = ix.first_outside(0, n as i128 - 1) {
                return Err(invalid(format!(
                    "'{}'[{i}] = {v} is out of range for {n} rows (expected 0 <= index < {n})",
                    ix.name
                )));
            }
            let mut idx = Vec::with_capacity(ix.len());
            let mut s = 0;
            while s < ix.len() {
                let len = BLOCK.min(ix.len() - s);
                let mut buf = Vec::new();
                ix.copy_range_u64(s, len, &mut buf);
                idx.extend_from_slice(&buf);
                s += len;
            }
            let mut seen = vec![0u64; n.div_ceil(64)];
            for (pos, &i) in idx.iter().enumerate() {
                let (word, bit) = ((i / 64) as usize, i % 64);
                if seen[word] >> bit & 1 == 1 {
                    return Err(invalid(format!(
                        "'{}' contains the row {i} more than once (at position {pos}); a selection is a set",
                        ix.name
                    )));
                }
                seen[word] |= 1 << bit;
            }
            Ok(idx)
        }
    }
}

/// Mean/std/count/tokens of the chunks at logical rows `idx` (validated, unique).
pub fn stats_of_indices(c: &Corpus, idx: &[u64], space: Space, weighting: Weighting) -> Result<SubsetStats> {
    if idx.is_empty() {
        return Err(Error::EmptyInput("the selection is empty: no chunks to compute statistics over".into()));
    }
    // Parts in index order, combined in order: reproducible.
    struct Part {
        count: u64,
        tokens: u128,
        tmin: u64,
        tmax: u64,
        weighted: Moments,
        plain: Moments,
        bad: Option<(usize, f64)>,
    }
    let reference = space.map(c.ppl_at(idx[0] as usize));
    let parts: Vec<Part> = idx
        .par_chunks(BLOCK * 16)
        .enumerate()
        .map(|(p, part)| {
            let mut buf = Buffers::default();
            let mut acc = Part {
                count: 0,
                tokens: 0,
                tmin: u64::MAX,
                tmax: 0,
                weighted: Moments::default(),
                plain: Moments::default(),
                bad: None,
            };
            for (q, sub) in part.chunks(BLOCK).enumerate() {
                let b = c.gather(sub, false, &mut buf);
                for (j, (&x, &w)) in b.ppl.iter().zip(b.tokens).enumerate() {
                    if (!(x > 0.0 && x.is_finite()) || w == 0) && acc.bad.is_none() {
                        acc.bad = Some((p * BLOCK * 16 + q * BLOCK + j, x));
                    }
                    let d = space.map(x) - reference;
                    acc.weighted.push(w as f64, d);
                    acc.plain.push(1.0, d);
                    acc.tokens += w as u128;
                    acc.tmin = acc.tmin.min(w);
                    acc.tmax = acc.tmax.max(w);
                }
                acc.count += b.len() as u64;
            }
            acc
        })
        .collect();
    let mut count = 0;
    let mut tokens = 0u128;
    let (mut tmin, mut tmax) = (u64::MAX, 0);
    let (mut wm, mut pm) = (Moments::default(), Moments::default());
    for p in &parts {
        if let Some((pos, _)) = p.bad {
            let row = idx[pos] as usize;
            let ppl = c.ppl_at(row);
            return Err(if !(ppl > 0.0 && ppl.is_finite()) {
                invalid(format!("column '{}' must hold finite perplexities > 0; row {row} has {ppl}", c.ppl.name))
            } else {
                invalid(format!(
                    "column '{}' must hold token counts > 0; row {row} has {}",
                    c.tokens.name,
                    c.tokens.get_i128(c.phys(row))
                ))
            });
        }
        count += p.count;
        tokens += p.tokens;
        tmin = tmin.min(p.tmin);
        tmax = tmax.max(p.tmax);
        wm.add(&p.weighted);
        pm.add(&p.plain);
    }
    let weighted = match weighting {
        Weighting::Auto => tmin != tmax,
        Weighting::Tokens => true,
        Weighting::Chunks => false,
    };
    let (mean, var) = if weighted { wm.mean_var(reference) } else { pm.mean_var(reference) };
    Ok(SubsetStats {
        count,
        tokens: u64::try_from(tokens).map_err(|_| invalid("the selected token count overflows 64 bits"))?,
        mean,
        std: var.sqrt(),
        weighted,
    })
}

/// `subset_stats`: validate the selection and compute its statistics.
pub fn subset_stats(c: &Corpus, sel: &Selection, space: Space, weighting: Weighting) -> Result<SubsetStats> {
    let idx = selection_indices(sel, c.len())?;
    stats_of_indices(c, &idx, space, weighting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::testutil::*;

    #[test]
    fn matches_direct_formula() {
        let ppl = lognormal(5000, 9, 2.0, 0.5);
        let tok: Vec<u64> = (0..5000).map(|i| 100 + (i % 7) as u64).collect();
        let c = corpus(ppl.clone(), tok.clone());
        let idx: Vec<u64> = (0..5000).filter(|i| i % 3 == 1).collect();
        let s = stats_of_indices(&c, &idx, Space::LogPpl, Weighting::Auto).unwrap();
        let (mut w, mut s1) = (0.0, 0.0);
        for &i in &idx {
            w += tok[i as usize] as f64;
            s1 += tok[i as usize] as f64 * ppl[i as usize].ln();
        }
        let m = s1 / w;
        let v: f64 = idx.iter().map(|&i| tok[i as usize] as f64 * (ppl[i as usize].ln() - m).powi(2)).sum::<f64>() / w;
        assert!(s.weighted);
        assert!((s.mean - m).abs() < 1e-12 && (s.std - v.sqrt()).abs() < 1e-12);
        assert_eq!(s.count, idx.len() as u64);
    }

    #[test]
    fn selection_errors() {
        let n = 10;
        let dup = Selection::Indices(IntColumn::from_vec_u64("selection", vec![1, 2, 1]));
        assert!(matches!(selection_indices(&dup, n), Err(Error::InvalidInput(m)) if m.contains("more than once")));
        let oob = Selection::Indices(IntColumn::from_vec_i64("selection", vec![1, -2]));
        assert!(matches!(selection_indices(&oob, n), Err(Error::InvalidInput(m)) if m.contains("out of range")));
        let mask = Selection::Mask(BoolColumn::from_vec("selection", &[true; 3]));
        assert!(matches!(selection_indices(&mask, n), Err(Error::LengthMismatch(_))));
        let c = corpus(vec![1.0; 10], vec![1; 10]);
        let empty = Selection::Mask(BoolColumn::from_vec("selection", &[false; 10]));
        assert!(matches!(subset_stats(&c, &empty, Space::Ppl, Weighting::Auto), Err(Error::EmptyInput(_))));
    }
}
