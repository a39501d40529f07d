"""``pplaw tasks``: the benchmark suites and their local (offline) task data.

    pplaw tasks list [--data DIR]                      suites, lm-eval names, local names, local data present
    pplaw tasks export --suite medical --out DIR       download the suite's data from the Hub (JSONL)
    pplaw tasks pubmedqa --source PQA_L_DIR --out DIR  build local PubMedQA from the original release
    pplaw tasks render --data DIR --out INCLUDE_DIR    write lm-eval task YAMLs for `lm_eval --include_path`

With local data, run benchmarks offline with ``task_source: local`` and ``task_data: DIR`` in a recipe (or
PPLAW_TASK_SOURCE=local PPLAW_TASK_DATA=DIR), or call lm-eval directly::

    lm_eval --model hf --model_args pretrained=MODEL --tasks pubmedqa_local --include_path INCLUDE_DIR
"""

from __future__ import annotations

import argparse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pplaw tasks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="list the suites and their tasks")
    ls.add_argument("--data", default=None, help="local task data dir to check (default: PPLAW_TASK_DATA)")
    ex = sub.add_parser("export", help="download a suite's benchmark data from the Hub into a local data dir")
    ex.add_argument("--suite", action="append", default=[], help="suite to export (repeatable)")
    ex.add_argument("--task", action="append", default=[], help="single task or group to export (repeatable)")
    ex.add_argument("--out", required=True, help="local task data directory")
    ex.add_argument("--overwrite", action="store_true", help="download files that are already there again")
    pm = sub.add_parser("pubmedqa", help="build local PubMedQA (the 500 PQA-L test questions) from the release")
    pm.add_argument("--source", required=True, help="folder with ori_pqal.json and test_ground_truth.json")
    pm.add_argument("--out", required=True, help="local task data directory")
    rd = sub.add_parser("render", help="write lm-eval task YAMLs pointing at a local data dir")
    rd.add_argument("--data", default=None, help="local task data dir (default: PPLAW_TASK_DATA)")
    rd.add_argument("--out", required=True, help="folder for the YAMLs (lm_eval --include_path)")
    return p


def main(argv: list[str]) -> int:
    from pplaw import tasks
    from pplaw.exceptions import ConfigError

    args = _parser().parse_args(argv)
    if args.action == "list":
        rows = tasks.list_rows(args.data)
        for suite, info in tasks.suites().items():
            print(f"suite {suite}: {info.get('description', '')}")
            for r in (r for r in rows if r["suite"] == suite):
                present = "" if r["local_present"] is None else f"  local data: {r['local_present']}/{r['leaves']}"
                print(f"  {r['online']:<28} local: {r['local']:<34} leaf tasks: {r['leaves']}{present}")
        return 0
    if args.action == "export":
        from pplaw.tasks.export import export_suite, export_tasks

        if not args.suite and not args.task:
            raise ConfigError("pplaw tasks export: give --suite NAME and/or --task NAME")
        files = [f for s in args.suite for f in export_suite(s, args.out, overwrite=args.overwrite)]
        files += export_tasks(args.task, args.out, overwrite=args.overwrite) if args.task else []
        print(f"{len(files)} files under {args.out}; use task_source=local task_data={args.out}")
        return 0
    if args.action == "pubmedqa":
        from pplaw.tasks.pubmedqa import build_pubmedqa

        print(f"wrote {build_pubmedqa(args.source, args.out)}")
        return 0
    out = tasks.render_local_tasks(args.data, args.out)
    print(f"wrote lm-eval task YAMLs to {out}; e.g. lm_eval --tasks pubmedqa_local --include_path {out} ...")
    return 0
