"""Fitting a law to prepared data: the point fit (:mod:`pplaw.laws.solver`), the bootstrap, the ``Fit``.

The solver itself (objective, grid + L-BFGS-B, resampling) lives in :mod:`pplaw.laws.solver`, which knows no
``Fit``; its names are re-exported here for callers that imported them from this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pplaw.exceptions import InvalidInputError
from pplaw.laws.result import Fit
from pplaw.laws.solver import (  # noqa: F401  (re-exported)
    LOSSES,
    SPACES,
    FitOptions,
    Problem,
    Solution,
    _progress,
    bootstrap_draws,
    predict_target,
    resample_indices,
    single_thread,
    solve,
    solve_data,
)

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.data import Data
    from pplaw.laws.engine import Law


def fit_data(law: Law, data: Data, opts: FitOptions, *, bootstrap: int = 0, seed: int = 0, level: float = 0.95,
             strict: bool = True, progress: bool | None = None, starts: np.ndarray | None = None) -> Fit:
    """Fit prepared data: the core of :meth:`Law.fit`, also used for hold-out refits."""
    if int(bootstrap) < 0:
        raise InvalidInputError(f"bootstrap must be >= 0 resamples, got {bootstrap!r}")
    if not 0 < level < 1:
        raise InvalidInputError(f"level must be in (0, 1), got {level!r}")
    law, sol, warnings = solve_data(law, data, opts, strict=strict, starts=starts)
    draws, failed = None, 0
    if bootstrap:
        with single_thread():
            draws, failed = bootstrap_draws(law, data, opts, sol.theta, int(bootstrap), seed, progress)
    return Fit(law=law, data=data, theta=sol.theta, options=opts, solution=sol, draws=draws, n_failed=failed,
               seed=seed, level=level, warnings=warnings)
