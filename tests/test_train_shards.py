"""Token shards: round trip, sizes, atomic writes, and every damaged-input case."""
from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

from fastsynth.errors import ConfigError, InputError
from fastsynth.train.shards import HEADER_BYTES, Shard, index_crc32, ShardSet, ShardWriter, token_dtype
from fastsynth.train.vocab import fingerprint

TOK_JSON = json.dumps({"fake": "tokenizer", "for": "format tests"})


def _write_set(path, docs, vocab=1000, shard_tokens=1 << 20, tok_json=TOK_JSON, ids=None):
    w = ShardWriter(path, vocab_size=vocab, tokenizer_json=tok_json, fingerprint=fingerprint(tok_json),
                    separator="<|endoftext|>", separator_id=0, shard_tokens=shard_tokens)
    w.add(docs, ids or [f"doc-{i}-é" for i in range(len(docs))])
    return w.close({"made_by": "test"})


def _docs(n, vocab, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, rng.integers(1, 50)) for _ in range(n)]


@pytest.mark.parametrize("vocab", [1000, 65536, 70000])
def test_round_trip(tmp_path, vocab):
    docs = _docs(40, vocab)
    m = _write_set(tmp_path / "s", docs, vocab=vocab, shard_tokens=300)
    ss = ShardSet(tmp_path / "s")
    assert ss.n_docs == 40 and ss.n_tokens == sum(map(len, docs)) == m["tokens"]
    assert len(ss.shards) == len(m["shards"]) > 1
    assert ss.shards[0].tokens.dtype == token_dtype(vocab)
    assert token_dtype(vocab).itemsize == (2 if vocab <= 65536 else 4)
    for i, d in enumerate(docs):
        assert ss.doc(i).tolist() == d.tolist()
        assert ss.record_id(i) == f"doc-{i}-é"
    assert ss.lengths.tolist() == [len(d) for d in docs]
    # a document never straddles shards; a shard stops once it reaches shard_tokens
    for sh in ss.shards[:-1]:
        assert sh.n_tokens >= 300 and sh.n_tokens - int(sh.lengths[-1]) < 300
    assert not list((tmp_path / "s").glob(".*tmp")), "temporary files left behind"


