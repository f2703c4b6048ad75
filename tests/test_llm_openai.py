"""The openai backend against a real aiohttp server started here that answers 429/500 a few
times, times out, or rejects requests: retries with backoff, bounded concurrency, and
per-request error completions that never lose the finished ones."""
from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

import fastsynth.llm as llm  # noqa: E402
from fastsynth.errors import ConfigError  # noqa: E402


# Non-streamed bodies that are not chat completions (message -> body bytes).
MALFORMED = {
    "truncated": b'{"model": "m", "choices": [{"index": 0, "message": {"content": "ec',
    "notobject": b'[{"choices": []}]',
    "nochoices": b'{"id": "cmpl-1", "object": "chat.completion"}',
    "badchoice": b'{"choices": ["echo"]}',
    "badusage": (b'{"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],'
                 b' "usage": {"prompt_tokens": "many"}}'),
    "notutf8": b'{"choices": [{"message": {"content": "\xff\xfe"}}]}',
}
# ``data:`` payloads of a stream that are not chunks (message -> payload bytes).
MALFORMED_SSE = {
    "ssenotjson": b'{"choices": [{"delta": {"content": "x"',
    "ssenotobject": b'"just a string"',
    "ssebaddelta": b'{"choices": [{"index": 0, "delta": ["x"]}]}',
}


class FlakyServer:
    """OpenAI-style server (plain JSON or, when asked, a server-sent-event stream); behaviour
    chosen by the user message: ``429xN`` / ``500xN``: fail N times then answer;
    ``always500``; ``bad``: HTTP 400; ``slowxN``: sleep past the client timeout N times;
    ``dropxN``: end the stream after one chunk, without a finish reason, N times;
    ``errevent``: an error event after one chunk, always; a key of ``MALFORMED``: that body
    (HTTP 200, ``application/json``) whatever was asked; a key of ``MALFORMED_SSE`` (streamed
    requests): that ``data:`` payload after one good chunk; ``ignorestream``: a plain JSON
    answer to a streamed request; anything else: answer at once."""

    def __init__(self):
        self.calls = collections.Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies = []
        self.models_body = None      # bytes: /v1/models answers these instead of a list
        self.loop = asyncio.new_event_loop()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _serve(self, ready):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_get("/v1/models", self.models)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def stream(self, request, body, msg, drop):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(obj):
            await resp.write(f"data: {json.dumps(obj)}\n\n".encode())

        def chunk(delta, reason=None):
            return {"model": body["model"], "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}

        await send(chunk({"role": "assistant", "content": ""}))
        await send(chunk({"content": "echo"}))
        if msg in MALFORMED_SSE:
            await resp.write(b"data: " + MALFORMED_SSE[msg] + b"\n\n")
            await send(chunk({}, "stop"))
            await resp.write(b"data: [DONE]\n\n")
        elif msg == "errevent":
            await send({"error": {"message": "model crashed", "type": "server_error"}})
        elif not drop:
            await send(chunk({"content": f" {msg}"}))
            await send(chunk({}, "stop"))
            await send({"model": body["model"], "choices": [],
                        "usage": {"prompt_tokens": len(msg), "completion_tokens": 2}})
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(self, request):
        if self.models_body is not None:
            return web.Response(body=self.models_body, content_type="application/json")
        return web.json_response({"object": "list", "data": [{"id": "flaky-model"}]})

    async def handle(self, request):
        body = await request.json()
        self.bodies.append(body)
        msg = body["messages"][-1]["content"]
        self.calls[msg] += 1
        n = self.calls[msg]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)            # let concurrent requests overlap
            kind, _, times = msg.partition("x")
            times = int(times) if times.isdigit() else 0
            if kind == "429" and n <= times:
                return web.json_response({"error": {"message": "slow down"}}, status=429,
                                         headers={"Retry-After": "0"})
            if kind == "500" and n <= times or msg == "always500":
                return web.json_response({"error": {"message": "boom"}}, status=500)
            if msg == "bad":
                return web.json_response({"error": {"message": "bad request"}}, status=400)
            if kind == "slow" and n <= times:
                await asyncio.sleep(2.0)
            if msg in MALFORMED:
                return web.Response(body=MALFORMED[msg], content_type="application/json")
            if body.get("stream") and msg != "ignorestream":
                return await self.stream(request, body, msg, kind == "drop" and n <= times)
            return web.json_response({
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"echo {msg}"}}],
                "usage": {"prompt_tokens": len(msg), "completion_tokens": 2}})
        finally:
            self.in_flight -= 1


@pytest.fixture
def server():
    s = FlakyServer()
    yield s
    s.stop()


def chat(text):
    return [{"role": "user", "content": text}]


def test_retries_429_and_500_then_succeeds(server):
    g = llm.generator("openai", base_url=server.url, backoff=0.01, max_retries=4)
    assert g.model_name == "flaky-model"                   # discovered from /v1/models
    out = g.generate([chat("429x2"), chat("500x3"), chat("plain")], max_tokens=5, seed=7,
                     stop=["\n"], top_k=20)
    assert [c.text for c in out] == ["echo 429x2", "echo 500x3", "echo plain"]
    assert all(c.finish_reason == "stop" and c.completion_tokens == 2 for c in out)
    assert server.calls["429x2"] == 3 and server.calls["500x3"] == 4
    body = server.bodies[-1]
    assert body["max_tokens"] == 5 and body["seed"] == 7 and body["stop"] == ["\n"]
    assert body["top_k"] == 20 and body["model"] == "flaky-model"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_plain_requests_without_streaming(server):
    g = llm.generator("openai", base_url=server.url, model="flaky-model", backoff=0.01,
                      stream=False)
    out = g.generate([chat("429x1"), chat("plain")], max_tokens=3)
    assert [c.text for c in out] == ["echo 429x1", "echo plain"]
    assert out[1].completion_tokens == 2 and "stream" not in server.bodies[-1]


