"""Subsets of scored chunks: statistics, sampling to a target, Distance-to-Optimum Selection (DOS).

All three take the same inputs as :class:`pplaw.Landscape` (a ``datasets.Dataset`` - its ``select``/
``shuffle``/``filter`` mapping is honoured without being materialised -, a pyarrow/polars/pandas table or a
mapping of column name -> array) and do their work in the Rust core (:mod:`pplaw._core`) with the GIL
released.

Statistics of a subset S follow docs/architecture.md (Definitions): ``mean``/``std`` of chunk PPL (``space="ppl"``, the default, as
in the paper) or of log-PPL (``space="log_ppl"``); unweighted over chunks when they all have the same
token count, token-weighted otherwise (``weighting="auto"``).

Determinism: each chunk's random key is a hash of ``(seed, chunk_id)``. With a ``chunk_id`` column the
subset is the same whatever the row order or the shard split of the input; without one the logical row
number stands in for the id.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from pplaw import _columns
from pplaw.exceptions import BudgetError, InvalidInputError

Space = Literal["ppl", "log_ppl"]
SPACES = ("ppl", "log_ppl")
WEIGHTINGS = ("auto", "chunks", "tokens")


_core = _columns.core


# ----------------------------------------------------------------------------------------------------------
# argument checks (before any work, with the argument's name in the message)


def _check_space(space: Any) -> str:
    if space not in SPACES:
        raise InvalidInputError(f"space: expected one of {SPACES}, got {space!r}")
    return space


def _check_budget(token_budget: Any) -> int:
    if isinstance(token_budget, bool) or not isinstance(token_budget, numbers.Real):
        raise BudgetError(f"token_budget: expected a positive number of tokens, got {token_budget!r}")
    if not math.isfinite(token_budget) or token_budget <= 0:
        raise BudgetError(f"token_budget: must be a positive, finite number of tokens, got {token_budget!r}")
    if token_budget != int(token_budget):
        raise BudgetError(f"token_budget: must be a whole number of tokens, got {token_budget!r}")
    return int(token_budget)


def _check_number(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidInputError(f"{name}: expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise InvalidInputError(f"{name}: must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise InvalidInputError(f"{name}: must be >= 0, got {value!r}")
    return float(value)


def _check_targets(target_mean: Any, target_std: Any, space: str, *, required: bool) -> tuple:
    if required and (target_mean is None or target_std is None):
        raise InvalidInputError("target_mean and target_std are both required for Distance-to-Optimum Selection")
    if target_std is not None and target_mean is None:
        raise InvalidInputError("target_std: a target standard deviation needs a target_mean too")
    mean = _check_number(target_mean, "target_mean", positive=space == "ppl")
    # sampling needs a spread to aim at (its tolerance is relative); DOS may ask for sigma* = 0
    std = _check_number(target_std, "target_std", positive=not required, nonneg=required)
    return mean, std


def _check_window(window: Any, name: str, *, lo_min: float, hi_max: float) -> tuple[float, float] | None:
    if window is None:
        return None
    if isinstance(window, (str, bytes)) or not isinstance(window, Sequence) or len(window) != 2:
        raise InvalidInputError(f"{name}: expected a pair (lo, hi), got {window!r}")
    lo = _check_number(window[0], f"{name}[0] (lo)")
    hi = _check_number(window[1], f"{name}[1] (hi)")
    if not lo < hi:
        raise InvalidInputError(f"{name}: lo must be < hi, got ({lo}, {hi})")
    if lo < lo_min or hi > hi_max:
        raise InvalidInputError(f"{name}: must lie within [{lo_min}, {hi_max}], got ({lo}, {hi})")
    return lo, hi


def _window_kwargs(pwin: tuple[float, float] | None, qwin: tuple[float, float] | None) -> dict[str, float | None]:
    """The core's window arguments from checked ``ppl_window`` / ``quantile_window`` pairs."""
    return {"ppl_min": pwin[0] if pwin else None, "ppl_max": pwin[1] if pwin else None,
            "quantile_min": qwin[0] if qwin else None, "quantile_max": qwin[1] if qwin else None}


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise InvalidInputError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def _check_weights(weights: Any) -> tuple[float | None, float | None]:
    if weights is None:
        return None, None
    if isinstance(weights, Mapping):
        unknown = set(weights) - {"mu", "sigma", "w_mu", "w_s"}
        if unknown:
            raise InvalidInputError(f"weights: unknown key(s) {sorted(unknown)}; use 'mu' and 'sigma'")
        w_mu, w_s = weights.get("mu", weights.get("w_mu")), weights.get("sigma", weights.get("w_s"))
    elif isinstance(weights, Sequence) and not isinstance(weights, (str, bytes)) and len(weights) == 2:
        w_mu, w_s = weights
    else:
        raise InvalidInputError(f"weights: expected (w_mu, w_s) or {{'mu': w_mu, 'sigma': w_s}}, got {weights!r}")
    return _check_number(w_mu, "weights (w_mu)", nonneg=True), _check_number(w_s, "weights (w_s)", nonneg=True)


