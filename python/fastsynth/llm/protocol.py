"""The OpenAI wire format of ``fastsynth serve``: request validation, error objects, responses.

Every field a request may carry is type- and range-checked here, at the boundary; a bad one is
a :class:`RequestError` (HTTP 400 with an OpenAI error object naming the field in ``param``),
never an exception deeper in the server. Fields are read as OpenAI documents them; extension
fields fastsynth honours: ``top_k`` (as vLLM's). Fields that change sampling in ways fastsynth
does not implement (penalties, logit bias, log-probabilities, tools, JSON mode, ``n`` > 1) are
rejected with 400 rather than ignored; other unknown fields are ignored, as vLLM does. The
limits and formats are written down in ``docs/serving.md``.
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from fastsynth.llm.base import SEED_LIMIT

# Chat roles accepted; OpenAI's "developer" role is a system message for these models.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP = 16          # stop strings per request (OpenAI allows 4; vLLM any number)
MAX_STOP_CHARS = 1000  # per stop string


class RequestError(Exception):
    """A request the server will not run; ``body()`` is the OpenAI error object.

    ``status``: 400 invalid field, 404 unknown model/route, 413 body too large, 429 busy,
    500 server fault. ``param``: the offending field (dotted path) or None.
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int = 400, kind: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status
        self.kind = kind or {429: "rate_limit_error"}.get(
            status, "server_error" if status >= 500 else "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


@dataclass(frozen=True)
class GenerationRequest:
    """A validated request. ``prompts``: chat messages (``kind == "chat"``, one prompt) or
    prompt strings / token-id lists (``kind == "completion"``). ``max_tokens`` None = up to
    the context. ``top_k`` None = off."""

    kind: Literal["chat", "completion"]
    prompts: tuple[Any, ...]
    max_tokens: int | None
    temperature: float
    top_p: float
    top_k: int | None
    stop: tuple[str, ...]
    seed: int | None
    stream: bool
    include_usage: bool


# ------------------------------------------------------------------ field readers

def _missing(body: dict[str, Any], name: str) -> bool:
    return body.get(name) is None


def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(v), "number" if isinstance(v, (int, float)) else
                                     type(v).__name__)


