"""The ``openai`` backend: any OpenAI-compatible ``/v1/chat/completions`` server.

Works with ``vllm serve``, ``fastsynth serve`` and hosted APIs. Requests run concurrently
(at most ``concurrency`` in flight) on one aiohttp session. A request is retried with
exponential backoff (``backoff * 2**attempt`` seconds, capped at ``max_backoff``, with jitter,
or the server's ``Retry-After``) on HTTP 429, 5xx, connection errors and timeouts, up to
``max_retries`` times; other 4xx answers fail at once. A request that still fails becomes an
error :class:`Completion`; the others are kept.

Streaming (``stream=True``, the default): requests ask for OpenAI's server-sent events with
``stream_options.include_usage`` (token counts arrive in the last chunk). ``timeout`` then
bounds the wait for the *next* chunk rather than the whole answer, so a long completion is
never cut by a total timeout while a stalled server is still detected within ``timeout``
seconds; a stream that ends without a finish reason (a dropped connection) or carries an error
event is retried like a 5xx. ``stream=False`` sends plain requests (servers without streaming);
a server that ignores ``stream`` and answers ``application/json`` is read as a plain answer.

Malformed answers (a body or ``data:`` line that is not JSON, not UTF-8, not an object, an
object without ``choices``, fields of the wrong type) fail their request at once, without
retries (a server that sends them does so again), as an error :class:`Completion` whose
message starts ``malformed response from <url>:`` and says what was wrong; the other
requests of the batch are unaffected (docs/errors.md).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import threading
from typing import Any

from fastsynth.errors import ConfigError, DependencyError
from fastsynth.llm.base import Completion, Generator, SamplingParams

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class OpenAIGenerator(Generator):
    """Client for an OpenAI-compatible server.

    ``base_url``: the API root including ``/v1`` (default ``$OPENAI_BASE_URL`` or
    ``http://127.0.0.1:8000/v1``). ``model``: model id (default: the first one the server's
    ``/v1/models`` lists). ``api_key``: bearer token (default ``$OPENAI_API_KEY``; none sent if
    unset). ``timeout``: seconds per attempt. ``extra_body``: fields merged into every request.
    """

    def __init__(self, base_url: str | None = None, model: str | None = None, *,
                 api_key: str | None = None, concurrency: int = 8, max_retries: int = 5,
                 timeout: float = 120.0, backoff: float = 0.5, max_backoff: float = 30.0,
                 extra_body: dict[str, Any] | None = None, stream: bool = True):
        try:
            import aiohttp  # noqa: F401
        except ImportError as e:  # pragma: no cover
            raise DependencyError("aiohttp", "llm", "the openai backend") from e
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL")
                         or "http://127.0.0.1:8000/v1").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.concurrency, self.max_retries = concurrency, max_retries
        self.timeout, self.backoff, self.max_backoff = timeout, backoff, max_backoff
        self.extra_body = dict(extra_body or {})
        self.stream = bool(stream)
        self._model = model
        self.attempts = 0  # HTTP attempts made, retries included (for reports and tests)

    @property
    def model_name(self) -> str:  # type: ignore[override]
        if self._model is None:
            self._model = _run(self._discover_model())
        return self._model

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    async def _discover_model(self) -> str:
        import aiohttp
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout, headers=self._headers()) as s:
            for attempt in range(self.max_retries + 1):
                try:
                    async with s.get(f"{self.base_url}/models") as r:
                        if r.status == 200:
                            return _first_model(await r.read(), f"{self.base_url}/models")
                        if r.status not in RETRY_STATUS:
                            raise ConfigError(f"{self.base_url}/models answered HTTP {r.status}")
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    if attempt == self.max_retries:
                        raise ConfigError(f"cannot reach {self.base_url}/models: {e}") from e
                await asyncio.sleep(self._delay(attempt, None))
        raise ConfigError(f"{self.base_url}/models keeps failing; pass model= explicitly")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        base = min(self.backoff * (2 ** attempt), self.max_backoff)
        return base * (0.5 + random.random() / 2)  # jitter spreads out synchronized retries

    def _body(self, chat: list[dict[str, str]], params: SamplingParams,
              seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_name, "messages": chat,
                                "max_tokens": params.max_tokens,
                                "temperature": params.temperature, "top_p": params.top_p}
        if params.top_k:
            body["top_k"] = params.top_k  # vLLM / fastsynth extension
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(self.extra_body)
        return body

    async def _one(self, session: Any, sem: asyncio.Semaphore, body: dict[str, Any]) -> Completion:
        import aiohttp
        url = f"{self.base_url}/chat/completions"
        last = "no attempt made"
        async with sem:
            for attempt in range(self.max_retries + 1):
                retry_after = None
                self.attempts += 1
                try:
                    async with session.post(url, json=body) as r:
                        if (r.status == 200 and body.get("stream")
                                and r.content_type != "application/json"):
                            done = await _read_stream(r, body["model"])
                            if isinstance(done, Completion):
                                return done
                            last = f"{done} ({url})"   # broken stream: retried
                        elif r.status == 200:
                            return _parse(_json(await r.read(), "the body"), body["model"])
                        else:
                            text = (await r.text())[:300]
                            last = f"HTTP {r.status} from {url}: {text}"
                            if r.status not in RETRY_STATUS:
                                return Completion.failed(last, body["model"])
                            retry_after = r.headers.get("Retry-After")
                except asyncio.TimeoutError:
                    last = f"timed out after {self.timeout} s ({url})"
                except aiohttp.ClientError as e:
                    last = f"{type(e).__name__}: {e} ({url})"
                except MalformedResponse as e:
                    return Completion.failed(f"malformed response from {url}: {e}", body["model"])
                if attempt < self.max_retries:
                    await asyncio.sleep(self._delay(attempt, retry_after))
        return Completion.failed(f"gave up after {self.max_retries + 1} attempts: {last}",
                                 body["model"])

    async def agenerate(self, chats: list[list[dict[str, str]]], params: SamplingParams,
                        seeds: list[int | None]) -> list[Completion]:
        """Async form of :meth:`generate` (validated inputs)."""
        import aiohttp
        bodies = [self._body(c, params, s) for c, s in zip(chats, seeds)]
        sem = asyncio.Semaphore(self.concurrency)
        # streamed: the limit is per chunk (sock_read), not per answer
        timeout = (aiohttp.ClientTimeout(total=None, connect=self.timeout,
                                         sock_read=self.timeout)
                   if self.stream else aiohttp.ClientTimeout(total=self.timeout))
        conn = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, headers=self._headers(),
                                         connector=conn) as session:
            tasks = [self._one(session, sem, b) for b in bodies]
            results = await asyncio.gather(*tasks, return_exceptions=True)
        out = []
        for body, res in zip(bodies, results):
            if isinstance(res, Completion):
                out.append(res)
            elif isinstance(res, Exception):
                # A failure no check above foresaw stays with its own request: the
                # batch's other completions are kept (llm/base.py's contract).
                out.append(Completion.failed(f"unexpected {type(res).__name__} handling the "
                                             f"response: {res}", body["model"]))
            else:  # KeyboardInterrupt, cancellation: not one request's failure
                raise res
        return out

    def _generate(self, chats: list[list[dict[str, str]]], params: SamplingParams,
                  seeds: list[int | None]) -> list[Completion]:
        try:
            self.model_name  # resolve before the batch so each request names it
        except ConfigError as e:  # server down or listing no model: every request fails
            return [Completion.failed(f"cannot determine the model: {e}") for _ in chats]
        return _run(self.agenerate(chats, params, seeds))


class MalformedResponse(ValueError):
    """A server's answer that is not the OpenAI chat-completions format; the message says
    what is wrong with it."""


def _json(raw: bytes, what: str) -> Any:
    """``raw`` (UTF-8 JSON) decoded; ``MalformedResponse`` naming ``what`` and quoting the
    start of ``raw`` if it is not."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise MalformedResponse(f"{what} is not UTF-8 (byte {e.start})") from None
    except (ValueError, RecursionError) as e:
        why = getattr(e, "msg", None) or type(e).__name__
        raise MalformedResponse(f"{what} is not valid JSON ({why}): {_quote(raw)}") from None


