"""The forecast's prediction interval: bootstrap noise plus the held-out error of form, grown with extrapolation."""

import math

import numpy as np
import pytest

from pplaw.exceptions import InvalidInputError
from pplaw.pipeline.forecast import form_error, form_error_of_run, interval


def test_form_error_counts_a_shared_bias_in_full():
    # every validation run predicted 5% low: the RMS is the bias, not the (zero) spread
    fe = form_error([1.0, 2.0, 1.5], [0.95, 1.9, 1.425], [40_000] * 3, d_fit=20_000)
    assert fe.rms_log == pytest.approx(-math.log(0.95), rel=1e-9)
    assert fe.bias_log == pytest.approx(math.log(0.95), rel=1e-9)
    assert fe.n == 3 and fe.d_val == 40_000


def test_form_error_grows_with_log_extrapolation_distance():
    fe = form_error([1.0], [1.1], [40_000], d_fit=20_000)
    e = math.log(1.1)
    assert fe.sd_at(40_000) == pytest.approx(e)
    assert fe.sd_at(80_000) == pytest.approx(2 * e)  # twice the log distance from the fitting size
    assert fe.sd_at(10_000) == pytest.approx(e)  # never below what the validation runs showed


def test_interval_adds_bootstrap_and_form_in_quadrature():
    fe = form_error([1.0], [1.1], [40_000], d_fit=20_000)
    z = 1.6448536269514722
    boot = (math.exp(-z * 0.03), math.exp(z * 0.03))  # a bootstrap sd of 0.03 in log loss
    pi = interval(1.0, 80_000, fe, boot)
    sd = math.hypot(0.03, 2 * math.log(1.1))
    assert pi["sd_boot"] == pytest.approx(0.03)
    assert pi["lo"] == pytest.approx(math.exp(-z * sd)) and pi["hi"] == pytest.approx(math.exp(z * sd))
    # the bootstrap alone is narrower: the form error is what widens it
    assert interval(1.0, 80_000, fe, None)["hi"] < pi["hi"]


def test_no_validation_no_interval():
    assert interval(1.0, 80_000, None, (0.9, 1.1)) is None
    assert form_error_of_run({"validated": False}, [10_000, 20_000]) is None
    assert form_error([], [], [], d_fit=20_000) is None


def test_bad_inputs_are_named():
    with pytest.raises(InvalidInputError, match="larger than the largest fitting size"):
        form_error([1.0], [1.0], [20_000], d_fit=20_000)
    with pytest.raises(InvalidInputError, match="one value per validation run"):
        form_error([1.0, 2.0], [1.0], [40_000], d_fit=20_000)
    with pytest.raises(InvalidInputError, match="level"):
        interval(1.0, 1.0, form_error([1.0], [1.1], [40_000], d_fit=20_000), level=1.5)


def test_form_error_of_run_reads_the_chosen_law_only():
    lc = {"validated": True, "chosen": "b",
          "predictions": [{"law": "a", "measured": 1.0, "predicted": 2.0, "D": 40_000},
                          {"law": "b", "measured": 1.0, "predicted": 1.05, "D": 40_000},
                          {"law": "b", "measured": 2.0, "predicted": 1.9, "D": 41_000}]}
    fe = form_error_of_run(lc, [10_000, 20_000])
    assert fe.n == 2 and fe.d_fit == 20_000
    assert fe.rms_log == pytest.approx(np.sqrt((math.log(1.05) ** 2 + math.log(0.95) ** 2) / 2))


def test_a_run_whose_held_out_runs_are_not_larger_claims_no_interval():
    # the report must not crash over the interval: a run record whose validation runs sit at the fitting size
    lc = {"validated": True, "chosen": "b", "predictions": [{"law": "b", "measured": 1.0, "predicted": 1.1, "D": 20_000}]}
    assert form_error_of_run(lc, [10_000, 20_000]) is None


def _law_table():
    """Fitting runs at two sizes and held-out runs at 4x with lower losses (as a real sweep's are)."""
    import pandas as pd

    rows = []
    for k, (mu, s) in enumerate([(3.0, 0.3), (4.0, 0.8), (5.0, 0.5), (6.0, 1.2)]):
        for D, role in ((1e4, "fit"), (2e4, "fit"), (8e4, "validation")):
            rows.append({"mu": mu, "sigma": s, "D": D, "role": role,
                         "domain_loss": 0.4 + (1.0 + 0.2 * k) * (D / 1e4) ** -0.5})
    return pd.DataFrame(rows)


def test_refit_keeps_the_floor_the_held_out_runs_validated_in_loss_units():
    from pplaw.laws import get_law_spec
    from pplaw.pipeline.fit import refit_law

    df = _law_table()
    law = get_law_spec("perplexity_spline:floor=0.3", space="log_ppl", sigma="std")
    fit_min = df.loc[df.role == "fit", "domain_loss"].min()
    pinned, note = refit_law(law, df, {"validated": True}, "domain_loss")
    assert note is None and pinned.e == pytest.approx(0.3 * fit_min)
    f = pinned.fit(df, target="domain_loss", mu="mu", sigma="sigma", D="D", progress=False)
    assert f.law.e == pytest.approx(0.3 * fit_min) and f.law.e > 0.3 * df["domain_loss"].min()
    same, note = refit_law(law, df, {"validated": False}, "domain_loss")  # nothing was validated: as given
    assert same is law and note is None
    prof, note = refit_law(law, df, {"validated": True}, "domain_loss", profile=True)  # fit.refit_floor
    assert prof.fit_floor and prof.e == pytest.approx(0.3 * fit_min) and note is None  # the anchored floor: fallback
    f = prof.fit(df, target="domain_loss", mu="mu", sigma="sigma", D="D", progress=False)
    assert f.extras["floor_how"].startswith("given")  # three sizes per regime do not identify the floor


def test_refit_drops_a_floor_the_held_out_runs_went_below():
    from pplaw.laws import get_law_spec
    from pplaw.pipeline.fit import refit_law

    df = _law_table()
    law = get_law_spec("perplexity_spline:floor=0.9", space="log_ppl", sigma="std")  # 0.9 x 1.107 > 0.85
    back, note = refit_law(law, df, {"validated": True}, "domain_loss")
    assert back is law and "is not below the smallest measured domain_loss" in note
