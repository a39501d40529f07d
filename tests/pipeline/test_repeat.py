"""select.max_repeat: a band shorter than the final budget is taken whole and repeated in training
(pipeline/plan.py's band_draw), instead of being widened to hold the budget."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pplaw._core", reason="the Rust extension is not built (run `make build`)")

from pplaw.exceptions import BudgetError, ConfigError  # noqa: E402
from pplaw.pipeline.plan import band_draw, sample_band, window_tokens  # noqa: E402
from pplaw.pipeline.select import bands_at, realise_bands  # noqa: E402


def _table(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({"chunk_id": np.arange(n, dtype=np.int64), "ppl": np.exp(rng.uniform(0.5, 9.0, n)),
                     "n_scored": rng.integers(30, 64, n).astype(np.int64)})


def _in_band(table, band):
    """Rows whose PPL lies between the band's token-weighted quantiles (computed here, independently)."""
    ppl, tok = table.column("ppl").to_numpy(), table.column("n_scored").to_numpy()
    order = np.argsort(ppl)
    cum = np.cumsum(tok[order]) / tok.sum()
    lo, hi = ppl[order][np.searchsorted(cum, band[0])], ppl[order][np.searchsorted(cum, band[1]) - 1]
    return np.flatnonzero((ppl >= lo) & (ppl <= hi))


