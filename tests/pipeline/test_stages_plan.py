"""Stage runner (caching, atomicity, resumption) and the realisable region (against brute force)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from pplaw.exceptions import BudgetError, ConfigError
from pplaw.pipeline.plan import realisable_region, resolve_size
from pplaw.pipeline.stages import Stages


def test_a_stage_runs_once_and_reruns_when_its_inputs_change(tmp_path):
    calls = []

    def fn(d):
        calls.append(d)
        (d / "out.txt").write_text("x")
        return {"file": "out.txt", "n": len(calls)}

    st = Stages(tmp_path, log=lambda m: None)
    assert st.run("a", {"k": 1}, fn) == {"file": "out.txt", "n": 1}
    assert (tmp_path / "a" / "out.txt").read_text() == "x"
    assert st.run("a", {"k": 1}, fn)["n"] == 1 and len(calls) == 1  # cached
    assert Stages(tmp_path, log=lambda m: None).run("a", {"k": 1}, fn)["n"] == 1  # cached across processes
    assert st.run("a", {"k": 2}, fn)["n"] == 2  # inputs changed
    manifest = json.loads((tmp_path / "a" / "stage.json").read_text())
    assert manifest["status"] == "done" and manifest["seconds"] >= 0
    t = st.timings()
    assert [r["cached"] for r in t] == [False, True, False] and t[1]["original_seconds"] is not None


def test_a_failing_atomic_stage_leaves_the_previous_result_whole(tmp_path):
    st = Stages(tmp_path, log=lambda m: None)
    st.run("a", 1, lambda d: (d / "f").write_text("old") and {})

    def boom(d):
        (d / "f").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        st.run("a", 2, boom)
    assert (tmp_path / "a" / "f").read_text() == "old"
    assert json.loads((tmp_path / "a" / "stage.json").read_text())["status"] == "done"


def test_an_inplace_stage_resumes_its_own_work_and_is_redone_for_other_inputs(tmp_path):
    st = Stages(tmp_path, log=lambda m: None)
    done = []

    def work(d, fail_at=None):
        for i in range(4):
            if (d / f"item{i}").exists():
                continue
            if i == fail_at:
                raise RuntimeError("killed")
            (d / f"item{i}").write_text("ok")
            done.append(i)
        return {}

    with pytest.raises(RuntimeError):
        st.run("s", 1, lambda d: work(d, fail_at=2), mode="inplace")
    assert not (tmp_path / "s" / "stage.json").exists()
    st.run("s", 1, work, mode="inplace")
    assert done == [0, 1, 2, 3]  # items 0 and 1 were not redone
    st.run("s", 2, work, mode="inplace")  # other inputs: the partial folder cannot be reused
    assert done == [0, 1, 2, 3, 0, 1, 2, 3]


def test_resolve_size():
    assert resolve_size(0.25, 1000, "x") == 250
    assert resolve_size(300, 1000, "x") == 300
    with pytest.raises(ConfigError, match="corpus holds"):
        resolve_size(5000, 1000, "plan.sizes")


@pytest.mark.parametrize("space", ["ppl", "log_ppl"])
def test_realisable_region_contains_every_subset_and_its_edges_are_attained(space):
    rng = np.random.default_rng(0)
    ppl = np.exp(rng.normal(3, 1, size=11))
    tokens = np.ones(11, dtype=np.int64)
    budget = 4
    reg = realisable_region(ppl, tokens, budget, space)
    x = np.log(ppl) if space == "log_ppl" else ppl
    subsets = np.array([(x[list(c)].mean(), x[list(c)].std()) for c in itertools.combinations(range(11), budget)])
    tol = 1e-9 * np.abs(subsets).max()
    inside = reg.contains(subsets[:, 0], subsets[:, 1] + tol) | reg.contains(subsets[:, 0], subsets[:, 1] - tol)
    assert inside.all(), f"{(~inside).sum()} of {len(subsets)} subsets fall outside the region"
    # the least and most spread subsets at each mean are on the edges: the region is not loose
    m = subsets[:, 0]
    assert np.isclose(reg.mean_range[0], m.min()) and np.isclose(reg.mean_range[1], m.max())
    assert np.isclose(reg.lower[:, 1].min(), subsets[:, 1].min())
    assert np.isclose(reg.upper[:, 1].max(), subsets[:, 1].max())
    assert not reg.contains(np.array([m.mean()]), np.array([subsets[:, 1].max() * 1.5]))[0]


def test_realisable_region_rejects_a_budget_beyond_the_corpus():
    with pytest.raises(BudgetError):
        realisable_region(np.array([1.0, 2.0]), np.array([3, 3]), 7)


def test_budget_bands_are_as_wide_as_the_final_selection_family():
    """plan.budget_bands: contiguous bands as wide as the narrowest band holding the final budget (the family
    pipeline.select.bands_at selects from), spread over the landscape; none without the final budget."""
    from pplaw.pipeline.select import bands_at
    from pplaw.pipeline.plan import make_regimes
    from pplaw.pipeline.sections import PlanSection

    cfg = PlanSection(windows=4, mixtures=1, budget_bands=3)
    regs = make_regimes(None, 20, cfg, max_size_tokens=1000, total_tokens=20000, space="log_ppl", final_share=0.3)
    bands = [r for r in regs if r.shape == "band"]
    assert [r.name for r in bands] == ["b0", "b1", "b2"]
    narrowest = min(hi - lo for lo, hi in bands_at(0.3, 20))
    for r in bands:
        (lo, hi), = r.quantiles
        assert hi - lo == pytest.approx(narrowest)
    assert bands[0].quantiles[0][0] == 0.0 and bands[-1].quantiles[0][1] == 1.0  # the landscape's two ends
    assert not [r for r in make_regimes(None, 20, cfg, 1000, 20000, "log_ppl") if r.shape == "band"]
    from pplaw.pipeline.recipe import RunRecipe, from_dict

    with pytest.raises(ConfigError, match="budget_bands"):
        from_dict(RunRecipe, {"world": {}, "plan": {"budget_bands": -1}})


def test_contiguous_pools_are_one_band():
    """plan.mixture_sampling: band samples a pool of neighbouring windows uniformly inside one stretch of bins
    (the family the final selection picks from); a pool with a gap cannot be a band."""
    from pplaw.pipeline.plan import contiguous_span

    assert contiguous_span([(0, 3), (3, 6)]) == (0, 6)
    assert contiguous_span([(4, 8), (0, 5)]) == (0, 8)
    assert contiguous_span([(0, 3), (4, 6)]) is None
    from pplaw.pipeline.recipe import RunRecipe, from_dict

    with pytest.raises(ConfigError, match="mixture_sampling"):
        from_dict(RunRecipe, {"world": {}, "plan": {"mixture_sampling": "moments"}})


def test_validation_at_twice_the_largest_share_survives_rounding_to_tokens(tmp_path):
    """0.2 and 0.1 of a 186,167-token corpus round to 37,233 and 18,617 tokens: 0.2 is still 2x 0.1 (the
    quickstart's world seed 5 was refused for it); a size clearly under 2x is still refused, naming the key."""
    import pyarrow as pa

    from pplaw.pipeline.plan import build_plan
    from pplaw.pipeline.sections import PlanSection

    n = 3000
    tokens = np.full(n, 62, dtype=np.int64)
    tokens[-1] += 186167 - int(tokens.sum())
    rng = np.random.default_rng(0)
    ppl = np.exp(rng.uniform(0.5, 9.0, n))
    table = pa.table({"chunk_id": np.arange(n, dtype=np.int64), "ppl": ppl, "n_scored": tokens})
    bins = (np.argsort(np.argsort(ppl)) * 20 // n).astype(np.int64)
    cfg = PlanSection(sizes=[0.05, 0.1], windows=3, mixtures=0, validation_sizes=[0.2], validation_regimes=2)
    plan = build_plan(table, bins, 20, cfg, space="log_ppl", out_dir=tmp_path / "a")
    assert plan["validation_sizes"] == [37233] and max(plan["sizes"]) == 18617
    with pytest.raises(ConfigError, match="plan.validation_sizes: 35,372 tokens is less than 2x"):
        build_plan(table, bins, 20, PlanSection(sizes=[0.05, 0.1], windows=3, mixtures=0, validation_sizes=[0.19]),
                   space="log_ppl", out_dir=tmp_path / "b")


def test_validation_is_on_by_default_at_twice_the_largest_size_in_either_unit():
    """plan.validation_sizes unset: one held-out size, 2x the largest fitting size in tokens, whether the sizes
    are shares or token counts; [] turns it off with the reason; a default that exceeds the corpus is skipped
    with the reason (never an error: it is the default)."""
    from pplaw.pipeline.plan import validation_tokens
    from pplaw.pipeline.sections import PlanSection, validation_warning

    cfg = PlanSection(sizes=[0.05, 0.1])
    assert cfg.validation_sizes is None and cfg.validation_regimes == 2 and validation_warning(cfg) is None
    assert validation_tokens(cfg, [9308, 18617], 186167) == ([37234], None)  # shares, resolved to tokens
    assert validation_tokens(PlanSection(sizes=[5000, 20000]), [5000, 20000], 10**6) == ([40000], None)
    off, why = validation_tokens(PlanSection(sizes=[0.1], validation_sizes=[]), [100], 1000)
    assert off == [] and "plan.validation_sizes: []" in why and "untested" in why
    skip, why = validation_tokens(PlanSection(sizes=[0.6]), [600], 1000)
    assert skip == [] and "1,200 tokens" in why and "exceeds the corpus (1,000 tokens)" in why
    assert validation_tokens(PlanSection(sizes=[0.1], validation_sizes=[0.3]), [100], 1000) == ([300], None)


def test_a_recipe_that_turns_validation_off_is_warned(tmp_path):
    from pplaw.pipeline.recipe import RunRecipe, from_dict
    from pplaw.pipeline.sections import validation_warning

    r = from_dict(RunRecipe, {"world": {}, "plan": {"validation_sizes": []}})
    w = validation_warning(r.plan)
    assert w.startswith("WARNING: no held-out validation runs (plan.validation_sizes: [])")
    assert validation_warning(from_dict(RunRecipe, {"world": {}}).plan) is None


def test_the_default_plan_holds_validation_points(tmp_path):
    import pyarrow as pa

    from pplaw.pipeline.plan import build_plan
    from pplaw.pipeline.sections import PlanSection

    n = 2000
    rng = np.random.default_rng(1)
    ppl = np.exp(rng.uniform(0.5, 9.0, n))
    table = pa.table({"chunk_id": np.arange(n, dtype=np.int64), "ppl": ppl, "n_scored": np.full(n, 50)})
    bins = (np.argsort(np.argsort(ppl)) * 20 // n).astype(np.int64)
    lead = build_plan(table, bins, 20, PlanSection(sizes=[0.05, 0.1], windows=3, mixtures=0), space="log_ppl",
                      out_dir=tmp_path / "lead")
    # the default family, 'lead', picks its regimes from the sweep's results: none in the plan, the size is
    assert PlanSection().validation_family == "lead" and lead["validation_sizes"] == [20000]
    assert not [p for p in lead["points"] if p["role"] == "validation"]
    plan = build_plan(table, bins, 20, PlanSection(sizes=[0.05, 0.1], windows=3, mixtures=0,
                                                   validation_family="window"), space="log_ppl", out_dir=tmp_path)
    val = [p for p in plan["points"] if p["role"] == "validation"]
    assert plan["validation_sizes"] == [20000] and plan["validation_note"] is None
    assert len(val) == 2 and all(p["status"] == "ok" and p["D"] >= 20000 for p in val)
    off = build_plan(table, bins, 20, PlanSection(sizes=[0.05, 0.1], windows=3, mixtures=0, validation_sizes=[]),
                     space="log_ppl", out_dir=tmp_path / "off")
    assert off["validation_sizes"] == [] and "untested" in off["validation_note"]
    assert not [p for p in off["points"] if p["role"] == "validation"]


def test_validation_runs_repeat_the_budget_bands_at_the_larger_size():
    # the held-out runs must be the same subset distribution at a larger D (what the final forecast
    # extrapolates): the budget bands when there are any, spread evenly; windows otherwise or on request
    from pplaw.pipeline.plan import Regime, validation_regimes

    regs = [Regime(name=f"w{i}", shape="window", bins=[i], quantiles=[(i / 10, (i + 1) / 10)]) for i in range(5)]
    regs += [Regime(name=f"b{i}", shape="band", bins=[i, i + 1], quantiles=[(i / 10, (i + 2) / 10)])
             for i in range(3)]
    assert [r.name for r in validation_regimes(regs, 3, "band")] == ["b0", "b1", "b2"]
    assert [r.name for r in validation_regimes(regs, 2, "band")] == ["b0", "b2"]
    assert [r.name for r in validation_regimes(regs, 3)] == ["w0", "w2", "w4"]  # the default: windows
    assert [r.name for r in validation_regimes(regs[:5], 3, "band")] == ["w0", "w2", "w4"]  # no bands: windows


def _lead_table(n=2000, seed=0):
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    ppl = np.exp(rng.uniform(0.5, 9.0, n))
    table = pa.table({"chunk_id": np.arange(n, dtype=np.int64), "ppl": ppl,
                      "n_scored": np.full(n, 50, dtype=np.int64)})
    return table, (np.argsort(np.argsort(ppl)) * 20 // n).astype(np.int64)


def test_lead_regimes_are_the_best_at_the_largest_fitting_size_with_distinct_bands():
    """validation_family 'lead': ranked by the mean loss over seeds at the largest fitting size (not the
    smaller one, not failed or held-out runs); two regimes that widen to the same band count once."""
    from pplaw.pipeline.plan import lead_regimes

    regs = [{"name": n, "shape": "window", "bins": [], "target": None, "quantiles": [q]}
            for n, q in (("w0", (0.0, 0.15)), ("w1", (0.15, 0.3)), ("w2", (0.3, 0.45)), ("w3", (0.45, 0.6)))]

    def r(reg, size_no, D, loss, seed=0, role="fit", status="ok"):
        return {"regime": reg, "size_no": size_no, "D": D, "domain_loss": loss, "seed": seed, "role": role,
                "status": status}

    rows = [r("w0", 0, 500, 0.1), r("w0", 1, 1000, 3.0), r("w1", 1, 1000, 2.0), r("w1", 1, 1000, 2.4, seed=1),
            r("w2", 1, 1000, 2.1), r("w3", 1, 1000, 1.0, status="failed"), r("w3", 2, 2000, 0.5, role="validation")]
    # w1: mean 2.2, w2: 2.1, w0: 3.0 at size 1 (w0's 0.1 at the small size and w3's failed/held-out rows ignored)
    lead = lead_regimes(rows, regs, 3, "domain_loss", 1500, 20, 100_000)
    assert [g["name"] for g, _ in lead] == ["w2", "w1", "w0"] and lead[0][1] == (0.3, 0.45)
    assert [g["name"] for g, _ in lead_regimes(rows, regs, 1, "domain_loss", 1500, 20, 100_000)] == ["w2"]
    # a final budget that widens w2 to 6 bins, [0.2, 0.5]: each leader is its band at the final budget
    assert lead_regimes(rows, regs, 1, "domain_loss", 24_000, 20, 100_000)[0][1] == (0.2, 0.5)
    # a final budget that widens every window to the whole landscape: all three are one band, one leader
    assert [g["name"] for g, _ in lead_regimes(rows, regs, 3, "domain_loss", 99_000, 20, 100_000)] == ["w2"]
    assert lead_regimes([], regs, 3, "domain_loss", 1500, 20, 100_000) == []


def test_lead_points_sample_each_leaders_final_band_at_the_validation_size(tmp_path):
    """Each leader's held-out run is its band at the *final budget* (plan.sample_band, as the best-sweep
    baseline finds it), sampled uniformly to the validation size: the final candidate's distribution at a
    smaller D. Written as an indices file, role validation, the next size_no; the plan itself holds no
    validation points for this family."""
    from pplaw.pipeline.plan import build_plan, lead_points, sample_band
    from pplaw.pipeline.recipe import PlanSection

    table, bins = _lead_table()
    cfg = PlanSection(sizes=[0.05, 0.1], windows=4, mixtures=0, validation_regimes=2, validation_family="lead")
    plan = build_plan(table, bins, 20, cfg, space="log_ppl", out_dir=tmp_path / "plan")
    assert plan["validation_sizes"] == [20_000] and all(p["role"] == "fit" for p in plan["points"])
    loss = {"w0": 3.0, "w1": 1.0, "w2": 2.0, "w3": 4.0}
    rows = [{"regime": p["regime"], "size_no": p["size_no"], "D": p["D"], "role": "fit", "status": "ok",
             "domain_loss": loss[p["regime"]] + p["size_no"], "seed": p["seed"]} for p in plan["points"]]
    plan["final_budget"] = 40_000  # as make_plan records it
    pts = lead_points(table, plan, rows, cfg, "domain_loss", tmp_path / "lead")
    assert [p["regime"] for p in pts] == ["w1", "w2"]
    reg = next(g for g in plan["regimes"] if g["name"] == "w1")
    _, band = sample_band(table, [tuple(q) for q in reg["quantiles"]], 40_000, 20, 0, 100_000)
    p = pts[0]
    assert p["id"] == "w1_D2_R0_s0" and p["role"] == "validation" and p["size_no"] == 2 and p["band"] == list(band)
    assert band[1] - band[0] >= 0.4  # widened to hold the final budget, not only the 20,000 validation tokens
    from pplaw.io import read_indices
    from pplaw.sampling import sample_subset

    idx = sample_subset(table, token_budget=20_000, quantile_window=band, seed=0, return_indices=True)
    assert sorted(read_indices(tmp_path / "lead" / p["indices"])[0].tolist()) == sorted(np.asarray(idx).tolist())
    assert 20_000 <= p["tokens"] < 21_000
