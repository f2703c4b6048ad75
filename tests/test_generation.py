"""Batched KV-cached generation on a tiny random model with a byte-level tokenizer: greedy
equals an uncached argmax loop, batching does not change results, seeds reproduce, sampling
follows the filtered softmax, stop strings and limits end sequences."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from fastsynth.errors import ConfigError  # noqa: E402
from fastsynth.model import Llama, LlamaConfig  # noqa: E402
from fastsynth.model.generation import generate, sample_next  # noqa: E402
from fastsynth.model.tokenizer import Tokenizer  # noqa: E402


def byte_tokenizer() -> Tokenizer:
    import tokenizers as tk
    from tokenizers.pre_tokenizers import ByteLevel
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    tok = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    return Tokenizer(tok, chat_template=None, bos_token=None, eos_token="<|im_end|>")


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    cfg = LlamaConfig.preset("tiny", vocab=tok.vocab_size)
    # std 0.5 gives peaked, input-dependent next-token distributions (not near-uniform)
    return Llama(cfg).reset_parameters(std=0.5, seed=7).eval()


def prompts(tok, texts):
    return [tok.encode(t) for t in texts]


TEXTS = ["hello", "a much longer prompt with more bytes", "xy", "the quick brown fox"]


def greedy_reference(model, ids, n, stop_ids):
    """No cache, no batching: append argmax of a full forward, n times."""
    ids, out = list(ids), []
    with torch.no_grad():
        for _ in range(n):
            t = int(model(torch.tensor([ids]))[0, -1].argmax())
            if t in stop_ids:
                break
            out.append(t)
            ids.append(t)
    return out


def test_greedy_equals_uncached_reference_and_batching_changes_nothing(model, tok):
    ps = prompts(tok, TEXTS)
    batch = generate(model, tok, ps, max_new_tokens=12)
    for p, g in zip(ps, batch):
        assert g.tokens == greedy_reference(model, p, 12, set(tok.stop_ids))
        assert g.finish_reason == ("length" if len(g.tokens) == 12 else "stop")
        assert generate(model, tok, [p], max_new_tokens=12)[0].tokens == g.tokens


def test_shared_prefix_length():
    from fastsynth.model.generation import MIN_SHARED_PREFIX, shared_prefix_length
    base = list(range(100, 100 + MIN_SHARED_PREFIX))
    assert shared_prefix_length([base + [1, 2], base + [1, 3]]) == MIN_SHARED_PREFIX + 1
    assert shared_prefix_length([base + [1], base + [1]]) == MIN_SHARED_PREFIX  # leaves one token
    assert shared_prefix_length([base + [1, 2]]) == 0                          # single prompt
    assert shared_prefix_length([base[:-1] + [5, 6], base[:-1] + [7]]) == 0    # too short
    assert shared_prefix_length([base + [1], [9] + base]) == 0


SYSTEM = "<|im_start|>system\nYou are a careful assistant that answers briefly.<|im_end|>\n"


def test_shared_prefix_gives_the_uncached_greedy_result(model, tok):
    """Prompts behind a common system prompt: the prefix runs once and its cache rows are
    copied; each row's greedy continuation still equals the uncached argmax loop, and equals
    generation without prefix sharing."""
    ps = prompts(tok, [SYSTEM + t for t in TEXTS])
    from fastsynth.model.generation import shared_prefix_length
    assert shared_prefix_length(ps) >= len(tok.encode(SYSTEM))
    shared = generate(model, tok, ps, max_new_tokens=10)
    plain = generate(model, tok, ps, max_new_tokens=10, share_prefix=False)
    for p, a, b in zip(ps, shared, plain):
        assert a.tokens == b.tokens == greedy_reference(model, p, 10, set(tok.stop_ids))
    # seeded sampling draws the same tokens either way
    kw = dict(max_new_tokens=10, temperature=0.9, seeds=[1, 2, 3, 4])
    assert [g.tokens for g in generate(model, tok, ps, **kw)] == \
        [g.tokens for g in generate(model, tok, ps, share_prefix=False, **kw)]


def test_shared_prefix_logits_match_float64(tok):
    """First-step logits with the prefix shared equal an uncached float64 forward."""
    cfg = LlamaConfig.preset("tiny", vocab=tok.vocab_size)
    m64 = Llama(cfg).reset_parameters(std=0.5, seed=3).double().eval()
    ps = prompts(tok, [SYSTEM + t for t in TEXTS])
    from fastsynth.model.generation import generate as gen
    seen = []
    orig = m64.forward

    def spy(*a, **k):
        out = orig(*a, **k)
        seen.append(out)
        return out
    m64.forward = spy
    gen(m64, tok, ps, max_new_tokens=1)
    m64.forward = orig
    first = seen[1][:, -1]          # seen[0] is the batch-1 prefix pass
    with torch.no_grad():
        for i, p in enumerate(ps):
            ref = m64(torch.tensor([p]))[0, -1]
            assert torch.allclose(first[i], ref, rtol=0, atol=1e-10)


def test_stop_token_ends_with_stop_reason(model, tok):
    ps = prompts(tok, TEXTS[:2])
    free = generate(model, tok, ps, max_new_tokens=10)
    # make the 4th generated token of prompt 0 a stop token: it must end there, excluded
    stop_tok = free[0].tokens[3]
    out = generate(model, tok, ps, max_new_tokens=10, stop_ids=[stop_tok])
    first = free[0].tokens.index(stop_tok)
    assert out[0].tokens == free[0].tokens[:first] and out[0].finish_reason == "stop"


def test_stop_string_is_cut(model, tok):
    p = prompts(tok, ["the quick brown fox"])
    free = generate(model, tok, p, max_new_tokens=16)[0]
    text = free.text
    assert len(text) >= 6
    stop = text[3:5]
    out = generate(model, tok, p, max_new_tokens=16, stop=[stop, "\x00never"])[0]
    assert out.finish_reason == "stop"
    assert out.text == text[:text.find(stop)]
    assert stop not in out.text


def test_per_row_limits(model, tok):
    out = generate(model, tok, prompts(tok, TEXTS[:3]), max_new_tokens=[1, 5, 3],
                   stop_ids=[])
    assert [len(g.tokens) for g in out] == [1, 5, 3]
    assert all(g.finish_reason == "length" for g in out)


def test_same_seed_same_text_independent_of_batch(model, tok):
    ps = prompts(tok, TEXTS)
    kw = dict(max_new_tokens=10, temperature=1.0, top_p=0.95, top_k=50)
    a = generate(model, tok, ps, seeds=[1, 2, 3, 4], **kw)
    b = generate(model, tok, ps[::-1], seeds=[4, 3, 2, 1], **kw)[::-1]
    c = [generate(model, tok, [p], seeds=[s], **kw)[0] for p, s in zip(ps, [1, 2, 3, 4])]
    assert [g.tokens for g in a] == [g.tokens for g in b] == [g.tokens for g in c]
    d = generate(model, tok, ps, seeds=[11, 12, 13, 14], **kw)
    assert [g.tokens for g in a] != [g.tokens for g in d]


def test_top_k_1_and_tiny_top_p_are_greedy(model, tok):
    ps = prompts(tok, TEXTS)
    greedy = [g.tokens for g in generate(model, tok, ps, max_new_tokens=8)]
    k1 = generate(model, tok, ps, max_new_tokens=8, temperature=1.5, top_k=1, seeds=[0] * 4)
    p0 = generate(model, tok, ps, max_new_tokens=8, temperature=1.5, top_p=1e-6, seeds=[0] * 4)
    assert [g.tokens for g in k1] == greedy == [g.tokens for g in p0]


@settings(max_examples=8, deadline=None)
@given(temp=st.sampled_from([0.5, 1.0, 2.0]), top_k=st.sampled_from([None, 3]),
       top_p=st.sampled_from([1.0, 0.8]), seed=st.integers(0, 1000))
def test_sampling_frequencies_follow_filtered_softmax(temp, top_k, top_p, seed):
    logits = torch.tensor([2.0, 1.5, 1.0, 0.2, -1.0, -3.0])
    # float64 reference of the intended distribution
    p = torch.softmax(logits.double() / temp, 0)
    keep = torch.ones(6, dtype=torch.bool)
    if top_k:
        keep &= torch.arange(6) < top_k                 # logits are sorted descending
    if top_p < 1.0:  # nucleus over the top-k-renormalised distribution (as HF and vLLM)
        pk = torch.where(keep, p, 0.0) / torch.where(keep, p, 0.0).sum()
        before = torch.cumsum(pk, 0) - pk               # mass ranked above each token
        keep &= before < top_p
    want = torch.where(keep, p, 0.0)
    want /= want.sum()
    n = 2000
    g = torch.Generator().manual_seed(seed)
    draws = torch.cat([sample_next(logits[None].repeat(200, 1), temperature=temp, top_k=top_k,
                                   top_p=top_p, generators=[g] * 200) for _ in range(n // 200)])
    freq = torch.bincount(draws, minlength=6).double() / n
    assert (freq[~keep] == 0).all()
    # 5 standard errors: fails for a wrong distribution, not for sampling noise
    se = (want * (1 - want) / n).sqrt()
    assert ((freq - want).abs() <= 5 * se + 1e-9).all(), (freq, want)


def test_context_overflow_is_an_error(model, tok):
    long = [5] * 250                                      # tiny context is 256 tokens
    with pytest.raises(ConfigError, match="context of 256"):
        generate(model, tok, [long], max_new_tokens=10)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        generate(model, tok, [[1, 2]], max_new_tokens=0)


# ----------------------------------------------------------------- continuous batching engine

def run_staggered(model, tok, ps, joins, n_new, **row_kw):
    """Decode with a DecodeBatch where prompt i joins before step ``joins[i]``; returns rows."""
    from fastsynth.model.generation import DecodeBatch
    batch, rows, step = DecodeBatch(model, tok), {}, 0
    while len(rows) < len(ps) or len(batch):
        now = [i for i, j in enumerate(joins) if j == step]
        if len(now) == 1:
            rows[now[0]] = batch.add(now[0], ps[now[0]], max_new_tokens=n_new, **row_kw)
        elif now:   # arrivals at the same step are prefilled together (prefix shared)
            new = [batch.new_row(i, ps[i], max_new_tokens=n_new, **row_kw) for i in now]
            batch.join(new, [ps[i] for i in now])
            rows.update(zip(now, new))
        batch.step()
        step += 1
    return [rows[i] for i in range(len(ps))]


def test_rows_joining_mid_decode_equal_the_uncached_reference(model, tok):
    """Requests that join a running batch at different steps (longer and shorter prompts than
    the rows already there; alone or several at once, sharing a prefix) each get exactly the
    uncached argmax continuation."""
    ps = prompts(tok, TEXTS + [SYSTEM + "hi", SYSTEM + "a longer question here"])
    rows = run_staggered(model, tok, ps, joins=[0, 2, 3, 3, 7, 7], n_new=12)
    for p, r in zip(ps, rows):
        assert r.result.tokens == greedy_reference(model, p, 12, set(tok.stop_ids))
        assert r.result.completion_tokens == len(r.tokens) + (r.result.finish_reason == "stop")


def test_cache_growth_and_trimming_keep_results(model, tok, monkeypatch):
    """A cache that fills up is copied with room to grow (2 slots at a time here) and with the
    slots no row needs any more dropped; results do not change."""
    import fastsynth.model.generation as g
    monkeypatch.setattr(g, "GROW_SLOTS", 2)
    ps = prompts(tok, TEXTS)
    rows = run_staggered(model, tok, ps, joins=[0, 1, 5, 9], n_new=10)
    for p, r in zip(ps, rows):
        assert r.result.tokens == greedy_reference(model, p, 10, set(tok.stop_ids))


def test_joined_row_logits_match_float64(tok):
    """After a join (the newcomer left-padded, the old row shifted), each row's next-token
    logits equal an uncached float64 forward over its prompt + tokens so far."""
    from fastsynth.model.generation import DecodeBatch
    cfg = LlamaConfig.preset("tiny", vocab=tok.vocab_size)
    m64 = Llama(cfg).reset_parameters(std=0.5, seed=3).double().eval()
    ps = prompts(tok, ["xy", "a much longer prompt with more bytes"])
    batch = DecodeBatch(m64, tok, stop_ids=[])
    a = batch.add("a", ps[0], max_new_tokens=8)
    batch.step()
    batch.step()
    b = batch.add("b", ps[1], max_new_tokens=8)
    batch.step()
    with torch.no_grad():
        for i, r in enumerate([a, b]):
            ref = m64(torch.tensor([ps[i] + r.tokens]))[0, -1]
            assert torch.allclose(batch.logits[i], ref, rtol=0, atol=1e-10)


def test_cancel_and_per_row_sampling(model, tok):
    """A cancelled row leaves at the next step and the others go on unchanged; rows with
    different sampling settings in one batch draw what they draw alone (same seed)."""
    from fastsynth.model.generation import DecodeBatch, Sampling
    ps = prompts(tok, TEXTS[:3])
    batch = DecodeBatch(model, tok, stop_ids=[])
    hot = Sampling(temperature=1.0, top_p=0.9)
    rows = [batch.add(0, ps[0], max_new_tokens=8),
            batch.add(1, ps[1], max_new_tokens=8, sampling=hot, seed=5),
            batch.add(2, ps[2], max_new_tokens=8)]
    batch.step()
    rows[2].cancel()
    batch.step()
    assert len(batch) == 2 and rows[2] not in batch.rows and len(rows[2].tokens) == 1
    while len(batch):
        batch.step()
    alone = generate(model, tok, [ps[1]], max_new_tokens=8, temperature=1.0, top_p=0.9,
                     seeds=[5], stop_ids=[])[0]
    assert rows[1].result.tokens == alone.tokens
    assert rows[0].result.tokens == greedy_reference(model, ps[0], 8, set())


def test_streamed_deltas_never_include_a_stop_string(model, tok):
    """take_delta() after every step: the pieces concatenate to the final text, and text that
    could still turn into a stop string is held back (the stop string never streams)."""
    from fastsynth.model.generation import DecodeBatch
    p = prompts(tok, ["the quick brown fox"])[0]
    free = generate(model, tok, [p], max_new_tokens=16)[0].text
    stop = free[4:7]
    batch = DecodeBatch(model, tok)
    row = batch.add(0, p, max_new_tokens=16, stop=[stop])
    pieces = []
    while len(batch):
        batch.step()
        pieces.append(row.take_delta())
        assert stop not in "".join(pieces)
    assert "".join(pieces) == row.result.text == free[:free.find(stop)]


def test_bad_seeds_and_top_p_zero(model, tok):
    from fastsynth.model.generation import DecodeBatch, Sampling
    batch = DecodeBatch(model, tok)
    p = prompts(tok, ["hello"])[0]
    for bad in (2 ** 64, -1, True, 1.5):
        with pytest.raises(ConfigError, match="seed"):
            batch.add(0, p, max_new_tokens=2, seed=bad)
    assert len(batch) == 0
    # top_p == 0 keeps only the most likely token: greedy
    greedy = generate(model, tok, [p], max_new_tokens=6)[0].tokens
    row = batch.add(0, p, max_new_tokens=6, sampling=Sampling(temperature=1.0, top_p=0.0),
                    seed=2 ** 64 - 1)
    while len(batch):
        batch.step()
    assert row.result.tokens == greedy


def test_held_back_text():
    """What a stream may not send yet: a suffix that could still become a stop string, and
    every replacement character of an incomplete UTF-8 sequence at the end."""
    from fastsynth.model.generation import _held_back
    assert _held_back("hello wor", ["world"]) == 3
    assert _held_back("hello", ["world"]) == 0
    assert _held_back("ab\ufffd\ufffd", []) == 2
    assert _held_back("a\ufffdb", []) == 0
    assert _held_back("x</", ["</s>", "<"]) == 2
