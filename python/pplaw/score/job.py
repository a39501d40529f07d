"""The score job: chunk a corpus and score every chunk's perplexity with the base model, sharded and resumable.

:func:`run_score` is what ``pplaw score`` (:mod:`pplaw.cli.score`) and the pipeline's score stage call with
a :class:`ScoreConfig`. DATA is a .txt (one document per line by default, see ``txt_sample_by``),
.jsonl/.json, .parquet or .csv file, or a directory of files of one of these kinds (read in sorted path
order). Documents are split into chunks of ``chunk_tokens`` tokens (pplaw.chunk_texts) and each chunk is
scored with the base model (pplaw.score_perplexity). Writes to OUT:

- ``scores-KKKKK-of-NNNNN.parquet``: one row per chunk: chunk_id, doc_id, chunk_index, n_tokens,
  nll_sum, n_scored, ppl (and input_ids unless ``keep_input_ids`` is off). Shard k holds the chunks of
  documents [k * shard_docs, (k+1) * shard_docs). ``pplaw landscape OUT`` reads them directly.
- ``manifest.yaml``: the settings; a re-run with other settings into the same OUT is refused.
- ``summary.yaml``: documents, chunks, tokens, drops and the corpus PPL.

Each shard is written atomically (temp file + rename) when done; a re-run skips finished shards, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from pplaw._checks import at_least, folder, one_of
from pplaw._atomic import atomic_write
from pplaw.exceptions import ConfigError, EmptyInputError, InvalidInputError, MissingColumnError

BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".ndjson": "json",
            ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
SHARD_META_KEY = b"pplaw.score"


@dataclass
class ScoreConfig:
    model: str | None = field(default=None, metadata={"help": "base model: a local directory or a Hub id"})
    data: str | None = field(default=None, metadata={"help": "corpus: a .txt/.jsonl/.json/.parquet/.csv file or a directory of them"})
    out: str | None = field(default=None, metadata={"help": "output directory (created if missing)"})
    text_column: str = field(default="text", metadata={"help": "column holding the documents (.txt files: 'text')"})
    id_column: str | None = field(default=None, metadata={"help": "column with document ids for chunk_id (default: row position)"})
    chunk_tokens: int = field(default=1024, metadata={"help": "tokens per chunk (BOS included when the tokenizer adds one)"})
    min_tail_tokens: int | None = field(default=None, metadata={"help": "shortest document tail kept as a chunk (default chunk_tokens // 4)"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer path or id (default: the model's)"})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of the model/tokenizer"})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(default="auto", metadata={"help": "auto (float32 on CPU, checkpoint dtype on GPU), float32, bfloat16, float16"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda when available)"})
    max_tokens_per_batch: int = field(default=16384, metadata={"help": "padded tokens per forward pass (memory knob)"})
    shard_docs: int = field(default=10000, metadata={"help": "documents per output shard (the unit of resumption)"})
    max_docs: int | None = field(default=None, metadata={"help": "score only the first N documents (a quick look)"})
    txt_sample_by: Literal["line", "paragraph", "document"] = field(default="line", metadata={"help": "what a document is in .txt files: line, paragraph or document"})
    encoding_errors: Literal["strict", "replace"] = field(default="strict", metadata={"help": "strict: invalid UTF-8 is an error naming file and line; replace (.txt/.csv only): U+FFFD"})
    keep_input_ids: bool = field(default=True, metadata={"help": "store each chunk's token ids in the shards (needed to train on them)"})
    overwrite: bool = field(default=False, metadata={"help": "delete previous results in --out instead of resuming"})

    def __post_init__(self) -> None:
        check_config(self)


def check_config(cfg: ScoreConfig) -> None:
    """Raise ConfigError on a missing or out-of-range option (messages name ``pplaw score``'s flags)."""
    for flag, value in (("--model", cfg.model), ("--data", cfg.data), ("--out", cfg.out)):
        if not value:
            raise ConfigError(f"pplaw score: {flag} is required (on the command line or in --config)")
    folder(cfg.out, "pplaw score: --out")
    at_least(cfg.chunk_tokens, "pplaw score: --chunk-tokens", 2)
    at_least(cfg.shard_docs, "pplaw score: --shard-docs", 1)
    at_least(cfg.max_tokens_per_batch, "pplaw score: --max-tokens-per-batch", 1)
    at_least(cfg.max_docs, "pplaw score: --max-docs", 1, optional=True)
    one_of(cfg.txt_sample_by, "pplaw score: --txt-sample-by", ("line", "paragraph", "document"),
           what="line, paragraph or document")
    one_of(cfg.encoding_errors, "pplaw score: --encoding-errors", ("strict", "replace"), what="strict or replace")


def data_files(path: str) -> tuple[str, list[Path]]:
    """(datasets builder name, sorted files) behind ``path``."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"pplaw score: --data {path!r} does not exist")
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in BUILDERS)
    if not files:
        raise EmptyInputError(f"pplaw score: directory {path!r} holds no {'/'.join(sorted(BUILDERS))} files")
    kinds = {BUILDERS.get(f.suffix.lower()) for f in files}
    if None in kinds:
        raise InvalidInputError(f"pplaw score: {str(p)!r} is not a supported file; expected one of {sorted(BUILDERS)}")
    if len(kinds) > 1:
        raise InvalidInputError(f"pplaw score: {path!r} mixes file kinds {sorted(kinds)}; put one kind per directory")
    return kinds.pop(), files


def check_utf8(file: Path) -> None:
    """Raise InvalidInputError naming the file, line and byte offset of the first invalid UTF-8 byte."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 0  # bytes and newlines before the current block
    with open(file, "rb") as fh:
        while block := fh.read(1 << 20):
            pending = len(decoder.getstate()[0])  # bytes of an unfinished sequence from the last block
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                at = offset - pending + err.start  # file offset of the bad byte
                in_block = max(0, at - offset)
                line = lines + block.count(b"\n", 0, in_block) + 1
                raise InvalidInputError(
                    f"pplaw score: {str(file)!r} is not valid UTF-8: byte 0x{err.object[err.start]:02x} at offset "
                    f"{at} (line {line}); re-encode the file, or pass --encoding-errors replace (.txt/.csv) to "
                    "replace bad bytes with U+FFFD"
                ) from None
            offset += len(block)
            lines += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InvalidInputError(f"pplaw score: {str(file)!r} ends in a truncated UTF-8 sequence") from None


def load_corpus(cfg: ScoreConfig):
    """The corpus as a datasets.Dataset (memory-mapped Arrow), with the text column checked."""
    import datasets

    builder, files = data_files(cfg.data)
    kwargs: dict[str, Any] = {}
    if builder == "text":
        kwargs["sample_by"] = cfg.txt_sample_by
    if cfg.encoding_errors == "replace":
        if builder not in ("text", "csv"):
            raise ConfigError("pplaw score: --encoding-errors replace works for .txt/.csv files only")
        kwargs["encoding_errors"] = "replace"
    elif builder != "parquet":
        for f in files:
            check_utf8(f)
    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", **kwargs)
    except Exception as err:  # datasets raises many kinds; say which input failed and why
        if builder == "json":  # name the file and the line
            from pplaw.io import jsonl_problem

            for f in files:
                problem = jsonl_problem(f)
                if problem:
                    raise InvalidInputError(f"pplaw score: cannot read {str(f)!r}: {problem}") from err
        raise InvalidInputError(f"pplaw score: cannot read {cfg.data!r} as {builder}: {err}") from err
    finally:
        datasets.enable_progress_bars()
    for col in [cfg.text_column] + ([cfg.id_column] if cfg.id_column else []):
        if col not in ds.column_names:
            raise MissingColumnError(f"pplaw score: column {col!r} not found in {cfg.data!r}; columns are {ds.column_names}")
    if cfg.max_docs is not None:
        ds = ds.select(range(min(cfg.max_docs, len(ds))))
    if cfg.id_column:  # ids make the chunk ids: a null or a repeat would give repeated chunk ids
        from pplaw.io import check_unique_ids

        ids = ds.select_columns([cfg.id_column]).with_format("arrow")[:]
        check_unique_ids(ids, cfg.id_column, f"pplaw score: document ids in {cfg.data!r}")
    if len(ds) == 0:
        raise EmptyInputError(f"pplaw score: {cfg.data!r} holds no documents")
    return ds, files


def _atomic_write(path: Path, write) -> None:
    atomic_write(path, lambda tmp: write(str(tmp)), suffix=".partial")


def _manifest(cfg: ScoreConfig, files: list[Path], scorer) -> dict[str, Any]:
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite", "device", "max_tokens_per_batch")}
    settings["data_files"] = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    settings["scorer_fingerprint"] = scorer.fingerprint
    return settings


def _prepare_out(cfg: ScoreConfig, manifest: dict[str, Any]) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifest.yaml"
    if cfg.overwrite:
        for old in list(out.glob("scores-*.parquet")) + [path, out / "summary.yaml"]:
            old.unlink(missing_ok=True)
    if path.is_file():
        old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
        if diff:
            raise ConfigError(
                f"pplaw score: {str(out)!r} holds results of a run with other settings ({', '.join(diff)} differ); "
                "use another --out, or --overwrite to start over"
            )
    else:
        _atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(manifest, sort_keys=True), encoding="utf-8"))
    return out