def _int(body: dict[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    # JSON has one number type: 3.0 is an integer to OpenAI; 1.9 and true are not
    if isinstance(v, float) and v.is_integer() and math.isfinite(v):
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise RequestError(f"'{name}' must be an integer, got {_type_name(v)} {v!r:.40}",
                           param=name, code="invalid_type")
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise RequestError(f"'{name}' must be {rng}, got {v}", param=name, code="invalid_value")
    return v


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise RequestError(f"'{name}' must be a number, got {_type_name(v)} {v!r:.40}",
                           param=name, code="invalid_type")
    if not (math.isfinite(v) and lo <= v <= hi):
        raise RequestError(f"'{name}' must be in [{lo}, {hi}], got {v}", param=name,
                           code="invalid_value")
    return float(v)


def _bool(body: dict[str, Any], name: str) -> bool | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise RequestError(f"'{name}' must be a boolean, got {_type_name(v)}", param=name,
                           code="invalid_type")
    return v


def _text(v: Any, param: str) -> str:
    """``v`` as a string that encodes to UTF-8 (no lone surrogates from ``\\ud800`` escapes)."""
    if not isinstance(v, str):
        raise RequestError(f"'{param}' must be a string, got {_type_name(v)}", param=param,
                           code="invalid_type")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(f"'{param}' contains a lone surrogate (not valid Unicode text)",
                           param=param, code="invalid_value") from None
    return v


def _unsupported(body: dict[str, Any], name: str, ok: Any = (None,)) -> None:
    v = body.get(name)
    if v not in ok:
        raise RequestError(f"'{name}' is not supported by fastsynth serve (got {v!r:.60})",
                           param=name, code="unsupported_parameter")


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    v = body.get("stop")
    if v is None:
        return ()
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list):
        raise RequestError(f"'stop' must be a string or an array of strings, got "
                           f"{_type_name(v)}", param="stop", code="invalid_type")
    if len(items) > MAX_STOP:
        raise RequestError(f"'stop' has {len(items)} entries; at most {MAX_STOP}",
                           param="stop", code="invalid_value")
    out = []
    for i, s in enumerate(items):
        s = _text(s, f"stop[{i}]" if isinstance(v, list) else "stop")
        if not s or len(s) > MAX_STOP_CHARS:
            raise RequestError(f"stop strings must have 1 to {MAX_STOP_CHARS} characters",
                               param="stop", code="invalid_value")
        out.append(s)
    return tuple(out)


def _common(body: dict[str, Any], model_name: str, max_tokens_name: str = "max_tokens"
            ) -> dict[str, Any]:
    """The sampling fields shared by chat and text completions."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_type")
    model = body.get("model")
    if model is not None:
        if not isinstance(model, str):
            raise RequestError("'model' must be a string", param="model", code="invalid_type")
        if model != model_name:
            raise RequestError(f"the model '{model[:200]}' does not exist; this server serves "
                               f"'{model_name}'", param="model", code="model_not_found",
                               status=404)
    n = _int(body, "n", 1)
    if n not in (None, 1):
        raise RequestError("'n' must be 1 (one choice per request)", param="n",
                           code="unsupported_parameter")
    max_tokens = _int(body, max_tokens_name, 1)
    if max_tokens_name != "max_tokens":
        other = _int(body, "max_tokens", 1)
        max_tokens = max_tokens if max_tokens is not None else other
    for name in ("presence_penalty", "frequency_penalty"):
        if _number(body, name, -2.0, 2.0) not in (None, 0.0):
            _unsupported(body, name)
    if body.get("logit_bias") not in (None, {}):
        _unsupported(body, "logit_bias")
    top_k = _int(body, "top_k", -1)
    stream = bool(_bool(body, "stream"))
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not stream:
            raise RequestError("'stream_options' is only allowed when 'stream' is true",
                               param="stream_options", code="invalid_value")
        if not isinstance(opts, dict):
            raise RequestError("'stream_options' must be an object", param="stream_options",
                               code="invalid_type")
        include_usage = bool(_bool(opts, "include_usage"))
    seed = _int(body, "seed", 0, SEED_LIMIT - 1)
    if body.get("user") is not None:
        _text(body["user"], "user")
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    return dict(max_tokens=max_tokens, temperature=1.0 if temperature is None else temperature,
                top_p=1.0 if top_p is None else top_p,
                top_k=top_k if top_k not in (None, -1, 0) else None, stop=_stop(body),
                seed=seed, stream=stream, include_usage=include_usage)


def parse_chat(body: Any, model_name: str) -> GenerationRequest:
    """A ``POST /v1/chat/completions`` body -> :class:`GenerationRequest` (or RequestError)."""
    common = _common(body, model_name, "max_completion_tokens")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise RequestError("'messages' must be a non-empty array of messages",
                           param="messages", code="invalid_type" if msgs else "invalid_value")
    chat = []
    for i, m in enumerate(msgs):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"'{p}' must be an object with 'role' and 'content'", param=p,
                               code="invalid_type")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise RequestError(f"'{p}.role' must be one of {sorted(ROLES)}, got {role!r:.40}",
                               param=f"{p}.role", code="invalid_value")
        content = m.get("content")
        if isinstance(content, list):  # content parts: only text parts carry meaning here
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise RequestError(f"'{p}.content[{j}]' must be a text part "
                                       "({\"type\": \"text\", \"text\": ...})",
                                       param=f"{p}.content[{j}]", code="invalid_value")
                texts.append(_text(part.get("text"), f"{p}.content[{j}].text"))
            content = "".join(texts)
        chat.append({"role": ROLES[role], "content": _text(content, f"{p}.content")})
    for name in ("tools", "functions"):
        if body.get(name) not in (None, []):
            _unsupported(body, name)
    if body.get("tool_choice") not in (None, "none", "auto"):
        _unsupported(body, "tool_choice")
    if body.get("logprobs") not in (None, False) or body.get("top_logprobs") not in (None, 0):
        _unsupported(body, "logprobs", (None, False))
        _unsupported(body, "top_logprobs", (None, 0))
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        _unsupported(body, "response_format")
    return GenerationRequest(kind="chat", prompts=(chat,), **common)


def parse_completion(body: Any, model_name: str, vocab_size: int,
                     max_prompts: int) -> GenerationRequest:
    """A ``POST /v1/completions`` body: ``prompt`` is a string, an array of strings, an array
    of token ids or an array of such arrays (at most ``max_prompts`` prompts)."""
    common = _common(body, model_name)
    prompt = body.get("prompt")
    single = isinstance(prompt, str) or (isinstance(prompt, list) and bool(prompt) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in prompt))
    if single:
        prompts: list[Any] = [prompt]
    elif isinstance(prompt, list) and prompt:
        prompts = prompt
    else:
        raise RequestError("'prompt' must be a string, an array of strings or of token ids "
                           "(non-empty)", param="prompt", code="invalid_type")
    if len(prompts) > max_prompts:
        raise RequestError(f"'prompt' has {len(prompts)} prompts; this server takes at most "
                           f"{max_prompts} per request", param="prompt", code="invalid_value")
    out = []
    for i, p in enumerate(prompts):
        name = "prompt" if single else f"prompt[{i}]"
        if isinstance(p, list):
            if not p or not all(isinstance(t, int) and not isinstance(t, bool)
                                and 0 <= t < vocab_size for t in p):
                raise RequestError(f"'{name}' token ids must be integers in [0, {vocab_size})",
                                   param=name, code="invalid_value")
            out.append(tuple(p))
        else:
            out.append(_text(p, name))
    if body.get("echo") not in (None, False):
        _unsupported(body, "echo")
    if body.get("suffix") not in (None, ""):
        _unsupported(body, "suffix")
    if _int(body, "best_of", 1) not in (None, 1):
        _unsupported(body, "best_of")
    if body.get("logprobs") not in (None, 0):
        _unsupported(body, "logprobs")
    return GenerationRequest(kind="completion", prompts=tuple(out), **common)


# ------------------------------------------------------------------ responses

@dataclass
class Choice:
    """What one prompt produced: ``text``, ``finish_reason`` ("stop"/"length"), token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


def usage(choices: list[Choice]) -> dict[str, int]:
    p = sum(c.prompt_tokens for c in choices)
    n = sum(c.completion_tokens for c in choices)
    return {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}


def response(req: GenerationRequest, rid: str, model: str, choices: list[Choice]
             ) -> dict[str, Any]:
    """The non-streaming response object (``chat.completion`` or ``text_completion``)."""
    if req.kind == "chat":
        c = choices[0]
        ch: list[dict[str, Any]] = [{"index": 0, "message": {"role": "assistant",
                                                             "content": c.text},
                                     "logprobs": None, "finish_reason": c.finish_reason}]
        obj = "chat.completion"
    else:
        ch = [{"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
              for i, c in enumerate(choices)]
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "system_fingerprint": None, "choices": ch, "usage": usage(choices)}


def chunk(req: GenerationRequest, rid: str, created: int, model: str, index: int, *,
          text: str | None = None, role: bool = False, finish_reason: str | None = None
          ) -> dict[str, Any]:
    """One streamed chunk (``chat.completion.chunk`` with a ``delta``, or ``text_completion``
    with ``text``). With ``include_usage`` every chunk carries ``"usage": null``, as OpenAI's."""
    if req.kind == "chat":
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice = {"index": index, "delta": delta, "logprobs": None,
                  "finish_reason": finish_reason}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": index, "text": text or "", "logprobs": None,
                  "finish_reason": finish_reason}
        obj = "text_completion"
    out = {"id": rid, "object": obj, "created": created, "model": model,
           "system_fingerprint": None, "choices": [choice]}
    if req.include_usage:
        out["usage"] = None
    return out


def usage_chunk(req: GenerationRequest, rid: str, created: int, model: str,
                choices: list[Choice]) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage``: no choices, the usage."""
    obj = "chat.completion.chunk" if req.kind == "chat" else "text_completion"
    return {"id": rid, "object": obj, "created": created, "model": model,
            "system_fingerprint": None, "choices": [], "usage": usage(choices)}
