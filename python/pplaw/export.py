"""A selected subset as something a user can publish: a datasets folder or Parquet shards, with a dataset card.

    pplaw.export_subset(subset, "medical-dos", format="parquet", provenance={...})   # any Dataset / table
    pplaw.export_run("pplaw_runs/medical", "medical-dos", push_to_hub="me/medical-dos")  # a finished run

The folder holds the rows (``format="parquet"``: ``data/train-0000k-of-0000n.parquet``, the layout the Hub
reads; ``format="dataset"``: ``Dataset.save_to_disk``, reloaded with ``datasets.load_from_disk``), the card
``README.md`` in the Hub's format (YAML header with ``configs``, ``size_categories``, ``source_datasets``,
``base_model``; a body with the provenance) and ``pplaw_provenance.json`` (the same provenance, as data).
It is built under a temporary name and renamed into place: a reader never sees half an export, and an
export folder is only ever replaced by another export (marker ``.pplaw_export``), never a folder pplaw did
not write.

``push_to_hub`` runs after the local copy is complete; when the Hub cannot be reached (offline, no token,
a refused repo) it raises :class:`~pplaw.exceptions.HubError` saying where the local copy is and how to
push it later. Nothing is lost.

The provenance of a ``pplaw run`` (landscape, law, held-out error, band, budget, forecast) is gathered by
:mod:`pplaw.pipeline.export`; this module only writes what it is given.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from pplaw._atomic import atomic_write_text, jsonable
from pplaw.exceptions import HubError, InvalidInputError, RunDirError

FORMATS = ("parquet", "dataset")
MARKER = ".pplaw_export"
CARD = "README.md"
PROVENANCE = "pplaw_provenance.json"
SHARD_BYTES = 500 * 2**20  # the Hub's usual Parquet shard size
# the Hub's size_categories, by number of rows
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
          (10**10, "1B<n<10B"), (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]


def size_category(n_rows: int) -> str:
    """The Hub's ``size_categories`` value for ``n_rows`` rows."""
    return next((name for limit, name in _SIZES if n_rows < limit), "n>1T")


def _as_dataset(data: Any) -> Any:
    import datasets

    if isinstance(data, datasets.Dataset):
        return data
    if type(data).__name__ in ("Table", "RecordBatch") and type(data).__module__.startswith("pyarrow"):
        import pyarrow as pa

        return datasets.Dataset(pa.table(data))
    raise InvalidInputError(f"export: expected a datasets.Dataset or a pyarrow Table, got {type(data).__name__}")


def _n_shards(ds: Any, num_shards: int | None) -> int:
    if num_shards is not None:
        if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
            raise InvalidInputError(f"num_shards: expected a positive integer, got {num_shards!r}")
        return min(num_shards, max(len(ds), 1))
    nbytes = ds.data.nbytes * (len(ds) / max(ds.data.num_rows, 1))  # a view holds part of its table
    return max(1, min(math.ceil(nbytes / SHARD_BYTES), len(ds)))


# ----------------------------------------------------------------------------------------------------------
# the card