def _score_shard(ds, start: int, stop: int, chunker, scorer, cfg: ScoreConfig, bar, rate) -> tuple[Any, dict]:
    """Chunk and score documents [start, stop) -> (pyarrow table, stats of this shard)."""
    import numpy as np
    import pyarrow as pa

    chunker.stats.clear()
    cols: dict[str, list] = {k: [] for k in ("chunk_id", "doc_id", "chunk_index", "n_tokens", "input_ids")}
    scores: dict[str, list] = {"nll_sum": [], "n_scored": [], "ppl": []}
    step = 256  # documents per chunking/scoring call: the bar moves, memory stays small
    for a in range(start, stop, step):
        b = min(stop, a + step)
        batch = ds[a:b]
        chunks = chunker(batch, list(range(a, b)))
        if len(chunks["input_ids"]):
            got = scorer.score_token_ids(chunks["input_ids"], _chunk_ids=chunks["chunk_id"])
            for k in scores:
                scores[k].append(got[k])
            for k in cols:
                cols[k].append(chunks[k])
        rate.add(int(sum(len(x) for x in chunks["input_ids"])))
        bar.update(b - a)
        bar.set_postfix_str(f"{rate.per_second():,.0f} tok/s")
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    doc_ids = [x for part in cols["doc_id"] for x in part]
    arrays = {
        "chunk_id": pa.array(cat(cols["chunk_id"], np.uint64)),
        "doc_id": pa.array(doc_ids) if cfg.id_column else pa.array(np.asarray(doc_ids, dtype=np.int64)),
        "chunk_index": pa.array(cat(cols["chunk_index"], np.int32)),
        "n_tokens": pa.array(cat(cols["n_tokens"], np.int32)),
        "nll_sum": pa.array(cat(scores["nll_sum"], np.float64)),
        "n_scored": pa.array(cat(scores["n_scored"], np.int32)),
        "ppl": pa.array(cat(scores["ppl"], np.float64)),
    }
    if cfg.keep_input_ids:
        arrays["input_ids"] = pa.array([x for part in cols["input_ids"] for x in part], type=pa.list_(pa.int32()))
    stats = dict(chunker.stats)
    return pa.table(arrays), stats


