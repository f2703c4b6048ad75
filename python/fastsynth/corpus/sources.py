"""Resolve a ``source`` argument into an ordered list of files to read.

Accepted sources:

* a file path (``str`` or ``pathlib.Path``) whose suffix names its format:
  ``.jsonl``/``.ndjson`` (JSON lines), optionally compressed as ``.gz`` (gzip) or
  ``.zst``/``.zstd`` (Zstandard); ``.parquet``; ``.txt``/``.md`` (one document per file);
* a directory: every file with one of those suffixes below it, recursively, sorted by
  relative path (hidden files and folders, whose names start with ``.``, are skipped;
  other suffixes are ignored). A folder that cannot be listed (permissions) becomes an
  entry of kind ``"missing"`` that the reader rejects as ``unreadable_file`` (or raises
  on), so it is counted, never silently dropped. A directory (or glob) holding no file
  of a supported type at all is a ``ConfigError`` naming it: "0 documents" from a
  mistyped folder is an error, not a result;
* a glob pattern given as a ``str`` (``*``, ``?``, ``[``; ``**`` recurses) that names no
  existing path: its matches, sorted, with the same suffix rules as a directory;
* ``"builtin:python-docs"``, ``"builtin:python-stdlib"`` (its training split; also
  ``:train``) and ``"builtin:python-stdlib:eval"`` (held out) (see
  :mod:`fastsynth.corpus.builtin`);
* a list or tuple of any of these, read in order.

Each file gets a *name*: its path relative to the source root (the directory given, the
non-wildcard prefix of a glob, or the parent folder of a single file), with ``/``
separators. Ids of records without an id field are built from that name, so they do not
depend on the working directory. Files from different list entries may share a name.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastsynth.errors import ConfigError

BUILTIN_SOURCES = ("builtin:python-docs", "builtin:python-stdlib", "builtin:python-stdlib:train",
                   "builtin:python-stdlib:eval")

# suffix (lower case) -> (kind, compression); longest suffixes first so ".jsonl.gz" wins.
_SUFFIXES: dict[str, tuple[str, str | None]] = {
    ".jsonl.gz": ("jsonl", "gzip"), ".ndjson.gz": ("jsonl", "gzip"),
    ".jsonl.zst": ("jsonl", "zstd"), ".ndjson.zst": ("jsonl", "zstd"),
    ".jsonl.zstd": ("jsonl", "zstd"), ".ndjson.zstd": ("jsonl", "zstd"),
    ".jsonl": ("jsonl", None), ".ndjson": ("jsonl", None),
    ".parquet": ("parquet", None),
    ".txt": ("text", None), ".md": ("text", None),
}
_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class SourceFile:
    """One unit to read.

    ``kind`` is ``"jsonl"``, ``"parquet"``, ``"text"``, ``"builtin"`` or ``"missing"``
    (a path or pattern that names nothing; ``problem`` says why). ``compression`` is
    ``None``, ``"gzip"`` or ``"zstd"``. ``path`` is ``None`` for builtin sources.
    """

    path: Path | None
    name: str
    kind: str
    compression: str | None = None
    problem: str | None = None

    @property
    def display(self) -> str:
        """How errors and reject entries name this file."""
        return str(self.path) if self.path is not None else self.name


def classify(path: str | os.PathLike) -> tuple[str, str | None] | None:
    """``(kind, compression)`` for a file name by its suffix, or ``None`` if unsupported."""
    low = os.fspath(path).lower()
    for suffix, kc in _SUFFIXES.items():
        if low.endswith(suffix):
            return kc
    return None


def resolve(source: Any) -> list[SourceFile]:
    """Expand ``source`` (see the module docstring) into files, in reading order.

    Raises ``ConfigError`` for a source of the wrong type, an unknown ``builtin:`` name or
    a single file with an unsupported suffix. Missing paths are not raised here: they
    become ``kind="missing"`` entries so the reader applies ``on_error`` to them.
    """
    if isinstance(source, (list, tuple)):
        out: list[SourceFile] = []
        for item in source:
            out.extend(resolve(item))
        return out
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            f"source must be a path, glob, 'builtin:...' name or a list of those, "
            f"got {type(source).__name__}"
        )
    text = os.fspath(source)
    if isinstance(source, str) and text.startswith("builtin:"):
        if text not in BUILTIN_SOURCES:
            raise ConfigError(f"source {text!r}: unknown builtin corpus; known: {', '.join(BUILTIN_SOURCES)}")
        return [SourceFile(None, text, "builtin")]
    path = Path(text)
    if path.is_dir():
        return _nonempty(_walk(path, path), text)
    if path.exists() or path.is_symlink():
        kc = classify(path)
        if kc is None:
            raise ConfigError(
                f"source {text!r}: unsupported file type; expected one of {', '.join(_SUFFIXES)}"
            )
        return [SourceFile(path, path.name, kc[0], kc[1])]
    if isinstance(source, str) and any(c in text for c in _GLOB_CHARS):
        return _nonempty(_glob(text), text)
    return [SourceFile(path, path.name, "missing", problem="no such file or directory")]


def _nonempty(found: list[SourceFile], text: str) -> list[SourceFile]:
    if not found:
        raise ConfigError(f"source {text!r}: no file of a supported type "
                          f"({', '.join(_SUFFIXES)}) was found there")
    return found


def _walk(directory: Path, root: Path) -> list[SourceFile]:
    found: list[SourceFile] = []

    def unlistable(e: OSError) -> None:
        # os.walk skips a folder it cannot list unless told: record it so the reader
        # rejects (or raises on) it by name.
        where = Path(e.filename) if e.filename else directory
        found.append(SourceFile(where, _relative(where, root) if where != root else ".",
                                "missing", problem=f"cannot list directory: {e.strerror or e}"))

    for dirpath, dirnames, filenames in os.walk(directory, onerror=unlistable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in filenames:
            if fname.startswith("."):
                continue
            kc = classify(fname)
            if kc is None:
                continue
            full = Path(dirpath, fname)
            found.append(SourceFile(full, full.relative_to(root).as_posix(), kc[0], kc[1]))
    found.sort(key=lambda f: f.name)
    return found


def _glob(pattern: str) -> list[SourceFile]:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if any(c in part for c in _GLOB_CHARS):
            break
        fixed.append(part)
    root = Path(*fixed) if fixed else Path(".")
    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        return [SourceFile(Path(pattern), pattern, "missing", problem="no file matches the pattern")]
    out: list[SourceFile] = []
    seen: set[Path] = set()
    for m in matches:
        p = Path(m)
        entries = _walk(p, root) if p.is_dir() else []
        if not p.is_dir():
            kc = classify(p)
            if kc is not None and not p.name.startswith("."):
                entries = [SourceFile(p, _relative(p, root), kc[0], kc[1])]
        for e in entries:  # "**" can match a folder and the files inside it: read each once
            if e.path not in seen:
                seen.add(e.path)
                out.append(e)
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
