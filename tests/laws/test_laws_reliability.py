"""Issue 14, item 6: valid data never crashes the fit's plots, and flat data gives no confident optimum."""

from __future__ import annotations

import dataclasses

import pytest

from pplaw.exceptions import FitError
from pplaw.laws import PerplexityLaw
from pplaw.laws.plotting import plot_fit


def test_an_optimum_whose_ci_excludes_the_point_is_plotted(ppl_fit, tmp_path):
    """A small bootstrap's percentile CI need not contain the point estimate: matplotlib used to die on the
    negative error-bar length ('xerr' must not contain negative values)."""
    opt = ppl_fit.optimum()
    off = dataclasses.replace(opt, ci={"mu": (opt.mu + 1.0, opt.mu + 2.0), "sigma": (opt.sigma - 2.0, opt.sigma - 1.0)})
    path = plot_fit(ppl_fit, tmp_path / "fit.png", optimum=off)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_error_bars_are_never_negative():
    from pplaw.laws.plotting import _ci_err

    assert _ci_err(5.0, (6.0, 7.0)) == [[0.0], [2.0]] and _ci_err(5.0, (float("nan"), 1.0)) is None


def test_a_flat_loss_has_no_optimum(ppl_df):
    """Every run with the same loss (R^2 undefined): refused, instead of an optimum with a tight CI."""
    fit = PerplexityLaw().fit(ppl_df.assign(loss=2.5), target="loss", bootstrap=5, seed=0, progress=False)
    with pytest.raises(FitError, match="same loss .*do not locate an optimum"):
        fit.optimum()
