"""The public API on the pure-torch path (impl="torch"): numerics, chunking, shapes, errors.

These need no Triton at all and are fast; the kernel itself is tested in test_fused_linear_nll.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from kernel_testing import eager_nll, make_inputs, truth_nll
from torch.utils._python_dispatch import TorchDispatchMode

from pplaw_kernels import fused_linear_nll, nll_from_logits
from pplaw_kernels.reference import fused_linear_nll_reference, nll_from_logits_reference


def _err(x, truth):
    return (x.double() - truth).abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_torch_impl_is_at_least_as_accurate_as_eager(dtype):
    hidden, weight, targets = make_inputs(37, 24, 515, dtype, seed=1)
    truth, truth_lse = truth_nll(hidden, weight, targets)
    nll, lse = fused_linear_nll(hidden, weight, targets, impl="torch", return_lse=True)
    assert nll.dtype == torch.float32 and nll.shape == (37,)
    eager = eager_nll(hidden, weight, targets)
    assert _err(nll, truth) <= _err(eager, truth) + 1e-5
    assert _err(nll, truth) < 1e-4  # fp32 accumulation of exactly-representable products
    assert _err(lse, truth_lse) < 1e-4
    assert (nll[targets == -100] == 0).all()
    assert (nll >= 0).all()


def test_chunked_equals_single_chunk_and_never_builds_full_logits():
    m, h, v = 37, 24, 515
    hidden, weight, targets = make_inputs(m, h, v, torch.float32, seed=2)
    one, one_lse = fused_linear_nll_reference(hidden, weight, targets, block_m=m, block_v=v)

    class MaxNumel(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for o in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(o, torch.Tensor) and o.dtype == torch.float32:
                    MaxNumel.largest = max(MaxNumel.largest, o.numel())
            return out

    with MaxNumel():
        chunked, chunked_lse = fused_linear_nll_reference(hidden, weight, targets, block_m=8, block_v=100)
    # the largest fp32 tensor is a [100, H] weight chunk or one [8, 100] logits chunk, never [M, V]
    assert MaxNumel.largest <= max(8 * 100, 100 * h) < m * v
    torch.testing.assert_close(chunked, one, rtol=0, atol=2e-5)
    torch.testing.assert_close(chunked_lse, one_lse, rtol=0, atol=2e-5)


def test_leading_dims_strided_views_bias_scale_softcap():
    g = torch.Generator().manual_seed(3)
    full = torch.randn(3, 9, 16, generator=g, dtype=torch.float32)
    labels = torch.randint(0, 50, (3, 9), generator=g)
    labels[0, 4] = 7  # ignore_index inside [0, V)
    w_t = torch.randn(16, 50, generator=g)  # weight given as a transposed (non-contiguous) view
    bias = torch.randn(50, generator=g, dtype=torch.float64)
    hidden, targets, weight = full[:, :-1], labels[:, 1:], w_t.T
    assert not hidden.is_contiguous() and not targets.is_contiguous() and not weight.is_contiguous()
    nll = fused_linear_nll(
        hidden, weight, targets, bias=bias, ignore_index=7, logit_scale=0.7, softcap=3.0, impl="torch"
    )
    truth, _ = truth_nll(hidden, weight, targets, bias=bias, ignore_index=7, logit_scale=0.7, softcap=3.0)
    assert nll.shape == (3, 8)
    assert _err(nll, truth) < 1e-5
    assert nll[0, 3] == 0  # labels[0, 4] == ignore_index


def test_vocab_of_one_gives_zero_nll():
    hidden, weight, targets = make_inputs(5, 4, 1, torch.float32, ignore_frac=0.0)
    nll, lse = fused_linear_nll(hidden, weight, targets, impl="torch", return_lse=True)
    assert torch.equal(nll, torch.zeros(5))
    torch.testing.assert_close(lse, (hidden @ weight.T).squeeze(1))


def test_empty_input():
    nll, lse = fused_linear_nll(torch.zeros(0, 4), torch.zeros(3, 4), torch.zeros(0, dtype=torch.long), return_lse=True)
    assert nll.shape == (0,) and lse.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nll_from_logits_torch(dtype):
    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(2, 11, 300, generator=g) * 4).to(dtype)
    targets = torch.randint(0, 300, (2, 11), generator=g)
    targets[1, 2] = -100
    nll, lse = nll_from_logits(logits, targets, impl="torch", return_lse=True)
    z = logits.double().reshape(-1, 300)
    truth = torch.logsumexp(z, -1) - z.gather(1, targets.reshape(-1, 1).clamp(0)).squeeze(1)
    truth[targets.reshape(-1) == -100] = 0
    assert _err(nll.reshape(-1), truth) < 1e-4
    chunked, _ = nll_from_logits_reference(logits.reshape(-1, 300), targets.reshape(-1), block_m=4, block_v=64)
    torch.testing.assert_close(chunked, nll.reshape(-1), rtol=0, atol=1e-5)


def test_errors_name_the_argument():
    hidden, weight, targets = make_inputs(6, 8, 10, torch.float32)
    with pytest.raises(ValueError, match="`weight` must be \\[V, H\\] with H=8"):
        fused_linear_nll(hidden, weight[:, :5], targets)
    with pytest.raises(ValueError, match="`targets` shape \\(5,\\)"):
        fused_linear_nll(hidden, weight, targets[:5])
    with pytest.raises(ValueError, match="`bias` must be \\[V\\]=\\[10\\]"):
        fused_linear_nll(hidden, weight, targets, bias=torch.zeros(9))
    with pytest.raises(TypeError, match="`weight` dtype torch.float16 must match `hidden` dtype torch.float32"):
        fused_linear_nll(hidden, weight.half(), targets)
    with pytest.raises(TypeError, match="`hidden` must be float32, float16 or bfloat16"):
        fused_linear_nll(hidden.double(), weight.double(), targets)
    with pytest.raises(TypeError, match="`targets` must be an integer tensor"):
        fused_linear_nll(hidden, weight, targets.float())
    with pytest.raises(TypeError, match="`hidden` must be a torch.Tensor"):
        fused_linear_nll(hidden.numpy(), weight, targets)
    with pytest.raises(ValueError, match="`impl` must be one of"):
        fused_linear_nll(hidden, weight, targets, impl="cuda")
    with pytest.raises(ValueError, match="`softcap` must be None or a finite number > 0"):
        fused_linear_nll(hidden, weight, targets, softcap=0.0)
    with pytest.raises(ValueError, match="`logits` must be \\[..., V\\]"):
        nll_from_logits(torch.zeros(4), targets[:0])


def test_out_of_range_targets():
    hidden, weight, targets = make_inputs(6, 8, 10, torch.float32, ignore_frac=0.0)
    bad = targets.clone()
    bad[2] = 10
    bad[4] = -1
    with pytest.raises(ValueError, match="outside \\[0, 10\\).*value\\(s\\) \\[10, -1\\] at flat position\\(s\\) \\[2, 4\\]"):
        fused_linear_nll(hidden, weight, bad, impl="torch")
    nll = fused_linear_nll(hidden, weight, bad, impl="torch", check_targets=False)
    assert nll[2].isnan() and nll[4].isnan() and nll[[0, 1, 3, 5]].isfinite().all()
    with pytest.raises(ValueError, match="outside \\[0, 10\\)"):
        nll_from_logits(hidden @ weight.T, bad)


def test_forward_only():
    hidden, weight, targets = make_inputs(6, 8, 10, torch.float32)
    weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="forward-only.*`weight` requires grad.*torch.no_grad"):
        fused_linear_nll(hidden, weight, targets)
    with torch.no_grad():
        fused_linear_nll(hidden, weight, targets)
    with torch.inference_mode():
        fused_linear_nll(hidden, weight, targets)
    with pytest.raises(RuntimeError, match="forward-only"):
        nll_from_logits((hidden @ weight.T), targets)


def test_import_does_not_import_triton():
    code = "import sys, pplaw_kernels; assert 'triton' not in sys.modules, 'triton imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inputs_are_never_modified_by_the_in_place_chunk_passes(dtype):
    """The torch path scales, soft-caps and exponentiates each logits chunk in place in a scratch buffer:
    the caller's hidden, weight, bias and logits must come out bit-identical, whatever the chunking."""
    hidden, weight, targets = make_inputs(19, 12, 130, dtype, seed=6)
    bias = torch.randn(130, dtype=dtype)
    logits = (hidden.float() @ weight.float().T).to(dtype)
    before = [t.clone() for t in (hidden, weight, bias, logits)]
    truth, _ = truth_nll(hidden, weight, targets, bias=bias, logit_scale=0.5, softcap=4.0)
    for bm, bv in ((19, 130), (4, 32), (7, 1)):
        nll, _ = fused_linear_nll_reference(hidden, weight, targets, bias, logit_scale=0.5, softcap=4.0,
                                            block_m=bm, block_v=bv)
        assert _err(nll, truth) < 1e-4
        nll_from_logits_reference(logits, targets, logit_scale=0.5, softcap=4.0, block_m=bm, block_v=bv)
    for t, b in zip((hidden, weight, bias, logits), before):
        assert torch.equal(t, b)


def test_cpu_default_blocks_are_cache_sized_and_cover_small_inputs():
    from pplaw_kernels.reference import CPU_CHUNK_ELEMENTS, default_blocks

    bm, bv = default_blocks(4096, 32000, device="cpu")
    assert bm * bv <= CPU_CHUNK_ELEMENTS and bv < 32000 and bm > 1  # several vocab slices, many rows each
    assert default_blocks(3, 50, device="cpu") == (3, 50)  # tiny inputs: one chunk
    gm, gv = default_blocks(4096, 32000, device="cuda")
    assert gv == 32000 and gm * gv > CPU_CHUNK_ELEMENTS  # GPUs keep the big chunks
