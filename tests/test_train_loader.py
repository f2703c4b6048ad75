"""The loader: batch contract, coverage across ranks x workers, determinism, exact resume,
mixtures."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastsynth.errors import ConfigError  # noqa: E402
from fastsynth.train.loader import LoaderConfig, PackedDataset, PackedLoader  # noqa: E402
from fastsynth.train.mixture import Mixture  # noqa: E402
from fastsynth.train.rows import IGNORE_INDEX  # noqa: E402
from fastsynth.train.shards import ShardWriter  # noqa: E402
from fastsynth.train.vocab import fingerprint  # noqa: E402

TOK = json.dumps({"test": "tokenizer"})
VOCAB = 65536


def _make_set(path, n_docs, first_token, seed, tok=TOK, shard_tokens=4000):
    """Documents whose tokens are unique ids first_token, first_token+1, ... (0 = separator/pad
    never occurs), so every token identifies its place in the corpus."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.lognormal(3.5, 1.0, n_docs).astype(np.int64) + 1, 300)
    w = ShardWriter(path, vocab_size=VOCAB, tokenizer_json=tok, fingerprint=fingerprint(tok),
                    separator="<|endoftext|>", separator_id=0, shard_tokens=shard_tokens)
    nxt = first_token
    docs = []
    for n in lengths:
        docs.append(np.arange(nxt, nxt + n))
        nxt += n
    assert nxt < VOCAB
    w.add(docs, [f"d{i}" for i in range(n_docs)])
    w.close()
    return path, np.concatenate(docs)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader")
    return _make_set(d / "a", 400, 1, seed=0)


def _real_tokens(batch):
    ids = batch["input_ids"]
    return ids[ids != 0].tolist()


