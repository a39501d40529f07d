//! A validated view of the per-chunk columns plus an optional logical->physical `rows` mapping.
//!
//! Logical row `i` is physical row `rows[i]` (a `datasets.Dataset` indices mapping after `select`,
//! `shuffle` or `filter`), or `i` itself without a mapping. Every result (bin indices, selected rows)
//! is in logical row space. Work is split into fixed-size *parts* (independent of the thread count),
//! each processed block by block; per-part results come back in part order, so floating-point
//! reductions done in that order are reproducible run to run.

use rayon::prelude::*;

use crate::column::{F64Column, IntColumn};
use crate::error::{invalid, Error, Result};

/// Rows per block (the unit of gathering/widening into reused buffers).
pub const BLOCK: usize = 8192;
/// Rows per part (the unit of parallel work).
pub const PART: usize = 64 * BLOCK;

/// Per-chunk inputs.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub ppl: F64Column,
    pub tokens: IntColumn,
    pub ids: Option<IntColumn>,
    pub rows: Option<IntColumn>,
    n: usize,
}

/// Whole-corpus facts gathered while validating every used row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overview {
    pub n: usize,
    pub total_tokens: u64,
    pub ppl_min: f64,
    pub ppl_max: f64,
    pub tokens_min: u64,
    pub tokens_max: u64,
}

impl Overview {
    /// Token weighting is needed iff chunk lengths differ.
    pub fn weighted(&self) -> bool {
        self.tokens_min != self.tokens_max
    }
}

/// One block of logical rows: `ppl[j]`, `tokens[j]` (and `ids[j]` when requested) of logical row `start + j`
/// (or of the `j`-th requested row for gathered blocks).
pub struct Block<'a> {
    pub start: usize,
    pub ppl: &'a [f64],
    pub tokens: &'a [u64],
    pub ids: &'a [u64],
}

impl Block<'_> {
    pub fn len(&self) -> usize {
        self.ppl.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ppl.is_empty()
    }
}

/// Reused per-part scratch space.
#[derive(Default)]
pub struct Buffers {
    ppl: Vec<f64>,
    tok: Vec<u64>,
    ids: Vec<u64>,
    phys: Vec<u64>,
}

impl Corpus {
    /// Check lengths, the `rows` mapping and `chunk_id` ranges. Values are checked by [`Corpus::overview`].
    pub fn new(ppl: F64Column, tokens: IntColumn, ids: Option<IntColumn>, rows: Option<IntColumn>) -> Result<Self> {
        let n_phys = ppl.len();
        if tokens.len() != n_phys {
            return Err(Error::LengthMismatch(format!(
                "'{}' has {} rows but '{}' has {} rows; they must have one value per chunk",
                ppl.name,
                n_phys,
                tokens.name,
                tokens.len()
            )));
        }
        if let Some(ids) = &ids {
            if ids.len() != n_phys {
                return Err(Error::LengthMismatch(format!(
                    "'{}' has {} rows but '{}' has {} rows; they must have one value per chunk",
                    ppl.name,
                    n_phys,
                    ids.name,
                    ids.len()
                )));
            }
        }
        if let Some(r) = &rows {
            if let Some(i) = r.first_null() {
                return Err(invalid(format!("'{}' (the row mapping) has a null at position {i}", r.name)));
            }
            if let Some((i, v)) = r.first_outside(0, n_phys as i128 - 1) {
                return Err(invalid(format!(
                    "'{}'[{i}] = {v} is out of range: the columns have {n_phys} physical rows (expected 0 <= row < {n_phys})",
                    r.name
                )));
            }
        }
        let n = rows.as_ref().map_or(n_phys, |r| r.len());
        if n == 0 {
            return Err(Error::EmptyInput(format!(
                "no rows: '{}' is empty{}",
                ppl.name,
                if rows.is_some() { " after the row mapping" } else { "" }
            )));
        }
        Ok(Corpus { ppl, tokens, ids, rows, n })
    }

    /// Logical row count.
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    #[inline]
    pub fn phys(&self, logical: usize) -> usize {
        match &self.rows {
            Some(r) => r.get_u64(logical) as usize,
            None => logical,
        }
    }

    /// PPL of a logical row (random access; blocks are faster for scans).
    #[inline]
    pub fn ppl_at(&self, logical: usize) -> f64 {
        self.ppl.get(self.phys(logical))
    }

    /// Token count of a logical row (negative values read as 0; validated by `overview`).
    #[inline]
    pub fn tokens_at(&self, logical: usize) -> u64 {
        self.tokens.get_u64(self.phys(logical))
    }

    /// Chunk id of a logical row (the logical row itself without a `chunk_id` column).
    #[inline]
    pub fn id_at(&self, logical: usize) -> u64 {
        match &self.ids {
            Some(ids) => ids.get_u64(self.phys(logical)),
            None => logical as u64,
        }
    }

