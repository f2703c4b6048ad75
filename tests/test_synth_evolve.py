"""Evol-Instruct evolution: operations and the elimination of failed evolutions."""
import pytest

from fastsynth.synth import evolve
from fastsynth.synth.calls import Result
from fastsynth.synth.parse import MalformedOutput
from fastsynth.synth.provenance import QARecord

Q = "What does the assert statement do in Python?"


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    ("I'm sorry, but as an AI I cannot rewrite this.", "refusal"),
    ("Q: Rewrite the question below so that it asks more?", "copied_prompt"),
    ("Here is the new question: what does assert do?", "copied_prompt"),
    ("Q: What does the assert statement do in Python?", "no_information_gain"),
    ("Q: What does the Python assert statement do?", "no_information_gain"),
    ("Q: How is assert used?", "no_information_gain"),  # in-depth but not longer
    ("The statement is useful.", "no_questions"),
])
def test_elimination_reasons(text, reason):
    with pytest.raises(MalformedOutput) as e:
        evolve.eliminate(Q, text, "deepen")
    assert e.value.reason == reason


def test_successful_evolutions():
    deeper = "Q: How does the assert statement interact with the -O flag and __debug__ when Python optimises code?"
    assert evolve.eliminate(Q, deeper, "deepen").startswith("How does the assert statement interact")
    # in-breadth may be shorter: it is a new question, not a harder one
    assert evolve.eliminate(Q, "Q: When is AssertionError raised by unittest?", "breadth") == \
        "When is AssertionError raised by unittest?"


def test_calls_and_collect_provenance():
    recs = [QARecord(level=1, question=f"What is item {i} of the list type?", kind="new", source_ids=[f"d{i}"],
                     generator_model="m", prompt_version="level1/v1", seed=i) for i in range(40)]
    cs = evolve.calls(recs, seed=5, max_tokens=32, temperature=0.7)
    ops = {c.tag[1] for c in cs}
    assert ops == set(evolve.OPERATIONS)  # all operations get used over 40 questions
    assert cs == evolve.calls(recs, seed=5, max_tokens=32, temperature=0.7)  # deterministic
    c = cs[0]
    res = [Result(c, "Q: Which methods of the list type return None, and why does that design help?", "stop",
                  None, "evo-model", 1),
           Result(cs[1], "", "error", "boom", "evo-model", 3)]
    out, rej = evolve.collect(res)
    assert len(out) == 1 and out[0].parent_id == recs[0].id and out[0].kind == f"evolved:{c.tag[1]}"
    assert out[0].prompt_version == f"level1/v1+evolve_{c.tag[1]}/v1" and out[0].seed == c.seed
    assert out[0].source_ids == ["d0"] and out[0].generator_model == "evo-model"
    assert rej[0].stage == "evolve" and rej[0].reason == "generator_error"
