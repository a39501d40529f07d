"""The spline law's pool term: effective data of a subset drawn from a finite pool (issue 11).

``D_eff = P / k (1 - exp(-k D / P))`` replaces ``D`` when ``pool = k > 0``; ``P`` (the tokens of the band a run
was drawn from) becomes a fourth variable, optional at prediction time (``P = D``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pplaw.exceptions import InvalidInputError, MissingColumnError
from pplaw.laws import Fit, Law, compare_holdout, get_law_spec
from pplaw.laws.perplexity_spline import PerplexityLawSpline

K_TRUE = 2.0


def d_eff(D, P, k=K_TRUE):
    return P / k * (1 - np.exp(-k * D / P))


def truth(mu, s, D, P):
    f = 1.2 + 0.35 * (mu - 5.0) ** 2 - 0.2 * s
    a = 0.35 + 0.08 * (mu - 3.0) - 0.05 * s
    return np.exp(f - a * (np.log(d_eff(D, P)) - np.log(2e4)))


def table(sizes=(1e4, 2e4), seed=0, scale=1.0):
    """Regimes over (mu, s), each drawn from a pool of its own size (narrow windows and wide bands)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, mu in enumerate(np.linspace(3.0, 7.0, 6)):
        for j, s in enumerate((0.3, 0.8, 1.4)):
            P = (3e4, 6e4, 1.2e5)[(i + j) % 3]
            for D in sizes:
                D = D * scale
                m, sd = mu + rng.normal(0, 0.005), s + rng.normal(0, 0.005)
                rows.append({"mu": m, "sigma": sd, "D": D, "P": P, "loss": truth(m, sd, D, P)})
    return pd.DataFrame(rows)


def fit(df, **kw):
    return PerplexityLawSpline(space="log_ppl", **kw).fit(df, target="loss", mu="mu", sigma="sigma", D="D",
                                                         progress=False)


def test_effective_data_limits():
    law = PerplexityLawSpline(pool=2.0)
    D = np.array([10.0, 1e3, 5e4])
    np.testing.assert_allclose(law.log_d(D, 1e12), np.log(D), rtol=1e-7)  # D << P: D itself
    np.testing.assert_allclose(law.log_d(1e12, 1e4), np.log(1e4 / 2.0))  # D >> P: saturates at P / k
    np.testing.assert_allclose(law.log_d(D), np.log(D * (1 - np.exp(-2.0)) / 2.0))  # no P: the whole pool
    assert PerplexityLawSpline().variables == ("mu", "sigma", "D")
    assert law.variables == ("mu", "sigma", "D", "P") and law.optional == ("P",)


def test_recovers_the_pool_form_and_extrapolates_where_the_power_law_does_not():
    df = table()
    big = table(sizes=(4e4,), seed=1)  # 2x the largest fitted size: most pools now nearly used up
    good = fit(df, pool=K_TRUE)
    assert np.max(np.abs(good.predict(big) / big["loss"] - 1)) < 0.02
    plain = fit(df.drop(columns="P"))
    rel = plain.predict(big) / big["loss"] - 1
    assert rel.min() < -0.1  # a power law in D over-states the gain once the pool runs out
    assert rel.mean() < -0.03  # and under-predicts the loss on average


def test_held_out_choice_finds_the_pool_rate():
    laws = {f"k={k}": get_law_spec(f"perplexity_spline:pool={k}" if k else "perplexity_spline", space="log_ppl")
            for k in (0, 1, 2, 3)}
    cmp = compare_holdout(laws, table(), table(sizes=(4e4,), seed=1), target="loss", progress=False)
    assert cmp.best == "k=2"
    assert cmp.table.loc["k=2", "holdout_mape"] < 2.0 < cmp.table.loc["k=0", "holdout_mape"]


def test_jacobian_with_the_pool_term():
    f = fit(table(), pool=1.5, floor=0.2)
    for space in ("log", "linear"):
        v, J = f.law.jacobian(f.theta, f.problem.design, space)
        v2, J2 = Law.jacobian(f.law, f.theta, f.problem.design, space)
        np.testing.assert_allclose(v, v2, rtol=1e-10)
        np.testing.assert_allclose(J, J2, rtol=1e-6, atol=1e-9)


def test_serialisation_and_prediction_without_P():
    df = table()
    f = fit(df, pool=K_TRUE)
    g = Fit.from_json(f.to_json())
    assert g.law.pool == K_TRUE and g.law.variables == f.law.variables
    np.testing.assert_allclose(g.predict(df), f.predict(df))
    assert "pool decay 2" in f.law.describe()
    x = {"mu": [5.0], "sigma": [0.8], "D": [3e4]}
    np.testing.assert_allclose(f.predict(**x), f.predict(**x, P=[3e4]))  # no P: the subset is its whole pool
    opt = f.optimum(D=3e4)  # the continuous optimum takes P = D
    assert 3.0 <= opt.mu <= 7.0


def test_bad_pool_input_is_named():
    for bad in (-1, 51, float("nan"), "2"):
        with pytest.raises(InvalidInputError, match="pool must be a decay rate"):
            PerplexityLawSpline(pool=bad)
    df = table()
    with pytest.raises(MissingColumnError, match="P"):
        fit(df.drop(columns="P"), pool=1.0)
    with pytest.raises(InvalidInputError, match="P"):
        fit(df.assign(P=0.0), pool=1.0)
    f = fit(df, pool=1.0)
    with pytest.raises(InvalidInputError, match="P"):
        f.predict(mu=[5.0], sigma=[0.8], D=[3e4], P=[-1.0])


def test_the_loop_gives_every_run_and_final_subset_its_pool():
    from pplaw.pipeline.plan import pool_tokens
    from pplaw.pipeline.fit import final_pool, fit_frame

    rows = [{"status": "ok", "domain_loss": 2.0, "R": 0.25, "mu_log_ppl": 5.0, "sigma_log_ppl": 0.5,
             "band": [0.4, 0.75]}, {"status": "ok", "domain_loss": 2.0, "R": 0.25, "mu_log_ppl": 5.0,
                                    "sigma_log_ppl": 0.5, "band": None}]
    df = fit_frame(rows, "log_ppl", 1000)
    assert df["P"].iloc[0] == pytest.approx(350.0) and np.isnan(df["P"].iloc[1])
    assert "P" not in fit_frame(rows, "log_ppl").columns
    assert pool_tokens((0.1, 0.3), 100) == pytest.approx(20.0)
    out = {"optimum": {"band": [0.2, 0.5]}, "best_sweep": {"band": [0.4, 0.8]}}
    assert final_pool("dos", 50, out, 1000) == pytest.approx(300.0)
    assert final_pool("best_sweep", 50, out, 1000) == pytest.approx(400.0)
    assert final_pool("dos", 50, {"optimum": {"band": None}}, 1000) == 1000.0  # moment-matched: whole corpus
    assert final_pool("random", 50, out, 1000) == final_pool("full", 1000, out, 1000) == 1000.0
    assert final_pool("lowest_ppl", 50, out, 1000) == final_pool("highest_ppl", 50, out, 1000) == 50.0