    /// The contiguous logical block `[start, start+len)`.
    pub fn block<'a>(&'a self, start: usize, len: usize, need_ids: bool, buf: &'a mut Buffers) -> Block<'a> {
        let mut zero_copy = None;
        match &self.rows {
            None => {
                zero_copy = self.ppl.contiguous(start, len);
                if zero_copy.is_none() {
                    self.ppl.copy_range(start, len, &mut buf.ppl);
                }
                self.tokens.copy_range_u64(start, len, &mut buf.tok);
                if need_ids {
                    match &self.ids {
                        Some(ids) => ids.copy_range_u64(start, len, &mut buf.ids),
                        None => {
                            buf.ids.clear();
                            buf.ids.extend(start as u64..(start + len) as u64);
                        }
                    }
                }
            }
            Some(r) => {
                r.copy_range_u64(start, len, &mut buf.phys);
                self.fill_from_phys(need_ids, buf, Some(start));
            }
        }
        let buf: &'a Buffers = buf;
        Block {
            start,
            ppl: zero_copy.unwrap_or(&buf.ppl),
            tokens: &buf.tok,
            ids: if need_ids { &buf.ids } else { &[] },
        }
    }

    /// A block of arbitrary logical rows (e.g. a selection), in the given order.
    pub fn gather<'a>(&'a self, logical: &[u64], need_ids: bool, buf: &'a mut Buffers) -> Block<'a> {
        buf.phys.clear();
        match &self.rows {
            Some(r) => {
                let mut tmp = std::mem::take(&mut buf.phys);
                r.gather_u64(logical, &mut tmp);
                buf.phys = tmp;
            }
            None => buf.phys.extend_from_slice(logical),
        }
        self.fill_from_phys(need_ids, buf, None);
        if need_ids && self.ids.is_none() {
            buf.ids.clear();
            buf.ids.extend_from_slice(logical);
        }
        let buf: &'a Buffers = buf;
        Block { start: 0, ppl: &buf.ppl, tokens: &buf.tok, ids: if need_ids { &buf.ids } else { &[] } }
    }

    fn fill_from_phys(&self, need_ids: bool, buf: &mut Buffers, start: Option<usize>) {
        self.ppl.gather(&buf.phys, &mut buf.ppl);
        self.tokens.gather_u64(&buf.phys, &mut buf.tok);
        if need_ids {
            match (&self.ids, start) {
                (Some(ids), _) => ids.gather_u64(&buf.phys, &mut buf.ids),
                (None, Some(s)) => {
                    buf.ids.clear();
                    buf.ids.extend(s as u64..(s + buf.phys.len()) as u64);
                }
                (None, None) => {} // filled by the caller from the logical indices
            }
        }
    }

    /// Run `f` over every block, one accumulator per part (fixed partition), returned in part order.
    pub fn map_parts<A: Send>(
        &self,
        need_ids: bool,
        init: impl Fn() -> A + Sync + Send,
        f: impl Fn(&mut A, &Block) + Sync + Send,
    ) -> Vec<A> {
        let mut unit = vec![(); self.n];
        self.map_parts_out(&mut unit, need_ids, |_| init(), |a, b, _| f(a, b))
    }

    /// Number of parts (`ceil(n / PART)`).
    pub fn n_parts(&self) -> usize {
        self.n.div_ceil(PART)
    }

    /// Like [`Corpus::map_parts`], also handing each block its slice of a per-row output `out` (len n);
    /// `init` gets the part index.
    pub fn map_parts_out<A: Send, T: Send>(
        &self,
        out: &mut [T],
        need_ids: bool,
        init: impl Fn(usize) -> A + Sync + Send,
        f: impl Fn(&mut A, &Block, &mut [T]) + Sync + Send,
    ) -> Vec<A> {
        debug_assert_eq!(out.len(), self.n);
        let n_parts = self.n_parts();
        let mut results: Vec<Option<A>> = (0..n_parts).map(|_| None).collect();
        out.par_chunks_mut(PART).zip(results.par_iter_mut()).enumerate().for_each(|(p, (out_part, slot))| {
            let mut acc = init(p);
            let mut buf = Buffers::default();
            let start = p * PART;
            let end = (start + PART).min(self.n);
            let mut s = start;
            while s < end {
                let len = BLOCK.min(end - s);
                let block = self.block(s, len, need_ids, &mut buf);
                f(&mut acc, &block, &mut out_part[s - start..s - start + len]);
                s += len;
            }
            *slot = Some(acc);
        });
        results.into_iter().flatten().collect()
    }

