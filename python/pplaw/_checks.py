"""The value checks of every config: the ``pplaw run`` recipe's sections (:mod:`pplaw.pipeline.sections`,
:mod:`pplaw.cluster`), the synthetic world (:class:`pplaw.synth.world.WorldConfig`) and the
commands' configs (:class:`pplaw.score.job.ScoreConfig`, ``pplaw train``, ``pplaw evaluate``, ``pplaw fit``,
``pplaw export``, ``pplaw landscape``).

One error form, naming the key: ``ConfigError("<key> must be <what>, got <value>")``, e.g.
``train.learning_rate must be a finite number > 0, got -0.001`` (``<key>`` is the recipe path, or a command's
flag such as ``pplaw score: --max-docs``). A config calls these from its ``__post_init__`` (the recipe's rules
across sections: ``RunRecipe.check``); the YAML loader checks the types and choices before (``recipe.from_dict``).

A leaf: imports nothing of pplaw but :mod:`pplaw.exceptions`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pplaw.exceptions import ConfigError


def is_int(v: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_finite(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def require(ok: bool, key: str, must: str, value: Any) -> None:
    """Raise ``ConfigError("<key> must <must>, got <value!r>")`` unless ``ok``. ``must`` starts with its verb
    (``"be >= 1"``, ``"hold finite numbers"``)."""
    if not ok:
        raise ConfigError(f"{key} must {must}, got {value!r}")


def required(value: Any, flag: str, command: str) -> None:
    """A command's required argument (``flag``, e.g. ``--out``) is given, on the command line or in --config:
    ``ConfigError("pplaw <command>: <flag> is required ...")``."""
    if value is None or value == "":
        raise ConfigError(f"pplaw {command}: {flag} is required (on the command line or in --config)")


def at_least(value: Any, key: str, low: float, *, why: str = "", optional: bool = False) -> None:
    """``value >= low`` (the loader has checked the type); ``optional``: None passes."""
    if optional and value is None:
        return
    require(value >= low, key, f"be >= {low}{why}", value)


def integer(value: Any, key: str, low: int, *, unit: str = "", optional: bool = False) -> None:
    """An integer >= ``low`` (``unit``: " number of minutes"); ``optional``: None passes (and the message
    says "or null")."""
    if optional and value is None:
        return
    require(is_int(value) and value >= low, key, f"be an integer{unit} >= {low}{' or null' if optional else ''}",
            value)


def number(value: Any, key: str, *, low: float = 0, strict: bool = True, what: str = "a finite number",
           optional: bool = False) -> None:
    """A finite number > ``low`` (``strict``) or >= ``low``; ``what`` names it ("a number of GB");
    ``optional``: None passes (and the message says "or null")."""
    if optional and value is None:
        return
    ok = is_finite(value) and (value > low if strict else value >= low)
    require(ok, key, f"be {what} {'>' if strict else '>='} {low}{' or null' if optional else ''}", value)


def nonempty_str(value: Any, key: str, *, what: str = "a non-empty string", optional: bool = True) -> None:
    """A string with a non-blank character; ``optional``: None passes."""
    if optional and value is None:
        return
    require(isinstance(value, str) and bool(value.strip()), key, f"be {what}{' or null' if optional else ''}",
            value)


def one_of(value: Any, key: str, choices: Iterable[Any], *, what: str | None = None) -> None:
    """``value`` in ``choices`` (``what``: how the message lists them; default ``one of [...]``)."""
    choices = list(choices)
    require(value in choices, key, f"be {what or f'one of {choices}'}", value)


def folder(value: Any, key: str) -> None:
    """A path that is a folder or can be created as one: neither it nor a parent is an existing file. Checked
    before any work, so that a run does not end in ``mkdir``'s ``FileExistsError`` traceback."""
    from pathlib import Path

    path = Path(str(value)).expanduser()
    for q in (path, *path.parents):
        if q.exists() or q.is_symlink():
            why = "" if q == path else f" ({str(q)!r} is a file)"
            require(q.is_dir(), key, f"be a folder or a path where one can be made, not a file{why}", str(value))
            return
