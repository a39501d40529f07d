//! Distance-to-Optimum Selection: `select_dos` and `dos_objective`.

use pyo3::prelude::*;
use pyo3_arrow::input::AnyArray;

use super::errors::compute;
use super::{budget, corpus, selection, space, u64_array};

#[pyfunction]
#[pyo3(signature = (ppl, tokens, *, token_budget, target_mean, target_std, space="ppl", w_mu=None, w_s=None,
                    chunk_id=None, rows=None, seed=0))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn select_dos<'py>(
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
pub(crate) fn dos_objective(
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
