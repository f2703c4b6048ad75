"""Diversity measures: concept coverage/entropy, embedding similarity, set compression."""
import math
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastsynth.quality.diversity import (concept_stats, diversity_report, embed, load_embedder,
                                         mean_pairwise_similarity, set_compression_ratio)


def test_concept_stats():
    s = concept_stats([["a", "b"], ["a"], [], ["c", "c"]], vocabulary=["a", "b", "c", "d"])
    # uses: a 2, b 1, c 1 (duplicates within one item count once)
    p = np.array([2, 1, 1]) / 4
    assert s["concepts_used"] == 3 and s["coverage"] == 0.75 and s["items_with_concepts"] == 3
    assert s["entropy_bits"] == pytest.approx(-(p * np.log2(p)).sum())
    assert s["normalized_entropy"] == pytest.approx(s["entropy_bits"] / math.log2(3))
    assert math.isnan(concept_stats([["a"]])["coverage"]) and math.isnan(concept_stats([["a"]])["normalized_entropy"])
    assert concept_stats([])["entropy_bits"] == 0.0


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 6)),
              elements=st.floats(-1, 1, allow_nan=False)))
def test_mean_pairwise_similarity_matches_brute_force(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    e = np.where(norms > 1e-6, x / np.maximum(norms, 1e-12), 0.0)
    n = len(e)
    brute = sum(e[i] @ e[j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    assert mean_pairwise_similarity(e) == pytest.approx(brute, abs=1e-9)


def test_set_compression_ratio_is_zlib_of_joined_texts():
    texts = ["What is a list?", "What is a tuple?", "What is a list?"]
    b = "\n".join(texts).encode()
    assert set_compression_ratio(texts) == len(zlib.compress(b, 6)) / len(b)
    assert math.isnan(set_compression_ratio([]))


def test_real_embeddings_rank_paraphrases_above_unrelated():
    model = load_embedder()
    e = embed(["How do I sort a list in Python?", "What is the way to order a Python list?",
               "Which river flows through Paris?"], model)
    assert e.shape == (3, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.6 > 0.2 > sim[0, 2]
    same = diversity_report(["How do I sort a list in Python?", "How can I sort a Python list?"], model=model)
    varied = diversity_report(["How do I sort a list in Python?", "Which river flows through Paris?"], model=model)
    assert same["mean_pairwise_similarity"] > varied["mean_pairwise_similarity"]
    assert math.isnan(diversity_report(["one"], model=model)["mean_pairwise_similarity"])
