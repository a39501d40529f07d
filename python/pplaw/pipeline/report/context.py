"""What the report is made from: the run's artefacts (:class:`ReportContext`) and the number formatting
every section shares. The numbers themselves are computed in :mod:`pplaw.pipeline.analysis`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pplaw.pipeline.artefacts import Inputs
from pplaw.pipeline.recipe import RunRecipe


@dataclass
class ReportContext:
    """The run's artefacts as the stages handed them on (:mod:`pplaw.pipeline.loop`), and the report's blocks
    as they are rendered."""

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
    notes: list[str] = field(default_factory=list)  # said next to the comparison (e.g. DOS took every chunk)
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


def mean_sd(stats: dict[str, float | None], nd: int = 4) -> str:
    """``mean ± sd`` from :func:`pplaw.pipeline.analysis.mean_sd_stats`: the mean alone when there is no sd
    (one value), ``-`` when there is no mean (no value)."""
    if stats["mean"] is None:
        return "-"
    return f"{stats['mean']:.{nd}f}" if stats["sd"] is None else f"{stats['mean']:.{nd}f} ± {stats['sd']:.{nd}f}"
