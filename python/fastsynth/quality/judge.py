"""LLM-as-judge: a written rubric, 1-10 scores, and pairwise comparison with order swapped.

The judge drives any object with the Generator interface (``generate(requests, ...)``,
see :mod:`fastsynth.llm`); it imports nothing from the model layers. Judging is greedy
(temperature 0) so a score is reproducible. A reply that does not contain a score is not
a score of 0: it is counted as a parse failure (``score`` NaN, ``failure`` set) and the
item fails the threshold.

Pairwise mode asks twice, with the answers in both orders, because LLM judges favour a
position (Zheng et al. 2023, "Judging LLM-as-a-judge"); a winner is declared only when
both orders agree, otherwise the verdict is ``"tie"``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastsynth.errors import ConfigError

JUDGE_VERSION = "judge/v1"

RUBRIC = """Rate the answer to the question on a scale from 1 to 10.
10: correct, complete, directly answers the question, clear.
7: mostly correct and relevant, small gaps.
4: partly correct or vague, or misses the point of the question.
1: wrong, off-topic, empty, repeated text, or not an answer.
The question itself counts too: a question that makes no sense gets at most 3."""

_SCORE_PROMPT = """{rubric}

Question: {question}
{context}Answer: {answer}

Reply with the score only, as "Score: N"."""

_PAIR_PROMPT = """Which answer to the question is better? Judge correctness, relevance and clarity.

Question: {question}

Answer A: {a}

Answer B: {b}

Reply with only "A", "B" or "tie"."""

_SCORE_RE = (re.compile(r"score\s*(?:is|of|:|=)?\s*\**\s*(\d{1,2})(?:\s*/\s*10)?\b", re.IGNORECASE),
             re.compile(r"\b(\d{1,2})\s*/\s*10\b"),
             re.compile(r"^\W*(\d{1,2})\b"))


def parse_score(text: str) -> int | None:
    """The 1-10 score in a judge reply (``"Score: 7"``, ``"7/10"``, ``"7"``), else ``None``."""
    for pat in _SCORE_RE:
        m = pat.search(text or "")
        if m:
            v = int(m.group(1))
            return v if 1 <= v <= 10 else None
    return None


def parse_verdict(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from a pairwise reply, else ``None``."""
    s = (text or "").strip().strip("*\"'. ").lower()
    m = re.match(r"^(?:answer\s+)?([ab])\b", s) or re.search(r"\banswer\s+([ab])\b\s+is\s+better", s)
    if m:
        return m.group(1).upper()
    if re.match(r"^(?:it'?s\s+a\s+)?(tie|equal|both)\b", s):
        return "tie"
    return None


@dataclass
class JudgeScores:
    """``score``: float64 (n,), NaN where unparsed; ``passed``: bool (n,) (score >= threshold);
    ``failure``: per item None or a reason (``unparsed_score``, ``generator_error``)."""

    score: np.ndarray
    passed: np.ndarray
    failure: list[str | None]


@dataclass
class Judge:
    """Score QA pairs with ``generator`` against :data:`RUBRIC`.

    ``threshold``: the lowest passing score (1-10). ``max_tokens``: a score needs few tokens.
    """

    generator: Any
    threshold: float = 6.0
    max_tokens: int = 12
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 1 <= self.threshold <= 10:
            raise ConfigError(f"threshold must be a number in [1, 10], got {self.threshold!r}")
        for name in ("max_tokens", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")

    def _ask(self, prompts: list[str]) -> list[tuple[str, bool]]:
        out: list[tuple[str, bool]] = []
        for s in range(0, len(prompts), self.batch_size):
            chunk = prompts[s:s + self.batch_size]
            try:
                comps = self.generator.generate([[{"role": "user", "content": p}] for p in chunk],
                                                max_tokens=self.max_tokens, temperature=0.0, seed=self.seed)
                out.extend((c.text, c.finish_reason != "error") for c in comps)
            except Exception:  # a failing backend fails these items, not the run
                out.extend(("", False) for _ in chunk)
        return out

    def score(self, questions: Sequence[str], answers: Sequence[str],
              contexts: Sequence[str] | None = None) -> JudgeScores:
        if len(questions) != len(answers) or (contexts is not None and len(contexts) != len(questions)):
            raise ConfigError("questions, answers (and contexts) must have the same length")
        prompts = [_SCORE_PROMPT.format(rubric=RUBRIC, question=q, answer=a,
                                        context=f"Text: {contexts[i]}\n" if contexts is not None else "")
                   for i, (q, a) in enumerate(zip(questions, answers))]
        scores = np.full(len(prompts), np.nan)
        failure: list[str | None] = [None] * len(prompts)
        for i, (text, ok) in enumerate(self._ask(prompts)):
            if not ok:
                failure[i] = "generator_error"
                continue
            v = parse_score(text)
            if v is None:
                failure[i] = "unparsed_score"
            else:
                scores[i] = v
        with np.errstate(invalid="ignore"):
            passed = scores >= self.threshold
        return JudgeScores(scores, passed, failure)

    def compare(self, questions: Sequence[str], answers_a: Sequence[str],
                answers_b: Sequence[str]) -> list[str]:
        """Per item ``"A"``, ``"B"``, ``"tie"`` (orders disagree or both say tie) or
        ``"unparsed"``. Each item is judged as (A, B) and as (B, A)."""
        if not len(questions) == len(answers_a) == len(answers_b):
            raise ConfigError("questions, answers_a and answers_b must have the same length")
        n = len(questions)
        prompts = [_PAIR_PROMPT.format(question=q, a=a, b=b) for q, a, b in zip(questions, answers_a, answers_b)]
        prompts += [_PAIR_PROMPT.format(question=q, a=b, b=a) for q, a, b in zip(questions, answers_a, answers_b)]
        replies = self._ask(prompts)
        return [combine_verdicts(parse_verdict(replies[i][0]) if replies[i][1] else None,
                                 parse_verdict(replies[n + i][0]) if replies[n + i][1] else None)
                for i in range(n)]


def combine_verdicts(first: str | None, swapped: str | None) -> str:
    """Merge the verdict on (A, B) with the verdict on the swapped order (B, A)."""
    if first is None or swapped is None:
        return "unparsed"
    unswapped = {"A": "B", "B": "A", "tie": "tie"}[swapped]
    return first if first == unswapped else "tie"
