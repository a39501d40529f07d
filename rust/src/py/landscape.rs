//! The landscape and its fine grid: `LandscapeCore`, `GridCore`, `build_landscape`, `build_grid`.

use std::sync::Arc;

use arrow_array::{ArrayRef, UInt32Array};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::input::AnyArray;

use super::errors::{compute, to_py};
use super::{batch, corpus, export, f64s, summary_dict, u64s};
use crate::error::Error;
use crate::grid::{Grid, GridSpec};
use crate::landscape::Landscape;

/// A fixed fine grid over log-PPL; merges exactly (integer accumulators) and order-independently.
#[pyclass(module = "pplaw._core", name = "GridCore", frozen)]
pub struct PyGrid {
    pub(crate) inner: Grid,
}

#[pymethods]
impl PyGrid {
    #[getter]
    fn n_chunks(&self) -> u64 {
        self.inner.n_chunks
    }
    #[getter]
    fn n_tokens(&self) -> u64 {
        self.inner.n_tokens
    }
    #[getter]
    fn spec(&self) -> (f64, f64, usize) {
        (self.inner.spec.log_lo, self.inner.spec.log_hi, self.inner.spec.n_cells)
    }
    fn merge(&self, py: Python<'_>, other: &PyGrid) -> PyResult<PyGrid> {
        let (a, b) = (&self.inner, &other.inner);
        Ok(PyGrid { inner: compute(py, || a.merge(b))? })
    }
    fn quantiles(&self, py: Python<'_>, n_bins: usize) -> PyResult<Vec<f64>> {
        let g = &self.inner;
        compute(py, || g.quantiles(n_bins))
    }
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        summary_dict(py, &self.inner.summary())
    }
    /// Non-empty cells: cell index, log-PPL bounds, count, tokens.
    fn cells<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let g = &self.inner;
        let idx: Vec<usize> = (0..g.counts.len()).filter(|&i| g.counts[i] > 0).collect();
        batch(
            py,
            vec![
                ("cell", u64s(idx.iter().map(|&i| i as u64))),
                ("log_ppl_lo", f64s(idx.iter().map(|&i| g.spec.log_bounds(i).0))),
                ("log_ppl_hi", f64s(idx.iter().map(|&i| g.spec.log_bounds(i).1))),
                ("count", u64s(idx.iter().map(|&i| g.counts[i]))),
                ("tokens", u64s(idx.iter().map(|&i| g.tokens[i]))),
            ],
        )
    }
    fn to_json(&self) -> String {
        self.inner.to_json()
    }
    #[staticmethod]
    fn from_json(py: Python<'_>, s: &str) -> PyResult<PyGrid> {
        Grid::from_json(s).map(|inner| PyGrid { inner }).map_err(|e| to_py(py, e))
    }
    fn __repr__(&self) -> String {
        format!("GridCore(n_chunks={}, n_tokens={}, n_cells={})", self.inner.n_chunks, self.inner.n_tokens, self.inner.spec.n_cells)
    }
}

/// The landscape: exact token-weighted quantile bins, per-bin statistics, overall statistics, fine grid.
#[pyclass(module = "pplaw._core", name = "LandscapeCore", frozen)]
pub struct PyLandscape {
    pub(crate) inner: Landscape,
}

