"""Checks of a whole recipe before any work: what could otherwise fail only after hours of training.

:meth:`RunRecipe.check <pplaw.pipeline.recipe.RunRecipe.check>` checks values and ranges when the recipe
is read; this module checks what needs the file system or the training and evaluation libraries:

- :func:`check_paths` (before anything runs): every file and folder the recipe names exists (corpora,
  held-out sets, diagnostics, a local base model, task folders, the accelerate config);
- :func:`check_grid` (before anything runs): the sizes' arithmetic that the recipe alone decides (a size
  > 1 is a whole number of tokens and at least one chunk; held-out sizes >= 2x the fitting sizes when both
  are token counts or both shares; enough fitting runs for every candidate law's free parameters);
- :func:`check_reachable` (before anything runs): the executor's cluster answers (Ray address, Slurm
  partition), within a few seconds;
- :func:`check_runs` (once the inputs are known, before scoring): one run's ``pplaw train`` options parse
  (``train.args`` typos, bad values) and every benchmark task resolves;
- :func:`check_sizes` (once the corpus's token count is known, right after scoring, before the landscape,
  the plan and the sweep): every size resolves within the corpus and to at least one chunk.

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

VALIDATION_ROUNDING = 1e-3  # as pplaw.pipeline.plan: 2x up to the rounding of shares to whole tokens


def _sizes(recipe: RunRecipe) -> list[tuple[str, float]]:
    return ([("plan.sizes", v) for v in recipe.plan.sizes]
            + [("plan.validation_sizes", v) for v in recipe.plan.validation_sizes or []]
            + [("select.budget", recipe.select.budget)])


def max_fit_runs(recipe: RunRecipe) -> int:
    """The most fitting runs the plan can make: every regime (windows, mixtures, budget bands) at every fitting
    size, replay ratio and seed (the plan may make fewer: unreachable points, windows that coincide)."""
    p = recipe.plan
    return (p.windows + p.mixtures + p.budget_bands) * len(p.sizes) * len(p.replay_ratios) * len(p.seeds)


def check_grid(recipe: RunRecipe) -> None:
    """What the recipe alone decides about its sizes and grid, before any work (keys named in the error)."""
    from pplaw.laws.registry import get_law_spec

    chunk = recipe.scoring.chunk_tokens
    for key, v in _sizes(recipe):
        if v > 1 and float(v) != int(v):
            raise ConfigError(f"{key} = {v!r}: a size > 1 is a number of tokens and must be a whole number (a "
                              f"share of the corpus is <= 1, e.g. 0.05)")
        if 1 < v < chunk:
            raise ConfigError(f"{key} = {v!r} is read as {int(v)} tokens, less than one chunk "
                              f"(scoring.chunk_tokens = {chunk}); a share of the corpus is <= 1 (e.g. 0.05)")
    sizes, vsizes = recipe.plan.sizes, recipe.plan.validation_sizes
    for kind in ((lambda v: v > 1), (lambda v: v <= 1)):  # comparable without the corpus: both tokens or both shares
        if vsizes and all(map(kind, [*sizes, *vsizes])):
            low = [v for v in vsizes if v < 2 * max(sizes) * (1 - VALIDATION_ROUNDING)]
            if low:
                raise ConfigError(f"plan.validation_sizes: {low[0]!r} is less than 2x the largest of plan.sizes "
                                  f"({max(sizes)!r}): a held-out point must test extrapolation in D")
    runs = max_fit_runs(recipe)
    for spec in recipe.fit.laws:
        n_free = get_law_spec(spec, sigma=recipe.fit.sigma, space=recipe.fit.space).n_free
        if runs < n_free:
            p = recipe.plan
            raise ConfigError(
                f"the grid has at most {runs} fitting runs ((plan.windows {p.windows} + plan.mixtures {p.mixtures} "
                f"+ plan.budget_bands {p.budget_bands}) x {len(p.sizes)} plan.sizes x {len(p.replay_ratios)} "
                f"plan.replay_ratios x {len(p.seeds)} plan.seeds), fewer than the {n_free} free parameters of "
                f"fit.laws entry {spec!r}: add regimes or sizes, or drop that law")


def check_reachable(recipe: RunRecipe) -> None:
    """The executor's cluster answers (:mod:`pplaw.pipeline.reach`, bounded in time): the Ray address, the
    Slurm partition. Before any work, instead of a hang or a failure once the sweep is submitted."""
    from pplaw.pipeline.reach import check_ray_address, check_slurm_partition

    t = recipe.train
    if t.executor == "ray":
        check_ray_address(t.ray_address)
    if "slurm" in (t.executor, recipe.select.executor) and recipe.slurm.cluster == "slurm":
        check_slurm_partition(recipe.slurm.partition)


def check_sizes(recipe: RunRecipe, total_tokens: int) -> None:
    """Every size of the recipe within the corpus (``total_tokens``, known once it is scored) and at least
    one chunk: before the landscape, the plan and the sweep."""
    from pplaw.pipeline.plan import resolve_size

    chunk = recipe.scoring.chunk_tokens
    for key, v in _sizes(recipe):
        tokens = resolve_size(v, total_tokens, key)  # refuses 0 tokens and more than the corpus holds
        if tokens < chunk:
            raise ConfigError(f"{key} = {v!r} is {tokens} tokens of the {total_tokens:,}-token corpus, less than "
                              f"one chunk (scoring.chunk_tokens = {chunk})")


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
    from pplaw.train import cpt
    from pplaw.train.evaluate import EvalConfig, plan_benchmarks
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
