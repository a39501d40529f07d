"""``pplaw export RUN --to DIR``: the final subset of a finished ``pplaw run``, publishable, with its provenance.

Reads the run directory only (the stages' manifests and files; nothing is recomputed but the law's forecast
for the subset, from ``fit/fit.json``): the chosen subset's rows are taken from the scored chunks
(``score/chunks``: chunk ids, token ids, PPL, token counts; with ``decode_text`` the text too, decoded with the
run's tokenizer) and written by :func:`pplaw.export.export_subset` with a card that records the landscape,
the law chosen and its held-out error, the band, the budget, the forecast with its interval, and the commands
that made and exported it. ``pplaw run`` calls :func:`export_run` at its end (``<run>/export/subset``).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from pplaw.exceptions import InvalidInputError, SerializationError
from pplaw.export import export_subset, take_rows


def _manifest(run: Path, stage: str) -> dict[str, Any]:
    path = run / stage / "stage.json"
    if not path.is_file():
        raise InvalidInputError(f"{str(run)!r} has no finished {stage!r} stage ({path} is missing): is it a pplaw run "
                                f"directory whose run reached the select stage? Run `pplaw run` to finish it")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise SerializationError(f"stage manifest {str(path)!r} is corrupt: {err}") from err
    if m.get("status") != "done":
        raise InvalidInputError(f"the {stage!r} stage of {str(run)!r} is not finished (status {m.get('status')!r})")
    return m["outputs"]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def pick_subset(subsets: list[dict[str, Any]], method: str, seed: int | None) -> dict[str, Any]:
    """The select stage's entry for ``method`` (and ``seed``; its first seed when None)."""
    cands = [s for s in subsets if s["method"] == method and (seed is None or s["seed"] == seed)]
    if not cands:
        have = sorted({f"{s['method']} (seed {s['seed']})" for s in subsets})
        raise InvalidInputError(f"method {method!r}" + (f", seed {seed}" if seed is not None else "")
                                + f": not among the run's final subsets: {', '.join(have)}")
    if cands[0]["indices"] is None:
        raise InvalidInputError(f"method {method!r} is every chunk of the corpus (no subset to export): choose dos, "
                                "best_sweep, random, lowest_ppl or highest_ppl")
    return cands[0]


def provenance(run: Path, item: dict[str, Any]) -> dict[str, Any]:
    """What the card says about the subset ``item`` of the run ``run``: source, model, landscape, law,
    held-out error, band, budget, forecast and commands (each part when the run has it)."""
    from pplaw.pipeline.fit import final_pool, predict

    recipe = _json(run / "recipe.json")
    world = _json(run / "world" / "stage.json").get("outputs") or {}
    land = _json(run / "landscape" / "stage.json").get("outputs") or {}
    fit = _json(run / "fit" / "stage.json").get("outputs") or {}
    sel = _manifest(run, "select")
    space = (recipe.get("fit") or {}).get("space", "ppl")
    target = (recipe.get("fit") or {}).get("target", "domain_loss")
    conf = _json(run / "confirm" / "stage.json").get("outputs") or {}  # the confirm stage may overrule the fit's
    opt, lc = conf.get("optimum") or fit.get("optimum") or {}, fit.get("law_choice") or {}
    rows = (lc.get("table") or []) if lc.get("validated") else []  # the chosen law's held-out row
    row = next((r for r in rows if r.get("law") == lc.get("chosen")), {})
    method, seed, D = item["method"], item["seed"], item["D"]
    band = opt.get("band") if method == "dos" else (fit.get("best_sweep") or {}).get("band") \
        if method == "best_sweep" else None
    prov: dict[str, Any] = {
        "pretty_name": f"{recipe.get('name', run.name)}: {method} subset (pplaw)",
        "method": method, "run_dir": str(run),
        "source_dataset": (recipe.get("corpus") or {}).get("domain_data") or world.get("domain_data"),
        "base_model": (recipe.get("model") or {}).get("base_model") or world.get("base_model"),
        "landscape": land.get("summary"),
        "law": {"name": lc.get("chosen") or fit.get("law"), "holdout_mape": row.get("holdout_mape"),
                "n_val": lc.get("n_val"), "validated": lc.get("validated"), "reason": lc.get("reason")},
        "selection": {"method": method, "seed": seed, "budget": sel.get("budget"), "band": band, "space": space,
                      "mu": opt.get("mu") if method == "dos" else None,
                      "sigma": opt.get("sigma") if method == "dos" else None,
                      "selected": opt.get("selected"), "why": opt.get("why"),
                      "achieved": {"mean": item.get("mu_ppl"), "std": item.get("sigma_ppl"), "tokens": D}},
        "commands": [f"pplaw run {shlex.quote(str(run / 'recipe.yaml'))} --out {shlex.quote(str(run))}"],
    }
    fit_file = run / "fit" / (fit.get("fit") or "fit.json")
    if fit_file.is_file() and method != "full":
        total = int((land.get("summary") or {}).get("n_tokens") or 0) or None
        pool = final_pool(method, D, {**fit, "optimum": opt}, total) if total else None
        fc = predict(fit_file, item[f"mu_{space}"], item[f"sigma_{space}"], D, pool)
        measured = _measured(run, method, target)
        prov["forecast"] = {**fc, "target": target.replace("_", " "), "measured": measured}
    return prov


