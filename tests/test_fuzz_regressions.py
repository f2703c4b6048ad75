"""Regression tests from fuzzing (fuzz/, docs/fuzzing.md).

* Every seed of every target's corpus (``fuzz/corpus/<target>/``) replays through the
  target's checks — the same invariants the fuzzer enforces, without atheris — so a
  change that breaks an entry point on a seed fails here first.
* One test per finding the fuzzers or the sanitizers made, named after the behaviour it
  guards. Findings that are open defects in code owned elsewhere are strict ``xfail``
  tests whose reason says what is wrong; the fuzz targets list them in ``KNOWN`` so that
  a campaign notes them and goes on. Fixing the defect makes the test pass, which fails
  the suite (strict) until the ``xfail`` mark and the ``KNOWN`` entry are removed.
"""
from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import harness  # noqa: E402
import run as fuzz_run  # noqa: E402

import fastsynth as fs  # noqa: E402
from fastsynth import _native  # noqa: E402

TARGETS = [t for t in fuzz_run.TARGETS if (FUZZ / f"fuzz_{t}.py").exists()]


def _target(name: str):
    return importlib.import_module(f"fuzz_{name}")


@pytest.mark.parametrize("name", TARGETS)
def test_seed_corpus_replays_clean(name):
    seeds = sorted((FUZZ / "corpus" / name).glob("*"))
    assert seeds, f"fuzz/corpus/{name} holds no seeds"
    mod = _target(name)
    for seed in seeds:
        harness.run_one(mod.check, mod.KNOWN, seed.read_bytes())


def test_server_request_target_parses_as_the_server_does():
    """The target's stand-in for OpenAIServer._parse (which it cannot import without torch)
    gives the same request or the same error as the real method on every seed."""
    from types import SimpleNamespace

    from fastsynth.llm import protocol, server

    mod = _target("server_request")
    real = SimpleNamespace(gen=SimpleNamespace(model_name=mod.MODEL), vocab=mod.VOCAB,
                           limits=server.ServerLimits(max_batch=2, max_queue=3))
    from bytesource import ByteSource

    for seed in sorted((FUZZ / "corpus" / "server_request").glob("*")):
        src = ByteSource(seed.read_bytes())
        kind = src.choice(["chat", "completion"])
        raw = src.rest()
        outcomes = []
        for fn in (lambda: server.OpenAIServer._parse(real, raw, kind), lambda: mod.parse(raw, kind)):
            try:
                outcomes.append(fn())
            except protocol.RequestError as e:
                outcomes.append((e.status, e.param, e.code, e.message))
        assert outcomes[0] == outcomes[1], seed.name


def test_shared_checks_fail_on_entry_points_that_break_them(tmp_path):
    """The checks several targets share (fuzz/shared_checks.py) raise on each violation."""
    import shared_checks as sc

    def refuse():
        raise ValueError("texts[1] holds a lone surrogate")

    def refuse_unnamed():
        raise ValueError("bad input")

    with pytest.raises(harness.Finding, match="accepted_lone_surrogate"):
        sc.call_refusing_lone_surrogates(lambda: [0.5, 0.5], ["ok", "\ud800"])
    with pytest.raises(harness.Finding, match="refused_valid_input"):
        sc.call_refusing_lone_surrogates(refuse, ["ok", "fine"])
    with pytest.raises(harness.Finding, match="unnamed_item"):
        sc.call_refusing_lone_surrogates(refuse_unnamed, ["ok", "\ud800"])
    assert sc.call_refusing_lone_surrogates(refuse, ["ok", "\ud800"]) is None
    assert sc.call_refusing_lone_surrogates(lambda: 7, ["ok", b"\xff"]) == 7

    class Reader:  # a reader whose counts do not add up, or that raises
        def __init__(self, stats, fail=False):
            self.stats, self.fail = stats, fail

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __iter__(self):
            if self.fail:
                raise RuntimeError("boom")
            return iter([{"id": "a", "text": "t"}])

    from fastsynth.corpus import ReadStats
    with pytest.raises(harness.Finding, match="accounting"):
        sc.read_accounted(lambda sink: Reader(ReadStats(read=2, yielded=1)))
    with pytest.raises(harness.Finding, match="raised_in_skip_mode"):
        sc.read_accounted(lambda sink: Reader(ReadStats(), fail=True))
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"text": "a"}\nnot json\n')
    items, stats, rejects = sc.read_accounted(
        lambda sink: fs.corpus.read(path, on_error="skip", rejects=sink))
    assert [r["text"] for r in items] == ["a"] and stats.rejected == len(rejects) == 1
    assert sc.raise_mode_is_clean(path) is None                     # an InputError: clean


def test_every_known_defect_has_its_xfail_test():
    here = sys.modules[__name__]
    for name in TARGETS:
        for kind, test in _target(name).KNOWN.items():
            path, _, func = test.partition("::")
            assert path == "tests/test_fuzz_regressions.py" and hasattr(here, func), (name, kind)


def test_targets_report_violated_invariants():
    """The harness must fail on a finding that is not known, and on any other exception."""
    def broken(data: bytes) -> None:
        raise harness.Finding("made_up", "an invariant does not hold")

    with pytest.raises(harness.Finding):
        harness.run_one(broken, {}, b"")
    harness.run_one(broken, {"made_up": "tests/x.py::t"}, b"")  # known: noted, not raised
    with pytest.raises(ZeroDivisionError):
        harness.run_one(lambda data: 1 / 0, {}, b"")


# ---- findings: native code (fixed) -------------------------------------------------

