"""Invariant checks that several fuzz targets share.

* Texts in, one result per text out (``gzip_ratio``, ``heuristics``): a text holding a lone
  surrogate cannot become UTF-8 and must be refused with a ``ValueError`` naming the first
  such item (``texts[i]``); every other input must be accepted.
  :func:`call_refusing_lone_surrogates`.
* Corpus readers (JSONL, Parquet, text files): in skip mode nothing may be raised and every
  unit read is yielded or rejected, each reject with its entry (:func:`read_accounted`);
  in raise mode the only exceptions are fastsynth's own (:func:`raise_mode_is_clean`).

Each raises :class:`harness.Finding` naming the broken invariant.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from harness import Finding

R = TypeVar("R")


def has_lone_surrogate(t: object) -> bool:
    """Whether ``t`` is a ``str`` that cannot be encoded as UTF-8 (it holds a lone surrogate)."""
    if not isinstance(t, str):
        return False
    try:
        t.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def call_refusing_lone_surrogates(call: Callable[[], R], texts: Sequence[object]) -> R | None:
    """``call()``, which takes ``texts``; ``None`` when it rightly refused them. A refusal
    of texts that are all encodable, an error that does not name the first bad item, or
    accepting a lone surrogate is a finding."""
    bad = [i for i, t in enumerate(texts) if has_lone_surrogate(t)]
    try:
        got = call()
    except ValueError as e:
        if not bad:
            raise Finding("refused_valid_input", f"{type(e).__name__}: {e}") from e
        if f"texts[{bad[0]}]" not in str(e):
            raise Finding("unnamed_item", f"error does not name texts[{bad[0]}]: {e}") from e
        return None
    if bad:
        raise Finding("accepted_lone_surrogate", f"texts[{bad[0]}] accepted")
    return got


def read_accounted(open_reader: Callable[[list[dict]], Any]) -> tuple[list[Any], Any, list[dict]]:
    """Run the reader ``open_reader(rejects_sink)`` (skip mode) to its end; return
    ``(items, stats, reject entries)``. Raising anything, ``read != yielded + rejected``,
    or a rejected unit without its entry is a finding."""
    rejects: list[dict] = []
    try:
        with open_reader(rejects) as reader:
            items = list(reader)
            stats = reader.stats
    except Exception as e:
        raise Finding("raised_in_skip_mode", f"{type(e).__name__}: {e}") from e
    if stats.read != stats.yielded + stats.rejected or len(rejects) != stats.rejected:
        raise Finding("accounting", f"{stats.as_dict()}, {len(rejects)} reject entries")
    return items, stats, rejects


def raise_mode_is_clean(path: Path, **kwargs: Any) -> list[dict] | None:
    """``fastsynth.corpus.read(path, on_error="raise", **kwargs)`` read to its end: the
    records, or ``None`` when it raised a ``FastsynthError``; any other exception is a
    finding."""
    import fastsynth as fs
    from fastsynth.errors import FastsynthError

    try:
        return list(fs.corpus.read(path, on_error="raise", **kwargs))
    except FastsynthError:
        return None
    except Exception as e:
        raise Finding("non_fastsynth_error", f"raise mode: {type(e).__name__}: {e}") from e
