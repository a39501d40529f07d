"""Training data for one CPT run: a domain subset and optional general replay, packed to fixed length.

The mixture ratio ``R`` is measured in tokens: ``R = general tokens / total tokens``. Each source is
tokenized (when it holds text), packed on its own into rows of exactly ``seq_len`` tokens with TRL's
``pack_dataset(..., strategy="wrapped")`` (documents are concatenated, EOS-separated, and cut at every
``seq_len`` tokens), and the run takes ``n_total = steps * global_batch`` rows of which
``n_general = round(R * n_total)`` are general. Every row is full, so token counts are exact: the tokens fed
are ``n_total * seq_len`` and the realised ratio is ``n_general / n_total`` (``R`` up to one row).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pplaw._checks import is_finite, require
from pplaw.exceptions import (
    BudgetError,
    ConfigError,
    EmptyInputError,
    InvalidInputError,
    MissingColumnError,
)

log = logging.getLogger(__name__)
PACK_BLOCK = 10_000  # documents per packing block: the < seq_len tail of each block is dropped


def load_table(path: str | Path, *, what: str):
    """A ``datasets.Dataset`` from a Parquet/JSONL file, a folder of them, or a ``save_to_disk`` folder.

    A folder's files are read in the order ``pplaw sample`` numbers rows in (its ``row`` column): the
    Parquet/JSONL files found recursively, sorted by path, then in-file order (``pplaw score`` output).
    """
    import datasets

    from pplaw.io import PARQUET_SUFFIXES, scored_files

    if path in (None, ""):
        raise ConfigError(f"{what}: no path given")
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidInputError(f"{what} {str(p)!r} does not exist")
    if p.is_dir() and ((p / "dataset_info.json").is_file() or (p / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise InvalidInputError(f"{what} {str(p)!r} is a DatasetDict without a 'train' split: {list(ds)}")
            ds = ds["train"]
        return ds
    try:
        files = scored_files(p)
    except EmptyInputError as err:
        raise InvalidInputError(f"{what} {str(p)!r} holds no Parquet/JSONL files and is not a saved dataset") from err
    except InvalidInputError as err:
        raise InvalidInputError(f"{what}: {err}") from err
    kinds = {"parquet" if f.suffix.lower() in PARQUET_SUFFIXES else "json" for f in files}
    if len(kinds) > 1:
        raise InvalidInputError(f"{what} {str(p)!r} mixes Parquet and JSONL files; keep one format per folder")
    return datasets.load_dataset(kinds.pop(), data_files=[str(f) for f in files], split="train")


def subset_stats(rows, space: str) -> tuple[float | None, float | None]:
    """(mu, sigma) of the subset's chunk perplexities, when the rows carry a ``ppl`` column (from scoring).

    ``rows``: a ``datasets.Dataset`` or a ``pyarrow.Table`` (the indices file of ``pplaw sample`` has them).
    The statistics are :func:`pplaw.sampling.subset_stats`' (docs/architecture.md, Definitions); rows without
    a token-count column count once each.
    """
    if rows is None or "ppl" not in rows.column_names:
        return None, None
    from pplaw.sampling import subset_stats as core_stats

    n = rows.num_rows if hasattr(rows, "num_rows") else len(rows)
    tokens_column = next((c for c in ("n_scored", "n_tokens") if c in rows.column_names), None)
    if tokens_column is None:
        import pyarrow as pa

        rows = pa.table({"ppl": np.asarray(rows["ppl"], dtype=np.float64), "n_tokens": np.ones(n, dtype=np.int64)})
        tokens_column = "n_tokens"
    st = core_stats(rows, np.arange(n), space=space, ppl_column="ppl", tokens_column=tokens_column)
    return float(st["mean"]), float(st["std"])


def _tokenized(ds, tokenizer, text_column: str, what: str):
    """Only an ``input_ids`` column, no empty rows; text is tokenized with EOS appended to each document."""
    if "input_ids" in ds.column_names:
        ds = ds.select_columns(["input_ids"])
    elif text_column in ds.column_names:
        eos = tokenizer.eos_token_id

        def tok(batch):  # batch[text_column]: list[str] -> input_ids: list[list[int]]
            ids = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
            return {"input_ids": [x + [eos] if eos is not None else x for x in ids]}

        ds = ds.map(tok, batched=True, remove_columns=ds.column_names, desc=f"tokenize {what}")
    else:
        raise MissingColumnError(f"{what} needs an 'input_ids' column (token chunks) or a {text_column!r} text column; "
                                 f"columns found: {ds.column_names}")
    return ds.filter(lambda b: [len(x) > 0 for x in b["input_ids"]], batched=True, desc=f"drop empty {what} rows")


def _packed(ds, tokenizer, text_column, seq_len, need_rows, seed, what):
    """Rows of exactly ``seq_len`` tokens from ``ds`` (shuffled documents), stopping once ``need_rows`` are there."""
    from datasets import concatenate_datasets
    from trl import pack_dataset

    ds = ds.shuffle(seed=seed)
    parts, rows, start, block = [], 0, 0, PACK_BLOCK
    while start < len(ds) and (need_rows is None or rows < need_rows):
        part = _tokenized(ds.select(range(start, min(start + block, len(ds)))), tokenizer, text_column, what)
        if len(part):
            part = pack_dataset(part, seq_len, "wrapped", {"batch_size": PACK_BLOCK})
            part = part.filter(lambda b: [len(x) == seq_len for x in b["input_ids"]], batched=True)
            parts.append(part)
            rows += len(part)
        start += block
    if rows == 0:
        raise EmptyInputError(f"{what} holds fewer than seq_len={seq_len} tokens: nothing to train on")
    return concatenate_datasets(parts)


def _take(packed, n: int, seed: int, allow_repeat: bool, what: str):
    """The first ``n`` rows; when there are fewer, more passes in a new order (only if ``allow_repeat``)."""
    from datasets import concatenate_datasets

    if n <= len(packed):
        return packed.select(range(n)), 1.0 if n == len(packed) else n / len(packed)
    if not allow_repeat:
        raise BudgetError(
            f"the budget needs {n} sequences of {what} but it holds only {len(packed)} (of {len(packed[0]['input_ids'])} "
            f"tokens); lower budget_tokens, use more {what}, or set allow_repeat=true to train several epochs"
        )
    copies = [packed.shuffle(seed=seed + k) for k in range(math.ceil(n / len(packed)))]
    return concatenate_datasets(copies).select(range(n)), n / len(packed)


@dataclass
class Mixture:
    """The training rows and their exact token accounting."""

    dataset: Any  # datasets.Dataset, column input_ids, every row seq_len tokens
    steps: int
    seq_len: int
    global_batch_size: int
    n_domain_rows: int
    n_general_rows: int
    domain_rows_available: int
    domain_epochs: float
    general_epochs: float | None

    @property
    def tokens_domain(self) -> int:
        return self.n_domain_rows * self.seq_len

    @property
    def tokens_general(self) -> int:
        return self.n_general_rows * self.seq_len

    @property
    def tokens_total(self) -> int:
        return self.tokens_domain + self.tokens_general

    @property
    def r_actual(self) -> float:
        return self.n_general_rows / (self.n_domain_rows + self.n_general_rows)


def check_ratio(r: Any) -> float:
    require(is_finite(r) and 0 <= r < 1, "replay_ratio R = general tokens / total tokens", "be in [0, 1)", r)
    return float(r)


def build_mixture(domain, general, tokenizer, *, seq_len: int, global_batch_size: int, replay_ratio: float,
                  budget_tokens: int | None, seed: int, text_column: str = "text", allow_repeat: bool = False) -> Mixture:
    """Pack ``domain`` (already the subset) and ``general`` and mix them at ``replay_ratio`` in tokens.

    ``budget_tokens`` (domain + general tokens fed) sets ``steps = budget_tokens // (seq_len * global_batch_size)``;
    ``None`` means one pass over the domain subset: ``steps = (domain rows / (1 - R)) // global_batch_size``.
    """
    from datasets import concatenate_datasets

    r = check_ratio(replay_ratio)
    if r > 0 and general is None:
        raise ConfigError(f"replay_ratio={r} needs general replay data: set general_data")
    if len(domain) == 0:
        raise EmptyInputError("the domain subset has no rows")
    per_step = seq_len * global_batch_size
    if budget_tokens is not None and budget_tokens < per_step:
        raise BudgetError(f"budget_tokens={budget_tokens} is smaller than one optimizer step: seq_len ({seq_len}) x "
                          f"global batch ({global_batch_size} sequences) = {per_step} tokens")
    # The whole subset is packed: it is what the run is about, and its size is recorded.
    dom = _packed(domain, tokenizer, text_column, seq_len, None, seed, "domain subset")
    if budget_tokens is not None:
        steps = budget_tokens // per_step
        n_total = steps * global_batch_size
        n_general = round(r * n_total)
    else:
        steps = math.floor(len(dom) / (1 - r)) // global_batch_size
        if steps < 1:
            raise BudgetError(f"the domain subset fills {len(dom)} sequences of {seq_len} tokens, fewer than one optimizer "
                              f"step needs ({global_batch_size} sequences at R={r}); use a larger subset or smaller batch")
        n_total = steps * global_batch_size
        n_general = round(r * n_total)
    n_domain = n_total - n_general
    dom_rows, dom_epochs = _take(dom, n_domain, seed, allow_repeat, "domain subset")
    parts, gen_epochs = [dom_rows], None
    if n_general:
        gen = _packed(general, tokenizer, text_column, seq_len, n_general, seed + 1, "general replay data")
        gen_rows, gen_epochs = _take(gen, n_general, seed + 1, allow_repeat, "general replay data")
        parts.append(gen_rows)
    mixed = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    log.info("mixture: %d steps x %d sequences x %d tokens; %d domain + %d general sequences (R=%.4f)",
             steps, global_batch_size, seq_len, n_domain, n_general, n_general / n_total)
    return Mixture(mixed, steps, seq_len, global_batch_size, n_domain, n_general, len(dom), dom_epochs, gen_epochs)
