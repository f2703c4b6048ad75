"""Lines of a compressed file, each member's only after that member's check passed.

A *member* is one gzip member (what one ``gzip`` run writes; ``cat a.gz b.gz`` makes two)
or one Zstandard frame (``zstd`` writes one per run; ``cat`` and parallel writers make
more). gzip checks a member with its CRC-32 and length trailer; zstd checks a frame with
its XXH64 content checksum when the writer stored one (the ``zstd`` tool does by default),
otherwise only with the frame's structure. Lines decoded from a member are held until that
check passes, so a damaged member's lines are never taken as good (docs/errors.md,
"Compressed input").

Memory: a member's decompressed bytes are held up to ``MEMBER_BUFFER`` (64 MiB); a larger
member is decompressed twice, once to check it (keeping nothing), then again, yielding
lines. One decompressor call turns at most ``_GZIP_OUT`` bytes of output (gzip) or
``_ZSTD_IN`` bytes of input (zstd: its decompressor has no output bound; a frame of RLE
blocks expands 4 bytes into 128 KiB, so 2 KiB of input is at most 64 MiB) into memory.

Zstandard frames are read with the ``zstandard`` package (a core dependency): pyarrow's zstd
stream hides frame boundaries, so with it a damaged frame's lines could not be held back.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from fastsynth.errors import DependencyError

#: Decompressed bytes of one member held until its check passes; past this the member is
#: checked in a first pass that keeps nothing and decoded again (module doc).
MEMBER_BUFFER = 64 << 20
_READ = 1 << 20       # compressed bytes per file read
_GZIP_OUT = 4 << 20   # most decompressed bytes per zlib call: bounds a zip bomb's step
# Compressed bytes per zstd call (module doc: bounds one call's output to 64 MiB). Smaller
# steps cost little: 26 MB of JSONL decodes in 0.48 s in 1 KiB steps against 0.26 s in
# 1 MiB steps, while parsing the lines takes longer than either (loaded 2-core machine).
_ZSTD_IN = 2 << 10
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE = b"\x2a\x4d\x18"  # bytes 1-3 of a skippable frame's magic 0x184D2A5?


class StreamBroken(Exception):
    """A compressed stream is damaged or ends early. ``reason``: ``truncated_stream``,
    ``corrupt_stream`` or ``unreadable_file``; ``withheld``: the lines of the member that
    failed were held back (not yielded)."""

    def __init__(self, reason: str, error: BaseException | str, withheld: bool = False):
        super().__init__(str(error))
        self.reason = reason
        self.error = error
        self.withheld = withheld


def require_zstandard() -> Any:
    """The ``zstandard`` module, or ``DependencyError`` naming the extra that installs it."""
    try:
        import zstandard
    except ImportError as e:
        raise DependencyError("zstandard", "zstd", "reading .zst files") from e
    return zstandard


class _Member:
    """One member read from ``f`` after the bytes ``head``: ``chunks()`` yields its
    decompressed bytes and raises ``StreamBroken`` when the member is damaged or ends
    early (both decompressors verify the checksum before reporting the end); afterwards
    ``rest`` holds the compressed bytes that follow the member."""

    def __init__(self, f: BinaryIO, head: bytes, codec: str):
        self.f, self.head, self.codec, self.rest = f, head, codec, b""

    def _read(self) -> bytes:
        try:
            return self.f.read(_READ)
        except OSError as e:
            raise StreamBroken("unreadable_file", e) from e

    def chunks(self) -> Iterator[bytes]:
        gz = self.codec == "gzip"
        what = "gzip member" if gz else "zstd frame"
        if gz:
            d: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
            errors: tuple[type[BaseException], ...] = (zlib.error,)
        else:
            zstandard = require_zstandard()
            d = zstandard.ZstdDecompressor().decompressobj()  # stops at the frame's end
            errors = (zstandard.ZstdError,)
        data = memoryview(self.head)
        while True:
            if not data:
                data = memoryview(self._read())
                if not data:
                    raise StreamBroken("truncated_stream", f"the {what} ends before its end "
                                       "marker and checksum")
            try:
                if gz:
                    out = d.decompress(data, _GZIP_OUT)
                    data = memoryview(d.unconsumed_tail)
                else:
                    out = d.decompress(data[:_ZSTD_IN])
                    data = data[_ZSTD_IN:]
            except errors as e:
                reason = "truncated_stream" if "runcated" in str(e) else "corrupt_stream"
                raise StreamBroken(reason, f"damaged {what}: {e}") from e
            if out:
                yield out
            if d.eof:
                self.rest = bytes(d.unused_data) + bytes(data)
                return


def _starts_member(data: bytes, codec: str) -> bool:
    """Whether ``data`` (non-empty) starts with the codec's magic number, or with a part of
    it that the file's end cut (then the member is truncated, not garbage)."""
    if codec == "gzip":
        magics = [_GZIP_MAGIC]
    else:
        magics = [_ZSTD_MAGIC, bytes([data[0]]) + _ZSTD_SKIPPABLE if 0x50 <= data[0] <= 0x5F
                  else _ZSTD_MAGIC]
    head = data[:4]
    return any(head.startswith(m) or m.startswith(head) for m in magics)


def member_lines(f: BinaryIO, codec: str) -> Iterator[bytes]:
    """Raw lines (``\\n`` kept) of a multi-member file of ``codec`` (``"gzip"``/``"zstd"``),
    each member's only after its check passed.

    A line that spans members is yielded once both are checked. On damage raises
    ``StreamBroken`` with ``withheld`` set: the unchecked member's lines were not yielded.
    """
    carry = b""  # the unfinished last line of the checked members so far
    rest = b""
    # gzip(1) and Python skip zero padding between members; zstd(1) does not.
    pad = b"\0" if codec == "gzip" else b""
    while True:
        rest = rest.lstrip(pad)
        while len(rest) < 4:
            try:
                more = f.read(_READ)
            except OSError as e:
                raise StreamBroken("unreadable_file", e) from e
            rest = (rest + more).lstrip(pad)
            if not more:
                break
        if not rest:
            if carry:
                yield carry
            return
        start = f.tell() - len(rest)
        if not _starts_member(rest, codec):
            kind = "gzip member" if codec == "gzip" else "zstd frame"
            raise StreamBroken("corrupt_stream", f"bytes at offset {start} are not a {kind} "
                               "(trailing garbage?)", withheld=True)
        member = _Member(f, rest, codec)
        parts: list[bytes] = []
        held = 0
        try:
            for out in member.chunks():
                if held <= MEMBER_BUFFER:
                    parts.append(out)
                    held += len(out)
                    if held > MEMBER_BUFFER:
                        parts = []  # too big to hold: check it first, decode it again after
        except StreamBroken as broken:
            broken.withheld = True
            raise
        rest = member.rest
        if held > MEMBER_BUFFER:
            f.seek(start)
            member = _Member(f, b"", codec)
            chunks: Iterator[bytes] = member.chunks()
        else:
            chunks = iter(parts)
        for out in chunks:
            pieces = (carry + out).split(b"\n")
            carry = pieces.pop()
            for p in pieces:
                yield p + b"\n"
        if held > MEMBER_BUFFER:
            rest = member.rest
