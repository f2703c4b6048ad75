"""Read a plain-text document (``.txt``/``.md``): one file is one record.

Id: the file's path relative to the source root (``/`` separators), e.g. ``guide/intro.md``.
The text is the whole file decoded as strict UTF-8 (a leading byte-order mark is dropped);
invalid UTF-8 gives an ``invalid_utf8`` reject and a file that cannot be read an
``unreadable_file`` reject, both with ``line`` and ``row`` set to ``None``.
"""
from __future__ import annotations

from fastsynth.corpus.rejects import ErrorPolicy
from fastsynth.corpus.sources import SourceFile


def read_text_file(sf: SourceFile, policy: ErrorPolicy) -> tuple[str, str] | None:
    """``(id, text)`` for ``sf``, or ``None`` after handing a failure to ``policy``."""
    src = sf.display
    try:
        data = sf.path.read_bytes()
    except OSError as e:
        policy.reject(src, "unreadable_file", f"cannot read: {e}")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        policy.reject(src, "invalid_utf8", f"invalid UTF-8 byte at offset {e.start}",
                      raw=data[max(0, e.start - 40):e.start + 40])
        return None
    return sf.name, text
