"""Online near-duplicate filter of generated questions (MinHash/LSH, exact fallback)."""
import importlib.util

import pytest

from fastsynth.synth.neardup import ExactFilter, MinHashFilter, normalize_text, question_filter


def test_exact_fallback():
    f = ExactFilter()
    assert f.add("a", "What is a list?") is None
    assert f.add("b", "what is a LIST ?!") == "a"  # case, spacing and punctuation do not count
    assert f.add("c", "What is a tuple?") is None
    assert f.add("d", "What's a list?") is None  # a paraphrase is not caught by the fallback
    assert normalize_text("  Foo,  bar? ") == "foo bar"
    assert question_filter(prefer="exact").kind == "exact-normalised"


def _dedup_available():
    if importlib.util.find_spec("fastsynth.dedup") is None:
        return False
    from fastsynth import dedup
    return hasattr(dedup, "LSHIndex") and hasattr(dedup, "minhash")


@pytest.mark.skipif(not _dedup_available(), reason="fastsynth.dedup (MinHash/LSH) is not merged into this build")
def test_minhash_filter_catches_near_duplicates():
    f = question_filter(threshold=0.7)
    assert isinstance(f, MinHashFilter) and f.kind == "minhash-lsh"
    base = "How does the garbage collector in CPython detect reference cycles between container objects?"
    assert f.add("a", base) is None
    near = base.replace("objects?", "objects in memory?")  # word-3-gram Jaccard 11/13 = 0.85
    assert f.add("b", near) == "a"
    assert f.add("e", base.replace("CPython", "CPython 3")) is None  # 3 of 11 trigrams change: J = 0.64
    assert f.add("c", "Which module provides functions for working with dates and times in Python?") is None
    assert f.add("d", base.upper()) == "a"