def test_a_short_band_is_taken_whole_and_a_long_one_sampled():
    table = _table()
    total = int(np.asarray(table.column("n_scored")).sum())
    band = (0.3, 0.45)
    P = window_tokens(table, band)
    assert 0.13 * total < P < 0.17 * total
    whole, repeated = band_draw(table, band, int(2.5 * P), seed=3, max_repeat=3)
    assert repeated and np.array_equal(np.sort(whole), whole)
    assert int(np.asarray(table.column("n_scored")).take(whole).sum()) == P  # every chunk of the band, once
    inside = _in_band(table, band)
    assert len(set(whole.tolist()) ^ set(inside.tolist())) <= 2  # the band's own chunks (edge ties aside)
    part, repeated = band_draw(table, band, P // 2, seed=3, max_repeat=3)
    assert not repeated and set(part.tolist()) <= set(whole.tolist()) and len(part) < len(whole)


def test_a_band_too_short_even_repeated_is_refused_with_the_numbers():
    table = _table()
    P = window_tokens(table, (0.3, 0.45))
    with pytest.raises(BudgetError, match=r"holds [\d,]+ tokens: .* repeat it 4\.\d+ times, more than max_repeat = 3"):
        band_draw(table, (0.3, 0.45), int(4.2 * P), seed=0, max_repeat=3)
    with pytest.raises(BudgetError):  # max_repeat 1: the sampler's own error, as before
        band_draw(table, (0.3, 0.45), int(1.5 * P), seed=0)


def test_the_candidate_bands_reach_down_to_the_budget_over_max_repeat():
    widths = {round((b - a) * 20) for a, b in bands_at(0.3, 20)}
    assert min(widths) == 7
    widths = {round((b - a) * 20) for a, b in bands_at(0.3, 20, max_repeat=4)}
    assert min(widths) == 2 and max(widths) == 20
    table = _table()
    total = int(np.asarray(table.column("n_scored")).sum())
    budget = int(0.3 * total)
    cand = realise_bands(table, bands_at(0.3, 20, 4), budget, 0, "log_ppl", 4)
    short = cand[(cand["q_hi"] - cand["q_lo"]) < 0.29]
    assert len(short) and (short["epochs"] > 1.0).all() and (short["D"] == budget).all()
    assert (cand.loc[(cand["q_hi"] - cand["q_lo"]) > 0.32, "epochs"] == 1.0).all()
    with_one = realise_bands(table, bands_at(0.3, 20, 4), budget, 0, "log_ppl")  # max_repeat 1: short ones dropped
    assert (with_one["q_hi"] - with_one["q_lo"]).min() >= 0.3 - 1e-9


def test_the_proxy_winner_keeps_its_own_bins_when_they_hold_the_budget_over_max_repeat():
    table = _table()
    total = int(np.asarray(table.column("n_scored")).sum())
    window = [(0.3, 0.45)]
    _, widened = sample_band(table, window, int(0.3 * total), 20, 0, total)
    assert widened[1] - widened[0] >= 0.3
    idx, own = sample_band(table, window, int(0.3 * total), 20, 0, total, max_repeat=4)
    assert own == (0.3, 0.45)
    assert int(np.asarray(table.column("n_scored")).take(idx).sum()) == window_tokens(table, own)


@pytest.mark.parametrize("value", [0.5, 0, "2", float("nan"), 100])
def test_max_repeat_is_checked(value):
    from pplaw.pipeline.recipe import load_recipe

    with pytest.raises(ConfigError, match="select.max_repeat"):
        load_recipe(overrides=[("select.max_repeat", repr(value) if not isinstance(value, str) else f"'{value}'")])


@pytest.mark.parametrize("executor", ["memory", "stream"])
def test_final_subsets_of_a_short_band_are_the_band_trained_at_the_budget(tmp_path, executor):
    """DOS's band and the best-sweep band shorter than the budget: the whole band, D = the budget (what the
    final run trains for), epochs > 1; the streaming drawer gives the same rows as the in-memory one."""
    from pplaw.pipeline.recipe import load_recipe
    from pplaw.pipeline.select import select_subsets

    table = _table()
    d = tmp_path / "chunks"
    d.mkdir()
    pq.write_table(table.slice(0, 2000), d / "part-0.parquet")
    pq.write_table(table.slice(2000), d / "part-1.parquet")
    total = int(np.asarray(table.column("n_scored")).sum())
    budget = int(0.3 * total)
    recipe = load_recipe(overrides=[("baselines.methods", "[random, best_sweep]"), ("select.seeds", "[0, 1]"),
                                    ("select.executor", executor), ("select.max_repeat", "3")])
    opt = {"mu": 4.0, "sigma": 0.5, "band": [0.6, 0.75]}
    items = select_subsets(table, recipe, opt, budget, tmp_path / executor, best_sweep={"band": [0.3, 0.45]},
                           scored_dir=d)
    by = {(i["method"], i["seed"]): i for i in items}
    for m, band in (("dos", (0.6, 0.75)), ("best_sweep", (0.3, 0.45))):
        for s in (0, 1):
            it = by[(m, s)]
            assert it["tokens"] == window_tokens(table, band) and it["D"] == budget and it["epochs"] > 1.9
        rows = [pq.read_table(tmp_path / executor / by[(m, s)]["indices"]).column("row") for s in (0, 1)]
        assert rows[0].equals(rows[1])  # the whole band whatever the seed (the seed then only orders training)
    assert abs(by[("random", 0)]["D"] - budget) <= 64 and by[("random", 0)]["epochs"] == pytest.approx(1.0, abs=0.01)
    if executor == "stream":
        mem = select_subsets(table, load_recipe(overrides=[
            ("baselines.methods", "[random, best_sweep]"), ("select.seeds", "[0, 1]"), ("select.executor", "memory"),
            ("select.max_repeat", "3")]), opt, budget, tmp_path / "m", best_sweep={"band": [0.3, 0.45]})
        assert mem == items
        for i in items:
            assert pq.read_table(tmp_path / "m" / i["indices"]).equals(pq.read_table(tmp_path / "stream" / i["indices"]))


def test_max_repeat_needs_the_band_family():
    from pplaw.pipeline.recipe import load_recipe

    with pytest.raises(ConfigError, match="select.max_repeat = 2 repeats a band .* needs select.family: band"):
        load_recipe(overrides=[("select.max_repeat", "2"), ("select.family", "free")])
    assert load_recipe(overrides=[("select.max_repeat", "1"), ("select.family", "free")]).select.max_repeat == 1


def test_a_run_drawn_from_a_sub_pool_has_that_pool_as_its_P():
    from pplaw.pipeline.fit import fit_frame

    rows = [{"id": "a", "status": "ok", "domain_loss": 1.0, "R": 0.0, "band": [0.2, 0.4], "mu_log_ppl": 1.0,
             "sigma_log_ppl": 0.5, "D": 500},
            {"id": "b", "status": "ok", "domain_loss": 1.0, "R": 0.0, "band": [0.2, 0.4], "mu_log_ppl": 1.0,
             "sigma_log_ppl": 0.5, "D": 500, "pool": 250}]
    df = fit_frame(rows, "log_ppl", total_tokens=10_000)
    assert df["P"].tolist() == [pytest.approx(2000.0), 250.0]


def test_the_spline_repetition_term_values_passes_past_the_pool_as_the_data_constrained_law():
    from pplaw.exceptions import InvalidInputError
    from pplaw.laws import get_law_spec

    plain = get_law_spec("perplexity_spline")
    rep = get_law_spec("perplexity_spline:repeat=4")
    both = get_law_spec("perplexity_spline:pool=1,repeat=4")
    D, P = np.array([500.0, 1000.0, 2000.0, 4000.0]), np.full(4, 1000.0)
    assert "P" in rep.variables
    np.testing.assert_allclose(rep.log_d(D[:2], P[:2]), plain.log_d(D[:2]))  # one pass or less: unchanged
    r = D[2:] / 1000.0 - 1
    np.testing.assert_allclose(np.exp(rep.log_d(D[2:], P[2:])), 1000.0 * (1 + 4 * (1 - np.exp(-r / 4))))
    U = 1000.0 * (1 - np.exp(-1.0))  # the pool term's first pass
    np.testing.assert_allclose(np.exp(both.log_d(D[2:], P[2:])), U * (1 + 4 * (1 - np.exp(-r / 4))))
    assert np.all(np.diff(rep.log_d(D, P)) > 0)  # more passes still help, less each time
    with pytest.raises(InvalidInputError, match="repeat must be a decay constant"):
        get_law_spec("perplexity_spline:repeat=-1")


def test_repeat_candidates_join_the_default_laws_only_when_runs_repeat():
    from pplaw.pipeline.fit import candidate_laws
    from pplaw.pipeline.recipe import load_recipe

    assert not any("repeat=" in k for k in candidate_laws(load_recipe()))
    laws = candidate_laws(load_recipe(overrides=[("select.max_repeat", "4")]))
    assert {"perplexity_spline:repeat=4", "perplexity_spline:floor=0.3,repeat=15"} <= set(laws)
    own = candidate_laws(load_recipe(overrides=[("select.max_repeat", "4"), ("fit.laws", "[perplexity, perplexity_spline]")]))
    assert list(own) == ["perplexity", "perplexity_spline"]  # a list of one's own is kept as it is


@pytest.mark.slow
def test_select_executor_slurm_draws_the_same_subsets_as_one_table(tmp_path):
    """select.executor: slurm runs the streaming passes as a Slurm job array from the recipe's slurm: section
    (slurm.cluster: local: submitit's local executor, the real-cluster path differs only in sbatch); the band
    draws, DOS to a free (mu, sigma) and random equal the in-memory ones."""
    pytest.importorskip("submitit")
    from pplaw.pipeline.recipe import load_recipe
    from pplaw.pipeline.select import select_subsets

    table = _table()
    d = tmp_path / "chunks"
    d.mkdir()
    pq.write_table(table.slice(0, 2000), d / "part-0.parquet")
    pq.write_table(table.slice(2000), d / "part-1.parquet")
    budget = int(0.3 * int(np.asarray(table.column("n_scored")).sum()))
    common = [("baselines.methods", "[random, best_sweep]"), ("select.seeds", "[0]")]
    opt = {"mu": 4.0, "sigma": 0.5, "band": [0.2, 0.6]}
    for family_opt in (opt, {"mu": 4.0, "sigma": 0.8, "band": None}):
        mem = select_subsets(table, load_recipe(overrides=[*common, ("select.executor", "memory")]), family_opt,
                             budget, tmp_path / "m", best_sweep={"band": [0.3, 0.7]})
        rec = load_recipe(overrides=[*common, ("select.executor", "slurm"), ("slurm.cluster", "local"),
                                     ("slurm.poll_s", "0.5"), ("slurm.array_parallelism", "2")])
        got = select_subsets(table, rec, family_opt, budget, tmp_path / "s", best_sweep={"band": [0.3, 0.7]},
                             scored_dir=d)
        assert got == mem
        for i in got:
            assert pq.read_table(tmp_path / "m" / i["indices"]).equals(pq.read_table(tmp_path / "s" / i["indices"]))
    assert "cluster: local" in (tmp_path / "s" / "slurm.yaml").read_text()
