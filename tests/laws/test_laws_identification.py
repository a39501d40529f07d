"""Issue 12: the global basin or a warning, honest small-sample CIs, the D-CPT usages, laws from published
parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from laws_testdata import PPL_TRUE, STEEP_TRUE, simulate, steep_bowl_runs

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws import (
    CMR,
    DCPT,
    Chinchilla,
    CMRLaw,
    DomainLossChange,
    Law,
    Param,
    PerplexityLaw,
    PerplexityLawRegimeD,
    RatioLaw,
    Region,
    compute_allocation,
    optimal_ratio_limited_domain,
    tradeoff_ratio,
)
from pplaw.laws.basins import distinct_basins
from pplaw.laws.perplexity import _search


# ---------------------------------------------------------------------------------------------- 1. global basin
@pytest.mark.parametrize("seed", range(5))
def test_steep_bowl_default_fit_finds_the_global_basin(seed):
    df = steep_bowl_runs(seed)
    fit = PerplexityLaw().fit(df, target="loss", bootstrap=100, seed=seed, progress=False)
    at_truth = fit.problem.objective_batch(fit.law.internal(STEEP_TRUE)[None])[0]
    assert fit.solution.fun <= at_truth  # the global objective: at least as good as the generating parameters
    assert fit.params["a1"] == pytest.approx(STEEP_TRUE["a1"], rel=0.1)
    assert not [w for w in fit.warnings if "bound" in w or "MULTIPLE BASINS" in w]
    # the optimum (and the true one over the same hull) inside its bootstrap CI
    reg = Region.make(None, fit.data)
    true_opt = _search(lambda m, s: fit.law.g(STEEP_TRUE, m, s), reg, 201)[0]
    opt = fit.optimum()
    assert opt.ci["mu"][0] <= true_opt[0] <= opt.ci["mu"][1], (opt, true_opt)
    assert opt.ci["sigma"][0] <= true_opt[1] <= opt.ci["sigma"][1], (opt, true_opt)
    assert not opt.on_boundary


def test_scaled_bounds_follow_the_data_and_user_bounds_win(ppl_fit):
    df = steep_bowl_runs(0)
    fit = PerplexityLaw(bounds={"b1": (-1.0, 1.0)}).fit(df, target="loss", strict=False)
    bounds = {p.name: p.bounds for p in fit.law.params}
    assert bounds["a1"] == pytest.approx((-40 / df["sigma"].max(), 40 / df["sigma"].max()))
    assert bounds["a1"][1] > 8
    assert bounds["b1"] == (-1.0, 1.0)  # explicit bounds win over the scaled ones
    # PPL-space statistics (sigma ~ 10, mu ~ 30) keep the old +-5
    assert {p.name: p.bounds for p in ppl_fit.law.params}["a1"] == (-5.0, 5.0)
    regd = PerplexityLawRegimeD().fit(df, target="loss", strict=False).law
    assert {p.name: p.bounds for p in regd.params}["a1"] == pytest.approx(bounds["a1"])


class _Symmetric(Law):
    """``y = E + (c x)^2``: ``c`` and ``-c`` fit equally well: two basins, the same objective."""

    name = "test_symmetric"
    formula = "y = E + (c*x)^2"
    variables = ("x",)
    positive = ("x",)

    def declare(self):
        return (Param("E", (-5.0, 5.0), (0.0,), log=True), Param("c", (-10.0, 10.0), (-2.0, -0.5, 0.5, 2.0)))

    def forward(self, theta, X):
        return np.exp(theta[:, :1]) + (theta[:, 1:2] * X["x"][None]) ** 2


def test_multi_basin_table_warns():
    x = np.linspace(0.2, 2.0, 12)
    df = pd.DataFrame({"x": x})
    df["y"] = simulate(_Symmetric(), {"E": 1.0, "c": 1.5}, {"x": x}, 0.005, 0)
    fit = _Symmetric().fit(df, target="y")
    basin = [w for w in fit.warnings if w.startswith("MULTIPLE BASINS")]
    assert basin and "do not identify the parameters" in basin[0]
    cs = sorted(b["params"]["c"] for b in fit.extras["basins"])
    assert cs[0] == pytest.approx(-cs[1], rel=1e-4) and abs(cs[0]) == pytest.approx(1.5, rel=0.05)
    assert "MULTIPLE BASINS" in fit.summary()
    # one sign only: a single basin, no warning
    one = _Symmetric(bounds={"c": (0.0, 10.0)}).fit(df, target="y")
    assert not [w for w in one.warnings if "MULTIPLE BASINS" in w]


def test_perplexity_basins_compare_the_optimum(ppl_fit):
    assert not [w for w in ppl_fit.warnings if "MULTIPLE BASINS" in w]
    law, data, th = ppl_fit.law, ppl_fit.data, ppl_fit.theta
    moved = law.internal({**ppl_fit.params, "a0": ppl_fit.params["a0"] + 0.3})  # optimum moves (mu* up)
    same = th + np.eye(th.size)[law.param_names.index("E")] * 1e-3  # parameters differ, the optimum does not
    f = ppl_fit.solution.fun
    two = distinct_basins(law, data, th, f, np.array([moved, same]), np.array([1.01 * f, 1.0 * f]))
    assert len(two) == 2 and two[1]["key"][0] > two[0]["key"][0]
    assert len(distinct_basins(law, data, th, f, np.array([moved]), np.array([1.5 * f]))) == 1  # not similar
    assert len(distinct_basins(law, data, th, f, np.array([same]), np.array([f]))) == 1  # same answer


# ---------------------------------------------------------------------------------------------- 2. small samples
def test_four_point_ratio_law_warns_and_marks_cis():
    R = np.array([0.2, 0.4, 0.6, 0.8])
    df = pd.DataFrame({"R": R, "L": 0.4 * R**1.3 + 2.5 + np.random.default_rng(0).normal(0, 0.002, 4)})
    fit = RatioLaw().fit(df, target="L", bootstrap=200, seed=0, progress=False)
    small = [w for w in fit.warnings if w.startswith("SMALL SAMPLE")]
    assert small and "n - P = 1" in small[0] and "leave-one-out is impossible" in small[0]
    assert any(w.startswith("THIN RESAMPLES") for w in fit.warnings)
    assert not fit.ci_meaningful and "n - P = 1" in fit.extras["ci_note"]
    assert "NOT MEANINGFUL" in fit.summary()
    assert fit.n_failed > 0  # resamples with < 3 distinct ratios are not refitted
    with pytest.raises(FitError, match="no fold"):
        fit.validate("loo")
    # enough points: no warning, meaningful CIs
    R8 = np.linspace(0.1, 1.0, 10)
    ok = RatioLaw().fit(pd.DataFrame({"R": R8, "L": 0.4 * R8**1.3 + 2.5}), target="L", bootstrap=20, progress=False)
    assert ok.ci_meaningful and not [w for w in ok.warnings if "SMALL SAMPLE" in w or "THIN" in w]


def test_cmr_with_four_ratios_says_small_sample():
    from test_laws_mixture import _cmr_table

    df = _cmr_table()
    res = CMR(eps=0.05).fit(df[df["R"] >= 0.33], general="general", T="T", R="R", base_general=2.5)
    assert any(n.startswith("SMALL SAMPLE") and "n - P = 1" in n for n in res.notes)
    assert "units: T in units of 1e+09 tokens" in res.summary()


# ---------------------------------------------------------------------------------------------- 3. D-CPT usages
DCPT_GEN = {"E": 2.0, "B": float(np.exp(4.0)), "eta": 0.3, "beta": 0.3, "C": 0.1, "gamma": 0.6}


def _dcpt_seven(seed=1):
    """One (N, D) at 7 domain ratios: the general loss rises with the domain ratio."""
    df = pd.DataFrame({"r": [0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9], "D": 1e9})
    law = DCPT(form="general", model_size=False)
    df["loss"] = simulate(law, DCPT_GEN, {"D": df["D"], "r": df["r"]}, 0.002, seed)
    g = np.linspace(0, 1, 200001)
    true = law.forward(law.internal(DCPT_GEN)[None], law.design({"D": np.full(g.size, 1e9), "r": g}))[0]
    return df, float(g[true <= 1.03 * true[0]].max())


def test_dcpt_usage1_crossing_ratio_on_seven_points():
    df, crossing = _dcpt_seven()
    assert 0.5 < crossing < 0.85
    with pytest.raises(FitError, match="degenerate design.*'D'"):  # one D: beta must be fixed
        DCPT(form="general", model_size=False).fit(df, target="loss")
    fit = DCPT(form="general", model_size=False, fixed={"beta": 0.3, "eta": 0.3}).fit(
        df, target="loss", bootstrap=60, seed=0, progress=False)
    assert fit.metrics["n_params"] == 4 and fit.law.n_free == 4
    assert "FIXED" in fit.summary() and "fixed (not fitted): beta=0.3, eta=0.3" in fit.summary()
    assert fit.ci["beta"] == (0.3, 0.3)
    assert fit.ci_meaningful
    use = tradeoff_ratio(fit, D=1e9, tolerance=0.03)
    assert use["ratio"] == pytest.approx(crossing, abs=0.02)
    lo, hi = use.ci["ratio"]
    assert lo <= crossing <= hi and hi - lo < 0.3
    assert use["general_loss_limit"] == pytest.approx(1.03 * use["base_general_loss"])
    assert "D-CPT usage 1" in str(use)
    # a given base loss: a stricter limit, a smaller ratio
    assert tradeoff_ratio(fit, D=1e9, tolerance=0.03, base=use["base_general_loss"] - 0.02)["ratio"] < use["ratio"]
    # only beta fixed: 5 free parameters on 7 points -> n - P = 2, said so, and the usage says its CI is not
    # meaningful either
    fit5 = DCPT(form="general", model_size=False, fixed={"beta": 0.3}).fit(df, target="loss", bootstrap=20,
                                                                          progress=False)
    assert any(w.startswith("SMALL SAMPLE") and "n - P = 2" in w for w in fit5.warnings)
    assert any("NOT MEANINGFUL" in n for n in tradeoff_ratio(fit5, D=1e9).notes)


def test_fixed_parameters_do_not_count_towards_the_point_minimum():
    df, _ = _dcpt_seven()
    law = DCPT(form="general", model_size=False, fixed={"beta": 0.3, "eta": 0.3})
    fit = law.fit(df.iloc[:5], target="loss")  # 5 points, 4 free parameters (6 declared)
    assert fit.params["beta"] == 0.3 and fit.params["eta"] == 0.3
    with pytest.raises(FitError, match="4 free parameters \\(2 more fixed\\)"):
        law.fit(df.iloc[:4], target="loss")
    with pytest.raises(InvalidInputError, match="fixed names unknown"):
        DCPT(fixed={"zeta": 1.0})
    with pytest.raises(InvalidInputError, match="> 0"):
        DCPT(fixed={"B": -1.0})


@pytest.fixture(scope="module")
def dcpt_domain_fit():
    from test_laws_mixture import DCPT_TRUE, _dcpt_table

    return DCPT().fit(_dcpt_table(), target="loss", bootstrap=20, seed=0, progress=False), DCPT_TRUE


def test_dcpt_usage2_optimal_ratio_with_limited_domain_data(dcpt_domain_fit):
    fit, true = dcpt_domain_fit
    use = optimal_ratio_limited_domain(fit, D_domain=3e8, N=3e8)
    law = DCPT()
    x = np.geomspace(1e-3, 1, 20001)
    L = law.forward(law.internal(true)[None], law.design({"N": np.full(x.size, 3e8), "D": 3e8 / x, "r": x}))[0]
    r_true = float(x[np.argmin(L)])
    assert 0.01 < r_true < 0.99
    assert use["ratio"] == pytest.approx(r_true, rel=0.25)
    assert use["D"] == pytest.approx(3e8 / use["ratio"])
    lo, hi = use.ci["ratio"]
    assert lo <= use["ratio"] <= hi


def test_dcpt_usage3_compute_allocation(dcpt_domain_fit):
    fit, _ = dcpt_domain_fit
    use = compute_allocation(fit, C=[1e19, 1e20], r=0.5)
    tab = use.table
    for C, n_opt, loss in zip(tab["C"], tab["N_opt"], tab["loss"]):
        N = np.geomspace(n_opt / 30, n_opt * 30, 20001)  # brute force along 6 N D = C
        pred = fit.predict(N=N, D=C / (6 * N), r=np.full(N.size, 0.5))
        assert N[np.argmin(pred)] == pytest.approx(n_opt, rel=0.01)
        assert pred.min() == pytest.approx(loss, rel=1e-6)
    assert np.all((tab["N_opt_lo"] <= tab["N_opt"]) & (tab["N_opt"] <= tab["N_opt_hi"]))
    assert tab["D_opt"].to_numpy() == pytest.approx(tab["C"].to_numpy() / (6 * tab["N_opt"].to_numpy()))
    with pytest.raises(InvalidInputError, match="model_size"):
        compute_allocation(DCPT(model_size=False).fit(pd.DataFrame(
            {"D": [1e8, 1e9] * 4, "r": [0.1, 0.1, 0.4, 0.4, 0.7, 0.7, 1.0, 1.0],
             "loss": [2.9, 2.6, 2.7, 2.45, 2.6, 2.35, 2.55, 2.3]}), target="loss", strict=False), C=1e20, r=0.5)


# ---------------------------------------------------------------------------------------------- 4. given params
def test_law_from_published_parameters(tmp_path):
    # Hoffmann et al. 2022, approach 3: L(N, D) = 1.69 + 406.4/N^0.34 + 410.7/D^0.28 -> 1.937 at Chinchilla
    # (70B parameters, 1.4T tokens)
    hoff = Chinchilla.from_params({"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
                                  source="Hoffmann et al. 2022")
    assert hoff.predict(N=70e9, D=1.4e12)[0] == pytest.approx(1.9367, abs=1e-4)
    assert hoff.params["alpha"] == 0.34 and "Hoffmann" in hoff.summary()
    assert hoff.derived["a"] == pytest.approx(0.28 / 0.62)
    # CMR's R_CMR(T) with explicit units: the law takes T / t_unit
    p = {"a4": 0.42, "s4": -0.31, "b3": 0.05}
    rc = CMRLaw.from_params(p, t_unit=1e9)
    T = np.array([1e9, 1e10, 1e11])
    assert rc.predict(T=T) == pytest.approx(0.42 * (T / 1e9) ** -0.31 + 0.05, rel=1e-12)
    assert CMRLaw.from_params(p, t_unit=1.0).predict(T=[1e10])[0] == pytest.approx(0.42 * 1e10**-0.31 + 0.05)
    assert "T in units of 1e+09 tokens" in rc.summary()
    assert rc.plot(tmp_path / "rcmr.png", T=np.geomspace(1e9, 1e11, 50)).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InvalidInputError, match="give t_unit explicitly"):
        CMRLaw.from_params(p)
    with pytest.raises(InvalidInputError, match="needs values"):
        CMRLaw.from_params({"a4": 0.4}, t_unit=1e9)
    with pytest.raises(InvalidInputError, match="no parameter"):
        CMRLaw.from_params({**p, "zz": 1.0}, t_unit=1e9)


def test_auto_token_unit_is_stated():
    T = np.geomspace(1e8, 1e10, 12)
    f = DomainLossChange().fit(pd.DataFrame({"T": T, "d": -0.5 * (T / 1e9) ** 0.2 + 0.1}), target="d")
    s = f.summary()
    assert "units: T in units of 1e+09 tokens" in s and "t_unit='auto'" in s
    assert "t_unit='auto'" not in DomainLossChange(t_unit=1.0).fit(pd.DataFrame(
        {"T": T, "d": -0.5 * (T / 1e9) ** 0.2 + 0.1}), target="d", strict=False).summary()


def test_predict_draws_is_public(ppl_fit, ppl_df):
    d = ppl_fit.predict_draws(ppl_df.iloc[:5])
    ok = ppl_fit.draws[np.all(np.isfinite(ppl_fit.draws), axis=1)]
    assert d.shape == (len(ok), 5)
    ci = ppl_fit.predict(ppl_df.iloc[:5], interval="confidence")
    q = 100 * (1 - ppl_fit.level) / 2
    assert np.percentile(d, q, axis=0) == pytest.approx(ci["lo"].to_numpy())
    one = ppl_fit.predict_draws(ppl_df.iloc[:5], theta=ppl_fit.theta[None])
    assert one[0] == pytest.approx(ppl_fit.predict(ppl_df.iloc[:5]))
    assert PPL_TRUE  # (the fixture's law)
