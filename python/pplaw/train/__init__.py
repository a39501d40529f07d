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

__getattr__, __all__ = lazy_names(__name__, {
    "pplaw.train.options": ("CPTConfig", "TrainingDefaults"),
    "pplaw.train.cpt": ("CPTTrainingArguments", "parse_args", "train"),
    "pplaw.train.evaluate": ("EvalConfig", "evaluate_model", "evaluate_run"),
})
