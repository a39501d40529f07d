"""PerplexityLawSpline: pplaw's local two-stage law (each regime's power law in D, thin-plate smoothed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pplaw.exceptions import FitError, InvalidInputError
from pplaw.laws import Fit, Law, PerplexityLaw, compare_holdout, get_law_spec, parse_law_spec
from pplaw.laws.perplexity_spline import PerplexityLawSpline


def truth(mu, s, D):
    """A smooth but non-monomial landscape: a valley in mu whose depth and data exponent vary with s."""
    f = 1.2 + 0.35 * (mu - 5.0) ** 2 - 0.2 * s
    a = 0.25 + 0.08 * (mu - 3.0) - 0.05 * s
    return np.exp(f - a * (np.log(D) - np.log(2e4)))


def table(sizes=(1e4, 2e4), noise=0.0, seed=0, jitter=0.005):
    rng = np.random.default_rng(seed)
    rows = []
    for mu in np.linspace(3.0, 7.0, 6):
        for s in (0.3, 0.8, 1.4):
            for D in sizes:
                # the realised statistics of one regime move a little between sizes, as real subsets do
                m, sd = mu + rng.normal(0, jitter), s + rng.normal(0, jitter)
                L = truth(m, sd, D) * np.exp(rng.normal(0, noise))
                rows.append({"mu": m, "sigma": sd, "D": D, "loss": L})
    return pd.DataFrame(rows)


def fit(df, **kw):
    law = PerplexityLawSpline(space="log_ppl", **kw)
    return law.fit(df, target="loss", mu="mu", sigma="sigma", D="D", progress=False)


def test_recovers_each_regime_and_extrapolates_in_D():
    f = fit(table())
    assert f.extras["n_regimes"] == 18
    big = table(sizes=(6e4,), seed=1)  # 3x the largest fitted size, at the fitted regimes
    pred = f.predict(big)
    assert np.max(np.abs(pred / big["loss"] - 1)) < 0.02
    # between the regimes (a new (mu, s)), the smooth landscape is interpolated
    mid = pd.DataFrame({"mu": [4.2, 5.5, 6.1], "sigma": [0.55, 1.1, 0.5], "D": [4e4, 4e4, 4e4]})
    rel = f.predict(mid) / truth(mid["mu"], mid["sigma"], mid["D"]) - 1
    assert np.max(np.abs(rel)) < 0.05


def test_without_smoothing_each_regime_keeps_its_own_slope():
    """smoothing=0 with two sizes per regime is the exact two-stage fit: each regime's log-log slope."""
    df = table(noise=0.02, seed=3, jitter=0.0)
    f = fit(df, smoothing=0.0)
    assert f.metrics["mape"] < 1e-4  # interpolates every run
    law = f.law
    lab = law.labels(f.data)
    K = len(law.knots)
    for k in range(K):
        rows = df[lab == k]
        slope = -np.polyfit(np.log(rows["D"]), np.log(rows["loss"]), 1)[0]
        assert f.params[f"aD{k}"] == pytest.approx(slope, abs=1e-4)


def test_cross_validation_picks_more_smoothing_for_noisier_data():
    clean = fit(table(noise=0.0))
    noisy = [fit(table(noise=0.4, seed=s)) for s in range(4)]  # per-run noise of 40%: CV must smooth
    assert np.median([f.extras["smoothing"] for f in noisy]) > 100 * clean.extras["smoothing"]
    assert noisy[0].extras["smoothing_how"].startswith("chosen by leave-one-regime-out")


def test_analytic_jacobian_matches_complex_step():
    f = fit(table(noise=0.01), floor=0.3)
    law, design = f.law, f.problem.design
    for space in ("log", "linear"):
        v, J = law.jacobian(f.theta, design, space)
        v2, J2 = Law.jacobian(law, f.theta, design, space)  # complex step through forward
        np.testing.assert_allclose(v, v2, rtol=1e-10)
        np.testing.assert_allclose(J, J2, rtol=1e-6, atol=1e-9)


def test_floor_lies_under_every_prediction():
    df = table()
    f = fit(df, floor=0.5)
    assert f.law.e == pytest.approx(0.5 * df["loss"].min())
    far = df.assign(D=df["D"] * 1e6)
    assert np.all(f.predict(far) > f.law.e)
    assert "floor E = " in f.law.describe() and "0.5 x the smallest loss" in f.law.describe()


