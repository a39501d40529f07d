"""Report diagnostics computed from sweep rows (no run needed)."""

from __future__ import annotations

import math

import pytest

from pplaw.pipeline.analysis import d_slopes


def _row(regime, D, loss, status="ok", R=0.25, seed=0):
    return {"regime": regime, "D": D, "R": R, "seed": seed, "status": status, "domain_loss": loss}


def test_d_slopes_are_each_regimes_own_log_log_slope():
    rows = [_row("flat", D, 5.0) for D in (1000, 2000, 4000)]
    rows += [_row("steep", D, 8.0 * D ** -0.7) for D in (1000, 2000, 4000)]
    rows += [_row("steep", D, 8.0 * D ** -0.5, seed=1) for D in (1000, 4000)]  # another seed: averaged
    rows += [_row("steep", 8000, 0.01, status="failed"), _row("one_size", 1000, 3.0)]
    s = d_slopes(rows, "domain_loss")
    assert set(s) == {"flat", "steep"}  # a regime with a single finished size has no slope
    assert s["flat"] == pytest.approx(0.0, abs=1e-12)
    assert s["steep"] == pytest.approx(0.6, rel=1e-9)


def test_d_slopes_skip_missing_or_non_positive_targets():
    rows = [_row("a", 1000, None), _row("a", 2000, 2.0), _row("b", 1000, 0.0), _row("b", 2000, math.nan)]
    assert d_slopes(rows, "domain_loss") == {}
