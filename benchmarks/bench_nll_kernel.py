"""Benchmark: fused lm_head + per-token NLL (pplaw_kernels) vs torch eager, the chunked reference and the GEMM floor.

    python benchmarks/bench_nll_kernel.py                 # all shapes (needs a CUDA GPU)
    python benchmarks/bench_nll_kernel.py --target-only   # M=8192, H=4096, V=131072 only
    python benchmarks/bench_nll_kernel.py --grid          # the 12-shape grid only (gpu_check.sh: after --target-only)
    python benchmarks/bench_nll_kernel.py --sweep         # time candidate tile configs at the target shape
    python benchmarks/bench_nll_kernel.py --smoke         # tiny shapes; runs on CPU (Triton interpreter) too

Prints, from one run and per shape (bf16): ours; torch eager (``hidden @ W.T`` then
``F.cross_entropy(logits.float(), reduction="none")``); the chunked torch reference; the bare bf16 GEMM
(the floor the fused kernel cannot beat); Liger-Kernel's fused linear cross-entropy and Apple's
cut-cross-entropy when importable. Columns: median ms over CUDA-event timed runs after warm-up, TFLOP/s
(2*M*H*V / time), peak extra memory (``torch.cuda.max_memory_allocated`` above the inputs, outputs included),
ratio to the GEMM. A check line per shape compares every method's NLL with the reference.
Targets on an H100 at M=8192, H=4096, V=131072: <= 1.25x the GEMM, >= 2x faster than eager, O(M) memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

SHAPES = [(m, h, v) for m in (4096, 16384) for h in (2048, 4096) for v in (32000, 151936, 262144)]
TARGET = (8192, 4096, 131072)
SMOKE_SHAPES = [(37, 24, 515), (64, 32, 1000)]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes; CPU (interpreter) allowed; timings meaningless")
    ap.add_argument("--target-only", action="store_true", help="only the target shape M=8192 H=4096 V=131072")
    ap.add_argument("--grid", action="store_true", help="only the 12-shape grid (no target shape)")
    ap.add_argument("--sweep", action="store_true", help="time candidate tile configs at the target shape")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--skip-eager-above", type=float, default=60.0,
                    help="skip torch eager when its logits would need more than this many GiB")
    return ap.parse_args(argv)


ARGS = parse_args()
HAS_CUDA = False
try:
    import torch

    HAS_CUDA = torch.cuda.is_available()
except ImportError:
    pass
if not HAS_CUDA:
    if not ARGS.smoke:
        print("bench_nll_kernel: needs a CUDA GPU (none found). Use --smoke for a tiny CPU run of the plumbing.")
        sys.exit(0)
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before pplaw_kernels.ops is imported

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pplaw_kernels import fused_linear_nll  # noqa: E402
from pplaw_kernels.heuristics import TileConfig  # noqa: E402

DEV = "cuda" if HAS_CUDA else "cpu"


def timed(fn, warmup: int, iters: int) -> float:
    """Median milliseconds of ``fn()``: CUDA events on GPU, perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if HAS_CUDA:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_extra_mib(fn) -> float | None:
    """Peak memory above what was allocated before the call (output included), MiB; None on CPU."""
    if not HAS_CUDA:
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak / 2**20


def methods(hidden, weight, targets, v_gib: float):
    """name -> (callable returning fp32 NLL [M] or None, reason it is unavailable or None)."""
    out = {}
    out["gemm (floor)"] = (lambda: torch.mm(hidden, weight.T), None)
    out["ours (triton)"] = (lambda: fused_linear_nll(hidden, weight, targets, impl="triton"), None)

    def eager():
        return F.cross_entropy((hidden @ weight.T).float(), targets, reduction="none")

    too_big = v_gib * 3 > ARGS.skip_eager_above  # bf16 logits + fp32 copy + fp32 log-softmax
    out["torch eager"] = (eager, f"skipped: needs ~{v_gib * 3:.0f} GiB" if too_big else None)
    out["torch reference (chunked)"] = (lambda: fused_linear_nll(hidden, weight, targets, impl="torch"), None)
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        def liger():
            return liger_fused_linear_cross_entropy(hidden, weight, targets, reduction="none")

        out["liger flce"] = (liger, None if HAS_CUDA else "needs CUDA")
    except Exception as e:  # not installed or incompatible: report, do not depend on it
        out["liger flce"] = (None, f"n/a ({type(e).__name__}: {str(e).splitlines()[0][:60]})")
    try:
        from cut_cross_entropy import linear_cross_entropy

        out["apple cce"] = (lambda: linear_cross_entropy(hidden, weight, targets, reduction="none"),
                            None if HAS_CUDA else "needs CUDA")
    except Exception as e:
        out["apple cce"] = (None, f"n/a ({type(e).__name__}: {str(e).splitlines()[0][:60]})")
    return out


