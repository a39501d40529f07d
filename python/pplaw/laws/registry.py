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


def parse_law_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name:key=value,key=value"`` (a recipe's ``fit.laws`` entry) -> ``(name, options)``.

    Values are read as YAML scalars (``floor=0.3`` -> 0.3, ``sigma_scale=2`` -> 2)."""
    import yaml

    from pplaw._yaml import load as yaml_load
    from pplaw._yaml import one_line

    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"a law spec must be a non-empty string like 'perplexity' or "
                                f"'perplexity_spline:floor=0.3', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InvalidInputError(f"law spec {spec!r}: option {item!r} is not key=value")
        try:
            options[key.strip()] = yaml_load(value.strip(), f"law spec {spec!r}: option {key.strip()!r}")
        except yaml.YAMLError as err:
            raise InvalidInputError(f"law spec {spec!r}: value of {key.strip()!r} is not a number or word: "
                                    f"{one_line(err)}") from err
    return name.strip(), options


def get_law_spec(spec: str, **defaults: Any) -> Law:
    """Build a law from a spec (:func:`parse_law_spec`); the spec's options override ``defaults``."""
    name, options = parse_law_spec(spec)
    return get_law(name, **{**defaults, **options})


def get_law(name: str, **options: Any) -> Law:
    """Build a registered law by name, e.g. ``get_law("perplexity", sigma="var")``."""
    import pplaw.laws  # noqa: F401  (importing the package registers every law)

    if name not in REGISTRY:
        raise InvalidInputError(f"unknown law {name!r}; known laws: {', '.join(sorted(REGISTRY))}")
    try:
        return REGISTRY[name](**options)
    except TypeError as err:
        raise InvalidInputError(f"invalid options for law {name!r}: {err}") from err
