"""Token shards: documents' token ids on disk, memory-mapped for training.

The format is specified in docs/token-shards.md. In short, a *shard* is two files:

* ``NAME.bin`` — every document's tokens back to back, little-endian ``uint16`` when the
  vocabulary has at most 65,536 ids, else ``uint32``;
* ``NAME.idx`` — a 96-byte header (magic ``FSTOKIDX``, version, token width, vocabulary
  size, document and token counts, the CRC-32 of the ``.bin``, the CRC-32 of the rest of
  the ``.idx``, the tokenizer's SHA-256 fingerprint), then the documents' token offsets
  (int64, ``n_docs + 1``), the byte offsets of their record ids (int64, ``n_docs + 1``)
  and the ids themselves (UTF-8, back to back).

A *shard set* is a folder of shards plus ``manifest.json`` (format, version, tokenizer
fingerprint, separator, the shard list with counts and checksums, how the set was made)
and ``tokenizer.json``. Files are written under a temporary name and renamed into place;
the manifest is written last, so a folder without one is not a shard set. (Renames make
the set safe against a crashed or killed process; files are not fsync'ed — measured here,
two fsyncs per shard made tokenizing small shards 4x slower — so a power cut may lose
the last shards written.)
"""
from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastsynth.atomic import atomic_write_text
from fastsynth.errors import ConfigError, InputError

