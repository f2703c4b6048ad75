"""Packing (native best-fit / first-fit / concat), packed rows and the model's varlen forward."""
from __future__ import annotations

import bisect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsynth.errors import ConfigError
from fastsynth.train.packing import METHODS, PIECE_DTYPE, pack, pack_stats
from fastsynth.train.rows import IGNORE_INDEX, packed_rows, padded_rows

lengths_st = st.lists(st.integers(0, 70), min_size=0, max_size=60)
seq_st = st.integers(2, 33)


def _check_placement(lengths, seq_len, pieces, method):
    """Every token of every document exactly once; rows within seq_len; rows dense."""
    assert pieces.dtype == PIECE_DTYPE
    if pieces.size:
        assert np.all(np.diff(pieces["row"]) >= 0), "sorted by row"
        n_rows = int(pieces["row"][-1]) + 1
        assert set(pieces["row"].tolist()) == set(range(n_rows)), "rows without gaps"
        fill = np.bincount(pieces["row"], weights=pieces["length"])
        assert fill.max() <= seq_len
        assert np.all(pieces["length"] >= 1)
    covered = [np.zeros(n, dtype=np.int64) for n in lengths]
    for p in pieces:
        covered[p["doc"]][p["start"]:p["start"] + p["length"]] += 1
    for d, c in enumerate(covered):
        assert np.all(c == 1), f"{method}: doc {d} tokens covered {c.tolist()}"
    if method != "concat":
        # chunks: a document's pieces are its seq_len cuts
        for d, n in enumerate(lengths):
            mine = pieces[pieces["doc"] == d]
            assert sorted(mine["start"].tolist()) == list(range(0, n, seq_len))


@settings(max_examples=120, deadline=None)
@given(lengths=lengths_st, seq_len=seq_st)
def test_every_token_exactly_once(lengths, seq_len):
    for method in METHODS:
        _check_placement(lengths, seq_len, pack(lengths, seq_len, method), method)


def _python_best_fit_rows(lengths, seq_len):
    """Reference best-fit decreasing (sorted free spaces + bisect): the number of rows."""
    cuts = sorted((min(seq_len, n - s) for n in lengths for s in range(0, n, seq_len)), reverse=True)
    free: list[int] = []
    rows = 0
    for c in cuts:
        i = bisect.bisect_left(free, c)
        if i == len(free):
            rows += 1
            left = seq_len - c
        else:
            left = free.pop(i) - c
        if left > 0:
            bisect.insort(free, left)
    return rows


@settings(max_examples=80, deadline=None)
@given(lengths=lengths_st, seq_len=seq_st)
def test_best_fit_matches_reference_and_first_fit_keeps_order(lengths, seq_len):
    pieces = pack(lengths, seq_len, "best-fit")
    rows = int(pieces["row"][-1]) + 1 if pieces.size else 0
    assert rows == _python_best_fit_rows(lengths, seq_len)
    ff = pack(lengths, seq_len, "first-fit")
    cc = pack(lengths, seq_len, "concat")
    total = sum(lengths)
    assert rows >= -(-total // seq_len)  # never fewer than the token count needs
    assert (int(cc["row"][-1]) + 1 if cc.size else 0) == -(-total // seq_len)
    # first fit places pieces in input order: within a row, doc ids increase
    for r in np.unique(ff["row"]):
        docs = ff["doc"][ff["row"] == r]
        assert np.all(np.diff(docs) >= 0)


@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=40), seq_len=seq_st,
       n_sources=st.integers(1, 3), method=st.sampled_from(METHODS))
