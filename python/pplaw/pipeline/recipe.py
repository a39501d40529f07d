"""The recipe of ``pplaw run``: :class:`RunRecipe` (its sections, :mod:`pplaw.pipeline.sections`, and the
rules that join them), read from YAML by :func:`load_recipe`; and :func:`digest`, the stages' cache keys.

A recipe is a YAML mapping whose top-level keys are the sections of :class:`RunRecipe` (``world``,
``model``, ``corpus``, ``scoring``, ``landscape``, ``plan``, ``train``, ``evaluate``, ``fit``, ``select``,
``baselines``, ``export``, ``report``, ``slurm``). Every level is checked (:func:`from_dict`): an unknown key
is a :class:`~pplaw.exceptions.ConfigError` that names its path (``plan.sizez``) and lists the valid keys, so
a typo never silently falls back to a default; then each section checks its values, then
:meth:`RunRecipe.check` the rules across sections. ``pplaw run --help`` prints every option with its help
text (:func:`describe`).

Either ``world`` (a synthetic world built by :mod:`pplaw.synth`, which then supplies the base model, the
corpora, the held-out sets and the benchmarks) or ``model.base_model`` + ``corpus.domain_data`` (your own)
must be given. ``pplaw run`` with no recipe uses the embedded quickstart (``quickstart.yaml`` next to this
file, the same file as ``recipes/quickstart/run.yaml``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from pplaw._checks import require
from pplaw._yaml import load as yaml_load
from pplaw._yaml import one_line
from pplaw.exceptions import ConfigError
from pplaw.cluster import SlurmSection
from pplaw.pipeline.sections import (BaselinesSection, CorpusSection, EvaluateSection, ExportSection, FitSection,
                                     LandscapeSection, ModelSection, PlanSection, ReportSection, ScoringSection,
                                     SelectSection, TrainSection)
from pplaw.synth.world import WorldConfig

QUICKSTART = Path(__file__).resolve().parent / "quickstart.yaml"


@dataclass
class RunRecipe:
    """Everything `pplaw run` does, section by section."""

    name: str = field(default="run", metadata={"help": "Name of the run (default output folder: pplaw_runs/<name>)."})
    world: WorldConfig | None = field(default=None, metadata={
        "help": "A synthetic world (pplaw.synth) that supplies model, corpora and benchmarks; omit it to bring your "
                "own."})
    cache_dir: str | None = field(default="~/.cache/pplaw", metadata={
        "help": "Cache of pretrained synthetic base models (null: none)."})
    model: ModelSection = field(default_factory=ModelSection, metadata={"help": ModelSection.__doc__})
    corpus: CorpusSection = field(default_factory=CorpusSection, metadata={"help": CorpusSection.__doc__})
    scoring: ScoringSection = field(default_factory=ScoringSection, metadata={"help": ScoringSection.__doc__})
    landscape: LandscapeSection = field(default_factory=LandscapeSection, metadata={"help": LandscapeSection.__doc__})
    plan: PlanSection = field(default_factory=PlanSection, metadata={"help": PlanSection.__doc__})
    train: TrainSection = field(default_factory=TrainSection, metadata={"help": TrainSection.__doc__})
    evaluate: EvaluateSection = field(default_factory=EvaluateSection, metadata={"help": EvaluateSection.__doc__})
    fit: FitSection = field(default_factory=FitSection, metadata={"help": FitSection.__doc__})
    select: SelectSection = field(default_factory=SelectSection, metadata={"help": SelectSection.__doc__})
    baselines: BaselinesSection = field(default_factory=BaselinesSection, metadata={"help": BaselinesSection.__doc__})
    export: ExportSection = field(default_factory=ExportSection, metadata={"help": ExportSection.__doc__})
    report: ReportSection = field(default_factory=ReportSection, metadata={"help": "Report options."})
    slurm: SlurmSection = field(default_factory=SlurmSection, metadata={"help": SlurmSection.__doc__})

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """The rules that join sections (each section checks its own values in its ``__post_init__``,
        :mod:`pplaw.pipeline.sections`), and the run's name; each error names its key."""
        n = self.name
        require(isinstance(n, str) and bool(n.strip()) and n not in (".", "..") and not any(c in n for c in "/\\\0")
                and not n.startswith("~"), "name", "be a plain folder name (the default output is pplaw_runs/<name>): "
                "no '/', '\\', '~' and not '.' or '..'", n)
        if self.world is None and not (self.model.base_model and self.corpus.domain_data):
            raise ConfigError("recipe: give either `world` (a synthetic world) or both `model.base_model` and "
                              "`corpus.domain_data`")
        if self.world is not None and (self.model.base_model or self.corpus.domain_data):
            raise ConfigError("recipe: `world` supplies the model and corpora; leave model.base_model and "
                              "corpus.domain_data unset (or drop `world` to bring your own)")
        if (any(r > 0 for r in self.plan.replay_ratios) or self.select.replay_ratio > 0) and \
                self.world is None and not self.corpus.general_data:
            raise ConfigError("a replay ratio R > 0 needs corpus.general_data")
        if self.export.format != "none":  # a subset the run makes (full is every chunk: nothing to select)
            can = ["dos", *(m for m in self.baselines.methods if m != "full")]
            require(self.export.method in can, "export.method", f"be one of {can}", self.export.method)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)




