"""``pplaw.score``: the perplexity of every chunk of a corpus under the base model.

:mod:`~pplaw.score.chunking` cuts documents into chunks with stable ids; :mod:`~pplaw.score.scorer` is the
scorer (per-chunk NLL, fp32 accumulation, the fused Triton kernel on a GPU); :mod:`~pplaw.score.job` is the
``pplaw score`` job (a corpus into sharded, resumable Parquet). Ray Data scoring across nodes is
:mod:`pplaw.ray`. The public names resolve lazily (importing the package must not import torch).
"""

from __future__ import annotations

from pplaw._lazy import lazy_names

# public name -> module that defines it
_LAZY = {
    "chunk_texts": "pplaw.score.chunking",
    "TextChunker": "pplaw.score.chunking",
    "PerplexityScorer": "pplaw.score.scorer",
    "score_perplexity": "pplaw.score.scorer",
    "ScoreConfig": "pplaw.score.job",
    "run_score": "pplaw.score.job",
}

__all__ = list(_LAZY)

__getattr__ = lazy_names(__name__, _LAZY)