def test_packed_rows_layout(lengths, seq_len, n_sources, method):
    rng = np.random.default_rng(len(lengths) * 100 + seq_len)
    docs = [rng.integers(1, 1000, n) for n in lengths]
    # spread the documents over n_sources flat token arrays, like shards
    src_of = np.arange(len(docs)) % n_sources
    flats, offs = [], np.zeros(len(docs), dtype=np.int64)
    for s in range(n_sources):
        mine = [d for d in range(len(docs)) if src_of[d] == s]
        pos = 0
        for d in mine:
            offs[d] = pos
            pos += lengths[d]
        flats.append(np.concatenate([docs[d] for d in mine]) if mine else np.zeros(0, np.int64))
    pieces = pack(lengths, seq_len, method)
    n_rows = int(pieces["row"][-1]) + 1
    b = packed_rows(pieces, n_rows, seq_len, flats, src_of[pieces["doc"]],
                    offs[pieces["doc"]] + pieces["start"], pad_id=0)
    ids, labels, pos = b["input_ids"], b["labels"], b["positions"]
    assert ids.shape == labels.shape == pos.shape == (n_rows, seq_len)
    cu = b["cu_seqlens"]
    assert cu.dtype == np.int32 and cu[0] == 0 and cu[-1] == n_rows * seq_len
    seg = np.diff(cu)
    assert np.all(seg > 0) and b["max_seqlen"] == seg.max()
    # no segment crosses a row boundary
    assert set(range(0, n_rows * seq_len + 1, seq_len)) <= set(cu.tolist())
    flat_ids, flat_lab, flat_pos = ids.ravel(), labels.ravel(), pos.ravel()
    real = 0
    # positions restart at 0 exactly at every segment start and count up inside it
    for a, e in zip(cu[:-1], cu[1:]):
        assert flat_pos[a:e].tolist() == list(range(e - a))
    # tokens: each piece's tokens appear at its segment; labels shift inside, -100 at the end
    seg_iter = iter(zip(cu[:-1], cu[1:]))
    for r in range(n_rows):
        row_pieces = pieces[pieces["row"] == r]
        for p in row_pieces:
            a, e = next(seg_iter)
            want = docs[p["doc"]][p["start"]:p["start"] + p["length"]]
            assert flat_ids[a:e].tolist() == want.tolist()
            assert flat_lab[a:e - 1].tolist() == want[1:].tolist()
            assert flat_lab[e - 1] == IGNORE_INDEX
            real += p["length"]
        used = int(row_pieces["length"].sum())
        if used < seq_len:
            a, e = next(seg_iter)
            assert (a, e) == (r * seq_len + used, (r + 1) * seq_len)
            assert np.all(flat_lab[a:e] == IGNORE_INDEX) and np.all(flat_ids[a:e] == 0)
    assert labels[:, -1].tolist() == [IGNORE_INDEX] * n_rows
    assert b["n_tokens"] == real == sum(lengths)
    assert b["n_target_tokens"] == int((labels != IGNORE_INDEX).sum())


def test_known_small_case():
    # lengths 7, 5, 3, 1 at seq_len 8: best fit puts 7+1 and 5+3 together
    p = pack([3, 5, 7, 1], 8)
    assert [(int(x["row"]), int(x["doc"])) for x in p] == [(0, 2), (0, 3), (1, 1), (1, 0)]
    s = pack_stats([3, 5, 7, 1], 8, "best-fit")
    assert (s.rows, s.padding_tokens, s.documents_split) == (2, 0, 0)
    c = pack_stats([3, 6, 7], 8, "concat")
    assert (c.rows, c.documents_split) == (2, 1)  # doc 1 (6 tokens) crosses rows 0 -> 1
    f = pack_stats([3, 5, 7, 1], 8, "first-fit")  # 3+5 | 7+1
    assert (f.rows, f.padding_tokens) == (2, 0)
    padded = pack_stats([3, 5, 20, 1], 8, "padded")
    assert (padded.rows, padded.truncated_tokens, padded.padding_tokens) == (4, 12, 32 - 17)


def test_long_documents_cut_into_chunks():
    p = pack([20], 8, "best-fit")
    assert sorted((int(x["start"]), int(x["length"])) for x in p) == [(0, 8), (8, 8), (16, 4)]
    s = pack_stats([20], 8, "best-fit")
    assert s.documents_split == 1 and s.truncated_tokens == 0


def test_empty_documents_place_nothing():
    assert pack([0, 0], 4).size == 0
    p = pack([0, 3, 0], 4)
    assert p["doc"].tolist() == [1]


