"""SynthLLM Level-1: questions extracted from or written about one document.

The model first judges the document: a reply starting with NONE marks it unsuitable (a
recorded reject, reason ``unsuitable``). Otherwise its questions are kept, up to the
document's quota, each tagged ``original`` when the question's words appear in order in
the document (checked here, not taken on the model's word) and ``new`` otherwise.
"""
from __future__ import annotations

import re

from fastsynth.synth import prompts
from fastsynth.synth.calls import Call, Result, derive_seed
from fastsynth.synth.documents import Doc
from fastsynth.synth.parse import MalformedOutput, is_none_reply, parse_questions
from fastsynth.synth.provenance import QARecord, Reject

PROMPT = "level1"


def count_words(n: int) -> str:
    """``1 -> "one question"``, ``3 -> "3 questions"`` (small models follow grammatical text better)."""
    return "one question" if n == 1 else f"{n} questions"


def calls(docs: list[Doc], quota: dict[str, int], seed: int, max_tokens: int,
          temperature: float) -> list[Call]:
    """One request per document with a positive quota, asking for that many questions (<= 5)."""
    p = prompts.load(PROMPT)
    out = []
    for d in docs:
        n = min(5, quota.get(d.id, 0))
        if n <= 0:
            continue
        out.append(Call(p.render(n=count_words(n), document=d.text), derive_seed(seed, PROMPT, d.id),
                        max_tokens, temperature, tag=(d, n)))
    return out


def _words(s: str) -> list[str]:
    return re.findall(r"\w+", s.lower())


def is_original(question: str, document: str) -> bool:
    """True when the question's words occur contiguously, in order, in the document."""
    q = " ".join(_words(question))
    return bool(q) and f" {q} " in f" {' '.join(_words(document))} "


def collect(results: list[Result]) -> tuple[list[QARecord], list[Reject]]:
    """Questions (unanswered records) and rejects from the Level-1 results."""
    pid = prompts.load(PROMPT).id
    recs: list[QARecord] = []
    rejects: list[Reject] = []
    for r in results:
        doc, n = r.call.tag
        if not r.ok:
            rejects.append(Reject(1, "question", "generator_error", [doc.id], r.error or "", r.call.seed, pid))
            continue
        if is_none_reply(r.text):
            rejects.append(Reject(1, "question", "unsuitable", [doc.id], r.text[:500], r.call.seed, pid))
            continue
        try:
            qs = parse_questions(r.text, limit=n, truncated=r.finish_reason == "length")
        except MalformedOutput as e:
            rejects.append(Reject(1, "question", e.reason, [doc.id], r.text[:500], r.call.seed, pid))
            continue
        for q in qs:
            recs.append(QARecord(level=1, question=q, kind="original" if is_original(q, doc.text) else "new",
                                 source_ids=[doc.id], generator_model=r.model, prompt_version=pid,
                                 seed=r.call.seed))
    return recs, rejects
