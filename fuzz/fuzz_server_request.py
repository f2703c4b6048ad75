"""Fuzz target: the request parser of ``fastsynth serve``: the body decoding of
``OpenAIServer._parse`` and the validation of ``fastsynth.llm.protocol`` it calls.

Input: the endpoint (chat or text completions), then the raw request body (seeds: valid
and invalid bodies of both endpoints). :func:`parse` repeats ``_parse``'s few lines of
decoding so that the target does not import the server module, whose import of torch
would cost each CI run ~15 s of start-up; ``tests/test_fuzz_regressions.py`` checks on
the seeds that it and ``OpenAIServer._parse`` give the same results.

Failure (a :class:`Finding`, or any exception escaping ``check``):

* anything but ``RequestError`` raised (the server would answer 500 for client input);
* a ``RequestError`` whose error object does not serialise to JSON, or whose status is
  not a 4xx;
* an accepted request outside the documented ranges: ``max_tokens`` None or an int >= 1
  (no bool), ``temperature`` finite in [0, 2], ``top_p`` finite in [0, 1], ``top_k`` None
  or an int >= 1, ``seed`` None or an int in [0, 2**64), 1-16 non-empty stop strings,
  every string valid UTF-8, chat roles among the four, token ids inside the vocabulary,
  at most ``max_batch + max_queue`` prompts.
"""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

from bytesource import ByteSource
from harness import Finding, instrumented, main

with instrumented():
    from fastsynth.llm import protocol

KNOWN: dict[str, str] = {}
MODEL = "fuzz-model"
VOCAB = 1000
# What the parser reads from the server (ServerLimits(max_batch=2, max_queue=3)).
_LIMITS = SimpleNamespace(max_batch=2, max_queue=3)


def parse(raw: bytes, kind: str) -> protocol.GenerationRequest:
    """``OpenAIServer._parse(raw, kind)`` for a server of :data:`MODEL` with these limits."""
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:
        raise protocol.RequestError("the request body is not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise protocol.RequestError(f"the request body is not valid JSON: {str(e)[:200]}",
                                    code="invalid_json") from None
    if kind == "chat":
        return protocol.parse_chat(body, MODEL)
    return protocol.parse_completion(body, MODEL, VOCAB, _LIMITS.max_batch + _LIMITS.max_queue)


def _utf8(s: object) -> bool:
    try:
        str(s).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _int_or_none(v: object, lo: int, hi: int | None = None) -> bool:
    return v is None or (type(v) is int and v >= lo and (hi is None or v <= hi))


def _check_request(req: protocol.GenerationRequest, kind: str) -> None:
    bad = []
    if req.kind != kind or not req.prompts:
        bad.append(f"kind {req.kind} / {len(req.prompts)} prompts")
    if not _int_or_none(req.max_tokens, 1):
        bad.append(f"max_tokens {req.max_tokens!r}")
    if type(req.temperature) is not float or not (math.isfinite(req.temperature)
                                                  and 0 <= req.temperature <= 2):
        bad.append(f"temperature {req.temperature!r}")
    if type(req.top_p) is not float or not (math.isfinite(req.top_p) and 0 <= req.top_p <= 1):
        bad.append(f"top_p {req.top_p!r}")
    if not _int_or_none(req.top_k, 1):
        bad.append(f"top_k {req.top_k!r}")
    if not _int_or_none(req.seed, 0, 2**64 - 1):
        bad.append(f"seed {req.seed!r}")
    if not isinstance(req.stop, tuple) or len(req.stop) > protocol.MAX_STOP or any(
            not isinstance(s, str) or not s or len(s) > protocol.MAX_STOP_CHARS or not _utf8(s)
            for s in req.stop):
        bad.append(f"stop {req.stop!r:.80}")
    if type(req.stream) is not bool or type(req.include_usage) is not bool:
        bad.append("stream flags")
    if kind == "chat":
        for m in req.prompts[0]:
            if m.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(m.get("content"), str) or not _utf8(m["content"]):
                bad.append(f"message {m!r:.80}")
    else:
        if len(req.prompts) > _LIMITS.max_batch + _LIMITS.max_queue:
            bad.append(f"{len(req.prompts)} prompts")
        for p in req.prompts:
            if isinstance(p, tuple):
                if not p or any(type(t) is not int or not 0 <= t < VOCAB for t in p):
                    bad.append(f"token ids {p!r:.80}")
            elif not isinstance(p, str) or not _utf8(p):
                bad.append(f"prompt {p!r:.80}")
    if bad:
        raise Finding("out_of_range_accepted", "; ".join(bad))


def check(data: bytes) -> None:
    src = ByteSource(data)
    kind = src.choice(["chat", "completion"])
    raw = src.rest()
    try:
        req = parse(raw, kind)
    except protocol.RequestError as e:
        try:
            json.dumps(e.body())
        except (TypeError, ValueError) as je:
            raise Finding("unserialisable_error", f"{je}: {e.body()!r:.200}") from je
        if not 400 <= e.status < 500:
            raise Finding("server_error_for_client_input", f"status {e.status}: {e.message}")
        return
    except Exception as e:
        # e.g. `role not in ROLES` on a list or object role: TypeError, answered with 500
        kind = ("unhashable_value_500" if isinstance(e, TypeError) and "unhashable" in str(e)
                else "server_error_for_client_input")
        raise Finding(kind,
                      f"{type(e).__name__}: {e} (body {raw[:200]!r})") from e
    _check_request(req, kind)


if __name__ == "__main__":
    main(check, KNOWN)
