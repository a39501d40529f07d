//! PyO3 bindings (`pplaw._core`): convert Arrow inputs (PyCapsule interface, zero-copy), release the GIL,
//! call the pure-Rust core, and raise `pplaw.exceptions` classes ([`errors`]). No algorithm here.
//!
//! One file per topic: [`errors`] (the error bridge, running without the GIL), [`landscape`] (landscape and
//! grid), [`sample`] (subset statistics, sampling, realisable range and edges), [`dos`] (Distance-to-Optimum
//! Selection); this file holds the shared input/output conversions and registers the module.

mod dos;
mod errors;
mod landscape;
mod sample;

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::input::AnyArray;
use pyo3_arrow::{PyArray, PyRecordBatch};

use crate::column::{BoolColumn, F64Column, IntColumn};
use crate::corpus::Corpus;
use crate::error::Error;
use crate::grid::Summary;
use crate::members::Window;
use crate::stats::{Selection, Space};
use errors::to_py;

// ------------------------------------------------------------------------------------------ inputs

pub(crate) fn chunks_of(a: AnyArray) -> PyResult<Vec<ArrayRef>> {
    Ok(a.into_chunked_array()?.into_inner().0)
}

pub(crate) fn corpus(
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

pub(crate) fn space(py: Python<'_>, s: &str) -> PyResult<Space> {
    Space::parse(s).map_err(|e| to_py(py, e))
}

pub(crate) fn window(ppl_min: Option<f64>, ppl_max: Option<f64>, quantile_min: Option<f64>, quantile_max: Option<f64>) -> Window {
    Window { ppl_min, ppl_max, quantile_min, quantile_max }
}

pub(crate) fn budget(py: Python<'_>, b: i128) -> PyResult<i128> {
    if b <= 0 {
        return Err(to_py(py, Error::Budget(format!("token_budget must be a positive number of tokens, got {b}"))));
    }
    Ok(b)
}

pub(crate) fn selection(py: Python<'_>, sel: AnyArray) -> PyResult<Selection> {
    let chunks = chunks_of(sel)?;
    let is_bool = chunks.first().map_or(false, |a| a.data_type() == &DataType::Boolean);
    let built = if is_bool {
        BoolColumn::from_arrays("selection", &chunks).map(Selection::Mask)
    } else {
        IntColumn::from_arrays("selection", &chunks).map(Selection::Indices)
    };
    built.map_err(|e| to_py(py, e))
}

// ----------------------------------------------------------------------------------------- outputs

pub(crate) fn u64_array(py: Python<'_>, v: Vec<u64>) -> PyResult<Bound<'_, PyAny>> {
    let arr: ArrayRef = Arc::new(UInt64Array::from(v));
    export(py, arr)
}

/// A pyarrow.Array over `arr` (handed over through the C data interface, no copy).
pub(crate) fn export(py: Python<'_>, arr: ArrayRef) -> PyResult<Bound<'_, PyAny>> {
    let holder = PyArray::from_array_ref(arr);
    let out = holder.to_pyarrow(py)?.unbind();
    Ok(out.into_bound(py))
}

pub(crate) fn summary_dict<'py>(py: Python<'py>, s: &Summary) -> PyResult<Bound<'py, PyDict>> {
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

pub(crate) fn batch<'py>(py: Python<'py>, cols: Vec<(&str, ArrayRef)>) -> PyResult<Bound<'py, PyAny>> {
    let fields: Vec<Field> = cols.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), false)).collect();
    let rb = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| PyRuntimeError::new_err(format!("internal error building a record batch: {e}")))?;
    PyRecordBatch::new(rb).into_pyarrow(py)
}

pub(crate) fn f64s(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(v))
}
pub(crate) fn u64s(v: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(v))
}

#[pymodule]
pub fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<landscape::PyLandscape>()?;
    m.add_class::<landscape::PyGrid>()?;
    m.add_function(wrap_pyfunction!(landscape::build_landscape, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::build_grid, m)?)?;
    m.add_function(wrap_pyfunction!(sample::subset_stats, m)?)?;
    m.add_function(wrap_pyfunction!(sample::sample_subset, m)?)?;
    m.add_function(wrap_pyfunction!(dos::select_dos, m)?)?;
    m.add_function(wrap_pyfunction!(dos::dos_objective, m)?)?;
    m.add_function(wrap_pyfunction!(sample::realisable_range, m)?)?;
    m.add_function(wrap_pyfunction!(sample::realisable_edges, m)?)?;
    m.add_function(wrap_pyfunction!(sample::chunk_key, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
