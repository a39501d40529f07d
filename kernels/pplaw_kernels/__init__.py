"""pplaw-kernels: the lm_head matmul fused with per-token NLL (Triton), plus a chunked pure-torch reference.

    from pplaw_kernels import fused_linear_nll, nll_from_logits
    nll = fused_linear_nll(hidden[:, :-1], lm_head.weight, labels[:, 1:])   # fp32 [B, T-1]

Importing this package needs no GPU and does not import triton; the Triton kernels in
:mod:`pplaw_kernels.ops` are imported the first time a Triton implementation runs. See README.md.
"""

from .functional import fused_linear_nll, nll_from_logits

__version__ = "0.1.0"
__all__ = ["fused_linear_nll", "nll_from_logits", "__version__"]
