"""Tile-size heuristics of the fused lm_head + NLL kernel (no triton import; see README.md "Tile heuristics").

Two decisions are made per call:

1. the tile shape ``(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages)`` from a small table keyed on the GPU
   generation, the input dtype and the number of tokens (``_TABLE``);
2. the number of vocab splits: each program owns one token tile and a contiguous run of ``tiles_per_split``
   vocab tiles; the run length is chosen to minimise the predicted makespan ``ceil(programs / SMs) *
   tiles_per_split`` (all programs of a split are equally long, one resident program per SM), subject to
   ``splits <= MAX_SPLITS`` so the partial-LSE buffer ``[splits, M]`` stays O(M).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch

# Cap on vocab splits: the partial-LSE buffer is splits * M * 4 bytes (512 B per token at 128).
MAX_SPLITS = 128
# The interpreter has no SMs; this only decides how many programs a CPU test launches.
INTERPRETER_SMS = 4


@dataclass(frozen=True)
class TileConfig:
    """One launch configuration. ``num_splits=None`` lets :func:`resolve_splits` choose it."""

    block_m: int
    block_n: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 2
    num_splits: int | None = None
    group_m: int = 8

    def __post_init__(self):
        for name in ("block_m", "block_n", "block_k"):
            val = getattr(self, name)
            if val < 16 or val & (val - 1):
                raise ValueError(f"TileConfig.{name} must be a power of two >= 16, got {val}")
        if self.num_splits is not None and self.num_splits < 1:
            raise ValueError(f"TileConfig.num_splits must be None or >= 1, got {self.num_splits}")


# (arch, sixteen_bit, large_m) -> (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages)
# arch: "sm90" = Hopper and newer, "sm80" = Ampere/Ada, "old" = anything else, "interp" = CPU interpreter.
# large_m: M > 64. Small M (decode-like scoring) uses a short token tile so no work is wasted on padding.
# The sm90 16-bit row is Triton's usual best H100 GEMM tile (128x256x64) shrunk to 128x128 so the fp32 logits
# tile and its exp() stay in registers (`python -m pplaw_kernels.compile_check`: 206-254 registers, no spills;
# 128x256 spills); the smem ring is 4 * (128*64 + 64*128) * 2 B = 128 KiB (< 227 KiB). These rows are chosen
# from compile-time resources, not yet from timings: `benchmarks/bench_nll_kernel.py --sweep` times candidates.
_TABLE: dict[tuple[str, bool, bool], tuple[int, int, int, int, int]] = {
    ("sm90", True, True): (128, 128, 64, 8, 4),
    ("sm90", True, False): (64, 128, 64, 4, 4),
    ("sm90", False, True): (128, 64, 32, 8, 3),  # fp32: FMA (or tf32) path; 128x128 spills registers
    ("sm90", False, False): (64, 64, 32, 4, 3),
    ("sm80", True, True): (128, 128, 32, 8, 4),
    ("sm80", True, False): (64, 128, 32, 4, 4),
    ("sm80", False, True): (128, 64, 32, 8, 3),
    ("sm80", False, False): (64, 64, 32, 4, 3),
    ("old", True, True): (64, 64, 32, 4, 2),
    ("old", True, False): (64, 64, 32, 4, 2),
    ("old", False, True): (64, 64, 32, 4, 2),
    ("old", False, False): (64, 64, 32, 4, 2),
    # interpreter: numpy cost is per program and per op, so big tiles and few programs are fastest
    ("interp", True, True): (64, 128, 64, 4, 1),
    ("interp", True, False): (64, 128, 64, 4, 1),
    ("interp", False, True): (64, 128, 64, 4, 1),
    ("interp", False, False): (64, 128, 64, 4, 1),
}


def _pow2_at_least(n: int, lo: int = 16) -> int:
    p = lo
    while p < n:
        p *= 2
    return p


@functools.lru_cache(maxsize=16)
def _device_info(index: int) -> tuple[int, int]:
    props = torch.cuda.get_device_properties(index)
    return props.major, props.multi_processor_count


def device_arch_and_sms(device: torch.device, interpreted: bool) -> tuple[str, int]:
    if interpreted or device.type != "cuda":
        return "interp", INTERPRETER_SMS
    major, sms = _device_info(device.index if device.index is not None else torch.cuda.current_device())
    return ("sm90" if major >= 9 else "sm80" if major >= 8 else "old"), sms


def choose_config(m: int, v: int, h: int, dtype: torch.dtype, arch: str) -> TileConfig:
    """Table lookup, then shrink tiles that would be mostly padding (tiny M, V or H); splits left to resolve."""
    bm, bn, bk, warps, stages = _TABLE[(arch, dtype != torch.float32, m > 64)]
    bm = min(bm, _pow2_at_least(m))
    bn = min(bn, _pow2_at_least(v))
    bk = min(bk, _pow2_at_least(h))
    return TileConfig(bm, bn, bk, warps, stages)


def resolve_splits(cfg: TileConfig, m: int, v: int, n_sms: int) -> tuple[int, int]:
    """``(tiles_per_split, num_splits)`` for ``cfg``; every split owns at least one vocab tile."""
    n_vt = -(-v // cfg.block_n)
    n_mt = -(-m // cfg.block_m)
    if cfg.num_splits is not None:  # forced (tests, tuning): honoured up to one tile per split
        per = -(-n_vt // min(cfg.num_splits, n_vt))
        return per, -(-n_vt // per)
    return _best_split(n_mt, n_vt, n_sms)


@functools.lru_cache(maxsize=256)
def _best_split(n_mt: int, n_vt: int, n_sms: int) -> tuple[int, int]:
    best = None
    for per in range(1, n_vt + 1):
        splits = -(-n_vt // per)
        if splits > MAX_SPLITS:
            continue
        waves = -(-(n_mt * splits) // n_sms)
        cost = waves * per
        # ties go to longer runs: fewer partial LSEs to merge, fewer hidden-tile reloads
        if best is None or cost <= best[0]:
            best = (cost, per, splits)
    assert best is not None  # per = n_vt always qualifies (1 split)
    return best[1], best[2]


def with_splits(cfg: TileConfig, num_splits: int | None) -> TileConfig:
    return replace(cfg, num_splits=num_splits)
