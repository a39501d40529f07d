"""The confirm stage's rule (pipeline/confirm.py): a band the law proposes on its own is trained once at the
validation size and kept only if it measures lower there than the best sweep regime's band."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pplaw.pipeline import confirm as CF

PLAN = {"sizes": [5_000, 10_000], "validation_sizes": [20_000], "n_bins": 20, "total_tokens": 100_000}
LAW = {"selected": "law", "band": [0.3, 0.8], "mu": 1.0, "sigma": 0.5, "loss": 0.6, "why": "the law predicts ...",
       "law_band": {"band": [0.3, 0.8]}, "level": 0.9, "n_bands": 40}
BS = {"regime": "w2", "band": [0.35, 0.7], "mu": 1.2, "sigma": 0.4, "predicted": 0.7, "loss": 0.9}


def _table(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({"chunk_id": np.arange(n, dtype=np.int64), "ppl": np.exp(rng.uniform(0.5, 9.0, n)),
                     "n_scored": np.full(n, 50, dtype=np.int64)})


def _lead(loss, band=BS["band"], status="ok", seed=0):
    return {"id": f"w2_D2_R0_s{seed}", "role": "validation", "size_no": 2, "band": list(band), "status": status,
            "domain_loss": loss, "regime": "w2", "seed": seed}


@pytest.mark.parametrize("opt,plan,on,needle", [
    (LAW, PLAN, False, "select.confirm is off"),
    ({**LAW, "selected": "best_sweep"}, PLAN, True, "nothing to confirm"),
    ({**LAW, "band": None}, PLAN, True, "not a band"),
    (LAW, {**PLAN, "validation_sizes": []}, True, "no validation size"),
])
def test_nothing_is_trained_unless_the_law_proposes_a_band_of_its_own(opt, plan, on, needle):
    assert needle in CF.confirmation_needed(opt, plan, on)
    assert CF.confirmation_needed(LAW, PLAN, True) is None


def test_the_law_band_is_sampled_at_the_validation_size_and_the_leader_run_is_reused(tmp_path):
    from pplaw.io import read_indices
    from pplaw.sampling import sample_subset

    t = _table()
    pts, held = CF.confirmation_points(t, PLAN, LAW, BS, [_lead(0.9)], [0], [0.25], tmp_path)
    assert [p["regime"] for p in pts] == ["law"] and held == ["w2_D2_R0_s0"]  # the best sweep band's held-out run exists: not trained again
    p = pts[0]
    assert p["role"] == "confirmation" and p["size_no"] == 2 and p["band"] == [0.3, 0.8] and p["R"] == 0.25
    idx = sample_subset(t, token_budget=20_000, quantile_window=(0.3, 0.8), seed=0, return_indices=True)
    assert sorted(read_indices(tmp_path / p["indices"])[0].tolist()) == sorted(np.asarray(idx).tolist())
    assert 20_000 <= p["tokens"] < 20_100
    # no leader run of the best sweep band at that size (another band, or another size): it is trained too
    other = [_lead(0.9, band=[0.0, 0.5]), {**_lead(0.9), "size_no": 1}]
    pts, held = CF.confirmation_points(t, PLAN, LAW, BS, other, [0, 1], [0.25], tmp_path / "b")
    assert held == [] and [(p["regime"], p["seed"]) for p in pts] == [("law", 0), ("law", 1), ("best_sweep", 0), ("best_sweep", 1)]


def test_a_band_too_narrow_for_the_validation_size_is_widened_as_the_leaders_are(tmp_path):
    from pplaw.pipeline.plan import sample_band

    pts, _ = CF.confirmation_points(_table(), PLAN, {**LAW, "band": [0.3, 0.35]}, BS, [_lead(0.9)], [0], [0.0],
                                    tmp_path)
    _, q = sample_band(_table(), [(0.3, 0.35)], 20_000, 20, 0, 100_000)
    assert pts[0]["band"] == list(q) and q[1] - q[0] >= 0.2 and q[0] <= 0.3 and q[1] >= 0.35
    assert 20_000 <= pts[0]["tokens"] < 20_100


def _law_run(loss, status="ok", seed=0):
    return {"id": f"confirm_law_D2_R0_s{seed}", "regime": "law", "status": status, "domain_loss": loss,
            "seed": seed}


def test_the_law_band_is_kept_only_when_it_measures_lower():
    won = CF.decide_confirmation(LAW, BS, [_lead(0.95)], [_law_run(0.90)], ["w2_D2_R0_s0"], PLAN,
                                 "domain_loss")
    assert won["status"] == "confirmed" and won["optimum"]["band"] == [0.3, 0.8]
    assert won["optimum"]["selected"] == "law" and "confirmed at 20,000 tokens" in won["optimum"]["why"]
    bare = CF.decide_confirmation({**LAW, "why": ""}, BS, [_lead(0.95)], [_law_run(0.90)], ["w2_D2_R0_s0"], PLAN,
                                  "domain_loss")
    assert bare["optimum"]["why"].startswith("confirmed at")  # select.fallback off: the fit gives no why
    assert won["law_loss"] == pytest.approx(0.90) and won["best_sweep_loss"] == pytest.approx(0.95)

    leads = [_lead(0.93), {**_lead(0.95, seed=1), "id": "w2_D2_R0_s1"}]
    lost = CF.decide_confirmation(LAW, BS, leads, [_law_run(0.92), _law_run(0.97, seed=1)],
                                  ["w2_D2_R0_s0", "w2_D2_R0_s1"], PLAN, "domain_loss")
    assert lost["status"] == "rejected"  # mean 0.945 vs 0.94: ties and losses go to the evidence
    o = lost["optimum"]
    assert o["selected"] == "best_sweep" and o["band"] == BS["band"] and o["mu"] == BS["mu"]
    assert o["loss"] == BS["predicted"] and o["law_band"] == LAW["law_band"] and o["ci"] == {}
    assert "was proposed" in o["why"] and "not below the best sweep band's 0.9400" in o["why"]


def test_a_failed_confirmation_run_counts_against_the_law_band():
    res = CF.decide_confirmation(LAW, BS, [_lead(0.95)], [_law_run(None, status="failed")], ["w2_D2_R0_s0"], PLAN,
                                 "domain_loss")
    assert res["status"] == "rejected" and "did not all finish" in res["why"]
    assert res["optimum"]["band"] == BS["band"]
    res = CF.decide_confirmation(LAW, BS, [_lead(None, status="failed")], [_law_run(0.5)], ["w2_D2_R0_s0"], PLAN,
                                 "domain_loss")
    assert res["status"] == "rejected"  # nothing to compare with: the law's band is not taken unmeasured


def test_the_best_sweep_band_trained_by_the_confirm_stage_is_compared_when_no_leader_holds_it():
    bs_run = {"id": "confirm_best_sweep_D2_R0_s0", "regime": "best_sweep", "status": "ok", "domain_loss": 0.80}
    res = CF.decide_confirmation(LAW, BS, [_lead(0.5)], [_law_run(0.85), bs_run], [], PLAN, "domain_loss")
    assert res["status"] == "rejected" and res["best_sweep_runs"] == ["confirm_best_sweep_D2_R0_s0"]


def test_with_max_repeat_the_bands_are_confirmed_with_the_final_runs_passes(tmp_path):
    """select.max_repeat > 1: the law's band is not widened to the validation size but drawn as the held-out
    leaders are, a sub-pool of the band trained for D with the final run's passes (and that pool as its P)."""
    from pplaw.pipeline.plan import window_tokens

    table = _table()
    plan = {**PLAN, "total_tokens": 100_000, "max_repeat": 4.0, "final_budget": 60_000}
    law = {**LAW, "band": [0.3, 0.5]}
    pts, _ = CF.confirmation_points(table, plan, law, BS, [], [0], [0.0], tmp_path)
    mine = [p for p in pts if p["regime"] == "law"]
    assert mine and all(p["band"] == [0.3, 0.5] for p in mine)  # not widened
    passes = 60_000 / window_tokens(table, (0.3, 0.5))
    for p in mine:
        assert p["D"] == 20_000 and p["pool"] == p["tokens"] and p["passes"] == pytest.approx(passes, rel=0.05)


