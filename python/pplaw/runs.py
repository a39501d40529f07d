"""Run records: one JSON file per CPT run, and a loader that turns a folder of them into a table.

Each run directory holds ``run_record.json`` (:data:`RECORD_NAME`), written atomically (temp file in the
same directory, then ``os.replace``) so a reader never sees half a record, whatever kills the writer.
The record is created when training starts (``status="training"``), completed when the final model is
saved (``"trained"``) and again after evaluation (``"evaluated"``).

Schema (``schema_version`` 1; every section is present, values may be ``null``)::

    schema_version, run_id, status ("training" | "trained" | "evaluated"), created_at, updated_at, run_dir
    config       {cpt: {...}, eval: {...}, training_args: {...}}       the full parsed config
    model        {base, final_dir, n_params, n_params_non_embedding}
    subset       {domain_data, indices_file, n_chunks, tokens, mu, sigma, space, R, R_actual}
                 tokens = domain tokens of the packed subset; mu/sigma = PPL mean/std of its chunks in
                 `space` (null when the chunks carry no ppl); R = configured replay ratio (tokens), R_actual = realised
    training     {seed, seq_len, global_batch_size, world_size, steps, tokens_per_step, budget_tokens,
                  tokens_total, tokens_domain (= D), tokens_general, domain_epochs, general_epochs,
                  train_loss, last_logged_loss, global_step, num_input_tokens_seen, resumed_from,
                  log_history: [{step, loss, learning_rate, grad_norm, ...}]}
    eval         {domain: {loss, ppl, n_tokens, n_chunks, data, chunk_tokens}, general: {...}}
                 loss = token-weighted mean NLL in nats = sum(nll_sum) / sum(n_scored) over held-out chunks
    benchmarks   {source, limit, num_fewshot, requested: [task names],
                  tasks: {task: {acc, acc_stderr, acc_norm, acc_norm_stderr, n_samples}},
                  suites: {suite: {tasks: [...], avg, acc_norm_avg, n_tasks_with_acc}}}
    wall_times   {data_s, train_s, eval_loss_s, benchmarks_s}        seconds
    environment  {versions: {package: version}, git_revision, git_dirty, python, platform, device, world_size}

:func:`load_runs` flattens them into one ``pandas.DataFrame`` (see its docstring for the columns).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from pplaw._atomic import atomic_write_json, save_figure
from pplaw.exceptions import EmptyInputError, InvalidInputError, SerializationError

RECORD_NAME = "run_record.json"
# The layout of a run directory (``output_dir`` of :mod:`pplaw.train.cpt`): the record, the final model and
# tokenizer, the training curve; ``checkpoint-N/`` folders while training.
FINAL_DIR = "model"
CURVE_PNG = "training_curve.png"
SCHEMA_VERSION = 1
SECTIONS = ("config", "model", "subset", "training", "eval", "benchmarks", "wall_times", "environment")
_PACKAGES = (
    "pplaw", "pplaw-kernels", "torch", "transformers", "trl", "accelerate", "datasets", "tokenizers",
    "lm_eval", "numpy", "pandas", "pyarrow", "deepspeed", "peft",
)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically (temp file in the same directory, fsync, then
    ``os.replace``): :func:`pplaw._atomic.atomic_write_json`."""
    return atomic_write_json(path, obj, fsync=True)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["pplaw"] is None:  # running from a checkout that is not installed
        from pplaw import __version__

        out["pplaw"] = __version__
    return out


