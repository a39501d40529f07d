"""``pplaw.score``: the perplexity of every chunk of a corpus under the base model.

:mod:`~pplaw.score.chunking` cuts documents into chunks with stable ids; :mod:`~pplaw.score.scorer` is the
scorer (per-chunk NLL, fp32 accumulation, the fused Triton kernel on a GPU); :mod:`~pplaw.score.job` is the
``pplaw score`` job (a corpus into sharded, resumable Parquet). Ray Data scoring across nodes is
:mod:`pplaw.ray`. The public names resolve lazily (importing the package must not import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pplaw.score' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
