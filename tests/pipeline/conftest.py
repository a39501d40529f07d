"""Fixtures of the pipeline tests: the micro recipe and one finished micro run per session."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

MICRO = Path(__file__).with_name("micro.yaml")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Shared cache of synthetic base models: the micro world's model is pretrained once per session."""
    return tmp_path_factory.mktemp("pplaw-cache")


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory, model_cache):
    """`pplaw run tests/pipeline/micro.yaml` run once, through the command line's entry point.

    Returns (run directory, exit code, seconds, captured stdout)."""
    import contextlib
    import io

    from pplaw.cli.main import main

    out = tmp_path_factory.mktemp("micro-run")
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = main(["run", str(MICRO), "--out", str(out), f"cache_dir={model_cache}"])
    return out, rc, time.perf_counter() - t0, buf.getvalue()


def _final(method, seed, loss, bench):
    return {"id": f"{method}_s{seed}", "method": method, "seed": seed, "D": 100, "status": "ok", "error": None,
            "mu_ppl": 10.0 + seed, "sigma_ppl": 2.0, "domain_loss": loss, "domain_bench": bench,
            "general_bench": None, "general_loss": 3.0}


def _sweep(regime, D, loss, status="ok"):
    return {"id": f"{regime}_{D}", "regime": regime, "shape": "window", "size_no": 0, "R": 0.0, "seed": 0, "D": D,
            "status": status, "error": None if status == "ok" else "too small", "mu_ppl": 10.0, "sigma_ppl": 2.0,
            "domain_loss": loss, "general_loss": 3.0}


@pytest.fixture
def report_ctx(tmp_path, monkeypatch):
    """A finished run made by hand (no training, no fit): what the report of a run is rendered from. Its
    numbers are worked out by hand in test_analysis.py; the browser test renders its report.html."""
    import json

    import pyarrow as pa

    from pplaw.pipeline import analysis as A
    from pplaw.pipeline.artefacts import Inputs
    from pplaw.pipeline.recipe import load_recipe
    from pplaw.pipeline.report import ReportContext

    # the law's forecast reads the fit's file; here it is a fixed number, so the test needs no fit
    monkeypatch.setattr(A, "predict", lambda fit, mu, sigma, D, pool: {"prediction": 4.0, "lo": 3.5, "hi": 4.5})
    monkeypatch.setattr(A, "final_pool", lambda method, D, fit, total: None)
    diag = tmp_path / "diag.jsonl"
    kinds = ["learnable"] * 4 + ["noise"] * 4
    diag.write_text("".join(json.dumps({"doc_id": i, "kind": k}) + "\n" for i, k in enumerate(kinds)))
    out = tmp_path / "run"
    out.mkdir()
    table = pa.table({"ppl": [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0], "n_scored": [25] * 8,
                      "doc_id": list(range(8))})
    fit = {"fit": "fit.json", "plots": [], "summary": "fit_summary.txt", "law": "a law", "n_runs": 4,
           "metrics": {"r2": 0.9, "rmse": 0.1, "mape": 1.0}, "params": {"aD": 0.6},
           "optimum": {"mu": 2.5, "sigma": 1.0, "ci": {"mu": [2.0, 3.0]}, "level": 0.95, "region": "region",
                       "selected": "law", "why": "lower", "band": [0.0, 0.5]},
           "best_sweep": {"regime": "a", "run": "a_100", "loss": 4.2, "band": [0.0, 0.5]},
           "law_choice": {"chosen": "a law", "validated": False, "reason": "no held-out points"}}
    return ReportContext(
        out=out, recipe=load_recipe(MICRO), inputs=Inputs(base_model="m", domain_corpus="c", id_column="doc_id",
                                                          diagnostics=str(diag)),
        table=table, landscape={"summary": {"mean": 13.75, "std": 14.0, "log_mean": 2.0, "log_std": 1.0},
                                "edges": [1.0, 5.0, 40.0]},
        plan={"regimes": ["a", "b"], "sizes": [100, 200], "total_tokens": 200,
              "points": [{"id": "p0", "status": "ok", "reason": None},
                         {"id": "p1", "status": "unreachable", "reason": "too narrow"}]},
        sweep=[_sweep("a", 100, 4.0), _sweep("a", 400, 2.0), _sweep("b", 100, 4.0), _sweep("b", 400, 4.0),
               _sweep("b", 10, None, status="failed")],
        fit=fit, budget=100, region=None,
        finals=[_final("dos", 0, 4.0, 0.5), _final("dos", 1, 4.2, 0.6), _final("random", 0, 4.5, 0.4),
                _final("random", 1, 4.1, 0.4), {**_final("lowest_ppl", 0, 9.0, 0.0), "status": "failed"}],
        timings=[], total_seconds=1.0)
