"""A law at given parameters (published, or fitted elsewhere): evaluate, tabulate and plot it without data.

    from pplaw.laws import Chinchilla, CMRLaw
    hoffmann = Chinchilla.from_params({"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
                                      source="Hoffmann et al. 2022, approach 3")
    hoffmann.predict(N=70e9, D=1.4e12)          # -> 1.937
    rcmr = CMRLaw.from_params({"a4": ..., "s4": ..., "b3": ...}, t_unit=1e9)   # units explicit, never "auto"

Built by :meth:`pplaw.laws.engine.Law.from_params`; it knows no :class:`~pplaw.laws.result.Fit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from pplaw.exceptions import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.engine import Law


class LawAt:
    """``law`` evaluated at fixed ``params`` (user scale, by name). ``source`` says where they come from."""

    def __init__(self, law: Law, params: Mapping[str, float], source: str = ""):
        names = set(law.param_names)
        unknown = sorted(set(params) - names)
        if unknown:
            raise InvalidInputError(f"{type(law).__name__} has no parameter(s) {unknown}; parameters: "
                                    f"{list(law.param_names)}")
        given = {**law.fixed, **{k: float(v) for k, v in params.items()}}
        for p in law.params:
            v = given.get(p.name)
            if v is not None and (not np.isfinite(v) or (p.log and v <= 0)):
                raise InvalidInputError(f"parameter {p.name!r} must be finite" + (" and > 0" if p.log else "")
                                        + f", got {v!r}")
        law.check_units()
        self.law, self.source = law, str(source)
        self.theta = law.internal(given)

    @property
    def params(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.law.public(self.theta).items()}

    @property
    def derived(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.law.derived(self.law.public(self.theta)).items()}

    def inputs(self, data: Any = None, **arrays: Any) -> dict[str, np.ndarray]:
        from pplaw.laws.data import prediction_inputs

        X = prediction_inputs(self.law, data, arrays)
        self.law.check_inputs(X, {v: v for v in X})
        return X

    def predict(self, data: Any = None, **arrays: Any) -> np.ndarray:
        """The law's target at the inputs (variables by name, or a table with columns named like them)."""
        X = self.inputs(data, **arrays)
        with np.errstate(all="ignore"):
            z = self.law.forward(self.theta[None], self.law.design(X))
        return self.law.model_to_target(z, X)[0]

    def summary(self) -> str:
        lines = [self.law.describe()]
        if self.source:
            lines.append(f"parameters from: {self.source}")
        units = self.law.units()
        if units:
            lines.append(f"units: {units}")
        lines += [f"  {k:<12} {v:>14.6g}" for k, v in self.params.items()]
        if self.derived:
            lines.append("  derived:")
            lines += [f"  {k:<12} {v:>14.6g}" for k, v in self.derived.items()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return f"<LawAt {type(self.law).__name__} {ps}>"

    def plot(self, path: str | Path, x: str | None = None, **arrays: Any) -> Path:
        """A PNG of the target against variable ``x`` (default: the first variable given as an array of several
        values); the other variables at the given values (broadcast)."""
        from matplotlib.figure import Figure

        from pplaw._atomic import save_figure

        if x is None:
            many = [v for v in self.law.variables if np.size(arrays.get(v, 0)) > 1]
            if not many:
                raise InvalidInputError(f"plot needs a range for one variable, e.g. {self.law.variables[0]}="
                                        "np.geomspace(...)")
            x = many[0]
        X = self.inputs(**arrays)
        y = self.predict(**arrays)
        fig = Figure(figsize=(6.0, 4.5))
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(X[x], y, "-", lw=2)
        if x in self.law.positive:
            ax.set_xscale("log")
        ax.set_xlabel(x + (f"  ({self.law.units()})" if self.law.units() else ""))
        ax.set_ylabel("prediction")
        ax.set_title(f"{type(self.law).__name__} at given parameters" + (f"\n{self.source}" if self.source else ""),
                     fontsize=9)
        return save_figure(fig, path)
