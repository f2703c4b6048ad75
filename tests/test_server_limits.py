"""``fastsynth serve``'s boundary: every bad field is a 400 OpenAI error object naming it (and
fails alone), malformed bodies, unknown model and route, body and prompt-size limits, 429 when
rows and queue are full, and a stream that fails mid-way (past --request-timeout) ending with
an error event. The server runs a tiny random-weight model with the embedded model's tokenizer
(the checks concern the server, not the text; it starts and decodes in a fraction of the
time), with small limits: 1 row decoding, 1 waiting, 1.5 s per request, 300 kB bodies, 100
prompt tokens."""
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

from serve_process import health, openai_client, running_server, wait_idle  # noqa: E402

MODEL = "tiny-random"
TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from fastsynth.model import Llama, LlamaConfig, save_hf
    from fastsynth.model.gguf_file import open_gguf
    from fastsynth.model.loading import default_model_path
    from fastsynth.model.tokenizer import Tokenizer
    path = default_model_path()
    tok = Tokenizer.from_gguf(open_gguf(path), path)
    cfg = LlamaConfig.preset("tiny", vocab=tok.vocab_size, max_seq_len=8192)
    folder = tmp_path_factory.mktemp("tiny-random")
    save_hf(Llama(cfg).reset_parameters(std=0.02, seed=0).eval(), folder, tokenizer=tok)
    with running_server(batch_size=1, extra_args=(
            "--model", str(folder), "--name", MODEL, "--max-queue", "1",
            "--request-timeout", str(TIMEOUT_S), "--max-body-bytes", "300000",
            "--max-prompt-tokens", "100")) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server, timeout=60)


def post(server, path, body: bytes):
    req = urllib.request.Request(f"{server}{path}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def long_stream(client):
    """A streamed request that would decode far past the request timeout."""
    return client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8000,
                                     temperature=0, stream=True)


BAD = [
    ({"max_tokens": [1]}, "max_tokens"), ({"temperature": {}}, "temperature"),
    ({"stop": 5}, "stop"), ({"max_tokens": 1.9}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"), ({"max_completion_tokens": 0},
                                           "max_completion_tokens"),
    ({"top_p": 1.5}, "top_p"), ({"top_p": -0.1}, "top_p"), ({"temperature": 2.5}, "temperature"),
    ({"seed": 2 ** 64}, "seed"), ({"seed": -1}, "seed"), ({"seed": "1"}, "seed"), ({"n": 2}, "n"),
    ({"messages": []}, "messages"), ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0]"),
    ({"stop": ["a", ""]}, "stop"), ({"stop": ["x"] * 17}, "stop"),
    ({"stream": "yes"}, "stream"), ({"stream_options": {"include_usage": True}},
                                    "stream_options"),
    ({"top_k": -2}, "top_k"), ({"logprobs": True}, "logprobs"),
    ({"presence_penalty": 1.0}, "presence_penalty"),
    ({"frequency_penalty": 3}, "frequency_penalty"),
    ({"tools": [{"type": "function"}]}, "tools"), ({"response_format": {"type": "json_object"}},
                                                   "response_format"),
    ({"model": 5}, "model"),
]


