"""PerplexityLawRegimeD (pplaw's extension) and choosing a law by held-out error (compare_holdout)."""

import numpy as np
import pandas as pd
import pytest

from pplaw.exceptions import InvalidInputError
from pplaw.laws import PerplexityLaw, PerplexityLawRegimeD, compare_holdout

TRUE = {"E": 0.5, "Dc": 40.0, "a0": 0.3, "a1": 0.2, "b0": -0.2, "b1": 0.1, "d0": 0.05, "d1": 0.08, "d2": 0.05}


def regime_d_table(sizes, seed=0, noise=0.01, p=TRUE):
    rng = np.random.default_rng(seed)
    mu, sg, D = np.meshgrid(np.linspace(1.5, 4.0, 7), np.linspace(0.3, 1.5, 3), np.asarray(sizes, float),
                            indexing="ij")
    mu, sg, D = mu.ravel(), sg.ravel(), D.ravel()
    aD = p["d0"] + p["d1"] * mu + p["d2"] * sg
    L = p["E"] + p["Dc"] / (mu ** (p["a0"] + p["a1"] * sg) * sg ** (p["b0"] + p["b1"] * mu) * D ** aD)
    return pd.DataFrame({"mu": mu, "sigma": sg, "D": D, "loss": L * np.exp(rng.normal(0, noise, L.size))})


def test_regime_d_recovers_and_extrapolates():
    fit_df = regime_d_table([1e4, 2e4, 4e4])
    val_df = regime_d_table([1e5], seed=1, noise=0.0)
    fit = PerplexityLawRegimeD().fit(fit_df, target="loss", mu="mu", sigma="sigma", D="D", progress=False)
    ins = np.abs(fit.predict(fit_df) / regime_d_table([1e4, 2e4, 4e4], noise=0.0)["loss"] - 1)
    assert np.median(ins) < 0.02
    ext = np.abs(fit.predict(val_df) / val_df["loss"] - 1)
    assert ext.mean() < 0.03


def test_regime_d_jacobian_matches_finite_differences():
    law = PerplexityLawRegimeD()
    X = {k: regime_d_table([1e4, 3e4])[k].to_numpy() for k in ("mu", "sigma", "D")}
    design = law.design(X)
    theta = np.array([np.log(0.5), np.log(40.0), 0.3, 0.2, -0.2, 0.1, 0.05, 0.08, 0.05])
    v, jac = law.jacobian(theta, design, "log")
    eps = 1e-6
    for j in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[j] += eps
        tm[j] -= eps
        fd = (law.log_forward(tp[None], design)[0] - law.log_forward(tm[None], design)[0]) / (2 * eps)
        np.testing.assert_allclose(jac[:, j], fd, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v, law.log_forward(theta[None], design)[0])


def test_regime_d_optimum_moves_with_D_and_needs_D():
    fit = PerplexityLawRegimeD().fit(regime_d_table([1e4, 2e4, 4e4]), target="loss", mu="mu", sigma="sigma",
                                     D="D", progress=False)
    with pytest.raises(InvalidInputError, match="needs D"):
        fit.optimum()
    assert fit.optimum(D=1e5).D == 1e5
    # a mu exponent that prefers low mu, a data exponent that grows with mu: the argmax moves with D
    law = PerplexityLawRegimeD()
    p = {"a0": -0.5, "a1": 0.0, "b0": 0.0, "b1": 0.0, "d0": 0.1, "d1": 0.08, "d2": 0.0}
    mu, sg = np.linspace(1.5, 4.0, 51), np.full(51, 1.0)
    assert mu[np.argmax(law.g_at(p, mu, sg, 10.0))] == 1.5
    assert mu[np.argmax(law.g_at(p, mu, sg, 1e6))] == 4.0
    # the paper's law: the same argmax at every D
    paper = PerplexityLaw()
    assert np.array_equal(paper.g_at(p, mu, sg, 10.0), paper.g_at(p, mu, sg, 1e6))


def test_holdout_picks_the_law_that_generalises():
    """On data with regime-dependent D scaling the paper's law fits the small sizes well but extrapolates
    worse; the held-out ranking (not in-sample) must pick the regime-D law."""
    fit_df = regime_d_table([1e4, 2e4, 4e4])
    val_df = regime_d_table([1.6e5], seed=2)
    laws = {"perplexity": PerplexityLaw(), "perplexity_regime_d": PerplexityLawRegimeD()}
    cmp = compare_holdout(laws, fit_df, val_df, target="loss", progress=False)
    assert cmp.best == "perplexity_regime_d"
    t = cmp.table
    assert t.loc["perplexity_regime_d", "holdout_mape"] < 0.5 * t.loc["perplexity", "holdout_mape"]
    assert list(t["holdout_mape"]) == sorted(t["holdout_mape"])
    assert set(cmp.predictions["law"]) == set(laws)
    assert cmp.to_dict()["best"] == "perplexity_regime_d"


def test_holdout_plot_and_errors(tmp_path):
    fit_df, val_df = regime_d_table([1e4, 2e4]), regime_d_table([8e4], seed=3)
    cmp = compare_holdout({"perplexity": PerplexityLaw()}, fit_df, val_df, target="loss", progress=False)
    assert cmp.plot(tmp_path / "h.png").stat().st_size > 1000
    with pytest.raises(InvalidInputError, match="empty"):
        compare_holdout({}, fit_df, val_df, target="loss")
    with pytest.raises(InvalidInputError, match="no rows"):
        compare_holdout({"p": PerplexityLaw()}, fit_df, val_df.iloc[:0], target="loss")
    with pytest.raises(InvalidInputError, match="lacks column"):
        compare_holdout({"p": PerplexityLaw()}, fit_df, val_df.drop(columns="D"), target="loss")


def test_pair_difference_error_is_the_worst_mispredicted_gap_at_one_size():
    from pplaw.laws.holdout import pair_difference_error

    d = np.array([1e4, 1e4, 1e4, 2e4])
    y = np.array([1.0, 2.0, 3.0, 5.0])
    # a shared bias cancels: every prediction 0.5 too high mispredicts no gap
    assert pair_difference_error(d, y, y + 0.5) == pytest.approx(0.0)
    # residuals +0.1, -0.2, 0 at 1e4: the gap between points 0 and 1 is off by 0.3; the lone 2e4 point pairs with none
    assert pair_difference_error(d, y, y + np.array([0.1, -0.2, 0.0, 9.0])) == pytest.approx(0.3)
    assert np.isnan(pair_difference_error(np.array([1e4, 2e4]), np.array([1.0, 2.0]), np.array([1.0, 2.0])))
    # realised budgets a little apart (37,2xx and 37,3xx tokens) are one size; 5% apart or more are not
    near = np.array([37_240.0, 37_310.0])
    assert pair_difference_error(near, np.array([1.0, 2.0]), np.array([1.1, 1.9])) == pytest.approx(0.2)
    assert np.isnan(pair_difference_error(np.array([37_000.0, 39_000.0]), np.array([1.0, 2.0]), np.array([1.1, 1.9])))
    cmp = compare_holdout({"perplexity": PerplexityLaw()}, regime_d_table([1e4, 2e4]), regime_d_table([8e4], seed=3),
                          target="loss", progress=False)
    p = cmp.predictions
    r = (p["predicted"] - p["measured"]).to_numpy()
    assert cmp.table.loc["perplexity", "holdout_diff_max"] == pytest.approx(r.max() - r.min())
