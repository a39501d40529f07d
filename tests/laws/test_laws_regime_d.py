"""PerplexityLawRegimeD (pplaw's extension: a data exponent per regime) and compare_holdout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws import (
    REGISTRY,
    Chinchilla,
    Fit,
    HoldoutComparison,
    PerplexityLaw,
    PerplexityLawRegimeD,
    compare_holdout,
    get_law,
)

# aD(mu, s) = 0.05 + 0.08 mu + 0.05 s ranges over 0.18 .. 0.45 on the grid below
TRUE = {"E": 0.5, "Dc": 40.0, "a0": 0.3, "a1": 0.2, "b0": -0.2, "b1": 0.1, "d0": 0.05, "d1": 0.08, "d2": 0.05}
PAPER = {**TRUE, "d0": 0.3, "d1": 0.0, "d2": 0.0}  # the paper's law (one aD) written in the regime-D form


def table(sizes, p=TRUE, seed=0, noise=0.01):
    """7 x 3 grid of (mu, sigma) x the given D, multiplicative noise."""
    rng = np.random.default_rng(seed)
    mu, sg, D = np.meshgrid(np.linspace(1.5, 4.0, 7), np.linspace(0.3, 1.5, 3), np.asarray(sizes, float),
                            indexing="ij")
    df = pd.DataFrame({"mu": mu.ravel(), "sigma": sg.ravel(), "D": D.ravel()})
    law = PerplexityLawRegimeD()
    clean = law.forward(law.internal(p)[None], law.design({k: df[k].to_numpy() for k in ("mu", "sigma", "D")}))[0]
    df["clean"] = clean
    df["loss"] = clean * np.exp(rng.normal(0, noise, clean.size))
    return df


SIZES = [1e4, 2e4, 4e4, 8e4]


@pytest.fixture(scope="module")
def rd_fit():
    return PerplexityLawRegimeD().fit(table(SIZES), target="loss", progress=False)


def test_formula_matches_the_closed_form():
    df = table([1e4, 5e4], noise=0.0)
    p = TRUE
    aD = p["d0"] + p["d1"] * df.mu + p["d2"] * df.sigma
    L = p["E"] + p["Dc"] / (df.mu ** (p["a0"] + p["a1"] * df.sigma) * df.sigma ** (p["b0"] + p["b1"] * df.mu)
                            * df.D ** aD)
    np.testing.assert_allclose(df["clean"], L, rtol=1e-12)
    law = PerplexityLawRegimeD()
    import pplaw.laws.perplexity_regime_d as ext

    assert "NOT the paper's law" in ext.__doc__ and "pplaw extension" in PerplexityLawRegimeD.__doc__
    assert "extension" in law.describe() and law.name == "perplexity_regime_d"
    assert REGISTRY["perplexity_regime_d"] is PerplexityLawRegimeD
    assert law.param_names == ("E", "Dc", "a0", "a1", "b0", "b1", "d0", "d1", "d2")
    b = {p.name: p.bounds for p in law.params}
    assert b["d0"] == (-1.0, 3.0) and b["d1"] == b["d2"] == (-3.0, 3.0)


def test_recovers_predictions_and_extrapolates_2x_in_D(rd_fit):
    assert rd_fit.solution.success
    ins = np.abs(rd_fit.fitted / table(SIZES)["clean"].to_numpy() - 1)
    assert np.max(ins) < 0.02
    far = table([2 * SIZES[-1]], seed=5, noise=0.0)
    ext = np.abs(rd_fit.predict(far) / far["clean"] - 1)
    assert np.max(ext) < 0.03
    # the exponent per regime is recovered too (it is what the paper's single aD cannot express)
    mu, sg = np.array([1.5, 4.0]), np.array([0.3, 1.5])
    np.testing.assert_allclose(rd_fit.law.a_d(rd_fit.params, mu, sg), PerplexityLawRegimeD().a_d(TRUE, mu, sg),
                               atol=0.05)


def _fd(law, theta, design, space, h=1e-6):
    cols = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        cols.append((law.values((theta + e)[None], design, space)[0]
                     - law.values((theta - e)[None], design, space)[0]) / (2 * h))
    return np.column_stack(cols)


@pytest.mark.parametrize("sigma", ["std", "var"])
@pytest.mark.parametrize("space", ["log", "linear"])
def test_jacobian_matches_finite_differences(sigma, space):
    law = PerplexityLawRegimeD(sigma=sigma)
    df = table([1e4, 3e4])
    design = law.design({k: df[k].to_numpy() for k in ("mu", "sigma", "D")})
    theta = law.internal(TRUE)
    value, jac = law.jacobian(theta, design, space)
    np.testing.assert_allclose(value, law.values(theta[None], design, space)[0], rtol=1e-12)
    np.testing.assert_allclose(jac, _fd(law, theta, design, space), rtol=1e-5, atol=1e-7)
    # and the same as the generic complex-step gradient of the engine
    from pplaw.laws.engine import Law

    np.testing.assert_allclose(jac, Law.jacobian(law, theta, design, space)[1], rtol=1e-8, atol=1e-10)


def test_reduces_to_the_paper_law_when_d1_d2_are_zero():
    df = table([1e4, 3e4])
    X = {k: df[k].to_numpy() for k in ("mu", "sigma", "D")}
    rd, paper = PerplexityLawRegimeD(), PerplexityLaw()
    p = {k: v for k, v in PAPER.items() if k not in ("d0", "d1", "d2")} | {"aD": PAPER["d0"]}
    np.testing.assert_allclose(rd.forward(rd.internal(PAPER)[None], rd.design(X)),
                               paper.forward(paper.internal(p)[None], paper.design(X)), rtol=1e-12)


def test_optimum_depends_on_D_and_requires_it(rd_fit):
    with pytest.raises(InvalidInputError, match=r"\bD\b"):
        rd_fit.optimum()
    with pytest.raises(InvalidInputError, match=r"\bD\b"):
        rd_fit.law.g_at(rd_fit.params, np.array([2.0]), np.array([1.0]), None)
    # a mu exponent preferring low mu, a data exponent growing with mu: the best mu moves from low to high with D
    p = {**TRUE, "a0": -0.5, "a1": 0.0, "b0": 0.0, "b1": 0.0, "d1": 0.08, "d2": 0.0}
    fit = Fit(law=rd_fit.law, data=rd_fit.data, theta=rd_fit.law.internal(p), options=rd_fit.options,
              solution=rd_fit.solution)
    small, large = fit.optimum(D=10.0), fit.optimum(D=1e8)
    assert small.mu < 1.6 and large.mu > 3.9
    assert (small.D, large.D) == (10.0, 1e8) and small.loss is not None
    # the fitted law: the optimum at each D minimises its own predicted loss over the fitted points
    for D in (1e4, 1e7):
        opt = rd_fit.optimum(D=D)
        X = rd_fit.data.X
        L = rd_fit.predict(mu=X["mu"], sigma=X["sigma"], D=np.full(X["mu"].size, D))
        assert opt.loss <= L.min() + 1e-9
    # the paper's law is unchanged: its score ignores D
    paper = PerplexityLaw()
    mu, sg = np.linspace(1.5, 4.0, 11), np.full(11, 1.0)
    np.testing.assert_array_equal(paper.g_at(p, mu, sg, 10.0), paper.g_at(p, mu, sg, None))


def test_negative_data_exponent_is_warned():
    p = {**TRUE, "d0": 0.6, "d1": -0.2, "d2": 0.0}  # aD = 0.6 - 0.2 mu < 0 for mu > 3
    fit = PerplexityLawRegimeD().fit(table([1e4, 2e4, 4e4], p=p, noise=0.002), target="loss", progress=False)
    assert any("negative" in w and "aD" in w for w in fit.warnings)
    again = Fit.from_json(fit.to_json())
    assert any("negative" in w for w in again.warnings)


def test_registry_rebuild_and_json_round_trip(rd_fit):
    law = get_law("perplexity_regime_d", sigma="var", space="log_ppl")
    assert isinstance(law, PerplexityLawRegimeD) and type(law)(**law.config()).config() == law.config()
    again = Fit.from_json(rd_fit.to_json())
    assert isinstance(again.law, PerplexityLawRegimeD)
    np.testing.assert_allclose(again.predict(mu=[2.0], sigma=[1.0], D=[1e5]),
                               rd_fit.predict(mu=[2.0], sigma=[1.0], D=[1e5]))


def _laws():
    return {"perplexity": PerplexityLaw(), "perplexity_regime_d": PerplexityLawRegimeD()}


def test_holdout_picks_regime_d_on_regime_d_data():
    fit_df = table([1e4, 2e4, 4e4])
    val_df = table([8e4, 1.2e5, 1.6e5], seed=7)  # 2x .. 4x the largest fitted size
    cmp = compare_holdout(_laws(), fit_df, val_df, target="loss", bootstrap=0, progress=False)
    assert isinstance(cmp, HoldoutComparison)
    t = cmp.table
    assert cmp.best == "perplexity_regime_d"
    assert t.loc["perplexity_regime_d", "holdout_mape"] < 0.5 * t.loc["perplexity", "holdout_mape"]
    # in sample the paper's law is off by ~2%; extrapolated, its single aD misses the fast-learning regimes by
    # >20% at the worst point, an order of magnitude more than the regime-D law
    assert t.loc["perplexity", "insample_mape"] < 3.0
    assert t.loc["perplexity", "holdout_worst"] > 5 * t.loc["perplexity_regime_d", "holdout_worst"]
    assert list(t.columns) == ["holdout_mape", "holdout_worst", "holdout_worst_signed", "holdout_rmse",
                               "holdout_diff_max", "insample_mape", "r2", "n_fit", "n_val"]
    assert (t["n_fit"] == len(fit_df)).all() and (t["n_val"] == len(val_df)).all()
    assert (t["holdout_worst"] == t["holdout_worst_signed"].abs()).all()
    assert (t["holdout_worst"] >= t["holdout_mape"]).all()
    pr = cmp.predictions
    assert list(pr.columns) == ["law", "point", "measured", "predicted", "error_pct"]
    assert len(pr) == 2 * len(val_df)
    g = pr[pr.law == "perplexity"]
    np.testing.assert_allclose(g["error_pct"].abs().mean(), t.loc["perplexity", "holdout_mape"])
    np.testing.assert_allclose(g["predicted"], cmp.fits["perplexity"].predict(val_df))
    assert cmp.fits["perplexity"].data.n == len(fit_df)  # fitted on fit_table only
    d = json.loads(json.dumps(cmp.to_dict()))
    assert d["best"] == "perplexity_regime_d" and len(d["table"]) == 2
    s = str(cmp)
    assert "perplexity_regime_d" in s and "holdout_mape" in s


def test_holdout_on_paper_law_data(tmp_path):
    fit_df = table([1e4, 2e4, 4e4], p=PAPER)
    val_df = table([8e4, 1.6e5], p=PAPER, seed=8)
    cmp = compare_holdout(_laws(), fit_df, val_df, target="loss", bootstrap=0, progress=False)
    t = cmp.table
    assert np.isfinite(t["holdout_mape"]).all()
    assert list(t["holdout_mape"]) == sorted(t["holdout_mape"])
    assert t.loc["perplexity", "holdout_mape"] < 3.0  # the generating law extrapolates
    png = cmp.plot(tmp_path / "holdout.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_holdout_bad_input():
    fit_df, val_df = table([1e4, 2e4]), table([8e4], seed=3)
    with pytest.raises(InvalidInputError, match="laws"):
        compare_holdout({}, fit_df, val_df, target="loss")
    with pytest.raises(InvalidInputError, match="val_table"):
        compare_holdout(_laws(), fit_df, val_df.iloc[:0], target="loss")
    with pytest.raises(InvalidInputError, match=r"val_table.*'D'"):
        compare_holdout(_laws(), fit_df, val_df.drop(columns="D"), target="loss")
    with pytest.raises(InvalidInputError, match=r"fit_table.*'loss'"):
        compare_holdout(_laws(), fit_df.drop(columns="loss"), val_df, target="loss")
    with pytest.raises(InvalidInputError, match=r"'mu_ppl'"):
        compare_holdout(_laws(), fit_df, val_df, target="loss", mu="mu_ppl")
    with pytest.raises(InvalidInputError, match="Law instance"):
        compare_holdout({"x": "perplexity"}, fit_df, val_df, target="loss")
    with pytest.raises(InvalidInputError, match=r"'N'"):  # a law whose variables the tables lack
        compare_holdout({"chinchilla": Chinchilla()}, fit_df, val_df, target="loss")
    bad = val_df.assign(loss=np.nan)
    with pytest.raises(InvalidInputError, match="loss"):
        compare_holdout(_laws(), fit_df, bad, target="loss")
    with pytest.raises(FitError, match="'perplexity'"):  # too few points to fit: the law is named
        compare_holdout(_laws(), fit_df.iloc[:5], val_df, target="loss")
