"""Concept names: normalisation and merging of near-duplicate names.

``normalize("The  Lists ")`` -> ``"list"``: Unicode NFKC, lower case, punctuation and
leading articles removed, whitespace collapsed, each word singularised by English suffix
rules. :func:`merge_names` then maps names that are still near-duplicates (same word set
in another order, one edit apart, or character-trigram Jaccard at or above a threshold)
onto one canonical name, so the global concept graph has one node per idea.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable

_ARTICLES = {"the", "a", "an"}
# Words ending in "s" that are not plurals (or whose singular a suffix rule would break).
_S_WORDS = {"is", "was", "has", "this", "its", "us", "as", "process", "class", "access", "address",
            "bus", "status", "analysis", "basis", "axis", "series", "species", "news", "physics",
            "mathematics", "economics", "politics", "statistics", "always", "alias", "canvas",
            "gas", "lens", "bias", "chaos", "corpus", "focus", "virus", "campus", "bonus", "atlas",
            "thus", "less", "unless", "plus", "minus", "yes", "kwargs", "args", "ms", "os"}
_IRREGULAR = {"children": "child", "people": "person", "men": "man", "women": "woman",
              "mice": "mouse", "feet": "foot", "teeth": "tooth", "indices": "index",
              "matrices": "matrix", "vertices": "vertex", "data": "data", "criteria": "criterion",
              "phenomena": "phenomenon", "analyses": "analysis", "bases": "basis", "axes": "axis"}


def singular(word: str) -> str:
    """English singular of one lower-case word by suffix rules (good enough to merge names)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or word in _S_WORDS or not word.endswith("s") or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1]


def normalize(name: str) -> str:
    """Canonical form of a concept or topic name ("" when nothing is left)."""
    s = unicodedata.normalize("NFKC", name).lower()
    s = re.sub(r"[`\"'\u2018\u2019\u201c\u201d*]", "", s)
    s = re.sub(r"[^\w+#./-]+", " ", s)  # keep c++, c#, os.path, utf-8
    words = [w.strip(".-/_") for w in s.split()]  # "__debug__" -> "debug"; "target_list" stays
    words = [w for w in words if w]
    while words and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(singular(w) for w in words)


def _trigrams(s: str) -> set[str]:
    p = f"  {s} "
    return {p[i:i + 3] for i in range(len(p) - 2)}


def _one_edit_apart(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return a == b
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + (len(a) == len(b)):] == b[i + 1:]


def merge_names(names: Iterable[str], threshold: float = 0.85, min_len_edit: int = 6) -> dict[str, str]:
    """Map each normalised name to a canonical representative of its near-duplicate group.

    Two names are merged when they have the same multiset of words (word order differs),
    when both have at least ``min_len_edit`` characters and are one edit apart (typos),
    or when the Jaccard similarity of their padded character-trigram sets is at least
    ``threshold``. Groups are transitive (union-find); the representative is the most
    frequent name in ``names``, ties broken by the shorter, then lexicographically first.
    Candidate pairs come from a trigram inverted index, so the cost grows with the
    number of names sharing trigrams, not with all pairs.
    """
    counts = Counter(n for n in names if n)
    uniq = sorted(counts)
    parent = {n: n for n in uniq}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_words: dict[tuple[str, ...], str] = {}
    grams = {n: _trigrams(n) for n in uniq}
    index: dict[str, list[int]] = defaultdict(list)
    for i, n in enumerate(uniq):
        key = tuple(sorted(n.split()))
        if key in by_words:
            union(n, by_words[key])
        else:
            by_words[key] = n
        shared: Counter[int] = Counter()
        for g in grams[n]:
            for j in index[g]:
                shared[j] += 1
            index[g].append(i)
        for j, inter in shared.items():
            m = uniq[j]
            jac = inter / (len(grams[n]) + len(grams[m]) - inter)
            if jac >= threshold or (min(len(n), len(m)) >= min_len_edit and _one_edit_apart(n, m)):
                union(n, m)
    groups: dict[str, list[str]] = defaultdict(list)
    for n in uniq:
        groups[find(n)].append(n)
    mapping = {}
    for members in groups.values():
        rep = min(members, key=lambda n: (-counts[n], len(n), n))
        for n in members:
            mapping[n] = rep
    return mapping
