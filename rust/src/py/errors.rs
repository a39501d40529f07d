//! The error bridge: each variant of the core's [`Error`] raises its own class of `pplaw.exceptions`
//! (one `import_exception!` per class); the core itself knows nothing of Python.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{Error, Realisable};

pyo3::import_exception!(pplaw.exceptions, InvalidInputError);
pyo3::import_exception!(pplaw.exceptions, MissingColumnError);
pyo3::import_exception!(pplaw.exceptions, LengthMismatchError);
pyo3::import_exception!(pplaw.exceptions, EmptyInputError);
pyo3::import_exception!(pplaw.exceptions, BudgetError);
pyo3::import_exception!(pplaw.exceptions, UnreachableTargetError);
pyo3::import_exception!(pplaw.exceptions, SerializationError);

/// The `pplaw.exceptions` instance for a core error; `UnreachableTargetError` also gets what is realisable.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::InvalidInput(_) => InvalidInputError::new_err(msg),
        Error::MissingColumn(_) => MissingColumnError::new_err(msg),
        Error::LengthMismatch(_) => LengthMismatchError::new_err(msg),
        Error::EmptyInput(_) => EmptyInputError::new_err(msg),
        Error::Budget(_) => BudgetError::new_err(msg),
        Error::Serialization(_) => SerializationError::new_err(msg),
        Error::UnreachableTarget { realisable, .. } => match realisable_dict(py, &realisable) {
            Ok(d) => UnreachableTargetError::new_err((msg, d.unbind())),
            Err(e) => e,
        },
    }
}

pub(crate) fn realisable_dict<'py>(py: Python<'py>, r: &Realisable) -> PyResult<Bound<'py, PyDict>> {
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
pub(crate) fn compute<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
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
