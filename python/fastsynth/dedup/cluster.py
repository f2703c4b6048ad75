"""Near-duplicate removal: MinHash -> LSH buckets -> (exact Jaccard) -> union-find -> keep rule.

Memory: without ``memory_budget`` the band entries (16 bytes per document per band) and,
with ``verify``, the shingle sets (8 bytes per distinct shingle) are held in memory. With
``memory_budget`` (bytes) they spill to files (format: fastsynth.dedup.spill) in a folder
of their own, ``fastsynth-dedup-<pid>-<random>``, made inside ``workdir`` (default: the
system temp folder), and each band is processed in key-range partitions of about the
budget, so memory stays bounded apart from the per-document result arrays (~25 bytes per
document) and one batch. Results are identical either way.

Spill folders: removed when the call returns or raises; a process killed outright leaves
its folder, and the next spilling call in the same ``workdir`` removes every such folder
whose process is gone (docs/errors.md).
"""
from __future__ import annotations

import numbers
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastsynth import _native
from fastsynth._texts import resolve_threads
from fastsynth.corpus.write import process_alive
from fastsynth.dedup.lsh import band_keys, check_sigs
from fastsynth.dedup.minhash import (check_ngram, check_num_perm, check_seed, check_shingle, is_empty, minhash,
                                     scheme_of, shingle_sets)
from fastsynth.dedup.params import check_bands_rows, check_threshold, optimal_params
from fastsynth.dedup.spill import SpillParams
from fastsynth.dedup.store import BandStore
from fastsynth.errors import ConfigError

#: Buckets up to this size contribute all their pairs; larger ones a star from their
#: lowest id (a bucket of 1,000 copies would otherwise give 500k pairs).
MAX_ALL_PAIRS_BUCKET = 32
KEEP_RULES = ("first", "score")
#: LSH weights (false positive, false negative) when candidates are verified: a false
#: positive then costs one exact Jaccard, a false negative a missed duplicate. At t=0.8,
#: 128 perms this picks (16, 8): P(candidate) = 0.95 at J=0.8, 0.99 at 0.85, 1.0 at 0.9,
#: against (9, 13)'s 0.40 / 0.69 / 0.93 with datasketch's (0.5, 0.5).
VERIFIED_WEIGHTS = (0.05, 0.95)
UNVERIFIED_WEIGHTS = (0.5, 0.5)


@dataclass
class DedupResult:
    """Per document (index = position in the input): ``keep`` (bool), ``cluster_id``
    (int64, the index of the document kept for its cluster) and ``cluster_size`` (int64)."""

    keep: np.ndarray
    cluster_id: np.ndarray
    cluster_size: np.ndarray
    bands: int
    rows: int
    candidate_pairs: int = 0
    verified_pairs: int = 0
    matched_pairs: int = 0
    stats: dict = field(default_factory=dict)

    @property
    def n_docs(self) -> int:
        return int(self.keep.size)

    @property
    def n_removed(self) -> int:
        return int(self.keep.size - np.count_nonzero(self.keep))

    def size_histogram(self) -> dict[int, int]:
        """cluster size -> number of clusters of that size."""
        sizes = self.cluster_size[self.keep]
        vals, counts = np.unique(sizes, return_counts=True)
        return {int(v): int(c) for v, c in zip(vals, counts)}


def _text_batches(texts: Any, batch_size: int) -> Iterator[tuple[Any, Any]]:
    """(texts, scores-or-None) per batch from a collection or an iterable of batches."""
    import pyarrow as pa

    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a collection of texts, not a single str/bytes: wrap it in a list")
    if isinstance(texts, (list, tuple, np.ndarray, pa.Array, pa.ChunkedArray)):
        for i in range(0, len(texts), batch_size):
            chunk = texts[i:i + batch_size]
            yield (chunk.tolist() if isinstance(chunk, np.ndarray) else chunk), None
        return
    for batch in texts:  # an iterable of batches: RecordBatch (text column) or lists
        if isinstance(batch, pa.RecordBatch):
            yield batch.column("text"), batch
        else:
            yield batch, None


