"""RAKE key terms, the fallback that tops up thin concept lists."""
from fastsynth.synth.keyterms import key_terms

TEXT = ("Python lists are mutable sequences. The append method adds one item to the end of a list, "
        "and the sort method sorts a list in place. Slicing a list returns a new list.")


def test_phrases_then_frequent_words():
    terms = key_terms(TEXT, k=6)
    assert terms[:3] == ["python list", "mutable sequence", "append method"]  # RAKE scores, then order
    assert terms[3] == "list"  # the most frequent content word (4 times)
    assert len(terms) == 6 and len(set(terms)) == 6
    assert all(t.split()[0] not in ("the", "and", "a") for t in terms)


def test_edge_cases():
    assert key_terms("", k=5) == []
    assert key_terms("the and of to", k=5) == []
    assert key_terms(TEXT, k=1) == ["python list"]
