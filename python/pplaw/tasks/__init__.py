"""Benchmark suites and lm-evaluation-harness task configs, online (Hub) and offline (local exports).

- Suites (``suites.yaml``): ``medical`` and ``general``, lists of lm-eval task/group names. Recipes add
  their own (``suite_definitions``) and single tasks.
- Online, a suite runs lm-eval's own tasks (datasets from the Hugging Face Hub).
- Offline, every suite member ``X`` has a local twin ``X_local``: the same prompt, target and choices,
  reading JSONL or Parquet files from a data directory laid out as ``<data>/<X>/<split>.jsonl`` (``X`` the
  online leaf task name, e.g. ``mmlu_anatomy/test.jsonl``). The package ships lm-eval YAML *templates*
  without any path in them (``templates/``); :func:`render_local_tasks` writes complete task YAMLs with
  the data paths filled in into an ``include_path`` folder at run time. ``pplaw tasks export`` writes the
  data where the Hub is reachable; :mod:`pplaw.tasks.pubmedqa` builds PubMedQA from the original release.
"""

from __future__ import annotations

import difflib
import os
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pplaw.exceptions import ConfigError, InvalidInputError

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
LOCAL_SUFFIX = "_local"
DATA_ENV = "PPLAW_TASK_DATA"
SOURCE_ENV = "PPLAW_TASK_SOURCE"
SOURCES = ("online", "local")
DATA_EXTENSIONS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class LocalTask:
    """One leaf task with a local twin: where its data comes from and where it lives locally."""

    online: str  # lm-eval task name
    template: str  # file in templates/
    splits: dict[str, str]  # local split name -> Hub split name
    hub_path: str  # datasets.load_dataset path
    hub_name: str | None = None  # dataset config name
    extra: dict[str, Any] = field(default_factory=dict)  # per-task YAML keys (description, alias)

    @property
    def local(self) -> str:
        return self.online + LOCAL_SUFFIX


