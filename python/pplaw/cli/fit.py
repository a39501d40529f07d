"""``pplaw fit RUNS --law perplexity --target domain_loss --bootstrap 200 --out DIR``.

Fits a scaling law to run records and writes ``DIR/fit.json``, ``DIR/summary.txt`` and PNG plots
(``predicted_vs_observed.png``, ``contour.png`` for the perplexity law, ``loss_vs_D.png``); prints the summary.

RUNS is a Parquet / CSV / JSONL / JSON table, or a directory: a pplaw run directory (``run_record.json`` per run,
loaded by :func:`pplaw.runs.load_runs`: columns ``mu, sigma, D, N, R, domain_loss, general_loss, ...``), or any
directory of JSON files, one object per run (``*.json``, else ``*/*.json``; nested objects are flattened to dotted
column names, e.g. ``{"subset": {"mu": 12.3}}`` -> ``subset.mu``). Law variables are matched to columns by
``--columns`` (``mu=subset.mu,D=tokens``), else by their own name, else by a unique dotted suffix
(``subset.mu`` for ``mu``), else by a few aliases (``D``: ``tokens``; ``N``: ``params``; ``C``: ``flops``...).
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from pplaw._checks import integer, is_finite, number, require
from pplaw.exceptions import (
    ConfigError,
    EmptyInputError,
    InvalidInputError,
    MissingColumnError,
    SerializationError,
)

ALIASES = {
    "D": ("tokens", "n_tokens", "train_tokens", "num_tokens"), "N": ("params", "n_params", "model_size"),
    "C": ("flops", "compute", "train_flops"), "mu": ("ppl_mean", "mean_ppl"), "sigma": ("ppl_std", "std_ppl"),
    "r": ("ratio", "domain_ratio"), "R": ("ratio", "domain_ratio"), "T": ("tokens", "tokens_seen"),
}


@dataclass
class FitConfig:
    runs: Optional[str] = field(default=None, metadata={
        "help": "runs table (Parquet/CSV/JSONL/JSON) or a directory of run-record JSON files; may also be given "
                "as the first positional argument"})
    law: str = field(default="perplexity", metadata={
        "help": "law to fit: perplexity, chinchilla, dcpt, downstream, compute_loss, loss_to_accuracy, "
                "cmr_ratio, cmr_domain_change, cmr_general_change, cmr_rcmr"})
    target: str = field(default="domain_loss", metadata={"help": "column to predict (e.g. domain_loss)"})
    columns: str = field(default="", metadata={
        "help": "variable=column pairs, comma separated (e.g. 'mu=subset.mu,sigma=subset.sigma,D=subset.tokens'); "
                "unmapped variables are matched by name, unique dotted suffix, then aliases"})
    law_options: str = field(default="", metadata={
        "help": "law options as key=value pairs, comma separated, values parsed as YAML "
                "(e.g. 'sigma=var,space=log_ppl' or 'form=ceiling,chance=0.25')"})
    group: Optional[str] = field(default=None, metadata={
        "help": "column holding the run id: the bootstrap then resamples whole runs, so checkpoints of one run "
                "move together"})
    bootstrap: int = field(default=200, metadata={"help": "bootstrap resamples for the CIs (0: none)"})
    seed: int = field(default=0, metadata={"help": "random seed of the bootstrap"})
    level: float = field(default=0.95, metadata={"help": "confidence level of the percentile CIs"})
    space: Optional[str] = field(default=None, metadata={
        "help": "residual space (default: the law's own; log for loss laws)", "choices": ["log", "linear"]})
    loss: Optional[str] = field(default=None, metadata={
        "help": "objective, summed over points (default: the law's own; huber for loss laws)",
        "choices": ["huber", "mse"]})
    delta: Optional[float] = field(default=None, metadata={"help": "Huber threshold (default 1e-3)"})
    polish: int = field(default=32, metadata={"help": "how many of the best grid starts L-BFGS-B refines"})
    holdout: Optional[str] = field(default=None, metadata={
        "help": "validation: 'loo' (leave-one-out / leave-one-run-out) or 'largest <variable>' (extrapolation); "
                "the held-out error is printed and stored in fit.json"})
    region: Optional[str] = field(default=None, metadata={
        "help": "perplexity law: table of realisable (mu, sigma) points (columns mu, sigma, or the first two) "
                "whose convex hull bounds the optimum search (default: the hull of the fitted runs)"})
    optimum_D: Optional[float] = field(default=None, metadata={
        "help": "perplexity law: also predict the loss at the optimum for this many tokens"})
    variants: bool = field(default=False, metadata={
        "help": "perplexity law: also fit sigma-as-std vs variance (and log-PPL space if --columns maps "
                "mu_log/sigma_log) and report which fits better"})
    regime: Optional[str] = field(default=None, metadata={
        "help": "column labelling each run's regime for the loss-vs-D plot (default: runs with close values of "
                "the other variables are grouped)"})
    out: str = field(default="fit_out", metadata={"help": "output directory for fit.json, summary.txt and PNGs"})
    plots: bool = field(default=True, metadata={"help": "write the PNG plots"})

    def __post_init__(self) -> None:
        # before the table is read or a law fitted: a level of 95 or a negative bootstrap fails here, by its flag
        integer(self.bootstrap, "pplaw fit: --bootstrap", 0)
        integer(self.seed, "pplaw fit: --seed", 0)
        require(is_finite(self.level) and 0 < self.level < 1, "pplaw fit: --level", "be in (0, 1)", self.level)
        integer(self.polish, "pplaw fit: --polish", 1)
        number(self.delta, "pplaw fit: --delta", optional=True)
        number(self.optimum_D, "pplaw fit: --optimum-D", optional=True)


def _flatten(records: list, source: str) -> pd.DataFrame:
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise SerializationError(f"{source}: record {i} is a {type(r).__name__}, expected a JSON object")
    return pd.json_normalize(records, sep=".")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SerializationError(f"run record {str(path)!r} is not valid JSON: {err}") from err


def _canonical_loader():
    """``(pplaw.runs.load_runs, record file name)`` when that module is available."""
    try:
        from pplaw.runs import RECORD_NAME
        from pplaw.runs import load_runs as load_records
    except ImportError:  # pragma: no cover - the run-record module ships with pplaw
        return None
    return load_records, RECORD_NAME


def load_runs(path: str | Path) -> pd.DataFrame:
    """Load run records as one flat table (see the module docstring for the accepted layouts). A directory
    holding pplaw run records (``run_record.json`` per run) goes through :func:`pplaw.runs.load_runs`."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"runs path {str(p)!r} does not exist")
    if p.is_dir():
        canonical = _canonical_loader()
        if canonical is not None and any(p.rglob(canonical[1])):
            return canonical[0](p)  # a pplaw run directory: the canonical loader (finished runs only)
        files = sorted(p.glob("*.json")) or sorted(p.glob("*/*.json"))
        if not files:
            raise EmptyInputError(f"no run-record JSON files in directory {str(p)!r} (looked for *.json and */*.json)")
        records, sources = [], []
        for f in files:
            obj = _read_json(f)
            for rec in obj if isinstance(obj, list) else [obj]:
                records.append(rec)
                sources.append(str(f.relative_to(p)))
        df = _flatten(records, str(p))
        df["_source"] = sources
    else:
        suffix = p.suffix.lower()
        try:
            if suffix in (".parquet", ".pq"):
                df = pd.read_parquet(p)
            elif suffix in (".csv", ".tsv"):
                df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
            elif suffix in (".jsonl", ".ndjson"):
                lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
                df = _flatten([json.loads(ln) for ln in lines], str(p))
            elif suffix == ".json":
                obj = _read_json(p)
                df = _flatten(obj if isinstance(obj, list) else [obj], str(p))
            else:
                raise InvalidInputError(f"runs file {str(p)!r}: unknown format {suffix!r} (use .parquet, .csv, "
                                        ".jsonl, .json or a directory of JSON records)")
        except (ValueError, OSError) as err:
            if isinstance(err, InvalidInputError):
                raise
            raise SerializationError(f"cannot read runs file {str(p)!r}: {err}") from err
    if len(df) == 0:
        raise EmptyInputError(f"runs {str(p)!r} hold no records")
    return df


