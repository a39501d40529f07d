"""``pplaw evaluate``: held-out losses and lm-eval benchmark suites of a run or a model (:mod:`pplaw.train.evaluate`).

    pplaw evaluate --config recipe.yaml                 # the recipe's run (output_dir) and eval settings
    pplaw evaluate --run_dir runs/r1 --suites medical --task_source local --task_data DIR
    pplaw evaluate --model path/to/model --domain_eval_data val.jsonl --output results.json
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from pplaw.exceptions import ConfigError

@dataclass
class EvaluateTarget:
    """What ``pplaw evaluate`` evaluates."""

    run_dir: str | None = field(
        default=None, metadata={"help": "A run directory: evaluates its final model, updates its run_record.json."})
    model: str | None = field(default=None, metadata={"help": "Any model folder (or Hub id) to evaluate instead."})
    output: str | None = field(default=None, metadata={"help": "Write the results as JSON here (with --model)."})


def main(argv: list[str]) -> int:
    """``pplaw evaluate``: a recipe's training keys are accepted (and ignored, except ``output_dir``)."""
    import argparse

    from pplaw.train import evaluate as evaluation
    from pplaw import runs
    from pplaw.config import load_yaml, parse_config
    from pplaw.train.evaluate import EvalConfig, evaluate_model, evaluate_run, wants_evaluation

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    overrides: dict[str, Any] = {}
    run_dir_from_recipe = None
    if known.config:
        from pplaw.train.cpt import CONFIG_TYPES

        values = load_yaml(known.config)
        mine = {f.name for dc in (EvalConfig, EvaluateTarget) for f in dataclasses.fields(dc)}
        train_keys = {f.name for dc in CONFIG_TYPES for f in dataclasses.fields(dc)}
        unknown = sorted(set(values) - mine - train_keys)
        if unknown:
            raise ConfigError(f"unknown key(s) in config file {known.config!r}: {', '.join(unknown)}")
        overrides = {k: v for k, v in values.items() if k in mine}
        run_dir_from_recipe = values.get("output_dir")
    ecfg, target = parse_config((EvalConfig, EvaluateTarget), rest, prog="pplaw evaluate",
                                description=evaluation.__doc__.split("\n\n")[0], yaml_overrides=overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if target.model is None and target.run_dir is None:
        target.run_dir = run_dir_from_recipe
    if target.model is None and target.run_dir is None:
        raise ConfigError("pplaw evaluate needs --run_dir DIR (a finished run) or --model DIR")
    if not wants_evaluation(ecfg):
        raise ConfigError("nothing to evaluate: set domain_eval_data/general_eval_data and/or suites/tasks")
    if target.model is None:
        seq = (runs.read_record(target.run_dir).get("training") or {}).get("seq_len")
        rec = evaluate_run(target.run_dir, ecfg, seq_len=seq)
        result = {"eval": rec["eval"], "benchmarks": rec["benchmarks"]}
        print(f"updated {runs.record_path(target.run_dir)}")
    else:
        result = evaluate_model(target.model, None, ecfg)
        if target.output:
            runs.write_json_atomic(target.output, result)
    for name, ev in result["eval"].items():
        print(f"{name}_loss = {ev['loss']:.4f} (ppl {ev['ppl']:.2f}, {ev['n_tokens']} tokens)")
    for task, m in (result["benchmarks"].get("tasks") or {}).items():
        print(f"{task}: acc = {m.get('acc')} ± {m.get('acc_stderr')}, acc_norm = {m.get('acc_norm')}")
    for suite, s in (result["benchmarks"].get("suites") or {}).items():
        print(f"suite {suite}: avg acc = {s.get('avg')}, avg acc_norm = {s.get('acc_norm_avg')}")
    return 0
