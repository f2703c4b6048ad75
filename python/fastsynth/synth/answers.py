"""Answers from a (possibly different) generator, and answer augmentation.

With ``samples == 1`` the answer is greedy. With ``samples = k > 1`` the k answers are
sampled (temperature > 0, one seed each) and kept by *self-consistency*: two answers
agree when the token F1 of their content words is at least ``agree_f1``; the answer that
agrees with the most others wins, and the record is kept only when its agreement
fraction (agreeing answers, itself included, over k) is at least ``min_agreement``.
With a reference answer the samples are compared with the reference instead, and the best
agreeing one is kept. Answers cut by ``max_tokens`` are trimmed to their last full
sentence (or rejected as ``truncated`` when there is none).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

from fastsynth.synth import prompts
from fastsynth.synth.calls import Call, Result, derive_seed
from fastsynth.synth.parse import MalformedOutput, parse_answer
from fastsynth.synth.provenance import QARecord, Reject

PROMPT = "answer"
_STOP = frozenset("a an the of to in on for and or is are was were be been it its this that with as by "
                  "at from which what can could will would do does did not".split())


def content_tokens(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", text.lower()) if w not in _STOP]


def token_f1(a: str, b: str) -> float:
    """SQuAD-style F1 over content-word bags; 1.0 for two empty bags."""
    ta, tb = Counter(content_tokens(a)), Counter(content_tokens(b))
    if not ta and not tb:
        return 1.0
    common = sum((ta & tb).values())
    if not common:
        return 0.0
    p, r = common / sum(ta.values()), common / sum(tb.values())
    return 2 * p * r / (p + r)


def majority(answers: list[str], agree_f1: float = 0.5) -> tuple[int, float]:
    """Index of the answer agreeing with the most others (ties: the first), and its
    agreement fraction (itself included) over ``len(answers)``."""
    if not answers:
        raise ValueError("majority() needs at least one answer")
    support = [sum(token_f1(a, b) >= agree_f1 for b in answers) for a in answers]
    best = max(range(len(answers)), key=lambda i: (support[i], -i))
    return best, support[best] / len(answers)


def trim_truncated(text: str) -> str:
    """Drop an unfinished last sentence; raises ``MalformedOutput("truncated")`` if none is finished."""
    m = list(re.finditer(r"[.!?](?=\s|$)", text))
    if not m:
        raise MalformedOutput("truncated")
    return text[: m[-1].end()]


def calls(records: list[QARecord], context: Callable[[QARecord], str], samples: int, seed: int,
          max_tokens: int, temperature: float) -> list[Call]:
    """``samples`` requests per record; greedy when ``samples == 1``."""
    p = prompts.load(PROMPT)
    temp = 0.0 if samples == 1 else temperature
    out = []
    for rec in records:
        req = p.render(document=context(rec), question=rec.question)
        for j in range(samples):
            out.append(Call(req, derive_seed(seed, PROMPT, rec.id, j), max_tokens, temp, tag=(rec, j)))
    return out


def collect(results: list[Result], samples: int, min_agreement: float = 0.51, agree_f1: float = 0.5,
            references: dict[str, str] | None = None) -> tuple[list[QARecord], list[Reject]]:
    """Answered records (answer fields filled) and rejects. ``references`` maps a record's
    question text to a reference answer, where one exists."""
    pid = prompts.load(PROMPT).id
    by_rec: dict[str, list[Result]] = {}
    recs: dict[str, QARecord] = {}
    for r in results:
        rec, _ = r.call.tag
        recs[rec.id] = rec
        by_rec.setdefault(rec.id, []).append(r)
    kept: list[QARecord] = []
    rejects: list[Reject] = []
    for rid, rs in by_rec.items():
        rec = recs[rid]
        rs.sort(key=lambda r: r.call.tag[1])
        texts: list[tuple[str, Result]] = []
        reasons: Counter[str] = Counter()
        for r in rs:
            if not r.ok:
                reasons["generator_error"] += 1
                continue
            try:
                text = r.text if r.finish_reason != "length" else trim_truncated(r.text)
                texts.append((parse_answer(text), r))
            except MalformedOutput as e:
                reasons[e.reason] += 1
        if not texts:
            reason = reasons.most_common(1)[0][0] if reasons else "no_answer"
            rejects.append(Reject(rec.level, "answer", reason, rec.source_ids, rec.question, rec.seed,
                                  f"{rec.prompt_version}+{pid}"))
            continue
        ref = (references or {}).get(rec.question)
        if ref is not None:
            scores = [token_f1(t, ref) for t, _ in texts]
            agreement = sum(s >= agree_f1 for s in scores) / samples
            best = max(range(len(texts)), key=lambda i: (scores[i], -i))
            if scores[best] < agree_f1:
                rejects.append(Reject(rec.level, "answer", "disagrees_with_reference", rec.source_ids,
                                      rec.question, rec.seed, f"{rec.prompt_version}+{pid}"))
                continue
        elif samples > 1:
            best, support = majority([t for t, _ in texts], agree_f1)
            agreement = support * len(texts) / samples  # failed samples count as disagreeing
            if agreement < min_agreement:
                rejects.append(Reject(rec.level, "answer", "no_majority", rec.source_ids, rec.question,
                                      rec.seed, f"{rec.prompt_version}+{pid}"))
                continue
        else:
            best, agreement = 0, math.nan
        text, r = texts[best]
        rec.answer = text
        rec.answer_model = r.model
        rec.answer_seed = r.call.seed
        rec.answer_samples = samples
        rec.answer_agreement = agreement
        rec.prompt_version = f"{rec.prompt_version}+{pid}"
        kept.append(rec)
    return kept, rejects
