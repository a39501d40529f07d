"""Shared helpers of the pplaw-kernels tests: ground truth, eager baseline, inputs (tiny shapes only)."""

from __future__ import annotations

import torch


def truth_nll(hidden, weight, targets, bias=None, ignore_index=-100, logit_scale=1.0, softcap=None):
    """float64 ground truth from the exact (fp32/fp16/bf16 -> float64) inputs: (nll, lse), float64."""
    z = hidden.double().reshape(-1, hidden.shape[-1]) @ weight.double().T  # [M, V] float64: tiny shapes only
    if bias is not None:
        z = z + bias.double()
    z = z * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    return nll_from_double_logits(z, targets.reshape(-1), ignore_index, hidden.shape[:-1])


def nll_from_double_logits(z, targets, ignore_index, shape):
    lse = torch.logsumexp(z, dim=-1)
    t = targets.to(torch.int64)
    picked = z.gather(1, t.clamp(0, z.shape[1] - 1)[:, None]).squeeze(1)
    nll = torch.where(t == ignore_index, torch.zeros_like(lse), lse - picked)
    return nll.reshape(shape), lse.reshape(shape)


def eager_nll(hidden, weight, targets, bias=None, ignore_index=-100, logit_scale=1.0, softcap=None):
    """What a user would write in torch at the input dtype: logits in that dtype, then fp32 cross-entropy."""
    z = hidden.reshape(-1, hidden.shape[-1]) @ weight.T  # [M, V] input dtype (rounded)
    if bias is not None:
        z = z + bias.to(z.dtype)
    z = z.float() * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    nll = torch.nn.functional.cross_entropy(z, targets.reshape(-1).long(), ignore_index=ignore_index, reduction="none")
    return nll.reshape(hidden.shape[:-1])


def make_inputs(m, h, v, dtype, device="cpu", seed=0, ignore_frac=0.1, ignore_index=-100, scale=1.0):
    """Random ``hidden [m, h]``, ``weight [v, h]`` (logits of a few nats), ``targets [m]`` with some ignored.

    Generated on ``device`` (real GPU shapes would take seconds on the CPU), reproducible per device.
    """
    g = torch.Generator(device=device).manual_seed(seed)
    hidden = (torch.randn(m, h, generator=g, device=device) * scale).to(dtype)
    weight = (torch.randn(v, h, generator=g, device=device) / h**0.5 * 2).to(dtype)
    targets = torch.randint(0, v, (m,), generator=g, device=device)
    targets[torch.rand(m, generator=g, device=device) < ignore_frac] = ignore_index
    return hidden, weight, targets
