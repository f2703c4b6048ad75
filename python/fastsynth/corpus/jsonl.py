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
* Gzip (``.gz``): the records of a member are yielded only after that member's CRC-32
  and length check passed (a member is what one ``gzip`` run writes; ``cat a.gz b.gz``
  makes two). A member that fails its check, or ends early, gives one reject
  (``corrupt_stream`` / ``truncated_stream``) whose ``line`` is its first line not yet
  yielded (zlib reports the failure without the bytes decoded in that call, so the
  member's lines cannot be counted one by one). The rest of that file is not
  read (the next member's start cannot be trusted); reading goes on with the next file.
  Memory: a member's decompressed bytes are held until its check, up to
  ``GZIP_MEMBER_BUFFER`` (64 MiB); a larger member is decompressed twice — once to check
  it, keeping nothing, then again, yielding lines — so memory stays bounded for members
  of any size at the cost of a second decompression (see docs/errors.md).
* Zstandard (``.zst``): pyarrow's stream gives no frame boundaries, so a stream that ends
  early yields every complete line before the break, then one ``truncated_stream``
  reject whose ``line`` is the first line that could not be read completely (its detail
  names the last complete line; the lines of the last 64 KiB read before the break may
  be inside that reject: pyarrow's stream drops a partly decoded read). A frame whose
  checksum fails gives ``corrupt_stream`` after the lines decoded before it.
  Other damage gives ``corrupt_stream``; a file that cannot be opened ``unreadable_file``.
* Every string in a yielded record (keys and values at any depth, not only the text and
  id) is valid UTF-8: an escape that encodes a lone surrogate anywhere is ``invalid_utf8``.
* Memory: one line at a time (plus a 1 MiB read buffer), whatever the file size (gzip:
  see above).
"""
from __future__ import annotations

import io
import json
import math
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
# A JSON number that may lie past float range (an exponent of 3+ digits, or 309+ digits):
# Python's json reads it as inf. Lines that match are parsed again with a strict float.
_HUGE_NUMBER = re.compile(rb"[0-9][eE][+-]?[0-9]{3}|[0-9]{309}")
#: Decompressed bytes of one gzip member held until its check passes; past this the
#: member is checked in a first pass that keeps nothing and decoded again (module doc).
GZIP_MEMBER_BUFFER = 64 << 20
_GZIP_OUT = 4 << 20  # most decompressed bytes per zlib call: bounds a zip bomb's step


class _StreamBroken(Exception):
    def __init__(self, reason: str, error: BaseException | str, withheld: bool = False):
        super().__init__(str(error))
        self.reason = reason
        self.error = error
        self.withheld = withheld  # gzip: a damaged member's lines were held back


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    x = float(text)
    if x in (math.inf, -math.inf):
        raise ValueError(f"number {text[:40]} is past the float range (it would be infinity)")
    return x


def _open(sf: SourceFile) -> BinaryIO:
    path = sf.path
    if sf.compression == "gzip":
        return open(path, "rb", buffering=0)
    if sf.compression == "zstd":
        # pyarrow's stream has no readline: a BufferedReader supplies line iteration.
        return io.BufferedReader(pa.input_stream(str(path), compression="zstd"), _ZSTD_READ)
    return open(path, "rb", buffering=_BUFFER)


class _GzipMember:
    """One gzip member read from ``f`` after the bytes ``head``: ``chunks()`` yields its
    decompressed bytes and raises ``_StreamBroken`` when the member is damaged or ends
    early (zlib checks the CRC-32 and length trailer before reporting the end);
    afterwards ``rest`` holds the compressed bytes that follow the member."""

    def __init__(self, f: BinaryIO, head: bytes):
        self.f, self.head, self.rest = f, head, b""

    def chunks(self) -> Iterator[bytes]:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = self.head
        while True:
            if not data:
                try:
                    data = self.f.read(_BUFFER)
                except OSError as e:
                    raise _StreamBroken("unreadable_file", e) from e
                if not data:
                    raise _StreamBroken("truncated_stream", "the gzip member ends before its "
                                        "end marker and CRC check")
            try:
                out = d.decompress(data, _GZIP_OUT)
            except zlib.error as e:
                reason = "truncated_stream" if "runcated" in str(e) else "corrupt_stream"
                raise _StreamBroken(reason, f"damaged gzip member: {e}") from e
            data = d.unconsumed_tail
            if out:
                yield out
            if d.eof:
                self.rest = d.unused_data
                return


def _gzip_lines(f: BinaryIO) -> Iterator[bytes]:
    """Raw lines of a (multi-member) gzip file, each member's only after its check passed.

    A line that spans members is yielded once both are checked. On damage raises
    ``_StreamBroken`` with ``withheld`` set: the unchecked member's lines were not yielded.
    """
    carry = b""  # the unfinished last line of the checked members so far
    rest = b""
    while True:
        rest = rest.lstrip(b"\0")  # gzip(1) and Python skip zero padding between members
        while not rest:
            try:
                rest = f.read(_BUFFER)
            except OSError as e:
                raise _StreamBroken("unreadable_file", e) from e
            if not rest:
                if carry:
                    yield carry
                return
            rest = rest.lstrip(b"\0")
        start = f.tell() - len(rest)
        if not rest.startswith(b"\x1f\x8b") and len(rest) >= 2:
            raise _StreamBroken("corrupt_stream", f"bytes at offset {start} are not a gzip "
                                "member (trailing garbage?)", withheld=True)
        member = _GzipMember(f, rest)
        parts: list[bytes] = []
        held = 0
        try:
            for out in member.chunks():
                if held <= GZIP_MEMBER_BUFFER:
                    parts.append(out)
                    held += len(out)
                    if held > GZIP_MEMBER_BUFFER:
                        parts = []  # too big to hold: check it first, decode it again after
        except _StreamBroken as broken:
            broken.withheld = True
            raise
        rest = member.rest
        if held > GZIP_MEMBER_BUFFER:
            f.seek(start)
            member = _GzipMember(f, b"")
            chunks: Iterator[bytes] = member.chunks()
        else:
            chunks = iter(parts)
        for out in chunks:
            pieces = (carry + out).split(b"\n")
            carry = pieces.pop()
            for p in pieces:
                yield p + b"\n"
        if held > GZIP_MEMBER_BUFFER:
            rest = member.rest


def _lines(fh: BinaryIO, compression: str | None) -> Iterator[bytes]:
    """Yield raw lines; turn decompression/read failures into ``_StreamBroken``."""
    if compression == "gzip":
        yield from _gzip_lines(fh)
        return
    compressed = compression is not None
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
        except _StreamBroken as broken:
            if broken.withheld:
                detail = (f"{broken}; the lines of this gzip member, after line {lineno} "
                          f"(the last line of a checked member), are rejected with the rest "
                          f"of the file")
            elif broken.reason == "truncated_stream":
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
        if _HUGE_NUMBER.search(raw):
            obj = json.loads(s, parse_constant=_reject_constant, parse_float=_finite_float)
        else:
            obj = json.loads(s, parse_constant=_reject_constant)
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
