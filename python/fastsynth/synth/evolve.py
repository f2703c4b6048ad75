"""Question evolution in the manner of Evol-Instruct (Xu et al. 2023, WizardLM).

In-depth operations rewrite a question to be harder — ``constraints`` (add a constraint),
``deepen``, ``concretize``, ``reasoning`` (more reasoning steps); the in-breadth
operation ``breadth`` writes a new question on a rarer aspect of the same subject. An
*elimination* step rejects failed evolutions, each with its reason:

* ``empty`` / ``no_questions``: nothing question-like came back;
* ``refusal``: the model declined ("I'm sorry", "as an AI");
* ``copied_prompt``: the output repeats the instruction's own wording;
* ``no_information_gain``: the new question is (nearly) the old one — word-set Jaccard at
  or above ``max_overlap`` — or, for an in-depth operation, not longer than the original.
"""
from __future__ import annotations

import re

from fastsynth.synth import prompts
from fastsynth.synth.calls import Call, Result, derive_seed
from fastsynth.synth.parse import MalformedOutput, is_refusal, parse_questions
from fastsynth.synth.provenance import QARecord, Reject

IN_DEPTH = ("constraints", "deepen", "concretize", "reasoning")
IN_BREADTH = ("breadth",)
OPERATIONS = IN_DEPTH + IN_BREADTH
# Instruction phrases that betray a copied prompt when they appear in an evolved question.
_PROMPT_PHRASES = ("rewrite the question", "rewritten question", "new question", "given prompt",
                   "rewritten prompt", "#rewritten", "the question below", "constraint or requirement",
                   "reply with", "starting with \"q:\"", "less common aspect")


def _wordset(s: str) -> set[str]:
    return set(re.findall(r"\w+", s.lower()))


def eliminate(original: str, evolved_text: str, op: str, max_overlap: float = 0.8) -> str:
    """The evolved question, or raise ``MalformedOutput`` naming why the evolution failed."""
    if not evolved_text or not evolved_text.strip():
        raise MalformedOutput("empty")
    if is_refusal(evolved_text):
        raise MalformedOutput("refusal")
    low = evolved_text.lower()
    if any(p in low for p in _PROMPT_PHRASES):
        raise MalformedOutput("copied_prompt")
    q = parse_questions(evolved_text, limit=1)[0]
    a, b = _wordset(original), _wordset(q)
    jac = len(a & b) / len(a | b) if a | b else 1.0
    if jac >= max_overlap:
        raise MalformedOutput("no_information_gain")
    if op in IN_DEPTH and len(q.split()) <= len(original.split()):
        raise MalformedOutput("no_information_gain")
    return q


def calls(records: list[QARecord], seed: int, max_tokens: int, temperature: float,
          operations: tuple[str, ...] = OPERATIONS) -> list[Call]:
    """One evolution request per record; the operation is drawn from ``operations`` by seed."""
    out = []
    for rec in records:
        s = derive_seed(seed, "evolve", rec.id)
        op = operations[s % len(operations)]
        p = prompts.load(f"evolve_{op}")
        out.append(Call(p.render(question=rec.question), s, max_tokens, temperature, tag=(rec, op)))
    return out


def collect(results: list[Result]) -> tuple[list[QARecord], list[Reject]]:
    recs: list[QARecord] = []
    rejects: list[Reject] = []
    for r in results:
        parent, op = r.call.tag
        pid = f"{parent.prompt_version}+{prompts.load(f'evolve_{op}').id}"
        if not r.ok:
            rejects.append(Reject(parent.level, "evolve", "generator_error", parent.source_ids, r.error or "",
                                  r.call.seed, pid))
            continue
        try:
            q = eliminate(parent.question, r.text, op)
        except MalformedOutput as e:
            rejects.append(Reject(parent.level, "evolve", e.reason, parent.source_ids, r.text[:500],
                                  r.call.seed, pid))
            continue
        recs.append(QARecord(level=parent.level, question=q, kind=f"evolved:{op}",
                             source_ids=list(parent.source_ids), concepts=list(parent.concepts),
                             topics=list(parent.topics), generator_model=r.model, prompt_version=pid,
                             seed=r.call.seed, parent_id=parent.id))
    return recs, rejects
