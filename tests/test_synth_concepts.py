"""Concept name normalisation and near-duplicate merging."""
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsynth.synth.concepts import merge_names, normalize, singular


def test_singular_rules():
    pairs = {"lists": "list", "classes": "class", "dictionaries": "dictionary", "indices": "index",
             "boxes": "box", "process": "process", "status": "status", "analysis": "analysis",
             "branches": "branch", "args": "args", "bus": "bus", "data": "data", "keys": "key"}
    assert {w: singular(w) for w in pairs} == pairs


def test_normalize():
    assert normalize("  The   Lists ") == "list"
    assert normalize("List Comprehensions") == "list comprehension"
    assert normalize("`os.path` Functions!") == "os.path function"
    assert normalize("C++ templates") == "c++ template"
    assert normalize("an") == ""
    assert normalize("\uff21ssert Statements") == "assert statement"  # NFKC full-width A


def test_merge_word_order_typos_and_trigrams():
    names = ["list comprehension", "list comprehension", "comprehension list", "list comprehenson",
             "generator expression", "generator expresion", "module", "modules"]
    m = merge_names(normalize(n) for n in names)
    assert m["comprehension list"] == m["list comprehenson"] == m["list comprehension"] == "list comprehension"
    assert m["generator expresion"] == m["generator expression"]
    assert m["module"] == "module"
    assert m["module"] != m["list comprehension"] != m["generator expression"]


def test_short_names_not_merged_by_one_edit():
    m = merge_names(["set", "get", "sep"])
    assert len(set(m.values())) == 3


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh s", min_size=1, max_size=12), max_size=30))
def test_merge_is_a_canonical_mapping(names):
    names = [normalize(n) for n in names]
    m = merge_names(names)
    assert set(m) == {n for n in names if n}
    for rep in set(m.values()):
        assert m[rep] == rep  # representatives map to themselves
    # normalize is idempotent
    for n in names:
        assert normalize(n) == n


def test_normalize_identifiers():
    assert normalize("__debug__") == "debug"
    assert normalize("target_list") == "target_list"
    assert normalize("**Key Terms**") == "key term"
