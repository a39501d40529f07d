"""Continual pre-training of one run with TRL's ``SFTTrainer`` used as a plain causal LM trainer.

Run it as::

    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml -m pplaw.cli.train --config recipe.yaml
    pplaw train --config recipe.yaml            # same thing, one process

The recipe holds three groups of options (all flat keys; see ``pplaw train --help``): :class:`CPTConfig`
(model, domain subset, replay, budget), :class:`pplaw.train.evaluate.EvalConfig` (held-out losses and benchmark
suites run after training) and :class:`CPTTrainingArguments` (TRL's ``SFTConfig`` with CPT defaults: loss on
every token, wrapped packing to ``max_length`` tokens, cosine schedule with warmup, bf16 only on a GPU).

The run directory is ``output_dir`` (its layout: :mod:`pplaw.runs`): ``checkpoint-N/`` while training,
``model/`` (the final model and tokenizer), ``run_record.json`` and ``training_curve.png``. A killed run resumes from
its last checkpoint when started again with the same recipe; a finished run is not trained again (only
missing evaluation runs).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig

from pplaw import runs
from pplaw._checks import require
from pplaw._atomic import jsonable
from pplaw.config import borrow
from pplaw.train.data import build_mixture, check_ratio, load_table, subset_stats
from pplaw.train.options import CPTConfig, TrainingDefaults, check_training
from pplaw.train.evaluate import EvalConfig, evaluate_run, wants_evaluation
from pplaw.exceptions import ConfigError
from pplaw.io import read_indices
from pplaw.runs import CURVE_PNG, FINAL_DIR

log = logging.getLogger("pplaw.cpt")
@dataclass
class CPTTrainingArguments(SFTConfig):
    """TRL's SFTConfig with continual pre-training defaults."""

    output_dir: str | None = field(
        default=None, metadata={"help": "The run directory: checkpoints, final model, run_record.json (required)."})
    max_length: int | None = borrow(TrainingDefaults, "max_length")
    per_device_train_batch_size: int = borrow(TrainingDefaults, "per_device_train_batch_size")
    gradient_accumulation_steps: int = borrow(TrainingDefaults, "gradient_accumulation_steps")
    packing: bool = field(default=True, metadata={"help": "Pack into fixed-length sequences (always, for CPT)."})
    packing_strategy: str = field(
        default="wrapped", metadata={"help": "'wrapped': concatenate documents and cut every max_length tokens.",
                                     "choices": ["bfd", "bfd_split", "wrapped"]})
    completion_only_loss: bool | None = field(default=False, metadata={"help": "False: loss on every token."})
    activation_checkpointing: bool | None = field(
        default=None, metadata={"help": "Recompute activations in the backward pass: less memory, ~20% slower. "
                                        "Unset: off (or the value of the deprecated gradient_checkpointing)."})
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of activation_checkpointing (transformers 5)."})
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision; unset: on when a bf16-capable GPU is used."})
    learning_rate: float = borrow(TrainingDefaults, "learning_rate")
    lr_scheduler_type: str = borrow(TrainingDefaults, "lr_scheduler_type")
    warmup_steps: float = borrow(TrainingDefaults, "warmup_steps")
    weight_decay: float = borrow(TrainingDefaults, "weight_decay")
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    save_steps: float = field(default=200, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    include_num_input_tokens_seen: str | bool = field(
        default=True, metadata={"help": "Count the tokens fed (recorded as a cross-check)."})

    def __post_init__(self):
        check_training(self, "pplaw train: --")
        if self.bf16 is None:  # bf16 on a GPU that has it, fp32 on CPU (TRL's default would pick bf16 everywhere)
            import torch

            self.bf16 = bool(not self.use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = False  # TRL defaults to on; tiny and mid-size CPT runs do not need it
        super().__post_init__()


CONFIG_TYPES = (CPTConfig, EvalConfig, CPTTrainingArguments)
# Options that change what a run computes: a resumed or finished run must have the same ones (keys that an
# older record lacks are not compared, so a record stays usable when pplaw gains options).
_RUN_KEYS = ("model_name_or_path", "tokenizer_name_or_path", "model_dtype", "domain_data", "domain_indices",
             "general_data", "replay_ratio", "budget_tokens", "allow_repeat", "text_column")
_TRAINING_KEYS = ("max_length", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
                  "lr_scheduler_type", "warmup_steps", "weight_decay", "seed", "packing_strategy", "bf16")


def parse_args(argv: list[str] | None = None, yaml_overrides: dict | None = None):
    """(CPTConfig, EvalConfig, CPTTrainingArguments) from ``--config recipe.yaml`` and flags."""
    from pplaw.config import parse_config

    return parse_config(CONFIG_TYPES, argv, prog="pplaw train", description=__doc__.split("\n\n")[0],
                        yaml_overrides=yaml_overrides)


def _config_dict(cfg: CPTConfig, ecfg: EvalConfig, targs: CPTTrainingArguments) -> dict[str, Any]:
    return {"cpt": dataclasses.asdict(cfg), "eval": dataclasses.asdict(ecfg),
            "training_args": {k: jsonable(v) for k, v in targs.to_dict().items()}}


_PATH_KEYS = ("model_name_or_path", "tokenizer_name_or_path", "domain_data", "domain_indices", "general_data")


def _moved(old_value: Any, new_value: Any, old_dir: str | None, new_dir: Path) -> bool:
    """Whether two paths are the same file of a run directory that was moved from ``old_dir`` to ``new_dir``:
    the folders' common tail (e.g. ``sweep/<id>``) is dropped to find the old and new roots."""
    if not (isinstance(old_value, str) and isinstance(new_value, str) and old_dir):
        return False
    a, b = list(Path(old_dir).parts), list(new_dir.resolve().parts)
    while a and b and a[-1] == b[-1]:
        a.pop()
        b.pop()
    old_root, new_root = str(Path(*a)) if a else "", str(Path(*b)) if b else ""
    return bool(old_root) and old_value.startswith(old_root + "/") and new_value == new_root + old_value[len(old_root):]


def _check_same_run(old: dict, new: dict, run_dir: Path, old_dir: str | None = None) -> None:
    changed = [k for k in _RUN_KEYS if k in old["cpt"] and old["cpt"][k] != new["cpt"].get(k)
               and not (k in _PATH_KEYS and _moved(old["cpt"][k], new["cpt"].get(k), old_dir, run_dir))]
    changed += [k for k in _TRAINING_KEYS
                if k in old["training_args"] and old["training_args"][k] != new["training_args"].get(k)]
    if changed:
        raise ConfigError(f"output_dir {str(run_dir)!r} holds a run with a different config ({', '.join(changed)} "
                          f"differ); use a new output_dir, or delete that run to start over")


def _load_model(cfg: CPTConfig, targs: CPTTrainingArguments):
    from pplaw.config import check_model_ref, load_causal_lm

    check_model_ref(cfg.model_name_or_path, "model_name_or_path")
    check_model_ref(cfg.tokenizer_name_or_path, "tokenizer_name_or_path")
    import torch
    from transformers import AutoTokenizer

    dtype = "auto" if cfg.model_dtype == "auto" else getattr(torch, cfg.model_dtype)
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_name_or_path or cfg.model_name_or_path,
                                              trust_remote_code=targs.trust_remote_code)
    if tokenizer.pad_token is None:  # the collator pads (rows are full, but the collator insists)
        tokenizer.pad_token = tokenizer.eos_token
    model = load_causal_lm(cfg.model_name_or_path, "model_name_or_path", dtype=dtype,
                           trust_remote_code=targs.trust_remote_code)
    return model, tokenizer


def _n_params(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    return int(total), int(total - emb)


def prepare(cfg: CPTConfig, targs: CPTTrainingArguments, tokenizer):
    """Load and mix the training data; returns (Mixture, subset-section dict of the record)."""
    check_ratio(cfg.replay_ratio)
    if cfg.domain_data is None:
        raise ConfigError("domain_data is required: the domain corpus (Parquet/JSONL/dataset folder)")
    domain = load_table(cfg.domain_data, what="domain_data")
    if len(domain) == 0:
        raise ConfigError(f"domain_data {cfg.domain_data!r} has no rows")
    picked = None
    if cfg.domain_indices:
        rows, picked = read_indices(cfg.domain_indices, cfg.indices_column, domain)
        domain = domain.select(rows)
    # statistics of the scored chunks: from the selected rows, else from the indices file (pplaw sample copies ppl)
    mu, sigma = subset_stats(domain if "ppl" in domain.column_names else picked, cfg.ppl_space)
    general = load_table(cfg.general_data, what="general_data") if cfg.general_data and cfg.replay_ratio > 0 else None
    if cfg.general_data and cfg.replay_ratio == 0:
        log.warning("general_data is set but replay_ratio is 0: no general replay")
    require(targs.max_length is not None and targs.max_length >= 2, "max_length (the packed sequence length)",
            "be >= 2", targs.max_length)
    gbs = targs.per_device_train_batch_size * targs.gradient_accumulation_steps * targs.world_size
    mix = build_mixture(domain, general, tokenizer, seq_len=targs.max_length, global_batch_size=gbs,
                        replay_ratio=cfg.replay_ratio, budget_tokens=cfg.budget_tokens, seed=targs.seed,
                        text_column=cfg.text_column, allow_repeat=cfg.allow_repeat)
    subset = {
        "domain_data": cfg.domain_data, "indices_file": cfg.domain_indices, "n_chunks": len(domain),
        "tokens": mix.domain_rows_available * mix.seq_len,
        "mu": cfg.subset_mu if cfg.subset_mu is not None else mu,
        "sigma": cfg.subset_sigma if cfg.subset_sigma is not None else sigma,
        "space": cfg.ppl_space, "R": cfg.replay_ratio, "R_actual": mix.r_actual,
    }
    return mix, subset


def build_trainer(cfg: CPTConfig, targs: CPTTrainingArguments, model, tokenizer, mix, callbacks=None):
    """The SFTTrainer for a prepared mixture (``targs.max_steps`` is set from the budget)."""
    from trl import SFTTrainer

    if targs.max_steps not in (-1, mix.steps):
        raise ConfigError(f"max_steps={targs.max_steps} is set, but the token budget sets the steps ({mix.steps}); "
                          f"set budget_tokens instead")
    targs.max_steps = mix.steps
    return SFTTrainer(model=model, args=targs, train_dataset=mix.dataset, processing_class=tokenizer,
                      callbacks=callbacks)


def _finish_training(trainer, run_dir: Path, is_main: bool) -> Path:
    """Save the final model atomically: into model.tmp, then rename (a reader never sees half a model)."""
    final, tmp = run_dir / runs.FINAL_DIR, run_dir / (runs.FINAL_DIR + ".tmp")
    if is_main and tmp.exists():
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))  # every rank calls it: FSDP/DeepSpeed gather the weights
    trainer.accelerator.wait_for_everyone()
    if is_main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    return final


