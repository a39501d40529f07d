"""Landscape, sampling and DOS over a directory of scored shards in bounded memory (see :mod:`pplaw.stream`)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pyarrow as pa

from pplaw import sampling as S
from pplaw.exceptions import InvalidInputError
from pplaw.stream.cut import _cut_select
from pplaw.stream.scan import Scan, landscape_from_dir, scan_dir
from pplaw.stream.shards import iter_pieces
from pplaw.stream.write import Selection, _write_selection

# Target sampling / DOS run the in-memory core (identical to pplaw.sample_subset / select_dos) up to this
# many chunks: about 90 bytes a chunk at its peak, so 0.5 GB; beyond it, the streaming tilted draw.
EXACT_LIMIT = 5_000_000

__all__ = ["EXACT_LIMIT", "Scan", "Selection", "dos_dir", "drawer", "landscape_from_dir", "sample_dir", "scan_dir"]


def sample_dir(path: str | os.PathLike | Scan, *, token_budget: int, target_mean: float | None = None,
               target_std: float | None = None, space: str = "ppl", ppl_window: Any = None,
               quantile_window: Any = None, seed: int = 0, ppl_column: str = "ppl",
               tokens_column: str = "n_scored", chunk_id_column: str | None = "chunk_id",
               out: str | os.PathLike | None = None, executor: str = "local", exact_limit: int = EXACT_LIMIT,
               progress: bool | None = None, keep_rows: bool | None = None) -> Selection:
    """:func:`pplaw.sample_subset` over a scored directory, shard by shard.

    Without targets (a uniform draw, in a ``quantile_window`` band or a ``ppl_window``) the subset is the
    in-memory one exactly (same rows), at any size. With targets: on up to ``exact_limit`` chunks the
    in-memory core runs on the three needed columns (same rows); beyond, the tilted order sample of the
    core is drawn shard by shard with the tilt fitted on the landscape's grid and a global cut (budget rule
    exact: ``B <= tokens < B + w_max``); its mean is checked within 1% and its std within 2% of the
    targets (UnreachableTargetError otherwise), the core's final local search is not run."""
    space = S._check_space(space)
    budget = S._check_budget(token_budget)
    mean, std = S._check_targets(target_mean, target_std, space, required=False)
    pwin = S._check_window(ppl_window, "ppl_window", lo_min=0.0, hi_max=math.inf)
    qwin = S._check_window(quantile_window, "quantile_window", lo_min=0.0, hi_max=1.0)
    seed = S._check_seed(seed)
    scan = _scan_of(path, ppl_column, tokens_column, chunk_id_column, executor, progress)
    kr = out is None if keep_rows is None else bool(keep_rows)
    request = dict(token_budget=budget, target_mean=mean, target_std=std, space=space, ppl_window=pwin,
                   quantile_window=qwin, seed=seed)
    if mean is None and std is None:
        return _cut_select(scan, budget, space, pwin, qwin, seed, None, out, executor, progress, request,
                           keep_rows=kr)
    if scan.n_rows <= exact_limit:
        def run(table: pa.Table) -> np.ndarray:
            return S.sample_subset(table, ppl_window=pwin, quantile_window=qwin, return_indices=True,
                                   **_in_memory_args(scan, request))
        return _exact_select(scan, run, out, executor, progress, request, kr)
    tilt = dict(mean=mean, std=std)
    sel = _cut_select(scan, budget, space, pwin, qwin, seed, tilt, out, executor, progress, request,
                      check=(mean, std), keep_rows=kr)
    return sel


