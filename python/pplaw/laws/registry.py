"""The registry of laws by name (``Fit.from_json``, ``pplaw fit --law NAME``): a leaf that knows no law class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pplaw.exceptions import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.laws.engine import Law

REGISTRY: dict[str, type[Law]] = {}


def register(cls: type[Law]) -> type[Law]:
    """Class decorator: make a law reachable by name (``Fit.from_json``, ``pplaw fit --law NAME``)."""
    REGISTRY[cls.name] = cls
    return cls


def get_law(name: str, **options: Any) -> Law:
    """Build a registered law by name, e.g. ``get_law("perplexity", sigma="var")``."""
    import pplaw.laws  # noqa: F401  (importing the package registers every law)

    if name not in REGISTRY:
        raise InvalidInputError(f"unknown law {name!r}; known laws: {', '.join(sorted(REGISTRY))}")
    try:
        return REGISTRY[name](**options)
    except TypeError as err:
        raise InvalidInputError(f"invalid options for law {name!r}: {err}") from err
