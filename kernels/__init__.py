"""Triton kernels, shipped inside the wheel as ``fastsynth.kernels``.

Kernels are imported lazily by their callers; importing this package never imports
triton or torch. On a CPU-only machine, tests run them under ``TRITON_INTERPRET=1``.
"""
