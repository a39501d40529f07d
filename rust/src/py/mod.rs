//! NOTE for the core author: these bindings were written by the lead against the core API of 21:55; adapt them
//! rather than replacing them wholesale (the Python layer and its tests call exactly these names).
//! PyO3 bindings (`pplaw._core`): convert Arrow inputs (PyCapsule interface, zero-copy), release the GIL,
//! call the pure-Rust core, and map [`crate::error::Error`] onto `pplaw.exceptions`. No algorithm here.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::input::AnyArray;
use pyo3_arrow::{PyArray, PyRecordBatch};

use crate::column::{BoolColumn, F64Column, IntColumn};
use crate::corpus::Corpus;
use crate::error::{Error, Realisable};
use crate::grid::{Grid, GridSpec, Summary};
use crate::landscape::Landscape;
use crate::members::Window;
use crate::stats::{Selection, Space, Weighting};

// ----------------------------------------------------------------------------------------- errors

/// Build the matching `pplaw.exceptions` instance (by class name) from a core error.
fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let class = err.class_name();
    let msg = err.to_string();
    let made = (|| -> PyResult<PyErr> {
        let module = py.import("pplaw.exceptions")?;
        let cls = module.getattr(class)?;
        let inst = match &err {
            Error::UnreachableTarget { realisable, .. } => cls.call1((msg.clone(), realisable_dict(py, realisable)?))?,
            _ => cls.call1((msg.clone(),))?,
        };
        Ok(PyErr::from_value(inst))
    })();
    made.unwrap_or_else(|e| PyRuntimeError::new_err(format!("{class}: {msg} (and pplaw.exceptions failed: {e})")))
}

fn realisable_dict<'py>(py: Python<'py>, r: &Realisable) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("mean", r.mean)?;
    d.set_item("std", r.std)?;
    d.set_item("std_at_target_mean", r.std_at_target_mean)?;
    d.set_item("budget", r.budget)?;
    d.set_item("window_chunks", r.window_chunks)?;
    d.set_item("window_tokens", r.window_tokens)?;
    d.set_item("space", r.space)?;
    Ok(d)
}

/// Run `f` without the GIL; a panic becomes a Python exception instead of aborting the interpreter.
fn compute<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    let out = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py(py, e)),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!("internal error in pplaw._core (please report): {what}")))
        }
    }
}

// ------------------------------------------------------------------------------------------ inputs

fn chunks_of(a: AnyArray) -> PyResult<Vec<ArrayRef>> {
    Ok(a.into_chunked_array()?.into_inner().0)
}

fn corpus(
    py: Python<'_>,
    ppl: AnyArray,
    tokens: AnyArray,
    chunk_id: Option<AnyArray>,
    rows: Option<AnyArray>,
) -> PyResult<Corpus> {
    let ppl = chunks_of(ppl)?;
    let tokens = chunks_of(tokens)?;
    let ids = chunk_id.map(chunks_of).transpose()?;
    let rows = rows.map(chunks_of).transpose()?;
    let built = (|| {
        let ppl = F64Column::from_arrays("ppl", &ppl)?;
        let tokens = IntColumn::from_arrays("tokens", &tokens)?;
        let ids = ids.as_deref().map(|a| IntColumn::from_arrays("chunk_id", a)).transpose()?;
        let rows = rows.as_deref().map(|a| IntColumn::from_arrays("rows", a)).transpose()?;
        Corpus::new(ppl, tokens, ids, rows)
    })();
    built.map_err(|e| to_py(py, e))
}

fn space(py: Python<'_>, s: &str) -> PyResult<Space> {
    Space::parse(s).map_err(|e| to_py(py, e))
}

fn window(ppl_min: Option<f64>, ppl_max: Option<f64>, quantile_min: Option<f64>, quantile_max: Option<f64>) -> Window {
    Window { ppl_min, ppl_max, quantile_min, quantile_max }
}

fn budget(py: Python<'_>, b: i128) -> PyResult<i128> {
    if b <= 0 {
        return Err(to_py(py, Error::Budget(format!("token_budget must be a positive number of tokens, got {b}"))));
    }
    Ok(b)
}

// ----------------------------------------------------------------------------------------- outputs

fn u64_array(py: Python<'_>, v: Vec<u64>) -> PyResult<Bound<'_, PyAny>> {
    let arr: ArrayRef = Arc::new(UInt64Array::from(v));
    export(py, arr)
}

/// A pyarrow.Array over `arr` (handed over through the C data interface, no copy).
fn export(py: Python<'_>, arr: ArrayRef) -> PyResult<Bound<'_, PyAny>> {
    let holder = PyArray::from_array_ref(arr);
    let out = holder.to_pyarrow(py)?.unbind();
    Ok(out.into_bound(py))
}

fn summary_dict<'py>(py: Python<'py>, s: &Summary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("n_chunks", s.n_chunks)?;
    d.set_item("n_tokens", s.n_tokens)?;
    d.set_item("mean", s.mean)?;
    d.set_item("std", s.std)?;
    d.set_item("log_mean", s.log_mean)?;
    d.set_item("log_std", s.log_std)?;
    d.set_item("weighted", s.weighted)?;
    d.set_item("ppl_min", s.ppl_min)?;
    d.set_item("ppl_max", s.ppl_max)?;
    Ok(d)
}

fn batch<'py>(py: Python<'py>, cols: Vec<(&str, ArrayRef)>) -> PyResult<Bound<'py, PyAny>> {
    let fields: Vec<Field> = cols.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), false)).collect();
    let rb = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| PyRuntimeError::new_err(format!("internal error building a record batch: {e}")))?;
    PyRecordBatch::new(rb).into_pyarrow(py)
}

