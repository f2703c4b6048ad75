"""Fuzz target: ``fastsynth.corpus.read`` and ``read_batches`` on Parquet files.

Input: a table built from the bytes — up to 9 rows; a text column of a fuzzed type
(string, large_string, dictionary, binary, int64, or absent) whose strings may hold
invalid UTF-8 (written through a binary view, which Parquet does not check); an optional
id column (int64 or string, with nulls); an extra column (string, list of strings, float
with NaN, or int) — written with a fuzzed row-group size, then optionally damaged (a byte
changed or the file cut short).

Failure (a :class:`Finding`, or any exception escaping ``check``):

* with ``on_error="skip"``, anything raised; accounting off (``read != yielded +
  rejected``; an intact file must count every row);
* a lost or invented record in an intact file: the yielded ``(id, text)`` sequence must
  be the rows whose text is a non-null string and whose strings (every column, for
  ``read``) are valid UTF-8, with the documented ids; ``read_batches`` must yield the same
  rows as ``read`` bar the extra-column check;
* a yielded string that is not valid UTF-8 (damaged files included);
* with ``on_error="raise"``, an exception that is not a ``FastsynthError``.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bytesource import ByteSource
from harness import Finding, instrumented, main
from shared_checks import raise_mode_is_clean, read_accounted

with instrumented():  # the modules the reader runs, so atheris sees their branches
    import fastsynth as fs
    import fastsynth.corpus.parquet
    import fastsynth.corpus.reader
    import fastsynth.corpus.rejects
    import fastsynth.corpus.sources  # noqa: F401

KNOWN: dict[str, str] = {}
_DIR = Path(tempfile.mkdtemp(prefix="fastsynth-fuzz-parquet-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


def _utf8_ok(v: object) -> bool:
    if isinstance(v, bytes):
        try:
            v.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    if isinstance(v, list):
        return all(_utf8_ok(x) for x in v)
    return True


def _strings(src: ByteSource, n: int, null_odds: int) -> list[bytes | None]:
    return [None if src.int(0, null_odds) == 0 else src.bytes(24) for _ in range(n)]


def _string_array(values: list[bytes | None], kind: pa.DataType) -> pa.Array:
    # Through binary, then a view: Parquet stores the bytes as they are, valid or not.
    big = kind == pa.large_string()
    arr = pa.array(values, pa.large_binary() if big else pa.binary())
    return arr.view(kind)


def _table(src: ByteSource) -> tuple[pa.Table, list[tuple[str | None, bytes | None, list]], str]:
    n = src.int(0, 9)
    cols: dict[str, pa.Array] = {}
    text_kind = src.choice(["string", "large_string", "dictionary", "binary", "int64", "absent"])
    texts = _strings(src, n, 5)
    if text_kind in ("string", "large_string"):
        cols["text"] = _string_array(texts, pa.string() if text_kind == "string" else pa.large_string())
    elif text_kind == "dictionary":
        cols["text"] = _string_array(texts, pa.string()).dictionary_encode()
    elif text_kind == "binary":
        cols["text"] = pa.array(texts, pa.binary())
    elif text_kind == "int64":
        cols["text"] = pa.array([src.int(-5, 5) for _ in range(n)], pa.int64())
    id_kind = src.choice(["int64", "string", "absent"])
    ids: list = [None] * n
    if id_kind == "int64":
        ids = [None if src.int(0, 3) == 0 else src.int(-99, 99) for _ in range(n)]
        cols["id"] = pa.array(ids, pa.int64())
    elif id_kind == "string":
        ids = _strings(src, n, 3)
        cols["id"] = _string_array(ids, pa.string())
    extra_kind = src.choice(["string", "list", "float", "int", "absent"])
    extra: list = [None] * n
    if extra_kind == "string":
        extra = _strings(src, n, 3)
        cols["meta"] = _string_array(extra, pa.string())
    elif extra_kind == "list":
        extra = [[src.bytes(8) for _ in range(src.int(0, 2))] for _ in range(n)]
        cols["meta"] = pa.array(extra, pa.list_(pa.binary())).cast(pa.list_(pa.binary())).view(
            pa.list_(pa.string())) if n else pa.array([], pa.list_(pa.string()))
    elif extra_kind == "float":
        cols["meta"] = pa.array([src.choice([0.5, float("nan"), float("inf"), None]) for _ in range(n)])
    elif extra_kind == "int":
        cols["meta"] = pa.array([src.int(0, 9) for _ in range(n)], pa.int64())
    table = pa.table(cols) if cols else pa.table({"other": pa.array([0] * n, pa.int64())})
    good_text = text_kind in ("string", "large_string", "dictionary")
    rows = [(ids[i], texts[i] if good_text else None, [extra[i]]) for i in range(n)]
    return table, rows, text_kind


def _expected(rows, name: str, all_columns: bool) -> list[tuple[int, str, str]]:
    """``(row, id, text)`` of the rows the documented rules yield."""
    want = []
    for i, (ident, text, extra) in enumerate(rows):
        if text is None or not _utf8_ok(text) or (ident is not None and not _utf8_ok(ident)):
            continue
        if all_columns and not all(_utf8_ok(x) for x in extra):
            continue
        if ident is None:
            ident = f"{name}:{i}"
        elif isinstance(ident, bytes):
            ident = ident.decode("utf-8")
        else:
            ident = str(ident)
        want.append((i, ident, text.decode("utf-8")))
    return want


def check(data: bytes) -> None:
    src = ByteSource(data)
    table, rows, text_kind = _table(src)
    path = _DIR / "in.parquet"
    pq.write_table(table, path, row_group_size=src.int(1, 4))
    damaged = src.int(0, 3) == 0
    if damaged:
        blob = path.read_bytes()
        at = src.int(0, len(blob) - 1)
        if src.bool():
            blob = blob[:at]
        else:
            blob = blob[:at] + bytes([blob[at] ^ src.int(1, 255)]) + blob[at + 1:]
        path.write_bytes(blob)
    batch_size = src.int(1, 5)
    records, stats, rejects = read_accounted(
        lambda sink: fs.corpus.read(path, on_error="skip", rejects=sink))
    batches, bstats, batches_rejects = read_accounted(
        lambda sink: fs.corpus.read_batches(path, batch_size=batch_size, on_error="skip",
                                            rejects=sink))
    for st in (stats, bstats):
        if not damaged and st.read != len(rows):
            raise Finding("accounting", f"{st.as_dict()} for {len(rows)} rows")
    got = [(r["id"], r["text"]) for r in records]
    got_batches = [(i, t) for b in batches for i, t in zip(b.column("id").to_pylist(),
                                                            b.column("text").to_pylist())]
    for ident, text in got + got_batches:
        if not isinstance(ident, str) or not isinstance(text, str):
            raise Finding("wrong_record_types", f"{ident!r:.100} {text!r:.100}")
        try:
            ident.encode("utf-8")
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise Finding("invalid_utf8_yielded", f"{e}") from e
    if not damaged:
        for what, have, all_columns in (("read", got, True), ("read_batches", got_batches, False)):
            rows_want = _expected(rows, path.name, all_columns=all_columns)
            want = [(i, t) for _, i, t in rows_want]
            if have != want:
                # Valid rows rejected as invalid_utf8 because another row of the batch
                # holds an invalid string in a dictionary or list column.
                sink = rejects if what == "read" else batches_rejects
                why = {r["row"]: r["reason"] for r in sink}
                missing = [k for k, i, t in rows_want if (i, t) not in have]
                kind = ("valid_row_rejected_as_invalid_utf8" if set(have) < set(want)
                        and all(why.get(k) == "invalid_utf8" for k in missing)
                        else "lost_or_invented_record")
                raise Finding(kind, f"{what} yielded {have!r:.300}, expected {want!r:.300}")
    raise_mode_is_clean(path)


if __name__ == "__main__":
    main(check, KNOWN)
