"""YAML reading for every file and option a user writes (recipes, ``--config`` files, ``--law-options``,
``key=value`` overrides): safe, and a key given twice in one mapping is an error.

PyYAML's ``safe_load`` keeps the last of two equal keys: a recipe with two ``plan:`` blocks, or
``learning_rate`` set twice in ``train:``, silently runs with whichever comes last. Here the composed node
tree is walked before it is constructed, so the error names the key's full path and both lines.

A leaf: imports nothing of pplaw but :mod:`pplaw.exceptions`.
"""

from __future__ import annotations

from typing import Any

import yaml

from pplaw.exceptions import ConfigError

_MERGE = "tag:yaml.org,2002:merge"


def _key(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            return node.value
    return id(node)  # a complex key: never equal to another


def _check(loader: yaml.SafeLoader, node: yaml.Node, path: str, source: str, seen: set[int]) -> None:
    if id(node) in seen:  # an alias met again
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:  # `<<: *base`: explicit keys override merged ones on purpose
                continue
            key = _key(loader, key_node)
            name = f"{path}.{key}" if path else str(key)
            line = key_node.start_mark.line + 1
            try:
                known = key in first
            except TypeError:
                known = False
            if known:
                raise ConfigError(f"{source}: key {name!r} is given twice (line {first[key]} and line {line}); "
                                  f"keep one (YAML would silently keep the last)")
            try:
                first[key] = line
            except TypeError:
                pass
            _check(loader, value_node, name, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check(loader, item, f"{path}[{i}]", source, seen)


def load(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, refusing a key given twice in one mapping with a :class:`ConfigError` that
    names ``source`` (a file, or an option such as ``--law-options``), the key and both lines. Malformed YAML
    raises ``yaml.YAMLError`` as ``safe_load`` does (the caller names the file or option)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(loader, node, "", source, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def one_line(err: yaml.YAMLError) -> str:
    """A YAML error in one line (PyYAML's messages span several, with a caret drawing)."""
    if isinstance(err, yaml.MarkedYAMLError):
        where = f" (line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1})" if err.problem_mark else ""
        what = " ".join(str(x) for x in (err.context, err.problem) if x)
        return f"{what}{where}"
    return " ".join(str(err).split())


__all__ = ["load", "one_line"]