@pytest.mark.parametrize("kwargs,name", [
    (dict(lengths=[1, 2], seq_len=1), "seq_len"),
    (dict(lengths=[1, 2], seq_len=0), "seq_len"),
    (dict(lengths=[1, -2], seq_len=8), r"lengths\[1\]"),
    (dict(lengths=[[1, 2]], seq_len=8), "lengths"),
    (dict(lengths=[1.5], seq_len=8), "lengths"),
    (dict(lengths=[1], seq_len=8, method="worst-fit"), "method"),
])
def test_bad_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        pack(**kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_lengths_whose_sum_overflows_int64_are_refused(method):
    with pytest.raises(ConfigError, match=r"lengths sum past .*lengths\[2\]"):
        pack([2**62, 2**62 - 1, 2**62], 2**20, method)


def test_concat_rows_near_the_int64_limit():
    """Lengths summing to just under 2**63: rows count up, no token position overflows."""
    lengths = [2**62 - 1, 2**62 - 1, 1]
    seq_len = 2**61
    want, pos = [], 0  # the reference: cut the concatenation every seq_len (Python ints)
    for d, n in enumerate(lengths):
        s = 0
        while s < n:
            take = min(seq_len - pos % seq_len, n - s)
            want.append((pos // seq_len, d, s, take))
            s, pos = s + take, pos + take
    pieces = pack(lengths, seq_len, "concat")
    assert [tuple(map(int, p)) for p in pieces] == want
    assert pieces["row"].min() >= 0 and int(pieces["row"][-1]) == (sum(lengths) - 1) // seq_len


@pytest.mark.parametrize("seq_len", [2**24 + 1, 2**34, 2**62, 2**63 - 1])
def test_best_fit_refuses_a_seq_len_past_its_table_bound(seq_len):
    with pytest.raises(ConfigError, match="seq_len"):
        pack([5, 3], seq_len, "best-fit")


def test_best_fit_at_its_seq_len_bound_and_other_methods_past_it():
    p = pack([5, 3], 2**24, "best-fit")
    assert p["row"].tolist() == [0, 0] and p["length"].tolist() == [5, 3]
    for method in ("first-fit", "concat"):
        p = pack([5, 3], 2**62, method)
        assert p["row"].tolist() == [0, 0] and p["length"].tolist() == [5, 3]


@pytest.mark.parametrize("method", METHODS)
def test_more_pieces_than_an_array_holds_are_refused(method):
    with pytest.raises(ConfigError, match="pieces"):
        pack([2**62], 2, method)


def test_native_errors_are_value_errors():
    from fastsynth import _native
    with pytest.raises(ValueError, match="seq_len"):
        _native.pack(np.array([1], np.int64), 1, "best-fit")
    with pytest.raises(ValueError, match="method"):
        _native.pack(np.array([1], np.int64), 8, "nope")
    with pytest.raises(ValueError, match="lengths"):
        _native.pack(np.array([1], np.int32), 8, "best-fit")


def test_padded_rows():
    b = padded_rows([np.array([5, 6, 7]), np.arange(10, 22)], 8, pad_id=1)
    assert b["input_ids"][0].tolist() == [5, 6, 7, 1, 1, 1, 1, 1]
    assert b["labels"][0].tolist() == [6, 7] + [IGNORE_INDEX] * 6
    assert b["input_ids"][1].tolist() == list(range(10, 18))
    assert b["labels"][1].tolist() == list(range(11, 18)) + [IGNORE_INDEX]
    assert b["key_mask"].sum() == 11 and b["n_tokens"] == 11 and b["n_target_tokens"] == 9


def test_varlen_forward_over_packed_row_equals_separate_forwards():
    torch = pytest.importorskip("torch")
    from fastsynth.model import Llama, LlamaConfig

    # std 0.2: attention far from uniform, so a leak across documents would show
    model = Llama(LlamaConfig.preset("tiny")).reset_parameters(std=0.2, seed=0).float().eval()
    rng = np.random.default_rng(0)
    lengths = [37, 11, 60, 5, 23, 90]
    docs = [rng.integers(0, 512, n) for n in lengths]
    seq_len = 128
    pieces = pack(lengths, seq_len)
    n_rows = int(pieces["row"][-1]) + 1
    offs = np.cumsum([0, *lengths[:-1]])
    b = packed_rows(pieces, n_rows, seq_len, [np.concatenate(docs)], np.zeros(len(pieces), np.int64),
                    offs[pieces["doc"]] + pieces["start"])
    with torch.no_grad():
        logits = model(torch.from_numpy(b["input_ids"]).view(-1), torch.from_numpy(b["positions"]).view(-1),
                       cu_seqlens=torch.from_numpy(b["cu_seqlens"]), max_seqlen=b["max_seqlen"])
        cu = b["cu_seqlens"]
        seg_start = {}
        it = iter(zip(cu[:-1], cu[1:]))
        for r in range(n_rows):
            for p in pieces[pieces["row"] == r]:
                seg_start[int(p["doc"])] = next(it)
            if int(pieces[pieces["row"] == r]["length"].sum()) < seq_len:
                next(it)
        worst = 0.0
        for d, toks in enumerate(docs):
            alone = model(torch.from_numpy(toks)[None])[0]
            a, e = seg_start[d]
            diff = (logits[a:e] - alone).abs().max().item()
            worst = max(worst, diff)
            scale = alone.abs().max().item()
            assert diff <= 1e-4 * max(scale, 1.0), (d, diff)
    assert worst < 1e-3


def test_import_train_stays_light():
    """``import fastsynth.train`` and packing need no torch (the loader and loop do)."""
    import subprocess
    import sys
    code = ("import sys, fastsynth.train as t; t.pack([3, 4], 8); t.pack_stats([3], 8); "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