def _columns_of(data: Any, ppl_column: str, tokens_column: str, chunk_id_column: str | None) -> _columns.Columns:
    return _columns.resolve(
        data, ppl_column=ppl_column, tokens_column=tokens_column, chunk_id_column=chunk_id_column
    )


def _is_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("datasets") and hasattr(data, "select") and hasattr(data, "_indices")


def _result(data: Any, indices: pa.Array, return_indices: bool, op: str, request: dict[str, Any]) -> Any:
    """The selection as ``data.select(idx)`` for a Dataset (an indices mapping over the same Arrow table, no
    copy of the rows), else the index array.

    The view's fingerprint chains onto the input's: a hash of (input fingerprint, ``op``, the checked
    ``request``), which determine the subset (seeded, deterministic). That saves ``datasets`` hashing the
    index array and makes the same call give the same fingerprint (so later ``map``/``filter`` on the view
    hit their cache)."""
    # uint64 Arrow -> numpy without a copy (no nulls, one buffer).
    idx = np.asarray(indices.to_numpy(zero_copy_only=True), dtype=np.uint64)
    if _is_dataset(data) and not return_indices:
        from pplaw._fingerprint import sha

        fingerprint = sha({"parent": getattr(data, "_fingerprint", None), "op": f"pplaw.{op}", **request})
        return data.select(idx, new_fingerprint=fingerprint)
    return idx


# ----------------------------------------------------------------------------------------------------------
# public API


def subset_stats(
    data: Any,
    selection: Any,
    *,
    space: Space = "ppl",
    weighting: Literal["auto", "chunks", "tokens"] = "auto",
    ppl_column: str = "ppl",
    tokens_column: str = "n_scored",
) -> dict[str, float]:
    """Statistics of the chunks ``selection`` picks out of ``data``.

    ``selection``: logical row indices (any integer array-like; duplicates count twice) or a boolean mask
    with one value per row. Returns ``{"count", "tokens", "mean", "std"}`` in ``space``. ``weighting``:
    ``"auto"`` (unweighted when all selected chunks have the same token count, token-weighted otherwise),
    ``"chunks"`` or ``"tokens"``.
    """
    space = _check_space(space)
    if weighting not in WEIGHTINGS:
        raise InvalidInputError(f"weighting: expected one of {WEIGHTINGS}, got {weighting!r}")
    cols = _columns_of(data, ppl_column, tokens_column, None)
    sel = _columns.as_selection(selection, cols.n_rows)
    return dict(cols.call(_core().subset_stats, cols.ppl, cols.tokens, sel, space=space, weighting=weighting,
                          **cols.core_kwargs()))


