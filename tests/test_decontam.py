"""Decontamination by word n-gram overlap with an evaluation set."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsynth.errors import ConfigError
from fastsynth.quality.decontam import Decontaminator, ngrams

EVAL = ["Which built-in function returns the length of a list, and what does it return for an empty list?",
        "What is the time complexity of inserting at the front of a Python list?"]


def test_ngrams():
    assert ngrams("A b, C d!", 2) == {"a b", "b c", "c d"}
    assert ngrams("Only three words", 8) == {"only three words"}
    assert ngrams("...", 3) == set()


def test_overlap_fractions_and_flags():
    d = Decontaminator(EVAL, n=8)
    texts = [
        # shares the 8-grams "the time complexity of inserting at the front" ... of the second
        "Explain the time complexity of inserting at the front of a Python list in detail.",
        "How do dictionaries keep insertion order since Python 3.7?",
        "length of a list",  # short: contained in an eval text
        "WHICH built-in function returns the LENGTH of a list, and what does it return for an empty list?",
    ]
    ov = d.overlap(texts)
    assert 0 < ov[0] < 1 and ov[1] == 0 and ov[2] == 1 and ov[3] == 1
    assert d.contaminated(texts).tolist() == [True, False, True, True]
    # an eval text shorter than n found whole inside a longer generated text
    short = Decontaminator(["What is a Python list?"], n=8)
    assert short.overlap(["Q: what is a python list? A: an ordered mutable sequence of items."])[0] == 1.0
    assert short.overlap(["Q: what is a python tuple? A: an ordered immutable sequence of items."])[0] == 0.0
    strict = Decontaminator(EVAL, n=8, min_overlap=0.9)
    assert strict.contaminated(texts).tolist() == [False, False, True, True]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet="abcd ", max_size=60), max_size=5), st.text(alphabet="abcd ", max_size=60),
       st.integers(1, 5))
def test_overlap_matches_brute_force(eval_texts, text, n):
    d = Decontaminator(eval_texts, n=n)
    w = text.lower().split()
    got = d.overlap([text])[0]
    short_inside = any(0 < len(e.split()) < n and f" {' '.join(e.split())} " in f" {' '.join(w)} "
                       for e in eval_texts)
    if not w:
        assert got == 0
    elif len(w) >= n:
        grams = {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}
        ev = {tuple(e.split()[i:i + n]) for e in eval_texts for i in range(len(e.split()) - n + 1)}
        assert got == pytest.approx(1.0 if short_inside else len(grams & ev) / len(grams))
    else:
        inside = any(" " + " ".join(w) + " " in " " + " ".join(e.split()) + " " for e in eval_texts)
        assert got == float(inside or short_inside)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        Decontaminator(EVAL, n=0)
    with pytest.raises(ConfigError):
        Decontaminator(EVAL, min_overlap=0)
    with pytest.raises(ConfigError):
        Decontaminator([1, 2])
    assert Decontaminator([]).contaminated(["anything at all"]).tolist() == [False]
    assert isinstance(Decontaminator(EVAL).overlap([]), np.ndarray)
