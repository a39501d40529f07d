"""Score a corpus across several nodes with Ray Data (the ``pplaw[ray]`` extra).

    import ray, pplaw.ray
    chunks = ray.data.read_parquet("s3://bucket/chunks/")           # rows with input_ids (or text)
    scored = pplaw.ray.score(chunks, "Qwen/Qwen3-8B-Base", concurrency=16, num_gpus=1)
    scored.write_parquet("s3://bucket/scored/")

Each actor of a fixed-size pool holds one :class:`pplaw.score.scorer.PerplexityScorer` (one model per actor,
loaded once when the actor starts, on the GPU Ray assigned to it). Batches go through exactly the code
path of ``ds.map(score_perplexity(...))``, so results equal the single-process ones (up to the
floating-point reduction order documented in :mod:`pplaw.score.scorer`), whatever the sharding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pplaw.exceptions import InvalidInputError, MissingColumnError


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "pplaw.ray needs Ray Data, which is not installed: pip install 'pplaw[ray]' "
            "(or pip install 'ray[data]>=2.30')"
        ) from err
    return ray


class _ScorerActor:
    """One model per Ray actor; a ``map_batches`` callable class over numpy batches."""

    def __init__(self, model: Any, tokenizer: Any, scorer_kwargs: dict[str, Any]):
        from pplaw.score.scorer import PerplexityScorer

        self.scorer = PerplexityScorer(model, tokenizer, **scorer_kwargs)
        self.scorer._load()  # load at actor start-up, not inside the first batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        out = dict(batch)
        scores = self.scorer(batch)
        if "token_nll" in scores:  # ragged: one float32 array per row
            ragged = np.empty(len(scores["token_nll"]), dtype=object)
            ragged[:] = scores["token_nll"]
            scores["token_nll"] = ragged
        out.update(scores)
        return out


def score(
    dataset,
    model: Any,
    tokenizer: Any = None,
    *,
    concurrency: int = 1,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    batch_size: int = 256,
    **scorer_kwargs: Any,
):
    """Add ``nll_sum``, ``n_scored``, ``ppl`` to a ``ray.data.Dataset`` of chunks (lazy, like any Ray Data op).

    Args:
        dataset: a Ray Dataset with an ``input_ids`` column (or a text column, see ``scorer_kwargs``).
        model, tokenizer: as for :func:`pplaw.score_perplexity` (a path or Hub id is best: each actor loads it).
        concurrency: actors in the pool (one model each).
        num_gpus: GPUs per actor; default 1 when the cluster has GPUs, else 0.
        num_cpus: CPUs per actor (Ray's default when None).
        batch_size: rows per Ray batch (each is split into micro-batches by the token budget).
        scorer_kwargs: any :class:`pplaw.score.scorer.PerplexityScorer` option (dtype, max_tokens_per_batch, ...).
    """
    ray = _require_ray()
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError(f"pplaw.ray.score: `concurrency` must be an int >= 1, got {concurrency!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"pplaw.ray.score: `batch_size` must be an int >= 1, got {batch_size!r}")
    input_column = scorer_kwargs.get("input_column", "input_ids")
    text_column = scorer_kwargs.get("text_column", "text")
    schema = dataset.schema()
    names = list(schema.names) if schema is not None else None
    if names is not None and input_column not in names and text_column not in names:
        raise MissingColumnError(
            f"pplaw.ray.score: neither the token column {input_column!r} nor the text column {text_column!r} "
            f"is in the dataset; columns are {names}"
        )
    if num_gpus is None:
        num_gpus = 1 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else 0
    remote_args: dict[str, Any] = {"num_gpus": num_gpus}
    if num_cpus is not None:
        remote_args["num_cpus"] = num_cpus
    return dataset.map_batches(
        _ScorerActor,
        fn_constructor_args=(model, tokenizer, scorer_kwargs),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        **remote_args,
    )
