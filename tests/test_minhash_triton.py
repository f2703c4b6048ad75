"""The Triton MinHash kernel, run on the CPU by the Triton interpreter.

TRITON_INTERPRET must be set before the kernel is defined, and another test module may
already have imported triton in this process, so the check runs in a fresh interpreter.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import numpy as np
    from fastsynth import _native
    from fastsynth.dedup import permutations
    from fastsynth.kernels.minhash import minhash_csr_numpy

    rng = np.random.RandomState(0)
    words = ["alpha", "beta", "Gamma", "δέλτα", "эпсилон", "日本", "😀", "x"]
    docs = [" ".join(rng.choice(words, rng.randint(0, 90))) for _ in range(40)] + ["", "one"]
    for scheme in ("fast", "datasketch"):
        for num_perm, seed in ((128, 1), (100, 3), (7, 2)):
            v, o = _native.shingle_prehashes(docs, 3, "word", scheme, 0)
            a, b = permutations(num_perm, seed)
            gpu = minhash_csr_numpy(v, o, a, b, device="cpu")
            cpu = _native.minhash(docs, a, b, 3, "word", scheme, 0)
            assert gpu.dtype == np.uint32 and gpu.shape == cpu.shape
            assert np.array_equal(gpu, cpu), (scheme, num_perm)
            assert (gpu[-2] == 0xFFFFFFFF).all()
    # all documents empty: no shingles at all
    v, o = _native.shingle_prehashes(["", " "], 3, "word", "fast", 0)
    a, b = permutations(16, 1)
    assert (minhash_csr_numpy(v, o, a, b, device="cpu") == 0xFFFFFFFF).all()
    print("OK")
""")


def test_triton_kernel_bit_identical_to_cpu_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")
