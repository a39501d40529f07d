"""Compile the kernels ahead of time for NVIDIA targets on any machine (no GPU needed) and report resources.

    python -m pplaw_kernels.compile_check            # sm90 + sm80, the heuristic table's tiles
    python -m pplaw_kernels.compile_check --arch 90 --tile 128 256 64 8 3

The CPU interpreter runs the kernels' arithmetic but not Triton's compiler; this runs the compiler (Triton
-> PTX -> ptxas) for each tile configuration of :mod:`pplaw_kernels.heuristics` with the specialisations a
real launch gets (unit inner strides, 16-byte aligned pointers) and prints registers, spill bytes and
shared memory per kernel. A configuration whose shared memory exceeds the target's limit, or a kernel
that does not compile, exits non-zero. TRITON_INTERPRET must not be set in this process.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

# (max dynamic shared memory per block, in bytes) of the targets we build for
SMEM_LIMIT = {90: 232448, 80: 166912, 89: 101376}


def _compile(fn, sig: dict, constexprs: dict, aligned: tuple[str, ...], arch: int, warps: int, stages: int):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    for k in constexprs:
        sig.setdefault(k, "constexpr")
    attrs = {(i,): [["tt.divisibility", 16]] for i, k in enumerate(fn.arg_names) if k in aligned}
    src = ASTSource(fn, sig, constexprs, attrs)
    opts = {"num_warps": warps, "num_stages": stages, "enable_fp_fusion": True}
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=opts)


def _ptxas_resources(kernel, arch: int) -> tuple[int | None, int | None]:
    """(registers, spill-store bytes) from ``ptxas -v`` on the kernel's PTX; (None, None) if ptxas is absent."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        ptxas = get_ptxas(arch).path
    except Exception:  # older/newer triton layouts: resources are informative only
        return None, None
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "k.ptx")
        with open(ptx, "w") as f:
            f.write(kernel.asm["ptx"])
        out = subprocess.run([ptxas, "-v", f"--gpu-name={gpu}", ptx, "-o", ptx + ".cubin"], capture_output=True, text=True)
    txt = out.stdout + out.stderr
    regs = re.findall(r"Used (\d+) registers", txt)
    spill = re.findall(r"(\d+) bytes spill stores", txt)
    return (int(regs[0]) if regs else None), (int(spill[0]) if spill else None)


def check(arch: int, tiles: list[tuple[str, tuple[int, int, int, int, int]]]) -> list[dict]:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("compile_check needs TRITON_INTERPRET unset (it compiles, it does not interpret)")
    from .ops import fused_linear_nll as fl
    from .ops import nll_from_logits as nl

    rows = []
    for dt, (bm, bn, bk, warps, stages) in tiles:
        for bias, softcap, even_k in ((False, False, True), (True, True, False)):
            sig = {
                "h_ptr": f"*{dt}", "w_ptr": f"*{dt}", "b_ptr": "*fp32", "t_ptr": "*i64", "lse_part_ptr": "*fp32",
                "tgt_ptr": "*fp32", "M": "i32", "V": "i32", "H": "i32", "T_len": "i32", "s_hb": "i32", "s_ht": "i32",
                "s_wv": "i32", "s_tb": "i32", "tiles_per_split": "i32", "n_splits": "i32",
                "logit_scale": "fp32", "softcap": "fp32",
            }
            cx = dict(s_hk=1, s_wk=1, s_b=1, s_tt=1, HAS_BIAS=bias, HAS_SOFTCAP=softcap, EVEN_K=even_k,
                      CAST_FP32=False, DOT_PRECISION="ieee", BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8)
            k = _compile(fl._fused_linear_nll_fwd, sig, cx,
                         ("h_ptr", "w_ptr", "b_ptr", "t_ptr", "lse_part_ptr", "tgt_ptr", "H", "s_hb", "s_ht", "s_wv"),
                         arch, warps, stages)
            regs, spill = _ptxas_resources(k, arch)
            rows.append(dict(kernel="fused_linear_nll_fwd", arch=arch, dtype=dt, tile=(bm, bn, bk, warps, stages),
                             bias_softcap=bias, even_k=even_k, shared=k.metadata.shared, regs=regs, spill=spill,
                             wgmma="wgmma" in k.asm["ptx"]))
    sig = {"lse_part_ptr": "*fp32", "tgt_ptr": "*fp32", "t_ptr": "*i64", "nll_ptr": "*fp32", "lse_ptr": "*fp32",
           "M": "i32", "V": "i32", "T_len": "i32", "s_tb": "i32", "n_splits": "i32", "ignore_index": "i32"}
    k = _compile(fl._merge_splits, sig, dict(s_tt=1, BLOCK=fl.MERGE_BLOCK), ("lse_part_ptr", "nll_ptr"), arch, 4, 1)
    rows.append(dict(kernel="merge_splits", arch=arch, shared=k.metadata.shared, **dict(zip(("regs", "spill"), _ptxas_resources(k, arch)))))
    for dt in ("bf16", "fp32"):
        sig = {"x_ptr": f"*{dt}", "t_ptr": "*i64", "nll_ptr": "*fp32", "lse_ptr": "*fp32", "V": "i32", "T_len": "i32",
               "s_xb": "i32", "s_xt": "i32", "s_tb": "i32", "ignore_index": "i32", "logit_scale": "fp32", "softcap": "fp32"}
        k = _compile(nl._nll_from_logits_fwd, sig, dict(s_xv=1, s_tt=1, HAS_SOFTCAP=True, BLOCK_V=4096),
                     ("x_ptr", "s_xt"), arch, 8, 1)
        rows.append(dict(kernel="nll_from_logits_fwd", arch=arch, dtype=dt, shared=k.metadata.shared,
                         **dict(zip(("regs", "spill"), _ptxas_resources(k, arch)))))
    return rows


def table_tiles(arch: int) -> list[tuple[str, tuple[int, int, int, int, int]]]:
    from .heuristics import _TABLE

    key = "sm90" if arch >= 90 else "sm80"
    return [("bf16" if sixteen else "fp32", cfg) for (a, sixteen, _), cfg in sorted(_TABLE.items()) if a == key]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, action="append", help="SM version(s), e.g. 90, 80 (default: both)")
    ap.add_argument("--tile", type=int, nargs=5, metavar=("BM", "BN", "BK", "WARPS", "STAGES"),
                    help="check one bf16 tile instead of the heuristic table")
    args = ap.parse_args(argv)
    failed = False
    for arch in args.arch or [90, 80]:
        tiles = [("bf16", tuple(args.tile))] if args.tile else table_tiles(arch)
        for row in check(arch, tiles):
            too_big = row["shared"] > SMEM_LIMIT.get(arch, 101376)
            failed |= too_big
            print(("SMEM-OVER-LIMIT " if too_big else "") + " ".join(f"{k}={v}" for k, v in row.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