# select.confirm_uncertain: the fit stage fell back to the best sweep regime although the law predicts its own
# band lower; the law's band (optimum.law_band) is measured at the validation size and taken if it wins there
FELL_BACK = {"selected": "best_sweep", "band": BS["band"], "mu": BS["mu"], "sigma": BS["sigma"],
             "loss": BS["predicted"], "ci": {}, "loss_ci": None, "level": 0.9, "on_boundary": False,
             "why": "the law's predicted gain over the best sweep regime (+0.0100) is within its bootstrap uncertainty",
             "law_band": {"band": [0.4, 0.75], "mu": 0.9, "sigma": 0.45, "loss": 0.69,
                          "ci": {"mu": [0.8, 1.0], "sigma": [0.4, 0.5]}, "loss_ci": [0.66, 0.72]}}


@pytest.mark.parametrize("opt,uncertain,want", [
    (FELL_BACK, True, [0.4, 0.75]),  # a gain within the uncertainty: measured
    (FELL_BACK, False, None),  # select.confirm_uncertain off: the fallback stands unmeasured
    ({**FELL_BACK, "law_band": {**FELL_BACK["law_band"], "loss": 0.71}}, True, None),  # no predicted gain
    ({**FELL_BACK, "law_band": {**FELL_BACK["law_band"], "band": BS["band"]}}, True, None),  # the same band
    ({**FELL_BACK, "law_band": None}, True, None),  # no band inside the hull: nothing proposed
    (LAW, False, [0.3, 0.8]),  # the law's band selected on its own is confirmed whatever confirm_uncertain says
])
def test_a_gain_within_the_uncertainty_is_proposed_for_confirmation(opt, uncertain, want):
    assert CF.proposed_band(opt, uncertain) == want
    why = CF.confirmation_needed(opt, PLAN, True, uncertain)
    assert (why is None) == (want is not None)
    if not uncertain and want is None:
        assert "confirm_uncertain is off" in why


