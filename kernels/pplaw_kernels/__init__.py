"""pplaw-kernels: a Triton kernel fusing the lm_head matmul with per-token NLL (see fused_linear_nll.py)."""

__version__ = "0.1.0"
