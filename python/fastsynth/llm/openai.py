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
event is retried like a 5xx. ``stream=False`` sends plain requests (servers without streaming).
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
                            data = (await r.json()).get("data") or []
                            if not data:
                                raise ConfigError(f"{self.base_url}/models lists no models")
                            return str(data[0]["id"])
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
                        if r.status == 200 and body.get("stream"):
                            done = await _read_stream(r, body["model"])
                            if isinstance(done, Completion):
                                return done
                            last = f"{done} ({url})"   # broken stream: retried
                        elif r.status == 200:
                            return _parse(await r.json(content_type=None), body["model"])
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
                except (ValueError, KeyError, IndexError, TypeError) as e:
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
            return list(await asyncio.gather(*tasks))

    def _generate(self, chats: list[list[dict[str, str]]], params: SamplingParams,
                  seeds: list[int | None]) -> list[Completion]:
        try:
            self.model_name  # resolve before the batch so each request names it
        except ConfigError as e:  # server down or listing no model: every request fails
            return [Completion.failed(f"cannot determine the model: {e}") for _ in chats]
        return _run(self.agenerate(chats, params, seeds))


def _parse(data: dict[str, Any], model: str) -> Completion:
    if "error" in data and "choices" not in data:
        raise ValueError(f"error object: {data['error']}")
    choice = data["choices"][0]
    reason = choice.get("finish_reason") or "stop"
    usage = data.get("usage") or {}
    return Completion(text=choice["message"].get("content") or "",
                      finish_reason="length" if reason == "length" else "stop",
                      prompt_tokens=int(usage.get("prompt_tokens", 0)),
                      completion_tokens=int(usage.get("completion_tokens", 0)),
                      model=str(data.get("model", model)))


async def _read_stream(r: Any, model: str) -> Completion | str:
    """A chat-completions SSE stream -> its :class:`Completion`, or a string saying why the
    stream broke (no finish reason before it ended, an error event)."""
    parts: list[str] = []
    reason = None
    usage: dict[str, Any] = {}
    name = model
    async for raw in r.content:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue                      # blank separators, comments, "event:" lines
        data = line[5:].strip()
        if data == "[DONE]":
            break
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError(f"stream chunk is not an object: {data[:100]}")
        if obj.get("error"):
            return f"error event in the stream: {str(obj['error'])[:300]}"
        name = str(obj.get("model", name))
        if obj.get("usage"):
            usage = obj["usage"]
        for choice in obj.get("choices") or []:
            parts.append((choice.get("delta") or {}).get("content") or "")
            reason = choice.get("finish_reason") or reason
    if reason is None:
        return "the stream ended before a finish reason"
    return Completion(text="".join(parts), finish_reason="length" if reason == "length" else "stop",
                      prompt_tokens=int(usage.get("prompt_tokens", 0)),
                      completion_tokens=int(usage.get("completion_tokens", 0)), model=name)


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
