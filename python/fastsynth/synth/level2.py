"""SynthLLM Level-2: topics and key concepts per document, then questions that combine
2-3 sampled concepts of one document.

When the model lists terms without naming a topic, the document's title line names it.
Concept extraction is shared with Level-3 (the graph is built from the same lists).
Names are normalised (:func:`fastsynth.synth.concepts.normalize`); with ``grounded``
a concept is kept only when at least half of its words occur in the document, which
drops names a small model copied from the prompt or invented.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from fastsynth.synth import prompts
from fastsynth.synth.calls import Call, Result, derive_seed
from fastsynth.synth.concepts import normalize, singular
from fastsynth.synth.documents import Doc
from fastsynth.synth.level1 import count_words
from fastsynth.synth.parse import MalformedOutput, parse_questions, parse_topics
from fastsynth.synth.provenance import QARecord, Reject

CONCEPT_PROMPT = "concepts"
PROMPT = "level2"
# Level-2 needs at least two concepts to combine.
MIN_CONCEPTS = 2


@dataclass
class DocConcepts:
    """One document's topics and concepts (normalised names), plus display forms."""

    doc_id: str
    topics: list[tuple[str, list[str]]]
    display: dict[str, str] = field(default_factory=dict)  # normalised -> first surface form

    @property
    def concepts(self) -> list[str]:
        return list(dict.fromkeys(c for _, cs in self.topics for c in cs))


def concept_calls(docs: list[Doc], seed: int, max_tokens: int) -> list[Call]:
    """One greedy extraction request per document (greedy: extraction is not creative)."""
    p = prompts.load(CONCEPT_PROMPT)
    return [Call(p.render(document=d.text), derive_seed(seed, CONCEPT_PROMPT, d.id), max_tokens, 0.0, tag=d)
            for d in docs]


def title_of(text: str) -> str:
    """The document's first line with text (its title in most corpora), at most 60 characters."""
    for line in text.splitlines():
        line = line.strip().strip("#*=-").strip()
        if re.search(r"\w", line):
            return line[:60]
    return "untitled"


def _doc_words(text: str) -> set[str]:
    return {singular(w) for w in re.findall(r"\w+", text.lower())}


def grounded_in(concept: str, doc_words: set[str]) -> bool:
    words = concept.split()
    return bool(words) and sum(w in doc_words for w in words) * 2 >= len(words)


def collect_concepts(results: list[Result], grounded: bool = True) -> tuple[list[DocConcepts], list[Reject]]:
    pid = prompts.load(CONCEPT_PROMPT).id
    out: list[DocConcepts] = []
    rejects: list[Reject] = []
    for r in results:
        doc: Doc = r.call.tag
        if not r.ok:
            rejects.append(Reject(2, "concepts", "generator_error", [doc.id], r.error or "", r.call.seed, pid))
            continue
        try:
            raw = parse_topics(r.text)
        except MalformedOutput as e:
            rejects.append(Reject(2, "concepts", e.reason, [doc.id], r.text[:500], r.call.seed, pid))
            continue
        words = _doc_words(doc.text) if grounded else set()
        display: dict[str, str] = {}
        topics: list[tuple[str, list[str]]] = []
        for tname, cnames in raw:
            tname = tname or title_of(doc.text)  # the reply listed terms but named no topic
            t = normalize(tname)
            cs = []
            for c in cnames:
                n = normalize(c)
                if not n or n == t or (grounded and not grounded_in(n, words)):
                    continue
                display.setdefault(n, c.strip())
                cs.append(n)
            if t and cs:
                display.setdefault(t, tname.strip())
                topics.append((t, list(dict.fromkeys(cs))))
        dc = DocConcepts(doc.id, topics, display)
        if len(dc.concepts) < MIN_CONCEPTS:
            rejects.append(Reject(2, "concepts", "too_few_grounded_concepts", [doc.id], r.text[:500],
                                  r.call.seed, pid))
        out.append(dc)  # kept even when short: Level-3 can still use its concepts
    return out, rejects


def question_calls(docs: dict[str, Doc], concepts: list[DocConcepts], quota: dict[str, int], seed: int,
                   max_tokens: int, temperature: float, per_request: int = 2) -> list[Call]:
    """For each document, ``ceil(quota / per_request)`` requests, each with its own sample
    of 2-3 concepts, asking for ``per_request`` questions."""
    p = prompts.load(PROMPT)
    out = []
    for dc in concepts:
        pool = dc.concepts
        q = quota.get(dc.doc_id, 0)
        if len(pool) < MIN_CONCEPTS or q <= 0:
            continue
        for j in range(math.ceil(q / per_request)):
            s = derive_seed(seed, PROMPT, dc.doc_id, j)
            rng = np.random.default_rng(s)
            k = int(rng.integers(2, 4)) if len(pool) >= 3 else 2
            picked = [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
            names = ", ".join(dc.display.get(c, c) for c in picked)
            n = min(per_request, q - j * per_request)
            out.append(Call(p.render(n=count_words(n), concepts=names, document=docs[dc.doc_id].text), s,
                            max_tokens, temperature, tag=(dc, picked, n)))
    return out


def collect_questions(results: list[Result]) -> tuple[list[QARecord], list[Reject]]:
    pid = prompts.load(PROMPT).id
    recs: list[QARecord] = []
    rejects: list[Reject] = []
    for r in results:
        dc, picked, n = r.call.tag
        if not r.ok:
            rejects.append(Reject(2, "question", "generator_error", [dc.doc_id], r.error or "", r.call.seed, pid))
            continue
        try:
            qs = parse_questions(r.text, limit=n, truncated=r.finish_reason == "length")
        except MalformedOutput as e:
            rejects.append(Reject(2, "question", e.reason, [dc.doc_id], r.text[:500], r.call.seed, pid))
            continue
        topics = [t for t, cs in dc.topics if set(cs) & set(picked)]
        for q in qs:
            recs.append(QARecord(level=2, question=q, kind="combined", source_ids=[dc.doc_id],
                                 concepts=list(picked), topics=topics, generator_model=r.model,
                                 prompt_version=pid, seed=r.call.seed))
    return recs, rejects
