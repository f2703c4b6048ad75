"""RAKE key terms, the fallback that tops up thin concept lists."""
from fastsynth.synth.keyterms import key_terms

TEXT = ("Python lists are mutable sequences. The append method adds one item to the end of a list, "
        "and the sort method sorts a list in place. Slicing a list returns a new list.")


def test_words_and_phrases_alternate():
    terms = key_terms(TEXT, k=6)
    # words by frequency ("list" 4 times), phrases by RAKE score; ties by first occurrence
    assert terms == ["list", "python list", "python", "mutable sequence", "mutable", "append method"]
    assert all(t.split()[0] not in ("the", "and", "a") for t in terms)


def test_edge_cases():
    assert key_terms("", k=5) == []
    assert key_terms("the and of to", k=5) == []
    assert key_terms(TEXT, k=1) == ["list"]
