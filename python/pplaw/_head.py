"""The backbone / lm_head split of a causal LM that scoring feeds to ``fused_linear_nll``.

A model splits when its output layer is a ``Linear`` lm_head and it has a separate ``base_model``
(final norm included). Architecture-specific logit transforms are carried along: Cohere's
``logit_scale`` (multiply), Granite's ``logits_scaling`` (divide), Gemma's ``final_logit_softcapping``
(``softcap * tanh(logits / softcap)``) and an lm_head bias.
"""

from __future__ import annotations


def text_config(config):
    """The text sub-config of a multimodal config (the config itself otherwise)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


class Head:
    """What turns the backbone's last hidden states into logits: weight [V, H], bias [V], scale, softcap."""

    def __init__(self, backbone, weight, bias, logit_scale: float, softcap: float | None):
        self.backbone, self.weight, self.bias = backbone, weight, bias
        self.logit_scale, self.softcap = logit_scale, softcap


def split_head(model) -> tuple[Head | None, str]:
    """The backbone/lm_head split of a causal LM, or (None, why not)."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    backbone = getattr(model, "base_model", None)
    if not isinstance(head, torch.nn.Linear):
        return None, f"its output layer is {type(head).__name__}, not a Linear lm_head"
    if backbone is None or backbone is model:
        return None, "it has no separate base model (model.base_model)"
    cfg = text_config(model.config)
    scale, softcap = 1.0, None
    cap = getattr(cfg, "final_logit_softcapping", None)  # Gemma 2/3: softcap * tanh(logits / softcap)
    if cap:
        softcap = float(cap)
    ls = getattr(model, "logit_scale", None)  # Cohere: logits * logit_scale
    if isinstance(ls, (int, float)) and not isinstance(ls, bool):
        scale *= float(ls)
    div = getattr(cfg, "logits_scaling", None)  # Granite: logits / logits_scaling
    if isinstance(div, (int, float)) and div:
        scale /= float(div)
    return Head(backbone, head.weight, head.bias, scale, softcap), ""
