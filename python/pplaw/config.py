"""TRL-style configuration parsing: dataclass configs with help metadata, ``--config recipe.yaml``, and the
YAML loader every config and recipe goes through.

Precedence is defaults < YAML < command line, as in TRL's ``TrlParser``. Unknown YAML keys are an error
(a typo in a recipe must not be silently ignored). Built on ``transformers.HfArgumentParser``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from pplaw._yaml import load as unique_keys_load
from pplaw.exceptions import ConfigError


def looks_local(name: str) -> bool:
    """A model reference that can only be a local path (a Hugging Face Hub id is ``name`` or ``org/name``)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name or Path(name).expanduser().exists()


def check_model_ref(name: str | None, key: str) -> None:
    """Refuse a model path that does not exist (instead of the Hub's "Repo id must be in the form ..."),
    naming the option ``key``."""
    if name and looks_local(name) and not Path(name).expanduser().is_dir():
        raise ConfigError(f"{key}: {name!r} is not a model folder (a local path that does not exist, and not a "
                          f"Hugging Face Hub id of the form 'name' or 'org/name')")


def load_causal_lm(ref: str, key: str, **kwargs: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained(ref, **kwargs)`` with errors that name the option ``key`` and the
    file: a truncated or corrupt ``*.safetensors`` (a copy cut short, a disk that filled up) otherwise surfaces
    as safetensors' bare "Error while deserializing header"."""
    from transformers import AutoModelForCausalLM

    check_model_ref(ref, key)
    try:
        return AutoModelForCausalLM.from_pretrained(ref, **kwargs)
    except Exception as err:  # noqa: BLE001 - re-raised with the option and file named
        if type(err).__name__ == "SafetensorError" or "deserializ" in str(err):
            files = sorted(p.name for p in Path(ref).expanduser().glob("*.safetensors")) if looks_local(ref) else []
            raise ConfigError(f"{key}: the weights of {ref!r} ({', '.join(files) or 'safetensors'}) are corrupt or "
                              f"truncated ({err}); re-save or re-copy the model folder") from err
        if isinstance(err, (OSError, ValueError)):
            raise ConfigError(f"{key}: cannot load a causal LM from {ref!r}: {err}") from err
        raise


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file; a key given twice is an error (not last-wins)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = unique_keys_load(path.read_text(encoding="utf-8"), f"config file {str(path)!r}")
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of option: value, got {type(data).__name__}")
    return data


def _escape_help(parser: argparse.ArgumentParser) -> None:
    """argparse %-formats every help string with the action's attributes: a bare ``%`` in a dataclass's help
    ("k % tasks", "~20% slower") either crashes ``--help`` or prints the action's dict in its place."""
    for action in parser._actions:
        if action.help:
            action.help = re.sub(r"(?<!%)%(?![(%])", "%%", action.help)


def parse_config(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str | None = None,
    yaml_overrides: dict[str, Any] | None = None,
) -> tuple:
    """Parse ``argv`` into one instance of each dataclass in ``dataclass_types``.

    ``--config FILE`` (YAML) sets defaults; explicit flags override them. ``yaml_overrides`` (a dict) is
    applied as if it came from the YAML file (used by ``pplaw run`` to pass recipe sections on).
    """
    from transformers import HfArgumentParser  # lazy: transformers is slow to import

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)

    parser = HfArgumentParser(tuple(dataclass_types), prog=prog, description=description)
    parser.add_argument(
        "--config", default=None, metavar="YAML",
        help="YAML file whose keys set defaults for the options below; command-line flags override it",
    )
    _escape_help(parser)
    values: dict[str, Any] = {}
    if known.config:
        values.update(load_yaml(known.config))
    if yaml_overrides:
        values.update(yaml_overrides)
    if values:
        names = {f.name for dc in dataclass_types for f in dataclasses.fields(dc)}
        unknown = sorted(set(values) - names)
        if unknown:
            where = f"config file {known.config!r}" if known.config else "config"
            raise ConfigError(
                f"unknown key(s) in {where}: {', '.join(unknown)}; valid keys are: {', '.join(sorted(names))}"
            )
        # A YAML value satisfies a required option, exactly as TrlParser does.
        for action in parser._actions:
            if action.dest in values:
                action.required = False
        parser.set_defaults(**values)
    outputs = parser.parse_args_into_dataclasses(args=argv)
    return tuple(o for o in outputs if not isinstance(o, argparse.Namespace))


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with its ``help`` text (and ``choices``, ...) in its metadata, as the configs declare
    them; a list or dict default is copied for each instance."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def borrow(source: type, name: str, **metadata: Any) -> Any:
    """A dataclass field declared as ``source``'s field ``name`` is: the same default and the same help text
    (``metadata`` entries are added or override). How a section of the ``pplaw run`` recipe takes the options
    it shares with a command's config (``ScoreConfig``, ``EvalConfig``, ``CPTConfig``) without declaring
    them a second time."""
    fields = {f.name: f for f in dataclasses.fields(source)}
    if name not in fields:
        raise ConfigError(f"{source.__name__} has no option {name!r}")
    f = fields[name]
    meta = {**f.metadata, **metadata}
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=meta)
    return dataclasses.field(default=f.default, metadata=meta)


def shared_options(section: Any, target: type) -> dict[str, Any]:
    """The values of ``section`` (a dataclass instance) for the options ``target`` (a dataclass) also has."""
    names = {f.name for f in dataclasses.fields(target)}
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name in names}
