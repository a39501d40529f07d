"""pplaw: perplexity-aware data scaling laws for continual pre-training.

Score a domain corpus with the base model, build its perplexity landscape, sample subsets from
perplexity regimes, fit the perplexity-aware law and select the final subset by Distance-to-Optimum.

Heavy dependencies (torch, transformers, scipy) are imported lazily: ``import pplaw`` is cheap, and the
public names below resolve on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY = {
    "__version__": "pplaw._core",  # one version: rust/Cargo.toml's, compiled into the core
    "Landscape": "pplaw.landscape",
    "sample_subset": "pplaw.sampling",
    "select_dos": "pplaw.sampling",
    "subset_stats": "pplaw.sampling",
    "chunk_texts": "pplaw.score.chunking",
    "ppl_between": "pplaw.filters",
    "in_band": "pplaw.filters",
    "export_subset": "pplaw.export",
    "export_run": "pplaw.pipeline.export",
    "score_perplexity": "pplaw.score.scorer",
    "load_runs": "pplaw.runs",
    "run_pipeline": "pplaw.pipeline.loop",
}

__all__ = ["__version__", "exceptions", *_LAZY]

from pplaw import exceptions  # noqa: E402  (pure Python, cheap)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pplaw' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and IDEs
    from pplaw.score.chunking import chunk_texts
    from pplaw.export import export_subset
    from pplaw.pipeline.export import export_run
    from pplaw.filters import in_band, ppl_between
    from pplaw.landscape import Landscape
    from pplaw.sampling import sample_subset, select_dos, subset_stats
    from pplaw.score.scorer import score_perplexity