def test_bad_fields_are_400_error_objects_and_fail_alone(server):
    """Each bad field: 400 and an OpenAI error object naming it; a good request sent at the
    same time is answered normally (one bad request never fails its neighbours)."""
    good = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 4, "temperature": 0, "seed": 2 ** 64 - 1}
    results = {}

    def send(key, body):
        results[key] = post(server, "/chat/completions", json.dumps(body).encode())

    threads = [threading.Thread(target=send, args=(i, {**good, **patch}))
               for i, (patch, _) in enumerate(BAD)]
    threads.append(threading.Thread(target=send, args=("good", good)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, (patch, param) in enumerate(BAD):
        status, body = results[i]
        assert status == 400, (patch, body)
        err = body["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == param, (patch, err)
        assert err["message"] and err["code"]
    status, body = results["good"]
    assert status == 200 and body["usage"]["completion_tokens"] > 0
    # top_p = 0 is honoured (only the most likely token), not turned into 1.0: greedy text
    greedy = post(server, "/completions", json.dumps(
        {"prompt": "a b c", "max_tokens": 8, "temperature": 0}).encode())[1]
    top0 = post(server, "/completions", json.dumps(
        {"prompt": "a b c", "max_tokens": 8, "temperature": 1.5, "top_p": 0,
         "seed": 3}).encode())[1]
    assert top0["choices"][0]["text"] == greedy["choices"][0]["text"]


def test_malformed_bodies_unknown_model_and_route(client, server):
    for raw in (b"{not json", b"\xff\xfe", b"[1, 2]", b"[" * 100000 + b"]" * 100000, b""):
        status, body = post(server, "/chat/completions", raw)
        assert status == 400 and body["error"]["type"] == "invalid_request_error", raw[:10]
    status, body = post(server, "/completions", json.dumps({"prompt": [1, 2, 10 ** 9]}).encode())
    assert status == 400 and body["error"]["param"] == "prompt"
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user",
                                                                   "content": "hi"}])
    assert e.value.body["code"] == "model_not_found"
    assert post(server, "/nowhere", b"{}")[1]["error"]["code"] == "not_found"
    with urllib.request.urlopen(f"{server}/models") as r:
        assert json.load(r)["data"][0]["id"] == MODEL


def test_body_and_prompt_limits(client, server):
    """Past --max-body-bytes: 413. A prompt over --max-prompt-tokens: 400 — a very long one
    without being tokenized (the byte bound), a shorter one after counting its tokens. A
    request beside them is answered."""
    status, body = post(server, "/chat/completions", json.dumps(
        {"messages": [{"role": "user", "content": "x" * 400_000}]}).encode())
    assert status == 413 and body["error"]["code"] == "request_too_large"
    for words in (40_000, 150):   # ~200 kB: refused by the byte bound; 150 words: counted
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model=MODEL, prompt="word " * words, max_tokens=2)
        assert e.value.body["code"] == "context_length_exceeded" and "100" in e.value.message
    r = client.chat.completions.create(model=MODEL, max_tokens=2,
                                       messages=[{"role": "user", "content": "Say yes."}])
    assert r.usage.completion_tokens > 0


def test_a_full_server_answers_429(client, server):
    """1 row decoding + 1 waiting fill this server; one more request gets 429 (the openai
    client raises RateLimitError); the waiting one is served once the row is free."""
    wait_idle(server)
    running = long_stream(client)
    next(iter(running))
    waiting = {}
    t = threading.Thread(target=lambda: waiting.setdefault("r", client.completions.create(
        model=MODEL, prompt="hello", max_tokens=2, temperature=0)))
    t.start()
    deadline = time.time() + 30
    while health(server)["admitted"] < 2 and time.time() < deadline:
        time.sleep(0.02)
    with pytest.raises(openai.RateLimitError) as e:
        client.completions.create(model=MODEL, prompt="hello", max_tokens=2)
    assert e.value.status_code == 429 and e.value.body["type"] == "rate_limit_error"
    running.close()
    t.join(30)
    assert waiting["r"].usage.completion_tokens > 0
    assert wait_idle(server)["rejected_busy"] >= 1


def test_a_stream_that_fails_midway_ends_with_an_error_event(client, server):
    """Past --request-timeout a streamed request ends with an error event after the text it
    already sent (the openai client raises APIError from it): never a hung connection. A plain
    request gets 504."""
    wait_idle(server)
    got = []
    with pytest.raises(openai.APIError) as e:
        for ch in long_stream(client):
            got.append(ch.choices[0].text)
    assert "".join(got) and "longer than" in str(e.value.message)
    with pytest.raises(openai.InternalServerError) as e:
        client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8000)
    assert e.value.status_code == 504
    after = wait_idle(server)
    assert after["decoding"] == 0
