"""Quality checks on answered QA records, each failure a reject with a reason.

In order: ``short_answer`` (fewer than ``min_answer_words`` words), ``answer_repeats_question``
(word-set Jaccard of answer and question >= 0.9), ``repetitive`` (the answer's Gopher
``dup_5gram_char_frac`` above ``max_dup_5gram`` — a small model looping — only for
answers of 20+ words, where 5-grams can repeat at all), ``contaminated`` (n-gram overlap
with the evaluation set, on question and answer), then the LLM judge
(``judge_unparsed`` / ``judge_low_score``) when one is given. Every kept record gets
``gzip_ratio`` (of ``question + "\\n" + answer``, compressed/original, zlib level 6) and
the Gopher heuristics of its answer in ``metrics``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable

from fastsynth.quality import gzip_ratio, heuristics
from fastsynth.quality.decontam import Decontaminator
from fastsynth.quality.judge import JUDGE_VERSION, Judge
from fastsynth.synth.provenance import QARecord, Reject

# Gopher drops documents with dup_5gram_char_frac > 0.15; a short answer that quotes one
# phrase twice is not junk, so the QA limit is twice as lenient.
MAX_DUP_5GRAM = 0.3


def _jaccard(a: str, b: str) -> float:
    x, y = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    return len(x & y) / len(x | y) if x | y else 1.0


def check(records: list[QARecord], min_answer_words: int = 2, max_dup_5gram: float = MAX_DUP_5GRAM,
          decontam: Decontaminator | None = None, judge: Judge | None = None,
          context: Callable[[QARecord], str] | None = None) -> tuple[list[QARecord], list[Reject]]:
    if not records:
        return [], []
    rejects: list[Reject] = []
    answers = [r.answer for r in records]
    h = heuristics(answers, threads=1)
    g = gzip_ratio([f"{r.question}\n{r.answer}" for r in records], threads=1)
    dirty = (decontam.contaminated([f"{r.question}\n{r.answer}" for r in records])
             if decontam is not None else [False] * len(records))
    survivors: list[QARecord] = []
    for i, r in enumerate(records):
        r.gzip_ratio = float(g[i])
        r.metrics = {k: float(v[i]) for k, v in h.items() if not math.isnan(float(v[i]))}
        reason = None
        if len(r.answer.split()) < min_answer_words:
            reason = "short_answer"
        elif _jaccard(r.answer, r.question) >= 0.9:
            reason = "answer_repeats_question"
        elif h["n_words"][i] >= 20 and h["dup_5gram_char_frac"][i] > max_dup_5gram:
            reason = "repetitive"
        elif dirty[i]:
            reason = "contaminated"
        if reason:
            rejects.append(Reject(r.level, "decontam" if reason == "contaminated" else "qa", reason,
                                  r.source_ids, r.question, r.seed, r.prompt_version))
        else:
            survivors.append(r)
    if judge is None or not survivors:
        return survivors, rejects
    js = judge.score([r.question for r in survivors], [r.answer for r in survivors],
                     [context(r) for r in survivors] if context is not None else None)
    kept = []
    for i, r in enumerate(survivors):
        r.judge_score = float(js.score[i])
        if js.failure[i] is not None or not js.passed[i]:
            reason = "judge_low_score" if js.failure[i] is None else f"judge_{js.failure[i]}"
            rejects.append(Reject(r.level, "judge", reason, r.source_ids, r.question, r.seed,
                                  f"{r.prompt_version}+{JUDGE_VERSION}"))
        else:
            kept.append(r)
    return kept, rejects
