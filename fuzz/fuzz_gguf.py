"""Fuzz target: GGUF header and metadata parsing (``fastsynth.model.gguf_file``).

Input: the file's bytes (seeds: small Llama-like GGUF files written by ``gguf.GGUFWriter``
with metadata of every value type and F32/F16/Q8_0 tensors; see ``fuzz/make_seeds.py``).

Failure (a :class:`Finding`, or any exception escaping ``check``):

* ``GGUFFile`` raising anything but a ``FastsynthError`` (``InputError`` naming the file);
* a file both ``GGUFFile`` and the ``gguf`` package's ``GGUFReader`` accept, read
  differently: another set of keys, another value for a key, other tensor names, shapes,
  types or data offsets (the reference parser is the format's own package);
* ``config_from_gguf`` or ``GGUFFile.array`` (tensors up to 1 MiB) raising anything but a
  ``FastsynthError``, or ``array`` returning another dtype or shape than the tensor table's.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bytesource import ByteSource
from harness import Finding, instrumented, main

with instrumented():
    from fastsynth.errors import FastsynthError
    from fastsynth.model import gguf_file

import gguf

KNOWN: dict[str, str] = {}
_DIR = Path(tempfile.mkdtemp(prefix="fastsynth-fuzz-gguf-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_PSEUDO = ("GGUF.version", "GGUF.tensor_count", "GGUF.kv_count")


def _reference(path: Path) -> gguf.GGUFReader | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gguf.GGUFReader(path)
    except Exception:  # the reference refusing a file is no finding of ours
        return None


def _same_value(ours: Any, field: Any) -> bool:
    theirs = field.contents()
    if isinstance(ours, np.ndarray):
        return np.array_equal(ours, np.asarray(theirs, dtype=ours.dtype), equal_nan=True)
    if isinstance(ours, float) or isinstance(theirs, float):
        return ours == theirs or (ours != ours and theirs != theirs)
    return ours == theirs


def _compare(ours: gguf_file.GGUFFile, ref: gguf.GGUFReader) -> None:
    keys = [k for k in ref.fields if k not in _PSEUDO]
    if sorted(keys) != sorted(ours.fields):
        raise Finding("differs_from_gguf", f"keys {sorted(ours.fields)[:8]} != {sorted(keys)[:8]}")
    for k in keys:
        if not _same_value(ours.fields[k], ref.fields[k]):
            raise Finding("differs_from_gguf", f"{k}: {ours.fields[k]!r:.120} != "
                          f"{ref.fields[k].contents()!r:.120}")
    theirs = {t.name: t for t in ref.tensors}
    if sorted(theirs) != sorted(ours.tensors):
        raise Finding("differs_from_gguf", f"tensors {sorted(ours.tensors)[:5]} != {sorted(theirs)[:5]}")
    for name, t in ours.tensors.items():
        r = theirs[name]
        if (tuple(reversed([int(d) for d in r.shape])) != t.shape or int(r.tensor_type) != int(t.qtype)
                or int(r.data_offset) != t.offset or int(r.n_bytes) != t.n_bytes):
            raise Finding("differs_from_gguf", f"tensor {name}: ours {t}, gguf shape "
                          f"{list(r.shape)} type {r.tensor_type} offset {r.data_offset} "
                          f"bytes {r.n_bytes}")


def check(data: bytes) -> None:
    src = ByteSource(data)
    path = _DIR / "model.gguf"
    path.write_bytes(src.rest())
    try:
        ours = gguf_file.GGUFFile(path)
    except FastsynthError:
        return
    except Exception as e:
        raise Finding("non_fastsynth_error", f"GGUFFile: {type(e).__name__}: {e}") from e
    ref = _reference(path)
    if ref is not None:
        _compare(ours, ref)
    try:
        gguf_file.config_from_gguf(ours, str(path))
    except FastsynthError:
        pass
    except Exception as e:
        raise Finding("non_fastsynth_error", f"config_from_gguf: {type(e).__name__}: {e}") from e
    for name, t in ours.tensors.items():
        if t.n_bytes > 1 << 20:
            continue
        try:
            arr = ours.array(name)
        except FastsynthError:
            continue
        except Exception as e:
            raise Finding("non_fastsynth_error", f"array({name!r}) of {t}: "
                          f"{type(e).__name__}: {e}") from e
        if arr.dtype != np.float32 or arr.shape != t.shape:
            raise Finding("wrong_shape", f"array({name!r}): {arr.dtype} {arr.shape} for {t}")


if __name__ == "__main__":
    main(check, KNOWN)