MAGIC = b"FSTOKIDX"
VERSION = 1
FORMAT = "fastsynth-token-shards"
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
# magic, version, token_bytes, vocab_size, flags, n_docs, n_tokens, id_bytes,
# bin_crc32, idx_crc32, fingerprint (32 raw bytes), 8 reserved bytes: 96 bytes
_HEADER = struct.Struct("<8sIIIIQQQII32s8x")
HEADER_BYTES = _HEADER.size
#: Default shard size bound: 2**28 tokens (512 MiB of uint16) keeps one shard's index
#: (16 bytes per document) and its writer's buffers small next to the machine's memory.
DEFAULT_SHARD_TOKENS = 1 << 28


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` for vocabularies of at most 65,536 ids, else ``uint32`` (little-endian)."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


@dataclass(frozen=True)
class ShardHeader:
    version: int
    token_bytes: int
    vocab_size: int
    n_docs: int
    n_tokens: int
    id_bytes: int
    bin_crc32: int
    idx_crc32: int
    fingerprint: str  # hex


class Shard:
    """One memory-mapped shard (``path`` without suffix, or with ``.bin``/``.idx``).

    ``tokens``: 1-D read-only ``uint16``/``uint32`` memmap of all tokens; ``offsets``:
    int64 ``(n_docs + 1,)`` token offsets; ``lengths``: int64 ``(n_docs,)``;
    ``doc(i)``: the tokens of document ``i``; ``record_id(i)``: its source record id.
    Opening checks the header, the sizes of both files and the index checksum;
    :meth:`verify` also reads the ``.bin`` (checksum, ids below the vocabulary size).
    """

    def __init__(self, path: str | os.PathLike):
        p = str(path)
        for suffix in (".bin", ".idx"):
            if p.endswith(suffix):
                p = p[: -len(suffix)]
        self.prefix = p
        self.idx_path, self.bin_path = p + ".idx", p + ".bin"
        self.header, self.offsets, self._id_offsets, self._ids = _read_idx(self.idx_path)
        h = self.header
        if not os.path.isfile(self.bin_path):
            raise InputError("the .bin file of this shard is missing", source=self.bin_path)
        size = os.path.getsize(self.bin_path)
        want = h.n_tokens * h.token_bytes
        if size != want:
            what = "truncated" if size < want else "longer than its index says"
            raise InputError(f"{what}: {size} bytes, the .idx says {h.n_tokens} tokens x "
                             f"{h.token_bytes} bytes = {want}", source=self.bin_path)
        dt = np.dtype("<u2") if h.token_bytes == 2 else np.dtype("<u4")
        self.tokens = (np.memmap(self.bin_path, dtype=dt, mode="r") if h.n_tokens
                       else np.zeros(0, dtype=dt))

    @property
    def n_docs(self) -> int:
        return self.header.n_docs

    @property
    def n_tokens(self) -> int:
        return self.header.n_tokens

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def record_id(self, i: int) -> str:
        a, b = int(self._id_offsets[i]), int(self._id_offsets[i + 1])
        return bytes(self._ids[a:b]).decode("utf-8")

    def verify(self) -> None:
        """Read the whole ``.bin``: CRC-32 equal to the header's, every id < vocab size."""
        crc = 0
        step = 1 << 24
        top = 0
        for a in range(0, self.n_tokens, step):
            chunk = self.tokens[a:a + step]
            crc = zlib.crc32(memoryview(np.ascontiguousarray(chunk)).cast("B"), crc)
            top = max(top, int(chunk.max()))
        if crc != self.header.bin_crc32:
            raise InputError(f"checksum mismatch: the .bin has CRC-32 {crc:08x}, its .idx says "
                             f"{self.header.bin_crc32:08x} (file changed or damaged)", source=self.bin_path)
        if self.n_tokens and top >= self.header.vocab_size:
            raise InputError(f"token id {top} is outside the vocabulary (size "
                             f"{self.header.vocab_size})", source=self.bin_path)


def index_crc32(header: bytes, body: Any, fingerprint: bytes) -> int:
    """CRC-32 protecting an ``.idx``: the header's first 52 bytes (everything before this
    checksum), the fingerprint, then the body."""
    return zlib.crc32(body, zlib.crc32(fingerprint, zlib.crc32(header[:52])))


def _read_idx(path: str) -> tuple[ShardHeader, np.ndarray, np.ndarray, np.ndarray]:
    if not os.path.isfile(path):
        raise InputError("shard index (.idx) not found", source=path)
    size = os.path.getsize(path)
    if size < HEADER_BYTES:
        raise InputError(f"truncated: {size} bytes, shorter than the {HEADER_BYTES}-byte header",
                         source=path)
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    (magic, version, token_bytes, vocab, _flags, n_docs, n_tokens, id_bytes, bin_crc, idx_crc,
     fp) = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise InputError(f"not a fastsynth shard index (magic {magic!r}, expected {MAGIC!r})",
                         source=path)
    if version != VERSION:
        raise InputError(f"unsupported shard version {version} (this fastsynth reads version "
                         f"{VERSION})", source=path)
    if token_bytes not in (2, 4) or token_dtype(vocab).itemsize != token_bytes:
        raise InputError(f"token width {token_bytes} bytes does not fit vocabulary size {vocab} "
                         "(uint16 up to 65,536 ids, else uint32)", source=path)
    want = HEADER_BYTES + 16 * (n_docs + 1) + id_bytes
    if size != want:
        raise InputError(f"{'truncated' if size < want else 'too long'}: {size} bytes, the header "
                         f"says {want} ({n_docs} documents)", source=path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    body = mm[HEADER_BYTES:]
    if index_crc32(raw, memoryview(body), fp) != idx_crc:
        raise InputError("index checksum mismatch (file damaged)", source=path)
    offsets = np.frombuffer(mm, dtype="<i8", count=n_docs + 1, offset=HEADER_BYTES)
    id_off = np.frombuffer(mm, dtype="<i8", count=n_docs + 1, offset=HEADER_BYTES + 8 * (n_docs + 1))
    ids = mm[HEADER_BYTES + 16 * (n_docs + 1):]
    if offsets[0] != 0 or offsets[-1] != n_tokens or np.any(np.diff(offsets) < 0):
        raise InputError("document offsets must rise from 0 to the token count", source=path)
    _check_record_ids(id_off, ids, id_bytes, path)
    header = ShardHeader(version, token_bytes, vocab, n_docs, n_tokens, id_bytes, bin_crc, idx_crc,
                         fp.hex())
    return header, offsets, id_off, ids


def _check_record_ids(id_off: np.ndarray, ids: np.ndarray, id_bytes: int, path: str) -> None:
    """Refuse record ids that :meth:`Shard.record_id` could not return: byte offsets that
    do not rise from 0 to ``id_bytes``, or an id that is not UTF-8. The whole block is
    decoded once and every cut must fall on a character boundary (no continuation byte
    0b10xxxxxx at an id's start), which together make each id valid UTF-8 on its own."""
    if id_off[0] != 0 or id_off[-1] != id_bytes or np.any(np.diff(id_off) < 0):
        raise InputError("record id offsets must rise from 0 to the id byte count "
                         f"({id_bytes})", source=path)
    try:
        bytes(ids).decode("utf-8")
    except UnicodeDecodeError as e:
        doc = int(np.searchsorted(id_off, e.start, side="right")) - 1
        raise InputError(f"the record id of document {doc} is not valid UTF-8 ({e.reason} at "
                         f"byte {e.start} of the ids)", source=path) from None
    starts = id_off[:-1][id_off[:-1] < id_bytes]
    inside = np.flatnonzero((ids[starts] & 0xC0) == 0x80)
    if inside.size:
        at = int(starts[inside[0]])
        doc = int(np.searchsorted(id_off, at, side="left")) - 1
        raise InputError(f"the record id of document {doc} ends inside a UTF-8 character "
                         f"(byte {at} of the ids)", source=path)


class ShardWriter:
    """Writes documents into a shard set in ``directory``, one shard per ``shard_tokens``.

    ``add(docs, record_ids)`` appends documents (1-D integer arrays, separator included);
    a shard is closed and renamed into place once it holds ``shard_tokens`` tokens or more
    (a document never straddles two shards). ``close(extra)`` finishes the last shard and
    writes ``tokenizer.json`` and ``manifest.json`` (``extra``: more manifest fields).
    Memory: one shard's offsets and ids (16 bytes + the id per document); tokens go
    straight to the file.
    """

    def __init__(self, directory: str | os.PathLike, *, vocab_size: int, tokenizer_json: str,
                 fingerprint: str, separator: str, separator_id: int,
                 shard_tokens: int = DEFAULT_SHARD_TOKENS, overwrite: bool = False):
        if isinstance(shard_tokens, bool) or not isinstance(shard_tokens, int) or shard_tokens < 1:
            raise ConfigError(f"shard_tokens must be a positive integer, got {shard_tokens!r}")
        if not isinstance(vocab_size, int) or not 1 <= vocab_size <= 2**32:
            raise ConfigError(f"vocab_size must be an integer in [1, 2**32], got {vocab_size!r}")
        self.dir = Path(directory)
        if (self.dir / MANIFEST).exists():
            if not overwrite:
                raise ConfigError(f"out: {self.dir} already holds a shard set ({MANIFEST}); "
                                  "choose another folder or pass overwrite=True")
            _remove_set(self.dir)
        elif self.dir.is_dir():
            _remove_unfinished(self.dir)  # shards of a run that stopped before its manifest
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vocab_size, self.dtype = vocab_size, token_dtype(vocab_size)
        self.tokenizer_json, self.fingerprint = tokenizer_json, fingerprint
        self.separator, self.separator_id = separator, separator_id
        self.shard_tokens = shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None

    def _start(self) -> dict[str, Any]:
        name = f"shard-{len(self.shards):05d}"
        tmp = self.dir / f".{name}.bin.tmp"
        return {"name": name, "tmp": tmp, "file": open(tmp, "wb"), "crc": 0, "tokens": 0,
                "offsets": [0], "ids": [], "id_bytes": 0}

    def add(self, docs: Sequence[np.ndarray], record_ids: Sequence[str]) -> None:
        if len(docs) != len(record_ids):
            raise ConfigError(f"record_ids: {len(record_ids)} ids for {len(docs)} documents")
        for doc, rid in zip(docs, record_ids):
            arr = np.asarray(doc)
            if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                raise ConfigError(f"document {rid!r}: tokens must be a 1-D integer array")
            if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= self.vocab_size):
                bad = int(arr.max()) if int(arr.max()) >= self.vocab_size else int(arr.min())
                raise InputError(f"token id {bad} is outside the vocabulary (size {self.vocab_size})",
                                 source=str(rid))
            self._write(arr.astype(self.dtype, copy=False), rid)

    def _write(self, arr: np.ndarray, rid: str) -> None:
        s = self._open or self._start()
        self._open = s
        data = memoryview(np.ascontiguousarray(arr)).cast("B")
        s["file"].write(data)
        s["crc"] = zlib.crc32(data, s["crc"])
        s["tokens"] += arr.size
        s["offsets"].append(s["tokens"])
        b = rid.encode("utf-8")
        s["ids"].append(b)
        s["id_bytes"] += len(b)
        if s["tokens"] >= self.shard_tokens:
            self._finish_shard()

    def add_flat(self, flat: np.ndarray, lengths: np.ndarray, record_ids: Sequence[str]) -> None:
        """Append documents given as one flat array and their lengths (the fast path:
        ids must already be checked to lie in ``[0, vocab_size)``)."""
        flat = np.ascontiguousarray(flat, dtype=self.dtype)
        ends = np.cumsum(lengths)
        start = 0
        while start < len(lengths):
            s = self._open or self._start()
            self._open = s
            room = self.shard_tokens - s["tokens"]
            base = int(ends[start - 1]) if start else 0
            # documents up to and including the one that reaches the shard bound
            stop = int(np.searchsorted(ends, base + room, side="left")) + 1
            stop = min(max(stop, start + 1), len(lengths))
            a, e = base, int(ends[stop - 1])
            data = memoryview(flat[a:e]).cast("B")
            s["file"].write(data)
            s["crc"] = zlib.crc32(data, s["crc"])
            s["offsets"].extend((s["tokens"] + ends[start:stop] - base).tolist())
            s["tokens"] += e - a
            for rid in record_ids[start:stop]:
                b = rid.encode("utf-8")
                s["ids"].append(b)
                s["id_bytes"] += len(b)
            if s["tokens"] >= self.shard_tokens:
                self._finish_shard()
            start = stop

    def _finish_shard(self) -> None:
        s, self._open = self._open, None
        if s is None:
            return
        s["file"].close()
        n = len(s["ids"])
        body = (np.asarray(s["offsets"], dtype="<i8").tobytes()
                + np.cumsum([0, *map(len, s["ids"])], dtype=np.int64).astype("<i8").tobytes()
                + b"".join(s["ids"]))
        fields = (MAGIC, VERSION, self.dtype.itemsize, self.vocab_size, 0, n, s["tokens"], s["id_bytes"], s["crc"])
        header = _HEADER.pack(*fields, index_crc32(_HEADER.pack(*fields, 0, b"\0" * 32), body,
                                                   bytes.fromhex(self.fingerprint)),
                              bytes.fromhex(self.fingerprint))
        idx_tmp = self.dir / f".{s['name']}.idx.tmp"
        with open(idx_tmp, "wb") as f:
            f.write(header)
            f.write(body)
        os.replace(s["tmp"], self.dir / f"{s['name']}.bin")
        os.replace(idx_tmp, self.dir / f"{s['name']}.idx")
        self.shards.append({"name": s["name"], "documents": n, "tokens": s["tokens"],
                            "bin_crc32": s["crc"]})

    def close(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Finish the last shard, write ``tokenizer.json`` and ``manifest.json``; returns the manifest."""
        self._finish_shard()
        atomic_write_text(self.dir / TOKENIZER_FILE, self.tokenizer_json)
        manifest = {
            "format": FORMAT, "version": VERSION, "token_dtype": self.dtype.name,
            "vocab_size": self.vocab_size, "tokenizer_fingerprint": self.fingerprint,
            "separator": self.separator, "separator_id": self.separator_id,
            "documents": sum(s["documents"] for s in self.shards),
            "tokens": sum(s["tokens"] for s in self.shards),
            "shards": self.shards, **(extra or {}),
        }
        atomic_write_text(self.dir / MANIFEST, json.dumps(manifest, indent=2))
        return manifest

    def abort(self) -> None:
        """Drop the shard being written (its temporary file); finished shards stay."""
        if self._open is not None:
            self._open["file"].close()
            Path(self._open["tmp"]).unlink(missing_ok=True)
            self._open = None


def _remove_unfinished(directory: Path) -> None:
    for p in directory.iterdir():
        if re.fullmatch(r"shard-\d{5}\.(bin|idx)|\.shard-\d{5}\.(bin|idx)\.tmp", p.name):
            p.unlink()


def _remove_set(directory: Path) -> None:
    (directory / MANIFEST).unlink()
    for p in directory.iterdir():
        if p.suffix in (".bin", ".idx") and p.name.startswith("shard-"):
            p.unlink()


class ShardSet:
    """A shard set folder, opened: its manifest, tokenizer and memory-mapped shards.

    Checks on opening: the manifest's format and version; ``tokenizer.json`` hashes to the
    manifest's fingerprint; every shard listed exists, agrees with the manifest (counts,
    checksum, vocabulary, fingerprint: shards from another tokenizer are refused, naming
    the file); no unlisted ``.idx`` lies in the folder. ``verify=True`` also reads every
    ``.bin`` (checksums, ids below the vocabulary size; ~1 s per GB).

    Documents are numbered globally in shard order: ``lengths`` (int64, all documents),
    ``doc_shard``/``doc_offset`` (which shard, where its tokens start), ``doc(i)``.
    """

    def __init__(self, directory: str | os.PathLike, *, verify: bool = True):
        self.dir = Path(directory)
        mpath = self.dir / MANIFEST
        if not mpath.is_file():
            raise InputError(f"not a shard set: no {MANIFEST} (was tokenization finished?)",
                             source=str(self.dir))
        try:
            m = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"does not parse as JSON: {e}", source=str(mpath)) from e
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise InputError(f"not a {FORMAT} manifest", source=str(mpath))
        if m.get("version") != VERSION:
            raise InputError(f"unsupported shard set version {m.get('version')!r} (this fastsynth "
                             f"reads {VERSION})", source=str(mpath))
        self.manifest = m
        tpath = self.dir / TOKENIZER_FILE
        if not tpath.is_file():
            raise InputError("tokenizer.json missing beside the shards", source=str(tpath))
        from fastsynth.train.vocab import fingerprint
        self.tokenizer_json = tpath.read_text(encoding="utf-8")
        fp = fingerprint(self.tokenizer_json)
        if fp != m["tokenizer_fingerprint"]:
            raise InputError(f"tokenizer.json fingerprint {fp[:12]} differs from the manifest's "
                             f"{m['tokenizer_fingerprint'][:12]}", source=str(tpath))
        listed = {s["name"] for s in m["shards"]}
        for p in sorted(self.dir.glob("*.idx")):
            if p.stem not in listed:
                raise InputError(f"shard index not listed in {MANIFEST} (copied in from another set?)",
                                 source=str(p))
        self.shards: list[Shard] = []
        for entry in m["shards"]:
            sh = Shard(self.dir / entry["name"])
            h = sh.header
            if h.fingerprint != m["tokenizer_fingerprint"]:
                raise InputError(f"written with another tokenizer (fingerprint {h.fingerprint[:12]}, "
                                 f"the set's is {m['tokenizer_fingerprint'][:12]})", source=sh.idx_path)
            if h.vocab_size != m["vocab_size"] or np.dtype(m["token_dtype"]).itemsize != h.token_bytes:
                raise InputError(f"vocabulary/dtype ({h.vocab_size}, {h.token_bytes} bytes) differ from "
                                 f"the manifest's ({m['vocab_size']}, {m['token_dtype']})", source=sh.idx_path)
            if (h.n_docs, h.n_tokens, h.bin_crc32) != (entry["documents"], entry["tokens"], entry["bin_crc32"]):
                raise InputError("counts or checksum differ from the manifest's entry", source=sh.idx_path)
            if verify:
                sh.verify()
            self.shards.append(sh)
        counts = np.array([s.n_docs for s in self.shards], dtype=np.int64)
        self.doc_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.lengths = (np.concatenate([s.lengths for s in self.shards]) if self.shards
                        else np.zeros(0, np.int64))
        self.doc_shard = np.repeat(np.arange(len(self.shards), dtype=np.int64), counts)
        self.doc_offset = (np.concatenate([s.offsets[:-1] for s in self.shards]).astype(np.int64)
                           if self.shards else np.zeros(0, np.int64))

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["tokenizer_fingerprint"])

    @property
    def separator_id(self) -> int:
        return int(self.manifest["separator_id"])

    @property
    def n_docs(self) -> int:
        return int(self.lengths.size)

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["tokens"])

    @property
    def tokens(self) -> list[np.ndarray]:
        """Each shard's memory-mapped token array, in shard order."""
        return [s.tokens for s in self.shards]

    def doc(self, i: int) -> np.ndarray:
        s = int(self.doc_shard[i])
        return self.shards[s].doc(i - int(self.doc_start[s]))

    def record_id(self, i: int) -> str:
        s = int(self.doc_shard[i])
        return self.shards[s].record_id(i - int(self.doc_start[s]))

    def __iter__(self) -> Iterator[np.ndarray]:
        for s in self.shards:
            for i in range(s.n_docs):
                yield s.doc(i)
