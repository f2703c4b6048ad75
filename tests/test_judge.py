"""LLM judge: score/verdict parsing, thresholds, order-swapped pairwise mode.

The judge's logic (prompting, parsing, swapping, failure accounting) is under test here,
so the model is a small rule-following stand-in with the Generator interface; the judge
runs against the real SmolLM2 in the synth end-to-end test.
"""
import re

import numpy as np
import pytest

from fastsynth.errors import ConfigError
from fastsynth.llm.base import Completion, Generator
from fastsynth.quality.judge import RUBRIC, Judge, combine_verdicts, parse_score, parse_verdict


@pytest.mark.parametrize("text,score", [("Score: 7", 7), ("score is 10/10", 10), ("8/10 - good", 8),
                                        ("**Score:** 3", 3), ("9", 9), ("I'd say 6.", None),
                                        ("Score: 11", None), ("Score: 0", None), ("", None),
                                        ("The answer is fine", None)])
def test_parse_score(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize("text,verdict", [("A", "A"), ("b.", "B"), ("Answer B is better", "B"),
                                          ("**A**", "A"), ("Tie", "tie"), ("both are equal", "tie"),
                                          ("I cannot decide", None), ("", None)])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_combine_verdicts_undoes_the_swap():
    assert combine_verdicts("A", "B") == "A"  # A first, then A shown second and chosen as "B"
    assert combine_verdicts("B", "A") == "B"
    assert combine_verdicts("A", "A") == "tie"  # position bias: the first slot won both times
    assert combine_verdicts("tie", "tie") == "tie"
    assert combine_verdicts(None, "A") == "unparsed"


class RuleJudge(Generator):
    """Scores by the number of words of the answer (capped at 10); pairwise: prefers the
    longer answer, or always 'A' when biased; 'fail' in an answer -> an error completion;
    'garble' -> an unparseable reply."""

    model_name = "rule-judge"

    def __init__(self, biased=False):
        self.biased = biased
        self.prompts = []

    def _generate(self, chats, params, seeds):
        out = []
        for chat in chats:
            p = chat[-1]["content"]
            self.prompts.append(p)
            if "fail" in p:
                out.append(Completion.failed("server down"))
                continue
            if "garble" in p:
                out.append(Completion("hmm, hard to say", "stop"))
                continue
            if p.startswith("Which answer"):
                a = re.search(r"Answer A: (.*)\n\nAnswer B: (.*)\n\n", p, re.S)
                v = "A" if self.biased or len(a.group(1)) >= len(a.group(2)) else "B"
                out.append(Completion(v, "stop"))
            else:
                ans = p.split("Answer: ")[-1].split("\n")[0]
                out.append(Completion(f"Score: {min(10, len(ans.split()))}", "stop"))
        return out


def test_score_threshold_and_failures():
    gen = RuleJudge()
    j = Judge(gen, threshold=5, batch_size=2)
    r = j.score(["q1", "q2", "q3", "q4"], ["one two three", "a b c d e f g", "garble", "fail"])
    assert r.score[:2].tolist() == [3.0, 7.0] and np.isnan(r.score[2:]).all()
    assert r.passed.tolist() == [False, True, False, False]
    assert r.failure == [None, None, "unparsed_score", "generator_error"]
    assert all(RUBRIC in p for p in gen.prompts)


def test_pairwise_swaps_order_and_cancels_position_bias():
    gen = RuleJudge()
    out = Judge(gen).compare(["q", "q"], ["short", "a much longer answer here"], ["a longer answer", "tiny"])
    assert out == ["B", "A"]
    assert len(gen.prompts) == 4  # each pair asked in both orders
    biased = Judge(RuleJudge(biased=True)).compare(["q"], ["x"], ["y y"])
    assert biased == ["tie"]


def test_bad_arguments():
    with pytest.raises(ConfigError):
        Judge(RuleJudge(), threshold=0)
    with pytest.raises(ConfigError):
        Judge(RuleJudge()).score(["q"], [])
    assert Judge(RuleJudge()).score([], []).score.shape == (0,)
