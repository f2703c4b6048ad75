"""builtin:python-stdlib: a real, deterministic corpus with a held-out split."""
from __future__ import annotations

import pytest

from fastsynth.corpus import read, read_batches
from fastsynth.corpus.builtin import EVAL_FRACTION, stdlib_sources, stdlib_split


@pytest.fixture(scope="module")
def splits():
    out = {}
    for split in ("train", "eval"):
        recs = list(read(f"builtin:python-stdlib:{split}"))
        out[split] = recs
    return out


def test_splits_are_disjoint_and_cover_the_stdlib(splits):
    train_ids = [r["id"] for r in splits["train"]]
    eval_ids = [r["id"] for r in splits["eval"]]
    assert len(set(train_ids)) == len(train_ids) and not set(train_ids) & set(eval_ids)
    sources = {f"python-stdlib/{rel}": p for rel, p in stdlib_sources()}
    got = {i for i in train_ids + eval_ids if not i.startswith("python-stdlib/topic/")}
    # every source file is in one split, except files that are blank or not UTF-8
    assert got <= set(sources)
    for missing in set(sources) - got:
        try:
            assert not sources[missing].read_bytes().decode("utf-8").strip(), missing
        except UnicodeDecodeError:
            pass
    assert all(r["split"] == "train" for r in splits["train"]) and all(r["split"] == "eval" for r in splits["eval"])
    assert {r["kind"] for r in splits["train"]} == {"topic", "source"}
    for r in splits["eval"]:
        assert stdlib_split(r["id"]) == "eval"
    share = len(eval_ids) / (len(eval_ids) + len(train_ids))
    assert 0.5 * EVAL_FRACTION < share < 2 * EVAL_FRACTION, share


def test_big_enough_to_train_on(splits):
    chars = sum(len(r["text"]) for r in splits["train"])
    assert chars > 20_000_000, chars  # tens of MB
    assert sum(len(r["text"]) for r in splits["eval"]) > 100_000
    by_id = {r["id"]: r["text"] for r in splits["train"]}
    text = by_id.get("python-stdlib/json/decoder.py") or by_id.get("python-stdlib/json/encoder.py")
    assert text is not None and "def " in text


def test_plain_name_is_the_training_split_and_stable(splits):
    first = [b.column(0).to_pylist() for b in read_batches("builtin:python-stdlib", batch_size=500)]
    ids = [i for b in first for i in b]
    assert ids == [r["id"] for r in splits["train"]]
    again = [r["id"] for r in read("builtin:python-stdlib:eval")]
    assert again == [r["id"] for r in splits["eval"]]


def test_split_rule_is_a_hash_of_the_id():
    ids = [f"doc-{i}" for i in range(20_000)]
    share = sum(stdlib_split(i) == "eval" for i in ids) / len(ids)
    assert abs(share - EVAL_FRACTION) < 0.005
    assert [stdlib_split(i) for i in ids[:100]] == [stdlib_split(i) for i in ids[:100]]
