"""Triton kernel + launcher: per-token NLL from materialised logits by a row-wise online softmax.

For models whose lm_head cannot be split off: logits ``[M, V]`` (any float dtype, any strides) are read
once, tile by tile, in fp32 registers; nothing of size ``[M, V]`` is allocated. One program per row; the
row's vocab tiles are folded in a fixed order, so the result is bit-identical run to run.

Importing this module imports triton; set TRITON_INTERPRET=1 before importing it to run on CPU.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from .fused_linear_nll import LN2, LOG2E, _tanh, is_interpreted


@triton.jit
def _nll_from_logits_fwd(
    x_ptr, t_ptr, nll_ptr, lse_ptr,
    V, T_len,  # logits are [B, T_len, V], targets [B, T_len]
    s_xb, s_xt, s_xv, s_tb, s_tt,
    ignore_index, logit_scale, softcap,
    HAS_SOFTCAP: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    b_idx = row // T_len
    t_idx = row % T_len
    x_row = x_ptr + b_idx * s_xb + t_idx * s_xt
    tgt = tl.load(t_ptr + b_idx * s_tb + t_idx * s_tt).to(tl.int64)

    run_max = tl.full((), float("-inf"), tl.float32)  # fp32 scalars carried across vocab tiles
    run_sum = tl.zeros((), tl.float32)
    z_t = tl.zeros((), tl.float32)
    for v0 in range(0, V, BLOCK_V):
        offs = v0 + tl.arange(0, BLOCK_V)
        mask = offs < V
        z = tl.load(x_row + offs.to(tl.int64) * s_xv, mask=mask, other=0.0).to(tl.float32)
        z = z * logit_scale
        if HAS_SOFTCAP:
            z = softcap * _tanh(z / softcap)
        z = tl.where(mask, z, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(z, axis=0))  # finite: each tile has >= 1 real column
        run_sum = run_sum * tl.exp2((run_max - new_max) * LOG2E) + tl.sum(tl.exp2((z - new_max) * LOG2E), axis=0)
        run_max = new_max
        z_t += tl.sum(tl.where(offs.to(tl.int64) == tgt, z, 0.0), axis=0)

    lse = run_max + tl.log2(run_sum) * LN2
    valid = (tgt >= 0) & (tgt < V)
    nll = tl.maximum(lse - z_t, 0.0)  # >= 0 exactly; the clamp only removes approximate-math rounding
    nll = tl.where(valid, nll, float("nan"))
    nll = tl.where(tgt == ignore_index, 0.0, nll)
    tl.store(nll_ptr + row, nll)
    tl.store(lse_ptr + row, lse)


def nll_from_logits_triton(
    logits: torch.Tensor,  # [B, T, V]
    targets: torch.Tensor,  # [B, T] integer
    *,
    ignore_index: int,
    logit_scale: float,
    softcap: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(nll [M], lse [M])`` fp32; no host synchronisation."""
    interpreted = is_interpreted()
    if logits.device.type != "cuda" and not interpreted:
        raise RuntimeError(
            "nll_from_logits(impl='triton') needs CUDA tensors, or TRITON_INTERPRET=1 set before "
            "pplaw_kernels.ops is first imported; use impl='torch' on CPU"
        )
    bsz, t_len, vocab = logits.shape
    m_rows = bsz * t_len
    # a tile of 4096 fp32 values is 16 per thread at 8 warps: enough bytes in flight for a bandwidth-bound row
    block_v = min(triton.next_power_of_2(vocab), 4096)
    block_v = max(block_v, 16)
    nll = torch.empty((m_rows,), dtype=torch.float32, device=logits.device)
    lse = torch.empty((m_rows,), dtype=torch.float32, device=logits.device)
    ctx = torch.cuda.device(logits.device) if logits.device.type == "cuda" else contextlib.nullcontext()
    with ctx:
        _nll_from_logits_fwd[(m_rows,)](
            logits, targets, nll, lse,
            vocab, t_len,
            logits.stride(0), logits.stride(1), logits.stride(2), targets.stride(0), targets.stride(1),
            ignore_index, logit_scale, 1.0 if softcap is None else softcap,
            HAS_SOFTCAP=softcap is not None, BLOCK_V=block_v,
            num_warps=8 if block_v >= 2048 else 4, enable_fp_fusion=True,
        )
    return nll, lse