def _quote(raw: bytes) -> str:
    return repr(raw[:80].decode("utf-8", "replace")) + (" ..." if len(raw) > 80 else "")


def _kind(x: Any) -> str:
    return "null" if x is None else f"a JSON {type(x).__name__}"


def _object(x: Any, what: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise MalformedResponse(f"{what} is {_kind(x)}, not an object")
    return x


def _text(x: Any, what: str) -> str:
    if x is None:
        return ""
    if not isinstance(x, str):
        raise MalformedResponse(f"{what} is {_kind(x)}, not a string")
    return x


def _choices(data: dict[str, Any], what: str) -> list[dict[str, Any]]:
    if "choices" not in data:
        if "error" in data:
            raise MalformedResponse(f"{what} is an error object: {str(data['error'])[:300]}")
        raise MalformedResponse(f"{what} has no 'choices' (keys: {sorted(data)[:10]})")
    choices = data["choices"]
    if not isinstance(choices, list):
        raise MalformedResponse(f"{what}'s 'choices' is {_kind(choices)}, not a list")
    return [_object(c, f"{what}'s choices[{i}]") for i, c in enumerate(choices)]


def _tokens(usage: Any, what: str) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) of a ``usage`` object (absent counts are 0)."""
    if usage is None:
        return 0, 0
    usage = _object(usage, f"{what}'s 'usage'")
    counts = []
    for key in ("prompt_tokens", "completion_tokens"):
        n = usage.get(key, 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise MalformedResponse(f"{what}'s usage.{key} is {n!r}, not a count")
        counts.append(n)
    return counts[0], counts[1]


def _first_model(raw: bytes, url: str) -> str:
    """The id of the first model a ``/v1/models`` answer lists; ``ConfigError`` if none."""
    try:
        data = _object(_json(raw, "the body"), "the body").get("data")
        first = _object(data[0], "data[0]") if isinstance(data, list) and data else None
    except MalformedResponse as e:
        raise ConfigError(f"{url} answered a malformed list: {e}") from None
    if first is None or not isinstance(first.get("id"), str):
        raise ConfigError(f"{url} lists no models; pass model= explicitly")
    return first["id"]


def _parse(data: Any, model: str) -> Completion:
    """A non-streamed chat completion (decoded JSON) -> its :class:`Completion`."""
    data = _object(data, "the body")
    choices = _choices(data, "the body")
    if not choices:
        raise MalformedResponse("the body's 'choices' is empty")
    message = _object(choices[0].get("message"), "the body's choices[0].message")
    text = _text(message.get("content"), "the body's choices[0].message.content")
    reason = choices[0].get("finish_reason") or "stop"
    prompt, completion = _tokens(data.get("usage"), "the body")
    return Completion(text=text, finish_reason="length" if reason == "length" else "stop",
                      prompt_tokens=prompt, completion_tokens=completion,
                      model=str(data.get("model", model)))


async def _read_stream(r: Any, model: str) -> Completion | str:
    """A chat-completions SSE stream -> its :class:`Completion`, or a string saying why the
    stream broke (no finish reason before it ended, an error event). A line that is not a
    chunk of the format raises ``MalformedResponse``."""
    parts: list[str] = []
    reason = None
    usage: Any = None
    name = model
    n = 0
    async for raw in r.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue                      # blank separators, comments, "event:" lines
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        n += 1
        what = f"stream chunk {n}"
        obj = _object(_json(data, what), what)
        if obj.get("error"):
            return f"error event in the stream: {str(obj['error'])[:300]}"
        name = str(obj.get("model", name))
        if obj.get("usage"):
            usage = obj["usage"]
        for i, choice in enumerate(_choices(obj, what) if "choices" in obj else []):
            delta = _object(choice.get("delta") or {}, f"{what}'s choices[{i}].delta")
            parts.append(_text(delta.get("content"), f"{what}'s choices[{i}].delta.content"))
            reason = choice.get("finish_reason") or reason
    if reason is None:
        return "the stream ended before a finish reason"
    prompt, completion = _tokens(usage, "the stream")
    return Completion(text="".join(parts), finish_reason="length" if reason == "length" else "stop",
                      prompt_tokens=prompt, completion_tokens=completion, model=name)


def _run(coro: Any) -> Any:
    """Run ``coro`` to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