def test_anchored_floor_stays_in_loss_units_when_lower_losses_are_refitted():
    # the held-out score validates floor x the smallest loss of the fitting runs; a refit with the (larger,
    # lower-loss) held-out runs in must keep that loss, not take the same fraction of a smaller minimum
    df = table()
    small, large = df[df["D"] < df["D"].max()], df
    law = PerplexityLawSpline(space="log_ppl", floor=0.3)
    e = 0.3 * small["loss"].min()
    pinned = law.anchored(small["loss"])
    assert pinned.e == pytest.approx(e) and pinned.floor == 0.3 and law.e is None  # a copy; the original kept
    f = pinned.fit(large, target="loss", mu="mu", sigma="sigma", D="D", progress=False)
    assert f.law.e == pytest.approx(e)
    assert fit(large, floor=0.3).law.e == pytest.approx(0.3 * large["loss"].min()) != pytest.approx(e)
    assert get_law_spec(f"perplexity_spline:e={e}", space="log_ppl").fit(
        large, target="loss", mu="mu", sigma="sigma", D="D", progress=False).law.e == pytest.approx(e)
    assert pinned.anchored(large["loss"]) is pinned and PerplexityLawSpline().anchored(df["loss"]).e is None
    with pytest.raises(FitError, match="floor E = .* is not below the smallest loss"):
        PerplexityLawSpline(e=float(df["loss"].min())).fit(df, target="loss", mu="mu", sigma="sigma", D="D")
    with pytest.raises(InvalidInputError, match="e must be a floor in loss units"):
        PerplexityLawSpline(e=-1.0)


def test_serialisation_bootstrap_and_optimum():
    df = table(noise=0.01)
    law = PerplexityLawSpline(space="log_ppl")
    f = law.fit(df, target="loss", mu="mu", sigma="sigma", D="D", bootstrap=30, seed=1, progress=False)
    g = Fit.from_json(f.to_json())
    np.testing.assert_allclose(g.predict(df), f.predict(df))
    assert g.extras["smoothing"] == f.extras["smoothing"]
    iv = f.predict(df, interval="confidence")
    assert np.all(iv["lo"] <= iv["hi"])
    assert "resamples of regimes" in f.summary()
    with pytest.raises(InvalidInputError, match="needs D"):
        f.optimum()
    opt = f.optimum(D=6e4)
    assert 4.5 < opt.mu < 5.8  # the valley of truth() at D=6e4 (mu ~ 5.2, widest spread)
    assert opt.ci and opt.ci["mu"][0] <= opt.mu <= opt.ci["mu"][1]


def test_ppl_space_uses_log_coordinates():
    df = table()
    ppl = df.assign(mu=np.exp(df["mu"]), sigma=np.exp(df["sigma"]))
    f = PerplexityLawSpline(space="ppl").fit(ppl, target="loss", mu="mu", sigma="sigma", D="D", progress=False)
    assert f.extras["n_regimes"] == 18
    assert f.metrics["mape"] < 1.0


def test_bad_input_is_named():
    with pytest.raises(InvalidInputError, match="floor"):
        PerplexityLawSpline(floor=1.5)
    with pytest.raises(InvalidInputError, match="sigma_scale"):
        PerplexityLawSpline(sigma_scale=0)
    with pytest.raises(InvalidInputError, match="smoothing"):
        PerplexityLawSpline(smoothing=-1)
    df = table()
    with pytest.raises(FitError, match="two sizes"):
        fit(df[df["D"] == 1e4])
    with pytest.raises(FitError, match="3 distinct regimes"):
        fit(df[df["mu"] < 3.5].head(4))
    with pytest.raises(InvalidInputError, match="space='log'"):
        PerplexityLawSpline(space="log_ppl").fit(df, target="loss", mu="mu", sigma="sigma", D="D", space="linear")
    with pytest.raises(FitError, match="fit it first"):
        PerplexityLawSpline().design({"mu": np.ones(2), "sigma": np.ones(2), "D": np.ones(2)})