def test_broken_streams_are_retried_and_error_events_fail_alone(server):
    g = llm.generator("openai", base_url=server.url, model="flaky-model", backoff=0.01,
                      max_retries=2)
    out = g.generate([chat("dropx2"), chat("errevent"), chat("fine")])
    assert out[0].text == "echo dropx2" and server.calls["dropx2"] == 3
    assert out[1].finish_reason == "error" and "model crashed" in out[1].error
    assert "error event" in out[1].error and server.calls["errevent"] == 3
    assert out[2].text == "echo fine" and out[2].completion_tokens == 2


def test_persistent_failures_become_error_completions_and_others_are_kept(server):
    g = llm.generator("openai", base_url=server.url, model="flaky-model", backoff=0.01,
                      max_retries=2)
    reqs = [chat("a"), chat("always500"), chat("bad"), chat("b")]
    out = g.generate(reqs)
    assert [c.finish_reason for c in out] == ["stop", "error", "error", "stop"]
    assert out[0].text == "echo a" and out[3].text == "echo b"
    assert "HTTP 500" in out[1].error and "3 attempts" in out[1].error
    assert server.calls["always500"] == 3                  # 1 try + 2 retries
    assert "HTTP 400" in out[2].error and server.calls["bad"] == 1   # 4xx: no retry


MALFORMED_WHY = {"truncated": "the body is not valid JSON", "notobject": "a JSON list, not an object",
                 "nochoices": "has no 'choices'", "badchoice": "choices[0] is a JSON str",
                 "badusage": "usage.prompt_tokens is 'many'", "notutf8": "not UTF-8",
                 "ssenotjson": "stream chunk 3 is not valid JSON",
                 "ssenotobject": "stream chunk 3 is a JSON str, not an object",
                 "ssebaddelta": "choices[0].delta is a JSON list"}


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_json_fails_only_its_own_request(server, stream):
    g = llm.generator("openai", base_url=server.url, model="flaky-model", backoff=0.01,
                      max_retries=2, stream=stream)
    bad = list(MALFORMED) + (list(MALFORMED_SSE) if stream else [])
    msgs = ["first", *bad, "ignorestream", "last"]
    out = g.generate([chat(m) for m in msgs])
    by = dict(zip(msgs, out))
    assert by["first"].text == "echo first" and by["last"].text == "echo last"
    assert by["ignorestream"].text == "echo ignorestream"   # plain JSON to a streamed request
    for m in bad:
        c = by[m]
        assert c.finish_reason == "error" and c.text == "", m
        assert c.error.startswith(f"malformed response from {server.url}/chat/completions: "), c.error
        assert MALFORMED_WHY[m] in c.error, (m, c.error)
        assert "Traceback" not in c.error and "\n" not in c.error
        assert server.calls[m] == 1, m                      # not retried
    assert server.calls["first"] == server.calls["last"] == 1


def test_malformed_model_list_is_a_config_error_completion(server):
    server.models_body = b'{"data": [42]'                  # truncated
    g = llm.generator("openai", base_url=server.url, backoff=0.01)
    with pytest.raises(ConfigError, match="malformed list: the body is not valid JSON"):
        g.model_name
    server.models_body = b'{"data": [42]}'                 # an id that is not an object
    out = g.generate([chat("a"), chat("b")])
    assert [c.finish_reason for c in out] == ["error", "error"]
    assert "malformed list: data[0] is a JSON int, not an object" in out[0].error


def test_timeouts_are_retried(server):
    g = llm.generator("openai", base_url=server.url, model="flaky-model", timeout=0.5,
                      backoff=0.01, max_retries=2)
    out = g.generate([chat("slowx1"), chat("slowx9")])
    assert out[0].text == "echo slowx1"
    assert out[1].finish_reason == "error" and "timed out" in out[1].error


def test_concurrency_is_bounded(server):
    g = llm.generator("openai", base_url=server.url, model="flaky-model", concurrency=3)
    out = g.generate([chat(f"q{i}") for i in range(12)])
    assert [c.text for c in out] == [f"echo q{i}" for i in range(12)]
    assert 1 < server.max_in_flight <= 3


def test_unreachable_server_gives_error_completions():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                          # nothing listens here
    g = llm.generator("openai", base_url=f"http://127.0.0.1:{port}/v1", model="m",
                      backoff=0.01, max_retries=1)
    out = g.generate([chat("x")])
    assert out[0].finish_reason == "error" and "2 attempts" in out[0].error
    # without a model name the discovery call fails too: still error completions, no raise
    g = llm.generator("openai", base_url=f"http://127.0.0.1:{port}/v1", backoff=0.01,
                      max_retries=1)
    out = g.generate([chat("x"), chat("y")])
    assert [c.finish_reason for c in out] == ["error", "error"]
    assert "cannot reach" in out[0].error


def test_works_inside_a_running_event_loop(server):
    g = llm.generator("openai", base_url=server.url, model="flaky-model")

    async def main():
        return g.generate([chat("in-loop")])

    assert asyncio.run(main())[0].text == "echo in-loop"


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="concurrency"):
        llm.generator("openai", concurrency=0)
    with pytest.raises(ConfigError, match="nosuch"):
        llm.generator("nosuch")
