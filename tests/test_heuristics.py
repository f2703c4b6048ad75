"""fastsynth.quality.heuristics: native results equal the plain-Python specification."""
import math
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastsynth as fs
from fastsynth.quality import HEURISTIC_NAMES
from fastsynth.quality import _reference as ref


def assert_matches_reference(texts, threads=2):
    got = fs.quality.heuristics(texts, threads=threads)
    want = ref.heuristics([t if isinstance(t, str) else t.decode("utf-8", "replace") for t in texts])
    assert list(got) == list(HEURISTIC_NAMES)
    for name in HEURISTIC_NAMES:
        assert got[name].dtype == np.float64 and got[name].shape == (len(texts),)
        np.testing.assert_allclose(got[name], np.array(want.get(name, []), dtype=np.float64),
                                   rtol=1e-12, atol=0, equal_nan=True, err_msg=name)


# Text built from pieces that exercise every rule: repeats, bullets, ellipses, hashes,
# stop words with punctuation, CJK, emoji, unusual whitespace, blank-line paragraphs.
PIECES = ["the", "The,", "cat", "cat", "a", "...", "…", "#", "#tag", "-", "•", "with", "that.",
          "日本語", "🙂", "Ünïcode", "x1", "!", "\"quoted\"", "end.", "and?"]
SEPARATORS = [" ", " ", " ", "\n", "\n\n", "\t", "\u00a0", "\u3000", "\u2028", " \n ", "\x1c"]


def _document(codes: bytes) -> str:
    """Byte pairs -> piece + separator. Drawn as one byte string: hypothesis draws (and
    shrinks) that in one step, where 240 separate sampled_from draws per document took
    ~90% of this test's time."""
    return "".join(PIECES[codes[i] % len(PIECES)] + SEPARATORS[codes[i + 1] % len(SEPARATORS)]
                   for i in range(0, len(codes) - 1, 2))


documents = st.binary(max_size=240).map(_document)


@settings(max_examples=150, deadline=None)
@given(st.lists(documents, max_size=8))
def test_matches_reference_on_generated_documents(texts):
    assert_matches_reference(texts)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=400), max_size=8))
def test_matches_reference_on_arbitrary_unicode(texts):
    texts = [t for t in texts if not any(0xD800 <= ord(c) <= 0xDFFF for c in t)]
    assert_matches_reference(texts)


def test_hand_computed_values():
    text = "the cat sat\nthe cat sat\n\n- a list item...\n#hash"
    h = {k: v[0] for k, v in fs.quality.heuristics([text]).items()}
    words = text.split()
    assert h["n_words"] == len(words) == 11
    assert h["n_chars"] == len(text)
    assert h["n_lines"] == 4 and h["n_paragraphs"] == 2
    assert h["dup_line_frac"] == 0.25                      # 1 of 4 lines repeats
    assert h["dup_line_char_frac"] == 11 / (11 + 11 + 16 + 5)
    assert h["frac_lines_start_bullet"] == 0.25
    assert h["frac_lines_end_ellipsis"] == 0.25
    assert h["hash_word_ratio"] == 1 / 11 and h["ellipsis_word_ratio"] == 1 / 11
    assert h["n_stop_words"] == 2                          # "the" twice; "a" is not a Gopher stop word
    # 2-gram "the cat" and "cat sat" both occur twice with 6 chars; tie -> the first to
    # reach count 2 ("the cat"); it covers words 0-1 and 3-4: 12 of 38 word characters.
    word_chars = sum(len(w) for w in words)
    assert h["top_2gram_char_frac"] == 12 / word_chars
    assert h["dup_5gram_char_frac"] == 0.0                 # no 5-gram repeats


def test_overlapping_repeats_count_each_character_once():
    h = fs.quality.heuristics(["a " * 12])
    assert h["top_2gram_char_frac"][0] == 1.0
    assert h["dup_10gram_char_frac"][0] == 1.0


def test_empty_and_whitespace_documents():
    h = fs.quality.heuristics(["", "   \n\n\t"])
    for name in ("n_chars", "n_words", "n_lines", "n_paragraphs", "n_stop_words"):
        assert h[name][0] == 0
    assert h["n_chars"][1] == 6 and h["n_words"][1] == 0
    for name in ("mean_word_length", "symbol_word_ratio", "frac_words_alpha", "top_2gram_char_frac",
                 "frac_lines_end_punct", "dup_line_frac"):
        assert np.isnan(h[name]).all(), name


def test_whitespace_is_pythons_isspace():
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    got = fs.quality.heuristics([f"a{s}b" for s in spaces])["n_words"]
    assert (got == 2).all()
    non_spaces = ["\u200b", "\u180e", "\ufeff", "_", "\u00ad"]
    assert (fs.quality.heuristics([f"a{s}b" for s in non_spaces])["n_words"] == 1).all()


def test_alphabetic_definition_agrees_with_isalpha_on_letters():
    letters = "AZaz" + "ÀÿĀžΑωАяאתابअह中文日本語한글ひカ"
    non_letters = "0123456789.,;:!?-—…“”()[]{}#@€$%&*+=<>/\\|~^°×÷™→■🙂、。！？（）"
    assert all(ref.is_alpha(c) for c in letters)
    assert not any(ref.is_alpha(c) for c in non_letters)
    got = fs.quality.heuristics(list(letters) + list(non_letters))["frac_words_alpha"]
    np.testing.assert_array_equal(got, [1.0] * len(letters) + [0.0] * len(non_letters))


def test_bytes_arrow_and_threads_agree():
    texts = ["The cat. The cat.\n\nA dog…", "", "日本語 🙂 text #x", "word " * 500]
    base = fs.quality.heuristics(texts, threads=1)
    variants = [
        fs.quality.heuristics([t.encode() for t in texts]),
        fs.quality.heuristics(pa.array(texts)),
        fs.quality.heuristics(pa.chunked_array([texts[:1], texts[1:]], pa.large_string())),
        fs.quality.heuristics(texts * 1, threads=2),
    ]
    for v in variants:
        for name in HEURISTIC_NAMES:
            np.testing.assert_array_equal(v[name], base[name], err_msg=name)


def test_invalid_utf8_counts_replacement_characters():
    h = fs.quality.heuristics([b"ab\xffcd \xc3"])
    assert h["n_chars"][0] == 7 and h["n_words"][0] == 2


def test_null_arrow_entries_are_nan():
    h = fs.quality.heuristics(pa.array(["a b c", None]))
    assert h["n_words"][0] == 3 and all(math.isnan(h[n][1]) for n in HEURISTIC_NAMES)


def test_bad_input():
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        fs.quality.heuristics([None])
    with pytest.raises(ValueError, match="threads"):
        fs.quality.heuristics(["x"], threads=-2)
