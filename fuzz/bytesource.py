"""Turn a fuzzer's byte string into structured arguments, deterministically.

The targets read their arguments (counts, levels, texts, file bytes) from the input with
:class:`ByteSource` instead of atheris' ``FuzzedDataProvider``, so that the same bytes
decode to the same call under atheris, under pytest (seed and regression replay) and
under the hypothesis fallback, with no atheris import outside the fuzzer. Once the input
runs out every read returns its smallest value, so every byte string is a valid input.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

# Characters the text rules treat specially: whitespace of several kinds, punctuation
# deleted by the shingle normaliser, terminal marks, bullets and ellipses (heuristics),
# case-folded scripts (Latin-1, Greek final sigma, Cyrillic, fullwidth), CJK, emoji,
# zero-width and combining characters, NUL and other controls.
ALPHABET = (
    list("abcXYZ019_ #-*.,;:!?'\"()[]{}") + ["...", "\u2026", " ", "\t", "\n", "\n\n", "\r",
    "\x00", "\x0b", "\x1c", "\x1f", "\x7f", "\u00a0", "\u3000", "\u2028", "\u2029", "\u200b",
    "\u00c9", "\u00e9", "\u00df", "\u03a3", "\u03c2", "\u0416", "\u0531", "\uff21", "\uff01",
    "\u3002", "\u65e5\u672c", "\U0001f600", "\u0301", "\u2022", "\u2013", "\u2014", "\u201d",
    "\u2019", "\ufffd", "\ufeff", "the", "and", "with", "The", "cat", "word ", "\u1e9e",
    "\u0130", "\u212a"]
)


class ByteSource:
    """Reads values from the front of ``data``; never raises, whatever the bytes."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int) -> bytes:
        b = self.data[self.pos:self.pos + n]
        self.pos += len(b)
        return b

    def int(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]`` (inclusive) from as few bytes as the range needs."""
        span = hi - lo
        if span <= 0:
            return lo
        raw = self._take((span.bit_length() + 7) // 8)
        return lo + int.from_bytes(raw, "little") % (span + 1) if raw else lo

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def choice(self, options: Sequence[T]) -> T:
        return options[self.int(0, len(options) - 1)]

    def bytes(self, max_len: int) -> bytes:
        return self._take(self.int(0, max_len))

    def rest(self) -> bytes:
        return self._take(self.remaining())

    def text(self, max_len: int) -> str:
        """A str of up to ``max_len`` pieces, in one of three encodings of the bytes:
        the UTF-8 decoding (invalid bytes replaced), pieces drawn from :data:`ALPHABET`,
        or UTF-16 code units (so lone surrogates occur)."""
        mode = self.int(0, 2)
        raw = self.bytes(max_len)
        if mode == 0:
            return raw.decode("utf-8", errors="replace")
        if mode == 1:
            return "".join(ALPHABET[b % len(ALPHABET)] for b in raw)
        if len(raw) % 2:
            raw = raw[:-1]
        return raw.decode("utf-16-le", errors="surrogatepass")

    def text_or_bytes(self, max_len: int) -> str | bytes:
        """A :meth:`text` or raw bytes (which may be invalid UTF-8)."""
        return self.bytes(max_len) if self.int(0, 3) == 0 else self.text(max_len)


class ByteSink:
    """The inverse of :class:`ByteSource`: writes values so that ``ByteSource`` reads them
    back in the same order (used to build seed inputs, see ``fuzz/make_seeds.py``)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)

    def int(self, value: int, lo: int, hi: int) -> ByteSink:
        if not lo <= value <= hi:
            raise ValueError(f"{value} is outside [{lo}, {hi}]")
        span = hi - lo
        if span > 0:
            self.parts.append((value - lo).to_bytes((span.bit_length() + 7) // 8, "little"))
        return self

    def bool(self, value: bool) -> ByteSink:
        return self.int(int(value), 0, 1)

    def choice(self, value: T, options: Sequence[T]) -> ByteSink:
        return self.int(list(options).index(value), 0, len(options) - 1)

    def bytes(self, value: bytes, max_len: int) -> ByteSink:
        self.int(len(value), 0, max_len)
        self.parts.append(value)
        return self

    def rest(self, value: bytes) -> ByteSink:
        self.parts.append(value)
        return self

    def text(self, value: str, max_len: int) -> ByteSink:
        """As :meth:`ByteSource.text` in its UTF-8 mode (or UTF-16 for lone surrogates)."""
        raw = value.encode("utf-8", errors="surrogatepass")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return self.int(2, 0, 2).bytes(value.encode("utf-16-le", errors="surrogatepass"), max_len)
        return self.int(0, 0, 2).bytes(raw, max_len)

    def text_or_bytes(self, value: str | bytes, max_len: int) -> ByteSink:
        if isinstance(value, bytes):
            return self.int(0, 0, 3).bytes(value, max_len)
        return self.int(1, 0, 3).text(value, max_len)