def test_a_gain_within_the_uncertainty_is_trained_as_the_law_band(tmp_path):
    pts, held = CF.confirmation_points(_table(), PLAN, FELL_BACK, BS, [_lead(0.9)], [0], [0.0], tmp_path)
    assert [(p["regime"], p["band"]) for p in pts] == [("law", [0.4, 0.75])] and held == ["w2_D2_R0_s0"]


def test_a_confirmed_gain_within_the_uncertainty_takes_the_law_band_with_its_own_numbers():
    won = CF.decide_confirmation(FELL_BACK, BS, [_lead(0.95)], [_law_run(0.90)], ["w2_D2_R0_s0"], PLAN,
                                 "domain_loss")
    o = won["optimum"]
    assert won["status"] == "confirmed" and won["uncertain"] and won["law_band"] == [0.4, 0.75]
    assert o["selected"] == "law" and o["band"] == [0.4, 0.75] and o["confirmed"]
    lb = FELL_BACK["law_band"]  # the law's pick's (mu, sigma), CIs and predicted loss, not the best sweep band's
    assert (o["mu"], o["sigma"], o["loss"], o["loss_ci"]) == (lb["mu"], lb["sigma"], lb["loss"], lb["loss_ci"])
    assert o["variance"] == pytest.approx(lb["sigma"] ** 2) and o["ci"] == lb["ci"]
    assert "within its uncertainty" in o["why"] and "confirmed at 20,000 tokens" in o["why"]

    lost = CF.decide_confirmation(FELL_BACK, BS, [_lead(0.88)], [_law_run(0.90)], ["w2_D2_R0_s0"], PLAN,
                                  "domain_loss")
    o = lost["optimum"]
    assert lost["status"] == "rejected" and o["selected"] == "best_sweep" and o["band"] == BS["band"]
    assert o["loss"] == BS["predicted"] and not o["confirmed"]
    assert "[0.4, 0.75] was proposed" in o["why"] and "not below the best sweep band's 0.8800" in o["why"]