def realisable_range(
    data: Any,
    *,
    token_budget: int,
    space: Space = "ppl",
    ppl_window: tuple[float, float] | None = None,
    quantile_window: tuple[float, float] | None = None,
    ppl_column: str = "ppl",
    tokens_column: str = "n_scored",
) -> dict:
    """What a subset of ``token_budget`` tokens can realise: ``{"mean": (lo, hi), "std": (lo, hi), ...}``
    in ``space``, within the optional windows. The same ranges
    :class:`~pplaw.exceptions.UnreachableTargetError` reports for a target out of reach.
    """
    return dict(_region_call("realisable_range", data, token_budget, space, ppl_window, quantile_window,
                             ppl_column, tokens_column))


def realisable_edges(
    data: Any,
    *,
    token_budget: int,
    space: Space = "ppl",
    ppl_window: tuple[float, float] | None = None,
    quantile_window: tuple[float, float] | None = None,
    ppl_column: str = "ppl",
    tokens_column: str = "n_scored",
) -> tuple[np.ndarray, np.ndarray]:
    """The two edges of the region :func:`realisable_range` bounds, as ``(lower, upper)``: (k, 2) arrays of
    (mean, std) in ``space``. ``lower`` holds every shortest contiguous run of the PPL ranking with at least
    ``token_budget`` tokens (the least spread for its mean), ``upper`` every "lowest chunks + highest tail"
    split (the most spread), both in the order of the run's (the split's) start; exact prefix sums in the core.
    """
    lower, upper = _region_call("realisable_edges", data, token_budget, space, ppl_window, quantile_window,
                                ppl_column, tokens_column)
    return _points(lower), _points(upper)


def _region_call(fn: str, data: Any, token_budget: int, space: Space, ppl_window: Any, quantile_window: Any,
                 ppl_column: str, tokens_column: str) -> Any:
    """The core's region function ``fn`` on checked arguments (the checks and columns both region APIs share)."""
    space = _check_space(space)
    budget = _check_budget(token_budget)
    pwin = _check_window(ppl_window, "ppl_window", lo_min=0.0, hi_max=math.inf)
    qwin = _check_window(quantile_window, "quantile_window", lo_min=0.0, hi_max=1.0)
    cols = _columns_of(data, ppl_column, tokens_column, None)
    return cols.call(getattr(_core(), fn), cols.ppl, cols.tokens, token_budget=budget, space=space,
                     **_window_kwargs(pwin, qwin), **cols.core_kwargs())


def _points(batch: pa.RecordBatch) -> np.ndarray:
    """(k, 2) float64 (mean, std) of a ``realisable_edges`` record batch."""
    return np.column_stack([batch.column("mean").to_numpy(), batch.column("std").to_numpy()]).astype(np.float64)


