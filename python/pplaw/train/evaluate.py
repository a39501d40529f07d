"""Evaluation of one model: held-out domain/general loss and lm-evaluation-harness benchmark suites.

- Held-out loss: token-weighted mean NLL (nats/token) over a validation set, computed with pplaw's own
  scorer (:class:`pplaw.score.scorer.PerplexityScorer`): ``loss = sum(nll_sum) / sum(n_scored)`` over chunks,
  ``ppl = exp(loss)``. Text is cut into chunks with :func:`pplaw.score.chunking.chunk_texts`, token chunks
  (``input_ids``) are scored as they are.
- Benchmarks: ``lm_eval.simple_evaluate`` in-process, with an ``HFLM`` wrapped around the model and a
  ``TaskManager`` whose ``include_path`` holds the local task YAMLs (:mod:`pplaw.tasks`). Per task:
  ``acc``, ``acc_norm`` and their stderr; per suite: the mean ``acc`` (``avg``) and mean ``acc_norm``.

``pplaw evaluate --run_dir DIR`` evaluates a finished run and merges the results into its run record;
``pplaw evaluate --model DIR`` evaluates any model and prints (or ``--output``-writes) the results.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pplaw import tasks
from pplaw._checks import at_least, integer, is_finite, require
from pplaw.exceptions import ConfigError, InvalidInputError, PplawError

log = logging.getLogger("pplaw.evaluate")
METRICS = ("acc", "acc_norm")


@dataclass
class EvalConfig:
    """How a model is evaluated (after training, or with ``pplaw evaluate``)."""

    domain_eval_data: str | None = field(
        default=None, metadata={"help": "Held-out domain set (Parquet/JSONL/dataset folder; 'input_ids' or text)."})
    general_eval_data: str | None = field(default=None, metadata={"help": "Held-out general set (same formats)."})
    eval_text_column: str = field(default="text", metadata={"help": "Text column of the held-out sets."})
    eval_chunk_tokens: int | None = field(
        default=None, metadata={"help": "Chunk length for held-out text; default: the training max_length, else 1024."})
    eval_max_chunks: int | None = field(default=None, metadata={"help": "Score at most this many held-out chunks."})
    eval_tokens_per_batch: int = field(default=16384, metadata={"help": "Scorer micro-batch size in padded tokens."})
    suites: list[str] = field(
        default_factory=list, metadata={"help": "Benchmark suites: medical, general, or suite_definitions keys."})
    tasks: list[str] = field(default_factory=list, metadata={"help": "Extra lm-eval task or group names."})
    suite_definitions: dict | str | None = field(
        default=None, metadata={"help": "Recipe suites: {name: [task, ...]} (JSON on the command line)."})
    task_source: str = field(
        default="auto", metadata={"help": "'online' (lm-eval tasks, Hub data), 'local' (X -> X_local over local "
                                          "exports) or 'auto' (PPLAW_TASK_SOURCE, default online)."})
    task_data: str | None = field(
        default=None, metadata={"help": "Local task data directory (default: PPLAW_TASK_DATA)."})
    task_include_path: list[str] = field(
        default_factory=list, metadata={"help": "More lm-eval task folders (include_path)."})
    num_fewshot: int | None = field(default=None, metadata={"help": "Few-shot examples (default: each task's own)."})
    bench_limit: float | None = field(
        default=None, metadata={"help": "At most N examples per task (< 1: a fraction); for smoke tests only."})
    bench_batch_size: int = field(default=8, metadata={"help": "lm-eval batch size."})
    bench_bootstrap_iters: int = field(default=1000, metadata={"help": "Bootstrap iterations for non-mean stderrs."})
    eval_after_train: bool = field(default=True, metadata={"help": "Evaluate when `pplaw train` finishes."})

    def __post_init__(self) -> None:
        # checked when `pplaw train` / `pplaw evaluate` parse their arguments, before a model is loaded
        check_evaluation(self, "--")
        integer(self.eval_chunk_tokens, "--eval_chunk_tokens", 2, optional=True)
        integer(self.bench_bootstrap_iters, "--bench_bootstrap_iters", 0)


def check_evaluation(e: Any, key: str) -> None:
    """The value checks of the evaluation options, wherever they are set: the recipe's evaluate section
    (``key="evaluate."``) and the commands' :class:`EvalConfig` (``key="--"``)."""
    require(e.bench_limit is None or (is_finite(e.bench_limit) and e.bench_limit > 0), f"{key}bench_limit",
            "be > 0", e.bench_limit)
    at_least(e.num_fewshot, f"{key}num_fewshot", 0, optional=True)
    for name in ("bench_batch_size", "eval_tokens_per_batch"):
        at_least(getattr(e, name), f"{key}{name}", 1)
    at_least(e.eval_max_chunks, f"{key}eval_max_chunks", 1, optional=True)


