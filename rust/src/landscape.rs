//! The perplexity landscape: exact token-weighted quantile bins with per-bin statistics, built
//! together with the mergeable fine grid.
//!
//! **Edges.** `edges[0] = min ppl`, `edges[n_bins] = max ppl`, and for `0 < k < n_bins`, `edges[k]` is the
//! smallest PPL value `x` in the data such that the tokens of chunks with `ppl <= x` are at least
//! `k / n_bins` of all tokens (exact integer comparison `W(x) * n_bins >= k * total`). Edges may repeat
//! when one value carries a lot of mass.
//!
//! **Bins.** A chunk with perplexity `x` is in bin `k = clamp(searchsorted_right(edges, x) - 1, 0, n_bins - 1)`,
//! i.e. the `k` with `edges[k] <= x < edges[k+1]` (last bin closed); when edges repeat, the chunk goes
//! to the *last* bin whose lower edge is `<= x` (the empty bins between duplicate edges stay empty).
//! numpy: `np.clip(np.searchsorted(edges, ppl, side="right") - 1, 0, n_bins - 1)`.
//!
//! **Statistics.** Per bin: count, tokens, min/max PPL, mean and population variance of PPL and of
//! ln(PPL), token-weighted when chunk lengths differ anywhere in the corpus and plain otherwise (the
//! rule of `stats.rs`); NaN for empty bins. Overall: mean/std in both spaces under the same rule.
//!
//! **Cost.** Four O(n) passes (validate, histogram, gather quantile buckets, assign bins + stats + grid),
//! parallel over fixed parts; no sort of the column and no copy of it.

use serde::{Deserialize, Serialize};

use crate::corpus::Corpus;
use crate::error::{invalid, serialization, Result};
use crate::grid::{check_ppl_range, Grid, GridSpec, Summary};
use crate::select::{bin_of, token_quantiles, Bucketing};
use crate::stats::Moments;

const FORMAT: &str = "pplaw.landscape";
const VERSION: u32 = 1;

/// Statistics of one bin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BinStats {
    pub count: u64,
    pub tokens: u64,
    pub ppl_min: f64,
    pub ppl_max: f64,
    pub ppl_mean: f64,
    pub ppl_var: f64,
    pub log_ppl_mean: f64,
    pub log_ppl_var: f64,
}

/// A built landscape.
#[derive(Clone, Debug, PartialEq)]
pub struct Landscape {
    pub n_bins: usize,
    pub edges: Vec<f64>,
    pub bins: Vec<BinStats>,
    pub summary: Summary,
    pub grid: Grid,
    /// Bin of every logical row (absent when loaded from a document saved without it).
    pub bin_index: Option<Vec<u32>>,
}

#[derive(Clone, Copy)]
struct BinAcc {
    count: u64,
    tokens: u64,
    min: f64,
    max: f64,
    ppl: Moments,
    log: Moments,
}

impl BinAcc {
    fn new() -> Self {
        BinAcc { count: 0, tokens: 0, min: f64::INFINITY, max: f64::NEG_INFINITY, ppl: Moments::default(), log: Moments::default() }
    }
}