class _Rate:
    """Tokens per second of this run (finished shards that were skipped do not count)."""

    def __init__(self):
        self.t0, self.tokens = time.perf_counter(), 0

    def add(self, n: int) -> None:
        self.tokens += n

    def per_second(self) -> float:
        return self.tokens / max(time.perf_counter() - self.t0, 1e-9)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def run_score(cfg: ScoreConfig, *, log: Callable[[str], None] = _stderr, part: tuple[int, int] | None = None,
              summarise_only: bool = False) -> dict[str, Any]:
    """Score the corpus of ``cfg`` into ``cfg.out`` (resuming finished shards); returns the summary that is
    also written to ``summary.yaml``. ``log`` gets the progress notes (resumption).

    ``part=(i, n)``: only shards ``k`` with ``k % n == i`` (one task of a job array,
    :func:`pplaw.pipeline.slurm_executor.score_array`); returns ``{"part", "shards"}`` and writes no summary.
    ``summarise_only``: score nothing, write the summary of the shards (all of them must be there)."""
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from pplaw.score.chunking import chunk_texts
    from pplaw.score.scorer import PerplexityScorer

    if part is not None and not (len(part) == 2 and 0 <= part[0] < part[1]):
        raise ConfigError(f"pplaw score: part must be (task index, number of tasks) with 0 <= index < tasks, got {part}")
    ds, files = load_corpus(cfg)
    if summarise_only:
        out, n_shards = Path(cfg.out), math.ceil(len(ds) / cfg.shard_docs)
        names = [out / f"scores-{k:05d}-of-{n_shards:05d}.parquet" for k in range(n_shards)]
        missing = [p.name for p in names if not p.is_file()]
        if missing:
            raise InvalidInputError(f"pplaw score: {len(missing)} shard(s) missing in {str(out)!r} ({missing[:3]}...); "
                                    f"run the same command again to score them")
        return _summarise(names, out)

    from transformers import AutoTokenizer

    from pplaw.config import check_model_ref

    check_model_ref(cfg.model, "model")
    check_model_ref(cfg.tokenizer, "tokenizer")
    tok_ref = cfg.tokenizer or cfg.model
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_ref, revision=cfg.revision)
    except (OSError, ValueError) as err:
        raise ConfigError(f"pplaw score: cannot load the tokenizer {tok_ref!r}: {err}") from err
    chunker = chunk_texts(tokenizer, cfg.chunk_tokens, cfg.text_column, id_column=cfg.id_column,
                          min_tail_tokens=cfg.min_tail_tokens)
    scorer = PerplexityScorer(cfg.model, tokenizer, revision=cfg.revision, device=cfg.device, dtype=cfg.dtype,
                              max_tokens_per_batch=cfg.max_tokens_per_batch)
    out = _prepare_out(cfg, _manifest(cfg, files, scorer))

    n_docs = len(ds)
    n_shards = math.ceil(n_docs / cfg.shard_docs)
    names = [out / f"scores-{k:05d}-of-{n_shards:05d}.parquet" for k in range(n_shards)]
    done = [p.is_file() for p in names]
    done_docs = sum(min(n_docs, (k + 1) * cfg.shard_docs) - k * cfg.shard_docs for k in range(n_shards) if done[k])
    if any(done):
        log(f"resuming: {sum(done)} of {n_shards} shard(s) already in {out}")
    rate = _Rate()
    import warnings

    with tqdm(total=n_docs, initial=done_docs, unit="doc", desc="scoring", dynamic_ncols=True) as bar, \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="chunk_texts: dropped")  # counted in summary.yaml instead
        for k, path in enumerate(names):
            if done[k] or (part is not None and k % part[1] != part[0]):
                continue
            start, stop = k * cfg.shard_docs, min(n_docs, (k + 1) * cfg.shard_docs)
            table, stats = _score_shard(ds, start, stop, chunker, scorer, cfg, bar, rate)
            meta = {SHARD_META_KEY: yaml.safe_dump({"docs": [start, stop], "stats": stats}).encode()}
            table = table.replace_schema_metadata(meta)
            _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    if part is not None:
        return {"part": list(part), "shards": [p.name for k, p in enumerate(names) if k % part[1] == part[0]]}
    return _summarise(names, out)


