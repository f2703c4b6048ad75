"""Fitting documents into the prompt budget: chunking, skipping, reasons."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsynth.errors import ConfigError
from fastsynth.synth.documents import fit_documents


def test_short_docs_pass_and_bad_ones_have_reasons():
    recs = [{"id": "a", "text": "x" * 50}, {"id": "b", "text": "  tiny "}, {"id": "a", "text": "y" * 60},
            {"id": "c", "text": None}]
    docs, skipped = fit_documents(recs, max_chars=100)
    assert [d.id for d in docs] == ["a"]
    assert skipped == [("b", "too_short"), ("a", "duplicate_id"), ("c", "no_text")]


def test_chunking_at_paragraphs_and_limits():
    text = "\n\n".join(f"Paragraph {i} " + "word " * 30 for i in range(10))
    docs, skipped = fit_documents([{"id": "d", "text": text}], max_chars=400, max_chunks=3)
    assert [d.id for d in docs] == ["d#0", "d#1", "d#2"]
    assert skipped == [("d", "extra_chunks_dropped")]
    assert all(len(d.text) <= 400 for d in docs)
    assert docs[0].text.startswith("Paragraph 0") and "Paragraph 1" in docs[0].text
    docs, skipped = fit_documents([{"id": "d", "text": text}], max_chars=400, on_long="skip")
    assert docs == [] and skipped == [("d", "too_long")]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab .\n"), min_size=200, max_size=3000), st.integers(100, 600))
def test_chunks_fit_and_keep_all_words(text, max_chars):
    docs, skipped = fit_documents([{"id": "d", "text": text}], max_chars=max_chars, max_chunks=10_000, min_chars=1)
    assert all(len(d.text) <= max_chars for d in docs)
    if text.strip() and len(text.strip()) > max_chars:
        assert "".join("".join(d.text.split()) for d in docs) == "".join(text.split())


def test_bad_parameters():
    with pytest.raises(ConfigError):
        fit_documents([], on_long="truncate")
    with pytest.raises(ConfigError):
        fit_documents([], max_chars=10)