def make_inputs(m, h, v, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    hidden = torch.randn(m, h, device=DEV, generator=g, dtype=torch.bfloat16)
    weight = torch.randn(v, h, device=DEV, generator=g, dtype=torch.bfloat16) * (2.0 / h**0.5)
    targets = torch.randint(0, v, (m,), device=DEV, generator=g)
    return hidden, weight, targets


def run_shape(m, h, v):
    flop = 2.0 * m * h * v
    v_gib = m * v * 2 / 2**30
    print(f"\n### M={m} H={h} V={v}  ({flop / 1e12:.2f} TFLOP per pass, device: {device_name()})\n")
    print("| method | ms | TFLOP/s | x GEMM | peak extra MiB |\n|---|---:|---:|---:|---:|")
    hidden, weight, targets = make_inputs(m, h, v)
    rows, outs, gemm_ms = {}, {}, None
    with torch.inference_mode():
        for name, (fn, why) in methods(hidden, weight, targets, v_gib).items():
            if why is not None or fn is None:
                print(f"| {name} | {why} | | | |")
                continue
            try:
                ms = timed(fn, ARGS.warmup, ARGS.iters)
                mem = peak_extra_mib(fn)
                res = fn()
            except torch.OutOfMemoryError:
                print(f"| {name} | OOM | | | |")
                torch.cuda.empty_cache()
                continue
            except Exception as e:  # a third-party baseline with another API: report and go on
                print(f"| {name} | failed: {type(e).__name__}: {str(e).splitlines()[0][:70]} | | | |")
                continue
            if name == "gemm (floor)":
                gemm_ms = ms
                del res
            else:
                outs[name] = res.float().reshape(-1) if res.dim() else res
            rows[name] = (ms, mem)
            ratio = f"{ms / gemm_ms:.2f}" if gemm_ms else ""
            mem_s = f"{mem:.0f}" if mem is not None else "-"
            print(f"| {name} | {ms:.3f} | {flop / ms / 1e9:.0f} | {ratio} | {mem_s} |")
    ref = outs.get("torch reference (chunked)")
    if ref is not None:
        parts = [f"max|{n} - reference| = {(o - ref).abs().max().item():.2e}" for n, o in outs.items()
                 if n != "torch reference (chunked)" and o.shape == ref.shape]
        ok = "ours (triton)" in outs and (outs["ours (triton)"] - ref).abs().max().item() < 2e-3
        print(f"\ncheck: {'; '.join(parts)} -> {'OK' if ok else 'MISMATCH'}")
    return rows


def device_name() -> str:
    return torch.cuda.get_device_name() if HAS_CUDA else "CPU (Triton interpreter)"


def verdict(rows, m):
    ours, gemm, eager = rows.get("ours (triton)"), rows.get("gemm (floor)"), rows.get("torch eager")
    if not ours or not gemm:
        return
    lines = [f"ours / GEMM = {ours[0] / gemm[0]:.2f} (target <= 1.25)"]
    if eager:
        lines.append(f"eager / ours = {eager[0] / ours[0]:.2f} (target >= 2)")
    if ours[1] is not None:
        lines.append(f"ours extra memory = {ours[1] * 2**20 / m:.0f} B per token (O(M); an [M, V] fp32 buffer "
                     f"would be {TARGET[2] * 4} B per token)")
    print("\ntarget: " + "; ".join(lines))


def sweep():
    m, h, v = TARGET if HAS_CUDA else SMOKE_SHAPES[0]
    hidden, weight, targets = make_inputs(m, h, v)
    candidates = [(128, 128, 64, 8, 4), (128, 128, 64, 8, 3), (128, 256, 64, 8, 3), (128, 128, 64, 4, 4),
                  (64, 256, 64, 4, 4), (128, 64, 64, 4, 4), (256, 128, 64, 8, 3)]
    gemm = timed(lambda: torch.mm(hidden, weight.T), ARGS.warmup, ARGS.iters)
    print(f"sweep at M={m} H={h} V={v} on {device_name()}: GEMM {gemm:.3f} ms\n")
    print("| BM | BN | BK | warps | stages | splits | ms | x GEMM |\n|---|---|---|---|---|---|---:|---:|")
    with torch.inference_mode():
        for bm, bn, bk, w, s in candidates:
            for splits in (None, 16, 64):
                cfg = TileConfig(bm, bn, bk, w, s, num_splits=splits)
                try:
                    ms = timed(lambda: fused_linear_nll(hidden, weight, targets, impl="triton", config=cfg),
                               ARGS.warmup, ARGS.iters)
                    print(f"| {bm} | {bn} | {bk} | {w} | {s} | {splits or 'auto'} | {ms:.3f} | {ms / gemm:.2f} |")
                except Exception as e:  # e.g. out of shared memory for this tile
                    print(f"| {bm} | {bn} | {bk} | {w} | {s} | {splits or 'auto'} | failed: {type(e).__name__} | |")


def main():
    print(f"bench_nll_kernel on {device_name()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}")
    if ARGS.sweep:
        sweep()
        return 0
    shapes = SMOKE_SHAPES if ARGS.smoke else [TARGET] if ARGS.target_only else SHAPES if ARGS.grid else [TARGET] + SHAPES
    for m, h, v in shapes:
        rows = run_shape(m, h, v)
        if (m, h, v) == TARGET:
            verdict(rows, m)
        if HAS_CUDA:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
