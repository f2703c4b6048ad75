"""Read JSON-lines files (plain, gzip, Zstandard) one line at a time.

Conventions:

* Lines are split on ``\\n`` only and numbered from 1 (blank lines included in the
  numbering). A UTF-8 byte-order mark at the start of line 1 is ignored.
* Blank lines (empty or whitespace only) are not records: they are skipped silently and
  counted in ``ReadStats.blank_lines``.
* Every other line is one record and must be a JSON object whose ``text_field`` holds a
  string. Otherwise it is rejected with one of the reasons ``invalid_utf8``,
  ``malformed_json``, ``not_an_object``, ``missing_text``, ``non_string_text``.
  A string escape that encodes a lone surrogate (``"\\ud800"``) in the text or id cannot
  become UTF-8 and is rejected as ``invalid_utf8``.
* Id: ``str(record[id_field])`` when present and not null, else ``"<name>:<line>"`` with
  ``name`` the file's path relative to the source root.
* A compressed stream that ends early yields every complete line before the break, then
  one ``truncated_stream`` reject whose ``line`` is the first line that could not be read
  completely (its detail names the last complete line); reading goes on with the next file.
  (For ``.zst`` the lines of the last 64 KiB read before the break may be inside that
  reject: pyarrow's stream drops a partly decoded read.)
  Other damage gives ``corrupt_stream``; a file that cannot be opened ``unreadable_file``.
* Memory: one line at a time (plus a 1 MiB read buffer), whatever the file size.
"""
from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import pyarrow as pa

from fastsynth.corpus.rejects import ErrorPolicy
from fastsynth.corpus.sources import SourceFile

_BOM = b"\xef\xbb\xbf"
_BUFFER = 1 << 20  # 1 MiB: large enough that syscalls/decompressor calls are not the cost
# pyarrow's zstd stream fills a whole read request or raises, dropping the part it had
# decoded: a smaller request bounds what a truncation can swallow (64 KiB still keeps
# per-call overhead negligible).
_ZSTD_READ = 1 << 16
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_MISSING = object()


class _StreamBroken(Exception):
    def __init__(self, reason: str, error: BaseException):
        super().__init__(str(error))
        self.reason = reason
        self.error = error


def _open(sf: SourceFile) -> BinaryIO:
    path = sf.path
    if sf.compression == "gzip":
        return gzip.open(path, "rb")
    if sf.compression == "zstd":
        # pyarrow's stream has no readline: a BufferedReader supplies line iteration.
        return io.BufferedReader(pa.input_stream(str(path), compression="zstd"), _ZSTD_READ)
    return open(path, "rb", buffering=_BUFFER)


def _lines(fh: BinaryIO, compressed: bool) -> Iterator[bytes]:
    """Yield raw lines; turn decompression/read failures into ``_StreamBroken``."""
    try:
        yield from fh
    except EOFError as e:  # gzip: "Compressed file ended before the end-of-stream marker"
        raise _StreamBroken("truncated_stream", e) from e
    except (OSError, zlib.error, pa.ArrowException) as e:
        if not compressed:
            raise _StreamBroken("unreadable_file", e) from e
        reason = "truncated_stream" if "runcated" in str(e) else "corrupt_stream"
        raise _StreamBroken(reason, e) from e


def iter_jsonl(sf: SourceFile, text_field: str, id_field: str,
               policy: ErrorPolicy) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield ``(id, text, parsed_object)`` for every good line of ``sf``.

    Bad lines go to ``policy`` (which raises in raise mode). Good records are not counted
    here: the caller counts them when it hands them on.
    """
    src = sf.display
    try:
        fh = _open(sf)
    except (OSError, pa.ArrowException) as e:
        policy.reject(src, "unreadable_file", f"cannot open: {e}")
        return
    lineno = 0
    with fh:
        try:
            for raw in _lines(fh, sf.compression is not None):
                lineno += 1
                if lineno == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                # startswith first: the common line ("{...") skips the copy strip() makes.
                if not raw.startswith(b"{") and not raw.strip():
                    policy.stats.blank_lines += 1
                    continue
                item = _parse(raw, lineno, sf, text_field, id_field, policy)
                if item is not None:
                    yield item
        except _StreamBroken as broken:
            if broken.reason == "truncated_stream":
                detail = (f"compressed stream ends abruptly after line {lineno} "
                          f"(the last complete line): {broken}")
            else:
                detail = f"read failed after line {lineno}: {broken}"
            policy.reject(src, broken.reason, detail, line=lineno + 1)


def _parse(raw: bytes, lineno: int, sf: SourceFile, text_field: str, id_field: str,
           policy: ErrorPolicy) -> tuple[str, str, dict[str, Any]] | None:
    # The line ending stays on ``raw`` (JSON allows trailing whitespace): stripping would
    # copy every line; only reject entries strip it.
    def bad(reason: str, detail: str) -> None:
        policy.reject(sf.display, reason, detail, line=lineno, raw=raw.rstrip(b"\r\n"))

    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return bad("invalid_utf8", f"invalid UTF-8 byte at offset {e.start}")
    try:
        obj = json.loads(s)
    except ValueError as e:
        col = getattr(e, "colno", None)
        return bad("malformed_json", f"malformed JSON: {getattr(e, 'msg', e)}"
                   + (f" (column {col})" if col else ""))
    if not isinstance(obj, dict):
        return bad("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    text = obj.get(text_field, _MISSING)
    if text is _MISSING:
        return bad("missing_text", f"no field {text_field!r} (text_field)")
    if not isinstance(text, str):
        kind = "null" if text is None else f"a {type(text).__name__}"
        return bad("non_string_text", f"field {text_field!r} is {kind}, not a string")
    ident = obj.get(id_field)
    ident = f"{sf.name}:{lineno}" if ident is None else str(ident)
    if "\\u" in s and _LONE_SURROGATE_ESCAPE.search(s):
        # Only escapes can produce lone surrogates (the bytes were strict UTF-8); a valid
        # escaped pair is merged by json, so check by encoding, the rare case only.
        try:
            text.encode("utf-8")
            ident.encode("utf-8")
        except UnicodeEncodeError:
            return bad("invalid_utf8", "a \\u escape encodes a lone surrogate, which is not valid UTF-8")
    return ident, text, obj
