"""A package's public names, resolved on first use: ``__getattr__ = lazy_names(__name__, {"Name": "pplaw.mod"})``
in its ``__init__`` (PEP 562), so that importing the package imports no heavy dependency (torch, TRL)."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_names(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: public name -> the module that defines it."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
