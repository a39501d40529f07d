"""The forecast's prediction interval: the bootstrap's parameter noise plus the law's error of form.

The bootstrap CI of a prediction (``Fit.predict(interval="confidence")``) resamples the sweep runs and refits:
it measures how much the fitted numbers move with the runs, not whether the law's *form* holds where it is
asked to predict. A final run 3x the largest proxy is an extrapolation in D, and there the form's error
dominates (on fresh worlds the bootstrap interval was +-1-2% while the forecast missed by 2-18%). The held-out
validation runs (sizes >= 2x the largest fitting size, never fitted) measure that error once: the chosen law,
fitted without them, mispredicted them by ``e`` (RMS of ``log(pred / measured)``, so a shared bias counts in
full, not only the spread) at an extrapolation of ``log(D_val / D_fit)``.

The interval assumes the log error grows linearly with the log extrapolation distance, as the error of a
power law's exponent does (``log L`` is off by ``delta_aD * log(D / D_fit)``), so at the final budget the form
error is ``e * log(D_final / D_fit) / log(D_val / D_fit)`` (never less than ``e``: a prediction inside the
validated range is still as wrong as the validation runs were). Distances are from the largest *fitting* size
also for the law refitted on every run: the few validation runs add one point to a handful of regimes and do
not make the curvature beyond them known. The two parts are independent errors and add in quadrature in
log space::

    sd = sqrt(sd_boot**2 + sd_form**2),   interval = prediction * exp(+-z * sd)

With no validation runs there is no measured error of form and no interval is claimed (``None``): the
report says the forecast is unvalidated instead of printing a bootstrap interval that looks like one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
from scipy.stats import norm

from pplaw.exceptions import InvalidInputError

LEVEL = 0.9  # the interval's nominal coverage


@dataclass(frozen=True)
class FormError:
    """The chosen law's held-out error of form: ``rms_log`` at ``log(d_val / d_fit)`` of extrapolation."""

    rms_log: float  # RMS of log(pred / measured) over the validation runs
    bias_log: float  # their mean (> 0: the law predicted too high)
    d_fit: float  # the largest fitting size (tokens)
    d_val: float  # the validation runs' median size (tokens)
    n: int  # validation runs

    def sd_at(self, d: float) -> float:
        """The form error's standard deviation (log loss) at ``d`` tokens."""
        ratio = math.log(max(d, self.d_fit) / self.d_fit) / math.log(self.d_val / self.d_fit)
        return self.rms_log * max(1.0, ratio)


def form_error(measured: Iterable[float], predicted: Iterable[float], d_val: Iterable[float],
               d_fit: float) -> FormError | None:
    """The held-out error of form from the validation runs (``None`` when there are none or none is usable)."""
    y = np.asarray(list(measured), float)
    p = np.asarray(list(predicted), float)
    d = np.asarray(list(d_val), float)
    if not (len(y) == len(p) == len(d)):
        raise InvalidInputError(f"form_error: measured ({len(y)}), predicted ({len(p)}) and d_val ({len(d)}) "
                                "must have one value per validation run")
    ok = np.isfinite(y) & np.isfinite(p) & (y > 0) & (p > 0) & (d > 0)
    if not ok.any():
        return None
    if not (np.isfinite(d_fit) and d_fit > 0):
        raise InvalidInputError(f"form_error: d_fit must be the largest fitting size in tokens (> 0), got {d_fit!r}")
    dv = float(np.median(d[ok]))
    if dv <= d_fit * 1.05:
        raise InvalidInputError(f"form_error: the validation runs ({dv:,.0f} tokens) must be larger than the "
                                f"largest fitting size ({d_fit:,.0f}): they measure extrapolation in D")
    r = np.log(p[ok] / y[ok])
    return FormError(float(np.sqrt(np.mean(r ** 2))), float(np.mean(r)), float(d_fit), dv, int(ok.sum()))


def interval(prediction: float, d: float, form: FormError | None, boot: tuple[float, float] | None = None,
             level: float = LEVEL) -> dict[str, Any] | None:
    """The prediction interval at ``d`` tokens: ``{"lo", "hi", "level", "sd_form", "sd_boot", ...}``.

    ``boot``: the bootstrap CI ``(lo, hi)`` at the same level, if the fit has one."""
    if not (0 < level < 1):
        raise InvalidInputError(f"interval: level must be in (0, 1), got {level!r}")
    if form is None or not (np.isfinite(prediction) and prediction > 0):
        return None
    z = float(norm.ppf(0.5 + level / 2))
    sd_boot = 0.0
    if boot is not None and all(b is not None and np.isfinite(b) and b > 0 for b in boot):
        sd_boot = max(0.0, math.log(boot[1] / boot[0])) / (2 * z)
    sd_form = form.sd_at(d)
    sd = math.hypot(sd_boot, sd_form)
    return {"lo": prediction * math.exp(-z * sd), "hi": prediction * math.exp(z * sd), "level": level,
            "sd_log": sd, "sd_form": sd_form, "sd_boot": sd_boot, "form": asdict(form)}


def form_error_of_run(law_choice: dict[str, Any], fit_sizes: Iterable[float]) -> FormError | None:
    """:func:`form_error` for a ``pplaw run``'s ``holdout.json`` (``law_choice``): the chosen law's held-out
    predictions, the validation sizes they were made at and the largest fitting size."""
    if not law_choice.get("validated"):
        return None
    rows = [r for r in law_choice.get("predictions", []) if r.get("law") == law_choice.get("chosen")]
    sizes = list(fit_sizes)
    if not rows or not sizes or any("D" not in r for r in rows):
        return None
    if float(np.median([r["D"] for r in rows])) <= float(max(sizes)) * 1.05:
        return None  # held-out runs no larger than the fitting runs measure no extrapolation: claim no interval
    return form_error([r["measured"] for r in rows], [r["predicted"] for r in rows], [r["D"] for r in rows],
                      float(max(sizes)))
