"""SynthLLM Level-3: questions across documents, sampled from the global concept graph.

All documents' topic and concept names are merged (near-duplicates -> one node, see
:func:`fastsynth.synth.concepts.merge_names`), the graph is built
(:class:`fastsynth.synth.graph.ConceptGraph`), and each softmax random walk is grounded
in the top-2 documents by Jaccard of concept sets. A walk that grounds in fewer than two
documents is rejected (``single_document_walk``): a Level-3 question spans documents.
From each grounded walk 2-3 concepts of different topics are chosen and the model
writes 1-3 questions with both documents in its prompt.
"""
from __future__ import annotations

import numpy as np

from fastsynth.synth import prompts
from fastsynth.synth.calls import Call, Result, derive_seed
from fastsynth.synth.concepts import merge_names
from fastsynth.synth.documents import Doc
from fastsynth.synth.graph import ConceptGraph, Walk
from fastsynth.synth.level1 import count_words
from fastsynth.synth.level2 import DocConcepts
from fastsynth.synth.parse import MalformedOutput, parse_questions
from fastsynth.synth.provenance import QARecord, Reject

PROMPT = "level3"


def build_graph(concepts: list[DocConcepts], merge_threshold: float = 0.85,
                eps: float = 1e-3) -> tuple[ConceptGraph, dict[str, str]]:
    """The graph over merged names, and the display name of every node."""
    tmap = merge_names([t for dc in concepts for t, _ in dc.topics], merge_threshold)
    cmap = merge_names([c for dc in concepts for _, cs in dc.topics for c in cs], merge_threshold)
    display: dict[str, str] = {}
    docs = []
    for dc in concepts:
        topics = []
        for t, cs in dc.topics:
            mt = tmap.get(t, t)
            mcs = [cmap.get(c, c) for c in cs]
            display.setdefault(mt, dc.display.get(mt, dc.display.get(t, t)))
            for c, mc in zip(cs, mcs):
                display.setdefault(mc, dc.display.get(mc, dc.display.get(c, c)))
            topics.append((mt, mcs))
        docs.append((dc.doc_id, topics))
    return ConceptGraph.from_documents(docs, eps=eps), display


def sample_walks(graph: ConceptGraph, n_walks: int, seed: int, temperature: float = 1.0,
                 max_tries: int = 4) -> tuple[list[tuple[Walk, list[tuple[str, float]], int]], int]:
    """Up to ``n_walks`` distinct walks grounded in two documents: ``[(walk, top2, walk_seed)]``,
    and the number of walks rejected as ungrounded. At most ``max_tries * n_walks`` walks."""
    out = []
    seen: set[frozenset[str]] = set()
    rejected = 0
    for i in range(max_tries * n_walks):
        if len(out) >= n_walks:
            break
        ws = derive_seed(seed, "walk", i)
        walk = graph.walk(np.random.default_rng(ws), temperature=temperature)
        if walk is None:
            rejected += 1
            continue
        key = frozenset(walk.concepts)
        if key in seen:
            continue
        seen.add(key)
        top = graph.ground(walk.concepts, k=2)
        if len(top) < 2:
            rejected += 1
            continue
        out.append((walk, top, ws))
    return out, rejected


def calls(walks: list[tuple[Walk, list[tuple[str, float]], int]], graph: ConceptGraph,
          display: dict[str, str], docs: dict[str, Doc], max_tokens: int, temperature: float,
          max_chars: int) -> list[Call]:
    """One request per walk: 2-3 concepts of different topics, 1-3 questions, both documents
    (each cut to ``max_chars // 2`` characters so the pair fits one document's budget)."""
    p = prompts.load(PROMPT)
    out = []
    half = max_chars // 2
    for walk, top, ws in walks:
        rng = np.random.default_rng(ws + 1)
        k = min(len(walk.concepts), int(rng.integers(2, 4)))
        picked = graph.pick_across_topics(walk.concepts, k, rng)
        n = int(rng.integers(1, 4))
        names = ", ".join(display.get(c, c) for c in picked)
        d1, d2 = docs[top[0][0]], docs[top[1][0]]
        out.append(Call(p.render(n=count_words(n), concepts=names, document1=d1.text[:half],
                                 document2=d2.text[:half]), ws, max_tokens, temperature,
                        tag=(walk, top, picked, n)))
    return out


def collect(results: list[Result], graph: ConceptGraph) -> tuple[list[QARecord], list[Reject]]:
    pid = prompts.load(PROMPT).id
    recs: list[QARecord] = []
    rejects: list[Reject] = []
    for r in results:
        walk, top, picked, n = r.call.tag
        ids = [d for d, _ in top]
        if not r.ok:
            rejects.append(Reject(3, "question", "generator_error", ids, r.error or "", r.call.seed, pid))
            continue
        try:
            qs = parse_questions(r.text, limit=n, truncated=r.finish_reason == "length")
        except MalformedOutput as e:
            rejects.append(Reject(3, "question", e.reason, ids, r.text[:500], r.call.seed, pid))
            continue
        topics = sorted({t for c in picked for t in graph.concept_topics.get(c, ())})
        for q in qs:
            recs.append(QARecord(level=3, question=q, kind="cross-document", source_ids=ids,
                                 concepts=list(picked), topics=topics, generator_model=r.model,
                                 prompt_version=pid, seed=r.call.seed))
    return recs, rejects