def test_law_specs():
    assert parse_law_spec("perplexity") == ("perplexity", {})
    assert parse_law_spec(" perplexity_spline:floor=0.3, sigma_scale=2 ") == (
        "perplexity_spline", {"floor": 0.3, "sigma_scale": 2})
    law = get_law_spec("perplexity_spline:floor=0.3", space="log_ppl", sigma="std")
    assert isinstance(law, PerplexityLawSpline) and law.floor == 0.3
    with pytest.raises(InvalidInputError, match="key=value"):
        parse_law_spec("perplexity_spline:floor")
    with pytest.raises(InvalidInputError, match="unknown law"):
        get_law_spec("perplexity_splin")
    with pytest.raises(InvalidInputError, match="invalid options"):
        get_law_spec("perplexity_spline:flor=0.3")


def test_held_out_choice_prefers_the_local_law_on_a_valley():
    """On a valley between a flat plateau and a rising end, the paper's global form misfits; scored on a larger
    held-out size the spline wins, and generalises (its held-out error is small)."""
    rng = np.random.default_rng(0)

    def valley(mu, s, D):
        depth = 1.0 / (1.0 + np.exp(-3.0 * (mu - 4.5))) * np.exp(-0.6 * np.clip(mu - 6.0, 0, None))
        a = 0.05 + 0.6 * depth
        return (5.5 - 3.5 * depth + 0.1 * s) * (D / 1e4) ** -a

    rows = []
    for mu in np.linspace(1.0, 8.0, 10):
        for s in (0.2, 0.6):
            for D in (1e4, 2e4, 4e4):
                rows.append({"mu": mu, "sigma": s, "D": D, "loss": valley(mu, s, D) * np.exp(rng.normal(0, 0.01))})
    df = pd.DataFrame(rows)
    fit_df, val_df = df[df["D"] < 4e4], df[df["D"] == 4e4]
    laws = {"perplexity": PerplexityLaw(space="log_ppl"), "perplexity_spline": PerplexityLawSpline()}
    cmp = compare_holdout(laws, fit_df, val_df, target="loss", strict=False, progress=False)
    assert cmp.best == "perplexity_spline"
    assert cmp.table.loc["perplexity_spline", "holdout_mape"] < 5.0
    assert cmp.table.loc["perplexity", "holdout_mape"] > 2 * cmp.table.loc["perplexity_spline", "holdout_mape"]


def test_fit_floor_profiles_E_where_regimes_hold_four_sizes():
    # a shared floor E = 0.4 under every regime's power law; three regimes measured at four sizes identify it
    rng = np.random.default_rng(0)
    rows = []
    for k, mu in enumerate(np.linspace(3.0, 7.0, 6)):
        for s in (0.3, 0.8):
            sizes = (1e4, 2e4, 4e4, 8e4) if k % 2 == 0 and s == 0.3 else (1e4, 2e4)
            for D in sizes:
                L = 0.4 + truth(mu, s, D) * np.exp(rng.normal(0, 0.002))
                rows.append({"mu": mu, "sigma": s, "D": D, "loss": L})
    df = pd.DataFrame(rows)
    f = fit(df, fit_floor=True)
    assert f.law.e == pytest.approx(0.4, abs=0.05) and f.law.fit_floor
    assert f.extras["regimes_identifying_floor"] == 3 and f.extras["floor_how"].startswith("profiled")
    assert min(f.extras["floor_profile"].values()) < f.extras["floor_profile"]["0"]  # E = 0 fits worse
    assert "profiled" in f.law.describe()
    plain = fit(df)  # a pure power law misses the curvature: it extrapolates lower
    far = pd.DataFrame({"mu": [5.4], "sigma": [0.3], "D": [8e5]})
    assert float(plain.predict(far)[0]) < float(f.predict(far)[0])
    two = fit(table(), fit_floor=True, floor=0.2)  # two sizes per regime: no floor is identified, the given stays
    assert two.law.e == pytest.approx(0.2 * table()["loss"].min())
    assert two.extras["floor_how"].startswith("given") and two.extras["regimes_identifying_floor"] == 0
    assert Fit.from_json(f.to_json()).law.e == pytest.approx(f.law.e)
    with pytest.raises(InvalidInputError, match="fit_floor must be true or false"):
        PerplexityLawSpline(fit_floor="yes")