def dos_dir(path: str | os.PathLike | Scan, *, token_budget: int, target_mean: float, target_std: float,
            space: str = "ppl", weights: Any = None, seed: int = 0, ppl_column: str = "ppl",
            tokens_column: str = "n_scored", chunk_id_column: str | None = "chunk_id",
            out: str | os.PathLike | None = None, executor: str = "local", exact_limit: int = EXACT_LIMIT,
            progress: bool | None = None, keep_rows: bool | None = None) -> Selection:
    """:func:`pplaw.select_dos` over a scored directory. Up to ``exact_limit`` chunks: the in-memory core
    (same rows). Beyond: DOS's interior candidate, the tilted order sample to ``(mu*, sigma*)`` (drawn as
    in :func:`sample_dir`), without the core's local search, so ``J`` is at the sampling-noise level
    ``O(1/chunks)`` instead of ~0; a target outside the realisable region raises UnreachableTargetError
    there (the core would return the closest boundary subset)."""
    space = S._check_space(space)
    budget = S._check_budget(token_budget)
    mean, std = S._check_targets(target_mean, target_std, space, required=True)
    w_mu, w_s = S._check_weights(weights)
    if std == 0 and w_s is None:
        raise InvalidInputError("target_std is 0: the default weight of the std term (1/target_std^4) is "
                                "undefined; give both weights: weights=(w_mu, w_sigma)")
    seed = S._check_seed(seed)
    scan = _scan_of(path, ppl_column, tokens_column, chunk_id_column, executor, progress)
    kr = out is None if keep_rows is None else bool(keep_rows)
    request = dict(token_budget=budget, target_mean=mean, target_std=std, space=space, seed=seed)
    if scan.n_rows <= exact_limit:
        def run(table: pa.Table) -> np.ndarray:
            return S.select_dos(table, weights=(w_mu, w_s) if w_mu is not None or w_s is not None else None,
                                return_indices=True, **_in_memory_args(scan, request))
        return _exact_select(scan, run, out, executor, progress, {**request, "weights": (w_mu, w_s)}, kr)
    if std == 0:
        raise InvalidInputError(f"target_std = 0: streaming DOS (over {scan.n_rows:,} chunks, more than "
                                f"exact_limit = {exact_limit:,}) needs a spread to tilt to; raise exact_limit")
    return _cut_select(scan, budget, space, None, None, seed, dict(mean=mean, std=std), out, executor,
                       progress, {**request, "weights": (w_mu, w_s)}, check=None, what="DOS", keep_rows=kr)


def _scan_of(path: Any, ppl_column: str, tokens_column: str, chunk_id_column: str | None, executor: str,
             progress: bool | None) -> Scan:
    if isinstance(path, Scan):
        return path
    return scan_dir(path, ppl_column=ppl_column, tokens_column=tokens_column, chunk_id_column=chunk_id_column,
                    executor=executor, progress=progress)


def _in_memory_args(scan: Scan, request: dict) -> dict:
    c = scan.columns
    return dict(token_budget=request["token_budget"], target_mean=request["target_mean"],
                target_std=request["target_std"], space=request["space"], seed=request["seed"],
                ppl_column=c.ppl, tokens_column=c.tokens, chunk_id_column=c.chunk_id)


def _exact_select(scan: Scan, run: Any, out: Any, executor: str, progress: bool | None,
                  request: dict, keep_rows: bool = True) -> Selection:
    """The in-memory core on the three needed columns of every shard (read piece by piece)."""
    c = scan.columns
    parts: dict[str, list] = {c.ppl: [], c.tokens: [], **({c.chunk_id: []} if c.chunk_id else {})}
    for f, start in zip(scan.files, scan.starts):
        for p in iter_pieces(f, start, c):
            parts[c.ppl].append(p.ppl)
            parts[c.tokens].append(p.tokens)
            if c.chunk_id:
                parts[c.chunk_id].append(p.chunk_id)
    table = pa.table({k: np.concatenate(v) for k, v in parts.items()})
    rows = np.asarray(run(table), dtype=np.uint64)
    del table, parts
    return _write_selection(scan, {"rows": rows}, out, executor, progress, request, "exact", None, keep_rows)


def drawer(table: Any, scored_dir: Any = None, executor: str = "memory") -> tuple[Any, Any]:
    """``(sample, dos)``: callables with :func:`pplaw.sample_subset` / :func:`pplaw.select_dos`'s keywords
    returning sorted row indices, drawn from ``table`` in memory (``executor="memory"``) or shard by shard
    from ``scored_dir`` (``"stream"``; ``"ray"``: the passes as Ray tasks; ``"slurm:RECIPE.yaml"``: as a Slurm
    job array, :mod:`pplaw.stream.slurm`), one pass 1 shared by all draws. The pipeline's select stage uses it
    (``select.executor``)."""
    from pplaw.sampling import sample_subset, select_dos

    slurm = isinstance(executor, str) and executor.startswith("slurm:") and len(executor) > len("slurm:")
    if executor not in ("memory", "stream", "ray") and not slurm:
        raise InvalidInputError(f"select.executor: expected memory, stream, ray or slurm:RECIPE.yaml, got {executor!r}")
    if executor == "memory" or scored_dir is None:
        return (lambda **kw: sample_subset(table, return_indices=True, **kw),
                lambda **kw: select_dos(table, return_indices=True, **kw))
    ex = executor if slurm else "ray" if executor == "ray" else "local"
    scan = scan_dir(scored_dir, executor=ex, progress=False)
    return (lambda **kw: sample_dir(scan, executor=ex, progress=False, **kw).rows,
            lambda **kw: dos_dir(scan, executor=ex, progress=False, **kw).rows)