def git_revision(path: str | Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding ``path`` (default: pplaw's own source), or (None, None)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout
        return rev or None, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def environment(device: str | None = None, world_size: int | None = None) -> dict[str, Any]:
    rev, dirty = git_revision()
    return {
        "versions": package_versions(),
        "git_revision": rev,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "world_size": world_size,
    }


def new_record(run_id: str, run_dir: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """An empty record with every section present."""
    rec: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "training",
        "created_at": _now(),
        "updated_at": _now(),
        "run_dir": str(Path(run_dir).resolve()),
    }
    for section in SECTIONS:
        rec[section] = {}
    rec["config"] = config
    return rec


CHECKPOINT_STATE = "trainer_state.json"  # the Trainer writes it last, after the weights, optimizer and RNG
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json",
            "adapter_model.safetensors", "adapter_model.bin")


def checkpoint_is_complete(path: str | Path) -> bool:
    """Whether a ``checkpoint-N`` folder was written to the end: its ``trainer_state.json`` (the Trainer's last
    file) parses, and it holds the model's weights (or a sharded/DeepSpeed state)."""
    p = Path(path)
    try:
        json.loads((p / CHECKPOINT_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any((p / w).is_file() for w in _WEIGHTS) or any(p.glob("global_step*")) or any(p.glob("pytorch_model_fsdp*"))


def last_complete_checkpoint(run_dir: str | Path, log: Any = None) -> str | None:
    """The newest *complete* ``checkpoint-N`` of a run (see :func:`checkpoint_is_complete`), or None.

    A half-written checkpoint (the process was killed while saving it) is skipped, with a warning through
    ``log`` (a ``logging.Logger``), so that a resumed run starts from the one before it instead of failing
    on every retry."""
    import re

    d = Path(run_dir)
    if not d.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in d.iterdir()
                    if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))), reverse=True)
    for _, p in found:
        if checkpoint_is_complete(p):
            return str(p)
        if log is not None:
            log.warning("checkpoint %s is incomplete (killed while saving?): not resuming from it", p)
    return None


def record_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RECORD_NAME


def read_record(path: str | Path) -> dict[str, Any]:
    """Read one record (``path`` is the JSON file or its run directory)."""
    path = Path(path)
    if path.is_dir():
        path = record_path(path)
    if not path.is_file():
        raise InvalidInputError(f"run record {str(path)!r} does not exist")
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SerializationError(f"run record {str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(rec, dict) or "schema_version" not in rec or "run_id" not in rec:
        raise SerializationError(f"run record {str(path)!r} is not a pplaw run record (no schema_version/run_id)")
    if rec["schema_version"] != SCHEMA_VERSION:
        raise SerializationError(
            f"run record {str(path)!r} has schema_version {rec['schema_version']!r}; this pplaw reads "
            f"version {SCHEMA_VERSION}"
        )
    return rec


def save_record(run_dir: str | Path, rec: dict[str, Any]) -> Path:
    rec["updated_at"] = _now()
    return write_json_atomic(record_path(run_dir), rec)


def update_record(run_dir: str | Path, status: str | None = None, **sections: dict[str, Any]) -> dict[str, Any]:
    """Read-modify-write: merge ``sections`` (shallow, per section) into the record and save it atomically."""
    rec = read_record(run_dir)
    for name, values in sections.items():
        if name not in SECTIONS:
            raise InvalidInputError(f"update_record: unknown section {name!r}; sections are {SECTIONS}")
        rec.setdefault(name, {}).update(values)
    if status is not None:
        rec["status"] = status
    save_record(run_dir, rec)
    return rec


def plot_training_curve(rec: dict[str, Any], path: str | Path) -> Path | None:
    """PNG of the training loss against tokens trained on (and the held-out losses, when there), atomically."""
    history = (rec.get("training") or {}).get("log_history") or []
    points = [(h["step"], h["loss"]) for h in history if "step" in h and isinstance(h.get("loss"), (int, float))]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_step = (rec.get("training") or {}).get("tokens_per_step") or 1
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s * per_step for s, _ in points], [loss for _, loss in points], marker=".", label="training loss")
    for name, style in (("domain", "--"), ("general", ":")):
        ev = (rec.get("eval") or {}).get(name) or {}
        if ev.get("loss") is not None:
            ax.axhline(ev["loss"], linestyle=style, color="grey", label=f"held-out {name} loss {ev['loss']:.3f}")
    subset = rec.get("subset") or {}
    ax.set(xlabel="tokens trained on" if per_step > 1 else "step", ylabel="loss (nats/token)",
           title=f"run {rec.get('run_id')}: R={subset.get('R')}, D={(rec.get('training') or {}).get('tokens_domain')}")
    ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110, bbox_inches=None)
    finally:
        plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# the table


