"""``pplaw run [RECIPE.yaml] [--out DIR] [section.key=value ...]``: the end-to-end loop.

Without a recipe, runs the embedded quickstart: a synthetic "clinical knowledge" world on the CPU, in
minutes. Overrides set any recipe option by its dotted path, as ``plan.seeds=[0,1]`` or
``--plan.seeds [0,1]`` (values are YAML). Re-running the same command resumes: finished stages and runs
are skipped. ``pplaw run --help`` lists every option.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from pplaw.exceptions import ConfigError

USAGE = ("usage: pplaw run [RECIPE.yaml] [--out DIR] [--detach] [section.key=value | --section.key VALUE ...] "
         "[--help]\n  --detach  (train.executor=slurm) submit the runs' jobs and return; run the same command "
         "again to collect them")


def parse_argv(argv: list[str]) -> tuple[str | None, str | None, list[tuple[str, str]]]:
    """(recipe path or None, --out or None, [(dotted key, raw YAML value)]); ``--detach`` is not an override
    (see :func:`split_detach`)."""
    recipe, out, overrides = None, None, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--out", "--output_dir", "--out_dir"):
            if i + 1 >= len(argv):
                raise ConfigError(f"{a} needs a directory")
            out, i = argv[i + 1], i + 2
            continue
        if a.startswith("--out="):
            out, i = a.split("=", 1)[1], i + 1
            continue
        if a.startswith("--"):
            key = a[2:]
            if "=" in key:
                key, value = key.split("=", 1)
                i += 1
            elif i + 1 < len(argv):
                value, i = argv[i + 1], i + 2
            else:
                raise ConfigError(f"option {a} needs a value")
            overrides.append((key.replace("-", "_"), value))
            continue
        if "=" in a and not a.endswith((".yaml", ".yml")):
            key, value = a.split("=", 1)
            overrides.append((key, value))
        elif recipe is None:
            recipe = a
        else:
            raise ConfigError(f"unexpected argument {a!r} (one recipe only; overrides look like key=value)\n{USAGE}")
        i += 1
    return recipe, out, overrides


def split_detach(argv: list[str]) -> tuple[list[str], bool]:
    """(argv without ``--detach``, whether it was there)."""
    rest = [a for a in argv if a != "--detach"]
    return rest, len(rest) != len(argv)


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _cell(stat: dict | None) -> str:
    """``mean ± sd``, the mean alone without an sd, ``-`` without a mean (never ``nan ± nan``)."""
    mean, sd = _num((stat or {}).get("mean")), _num((stat or {}).get("sd"))
    if mean is None:
        return "-"
    return f"{mean:.4f} ± {sd:.4f}" if sd is not None else f"{mean:.4f}"


def n_failed(summary: dict) -> int:
    """Runs of the sweep and the final comparison that did not finish."""
    return len(summary.get("failed_runs") or []) + len(summary.get("failed_final_runs") or [])


def _print_summary(summary: dict, out: Path, seconds: float) -> None:
    opt = summary.get("optimum") or {}
    print("\n" + "=" * 78)
    print(f"pplaw run finished in {seconds / 60:.1f} min  ->  {out}")
    if opt:
        ci = opt.get("ci") or {}
        c = lambda k: f" [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if k in ci else ""  # noqa: E731
        print(f"optimum ({opt.get('space')}): mu* = {opt['mu']:.4g}{c('mu')}, sigma* = {opt['sigma']:.4g}{c('sigma')}"
              + ("  (on the edge of the region)" if opt.get("on_boundary") else ""))
    band = summary.get("learnable_band")
    if band:
        print(f"learnable band (diagnostics) [{band['lo']:.4g}, {band['hi']:.4g}]: mu* "
              f"{'inside' if band['mu_star_inside'] else 'OUTSIDE'}")
    comp = summary.get("comparison") or {}
    if comp:
        print(f"\n{'method':<12} {'domain loss':>18} {'domain bench':>18} {'general bench':>18}")
        for m, v in comp.items():
            print(f"{m:<12} {_cell(v.get('domain_loss')):>18} {_cell(v.get('domain_bench')):>18} "
                  f"{_cell(v.get('general_bench')):>18}")
        if all(_cell(v.get(k)) == "-" for v in comp.values() for k in ("domain_bench", "general_bench")):
            print("(no benchmarks were run: evaluate.domain_benchmarks and evaluate.general_benchmarks are empty)")
    for base, cmp in (summary.get("margins") or {}).items():
        for key in ("domain_loss", "domain_bench"):
            if key in cmp:
                print(f"DOS - {base:<11} {key:<13} {cmp[key]['mean']:+.4f}  ({cmp[key]['verdict']})")
    pred = (summary.get("prediction") or {}).get("dos")
    if pred:
        pi = pred.get("interval")
        print(f"law's prediction for DOS: {pred['predicted']:.4f} vs measured {pred['measured']:.4f} "
              f"({pred['rel_error']:+.1%})" + ("; no prediction interval (no validation runs)" if not pi else
                                               f"; 90% interval [{pi[0]:.4f}, {pi[1]:.4f}] "
                                               f"{'covers' if pred.get('covered') else 'MISSES'} the measurement"))
    ho = summary.get("holdout") or {}
    if ho and not ho.get("validated"):
        print(f"WARNING: the law is not validated: {ho.get('reason') or 'no held-out validation runs'}")
    for what in ("failed_runs", "failed_final_runs", "unreachable"):
        if summary.get(what):
            print(f"{what.replace('_', ' ')}: {', '.join(x['id'] for x in summary[what])}")
    print(f"report: {out / 'report.md'}" + (f" and {out / 'report.html'}" if (out / 'report.html').exists() else ""))


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from pplaw.pipeline.recipe import describe

        print(__doc__.split("\n\n")[0] + "\n\n" + USAGE + "\n\nRecipe options (section.key = default):")
        print("\n".join(describe()))
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from pplaw.pipeline import load_recipe, run_pipeline
    from pplaw.pipeline.sections import validation_warning

    argv, detach = split_detach(argv)
    path, out, overrides = parse_argv(argv)
    recipe = load_recipe(path, overrides)
    out_dir = Path(out) if out else Path("pplaw_runs") / recipe.name
    print(f"pplaw run: recipe {path or 'quickstart (embedded)'} -> {out_dir}")
    warning = validation_warning(recipe.plan)
    if warning:
        print(f"pplaw run: {warning}", file=sys.stderr)
    t0 = time.perf_counter()
    summary = run_pipeline(recipe, out_dir, detach=detach)
    if "detached" in summary:
        d = summary["detached"]
        print(f"pplaw run: {d['n_jobs']} run(s) of the {d['stage']} stage are Slurm jobs now (ids in {d['jobs_file']}); "
              f"run the same command again to collect them and go on")
        return 0
    _print_summary(summary, out_dir, time.perf_counter() - t0)
    bad = n_failed(summary)
    if bad:
        print(f"pplaw run: {bad} run(s) FAILED (listed above; details in each run's failed.json); "
              f"re-run the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from pplaw.cli.main import main as _main

    sys.exit(_main(["run", *sys.argv[1:]]))