def wants_evaluation(ecfg: EvalConfig) -> bool:
    return bool(ecfg.domain_eval_data or ecfg.general_eval_data or ecfg.suites or ecfg.tasks)


# ----------------------------------------------------------------------------------------------------------
# held-out loss


def heldout_token_ids(data: str, tokenizer, *, text_column: str = "text", chunk_tokens: int = 1024,
                      max_chunks: int | None = None, what: str = "held-out set") -> list:
    """The token-id chunks of a held-out set (as stored, or cut from text with ``chunk_texts``)."""
    from pplaw.score.chunking import chunk_texts
    from pplaw.train.data import load_table
    from pplaw.exceptions import MissingColumnError

    ds = load_table(data, what=what)
    if "input_ids" not in ds.column_names:
        if text_column not in ds.column_names:
            raise MissingColumnError(f"{what} {data!r} needs an 'input_ids' column or a {text_column!r} text column; "
                                     f"columns found: {ds.column_names}")
        chunker = chunk_texts(tokenizer, chunk_tokens=chunk_tokens, text_column=text_column)
        ds = ds.map(chunker, batched=True, with_indices=True, remove_columns=ds.column_names, desc=f"chunk {what}")
    if max_chunks is not None:
        ds = ds.select(range(min(max_chunks, len(ds))))
    ids = [x for x in ds["input_ids"] if len(x) >= 2]
    if not ids:
        raise InvalidInputError(f"{what} {data!r} has no chunk of 2 or more tokens to score")
    return ids


def heldout_loss(model, tokenizer, token_ids: list, *, tokens_per_batch: int = 16384) -> dict[str, Any]:
    """``{"loss", "ppl", "n_tokens", "n_chunks"}``: token-weighted mean NLL of ``token_ids`` under ``model``."""
    from pplaw.score.scorer import PerplexityScorer

    out = PerplexityScorer(model, tokenizer, max_tokens_per_batch=tokens_per_batch).score_token_ids(token_ids)
    n = int(out["n_scored"].sum())
    loss = float(out["nll_sum"].sum() / n)
    return {"loss": loss, "ppl": math.exp(loss), "n_tokens": n, "n_chunks": len(token_ids)}


# ----------------------------------------------------------------------------------------------------------
# benchmarks


def _suite_definitions(value: dict | str | None) -> dict[str, list[str]]:
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"suite_definitions must be a mapping {{suite: [tasks]}} (JSON on the command line): {err}") from err
    require(isinstance(value, dict) and all(isinstance(v, list) and all(isinstance(t, str) for t in v) and bool(v)
                                            for v in value.values()),
            "suite_definitions", "map suite names to non-empty lists of task names", value)
    return value


