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

# The largest logits chunk the reference materialises, in elements. On a GPU (torch fallback) 64 MiB
# of fp32 keeps each matmul big enough to be efficient. On a CPU the chunk is 8 MiB: small enough that
# the max / exp / sum passes after the matmul run out of cache instead of DRAM, big enough (and with
# 2048-wide vocab slices reused across row blocks) that MKL's GEMM stays efficient; measured on 2 AMD
# EPYC cores with a [4096, 256] x [32000, 256] head: 0.38 s vs 0.48 s for one unchunked matmul alone
# (whose 512 MiB result is fresh, page-faulted memory) and 0.54 s for 64 MiB chunks.
DEFAULT_CHUNK_ELEMENTS = 16 * 1024 * 1024
CPU_CHUNK_ELEMENTS = 2 * 1024 * 1024
CPU_BLOCK_V = 2048


def default_blocks(
    m: int, v: int, chunk_elements: int | None = None, *, device: torch.device | str = "cpu"
) -> tuple[int, int]:
    """Token and vocab chunk sizes whose product stays within ``chunk_elements`` (a device default if None)."""
    on_cpu = torch.device(device).type == "cpu"
    if chunk_elements is None:
        chunk_elements = CPU_CHUNK_ELEMENTS if on_cpu else DEFAULT_CHUNK_ELEMENTS
    block_v = max(1, min(v, CPU_BLOCK_V if on_cpu else 32768))
    block_m = max(1, min(m, chunk_elements // block_v))
    return block_m, block_v


def _logits_fp32(h: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``h [m, H] @ w [v, H].T`` with fp32 accumulation and an fp32 result, like the kernel.

    16-bit inputs are not rounded back to 16 bits after the matmul (eager ``hidden @ W.T`` does
    that and loses ~3 significant digits of every logit). On CUDA ``torch.mm(out_dtype=fp32)``
    gives fp32 output from 16-bit tensor cores; elsewhere the chunk is upcast (exact for 16-bit
    values) and multiplied in fp32. ``out`` (contiguous ``[m, v]`` fp32) is a reused scratch buffer:
    a fresh multi-MiB result every chunk costs page faults on CPU.
    """
    if h.dtype == torch.float32 and w.dtype == torch.float32:
        return h @ w.T if out is None else torch.mm(h, w.T, out=out)
    if h.is_cuda:
        try:
            return torch.mm(h, w.T, out_dtype=torch.float32)
        except (RuntimeError, TypeError):  # older torch without the out_dtype overload
            pass
    return _logits_fp32(h.float(), w.float(), out)


def transform_logits_(z: torch.Tensor, logit_scale: float, softcap: float | None) -> torch.Tensor:
    """Scale then tanh-softcap fp32 logits in place: ``softcap * tanh(z * scale / softcap)``."""
    if logit_scale != 1.0:
        z.mul_(logit_scale)
    if softcap is not None:
        z.div_(softcap).tanh_().mul_(softcap)
    return z


class _OnlineLSE:
    """Running per-row log-sum-exp and target logit over vocab chunks: three fp32 ``[M]`` vectors."""

    def __init__(self, targets: torch.Tensor):  # targets [M] int64
        m_rows, dev = targets.shape[0], targets.device
        self.targets = targets
        self.max = torch.full((m_rows,), -math.inf, dtype=torch.float32, device=dev)  # [M]
        self.sum = torch.zeros((m_rows,), dtype=torch.float32, device=dev)  # [M], sum exp(z - max)
        self.tgt = torch.zeros((m_rows,), dtype=torch.float32, device=dev)  # [M]

    def update_(self, z: torch.Tensor, m0: int, v0: int) -> None:
        """Fold the chunk ``z = logits[m0:m0+mc, v0:v0+vc]`` (fp32, owned scratch: overwritten) in."""
        mc, vc = z.shape
        rows = slice(m0, m0 + mc)
        # the target logit, read from the same fp32 chunk that enters the sum
        local = self.targets[rows] - v0  # [mc]
        hit = (local >= 0) & (local < vc)
        picked = z.gather(1, local.clamp(0, vc - 1)[:, None]).squeeze(1)
        self.tgt[rows] = torch.where(hit, picked, self.tgt[rows])
        # online log-sum-exp; exp(-inf - finite) = 0 for the first chunk
        old_max = self.max[rows]
        new_max = torch.maximum(old_max, z.amax(dim=1))  # [mc]
        chunk_sum = z.sub_(new_max[:, None]).exp_().sum(dim=1)  # in place: no second [mc, vc] temporary
        self.sum[rows] = self.sum[rows] * torch.exp(old_max - new_max) + chunk_sum
        self.max[rows] = new_max

    def lse(self) -> torch.Tensor:
        return self.max + torch.log(self.sum)  # [M]


def _scratch(block_m: int, block_v: int, m_rows: int, vocab: int, device: torch.device) -> torch.Tensor:
    return torch.empty(min(block_m, m_rows) * min(block_v, vocab), dtype=torch.float32, device=device)


def _chunk(buf: torch.Tensor, mc: int, vc: int) -> torch.Tensor:
    return buf[: mc * vc].view(mc, vc)  # contiguous [mc, vc] view of the flat scratch buffer


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

    The loop is vocab-outer, token-inner so each weight chunk is upcast (and, on CPU, packed by the
    GEMM) once and reused by every row block; the running state is three fp32 vectors of length M
    (max, rescaled sum, target logit) and every logits chunk goes into one reused scratch buffer:
    O(M) memory plus one ``[block_m, block_v]`` chunk.
    """
    m_rows, _ = hidden.shape
    vocab = weight.shape[0]
    dev = hidden.device
    dflt_m, dflt_v = default_blocks(m_rows, vocab, device=dev)
    block_m = dflt_m if block_m is None else max(1, int(block_m))
    block_v = dflt_v if block_v is None else max(1, int(block_v))
    targets = targets.to(device=dev, dtype=torch.int64)
    state = _OnlineLSE(targets)
    buf = _scratch(block_m, block_v, m_rows, vocab, dev)

    for v0 in range(0, vocab, block_v):
        v1 = min(vocab, v0 + block_v)
        w_c = weight[v0:v1]  # [vc, H]
        if w_c.dtype != torch.float32 and not w_c.is_cuda:
            w_c = w_c.float()  # upcast once per vocab chunk (CPU path)
        b_c = None if bias is None else bias[v0:v1].float()  # [vc]
        for m0 in range(0, m_rows, block_m):
            m1 = min(m_rows, m0 + block_m)
            z = _logits_fp32(hidden[m0:m1], w_c, out=_chunk(buf, m1 - m0, v1 - v0))  # [mc, vc] fp32
            if b_c is not None:
                z.add_(b_c)
            state.update_(transform_logits_(z, logit_scale, softcap), m0, v0)

    lse = state.lse()
    return finalize_nll(lse, state.tgt, targets, vocab, ignore_index), lse


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
    """Row-wise online softmax over vocab chunks; never upcasts more than one ``[block_m, block_v]`` chunk.

    Each chunk is copied (and upcast) into a scratch buffer first: the caller's logits are never modified.
    """
    m_rows, vocab = logits.shape
    dev = logits.device
    dflt_m, dflt_v = default_blocks(m_rows, vocab, device=dev)
    block_m = dflt_m if block_m is None else max(1, int(block_m))
    block_v = dflt_v if block_v is None else max(1, int(block_v))
    targets = targets.to(device=dev, dtype=torch.int64)
    state = _OnlineLSE(targets)
    buf = _scratch(block_m, block_v, m_rows, vocab, dev)
    for m0 in range(0, m_rows, block_m):
        m1 = min(m_rows, m0 + block_m)
        for v0 in range(0, vocab, block_v):
            v1 = min(vocab, v0 + block_v)
            z = _chunk(buf, m1 - m0, v1 - v0).copy_(logits[m0:m1, v0:v1])  # [mc, vc] fp32
            state.update_(transform_logits_(z, logit_scale, softcap), m0, v0)
    lse = state.lse()
    return finalize_nll(lse, state.tgt, targets, vocab, ignore_index), lse
