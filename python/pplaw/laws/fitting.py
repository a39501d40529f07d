"""Fitting a law to prepared data: the point fit (:mod:`pplaw.laws.solver`), the bootstrap, the ``Fit``.

The solver itself (objective, grid + L-BFGS-B, resampling) lives in :mod:`pplaw.laws.solver`, which knows no
``Fit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pplaw.exceptions import InvalidInputError
from pplaw.laws.basins import BASIN_RTOL, distinct_basins
from pplaw.laws.result import Fit
from pplaw.laws.solver import FitOptions, Solution, bootstrap_draws, single_thread, small_sample_warning, solve_data

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.data import Data
    from pplaw.laws.engine import Law

THIN_SHARE = 0.2  # CIs are not meaningful when more than this share of resamples cannot identify the law


def fit_data(law: Law, data: Data, opts: FitOptions, *, bootstrap: int = 0, seed: int = 0, level: float = 0.95,
             strict: bool = True, progress: bool | None = None, starts: np.ndarray | None = None) -> Fit:
    """Fit prepared data: the core of :meth:`Law.fit`, also used for hold-out refits."""
    if int(bootstrap) < 0:
        raise InvalidInputError(f"bootstrap must be >= 0 resamples, got {bootstrap!r}")
    if not 0 < level < 1:
        raise InvalidInputError(f"level must be in (0, 1), got {level!r}")
    law, sol, warnings = solve_data(law, data, opts, strict=strict, starts=starts)
    n_params = law.n_free
    extras: dict[str, Any] = {}
    basins = distinct_basins(law, data, sol.theta, sol.fun, sol.local, sol.local_fun)
    if len(basins) > 1:
        extras["basins"] = [{"objective": b["objective"], "params": {k: float(v) for k, v in law.public(b["theta"]).items()},
                             law.basin_what: dict(zip(law.basin_key_names(), map(float, b["key"])))} for b in basins]
        warnings.append(basin_warning(law, sol, basins))
    small = small_sample_warning(law, data)
    if small:
        warnings.append(small)
    draws, failed = None, 0
    if bootstrap:
        stats: dict[str, int] = {}
        with single_thread():
            draws, failed = bootstrap_draws(law, data, opts, sol.theta, int(bootstrap), seed, progress, stats)
        reasons = []
        if small:
            reasons.append(f"n - P = {data.n - n_params} <= 2")
        under, exact = stats.get("under", 0), stats.get("exact", 0)
        if under:
            warnings.append(
                f"THIN RESAMPLES: {under} of {int(bootstrap)} bootstrap resamples hold fewer distinct design points "
                f"than the {n_params} free parameters and were left out (counted as failed)"
                + (f"; {exact} more hold exactly {n_params} (an exact interpolation, no residual)" if exact else ""))
            if under > THIN_SHARE * int(bootstrap):
                reasons.append(f"{100 * under / int(bootstrap):.0f}% of the resamples have fewer distinct design "
                               "points than free parameters")
        if reasons:
            extras["ci_meaningful"] = False
            extras["ci_note"] = "; ".join(reasons)
            warnings.append(f"CIs NOT MEANINGFUL ({'; '.join(reasons)}): the bootstrap cannot measure the "
                            "uncertainty of so small a design; report the point values as such and collect more points")
    return Fit(law=law, data=data, theta=sol.theta, options=opts, solution=sol, draws=draws, n_failed=failed,
               seed=seed, level=level, warnings=warnings, extras=extras)


def basin_warning(law: Law, sol: Solution, basins: list[dict[str, Any]]) -> str:
    """The warning for distinct basins (``basins[0]`` is the best fit)."""
    names = law.basin_key_names()
    shown = "; ".join(f"objective {b['objective']:.4g}: " + ", ".join(f"{k}={v:.4g}" for k, v in zip(names, b["key"]))
                      for b in basins[:4])
    return (f"MULTIPLE BASINS: {len(basins)} distinct local optima reach objectives within {100 * BASIN_RTOL:g}% of "
            f"the best ({sol.fun:.4g}) with different {law.basin_what} ({shown}); the data do not identify the "
            f"{law.basin_what}: treat it as unknown, or add runs that tell the basins apart")