def resolve_column(df: pd.DataFrame, name: str, aliases: tuple[str, ...] = ()) -> Optional[str]:
    """Exact name, else a unique column ending in ``.name``, for ``name`` then each alias."""
    for cand in (name, *aliases):
        if cand in df.columns:
            return cand
        hits = [c for c in df.columns if str(c).endswith("." + cand)]
        if len(hits) > 1:
            raise InvalidInputError(f"{cand!r} matches several columns {hits}; choose one with --columns {name}=...")
        if hits:
            return hits[0]
    return None


def _pairs(text: str, what: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise ConfigError(f"--{what}: expected key=value pairs separated by commas, got {item!r}")
        k, v = item.split("=", 1)
        if k.strip() in out:  # not last-wins: a key given twice is a typo or a pasted line
            raise ConfigError(f"--{what}: key {k.strip()!r} is given twice ({k.strip()}={out[k.strip()]} and "
                              f"{k.strip()}={v.strip()}); keep one")
        out[k.strip()] = v.strip()
    return out


def _law_options(text: str) -> dict:
    """``--law-options floor=0.3,knots=4`` -> ``{"floor": 0.3, "knots": 4}``: each value a plain YAML scalar,
    list or mapping; a tag (``!!python/...``) or malformed YAML is one line naming the option."""
    import yaml

    from pplaw._yaml import load, one_line

    options = {}
    for k, v in _pairs(text, "law_options").items():
        try:
            options[k] = load(v, f"--law-options {k}")
        except yaml.YAMLError as err:
            raise ConfigError(f"--law-options {k}={v!r}: not a YAML value: {one_line(err)}") from None
    return options


def run(cfg: FitConfig) -> int:
    from pplaw.laws import Fit, compare_variants, get_law
    from pplaw._atomic import atomic_write_text
    from pplaw.laws.plotting import write_plots

    if not cfg.runs:
        raise ConfigError("pplaw fit needs RUNS (a table or a directory of run records): pplaw fit RUNS ...")
    options = _law_options(cfg.law_options)
    law = get_law(cfg.law, **options)
    df = load_runs(cfg.runs)
    mapping = _pairs(cfg.columns, "columns")
    extra = {k: mapping.pop(k) for k in ("mu_log", "sigma_log") if k in mapping}
    unknown = sorted(set(mapping) - set(law.variables))
    if unknown:
        raise ConfigError(f"--columns names unknown variable(s) {unknown}; {cfg.law} takes {list(law.variables)}")
    columns = {}
    for v in law.variables:
        col = mapping.get(v) or resolve_column(df, v, ALIASES.get(v, ()))
        if col is None:
            raise MissingColumnError(
                f"no column for variable {v!r} of {cfg.law} (tried {v!r}, '*.{v}' and aliases "
                f"{list(ALIASES.get(v, ()))}); map it with --columns {v}=<column>. Columns: {', '.join(df.columns)}")
        columns[v] = col
    target = resolve_column(df, cfg.target)
    if target is None:
        raise MissingColumnError(f"target column {cfg.target!r} not found (nor '*.{cfg.target}'); columns: "
                                 f"{', '.join(df.columns)}")
    fit: Fit = law.fit(df, target=target, group=cfg.group, bootstrap=cfg.bootstrap, seed=cfg.seed, level=cfg.level,
                       space=cfg.space, loss=cfg.loss, delta=cfg.delta, polish=cfg.polish, **columns)
    out = Path(cfg.out)
    report = [fit.summary()]
    optimum = None
    if cfg.law == "perplexity":
        region = None
        if cfg.region:
            region = load_runs(cfg.region)
        optimum = fit.optimum(region=region, D=cfg.optimum_D)
        fit.extras["optimum"] = optimum.to_dict()
        report.append(str(optimum))
        if cfg.variants:
            cmp = compare_variants(df, target=target, D=columns["D"], mu=columns["mu"], sigma=columns["sigma"],
                                   mu_log=extra.get("mu_log"), sigma_log=extra.get("sigma_log"),
                                   group=cfg.group, space=cfg.space, loss=cfg.loss, delta=cfg.delta)
            fit.extras["variants"] = cmp.table.reset_index().to_dict("records")
            report.append(str(cmp))
    if cfg.holdout:
        val = fit.validate(cfg.holdout)
        fit.extras["validation"] = val.to_dict()
        report.append(str(val))
    fit.to_json(out / "fit.json")
    written = [out / "fit.json"]
    text = "\n\n".join(report)
    atomic_write_text(out / "summary.txt", text + "\n")
    written.append(out / "summary.txt")
    if cfg.plots:
        by = None
        if cfg.regime:
            col = resolve_column(df, cfg.regime)
            if col is None:
                raise MissingColumnError(f"regime column {cfg.regime!r} not found; columns: {', '.join(df.columns)}")
            by = df[col].astype(str).to_numpy()
        written += write_plots(fit, out, optimum=optimum, by=by)
    print(text)
    print("\nwrote: " + ", ".join(str(p) for p in written))
    return 0


def main(argv: list[str]) -> int:
    from pplaw.config import parse_config

    argv = list(argv)
    if argv and not argv[0].startswith("-"):  # RUNS as the first positional argument
        argv = ["--runs", argv[0], *argv[1:]]
    (cfg,) = parse_config([FitConfig], argv, prog="pplaw fit [RUNS]",
                          description="Fit a scaling law to run records: bootstrap CIs, the optimum, validation, "
                                      "fit.json, summary.txt and PNG plots.")
    return run(cfg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))


__all__ = ["FitConfig", "load_runs", "resolve_column", "main", "run"]
