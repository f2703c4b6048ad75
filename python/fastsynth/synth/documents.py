"""Source documents for synthesis: ids, text, and fitting them into the model's context.

The model reads a document inside a prompt, so a document longer than ``max_chars`` is
either split into chunks (at paragraph, then sentence, then word boundaries; chunk ``k``
of document ``d`` gets id ``"d#k"``) or skipped with a reason. Characters stand in for
tokens here because the budget is set before any tokenizer is known; ~4 characters per
token is typical of English BPE, so the default 2,000 characters is ~500 tokens.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fastsynth.errors import ConfigError


@dataclass(frozen=True)
class Doc:
    id: str
    text: str


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    """Split ``text`` into pieces of at most ``max_chars`` at the coarsest boundary that fits."""
    for sep in (r"\n\s*\n", r"(?<=[.!?])\s+", r"\s+"):
        parts = [p for p in re.split(sep, text) if p.strip()]
        if all(len(p) <= max_chars for p in parts):
            break
    buf = ""
    for p in parts:
        while len(p) > max_chars:  # a single word longer than the budget: hard cut
            if buf:
                yield buf
                buf = ""
            yield p[:max_chars]
            p = p[max_chars:]
        if buf and len(buf) + 1 + len(p) > max_chars:
            yield buf
            buf = p
        else:
            buf = f"{buf}\n{p}" if buf else p
    if buf.strip():
        yield buf


def fit_documents(records: Iterable[dict], max_chars: int = 2000, on_long: str = "chunk",
                  max_chunks: int = 8, min_chars: int = 40) -> tuple[list[Doc], list[tuple[str, str]]]:
    """Documents ready for prompting, and ``(doc_id, reason)`` for each one left out.

    Args:
        records: dicts with ``"id"`` and ``"text"`` (what :func:`fastsynth.corpus.read` yields).
        max_chars: the most characters of document text one prompt carries.
        on_long: ``"chunk"`` splits a longer document (at most ``max_chunks`` chunks are
            kept; the document is used, and its further chunks are left out with reason
            ``extra_chunks_dropped``), ``"skip"`` leaves
            it out with reason ``too_long``.
        min_chars: shorter texts (after stripping) are left out as ``too_short``.
    """
    if on_long not in ("chunk", "skip"):
        raise ConfigError(f"on_long must be 'chunk' or 'skip', got {on_long!r}")
    if max_chars < 100:
        raise ConfigError(f"max_chars must be at least 100, got {max_chars}")
    docs: list[Doc] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, rec in enumerate(records):
        doc_id = str(rec.get("id", i))
        text = rec.get("text")
        if doc_id in seen:
            skipped.append((doc_id, "duplicate_id"))
            continue
        seen.add(doc_id)
        if not isinstance(text, str) or len(text.strip()) < min_chars:
            skipped.append((doc_id, "too_short" if isinstance(text, str) else "no_text"))
            continue
        text = text.strip()
        if len(text) <= max_chars:
            docs.append(Doc(doc_id, text))
        elif on_long == "skip":
            skipped.append((doc_id, "too_long"))
        else:
            chunks = [c for c in _pieces(text, max_chars) if len(c.strip()) >= min_chars]
            for k, c in enumerate(chunks[:max_chunks]):
                docs.append(Doc(f"{doc_id}#{k}", c))
            if len(chunks) > max_chunks:
                skipped.append((doc_id, "extra_chunks_dropped"))
    return docs, skipped
