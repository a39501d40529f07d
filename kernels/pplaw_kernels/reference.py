"""Pure-torch reference of the fused lm_head + NLL: the CPU fallback and the test oracle.

It computes exactly what the Triton kernel computes, in the same order of operations per logit
(fp32 matmul accumulation, bias, scale, softcap, online log-sum-exp over vocab chunks, target
logit taken from the same fp32 logits), but chunked over tokens AND vocab, so the largest
temporary is ``[block_m, block_v]`` fp32 and the full ``[M, V]`` fp32 logits never exist.

Everything here works on already-validated, flattened inputs; argument checking lives in
:mod:`pplaw_kernels.functional`.
"""

from __future__ import annotations

import math

import torch

# The largest logits chunk the reference materialises, in elements (64 MiB of fp32). Big enough
# that a GPU matmul per chunk is efficient, small enough to be harmless next to the model.
DEFAULT_CHUNK_ELEMENTS = 16 * 1024 * 1024


def default_blocks(m: int, v: int, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> tuple[int, int]:
    """Token and vocab chunk sizes whose product stays within ``chunk_elements``."""
    block_v = max(1, min(v, 32768))
    block_m = max(1, min(m, chunk_elements // block_v))
    return block_m, block_v


def _logits_fp32(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``h [m, H] @ w [v, H].T`` with fp32 accumulation and an fp32 result, like the kernel.

    16-bit inputs are not rounded back to 16 bits after the matmul (eager ``hidden @ W.T`` does
    that and loses ~3 significant digits of every logit). On CUDA ``torch.mm(out_dtype=fp32)``
    gives fp32 output from 16-bit tensor cores; elsewhere the chunk is upcast (exact for 16-bit
    values) and multiplied in fp32.
    """
    if h.dtype == torch.float32:
        return h @ w.T
    if h.is_cuda:
        try:
            return torch.mm(h, w.T, out_dtype=torch.float32)
        except (RuntimeError, TypeError):  # older torch without the out_dtype overload
            pass
    return h.float() @ w.float().T


def transform_logits(z: torch.Tensor, logit_scale: float, softcap: float | None) -> torch.Tensor:
    """Scale then tanh-softcap fp32 logits in place-free form: ``softcap * tanh(z * scale / softcap)``."""
    if logit_scale != 1.0:
        z = z * logit_scale
    if softcap is not None:
        z = torch.tanh(z / softcap) * softcap
    return z


def finalize_nll(
    lse: torch.Tensor, tgt_logit: torch.Tensor, targets: torch.Tensor, vocab: int, ignore_index: int
) -> torch.Tensor:
    """Per-token NLL from LSE and the target logit: 0 where ignored, NaN where the target is out of range.

    ``lse - z_t`` is mathematically >= 0 (the target's own term is in the sum); the clamp only removes
    rounding-level negatives so NLL is never negative. An out-of-range target that was not caught by
    the (optional) host-side check gives NaN: loud, never a silently plausible number.
    """
    ignored = targets == ignore_index
    valid = (targets >= 0) & (targets < vocab)
    nll = (lse - tgt_logit).clamp_min(0.0)
    nll = torch.where(valid, nll, torch.full_like(nll, math.nan))
    return torch.where(ignored, torch.zeros_like(nll), nll)


def fused_linear_nll_reference(
    hidden: torch.Tensor,  # [M, H] fp32/fp16/bf16, any strides
    weight: torch.Tensor,  # [V, H] same dtype
    targets: torch.Tensor,  # [M] integer
    bias: torch.Tensor | None = None,  # [V]
    *,
    ignore_index: int = -100,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    block_m: int | None = None,
    block_v: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked reference: returns ``(nll [M] fp32, lse [M] fp32)``; LSE is computed for every row.

    The loop is vocab-outer, token-inner so each weight chunk is upcast once; the running state is
    three fp32 vectors of length M (max, rescaled sum, target logit): O(M) memory plus one chunk.
    """
    m_rows, _ = hidden.shape
    vocab = weight.shape[0]
    dflt_m, dflt_v = default_blocks(m_rows, vocab)
    block_m = dflt_m if block_m is None else max(1, int(block_m))
    block_v = dflt_v if block_v is None else max(1, int(block_v))
    dev = hidden.device
    targets = targets.to(device=dev, dtype=torch.int64)

    run_max = torch.full((m_rows,), -math.inf, dtype=torch.float32, device=dev)  # [M]
    run_sum = torch.zeros((m_rows,), dtype=torch.float32, device=dev)  # [M], sum exp(z - run_max)
    tgt_logit = torch.zeros((m_rows,), dtype=torch.float32, device=dev)  # [M]

    for v0 in range(0, vocab, block_v):
        v1 = min(vocab, v0 + block_v)
        w_c = weight[v0:v1]  # [vc, H]
        if w_c.dtype != torch.float32 and not w_c.is_cuda:
            w_c = w_c.float()  # upcast once per vocab chunk (CPU path)
        b_c = None if bias is None else bias[v0:v1].float()  # [vc]
        for m0 in range(0, m_rows, block_m):
            m1 = min(m_rows, m0 + block_m)
            h_c = hidden[m0:m1]
            if h_c.dtype != w_c.dtype:
                h_c = h_c.float()
            z = _logits_fp32(h_c, w_c)  # [mc, vc] fp32
            if b_c is not None:
                z = z + b_c
            z = transform_logits(z, logit_scale, softcap)

            # online log-sum-exp update for rows m0:m1
            c_max = z.amax(dim=1)  # [mc]
            new_max = torch.maximum(run_max[m0:m1], c_max)
            # exp(-inf - finite) = 0 for the first chunk; new_max is finite for finite logits
            run_sum[m0:m1] = run_sum[m0:m1] * torch.exp(run_max[m0:m1] - new_max) + torch.exp(
                z - new_max[:, None]
            ).sum(dim=1)
            run_max[m0:m1] = new_max

            # the target logit, read from the same fp32 chunk that entered the sum
            local = targets[m0:m1] - v0  # [mc]
            hit = (local >= 0) & (local < v1 - v0)
            picked = z.gather(1, local.clamp(0, v1 - v0 - 1)[:, None]).squeeze(1)
            tgt_logit[m0:m1] = torch.where(hit, picked, tgt_logit[m0:m1])

    lse = run_max + torch.log(run_sum)  # [M]
    nll = finalize_nll(lse, tgt_logit, targets, vocab, ignore_index)
    return nll, lse


def nll_from_logits_reference(
    logits: torch.Tensor,  # [M, V] any float dtype, any strides
    targets: torch.Tensor,  # [M] integer
    *,
    ignore_index: int = -100,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    block_m: int | None = None,
    block_v: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise online softmax over vocab chunks; never upcasts more than one ``[block_m, block_v]`` chunk."""
    m_rows, vocab = logits.shape
    dflt_m, dflt_v = default_blocks(m_rows, vocab)
    block_m = dflt_m if block_m is None else max(1, int(block_m))
    block_v = dflt_v if block_v is None else max(1, int(block_v))
    dev = logits.device
    targets = targets.to(device=dev, dtype=torch.int64)

    run_max = torch.full((m_rows,), -math.inf, dtype=torch.float32, device=dev)
    run_sum = torch.zeros((m_rows,), dtype=torch.float32, device=dev)
    tgt_logit = torch.zeros((m_rows,), dtype=torch.float32, device=dev)
    for m0 in range(0, m_rows, block_m):
        m1 = min(m_rows, m0 + block_m)
        for v0 in range(0, vocab, block_v):
            v1 = min(vocab, v0 + block_v)
            z = transform_logits(logits[m0:m1, v0:v1].float(), logit_scale, softcap)  # [mc, vc]
            new_max = torch.maximum(run_max[m0:m1], z.amax(dim=1))
            run_sum[m0:m1] = run_sum[m0:m1] * torch.exp(run_max[m0:m1] - new_max) + torch.exp(
                z - new_max[:, None]
            ).sum(dim=1)
            run_max[m0:m1] = new_max
            local = targets[m0:m1] - v0
            hit = (local >= 0) & (local < v1 - v0)
            picked = z.gather(1, local.clamp(0, v1 - v0 - 1)[:, None]).squeeze(1)
            tgt_logit[m0:m1] = torch.where(hit, picked, tgt_logit[m0:m1])
    lse = run_max + torch.log(run_sum)
    return finalize_nll(lse, tgt_logit, targets, vocab, ignore_index), lse
