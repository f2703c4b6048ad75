"""MinHash on the GPU: the Triton permutation kernel (fastsynth.kernels.minhash) against the C++
CPU path, bit-identical, documents per second.

Corpus: 20,000 synthetic documents of 300 Zipf-distributed words (~2 KB each, ~40 MB; 5% of
the vocabulary non-ASCII), 128 permutations, word 5-grams, seed 1 — the sizes of the MinHash
reference numbers in docs/architecture.md ("Reference numbers"). Rows: the CPU path (all
cores), the GPU path end to end (shingling and hashing on the CPU, permutations on the GPU,
result copied back), and the kernel alone on pre-hashed shingles already on the GPU. Each
timing is the median of 3 runs after one warm-up run (which also compiles the kernel).
Needs the C++ extension (``fastsynth._native``) for the CPU side.
"""
from __future__ import annotations

import statistics
import time

N_DOCS, WORDS_PER_DOC, VOCAB = 20_000, 300, 50_000
NUM_PERM, NGRAM, SEED = 128, 5, 1


def synthetic_corpus(seed: int = 0) -> list[str]:
    import numpy as np
    rng = np.random.default_rng(seed)
    letters = rng.integers(ord("a"), ord("z") + 1, size=(VOCAB, 9), dtype=np.uint8)
    lengths = rng.integers(2, 10, size=VOCAB)
    vocab = [row[:n].tobytes().decode("ascii") for row, n in zip(letters, lengths)]
    for i in range(0, VOCAB, 20):                   # every 20th word gets a non-ASCII letter
        vocab[i] = vocab[i] + "éßж"[i % 3]
    ranks = np.minimum(rng.zipf(1.2, size=(N_DOCS, WORDS_PER_DOC)), VOCAB) - 1
    words = np.array(vocab, dtype=object)[ranks]
    return [" ".join(row) for row in words.tolist()]


def _median_time(fn, sync, runs: int = 3) -> tuple[float, object]:
    out = fn()
    sync()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def run(device) -> list[dict]:
    import numpy as np
    import torch
    try:
        from fastsynth import _native
        from fastsynth.dedup import minhash, permutations
    except ImportError as exc:
        return [{"case": "minhash", "ok": None,
                 "note": f"skipped: {exc} (build the C++ extension: pip install -e .)"}]
    from fastsynth.dedup.minhash import scheme_of
    from fastsynth.kernels.minhash import minhash_csr

    texts = synthetic_corpus()
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    case = f"{N_DOCS} docs {mb:.0f} MB, {NUM_PERM} perms, word {NGRAM}-grams"
    no_sync = lambda: None  # noqa: E731
    gpu_sync = lambda: torch.cuda.synchronize(device)  # noqa: E731

    t_cpu, cpu = _median_time(lambda: minhash(texts, NUM_PERM, NGRAM, SEED, device="cpu"), no_sync)
    t_gpu, gpu = _median_time(lambda: minhash(texts, NUM_PERM, NGRAM, SEED, device="cuda"), gpu_sync)

    values, offsets = _native.shingle_prehashes(texts, NGRAM, "word", scheme_of(None), 0)
    a, b = permutations(NUM_PERM, SEED)
    # uint32 travels as int32 bit patterns (see kernels/minhash.py)
    v_d, a_d, b_d = (torch.from_numpy(np.array(x, dtype=np.uint32).view(np.int32)).to(device)
                     for x in (values, a, b))
    o_d = torch.from_numpy(np.ascontiguousarray(offsets, dtype=np.int64)).to(device)
    t_kernel, kern = _median_time(lambda: minhash_csr(v_d, o_d, a_d, b_d), gpu_sync)
    kern = kern.cpu().numpy().view(np.uint32)

    rows = [{"case": case, "backend": "cpu (C++, all cores)", "docs/s": N_DOCS / t_cpu,
             "ms": t_cpu * 1e3}]
    for backend, t, sigs in (("gpu end to end", t_gpu, gpu), ("gpu kernel only", t_kernel, kern)):
        same = bool(np.array_equal(cpu, sigs))
        rows.append({"case": case, "backend": backend, "docs/s": N_DOCS / t, "ms": t * 1e3,
                     "x cpu": t_cpu / t, "ok": same,
                     "note": "bit-identical to cpu" if same else "DIFFERS from cpu"})
    return rows
