"""Prompt files for ``fastsynth generate``: JSONL records read into validated requests, with
every bad record either named (``on_error="raise"``: ``InputError`` with file and line, before
any generation) or kept aside as a reject entry (``"skip"``) — never a traceback, never lost.

A record is a JSON object with ``messages`` (a chat: ``[{"role", "content"}, ...]``) or
``prompt`` (a string, sent as one user message), and optionally ``id`` (any JSON value;
default: the record's index among the good records) and ``seed`` (an int in [0, 2**64)).
Reject entries have the corpus readers' shape (``fastsynth.corpus.rejects``): ``source``,
``line``, ``row`` (None), ``reason``, ``detail``, ``raw``. Reasons: ``invalid_utf8`` (bytes that
are not UTF-8, or a ``\\ud800``-style escape anywhere in the record), ``malformed_json``,
``not_an_object``, ``missing_prompt``, ``invalid_messages``, ``invalid_seed``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from fastsynth.errors import ConfigError, InputError
from fastsynth.llm.base import check_requests, seed_error


_NO_ID = object()


@dataclass
class PromptFile:
    """The good records of a prompts file (``ids``, ``chats``, ``seeds``, their 1-based
    ``lines``), the reject entries, and ``read`` = non-blank lines met (= good + rejected)."""

    source: str
    ids: list[Any] = field(default_factory=list)
    chats: list[list[dict[str, str]]] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    read: int = 0


def _parse(raw: bytes, source: str, lineno: int) -> tuple[Any, list[dict[str, str]], Any]:
    """(id, chat, seed) of one line, or ``InputError`` whose ``reason`` is the reject reason."""
    def bad(reason: str, msg: str) -> InputError:
        return InputError(msg, source=source, line=lineno, reason=reason)

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad("invalid_utf8", f"invalid UTF-8 at byte {e.start}") from None
    try:
        rec = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise bad("malformed_json", f"invalid JSON: {getattr(e, 'msg', type(e).__name__)}") \
            from None
    if not isinstance(rec, dict):
        raise bad("not_an_object", "expected a JSON object")
    try:  # a "\ud800" escape decodes to a lone surrogate, which no UTF-8 output can hold
        json.dumps(rec, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad("invalid_utf8", "a string holds a lone surrogate (\\ud800-\\udfff escape)") \
            from None
    if "messages" in rec:
        chat = rec["messages"]
    elif isinstance(rec.get("prompt"), str):
        chat = [{"role": "user", "content": rec["prompt"]}]
    else:
        raise bad("missing_prompt", "record needs 'messages' (a chat) or 'prompt' (a string)")
    try:
        chat = check_requests([chat])[0]
    except ConfigError as e:
        raise bad("invalid_messages", str(e).replace("requests[0]", "messages")) from None
    err = seed_error(rec.get("seed"))
    if err:
        raise bad("invalid_seed", f"'seed': {err}")
    return rec.get("id", _NO_ID), chat, rec.get("seed")


def read_prompts(path: str | os.PathLike, on_error: str = "raise") -> PromptFile:
    """Read and validate a prompts JSONL file (see the module docstring)."""
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    source = os.fspath(path)
    out = PromptFile(source)
    with open(source, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            out.read += 1
            try:
                rid, chat, seed = _parse(raw, source, lineno)
            except InputError as e:
                if on_error == "raise":
                    raise
                out.rejects.append({"source": source, "line": lineno, "row": None,
                                    "reason": e.reason, "detail": str(e),
                                    "raw": raw.rstrip(b"\r\n").decode("utf-8",
                                                                      "backslashreplace")})
                continue
            out.ids.append(rid if rid is not _NO_ID else len(out.ids))
            out.chats.append(chat)
            out.seeds.append(seed)
            out.lines.append(lineno)
    return out