/// Build the landscape (see the module doc).
pub fn build_landscape(c: &Corpus, n_bins: usize, spec: GridSpec) -> Result<Landscape> {
    if n_bins == 0 || n_bins > 10_000_000 {
        return Err(invalid(format!("n_bins must be in [1, 10000000], got {n_bins}")));
    }
    spec.validate()?;
    let ov = c.overview()?;
    check_ppl_range(c, &ov)?;
    let weighted = ov.weighted();
    let fracs: Vec<(u128, u128)> = (0..=n_bins).map(|k| (k as u128, n_bins as u128)).collect();
    let edges = token_quantiles(c, &ov, &fracs);

    // Bucket -> bin table: a bucket whose whole value range maps to one bin needs no search.
    let bk = Bucketing::new(ov.ppl_min, ov.ppl_max);
    let table: Vec<u32> = (0..bk.n)
        .map(|b| {
            let (lo, hi) = bk.bounds(b);
            let (blo, bhi) = (bin_of(&edges, lo.max(ov.ppl_min)), bin_of(&edges, hi.min(ov.ppl_max)));
            if blo == bhi {
                blo as u32
            } else {
                u32::MAX
            }
        })
        .collect();
    // Moments are taken around each bin's lower edge (small offsets, no cancellation).
    let refs: Vec<f64> = edges[..n_bins].to_vec();
    let log_refs: Vec<f64> = refs.iter().map(|r| r.ln()).collect();

    let mut bin_index = vec![0u32; c.len()];
    let parts = c.map_parts_out(
        &mut bin_index,
        false,
        |_| (vec![BinAcc::new(); n_bins], Grid::empty(spec)),
        |(accs, grid), b, out| {
            for (j, (&x, &w)) in b.ppl.iter().zip(b.tokens).enumerate() {
                let t = table[bk.of(x)];
                let k = if t != u32::MAX { t as usize } else { bin_of(&edges, x) };
                out[j] = k as u32;
                let lx = x.ln();
                let wt = if weighted { w as f64 } else { 1.0 };
                let a = &mut accs[k];
                a.count += 1;
                a.tokens += w;
                a.min = a.min.min(x);
                a.max = a.max.max(x);
                a.ppl.push(wt, x - refs[k]);
                a.log.push(wt, lx - log_refs[k]);
                grid.push(x, lx, w);
            }
        },
    );
    let mut accs = vec![BinAcc::new(); n_bins];
    let mut grid = Grid::empty(spec);
    for (pa, pg) in &parts {
        for (a, p) in accs.iter_mut().zip(pa) {
            a.count += p.count;
            a.tokens += p.tokens;
            a.min = a.min.min(p.min);
            a.max = a.max.max(p.max);
            a.ppl.add(&p.ppl);
            a.log.add(&p.log);
        }
        grid.merge_in(pg)?;
    }
    // Overall moments: shift every bin to a common reference and add.
    let (r0, l0) = (refs[0], log_refs[0]);
    let (mut all_p, mut all_l) = (Moments::default(), Moments::default());
    let bins = accs
        .iter()
        .enumerate()
        .map(|(k, a)| {
            all_p.add(&a.ppl.shifted(refs[k], r0));
            all_l.add(&a.log.shifted(log_refs[k], l0));
            let (pm, pv) = a.ppl.mean_var(refs[k]);
            let (lm, lv) = a.log.mean_var(log_refs[k]);
            let empty = a.count == 0;
            BinStats {
                count: a.count,
                tokens: a.tokens,
                ppl_min: if empty { f64::NAN } else { a.min },
                ppl_max: if empty { f64::NAN } else { a.max },
                ppl_mean: pm,
                ppl_var: pv,
                log_ppl_mean: lm,
                log_ppl_var: lv,
            }
        })
        .collect();
    let (mean, var) = all_p.mean_var(r0);
    let (log_mean, log_var) = all_l.mean_var(l0);
    let summary = Summary {
        n_chunks: ov.n as u64,
        n_tokens: ov.total_tokens,
        mean,
        std: var.sqrt(),
        log_mean,
        log_std: log_var.sqrt(),
        weighted,
        ppl_min: ov.ppl_min,
        ppl_max: ov.ppl_max,
    };
    Ok(Landscape { n_bins, edges, bins, summary, grid, bin_index: Some(bin_index) })
}

