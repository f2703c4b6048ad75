"""What happens to bad input: raise, or record a reject entry and count it.

A reject entry is a plain dict::

    {"source": "path/to/file.jsonl",   # the file as resolved (str)
     "line": 12 or None,               # 1-based line (JSONL), None otherwise
     "row": 3 or None,                 # 0-based row (Parquet), None otherwise
     "reason": "malformed_json",       # short machine reason (see REASONS)
     "detail": "human message",
     "raw": "the raw line" or None}    # decoded with errors="backslashreplace"

Accounting convention (``ReadStats``): ``read`` counts every input unit the reader met —
each non-blank JSONL line, each Parquet row, each text file, and each file-level failure
(unreadable file, truncated stream) — so ``read == yielded + rejected`` holds at every
point between records. Blank JSONL lines are not records: they are skipped and counted
only in ``blank_lines``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastsynth.atomic import atomic_path
from fastsynth.errors import ConfigError, InputError

#: Every reason a reader can give, with its meaning.
REASONS = {
    "malformed_json": "the line is not valid JSON",
    "not_an_object": "the JSON value is not an object",
    "missing_text": "the text field is absent (key or Parquet column)",
    "non_string_text": "the text field is null or not a string",
    "invalid_utf8": "bytes are not valid UTF-8 (or a string escape encodes a lone surrogate)",
    "truncated_stream": "a compressed stream ends before its end marker",
    "corrupt_stream": "a compressed stream is damaged",
    "unreadable_file": "the file is missing, unreadable or not in the expected format",
}

ON_ERROR_CHOICES = ("raise", "skip")


@dataclass
class ReadStats:
    """Counts a reader keeps up to date while it is iterated (see the module docstring)."""

    read: int = 0
    yielded: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    blank_lines: int = 0
    files: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the counts."""
        return {
            "read": self.read,
            "yielded": self.yielded,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "blank_lines": self.blank_lines,
            "files": self.files,
        }


class _JsonlRejectFile:
    """A JSONL file of reject entries, written to ``.<name>.tmp-<pid>`` and renamed on
    close; temp files of killed earlier runs (dead pid) are removed when it is opened."""

    def __init__(self, path: Path):
        from fastsynth.corpus.write import sweep_dead_temps  # write imports nothing of ours

        self.path = path
        sweep_dead_temps(path)
        self._commit = atomic_path(path)  # entered on the first entry or at close
        self._fh: Any = None

    def _open(self) -> None:
        self._fh = open(self._commit.__enter__(), "w", encoding="utf-8")

    def append(self, entry: dict[str, Any]) -> None:
        if self._fh is None:
            self._open()
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._fh is None:  # no rejects: still leave an (empty) file the summary can name
            self._open()
        self._fh.close()
        # The entries so far are kept also when reading stopped on an error: the rejects
        # file accounts for what was read before it.
        self._commit.__exit__(None, None, None)


class ErrorPolicy:
    """Applies ``on_error`` to every bad input and keeps the reader's ``ReadStats``.

    ``rejects`` may be ``None`` (skip mode only counts), a path (``str``/``Path``: a JSONL
    file written atomically when the reader finishes or is closed) or any object with an
    ``append(entry)`` method (a list, a queue wrapper, ...).
    """

    def __init__(self, on_error: str, rejects: Any = None):
        if on_error not in ON_ERROR_CHOICES:
            raise ConfigError(
                f"on_error must be one of {', '.join(map(repr, ON_ERROR_CHOICES))}, got {on_error!r}"
            )
        self.on_error = on_error
        self.stats = ReadStats()
        self._closer: Callable[[], None] | None = None
        if rejects is None:
            self._sink = None
        elif isinstance(rejects, (str, os.PathLike)):
            where = Path(rejects)
            if where.is_dir() or not where.parent.is_dir():
                raise ConfigError(f"rejects {str(where)!r}: must be a file in an existing folder")
            sink = _JsonlRejectFile(where)
            self._sink, self._closer = sink, sink.close
        elif callable(getattr(rejects, "append", None)):
            self._sink = rejects
        else:
            raise ConfigError(
                f"rejects must be None, a path or an object with .append, got {type(rejects).__name__}"
            )

    def reject(self, source: str, reason: str, detail: str, *, line: int | None = None,
               row: int | None = None, raw: bytes | str | None = None) -> None:
        """Raise ``InputError`` (raise mode) or record one reject entry (skip mode).

        The caller must not have counted the unit in ``stats.read``: this does it.
        """
        if self.on_error == "raise":
            raise InputError(f"{detail} [{reason}]", source=source, line=line, row=row,
                             reason=reason)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="backslashreplace")
        st = self.stats
        st.read += 1
        st.rejected += 1
        st.rejected_by_reason[reason] = st.rejected_by_reason.get(reason, 0) + 1
        if self._sink is not None:
            self._sink.append({"source": source, "line": line, "row": row, "reason": reason,
                               "detail": detail, "raw": raw})

    def close(self) -> None:
        """Finish the rejects file, if any (idempotent)."""
        closer, self._closer = self._closer, None
        if closer is not None:
            closer()