def dedup(texts: Any, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, verify: bool = True, *,
          seed: int = 1, compat: str | None = None, shingle: str = "word", keep: str = "first",
          scores: Any = None, weights: tuple[float, float] | None = None, params: tuple[int, int] | None = None,
          batch_size: int = 8192, memory_budget: int | None = None, workdir: str | os.PathLike | None = None,
          threads: int | None = None, progress: Any = None) -> DedupResult:
    """Find near-duplicate clusters and choose one document to keep in each.

    ``texts``: a list/tuple/array of str (or a pyarrow string array), or an iterable of
    batches (lists, or RecordBatches with a ``text`` column, e.g. ``fs.corpus.read_batches``).
    Documents are numbered by position. Pairs sharing an LSH band (``(bands, rows)`` from
    :func:`optimal_params` with ``weights``, default VERIFIED_WEIGHTS = (0.05, 0.95) with
    ``verify`` and datasketch's (0.5, 0.5) without, unless ``params``) are candidates; with ``verify`` a candidate
    must also have exact Jaccard >= ``threshold`` on the two shingle sets (hash64 of each
    shingle). Matches are merged transitively (union-find). ``keep="first"`` keeps each
    cluster's lowest index; ``keep="score"`` the highest ``scores`` value (an array with one
    float per document, or a RecordBatch column name), ties to the lowest index, NaN lowest.
    Documents without shingles are never matched. ``progress``: a callable(n_docs_done).
    """
    t = check_threshold(threshold)
    num_perm = check_num_perm(num_perm)
    ngram = check_ngram(ngram)
    seed = check_seed(seed)
    scheme = scheme_of(compat)
    check_shingle(shingle)
    nthreads = resolve_threads(threads)
    if not isinstance(verify, (bool, np.bool_)):
        raise ConfigError(f"verify must be True or False, got {verify!r}")
    if isinstance(texts, (dict, set, frozenset)):
        raise ConfigError(f"texts must be an ordered collection of texts or of batches, "
                          f"got {type(texts).__name__}")
    import pyarrow as pa

    sized = isinstance(texts, (list, tuple, np.ndarray, pa.Array, pa.ChunkedArray))
    score_arr = _check_keep(keep, scores, len(texts) if sized else None, allow_column=True)
    _check_positive_int("batch_size", batch_size)
    if memory_budget is not None:
        _check_positive_int("memory_budget", memory_budget)
    if weights is None:
        weights = VERIFIED_WEIGHTS if verify else UNVERIFIED_WEIGHTS
    bands, rows = _bands_rows(t, num_perm, weights, params)
    sp = SpillParams(num_perm, seed, scheme, ngram, shingle, bands, rows)

    def stream():
        for chunk, batch in _text_batches(texts, batch_size):
            sigs = minhash(chunk, num_perm, ngram, seed, compat, nthreads, shingle=shingle)
            sets = shingle_sets(chunk, ngram, shingle, nthreads) if verify else None
            col = None
            if keep == "score" and isinstance(scores, str):
                col = _score_column(batch, scores)
            yield sigs, sets, col

    if score_arr is not None:
        scores = score_arr

    return _run(stream(), sp, t, verify, keep, scores, memory_budget, workdir, nthreads, progress)


