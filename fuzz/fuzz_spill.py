"""Fuzz target: the dedup signature spill reader (``fastsynth.dedup.spill``).

Input: a file's bytes (seeds: SIGS, BAND and SETS files written by the writer). The
reader is called with the parameters the header states (so that the parameter checks
pass and the payload is read) or, for one input in four, with other parameters.

Failure (a :class:`Finding`, or any exception escaping ``check``):

* an exception other than ``InputError`` (a ``FastsynthError``) for any file;
* a file accepted although its size is not the header's size plus the payload the header
  announces (a half-written file read as valid, or trailing bytes ignored);
* arrays of the wrong dtype or shape for the header, or SETS offsets that do not start at
  0, decrease, or end past the values;
* a file accepted with parameters other than those it was written with.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bytesource import ByteSource
from harness import Finding, instrumented, main

with instrumented():
    from fastsynth.dedup import spill
    from fastsynth.errors import InputError

KNOWN: dict[str, str] = {
}
_DIR = Path(tempfile.mkdtemp(prefix="fastsynth-fuzz-spill-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_READERS = {b"SIGS": spill.read_signatures, b"BAND": spill.read_bands, b"SETS": spill.read_sets}


def _payload_size(h: dict) -> int:
    if h["kind"] == b"SIGS":
        return 4 * h["count"] * h["num_perm"]
    if h["kind"] == b"BAND":
        return 16 * h["count"]
    return 8 * h["extra"] + 8 * (h["count"] + 1)


def check(data: bytes) -> None:
    src = ByteSource(data)
    mismatch = src.int(0, 3) == 0
    path = _DIR / "part.fsdd"
    blob = src.rest()
    path.write_bytes(blob)
    try:
        h = spill.read_header(path)
    except InputError:
        return
    except Exception as e:
        raise Finding("non_input_error", f"read_header: {type(e).__name__}: {e}") from e
    if h["kind"] not in _READERS or h["scheme"] not in ("fast", "datasketch") \
            or h["shingle"] not in ("word", "char"):
        kind = h["kind"] if h["kind"] in _READERS else b"SIGS"
        params = spill.SpillParams(num_perm=1, seed=0)
    else:
        kind = h["kind"]
        params = spill.SpillParams(num_perm=h["num_perm"], seed=h["seed"], scheme=h["scheme"],
                                   ngram=h["ngram"], shingle=h["shingle"], bands=h["bands"],
                                   rows=h["rows"])
        if mismatch:
            params = spill.SpillParams(num_perm=h["num_perm"] + 1, seed=h["seed"] ^ 1,
                                       scheme=h["scheme"], ngram=h["ngram"] + 1,
                                       shingle=h["shingle"], bands=h["bands"] + 1,
                                       rows=h["rows"])
    try:
        out = _READERS[kind](path, params)
    except InputError:
        return
    except Exception as e:
        raise Finding("non_input_error", f"{kind.decode()}: {type(e).__name__}: {e}") from e
    if h["kind"] != kind or h["version"] != spill.VERSION:
        raise Finding("wrong_file_accepted", f"{h} read as {kind!r}")
    if mismatch:
        raise Finding("wrong_parameters_accepted", f"{h} read with {params}")
    expected = spill.HEADER.size + _payload_size(h)
    if len(blob) != expected:
        raise Finding("size_unchecked", f"{len(blob)}-byte file accepted; its header "
                      f"announces {expected} bytes ({h})")
    if kind == b"SIGS":
        if out.dtype != np.uint32 or out.shape != (h["count"], h["num_perm"]):
            raise Finding("wrong_shape", f"{out.dtype} {out.shape} for {h}")
    elif kind == b"BAND":
        if out.dtype != spill.BAND_DTYPE or out.shape != (h["count"],):
            raise Finding("wrong_shape", f"{out.dtype} {out.shape} for {h}")
    else:
        values, offsets = out
        if values.shape != (h["extra"],) or offsets.shape != (h["count"] + 1,):
            raise Finding("wrong_shape", f"{values.shape} {offsets.shape} for {h}")
        o = np.asarray(offsets)
        if o[0] != 0 or np.any(np.diff(o) < 0) or o[-1] != h["extra"]:
            raise Finding("bad_offsets_accepted", f"offsets {o[:8].tolist()}... for {h}")


if __name__ == "__main__":
    main(check, KNOWN)