def sample_subset(
    data: Any,
    *,
    token_budget: int,
    target_mean: float | None = None,
    target_std: float | None = None,
    space: Space = "ppl",
    ppl_window: tuple[float, float] | None = None,
    quantile_window: tuple[float, float] | None = None,
    seed: int = 0,
    ppl_column: str = "ppl",
    tokens_column: str = "n_scored",
    chunk_id_column: str | None = "chunk_id",
    return_indices: bool = False,
) -> Any:
    """Draw chunks up to ``token_budget`` tokens, optionally to a target mean/std and inside a window.

    - ``target_mean`` / ``target_std``: in ``space`` (``"ppl"`` or ``"log_ppl"``). When the corpus can
      realise them, the subset's mean is within 1% and its std within 2% of the targets; when it cannot,
      :class:`~pplaw.exceptions.UnreachableTargetError` says what range is realisable (``.realisable``).
      Without targets the subset is a uniform random draw.
    - ``ppl_window=(lo, hi)``: only chunks with ``lo <= ppl <= hi``; ``quantile_window=(qlo, qhi)``: only
      chunks between those token-weighted quantiles of the PPL distribution (both in [0, 1]).
    - ``seed``: chunk keys are hashes of ``(seed, chunk_id)``; the ``chunk_id_column`` (default
      ``"chunk_id"``, used when present) makes the subset independent of row order and sharding.

    The subset's token count is within one chunk of ``token_budget``. Returns the selected
    ``datasets.Dataset`` for a Dataset input (unless ``return_indices=True``: a view, an indices mapping
    over the same Arrow table with every column, its fingerprint chained from the input's and the request),
    else a sorted numpy ``uint64`` array of logical row indices.
    """
    space = _check_space(space)
    budget = _check_budget(token_budget)
    mean, std = _check_targets(target_mean, target_std, space, required=False)
    pwin = _check_window(ppl_window, "ppl_window", lo_min=0.0, hi_max=math.inf)
    qwin = _check_window(quantile_window, "quantile_window", lo_min=0.0, hi_max=1.0)
    seed = _check_seed(seed)
    cols = _columns_of(data, ppl_column, tokens_column, chunk_id_column)
    indices = cols.call(
        _core().sample_subset,
        cols.ppl,
        cols.tokens,
        cols.chunk_id,
        token_budget=budget,
        target_mean=mean,
        target_std=std,
        space=space,
        **_window_kwargs(pwin, qwin),
        seed=seed,
        **cols.core_kwargs(),
    )
    request = dict(token_budget=budget, target_mean=mean, target_std=std, space=space, ppl_window=pwin,
                   quantile_window=qwin, seed=seed, columns=cols.names)
    return _result(data, indices, return_indices, "sample_subset", request)


def select_dos(
    data: Any,
    *,
    token_budget: int,
    target_mean: float,
    target_std: float,
    space: Space = "ppl",
    weights: tuple[float, float] | Mapping[str, float] | None = None,
    seed: int = 0,
    ppl_column: str = "ppl",
    tokens_column: str = "n_scored",
    chunk_id_column: str | None = "chunk_id",
    return_indices: bool = False,
) -> Any:
    """Distance-to-Optimum Selection: the subset within ``token_budget`` closest to ``(mu*, sigma*)``.

    Minimises ``w_mu*(mu(S)-mu*)^2 + w_s*(sigma(S)^2-sigma*^2)^2`` (docs/architecture.md) with ``mu* = target_mean``,
    ``sigma* = target_std`` in ``space``. ``weights=(w_mu, w_s)`` (or ``{"mu": .., "sigma": ..}``) default
    to the scale-free ``1/mu*^2`` and ``1/sigma*^4``. Unlike :func:`sample_subset` an unreachable optimum is
    not an error: DOS returns the closest realisable subset. The algorithm is described in the Rust core
    (``rust/src/dos.rs``). Returns like :func:`sample_subset`.
    """
    space = _check_space(space)
    budget = _check_budget(token_budget)
    mean, std = _check_targets(target_mean, target_std, space, required=True)
    w_mu, w_s = _check_weights(weights)
    if std == 0 and w_s is None:  # said here: the core's message names its own argument (w_s), not ours
        raise InvalidInputError("target_std is 0: the default weight of the std term (1/target_std^4) is undefined;"
                                " give both weights: weights=(w_mu, w_sigma) or {'mu': .., 'sigma': ..} in "
                                "Python, --dos-weights W_MU W_SIGMA for pplaw sample")
    seed = _check_seed(seed)
    cols = _columns_of(data, ppl_column, tokens_column, chunk_id_column)
    indices = cols.call(
        _core().select_dos,
        cols.ppl,
        cols.tokens,
        token_budget=budget,
        target_mean=mean,
        target_std=std,
        space=space,
        w_mu=w_mu,
        w_s=w_s,
        chunk_id=cols.chunk_id,
        seed=seed,
        **cols.core_kwargs(),
    )
    request = dict(token_budget=budget, target_mean=mean, target_std=std, space=space, weights=(w_mu, w_s),
                   seed=seed, columns=cols.names)
    return _result(data, indices, return_indices, "select_dos", request)
