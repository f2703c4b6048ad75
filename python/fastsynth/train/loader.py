"""The training data loader: packed batches from shard sets, resumable and rank-exact.

How the stream is made (docs/token-shards.md, "Loader"):

1. **Consumers.** Data-parallel ranks × DataLoader workers make ``C = world_size ×
   max(num_workers, 1)`` consumer streams; consumer ``c = rank × W + w``.
2. **Documents.** For every shard set and epoch ``e``, a permutation of its documents drawn
   from ``PCG64([seed, set, e])``; consumer ``c`` takes every C-th document of it,
   ``perm[c::C]`` — so in each epoch every document goes to exactly one consumer.
3. **Windows.** Each consumer gathers ``window`` documents at a time (from a mixture: the
   set furthest behind its token share supplies the next document, see
   :mod:`fastsynth.train.mixture`), packs them (:func:`fastsynth.train.pack`) and shuffles
   the window's rows (``PCG64([seed, c, window number, 1])``).
4. **Batches.** Rows stream into batches of ``batch_rows`` rows, across window and epoch
   boundaries. With ``epochs=None`` the stream is endless; with a number, the last batch
   of a consumer may have fewer rows.

Everything is a function of ``(config, sources, consumer, batches already taken)``, so
resuming needs only the count of batches a rank took: :class:`PackedLoader` keeps it
(``state_dict()``/``load_state_dict()``) and on resume each consumer re-derives its
position by packing (not reading) the windows it had consumed — ~0.2 s per million
documents. torch's DataLoader takes batches from its workers in turn, so batch ``i`` of a
rank comes from worker ``i mod W``; on resume, worker ``w`` continues consumer stream
``(w + taken) mod W``, which keeps that order exact.

A batch is a dict of torch tensors (the contract with the training loop):
``input_ids``/``labels``/``positions`` int64 ``(R, S)``, ``cu_seqlens`` int32,
``max_seqlen``, ``n_tokens``, ``n_target_tokens`` (see :mod:`fastsynth.train.rows`); with
``layout="padded"``: ``input_ids``/``labels``/``positions``/``key_mask`` ``(R, S)`` and
the counts.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from fastsynth.errors import ConfigError
from fastsynth.train.mixture import Mixture, MixtureDraw
from fastsynth.train.packing import DEFAULT_WINDOW, METHODS, PIECE_DTYPE, pack
from fastsynth.train.rows import packed_rows
from fastsynth.train.shards import ShardSet

STATE_FORMAT = "fastsynth-loader"
STATE_VERSION = 1


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class LoaderConfig:
    """How batches are made. Validated on construction.

    ``seq_len``: tokens per row (>= 2). ``batch_rows``: rows per batch per rank (R).
    ``method``: ``"best-fit"``, ``"first-fit"`` or ``"concat"`` (see
    :mod:`fastsynth.train.packing`). ``layout``: ``"packed"`` (varlen, the default) or
    ``"padded"`` (one document per row, cut at ``seq_len``, with a key mask). ``window``:
    documents packed together. ``seed``: shuffling seed. ``epochs``: passes over the data,
    ``None`` = endless (required for mixtures of several sets). ``rank``/``world_size``:
    data parallelism. ``num_workers``: DataLoader worker processes per rank (0 = in the
    calling process). ``pad_id``: token id on padding (default: the sets' separator id).
    """

    seq_len: int = 2048
    batch_rows: int = 8
    method: Literal["best-fit", "first-fit", "concat"] = "best-fit"
    layout: Literal["packed", "padded"] = "packed"
    window: int = DEFAULT_WINDOW
    seed: int = 0
    epochs: int | None = None
    rank: int = 0
    world_size: int = 1
    num_workers: int = 0
    pad_id: int | None = None

    def __post_init__(self) -> None:
        _positive_int("seq_len", self.seq_len, 2)
        _positive_int("batch_rows", self.batch_rows)
        _positive_int("window", self.window)
        _positive_int("seed", self.seed, 0)
        _positive_int("world_size", self.world_size)
        _positive_int("num_workers", self.num_workers, 0)
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.layout not in ("packed", "padded"):
            raise ConfigError(f"layout must be 'packed' or 'padded', got {self.layout!r}")
        if self.epochs is not None:
            _positive_int("epochs", self.epochs)
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank must be an integer in [0, world_size={self.world_size}), got {self.rank!r}")
        if self.pad_id is not None:
            _positive_int("pad_id", self.pad_id, 0)

    @property
    def consumers(self) -> int:
        return self.world_size * max(self.num_workers, 1)


class _Docs:
    """One consumer's endless (or ``epochs``-long) document order of one shard set."""

    def __init__(self, n_docs: int, seed: int, set_index: int, consumer: int, n_consumers: int,
                 epochs: int | None):
        self.n, self.seed, self.set = n_docs, seed, set_index
        self.c, self.C, self.epochs = consumer, n_consumers, epochs
        self.epoch, self.pos = -1, 0
        self.order = np.zeros(0, np.int64)

    def _next_epoch(self) -> bool:
        if self.epochs is not None and self.epoch + 1 >= self.epochs:
            return False
        self.epoch += 1
        rng = np.random.Generator(np.random.PCG64([self.seed, self.set, self.epoch]))
        self.order = rng.permutation(self.n)[self.c::self.C]
        self.pos = 0
        return True

    def next(self) -> int:
        """The next document id, or -1 when the last epoch has ended."""
        if self.pos >= self.order.size and not self._next_epoch():
            return -1
        self.pos += 1
        return int(self.order[self.pos - 1])

    def take(self, k: int) -> np.ndarray:
        """Up to ``k`` next document ids (fewer only when the last epoch ends)."""
        out = []
        while k > 0:
            if self.pos >= self.order.size and not self._next_epoch():
                break
            part = self.order[self.pos:self.pos + k]
            self.pos += part.size
            k -= part.size
            out.append(part)
        return np.concatenate(out) if out else np.zeros(0, np.int64)


@dataclass
class _Window:
    pieces: np.ndarray        # PIECE_DTYPE, doc = index into the window's documents
    row_order: np.ndarray     # the window's rows, shuffled
    first: np.ndarray         # first piece of each row (pieces are sorted by row)
    count: np.ndarray         # pieces per row
    source: np.ndarray        # per window document: index into the flat token-array list
    offset: np.ndarray        # per window document: token offset in that array


class PackedDataset(IterableDataset):
    """Packed batches from one shard set folder or a :class:`Mixture` of them.

    Iterating yields this rank's batches for the current worker (torch's DataLoader worker
    info picks the consumer stream). ``state_dict()``/``load_state_dict()`` count the
    batches taken when iterated in-process (``num_workers=0``); with workers use
    :class:`PackedLoader`. Shard sets are verified (checksums) once, here; worker processes
    reopen them by path without re-reading them.
    """

    def __init__(self, sources: Any, config: LoaderConfig | None = None, *, verify: bool = True):
        super().__init__()
        self.config = config or LoaderConfig()
        self.mixture = Mixture.of(sources)
        if self.config.epochs is not None and len(self.mixture.paths) > 1:
            raise ConfigError("epochs: a mixture of several shard sets is endless (epochs=None); "
                              "each set repeats on its own schedule")
        sets = [ShardSet(p, verify=verify) for p in self.mixture.paths]
        fp = sets[0].fingerprint
        for p, s in zip(self.mixture.paths, sets):
            if s.fingerprint != fp:
                raise ConfigError(f"mixture: {p} was tokenized with another tokenizer "
                                  f"(fingerprint {s.fingerprint[:12]}, {self.mixture.paths[0]} has {fp[:12]})")
            if s.n_docs < self.config.consumers:
                raise ConfigError(f"{p}: {s.n_docs} documents for {self.config.consumers} consumers "
                                  "(ranks x workers); every consumer needs at least one")
        self.vocab_size = sets[0].vocab_size
        self.fingerprint = fp
        self.pad_id = self.config.pad_id if self.config.pad_id is not None else sets[0].separator_id
        self._sets: list[ShardSet] | None = sets
        self._start = 0   # batches this rank already took (set by the loader or load_state_dict)
        self._taken = 0

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_sets"] = None  # memmaps are reopened in the worker, never pickled
        return d

    def _open(self) -> list[ShardSet]:
        if self._sets is None:
            self._sets = [ShardSet(p, verify=False) for p in self.mixture.paths]
        return self._sets

    # ------------------------------------------------------------------ the stream
    def _windows(self, consumer: int) -> Iterator[_Window]:
        cfg = self.config
        sets = self._open()
        base = np.cumsum([0, *[len(s.shards) for s in sets]])
        streams = [_Docs(s.n_docs, cfg.seed, i, consumer, cfg.consumers, cfg.epochs) for i, s in enumerate(sets)]
        draw = MixtureDraw(self.mixture.weights)
        number = 0
        while True:
            if len(sets) == 1:
                docs = streams[0].take(cfg.window)
                which = np.zeros(docs.size, np.int64)
            else:
                docs, which = self._draw_window(sets, streams, draw)
            if docs.size == 0:
                return
            lengths = np.empty(docs.size, np.int64)
            source = np.empty(docs.size, np.int64)
            offset = np.empty(docs.size, np.int64)
            for i, s in enumerate(sets):
                sel = which == i
                d = docs[sel]
                lengths[sel] = s.lengths[d]
                source[sel] = base[i] + s.doc_shard[d]
                offset[sel] = s.doc_offset[d]
            if cfg.layout == "padded":
                n = docs.size
                pieces = np.zeros(n, PIECE_DTYPE)
                pieces["row"] = pieces["doc"] = np.arange(n)
                pieces["length"] = np.minimum(lengths, cfg.seq_len)
            else:
                pieces = pack(lengths, cfg.seq_len, cfg.method)
            n_rows = int(pieces["row"][-1]) + 1 if pieces.size else 0
            rng = np.random.Generator(np.random.PCG64([cfg.seed, consumer, number, 1]))
            first = np.searchsorted(pieces["row"], np.arange(n_rows), side="left")
            count = np.diff(np.append(first, pieces.size))
            yield _Window(pieces, rng.permutation(n_rows), first, count, source, offset)
            number += 1

    def _draw_window(self, sets: list[ShardSet], streams: list[_Docs],
                     draw: MixtureDraw) -> tuple[np.ndarray, np.ndarray]:
        docs, which = [], []
        while len(docs) < self.config.window:
            s = draw.pick()
            if s < 0:
                break
            d = streams[s].next()
            if d < 0:
                draw.close(s)
                continue
            draw.add(s, int(sets[s].lengths[d]))
            docs.append(d)
            which.append(s)
        return np.asarray(docs, np.int64), np.asarray(which, np.int64)

    def _row_batches(self, consumer: int, skip: int) -> Iterator[list[tuple[_Window, np.ndarray]]]:
        R = self.config.batch_rows
        pending: list[tuple[_Window, np.ndarray]] = []
        have = 0
        for w in self._windows(consumer):
            k, n = 0, w.row_order.size
            while k < n:
                take = min(R - have, n - k)
                pending.append((w, w.row_order[k:k + take]))
                have += take
                k += take
                if have == R:
                    if skip > 0:
                        skip -= 1
                    else:
                        yield pending
                    pending, have = [], 0
        if pending and skip == 0:
            yield pending

    def _gather(self, parts: list[tuple[_Window, np.ndarray]]) -> dict[str, Any]:
        cfg = self.config
        sel_pieces, sources, offsets = [], [], []
        row0 = 0
        for w, rows in parts:
            counts = w.count[rows]
            total = int(counts.sum())
            idx = np.repeat(w.first[rows] - (np.cumsum(counts) - counts), counts) + np.arange(total)
            p = w.pieces[idx].copy()
            p["row"] = row0 + np.repeat(np.arange(rows.size), counts)
            sel_pieces.append(p)
            sources.append(w.source[p["doc"]])
            offsets.append(w.offset[p["doc"]] + p["start"])
            row0 += rows.size
        pieces = np.concatenate(sel_pieces)
        tokens = [sh.tokens for s in self._open() for sh in s.shards]
        b = packed_rows(pieces, row0, cfg.seq_len, tokens, np.concatenate(sources),
                        np.concatenate(offsets), pad_id=self.pad_id)
        if cfg.layout == "padded":
            lens = np.bincount(pieces["row"], weights=pieces["length"], minlength=row0).astype(np.int64)
            ar = np.arange(cfg.seq_len)
            b["positions"] = np.broadcast_to(ar, (row0, cfg.seq_len)).copy()
            b["key_mask"] = ar[None, :] < lens[:, None]
            del b["cu_seqlens"], b["max_seqlen"]
        return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in b.items()}

    def consumer_batches(self, consumer: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        """Batches of consumer stream ``consumer`` (``0 <= consumer < config.consumers``),
        after skipping its first ``skip`` batches."""
        if not 0 <= consumer < self.config.consumers:
            raise ConfigError(f"consumer must be in [0, {self.config.consumers}), got {consumer}")
        for parts in self._row_batches(consumer, skip):
            yield self._gather(parts)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        cfg = self.config
        W = max(cfg.num_workers, 1)
        if info is None:
            if cfg.num_workers > 0:
                raise ConfigError("num_workers > 0: iterate through PackedLoader (a DataLoader), "
                                  "or set num_workers=0")
            worker = 0
        else:
            if info.num_workers != W:
                raise ConfigError(f"DataLoader has {info.num_workers} workers, config.num_workers is "
                                  f"{cfg.num_workers}")
            worker = info.id
        start = self._start + (self._taken if info is None else 0)
        # worker w continues stream (w + start) mod W; that stream already gave
        # ceil((start - its index) / W) batches (see the module docstring)
        stream = (worker + start) % W
        done = (start - stream + W - 1) // W if start > stream else 0
        consumer = cfg.rank * W + stream
        for batch in self.consumer_batches(consumer, done):
            if info is None:
                self._taken += 1
            yield batch
        if info is None:  # a finite stream ran to its end: the next pass starts over
            self._start = self._taken = 0

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """What to save in a checkpoint to resume at exactly the next batch (in-process use)."""
        return _state(self, self._start + self._taken)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._start = _check_state(self, state)
        self._taken = 0


def _state(ds: PackedDataset, batches: int) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "version": STATE_VERSION, "batches": int(batches),
            "config": asdict(ds.config), "sources": list(ds.mixture.paths),
            "weights": list(ds.mixture.weights), "fingerprint": ds.fingerprint}