@pytest.mark.parametrize("text", ["\u2014", "x \u201c\u201d y", "\u3002\u3001", "a\u00bf b", ""])
def test_word_scanner_on_punctuation_only_runs(text):
    """UBSan (scripts/sanitize.sh): a non-ASCII run holding only punctuation gives no
    words, and the scanner copied zero words from an empty vector's null ``data()`` —
    undefined behaviour (csrc/word_scan.cpp). Under the sanitized build this aborted;
    under any build both scanners must agree."""
    assert _native.word_hashes(text, True) == _native.word_hashes(text, False)
    sigs = fs.minhash([text, text.encode("utf-8")], num_perm=4, device="cpu")
    assert np.array_equal(sigs[0], sigs[1])


# ---- findings (those still open in code owned elsewhere are strict xfail) ----------

def test_parquet_keeps_valid_rows_beside_invalid_strings(tmp_path):
    meta = pa.array([[b"ok"], [b"bad \xff"]], pa.list_(pa.binary())).view(pa.list_(pa.string()))
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["good row", "row with a bad tag"], "meta": meta}), path)
    rejects: list[dict] = []
    records = list(fs.corpus.read(path, on_error="skip", rejects=rejects))
    assert [r["text"] for r in records] == ["good row"]
    assert [r["row"] for r in rejects] == [1]


def test_parquet_batches_keep_valid_rows_of_a_dictionary_column(tmp_path):
    texts = pa.array([b"fine", b"bad \xff"], pa.binary()).view(pa.string()).dictionary_encode()
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": texts}), path)
    rejects: list[dict] = []
    batches = list(fs.corpus.read_batches(path, on_error="skip", rejects=rejects))
    assert [t for b in batches for t in b.column("text").to_pylist()] == ["fine"]
    assert [r["row"] for r in rejects] == [1]


def test_jsonl_number_past_float_range_is_not_yielded_as_inf(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_text('{"text": "a", "n": 1e400}\n{"text": "b", "n": -1e999}\n', encoding="utf-8")
    for rec in fs.corpus.read(path, on_error="skip"):
        json.dumps(rec, allow_nan=False)  # ValueError on inf


def test_pack_concat_refuses_lengths_whose_sum_overflows():
    from fastsynth.errors import ConfigError
    from fastsynth.train import pack

    try:
        pieces = pack([2**62] * 3, 2**62, "concat")
    except ConfigError as e:
        assert "lengths" in str(e)
        return
    rows = pieces["row"]
    assert rows.min() >= 0 and np.all(np.diff(rows) >= 0), rows.tolist()


def test_pack_best_fit_refuses_a_seq_len_it_cannot_index():
    from fastsynth.errors import ConfigError
    from fastsynth.train import pack

    try:
        pack([5, 3], 2**62, "best-fit")
    except ConfigError as e:
        assert "seq_len" in str(e)
        return
    except ValueError as e:
        assert "seq_len" in str(e), f"ValueError without the parameter's name: {e}"
        return


def test_server_refuses_a_non_string_role_with_400():
    from fastsynth.llm import protocol

    for role in ([], {"a": 1}):
        with pytest.raises(protocol.RequestError) as e:
            protocol.parse_chat({"messages": [{"role": role, "content": "x"}]}, "m")
        assert e.value.status == 400 and e.value.param == "messages[0].role"


def test_spill_sets_reader_refuses_offsets_that_do_not_rise(tmp_path):
    from fastsynth.dedup import spill
    from fastsynth.errors import InputError

    params = spill.SpillParams(num_perm=4, seed=1, ngram=3, shingle="char")
    w = spill.SpillWriter(tmp_path / "sets", b"SETS", params)
    w.append(np.array([3, 8, 1], dtype=np.uint64), 0)
    w.append(np.array([0, 9, 2], dtype=np.int64), 2)  # 9 > 3 values, then back to 2
    w.extra = 3
    w.close()
    with pytest.raises(InputError):
        spill.read_sets(tmp_path / "sets", params)


def test_shard_with_bad_record_ids_is_refused_on_open(tmp_path):
    from fastsynth.errors import InputError
    from fastsynth.train import shards

    w = shards.ShardWriter(tmp_path / "set", vocab_size=300, tokenizer_json="{}",
                           fingerprint="00" * 32, separator="</s>", separator_id=0)
    w.add([np.array([1, 2, 0])], ["caf\u00e9"])
    w.close()
    idx = next((tmp_path / "set").glob("*.idx"))
    raw = bytearray(idx.read_bytes())
    ids_at = shards.HEADER_BYTES + 16 * 2          # two token offsets, two id offsets
    raw[ids_at - 8:ids_at] = (4).to_bytes(8, "little")   # the id ends inside the 2-byte \u00e9
    head = bytes(raw[:shards.HEADER_BYTES])
    crc = shards.index_crc32(head, bytes(raw[shards.HEADER_BYTES:]), head[56:88])
    raw[52:56] = crc.to_bytes(4, "little")         # as a faulty writer would: a valid CRC
    idx.write_bytes(bytes(raw))
    with pytest.raises(InputError):
        shard = shards.Shard(idx)
        shard.record_id(0)


def test_parquet_footer_with_a_non_utf8_column_name_is_a_reject(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"text": ["a"], "m\u00e9ta": [1]}), path)
    raw = path.read_bytes()
    assert b"m\xc3\xa9ta" in raw
    path.write_bytes(raw.replace(b"m\xc3\xa9ta", b"m\xc3\x28ta"))
    rejects: list[dict] = []
    records = list(fs.corpus.read(path, on_error="skip", rejects=rejects))
    assert records == [] and [r["reason"] for r in rejects] == ["unreadable_file"]


def test_nan_guard():
    """Sanity of the JSON check the jsonl regression relies on."""
    with pytest.raises(ValueError):
        json.dumps({"n": math.inf}, allow_nan=False)
