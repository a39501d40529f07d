"""The recipe of ``pplaw run``: nested dataclass sections with help metadata, read from YAML.

Options a section shares with a command's config are not declared twice: the section borrows them
(:func:`pplaw.config.borrow`: the same default and help) from :class:`~pplaw.score_job.ScoreConfig` (scoring,
the corpus' columns), :class:`~pplaw.evaluate.EvalConfig` (evaluation) and :mod:`pplaw.cpt_options` (training),
and the stages build those configs from the section (:func:`pplaw.config.shared_options`).

A recipe is a YAML mapping whose top-level keys are the sections of :class:`RunRecipe` (``world``,
``model``, ``corpus``, ``scoring``, ``landscape``, ``plan``, ``train``, ``evaluate``, ``fit``, ``select``,
``baselines``, ``report``, ``slurm``). Every level is checked: an unknown key is a :class:`~pplaw.exceptions.ConfigError`
that names its path (``plan.sizez``) and lists the valid keys, so a typo never silently falls back to a
default. ``pplaw run --help`` prints every option with its help text.

Either ``world`` (a synthetic world built by :mod:`pplaw.synth`, which then supplies the base model, the
corpora, the held-out sets and the benchmarks) or ``model.base_model`` + ``corpus.domain_data`` (your own)
must be given. ``pplaw run`` with no recipe uses the embedded quickstart (``quickstart.yaml`` next to this
file, the same file as ``recipes/quickstart/run.yaml``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from pplaw._checks import at_least, is_finite, number, require
from pplaw._yaml import load as yaml_load
from pplaw._yaml import one_line
from pplaw.config import borrow
from pplaw.pipeline.cluster import EXECUTORS, SlurmSection, check_executor
from pplaw.cpt_options import CPTConfig, TrainingDefaults, check_training
from pplaw.evaluate import EvalConfig
from pplaw.exceptions import ConfigError
from pplaw.score_job import ScoreConfig
from pplaw.synth.world import WorldConfig

QUICKSTART = Path(__file__).resolve().parent / "quickstart.yaml"
METHODS = ("random", "lowest_ppl", "highest_ppl", "full", "best_sweep")


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelSection:
    """The base model (unset when ``world`` builds one)."""

    base_model: str | None = _f(None, "Base model: a local folder or a Hugging Face Hub id.")
    tokenizer: str | None = _f(None, "Tokenizer, if not the model's own.")


@dataclass
class CorpusSection:
    """The domain corpus, general replay data and held-out sets (unset when ``world`` supplies them)."""

    domain_data: str | None = _f(None, "Domain corpus: a .jsonl/.parquet/.txt file or folder, one document a row.")
    text_column: str = borrow(ScoreConfig, "text_column")
    id_column: str | None = borrow(ScoreConfig, "id_column")
    general_data: str | None = _f(None, "General text for replay (needed when plan.replay_ratios has R > 0).")
    domain_eval_data: str | None = _f(None, "Held-out domain text for the domain loss (never in domain_data).")
    general_eval_data: str | None = _f(None, "Held-out general text for the general loss.")
    diagnostics: str | None = _f(None, "JSONL/Parquet of document id -> kind, for the report's per-kind view ONLY "
                                       "(never shown to the method).")
    diagnostics_kind_column: str = _f("kind", "Column of `diagnostics` with the kind label.")


@dataclass
class ScoringSection:
    """Chunking and perplexity scoring of the domain corpus with the base model (``pplaw score``)."""

    chunk_tokens: int = borrow(ScoreConfig, "chunk_tokens")
    min_tail_tokens: int | None = borrow(ScoreConfig, "min_tail_tokens")
    dtype: str = borrow(ScoreConfig, "dtype")
    max_tokens_per_batch: int = borrow(ScoreConfig, "max_tokens_per_batch")
    shard_docs: int = borrow(ScoreConfig, "shard_docs")


@dataclass
class LandscapeSection:
    """The perplexity landscape (token-weighted quantile bins)."""

    n_bins: int = _f(20, "Quantile bins; the plan's windows are made of whole bins.")


@dataclass
class PlanSection:
    """The fitting grid: (mu, sigma) regimes x sizes D (x replay ratios R x seeds)."""

    sizes: list[float] = _f([0.05, 0.1], "Subset sizes D: a value <= 1 is a share of the corpus tokens, > 1 a "
                                         "token count. More sizes over a wider span pin the law's D exponent (the "
                                         "report says how far select.budget extrapolates beyond the largest).")
    windows: int = _f(5, "Window regimes: contiguous runs of landscape bins, spread from low to high PPL.")
    window_bins: int = _f(0, "Bins per window (0: the fewest that hold the largest size, plus one).")
    mixtures: int = _f(2, "Mixture regimes: two windows pooled (wider spread); unreachable ones are reported "
                          "and skipped.")
    mixture_sampling: str = _f("band", "How a mixture is realised: 'band' samples a contiguous pool (neighbour "
                                       "windows) uniformly, like the final selection's bands (pools with a gap "
                                       "fall back to target sampling); 'target' meets the pooled (mu, sigma) by "
                                       "target sampling, which can pick other text with the same moments.",
                               choices=["band", "target"])
    budget_bands: int = _f(0, "Band regimes shaped like the final selection: contiguous bands as wide as the "
                              "narrowest band holding select.budget, spread over the landscape and run at the "
                              "fitting sizes, so the law is fitted on the family it later selects from (its final "
                              "forecast then extrapolates in D only).")
    replay_ratios: list[float] = _f([0.0], "Replay ratios R (general tokens / all tokens); several fit the "
                                           "mixture laws too.")
    seeds: list[int] = _f([0], "Seeds of every grid point (sampling and training).")
    validation_sizes: list[float] | None = _f(None, "Held-out sizes D (share or tokens, each >= 2x the largest of "
                                                    "`sizes`): run at `validation_regimes` regimes, never fitted; "
                                                    "the loop scores each candidate law by its error there and "
                                                    "picks the law by it. null (the default): one size, 2x the "
                                                    "largest of `sizes` (skipped, with a warning, when the corpus "
                                                    "is smaller); []: no held-out runs (the run and its report "
                                                    "warn that the law's predictions are then untested).")
    validation_regimes: int = _f(2, "Regimes (of validation_family, spread over the landscape, low to high PPL) "
                                    "run at each validation size.")
    validation_family: str = _f("window", "Which regimes the held-out runs repeat at the larger size: 'band' (the "
                                        "budget bands, when plan.budget_bands > 0; windows otherwise): the same "
                                        "band at a larger D, so the held-out error measures the curve in D of a "
                                        "fixed subset distribution, the extrapolation the final forecast makes; "
                                        "'window' (the default): windows, widened to hold the size (D and (mu, "
                                        "sigma) change together). On fresh world seeds 20-27 neither family "
                                        "removed the forecast's low bias (window: -11.4%, band: -13.5% mean).",
                               choices=["band", "window"])


NO_VALIDATION = ("no held-out validation runs (plan.validation_sizes: []): the law's extrapolation in D is "
                 "untested, so its predictions at the final budget are not validated; leave plan.validation_sizes "
                 "unset (2x the largest fitting size) or list sizes >= 2x max(plan.sizes)")


def validation_warning(plan: PlanSection) -> str | None:
    """What a recipe that turns the held-out validation off is told (at the run's start and at the top of its
    report); None when it is on (the default)."""
    return f"WARNING: {NO_VALIDATION}" if plan.validation_sizes == [] else None


@dataclass
class TrainSection:
    """How each run is trained (``pplaw.cpt``): where (executor), launcher, parallelism and the CPT options."""

    executor: str = _f("local", "Where the sweep's and the final runs execute: 'local' (this machine: in this "
                                "process or a worker pool, see workers), 'ray' (each run a Ray task on "
                                "train.ray_address) or 'slurm' (each run a Slurm job, options in the slurm "
                                "section). The run directory must then be on a file system every node mounts.",
                       choices=list(EXECUTORS))
    ray_address: str | None = _f(None, "executor=ray: the cluster to join (ray.init(address=...): 'auto', "
                                       "'ray://head:10001'); null: start a Ray cluster on this machine.")
    cpus_per_run: int = _f(1, "executor=ray/slurm: CPU cores each run gets (its Ray task's num_cpus; the Slurm "
                              "job's cpus_per_task unless slurm.cpus_per_task is set); also its torch threads "
                              "unless threads_per_worker is set.")
    gpus_per_run: int = _f(0, "executor=ray/slurm: GPUs each run gets (its Ray task's num_gpus; the Slurm job's "
                              "GPUs unless slurm.gpus_per_node is set).")
    max_retries: int = _f(2, "executor=ray: retries of a run whose worker or node died (Ray's max_retries); "
                             "executor=slurm: requeues of a run after preemption or its time limit (it resumes "
                             "from its last checkpoint).")
    launcher: str = _f("inprocess", "'inprocess' (pplaw.cpt in this process or a worker pool) or 'accelerate' "
                                    "(each run under `accelerate launch`).", choices=["inprocess", "accelerate"])
    accelerate_config: str | None = _f(None, "accelerate config file for launcher=accelerate "
                                             "(recipes/accelerate_configs/).")
    workers: int = _f(1, "Runs trained at once (0: one per GPU, else one per 2 CPU cores). With GPUs each worker "
                         "gets its own.")
    threads_per_worker: int = _f(0, "torch threads per worker (0: CPU cores / workers).")
    epochs: float = _f(1.0, "Passes over the selected subset: each run trains on epochs x D domain tokens.")
    max_length: int = borrow(TrainingDefaults, "max_length")
    per_device_train_batch_size: int = borrow(TrainingDefaults, "per_device_train_batch_size")
    gradient_accumulation_steps: int = borrow(TrainingDefaults, "gradient_accumulation_steps")
    learning_rate: float = borrow(TrainingDefaults, "learning_rate")
    lr_scheduler_type: str = borrow(TrainingDefaults, "lr_scheduler_type")
    warmup_steps: float = borrow(TrainingDefaults, "warmup_steps")
    weight_decay: float = borrow(TrainingDefaults, "weight_decay")
    model_dtype: str = borrow(CPTConfig, "model_dtype")
    keep_models: bool = _f(True, "Keep each sweep run's final model (False: delete it once evaluated).")
    report_to: str = _f("auto", "Where each run's training logs go (transformers' report_to): 'auto' is "
                                "'tensorboard' when tensorboard is installed, else 'none'; TensorBoard logs land in "
                                "each run's folder (<run>/sweep/<id>/runs/, <run>/final/<id>/runs/): "
                                "`tensorboard --logdir <run>`. Or 'none', 'tensorboard', 'wandb', ...")
    args: dict = _f({}, "Any other `pplaw train` option (e.g. bf16, max_grad_norm).")


@dataclass
class EvaluateSection:
    """Held-out losses and benchmarks of every run (``pplaw.evaluate``)."""

    domain_benchmarks: list[str] = _f([], "Domain benchmark: suites (e.g. medical) or lm-eval tasks; the score is "
                                          "the mean accuracy over them.")
    general_benchmarks: list[str] = _f([], "General benchmark: suites (e.g. general) or lm-eval tasks.")
    sweep_benchmarks: bool = _f(False, "Also run the benchmarks on sweep runs (the law is fitted on losses).")
    task_source: str = borrow(EvalConfig, "task_source")
    task_data: str | None = borrow(EvalConfig, "task_data")
    task_include_path: list[str] = borrow(EvalConfig, "task_include_path")
    num_fewshot: int | None = borrow(EvalConfig, "num_fewshot")
    bench_limit: float | None = borrow(EvalConfig, "bench_limit")
    bench_batch_size: int = borrow(EvalConfig, "bench_batch_size")
    eval_max_chunks: int | None = borrow(EvalConfig, "eval_max_chunks")
    eval_tokens_per_batch: int = borrow(EvalConfig, "eval_tokens_per_batch")



# the spline law's default candidates: floors (a fraction of the smallest loss no subset goes below) x pool decay
# rates (effective data of a subset drawn from a finite band); each is scored by held-out error, none is assumed
SPLINE_GRID = ["perplexity_spline" + ":" * bool(o) + ",".join(o)
               for o in ([f"floor={fl}"] * (fl > 0) + [f"pool={k}"] * (k > 0)
                         for fl in (0, 0.3, 0.6) for k in (0, 1, 2, 3))]

@dataclass
class FitSection:
    """The perplexity-aware law fitted to the sweep (``pplaw.laws.PerplexityLaw``)."""

    target: str = _f("domain_loss", "Column the law predicts.")
    space: str = _f("ppl", "Statistics of chunk PPL ('ppl', as in the paper) or of log-PPL.",
                    choices=["ppl", "log_ppl"])
    sigma: str = _f("std", "Plug sigma in as the standard deviation ('std') or the variance ('var').",
                    choices=["std", "var"])
    laws: list[str] = _f(["perplexity", "perplexity_regime_d", *SPLINE_GRID],
                         "Candidate laws, first the paper's (always reported); the loop fits each on the sweep's fit "
                         "points, scores it on the held-out validation points (plan.validation_sizes) and uses the "
                         "one with the lowest held-out MAPE. pplaw's extensions: 'perplexity_regime_d' (data "
                         "exponent d0 + d1*mu + d2*sigma), 'perplexity_logquad' (log-quadratic two-stage form), "
                         "'perplexity_spline' (each regime's power law in D, smoothed over (mu, sigma) by a "
                         "thin-plate spline). Options follow a colon: 'perplexity_spline:floor=0.3' puts a floor "
                         "of 0.3 x the smallest loss under every power law; 'pool=2' replaces D by the effective "
                         "data of a subset drawn from a finite pool (its landscape band), D_eff = P/k (1 - "
                         "exp(-k D/P)). Default: the spline at floors 0, 0.3, 0.6 x pool rates 0, 1, 2, 3.")
    bootstrap: int = _f(200, "Bootstrap resamples of runs for the CIs.")
    seed: int = _f(0, "Bootstrap seed.")
    compare_variants: bool = _f(True, "Also fit every (space, sigma) variant and report which fits best.")
    variants_holdout: str | None = _f("loo", "How variants are ranked: held-out error ('loo': leave one run out, "
                                             "'largest D') or null: in-sample RMSE.")


@dataclass
class SelectSection:
    """The final selection: the optimum (mu*, sigma*) and Distance-to-Optimum Selection at the final budget."""

    budget: float = _f(0.2, "Final budget D: a share of the corpus tokens (<= 1) or a token count.")
    region: str = _f("realisable", "Where the optimum is searched: 'realisable' (what the corpus can realise at "
                                   "the budget), 'fitted' (convex hull of the sweep points) or 'both' (their "
                                   "intersection).", choices=["realisable", "fitted", "both"])
    weights: list[float] | None = _f(None, "DOS weights (w_mu, w_s); default scale-free 1/mu*^2, 1/sigma*^4.")
    seeds: list[int] = _f([0, 1, 2], "Seeds of the final comparison (DOS and every baseline).")
    replay_ratio: float = _f(0.0, "Replay ratio R of the final runs.")
    family: str = _f("band", "Subsets DOS may select: 'band' (a contiguous band of the landscape, the family the "
                             "sweep's windows belong to, sampled uniformly; the band with the lowest predicted loss "
                             "at the budget wins) or 'free' (any subset matching (mu*, sigma*), which can be a "
                             "bimodal mix of the landscape's ends that no sweep run resembled).",
                     choices=["band", "free"])
    executor: str = _f("stream", "How the final subsets are drawn from the scored shards: 'stream' (pplaw.stream: "
                                 "shard by shard in bounded memory; the same subsets as in memory for band and "
                                 "random draws, and for DOS up to 5 million chunks), 'ray' (the same passes as Ray "
                                 "tasks) or 'memory' (one table).", choices=["stream", "ray", "memory"])
    fallback: bool = _f(True, "Select the best sweep regime instead when the law's predicted gain over it is "
                              "within the law's own uncertainty: the bootstrap CI of the difference, and the "
                              "held-out error on differences (the worst mispredicted gap between two validation "
                              "runs of one size; the held-out MAPE when no size has two).")


@dataclass
class BaselinesSection:
    """Baselines trained at the same budget as DOS."""

    methods: list[str] = _f(list(METHODS), "Any of random, lowest_ppl, highest_ppl, full (the whole corpus, "
                                           "trained for the same number of tokens), best_sweep (the law-free "
                                           "baseline: the regime of the lowest-loss sweep run at the largest "
                                           "fitting size, as a landscape band sampled at the budget).")


@dataclass
class ExportSection:
    """The final subset, published at the end of the run (export/subset: rows + dataset card; see pplaw export)."""

    format: str = _f("parquet", "parquet (data/train-*.parquet, the Hub's layout), dataset (a save_to_disk folder) "
                                "or none (no export).", choices=["parquet", "dataset", "none"])
    method: str = _f("dos", "Which final subset (first seed of select.seeds): dos or a baseline of baselines.methods.")
    push_to_hub: str | None = _f(None, "Also push it to this Hub dataset repo (user/name); an unreachable Hub fails "
                                       "the stage with the local copy kept.")


@dataclass
class ReportSection:
    title: str = _f("pplaw run", "Report title.")
    html: bool = _f(True, "Also write report.html next to report.md.")


@dataclass
class RunRecipe:
    """Everything `pplaw run` does, section by section."""

    name: str = _f("run", "Name of the run (default output folder: pplaw_runs/<name>).")
    world: WorldConfig | None = _f(None, "A synthetic world (pplaw.synth) that supplies model, corpora and "
                                         "benchmarks; omit it to bring your own.")
    cache_dir: str | None = _f("~/.cache/pplaw", "Cache of pretrained synthetic base models (null: none).")
    model: ModelSection = field(default_factory=ModelSection, metadata={"help": ModelSection.__doc__})
    corpus: CorpusSection = field(default_factory=CorpusSection, metadata={"help": CorpusSection.__doc__})
    scoring: ScoringSection = field(default_factory=ScoringSection, metadata={"help": ScoringSection.__doc__})
    landscape: LandscapeSection = field(default_factory=LandscapeSection, metadata={"help": LandscapeSection.__doc__})
    plan: PlanSection = field(default_factory=PlanSection, metadata={"help": PlanSection.__doc__})
    train: TrainSection = field(default_factory=TrainSection, metadata={"help": TrainSection.__doc__})
    evaluate: EvaluateSection = field(default_factory=EvaluateSection, metadata={"help": EvaluateSection.__doc__})
    fit: FitSection = field(default_factory=FitSection, metadata={"help": FitSection.__doc__})
    select: SelectSection = field(default_factory=SelectSection, metadata={"help": SelectSection.__doc__})
    baselines: BaselinesSection = field(default_factory=BaselinesSection, metadata={"help": BaselinesSection.__doc__})
    export: ExportSection = field(default_factory=ExportSection, metadata={"help": ExportSection.__doc__})
    report: ReportSection = field(default_factory=ReportSection, metadata={"help": "Report options."})
    slurm: SlurmSection = field(default_factory=SlurmSection, metadata={"help": SlurmSection.__doc__})

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Consistency checks that one field alone cannot express, and value ranges (each names its key)."""
        n = self.name
        require(isinstance(n, str) and bool(n.strip()) and n not in (".", "..") and not any(c in n for c in "/\\\0")
                and not n.startswith("~"), "name", "be a plain folder name (the default output is pplaw_runs/<name>): "
                "no '/', '\\', '~' and not '.' or '..'", n)
        _check_ranges(self)
        if self.world is None and not (self.model.base_model and self.corpus.domain_data):
            raise ConfigError("recipe: give either `world` (a synthetic world) or both `model.base_model` and "
                              "`corpus.domain_data`")
        if self.world is not None and (self.model.base_model or self.corpus.domain_data):
            raise ConfigError("recipe: `world` supplies the model and corpora; leave model.base_model and "
                              "corpus.domain_data unset (or drop `world` to bring your own)")
        for name, values in (("plan.sizes", self.plan.sizes), ("select.budget", [self.select.budget])):
            require(bool(values) and all(v > 0 for v in values), name,
                    "hold positive sizes (<= 1: share of the corpus, > 1: tokens)", values)
        for r in [*self.plan.replay_ratios, self.select.replay_ratio]:
            require(0 <= r < 1, "replay ratios", "be in [0, 1)", r)
        if (any(r > 0 for r in self.plan.replay_ratios) or self.select.replay_ratio > 0) and \
                self.world is None and not self.corpus.general_data:
            raise ConfigError("a replay ratio R > 0 needs corpus.general_data")
        at_least(self.plan.windows, "plan.windows", 2, why=" (the law needs a spread of regimes)")
        require(all(v > 0 for v in self.plan.validation_sizes or []), "plan.validation_sizes",
                "hold positive sizes", self.plan.validation_sizes)
        if not self.fit.laws or self.fit.laws[0] != "perplexity":
            raise ConfigError(f"fit.laws must start with 'perplexity' (the paper's law, always reported), got "
                              f"{self.fit.laws}")
        from pplaw.exceptions import InvalidInputError as _Bad
        import pplaw.laws  # noqa: F401  (registers the laws)
        from pplaw.laws.registry import REGISTRY, get_law_spec, parse_law_spec

        for i, spec in enumerate(self.fit.laws):
            try:
                name, _ = parse_law_spec(spec)
                cls = REGISTRY.get(name)
                if cls is not None and set(cls.variables) != {"mu", "sigma", "D"}:
                    raise ConfigError(f"fit.laws[{i}] ({spec!r}) is not a perplexity law of (mu, sigma, D): its "
                                      f"variables are {list(cls.variables)}")
                get_law_spec(spec, sigma=self.fit.sigma, space=self.fit.space)
            except _Bad as err:
                raise ConfigError(f"fit.laws[{i}] ({spec!r}): {err}") from err
        at_least(self.plan.validation_regimes, "plan.validation_regimes", 1)
        for key in ("mixtures", "window_bins", "budget_bands"):
            at_least(getattr(self.plan, key), f"plan.{key}", 0)
        require(bool(self.plan.seeds), "plan.seeds", "not be empty", self.plan.seeds)
        require(bool(self.select.seeds), "select.seeds", "not be empty", self.select.seeds)
        bad = sorted(set(self.baselines.methods) - set(METHODS))
        require(not bad, "baselines.methods", f"be among {list(METHODS)} (unknown: {bad})", self.baselines.methods)
        if self.export.format != "none":  # a subset the run makes (full is every chunk: nothing to select)
            can = ["dos", *(m for m in self.baselines.methods if m != "full")]
            require(self.export.method in can, "export.method", f"be one of {can}", self.export.method)
            if self.export.push_to_hub is not None:
                r = self.export.push_to_hub
                require(isinstance(r, str) and r.count("/") == 1 and all(r.split("/")), "export.push_to_hub",
                        "be a Hub repo id 'user/name' or null", r)
        at_least(self.landscape.n_bins, "landscape.n_bins", 2)
        at_least(self.train.workers, "train.workers", 0)
        at_least(self.train.threads_per_worker, "train.threads_per_worker", 0)
        if self.train.launcher == "accelerate" and not self.train.accelerate_config:
            raise ConfigError("train.launcher=accelerate needs train.accelerate_config")
        check_executor(self.train, self.slurm)
        require(self.select.weights is None or len(self.select.weights) == 2, "select.weights", "be [w_mu, w_s]",
                self.select.weights)
        at_least(self.fit.bootstrap, "fit.bootstrap", 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_hash(self, *names: str) -> str:
        """A short hash of some sections (what a stage's cache key is made of)."""
        d = self.to_dict()
        return digest({n: d[n] for n in names})


def _check_ranges(r: RunRecipe) -> None:
    """Values that could only fail late (after the world build or the whole sweep): checked up front."""
    t = r.train
    check_training(t, "train.")
    number(t.epochs, "train.epochs")
    sc = r.scoring
    at_least(sc.chunk_tokens, "scoring.chunk_tokens", 2, why=" (a chunk needs a token to predict)")
    require(sc.min_tail_tokens is None or 0 <= sc.min_tail_tokens <= sc.chunk_tokens, "scoring.min_tail_tokens",
            "be in [0, scoring.chunk_tokens]", sc.min_tail_tokens)
    for key in ("max_tokens_per_batch", "shard_docs"):
        at_least(getattr(sc, key), f"scoring.{key}", 1)
    require(r.landscape.n_bins <= MAX_BINS, "landscape.n_bins", f"be <= {MAX_BINS}", r.landscape.n_bins)
    for key, values in (("plan.seeds", r.plan.seeds), ("select.seeds", r.select.seeds)):
        require(all(v >= 0 for v in values), key, "be >= 0", values)
        # a repeated seed is the same run twice: it would count as two seeds in every mean, sd and verdict
        require(len(set(values)) == len(values), key, "hold distinct seeds", values)
    for key, values in (("plan.sizes", r.plan.sizes), ("plan.replay_ratios", r.plan.replay_ratios)):
        require(len(set(values)) == len(values), key, "hold distinct values", values)
    at_least(r.fit.seed, "fit.seed", 0)
    for key, values in (("plan.sizes", r.plan.sizes), ("plan.validation_sizes", r.plan.validation_sizes or []),
                        ("select.budget", [r.select.budget]), ("plan.replay_ratios", r.plan.replay_ratios)):
        require(all(is_finite(v) for v in values), key, "hold finite numbers", values)
    require(r.select.weights is None or all(is_finite(w) and w >= 0 for w in r.select.weights), "select.weights",
            "be finite numbers >= 0", r.select.weights)
    ev = r.evaluate
    require(ev.bench_limit is None or (is_finite(ev.bench_limit) and ev.bench_limit > 0), "evaluate.bench_limit",
            "be > 0", ev.bench_limit)
    at_least(ev.num_fewshot, "evaluate.num_fewshot", 0, optional=True)
    for key in ("bench_batch_size", "eval_tokens_per_batch"):
        at_least(getattr(ev, key), f"evaluate.{key}", 1)
    at_least(ev.eval_max_chunks, "evaluate.eval_max_chunks", 1, optional=True)


MAX_BINS = 100_000


def digest(obj: Any, root: str | Path | None = None) -> str:
    """A short hash of a JSON-able value. With ``root`` (a run directory), paths inside it count relative to
    it (:func:`located`), so a moved or copied run directory keeps its keys and nothing is recomputed."""
    if root is not None:
        obj = located(obj, root)
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


RUN_ROOT = "<run>"


def located(obj: Any, root: str | Path) -> Any:
    """A copy of ``obj`` whose strings that are paths inside ``root`` read ``<run>/<relative path>``."""
    prefixes = sorted({str(Path(root)), str(Path(root).resolve()), str(Path(root).absolute())}, key=len, reverse=True)

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        if isinstance(x, Path):
            x = str(x)
        if isinstance(x, str):
            for pre in prefixes:
                if x == pre or x.startswith(pre.rstrip("/") + "/"):
                    return RUN_ROOT + x[len(pre.rstrip("/")):]
        return x

    return walk(obj)


# ----------------------------------------------------------------------------------------------------------
# parsing: dict -> dataclasses with a check at every level


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        for a in typing.get_args(tp):
            if dataclasses.is_dataclass(a):
                return a
    return None


def _check_value(value: Any, tp: Any, path: str) -> Any:
    """Light type check of a YAML value against a field annotation (ints where floats go are fine)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{path}: bad value {value!r}")
    expected = origin or tp
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected is bool and isinstance(value, bool):
        return value
    if expected is str and isinstance(value, str):
        return value
    if expected is list and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        return [v if inner is Any else _check_value(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if expected is dict and isinstance(value, dict):
        return dict(value)
    if expected is Any:
        return value
    name = getattr(expected, "__name__", str(expected))
    raise ConfigError(f"{path}: expected {name}, got {type(value).__name__} {value!r}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys anywhere are a ConfigError naming their path."""
    where = path or "recipe"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of option: value, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(f'{path}.{k}' if path else k for k in unknown)}; "
                          f"valid keys there: {', '.join(fields)}")
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        sub = f"{path}.{name}" if path else name
        tp = hints[name]
        dc = _dataclass_of(tp)
        if dc is not None and value is not None:
            if dc is WorldConfig:  # the synth world validates itself; re-raise with the recipe path
                if not isinstance(value, dict):
                    raise ConfigError(f"{sub}: expected a mapping of world options, got {value!r}")
                bad = sorted(set(value) - {f.name for f in dataclasses.fields(WorldConfig)})
                if bad:
                    raise ConfigError(f"unknown key(s) in {sub}: {', '.join(f'{sub}.{k}' for k in bad)}; valid keys there: "
                                      f"{', '.join(f.name for f in dataclasses.fields(WorldConfig))}")
                kwargs[name] = WorldConfig(**{k: _check_value(v, _hints(WorldConfig)[k], f"{sub}.{k}")
                                              for k, v in value.items()})
            else:
                kwargs[name] = from_dict(dc, value, sub)
        else:
            kwargs[name] = _check_value(value, tp, sub)
            choices = fields[name].metadata.get("choices")
            if choices and kwargs[name] is not None and kwargs[name] not in choices:
                raise ConfigError(f"{sub}: expected one of {choices}, got {kwargs[name]!r}")
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: list[tuple[str, str]]) -> dict:
    """Set dotted keys (``plan.sizes``) to YAML-parsed values (``[0.1, 0.2]``) in a copy of ``data``."""
    out = json.loads(json.dumps(data))
    for key, raw in overrides:
        try:
            value = yaml_load(raw, f"override {key}={raw!r}")
        except yaml.YAMLError as err:
            raise ConfigError(f"override {key}={raw!r}: not a YAML value ({one_line(err)})") from err
        node, parts = out, key.split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def load_recipe(path: str | Path | None = None, overrides: list[tuple[str, str]] | None = None) -> RunRecipe:
    """Read a recipe (default: the embedded quickstart) and apply ``key=value`` overrides."""
    from pplaw.config import load_yaml

    data = load_yaml(path if path is not None else QUICKSTART)
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return from_dict(RunRecipe, data)
    except ConfigError as err:
        raise ConfigError(f"{path if path is not None else 'quickstart recipe'}: {err}") from err


def describe(cls: type = RunRecipe, prefix: str = "") -> list[str]:
    """``--help`` lines: every option with its default and help text, section by section."""
    lines = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        dc = _dataclass_of(hints[f.name])
        if dc is not None:
            lines.append(f"\n{key}:  {f.metadata.get('help', '')}")
            lines += describe(dc, key + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {key} = {default!r}\n      {f.metadata.get('help', '')}")
    return lines