def _check_contract(b, R, S):
    ids, labels, pos, cu = b["input_ids"], b["labels"], b["positions"], b["cu_seqlens"]
    assert ids.dtype == labels.dtype == pos.dtype == torch.int64 and cu.dtype == torch.int32
    assert ids.shape == labels.shape == pos.shape and ids.shape[1] == S and ids.shape[0] <= R
    assert int(cu[0]) == 0 and int(cu[-1]) == ids.numel()
    seg = (cu[1:] - cu[:-1])
    assert int(seg.max()) == b["max_seqlen"] and bool((seg > 0).all())
    fi, fl, fp = ids.view(-1), labels.view(-1), pos.view(-1)
    for a, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        assert fp[a:e].tolist() == list(range(e - a))
        assert (a // S) == ((e - 1) // S), "a segment crosses rows"
        if int(fi[a]) != 0:  # a document piece
            assert fl[a:e - 1].tolist() == fi[a + 1:e].tolist() and int(fl[e - 1]) == IGNORE_INDEX
        else:
            assert bool((fl[a:e] == IGNORE_INDEX).all())
    assert b["n_tokens"] == int((ids != 0).sum())
    assert b["n_target_tokens"] == int((labels != IGNORE_INDEX).sum())


@pytest.mark.parametrize("method", ["best-fit", "first-fit", "concat"])
def test_ranks_x_workers_cover_every_token_once(corpus, method):
    path, tokens = corpus
    seen = []
    for rank in range(2):
        cfg = LoaderConfig(seq_len=64, batch_rows=3, method=method, window=50, epochs=1, rank=rank,
                           world_size=2, num_workers=2, seed=3)
        ds = PackedDataset(path, cfg, verify=False)
        for stream in range(2):
            for b in ds.consumer_batches(rank * 2 + stream):
                _check_contract(b, 3, 64)
                seen.extend(_real_tokens(b))
    assert len(seen) == tokens.size and sorted(seen) == tokens.tolist()


def test_padded_layout(corpus):
    path, tokens = corpus
    cfg = LoaderConfig(seq_len=32, batch_rows=4, layout="padded", epochs=1, window=64)
    ds = PackedDataset(path, cfg)
    n_docs = 0
    kept = 0
    for b in ds:
        assert set(b) == {"input_ids", "labels", "positions", "key_mask", "n_tokens", "n_target_tokens"}
        m = b["key_mask"]
        assert m.dtype == torch.bool and bool(((b["input_ids"] != 0) == m).all())
        assert b["positions"][0].tolist() == list(range(32))
        n_docs += b["input_ids"].shape[0]
        kept += int(m.sum())
    from fastsynth.train.shards import ShardSet
    lengths = ShardSet(path).lengths
    assert n_docs == lengths.size and kept == int(np.minimum(lengths, 32).sum())


def test_deterministic_by_seed_and_epoch(corpus):
    path, _ = corpus
    cfg = LoaderConfig(seq_len=64, batch_rows=4, window=80, epochs=2, seed=11)
    a = [b["input_ids"] for b in PackedDataset(path, cfg)]
    b = [b["input_ids"] for b in PackedDataset(path, cfg)]
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    c = [b["input_ids"] for b in PackedDataset(path, LoaderConfig(seq_len=64, batch_rows=4, window=80,
                                                                   epochs=2, seed=12))]
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    # the two epochs hold the same tokens in another order
    half = len(a) // 2
    first = torch.cat([x.view(-1) for x in a[:half]])
    assert not torch.equal(first, torch.cat([x.view(-1) for x in a[half:2 * half]]))


def test_resume_in_process_gives_the_next_batch(corpus):
    path, _ = corpus
    cfg = LoaderConfig(seq_len=64, batch_rows=4, window=60, seed=5)  # endless: crosses epochs
    full = []
    for i, b in enumerate(PackedDataset(path, cfg)):
        full.append(b)
        if i == 130:
            break
    ds = PackedDataset(path, cfg)
    it = iter(ds)
    for _ in range(97):  # > one epoch of ~90 batches
        next(it)
    state = json.loads(json.dumps(ds.state_dict()))  # survives a checkpoint's JSON
    ds2 = PackedDataset(path, cfg)
    ds2.load_state_dict(state)
    for k, b in zip(range(97, 131), ds2):
        for key in ("input_ids", "labels", "positions", "cu_seqlens"):
            assert torch.equal(b[key], full[k][key]), (k, key)


def test_resume_with_dataloader_workers(corpus):
    path, _ = corpus
    cfg = LoaderConfig(seq_len=64, batch_rows=4, window=60, seed=9, num_workers=2)
    want = []
    loader = PackedLoader(path, cfg)
    for i, b in enumerate(loader):
        want.append(b["input_ids"])
        if i == 8:
            break
    loader = PackedLoader(path, cfg)
    for i, _ in enumerate(loader):
        if i == 4:
            break
    state = loader.state_dict()
    assert state["batches"] == 5
    resumed = PackedLoader(path, cfg)
    resumed.load_state_dict(state)
    got = []
    for i, b in enumerate(resumed):
        got.append(b["input_ids"])
        if i == 3:
            break
    assert all(torch.equal(x, y) for x, y in zip(got, want[5:9]))
    # the in-process stream of the same rank has the same batches as the two workers, in turn
    direct = PackedDataset(path, cfg)
    s0, s1 = direct.consumer_batches(0), direct.consumer_batches(1)
    for i, x in enumerate(want[:6]):
        assert torch.equal(next(s0 if i % 2 == 0 else s1)["input_ids"], x)


def test_mixture_realised_ratio(tmp_path):
    a, ta = _make_set(tmp_path / "organic", 300, 1, seed=1)
    b, tb = _make_set(tmp_path / "synthetic", 300, 30000, seed=2)
    cfg = LoaderConfig(seq_len=128, batch_rows=8, window=100, seed=1)
    ds = PackedDataset(Mixture({a: 60, b: 40}), cfg)
    from_a = from_b = 0
    for i, batch in enumerate(ds):
        toks = np.asarray(_real_tokens(batch))
        from_a += int((toks < 30000).sum())
        from_b += int((toks >= 30000).sum())
        if i == 150:  # ~150k tokens: several epochs of each set
            break
    share = from_a / (from_a + from_b)
    assert abs(share - 0.6) < 0.01, share
    assert from_a + from_b > 2 * (ta.size + tb.size)


def test_bad_configs(tmp_path, corpus):
    path, _ = corpus
    for kwargs, name in [(dict(seq_len=1), "seq_len"), (dict(batch_rows=0), "batch_rows"),
                         (dict(method="x"), "method"), (dict(layout="x"), "layout"),
                         (dict(rank=2, world_size=2), "rank"), (dict(window=0), "window"),
                         (dict(epochs=0), "epochs"), (dict(num_workers=-1), "num_workers")]:
        with pytest.raises(ConfigError, match=name):
            LoaderConfig(**kwargs)
    other, _ = _make_set(tmp_path / "other", 50, 1, seed=4, tok=json.dumps({"another": 1}))
    with pytest.raises(ConfigError, match="another tokenizer"):
        PackedDataset(Mixture([(path, 1), (other, 1)]))
    with pytest.raises(ConfigError, match="epochs"):
        PackedDataset(Mixture([(path, 1), (str(path) + "_x", 1)]), LoaderConfig(epochs=1))
    tiny, _ = _make_set(tmp_path / "tiny", 3, 1, seed=4)
    with pytest.raises(ConfigError, match="consumers"):
        PackedDataset(tiny, LoaderConfig(world_size=2, num_workers=2))
    with pytest.raises(ConfigError, match="weight"):
        Mixture({path: 0})
    ds = PackedDataset(path, LoaderConfig(seq_len=64))
    state = ds.state_dict()
    with pytest.raises(ConfigError, match="seq_len"):
        PackedDataset(path, LoaderConfig(seq_len=128)).load_state_dict(state)
    with pytest.raises(ConfigError, match="num_workers"):
        PackedDataset(path, LoaderConfig(seq_len=64, num_workers=2)).load_state_dict(state)


def test_finite_stream_starts_over_after_its_end(corpus):
    path, tokens = corpus
    ds = PackedDataset(path, LoaderConfig(seq_len=64, batch_rows=8, epochs=1, window=100))
    first = [b["input_ids"] for b in ds]
    second = [b["input_ids"] for b in ds]
    assert len(first) == len(second) > 0 and all(torch.equal(x, y) for x, y in zip(first, second))
    assert sum(int((x != 0).sum()) for x in first) == tokens.size