def plan_benchmarks(ecfg: EvalConfig, workdir: str | Path) -> tuple[list[str], dict[str, list[str]], Any]:
    """(lm-eval task names, {suite: member names}, TaskManager) for ``ecfg``; local tasks render into ``workdir``.

    Raises :class:`ConfigError` for unknown suites/tasks (with a "did you mean" list) and
    :class:`InvalidInputError` for missing local data files.
    """
    from lm_eval.tasks import TaskManager

    source = tasks.resolve_source(ecfg.task_source)
    extra = _suite_definitions(ecfg.suite_definitions)
    leaves, groups = tasks.catalog()
    suites: dict[str, list[str]] = {s: tasks.suite_members(s, source, extra) for s in ecfg.suites}
    names = [n for members in suites.values() for n in members]
    names += [tasks.local_name(t) if source == "local" and (t in leaves or t in groups) else t for t in ecfg.tasks]
    names = list(dict.fromkeys(names))  # dedupe, keep order
    include = [str(Path(p).expanduser().resolve()) for p in ecfg.task_include_path]
    for p in include:
        if not Path(p).is_dir():
            raise InvalidInputError(f"task_include_path {p!r} is not a directory")
    local = [n for n in names if n.endswith(tasks.LOCAL_SUFFIX) and tasks.online_name(n) in {**leaves, **groups}]
    if local:
        data = tasks.resolve_data_dir(ecfg.task_data)
        tasks.check_local_data(local, data)
        include.insert(0, str(tasks.render_local_tasks(data, Path(workdir) / "lm_eval_tasks")))
    # lm-eval's own index takes seconds to build: only when a name is not local.
    tm = TaskManager(include_path=include or None, include_defaults=False) if include else None
    if tm is None or any(n not in tm.all_tasks for n in names):
        tm = TaskManager(include_path=include or None, include_defaults=True)
    known = set(tm.all_tasks) | set(tasks.suites()) | set(extra)
    for n in names:
        if n not in tm.all_tasks:
            hint = tasks.did_you_mean(n, known)
            raise ConfigError(f"unknown benchmark task {n!r}{hint or ' (no similar task name)'}; `lm_eval ls tasks` "
                              f"lists lm-eval's tasks, `pplaw tasks list` the suites")
    return names, suites, tm


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def summarize(results: dict[str, Any], suites: dict[str, list[str]]) -> dict[str, Any]:
    """Per-task acc/acc_norm (+ stderr, n_samples) and per-suite averages from ``simple_evaluate`` output."""
    per_task: dict[str, dict[str, Any]] = {}
    n_samples = results.get("n-samples", {})
    for name, metrics in results.get("results", {}).items():
        row: dict[str, Any] = {}
        for m in METRICS:
            row[m] = _num(metrics.get(f"{m},none"))
            row[f"{m}_stderr"] = _num(metrics.get(f"{m}_stderr,none"))
        if name in n_samples:
            row["n_samples"] = n_samples[name].get("effective")
        per_task[name] = row
    suite_rows = {}
    for suite, members in suites.items():
        accs = [per_task.get(m, {}).get("acc") for m in members]
        norms = [per_task.get(m, {}).get("acc_norm") for m in members]
        accs, norms = [a for a in accs if a is not None], [a for a in norms if a is not None]
        suite_rows[suite] = {
            "tasks": members,
            "avg": sum(accs) / len(accs) if len(accs) == len(members) else None,
            "acc_norm_avg": sum(norms) / len(norms) if len(norms) == len(members) else None,
            "n_tasks_with_acc": len(accs),
        }
    return {"tasks": per_task, "suites": suite_rows}


