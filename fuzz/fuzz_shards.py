"""Fuzz target: the token-shard reader (``fastsynth.train.shards.Shard``).

Input: whether to repair the index checksum after the damage (so that the fuzzer gets
past the CRC-32 into the checks behind it, as a buggy writer would), the ``.idx`` bytes,
then the ``.bin`` bytes (seeds: shards written by ``ShardWriter``).

Failure (a :class:`Finding`, or any exception escaping ``check``):

* opening, ``verify()``, ``doc(i)`` or ``record_id(i)`` raising anything but a
  ``FastsynthError`` (``InputError`` naming the file);
* an opened shard whose offsets do not rise from 0 to ``n_tokens``, whose token array
  is not ``n_tokens`` long, or whose documents do not have the indexed lengths;
* ``verify()`` passing on tokens at or above the vocabulary size, or with a ``.bin``
  whose CRC-32 is not the header's;
* ``record_id(i)`` returning something other than a ``str``.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np

from bytesource import ByteSource
from harness import Finding, instrumented, main

with instrumented():
    from fastsynth.errors import FastsynthError
    from fastsynth.train import shards

KNOWN: dict[str, str] = {}
_DIR = Path(tempfile.mkdtemp(prefix="fastsynth-fuzz-shards-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_CRC_AT = 52  # offset of the index CRC-32 in the header (see shards._HEADER)


def _repair_crc(idx: bytes) -> bytes:
    if len(idx) < shards.HEADER_BYTES:
        return idx
    head = idx[:shards.HEADER_BYTES]
    crc = shards.index_crc32(head, idx[shards.HEADER_BYTES:], head[56:88])
    return idx[:_CRC_AT] + crc.to_bytes(4, "little") + idx[_CRC_AT + 4:]


def _guard(what: str, fn, kind: str = "non_fastsynth_error"):
    try:
        return fn()
    except FastsynthError:
        raise
    except Exception as e:
        raise Finding(kind, f"{what}: {type(e).__name__}: {e}") from e


def check(data: bytes) -> None:
    src = ByteSource(data)
    repair = src.int(0, 3) != 0
    idx = src.bytes(4096)
    if repair:
        idx = _repair_crc(idx)
    (_DIR / "s.idx").write_bytes(idx)
    (_DIR / "s.bin").write_bytes(src.rest())
    try:
        shard = _guard("Shard()", lambda: shards.Shard(_DIR / "s"))
    except FastsynthError:
        return
    off = np.asarray(shard.offsets)
    if off.shape != (shard.n_docs + 1,) or off[0] != 0 or off[-1] != shard.n_tokens \
            or np.any(np.diff(off) < 0):
        raise Finding("bad_offsets_accepted", f"offsets {off[:8].tolist()} for {shard.header}")
    if len(shard.tokens) != shard.n_tokens:
        raise Finding("wrong_token_count", f"{len(shard.tokens)} tokens for {shard.header}")
    for i in range(min(shard.n_docs, 64)):
        if len(shard.doc(i)) != off[i + 1] - off[i]:
            raise Finding("wrong_document", f"doc({i}) has {len(shard.doc(i))} tokens")
        try:
            # the id byte offsets and the ids' UTF-8 are not checked when the index opens
            rid = _guard(f"record_id({i})", lambda: shard.record_id(i), "record_id_unchecked")
        except FastsynthError:
            continue
        if not isinstance(rid, str):
            raise Finding("wrong_record_id", f"record_id({i}) = {rid!r}")
    try:
        _guard("verify()", shard.verify)
    except FastsynthError:
        return
    toks = np.asarray(shard.tokens)
    if toks.size and int(toks.max()) >= shard.header.vocab_size:
        raise Finding("token_outside_vocab_verified", f"max {int(toks.max())} >= "
                      f"{shard.header.vocab_size}")
    crc = zlib.crc32(memoryview(np.ascontiguousarray(toks)).cast("B")) if toks.size else 0
    if crc != shard.header.bin_crc32:
        raise Finding("bad_checksum_verified", f"{crc:08x} != {shard.header.bin_crc32:08x}")


if __name__ == "__main__":
    main(check, KNOWN)
