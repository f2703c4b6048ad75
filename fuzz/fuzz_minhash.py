"""Fuzz target: shingling and MinHash (``fastsynth.dedup.shingles``/``minhash``/
``shingle_sets`` and the native word scanner, pre-hashes and Arrow view).

Input: ngram (1-8), shingle kind, num_perm (1-16), seed, thread count, container and up
to 4 texts (str — including lone surrogates — or bytes, possibly invalid UTF-8).

Failure (a :class:`Finding`, or any exception escaping ``check``):

* the SIMD and scalar normalisers give different shingles, or the SIMD and scalar word
  scanners different word hashes;
* ``compat="datasketch"`` signatures differ from datasketch 2.0's ``MinHash`` updated
  with the UTF-8 of ``shingles(text)`` (the documented bit-identity);
* fast-scheme pre-hashes are not the high 32 bits of ``shingle_hash64`` of the returned
  shingles, ``shingle_sets`` is not their sorted distinct hash64 set, ``minhash`` differs
  from ``minhash_from_prehash`` of those pre-hashes, or a document without shingles does
  not get the all-0xFFFFFFFF signature;
* results depend on str vs UTF-8 bytes, list vs Arrow, or the thread count;
* an error other than ``ValueError`` naming the item for a lone surrogate; a crash or
  sanitizer report in the native code.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from bytesource import ByteSource
from harness import Finding, instrumented, main

with instrumented():
    import importlib

    from fastsynth import _native
    # the module, not the function of the same name that fastsynth.dedup exports
    mh = importlib.import_module("fastsynth.dedup.minhash")

try:
    import datasketch
except ImportError:  # test extra; without it the compat comparison is skipped
    datasketch = None

KNOWN: dict[str, str] = {}


def _utf8(t: str | bytes) -> bytes | None:
    if isinstance(t, bytes):
        return t
    try:
        return t.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _datasketch_row(shingles: list[str], num_perm: int, seed: int) -> np.ndarray:
    m = datasketch.MinHash(num_perm, seed=seed, scheme="affine32")
    m.update_batch([s.encode("utf-8") for s in shingles])
    return np.asarray(m.hashvalues, dtype=np.uint32)


def check(data: bytes) -> None:
    src = ByteSource(data)
    ngram = src.int(1, 8)
    kind = src.choice(["word", "char"])
    num_perm = src.int(1, 16)
    seed = src.int(0, 2**32 - 1)
    threads = src.int(1, 3)
    texts = [src.text_or_bytes(240) for _ in range(src.int(0, 4))]
    raw = [_utf8(t) for t in texts]
    bad = [i for i, b in enumerate(raw) if b is None]
    try:
        sigs = mh.minhash(texts, num_perm=num_perm, ngram=ngram, seed=seed, threads=threads,
                          shingle=kind, device="cpu")
    except ValueError as e:
        if not bad:
            raise Finding("refused_valid_input", f"{type(e).__name__}: {e}")
        if f"texts[{bad[0]}]" not in str(e) or "surrogate" not in str(e):
            raise Finding("unnamed_item", f"error does not name texts[{bad[0]}]: {e}")
        return
    if bad:
        raise Finding("accepted_lone_surrogate", f"texts[{bad[0]}] accepted")
    if sigs.dtype != np.uint32 or sigs.shape != (len(texts), num_perm):
        raise Finding("wrong_shape", f"{sigs.dtype} {sigs.shape}")

    # Per text: normaliser and scanner agreement, and what is hashed.
    per_text = []
    for i, t in enumerate(texts):
        simd = _native.shingles(t, ngram, kind, True)
        scalar = _native.shingles(t, ngram, kind, False)
        if simd != scalar:
            raise Finding("simd_scalar_shingles", f"texts[{i}]={t!r}: {simd} != {scalar}")
        if _native.shingles(raw[i], ngram, kind, True) != simd:
            raise Finding("str_bytes_shingles", f"texts[{i}]={t!r}")
        if _native.word_hashes(t, True) != _native.word_hashes(t, False):
            raise Finding("simd_scalar_word_hashes", f"texts[{i}]={t!r}")
        per_text.append([_native.shingle_hash64(s.encode("utf-8"), kind) for s in simd])
        if not simd and not np.all(sigs[i] == mh.EMPTY_HASH):
            raise Finding("empty_signature", f"texts[{i}]={t!r} has no shingles but {sigs[i]}")

    a, b = mh.permutations(num_perm, seed)
    values, offsets = _native.shingle_prehashes(texts, ngram, kind, "fast", threads)
    sets, set_off = _native.shingle_sets(texts, ngram, kind, threads)
    for i, hashes in enumerate(per_text):
        if values[offsets[i]:offsets[i + 1]].tolist() != [h >> 32 for h in hashes]:
            raise Finding("prehash_mismatch", f"texts[{i}]={texts[i]!r}")
        if sets[set_off[i]:set_off[i + 1]].tolist() != sorted(set(hashes)):
            raise Finding("shingle_set_mismatch", f"texts[{i}]={texts[i]!r}")
    if not np.array_equal(_native.minhash_from_prehash(values, offsets, a, b, 1), sigs):
        raise Finding("prehash_minhash_mismatch", "minhash != minhash_from_prehash")

    # Containers and threads.
    if not np.array_equal(mh.minhash(raw, num_perm=num_perm, ngram=ngram, seed=seed,
                                     threads=1 + threads % 3, shingle=kind, device="cpu"), sigs):
        raise Finding("container_dependent", "UTF-8 bytes (other thread count) differ from str")
    if texts:
        arr = pa.array(raw, pa.binary())
        if not np.array_equal(mh.minhash(arr, num_perm=num_perm, ngram=ngram, seed=seed,
                                         shingle=kind, device="cpu"), sigs):
            raise Finding("container_dependent", "Arrow array differs from list")

    if datasketch is not None:
        ds = mh.minhash(texts, num_perm=num_perm, ngram=ngram, seed=seed, compat="datasketch",
                        threads=threads, shingle=kind, device="cpu")
        for i, t in enumerate(texts):
            want = _datasketch_row(_native.shingles(t, ngram, kind, True), num_perm, seed)
            if not np.array_equal(ds[i], want):
                raise Finding("datasketch_mismatch", f"texts[{i}]={t!r}: {ds[i]} != {want}")


if __name__ == "__main__":
    main(check, KNOWN)
