"""Mixture laws: D-CPT (domain, general, cross-domain) and the CMR chain."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from laws_testdata import simulate

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws import CMR, DCPT, DomainLossChange, Fit, GeneralLossChange, RatioLaw

DCPT_TRUE = {"E": 1.8, "A": float(np.exp(6.0)), "alpha": 0.3, "B": float(np.exp(8.0)), "eta": 0.4, "beta": 0.4,
             "C": 0.05, "gamma": 0.5}


def _dcpt_table(seed=0, noise=0.003, form="domain"):
    rows = [{"N": N, "D": D, "r": r} for N in (1e8, 3e8, 1e9) for D in (1e8, 3e8, 1e9, 3e9)
            for r in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    df = pd.DataFrame(rows)
    df["loss"] = simulate(DCPT(form=form), DCPT_TRUE, {k: df[k] for k in ("N", "D", "r")}, noise, seed)
    return df


def test_dcpt_domain_recovery_and_extrapolation():
    df = _dcpt_table()
    fit = DCPT().fit(df, target="loss", bootstrap=20, progress=False)
    p = fit.params
    for k, rel in (("alpha", 0.1), ("eta", 0.05), ("beta", 0.05), ("gamma", 0.3), ("E", 0.1)):
        assert p[k] == pytest.approx(DCPT_TRUE[k], rel=rel), k
    assert fit.metrics["mape"] < 0.5
    v = fit.validate("largest D")
    print(v)
    assert v.metrics["mape"] < 1.0


def test_dcpt_general_form_uses_one_minus_the_domain_ratio():
    df = _dcpt_table(seed=1, form="general")  # generated with r_general = 1 - r (the column is the domain ratio)
    fit = DCPT(form="general").fit(df, target="loss")
    assert fit.params["beta"] == pytest.approx(DCPT_TRUE["beta"], rel=0.05)
    assert fit.params["eta"] == pytest.approx(DCPT_TRUE["eta"], rel=0.05)
    same = DCPT(form="general", ratio="general").fit(df.assign(r=1 - df["r"]), target="loss")
    assert same.params["beta"] == pytest.approx(fit.params["beta"], rel=1e-6)


def test_dcpt_cross_domain_recovers_the_weight():
    rng = np.random.default_rng(2)
    rows = [{"D": D, "r": r, "k1": k1, "k2": k2} for k1, k2 in ((1.0, 0.5), (2.0, 1.5), (0.5, 3.0), (3.0, 0.2))
            for D in (1e8, 3e8, 1e9, 3e9) for r in (0.0, 0.25, 0.5, 0.75, 1.0)]
    df = pd.DataFrame(rows)
    law = DCPT(model_size=False, cross_domain=True)
    true = {"E": 1.8, "B": float(np.exp(8.0)), "eta": 0.4, "beta": 0.4, "C": 0.05, "gamma": 0.5, "F": 0.5,
            "mu": 1.0, "w": 0.3}
    df["loss"] = simulate(law, true, {k: df[k] for k in ("D", "r", "k1", "k2")}, 0.002, int(rng.integers(99)))
    fit = law.fit(df, target="loss")
    assert fit.params["w"] == pytest.approx(0.3, abs=0.03)
    assert fit.params["mu"] == pytest.approx(1.0, rel=0.1)


def test_dcpt_bad_input():
    df = _dcpt_table()
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        DCPT().fit(df.assign(r=df["r"] + 0.5), target="loss")
    with pytest.raises(FitError, match="degenerate design.*'N'"):
        DCPT().fit(df.assign(N=1e9), target="loss")
    fit = DCPT(model_size=False).fit(df[df["N"] == 1e9], target="loss")  # one model size: drop the N term
    assert "A" not in fit.params


# ---------------------------------------------------------------------------------------------------- CMR
def _cmr_table(seed=2):
    """General loss rises with the domain ratio R (forgetting), domain loss falls; base losses 2.5 / 3.0."""
    rng = np.random.default_rng(seed)
    rows = []
    for R in (0.1, 0.2, 0.33, 0.5, 0.67, 0.8):
        for rep in (0, 1):
            for T in np.geomspace(1e8, 1e10, 8):
                t = T / 1e9
                rows.append({"R": R, "T": T, "run": f"{R}-{rep}",
                             "general": 2.5 + 0.3 * R**1.5 * t**0.3 - 0.02 * (1 - R) * t**0.5 + rng.normal(0, 0.002),
                             "domain": 3.0 - 0.5 * R**0.5 * t**0.2 + rng.normal(0, 0.002)})
    return pd.DataFrame(rows)


def _true_cmr(T, eps=0.05, base=2.5):
    R = np.linspace(1e-4, 1, 200001)
    t = T / 1e9
    ok = 0.3 * R**1.5 * t**0.3 - 0.02 * (1 - R) * t**0.5 <= eps * base
    return R[ok].max()


def test_cmr_chain_recovers_the_critical_ratio(tmp_path):
    df = _cmr_table()
    res = CMR(eps=0.05).fit(df, general="general", T="T", R="R", base_general=2.5, domain="domain",
                            base_domain=3.0, group="run", bootstrap=20, seed=0, progress=False)
    for T in (2e8, 1e9, 5e9):
        assert res.critical_ratio(T) == pytest.approx(_true_cmr(T), abs=0.02), T
    tab = res.table
    assert np.all(np.diff(tab["cmr"]) < 0)  # more tokens -> less domain data tolerated here
    assert np.all((tab["lo"] <= tab["cmr"]) & (tab["cmr"] <= tab["hi"]))
    assert res.feasible(1e9) == [0.1, 0.2, 0.33, 0.5]
    assert res.rcmr is not None and res.rcmr.metrics["r2"] > 0.99
    # T0(lambda): where dLdom + lambda*dLgen stops falling; for R = 0.5 and lambda = 2.64 the true curves give
    # T0 ~ 1e9 (inside the data); with lambda = 0 the domain loss alone keeps falling: no T0
    t = np.geomspace(1e7, 1e11, 20001)
    F = -0.5 * 0.5**0.5 * (t / 1e9) ** 0.2 + 2.64 * (0.3 * 0.5**1.5 * (t / 1e9) ** 0.3 - 0.01 * (t / 1e9) ** 0.5)
    assert res.t0(2.64, 0.5) == pytest.approx(t[np.argmin(F)], rel=0.5)
    assert np.isnan(res.t0(0.0, 0.5))
    print(res.summary())
    assert res.plot(tmp_path / "cmr.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads(res.to_json(tmp_path / "cmr.json"))
    assert saved["table"]["cmr"] == pytest.approx(list(tab["cmr"]))
    assert Fit.from_json(saved["general_fits"]["0.5"]).params == res.general_fits[0.5].params


def test_cmr_component_laws_recover_parameters():
    T = np.geomspace(1e8, 1e10, 12)
    dom = pd.DataFrame({"T": T, "d": -0.5 * (T / 1e9) ** 0.2 + 0.1})
    f = DomainLossChange().fit(dom, target="d")
    assert f.law.t_unit == 1e9
    assert (f.params["a1"], f.params["s1"], f.params["b1"]) == pytest.approx((-0.5, 0.2, 0.1), rel=1e-4)
    gen = pd.DataFrame({"T": T, "g": 0.1 * (T / 1e9) ** 0.3 - 0.02 * (T / 1e9) ** 0.6 + 0.01})
    g = GeneralLossChange(t_unit=1e9).fit(gen, target="g")
    assert g.metrics["rmse"] < 1e-6
    assert g.derived["s3"] > g.params["s2"]
    rat = pd.DataFrame({"R": [0.1, 0.2, 0.4, 0.6, 0.8, 1.0]})
    rat["L"] = 0.4 * rat["R"] ** 1.3 + 2.5
    r = RatioLaw().fit(rat, target="L")
    assert (r.params["alpha"], r.params["s"], r.params["beta"]) == pytest.approx((0.4, 1.3, 2.5), rel=1e-4)


def test_cmr_bad_input():
    df = _cmr_table()
    with pytest.raises(FitError, match=">= 4 distinct ratios"):
        CMR().fit(df[df["R"] < 0.4], general="general", base_general=2.5)
    with pytest.raises(InvalidInputError, match="base_domain"):
        CMR().fit(df, general="general", base_general=2.5, domain="domain")
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        CMR().fit(df.assign(R=df["R"] * 2), general="general", base_general=2.5)
    with pytest.raises(InvalidInputError, match="tolerance"):
        CMR(tolerance="loose")
