"""Chinchilla: the real reference check on Epoch AI's digitised points, and synthetic recovery."""

from __future__ import annotations

import numpy as np
import pytest
from laws_testdata import EPOCH, EPOCH_CI

from pplaw.laws import Chinchilla


@pytest.mark.shared_data
def test_reproduces_epoch_fit_and_bootstrap(chinchilla_df):
    assert len(chinchilla_df) == 240
    fit = Chinchilla().fit(chinchilla_df, target="loss", N="N", D="D", bootstrap=100, seed=0, progress=False)
    p = fit.params
    for k in ("E", "alpha", "beta"):
        assert p[k] == pytest.approx(EPOCH[k], rel=0.005), k  # within 0.5%
    for k in ("A", "B"):
        assert p[k] == pytest.approx(EPOCH[k], rel=0.01), k
    assert fit.solution.success and not [w for w in fit.warnings if "bound" in w]
    # Epoch's 95% bootstrap CIs; 100 resamples here, so allow percentile noise but far less than the CI width
    tol = {"E": 0.02, "alpha": 0.008, "beta": 0.015}
    for k, (lo, hi) in EPOCH_CI.items():
        got = fit.ci[k]
        assert got[0] < p[k] < got[1]
        assert got[0] == pytest.approx(lo, abs=tol[k]), (k, got)
        assert got[1] == pytest.approx(hi, abs=tol[k]), (k, got)
    print(fit.summary())
    v = fit.validate("largest N")  # extrapolation to the largest model
    print(v)
    assert v.metrics["mape"] < 3.0


@pytest.mark.shared_data
def test_coarse_grid_reaches_the_same_optimum(chinchilla_df):
    fine = Chinchilla().fit(chinchilla_df, target="loss")
    coarse = Chinchilla(grid="coarse").fit(chinchilla_df, target="loss", polish=None)
    assert coarse.solution.fun == pytest.approx(fine.solution.fun, rel=1e-6)


def test_synthetic_recovery_and_extrapolation(chin_synth):
    fit = Chinchilla().fit(chin_synth, target="loss", bootstrap=40, seed=0, progress=False)
    p = fit.params
    assert p["E"] == pytest.approx(EPOCH["E"], rel=0.03)
    assert p["alpha"] == pytest.approx(EPOCH["alpha"], rel=0.08)
    assert p["beta"] == pytest.approx(EPOCH["beta"], rel=0.05)
    for k in ("E", "alpha", "beta"):
        assert fit.ci[k][0] <= EPOCH[k] <= fit.ci[k][1], k
    v = fit.validate("largest N")
    print(v)
    assert v.metrics["mape"] < 1.5


def test_compute_optimal_allocation(chin_synth):
    fit = Chinchilla().fit(chin_synth, target="loss", bootstrap=20, progress=False)
    d = fit.derived
    assert d["a"] + d["b"] == pytest.approx(1.0)
    opt = fit.optimum(C=[1e21, 1e23])
    np.testing.assert_allclose(6 * opt["N_opt"] * opt["D_opt"], opt["C"], rtol=1e-10)
    assert np.all(opt["N_opt_lo"] <= opt["N_opt"]) and np.all(opt["N_opt"] <= opt["N_opt_hi"])
    # the optimum minimises the predicted loss along the iso-compute line
    c = 1e21
    N = np.geomspace(opt["N_opt"][0] / 3, opt["N_opt"][0] * 3, 201)
    L = fit.predict(N=N, D=c / (6 * N))
    assert N[np.argmin(L)] == pytest.approx(opt["N_opt"][0], rel=0.02)