def card_metadata(n_rows: int, fmt: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML header: ``configs`` (where the Hub finds the rows), size, source, base model, tags."""
    path = "data/train-*.parquet" if fmt == "parquet" else "data-*.arrow"
    meta: dict[str, Any] = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": path}]}],
        "size_categories": [size_category(n_rows)],
        "task_categories": ["text-generation"],
        "tags": ["pplaw", "perplexity", "continual-pretraining", "data-selection"],
    }
    if provenance.get("source_dataset"):
        meta["source_datasets"] = [str(provenance["source_dataset"])]
    if provenance.get("base_model"):
        meta["base_model"] = str(provenance["base_model"])
    if provenance.get("license"):
        meta["license"] = provenance["license"]
    if provenance.get("pretty_name"):
        meta["pretty_name"] = provenance["pretty_name"]
    return meta


def _num(x: Any, fmt: str = ".4g") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else "-"


def card_body(n_rows: int, n_tokens: int | None, provenance: dict[str, Any]) -> str:
    """The card's Markdown body: what the subset is and how it was chosen (each part when known)."""
    p = provenance
    title = p.get("pretty_name") or "A perplexity-selected subset"
    lines = [f"# {title}", "",
             f"{n_rows:,} chunks" + (f", {n_tokens:,} tokens" if n_tokens is not None else "")
             + f" selected by pplaw ({p.get('method', 'selection')})"
             + (f" from `{p['source_dataset']}`" if p.get("source_dataset") else "")
             + (f", scored with the base model `{p['base_model']}`" if p.get("base_model") else "") + ".", ""]
    land = p.get("landscape") or {}
    if land:
        lines += ["## The perplexity landscape", "",
                  f"- corpus: {land.get('n_chunks', 0):,} chunks, {land.get('n_tokens', 0):,} tokens",
                  f"- chunk PPL mean {_num(land.get('mean'))}, std {_num(land.get('std'))}; "
                  f"log-PPL mean {_num(land.get('log_mean'))}, std {_num(land.get('log_std'))} "
                  f"({'token-weighted' if land.get('weighted') else 'over chunks'})", ""]
    sel = p.get("selection") or {}
    law = p.get("law") or {}
    if sel or law:
        lines += ["## How it was chosen", ""]
        if law.get("name"):
            err = law.get("holdout_mape")
            lines.append(f"- law: {law['name']}" + (f"; held-out error (MAPE) {_num(err, '.2f')}% on "
                                                    f"{law.get('n_val', '?')} validation runs" if err is not None
                                                    else "; not validated on held-out runs"))
        if sel.get("band") is not None:
            b = sel["band"]
            lines.append(f"- band: token-weighted PPL quantiles {_num(b[0], '.3g')} .. {_num(b[1], '.3g')} of the "
                         "landscape")
        if sel.get("filter"):
            lines.append(f"- filter: {sel['filter']}")
        if sel.get("mu") is not None:
            lines.append(f"- target ({sel.get('space', 'ppl')}): mean {_num(sel['mu'])}, std {_num(sel.get('sigma'))}"
                         + (f" ({sel['selected']}: {sel['why']})" if sel.get("selected") and sel.get("why") else ""))
        if sel.get("budget") is not None:
            seed = f", seed {sel['seed']}" if "seed" in sel else ""
            lines.append(f"- budget: {int(sel['budget']):,} tokens{seed}")
        if sel.get("achieved"):
            a = sel["achieved"]
            lines.append(f"- achieved: PPL mean {_num(a.get('mean'))}, std {_num(a.get('std'))}, "
                         f"{int(a.get('tokens', 0)):,} tokens")
        lines.append("")
    fc = p.get("forecast") or {}
    if fc.get("prediction") is not None:
        ci = (f", bootstrap confidence interval [{_num(fc['lo'])}, {_num(fc['hi'])}]" if fc.get("lo") is not None else
              " (no interval: the fit has no bootstrap)")
        lines += ["## Forecast", "",
                  f"The law forecasts {fc.get('target', 'the domain loss')} {_num(fc['prediction'])} after continual "
                  f"pre-training on this subset{ci}"
                  + (f"; measured {_num(fc['measured'])}" if fc.get("measured") is not None else "") + ".", ""]
    if p.get("command") or p.get("commands"):
        cmds = p.get("commands") or [p["command"]]
        lines += ["## Reproduce", "", "```bash", *cmds, "```", ""]
    lines += [f"The whole provenance is in `{PROVENANCE}`.", ""]
    return "\n".join(lines)


def dataset_card(n_rows: int, n_tokens: int | None, fmt: str, provenance: dict[str, Any]) -> str:
    """The card text (``README.md``): huggingface_hub's ``DatasetCard`` when installed (it checks the
    header), else the same YAML header written here."""
    meta, body = card_metadata(n_rows, fmt, provenance), card_body(n_rows, n_tokens, provenance)
    try:
        from huggingface_hub import DatasetCard, DatasetCardData
    except ImportError:
        import yaml

        return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n{body}"
    return str(DatasetCard(f"---\n{DatasetCardData(**meta).to_yaml()}\n---\n\n{body}"))


# ----------------------------------------------------------------------------------------------------------
# writing


def take_rows(chunks_dir: str | os.PathLike, rows: Any) -> Any:
    """The rows ``rows`` (positions in the scored chunks behind ``chunks_dir``, a file or a folder: file order
    then in-file order, as :func:`pplaw.io.read_scored` and the indices files count them) with every column,
    one file at a time (only the selected rows are held)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pplaw.io import scored_files

    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if len(rows) == 0:
        raise InvalidInputError("export: the subset has no rows")
    parts, start = [], 0
    for f in scored_files(chunks_dir):
        if f.suffix.lower() in (".parquet", ".pq"):
            whole, n = None, pq.ParquetFile(f).metadata.num_rows
        else:  # JSONL (pplaw sample takes it too): read whole, it has no row-count footer
            import pyarrow.json as pj

            whole = pj.read_json(f)
            n = whole.num_rows
        local = rows[(rows >= start) & (rows < start + n)] - start
        if len(local):
            parts.append((pq.read_table(f) if whole is None else whole).take(pa.array(local)))
        start += n
    if start <= rows[-1]:
        raise InvalidInputError(f"the subset's row {int(rows[-1])} is beyond the {start} scored chunks in {chunks_dir}")
    return pa.concat_tables(parts, promote_options="permissive")


def _check_target(to: Path) -> None:
    if to.exists() and not to.is_dir():
        raise RunDirError(f"export: --to {str(to)!r} is a file; choose a folder")
    if to.is_dir() and any(to.iterdir()) and not (to / MARKER).is_file():
        raise RunDirError(f"export: {str(to)!r} is a folder that is not empty and not a pplaw export (no {MARKER} "
                          f"marker): pplaw never replaces what it did not write; choose another folder")


def export_subset(data: Any, to: str | os.PathLike, *, format: str = "parquet",
                  provenance: dict[str, Any] | None = None,
                  num_shards: int | None = None, tokens_column: str = "n_scored", push_to_hub: str | None = None,
                  private: bool | None = None, token: str | None = None) -> Path:
    """Write ``data`` (a ``datasets.Dataset``, a view included, or a pyarrow Table) to the folder ``to``
    with its card; then, with ``push_to_hub="user/name"``, push it (``Dataset.push_to_hub``, then the card).
    Returns the folder. See the module doc for the layout and the errors."""
    if format not in FORMATS:
        raise InvalidInputError(f"format: expected one of {FORMATS}, got {format!r}")
    if push_to_hub is not None:
        _check_repo(push_to_hub)
    ds = _as_dataset(data)
    if len(ds) == 0:
        raise InvalidInputError("export: the subset has no rows")
    to = Path(to)
    _check_target(to)
    prov = dict(provenance or {})
    n_tokens = None
    if tokens_column in ds.column_names:
        import pyarrow.compute as pc

        n_tokens = int(pc.sum(ds.with_format("arrow")[tokens_column]).as_py() or 0)
    n = _n_shards(ds, num_shards)
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.parent / f".{to.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        if format == "parquet":
            (tmp / "data").mkdir()
            for i in range(n):
                ds.shard(n, i, contiguous=True).to_parquet(str(tmp / "data" / f"train-{i:05d}-of-{n:05d}.parquet"))
        else:
            ds.save_to_disk(str(tmp), num_shards=n)
        prov.update(n_rows=len(ds), n_tokens=n_tokens, format=format, columns=ds.column_names)
        atomic_write_text(tmp / PROVENANCE, json.dumps(jsonable(prov), indent=2) + "\n")
        atomic_write_text(tmp / CARD, dataset_card(len(ds), n_tokens, format, prov))
        (tmp / MARKER).write_text("written by pplaw export\n", encoding="utf-8")
        old = None
        if to.exists():  # an earlier export (checked above): swap, then delete it
            old = to.parent / f".{to.name}.old-{uuid.uuid4().hex[:8]}"
            to.rename(old)
        tmp.rename(to)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if push_to_hub:
        push(ds, push_to_hub, to, private=private, token=token)
    return to


def export_rows(scored: str | os.PathLike, rows: Any, to: str | os.PathLike, **kwargs: Any) -> Path:
    """The rows ``rows`` of the scored chunks ``scored`` (a file or folder, as ``pplaw sample`` reads it),
    every column, exported like :func:`export_subset` (keyword arguments as there)."""
    return export_subset(take_rows(scored, rows), to, **kwargs)


def load_export(folder: str | os.PathLike) -> Any:
    """The rows of an export folder as a ``datasets.Dataset`` (either format; Parquet is read into memory)."""
    import datasets

    folder = Path(folder)
    try:
        prov = json.loads((folder / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InvalidInputError(f"{str(folder)!r} is not a pplaw export (cannot read its {PROVENANCE}: {err})") from err
    if prov.get("format") == "dataset":
        return datasets.load_from_disk(str(folder))
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = sorted((folder / "data").glob("train-*.parquet"))
    if not shards:
        raise InvalidInputError(f"export {str(folder)!r} has no data/train-*.parquet shards")
    return datasets.Dataset(pa.concat_tables([pq.read_table(s) for s in shards]))


def push_export(folder: str | os.PathLike, repo: str, *, private: bool | None = None,
                token: str | None = None) -> str:
    """Push an export folder (:func:`export_subset`'s) to the Hub repo ``repo``; returns ``repo``. The
    ``pplaw run`` export stage writes the folder, then this pushes it (a failure keeps the folder)."""
    _check_repo(repo)
    push(load_export(folder), repo, Path(folder), private=private, token=token)
    return repo


def _check_repo(repo: Any) -> None:
    if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
        raise InvalidInputError(f"push_to_hub: expected a Hub repo id 'user/name', got {repo!r}")


def push(ds: Any, repo: str, local: Path, *, private: bool | None = None, token: str | None = None) -> None:
    """``Dataset.push_to_hub(repo)`` then the card (with Parquet ``configs``: the Hub stores Parquet). The
    local copy ``local`` is complete before this is called; any failure says so (:class:`HubError`)."""
    _check_repo(repo)
    prov = json.loads((local / PROVENANCE).read_text(encoding="utf-8"))
    card = dataset_card(len(ds), prov.get("n_tokens"), "parquet", prov)
    try:
        from huggingface_hub import DatasetCard

        ds.push_to_hub(repo, private=private, token=token)
        DatasetCard(card).push_to_hub(repo, repo_type="dataset", token=token)
    except Exception as err:  # noqa: BLE001 - any failure of the Hub call (network, auth, offline) is reported alike
        raise HubError(
            f"could not push the subset to the Hub repo {repo!r} ({type(err).__name__}: {err}). Nothing is lost: the "
            f"local copy is complete in {str(local)!r}; push it when the Hub is reachable with "
            f"`huggingface-cli upload {repo} {local} --repo-type dataset` (or pplaw export again with --push-to-hub)"
        ) from err
