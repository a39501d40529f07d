"""The sections of the ``pplaw run`` recipe: one dataclass each, with its options' help and its own value checks.

A section declares only what is its own: the options it shares with a command's config are borrowed
(:func:`pplaw.config.borrow`: the same default and help) from :class:`~pplaw.score.job.ScoreConfig` (scoring,
the corpus' columns), :class:`~pplaw.train.evaluate.EvalConfig` (evaluation) and :mod:`pplaw.train.options`
(training), and the stages build those configs from the section (:func:`pplaw.config.shared_options`).

Each section checks its values in ``__post_init__`` with the :mod:`pplaw._checks` helpers (the same checks as
the config it borrows from, named by the recipe key: ``train.learning_rate``); the rules that join sections
(``world`` or ``model`` + ``corpus``, a replay ratio needing general data, ``export.method`` among the
baselines, the executor and its ``slurm`` section) are :meth:`pplaw.pipeline.recipe.RunRecipe.check`'s.
The recipe itself, its loader and ``--help`` are :mod:`pplaw.pipeline.recipe`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pplaw._checks import at_least, is_finite, number, require
from pplaw.config import borrow, option
from pplaw.exceptions import ConfigError
from pplaw.cluster import EXECUTORS, check_executor
from pplaw.score.job import ScoreConfig
from pplaw.train.evaluate import EvalConfig, check_evaluation
from pplaw.train.options import CPTConfig, TrainingDefaults, check_training

METHODS = ("random", "lowest_ppl", "highest_ppl", "full", "best_sweep")
MAX_BINS = 100_000


def check_seeds(values: list[int], key: str) -> None:
    """A list of seeds: not empty, each >= 0, no repeats (a repeated seed is the same run twice: it would
    count as two seeds in every mean, sd and verdict)."""
    require(bool(values), key, "not be empty", values)
    require(all(v >= 0 for v in values), key, "be >= 0", values)
    require(len(set(values)) == len(values), key, "hold distinct seeds", values)


@dataclass
class ModelSection:
    """The base model (unset when ``world`` builds one)."""

    base_model: str | None = option(None, "Base model: a local folder or a Hugging Face Hub id.")
    tokenizer: str | None = option(None, "Tokenizer, if not the model's own.")


@dataclass
class CorpusSection:
    """The domain corpus, general replay data and held-out sets (unset when ``world`` supplies them)."""

    domain_data: str | None = option(None, "Domain corpus: a .jsonl/.parquet/.txt file or folder, one document a row.")
    text_column: str = borrow(ScoreConfig, "text_column")
    id_column: str | None = borrow(ScoreConfig, "id_column")
    general_data: str | None = option(None, "General text for replay (needed when plan.replay_ratios has R > 0).")
    domain_eval_data: str | None = option(None, "Held-out domain text for the domain loss (never in domain_data).")
    general_eval_data: str | None = option(None, "Held-out general text for the general loss.")
    diagnostics: str | None = option(None, "JSONL/Parquet of document id -> kind, for the report's per-kind view ONLY "
                                           "(never shown to the method).")
    diagnostics_kind_column: str = option("kind", "Column of `diagnostics` with the kind label.")


@dataclass
class ScoringSection:
    """Chunking and perplexity scoring of the domain corpus with the base model (``pplaw score``)."""

    chunk_tokens: int = borrow(ScoreConfig, "chunk_tokens")
    min_tail_tokens: int | None = borrow(ScoreConfig, "min_tail_tokens")
    dtype: str = borrow(ScoreConfig, "dtype")
    max_tokens_per_batch: int = borrow(ScoreConfig, "max_tokens_per_batch")
    shard_docs: int = borrow(ScoreConfig, "shard_docs")

    def __post_init__(self) -> None:
        at_least(self.chunk_tokens, "scoring.chunk_tokens", 2, why=" (a chunk needs a token to predict)")
        require(self.min_tail_tokens is None or 0 <= self.min_tail_tokens <= self.chunk_tokens,
                "scoring.min_tail_tokens", "be in [0, scoring.chunk_tokens]", self.min_tail_tokens)
        for key in ("max_tokens_per_batch", "shard_docs"):
            at_least(getattr(self, key), f"scoring.{key}", 1)


@dataclass
class LandscapeSection:
    """The perplexity landscape (token-weighted quantile bins)."""

    n_bins: int = option(20, "Quantile bins; the plan's windows are made of whole bins.")

    def __post_init__(self) -> None:
        at_least(self.n_bins, "landscape.n_bins", 2)
        require(self.n_bins <= MAX_BINS, "landscape.n_bins", f"be <= {MAX_BINS}", self.n_bins)


@dataclass
class PlanSection:
    """The fitting grid: (mu, sigma) regimes x sizes D (x replay ratios R x seeds)."""

    sizes: list[float] = option([0.05, 0.1], "Subset sizes D: a value <= 1 is a share of the corpus tokens, > 1 a "
                                             "token count. More sizes over a wider span pin the law's D exponent (the "
                                             "report says how far select.budget extrapolates beyond the largest).")
    windows: int = option(5, "Window regimes: contiguous runs of landscape bins, spread from low to high PPL.")
    window_bins: int = option(0, "Bins per window (0: the fewest that hold the largest size, plus one).")
    mixtures: int = option(2, "Mixture regimes: two windows pooled (wider spread); unreachable ones are reported "
                              "and skipped.")
    mixture_sampling: str = option("band", "How a mixture is realised: 'band' samples a contiguous pool (neighbour "
                                           "windows) uniformly, like the final selection's bands (pools with a gap "
                                           "fall back to target sampling); 'target' meets the pooled (mu, sigma) by "
                                           "target sampling, which can pick other text with the same moments.",
                                   choices=["band", "target"])
    budget_bands: int = option(0, "Band regimes shaped like the final selection: contiguous bands as wide as the "
                                  "narrowest band holding select.budget, spread over the landscape and run at the "
                                  "fitting sizes, so the law is fitted on the family it later selects from (its final "
                                  "forecast then extrapolates in D only).")
    replay_ratios: list[float] = option([0.0], "Replay ratios R (general tokens / all tokens); several fit the "
                                               "mixture laws too.")
    seeds: list[int] = option([0], "Seeds of every grid point (sampling and training).")
    validation_sizes: list[float] | None = option(None, "Held-out sizes D (share or tokens, each >= 2x the largest of "
                                                        "`sizes`): run at `validation_regimes` regimes, never fitted; "
                                                        "the loop scores each candidate law by its error there and "
                                                        "picks the law by it. null (the default): one size, 2x the "
                                                        "largest of `sizes` (skipped, with a warning, when the corpus "
                                                        "is smaller); []: no held-out runs (the run and its report "
                                                        "warn that the law's predictions are then untested).")
    validation_regimes: int = option(2, "Regimes run at each validation size: of validation_family, spread over "
                                        "the landscape from low to high PPL ('window', 'band'), or the best ones "
                                        "('lead').")
    validation_family: str = option("lead", "Which regimes the held-out runs repeat at the larger size: 'lead' (the "
                                            "default: the validation_regimes best sweep regimes at the largest "
                                            "fitting size, chosen after the sweep, each as its band at the final "
                                            "budget sampled to the held-out size: the held-out error is measured on "
                                            "the final candidates' own distributions, where the selection decides); "
                                            "'band' (the budget bands, when plan.budget_bands > 0; windows "
                                            "otherwise): the same band at a larger D; 'window': windows spread over "
                                            "the landscape, widened to hold the size (D and (mu, sigma) change "
                                            "together). benchmarks/PREDICT_RESULTS.md compares them on fresh world "
                                            "seeds.",
                                   choices=["band", "lead", "window"])

    def __post_init__(self) -> None:
        for key, values in (("plan.sizes", self.sizes), ("plan.validation_sizes", self.validation_sizes or []),
                            ("plan.replay_ratios", self.replay_ratios)):
            require(all(is_finite(v) for v in values), key, "hold finite numbers", values)
        require(bool(self.sizes) and all(v > 0 for v in self.sizes), "plan.sizes",
                "hold positive sizes (<= 1: share of the corpus, > 1: tokens)", self.sizes)
        require(all(v > 0 for v in self.validation_sizes or []), "plan.validation_sizes", "hold positive sizes",
                self.validation_sizes)
        for r in self.replay_ratios:
            require(0 <= r < 1, "replay ratios", "be in [0, 1)", r)
        for key, values in (("plan.sizes", self.sizes), ("plan.replay_ratios", self.replay_ratios)):
            require(len(set(values)) == len(values), key, "hold distinct values", values)
        at_least(self.windows, "plan.windows", 2, why=" (the law needs a spread of regimes)")
        at_least(self.validation_regimes, "plan.validation_regimes", 1)
        for key in ("mixtures", "window_bins", "budget_bands"):
            at_least(getattr(self, key), f"plan.{key}", 0)
        check_seeds(self.seeds, "plan.seeds")


NO_VALIDATION = ("no held-out validation runs (plan.validation_sizes: []): the law's extrapolation in D is "
                 "untested, so its predictions at the final budget are not validated; leave plan.validation_sizes "
                 "unset (2x the largest fitting size) or list sizes >= 2x max(plan.sizes)")


def validation_warning(plan: PlanSection) -> str | None:
    """What a recipe that turns the held-out validation off is told (at the run's start and at the top of its
    report); None when it is on (the default)."""
    return f"WARNING: {NO_VALIDATION}" if plan.validation_sizes == [] else None


@dataclass
class TrainSection:
    """How each run is trained (``pplaw.train.cpt``): where (executor), launcher, parallelism and the CPT options."""

    executor: str = option("local", "Where the sweep's and the final runs execute: 'local' (this machine: in this "
                                    "process or a worker pool, see workers), 'ray' (each run a Ray task on "
                                    "train.ray_address) or 'slurm' (each run a Slurm job, options in the slurm "
                                    "section). The run directory must then be on a file system every node mounts.",
                           choices=list(EXECUTORS))
    ray_address: str | None = option(None, "executor=ray: the cluster to join (ray.init(address=...): 'auto', "
                                           "'ray://head:10001'); null: start a Ray cluster on this machine.")
    cpus_per_run: int = option(1, "executor=ray/slurm: CPU cores each run gets (its Ray task's num_cpus; the Slurm "
                                  "job's cpus_per_task unless slurm.cpus_per_task is set); also its torch threads "
                                  "unless threads_per_worker is set.")
    gpus_per_run: int = option(0, "executor=ray/slurm: GPUs each run gets (its Ray task's num_gpus; the Slurm job's "
                                  "GPUs unless slurm.gpus_per_node is set).")
    max_retries: int = option(2, "executor=ray: retries of a run whose worker or node died (Ray's max_retries); "
                                 "executor=slurm: requeues of a run after preemption or its time limit (it resumes "
                                 "from its last checkpoint).")
    launcher: str = option("inprocess", "'inprocess' (pplaw.train.cpt in this process or a worker pool) or "
                           "'accelerate' (each run under `accelerate launch`).", choices=["inprocess", "accelerate"])
    accelerate_config: str | None = option(None, "accelerate config file for launcher=accelerate "
                                                 "(recipes/accelerate_configs/).")
    workers: int = option(1, "Runs trained at once (0: one per GPU, else one per 2 CPU cores). With GPUs each worker "
                             "gets its own.")
    threads_per_worker: int = option(0, "torch threads per worker (0: CPU cores / workers).")
    epochs: float = option(1.0, "Passes over the selected subset: each run trains on epochs x D domain tokens.")
    max_length: int = borrow(TrainingDefaults, "max_length")
    per_device_train_batch_size: int = borrow(TrainingDefaults, "per_device_train_batch_size")
    gradient_accumulation_steps: int = borrow(TrainingDefaults, "gradient_accumulation_steps")
    learning_rate: float = borrow(TrainingDefaults, "learning_rate")
    lr_scheduler_type: str = borrow(TrainingDefaults, "lr_scheduler_type")
    warmup_steps: float = borrow(TrainingDefaults, "warmup_steps")
    weight_decay: float = borrow(TrainingDefaults, "weight_decay")
    model_dtype: str = borrow(CPTConfig, "model_dtype")
    keep_models: bool = option(True, "Keep each sweep run's final model (False: delete it once evaluated).")
    report_to: str = option("auto", "Where each run's training logs go (transformers' report_to): 'auto' is "
                            "'tensorboard' when tensorboard is installed, else 'none'; TensorBoard logs land in each "
                            "run's folder (<run>/sweep/<id>/runs/, <run>/final/<id>/runs/): `tensorboard --logdir "
                            "<run>`. Or 'none', 'tensorboard', 'wandb', ...")
    args: dict = option({}, "Any other `pplaw train` option (e.g. bf16, max_grad_norm).")

    def __post_init__(self) -> None:
        check_training(self, "train.")
        number(self.epochs, "train.epochs")
        at_least(self.workers, "train.workers", 0)
        at_least(self.threads_per_worker, "train.threads_per_worker", 0)
        if self.launcher == "accelerate" and not self.accelerate_config:
            raise ConfigError("train.launcher=accelerate needs train.accelerate_config")
        check_executor(self)


@dataclass
class EvaluateSection:
    """Held-out losses and benchmarks of every run (``pplaw.train.evaluate``)."""

    domain_benchmarks: list[str] = option([], "Domain benchmark: suites (e.g. medical) or lm-eval tasks; the score is "
                                              "the mean accuracy over them.")
    general_benchmarks: list[str] = option([], "General benchmark: suites (e.g. general) or lm-eval tasks.")
    sweep_benchmarks: bool = option(False, "Also run the benchmarks on sweep runs (the law is fitted on losses).")
    task_source: str = borrow(EvalConfig, "task_source")
    task_data: str | None = borrow(EvalConfig, "task_data")
    task_include_path: list[str] = borrow(EvalConfig, "task_include_path")
    num_fewshot: int | None = borrow(EvalConfig, "num_fewshot")
    bench_limit: float | None = borrow(EvalConfig, "bench_limit")
    bench_batch_size: int = borrow(EvalConfig, "bench_batch_size")
    eval_max_chunks: int | None = borrow(EvalConfig, "eval_max_chunks")
    eval_tokens_per_batch: int = borrow(EvalConfig, "eval_tokens_per_batch")

    def __post_init__(self) -> None:
        check_evaluation(self, "evaluate.")



# the spline law's default candidates: floors (a fraction of the smallest loss no subset goes below) x pool decay
# rates (effective data of a subset drawn from a finite band); each is scored by held-out error, none is assumed
SPLINE_GRID = ["perplexity_spline" + ":" * bool(o) + ",".join(o)
               for o in ([f"floor={fl}"] * (fl > 0) + [f"pool={k}"] * (k > 0)
                         for fl in (0, 0.3, 0.6) for k in (0, 1, 2, 3))]
# with select.max_repeat > 1 (runs that repeat their band), also the spline with a repetition term past D = P:
# R* from fast to slow decay of a repeated pass's value (the data-constrained law's R* ~ 15 for large models)
REPEAT_GRID = ["perplexity_spline:" + ",".join([f"floor={fl}"] * (fl > 0) + [f"repeat={r}"])
               for fl in (0, 0.3, 0.6) for r in (1, 4, 15)]

@dataclass
class FitSection:
    """The perplexity-aware law fitted to the sweep (``pplaw.laws.PerplexityLaw``)."""

    target: str = option("domain_loss", "Column the law predicts.")
    space: str = option("ppl", "Statistics of chunk PPL ('ppl', as in the paper) or of log-PPL.",
                        choices=["ppl", "log_ppl"])
    sigma: str = option("std", "Plug sigma in as the standard deviation ('std') or the variance ('var').",
                        choices=["std", "var"])
    laws: list[str] = option(["perplexity", "perplexity_regime_d", *SPLINE_GRID], "Candidate laws, first the paper's "
                             "(always reported); the loop fits each on the sweep's fit points, scores it on the "
                             "held-out validation points (plan.validation_sizes) and uses the one with the lowest "
                             "held-out MAPE. pplaw's extensions: 'perplexity_regime_d' (data exponent d0 + d1*mu + "
                             "d2*sigma), 'perplexity_spline' (each regime's power law in D, smoothed over (mu, sigma) "
                             "by a thin-plate spline). Options follow a colon: 'perplexity_spline:floor=0.3' puts a "
                             "floor of 0.3 x the smallest loss under every power law (the smallest fitting "
                             "run's loss: the refit on every run keeps that floor in loss units); 'pool=2' replaces D by the "
                             "effective data of a subset drawn from a finite pool (its landscape band), D_eff = P/k "
                             "(1 - exp(-k D/P)); 'repeat=4' values the passes past D = P by the data-constrained law's form. "
                             "Default: the spline at floors 0, 0.3, 0.6 x pool rates 0, 1, 2, 3, and with "
                             "select.max_repeat > 1 also floors 0, 0.3, 0.6 x repeat 1, 4, 15.")
    refit_floor: bool = option(True, "Refit the chosen spline law with its floor E profiled on every run (the "
                               "lowest in-sample error over 0-0.95 x the smallest loss) where the held-out runs give a "
                               "regime >= 4 sizes (the 10x recipe's leaders at 2x and 4x), so E comes from the "
                               "curvature they measured, as Chinchilla fits E; false, or with no such regime (the "
                               "quickstart): the floor scored held out, in loss units.")
    bootstrap: int = option(200, "Bootstrap resamples of runs for the CIs.")
    seed: int = option(0, "Bootstrap seed.")
    compare_variants: bool = option(True, "Also fit every (space, sigma) variant and report which fits best.")
    variants_holdout: str | None = option("loo", "How variants are ranked: held-out error ('loo': leave one run out, "
                                                 "'largest D') or null: in-sample RMSE.")

    def __post_init__(self) -> None:
        at_least(self.bootstrap, "fit.bootstrap", 0)
        at_least(self.seed, "fit.seed", 0)
        if not self.laws or self.laws[0] != "perplexity":
            raise ConfigError(f"fit.laws must start with 'perplexity' (the paper's law, always reported), got "
                              f"{self.laws}")
        import pplaw.laws  # noqa: F401  (registers the laws)
        from pplaw.exceptions import InvalidInputError
        from pplaw.laws.registry import REGISTRY, get_law_spec, parse_law_spec

        for i, spec in enumerate(self.laws):
            try:
                name, _ = parse_law_spec(spec)
                cls = REGISTRY.get(name)
                if cls is not None and set(cls.variables) != {"mu", "sigma", "D"}:
                    raise ConfigError(f"fit.laws[{i}] ({spec!r}) is not a perplexity law of (mu, sigma, D): its "
                                      f"variables are {list(cls.variables)}")
                get_law_spec(spec, sigma=self.sigma, space=self.space)
            except InvalidInputError as err:
                raise ConfigError(f"fit.laws[{i}] ({spec!r}): {err}") from err


@dataclass
class SelectSection:
    """The final selection: the optimum (mu*, sigma*) and Distance-to-Optimum Selection at the final budget."""

    budget: float = option(0.2, "Final budget D: a share of the corpus tokens (<= 1) or a token count.")
    region: str = option("realisable", "Where the optimum is searched: 'realisable' (what the corpus can realise at "
                                       "the budget), 'fitted' (convex hull of the sweep points) or 'both' (their "
                                       "intersection).", choices=["realisable", "fitted", "both"])
    weights: list[float] | None = option(None, "DOS weights (w_mu, w_s); default scale-free 1/mu*^2, 1/sigma*^4.")
    seeds: list[int] = option([0, 1, 2], "Seeds of the final comparison (DOS and every baseline).")
    replay_ratio: float = option(0.0, "Replay ratio R of the final runs.")
    family: str = option("band", "Subsets DOS may select: 'band' (a contiguous band of the landscape, the family the "
                         "sweep's windows belong to, sampled uniformly; the band with the lowest predicted loss at "
                         "the budget wins) or 'free' (any subset matching (mu*, sigma*), which can be a bimodal mix "
                         "of the landscape's ends that no sweep run resembled).", choices=["band", "free"])
    executor: str = option("stream", "How the final subsets are drawn from the scored shards: 'stream' (pplaw.stream: "
                                     "shard by shard in bounded memory; the same subsets as in memory for band and "
                                     "random draws, and for DOS up to 5 million chunks), 'ray' (the same passes as "
                                     "Ray tasks), 'slurm' (as a Slurm job array, with the recipe's slurm: section; "
                                     "the shards on a shared filesystem) or 'memory' (one table).",
                           choices=["stream", "ray", "slurm", "memory"])
    fallback: bool = option(True, "Select the best sweep regime instead when the law's predicted gain over it is "
                                  "within the law's own uncertainty: the bootstrap CI of the difference, and the "
                                  "held-out error on differences (the worst mispredicted gap between two validation "
                                  "runs of one size; the held-out MAPE when no size has two).")
    confirm: bool = option(True, "Before the final runs take a band the law proposes on its own (not the best sweep "
                                 "regime's), train it once at the largest validation size (as a held-out run) and "
                                 "keep it only if it measures lower there than the best sweep regime's band at the "
                                 "final budget (the held-out leader's run, or one more run). Successive halving's "
                                 "rule: on fresh world seeds 45 and 46 it would have rejected two law bands that "
                                 "then lost at the final budget (benchmarks/PREDICT_RESULTS.md).")
    confirm_uncertain: bool = option(True, "With select.confirm: also when select.fallback kept the best sweep "
                                           "regime although the law predicts its own band lower (a gain within its "
                                           "uncertainty), train the law's band at the largest validation size the "
                                           "same way and take it if it measures lower there. The data judges a gain "
                                           "the law's error bars cannot: on fresh seed 80 of the repetition world the "
                                           "fallback kept the best sweep band, 0.014 nats (5 seed sd) worse than the "
                                           "law's own band at the final budget; on fresh seeds 100-104 this took the "
                                           "law's band in 3 of 5, each better at the final budget. A band that wins "
                                           "only beyond 2x still loses here (seed 104; benchmarks/PREDICT_RESULTS.md).")
    max_repeat: float = option(1.0, "How many times a band may be repeated to fill the final budget: a band holding "
                                    "at least budget / max_repeat tokens is a candidate, and one holding less than "
                                    "the budget is taken whole and trained for about budget / its tokens passes "
                                    "(1: never; every band holds the budget, widened when it does not). With > 1 the "
                                    "best-sweep baseline is the proxy winner's own band trained for more epochs, as "
                                    "a practitioner would, and the law must forecast what repetition costs (its pool "
                                    "and repetition terms, D > P; the default fit.laws then also holds the spline "
                                    "with repeat=1, 4, 15). Applies to the held-out leaders' bands as well.")

    def __post_init__(self) -> None:
        require(is_finite(self.max_repeat) and 1.0 <= float(self.max_repeat) <= 64.0, "select.max_repeat",
                "be a number in [1, 64] (1: a band is never repeated)", self.max_repeat)
        if float(self.max_repeat) > 1 and self.family != "band":
            raise ConfigError(f"select.max_repeat = {self.max_repeat:g} repeats a band of the landscape: it needs "
                              f"select.family: band (got {self.family!r}, whose moment-matched subsets always hold "
                              "the budget)")
        require(is_finite(self.budget), "select.budget", "hold finite numbers", [self.budget])
        require(self.budget > 0, "select.budget", "hold positive sizes (<= 1: share of the corpus, > 1: tokens)",
                [self.budget])
        require(0 <= self.replay_ratio < 1, "replay ratios", "be in [0, 1)", self.replay_ratio)
        require(self.weights is None or len(self.weights) == 2, "select.weights", "be [w_mu, w_s]", self.weights)
        require(self.weights is None or all(is_finite(w) and w >= 0 for w in self.weights), "select.weights",
                "be finite numbers >= 0", self.weights)
        check_seeds(self.seeds, "select.seeds")


@dataclass
class BaselinesSection:
    """Baselines trained at the same budget as DOS."""

    methods: list[str] = option(list(METHODS), "Any of random, lowest_ppl, highest_ppl, full (the whole corpus, "
                                               "trained for the same number of tokens), best_sweep (the law-free "
                                               "baseline: the regime of the lowest-loss sweep run at the largest "
                                               "fitting size, as a landscape band sampled at the budget).")

    def __post_init__(self) -> None:
        bad = sorted(set(self.methods) - set(METHODS))
        require(not bad, "baselines.methods", f"be among {list(METHODS)} (unknown: {bad})", self.methods)


@dataclass
class ExportSection:
    """The final subset, published at the end of the run (export/subset: rows + dataset card; see pplaw export)."""

    format: str = option("parquet", "parquet (data/train-*.parquet, the Hub's layout), dataset (a save_to_disk folder) "
                                    "or none (no export).", choices=["parquet", "dataset", "none"])
    method: str = option("dos", "Which final subset (first seed of select.seeds): dos or a baseline of "
                         "baselines.methods.")
    push_to_hub: str | None = option(None, "Also push it to this Hub dataset repo (user/name); an unreachable Hub "
                                     "fails the stage with the local copy kept.")

    def __post_init__(self) -> None:
        r = self.push_to_hub
        require(r is None or (isinstance(r, str) and r.count("/") == 1 and all(r.split("/"))), "export.push_to_hub",
                "be a Hub repo id 'user/name' or null", r)


@dataclass
class ReportSection:
    title: str = option("pplaw run", "Report title.")
    html: bool = option(True, "Also write report.html next to report.md.")