def _measured(run: Path, method: str, target: str) -> float | None:
    """The final runs' measured ``target`` for ``method`` (mean over its finished seeds), when there are any."""
    final = _json(run / "final" / "stage.json").get("outputs") or {}
    rows = _json(run / "final" / final["runs"]) if final.get("runs") else []
    vals = [r[target] for r in rows if r.get("method") == method and r.get("status") == "ok"
            and r.get(target) is not None]
    return float(np.mean(vals)) if vals else None


def export_run(run_dir: str | Path, to: str | Path, *, method: str = "dos", seed: int | None = None,
               format: str = "parquet", decode_text: bool = False, num_shards: int | None = None,
               push_to_hub: str | None = None, private: bool | None = None, token: str | None = None,
               command: str | None = None) -> Path:
    """Export the final subset ``method`` (seed ``seed``, the first by default) of the finished run in
    ``run_dir`` to the folder ``to`` (see the module doc); ``command``: how this export was asked for, for
    the card. Returns the folder."""
    from pplaw.io import read_indices

    run = Path(run_dir)
    if not run.is_dir():
        raise InvalidInputError(f"run directory {str(run)!r} does not exist")
    sel = _manifest(run, "select")
    item = pick_subset(sel["subsets"], method, seed)
    score = _manifest(run, "score")
    rows, _ = read_indices(run / "select" / item["indices"], "row")
    table = take_rows(run / "score" / score["chunks"], rows)
    prov = provenance(run, item)
    if command:
        prov["commands"].append(command)
    if decode_text:
        table = _with_text(table, prov.get("base_model"), _json(run / "recipe.json"))
    return export_subset(table, to, format=format, provenance=prov, num_shards=num_shards, push_to_hub=push_to_hub,
                         private=private, token=token)


def _with_text(table: Any, base_model: str | None, recipe: dict[str, Any]) -> Any:
    """Add a ``text`` column: each chunk's token ids decoded with the run's tokenizer."""
    import pyarrow as pa

    if "input_ids" not in table.column_names:
        raise InvalidInputError("decode_text: the scored chunks have no input_ids (scoring.keep_input_ids was off)")
    from transformers import AutoTokenizer

    name = (recipe.get("model") or {}).get("tokenizer") or base_model
    if not name:
        raise InvalidInputError("decode_text: the run names no tokenizer or base model to decode with")
    tok = AutoTokenizer.from_pretrained(name)
    text = tok.batch_decode(table.column("input_ids").to_pylist(), skip_special_tokens=True)
    return table.append_column("text", pa.array(text, type=pa.string()))