def summary_lines(summary: dict[str, Any], out: str | Path) -> list[str]:
    """What ``pplaw score`` prints when done: totals, drops, where the shards went."""
    lines = [f"{summary['documents']:,} documents -> {summary['chunks']:,} chunks, {summary['scored_tokens']:,} "
             f"scored tokens; corpus PPL {summary['corpus_ppl']:.4g}, median chunk PPL "
             f"{summary['median_chunk_ppl']:.4g}"]
    dropped = {k: v for k, v in summary["dropped"].items() if v}
    if dropped:
        lines.append("dropped: " + ", ".join(f"{k} {v:,}" for k, v in dropped.items()))
    lines.append(f"wrote {len(summary['shards'])} shard(s) and summary.yaml to {out}")
    return lines


def _summarise(names: list[Path], out: Path) -> dict[str, Any]:
    """Totals over all shards (read from their metadata and score columns) -> summary.yaml."""
    import numpy as np
    import pyarrow.parquet as pq

    totals: dict[str, int] = {}
    nll, n_scored, ppl = 0.0, 0, []
    for path in names:
        try:
            pf = pq.ParquetFile(path)
            meta = yaml.safe_load(pf.schema_arrow.metadata[SHARD_META_KEY].decode())
        except Exception as err:  # noqa: BLE001 - truncated, corrupt or foreign: name the file
            raise InvalidInputError(f"pplaw score: shard {str(path)!r} is damaged ({type(err).__name__}: {err}); "
                                    f"delete it and run again to rescore just that shard") from err
        for key, val in meta["stats"].items():
            totals[key] = totals.get(key, 0) + int(val)
        t = pf.read(columns=["nll_sum", "n_scored", "ppl"])
        nll += float(np.sum(t.column("nll_sum").to_numpy()))
        n_scored += int(np.sum(t.column("n_scored").to_numpy()))
        ppl.append(t.column("ppl").to_numpy())
    if n_scored == 0:
        raise EmptyInputError(
            f"pplaw score: no chunk was left to score: {totals.get('docs', 0)} documents, "
            f"{totals.get('empty_docs', 0)} empty, {totals.get('short_docs', 0)} shorter than --min-tail-tokens, "
            f"{totals.get('non_utf8_docs', 0)} not UTF-8"
        )
    summary = {
        "documents": totals.get("docs", 0),
        "chunks": totals.get("chunks", 0),
        "chunk_tokens": totals.get("chunk_tokens", 0),
        "scored_tokens": n_scored,
        "corpus_ppl": float(math.exp(nll / n_scored)),  # token-weighted
        "median_chunk_ppl": float(np.median(np.concatenate(ppl))),
        "dropped": {k: totals.get(k, 0) for k in
                    ("empty_docs", "non_utf8_docs", "short_docs", "dropped_tails", "dropped_tail_tokens")},
        "shards": [p.name for p in names],
    }
    _atomic_write(out / "summary.yaml", lambda tmp: Path(tmp).write_text(yaml.safe_dump(summary, sort_keys=False), encoding="utf-8"))
    return summary
