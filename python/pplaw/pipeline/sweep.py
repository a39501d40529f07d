"""Train and evaluate many runs (the sweep's grid points, the final comparison), resumably.

Each run has a folder ``<stage>/<run id>/`` holding ``spec.json`` (what this run is: its ``pplaw train``
options and where it comes from in the plan), then what :mod:`pplaw.train.cpt` writes (``run_record.json``,
``model/``, ``training_curve.png``) and ``train.log`` (the trainer's output). A run is *finished* when its
record says ``evaluated`` and its ``spec.json`` matches: it is never trained again. A run whose spec
changed (another recipe) is deleted and redone. A run whose training fails gets ``failed.json`` (error
type, message, traceback), the others go on, and the next ``pplaw run`` retries it.

Runs are trained one after another in this process (``workers <= 1``), or by a pool of worker processes
(``workers > 1``): one per GPU (each sees only its own through ``CUDA_VISIBLE_DEVICES``) or, on a CPU, each
with ``threads_per_worker`` torch threads. With ``launcher="accelerate"`` every run is a subprocess
``accelerate launch --config_file CFG -m pplaw.cli.train --config spec.yaml``, for multi-GPU runs.

On a cluster (``train.executor: ray`` or ``slurm``) :func:`run_all` hands the unfinished runs to an executor
(:mod:`pplaw.pipeline.executors`), which runs the same :func:`train_one` on the cluster's nodes: the folders,
the finished-run rule and ``failed.json`` are the same whichever executor ran a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import yaml

from pplaw import runs
from pplaw.pipeline.recipe import RunRecipe, digest
from pplaw.runs import write_json_atomic

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.pipeline.artefacts import Inputs

SPEC = "spec.json"
FAILED = "failed.json"
LOG = "train.log"


@dataclass
class RunSpec:
    """One run: its id, folder, flat ``pplaw train`` options and plan metadata (carried into the table)."""

    id: str
    dir: Path
    cpt: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    keep_model: bool = True
    root: Path | None = None  # the run directory: paths inside it count relative to it in the key

    @property
    def key(self) -> str:
        """What the run is: its options and metadata, paths inside ``root`` relative to it (so a moved run
        directory keeps its finished runs)."""
        return digest({"cpt": self._keyed(), "meta": self.meta}, self.root)

    def _keyed(self) -> dict[str, Any]:
        # where the training logs go does not change what a run computes: keyed as the "none" every run had
        # before TensorBoard logging, so installing tensorboard does not re-run a finished sweep
        return {**self.cpt, "report_to": "none"} if "report_to" in self.cpt else self.cpt


def cpt_options(recipe: RunRecipe, inp: Inputs, *, train_data: Path, run_dir: Path, indices: Path | None,
                tokens: int, replay_ratio: float, seed: int, bench: dict[str, Any] | None) -> dict[str, Any]:
    """The flat ``pplaw train`` options of one run (``pplaw.train.cpt.CPTConfig``, ``EvalConfig``, training args).

    ``inp``: the resolved inputs (base model, tokenizer, general data, held-out sets); ``train_data``: the
    scored chunks the run's ``indices`` select from; ``bench``: the benchmark options (:func:`bench_options`)
    or None (no benchmarks). The run trains on ``epochs x tokens`` domain tokens (plus replay at
    ``replay_ratio``), so every run of a comparison sees the same number of tokens.
    """
    import torch

    t, ev = recipe.train, recipe.evaluate
    budget = int(round(t.epochs * tokens / (1.0 - replay_ratio)))
    opts: dict[str, Any] = {
        "model_name_or_path": inp.base_model, "tokenizer_name_or_path": inp.tokenizer,
        "model_dtype": t.model_dtype, "domain_data": str(train_data),
        "domain_indices": str(indices) if indices is not None else None, "indices_column": "row",
        "general_data": inp.general_data if replay_ratio > 0 else None, "replay_ratio": float(replay_ratio),
        "budget_tokens": budget, "allow_repeat": True, "run_id": run_dir.name,
        "output_dir": str(run_dir), "max_length": t.max_length,
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps, "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler_type, "warmup_steps": t.warmup_steps, "weight_decay": t.weight_decay,
        "seed": int(seed), "report_to": report_to(t.report_to), "disable_tqdm": True, "save_steps": 100_000,
        "logging_steps": 10, "use_cpu": not torch.cuda.is_available(),
        "domain_eval_data": inp.domain_eval_data, "general_eval_data": inp.general_eval_data,
        "eval_chunk_tokens": recipe.scoring.chunk_tokens, "eval_max_chunks": ev.eval_max_chunks,
        "eval_tokens_per_batch": ev.eval_tokens_per_batch,
    }
    if bench:
        opts.update(bench)
    opts.update(t.args)  # the recipe's extra `pplaw train` options win
    return {k: v for k, v in opts.items() if v is not None}


def report_to(value: str) -> str:
    """``train.report_to``: ``auto`` is ``tensorboard`` when it is installed (each run then logs under its own
    folder, ``<run>/runs/``, transformers' default), else ``none``; any other value is passed on as given."""
    if value != "auto":
        return value
    import importlib.util

    return "tensorboard" if importlib.util.find_spec("tensorboard") is not None else "none"


def bench_options(recipe: RunRecipe, inp: Inputs) -> dict[str, Any]:
    """EvalConfig options for the domain and general benchmarks: suites by name, other entries as tasks."""
    from pplaw import tasks as bench_tasks

    ev = recipe.evaluate
    names = list(dict.fromkeys(ev.domain_benchmarks + ev.general_benchmarks))
    if not names:
        return {}
    known = set(bench_tasks.suites())
    return {"suites": [n for n in names if n in known], "tasks": [n for n in names if n not in known],
            "task_source": ev.task_source, "task_data": ev.task_data,
            "task_include_path": list(ev.task_include_path) + list(inp.task_include_path or []),
            "num_fewshot": ev.num_fewshot, "bench_limit": ev.bench_limit, "bench_batch_size": ev.bench_batch_size}


def bench_score(record: dict[str, Any], names: list[str]) -> float | None:
    """Mean accuracy over benchmark entries (a suite's average, or a task's acc); None if one is missing."""
    bench = record.get("benchmarks") or {}
    suites, tasks = bench.get("suites") or {}, bench.get("tasks") or {}
    vals = []
    for n in names:
        if n in suites:
            vals.append(suites[n].get("avg"))
        else:
            vals.append((tasks.get(n) or tasks.get(n + "_local") or {}).get("acc"))
    if not vals or any(v is None for v in vals):
        return None
    return float(sum(vals) / len(vals))


# ----------------------------------------------------------------------------------------------------------
# one run


def is_finished(spec: RunSpec) -> bool:
    """Finished: an evaluated record from this very spec (a changed spec makes the old run stale)."""
    try:
        old = json.loads((spec.dir / SPEC).read_text(encoding="utf-8"))
        rec = runs.read_record(spec.dir)
    except Exception:  # noqa: BLE001 - no, or an unreadable, spec/record: not finished
        return False
    return old.get("key") == spec.key and rec.get("status") == "evaluated"


def prepare_dir(spec: RunSpec) -> None:
    """Fresh folder for a run that is not finished: keep a resumable same-spec run, drop a stale one."""
    path = spec.dir / SPEC
    if path.is_file():
        try:
            same = json.loads(path.read_text(encoding="utf-8")).get("key") == spec.key
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(spec.dir)
    spec.dir.mkdir(parents=True, exist_ok=True)
    (spec.dir / FAILED).unlink(missing_ok=True)
    write_json_atomic(path, {"id": spec.id, "key": spec.key, "cpt": spec.cpt, "meta": spec.meta})


@contextlib.contextmanager
def _captured(log_path: Path, fd_level: bool):
    """Send the trainer's output to ``log_path``: at the file-descriptor level in a worker process, at the
    Python level in the main process (whose own progress bar must stay on the terminal)."""
    with open(log_path, "a", encoding="utf-8") as fh:
        if fd_level:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(fh.fileno(), 1)
            os.dup2(fh.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        else:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                yield


def train_one(spec: RunSpec, launcher: str = "inprocess", accelerate_config: str | None = None,
              in_worker: bool = False) -> dict[str, Any]:
    """Train and evaluate one run; a failure is written to ``failed.json`` and returned, never raised
    (KeyboardInterrupt still stops everything)."""
    prepare_dir(spec)
    try:
        if launcher == "accelerate":
            cfg = spec.dir / "spec.yaml"
            cfg.write_text(yaml.safe_dump(spec.cpt, sort_keys=True), encoding="utf-8")
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
                   "-m", "pplaw.cli.train", "--config", str(cfg)]
            with open(spec.dir / LOG, "a", encoding="utf-8") as fh:
                proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` exited with {proc.returncode}; see {spec.dir / LOG}")
        else:
            from pplaw.train import cpt

            with _captured(spec.dir / LOG, fd_level=in_worker):
                cfg, ecfg, targs = cpt.parse_args([], yaml_overrides=spec.cpt)
                cpt.train(cfg, ecfg, targs)
        rec = runs.read_record(spec.dir)
        if rec.get("status") != "evaluated":
            raise RuntimeError(f"run ended with status {rec.get('status')!r} instead of 'evaluated'")
        if not spec.keep_model:
            shutil.rmtree(spec.dir / "model", ignore_errors=True)
        return {"id": spec.id, "status": "ok"}
    except Exception as err:  # noqa: BLE001 - a failed run is recorded and the sweep goes on
        info = {"id": spec.id, "error_type": type(err).__name__, "error": str(err),
                "traceback": traceback.format_exc()}
        write_json_atomic(spec.dir / FAILED, info)
        return {"id": spec.id, "status": "failed", "error": f"{type(err).__name__}: {err}"}


def record_failure(spec: RunSpec, error_type: str, error: str, tb: str = "") -> dict[str, Any]:
    """Write ``failed.json`` for a run that died outside :func:`train_one` (its worker, node or job was lost)
    and return its result."""
    write_json_atomic(spec.dir / FAILED, {"id": spec.id, "error_type": error_type, "error": error, "traceback": tb})
    return {"id": spec.id, "status": "failed", "error": f"{error_type}: {error}"}


class Executor(Protocol):
    """Runs unfinished runs somewhere else (:mod:`pplaw.pipeline.executors`); ``finish(spec, result)`` is
    called once per run as it ends. A run it leaves running (a detached Slurm job) gets no ``finish``."""

    def run(self, todo: list[RunSpec], finish: Callable[[RunSpec, dict[str, Any]], None]) -> None: ...


_WORKER: dict[str, Any] = {}


def _init_worker(threads: int, devices: Any) -> None:
    """Pool initializer: pin one GPU (if any) and the torch thread count for this worker process."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(threads)
    _quiet()


def _worker_train(spec: RunSpec, launcher: str, accelerate_config: str | None) -> dict[str, Any]:
    return train_one(spec, launcher, accelerate_config, in_worker=True)


def train_pinned(spec: RunSpec, launcher: str, accelerate_config: str | None, threads: int) -> dict[str, Any]:
    """:func:`train_one` in a process of a cluster executor (a Ray worker, a Slurm job): torch threads pinned
    to the CPUs the run was given, the trainer's output to its ``train.log``."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(threads)
    _quiet()
    return train_one(spec, launcher, accelerate_config, in_worker=True)


def _quiet() -> None:
    """Library chatter (datasets bars, transformers info) off; our own bar and the logs say enough."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()


# ----------------------------------------------------------------------------------------------------------
# many runs


def plan_workers(requested: int, threads: int) -> tuple[int, int, list[str] | None]:
    """(workers, threads per worker, GPU ids or None) from the recipe's ``workers``/``threads_per_worker``."""
    import torch

    gpus = [str(i) for i in range(torch.cuda.device_count())]
    cores = os.cpu_count() or 1
    if requested == 0:
        requested = len(gpus) if gpus else max(1, cores // 2)
    if gpus:
        requested = min(requested, len(gpus))
    threads = threads or max(1, cores // max(requested, 1))
    return requested, threads, (gpus if gpus and requested > 1 else None)


TWIN = "twin_of.json"  # in a run folder that reuses an identical run's result instead of training again


def twin_key(spec: RunSpec) -> str:
    """What a run computes, whatever it is called and where it lives: its options without its name and folders,
    and its subset's row positions instead of the indices file's path. Two runs with one twin key train the same
    model on the same tokens in the same order (DOS and the best-sweep baseline, when DOS takes the best sweep
    regime: in every fresh seed so far, three runs of the quickstart's 18 were trained twice)."""
    import hashlib

    import numpy as np

    from pplaw.io import read_indices

    opts = {k: v for k, v in spec.cpt.items() if k not in ("run_id", "output_dir", "domain_indices")}
    rows = None
    if spec.cpt.get("domain_indices"):
        try:
            rows = hashlib.sha256(np.ascontiguousarray(read_indices(spec.cpt["domain_indices"])[0],
                                                       dtype=np.int64).tobytes()).hexdigest()
        except Exception:  # noqa: BLE001 - an unreadable indices file: the run is its own (it fails on its own)
            rows = f"unreadable:{spec.cpt['domain_indices']}"
    return digest({"cpt": opts, "rows": rows})


def adopt(twin: RunSpec, done: RunSpec) -> dict[str, Any]:
    """Give ``twin`` the finished result of the identical run ``done``: its spec (its own key, so it counts as
    finished), ``done``'s run record (under the twin's id, with ``twin_of``), a pointer ``twin_of.json`` and a
    link to ``done``'s model folder."""
    prepare_dir(twin)
    rec = runs.read_record(done.dir)
    write_json_atomic(twin.dir / runs.RECORD_NAME, {**rec, "run_id": twin.id, "twin_of": done.id})
    write_json_atomic(twin.dir / TWIN, {"twin_of": done.id, "dir": os.path.relpath(done.dir, twin.dir),
                                        "why": "same options and subset rows: trained once"})
    if (done.dir / "model").is_dir() and not (twin.dir / "model").exists():
        (twin.dir / "model").symlink_to(os.path.relpath(done.dir / "model", twin.dir), target_is_directory=True)
    return {"id": twin.id, "status": "ok", "twin_of": done.id}


def run_all(specs: list[RunSpec], *, workers: int, threads: int, launcher: str = "inprocess",
            accelerate_config: str | None = None, desc: str = "runs",
            on_done: Callable[[RunSpec, dict], None] | None = None,
            executor: Executor | None = None) -> dict[str, dict[str, Any]]:
    """Train every unfinished run; returns ``{id: {"status": "ok" | "failed" | "skipped" | "submitted",
    "error"}}``. With ``executor`` (Ray, Slurm) the runs execute there; ``"submitted"``: a run whose job was
    left running (``--detach``)."""
    from tqdm.auto import tqdm

    results: dict[str, dict[str, Any]] = {}
    todo, done, twins = [], {}, {}
    keys = {s.id: twin_key(s) for s in specs}  # each indices file read once
    for s in specs:
        if is_finished(s):
            results[s.id] = {"id": s.id, "status": "skipped"}
            done.setdefault(keys[s.id], s)
        else:
            todo.append(s)
    leaders: dict[str, RunSpec] = {}
    for s in list(todo):  # a run identical to another is trained once: the other adopts its result
        k = keys[s.id]
        if k in done or k in leaders:
            twins.setdefault(k, []).append(s)
            todo.remove(s)
        else:
            leaders[k] = s
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo) - sum(map(len, twins.values())), desc=desc,
               unit="run", dynamic_ncols=True, file=sys.stderr)
    n_failed = 0

    def finish(spec: RunSpec, res: dict[str, Any]) -> None:
        nonlocal n_failed
        results[spec.id] = res
        n_failed += res["status"] == "failed"
        if res["status"] == "failed":
            bar.write(f"  ! run {spec.id} failed: {res['error'][:300]} (details: {spec.dir / FAILED})")
        bar.set_postfix_str(f"last {spec.id}" + (f", {n_failed} failed" if n_failed else ""))
        bar.update(1)
        if on_done is not None:
            on_done(spec, res)
        for twin in twins.pop(keys[spec.id], []) if res["status"] == "ok" else []:
            finish(twin, adopt(twin, spec))

    for k in [k for k in twins if k in done]:  # identical to a run finished before: nothing to train
        for twin in twins.pop(k):
            finish(twin, adopt(twin, done[k]))

    try:
        n, th, gpus = plan_workers(workers, threads)
        if executor is not None:
            if todo:
                executor.run(todo, finish)
            for s in todo:
                results.setdefault(s.id, {"id": s.id, "status": "submitted"})
        elif n <= 1 or len(todo) <= 1:
            import torch

            old = torch.get_num_threads()
            torch.set_num_threads(th)
            _quiet()
            try:
                for s in todo:
                    bar.set_postfix_str(f"training {s.id}")
                    finish(s, train_one(s, launcher, accelerate_config))
            finally:
                torch.set_num_threads(old)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # never fork a process holding torch threads
            devices = None
            if gpus:
                devices = ctx.Queue()
                for g in gpus[:n]:
                    devices.put(g)
            with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(th, devices)) as pool:
                futs = {pool.submit(_worker_train, s, launcher, accelerate_config): s for s in todo}
                for fut in as_completed(futs):
                    s = futs[fut]
                    try:
                        res = fut.result()
                    except Exception as err:  # noqa: BLE001 - a worker that died (out of memory...)
                        res = record_failure(s, type(err).__name__, f"worker died: {err}")
                    finish(s, res)
    finally:
        bar.close()
    for k, left in twins.items():  # the run they were waiting for failed or was left running (--detach)
        lead = leaders[k]
        status = results.get(lead.id, {}).get("status")
        try:
            info = json.loads((lead.dir / FAILED).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {"error_type": "RuntimeError", "error": f"ended with status {status!r}"}
        for twin in left:
            twin.dir.mkdir(parents=True, exist_ok=True)
            results[twin.id] = ({"id": twin.id, "status": "submitted"} if status == "submitted" else
                                record_failure(twin, info.get("error_type", "RuntimeError"),
                                               f"{info.get('error')} (as the identical run {lead.id}, trained once "
                                               "for both)", info.get("traceback", "")))
    return results


def _why_unfinished(spec: RunSpec) -> str:
    try:
        rec = runs.read_record(spec.dir)
    except Exception as err:  # noqa: BLE001 - no record or an unreadable one
        return f"no readable run record in {str(spec.dir)!r} ({type(err).__name__})"
    return f"its record in {str(spec.dir)!r} says {rec.get('status')!r}, not 'evaluated'"


def run_table(specs: list[RunSpec], recipe: RunRecipe) -> list[dict[str, Any]]:
    """One row per run: plan metadata, status/error, and (when finished) its losses and benchmark scores."""
    rows = []
    ev = recipe.evaluate
    for s in specs:
        row: dict[str, Any] = {"id": s.id, **s.meta, "status": "pending", "error": None}
        failed = s.dir / FAILED
        if is_finished(s):
            rec = runs.read_record(s.dir)
            flat = runs.flatten_record(rec)
            row.update(status="ok", domain_loss=flat.get("domain_loss"), general_loss=flat.get("general_loss"),
                       train_loss=flat.get("train_loss"), steps=flat.get("steps"),
                       tokens_trained=flat.get("tokens_total"), domain_epochs=flat.get("domain_epochs"),
                       train_s=flat.get("time.train_s"),
                       domain_bench=bench_score(rec, ev.domain_benchmarks),
                       general_bench=bench_score(rec, ev.general_benchmarks))
        elif failed.is_file():
            info = json.loads(failed.read_text(encoding="utf-8"))
            row.update(status="failed", error=f"{info.get('error_type')}: {info.get('error')}")
        else:  # never dropped silently: a run that did not finish is a failure with a reason
            row.update(status="failed", error=f"not finished: {_why_unfinished(s)}")
        rows.append(row)
    return rows