def digest(obj: Any, root: str | Path | None = None) -> str:
    """A short hash of a JSON-able value. With ``root`` (a run directory), paths inside it count relative to
    it (:func:`located`), so a moved or copied run directory keeps its keys and nothing is recomputed."""
    if root is not None:
        obj = located(obj, root)
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


RUN_ROOT = "<run>"


def located(obj: Any, root: str | Path) -> Any:
    """A copy of ``obj`` whose strings that are paths inside ``root`` read ``<run>/<relative path>``."""
    prefixes = sorted({str(Path(root)), str(Path(root).resolve()), str(Path(root).absolute())}, key=len, reverse=True)

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        if isinstance(x, Path):
            x = str(x)
        if isinstance(x, str):
            for pre in prefixes:
                if x == pre or x.startswith(pre.rstrip("/") + "/"):
                    return RUN_ROOT + x[len(pre.rstrip("/")):]
        return x

    return walk(obj)


# ----------------------------------------------------------------------------------------------------------
# parsing: dict -> dataclasses with a check at every level


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        for a in typing.get_args(tp):
            if dataclasses.is_dataclass(a):
                return a
    return None


def _check_value(value: Any, tp: Any, path: str) -> Any:
    """Light type check of a YAML value against a field annotation (ints where floats go are fine)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{path}: bad value {value!r}")
    expected = origin or tp
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected is bool and isinstance(value, bool):
        return value
    if expected is str and isinstance(value, str):
        return value
    if expected is list and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        return [v if inner is Any else _check_value(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if expected is dict and isinstance(value, dict):
        return dict(value)
    if expected is Any:
        return value
    name = getattr(expected, "__name__", str(expected))
    raise ConfigError(f"{path}: expected {name}, got {type(value).__name__} {value!r}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys anywhere are a ConfigError naming their path."""
    where = path or "recipe"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of option: value, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(f'{path}.{k}' if path else k for k in unknown)}; "
                          f"valid keys there: {', '.join(fields)}")
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        sub = f"{path}.{name}" if path else name
        tp = hints[name]
        dc = _dataclass_of(tp)
        if dc is not None and value is not None:
            if dc is WorldConfig:  # the synth world validates itself; re-raise with the recipe path
                if not isinstance(value, dict):
                    raise ConfigError(f"{sub}: expected a mapping of world options, got {value!r}")
                bad = sorted(set(value) - {f.name for f in dataclasses.fields(WorldConfig)})
                if bad:
                    raise ConfigError(f"unknown key(s) in {sub}: {', '.join(f'{sub}.{k}' for k in bad)}; valid keys there: "
                                      f"{', '.join(f.name for f in dataclasses.fields(WorldConfig))}")
                kwargs[name] = WorldConfig(**{k: _check_value(v, _hints(WorldConfig)[k], f"{sub}.{k}")
                                              for k, v in value.items()})
            else:
                kwargs[name] = from_dict(dc, value, sub)
        else:
            kwargs[name] = _check_value(value, tp, sub)
            choices = fields[name].metadata.get("choices")
            if choices and kwargs[name] is not None and kwargs[name] not in choices:
                raise ConfigError(f"{sub}: expected one of {choices}, got {kwargs[name]!r}")
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: list[tuple[str, str]]) -> dict:
    """Set dotted keys (``plan.sizes``) to YAML-parsed values (``[0.1, 0.2]``) in a copy of ``data``."""
    out = json.loads(json.dumps(data))
    for key, raw in overrides:
        try:
            value = yaml_load(raw, f"override {key}={raw!r}")
        except yaml.YAMLError as err:
            raise ConfigError(f"override {key}={raw!r}: not a YAML value ({one_line(err)})") from err
        node, parts = out, key.split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def load_recipe(path: str | Path | None = None, overrides: list[tuple[str, str]] | None = None) -> RunRecipe:
    """Read a recipe (default: the embedded quickstart) and apply ``key=value`` overrides."""
    from pplaw.config import load_yaml

    data = load_yaml(path if path is not None else QUICKSTART)
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return from_dict(RunRecipe, data)
    except ConfigError as err:
        raise ConfigError(f"{path if path is not None else 'quickstart recipe'}: {err}") from err


def describe(cls: type = RunRecipe, prefix: str = "") -> list[str]:
    """``--help`` lines: every option with its default and help text, section by section."""
    lines = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        dc = _dataclass_of(hints[f.name])
        if dc is not None:
            lines.append(f"\n{key}:  {f.metadata.get('help', '')}")
            lines += describe(dc, key + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {key} = {default!r}\n      {f.metadata.get('help', '')}")
    return lines