def _quiet_git_hash() -> str | None:
    """lm-eval's ``get_git_commit_hash`` without its stray "fatal: not a git repository" on the terminal."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_benchmarks(model, tokenizer, ecfg: EvalConfig) -> dict[str, Any]:
    """Run the configured suites/tasks through lm-eval; ``model`` is a loaded model or a path."""
    import lm_eval.evaluator
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    if hasattr(lm_eval.evaluator, "get_git_commit_hash"):  # it lets git print to stderr outside a checkout
        lm_eval.evaluator.get_git_commit_hash = _quiet_git_hash

    with tempfile.TemporaryDirectory(prefix="pplaw-tasks-") as work:
        names, suites, tm = plan_benchmarks(ecfg, work)
        if isinstance(model, (str, Path)):
            import torch

            lm = HFLM(pretrained=str(model), tokenizer=tokenizer, batch_size=ecfg.bench_batch_size,
                      device="cuda" if torch.cuda.is_available() else "cpu")
        else:
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=ecfg.bench_batch_size)
        limit = ecfg.bench_limit
        if limit is not None and limit >= 1:
            limit = int(limit)
        try:
            results = simple_evaluate(model=lm, tasks=names, task_manager=tm, num_fewshot=ecfg.num_fewshot,
                                      limit=limit, bootstrap_iters=ecfg.bench_bootstrap_iters, log_samples=False)
        except PplawError:
            raise
        except Exception as err:  # a Hub dataset out of reach, a broken task YAML: say where it happened
            raise PplawError(f"lm-eval failed on tasks {names} (task_source={tasks.resolve_source(ecfg.task_source)}): "
                             f"{type(err).__name__}: {err}. Offline? use task_source=local with exported data "
                             f"(`pplaw tasks export`)") from err
    out = summarize(results, suites)
    out.update(source=tasks.resolve_source(ecfg.task_source), limit=ecfg.bench_limit, num_fewshot=ecfg.num_fewshot,
               requested=names)
    return out


# ----------------------------------------------------------------------------------------------------------
# one model


def _load(model_path: str, tokenizer):
    import torch
    from transformers import AutoTokenizer

    from pplaw.config import load_causal_lm

    hub_like = model_path.count("/") == 1 and not model_path.startswith((".", "/", "~"))
    if not Path(model_path).expanduser().exists() and not hub_like:
        raise InvalidInputError(f"model {model_path!r} does not exist (expected a model folder or a Hub id org/name)")
    cuda = torch.cuda.is_available()
    try:
        tok = tokenizer if tokenizer is not None and not isinstance(tokenizer, str) else \
            AutoTokenizer.from_pretrained(tokenizer or model_path)
        model = load_causal_lm(str(model_path), "model_path", dtype="auto" if cuda else torch.float32)
    except OSError as err:  # not a model folder, or a Hub id out of reach
        raise InvalidInputError(f"cannot load model {model_path!r}: {err}") from err
    return model.to("cuda" if cuda else "cpu").eval(), tok


def evaluate_model(model, tokenizer, ecfg: EvalConfig, *, seq_len: int | None = None) -> dict[str, Any]:
    """Held-out losses and benchmarks of ``model`` (a loaded model or a path).

    Returns ``{"eval": {"domain": {...}, "general": {...}}, "benchmarks": {...}, "wall_times": {...}}``.
    """
    if isinstance(model, (str, Path)):
        model, tokenizer = _load(str(model), tokenizer)
    model.eval()
    chunk = ecfg.eval_chunk_tokens or seq_len or min(1024, getattr(model.config, "max_position_embeddings", 1024))
    result: dict[str, Any] = {"eval": {}, "benchmarks": {}, "wall_times": {}}
    t0 = time.perf_counter()
    for name, data in (("domain", ecfg.domain_eval_data), ("general", ecfg.general_eval_data)):
        if data:
            ids = heldout_token_ids(data, tokenizer, text_column=ecfg.eval_text_column, chunk_tokens=chunk,
                                    max_chunks=ecfg.eval_max_chunks, what=f"{name}_eval_data")
            result["eval"][name] = {**heldout_loss(model, tokenizer, ids, tokens_per_batch=ecfg.eval_tokens_per_batch),
                                    "data": str(data), "chunk_tokens": chunk}
            log.info("%s held-out loss %.4f (%d tokens)", name, result["eval"][name]["loss"], result["eval"][name]["n_tokens"])
    result["wall_times"]["eval_loss_s"] = time.perf_counter() - t0
    if ecfg.suites or ecfg.tasks:
        t1 = time.perf_counter()
        result["benchmarks"] = run_benchmarks(model, tokenizer, ecfg)
        result["wall_times"]["benchmarks_s"] = time.perf_counter() - t1
    return result


def evaluate_run(run_dir: str | Path, ecfg: EvalConfig, *, model=None, tokenizer=None, seq_len: int | None = None):
    """Evaluate a run's final model (or ``model``) and merge the results into its record."""
    from transformers import AutoTokenizer

    from pplaw import runs

    run_dir = Path(run_dir)
    rec = runs.read_record(run_dir)
    final = run_dir / (rec.get("model") or {}).get("final_dir", runs.FINAL_DIR)
    if model is None and (rec["status"] not in ("trained", "evaluated") or not final.is_dir()):
        raise InvalidInputError(f"run {str(run_dir)!r} has not finished training (status {rec['status']!r}, no "
                                f"{final.name}/): run `pplaw train` with its recipe again to resume it first")
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(final)
    result = evaluate_model(model if model is not None else str(final), tokenizer, ecfg, seq_len=seq_len)
    bench = dict(rec.get("benchmarks") or {})
    new = result["benchmarks"]
    if new:  # a later evaluation with other tasks adds to the earlier results instead of dropping them
        bench.update({k: v for k, v in new.items() if k not in ("tasks", "suites")})
        for key in ("tasks", "suites"):
            bench[key] = {**(bench.get(key) or {}), **(new.get(key) or {})}
    return runs.update_record(run_dir, status="evaluated", eval=result["eval"], benchmarks=bench,
                              wall_times=result["wall_times"])
