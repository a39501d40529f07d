"""Public API: argument checking, shape handling and dispatch between the Triton kernels and the torch reference.

Nothing here imports triton: the kernel modules (:mod:`pplaw_kernels.ops`) are imported the first
time a Triton implementation is actually used, so ``import pplaw_kernels`` stays cheap, works without
a GPU, and ``TRITON_INTERPRET`` may still be set after importing the package.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import TYPE_CHECKING

import torch

from . import reference

if TYPE_CHECKING:
    from .heuristics import TileConfig

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_IMPLS = ("auto", "torch", "triton")


def _debug_checks() -> bool:
    return os.environ.get("PPLAW_KERNELS_DEBUG", "0") not in ("", "0", "false", "False")


def _check_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
    return x


def _check_common(
    fn: str,
    targets: torch.Tensor,
    ignore_index: int,
    logit_scale: float,
    softcap: float | None,
    impl: str,
    check_targets: bool | None,
) -> None:
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise TypeError(f"{fn}: `targets` must be an integer tensor of token ids, got dtype {targets.dtype}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"{fn}: `ignore_index` must be an int, got {ignore_index!r}")
    if not isinstance(logit_scale, (int, float)) or not math.isfinite(logit_scale) or logit_scale == 0:
        raise ValueError(f"{fn}: `logit_scale` must be a finite non-zero number, got {logit_scale!r}")
    if softcap is not None and (
        not isinstance(softcap, (int, float)) or not math.isfinite(softcap) or softcap <= 0
    ):
        raise ValueError(f"{fn}: `softcap` must be None or a finite number > 0, got {softcap!r}")
    if impl not in _IMPLS:
        raise ValueError(f"{fn}: `impl` must be one of {_IMPLS}, got {impl!r}")
    if check_targets not in (None, True, False):
        raise TypeError(f"{fn}: `check_targets` must be None, True or False, got {check_targets!r}")


def _check_no_grad(fn: str, **tensors: torch.Tensor | None) -> None:
    if not torch.is_grad_enabled():
        return
    wanting = [n for n, t in tensors.items() if t is not None and t.requires_grad]
    if wanting:
        raise RuntimeError(
            f"{fn} is forward-only (no backward pass), but {', '.join('`' + n + '`' for n in wanting)} "
            "requires grad while grad mode is on. Call it under torch.no_grad() / torch.inference_mode(), "
            "or pass .detach()ed tensors."
        )


def _maybe_check_targets(fn: str, targets: torch.Tensor, vocab: int, ignore_index: int, check: bool | None) -> None:
    """Raise ValueError for ids outside [0, V) that are not ignore_index.

    The check needs the result on the host. On CPU that is free, so ``check=None`` checks there; on
    CUDA it would synchronise the stream, so ``check=None`` only checks when PPLAW_KERNELS_DEBUG=1.
    Unchecked out-of-range ids give NaN NLL in their rows (never a plausible number).
    """
    if check is None:
        check = targets.device.type == "cpu" or _debug_checks()
    if not check or targets.numel() == 0:
        return
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= vocab))
    if bool(bad.any()):
        flat = bad.reshape(-1).nonzero()[:5].flatten().tolist()
        vals = targets.reshape(-1)[flat].tolist()
        raise ValueError(
            f"{fn}: `targets` holds ids outside [0, {vocab}) that are not ignore_index={ignore_index}: "
            f"{int(bad.sum())} of them, e.g. value(s) {vals} at flat position(s) {flat}"
        )


def _use_triton(fn: str, impl: str, device: torch.device) -> bool:
    # find_spec, not import: importing triton takes seconds and must wait until a kernel really runs
    has_triton = importlib.util.find_spec("triton") is not None
    if impl == "torch":
        return False
    if impl == "auto":
        return device.type == "cuda" and has_triton
    if not has_triton:
        raise RuntimeError(f"{fn}: impl='triton' needs the `triton` package, which is not installed")
    return True


def _rows3(x: torch.Tensor) -> torch.Tensor:
    """``[..., T, H] -> [B, T, H]`` (a view when the leading dims merge, else a copy)."""
    if x.ndim == 2:
        return x.unsqueeze(0)
    if x.ndim == 3:
        return x
    return x.reshape(-1, *x.shape[-2:])


def _rows2(t: torch.Tensor) -> torch.Tensor:
    """``[..., T] -> [B, T]`` (a view when the leading dims merge, else a copy)."""
    if t.ndim == 1:
        return t.unsqueeze(0)
    if t.ndim == 2:
        return t
    return t.reshape(-1, t.shape[-1])


def _pack(nll: torch.Tensor, lse: torch.Tensor, shape: torch.Size, return_lse: bool):
    nll = nll.reshape(shape)
    return (nll, lse.reshape(shape)) if return_lse else nll


def fused_linear_nll(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    return_lse: bool = False,
    impl: str = "auto",
    check_targets: bool | None = None,
    config: TileConfig | None = None,
):
    """Per-token negative log-likelihood of an lm_head, without materialising the logits.

    ``logits = (hidden @ weight.T + bias) * logit_scale``; if ``softcap``: ``logits = softcap *
    tanh(logits / softcap)``; ``nll = logsumexp(logits) - logits[target]`` in fp32 nats.

    Args:
        hidden: ``[..., H]`` fp32/fp16/bf16, any strides (e.g. ``h[:, :-1]``).
        weight: ``[V, H]``, same dtype as ``hidden`` (e.g. ``lm_head.weight``), any strides.
        targets: integer ``[...]`` with the leading shape of ``hidden`` (e.g. ``labels[:, 1:]``).
        bias: optional ``[V]`` (any float dtype; used in fp32).
        ignore_index: rows whose target equals it get NLL 0 (any int, also one inside [0, V)).
        logit_scale, softcap: logit scaling and Gemma-style tanh soft-capping.
        return_lse: also return the fp32 log-sum-exp of every row (ignored rows included).
        impl: "triton" (the fused kernel), "torch" (chunked reference, never builds ``[M, V]`` fp32),
            "auto" (triton for CUDA tensors when triton is installed, torch otherwise).
        check_targets: raise ValueError on ids outside ``[0, V)`` that are not ``ignore_index``.
            ``None`` (default): check on CPU, and on CUDA only with ``PPLAW_KERNELS_DEBUG=1`` (the
            check synchronises the stream). Unchecked bad ids give NaN in their rows.
        config: a :class:`pplaw_kernels.heuristics.TileConfig` overriding the tile heuristic (tuning
            and tests; only used by the Triton kernel).

    Returns:
        fp32 ``nll`` with the leading shape of ``hidden`` (0 where ignored); ``(nll, lse)`` if
        ``return_lse``.
    """
    fn = "fused_linear_nll"
    hidden = _check_tensor("hidden", hidden)
    weight = _check_tensor("weight", weight)
    targets = _check_tensor("targets", targets)
    if bias is not None:
        bias = _check_tensor("bias", bias)
    _check_common(fn, targets, ignore_index, logit_scale, softcap, impl, check_targets)
    if hidden.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: `hidden` must be float32, float16 or bfloat16, got {hidden.dtype}")
    if weight.dtype != hidden.dtype:
        raise TypeError(f"{fn}: `weight` dtype {weight.dtype} must match `hidden` dtype {hidden.dtype}")
    if bias is not None and not bias.dtype.is_floating_point:
        raise TypeError(f"{fn}: `bias` must be a floating-point tensor, got {bias.dtype}")
    if hidden.ndim < 2:
        raise ValueError(f"{fn}: `hidden` must be [..., H] with at least 2 dims, got shape {tuple(hidden.shape)}")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"{fn}: `weight` must be [V, H] with H={hidden.shape[-1]} (from `hidden`), got shape {tuple(weight.shape)}"
        )
    vocab, h_dim = weight.shape
    if vocab < 1 or h_dim < 1:
        raise ValueError(f"{fn}: `weight` must have V >= 1 and H >= 1, got shape {tuple(weight.shape)}")
    if tuple(targets.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"{fn}: `targets` shape {tuple(targets.shape)} must equal the leading shape of `hidden` "
            f"{tuple(hidden.shape[:-1])} (hidden is [..., H], targets is [...])"
        )
    if bias is not None and tuple(bias.shape) != (vocab,):
        raise ValueError(f"{fn}: `bias` must be [V]=[{vocab}], got shape {tuple(bias.shape)}")
    for name, t in (("weight", weight), ("targets", targets), ("bias", bias)):
        if t is not None and t.device != hidden.device:
            raise ValueError(f"{fn}: `{name}` is on {t.device} but `hidden` is on {hidden.device}")
    _check_no_grad(fn, hidden=hidden, weight=weight, bias=bias)

    out_shape = targets.shape
    if targets.numel() == 0:
        empty = torch.zeros(out_shape, dtype=torch.float32, device=hidden.device)
        return (empty, empty.clone()) if return_lse else empty
    _maybe_check_targets(fn, targets, vocab, ignore_index, check_targets)

    with torch.no_grad():
        if _use_triton(fn, impl, hidden.device):
            from .ops.fused_linear_nll import fused_linear_nll_triton

            nll, lse = fused_linear_nll_triton(
                _rows3(hidden), weight, _rows2(targets), bias,
                ignore_index=ignore_index, logit_scale=float(logit_scale),
                softcap=None if softcap is None else float(softcap), config=config,
            )
        else:
            nll, lse = reference.fused_linear_nll_reference(
                hidden.reshape(-1, h_dim), weight, targets.reshape(-1), bias,
                ignore_index=ignore_index, logit_scale=float(logit_scale),
                softcap=None if softcap is None else float(softcap),
            )
    return _pack(nll, lse, out_shape, return_lse)


def nll_from_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    return_lse: bool = False,
    impl: str = "auto",
    check_targets: bool | None = None,
):
    """Per-token NLL from materialised logits ``[..., V]`` (any float dtype, any strides) by a row-wise
    online softmax: never upcasts the whole tensor to fp32. Same semantics and options as
    :func:`fused_linear_nll` (scale and softcap are applied to the given logits).
    """
    fn = "nll_from_logits"
    logits = _check_tensor("logits", logits)
    targets = _check_tensor("targets", targets)
    _check_common(fn, targets, ignore_index, logit_scale, softcap, impl, check_targets)
    if logits.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: `logits` must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.ndim < 2 or logits.shape[-1] < 1:
        raise ValueError(f"{fn}: `logits` must be [..., V] with V >= 1, got shape {tuple(logits.shape)}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"{fn}: `targets` shape {tuple(targets.shape)} must equal the leading shape of `logits` "
            f"{tuple(logits.shape[:-1])}"
        )
    if targets.device != logits.device:
        raise ValueError(f"{fn}: `targets` is on {targets.device} but `logits` is on {logits.device}")
    _check_no_grad(fn, logits=logits)
    vocab = logits.shape[-1]
    out_shape = targets.shape
    if targets.numel() == 0:
        empty = torch.zeros(out_shape, dtype=torch.float32, device=logits.device)
        return (empty, empty.clone()) if return_lse else empty
    _maybe_check_targets(fn, targets, vocab, ignore_index, check_targets)

    with torch.no_grad():
        if _use_triton(fn, impl, logits.device):
            from .ops.nll_from_logits import nll_from_logits_triton

            nll, lse = nll_from_logits_triton(
                _rows3(logits), _rows2(targets), ignore_index=ignore_index,
                logit_scale=float(logit_scale), softcap=None if softcap is None else float(softcap),
            )
        else:
            nll, lse = reference.nll_from_logits_reference(
                logits.reshape(-1, vocab), targets.reshape(-1), ignore_index=ignore_index,
                logit_scale=float(logit_scale), softcap=None if softcap is None else float(softcap),
            )
    return _pack(nll, lse, out_shape, return_lse)
