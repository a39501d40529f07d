"""Triton kernels + launcher: lm_head matmul fused with per-token NLL, no ``[M, V]`` logits in memory.

Pass 1 (``_fused_linear_nll_fwd``): program (token tile i, vocab split s) walks its run of vocab tiles; for
each it accumulates the ``[BLOCK_M, BLOCK_N]`` logits tile over H in fp32 (``tl.dot``), applies bias,
scale and softcap, folds the tile into a running (max, sum-exp) per row (online log-sum-exp), and picks
the target logit from the same fp32 tile. It writes one partial LSE per row to ``lse_part[s, :]`` and,
if the row's target lies in its vocab range, the target logit to ``tgt[:]`` (exactly one writer per
row). Pass 2 (``_merge_splits``) folds the ``num_splits`` partial LSEs of each row in a fixed order.
No atomics, no locks: the same input gives bit-identical output run to run.

Importing this module imports triton; set TRITON_INTERPRET=1 before importing it to run on CPU.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from ..heuristics import TileConfig, choose_config, device_arch_and_sms, resolve_splits

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
MERGE_BLOCK = 256


@triton.jit
def _tanh(x):
    # tanh(x) = 1 - 2 / (exp(2x) + 1): exact limits +-1 (exp2 -> inf / 0), abs error ~1 ulp of 1.0
    return 1.0 - 2.0 / (tl.exp2(x * 2.8853900817779268) + 1.0)


@triton.jit
def _fused_linear_nll_fwd(
    h_ptr, w_ptr, b_ptr, t_ptr, lse_part_ptr, tgt_ptr,
    M, V, H, T_len,  # M = B * T_len token rows; hidden is [B, T_len, H], targets [B, T_len]
    s_hb, s_ht, s_hk, s_wv, s_wk, s_b, s_tb, s_tt,
    tiles_per_split, n_splits,
    logit_scale, softcap,
    HAS_BIAS: tl.constexpr, HAS_SOFTCAP: tl.constexpr, EVEN_K: tl.constexpr,
    CAST_FP32: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    # Grouped launch order (as in GEMMs): GROUP_M consecutive token tiles x all splits run side by side, so
    # the hidden tiles they reuse and the weight tiles they share stay in L2.
    pid = tl.program_id(0)
    n_mt = tl.cdiv(M, BLOCK_M)
    per_group = GROUP_M * n_splits
    first_m = (pid // per_group) * GROUP_M
    group_size = tl.minimum(n_mt - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_size
    pid_s = (pid % per_group) // group_size

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    mask_m = offs_m < M
    rows = offs_m.to(tl.int64)
    # padded rows load a valid row (wrap-around) instead of masking every K step; their results are dropped
    rows_ld = rows % M
    b_idx = rows_ld // T_len
    t_idx = rows_ld % T_len
    h_rows = h_ptr + b_idx * s_hb + t_idx * s_ht  # [BM] int64-offset pointers
    tgt = tl.load(t_ptr + b_idx * s_tb + t_idx * s_tt).to(tl.int64)  # [BM]

    n_vt = tl.cdiv(V, BLOCK_N)
    vt0 = pid_s * tiles_per_split
    vt1 = tl.minimum(vt0 + tiles_per_split, n_vt)
    offs_k = tl.arange(0, BLOCK_K)

    run_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_M], tl.float32)
    tgt_logit = tl.zeros([BLOCK_M], tl.float32)
    for vt in range(vt0, vt1):
        offs_n = vt * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
        mask_n = offs_n < V
        cols_ld = (offs_n % V).to(tl.int64)
        a_ptrs = h_rows[:, None] + offs_k[None, :].to(tl.int64) * s_hk  # [BM, BK]
        b_ptrs = w_ptr + cols_ld[None, :] * s_wv + offs_k[:, None].to(tl.int64) * s_wk  # [BK, BN]
        acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for k0 in range(0, H, BLOCK_K):
            if EVEN_K:
                a = tl.load(a_ptrs)
                b = tl.load(b_ptrs)
            else:
                a = tl.load(a_ptrs, mask=offs_k[None, :] < H - k0, other=0.0)
                b = tl.load(b_ptrs, mask=offs_k[:, None] < H - k0, other=0.0)
            if CAST_FP32:  # the numpy interpreter has no bf16 matmul; 16-bit products are exact in fp32
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
            a_ptrs += BLOCK_K * s_hk
            b_ptrs += BLOCK_K * s_wk

        z = acc  # [BM, BN] fp32 logits tile
        if HAS_BIAS:
            z += tl.load(b_ptr + cols_ld * s_b).to(tl.float32)[None, :]
        z = z * logit_scale
        if HAS_SOFTCAP:
            z = softcap * _tanh(z / softcap)
        z = tl.where(mask_n[None, :], z, float("-inf"))

        # online log-sum-exp; new_max is finite (every tile has >= 1 real column), so no inf - inf
        new_max = tl.maximum(run_max, tl.max(z, axis=1))
        p = tl.exp2((z - new_max[:, None]) * LOG2E)
        run_sum = run_sum * tl.exp2((run_max - new_max) * LOG2E) + tl.sum(p, axis=1)
        run_max = new_max
        # the target logit, from the very values that entered the sum (so lse >= z_t)
        hit = offs_n[None, :].to(tl.int64) == tgt[:, None]
        tgt_logit += tl.sum(tl.where(hit, z, 0.0), axis=1)

    part = run_max + tl.log2(run_sum) * LN2  # [BM] partial LSE of this split
    tl.store(lse_part_ptr + pid_s.to(tl.int64) * M + rows, part, mask=mask_m)
    in_split = (tgt >= vt0 * BLOCK_N) & (tgt < vt1 * BLOCK_N)
    tl.store(tgt_ptr + rows, tgt_logit, mask=mask_m & in_split)


@triton.jit
def _merge_splits(
    lse_part_ptr, tgt_ptr, t_ptr, nll_ptr, lse_ptr,
    M, V, T_len, s_tb, s_tt, n_splits, ignore_index,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    rows = offs.to(tl.int64)
    # fixed split order: max first, then the rescaled sum -> deterministic
    # (pointers advance by M per split so the split offset never multiplies in 32 bits)
    mx = tl.full([BLOCK], float("-inf"), tl.float32)
    p = lse_part_ptr + rows
    for _ in range(0, n_splits):
        mx = tl.maximum(mx, tl.load(p, mask=mask, other=0.0))
        p += M
    acc = tl.zeros([BLOCK], tl.float32)
    p = lse_part_ptr + rows
    for _ in range(0, n_splits):
        acc += tl.exp2((tl.load(p, mask=mask, other=0.0) - mx) * LOG2E)
        p += M
    lse = mx + tl.log2(acc) * LN2

    tgt = tl.load(t_ptr + (rows // T_len) * s_tb + (rows % T_len) * s_tt, mask=mask, other=0).to(tl.int64)
    ignored = tgt == ignore_index
    valid = (tgt >= 0) & (tgt < V)
    z_t = tl.load(tgt_ptr + rows, mask=mask & valid, other=0.0)
    # lse - z_t >= 0 in exact arithmetic; the clamp only removes approximate-exp2/log2 rounding
    nll = tl.maximum(lse - z_t, 0.0)
    nll = tl.where(valid, nll, float("nan"))
    nll = tl.where(ignored, 0.0, nll)
    tl.store(nll_ptr + rows, nll, mask=mask)
    tl.store(lse_ptr + rows, lse, mask=mask)


def is_interpreted() -> bool:
    return type(_fused_linear_nll_fwd).__name__ == "InterpretedFunction"


def _dot_precision(dtype: torch.dtype, interpreted: bool) -> str:
    # fp32 inputs follow torch's matmul setting (default "highest" = full fp32, like eager torch on CUDA)
    if dtype == torch.float32 and not interpreted and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "ieee"


def fused_linear_nll_triton(
    hidden: torch.Tensor,  # [B, T, H]
    weight: torch.Tensor,  # [V, H]
    targets: torch.Tensor,  # [B, T] integer
    bias: torch.Tensor | None,  # [V] or None
    *,
    ignore_index: int,
    logit_scale: float,
    softcap: float | None,
    config: TileConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch both passes; returns ``(nll [M], lse [M])`` fp32. No host synchronisation."""
    interpreted = is_interpreted()
    if hidden.device.type != "cuda" and not interpreted:
        raise RuntimeError(
            "fused_linear_nll(impl='triton') needs CUDA tensors, or TRITON_INTERPRET=1 set before "
            "pplaw_kernels.ops is first imported (CPU interpreter, slow); use impl='torch' on CPU"
        )
    bsz, t_len, h_dim = hidden.shape
    m_rows, vocab = bsz * t_len, weight.shape[0]
    arch, n_sms = device_arch_and_sms(hidden.device, interpreted)
    cfg = config if config is not None else choose_config(m_rows, vocab, h_dim, hidden.dtype, arch)
    per, n_splits = resolve_splits(cfg, m_rows, vocab, n_sms)
    n_mt = triton.cdiv(m_rows, cfg.block_m)

    dev = hidden.device
    lse_part = torch.empty((n_splits, m_rows), dtype=torch.float32, device=dev)  # O(M): splits <= 128
    tgt_buf = torch.empty((m_rows,), dtype=torch.float32, device=dev)  # read only where written
    nll = torch.empty((m_rows,), dtype=torch.float32, device=dev)
    lse = torch.empty((m_rows,), dtype=torch.float32, device=dev)
    b_arg = bias if bias is not None else hidden  # dummy pointer, never read when HAS_BIAS is False
    s_b = bias.stride(0) if bias is not None else 0

    with torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext():
        _fused_linear_nll_fwd[(n_mt * n_splits,)](
            hidden, weight, b_arg, targets, lse_part, tgt_buf,
            m_rows, vocab, h_dim, t_len,
            hidden.stride(0), hidden.stride(1), hidden.stride(2), weight.stride(0), weight.stride(1), s_b,
            targets.stride(0), targets.stride(1),
            per, n_splits,
            logit_scale, 1.0 if softcap is None else softcap,
            HAS_BIAS=bias is not None, HAS_SOFTCAP=softcap is not None, EVEN_K=h_dim % cfg.block_k == 0,
            CAST_FP32=interpreted, DOT_PRECISION=_dot_precision(hidden.dtype, interpreted),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages, enable_fp_fusion=True,
        )
        _merge_splits[(triton.cdiv(m_rows, MERGE_BLOCK),)](
            lse_part, tgt_buf, targets, nll, lse,
            m_rows, vocab, t_len, targets.stride(0), targets.stride(1), n_splits, ignore_index,
            BLOCK=MERGE_BLOCK, num_warps=4, enable_fp_fusion=True,
        )
    return nll, lse