    /// Validate every used row (finite positive PPL, positive tokens, no nulls) and summarise.
    /// Errors name the column, the first offending logical row and its value.
    pub fn overview(&self) -> Result<Overview> {
        self.check_nulls()?;
        #[derive(Clone, Copy)]
        struct Acc {
            bad_ppl: Option<usize>,
            bad_tok: Option<usize>,
            total: u128,
            pmin: f64,
            pmax: f64,
            tmin: u64,
            tmax: u64,
        }
        let init = || Acc {
            bad_ppl: None,
            bad_tok: None,
            total: 0,
            pmin: f64::INFINITY,
            pmax: f64::NEG_INFINITY,
            tmin: u64::MAX,
            tmax: 0,
        };
        let parts = self.map_parts(false, init, |a, b| {
            // Branch-free folds (vectorisable); the offending row is searched only on failure.
            let ok = b.ppl.iter().fold(true, |ok, &x| ok & (x > 0.0) & (x < f64::INFINITY));
            if !ok && a.bad_ppl.is_none() {
                a.bad_ppl = b.ppl.iter().position(|&x| !(x > 0.0 && x.is_finite())).map(|j| b.start + j);
            }
            let (mn, mx) = b.ppl.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(mn, mx), &x| {
                (if x < mn { x } else { mn }, if x > mx { x } else { mx })
            });
            a.pmin = a.pmin.min(mn);
            a.pmax = a.pmax.max(mx);
            let (tmn, tmx) = b.tokens.iter().fold((u64::MAX, 0u64), |(mn, mx), &w| (mn.min(w), mx.max(w)));
            if tmn == 0 && a.bad_tok.is_none() {
                a.bad_tok = b.tokens.iter().position(|&w| w == 0).map(|j| b.start + j);
            }
            a.tmin = a.tmin.min(tmn);
            a.tmax = a.tmax.max(tmx);
            a.total += if tmx < (1 << 40) {
                b.tokens.iter().sum::<u64>() as u128
            } else {
                b.tokens.iter().map(|&w| w as u128).sum::<u128>()
            };
        });
        let mut acc = init();
        for p in parts {
            acc.bad_ppl = acc.bad_ppl.or(p.bad_ppl);
            acc.bad_tok = acc.bad_tok.or(p.bad_tok);
            acc.total += p.total;
            acc.pmin = acc.pmin.min(p.pmin);
            acc.pmax = acc.pmax.max(p.pmax);
            acc.tmin = acc.tmin.min(p.tmin);
            acc.tmax = acc.tmax.max(p.tmax);
        }
        if let Some(i) = acc.bad_ppl {
            return Err(invalid(format!(
                "column '{}' must hold finite perplexities > 0; row {i} has {}",
                self.ppl.name,
                self.ppl_at(i)
            )));
        }
        if let Some(i) = acc.bad_tok {
            return Err(invalid(format!(
                "column '{}' must hold token counts > 0 (a chunk with no scored tokens has no perplexity); row {i} has {}",
                self.tokens.name,
                self.tokens.get_i128(self.phys(i))
            )));
        }
        let total_tokens = u64::try_from(acc.total)
            .map_err(|_| invalid(format!("column '{}': the total token count overflows 64 bits", self.tokens.name)))?;
        Ok(Overview {
            n: self.n,
            total_tokens,
            ppl_min: acc.pmin,
            ppl_max: acc.pmax,
            tokens_min: acc.tmin,
            tokens_max: acc.tmax,
        })
    }

    /// Nulls are an error only on rows that are actually used (a mapping may skip them).
    fn check_nulls(&self) -> Result<()> {
        let cols: [(&str, bool, &dyn Fn(usize) -> bool); 3] = [
            (&self.ppl.name, self.ppl.has_nulls(), &|p| self.ppl.is_null(p)),
            (&self.tokens.name, self.tokens.has_nulls(), &|p| self.tokens.is_null(p)),
            (
                self.ids.as_ref().map_or("chunk_id", |c| c.name.as_str()),
                self.ids.as_ref().is_some_and(|c| c.has_nulls()),
                &|p| self.ids.as_ref().is_some_and(|c| c.is_null(p)),
            ),
        ];
        for (name, has, is_null) in cols {
            if has {
                if let Some(i) = (0..self.n).find(|&i| is_null(self.phys(i))) {
                    return Err(invalid(format!("column '{name}' has a null at row {i}; nulls are not allowed")));
                }
            }
        }
        if let Some(ids) = &self.ids {
            if let Some((i, v)) = ids.first_outside(0, u64::MAX as i128) {
                return Err(invalid(format!("column '{}' must hold ids >= 0; physical row {i} has {v}", ids.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(dead_code)]
pub(crate) mod testutil {
    use super::*;
    use crate::column::{F64Column, IntColumn};

    pub fn corpus(ppl: Vec<f64>, tokens: Vec<u64>) -> Corpus {
        Corpus::new(F64Column::from_vec("ppl", ppl), IntColumn::from_vec_u64("tokens", tokens), None, None).unwrap()
    }

    pub fn corpus_ids(ppl: Vec<f64>, tokens: Vec<u64>, ids: Vec<u64>) -> Corpus {
        Corpus::new(
            F64Column::from_vec("ppl", ppl),
            IntColumn::from_vec_u64("tokens", tokens),
            Some(IntColumn::from_vec_u64("chunk_id", ids)),
            None,
        )
        .unwrap()
    }

    /// Deterministic log-normal-ish test data.
    pub fn lognormal(n: usize, seed: u64, mu: f64, sigma: f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let u1 = crate::hash::unit_open(crate::hash::chunk_key(seed, 2 * i as u64));
                let u2 = crate::hash::unit_open(crate::hash::chunk_key(seed, 2 * i as u64 + 1));
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (mu + sigma * z).exp()
            })
            .collect()
    }
}
