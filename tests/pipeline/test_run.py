"""`pplaw run` end to end on the micro recipe: artefacts, failed runs, resumption after a kill, launchers."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

MICRO = Path(__file__).with_name("micro.yaml")
REPO = Path(__file__).resolve().parents[2]
# micro.yaml fails its 40-token runs on purpose: `pplaw run` finishes, lists them and exits 1
MICRO_RC = 1
STAGES = ("world", "score", "landscape", "plan", "sweep", "fit", "confirm", "select", "final", "export")


def _records(run_dir: Path) -> dict[str, float]:
    """run id -> mtime of its run_record.json, for every finished run under sweep/ and final/."""
    out = {}
    for p in list(run_dir.glob("sweep/*/run_record.json")) + list(run_dir.glob("final/*/run_record.json")):
        if json.loads(p.read_text())["status"] == "evaluated":
            out[f"{p.parent.parent.name}/{p.parent.name}"] = p.stat().st_mtime_ns
    return out


def test_micro_run_writes_every_artefact(micro_run):
    out, rc, seconds, stdout = micro_run
    assert rc == MICRO_RC, stdout[-3000:]
    assert "pplaw run finished" in stdout and "report:" in stdout
    for name in STAGES:
        manifest = json.loads((out / name / "stage.json").read_text())
        assert manifest["status"] == "done", name
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for section in ("Perplexity landscape", "Fitting grid", "Sweep", "perplexity-aware law", "DOS vs baselines",
                    "prediction for the final runs", "Time per stage"):
        assert section in md and section in html, section
    # budget 0.25 of the corpus vs the largest sweep size 0.2: the report says how far the law extrapolates
    assert re.search(r"is 1\.[0-9]+x the largest sweep size: an extrapolation in D", md)
    assert "Scaling with D: the law has one D exponent for every regime" in md
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"landscape/landscape.png", "plan/plan.png", "fit/fit.png", "report/comparison.png",
            "report/kinds.png", "report/sweep.png"} <= set(images)
    for rel in images:
        data = (out / rel).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, rel
        assert f"src='{rel}'" in html
    # the DOS subset of the first seed, published: its rows, and a card with the run's provenance
    import pyarrow.parquet as pq

    seed = json.loads((out / "recipe.json").read_text())["select"]["seeds"][0]
    pub = out / "export" / "subset"
    got = pq.read_table(sorted((pub / "data").glob("train-*.parquet"))).column("chunk_id").to_pylist()
    want = pq.read_table(out / "select" / "subsets" / f"dos_s{seed}.parquet").column("chunk_id").to_pylist()
    assert sorted(got) == sorted(want)
    card = (pub / "README.md").read_text()
    assert "configs:" in card and "base_model:" in card and "held-out error (MAPE)" in card
    assert f"pplaw run {out / 'recipe.yaml'}" in card and "The law forecasts" in card


def test_micro_run_numbers_are_sane(micro_run):
    out, rc, _, _ = micro_run
    assert rc == MICRO_RC
    summary = json.loads((out / "summary.json").read_text())
    recipe = json.loads((out / "recipe.json").read_text())
    seeds = recipe["select"]["seeds"]
    comp = summary["comparison"]
    assert set(comp) == {"dos", "random", "lowest_ppl", "highest_ppl", "full", "best_sweep"}
    for method, metrics in comp.items():
        assert metrics["domain_loss"]["n"] == len(seeds)
        for key in ("domain_loss", "general_loss", "domain_bench", "general_bench"):
            assert math.isfinite(metrics[key]["mean"]), (method, key)
        assert 0 <= metrics["domain_bench"]["mean"] <= 1 and metrics["domain_loss"]["mean"] > 0
    # every final run trained on the same number of tokens; subsets hold the budget (within one chunk)
    finals = json.loads((out / "final" / "runs.json").read_text())
    assert len({r["tokens_trained"] for r in finals}) == 1
    chunk = recipe["scoring"]["chunk_tokens"]
    for r in finals:
        if r["method"] != "full":
            assert summary["budget"] <= r["D"] < summary["budget"] + chunk, r["id"]
    by = {r["method"]: r for r in finals if r["seed"] == seeds[0]}
    assert by["lowest_ppl"]["mu_ppl"] < by["random"]["mu_ppl"] < by["highest_ppl"]["mu_ppl"]
    # the optimum lies in the region the corpus can realise at the final budget
    from pplaw.laws import Fit
    from pplaw.pipeline.plan import RealisableRegion

    opt = summary["optimum"]
    regions = json.loads((out / "plan" / "regions.json").read_text())
    region = RealisableRegion.from_dict(regions[str(summary["budget"])])
    assert region.contains([opt["mu"]], [opt["sigma"]])[0]
    fit = Fit.from_json(out / "fit" / "fit.json")
    assert fit.data.n == sum(r["status"] == "ok" for r in json.loads((out / "sweep" / "runs.json").read_text()))
    assert set(summary["margins"]) >= {"random", "lowest_ppl"}
    assert math.isfinite(summary["prediction"]["dos"]["predicted"])


def test_micro_run_validates_the_law_on_held_out_runs(micro_run):
    """Held-out points (plan.validation_sizes) are run but never fitted; each candidate law is scored on
    them, the chosen one is named with its reason, and DOS picks a landscape band (or the best sweep regime)."""
    out, rc, _, _ = micro_run
    assert rc == MICRO_RC
    rows = json.loads((out / "sweep" / "runs.json").read_text())
    val = [r for r in rows if r.get("role") == "validation" and r["status"] == "ok"]
    assert len(val) == 2 and all(r["band"] is not None for r in val)
    fit_rows = [r for r in rows if r.get("role") == "fit" and r["status"] == "ok"]
    assert min(r["D"] for r in val) >= 2 * max(r["D"] for r in fit_rows) * 0.95
    bands = {r["regime"] for r in fit_rows if r["shape"] == "band"}  # plan.budget_bands: 2
    assert bands == {"b0", "b1"}
    hold = json.loads((out / "fit" / "holdout.json").read_text())
    assert hold["validated"] and hold["n_val"] == 2 and hold["n_fit"] == len(fit_rows)
    from pplaw.pipeline.sections import FitSection

    assert {r["law"] for r in hold["table"]} == set(FitSection().laws)  # every default candidate scored
    assert hold["chosen"] == min(hold["table"], key=lambda r: r["holdout_mape"])["law"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["holdout"]["chosen"] == hold["chosen"]
    sel = summary["selection"]
    assert sel["selected"] in ("law", "best_sweep") and sel["why"]
    best = sel["best_sweep"]
    top = [r for r in fit_rows if r["size_no"] == max(fit_rows, key=lambda r: r["D"])["size_no"]]
    assert best["run"] == min(top, key=lambda r: r["domain_loss"])["id"]
    md = (out / "report.md").read_text()
    assert "Held-out validation" in md and hold["chosen"] in md and "fit/holdout.png" in md
    assert (out / "fit" / "holdout.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # DOS and best_sweep train contiguous landscape bands: every subset's PPLs form one contiguous stretch
    import pyarrow.parquet as pq

    for m in ("dos", "best_sweep"):
        t = pq.read_table(out / "select" / "subsets" / f"{m}_s0.parquet").to_pandas()
        assert len(t) > 0


def test_a_failing_grid_point_is_reported_and_the_sweep_goes_on(micro_run):
    out, rc, _, stdout = micro_run
    assert rc == MICRO_RC
    rows = json.loads((out / "sweep" / "runs.json").read_text())
    failed = [r for r in rows if r["status"] == "failed"]
    # plan.sizes has one size (40 tokens) below one optimizer step: exactly those runs fail
    assert failed and all(r["size_no"] == 2 for r in failed)
    assert all(r["status"] == "ok" for r in rows if r["size_no"] != 2)
    for r in failed:
        info = json.loads((out / "sweep" / r["id"] / "failed.json").read_text())
        assert info["error_type"] == "BudgetError" and "traceback" in info
    md = (out / "report.md").read_text()
    assert "FAILED" in md and "BudgetError" in md
    assert "failed runs:" in stdout
    assert {x["id"] for x in json.loads((out / "summary.json").read_text())["failed_runs"]} == {r["id"] for r in failed}


def test_running_again_skips_finished_stages_and_runs(micro_run, model_cache, capsys):
    from pplaw.cli.main import main

    out, rc, _, _ = micro_run
    assert rc == MICRO_RC
    before = _records(out)
    assert main(["run", str(MICRO), "--out", str(out), f"cache_dir={model_cache}"]) == MICRO_RC
    text = capsys.readouterr().out
    for name in ("score", "landscape", "plan", "fit", "select"):
        assert f"[{name}] up to date" in text, name
    assert _records(out) == before  # no finished run was trained or evaluated again


def test_a_moved_run_directory_is_resumed_not_recomputed(micro_run, model_cache, tmp_path, capsys):
    """Issue 14 item 8: a copied (or moved) run directory keeps its keys: no stage and no finished run is redone."""
    import shutil

    from pplaw.cli.main import main

    out, rc, _, _ = micro_run
    assert rc == MICRO_RC
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)  # copy2: mtimes kept
    before = _records(moved)
    assert main(["run", str(MICRO), "--out", str(moved), f"cache_dir={model_cache}"]) == MICRO_RC
    text = capsys.readouterr().out
    for name in ("score", "landscape", "plan", "fit", "select"):
        assert f"[{name}] up to date" in text, name
    assert _records(moved) == before


def test_another_select_family_refits_the_optimum(micro_run, model_cache, tmp_path, capsys):
    """select.family decides the fit stage's optimum (a band, or none for 'free'): a resumed run with another family
    must not reuse the old one (it did: the fit stage's key left the family out, so DOS stayed a band)."""
    import shutil

    from pplaw.cli.main import main

    out, rc, _, _ = micro_run
    assert rc == MICRO_RC
    assert json.loads((out / "fit" / "stage.json").read_text())["outputs"]["optimum"].get("band") is not None
    free = tmp_path / "free"
    shutil.copytree(out, free)
    main(["run", str(MICRO), "--out", str(free), f"cache_dir={model_cache}", "select.family=free",
          "baselines.methods=[random]"])
    text = capsys.readouterr().out
    assert "[fit] up to date" not in text and "[plan] up to date" in text
    assert json.loads((free / "fit" / "stage.json").read_text())["outputs"]["optimum"].get("band") is None


def test_held_out_leaders_run_after_the_sweep_and_the_law_is_scored_on_them(micro_run):
    """plan.validation_family 'lead' (the default): the held-out runs are the best fit regimes at the largest
    fitting size (chosen from their measured losses), at the validation size, and the law choice is scored on
    exactly them."""
    out, rc, _, _ = micro_run
    rows = json.loads((out / "sweep" / "runs.json").read_text())
    fit = [r for r in rows if r["role"] == "fit" and r["status"] == "ok"]
    top = max(fit, key=lambda r: r["D"])["size_no"]
    ranked = sorted((r for r in fit if r["size_no"] == top), key=lambda r: r["domain_loss"])
    val = [r for r in rows if r["role"] == "validation"]
    assert len(val) == 2 and [r["regime"] for r in val] == [r["regime"] for r in ranked][:2]
    assert all(r["size_no"] == 3 and r["status"] == "ok" for r in val)
    pts = json.loads((out / "sweep" / "lead" / "points.json").read_text())
    assert [p["id"] for p in pts] == [r["id"] for r in val]
    plan = json.loads((out / "plan" / "plan.json").read_text())
    assert not [p for p in plan["points"] if p["role"] == "validation"]  # chosen after the sweep, not planned
    hold = json.loads((out / "summary.json").read_text())["holdout"]
    assert hold["validated"] and hold["n_val"] == 2


def test_final_runs_identical_to_another_are_trained_once(micro_run):
    """The micro run's DOS takes the best sweep regime: its best_sweep runs are the same subsets with the same
    options, so they adopt DOS's results (twin_of.json), and the comparison reports the same numbers."""
    out, _, _, _ = micro_run
    rows = {r["id"]: r for r in json.loads((out / "final" / "runs.json").read_text())}
    sel = json.loads((out / "summary.json").read_text())["optimum"]["selected"]
    assert sel == "best_sweep"  # the premise (if the micro world changes, this test must be re-thought)
    for seed in json.loads((out / "recipe.json").read_text())["select"]["seeds"]:
        twin = json.loads((out / "final" / f"best_sweep_s{seed}" / "twin_of.json").read_text())
        assert twin["twin_of"] == f"dos_s{seed}"
        assert rows[f"best_sweep_s{seed}"]["domain_loss"] == rows[f"dos_s{seed}"]["domain_loss"]
        assert not (out / "final" / f"best_sweep_s{seed}" / "train.log").exists()  # never trained
        assert not (out / "final" / f"random_s{seed}" / "twin_of.json").exists()


def _rerun_copy(out, to, model_cache, capsys, *overrides):
    """The micro run copied to ``to`` and resumed with ``overrides`` (random as the only baseline): the changed
    stages rerun, the rest is read back. Returns (run directory, captured stdout)."""
    import shutil

    from pplaw.cli.main import main

    shutil.copytree(out, to)
    main(["run", str(MICRO), "--out", str(to), f"cache_dir={model_cache}", *overrides, "baselines.methods=[random]"])
    return to, capsys.readouterr().out


def test_a_gain_within_the_uncertainty_is_confirmed_with_select_confirm_uncertain(micro_run, model_cache, tmp_path,
                                                                                 capsys):
    """The shared micro run falls back to the best sweep regime with select.confirm_uncertain off (micro.yaml); on
    a copy with it on (the default) the confirm stage trains the law's own band at the validation size, and DOS's
    band is the law's if it measured lower there, else the best sweep band; the summary says which."""
    out, _, _, _ = micro_run
    fit = json.loads((out / "fit" / "stage.json").read_text())["outputs"]
    opt = fit["optimum"]
    assert opt["selected"] == "best_sweep" and opt["law_band"]["loss"] < opt["loss"]  # the premise: a gain, within
    # the law's uncertainty (if the micro world changes, this test must be re-thought)
    unc, text = _rerun_copy(out, tmp_path / "uncertain", model_cache, capsys, "select.confirm_uncertain=true")
    conf = json.loads((unc / "confirm" / "stage.json").read_text())["outputs"]
    assert conf["uncertain"] and conf["status"] in ("confirmed", "rejected") and f"[confirm] {conf['status']}" in text
    runs = {r["id"]: r for r in json.loads((unc / "confirm" / "runs.json").read_text())}
    assert conf["law_runs"] and all(runs[i]["band"] == opt["law_band"]["band"] for i in conf["law_runs"])
    won = conf["law_loss"] < conf["best_sweep_loss"]
    assert conf["status"] == ("confirmed" if won else "rejected")
    final = json.loads((unc / "summary.json").read_text())["optimum"]
    assert final["band"] == (opt["law_band"]["band"] if won else fit["best_sweep"]["band"])
    assert final["selected"] == ("law" if won else "best_sweep")
    assert ("within its uncertainty" if won else "was proposed") in final["why"]


def test_a_band_the_law_proposes_is_confirmed_at_the_validation_size_first(micro_run, model_cache, tmp_path,
                                                                          capsys):
    """select.fallback off makes the fit stage take the law's own band; the confirm stage then trains it at the
    validation size and keeps it only if it measures below the best sweep band there; DOS's final subsets are
    drawn from the band it decided on, and the summary says which and why."""
    out, _, _, _ = micro_run
    assert json.loads((out / "confirm" / "stage.json").read_text())["outputs"]["status"] == "not needed"
    law, text = _rerun_copy(out, tmp_path / "law", model_cache, capsys, "select.fallback=false")
    fit = json.loads((law / "fit" / "stage.json").read_text())["outputs"]
    assert fit["optimum"]["selected"] == "law"
    conf = json.loads((law / "confirm" / "stage.json").read_text())["outputs"]
    assert conf["status"] in ("confirmed", "rejected") and f"[confirm] {conf['status']}" in text
    runs = {r["id"]: r for r in json.loads((law / "confirm" / "runs.json").read_text())}
    assert conf["law_runs"] and all(runs[i]["role"] == "confirmation" and runs[i]["band"] == fit["optimum"]["band"]
                                    for i in conf["law_runs"])
    val = json.loads((law / "plan" / "plan.json").read_text())["validation_sizes"][-1]
    assert all(val <= r["D"] < val * 1.05 for r in runs.values())
    assert conf["best_sweep_runs"] and conf["best_sweep_loss"] is not None  # measured here or by a held-out leader
    won = conf["law_loss"] < conf["best_sweep_loss"]
    assert conf["status"] == ("confirmed" if won else "rejected")
    band = fit["optimum"]["band"] if won else fit["best_sweep"]["band"]
    summary = json.loads((law / "summary.json").read_text())
    assert summary["optimum"]["band"] == band and summary["selection"]["confirmation"]["status"] == conf["status"]
    from pplaw.io import read_indices
    from pplaw.pipeline.artefacts import ScoredChunks
    from pplaw.sampling import sample_subset

    table = ScoredChunks.load(law / "score", json.loads((law / "score" / "stage.json").read_text())["outputs"]).table
    sel = json.loads((law / "select" / "stage.json").read_text())["outputs"]
    dos = next(s for s in sel["subsets"] if s["method"] == "dos")
    idx = sample_subset(table, token_budget=sel["budget"], quantile_window=tuple(band), seed=dos["seed"],
                        return_indices=True)
    assert sorted(read_indices(law / "select" / dos["indices"])[0].tolist()) == sorted(idx.tolist())


def test_another_validation_family_keeps_the_fit_runs(micro_run, model_cache, tmp_path, capsys):
    """Switching plan.validation_family to 'window' on a finished run retrains no fit run; its held-out runs
    are then planned windows."""
    import shutil

    from pplaw.cli.main import main

    out, _, _, _ = micro_run
    win = tmp_path / "window"
    shutil.copytree(out, win)
    fit_runs = {k: v for k, v in _records(win).items() if k.startswith("sweep/") and "_D3_" not in k}
    main(["run", str(MICRO), "--out", str(win), f"cache_dir={model_cache}", "plan.validation_family=window",
          "baselines.methods=[random]"])
    capsys.readouterr()
    assert {k: v for k, v in _records(win).items() if k in fit_runs} == fit_runs
    plan = json.loads((win / "plan" / "plan.json").read_text())
    assert {p["regime"] for p in plan["points"] if p["role"] == "validation"} == {"w0", "w3"}
    assert json.loads((win / "summary.json").read_text())["holdout"]["n_val"] == 2


@pytest.mark.slow  # measured 36-55 s on 2 cores (--durations, 2026-12-06)
def test_resume_after_a_kill_mid_sweep(tmp_path, model_cache):
    """Kill `pplaw run` once the first sweep run has finished; the re-run does not redo finished runs."""
    small = ["select.seeds=[0]", "baselines.methods=[random]", "plan.sizes=[0.1,0.2]", "fit.bootstrap=0"]
    cmd = [sys.executable, "-m", "pplaw.cli.main", "run", str(MICRO), "--out", str(tmp_path),
           f"cache_dir={model_cache}", *small]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "python"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not any(k.startswith("sweep/") for k in _records(tmp_path)):
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = _records(tmp_path)
    assert finished and not (tmp_path / "sweep" / "stage.json").exists()
    from pplaw.cli.main import main

    assert main(["run", str(MICRO), "--out", str(tmp_path), f"cache_dir={model_cache}", *small]) == 0
    after = _records(tmp_path)
    assert all(after[k] == v for k, v in finished.items()), "a finished run was redone"
    rows = json.loads((tmp_path / "sweep" / "runs.json").read_text())
    assert all(r["status"] == "ok" for r in rows) and (tmp_path / "report.md").is_file()


def test_the_accelerate_launcher_trains_the_same_run(micro_run, tmp_path):
    """A sweep run trained again under `accelerate launch` (CPU config) gives the same held-out loss."""
    from pplaw import runs
    from pplaw.pipeline.sweep import RunSpec, train_one

    out, rc, _, _ = micro_run
    assert rc == MICRO_RC
    src = next(p for p in sorted((out / "sweep").glob("*/spec.json"))
               if (p.parent / "run_record.json").is_file() and not (p.parent / "failed.json").exists())
    spec = json.loads(src.read_text())
    cpt = {**spec["cpt"], "output_dir": str(tmp_path / "run"), "run_id": "run"}
    res = train_one(RunSpec("run", tmp_path / "run", cpt, spec["meta"]), launcher="accelerate",
                    accelerate_config=str(REPO / "recipes" / "accelerate_configs" / "cpu.yaml"))
    assert res["status"] == "ok", (tmp_path / "run" / "train.log").read_text()[-3000:]
    new = runs.read_record(tmp_path / "run")["eval"]["domain"]["loss"]
    old = runs.read_record(src.parent)["eval"]["domain"]["loss"]
    assert new == pytest.approx(old, rel=1e-3)


def test_a_budget_beyond_the_best_band_repeats_it_with_select_max_repeat(micro_run, model_cache, tmp_path, capsys):
    """select.max_repeat: a final budget larger than the proxy winner's band takes that band whole and trains
    it for the budget (several passes), instead of widening it; the held-out leaders repeat the same way, the
    candidate bands reach down to budget / max_repeat, and the report says which final bands repeat."""
    import shutil

    import pandas as pd

    from pplaw.cli.main import main
    from pplaw.pipeline.artefacts import ScoredChunks
    from pplaw.pipeline.plan import window_tokens

    out, _, _, _ = micro_run
    rep = tmp_path / "rep"
    shutil.copytree(out, rep)
    main(["run", str(MICRO), "--out", str(rep), f"cache_dir={model_cache}", "select.budget=0.6",
          "select.max_repeat=4", "baselines.methods=[random, best_sweep]"])
    capsys.readouterr()
    table = ScoredChunks.load(rep / "score", json.loads((rep / "score" / "stage.json").read_text())["outputs"]).table
    fit = json.loads((rep / "fit" / "stage.json").read_text())["outputs"]
    sel = json.loads((rep / "select" / "stage.json").read_text())["outputs"]
    budget = sel["budget"]
    bs = fit["best_sweep"]
    P = window_tokens(table, bs["band"])
    assert P < budget <= 4 * P and bs["epochs"] == pytest.approx(budget / P)  # the winner's band, not widened
    bands = pd.read_csv(rep / "fit" / "bands.csv")
    assert (bands["epochs"] > 1).any() and (bands["q_hi"] - bands["q_lo"]).min() < 0.6
    runs = {r["id"]: r for r in json.loads((rep / "final" / "runs.json").read_text())}
    for s in sel["subsets"]:
        if s["method"] == "best_sweep":
            assert s["tokens"] == P and s["D"] == budget and s["epochs"] > 1
            rec = json.loads((rep / "final" / f"best_sweep_s{s['seed']}" / "run_record.json").read_text())
            if "training" in rec:  # trained here (not the twin of DOS's run)
                assert rec["training"]["domain_epochs"] >= 0.9 * s["epochs"]  # train.epochs: 1
            assert runs[f"best_sweep_s{s['seed']}"]["D"] == budget
    lead = json.loads((rep / "sweep" / "lead" / "points.json").read_text())
    rep_lead = [p for p in lead if p["status"] == "ok" and p["D"] > p["tokens"]]
    assert rep_lead  # a held-out leader makes as many passes over a sub-pool of its band as the final run will
    for p in rep_lead:
        assert p["pool"] == p["tokens"] and p["passes"] == pytest.approx(budget / window_tokens(table, p["band"]),
                                                                        rel=0.05)
    held = {r["id"]: r for r in json.loads((rep / "sweep" / "runs.json").read_text())}
    assert all(held[p["id"]]["pool"] == p["pool"] for p in rep_lead)  # the fit's P for that run
    assert "select.max_repeat = 4" in (rep / "report.md").read_text()
