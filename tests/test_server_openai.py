"""``fastsynth serve`` with the embedded model, driven by the real ``openai`` client library:
plain and streamed chat and text completions, requests joining a running batch with the same
greedy output as alone, a client that disconnects mid-stream. (Limits and error objects:
tests/test_server_limits.py.)"""
from __future__ import annotations

import threading

import pytest

pytest.importorskip("torch")
pytest.importorskip("aiohttp")
pytest.importorskip("openai")

from serve_process import health, openai_client, running_server, wait_idle  # noqa: E402

MODEL = "SmolLM2-135M-Instruct.Q4_1"
# A text prompt the model continues without ever ending: the long-running request of a test.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"


@pytest.fixture(scope="module")
def server():
    with running_server(batch_size=4) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server, timeout=120)


def ask(client, text, max_tokens=12, **kw):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=max_tokens,
        temperature=0, **kw)


def test_models_and_plain_chat(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    r = ask(client, "What is the capital of France?", max_tokens=24)
    c = r.choices[0]
    assert "Paris" in c.message.content and c.finish_reason == "stop"
    assert c.message.role == "assistant" and r.object == "chat.completion"
    assert 0 < r.usage.completion_tokens < 24 and r.usage.prompt_tokens > 0
    short = ask(client, "Write a long story about a dragon.", max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3


def test_streamed_chat_equals_plain(client):
    plain = ask(client, "Name three colours.", max_tokens=16)
    chunks = list(ask(client, "Name three colours.", max_tokens=16, stream=True,
                      stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert len({ch.id for ch in chunks}) == 1
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == plain.choices[0].message.content
    reasons = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert reasons[-1] == plain.choices[0].finish_reason and set(reasons[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == \
        plain.usage.completion_tokens


def test_text_completions_plain_and_streamed(client):
    r = client.completions.create(model=MODEL, prompt=["The capital of France is", COUNTING],
                                  max_tokens=6, temperature=0)
    assert r.object == "text_completion" and [c.index for c in r.choices] == [0, 1]
    assert all(c.finish_reason == "length" for c in r.choices)
    assert r.usage.completion_tokens == 12
    alone = client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=6, temperature=0)
    assert alone.choices[0].text == r.choices[1].text and "9" in alone.choices[0].text
    pieces = [c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt=COUNTING, max_tokens=6, temperature=0, stream=True)]
    assert "".join(pieces) == alone.choices[0].text


def test_requests_join_a_running_batch_with_their_batch1_output(client, server):
    """While a long request decodes, two more arrive: they join its batch at the next step
    (the scheduler counts joins into a running batch) and each answer equals the one it gets
    alone (greedy)."""
    questions = ["What is the capital of Italy?", "Name a large ocean."]
    alone = [ask(client, q).choices[0].message.content for q in questions]
    before = health(server)
    long = client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=400,
                                     temperature=0, stream=True)
    next(iter(long))                               # it is decoding now
    out = [None, None]

    def run(i):
        out[i] = ask(client, questions[i]).choices[0].message.content

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    long.close()
    assert out == alone
    assert health(server)["joined_running"] >= before["joined_running"] + 2
    wait_idle(server)


def test_a_client_that_disconnects_mid_stream_leaves_the_batch(client, server):
    before = health(server)
    stream = client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=400,
                                       temperature=0, stream=True)
    it = iter(stream)
    next(it)
    next(it)
    stream.close()                                  # hang up mid-stream
    after = wait_idle(server)                       # its row left the batch...
    assert after["cancelled"] >= before["cancelled"] + 1
    assert after["steps"] - before["steps"] < 300   # ...long before its 400 tokens
    assert "Paris" in ask(client, "What is the capital of France?").choices[0].message.content
