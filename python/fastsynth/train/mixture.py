"""Mixtures of shard sets: which set the next document comes from.

A :class:`Mixture` holds shard set folders with weights (e.g. organic : synthetic =
60 : 40). The loader draws documents so that each set's share of *tokens* follows the
weights: the next document always comes from the set that is furthest behind its share
(smallest ``tokens_taken / weight``; ties to the lower index). This is deterministic — no
random numbers, so a resumed run draws the same — and after any prefix of the stream each
set's realised share differs from its weight by at most one document's tokens over the
tokens drawn so far (docs/token-shards.md, "Mixtures").

Every set must come from the same tokenizer (same fingerprint): token ids of different
tokenizers mean different things.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastsynth.errors import ConfigError


@dataclass(frozen=True)
class Mixture:
    """Shard set folders and their weights (positive; normalised to sum to 1).

    Build with ``Mixture({"organic": 0.6, "synthetic": 0.4})`` or
    ``Mixture([("organic", 60), ("synthetic", 40)])``.
    """

    paths: tuple[str, ...]
    weights: tuple[float, ...]

    def __init__(self, sources: Mapping[Any, float] | Sequence[tuple[Any, float]]):
        items = list(sources.items()) if isinstance(sources, Mapping) else list(sources)
        if not items:
            raise ConfigError("mixture: at least one shard set is needed")
        paths, weights = [], []
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ConfigError(f"mixture: expected (shard set, weight) pairs, got {item!r}")
            path, w = item
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
                raise ConfigError(f"mixture: weight of {path!s} must be a positive number, got {w!r}")
            paths.append(os.fspath(path))
            weights.append(float(w))
        if len(set(paths)) != len(paths):
            raise ConfigError("mixture: a shard set is listed twice")
        total = sum(weights)
        object.__setattr__(self, "paths", tuple(paths))
        object.__setattr__(self, "weights", tuple(w / total for w in weights))

    @classmethod
    def of(cls, source: Any) -> "Mixture":
        """A mixture from a shard set folder (weight 1), a :class:`Mixture`, a dict or pairs."""
        if isinstance(source, Mixture):
            return source
        if isinstance(source, (str, os.PathLike)):
            return cls([(source, 1.0)])
        return cls(source)


class MixtureDraw:
    """The deterministic draw: which set supplies the next document.

    ``pick()`` names the set furthest behind its share, ``add(s, tokens)`` records what it
    supplied, ``close(s)`` marks a set that has no more documents. Plain Python floats: a
    window of a few thousand picks costs a few milliseconds.
    """

    def __init__(self, weights: Sequence[float]):
        self.weights = [float(w) for w in weights]
        self.taken = [0.0] * len(self.weights)
        self.open = [True] * len(self.weights)

    def pick(self) -> int:
        """The open set with the smallest ``taken / weight`` (ties: lower index), or -1."""
        best, best_score = -1, float("inf")
        for s, (t, w) in enumerate(zip(self.taken, self.weights)):
            if self.open[s] and t / w < best_score:
                best, best_score = s, t / w
        return best

    def add(self, s: int, tokens: int) -> None:
        self.taken[s] += tokens

    def close(self, s: int) -> None:
        self.open[s] = False
