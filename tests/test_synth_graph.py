"""The Level-3 concept graph: edge counts/weights, softmax walks, grounding."""
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsynth.errors import ConfigError
from fastsynth.synth.graph import ConceptGraph

DOCS = [
    ("d1", [("lists", ["append", "slice", "index"]), ("loops", ["for", "index"])]),
    ("d2", [("lists", ["append", "sort"]), ("sorting", ["sort", "key function"])]),
    ("d3", [("loops", ["for", "while", "break"])]),
    ("d4", [("sorting", ["key function", "stable sort"]), ("lists", ["sort"])]),
]


def test_counts_and_weights():
    g = ConceptGraph.from_documents(DOCS, eps=1e-3)
    assert g.counts["tt"]["lists"] == Counter({"loops": 1, "sorting": 2})
    assert g.counts["tc"]["lists"] == Counter({"append": 2, "slice": 1, "index": 1, "sort": 2})
    assert g.counts["cc"]["append"]["sort"] == 1 and g.counts["cc"]["sort"]["key function"] == 2
    assert g.counts["cc"]["index"]["for"] == 1  # concepts of different topics in one document
    assert g.weight("cc", "sort", "key function") == pytest.approx(math.log(2 + 1e-3))
    assert g.weight("tt", "loops", "sorting") == -math.inf
    assert g.concept_topics["sort"] == {"lists", "sorting"}
    assert g.topics == ["lists", "loops", "sorting"]


def test_walk_shape_and_edges():
    g = ConceptGraph.from_documents(DOCS)
    for s in range(200):
        w = g.walk(np.random.default_rng(s))
        assert 1 <= len(w.topics) <= 3 and len(set(w.topics)) == len(w.topics)
        assert 1 <= len(w.concepts) <= 5 and len(set(w.concepts)) == len(w.concepts)
        for a, b in zip(w.topics, w.topics[1:]):
            assert g.counts["tt"][a][b] > 0
        assert any(g.counts["tc"][t][w.concepts[0]] > 0 for t in w.topics)
        for a, b in zip(w.concepts, w.concepts[1:]):
            assert g.counts["cc"][a][b] > 0


def test_walk_lengths_follow_ranges_on_a_rich_graph():
    docs = [(f"d{i}", [(f"t{i % 5}", [f"c{(i + j) % 12}" for j in range(6)]),
                       (f"t{(i + 1) % 5}", [f"c{(i + 7) % 12}"])]) for i in range(20)]
    g = ConceptGraph.from_documents(docs)
    topic_steps, concept_steps = Counter(), Counter()
    for s in range(400):
        w = g.walk(np.random.default_rng(s))
        topic_steps[len(w.topics) - 1] += 1
        concept_steps[len(w.concepts) - 1] += 1
    assert set(topic_steps) == {1, 2} and set(concept_steps) == {3, 4}
    assert min(topic_steps.values()) > 150 and min(concept_steps.values()) > 150  # ~uniform choice


def test_step_probabilities_are_softmax_of_log_counts():
    # one topic t with concepts whose counts are 1, 2 and 5: p ∝ (c + eps)^(1/T)
    docs = [(f"d{i}", [("t", [c])]) for i, c in enumerate(["a"] + ["b"] * 2 + ["c"] * 5)]
    g = ConceptGraph.from_documents(docs, eps=1e-3)
    for temp in (1.0, 0.5):
        rng = np.random.default_rng(7)
        n = 20000
        got = Counter(g._step("tc", "t", set(), rng, temp) for _ in range(n))
        w = np.array([1, 2, 5]) + 1e-3
        p = w ** (1 / temp) / (w ** (1 / temp)).sum()
        for k, name in enumerate("abc"):
            sd = math.sqrt(p[k] * (1 - p[k]) / n)
            assert abs(got[name] / n - p[k]) < 5 * sd


def test_ground_top2_by_jaccard():
    g = ConceptGraph.from_documents(DOCS)
    top = g.ground(["sort", "key function", "stable sort"])
    assert top[0] == ("d4", pytest.approx(3 / 3))
    assert top[1] == ("d2", pytest.approx(2 / 4))
    assert g.ground(["nothing"]) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sets(st.sampled_from("abcdefghij"), min_size=1, max_size=6), min_size=1, max_size=12),
       st.sets(st.sampled_from("abcdefghij"), min_size=1, max_size=5))
def test_ground_matches_brute_force(doc_sets, query):
    g = ConceptGraph.from_documents([(f"d{i:02d}", [("t", sorted(s))]) for i, s in enumerate(doc_sets)])
    brute = sorted(((f"d{i:02d}", len(s & query) / len(s | query)) for i, s in enumerate(doc_sets)
                    if s & query), key=lambda x: (-x[1], x[0]))[:2]
    assert g.ground(query) == brute


def test_pick_across_topics_prefers_distinct_topics():
    g = ConceptGraph.from_documents(DOCS)
    rng = np.random.default_rng(0)
    for _ in range(50):
        picked = g.pick_across_topics(["append", "slice", "while", "stable sort"], 3, rng)
        topics = [g.concept_topics[c] for c in picked]
        assert len(picked) == 3
        # "while" (loops) and "stable sort" (sorting) bring new topics whatever the order
        assert {"while", "stable sort"} <= set(picked)
        assert sum(bool(t & {"lists"}) for t in topics) == 1


def test_bad_parameters():
    with pytest.raises(ConfigError):
        ConceptGraph.from_documents(DOCS, eps=0)
    with pytest.raises(ConfigError):
        ConceptGraph.from_documents(DOCS).walk(np.random.default_rng(0), temperature=0)
    assert ConceptGraph.from_documents([]).walk(np.random.default_rng(0)) is None
