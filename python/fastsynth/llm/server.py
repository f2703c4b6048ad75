"""An OpenAI-compatible HTTP server over a :class:`Generator` (normally the local backend).

Endpoints: ``POST /v1/chat/completions`` (non-streaming; ``n`` must be 1), ``GET /v1/models``,
``GET /health``. Concurrent requests with the same sampling parameters that arrive within
``batch_window`` seconds of each other are decoded together as one batch (up to
``max_batch``), so a client sending many requests at once gets batched generation.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fastsynth.errors import ConfigError
from fastsynth.llm.base import (Completion, Generator, SamplingParams, check_requests,
                                normalize_stop)


@dataclass
class _Pending:
    chat: list[dict[str, str]]
    seed: int | None
    future: asyncio.Future = field(repr=False)


class BatchingServer:
    """Holds the generator and the batching queue; ``app()`` builds the aiohttp application."""

    def __init__(self, generator: Generator, *, max_batch: int = 16, batch_window: float = 0.02):
        self.generator = generator
        self.max_batch = max_batch
        self.batch_window = batch_window  # seconds to wait for company before decoding
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.started = time.time()

    # -- batching -----------------------------------------------------------------------
    async def _on_startup(self, app: web.Application) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def _work(self) -> None:
        assert self._queue is not None
        held: list[tuple[SamplingParams, _Pending]] = []
        while True:
            if not held:
                held.append(await self._queue.get())
            deadline = time.monotonic() + self.batch_window
            while len(held) < 4 * self.max_batch:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    held.append(await asyncio.wait_for(self._queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            params = held[0][0]
            batch = [p for q, p in held if q == params][:self.max_batch]
            ids = {id(p) for p in batch}
            held = [(q, p) for q, p in held if id(p) not in ids]
            try:
                results = await asyncio.to_thread(
                    self.generator._generate, [p.chat for p in batch], params,
                    [p.seed for p in batch])
            except Exception as e:  # never let the worker die; fail this batch only
                results = [Completion.failed(f"{type(e).__name__}: {e}",
                                             self.generator.model_name)] * len(batch)
            for p, c in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(c)

    # -- handlers -----------------------------------------------------------------------
    async def chat_completions(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ConfigError("the request body must be a JSON object")
            params, chat, seed = self._parse(body)
        except (ConfigError, ValueError) as e:
            return _error(400, str(e))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        assert self._queue is not None
        await self._queue.put((params, _Pending(chat, seed, fut)))
        c: Completion = await fut
        if not c.ok:
            status = 400 if "context" in (c.error or "") else 500
            return _error(status, c.error or "generation failed")
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": self.generator.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                         "finish_reason": c.finish_reason}],
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                      "total_tokens": c.prompt_tokens + c.completion_tokens}})

    def _parse(self, body: dict[str, Any]) -> tuple[SamplingParams, list[dict[str, str]], int | None]:
        if body.get("stream"):
            raise ConfigError("stream=true is not supported by fastsynth serve")
        if body.get("n", 1) != 1:
            raise ConfigError("n must be 1")
        model = body.get("model")
        if model not in (None, self.generator.model_name):
            raise ConfigError(f"unknown model {model!r}; this server serves "
                              f"{self.generator.model_name!r}")
        chat = check_requests([body.get("messages")])[0]
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 256))
        temperature = body.get("temperature")
        params = SamplingParams(
            max_tokens=int(max_tokens) if max_tokens is not None else 256,
            temperature=float(1.0 if temperature is None else temperature),
            top_p=float(body.get("top_p", 1.0) or 1.0),
            top_k=int(body["top_k"]) if body.get("top_k") not in (None, -1) else None,
            stop=normalize_stop(body.get("stop")))
        seed = body.get("seed")
        if seed is not None and not isinstance(seed, int):
            raise ConfigError("seed must be an integer")
        return params, chat, seed

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.generator.model_name, "object": "model", "created": int(self.started),
             "owned_by": "fastsynth", "max_model_len": self.generator.context_length}]})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # long prompts fit
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app


def _error(status: int, message: str) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "code": status}},
                             status=status)
