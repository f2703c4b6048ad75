"""Fuzz target: ``fastsynth.corpus.read`` on plain-text documents (``.txt``/``.md``).

Input: the suffix, then the file's bytes.

Failure (a :class:`Finding`, or any exception escaping ``check``):

* with ``on_error="skip"``, anything raised; accounting off (``read != yielded +
  rejected``, or not exactly one unit read for the one file);
* a lost or invented record: valid UTF-8 (a leading byte-order mark dropped) must give
  exactly one record whose text is the decoded file and whose id is the file name;
  anything else exactly one ``invalid_utf8`` reject;
* with ``on_error="raise"``, an exception that is not a ``FastsynthError``.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from bytesource import ByteSource
from harness import Finding, instrumented, main
from shared_checks import raise_mode_is_clean, read_accounted

with instrumented():  # the modules the reader runs, so atheris sees their branches
    import fastsynth as fs
    import fastsynth.corpus.reader
    import fastsynth.corpus.sources
    import fastsynth.corpus.textfile  # noqa: F401

KNOWN: dict[str, str] = {}
_DIR = Path(tempfile.mkdtemp(prefix="fastsynth-fuzz-text-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


def check(data: bytes) -> None:
    src = ByteSource(data)
    path = _DIR / ("doc" + src.choice([".txt", ".md"]))
    payload = src.rest()
    path.write_bytes(payload)
    try:
        want = payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        want = None
    records, stats, rejects = read_accounted(
        lambda sink: fs.corpus.read(path, on_error="skip", rejects=sink))
    if stats.read != 1:
        raise Finding("accounting", f"{stats.as_dict()}: one file is one unit")
    if want is None:
        if records or [r["reason"] for r in rejects] != ["invalid_utf8"]:
            raise Finding("invalid_utf8_accepted", f"records {records!r:.200}, rejects {rejects!r:.200}")
    elif records != [{"id": path.name, "text": want}]:
        raise Finding("lost_or_changed_record", f"{records!r:.300} != text {want!r:.300}")
    raise_mode_is_clean(path)


if __name__ == "__main__":
    main(check, KNOWN)
