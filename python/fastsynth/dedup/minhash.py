"""MinHash signatures of texts, computed natively from raw UTF-8.

Shingles (``shingles(text)`` returns exactly what is hashed):

* ``shingle="word"`` (default): the text is normalised — simple Unicode case folding
  (ASCII, Latin-1, Latin Extended-A and Additional, Greek incl. final sigma, Cyrillic,
  Armenian, fullwidth Latin; other scripts unchanged), punctuation deleted (ASCII,
  Latin-1, General Punctuation, CJK and fullwidth punctuation, zero-width characters;
  ``"don't"`` -> ``"dont"``), whitespace and control characters separating words, runs
  collapsed — and each window of ``ngram`` consecutive words joined by one space is a
  shingle. A text with 1 to ``ngram - 1`` words gives one shingle of all its words.
* ``shingle="char"``: windows of ``ngram`` code points of the normalised text (spaces
  included), for scripts written without spaces (CJK); shorter texts give one shingle.

Schemes (both use datasketch 2.0's "affine32" permutation family: permutation k maps a
32-bit pre-hash x to ``a_k * x + b_k mod 2**32`` with ``a_k`` odd, and the signature keeps
the minimum; ``a = randint(0, 2**31, n)*2 + 1`` then ``b = randint(0, 2**32, n)``, uint32,
from ``numpy.random.RandomState(seed)``):

* ``compat=None`` (fast): x = the high 32 bits of fastsynth's 64-bit shingle hash
  (``_native.shingle_hash64``): for word shingles, each space-separated word's hash
  (up to 16 bytes: its two 8-byte halves, salted by the length, through one
  64x64->128-bit multiply-fold; longer words: a multiply-fold chain over 8-byte blocks)
  combined as a polynomial mod 2**64 and finished by one more multiply-fold, so each
  word is hashed once per document; for character shingles, hash64 of the bytes (the chain,
  then MurmurHash3 fmix64). Word hashes come straight from the raw UTF-8 where a word is
  plain ASCII (an AVX2 scan; the normalised text is built only around non-ASCII runs). The same 64-bit values form the shingle sets
  that ``dedup(verify=True)`` compares exactly.
* ``compat="datasketch"``: x = MurmurHash3 fmix32 of ``sha1_hash32`` (first 4 bytes of
  SHA-1, little-endian) — bit-identical to ``datasketch.MinHash(num_perm, seed)``
  updated with the same shingles encoded as UTF-8.

A document with no shingles (empty, whitespace- or punctuation-only, or an Arrow null)
has the all-``0xFFFFFFFF`` signature (datasketch's empty MinHash). LSH and dedup never
index such signatures, so empty documents never match each other.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from fastsynth import _native
from fastsynth._texts import native_chunks, resolve_threads
from fastsynth.errors import ConfigError

#: Sentinel of an empty signature (no shingles).
EMPTY_HASH = np.uint32(0xFFFFFFFF)
#: num_perm range: at least one permutation; 8192 is far past any accuracy need
#: (the estimate's standard error is sqrt(J(1-J)/num_perm)).
MAX_NUM_PERM = 8192
#: ngram range: shingles longer than 64 words/characters match almost nothing.
MAX_NGRAM = 64
SCHEMES = ("fast", "datasketch")
SHINGLE_KINDS = ("word", "char")


def check_num_perm(num_perm: Any) -> int:
    if isinstance(num_perm, bool) or not isinstance(num_perm, (int, np.integer)) or not 1 <= num_perm <= MAX_NUM_PERM:
        raise ConfigError(f"num_perm must be an integer in [1, {MAX_NUM_PERM}], got {num_perm!r}")
    return int(num_perm)


def check_ngram(ngram: Any) -> int:
    if isinstance(ngram, bool) or not isinstance(ngram, (int, np.integer)) or not 1 <= ngram <= MAX_NGRAM:
        raise ConfigError(f"ngram must be an integer in [1, {MAX_NGRAM}], got {ngram!r}")
    return int(ngram)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def scheme_of(compat: str | None) -> str:
    if compat is None:
        return "fast"
    if compat != "datasketch":
        raise ConfigError(f"compat must be None or 'datasketch', got {compat!r}")
    return "datasketch"


def check_shingle(shingle: str) -> str:
    if shingle not in SHINGLE_KINDS:
        raise ConfigError(f"shingle must be one of {SHINGLE_KINDS}, got {shingle!r}")
    return shingle


@functools.lru_cache(maxsize=64)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
    a.flags.writeable = False
    b.flags.writeable = False
    return a, b


def permutations(num_perm: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The permutation parameters ``(a, b)``, each uint32 ``(num_perm,)`` (read-only)."""
    return _permutations(check_num_perm(num_perm), check_seed(seed))