def _check_state(ds: PackedDataset, state: dict[str, Any]) -> int:
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError("loader state: not a fastsynth loader state")
    if state.get("version") != STATE_VERSION:
        raise ConfigError(f"loader state: version {state.get('version')!r}, expected {STATE_VERSION}")
    mine = asdict(ds.config)
    theirs = state.get("config", {})
    differ = [k for k in mine if k != "num_workers" and theirs.get(k) != mine[k]]
    if max(theirs.get("num_workers", 0), 1) != max(mine["num_workers"], 1):
        differ.append("num_workers")
    if differ:
        raise ConfigError(f"loader state: saved with other settings ({', '.join(differ)}); an exact "
                          "resume needs the same ones")
    if state.get("fingerprint") != ds.fingerprint or [os.path.abspath(p) for p in state.get("sources", [])] != [
            os.path.abspath(p) for p in ds.mixture.paths] or state.get("weights") != list(ds.mixture.weights):
        raise ConfigError("loader state: saved for other shard sets or weights")
    b = state.get("batches")
    if isinstance(b, bool) or not isinstance(b, int) or b < 0:
        raise ConfigError(f"loader state: batches must be a non-negative integer, got {b!r}")
    return b


class PackedLoader:
    """A torch DataLoader over a :class:`PackedDataset` that counts the batches it hands
    out, so ``state_dict()`` resumes at exactly the next batch.

    Iterate it (endless unless ``config.epochs``; a finite stream that ran to its end
    starts over on the next pass, e.g. an evaluation set); memory is pinned when CUDA is
    present.
    """

    def __init__(self, sources: Any, config: LoaderConfig | None = None, *, verify: bool = True,
                 pin_memory: bool | None = None, prefetch_factor: int | None = None):
        self.dataset = PackedDataset(sources, config, verify=verify)
        self.config = self.dataset.config
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.prefetch_factor = prefetch_factor
        self._taken = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.dataset._start = self._taken
        self.dataset._taken = 0
        kwargs: dict[str, Any] = {}
        if self.config.num_workers > 0 and self.prefetch_factor is not None:
            kwargs["prefetch_factor"] = self.prefetch_factor
        dl = DataLoader(self.dataset, batch_size=None, num_workers=self.config.num_workers,
                        pin_memory=self.pin_memory, **kwargs)
        for batch in dl:
            self._taken += 1
            yield batch
        self._taken = 0  # a finite stream ran to its end: the next pass starts over

    def state_dict(self) -> dict[str, Any]:
        return _state(self.dataset, self._taken)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._taken = _check_state(self.dataset, state)
