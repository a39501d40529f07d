"""The run's summary is computed by pplaw.pipeline.analysis alone; the report's sections only render it.

A small hand-made context (no pipeline run): its numbers are checked against values worked out by hand, and
the report is shown to print what the analysis hands it, not numbers of its own."""

from __future__ import annotations

import math

import pytest

from pplaw.pipeline import analysis as A
from pplaw.pipeline.report import sections
from pplaw.pipeline.report.render import render_md


@pytest.fixture
def ctx(report_ctx):
    return report_ctx  # a hand-made finished run (conftest.py)


def test_analyse_computes_the_summary_without_rendering_anything(ctx):
    a = A.analyse(ctx)
    s = a.summary
    assert list(s) == ["name", "budget", "margins", "kinds", "unreachable", "failed_runs", "holdout", "optimum",
                       "fit_metrics", "selection", "learnable_band", "optimum_ci", "d_slopes", "failed_final_runs",
                       "comparison", "prediction"]  # summary.json's keys, in its order
    assert ctx.blocks == [] and list(ctx.out.iterdir()) == []  # no block, no plot, no file
    # DOS - random, paired by seed: domain loss -0.5 and +0.1 (loss: DOS better in seed 0 only)
    m = s["margins"]["random"]["domain_loss"]
    assert m["mean"] == pytest.approx(-0.2) and m["sd"] == pytest.approx(math.sqrt(0.18)) and m["wins"] == 1
    assert m["verdict"] == "not consistent: DOS better in 1, worse in 1 of 2 seeds"
    assert s["margins"]["random"]["domain_bench"]["verdict"] == "DOS better in every seed"
    assert set(s["margins"]) == {"random"}  # lowest_ppl's only final failed: nothing to pair
    assert s["kinds"]["learnable"]["n"] == 4 and s["kinds"]["noise"]["median"] == pytest.approx(25.0)
    assert s["unreachable"] == [{"id": "p1", "reason": "too narrow"}]
    assert s["failed_runs"] == [{"id": "b_10", "error": "too small"}]
    assert s["failed_final_runs"] == [{"id": "lowest_ppl_s0", "error": "status failed"}]
    assert s["holdout"]["validated"] is False and s["selection"]["selected"] == "law"
    # the learnable band is the learnable kind's 5%-95% PPL (no "hard" chunks here)
    assert s["learnable_band"] == {"lo": pytest.approx(1.15), "hi": pytest.approx(3.85), "mu_star_inside": True}
    assert s["optimum_ci"]["ratio"] == pytest.approx(1.0 / 2.7)
    # regime a: loss 4 -> 2 over D 100 -> 400 is slope 0.5; b is flat; spread 0.5 is not above max(0.2, aD = 0.6)
    assert s["d_slopes"]["per_regime"] == {"a": pytest.approx(0.5), "b": pytest.approx(0.0)}
    assert s["d_slopes"]["heterogeneous"] is False
    assert s["comparison"]["dos"]["domain_loss"] == {"mean": pytest.approx(4.1), "sd": pytest.approx(math.sqrt(0.02)),
                                                     "n": 2}
    assert s["comparison"]["dos"]["general_bench"] == {"mean": None, "sd": None, "n": 2}
    assert set(s["comparison"]) == {"dos", "random"}
    assert s["prediction"]["dos"] == {"predicted": 4.0, "measured": pytest.approx(4.1), "error": pytest.approx(-0.1),
                                      "rel_error": pytest.approx(-0.1 / 4.1), "interval": None, "covered": None}
    assert a.detail["prediction"]["dos"]["interval"] is None  # nothing validated: no interval is claimed
    assert a.detail["methods"]["dos"]["mix"] == {"learnable": 0.5, "noise": 0.5}  # no subset file: all chunks


def test_the_forecast_interval_carries_the_held_out_error_of_form(ctx):
    # the chosen law missed its two validation runs (at 2x the largest fitting size, 200) by -5% and +5%
    ctx.fit["law_choice"] = {"chosen": "a law", "validated": True, "reason": "lowest held-out MAPE",
                             "predictions": [{"law": "a law", "measured": 2.0, "predicted": 1.9, "D": 400},
                                             {"law": "a law", "measured": 2.0, "predicted": 2.1, "D": 400},
                                             {"law": "other", "measured": 2.0, "predicted": 9.0, "D": 400}]}
    ctx.finals = [{**r, "D": 800} for r in ctx.finals]  # the finals at 4x the largest fitting size
    p = A.analyse(ctx).summary["prediction"]["dos"]
    lo, hi = p["interval"]
    e = math.sqrt((math.log(1.9 / 2) ** 2 + math.log(2.1 / 2) ** 2) / 2) * 2  # log 4 / log 2 = twice the error
    boot = math.log(4.5 / 3.5) / (2 * 1.6448536269514722)
    sd = math.hypot(e, boot)
    assert lo == pytest.approx(4.0 * math.exp(-1.6448536269514722 * sd))
    assert hi == pytest.approx(4.0 * math.exp(1.6448536269514722 * sd))
    assert p["covered"] is True  # measured 4.1 lies inside


def test_sections_render_the_numbers_the_analysis_hands_them(ctx):
    a = A.analyse(ctx)
    # numbers no computation from ctx could give: the sections must print these, not their own
    a.summary["margins"]["random"]["domain_loss"]["mean"] = -7.125
    a.summary["prediction"]["dos"]["predicted"] = 9.8765
    a.summary["comparison"]["random"]["domain_loss"] = {"mean": 1.5, "sd": 0.25, "n": 2}
    (ctx.out / "report").mkdir()
    sections.render(ctx, a)
    md = render_md(ctx.blocks)
    assert "DOS - random: domain loss -7.1250" in md
    assert "| dos | 9.8765 [3.5000, 4.5000] |" in md
    assert "| random | 2 | 1.5000 ± 0.2500 |" in md
    assert "**Not validated.** no held-out points." in md


def test_an_unvalidated_law_is_warned_of_at_the_top_of_the_report(ctx):
    # validation turned off: the plan's reason heads the report (not only section 4a), before the headline
    from pplaw.pipeline.sections import NO_VALIDATION

    ctx.plan["validation_sizes"], ctx.plan["validation_note"] = [], NO_VALIDATION
    (ctx.out / "report").mkdir()
    sections.render(ctx, A.analyse(ctx))
    assert ctx.blocks[0][0] == "h1"
    assert ctx.blocks[1] == ("p", f"**Warning: the law is not validated.** {NO_VALIDATION}.")
    assert render_md(ctx.blocks).count(NO_VALIDATION) == 2  # the top and section 4a


def test_a_validated_law_has_no_warning_at_the_top(ctx):
    ctx.fit["law_choice"] = {"chosen": "a law", "validated": True, "trusted": True, "reason": "lowest MAPE",
                             "n_fit": 4, "n_val": 2, "table": [], "plot": "holdout.png", "predictions": []}
    (ctx.out / "report").mkdir()
    sections.render(ctx, A.analyse(ctx))
    assert ctx.blocks[1][0] == "p" and not ctx.blocks[1][1].startswith("**Warning")


def test_the_terminal_summary_warns_when_the_law_is_not_validated(capsys, tmp_path):
    from pplaw.cli.run import _print_summary

    _print_summary({"holdout": {"validated": False, "reason": "no held-out validation points (x)"}}, tmp_path, 60)
    assert "WARNING: the law is not validated: no held-out validation points (x)" in capsys.readouterr().out
    _print_summary({"holdout": {"validated": True, "reason": "fine"}}, tmp_path, 60)
    assert "WARNING" not in capsys.readouterr().out