def train(cfg: CPTConfig, ecfg: EvalConfig, targs: CPTTrainingArguments, *, callbacks=None) -> dict[str, Any]:
    """Train (or resume, or skip if finished) and evaluate one run; returns the run record."""
    from accelerate import PartialState

    if not cfg.model_name_or_path:
        raise ConfigError("model_name_or_path is required: the base model (local folder or Hub id)")
    if not targs.output_dir:
        raise ConfigError("output_dir is required: the run directory")
    state = PartialState()
    run_dir = Path(targs.output_dir)
    run_id = cfg.run_id or run_dir.resolve().name
    config = _config_dict(cfg, ecfg, targs)
    rec = runs.read_record(run_dir) if runs.record_path(run_dir).is_file() else None
    if rec is not None:
        _check_same_run(rec["config"], config, run_dir, rec.get("run_dir"))
    finished = rec is not None and rec["status"] in ("trained", "evaluated") and (run_dir / runs.FINAL_DIR).is_dir()

    model = None
    if not finished:
        t0 = time.perf_counter()
        model, tokenizer = _load_model(cfg, targs)
        with state.main_process_first():
            mix, subset = prepare(cfg, targs, tokenizer)
        data_s = time.perf_counter() - t0
        # the newest *complete* checkpoint: one half-written by a kill during its save is skipped
        last = targs.resume_from_checkpoint or (runs.last_complete_checkpoint(run_dir, log) if cfg.resume else None)
        trainer = build_trainer(cfg, targs, model, tokenizer, mix, callbacks)
        if state.is_main_process:  # the record exists from here on: the config is valid, training starts
            rec = rec or runs.new_record(run_id, run_dir, config)
            rec.update(status="training", config=config, subset=subset, run_dir=str(run_dir.resolve()))
            n_params, n_non_emb = _n_params(model)
            rec["model"] = {"base": cfg.model_name_or_path, "final_dir": runs.FINAL_DIR, "n_params": n_params,
                            "n_params_non_embedding": n_non_emb}
            rec["environment"] = runs.environment(device=str(targs.device), world_size=targs.world_size)
            runs.save_record(run_dir, rec)
        t1 = time.perf_counter()
        if last:
            log.info("resuming from %s", last)
        out = trainer.train(resume_from_checkpoint=last)
        train_s = time.perf_counter() - t1
        _finish_training(trainer, run_dir, state.is_main_process)
        if state.is_main_process:
            history = [h for h in trainer.state.log_history if "loss" in h]
            rec["training"] = {
                "seed": targs.seed, "seq_len": mix.seq_len, "global_batch_size": mix.global_batch_size,
                "world_size": targs.world_size, "steps": mix.steps, "tokens_per_step": mix.seq_len * mix.global_batch_size,
                "budget_tokens": cfg.budget_tokens, "tokens_total": mix.tokens_total, "tokens_domain": mix.tokens_domain,
                "tokens_general": mix.tokens_general, "domain_epochs": mix.domain_epochs,
                "general_epochs": mix.general_epochs, "train_loss": out.metrics.get("train_loss"),
                "last_logged_loss": history[-1]["loss"] if history else None,
                "global_step": trainer.state.global_step, "num_input_tokens_seen": trainer.state.num_input_tokens_seen,
                "resumed_from": str(last) if last else None, "log_history": history,
            }
            rec["wall_times"] = {**rec.get("wall_times", {}), "data_s": data_s, "train_s": train_s}
            rec["status"] = "trained"
            runs.save_record(run_dir, rec)
            if cfg.delete_checkpoints:
                for ckpt in run_dir.glob("checkpoint-*"):
                    shutil.rmtree(ckpt, ignore_errors=True)
        if state.num_processes > 1:
            model = None  # sharded (FSDP/ZeRO-3) or replicated: evaluate the saved model on one process
        else:
            model = trainer.model
        trainer.accelerator.wait_for_everyone()
    elif state.is_main_process:
        log.info("run %s is already trained (%s); not training again", run_id, run_dir / runs.FINAL_DIR)

    if not state.is_main_process:
        return {}
    rec = runs.read_record(run_dir)
    if wants_evaluation(ecfg) and ecfg.eval_after_train and (rec["status"] != "evaluated" or not finished):
        rec = evaluate_run(run_dir, ecfg, model=model, seq_len=targs.max_length)
    if not finished:
        runs.plot_training_curve(rec, run_dir / runs.CURVE_PNG)
    return rec
