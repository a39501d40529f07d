"""What the stages of ``pplaw run`` hand to each other: one typed value per stage.

:meth:`pplaw.pipeline.stages.Stages.run` returns these whether the stage ran or was up to date: each
``load(stage_dir, outputs)`` reads the stage's files (the same ones whichever way), and keeps the manifest's
``outputs`` dict, which is what the next stages' cache keys are made of.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pplaw.pipeline.plan import RealisableRegion


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Inputs:
    """What the run starts from: the synthetic world's paths (``world`` stage) or the recipe's own.

    ``domain_corpus`` is the raw domain corpus (documents); the runs train on the *scored chunks*
    (:class:`ScoredChunks`), never on it.
    """

    base_model: str
    domain_corpus: str
    text_column: str = "text"
    tokenizer: str | None = None
    id_column: str | None = None
    general_data: str | None = None
    domain_eval_data: str | None = None
    general_eval_data: str | None = None
    diagnostics: str | None = None
    kind_column: str | None = "kind"
    task_include_path: list[str] = field(default_factory=list)
    world_hash: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Inputs:
        known = {f for f in cls.__dataclass_fields__} - {"domain_corpus"}
        return cls(domain_corpus=d["domain_data"], **{k: v for k, v in d.items() if k in known})

    def score_key(self) -> dict[str, Any]:
        """The inputs the score stage depends on (its cache key)."""
        return {"base_model": self.base_model, "tokenizer": self.tokenizer, "domain_data": self.domain_corpus,
                "text_column": self.text_column, "id_column": self.id_column, "world_hash": self.world_hash}


@dataclass(frozen=True)
class ScoredChunks:
    """The score stage: the scored shards (``dir``), their statistics in row order (``table``: ppl, n_scored,
    chunk_id, doc_id) and the totals (``summary``)."""

    dir: Path
    table: Any  # pyarrow.Table
    summary: dict[str, Any]
    outputs: dict[str, Any]

    @classmethod
    def load(cls, stage_dir: Path, outputs: dict[str, Any]) -> ScoredChunks:
        from pplaw.io import read_scored

        d = stage_dir / outputs["chunks"]
        table, _, _ = read_scored(d, ["ppl", "n_scored"], ["chunk_id", "doc_id"], progress=False)
        return cls(d, table, outputs["summary"], outputs)


@dataclass(frozen=True)
class LandscapeArtefact:
    """The landscape stage: the landscape file (``path``, :meth:`pplaw.Landscape.load` reads it with each
    chunk's bin), its bin edges (``edges``, the plan stage's key) and its statistics (``summary``)."""

    path: Path
    edges: list[float]
    summary: dict[str, Any]
    outputs: dict[str, Any]

    @classmethod
    def load(cls, stage_dir: Path, outputs: dict[str, Any]) -> LandscapeArtefact:
        return cls(stage_dir / outputs["landscape"], outputs["edges"], outputs["summary"], outputs)


@dataclass(frozen=True)
class PlanArtefact:
    """The plan stage: the grid points (``plan``, as in plan.json), the final budget and the realisable
    region at it."""

    dir: Path
    plan: dict[str, Any]
    budget: int
    region: RealisableRegion
    outputs: dict[str, Any]

    @classmethod
    def load(cls, stage_dir: Path, outputs: dict[str, Any]) -> PlanArtefact:
        plan = _read_json(stage_dir / outputs["plan"])
        budget = plan["final_budget"]
        regions = _read_json(stage_dir / outputs["regions"])
        return cls(stage_dir, plan, budget, RealisableRegion.from_dict(regions[str(budget)]), outputs)


@dataclass(frozen=True)
class RunTable:
    """The sweep or the final stage: one row per run (runs.json)."""

    rows: list[dict[str, Any]]
    outputs: dict[str, Any]

    @classmethod
    def load(cls, stage_dir: Path, outputs: dict[str, Any]) -> RunTable:
        return cls(_read_json(stage_dir / outputs["runs"]), outputs)

    @property
    def digest(self) -> str:
        return self.outputs["digest"]


@dataclass(frozen=True)
class FitArtefact:
    """The fit stage: the chosen law's fit, its optimum (``optimum``) and the best sweep regime."""

    outputs: dict[str, Any]

    @classmethod
    def load(cls, stage_dir: Path, outputs: dict[str, Any]) -> FitArtefact:
        return cls(outputs)

    @property
    def optimum(self) -> dict[str, Any]:
        return self.outputs["optimum"]

    @property
    def best_sweep(self) -> dict[str, Any] | None:
        return self.outputs.get("best_sweep")


@dataclass(frozen=True)
class Selection:
    """The select stage: DOS and the baselines at the final budget (``subsets``: method, seed, indices file)."""

    dir: Path
    subsets: list[dict[str, Any]]
    budget: int
    outputs: dict[str, Any]

    @classmethod
    def load(cls, stage_dir: Path, outputs: dict[str, Any]) -> Selection:
        return cls(stage_dir, outputs["subsets"], outputs["budget"], outputs)