def cluster_signatures(sigs: Any, threshold: float = 0.8, *, num_perm: int | None = None, seed: int = 1,
                       compat: str | None = None, keep: str = "first", scores: Any = None,
                       weights: tuple[float, float] = UNVERIFIED_WEIGHTS, params: tuple[int, int] | None = None,
                       batch_size: int = 65536, memory_budget: int | None = None,
                       workdir: str | os.PathLike | None = None, threads: int | None = None) -> DedupResult:
    """Cluster precomputed signatures (uint32 ``(n, num_perm)``, e.g. a memory-mapped SIGS
    spill file) by LSH alone: no shingle sets, so no exact verification. Same result
    fields and keep rules as :func:`dedup`; ``seed``/``compat`` only label spill files."""
    if not hasattr(sigs, "shape") or len(sigs.shape) != 2:
        raise ConfigError("sigs must be a 2-D (n, num_perm) uint32 array")
    num_perm = check_num_perm(sigs.shape[1] if num_perm is None else num_perm)
    if sigs.shape[1] != num_perm:
        raise ConfigError(f"sigs has {sigs.shape[1]} columns but num_perm={num_perm}")
    dtype = np.dtype(getattr(sigs, "dtype", np.asarray(sigs[:1]).dtype))
    if dtype != np.uint32:
        # A cast would turn float or signed values into wrong signatures (floats in [0, 1)
        # all become 0, so unrelated rows "match"): convert only exact uint32 values.
        sigs = check_sigs(sigs, num_perm, allow_1d=False)
    t = check_threshold(threshold)
    score_arr = _check_keep(keep, scores, int(sigs.shape[0]), allow_column=False)
    _check_positive_int("batch_size", batch_size)
    if memory_budget is not None:
        _check_positive_int("memory_budget", memory_budget)
    nthreads = resolve_threads(threads)
    bands, rows = _bands_rows(t, num_perm, weights, params)
    sp = SpillParams(num_perm, check_seed(seed), scheme_of(compat), 0, "word", bands, rows)

    def stream():
        for i in range(0, sigs.shape[0], batch_size):
            yield np.ascontiguousarray(sigs[i:i + batch_size], dtype=np.uint32), None, None

    return _run(stream(), sp, t, False, keep, score_arr, memory_budget, workdir, nthreads, None)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_keep(keep: Any, scores: Any, n: int | None, *, allow_column: bool) -> np.ndarray | None:
    """Check the keep rule and its scores; return the scores as float64 ``(n,)`` when they
    are an array (checked against ``n`` when the document count is known up front)."""
    if keep not in KEEP_RULES:
        raise ConfigError(f"keep must be one of {KEEP_RULES}, got {keep!r}")
    if keep != "score":
        return None
    if scores is None:
        raise ConfigError("keep='score' needs scores (an array"
                          + (" or a column name)" if allow_column else ")"))
    if isinstance(scores, str):
        if not allow_column:
            raise ConfigError("scores must be an array of one number per signature row")
        return None
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("scores must be numbers, one per document") from None
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = f"({n},)" if n is not None else "(n_docs,)"
        raise ConfigError(f"scores must have shape {want}, one per document; got {arr.shape}")
    return arr


def _score_column(batch: Any, name: str) -> np.ndarray:
    if batch is None:
        raise ConfigError("scores as a column name needs RecordBatch input")
    if name not in batch.schema.names:
        raise ConfigError(f"scores: column {name!r} is not in the input batches (columns: "
                          f"{', '.join(batch.schema.names)})")
    col = batch.column(name)
    try:
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"scores: column {name!r} has type {col.type}, not numbers") from None


def _bands_rows(t: float, num_perm: int, weights, params) -> tuple[int, int]:
    if params is None:
        return optimal_params(t, num_perm, weights)
    return check_bands_rows(params, num_perm)


SPILL_PREFIX = "fastsynth-dedup-"


def sweep_spill_dirs(base: str | os.PathLike) -> list[Path]:
    """Remove ``fastsynth-dedup-<pid>-*`` folders under ``base`` whose process is gone
    (left by killed runs); return them. Folders of live processes are left alone."""
    gone = []
    try:
        entries = list(Path(base).iterdir())
    except OSError:
        return gone
    for d in entries:
        if not d.name.startswith(SPILL_PREFIX) or not d.is_dir():
            continue
        pid = d.name[len(SPILL_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def _sweep_old_layout(base: Path) -> None:
    """Remove band/set spill files that runs before per-run folders left directly in a
    workdir (``sets.fsdd``, ``bandNNN.fsdd``, ``bandNNN.partNNNN.fsdd``), when their
    header says they are BAND or SETS files (never a user's SIGS file)."""
    for p in base.glob("*.fsdd"):
        if p.name == "sets.fsdd" or re.fullmatch(r"band\d{3}(\.part\d{4})?\.fsdd", p.name):
            try:
                with open(p, "rb") as f:
                    head = f.read(8)
                if head in (b"FSDDBAND", b"FSDDSETS"):
                    p.unlink()
            except OSError:
                pass


def _make_spill_dir(workdir: Any) -> Path:
    base = Path(tempfile.gettempdir() if workdir is None else workdir)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"workdir {str(base)!r} cannot be created: {e.strerror or e}") from None
    sweep_spill_dirs(base)
    if workdir is not None:
        _sweep_old_layout(base)
    return Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=base))


