"""Atomic file writes: the one way fastsynth puts a finished file in place.

A file is written to a hidden temporary sibling ``.<name>.tmp-<pid>`` in the same
folder, flushed to disk, and renamed over the target (``os.replace`` is atomic on POSIX
within one file system). A reader therefore sees the old file or the whole new one,
never half of it; a process killed mid-write leaves only the temporary file, which
:func:`sweep_temps` removes on the next run. See docs/architecture.md, "Run directory".
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow is a core dependency, but keep `import fastsynth` light
    import pyarrow as pa

TMP_MARK = ".tmp-"


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary sibling a write to ``path`` goes through (``.<name>.tmp-<pid>``)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on a clean exit the file is
    synced and renamed into place, on an exception it is removed and ``path`` is untouched.
    Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_parquet(path: str | os.PathLike, table: "pa.Table") -> Path:
    """Write ``table`` as a Parquet file at ``path`` atomically; return ``path``."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def sweep_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary files (``.*.tmp-<pid>``) left under ``folder`` by killed writers;
    return what was removed. Call it only when no other writer works in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.rglob(f".*{TMP_MARK}*"):
        if p.is_file():
            p.unlink()
            gone.append(p)
    return gone
