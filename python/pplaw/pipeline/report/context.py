"""What the report is made from: the run's artefacts (:class:`ReportContext`), the methods and metrics it
compares, and the number formatting and comparisons every section shares."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pplaw.pipeline.artefacts import Inputs
from pplaw.pipeline.recipe import RunRecipe

METHOD_ORDER = ("dos", "best_sweep", "random", "lowest_ppl", "highest_ppl", "full")
METRICS = (("domain_loss", "domain loss", -1), ("domain_bench", "domain benchmark", +1),
           ("general_bench", "general benchmark", +1), ("general_loss", "general loss", -1))
BAND_KINDS = ("learnable", "hard")


@dataclass
class ReportContext:
    out: Path
    recipe: RunRecipe
    inputs: Inputs
    table: Any  # pyarrow Table of scored chunks (ppl, n_scored, chunk_id, doc_id)
    landscape: dict[str, Any]
    plan: dict[str, Any]
    sweep: list[dict[str, Any]]
    fit: dict[str, Any]
    budget: int
    region: Any
    finals: list[dict[str, Any]]
    timings: list[dict[str, Any]]
    total_seconds: float
    blocks: list[tuple] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# numbers


def fmt(x: Any, nd: int = 4) -> str:
    """A number for a table cell: ``-`` for None/NaN, thousands separators for integers, ``nd`` digits."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)):
        return f"{x:,}"
    return f"{x:.{nd}g}" if abs(x) >= 1e4 or abs(x) < 1e-3 else f"{x:.{nd}f}".rstrip("0").rstrip(".")


def mean_sd(vals: list[float], nd: int = 4) -> str:
    """``mean ± sd`` (sample sd) of the finite values, the value alone when there is one, ``-`` for none."""
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
    return f"{np.mean(vals):.{nd}f} ± {sd:.{nd}f}" if len(vals) > 1 else f"{vals[0]:.{nd}f}"


def kinds_of(ctx: ReportContext) -> np.ndarray | None:
    """Each chunk's kind from the diagnostics file (None without one). For the report only."""
    path, col = ctx.inputs.diagnostics, ctx.inputs.kind_column or "kind"
    if not path or "doc_id" not in ctx.table.column_names or not Path(path).is_file():
        return None
    diag = pd.read_json(path, lines=True) if str(path).endswith((".jsonl", ".json")) else pd.read_parquet(path)
    id_col = ctx.inputs.id_column or "doc_id"
    if id_col not in diag.columns or col not in diag.columns:
        return None
    mapping = dict(zip(diag[id_col].tolist(), diag[col].astype(str).tolist()))
    return np.array([mapping.get(d, "?") for d in ctx.table.column("doc_id").to_pylist()])


def composition(kinds: np.ndarray, idx: np.ndarray | None) -> dict[str, float]:
    sub = kinds if idx is None else kinds[idx]
    names = sorted(set(kinds))
    return {k: float(np.mean(sub == k)) for k in names}


def compare(finals: list[dict], base: str) -> dict[str, dict[str, Any]]:
    """DOS minus ``base`` per metric, paired by seed: mean and sd of the differences, seeds DOS wins."""
    by = {(r["method"], r["seed"]): r for r in finals if r["status"] == "ok"}
    out = {}
    for key, _, sign in METRICS:
        diffs = [by[("dos", s)][key] - by[(base, s)][key] for (m, s) in by if m == "dos" and (base, s) in by
                 and by[("dos", s)].get(key) is not None and by[(base, s)].get(key) is not None]
        if not diffs:
            continue
        wins = sum((d * sign) > 0 for d in diffs)
        losses = sum((d * sign) < 0 for d in diffs)
        mean = float(np.mean(diffs))
        sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan")
        if wins == len(diffs):
            verdict = "DOS better in every seed"
        elif losses == len(diffs):
            verdict = "DOS WORSE in every seed"
        elif wins == losses == 0:
            verdict = "no difference (equal in every seed)"
        else:
            verdict = f"not consistent: DOS better in {wins}, worse in {losses} of {len(diffs)} seeds"
        out[key] = {"mean": mean, "sd": sd, "wins": wins, "n": len(diffs), "verdict": verdict}
    return out
