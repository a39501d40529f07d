//! Subsets: `subset_stats`, `sample_subset` (to a target), `realisable_range`, `realisable_edges`,
//! `chunk_key`.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::input::AnyArray;

use super::errors::{compute, realisable_dict, to_py};
use super::{batch, budget, corpus, f64s, selection, space, u64_array, window};
use crate::stats::Weighting;

#[pyfunction]
#[pyo3(signature = (ppl, tokens, selection, *, rows=None, space="ppl", weighting="auto"))]
pub(crate) fn subset_stats<'py>(
    py: Python<'py>,
    ppl: AnyArray,
    tokens: AnyArray,
    selection: AnyArray,
    rows: Option<AnyArray>,
    space: &str,
    weighting: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let c = corpus(py, ppl, tokens, None, rows)?;
    let sel = self::selection(py, selection)?;
    let sp = self::space(py, space)?;
    let w = Weighting::parse(weighting).map_err(|e| to_py(py, e))?;
    let s = compute(py, || crate::stats::subset_stats(&c, &sel, sp, w))?;
    let d = PyDict::new(py);
    d.set_item("count", s.count)?;
    d.set_item("tokens", s.tokens)?;
    d.set_item("mean", s.mean)?;
    d.set_item("std", s.std)?;
    d.set_item("weighted", s.weighted)?;
    Ok(d)
}

#[pyfunction]
#[pyo3(signature = (ppl, tokens, chunk_id=None, *, token_budget, target_mean=None, target_std=None, space="ppl",
                    ppl_min=None, ppl_max=None, quantile_min=None, quantile_max=None, rows=None, seed=0))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sample_subset<'py>(
    py: Python<'py>,
    ppl: AnyArray,
    tokens: AnyArray,
    chunk_id: Option<AnyArray>,
    token_budget: i128,
    target_mean: Option<f64>,
    target_std: Option<f64>,
    space: &str,
    ppl_min: Option<f64>,
    ppl_max: Option<f64>,
    quantile_min: Option<f64>,
    quantile_max: Option<f64>,
    rows: Option<AnyArray>,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let c = corpus(py, ppl, tokens, chunk_id, rows)?;
    let req = crate::sample::SampleRequest {
        budget: budget(py, token_budget)?,
        target_mean,
        target_std,
        space: self::space(py, space)?,
        window: window(ppl_min, ppl_max, quantile_min, quantile_max),
        seed,
    };
    let idx = compute(py, || crate::sample::sample_subset(&c, &req))?;
    u64_array(py, idx)
}

#[pyfunction]
#[pyo3(signature = (ppl, tokens, *, token_budget, space="ppl", ppl_min=None, ppl_max=None, quantile_min=None,
                    quantile_max=None, rows=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn realisable_range<'py>(
    py: Python<'py>,
    ppl: AnyArray,
    tokens: AnyArray,
    token_budget: i128,
    space: &str,
    ppl_min: Option<f64>,
    ppl_max: Option<f64>,
    quantile_min: Option<f64>,
    quantile_max: Option<f64>,
    rows: Option<AnyArray>,
) -> PyResult<Bound<'py, PyDict>> {
    let c = corpus(py, ppl, tokens, None, rows)?;
    let b = budget(py, token_budget)?;
    let sp = self::space(py, space)?;
    let w = window(ppl_min, ppl_max, quantile_min, quantile_max);
    let r = compute(py, || crate::sample::realisable_range(&c, b, sp, &w))?;
    realisable_dict(py, &r)
}

#[pyfunction]
#[pyo3(signature = (ppl, tokens, *, token_budget, space="ppl", ppl_min=None, ppl_max=None, quantile_min=None,
                    quantile_max=None, rows=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn realisable_edges<'py>(
    py: Python<'py>,
    ppl: AnyArray,
    tokens: AnyArray,
    token_budget: i128,
    space: &str,
    ppl_min: Option<f64>,
    ppl_max: Option<f64>,
    quantile_min: Option<f64>,
    quantile_max: Option<f64>,
    rows: Option<AnyArray>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let c = corpus(py, ppl, tokens, None, rows)?;
    let b = budget(py, token_budget)?;
    let sp = self::space(py, space)?;
    let w = window(ppl_min, ppl_max, quantile_min, quantile_max);
    let e = compute(py, || crate::sample::realisable_edges(&c, b, sp, &w))?;
    let edge = |pts: &[(f64, f64)]| {
        batch(py, vec![("mean", f64s(pts.iter().map(|p| p.0))), ("std", f64s(pts.iter().map(|p| p.1)))])
    };
    Ok((edge(&e.lower)?, edge(&e.upper)?))
}

#[pyfunction]
pub(crate) fn chunk_key(seed: u64, chunk_id: u64) -> u64 {
    crate::hash::chunk_key(seed, chunk_id)
}
