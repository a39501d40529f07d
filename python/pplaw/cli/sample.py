"""``pplaw sample SCORED --token-budget N --out FILE.parquet``: draw a subset of scored chunks.

Modes: a uniform random draw (no target); a draw to ``--target-mean``/``--target-std`` (in ``--space``);
or Distance-to-Optimum Selection with ``--dos`` and both targets. ``--quantile-window lo hi`` and
``--ppl-window lo hi`` restrict the candidate chunks (target mode).

Writes FILE (Parquet; one row per selected chunk: ``row`` = row index in SCORED - files in sorted path
order, then in-file order -, ``chunk_id`` when SCORED has it, ``file``/``file_row`` for a directory, and
the PPL/token columns) and ``FILE`` with suffix ``.json``: the achieved statistics in both spaces, the
request and the inputs. Both are written atomically.

A directory is read shard by shard (:mod:`pplaw.stream`, bounded memory): a uniform or band draw selects
the same rows as in memory; target sampling and DOS too up to ``--exact-limit`` chunks, beyond it the
streaming tilted draw (mean within 1%, std within 2%). ``--in-memory`` reads the directory into one table.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pplaw._atomic import atomic_write_text
from pplaw._checks import required
from pplaw.cli.landscape import with_positional_input
from pplaw.exceptions import ConfigError
from pplaw.io import read_scored, write_indices


@dataclass
class SampleConfig:
    input: str | None = field(
        default=None,
        metadata={"help": "scored chunks: a Parquet/JSONL file or a directory of them (also the first positional)"},
    )
    out: str | None = field(default=None, metadata={"help": "output Parquet file; the stats go next to it as .json"})
    token_budget: int | None = field(default=None, metadata={"help": "tokens to select (within one chunk)"})
    target_mean: float | None = field(default=None, metadata={"help": "target mean of chunk PPL (in --space)"})
    target_std: float | None = field(default=None, metadata={"help": "target std of chunk PPL (in --space)"})
    dos: bool = field(
        default=False,
        metadata={"help": "Distance-to-Optimum Selection to (--target-mean, --target-std) instead of sampling"},
    )
    dos_weights: list[float] | None = field(
        default=None, metadata={"help": "--dos: the weights W_MU W_SIGMA of the mean and std terms (default "
                                        "1/mean^2, 1/std^4; needed when --target-std is 0)"})
    space: str = field(default="ppl", metadata={"help": "statistics space: ppl (as in the paper) or log_ppl"})
    quantile_window: list[float] | None = field(
        default=None, metadata={"help": "only chunks between these token-weighted PPL quantiles: LO HI in [0, 1]"}
    )
    ppl_window: list[float] | None = field(default=None, metadata={"help": "only chunks with LO <= ppl <= HI"})
    seed: int = field(default=0, metadata={"help": "random seed (chunk keys hash (seed, chunk_id))"})
    ppl_column: str = field(default="ppl", metadata={"help": "column with each chunk's perplexity"})
    tokens_column: str = field(default="n_scored", metadata={"help": "column with each chunk's scored-token count"})
    chunk_id_column: str = field(
        default="chunk_id", metadata={"help": "stable chunk id column (used when present; '' to ignore it)"}
    )
    export: str | None = field(
        default=None, metadata={"help": "also write the subset's rows (every column of SCORED) to this folder as a "
                                        "publishable dataset with a card (see pplaw export)"})
    in_memory: bool = field(default=False, metadata={
        "help": "read a directory into one table instead of shard by shard"})
    executor: str = field(default="local", metadata={"help": "directories: run the shards here (local), as Ray "
                                                             "tasks (ray) or as a Slurm job array "
                                                             "(slurm:RECIPE.yaml, its slurm: section)"})
    exact_limit: int = field(default=5_000_000, metadata={
        "help": "directories: target sampling and DOS run the in-memory core up to this many chunks"})
    export_format: str = field(default="parquet", metadata={"help": "with --export: parquet (Hub layout) or dataset "
                                                                    "(save_to_disk)"})


def _window(value: list[float] | None, flag: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if len(value) != 2:
        raise ConfigError(f"pplaw sample: {flag} takes two numbers LO HI, got {value}")
    return value[0], value[1]


def _check(cfg: SampleConfig) -> None:
    required(cfg.input, "SCORED (or --input)", "sample")
    required(cfg.out, "--out", "sample")
    required(cfg.token_budget, "--token-budget", "sample")
    if cfg.dos and (cfg.target_mean is None or cfg.target_std is None):
        raise ConfigError("pplaw sample: --dos needs both --target-mean and --target-std")
    if cfg.dos and (cfg.quantile_window or cfg.ppl_window):
        raise ConfigError("pplaw sample: --quantile-window/--ppl-window apply to target sampling, not to --dos")
    if cfg.export_format not in ("parquet", "dataset"):
        raise ConfigError(f"pplaw sample: --export-format must be parquet or dataset, got {cfg.export_format!r}")
    if cfg.dos_weights is not None and (not cfg.dos or len(cfg.dos_weights) != 2):
        raise ConfigError(f"pplaw sample: --dos-weights takes two numbers W_MU W_SIGMA and needs --dos, got "
                          f"{cfg.dos_weights}")
    if Path(cfg.out).suffix.lower() not in (".parquet", ".pq"):
        raise ConfigError(f"pplaw sample: --out must be a .parquet file, got {cfg.out!r}")


def main(argv: list[str]) -> int:
    from pplaw.config import parse_config
    from pplaw.sampling import sample_subset, select_dos, subset_stats

    (cfg,) = parse_config([SampleConfig], with_positional_input(argv), prog="pplaw sample",
                          description=__doc__.split("\n\n")[0])
    _check(cfg)
    cid = cfg.chunk_id_column or None
    if Path(cfg.input).is_dir() and not cfg.in_memory:
        return _main_streaming(cfg, argv, cid)
    table, files, counts = read_scored(cfg.input, [cfg.ppl_column, cfg.tokens_column], [cid] if cid else [],
                                       ppl_column=cfg.ppl_column)
    has_cid = cid is not None and cid in table.column_names
    columns = dict(ppl_column=cfg.ppl_column, tokens_column=cfg.tokens_column)
    common = dict(token_budget=cfg.token_budget, target_mean=cfg.target_mean, target_std=cfg.target_std,
                  space=cfg.space, seed=cfg.seed, chunk_id_column=cid if has_cid else None, **columns)
    if cfg.dos:
        idx = select_dos(table, weights=tuple(cfg.dos_weights) if cfg.dos_weights else None, **common)
        method = "dos"
    else:
        idx = sample_subset(table, ppl_window=_window(cfg.ppl_window, "--ppl-window"),
                            quantile_window=_window(cfg.quantile_window, "--quantile-window"), **common)
        method = "target" if cfg.target_mean is not None else "random"

    # the selected rows, with where they came from
    out = Path(cfg.out)
    write_indices(table, idx, out, chunk_id_column=cid if has_cid else None,
                  stats_columns=(cfg.ppl_column, cfg.tokens_column), files=files, counts=counts)

    stats = {space: subset_stats(table, idx, space=space, **columns) for space in ("ppl", "log_ppl")}
    corpus = {space: subset_stats(table, np.ones(table.num_rows, dtype=bool), space=space, **columns)
              for space in ("ppl", "log_ppl")}
    report = {
        "method": method,
        "request": {k: v for k, v in asdict(cfg).items() if k not in ("input", "out")},
        "achieved": stats,
        "corpus": corpus,
        "selected_file": str(out),
        "input": str(cfg.input),
        "input_files": [str(f) for f in files],
    }
    _report(cfg, argv, method, report, stats, idx, table.num_rows)
    return 0


def _main_streaming(cfg: SampleConfig, argv: list[str], cid: str | None) -> int:
    from pplaw.stream import dos_dir, sample_dir, scan_dir

    scan = scan_dir(cfg.input, ppl_column=cfg.ppl_column, tokens_column=cfg.tokens_column, chunk_id_column=cid,
                    executor=cfg.executor)
    common = dict(token_budget=cfg.token_budget, target_mean=cfg.target_mean, target_std=cfg.target_std,
                  space=cfg.space, seed=cfg.seed, out=cfg.out, executor=cfg.executor, exact_limit=cfg.exact_limit,
                  keep_rows=bool(cfg.export))
    if cfg.dos:
        sel = dos_dir(scan, weights=tuple(cfg.dos_weights) if cfg.dos_weights else None, **common)
        method = "dos"
    else:
        sel = sample_dir(scan, ppl_window=_window(cfg.ppl_window, "--ppl-window"),
                         quantile_window=_window(cfg.quantile_window, "--quantile-window"), **common)
        method = "target" if cfg.target_mean is not None else "random"
    s = scan.summary
    corpus = {space: {"count": s["n_chunks"], "tokens": s["n_tokens"], "mean": s[m], "std": s[sd],
                      "weighted": s["weighted"]}
              for space, m, sd in (("ppl", "mean", "std"), ("log_ppl", "log_mean", "log_std"))}
    report = {
        "method": method,
        "request": {k: v for k, v in asdict(cfg).items() if k not in ("input", "out")},
        "achieved": sel.stats,
        "corpus": corpus,
        "streaming": {"method": sel.method, "shards": len(scan.files)},
        "selected_file": str(cfg.out),
        "input": str(cfg.input),
        "input_files": [str(f) for f in scan.files],
    }
    _report(cfg, argv, method, report, sel.stats, sel.rows, scan.n_rows)
    return 0


def _report(cfg: SampleConfig, argv: list[str], method: str, report: dict, stats: dict, idx, n_rows: int) -> None:
    out = Path(cfg.out)
    stats_path = out.with_suffix(".json")
    atomic_write_text(stats_path, json.dumps(report, indent=2) + "\n")

    got = stats[cfg.space]
    print(f"{method}: selected {got['count']:,} of {n_rows:,} chunks, {got['tokens']:,} tokens "
          f"(budget {cfg.token_budget:,})")
    line = f"{cfg.space}: mean {got['mean']:.4f}  std {got['std']:.4f}"
    if cfg.target_mean is not None:
        line += f"   (target mean {cfg.target_mean:g}"
        line += f", std {cfg.target_std:g})" if cfg.target_std is not None else ")"
    print(line)
    print(f"wrote {out} and {stats_path}")
    if cfg.export:
        from pplaw.export import export_rows

        folder = export_rows(cfg.input, idx, cfg.export, format=cfg.export_format, provenance={
            "method": method, "source_dataset": str(cfg.input),
            "pretty_name": f"{Path(cfg.input).stem}: {method} subset",
            "selection": {"method": method, "seed": cfg.seed, "budget": cfg.token_budget, "space": cfg.space,
                          "mu": cfg.target_mean, "sigma": cfg.target_std, "achieved": stats["ppl"],
                          "filter": _windows_text(cfg)},
            "commands": ["pplaw sample " + " ".join(shlex.quote(a) for a in argv)]}, tokens_column=cfg.tokens_column)
        print(f"wrote {folder} (card: {folder / 'README.md'})")


def _windows_text(cfg: SampleConfig) -> str | None:
    parts = ([f"{cfg.ppl_window[0]:g} <= {cfg.ppl_column} <= {cfg.ppl_window[1]:g}"] if cfg.ppl_window else []) + \
        ([f"token-weighted quantiles {cfg.quantile_window[0]:g}..{cfg.quantile_window[1]:g}"] if cfg.quantile_window
         else [])
    return ", ".join(parts) or None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