@lru_cache(maxsize=1)
def suites() -> dict[str, dict[str, Any]]:
    """The built-in suites: ``{name: {"description": str, "tasks": [online names]}}``."""
    return yaml.safe_load((HERE / "suites.yaml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _subjects() -> dict[str, dict[str, dict[str, str]]]:
    return yaml.safe_load((HERE / "subjects.yaml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def catalog() -> tuple[dict[str, LocalTask], dict[str, list[str]]]:
    """(leaf tasks by online name, groups by online name -> member online names)."""
    leaves: dict[str, LocalTask] = {}
    # The Hub sources are the ones lm-eval's own task configs read (lm_eval/tasks/<task>/*.yaml).
    leaves["pubmedqa"] = LocalTask(
        "pubmedqa", "_pubmedqa_local_yaml", {"test": "test"}, "bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source",
        {"task_alias": "pubmedqa (local)"},
    )
    leaves["medmcqa"] = LocalTask(
        "medmcqa", "_medmcqa_local_yaml", {"validation": "validation"}, "openlifescienceai/medmcqa", None,
        {"task_alias": "medmcqa (local)"},
    )
    leaves["medqa_4options"] = LocalTask(
        "medqa_4options", "_medqa_4options_local_yaml", {"test": "test"}, "GBaker/MedQA-USMLE-4-options-hf", None,
        {"task_alias": "medqa_4options (local)"},
    )
    groups: dict[str, list[str]] = {}
    families = {
        # family: (online prefix, group name, template, splits, hub path)
        "mmlu": ("mmlu_", "mmlu", "_mmlu_local_yaml", {"test": "test", "dev": "dev"}, "cais/mmlu"),
        "cmmlu": ("cmmlu_", "cmmlu", "_cmmlu_local_yaml", {"test": "test", "dev": "dev"}, "haonan-li/cmmlu"),
        "ceval": ("ceval-valid_", "ceval-valid", "_ceval_local_yaml", {"val": "val", "dev": "dev"}, "ceval/ceval-exam"),
    }
    for family, (prefix, group, template, splits, hub) in families.items():
        members = []
        for subject, info in sorted(_subjects()[family].items()):
            extra = {"description": info.get("description", ""), "task_alias": f"{subject} (local)"}
            leaves[prefix + subject] = LocalTask(prefix + subject, template, dict(splits), hub, subject, extra)
            members.append(prefix + subject)
        groups[group] = members
    return leaves, groups


def local_name(online: str) -> str:
    return online + LOCAL_SUFFIX


def online_name(name: str) -> str:
    return name[: -len(LOCAL_SUFFIX)] if name.endswith(LOCAL_SUFFIX) else name


def leaf_tasks(online: str) -> list[str]:
    """The leaf online task names behind a task or group name that has a local twin."""
    leaves, groups = catalog()
    if online in groups:
        return list(groups[online])
    if online in leaves:
        return [online]
    raise ConfigError(f"task {online!r} has no local version; local tasks exist for: {', '.join(sorted(groups))}, "
                      f"{', '.join(sorted(n for n in leaves if not any(n in g for g in groups.values())))}")


def resolve_source(source: str | None) -> str:
    """``online``/``local``; ``None`` or ``"auto"`` reads ``PPLAW_TASK_SOURCE`` (default ``online``)."""
    if source in (None, "", "auto"):
        source = os.environ.get(SOURCE_ENV) or "online"
    if source not in SOURCES:
        raise ConfigError(f"task_source must be one of {SOURCES} (or 'auto'), got {source!r}")
    return source


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The local task data directory: the argument, else ``PPLAW_TASK_DATA``."""
    value = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV)
    if not value:
        raise ConfigError(
            f"local benchmark tasks need a data directory: set task_data in the recipe (or --task_data) or the "
            f"environment variable {DATA_ENV}; `pplaw tasks export --suite NAME --out DIR` writes one"
        )
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise InvalidInputError(f"local task data directory {str(path)!r} does not exist")
    return path


def suite_members(name: str, source: str, extra_suites: dict[str, list[str]] | None = None) -> list[str]:
    """Task names of a suite for ``source``; recipe-defined suites (``extra_suites``) win over built-ins."""
    defined = {k: list(v["tasks"]) for k, v in suites().items()}
    defined.update({k: list(v) for k, v in (extra_suites or {}).items()})
    if name not in defined:
        raise ConfigError(f"unknown suite {name!r}{did_you_mean(name, defined)}; suites: {', '.join(sorted(defined))}")
    members = defined[name]
    if source == "local":
        # A recipe suite may already list local names (or tasks of its own include_path): keep those.
        leaves, groups = catalog()
        members = [local_name(t) if (t in leaves or t in groups) else t for t in members]
    return members


def did_you_mean(name: str, known: list[str] | set[str] | dict, n: int = 5) -> str:
    """`` (did you mean: a, b?)`` with the closest known names, or an empty string."""
    matches = difflib.get_close_matches(name, sorted(known), n=n, cutoff=0.6)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""


# ----------------------------------------------------------------------------------------------------------
# local data files and rendering


def _find_file(data_dir: Path, online: str, split: str) -> Path | None:
    for ext in DATA_EXTENSIONS:
        path = data_dir / online / f"{split}{ext}"
        if path.is_file():
            return path
    return None


def data_files(task: LocalTask, data_dir: Path) -> tuple[str, dict[str, str]]:
    """(datasets builder name, {split: path}) for a local task; missing files get the default ``.jsonl`` path."""
    found = {split: _find_file(data_dir, task.online, split) for split in task.splits}
    builders = {DATA_EXTENSIONS[p.suffix] for p in found.values() if p is not None}
    if len(builders) > 1:
        raise InvalidInputError(
            f"local task {task.local}: its split files under {str(data_dir / task.online)!r} mix JSONL and Parquet; "
            f"use one format per task"
        )
    builder = builders.pop() if builders else "json"
    files = {s: str(p if p is not None else data_dir / task.online / f"{s}.jsonl") for s, p in found.items()}
    return builder, files


def check_local_data(local_tasks: list[str], data_dir: Path) -> None:
    """Raise :class:`InvalidInputError` naming the first missing data file of the requested local tasks."""
    leaves, groups = catalog()
    for name in local_tasks:
        online = online_name(name)
        if online not in leaves and online not in groups:
            continue  # a task from the user's own include_path
        for leaf in leaf_tasks(online):
            task = leaves[leaf]
            for split in task.splits:
                if _find_file(data_dir, leaf, split) is None:
                    raise InvalidInputError(
                        f"local task {task.local}: data file {str(data_dir / leaf / (split + '.jsonl'))!r} is missing "
                        f"(.jsonl, .json or .parquet); write the exports with `pplaw tasks export --suite ... --out "
                        f"{data_dir}` where the Hub is reachable"
                        + ("; PubMedQA can also be built offline with `pplaw tasks pubmedqa --source "
                           "<pubmedqa release dir> --out " + str(data_dir) + "`" if leaf == "pubmedqa" else "")
                    )


def render_local_tasks(data_dir: str | os.PathLike | None, out_dir: str | os.PathLike) -> Path:
    """Write lm-eval task YAMLs for every local task into ``out_dir`` (an lm-eval ``include_path``).

    Paths to the data files in ``data_dir`` (or ``PPLAW_TASK_DATA``) are filled in here, at run time; the
    shipped templates hold none. Returns ``out_dir``. Files are written even when data is missing:
    :func:`check_local_data` reports that for the tasks actually requested.
    """
    data = resolve_data_dir(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for template in TEMPLATES.iterdir():
        if template.name.startswith("_") and template.name.endswith("_yaml"):
            shutil.copyfile(template, out / template.name)
    leaves, groups = catalog()
    for task in leaves.values():
        builder, files = data_files(task, data)
        cfg = {"include": task.template, "task": task.local, "dataset_path": builder,
               "dataset_kwargs": {"data_files": files}, **task.extra}
        (out / f"{task.local}.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), "utf-8")
    for group, members in groups.items():
        cfg = {
            "group": local_name(group),
            "task": [local_name(m) for m in members],
            "aggregate_metric_list": [
                {"metric": "acc", "aggregation": "mean", "weight_by_size": True},
                {"metric": "acc_norm", "aggregation": "mean", "weight_by_size": True},
            ],
            "metadata": {"version": 2.0},
        }
        (out / f"_{local_name(group)}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), "utf-8")
    return out


def list_rows(data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per suite member: suite, online name, local name, leaf tasks, local data present?"""
    data = None
    if data_dir not in (None, "") or os.environ.get(DATA_ENV):
        try:
            data = resolve_data_dir(data_dir)
        except InvalidInputError:
            data = None
    leaves, groups = catalog()
    rows = []
    for suite, info in suites().items():
        for online in info["tasks"]:
            leafs = leaf_tasks(online)
            present = None
            if data is not None:
                present = sum(all(_find_file(data, leaf, s) for s in leaves[leaf].splits) for leaf in leafs)
            rows.append({"suite": suite, "online": online, "local": local_name(online), "leaves": len(leafs),
                         "local_present": present})
    return rows


__all__ = [
    "LocalTask", "suites", "catalog", "suite_members", "leaf_tasks", "local_name", "online_name",
    "resolve_source", "resolve_data_dir", "render_local_tasks", "check_local_data", "did_you_mean",
    "list_rows", "DATA_ENV", "SOURCE_ENV",
]
