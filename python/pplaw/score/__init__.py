"""``pplaw.score``: the perplexity of every chunk of a corpus under the base model.

:mod:`~pplaw.score.chunking` cuts documents into chunks with stable ids; :mod:`~pplaw.score.scorer` is the
scorer (per-chunk NLL, fp32 accumulation, the fused Triton kernel on a GPU); :mod:`~pplaw.score.job` is the
``pplaw score`` job (a corpus into sharded, resumable Parquet). Ray Data scoring across nodes is
:mod:`pplaw.ray`. The public names resolve lazily (importing the package must not import torch).
"""

from __future__ import annotations

from pplaw._lazy import lazy_names

__getattr__, __all__ = lazy_names(__name__, {
    "pplaw.score.chunking": ("chunk_texts", "TextChunker"),
    "pplaw.score.scorer": ("PerplexityScorer", "score_perplexity"),
    "pplaw.score.job": ("ScoreConfig", "run_score"),
})
