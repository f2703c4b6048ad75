"""A seeded, labelled set of near-duplicates for measuring dedup accuracy.

Each *family* is an original document (pseudo-words drawn from a Zipf-like vocabulary,
sentences ending in punctuation) followed by variants derived from it by controlled
edits: word insertions, deletions and adjacent swaps (a per-variant edit rate drawn
uniformly, which spreads true Jaccard over ~0.4-1.0), a boilerplate sentence shared
across families (prepended or appended), truncation of the tail, and case and
punctuation noise (which normalisation removes). Documents of different families share
only the vocabulary and the boilerplate sentences, so their Jaccard is near 0.

The label is exact: :func:`family_pairs` computes the true Jaccard of every
within-family pair from :func:`fastsynth.dedup.shingles`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastsynth.dedup.minhash import shingles

BOILERPLATE = (
    "subscribe to our newsletter for weekly updates and exclusive offers",
    "all rights reserved no part of this page may be reproduced without permission",
    "click here to read the full article on our website",
    "this post may contain affiliate links see our disclosure policy",
)
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "dan", "mor", "tel", "qua", "zin",
              "bre", "ul", "ost", "an", "ix", "gro")


@dataclass
class NearDupSet:
    """texts (list[str]); family (int64 per doc); source (int64: the family's original);
    edit_rate (float64: the word-edit rate applied, 0 for originals)."""

    texts: list[str]
    family: np.ndarray
    source: np.ndarray
    edit_rate: np.ndarray


def _vocabulary(rng: np.random.RandomState, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        k = rng.randint(2, 5)  # 2-4 syllables: 168,000 possible words
        words.add("".join(_SYLLABLES[i] for i in rng.randint(0, len(_SYLLABLES), k)))
    return sorted(words)


def _render(words: list[str], rng: np.random.RandomState, noise: bool) -> str:
    out = []
    for i, w in enumerate(words):
        if noise and rng.rand() < 0.1:
            w = w.upper() if rng.rand() < 0.5 else w.capitalize()
        if noise and rng.rand() < 0.05:
            w = w + rng.choice([",", ";", ":", "!", "'"])
        out.append(w)
        if i % 12 == 11:
            out[-1] += "."
    return " ".join(out)


def make_near_duplicates(n_families: int = 300, variants: tuple[int, int] = (1, 6), seed: int = 0,
                         words: tuple[int, int] = (80, 300), vocab_size: int = 20_000,
                         edit_rate: tuple[float, float] = (0.0, 0.08)) -> NearDupSet:
    """``n_families`` originals, each followed by ``variants[0]..variants[1]`` edited copies."""
    rng = np.random.RandomState(seed)
    vocab = _vocabulary(rng, vocab_size)
    # Zipf-like word frequencies (exponent 1.1, as in natural text).
    p = 1.0 / np.arange(1, vocab_size + 1) ** 1.1
    p /= p.sum()
    texts, family, source, rates = [], [], [], []
    for f in range(n_families):
        n_words = rng.randint(words[0], words[1] + 1)
        base = [vocab[i] for i in rng.choice(vocab_size, n_words, p=p)]
        orig = len(texts)
        texts.append(_render(base, rng, noise=False))
        family.append(f)
        source.append(orig)
        rates.append(0.0)
        for _ in range(rng.randint(variants[0], variants[1] + 1)):
            rate = rng.uniform(*edit_rate)
            w = list(base)
            for _ in range(int(round(rate * len(w)))):
                op = rng.randint(3)
                pos = rng.randint(len(w))
                if op == 0:
                    w.insert(pos, vocab[rng.choice(vocab_size, p=p)])
                elif op == 1 and len(w) > 1:
                    del w[pos]
                elif pos + 1 < len(w):
                    w[pos], w[pos + 1] = w[pos + 1], w[pos]
            if rng.rand() < 0.3:  # boilerplate shared across families
                bp = BOILERPLATE[rng.randint(len(BOILERPLATE))].split()
                w = bp + w if rng.rand() < 0.5 else w + bp
            if rng.rand() < 0.3:  # truncation of up to 10% of the tail
                w = w[: max(1, int(len(w) * (1.0 - rng.uniform(0.0, 0.1))))]
            texts.append(_render(w, rng, noise=rng.rand() < 0.5))
            family.append(f)
            source.append(orig)
            rates.append(rate)
    return NearDupSet(texts, np.asarray(family, np.int64), np.asarray(source, np.int64), np.asarray(rates))


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard of two sets; 0 when both are empty (empty documents never match)."""
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


def family_pairs(data: NearDupSet, ngram: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, true Jaccard) for every pair i < j inside a family, from exact shingle sets."""
    sets = [set(shingles(t, ngram)) for t in data.texts]
    ii, jj, jac = [], [], []
    for f in np.unique(data.family):
        members = np.flatnonzero(data.family == f)
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                i, j = int(members[x]), int(members[y])
                ii.append(i)
                jj.append(j)
                jac.append(jaccard(sets[i], sets[j]))
    return np.asarray(ii, np.int64), np.asarray(jj, np.int64), np.asarray(jac)