#[pymethods]
impl PyLandscape {
    #[getter]
    fn n_bins(&self) -> usize {
        self.inner.n_bins
    }
    #[getter]
    fn n_chunks(&self) -> u64 {
        self.inner.summary.n_chunks
    }
    #[getter]
    fn n_tokens(&self) -> u64 {
        self.inner.summary.n_tokens
    }
    #[getter]
    fn edges(&self) -> Vec<f64> {
        self.inner.edges.clone()
    }
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        summary_dict(py, &self.inner.summary)
    }
    /// Bin of each logical row (uint32); unavailable on a landscape loaded without it.
    fn bin_index<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.inner.bin_index {
            Some(b) => {
                let arr: ArrayRef = Arc::new(UInt32Array::from(b.clone()));
                export(py, arr)
            }
            None => Err(to_py(py, Error::InvalidInput("this landscape holds no per-chunk bin index (it was saved without it)".into()))),
        }
    }
    fn bins<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let l = &self.inner;
        let b = &l.bins;
        batch(
            py,
            vec![
                ("bin", Arc::new(UInt32Array::from_iter_values(0..l.n_bins as u32)) as ArrayRef),
                ("ppl_lo", f64s(l.edges[..l.n_bins].iter().copied())),
                ("ppl_hi", f64s(l.edges[1..].iter().copied())),
                ("count", u64s(b.iter().map(|x| x.count))),
                ("tokens", u64s(b.iter().map(|x| x.tokens))),
                ("ppl_min", f64s(b.iter().map(|x| x.ppl_min))),
                ("ppl_max", f64s(b.iter().map(|x| x.ppl_max))),
                ("ppl_mean", f64s(b.iter().map(|x| x.ppl_mean))),
                ("ppl_var", f64s(b.iter().map(|x| x.ppl_var))),
                ("log_ppl_mean", f64s(b.iter().map(|x| x.log_ppl_mean))),
                ("log_ppl_var", f64s(b.iter().map(|x| x.log_ppl_var))),
            ],
        )
    }
    fn grid(&self) -> PyGrid {
        PyGrid { inner: self.inner.grid.clone() }
    }
    #[pyo3(signature = (include_bin_index=false))]
    fn to_json(&self, include_bin_index: bool) -> String {
        self.inner.to_json(include_bin_index)
    }
    #[staticmethod]
    fn from_json(py: Python<'_>, s: &str) -> PyResult<PyLandscape> {
        Landscape::from_json(s).map(|inner| PyLandscape { inner }).map_err(|e| to_py(py, e))
    }
    fn __repr__(&self) -> String {
        let s = &self.inner.summary;
        format!("LandscapeCore(n_bins={}, n_chunks={}, n_tokens={}, mean={:.4}, std={:.4})", self.inner.n_bins, s.n_chunks, s.n_tokens, s.mean, s.std)
    }
}

fn grid_spec(grid: Option<(f64, f64, usize)>) -> GridSpec {
    grid.map(|(log_lo, log_hi, n_cells)| GridSpec { log_lo, log_hi, n_cells }).unwrap_or_default()
}

#[pyfunction]
#[pyo3(signature = (ppl, tokens, *, n_bins=100, rows=None, grid=None))]
pub(crate) fn build_landscape(
    py: Python<'_>,
    ppl: AnyArray,
    tokens: AnyArray,
    n_bins: usize,
    rows: Option<AnyArray>,
    grid: Option<(f64, f64, usize)>,
) -> PyResult<PyLandscape> {
    let c = corpus(py, ppl, tokens, None, rows)?;
    let spec = grid_spec(grid);
    Ok(PyLandscape { inner: compute(py, || crate::landscape::build_landscape(&c, n_bins, spec))? })
}

#[pyfunction]
#[pyo3(signature = (ppl, tokens, *, rows=None, log_lo=None, log_hi=None, n_cells=None))]
pub(crate) fn build_grid(
    py: Python<'_>,
    ppl: AnyArray,
    tokens: AnyArray,
    rows: Option<AnyArray>,
    log_lo: Option<f64>,
    log_hi: Option<f64>,
    n_cells: Option<usize>,
) -> PyResult<PyGrid> {
    let c = corpus(py, ppl, tokens, None, rows)?;
    let d = GridSpec::default();
    let spec = GridSpec { log_lo: log_lo.unwrap_or(d.log_lo), log_hi: log_hi.unwrap_or(d.log_hi), n_cells: n_cells.unwrap_or(d.n_cells) };
    Ok(PyGrid { inner: compute(py, || crate::grid::build_grid(&c, spec))? })
}
