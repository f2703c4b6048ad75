"""``fastsynth serve``: an OpenAI-compatible HTTP server over the local model.

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (plain or
``"stream": true`` server-sent events), ``GET /v1/models``, ``GET /health``. Requests are
validated at the boundary (:mod:`fastsynth.llm.protocol`: 400 with an OpenAI error object),
parsed and tokenized in a thread pool, and decoded by continuous batching
(:mod:`fastsynth.llm.scheduler`): a request joins the running batch at the next decode step.
A client that disconnects cancels its rows. Limits (body size, prompt tokens, rows decoding,
rows waiting, seconds per request) come from :class:`ServerLimits`; a full server answers 429.
Formats and limits are written down in ``docs/serving.md``.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fastsynth.errors import ConfigError
from fastsynth.llm.protocol import (Choice, GenerationRequest, RequestError, chunk, new_id,
                                    parse_chat, parse_completion, response, usage_chunk)
from fastsynth.llm.scheduler import Job, Scheduler
from fastsynth.model.generation import Sampling


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts.

    ``max_batch``: rows decoding together. ``max_queue``: rows waiting to join (beyond both:
    429). ``max_body_bytes``: request body size (beyond: 413). ``max_prompt_tokens``: prompt
    tokens per prompt, chat template included (None: the context length minus one).
    ``request_timeout``: seconds a request may take from admission to its last token (None:
    no limit); past it the request ends with an error (504, or an error event when streamed).
    ``tokenizer_threads``: threads that parse and tokenize requests (off the decode thread).
    """

    max_batch: int = 16
    max_queue: int = 64
    max_body_bytes: int = 4 * 1024 * 1024
    max_prompt_tokens: int | None = None
    request_timeout: float | None = None
    tokenizer_threads: int = 2

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_body_bytes", "tokenizer_threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise ConfigError(f"max_queue must be a non-negative integer, got {self.max_queue!r}")
        if self.max_prompt_tokens is not None and (
                not isinstance(self.max_prompt_tokens, int) or self.max_prompt_tokens < 1):
            raise ConfigError(f"max_prompt_tokens must be a positive integer, got "
                              f"{self.max_prompt_tokens!r}")
        if self.request_timeout is not None and not self.request_timeout > 0:
            raise ConfigError(f"request_timeout must be > 0 seconds, got {self.request_timeout!r}")


def _max_token_bytes(tokenizer: Any) -> int:
    """An upper bound on the UTF-8 bytes of text one token covers: the longest vocabulary
    entry's own UTF-8 length (byte-level BPE spells each byte as one character of >= 1 byte;
    SentencePiece spells a space as a 3-byte character and a fallback byte as 6 characters)."""
    vocab = tokenizer.tok.get_vocab(with_added_tokens=True)
    return max(len(t.encode("utf-8", "surrogatepass")) for t in vocab)


