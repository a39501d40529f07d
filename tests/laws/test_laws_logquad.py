"""PerplexityLawLogQuad (pplaw's two-stage extension: each regime's power law in D, smooth in (mu, s))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pplaw.exceptions import InvalidInputError
from pplaw.laws import Fit, PerplexityLaw, PerplexityLawLogQuad, compare_holdout, get_law
from pplaw.laws.engine import Law

# log B = 2 - 0.3 mu + 0.05 mu^2 + ...: a bowl in mu; aD = 0.1 + 0.12 mu - 0.015 mu^2 peaks inside the grid
TRUE = {"c0": 2.0, "c1": -0.3, "c2": 0.2, "c3": 0.05, "c4": -0.05, "c5": 0.02,
        "d0": 0.1, "d1": 0.12, "d2": 0.0, "d3": -0.015, "d4": 0.0, "d5": 0.0}


def table(sizes, p=TRUE, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    mu, sg, D = np.meshgrid(np.linspace(1.0, 8.0, 8), np.linspace(0.3, 2.0, 5), np.asarray(sizes, float),
                            indexing="ij")
    df = pd.DataFrame({"mu": mu.ravel(), "sigma": sg.ravel(), "D": D.ravel()})
    law = PerplexityLawLogQuad(space="log_ppl")
    clean = law.forward(law.internal(p)[None], law.design({k: df[k].to_numpy() for k in ("mu", "sigma", "D")}))[0]
    df["clean"] = clean
    df["loss"] = clean * np.exp(rng.normal(0, noise, clean.size))
    return df


def test_formula_matches_the_closed_form():
    df = table([1e4, 5e4], noise=0.0)
    p, m, s = TRUE, df.mu, df.sigma
    logB = p["c0"] + p["c1"] * m + p["c2"] * s + p["c3"] * m * m + p["c4"] * s * s + p["c5"] * m * s
    aD = p["d0"] + p["d1"] * m + p["d2"] * s + p["d3"] * m * m + p["d4"] * s * s + p["d5"] * m * s
    np.testing.assert_allclose(df["clean"], np.exp(logB) * df.D ** -aD, rtol=1e-12)
    law = PerplexityLawLogQuad()
    assert "not the paper's law" in law.describe() and law.name == "perplexity_logquad"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_parameters_and_extrapolates_in_D(seed):
    # parameters: from a low-noise table over a wider D range (s and s^2 need a low noise to separate from c0)
    exact = PerplexityLawLogQuad(space="log_ppl").fit(table([1e4, 3e4, 1e5], seed=seed, noise=0.002),
                                                       target="loss", progress=False)
    for k, v in TRUE.items():
        assert abs(exact.params[k] - v) < 0.05 + 0.1 * abs(v), (k, exact.params[k], v)
    # predictions: the sweep-like design (two sizes, 1% noise) still extrapolates
    fit = PerplexityLawLogQuad(space="log_ppl").fit(table([1e4, 2e4], seed=seed), target="loss", progress=False)
    far = table([8e4], seed=seed + 10, noise=0.0)
    pred = fit.predict(mu=far.mu, sigma=far.sigma, D=far.D)
    assert np.max(np.abs(pred / far["clean"] - 1)) < 0.05  # 4x beyond the largest fitted D


@pytest.mark.parametrize("sigma", ["std", "var"])
@pytest.mark.parametrize("space", ["log", "linear"])
def test_jacobian_matches_complex_step(sigma, space):
    law = PerplexityLawLogQuad(sigma=sigma)
    df = table([1e4, 3e4])
    design = law.design({k: df[k].to_numpy() for k in ("mu", "sigma", "D")})
    theta = law.internal(TRUE)
    value, jac = law.jacobian(theta, design, space)
    h = 1e-6
    fd = np.column_stack([(law.values((theta + h * e)[None], design, space)[0]
                           - law.values((theta - h * e)[None], design, space)[0]) / (2 * h)
                          for e in np.eye(theta.size)])
    np.testing.assert_allclose(jac, fd, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jac, Law.jacobian(law, theta, design, space)[1], rtol=1e-8, atol=1e-10)


def test_optimum_needs_D_and_minimises_the_predicted_loss():
    fit = PerplexityLawLogQuad(space="log_ppl").fit(table([1e4, 2e4]), target="loss", progress=False)
    with pytest.raises(InvalidInputError, match=r"\bD\b"):
        fit.optimum()
    for D in (1e4, 1e6):
        opt = fit.optimum(D=D)
        X = fit.data.X
        L = fit.predict(mu=X["mu"], sigma=X["sigma"], D=np.full(X["mu"].size, D))
        assert opt.loss <= L.min() + 1e-9
    again = Fit.from_json(fit.to_json())
    assert isinstance(again.law, PerplexityLawLogQuad)
    assert isinstance(get_law("perplexity_logquad", space="log_ppl"), PerplexityLawLogQuad)


def test_holdout_prefers_it_where_the_paper_law_cannot_follow_the_regimes():
    """On data whose data exponent peaks mid-landscape, the paper's single aD extrapolates worse in D."""
    fit_df, val_df = table([1e4, 2e4]), table([6e4], seed=5)
    cmp = compare_holdout({"perplexity": PerplexityLaw(space="log_ppl"),
                           "perplexity_logquad": PerplexityLawLogQuad(space="log_ppl")},
                          fit_df, val_df, target="loss", strict=False)
    t = cmp.table
    assert t.index[0] == "perplexity_logquad"
    assert t.loc["perplexity_logquad", "holdout_mape"] < 3.0 < t.loc["perplexity", "holdout_mape"]