def test_add_flat_equals_add(tmp_path):
    docs = _docs(30, 500, seed=3)
    _write_set(tmp_path / "a", docs, vocab=500, shard_tokens=200)
    w = ShardWriter(tmp_path / "b", vocab_size=500, tokenizer_json=TOK_JSON, fingerprint=fingerprint(TOK_JSON),
                    separator="<|endoftext|>", separator_id=0, shard_tokens=200)
    w.add_flat(np.concatenate(docs[:13]), np.array([len(d) for d in docs[:13]]), [f"doc-{i}-é" for i in range(13)])
    w.add_flat(np.concatenate(docs[13:]), np.array([len(d) for d in docs[13:]]),
               [f"doc-{i}-é" for i in range(13, 30)])
    w.close({"made_by": "test"})
    for name in ("shard-00000.bin", "shard-00000.idx", "shard-00001.bin", "shard-00001.idx"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_ids_outside_vocab_refused_at_write(tmp_path):
    w = ShardWriter(tmp_path / "s", vocab_size=100, tokenizer_json=TOK_JSON, fingerprint=fingerprint(TOK_JSON),
                    separator="x", separator_id=0)
    with pytest.raises(InputError, match="token id 100 is outside the vocabulary.*100"):
        w.add([np.array([1, 2, 100])], ["bad-doc"])
    with pytest.raises(InputError, match="bad-doc2"):
        w.add([np.array([-1, 2])], ["bad-doc2"])
    with pytest.raises(ConfigError, match="shard_tokens"):
        ShardWriter(tmp_path / "t", vocab_size=100, tokenizer_json=TOK_JSON, fingerprint=fingerprint(TOK_JSON),
                    separator="x", separator_id=0, shard_tokens=0)


def test_existing_set_needs_overwrite(tmp_path):
    _write_set(tmp_path / "s", _docs(3, 100), vocab=100)
    with pytest.raises(ConfigError, match="overwrite"):
        _write_set(tmp_path / "s", _docs(3, 100), vocab=100)
    w = ShardWriter(tmp_path / "s", vocab_size=100, tokenizer_json=TOK_JSON, fingerprint=fingerprint(TOK_JSON),
                    separator="x", separator_id=0, overwrite=True)
    w.add(_docs(2, 100, seed=9), ["a", "b"])
    w.close()
    assert ShardSet(tmp_path / "s").n_docs == 2


def test_unfinished_set_is_not_a_set(tmp_path):
    w = ShardWriter(tmp_path / "s", vocab_size=100, tokenizer_json=TOK_JSON, fingerprint=fingerprint(TOK_JSON),
                    separator="x", separator_id=0, shard_tokens=50)
    w.add(_docs(10, 100), [str(i) for i in range(10)])
    w.abort()
    assert not list((tmp_path / "s").glob(".*tmp"))
    with pytest.raises(InputError, match="no manifest.json"):
        ShardSet(tmp_path / "s")


def test_rerun_after_an_unfinished_run_replaces_its_shards(tmp_path):
    w = ShardWriter(tmp_path / "s", vocab_size=100, tokenizer_json=TOK_JSON, fingerprint=fingerprint(TOK_JSON),
                    separator="x", separator_id=0, shard_tokens=20)
    w.add(_docs(30, 100), [str(i) for i in range(30)])  # several shards, then the run "dies"
    assert len(list((tmp_path / "s").glob("shard-*.idx"))) > 2
    (tmp_path / "s" / "notes.txt").write_text("not ours")
    _write_set(tmp_path / "s", _docs(3, 100, seed=2), vocab=100)
    ss = ShardSet(tmp_path / "s")
    assert ss.n_docs == 3 and len(ss.shards) == 1
    assert (tmp_path / "s" / "notes.txt").exists()


@pytest.fixture
def one_set(tmp_path):
    _write_set(tmp_path / "s", _docs(20, 300), vocab=300)
    return tmp_path / "s"


def _patch(path, offset, fmt, value):
    b = bytearray(path.read_bytes())
    struct.pack_into(fmt, b, offset, value)
    path.write_bytes(bytes(b))


def test_truncated_bin(one_set):
    b = one_set / "shard-00000.bin"
    b.write_bytes(b.read_bytes()[:-3])
    with pytest.raises(InputError, match=r"shard-00000\.bin.*truncated"):
        ShardSet(one_set)


def test_bin_longer_than_idx(one_set):
    b = one_set / "shard-00000.bin"
    b.write_bytes(b.read_bytes() + b"\0\0")
    with pytest.raises(InputError, match=r"shard-00000\.bin.*longer than its index"):
        ShardSet(one_set)


def test_checksum_mismatch(one_set):
    b = one_set / "shard-00000.bin"
    data = bytearray(b.read_bytes())
    data[4] ^= 1  # stays inside the vocabulary, only the checksum can tell
    b.write_bytes(bytes(data))
    ShardSet(one_set, verify=False)  # sizes agree: opening without verify succeeds
    with pytest.raises(InputError, match=r"shard-00000\.bin.*checksum mismatch"):
        ShardSet(one_set)


def test_version_and_dtype_and_magic(one_set):
    idx = one_set / "shard-00000.idx"
    orig = idx.read_bytes()
    _patch(idx, 8, "<I", 2)
    with pytest.raises(InputError, match=r"shard-00000\.idx.*version 2"):
        ShardSet(one_set)
    idx.write_bytes(orig)
    _patch(idx, 12, "<I", 4)  # uint32 tokens for a 300-token vocabulary
    with pytest.raises(InputError, match=r"shard-00000\.idx.*token width 4"):
        ShardSet(one_set)
    idx.write_bytes(b"NOTASHRD" + orig[8:])
    with pytest.raises(InputError, match="not a fastsynth shard index"):
        ShardSet(one_set)
    idx.write_bytes(orig[:HEADER_BYTES + 10])
    with pytest.raises(InputError, match=r"shard-00000\.idx.*truncated"):
        ShardSet(one_set)
    idx.write_bytes(orig[:40])
    with pytest.raises(InputError, match="header"):
        ShardSet(one_set)
    for at in (HEADER_BYTES + 9, 16, 60):  # body, vocabulary size, fingerprint
        damaged = bytearray(orig)
        damaged[at] ^= 0x01
        idx.write_bytes(bytes(damaged))
        with pytest.raises(InputError, match="index checksum"):
            ShardSet(one_set)


def test_token_outside_vocab_in_bin(one_set):
    import zlib
    b = one_set / "shard-00000.bin"
    data = bytearray(b.read_bytes())
    struct.pack_into("<H", data, 0, 299 + 7)
    b.write_bytes(bytes(data))
    crc = zlib.crc32(bytes(data))
    idx = one_set / "shard-00000.idx"
    _patch(idx, 48, "<I", crc)  # a consistent but out-of-vocab shard: fix both checksums
    raw = idx.read_bytes()
    _patch(idx, 52, "<I", index_crc32(raw[:HEADER_BYTES], raw[HEADER_BYTES:], raw[56:88]))
    m = json.loads((one_set / "manifest.json").read_text())
    m["shards"][0]["bin_crc32"] = crc
    (one_set / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match=r"shard-00000\.bin.*token id 306 is outside the vocabulary"):
        ShardSet(one_set)


def test_shard_from_another_tokenizer(tmp_path, one_set):
    other = json.dumps({"another": "tokenizer"})
    _write_set(tmp_path / "o", _docs(20, 300, seed=5), vocab=300, tok_json=other)
    # same name, other tokenizer: copied over the set's own shard (manifest fixed up too)
    for suffix in (".bin", ".idx"):
        shutil.copy(tmp_path / "o" / f"shard-00000{suffix}", one_set / f"shard-00000{suffix}")
    with pytest.raises(InputError, match=r"shard-00000\.idx.*another tokenizer"):
        ShardSet(one_set)
    # a foreign shard added under a new name is not in the manifest
    shutil.rmtree(one_set)
    _write_set(one_set, _docs(20, 300), vocab=300)
    shutil.copy(tmp_path / "o" / "shard-00000.idx", one_set / "shard-00007.idx")
    shutil.copy(tmp_path / "o" / "shard-00000.bin", one_set / "shard-00007.bin")
    with pytest.raises(InputError, match=r"shard-00007\.idx.*not listed"):
        ShardSet(one_set)


def test_tokenizer_json_changed(one_set):
    (one_set / "tokenizer.json").write_text('{"changed": true}')
    with pytest.raises(InputError, match="tokenizer.json fingerprint"):
        ShardSet(one_set)


def test_shard_opens_alone(one_set):
    sh = Shard(one_set / "shard-00000.idx")
    assert sh.n_docs == 20 and sh.header.fingerprint == fingerprint(TOK_JSON)
    sh.verify()


def _rewrite_ids(idx, id_offsets, ids):
    """Replace the record-id offsets and bytes of a one-shard .idx, with a valid CRC (as a
    faulty writer would write it)."""
    raw = bytearray(idx.read_bytes())
    n_docs = struct.unpack_from("<Q", raw, 24)[0]
    assert len(id_offsets) == n_docs + 1
    at = HEADER_BYTES + 8 * (n_docs + 1)
    body = bytes(raw[HEADER_BYTES:at]) + np.asarray(id_offsets, "<i8").tobytes() + ids
    head = bytearray(raw[:HEADER_BYTES])
    struct.pack_into("<Q", head, 40, len(ids))
    struct.pack_into("<I", head, 52, index_crc32(bytes(head), body, bytes(head[56:88])))
    idx.write_bytes(bytes(head) + body)


@pytest.mark.parametrize("id_offsets, ids, match", [
    ([0, 3, 2, 5], b"abcde", "record id offsets"),
    ([0, 2, 4, 9], b"abcde", "record id offsets"),
    ([1, 2, 4, 5], b"abcde", "record id offsets"),
    ([0, 2, 4, 5], b"ab\xffde", "document 1 is not valid UTF-8"),
    ([0, 2, 3, 5], b"ab\xc3\xa9e", "document 1 ends inside a UTF-8 character"),
])
def test_bad_record_ids_refused_on_open(tmp_path, id_offsets, ids, match):
    set_dir = tmp_path / "s"
    _write_set(set_dir, _docs(3, 300), vocab=300)
    idx = next(set_dir.glob("*.idx"))
    _rewrite_ids(idx, id_offsets, ids)
    with pytest.raises(InputError, match=match) as e:
        Shard(idx)
    assert str(idx) in str(e.value)