/// NaN-safe f64 for JSON (NaN <-> null).
fn opt(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BinDoc {
    count: u64,
    tokens: u64,
    ppl_min: Option<f64>,
    ppl_max: Option<f64>,
    ppl_mean: Option<f64>,
    ppl_var: Option<f64>,
    log_ppl_mean: Option<f64>,
    log_ppl_var: Option<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LandscapeDoc {
    format: String,
    version: u32,
    n_bins: usize,
    edges: Vec<f64>,
    bins: Vec<BinDoc>,
    summary: Summary,
    grid: serde_json::Value,
    bin_index: Option<Vec<u32>>,
}

impl Landscape {
    /// JSON document (`format: "pplaw.landscape"`, `version: 1`); per-row bin indices optional.
    pub fn to_json(&self, include_bin_index: bool) -> String {
        let doc = LandscapeDoc {
            format: FORMAT.into(),
            version: VERSION,
            n_bins: self.n_bins,
            edges: self.edges.clone(),
            bins: self
                .bins
                .iter()
                .map(|b| BinDoc {
                    count: b.count,
                    tokens: b.tokens,
                    ppl_min: opt(b.ppl_min),
                    ppl_max: opt(b.ppl_max),
                    ppl_mean: opt(b.ppl_mean),
                    ppl_var: opt(b.ppl_var),
                    log_ppl_mean: opt(b.log_ppl_mean),
                    log_ppl_var: opt(b.log_ppl_var),
                })
                .collect(),
            summary: self.summary,
            grid: self.grid.to_doc_value(),
            bin_index: if include_bin_index { self.bin_index.clone() } else { None },
        };
        serde_json::to_string(&doc).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Landscape> {
        let doc: LandscapeDoc =
            serde_json::from_str(s).map_err(|e| serialization(format!("not a pplaw landscape JSON document: {e}")))?;
        if doc.format != FORMAT || doc.version != VERSION {
            return Err(serialization(format!(
                "expected format {FORMAT:?} version {VERSION}, got {:?} version {}",
                doc.format, doc.version
            )));
        }
        if doc.n_bins == 0 || doc.edges.len() != doc.n_bins + 1 || doc.bins.len() != doc.n_bins {
            return Err(serialization("landscape document: n_bins, edges and bins disagree (corrupt document)"));
        }
        if let Some(bi) = &doc.bin_index {
            if bi.len() as u64 != doc.summary.n_chunks || bi.iter().any(|&b| b as usize >= doc.n_bins) {
                return Err(serialization("landscape document: bin_index does not match n_chunks/n_bins"));
            }
        }
        let nan = |x: Option<f64>| x.unwrap_or(f64::NAN);
        Ok(Landscape {
            n_bins: doc.n_bins,
            edges: doc.edges,
            bins: doc
                .bins
                .into_iter()
                .map(|b| BinStats {
                    count: b.count,
                    tokens: b.tokens,
                    ppl_min: nan(b.ppl_min),
                    ppl_max: nan(b.ppl_max),
                    ppl_mean: nan(b.ppl_mean),
                    ppl_var: nan(b.ppl_var),
                    log_ppl_mean: nan(b.log_ppl_mean),
                    log_ppl_var: nan(b.log_ppl_var),
                })
                .collect(),
            summary: doc.summary,
            grid: Grid::from_doc_value(doc.grid)?,
            bin_index: doc.bin_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::testutil::*;
    use crate::error::Error;

    fn brute_edges(ppl: &[f64], tok: &[u64], n_bins: usize) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..ppl.len()).collect();
        idx.sort_by(|&a, &b| ppl[a].total_cmp(&ppl[b]));
        let total: u128 = tok.iter().map(|&t| t as u128).sum();
        let mut cum = Vec::new();
        let mut acc = 0u128;
        for &i in &idx {
            acc += tok[i] as u128;
            cum.push(acc);
        }
        (0..=n_bins)
            .map(|k| {
                let p = cum.partition_point(|&c| c * (n_bins as u128) < (k as u128) * total);
                ppl[idx[p.min(idx.len() - 1)]]
            })
            .collect()
    }

    #[test]
    fn edges_bins_and_stats_match_brute_force() {
        for (n, n_bins, equal) in [(1usize, 4usize, true), (97, 10, false), (60_000, 100, true), (600_000, 37, false)] {
            let mut ppl = lognormal(n, n as u64, 2.8, 0.9);
            for p in ppl.iter_mut().step_by(5) {
                *p = p.round().max(1.0); // ties
            }
            let tok: Vec<u64> = if equal { vec![512; n] } else { (0..n).map(|i| 1 + (i * 7919 % 1000) as u64).collect() };
            let c = corpus(ppl.clone(), tok.clone());
            let l = build_landscape(&c, n_bins, GridSpec::default()).unwrap();
            assert_eq!(l.edges, brute_edges(&ppl, &tok, n_bins));
            let bi = l.bin_index.as_ref().unwrap();
            let mut counts = vec![0u64; n_bins];
            for (i, &x) in ppl.iter().enumerate() {
                let k = l.edges.partition_point(|&e| e <= x).saturating_sub(1).min(n_bins - 1);
                assert_eq!(bi[i] as usize, k);
                counts[k] += 1;
            }
            for (k, b) in l.bins.iter().enumerate() {
                assert_eq!(b.count, counts[k]);
                if b.count > 0 {
                    let members: Vec<usize> = (0..n).filter(|&i| bi[i] as usize == k).collect();
                    let wt = |i: usize| if equal { 1.0 } else { tok[i] as f64 };
                    let w: f64 = members.iter().map(|&i| wt(i)).sum();
                    let m: f64 = members.iter().map(|&i| wt(i) * ppl[i].ln()).sum::<f64>() / w;
                    let v: f64 = members.iter().map(|&i| wt(i) * (ppl[i].ln() - m).powi(2)).sum::<f64>() / w;
                    assert!((b.log_ppl_mean - m).abs() < 1e-9 * m.abs().max(1.0));
                    assert!((b.log_ppl_var - v).abs() < 1e-9 * v.max(1e-6));
                    assert_eq!(b.tokens, members.iter().map(|&i| tok[i]).sum::<u64>());
                } else {
                    assert!(b.ppl_mean.is_nan());
                }
            }
            assert_eq!(l.summary.n_chunks, n as u64);
            let back = Landscape::from_json(&l.to_json(true)).unwrap();
            assert_eq!(back.edges, l.edges);
            assert_eq!(back.bin_index, l.bin_index);
            assert_eq!(back.summary, l.summary);
        }
    }

    #[test]
    fn bad_inputs_give_the_right_error() {
        use crate::column::{F64Column, IntColumn};
        let mk = |p: Vec<f64>, t: Vec<i64>| {
            Corpus::new(F64Column::from_vec("ppl", p), IntColumn::from_vec_i64("tokens", t), None, None)
        };
        let e = build_landscape(&mk(vec![1.0, f64::NAN], vec![1, 1]).unwrap(), 2, GridSpec::default()).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput(m) if m.contains("'ppl'") && m.contains("row 1") && m.contains("NaN")), "{e}");
        let e = build_landscape(&mk(vec![1.0, -3.0], vec![1, 1]).unwrap(), 2, GridSpec::default()).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput(m) if m.contains("row 1") && m.contains("-3")), "{e}");
        let e = build_landscape(&mk(vec![1.0, f64::INFINITY], vec![1, 1]).unwrap(), 2, GridSpec::default()).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput(m) if m.contains("inf")), "{e}");
        let e = build_landscape(&mk(vec![1.0, 2.0], vec![1, 0]).unwrap(), 2, GridSpec::default()).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput(m) if m.contains("'tokens'") && m.contains("row 1")), "{e}");
        let e = build_landscape(&mk(vec![1.0, 2.0], vec![-5, 1]).unwrap(), 2, GridSpec::default()).unwrap_err();
        assert!(matches!(&e, Error::InvalidInput(m) if m.contains("'tokens'") && m.contains("-5")), "{e}");
        assert!(matches!(mk(vec![1.0, 2.0], vec![1]), Err(Error::LengthMismatch(m)) if m.contains('2') && m.contains('1')));
        assert!(matches!(mk(vec![], vec![]), Err(Error::EmptyInput(_))));
        let rows = Some(IntColumn::from_vec_i64("rows", vec![0, 5]));
        let r = Corpus::new(F64Column::from_vec("ppl", vec![1.0, 2.0]), IntColumn::from_vec_i64("tokens", vec![1, 1]), None, rows);
        assert!(matches!(r, Err(Error::InvalidInput(m)) if m.contains("rows") && m.contains('5')));
        let c = mk(vec![1.0, 2.0], vec![1, 1]).unwrap();
        assert!(matches!(build_landscape(&c, 0, GridSpec::default()), Err(Error::InvalidInput(_))));
        assert!(matches!(Landscape::from_json("[1,2]"), Err(Error::Serialization(_))));
    }

    #[test]
    fn rows_mapping_and_chunked_columns() {
        use crate::column::{F64Column, IntColumn};
        use arrow_array::{ArrayRef, Float64Array, Int32Array};
        use std::sync::Arc;
        let ppl = lognormal(1000, 3, 2.0, 0.5);
        let tok: Vec<i32> = (0..1000).map(|i| 10 + i % 5).collect();
        let chunks: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(ppl[..300].to_vec())),
            Arc::new(Float64Array::from(ppl[300..].to_vec())),
        ];
        let tchunks: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(tok[..555].to_vec())),
            Arc::new(Int32Array::from(tok[555..].to_vec())),
        ];
        let rows: Vec<u64> = (0..1000u64).rev().filter(|i| i % 3 != 0).collect();
        let c = Corpus::new(
            F64Column::from_arrays("ppl", &chunks).unwrap(),
            IntColumn::from_arrays("tokens", &tchunks).unwrap(),
            None,
            Some(IntColumn::from_vec_u64("rows", rows.clone())),
        )
        .unwrap();
        let l = build_landscape(&c, 10, GridSpec::default()).unwrap();
        let mp: Vec<f64> = rows.iter().map(|&r| ppl[r as usize]).collect();
        let mt: Vec<u64> = rows.iter().map(|&r| tok[r as usize] as u64).collect();
        let l2 = build_landscape(&corpus(mp, mt), 10, GridSpec::default()).unwrap();
        assert_eq!(l.edges, l2.edges);
        assert_eq!(l.bin_index, l2.bin_index);
        assert_eq!(l.grid, l2.grid);
    }
}
