"""Answer parsing, self-consistency majority, reference agreement, truncation."""
import math

import pytest

from fastsynth.synth import prompts
from fastsynth.synth.answers import calls, collect, majority, token_f1, trim_truncated
from fastsynth.synth.calls import Result
from fastsynth.synth.parse import MalformedOutput
from fastsynth.synth.provenance import QARecord


def test_token_f1():
    assert token_f1("The list is sorted in place.", "list sorted in place") == 1.0
    assert token_f1("apples", "oranges") == 0.0
    assert token_f1("a b c x", "a b c y") == pytest.approx(2 / 3)  # "a" is a stop word: {b,c,x} vs {b,c,y}
    assert token_f1("", "the") == 1.0


def test_majority():
    ans = ["It returns a new sorted list.", "Paris is the capital.", "sorted returns a new list",
           "A new sorted list is returned."]
    best, frac = majority(ans)
    assert best == 0 and frac == 0.75
    assert majority(["x y", "p q"]) == (0, 0.5)


def test_trim_truncated():
    assert trim_truncated("One sentence. Two sent") == "One sentence."
    with pytest.raises(MalformedOutput):
        trim_truncated("no end at all")


def _rec():
    return QARecord(level=2, question="What does sorted() return?", kind="combined", source_ids=["d"],
                    generator_model="m", prompt_version="level2/v1", seed=1)


def _results(rec, texts, reasons=None, samples=None):
    cs = calls([rec], lambda r: "doc text", samples or len(texts), seed=3, max_tokens=20, temperature=0.7)
    assert len(cs) == len(texts)
    assert len({c.seed for c in cs}) == len(cs)  # one seed per sample
    return [Result(c, t, (reasons or ["stop"] * len(texts))[i], None if (reasons or ["stop"] * 9)[i] != "error"
                   else "boom", "answer-model", 1) for i, (c, t) in enumerate(zip(cs, texts))]


def test_single_answer_is_greedy_and_kept():
    rec = _rec()
    cs = calls([rec], lambda r: "doc", 1, seed=3, max_tokens=20, temperature=0.7)
    assert cs[0].temperature == 0.0
    kept, rej = collect([Result(cs[0], "Answer: A new list.", "stop", None, "am", 1)], samples=1)
    assert rej == [] and kept[0].answer == "A new list." and math.isnan(kept[0].answer_agreement)
    assert kept[0].answer_model == "am" and kept[0].prompt_version == "level2/v1+" + prompts.load("answer").id


def test_self_consistency_keeps_majority_and_rejects_split():
    kept, rej = collect(_results(_rec(), ["A new sorted list.", "It gives a new sorted list.", "None."]), samples=3)
    assert len(kept) == 1 and kept[0].answer == "A new sorted list." and kept[0].answer_agreement == pytest.approx(2 / 3)
    kept, rej = collect(_results(_rec(), ["A new sorted list.", "An integer.", "A dictionary of keys."]), samples=3)
    assert kept == [] and rej[0].reason == "no_majority"


def test_failed_samples_count_against_agreement():
    kept, rej = collect(_results(_rec(), ["A new sorted list.", "", "A sorted list, new."],
                                 reasons=["stop", "error", "stop"]), samples=3)
    assert kept[0].answer_agreement == pytest.approx(2 / 3)
    kept, rej = collect(_results(_rec(), ["", "", "A sorted list."], reasons=["error", "error", "stop"]), samples=3)
    assert kept == [] and rej[0].reason == "no_majority"
    kept, rej = collect(_results(_rec(), ["", ""], reasons=["error", "error"]), samples=2)
    assert rej[0].reason == "generator_error"


def test_reference_answer_mode():
    rec = _rec()
    res = _results(rec, ["An integer.", "It returns a new sorted list."])
    kept, rej = collect(res, samples=2, references={rec.question: "a new sorted list"})
    assert kept[0].answer == "It returns a new sorted list." and kept[0].answer_agreement == 0.5
    rec2 = _rec()
    kept, rej = collect(_results(rec2, ["An integer.", "A float."]), samples=2,
                        references={rec2.question: "a new sorted list"})
    assert kept == [] and rej[0].reason == "disagrees_with_reference"


def test_truncated_answers_trimmed_or_rejected():
    kept, _ = collect(_results(_rec(), ["It returns a list. And then it"], reasons=["length"]), samples=1)
    assert kept[0].answer == "It returns a list."
    kept, rej = collect(_results(_rec(), ["It returns a list and then it"], reasons=["length"]), samples=1)
    assert kept == [] and rej[0].reason == "truncated"
