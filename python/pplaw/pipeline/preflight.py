"""Checks of a whole recipe before any work: what could otherwise fail only after hours of training.

:meth:`RunRecipe.check <pplaw.pipeline.recipe.RunRecipe.check>` checks values and ranges when the recipe
is read; this module checks what needs the file system or the training and evaluation libraries:

- :func:`check_paths` (before anything runs): every file and folder the recipe names exists (corpora,
  held-out sets, diagnostics, a local base model, task folders, the accelerate config);
- :func:`check_runs` (once the inputs are known, before scoring): one run's ``pplaw train`` options parse
  (``train.args`` typos, bad values) and every benchmark task resolves.

Every error is a :class:`~pplaw.exceptions.ConfigError` that names the recipe key.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pplaw.config import check_model_ref
from pplaw.exceptions import ConfigError, PplawError
from pplaw.pipeline.recipe import RunRecipe

if TYPE_CHECKING:  # pragma: no cover
    from pplaw.pipeline.artefacts import Inputs


def check_paths(recipe: RunRecipe) -> None:
    """Every path the recipe names exists (keys named in the error)."""
    c, m, ev, t = recipe.corpus, recipe.model, recipe.evaluate, recipe.train
    for key, value in (("corpus.domain_data", c.domain_data), ("corpus.general_data", c.general_data),
                       ("corpus.domain_eval_data", c.domain_eval_data),
                       ("corpus.general_eval_data", c.general_eval_data), ("corpus.diagnostics", c.diagnostics),
                       ("train.accelerate_config", t.accelerate_config), ("evaluate.task_data", ev.task_data)):
        if value and not Path(value).expanduser().exists():
            raise ConfigError(f"{key}: {value!r} does not exist")
    check_model_ref(m.base_model, "model.base_model")
    check_model_ref(m.tokenizer, "model.tokenizer")
    for p in ev.task_include_path:
        if not Path(p).expanduser().is_dir():
            raise ConfigError(f"evaluate.task_include_path: {p!r} is not a directory")


def check_inputs(inp: Inputs) -> None:
    """The resolved inputs (the synthetic world's or the recipe's own) exist."""
    for key, value in (("corpus.domain_data", inp.domain_corpus), ("corpus.general_data", inp.general_data),
                       ("corpus.domain_eval_data", inp.domain_eval_data),
                       ("corpus.general_eval_data", inp.general_eval_data), ("corpus.diagnostics", inp.diagnostics)):
        if value and not Path(value).expanduser().exists():
            raise ConfigError(f"{key}: {value!r} does not exist")


def check_runs(recipe: RunRecipe, inp: Inputs, bench: dict[str, Any]) -> list[str]:
    """One run's ``pplaw train`` options parse and every benchmark task resolves; returns the task folders
    lm-eval will load (their YAML may run code: see the README)."""
    from pplaw import cpt
    from pplaw.evaluate import EvalConfig, plan_benchmarks
    from pplaw.pipeline import sweep as SW

    with tempfile.TemporaryDirectory(prefix="pplaw-preflight-") as tmp:
        opts = SW.cpt_options(recipe, inp, train_data=Path(tmp), run_dir=Path(tmp) / "run", indices=None,
                              tokens=1, replay_ratio=recipe.select.replay_ratio, seed=0, bench=bench)
        try:
            _, ecfg, _ = cpt.parse_args([], yaml_overrides=opts)
        except (PplawError, ValueError, TypeError) as err:
            keys = ", ".join(sorted(recipe.train.args)) or "none"
            raise ConfigError(f"the runs' `pplaw train` options are invalid (train.args holds: {keys}): {err}") from err
        except SystemExit as err:  # argparse refuses a value
            raise ConfigError(f"the runs' `pplaw train` options are invalid (train.args: "
                              f"{sorted(recipe.train.args)}): exit {err.code}") from err
        if not bench:
            return []
        try:
            plan_benchmarks(ecfg, tmp)
        except PplawError as err:
            raise ConfigError(f"evaluate.domain_benchmarks / evaluate.general_benchmarks: {err}") from err
        return [str(Path(p).expanduser()) for p in ecfg.task_include_path]
