"""The fallback to the best sweep regime: a predicted gain must clear the bootstrap CI and the held-out error."""

import pytest

from pplaw.pipeline.select import trust_gain


def test_a_gain_beyond_both_uncertainties_trusts_the_law():
    decision, why = trust_gain(0.05, 0.01, 0.02, 3.0, 2.0, 0.95, "domain_loss")
    assert decision == "law"
    assert "+0.0500" in why and "+0.0100" in why and "0.0200" in why


def test_a_gain_within_the_bootstrap_ci_falls_back():
    decision, why = trust_gain(0.05, -0.001, 0.02, 3.0, 2.0, 0.95, "domain_loss")
    assert decision == "best_sweep" and "bootstrap" in why


@pytest.mark.parametrize("gain_lo", [0.01, None])
def test_a_gain_within_the_held_out_gap_error_falls_back_even_when_the_bootstrap_is_sure(gain_lo):
    # the bootstrap sees the fit's noise only; the held-out runs saw the law mispredict a gap by 0.03
    decision, why = trust_gain(0.025, gain_lo, 0.03, 3.0, 2.0, 0.95, "domain_loss")
    assert decision == "best_sweep"
    assert "held-out error on differences" in why and "0.0300" in why


def test_without_bootstrap_or_gap_error_the_held_out_mape_is_the_tolerance():
    # 3% of a predicted 2.0 is 0.06
    assert trust_gain(0.05, None, None, 3.0, 2.0, 0.95, "loss")[0] == "best_sweep"
    decision, why = trust_gain(0.07, None, float("nan"), 3.0, 2.0, 0.95, "loss")
    assert decision == "law" and "3.0%" in why
    decision, why = trust_gain(0.07, None, None, None, 2.0, 0.95, "loss")
    assert decision == "law" and "no uncertainty measured" in why


def test_the_band_decision_without_a_band_inside_the_hull_or_without_fallback():
    """decide(): no band the law may search -> the best sweep regime; select.fallback off -> the law's band."""
    from types import SimpleNamespace

    import pandas as pd

    from pplaw.pipeline.select import BandChoice, LawBand, decide

    bs = {"predicted": 2.0}
    decision, why = decide(None, LawBand(None), bs, pd.DataFrame(), {}, True, "loss")
    assert decision == "best_sweep" and "inside the hull" in why
    pick = LawBand(pd.Series({"q_lo": 0.1, "q_hi": 0.3, "mu": 5.0, "sigma": 1.0, "predicted": 1.9}), 0)
    assert decide(None, pick, bs, pd.DataFrame(), {}, False, "loss") == ("law", "")
    # without draws and held-out rows the gain (0.1) is judged by nothing: the law's band, and the record says so
    decision, why = decide(SimpleNamespace(level=0.9), pick, bs, pd.DataFrame(), {}, True, "loss")
    assert decision == "law" and "no uncertainty measured" in why
    assert pick.record() == {"band": [0.1, 0.3], "mu": 5.0, "sigma": 1.0, "loss": 1.9, "ci": {}, "loss_ci": None}
    opt = {"selected": "law", "band": [0.1, 0.3], "mu": 5.0, "sigma": 1.0, "why": "w"}
    choice = BandChoice(opt, bs)
    assert choice.outputs() == {"optimum": opt, "best_sweep": bs, "bands": "bands.csv"}
    assert choice.summary_line() == ("the fit stage selected (law; the confirm stage may still measure the law's band): "
                                     "band [0.1, 0.3], mu* = 5, sigma* = 1; w")
