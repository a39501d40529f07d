"""Direct downstream laws (Krajewski et al.) and the two-stage baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pplaw.exceptions import InvalidInputError
from pplaw.laws import DownstreamLaw, TwoStage, TwoStageFit, compare_direct_two_stage

CHANCE = 0.25


def _acc(neg_log_q, chance=CHANCE):
    return chance + (1 - chance) * np.exp(-neg_log_q)


@pytest.fixture(scope="module")
def compute_df():
    rng = np.random.default_rng(0)
    C = np.geomspace(1e18, 1e22, 14)
    z = np.exp(3.0) * C**-0.1 * np.exp(rng.normal(0, 0.02, C.size))  # -log Q = A C^-alpha, A = e^3
    loss = 1.7 + np.exp(6.0) * C**-0.15 * np.exp(rng.normal(0, 0.002, C.size))
    return pd.DataFrame({"C": C, "acc": _acc(z), "loss": loss})


def test_compute_form_is_ols_in_log_log(compute_df):
    fit = DownstreamLaw("compute", chance=CHANCE).fit(compute_df, target="acc", bootstrap=40, progress=False)
    z = -np.log((compute_df["acc"] - CHANCE) / (1 - CHANCE))
    slope, intercept = np.polyfit(np.log(compute_df["C"]), np.log(z), 1)
    assert fit.params["alpha"] == pytest.approx(-slope, rel=1e-6)
    assert fit.params["A"] == pytest.approx(np.exp(intercept), rel=1e-5)
    assert fit.params["alpha"] == pytest.approx(0.1, rel=0.05)
    assert fit.ci["alpha"][0] < fit.params["alpha"] < fit.ci["alpha"][1]
    assert fit.options.loss == "mse"
    pred = fit.predict(C=[1e23])  # accuracy, on the user's scale
    assert CHANCE < pred[0] < 1
    v = fit.validate("largest C")
    print(v)
    assert v.metrics["mape"] < 1.0


def test_params_tokens_and_ceiling_forms():
    rng = np.random.default_rng(1)
    N, D = np.meshgrid(np.geomspace(1e8, 1e10, 5), np.geomspace(2e9, 2e11, 5))
    df = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    z = np.exp(4.0) * df["N"] ** -0.2 + np.exp(5.0) * df["D"] ** -0.2
    df["acc"] = _acc(z * np.exp(rng.normal(0, 0.005, len(df))))
    f = DownstreamLaw("params_tokens", chance=CHANCE).fit(df, target="acc")
    assert f.params["alpha"] == pytest.approx(0.2, rel=0.1)
    assert f.params["beta"] == pytest.approx(0.2, rel=0.1)
    C = np.geomspace(1e18, 1e23, 15)
    ceil = pd.DataFrame({"C": C, "acc": _acc(0.2 + np.exp(4.0) * C**-0.12)})
    g = DownstreamLaw("ceiling", chance=CHANCE).fit(ceil, target="acc")
    assert g.params["E"] == pytest.approx(0.2, rel=0.02)  # accuracy saturates at chance + (1-chance) e^-0.2
    assert g.params["alpha"] == pytest.approx(0.12, rel=0.02)


def test_pass_at_k_form_and_per_row_chance():
    C, k = np.meshgrid(np.geomspace(1e19, 1e22, 6), np.array([1.0, 4.0, 16.0, 64.0]))
    df = pd.DataFrame({"C": C.ravel(), "k": k.ravel()})
    lc, lk = np.log(df["C"]), np.log(df["k"])
    df["pass"] = np.exp(-np.exp(6.0 - 0.1 * lc - 0.3 * lk - 0.005 * lc * lk))
    f = DownstreamLaw("pass_at_k").fit(df, target="pass")
    assert (f.params["a"], f.params["alpha"], f.params["beta"], f.params["delta"]) == pytest.approx(
        (6.0, -0.1, -0.3, -0.005), rel=1e-5, abs=1e-7)
    df["chance"] = 0.1
    df["acc"] = 0.1 + 0.9 * df["pass"]
    g = DownstreamLaw("pass_at_k", chance="chance").fit(df, target="acc")
    assert g.params["alpha"] == pytest.approx(-0.1, rel=1e-5)
    np.testing.assert_allclose(g.predict(df), df["acc"], rtol=1e-8)


def test_accuracy_outside_chance_and_one_is_rejected(compute_df):
    law = DownstreamLaw("compute", chance=CHANCE)
    with pytest.raises(InvalidInputError, match="between chance and 1"):
        law.fit(compute_df.assign(acc=np.r_[0.2, compute_df["acc"].iloc[1:]]), target="acc")
    with pytest.raises(InvalidInputError, match="between chance and 1"):
        law.fit(compute_df.assign(acc=np.r_[1.0, compute_df["acc"].iloc[1:]]), target="acc")
    with pytest.raises(InvalidInputError, match="form must be"):
        DownstreamLaw("sigmoid")
    with pytest.raises(InvalidInputError, match="chance"):
        DownstreamLaw("compute", chance=1.5)


def test_two_stage_and_comparison_with_direct(compute_df, tmp_path):
    ts = TwoStage(chance=CHANCE).fit(compute_df, target="acc", loss="loss", C="C", bootstrap=20, progress=False)
    assert ts.loss_fit.params["alpha"] == pytest.approx(0.15, rel=0.05)
    ci = ts.predict(C=[1e21, 1e22], interval="confidence")
    assert np.all((ci["lo"] <= ci["prediction"]) & (ci["prediction"] <= ci["hi"]))
    back = TwoStageFit.from_json(ts.to_json(tmp_path / "two.json"))
    np.testing.assert_allclose(back.predict(C=[3e20]), ts.predict(C=[3e20]))
    v = ts.validate("largest C")
    assert np.isfinite(v.metrics["mape"])
    cmp = compare_direct_two_stage(compute_df, target="acc", loss="loss", chance=CHANCE)
    assert list(cmp.index) == ["direct", "two_stage"]
    print(cmp)
    # the data follow the direct law exactly up to noise; the two-stage sigmoid is a misspecified link
    assert cmp.loc["direct", "mape"] < cmp.loc["two_stage", "mape"]
