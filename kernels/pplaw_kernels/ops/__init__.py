"""Triton kernels (importing a module here imports triton). One module per kernel: Triton kernels + launcher."""
