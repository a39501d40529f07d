"""Distinct basins: local optima with (nearly) the best objective but different conclusions.

After the polish, every local optimum L-BFGS-B reached is kept (:attr:`~pplaw.laws.solver.Solution.local`).
Two of them are *distinct basins* when their objectives are within ``rtol`` (relative) of the best one and the
law's conclusion differs: by default any parameter (user scale) differs by more than ``key_rtol`` of its
magnitude; laws override :meth:`~pplaw.laws.engine.Law.basin_key` to compare what the user acts on (the
perplexity law compares its optimum ``(mu*, sigma*)`` over the fitted points' hull). When that happens the data
do not identify the conclusion: the fit reports it as a warning, with every basin, instead of silently picking
the marginally better one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.data import Data
    from pplaw.laws.engine import Law

BASIN_RTOL = 0.05  # objectives within 5% of the best are "similar": noise-level differences of a summed loss
KEY_RTOL = 0.05  # conclusions further apart than 5% of their scale are "different"


def distinct_basins(law: Law, data: Data, theta: np.ndarray, fun: float, local: np.ndarray, local_fun: np.ndarray,
                    rtol: float = BASIN_RTOL) -> list[dict[str, Any]]:
    """The best fit and every other basin whose objective is within ``rtol`` of ``fun`` and whose conclusion
    differs from the best's (and from each other's), best first: ``{"objective", "theta", "key"}`` each; a
    single entry when the conclusion is identified."""
    local = np.atleast_2d(np.asarray(local, float))
    local_fun = np.asarray(local_fun, float)
    near = np.isfinite(local_fun) & (local_fun <= fun + rtol * max(abs(fun), 1e-300)) if local.size else []
    cand = np.vstack([theta[None], local[near]]) if np.any(near) else theta[None]
    cf = np.concatenate([[fun], local_fun[near]]) if np.any(near) else np.array([fun])
    if len(cand) == 1:
        keys, _ = law.basin_key(cand, data)
        return [{"objective": float(fun), "theta": theta, "key": np.asarray(keys, float)[0]}]
    keys, scale = law.basin_key(cand, data)
    keys = np.asarray(keys, float)
    found: list[int] = [0]  # index 0 is the best fit
    for i in np.argsort(cf[1:], kind="stable") + 1:
        if np.all(np.isfinite(keys[i])) and all(np.any(np.abs(keys[i] - keys[j]) > KEY_RTOL * scale)
                                                for j in found):
            found.append(int(i))
    return [{"objective": float(cf[i]), "theta": cand[i], "key": keys[i]} for i in found]