def shingles(text: str | bytes, ngram: int = 5, shingle: str = "word") -> list[str]:
    """The normalised shingles of ``text`` that :func:`minhash` hashes (their UTF-8), in order.

    Duplicates are kept (hashing them again does not change a minimum).
    """
    if not isinstance(text, (str, bytes)):
        raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
    return _native.shingles(text, check_ngram(ngram), check_shingle(shingle))


def _use_gpu(device: str) -> bool:
    """True for ``device="cuda"`` (checked: torch installed, a CUDA device present). ``"auto"``
    and ``"cpu"`` run on the CPU: measured on an H200 host with 16 cores, the GPU path end to end
    (shingling and hashing on the CPU, then the permutation kernel) took 0.55x the CPU path's
    throughput — the kernel itself is 45x faster, but shingling is most of the work and stays on
    the CPU (benchmarks/RESULTS.md, 2026-11-27)."""
    if device in ("cpu", "auto"):
        return False
    if device != "cuda":
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    try:
        import torch
    except ImportError:
        from fastsynth.errors import DependencyError

        raise DependencyError("torch", "train", "minhash on the GPU") from None
    if not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch.cuda.is_available() is False")
    return True


def minhash(texts: Any, num_perm: int = 128, ngram: int = 5, seed: int = 1, compat: str | None = None,
            threads: int | None = None, *, shingle: str = "word", device: str = "auto") -> np.ndarray:
    """MinHash signatures, uint32 ``(len(texts), num_perm)``, row i for ``texts[i]``.

    ``texts``: list/tuple of str or bytes, or a pyarrow string array (zero copy). ASCII str and
    bytes are read in place; other str are encoded to UTF-8 by the worker threads (a lone
    surrogate raises ValueError naming the item).
    ``threads``: None or 0 = all cores. ``device``: "auto" and "cpu" run on the CPU; "cuda" runs
    the permutation step as a Triton kernel (shingling and hashing stay on the CPU; the result is
    bit-identical). The CPU path is the faster one end to end (see ``_use_gpu``); "cuda" is for
    pipelines whose CPU cores are busy elsewhere.
    """
    num_perm = check_num_perm(num_perm)
    ngram = check_ngram(ngram)
    scheme = scheme_of(compat)
    check_shingle(shingle)
    nthreads = resolve_threads(threads)
    a, b = _permutations(num_perm, check_seed(seed))
    gpu = _use_gpu(device)
    parts = []
    for chunk in native_chunks(texts):
        if gpu:
            values, offsets = _native.shingle_prehashes(chunk, ngram, shingle, scheme, nthreads)
            from fastsynth.kernels.minhash import minhash_csr_numpy

            parts.append(minhash_csr_numpy(values, offsets, a, b, device="cuda"))
        else:
            parts.append(_native.minhash(chunk, a, b, ngram, shingle, scheme, nthreads))
    if not parts:
        return np.empty((0, num_perm), dtype=np.uint32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def is_empty(sigs: np.ndarray) -> np.ndarray:
    """bool ``(n,)``: rows that are the empty signature (documents without shingles)."""
    return np.all(sigs == EMPTY_HASH, axis=1)


def shingle_sets(texts: Any, ngram: int = 5, shingle: str = "word",
                 threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each document's sorted, de-duplicated shingle set as hash64 values, in CSR layout:
    (values uint64, offsets int64 ``(n + 1,)``). Used for exact-Jaccard verification; two
    different shingles share a 64-bit hash with probability ~2**-64 per pair."""
    ngram = check_ngram(ngram)
    check_shingle(shingle)
    nthreads = resolve_threads(threads)
    values, offsets = [], [np.zeros(1, dtype=np.int64)]
    base = 0
    for chunk in native_chunks(texts):
        v, o = _native.shingle_sets(chunk, ngram, shingle, nthreads)
        values.append(v)
        offsets.append(o[1:] + base)
        base += v.size
    return (np.concatenate(values) if values else np.empty(0, np.uint64)), np.concatenate(offsets)