def _run(stream: Iterator, sp: SpillParams, t: float, verify: bool, keep: str, scores: Any,
         memory_budget: int | None, workdir: Any, nthreads: int, progress: Any) -> DedupResult:
    spill_dir = _make_spill_dir(workdir) if memory_budget is not None else None
    try:
        store = BandStore(sp, verify, spill_dir)
        n = 0
        score_parts: list[np.ndarray] = []
        for sigs, sets, col in stream:
            m = sigs.shape[0]
            ids = np.arange(n, n + m, dtype=np.int64)
            live = ~is_empty(sigs)
            keys = band_keys(sigs[live], sp.bands, sp.rows, nthreads)
            store.add(ids[live], keys, sets)
            if col is not None:
                score_parts.append(col)
            n += m
            if keep == "score" and not isinstance(scores, str) and n > len(scores):
                raise ConfigError(f"scores has {len(scores)} values but the input has more "
                                  "documents; give one score per document")
            if progress is not None:
                progress(m)
        store.finish()
        parent = np.arange(n, dtype=np.int64)
        values, offsets = store.sets() if verify else (None, None)
        stats = {"candidate_pairs": 0, "verified_pairs": 0, "matched_pairs": 0}
        for j in range(sp.bands):
            for part in store.band_parts(j, memory_budget):
                _merge_part(part, parent, values, offsets, t, verify, nthreads, stats)
        _native.resolve_roots(parent)
        stats["spill_partitions"] = store.partitions
        stats["docs"] = n
        score_arr = None
        if keep == "score":
            score_arr = np.concatenate(score_parts) if isinstance(scores, str) else np.asarray(scores, np.float64)
            if score_arr.shape != (n,):
                raise ConfigError(f"scores must hold one value per document ({n}), got shape {score_arr.shape}")
        return _result(parent, score_arr, sp.bands, sp.rows, stats)
    finally:
        if spill_dir is not None:
            shutil.rmtree(spill_dir, ignore_errors=True)


def _merge_part(part: np.ndarray, parent: np.ndarray, values, offsets, t: float, verify: bool, threads: int,
                stats: dict) -> None:
    if part.size < 2:
        return
    order = np.lexsort((part["id"], part["key"]))
    keys = np.ascontiguousarray(part["key"][order])
    ids = np.ascontiguousarray(part["id"][order])
    u, v = _native.bucket_pairs(keys, ids, MAX_ALL_PAIRS_BUCKET)
    if u.size == 0:
        return
    stats["candidate_pairs"] += int(u.size)
    _native.resolve_roots(parent)
    fresh = parent[u] != parent[v]
    u, v = u[fresh], v[fresh]
    if u.size == 0:
        return
    ok = None
    if verify:
        jac = _native.pair_jaccard(values, offsets, u, v, threads)
        ok = (jac >= t).astype(np.uint8)
        stats["verified_pairs"] += int(u.size)
        stats["matched_pairs"] += int(ok.sum())
    else:
        stats["matched_pairs"] += int(u.size)
    _native.union_pairs(parent, u, v, ok)


def _result(label: np.ndarray, scores: np.ndarray | None, bands: int, rows: int, stats: dict) -> DedupResult:
    n = label.size
    idx = np.arange(n, dtype=np.int64)
    if scores is None:
        cluster_id = label.copy()  # the root is the component's lowest index
    else:
        s = np.where(np.isnan(scores), -np.inf, scores)
        order = np.lexsort((idx, -s, label))  # by label, then best score, then lowest index
        first = np.ones(n, dtype=bool)
        first[1:] = label[order][1:] != label[order][:-1]
        rep = np.empty(n, dtype=np.int64)
        rep[label[order][first]] = order[first]
        cluster_id = rep[label]
    size = np.bincount(label, minlength=n)[label].astype(np.int64)
    keep = cluster_id == idx
    return DedupResult(keep=keep, cluster_id=cluster_id, cluster_size=size, bands=bands, rows=rows,
                       candidate_pairs=stats["candidate_pairs"], verified_pairs=stats["verified_pairs"],
                       matched_pairs=stats["matched_pairs"], stats=stats)
