"""A package's public names, resolved on first use (PEP 562), so that importing the package imports no heavy
dependency (torch, TRL). In its ``__init__``::

    __getattr__, __all__ = lazy_names(__name__, {"pplaw.score.job": ("ScoreConfig", "run_score"), ...})
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_names(package: str, modules: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], Any], list[str]]:
    """The module ``__getattr__`` of ``package`` and its ``__all__``, from each defining module's public names."""
    names = {name: module for module, defined in modules.items() for name in defined}

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__, list(names)
