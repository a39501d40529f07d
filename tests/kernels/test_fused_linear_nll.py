"""The Triton kernels (impl="triton") against a float64 truth.

Without CUDA these run under TRITON_INTERPRET=1 (set in conftest.py) on tiny odd shapes; with CUDA the
same tests run compiled, plus the real-shape bf16 tests marked `gpu`. Accuracy is asserted the way
ml-cross-entropy does: err(kernel) <= err(torch eager at that dtype) + eps.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from kernel_testing import eager_nll, make_inputs, nll_from_double_logits, truth_nll

from pplaw_kernels import fused_linear_nll, nll_from_logits
from pplaw_kernels.heuristics import TileConfig

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# small tiles + many splits: exercises the multi-tile online LSE and the split merge at tiny shapes
SPLIT_CFG = TileConfig(block_m=16, block_n=32, block_k=16, num_splits=5)


def _err(x, truth):
    return (x.double() - truth.to(x.device)).abs().max().item()


def _eps(truth):
    return 2e-6 * max(1.0, truth.abs().max().item())


@pytest.mark.parametrize("config", [None, SPLIT_CFG], ids=["heuristic", "split5"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_accuracy_vs_eager(device, dtype, config):
    hidden, weight, targets = make_inputs(37, 24, 515, dtype, device, seed=11)
    truth, truth_lse = truth_nll(hidden, weight, targets)
    nll, lse = fused_linear_nll(hidden, weight, targets, impl="triton", return_lse=True, config=config)
    assert nll.dtype == torch.float32 and nll.shape == (37,) and nll.device.type == device
    eager = eager_nll(hidden, weight, targets)
    assert _err(nll, truth) <= _err(eager, truth) + _eps(truth)
    assert _err(nll, truth) < 1e-4  # fp32 accumulation: far better than eager for 16-bit inputs
    assert _err(lse, truth_lse) < 1e-4
    assert (nll[targets == -100] == 0).all() and (nll >= 0).all()
    torch_impl = fused_linear_nll(hidden, weight, targets, impl="torch")
    torch.testing.assert_close(nll, torch_impl, rtol=0, atol=1e-4)


@pytest.mark.parametrize("vocab", [1, 16, 17, 100])
def test_vocab_sizes_and_tile_remainders(device, vocab):
    hidden, weight, targets = make_inputs(19, 20, vocab, torch.bfloat16, device, seed=vocab)
    truth, truth_lse = truth_nll(hidden, weight, targets)
    for cfg in (None, SPLIT_CFG):
        nll, lse = fused_linear_nll(hidden, weight, targets, impl="triton", return_lse=True, config=cfg)
        assert _err(nll, truth) < 1e-4 and _err(lse, truth_lse) < 1e-4
    if vocab == 1:
        assert (nll == 0).all()


def test_strided_inputs_leading_dims_and_options(device):
    g = torch.Generator().manual_seed(5)
    big = torch.randn(3, 10, 2 * 24, generator=g).to(torch.bfloat16).to(device)
    hidden = big[:, :-1, ::2]  # [3, 9, 24], strides (480, 48, 2): shifted and sliced hidden states
    labels = torch.randint(0, 70, (3, 10), generator=g).to(device)
    labels[1, 3] = 3  # ignore_index inside [0, V)
    targets = labels[:, 1:]  # shifted label view
    weight = (torch.randn(24, 70, generator=g) / 3).to(torch.bfloat16).to(device).T  # [70, 24] transposed view
    bias = torch.randn(140, generator=g).to(device)[::2]  # [70] with stride 2, fp32
    assert not hidden.is_contiguous() and not targets.is_contiguous() and not weight.is_contiguous()
    opts = dict(bias=bias, ignore_index=3, logit_scale=1.7, softcap=4.0)
    truth, _ = truth_nll(hidden, weight, targets, **opts)
    for cfg in (None, SPLIT_CFG):
        nll = fused_linear_nll(hidden, weight, targets, impl="triton", config=cfg, **opts)
        assert nll.shape == (3, 9)
        assert nll[1, 2] == 0  # labels[1, 3] == ignore_index
        assert _err(nll, truth) <= _err(eager_nll(hidden, weight, targets, **opts), truth) + _eps(truth)
        assert _err(nll, truth) < 1e-4


def test_large_logits_do_not_overflow(device):
    # logits spanning hundreds of nats: exp() of an un-rescaled running sum would overflow fp32 (exp(89) = inf)
    hidden, weight, targets = make_inputs(37, 24, 515, torch.float32, device, seed=4)
    truth, truth_lse = truth_nll(hidden, weight, targets, logit_scale=60.0)
    assert truth_lse.abs().max() > 200
    for cfg in (None, SPLIT_CFG):
        nll, lse = fused_linear_nll(hidden, weight, targets, impl="triton", logit_scale=60.0, return_lse=True, config=cfg)
        assert nll.isfinite().all()
        assert _err(nll, truth) < 1e-3 * truth.abs().max().item() and _err(lse, truth_lse) < 1e-3 * truth_lse.abs().max().item()


@pytest.mark.parametrize("ignore_index", [-100, -1, 0])
def test_ignore_index(device, ignore_index):
    hidden, weight, targets = make_inputs(37, 16, 50, torch.float16, device, seed=3, ignore_frac=0.3,
                                          ignore_index=ignore_index)
    nll = fused_linear_nll(hidden, weight, targets, impl="triton", ignore_index=ignore_index, config=SPLIT_CFG)
    truth, _ = truth_nll(hidden, weight, targets, ignore_index=ignore_index)
    assert (nll[targets == ignore_index] == 0).all() and (nll[targets != ignore_index] > 0).all()
    assert _err(nll, truth) < 1e-4


@pytest.mark.parametrize("config", [None, SPLIT_CFG], ids=["heuristic", "split5"])
def test_bit_identical_run_to_run(device, config):
    hidden, weight, targets = make_inputs(37, 24, 515, torch.bfloat16, device, seed=7)
    a, la = fused_linear_nll(hidden, weight, targets, impl="triton", return_lse=True, config=config)
    b, lb = fused_linear_nll(hidden, weight, targets, impl="triton", return_lse=True, config=config)
    assert torch.equal(a, b) and torch.equal(la, lb)


def test_out_of_range_targets(device):
    hidden, weight, targets = make_inputs(8, 16, 40, torch.float32, device, ignore_frac=0.0)
    bad = targets.clone()
    bad[1], bad[6] = 40, -5
    with pytest.raises(ValueError, match="outside \\[0, 40\\)"):
        fused_linear_nll(hidden, weight, bad, impl="triton", check_targets=True)
    nll = fused_linear_nll(hidden, weight, bad, impl="triton", check_targets=False, config=SPLIT_CFG)
    assert nll[1].isnan() and nll[6].isnan()
    keep = torch.tensor([0, 2, 3, 4, 5, 7], device=device)
    assert nll[keep].isfinite().all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nll_from_logits_triton(device, dtype):
    g = torch.Generator().manual_seed(9)
    full = (torch.randn(2, 12, 301, generator=g) * 5).to(dtype).to(device)
    labels = torch.randint(0, 301, (2, 12), generator=g).to(device)
    labels[0, 5] = -100
    logits, targets = full[:, :-1], labels[:, 1:]  # strided views, [2, 11, 301] and [2, 11]
    for kw in (dict(), dict(logit_scale=0.5, softcap=3.0)):
        nll, lse = nll_from_logits(logits, targets, impl="triton", return_lse=True, **kw)
        z = logits.double().reshape(-1, 301) * kw.get("logit_scale", 1.0)
        if "softcap" in kw:
            z = kw["softcap"] * torch.tanh(z / kw["softcap"])
        truth, truth_lse = nll_from_double_logits(z, targets.reshape(-1), -100, targets.shape)
        assert nll.shape == (2, 11) and nll[0, 4] == 0
        assert _err(nll, truth) < 1e-4 and _err(lse, truth_lse) < 1e-4
        again = nll_from_logits(logits, targets, impl="triton", **kw)
        assert torch.equal(nll, again)
    one = nll_from_logits(full[..., :1], torch.zeros(2, 12, dtype=torch.long, device=device), impl="triton")
    assert (one == 0).all()


def test_triton_on_cpu_without_interpreter_says_how_to_fix():
    code = (
        "import torch, pplaw_kernels as pk\n"
        "try:\n"
        "    pk.fused_linear_nll(torch.randn(4, 8), torch.randn(5, 8), torch.zeros(4, dtype=torch.long), impl='triton')\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if torch.cuda.is_available():
        pytest.skip("the message is for machines without CUDA")
    assert "needs CUDA tensors, or TRITON_INTERPRET=1" in out.stdout, out.stderr


def test_kernels_compile_for_hopper_without_spills():
    """Runs Triton's real compiler (not the interpreter) for sm90 on this machine: catches what the
    interpreter cannot (non-constexpr globals, type errors in loops, register spills, smem overflow)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    cmd = [sys.executable, "-m", "pplaw_kernels.compile_check", "--arch", "90", "--tile", "128", "128", "64", "8", "4"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    fwd = [line for line in out.stdout.splitlines() if "fused_linear_nll_fwd" in line]
    assert len(fwd) == 2 and all("wgmma=True" in line for line in fwd), out.stdout
    spills = [line for line in out.stdout.splitlines() if "spill=" in line and "spill=None" not in line]
    assert all(line.split("spill=")[1].split()[0] == "0" for line in spills), out.stdout


# ---------------------------------------------------------------- real shapes, bf16, CUDA only


def _fp32_truth(hidden, weight, targets, **kw):
    """fp32 upcast, chunked reference: exact 16-bit products, fp32 accumulation (no tf32)."""
    from pplaw_kernels.reference import fused_linear_nll_reference

    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return fused_linear_nll_reference(hidden.float(), weight.float(), targets, **kw)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


@pytest.mark.gpu
@pytest.mark.parametrize("m,h,v", [(4096, 2048, 32000), (2048, 4096, 151936), (1000, 1536, 262147)])
def test_real_shapes_bf16(m, h, v):
    hidden, weight, targets = make_inputs(m, h, v, torch.bfloat16, "cuda", seed=1, scale=2.0)
    truth, truth_lse = _fp32_truth(hidden, weight, targets)
    nll, lse = fused_linear_nll(hidden, weight, targets, return_lse=True)  # auto -> triton on CUDA
    eager = eager_nll(hidden, weight, targets)
    err, err_eager = _err(nll, truth.double()), _err(eager, truth.double())
    assert err <= err_eager + 1e-4, (err, err_eager)
    assert err < 2e-3 and _err(lse, truth_lse.double()) < 2e-3
    again = fused_linear_nll(hidden, weight, targets)
    assert torch.equal(nll, again)


@pytest.mark.gpu
def test_int64_offsets_bf16():
    # M * V = 16384 * 151936 > 2^31: 32-bit offsets would wrap in both kernels
    m, h, v = 16384, 256, 151936
    hidden, weight, targets = make_inputs(m, h, v, torch.bfloat16, "cuda", seed=2)
    truth, _ = _fp32_truth(hidden, weight, targets)
    nll = fused_linear_nll(hidden, weight, targets)
    assert _err(nll, truth.double()) < 1e-3
    logits = hidden @ weight.T  # [M, V] bf16, 5 GB
    a = nll_from_logits(logits, targets)
    b = nll_from_logits(logits, targets, impl="torch")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


@pytest.mark.gpu
def test_strided_real_shape_bf16():
    g = torch.Generator(device="cuda").manual_seed(0)
    full = torch.randn(4, 1025, 2048, device="cuda", generator=g, dtype=torch.bfloat16)
    weight = torch.randn(32000, 2048, device="cuda", generator=g, dtype=torch.bfloat16) / 45
    labels = torch.randint(0, 32000, (4, 1025), device="cuda", generator=g)
    hidden, targets = full[:, :-1], labels[:, 1:]
    nll = fused_linear_nll(hidden, weight, targets)
    truth, _ = _fp32_truth(hidden.reshape(-1, 2048), weight, targets.reshape(-1))
    assert _err(nll.reshape(-1), truth.double()) < 2e-3
