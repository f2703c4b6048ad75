"""``fastsynth serve`` driven by the real ``openai`` client library (and raw HTTP for malformed
bodies): plain and streamed chat and text completions, requests joining a running batch with
the same greedy output as alone, a client that disconnects mid-stream, 400/404/413/429 error
objects, and a stream that fails mid-way ending with an error event."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("torch")
pytest.importorskip("aiohttp")
openai = pytest.importorskip("openai")

from serve_process import running_server  # noqa: E402

MODEL = "SmolLM2-135M-Instruct.Q4_1"
# A text prompt the model continues without ever ending: the long-running request of a test.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"
TIMEOUT_S = 8


@pytest.fixture(scope="module")
def server():
    # 3 rows decode, 1 waits: the 5th concurrent request gets 429; a request past 8 s ends
    # with an error (test_a_stream_that_fails_midway_ends_with_an_error_event)
    with running_server(batch_size=3, extra_args=(
            "--max-queue", "1", "--request-timeout", str(TIMEOUT_S),
            "--max-body-bytes", "1000000", "--max-prompt-tokens", "4000")) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=120)


def health(server):
    with urllib.request.urlopen(server.removesuffix("/v1") + "/health") as r:
        return json.load(r)


def wait_idle(server, timeout=60):
    """Until no row decodes or waits (cancelled rows leave at the next step)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        h = health(server)
        if h["decoding"] == 0 and h["waiting"] == 0 and h["admitted"] == 0:
            return h
        time.sleep(0.1)
    raise AssertionError(f"server still busy: {health(server)}")


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


BAD = [
    ({"max_tokens": [1]}, "max_tokens"), ({"temperature": {}}, "temperature"),
    ({"stop": 5}, "stop"), ({"max_tokens": 1.9}, "max_tokens"), ({"max_tokens": True},
                                                                   "max_tokens"),
    ({"top_p": 1.5}, "top_p"), ({"temperature": 2.5}, "temperature"),
    ({"seed": 2 ** 64}, "seed"), ({"seed": -1}, "seed"), ({"n": 2}, "n"),
    ({"messages": []}, "messages"), ({"messages": [{"role": "robot", "content": "x"}]},
                                     "messages[0].role"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
    ({"stream": "yes"}, "stream"), ({"stream_options": {"include_usage": True}},
                                    "stream_options"),
    ({"logprobs": True}, "logprobs"), ({"presence_penalty": 1.0}, "presence_penalty"),
    ({"messages": [{"role": "user", "content": "word " * 5000}]}, "messages"),
]


def post(server, path, body: bytes):
    req = urllib.request.Request(f"{server}{path}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_bad_fields_are_400_error_objects_and_fail_alone(client, server):
    """Each bad field: 400, an OpenAI error object naming it; a good request sent at the same
    time (same batch window) is answered normally."""
    good = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 4, "temperature": 0}
    results = {}

    def send(i, body):
        results[i] = post(server, "/chat/completions", json.dumps(body).encode())

    threads = [threading.Thread(target=send, args=(i, {**good, **patch}))
               for i, (patch, _) in enumerate(BAD)]
    threads.append(threading.Thread(target=send, args=("good", good)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, (patch, param) in enumerate(BAD):
        status, body = results[i]
        assert status == 400, (patch, body)
        err = body["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == param, (patch, err)
        assert err["message"] and "code" in err
    status, body = results["good"]
    assert status == 200 and body["choices"][0]["message"]["content"]
    # malformed bodies, unknown model and route, and the openai client's own error type
    assert post(server, "/chat/completions", b"{not json")[0] == 400
    assert post(server, "/chat/completions", b"\xff\xfe")[0] == 400
    assert post(server, "/chat/completions", b"[1, 2]")[0] == 400
    assert post(server, "/chat/completions", b"[" * 100000 + b"]" * 100000)[0] in (400, 413)
    status, body = post(server, "/chat/completions", json.dumps({**good, "model": "x"}).encode())
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert post(server, "/nowhere", b"{}")[1]["error"]["code"] == "not_found"
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "hi", max_tokens=2, extra_body={"top_k": "many"})
    assert e.value.body["param"] == "top_k"


def test_big_bodies_and_prompts_are_rejected_without_stalling_others(client, server):
    """A body past --max-body-bytes: 413; a prompt too long to fit --max-prompt-tokens: 400
    without being tokenized; a request sent beside them is answered."""
    status, body = post(server, "/chat/completions", json.dumps(
        {"messages": [{"role": "user", "content": "x" * 1_500_000}]}).encode())
    assert status == 413 and body["error"]["code"] == "request_too_large"
    status, body = post(server, "/completions", json.dumps(
        {"prompt": "word " * 150_000, "max_tokens": 2}).encode())
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert "4000" in body["error"]["message"]
    assert ask(client, "Say yes.", max_tokens=2).choices[0].message.content


def test_a_full_server_answers_429(client, server):
    """3 rows decoding + 1 waiting fill this server; one more request is turned away with 429
    (the openai client raises RateLimitError); once they end, requests are served again."""
    wait_idle(server)
    streams = [client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=400,
                                         temperature=0, stream=True) for _ in range(3)]
    for s in streams:
        next(iter(s))
    # the 4th waits for a free row; send it from a thread (its answer comes only later)
    waiting = {}
    t = threading.Thread(target=lambda: waiting.setdefault("r", ask(client, "Say hi.", 2)))
    t.start()
    deadline = time.time() + 30
    while health(server)["admitted"] < 4 and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(openai.RateLimitError) as e:
        ask(client, "Say hi.", max_tokens=2)
    assert e.value.status_code == 429 and e.value.body["type"] == "rate_limit_error"
    for s in streams:
        s.close()
    t.join(60)
    assert waiting["r"].choices[0].message.content
    wait_idle(server)
    assert health(server)["rejected_busy"] >= 1


def test_a_stream_that_fails_midway_ends_with_an_error_event(client, server):
    """Past --request-timeout a streamed request ends with an error event (the openai client
    raises APIError from it) after the text it already sent: never a hung connection."""
    wait_idle(server)
    got = []
    with pytest.raises(openai.APIError) as e:
        for ch in client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=2000,
                                            temperature=0, stream=True):
            got.append(ch.choices[0].text)
    assert "".join(got).strip() and "longer than" in str(e.value.message)
    wait_idle(server)
