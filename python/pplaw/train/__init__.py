"""``pplaw.train``: one continual pre-training run and its evaluation (the ``pplaw train`` and
``pplaw evaluate`` commands).

:mod:`~pplaw.train.options` holds the run's options (``CPTConfig``, ``TrainingDefaults``: no training
library imported to read them), :mod:`~pplaw.train.data` the data mixture (domain subset + replay, packing),
:mod:`~pplaw.train.cpt` the run itself (TRL's ``SFTTrainer`` as a plain causal-LM trainer, resumable, its run
record) and :mod:`~pplaw.train.evaluate` the held-out losses and lm-eval benchmark suites after it. The
public names resolve lazily (importing the package must not import torch or TRL).
"""

from __future__ import annotations

from pplaw._lazy import lazy_names

# public name -> module that defines it
_LAZY = {
    "CPTConfig": "pplaw.train.options",
    "TrainingDefaults": "pplaw.train.options",
    "CPTTrainingArguments": "pplaw.train.cpt",
    "parse_args": "pplaw.train.cpt",
    "train": "pplaw.train.cpt",
    "EvalConfig": "pplaw.train.evaluate",
    "evaluate_model": "pplaw.train.evaluate",
    "evaluate_run": "pplaw.train.evaluate",
}

__all__ = list(_LAZY)

__getattr__ = lazy_names(__name__, _LAZY)