class OpenAIServer:
    """The model (a :class:`~fastsynth.llm.local.LocalGenerator`), its scheduler and the
    aiohttp application (:meth:`app`)."""

    def __init__(self, generator: Any, limits: ServerLimits = ServerLimits()):
        self.gen = generator
        self.limits = limits
        self.tokenizer = generator.tokenizer
        self.context = int(generator.context_length)
        self.max_prompt = min(limits.max_prompt_tokens or self.context - 1, self.context - 1)
        self.token_bytes = _max_token_bytes(self.tokenizer)
        self.vocab = self.tokenizer.vocab_size
        self.scheduler: Scheduler | None = None
        self.pool = ThreadPoolExecutor(limits.tokenizer_threads, thread_name_prefix="fastsynth-tok")
        self.admitted = 0          # rows admitted and not yet answered (event-loop thread only)
        self.rejected_busy = 0
        self.started = time.time()

    # -- application ------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.limits.max_body_bytes,
                              middlewares=[self._errors])
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.scheduler = Scheduler(self.gen.model, self.tokenizer, max_batch=self.limits.max_batch)

    async def _stop(self, app: web.Application) -> None:
        if self.scheduler is not None:
            await asyncio.to_thread(self.scheduler.close)
        self.pool.shutdown(wait=False, cancel_futures=True)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every failure as an OpenAI error object; never a text/plain page or a traceback."""
        try:
            return await handler(request)
        except RequestError as e:
            return _error(e)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            if e.status == 413:
                return _error(RequestError(
                    f"the request body exceeds this server's limit of "
                    f"{self.limits.max_body_bytes} bytes", code="request_too_large", status=413))
            return _error(RequestError(f"{e.reason}: {request.method} {request.path}",
                                       status=e.status, code=e.reason.lower().replace(" ", "_")))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a server fault: one line in the log, an error object out
            print(f"fastsynth serve: error in {request.path}: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
            return _error(RequestError(f"internal error: {type(e).__name__}", status=500,
                                       code="internal_error"))

    # -- endpoints --------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.gen.model_name, "object": "model", "created": int(self.started),
             "owned_by": "fastsynth", "max_model_len": self.context}]})

    async def health(self, request: web.Request) -> web.Response:
        s = self.scheduler
        return web.json_response({
            "status": "ok", "admitted": self.admitted, "rejected_busy": self.rejected_busy,
            "decoding": s.decoding if s else 0, "waiting": s.waiting if s else 0,
            **(dict(s.stats) if s else {})})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "completion")

    # -- request flow -----------------------------------------------------------------------
    async def _handle(self, request: web.Request, kind: str) -> web.StreamResponse:
        raw = await request.read()                     # 413 past max_body_bytes (middleware)
        loop = asyncio.get_running_loop()
        req: GenerationRequest = await loop.run_in_executor(self.pool, self._parse, raw, kind)
        n = len(req.prompts)
        cap = self.limits.max_batch + self.limits.max_queue
        if self.admitted + n > cap:
            self.rejected_busy += 1
            raise RequestError(f"the server is busy ({self.admitted} requests in progress, at "
                               f"most {cap}); retry later", status=429, code="server_busy")
        self.admitted += n
        jobs: list[Job] = []
        try:
            prompts = await loop.run_in_executor(self.pool, self._tokenize, req)
            events: asyncio.Queue = asyncio.Queue()
            for i, ids in enumerate(prompts):
                jobs.append(self._job(req, ids, i, events, loop))
            assert self.scheduler is not None
            for j in jobs:
                self.scheduler.submit(j)
            deadline = (loop.time() + self.limits.request_timeout
                        if self.limits.request_timeout else None)
            if req.stream:
                return await self._stream(request, req, prompts, events, deadline)
            return await self._collect(req, prompts, events, deadline)
        finally:
            self.admitted -= n
            for j in jobs:          # a disconnected client, a timeout or an error: stop decoding
                j.cancel()

    def _parse(self, raw: bytes, kind: str) -> GenerationRequest:
        try:
            body = json.loads(raw)
        except UnicodeDecodeError:
            raise RequestError("the request body is not UTF-8 text") from None
        except (ValueError, RecursionError) as e:
            raise RequestError(f"the request body is not valid JSON: {str(e)[:200]}",
                               code="invalid_json") from None
        if kind == "chat":
            return parse_chat(body, self.gen.model_name)
        return parse_completion(body, self.gen.model_name, self.vocab,
                                self.limits.max_batch + self.limits.max_queue)

    def _tokenize(self, req: GenerationRequest) -> list[list[int]]:
        """Token ids per prompt (in the pool); prompt-length limits -> RequestError."""
        out = []
        for i, p in enumerate(req.prompts):
            param = "messages" if req.kind == "chat" else "prompt"
            if isinstance(p, tuple):
                ids = list(p)
            else:
                text_bytes = sum(len(m["content"].encode("utf-8")) for m in p) \
                    if req.kind == "chat" else len(p.encode("utf-8"))
                # cheap bound first: a prompt this long has more tokens than allowed whatever
                # they are, so it is never tokenized (a 4 MB prompt would take seconds)
                if text_bytes > self.max_prompt * self.token_bytes:
                    raise RequestError(
                        f"the prompt ({text_bytes} bytes) is longer than this server's limit "
                        f"of {self.max_prompt} prompt tokens", param=param,
                        code="context_length_exceeded")
                try:
                    text = self.tokenizer.apply_chat_template(p) if req.kind == "chat" else p
                except Exception as e:  # a template that rejects this chat
                    raise RequestError(f"cannot render the chat: {e}", param=param,
                                       code="invalid_value") from None
                ids = self.tokenizer.encode(text)
            if not ids:
                raise RequestError("the prompt has no tokens", param=param,
                                   code="invalid_value")
            if len(ids) > self.max_prompt:
                raise RequestError(
                    f"the prompt has {len(ids)} tokens; this server takes at most "
                    f"{self.max_prompt} (the model's context is {self.context} tokens, "
                    f"prompt and completion together)", param=param,
                    code="context_length_exceeded")
            out.append(ids)
        return out

    def _job(self, req: GenerationRequest, ids: list[int], index: int, events: asyncio.Queue,
             loop: asyncio.AbstractEventLoop) -> Job:
        room = self.context - len(ids)
        limit = min(req.max_tokens, room) if req.max_tokens else room

        def on_event(delta: str, result: Any, error: str | None) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, (index, delta, result, error))
            except RuntimeError:  # the loop has closed (server shutting down)
                pass

        return Job(prompt=ids, max_new_tokens=limit,
                   sampling=Sampling(temperature=req.temperature, top_p=req.top_p,
                                     top_k=req.top_k),
                   stop=req.stop, seed=req.seed, on_event=on_event)

    async def _next(self, events: asyncio.Queue, deadline: float | None) -> tuple:
        if deadline is None:
            return await events.get()
        left = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(events.get(), max(left, 0.0))
        except asyncio.TimeoutError:
            raise RequestError(f"the request took longer than this server's limit of "
                               f"{self.limits.request_timeout} s", status=504,
                               code="timeout") from None

    async def _collect(self, req: GenerationRequest, prompts: list[list[int]],
                       events: asyncio.Queue, deadline: float | None) -> web.Response:
        choices: list[Choice | None] = [None] * len(prompts)
        while any(c is None for c in choices):
            i, _, result, error = await self._next(events, deadline)
            if error is not None:
                raise RequestError(error, status=500, code="generation_failed")
            if result is not None:
                choices[i] = Choice(result.text, result.finish_reason, len(prompts[i]),
                                    result.completion_tokens)
        return web.json_response(response(req, new_id(req.kind), self.gen.model_name,
                                          choices))  # type: ignore[arg-type]

    async def _stream(self, request: web.Request, req: GenerationRequest,
                      prompts: list[list[int]], events: asyncio.Queue,
                      deadline: float | None) -> web.StreamResponse:
        """Server-sent events: ``data: {chunk}`` lines, then ``data: [DONE]``; a failure after
        the headers went out ends the stream with ``data: {"error": {...}}``."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        rid, created, model = new_id(req.kind), int(time.time()), self.gen.model_name

        async def send(obj: Any) -> None:
            data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
            await resp.write(f"data: {data}\n\n".encode("utf-8"))

        choices: list[Choice | None] = [None] * len(prompts)
        try:
            if req.kind == "chat":
                await send(chunk(req, rid, created, model, 0, text="", role=True))
            while any(c is None for c in choices):
                i, delta, result, error = await self._next(events, deadline)
                if error is not None:
                    raise RequestError(error, status=500, code="generation_failed")
                if delta:
                    await send(chunk(req, rid, created, model, i, text=delta))
                if result is not None:
                    choices[i] = Choice(result.text, result.finish_reason, len(prompts[i]),
                                        result.completion_tokens)
                    await send(chunk(req, rid, created, model, i,
                                     finish_reason=result.finish_reason))
            if req.include_usage:
                await send(usage_chunk(req, rid, created, model, choices))  # type: ignore[arg-type]
            await send("[DONE]")
        except RequestError as e:
            await send(e.body())
        except ConnectionResetError:  # the client went away; _handle cancels its rows
            return resp
        await resp.write_eof()
        return resp


def _error(e: RequestError) -> web.Response:
    return web.json_response(e.body(), status=e.status)
