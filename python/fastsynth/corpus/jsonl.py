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
* Values: Python's ``json`` also reads ``NaN``/``Infinity``, which JSON does not have, and
  reads a number past the float range (``1e400``) as infinity; such a line is
  ``malformed_json``, so no record carries a value a JSON writer cannot write.
  A line nested deeper than Python's recursion limit is ``malformed_json`` too.
* Gzip (``.gz``) and Zstandard (``.zst``): the records of a member (a gzip member, a
  zstd frame) are yielded only after that member's check passed (CRC-32 and length;
  the frame's content checksum when it has one) — see
  :mod:`fastsynth.corpus.compressed`. A member that fails its check, or ends early, gives
  one reject (``corrupt_stream`` / ``truncated_stream``) whose ``line`` is its first line
  not yet yielded (the decompressor reports the failure without the bytes decoded in
  that call, so the member's lines cannot be counted one by one). The rest of that file
  is not read (the next member's start cannot be trusted); reading goes on with the next
  file. A file that cannot be opened gives ``unreadable_file``. Reading ``.zst`` needs the
  ``zstandard`` package (a core dependency); were it missing, ``read`` raises ``DependencyError``
  before reading anything.
* Every string in a yielded record (keys and values at any depth, not only the text and
  id) is valid UTF-8: an escape that encodes a lone surrogate anywhere is ``invalid_utf8``.
* Memory: one line at a time (plus a 1 MiB read buffer), whatever the file size
  (compressed files: a member is held until its check, up to 64 MiB, see
  :mod:`fastsynth.corpus.compressed`).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from fastsynth.corpus.compressed import StreamBroken, member_lines
from fastsynth.corpus.rejects import ErrorPolicy
from fastsynth.corpus.sources import SourceFile

_BOM = b"\xef\xbb\xbf"
_BUFFER = 1 << 20  # 1 MiB: large enough that syscalls/decompressor calls are not the cost
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_MISSING = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    x = float(text)
    if x in (math.inf, -math.inf):
        raise ValueError(f"number {text[:40]} is past the float range (it would be infinity)")
    return x


# One decoder for every line (json.loads with hooks builds a new one per call). The float
# hook runs only for numbers with a fraction or exponent, so it costs nothing on most
# lines; a regex prefilter for large exponents used to cost more than the parse itself
# (6.3 of 8.7 s reading 26 MB of JSONL on the loaded 2-core machine).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _lines(fh: BinaryIO, compression: str | None) -> Iterator[bytes]:
    """Raw lines of ``fh``; read and decompression failures become ``StreamBroken``."""
    if compression is not None:
        yield from member_lines(fh, compression)
        return
    try:
        yield from fh
    except OSError as e:
        raise StreamBroken("unreadable_file", e) from e


def iter_jsonl(sf: SourceFile, text_field: str, id_field: str,
               policy: ErrorPolicy) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield ``(id, text, parsed_object)`` for every good line of ``sf``.

    Bad lines go to ``policy`` (which raises in raise mode). Good records are not counted
    here: the caller counts them when it hands them on.
    """
    src = sf.display
    try:
        # compressed: unbuffered, member_lines reads 1 MiB blocks and seeks by offset
        fh = open(sf.path, "rb", buffering=0 if sf.compression else _BUFFER)
    except OSError as e:
        policy.reject(src, "unreadable_file", f"cannot open: {e}")
        return
    lineno = 0
    with fh:
        try:
            for raw in _lines(fh, sf.compression):
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
        except StreamBroken as broken:
            if broken.withheld:
                what = "gzip member" if sf.compression == "gzip" else "zstd frame"
                detail = (f"{broken}; the lines of this {what}, after line {lineno} "
                          f"(the last line of a checked one), are rejected with the rest "
                          f"of the file")
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
        obj = _DECODER.decode(s)
    except ValueError as e:
        col = getattr(e, "colno", None)
        return bad("malformed_json", f"malformed JSON: {getattr(e, 'msg', e)}"
                   + (f" (column {col})" if col else ""))
    except RecursionError:
        # A short line of 1,000 nested brackets exhausts the parser's stack; it is one bad
        # record, not a reason to stop reading (docs/errors.md).
        return bad("malformed_json", "malformed JSON: nested too deeply to parse")
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
        # escaped pair is merged by json, so check by encoding, the rare case only. Every
        # field is checked, not only text and id: a writer downstream must encode them all.
        try:
            ident.encode("utf-8")
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return bad("invalid_utf8", "a \\u escape encodes a lone surrogate, which is not valid UTF-8")
        except RecursionError:
            return bad("malformed_json", "malformed JSON: nested too deeply to parse")
    return ident, text, obj
