"""Fuzz target: ``fastsynth.corpus.read`` on JSON-lines files (plain, gzip, Zstandard).

Input: a container mode, a text field name, then the file's payload bytes. Modes: plain
``.jsonl``; gzip of the payload (split into 1-2 members); gzip damaged (a byte changed or
the file cut short); the same two for Zstandard (1-2 frames with content checksums); the
raw bytes as a ``.jsonl.gz``.

Failure (a :class:`Finding`, or any exception escaping ``check``):

* with ``on_error="skip"``, anything raised at all;
* accounting: ``stats.read != yielded + rejected``, a reject entry missing from the sink
  or with a reason outside ``REASONS``; for plain files, ``read`` differs from the number
  of non-blank lines;
* a lost or invented record: the yielded ``(id, text)`` sequence differs from the one the
  documented rules (module docstring of ``fastsynth.corpus.jsonl``) give for the payload;
  for damaged files it must be a prefix of it (no record the reader cannot vouch for);
* a yielded record that a JSON writer cannot write back (a string that is not valid
  UTF-8, a non-finite number);
* with ``on_error="raise"``, an exception that is not a ``FastsynthError``, or records that
  differ from skip mode's when nothing was rejected.
"""
from __future__ import annotations

import atexit
import gzip
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import zstandard

from bytesource import ByteSource
from harness import Finding, instrumented, main
from shared_checks import raise_mode_is_clean, read_accounted

with instrumented():  # the modules the reader runs, so atheris sees their branches
    import fastsynth as fs
    import fastsynth.corpus.compressed
    import fastsynth.corpus.jsonl
    import fastsynth.corpus.reader
    import fastsynth.corpus.rejects
    import fastsynth.corpus.sources  # noqa: F401

KNOWN: dict[str, str] = {
}
_ZSTD = zstandard.ZstdCompressor(write_checksum=True)
_DIR = Path(tempfile.mkdtemp(prefix="fastsynth-fuzz-jsonl-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def reference(payload: bytes, text_field: str, name: str) -> tuple[list[tuple[str, str]], int, int]:
    """``([(id, text)] of good lines, non-blank lines, blank lines)`` by the documented rules."""
    good: list[tuple[str, str]] = []
    lines = payload.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    counted = blank = 0
    for k, raw in enumerate(lines, start=1):
        if k == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            blank += 1
            continue
        counted += 1
        try:
            obj = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (ValueError, RecursionError):
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
            continue
        ident = obj.get("id")
        ident = f"{name}:{k}" if ident is None else str(ident)
        try:
            ident.encode("utf-8")
            json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError, RecursionError):
            continue
        good.append((ident, obj[text_field]))
    return good, counted, blank


def _writable(rec: dict[str, Any]) -> str | None:
    try:
        json.dumps(rec, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def _file(src: ByteSource) -> tuple[Path, bytes, str]:
    """Write the fuzzed file; return (path, payload, damage) with damage in
    ``"", "damaged", "unknown"`` (unknown: the payload is not known, raw bytes)."""
    mode = src.int(0, 5)
    if mode == 5:
        path = _DIR / "raw.jsonl.gz"
        path.write_bytes(src.rest())
        return path, b"", "unknown"
    cut = src.int(0, 0xFFFF)
    flip = src.int(0, 0xFFFF)
    payload = src.rest()
    if mode == 0:
        path, blob = _DIR / "in.jsonl", payload
    elif mode in (1, 2):
        at = cut % (len(payload) + 1)
        members = [payload[:at], payload[at:]] if cut & 1 else [payload]
        path, blob = _DIR / "in.jsonl.gz", b"".join(gzip.compress(m, mtime=0) for m in members)
    else:
        at = cut % (len(payload) + 1)
        members = [payload[:at], payload[at:]] if cut & 1 else [payload]
        path, blob = _DIR / "in.jsonl.zst", b"".join(_ZSTD.compress(m) for m in members)
    damage = ""
    if mode in (2, 4):
        damage = "damaged"
        # Every member carries a checksum (gzip: CRC-32; zstd: XXH64, written here), so a
        # changed byte is detected and no changed record may come out.
        if flip & 1 or not blob:
            blob = blob[:cut % (len(blob) + 1)]
        else:
            i = (flip >> 1) % len(blob)
            blob = blob[:i] + bytes([blob[i] ^ (1 + (flip >> 9) % 255)]) + blob[i + 1:]
    path.write_bytes(blob)
    return path, payload, damage


def check(data: bytes) -> None:
    src = ByteSource(data)
    text_field = src.choice(["text", "text", "body"])
    path, payload, damage = _file(src)
    records, stats, rejects = read_accounted(
        lambda sink: fs.corpus.read(path, text_field, on_error="skip", rejects=sink))
    if stats.yielded != len(records):
        raise Finding("accounting", f"{stats.as_dict()} with {len(records)} records")
    for r in rejects:
        if r["reason"] not in fs.corpus.REASONS:
            raise Finding("unknown_reason", f"{r['reason']!r}")
    for rec in records:
        why = _writable(rec)
        if why is not None:
            # A number past float range (1e400) parses to inf: the docstring promises
            # that no yielded record carries a value JSON cannot hold.
            kind = "number_overflows_to_inf" if "float" in why else "unwritable_record"
            raise Finding(kind, f"{why}: {rec!r:.300}")
        if not isinstance(rec["id"], str) or not isinstance(rec["text"], str):
            raise Finding("wrong_record_types", f"{rec!r:.300}")
    got = [(r["id"], r["text"]) for r in records]
    if damage != "unknown":
        want, counted, blank = reference(payload, text_field, path.name)
        if damage == "":
            if got != want:
                raise Finding("lost_or_invented_record", f"yielded {got!r:.400} expected {want!r:.400}")
            if stats.read != counted or stats.blank_lines != blank:
                raise Finding("accounting", f"{stats.as_dict()}: {counted} non-blank, {blank} blank lines")
        elif got != want[:len(got)]:
            raise Finding("unvouched_record", f"damaged file yielded {got!r:.400}, "
                          f"not a prefix of {want!r:.400}")
    strict = raise_mode_is_clean(path, text_field=text_field)
    if strict is None:
        if not rejects:
            raise Finding("raise_mode_differs", "raise mode raised where skip mode rejected nothing")
        return
    if rejects or strict != records:
        raise Finding("raise_mode_differs", f"{len(rejects)} rejects in skip mode; raise mode "
                      f"returned {len(strict)} records against {len(records)}")


if __name__ == "__main__":
    main(check, KNOWN)
