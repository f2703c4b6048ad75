"""Online near-duplicate removal of generated questions.

:func:`question_filter` returns an object with ``add(key, text) -> str | None``: it
returns the key of an earlier near-duplicate (and does not insert the text), or ``None``
after inserting a new text. Two implementations:

* :class:`MinHashFilter` — MinHash signatures (``fastsynth.dedup.minhash``) over word
  3-grams (questions are ~10-20 words, so the corpus-level default of 5-grams would leave
  too few shingles to compare) in an LSH index (``fastsynth.dedup.LSHIndex``); a
  candidate counts as a duplicate when the signatures' estimated Jaccard is at least the
  threshold (the LSH banding alone admits false positives).
* :class:`ExactFilter` — the fallback when ``fastsynth.dedup`` is not importable:
  duplicates are texts equal after normalisation (lower case, word characters only,
  single spaces). It catches copies and case/punctuation variants, *not* paraphrases.
"""
from __future__ import annotations

import re
from typing import Any, Protocol

import numpy as np

# Word 3-grams: a 12-word question has 10 of them, enough for a Jaccard estimate.
QUESTION_NGRAM = 3


class QuestionFilter(Protocol):
    kind: str

    def add(self, key: str, text: str) -> str | None: ...


def normalize_text(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


class ExactFilter:
    """Duplicates = equal normalised text (see the module docstring)."""

    kind = "exact-normalised"

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def add(self, key: str, text: str) -> str | None:
        n = normalize_text(text)
        if n in self._seen:
            return self._seen[n]
        self._seen[n] = key
        return None


class MinHashFilter:
    """MinHash + LSH near-duplicate filter (see the module docstring)."""

    kind = "minhash-lsh"

    def __init__(self, dedup: Any, threshold: float = 0.7, num_perm: int = 128, ngram: int = QUESTION_NGRAM,
                 seed: int = 1):
        self._dedup = dedup
        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self.seed = seed
        self._index = dedup.LSHIndex(threshold=threshold, num_perm=num_perm)
        self._sigs: dict[str, np.ndarray] = {}
        self._exact = ExactFilter()  # identical texts are duplicates whatever the signature says

    def add(self, key: str, text: str) -> str | None:
        hit = self._exact.add(key, text)
        if hit is not None:
            return hit
        sig = np.asarray(self._dedup.minhash([normalize_text(text) or text], num_perm=self.num_perm,
                                             ngram=self.ngram, seed=self.seed))
        cands = self._index.query(sig)
        cands = cands[0] if len(cands) and not isinstance(cands[0], str) else cands
        for c in cands:
            if float(np.mean(self._sigs[c] == sig[0])) >= self.threshold:
                return c
        self._index.insert([key], sig)
        self._sigs[key] = sig[0]
        return None


def question_filter(threshold: float = 0.7, num_perm: int = 128, prefer: str = "auto") -> QuestionFilter:
    """A MinHash/LSH filter when ``fastsynth.dedup`` is importable (``prefer="auto"``),
    otherwise (or with ``prefer="exact"``) the exact-normalised-text fallback."""
    if prefer != "exact":
        try:
            from fastsynth import dedup  # merged separately; absent in some builds
            if hasattr(dedup, "LSHIndex") and hasattr(dedup, "minhash"):
                return MinHashFilter(dedup, threshold=threshold, num_perm=num_perm)
        except ImportError:
            pass
    return ExactFilter()
