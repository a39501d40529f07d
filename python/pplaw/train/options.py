"""The options of one CPT run that need no training library: :class:`CPTConfig` (what the run trains on) and
:class:`TrainingDefaults` (the training arguments pplaw gives its own defaults and help).

:mod:`pplaw.train.cpt` builds ``pplaw train``'s configuration from them (``CPTTrainingArguments``, TRL's
``SFTConfig``, takes the ``TrainingDefaults`` fields with :func:`pplaw.config.borrow`), and the ``train``
section of the ``pplaw run`` recipe borrows from both, so neither declares these options a second time.
This module imports no torch/transformers/trl: a recipe loads fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pplaw._checks import at_least, integer, is_finite, number, require

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class CPTConfig:
    """What one CPT run trains on."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base model: a local folder or a Hugging Face Hub id (required)."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer, if not the model's own."})
    model_dtype: str = field(
        default="float32", metadata={"help": "dtype of the loaded weights; bf16 mixed precision is set by `bf16`.",
                                     "choices": list(DTYPES)})
    domain_data: str | None = field(
        default=None, metadata={"help": "Domain corpus: Parquet/JSONL file or folder, or a saved dataset, with an "
                                        "'input_ids' column (chunks from `pplaw score`) or a text column (required)."})
    domain_indices: str | None = field(
        default=None, metadata={"help": "Parquet file from `pplaw sample` selecting the subset of domain_data (row "
                                        "positions, see indices_column). Unset: all rows."})
    indices_column: str = field(
        default="auto", metadata={"help": "Column of domain_indices with row positions; 'auto': 'index', else 'row' "
                                          "(what `pplaw sample` writes), else match 'chunk_id'."})
    text_column: str = field(default="text", metadata={"help": "Text column of the corpora when they hold text."})
    general_data: str | None = field(
        default=None, metadata={"help": "General replay corpus (same formats as domain_data)."})
    replay_ratio: float = field(
        default=0.0, metadata={"help": "R = general tokens / total tokens trained on, in [0, 1)."})
    budget_tokens: int | None = field(
        default=None, metadata={"help": "Total tokens to train on (domain + general); sets the steps: budget // "
                                        "(max_length x global batch). Unset: one pass over the domain subset."})
    allow_repeat: bool = field(
        default=False, metadata={"help": "Allow more than one epoch over a source when the budget needs it."})
    run_id: str | None = field(default=None, metadata={"help": "Run id in the record; default: output_dir's name."})
    subset_mu: float | None = field(
        default=None, metadata={"help": "PPL mean of the subset for the record; default: from a 'ppl' column."})
    subset_sigma: float | None = field(
        default=None, metadata={"help": "PPL std of the subset for the record; default: from a 'ppl' column."})
    ppl_space: str = field(default="ppl", metadata={"help": "Space of mu/sigma.", "choices": ["ppl", "log_ppl"]})
    resume: bool = field(default=True, metadata={"help": "Resume from the last checkpoint in output_dir."})
    delete_checkpoints: bool = field(
        default=True, metadata={"help": "Delete checkpoint-* folders once the final model and record are saved."})

    def __post_init__(self) -> None:
        # checked when the command parses its arguments, before the model is loaded or the run record written
        require(is_finite(self.replay_ratio) and 0 <= self.replay_ratio < 1, "pplaw train: --replay_ratio",
                "be in [0, 1)", self.replay_ratio)
        integer(self.budget_tokens, "pplaw train: --budget_tokens", 1, optional=True)


@dataclass
class TrainingDefaults:
    """Training arguments with pplaw's defaults (transformers' ``TrainingArguments`` names)."""

    max_length: int | None = field(default=1024, metadata={"help": "Packed sequence length in tokens."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Sequences per device per step."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "'cosine' or 'constant_with_warmup' (any transformers scheduler)."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup steps (>= 1) or fraction of steps (< 1)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})


def check_training(t: Any, key: str) -> None:
    """The value checks of the :class:`TrainingDefaults` options, wherever they are set: the recipe's train
    section (``key="train."``) and ``pplaw train``'s arguments (``key="pplaw train: --"``). Before any work:
    a NaN or negative learning rate otherwise fails in torch's optimiser after the model is loaded (leaving
    the run record at 'training'), and an infinite one trains to NaN losses."""
    number(t.learning_rate, f"{key}learning_rate")
    number(t.weight_decay, f"{key}weight_decay", strict=False)
    number(t.warmup_steps, f"{key}warmup_steps", strict=False)
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        at_least(getattr(t, name), f"{key}{name}", 1)
    at_least(t.max_length, f"{key}max_length", 1, optional=True)
