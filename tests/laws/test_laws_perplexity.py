"""The perplexity-aware law: recovery, the optimum inside the realisable region, variants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from laws_testdata import PPL_TRUE, perplexity_runs

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws import PerplexityLaw, Region, compare_variants


def test_recovers_known_parameters(ppl_fit):
    p = ppl_fit.params
    assert p["E"] == pytest.approx(PPL_TRUE["E"], rel=0.03)
    assert p["aD"] == pytest.approx(PPL_TRUE["aD"], rel=0.05)
    for k in ("a0", "b0"):
        assert p[k] == pytest.approx(PPL_TRUE[k], rel=0.05), k
    for k in ("a1", "b1"):
        assert p[k] == pytest.approx(PPL_TRUE[k], rel=0.1), k
    for k in ("E", "a1", "b1", "aD"):
        lo, hi = ppl_fit.ci[k]
        assert lo <= PPL_TRUE[k] <= hi, (k, lo, hi)
    assert ppl_fit.metrics["r2"] > 0.999


def test_optimum_with_ci_in_the_fitted_hull(ppl_fit):
    opt = ppl_fit.optimum()
    assert opt.mu == pytest.approx(20.0, rel=0.03) and opt.sigma == pytest.approx(8.0, rel=0.03)
    assert opt.ci["mu"][0] <= 20.0 <= opt.ci["mu"][1]
    assert opt.ci["sigma"][0] <= 8.0 <= opt.ci["sigma"][1]
    assert opt.variance == pytest.approx(opt.sigma**2)
    assert not opt.on_boundary
    assert "convex hull" in opt.region
    # the optimum minimises the fitted law over the hull
    mu = np.random.default_rng(0).uniform(8, 40, 2000)
    sg = np.random.default_rng(1).uniform(3, 13, 2000)
    inside = Region.make(None, ppl_fit.data).contains(mu, sg)
    L = ppl_fit.predict(mu=mu[inside], sigma=sg[inside], D=np.full(inside.sum(), 3e6))
    assert ppl_fit.predict(mu=[opt.mu], sigma=[opt.sigma], D=[3e6])[0] <= L.min() + 1e-9


def test_optimum_does_not_depend_on_D(ppl_fit):
    a, b = ppl_fit.optimum(D=1e6), ppl_fit.optimum(D=1e9)
    assert (a.mu, a.sigma) == (b.mu, b.sigma)
    assert a.loss > b.loss  # but the predicted loss there does
    assert a.loss_ci[0] <= a.loss <= a.loss_ci[1]


def test_optimum_respects_the_region(ppl_fit):
    # a corpus that cannot reach mu >= 15: the optimum is on that edge, and says so
    opt = ppl_fit.optimum(region=lambda m, s: m < 15.0, bbox=(5, 45, 2, 15))
    assert opt.mu == pytest.approx(15.0, abs=0.2)
    assert opt.on_boundary and "edge of the realisable region" in str(opt)

    class Landscape:  # a Landscape-like object exposing the realisable set
        def contains(self, mu, sigma):
            return (mu > 25) & (sigma < 6)

        bbox = (20.0, 45.0, 2.0, 10.0)

    opt2 = ppl_fit.optimum(region=Landscape())
    assert opt2.mu >= 25 - 1e-6 and opt2.sigma <= 6 + 1e-6
    pts = pd.DataFrame({"mu": [10, 30, 30, 10], "sigma": [3, 3, 12, 12]})
    opt3 = ppl_fit.optimum(region=pts)
    assert 10 <= opt3.mu <= 30 and 3 <= opt3.sigma <= 12
    assert opt3.mu == pytest.approx(20, rel=0.03)
    with pytest.raises(InvalidInputError, match="span no area"):
        ppl_fit.optimum(region=np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    with pytest.raises(InvalidInputError, match=r"shape \(m, 2\)"):
        ppl_fit.optimum(region=np.ones((4, 3)))
    with pytest.raises(FitError, match="no point"):
        ppl_fit.optimum(region=lambda m, s: m < 0, bbox=(5, 45, 2, 15))


def test_variants_identify_the_generating_form():
    var_df = perplexity_runs(seed=4, sigma="var")
    cmp = compare_variants(var_df, target="loss", mu="mu", sigma="sigma", D="D")
    assert cmp.best == "ppl/var"
    assert list(cmp.table.index) == ["ppl/var", "ppl/std"]
    f = cmp.fits["ppl/var"]
    assert f.optimum().sigma == pytest.approx(8.0, rel=0.05)
    print(cmp)


def test_log_ppl_space_variants(ppl_df):
    df = ppl_df.assign(mu_log=np.log(ppl_df["mu"]), sigma_log=ppl_df["sigma"] / ppl_df["mu"])
    cmp = compare_variants(df, target="loss", mu="mu", sigma="sigma", mu_log="mu_log", sigma_log="sigma_log",
                           D="D", holdout="largest D")
    assert set(cmp.table.index) == {"ppl/std", "ppl/var", "log_ppl/std", "log_ppl/var"}
    assert cmp.best == "ppl/std"  # the data were generated in PPL space with sigma as a std
    assert "holdout_mape" in cmp.table
    assert cmp.fits["log_ppl/std"].law.options() == {"sigma": "std", "space": "log_ppl"}


def test_bad_options_and_inputs(ppl_df):
    with pytest.raises(InvalidInputError, match="sigma must be"):
        PerplexityLaw(sigma="mad")
    with pytest.raises(InvalidInputError, match="space must be"):
        PerplexityLaw(space="nats")
    with pytest.raises(InvalidInputError, match="'sigma'.*must be > 0"):
        PerplexityLaw().fit(ppl_df.assign(sigma=0.0), target="loss")
    with pytest.raises(FitError, match="degenerate design.*'D'"):
        PerplexityLaw().fit(ppl_df.assign(D=1e6), target="loss")
