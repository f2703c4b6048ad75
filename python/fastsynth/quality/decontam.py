"""Decontamination: flag generated text that overlaps a user-supplied evaluation set.

Overlap is measured on word n-grams of normalised text (lower case, runs of word
characters only), the way GPT-3 and Llama reports check benchmark contamination (GPT-3
used 13-grams on documents; questions are short, so the default here is 8). A text is
contaminated when at least ``min_overlap`` of its n-grams occur in the evaluation set
(default: any one). A text shorter than ``n`` words is treated as one n-gram of all its
words, matched against evaluation texts' n-grams and their whole (short) texts; an
evaluation text shorter than ``n`` words found whole inside a generated text makes that
text's overlap 1.0 (a short benchmark question copied into a longer generated text).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastsynth.errors import ConfigError


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def ngrams(text: str, n: int) -> set[str]:
    """Word n-grams of normalised ``text``, each joined by one space; short texts -> one gram."""
    w = _words(text)
    if not w:
        return set()
    if len(w) < n:
        return {" ".join(w)}
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def _sub_grams(words: list[str], n: int) -> set[str]:
    """Every contiguous run of 1..n-1 words (so a short query can match inside long text)."""
    out = set()
    for k in range(1, n):
        out.update(" ".join(words[i:i + k]) for i in range(len(words) - k + 1))
    return out


def _check_texts(name: str, texts: Any) -> None:
    # A single string would be read character by character; a dict by its keys.
    if isinstance(texts, (str, bytes, dict, set, frozenset)):
        raise ConfigError(f"{name} must be a list of strings, got {type(texts).__name__}")


@dataclass
class Decontaminator:
    """Built once from the evaluation texts; :meth:`overlap` and :meth:`contaminated` then
    check generated texts. ``min_overlap`` in (0, 1]: fraction of a text's n-grams that
    must be found (any one when left at the default 0 < x, i.e. the smallest positive)."""

    eval_texts: Iterable[str]
    n: int = 8
    min_overlap: float = 1e-9
    _grams: set[str] = field(default_factory=set, init=False, repr=False)
    _short: set[str] = field(default_factory=set, init=False, repr=False)
    _short_eval: dict[int, set[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"n must be an integer >= 1, got {self.n!r}")
        if isinstance(self.min_overlap, bool) or not isinstance(self.min_overlap, (int, float)) \
                or not 0 < self.min_overlap <= 1:
            raise ConfigError(f"min_overlap must be a number in (0, 1], got {self.min_overlap!r}")
        _check_texts("eval_texts", self.eval_texts)
        for t in self.eval_texts:
            if not isinstance(t, str):
                raise ConfigError(f"eval_texts must be strings, got {type(t).__name__}")
            w = _words(t)
            self._grams |= ngrams(t, self.n)
            # short generated texts (< n words) must also match inside longer eval texts
            self._short |= _sub_grams(w, self.n)
            if 0 < len(w) < self.n:
                self._short_eval.setdefault(len(w), set()).add(" ".join(w))

    def overlap(self, texts: Sequence[str]) -> np.ndarray:
        """float64 (len(texts),): the fraction of each text's n-grams found in the eval set."""
        _check_texts("texts", texts)
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ConfigError(f"texts[{i}] must be a string, got {type(t).__name__}")
        out = np.zeros(len(texts))
        for i, t in enumerate(texts):
            g = ngrams(t, self.n)
            if not g:
                continue
            w = _words(t)
            if len(w) < self.n:
                out[i] = 1.0 if (g & self._short or g & self._grams) else 0.0
            else:
                out[i] = len(g & self._grams) / len(g)
            if out[i] < 1.0 and any(" ".join(w[j:j + k]) in evs for k, evs in self._short_eval.items()
                                    for j in range(len(w) - k + 1)):
                out[i] = 1.0
        return out

    def contaminated(self, texts: Sequence[str]) -> np.ndarray:
        """bool (len(texts),): overlap >= ``min_overlap``."""
        return self.overlap(texts) >= self.min_overlap