def flatten_record(rec: dict[str, Any]) -> dict[str, Any]:
    """One table row of a record (the columns :func:`load_runs` documents)."""
    subset, training = rec.get("subset") or {}, rec.get("training") or {}
    ev, bench = rec.get("eval") or {}, rec.get("benchmarks") or {}
    model = rec.get("model") or {}
    dom, gen = ev.get("domain") or {}, ev.get("general") or {}
    row: dict[str, Any] = {
        "run_id": rec.get("run_id"),
        "run_dir": rec.get("run_dir"),
        "status": rec.get("status"),
        "seed": training.get("seed"),
        "mu": subset.get("mu"),
        "sigma": subset.get("sigma"),
        "space": subset.get("space"),
        "D": training.get("tokens_domain"),
        "R": subset.get("R"),
        "R_actual": subset.get("R_actual"),
        "N": model.get("n_params"),
        "N_non_embedding": model.get("n_params_non_embedding"),
        "subset_tokens": subset.get("tokens"),
        "tokens_total": training.get("tokens_total"),
        "tokens_general": training.get("tokens_general"),
        "steps": training.get("steps"),
        "seq_len": training.get("seq_len"),
        "global_batch_size": training.get("global_batch_size"),
        "domain_epochs": training.get("domain_epochs"),
        "train_loss": training.get("train_loss"),
        "domain_loss": dom.get("loss"),
        "domain_ppl": dom.get("ppl"),
        "domain_eval_tokens": dom.get("n_tokens"),
        "general_loss": gen.get("loss"),
        "general_ppl": gen.get("ppl"),
        "general_eval_tokens": gen.get("n_tokens"),
    }
    for task, metrics in sorted((bench.get("tasks") or {}).items()):
        for metric, value in sorted(metrics.items()):
            if isinstance(value, (int, float)) or value is None:
                row[f"bench.{task}.{metric}"] = value
    for suite, values in sorted((bench.get("suites") or {}).items()):
        row[f"bench.{suite}.avg"] = values.get("avg")
        row[f"bench.{suite}.acc_norm_avg"] = values.get("acc_norm_avg")
    for key, value in sorted((rec.get("wall_times") or {}).items()):
        row[f"time.{key}"] = value
    return row


def load_runs(directory: str | Path, *, include_incomplete: bool = False, recursive: bool = True):
    """All run records under ``directory`` as one ``pandas.DataFrame``, one row per run, sorted by run_id.

    Columns: ``run_id, run_dir, status, seed, mu, sigma, space, D`` (domain tokens trained on), ``R`` (the
    configured replay ratio in tokens), ``R_actual`` (realised), ``N`` (parameters), ``N_non_embedding,
    subset_tokens, tokens_total, tokens_general, steps, seq_len, global_batch_size, domain_epochs,
    train_loss, domain_loss, domain_ppl, domain_eval_tokens, general_loss, general_ppl,
    general_eval_tokens``, one ``bench.<task>.<metric>`` column per benchmark metric (``acc``,
    ``acc_stderr``, ``acc_norm``, ``acc_norm_stderr``, ``n_samples``), ``bench.<suite>.avg`` and
    ``bench.<suite>.acc_norm_avg`` per suite, and ``time.<stage>_s`` wall times.

    Runs whose status is not ``"trained"``/``"evaluated"`` (still training, or killed) are left out
    unless ``include_incomplete``. A corrupt record raises :class:`SerializationError` naming the file.
    """
    import pandas as pd

    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidInputError(f"load_runs: {str(directory)!r} is not a directory")
    paths = sorted(directory.rglob(RECORD_NAME) if recursive else directory.glob(f"*/{RECORD_NAME}"))
    if record_path(directory).is_file() and record_path(directory) not in paths:
        paths.insert(0, record_path(directory))
    rows = []
    for path in paths:
        rec = read_record(path)
        if include_incomplete or rec.get("status") in ("trained", "evaluated"):
            rows.append(flatten_record(rec))
    if not rows:
        raise EmptyInputError(
            f"load_runs: no {'' if include_incomplete else 'finished '}run records ({RECORD_NAME}) under "
            f"{str(directory)!r}"
        )
    ids = [r["run_id"] for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InvalidInputError(f"load_runs: run_id(s) {dupes} appear in more than one record under {str(directory)!r}")
    return pd.DataFrame(rows).sort_values("run_id", kind="stable").reset_index(drop=True)


__all__ = [
    "RECORD_NAME", "FINAL_DIR", "CURVE_PNG", "SCHEMA_VERSION", "load_runs", "read_record", "update_record", "new_record", "save_record",
    "write_json_atomic", "flatten_record", "environment",
]
