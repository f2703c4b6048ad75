"""The global concept graph of SynthLLM Level-3, its random walks, and grounding.

Nodes are topics and concepts (normalised names, see :mod:`fastsynth.synth.concepts`);
the same name can be both a topic node and a concept node. Edges and their counts:

* topic-topic: the number of documents listing both topics;
* topic-concept: the number of documents listing the concept under the topic;
* concept-concept: the number of documents listing both concepts (under any topic).

Edge weight ``w = log(count + eps)`` (SynthLLM, Qin et al. 2025). A walk step picks a
neighbour with probability ``softmax(w / temperature)`` over the unvisited neighbours,
i.e. proportional to ``(count + eps) ** (1 / temperature)``.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from fastsynth.errors import ConfigError

DocConcepts = tuple[str, Sequence[tuple[str, Sequence[str]]]]  # (doc_id, [(topic, [concepts])])


@dataclass
class Walk:
    """One sample: the topics and concepts visited, in order."""

    topics: list[str]
    concepts: list[str]


@dataclass
class ConceptGraph:
    """Co-occurrence graph over normalised topic and concept names.

    Build with :meth:`from_documents`. ``weights[kind][a][b]`` is ``log(count + eps)``
    for kind in ``"tt"``, ``"tc"``, ``"cc"`` (``"tc"`` maps topic -> concept).
    """

    eps: float = 1e-3
    counts: dict[str, dict[str, Counter]] = field(default_factory=lambda: {
        "tt": defaultdict(Counter), "tc": defaultdict(Counter), "cc": defaultdict(Counter)})
    doc_concepts: dict[str, frozenset[str]] = field(default_factory=dict)
    concept_topics: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _postings: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def from_documents(cls, docs: Iterable[DocConcepts], eps: float = 1e-3) -> "ConceptGraph":
        """Build the graph; topic and concept names must already be normalised/merged."""
        if not eps > 0:
            raise ConfigError(f"eps must be > 0 (weights are log(count + eps)), got {eps}")
        g = cls(eps=eps)
        for doc_id, topics in docs:
            g._add(doc_id, topics)
        return g

    def _add(self, doc_id: str, topics: Sequence[tuple[str, Sequence[str]]]) -> None:
        tnames = sorted({t for t, _ in topics if t})
        cset: set[str] = set()
        pairs_tc: set[tuple[str, str]] = set()
        for t, cs in topics:
            for c in cs:
                if not c:
                    continue
                cset.add(c)
                if t:
                    pairs_tc.add((t, c))
        if not tnames and not cset:
            return
        tt, tc, cc = self.counts["tt"], self.counts["tc"], self.counts["cc"]
        for a, b in combinations(tnames, 2):
            tt[a][b] += 1
            tt[b][a] += 1
        for t in tnames:  # make isolated topics known nodes
            tt.setdefault(t, Counter())
        for t, c in pairs_tc:
            tc[t][c] += 1
            self.concept_topics[c].add(t)
        for a, b in combinations(sorted(cset), 2):
            cc[a][b] += 1
            cc[b][a] += 1
        for c in cset:
            cc.setdefault(c, Counter())
        if doc_id in self.doc_concepts:
            cset |= self.doc_concepts[doc_id]
        else:
            for c in cset:
                self._postings[c].append(doc_id)
        self.doc_concepts[doc_id] = frozenset(cset)

    # --- queries -------------------------------------------------------------------
    @property
    def topics(self) -> list[str]:
        return sorted(self.counts["tt"])

    @property
    def concepts(self) -> list[str]:
        return sorted(self.counts["cc"])

    def weight(self, kind: str, a: str, b: str) -> float:
        """``log(count + eps)``; ``-inf`` when there is no edge."""
        c = self.counts[kind].get(a, {}).get(b, 0)
        return math.log(c + self.eps) if c else -math.inf

    def _step(self, kind: str, node: str, visited: set[str], rng: np.random.Generator,
              temperature: float) -> str | None:
        nbrs = [(n, c) for n, c in sorted(self.counts[kind].get(node, {}).items()) if n not in visited]
        if not nbrs:
            return None
        w = np.log(np.array([c for _, c in nbrs], dtype=np.float64) + self.eps) / temperature
        p = np.exp(w - w.max())
        p /= p.sum()
        return nbrs[int(rng.choice(len(nbrs), p=p))][0]

    def walk(self, rng: np.random.Generator, temperature: float = 1.0,
             topic_steps: tuple[int, int] = (1, 2), concept_steps: tuple[int, int] = (3, 4)) -> Walk | None:
        """One softmax random walk: a uniform start topic, 1-2 topic steps, one step to a
        concept, 3-4 concept steps (ranges inclusive). A step with no unvisited neighbour
        ends that phase early. ``None`` when the start topic has no concept."""
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        starts = [t for t in self.topics if self.counts["tc"].get(t)]
        if not starts:
            return None
        t = starts[int(rng.integers(len(starts)))]
        topics = [t]
        for _ in range(int(rng.integers(topic_steps[0], topic_steps[1] + 1))):
            nxt = self._step("tt", topics[-1], set(topics), rng, temperature)
            if nxt is None:
                break
            topics.append(nxt)
        # step to a concept from the last topic that has concepts (walk back if needed)
        first = None
        for t in reversed(topics):
            first = self._step("tc", t, set(), rng, temperature)
            if first is not None:
                break
        if first is None:
            return None
        concepts = [first]
        for _ in range(int(rng.integers(concept_steps[0], concept_steps[1] + 1))):
            nxt = self._step("cc", concepts[-1], set(concepts), rng, temperature)
            if nxt is None:
                break
            concepts.append(nxt)
        return Walk(topics=topics, concepts=concepts)

    def ground(self, concepts: Iterable[str], k: int = 2) -> list[tuple[str, float]]:
        """The ``k`` documents whose concept sets have the highest Jaccard similarity with
        ``concepts``: ``[(doc_id, jaccard), ...]``, best first, ties by document id.
        Candidates are the documents sharing at least one concept (inverted index), so
        documents with Jaccard 0 are never returned."""
        q = frozenset(concepts)
        cand = {d for c in q for d in self._postings.get(c, ())}
        scored = []
        for d in cand:
            s = self.doc_concepts[d]
            scored.append((d, len(q & s) / len(q | s)))
        scored.sort(key=lambda x: (-x[1], x[0]))
        return scored[:k]

    def pick_across_topics(self, concepts: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
        """``n`` concepts from ``concepts`` covering as many different topics as possible:
        greedy in a random order, preferring concepts whose topics are not yet covered."""
        order = [concepts[i] for i in rng.permutation(len(concepts))]
        chosen: list[str] = []
        covered: set[str] = set()
        for c in order:  # first pass: only concepts that bring a new topic
            ts = self.concept_topics.get(c, set())
            if ts and not ts & covered:
                chosen.append(c)
                covered |= ts
            if len(chosen) == n:
                return chosen
        for c in order:
            if c not in chosen:
                chosen.append(c)
            if len(chosen) == n:
                break
        return chosen