fn f64s(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(v))
}
fn u64s(v: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(v))
}

// --------------------------------------------------------------------------------------- classes

/// A fixed fine grid over log-PPL; merges exactly (integer accumulators) and order-independently.
#[pyclass(module = "pplaw._core", name = "GridCore", frozen)]
pub struct PyGrid {
    inner: Grid,
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
    inner: Landscape,
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

// -------------------------------------------------------------------------------------- functions

fn grid_spec(grid: Option<(f64, f64, usize)>) -> GridSpec {
    grid.map(|(log_lo, log_hi, n_cells)| GridSpec { log_lo, log_hi, n_cells }).unwrap_or_default()
}

#[pyfunction]
#[pyo3(signature = (ppl, tokens, *, n_bins=100, rows=None, grid=None))]
fn build_landscape(
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
fn build_grid(
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

fn selection(py: Python<'_>, sel: AnyArray) -> PyResult<Selection> {
    let chunks = chunks_of(sel)?;
    let is_bool = chunks.first().map_or(false, |a| a.data_type() == &DataType::Boolean);
    let built = if is_bool {
        BoolColumn::from_arrays("selection", &chunks).map(Selection::Mask)
    } else {
        IntColumn::from_arrays("selection", &chunks).map(Selection::Indices)
    };
    built.map_err(|e| to_py(py, e))
}

#[pyfunction]
#[pyo3(signature = (ppl, tokens, selection, *, rows=None, space="ppl", weighting="auto"))]
fn subset_stats<'py>(
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
fn sample_subset<'py>(
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
#[pyo3(signature = (ppl, tokens, *, token_budget, target_mean, target_std, space="ppl", w_mu=None, w_s=None,
                    chunk_id=None, rows=None, seed=0))]
#[allow(clippy::too_many_arguments)]
fn select_dos<'py>(
    py: Python<'py>,
    ppl: AnyArray,
    tokens: AnyArray,
    token_budget: i128,
    target_mean: f64,
    target_std: f64,
    space: &str,
    w_mu: Option<f64>,
    w_s: Option<f64>,
    chunk_id: Option<AnyArray>,
    rows: Option<AnyArray>,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let c = corpus(py, ppl, tokens, chunk_id, rows)?;
    let req = crate::dos::DosRequest {
        budget: budget(py, token_budget)?,
        target_mean,
        target_std,
        space: self::space(py, space)?,
        w_mu,
        w_s,
        seed,
    };
    let res = compute(py, || crate::dos::select_dos(&c, &req))?;
    u64_array(py, res.rows)
}

#[pyfunction]
#[pyo3(signature = (ppl, tokens, selection, *, target_mean, target_std, space="ppl", w_mu=None, w_s=None, rows=None))]
#[allow(clippy::too_many_arguments)]
fn dos_objective(
    py: Python<'_>,
    ppl: AnyArray,
    tokens: AnyArray,
    selection: AnyArray,
    target_mean: f64,
    target_std: f64,
    space: &str,
    w_mu: Option<f64>,
    w_s: Option<f64>,
    rows: Option<AnyArray>,
) -> PyResult<f64> {
    let c = corpus(py, ppl, tokens, None, rows)?;
    let sel = self::selection(py, selection)?;
    let sp = self::space(py, space)?;
    compute(py, || crate::dos::dos_objective(&c, &sel, sp, target_mean, target_std, w_mu, w_s))
}

#[pyfunction]
#[pyo3(signature = (ppl, tokens, *, token_budget, space="ppl", ppl_min=None, ppl_max=None, quantile_min=None,
                    quantile_max=None, rows=None))]
#[allow(clippy::too_many_arguments)]
fn realisable_range<'py>(
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
fn chunk_key(seed: u64, chunk_id: u64) -> u64 {
    crate::hash::chunk_key(seed, chunk_id)
}

#[pymodule]
pub fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLandscape>()?;
    m.add_class::<PyGrid>()?;
    m.add_function(wrap_pyfunction!(build_landscape, m)?)?;
    m.add_function(wrap_pyfunction!(build_grid, m)?)?;
    m.add_function(wrap_pyfunction!(subset_stats, m)?)?;
    m.add_function(wrap_pyfunction!(sample_subset, m)?)?;
    m.add_function(wrap_pyfunction!(select_dos, m)?)?;
    m.add_function(wrap_pyfunction!(dos_objective, m)?)?;
    m.add_function(wrap_pyfunction!(realisable_range, m)?)?;
    m.add_function(wrap_pyfunction!(chunk_key, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
