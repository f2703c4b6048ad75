"""Stage ``dedup``: near-duplicate documents (MinHash + LSH + exact Jaccard) removed.

Four phases, so that only one small step needs all parts at once and its memory grows
with the duplicate pairs, not the documents (docs/scale.md, "Distributed dedup"):

1. ``Map("sig")``, one part per input part: each document's MinHash signature, its LSH
   band keys, and (``verify``) its shingle set -> ``dedup/sig/<part>.parquet``;
2. ``Map("bands")``, one part per LSH band (and key range, past ``BAND_PART_DOCS``
   documents): that band's keys of every document (in the range), sorted;
   documents sharing a key are candidate pairs (buckets of more than
   ``MAX_ALL_PAIRS_BUCKET`` give a star from their lowest index, as in
   :func:`fastsynth.dedup.dedup`) -> ``dedup/bands/<band>-<range>-<ranges>.parquet`` (``u < v``, global
   document indices = position in part order);
3. ``Map("verify")``, one part per input part: the distinct candidate pairs whose lower
   index ``u`` lies in the part, kept when their exact Jaccard >= ``threshold`` (all of
   them without ``verify``) -> ``dedup/verify/<part>.parquet`` with both ends' ids and scores;
4. ``Global("cluster")``: union-find (native) over the matched pairs' endpoints only; the
   kept document of each cluster is its lowest index (``keep=first``) or the best
   ``score_field`` value, ties to the lowest index, NaN lowest (``keep=score``) ->
   ``dedup/global/clusters.parquet``, one row per document in a cluster of 2 or more
   (``part``, ``row``, ``id``, ``keep``, ``cluster_id`` = the kept document's id,
   ``cluster_size``);
5. ``Map("out")`` filters each part by those rows; dropped documents go to
   ``rejects/dedup/`` as ``near_duplicate`` naming the kept document.

The clusters equal :func:`fastsynth.dedup.dedup`'s over the parts' documents in part
order (the connected components of the matched candidate pairs do not depend on the
order the bands are merged in), so the stage's output is that function's; only the
``verified``/``matched`` pair counts differ (that function skips pairs already joined).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fastsynth.atomic import atomic_path, write_parquet
from fastsynth.errors import ConfigError
from fastsynth.run.config import check, option
from fastsynth.run.records import reject_table, write_rejects
from fastsynth.run.rundir import PartResult
from fastsynth.run.stage import Global, Map, Part, Stage, View, one_to_one


@dataclass(frozen=True)
class DedupConfig:
    threshold: float = option(0.8, "Jaccard threshold in (0, 1]")
    num_perm: int = option(128, "MinHash permutations")
    ngram: int = option(5, "shingle size in words (or characters)")
    shingle: Literal["word", "char"] = option("word", "word or character n-grams")
    verify: bool = option(True, "check each LSH candidate pair's exact Jaccard")
    keep: Literal["first", "score"] = option(
        "first", "which document of a cluster to keep: the first in input order, or the highest "
                 "score_field value")
    score_field: str | None = option(None, "numeric field for keep=score (e.g. gzip_ratio)")
    seed: int = option(1, "permutation seed")
    threads: int | None = option(None, "worker threads (none: all cores)")

    def __post_init__(self) -> None:
        check(0 < self.threshold <= 1, "dedup.threshold", f"must be in (0, 1], got {self.threshold}")
        check(self.num_perm >= 2, "dedup.num_perm", f"must be >= 2, got {self.num_perm}")
        check(self.ngram >= 1, "dedup.ngram", f"must be >= 1, got {self.ngram}")
        check(self.keep != "score" or bool(self.score_field), "dedup.keep",
              "= score needs dedup.score_field")


def scores_column(table: pa.Table, field: str, source: str) -> np.ndarray:
    """``table[field]`` as float64 (null -> NaN); ConfigError naming the field if it is
    absent or not numeric (never a silent fallback to keep=first)."""
    if field not in table.column_names:
        raise ConfigError(f"score field {field!r} is not in {source} (fields: "
                          f"{', '.join(c for c in table.column_names if c != 'text')})")
    col = table.column(field)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type)):
        raise ConfigError(f"score field {field!r} in {source} is {col.type}, not numeric")
    return col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


SOURCE = "score"  # the stage whose output parts are deduplicated


def _lsh(config: DedupConfig) -> tuple[int, int]:
    from fastsynth.dedup.cluster import UNVERIFIED_WEIGHTS, VERIFIED_WEIGHTS, _bands_rows

    return _bands_rows(config.threshold, config.num_perm,
                       VERIFIED_WEIGHTS if config.verify else UNVERIFIED_WEIGHTS, None)


def _threads(config: DedupConfig) -> int:
    return 0 if config.threads is None else config.threads


def signatures(config: DedupConfig, part: Part) -> PartResult:
    """Phase ``sig``: per document ``id``, ``live`` (has shingles), ``key_<j>`` (uint64 band
    keys), ``shingles`` (sorted hash64 set, with ``verify``) and ``score`` (keep=score)."""
    from fastsynth.dedup.lsh import band_keys
    from fastsynth.dedup.minhash import is_empty, minhash, shingle_sets

    (src,) = part.input_paths()
    f = pq.ParquetFile(src)
    cols = ["id", "text"] + ([config.score_field] if config.keep == "score"
                             and config.score_field in f.schema_arrow.names else [])
    t = f.read(columns=cols)
    texts = t.column("text").combine_chunks()
    bands, rows = _lsh(config)
    sigs = minhash(texts, config.num_perm, config.ngram, config.seed, None, _threads(config),
                   shingle=config.shingle)
    keys = band_keys(sigs, bands, rows, _threads(config))
    columns: dict[str, pa.Array] = {"id": t.column("id").combine_chunks(),
                                    "live": pa.array(~is_empty(sigs))}
    for j in range(bands):
        columns[f"key_{j:03d}"] = pa.array(keys[:, j])
    if config.verify:
        values, offsets = shingle_sets(texts, config.ngram, config.shingle, _threads(config))
        columns["shingles"] = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))
    if config.keep == "score":
        columns["score"] = pa.array(scores_column(t, config.score_field, str(src)))
    with atomic_path(part.out) as tmp:  # small row groups: verify reads only those it needs
        pq.write_table(pa.table(columns), tmp, row_group_size=SIG_ROW_GROUP)
    return PartResult(info={"documents": t.num_rows})


def _read_rows(path, rows: np.ndarray, columns: list[str]) -> pa.Table:
    """Rows ``rows`` (sorted, unique) of a sig file, reading only their row groups."""
    f = pq.ParquetFile(path)
    sizes = [f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    g = np.searchsorted(starts, rows, side="right") - 1  # each row's group
    groups = np.unique(g)
    t = f.read_row_groups(groups.tolist(), columns=columns)
    base = np.concatenate([[0], np.cumsum([sizes[x] for x in groups])])[:-1].astype(np.int64)
    return t.take(pa.array(base[np.searchsorted(groups, g)] + rows - starts[g]))


def _offsets(paths: list) -> np.ndarray:
    """Global index of each sig file's first document (and the total at the end)."""
    counts = [pq.ParquetFile(p).metadata.num_rows for p in paths]
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


#: Rows per row group of the sig files (verify reads the groups holding its pairs' ends).
SIG_ROW_GROUP = 8192
#: Documents per ``bands`` part: past this, a band is split into key ranges (a bucket's
#: documents share their key, so they stay in one range) and a part's memory stays ~50
#: bytes per document of its range (docs/scale.md, "Distributed dedup").
BAND_PART_DOCS = 20_000_000


def band_parts(config: DedupConfig, view: View, stage: str, phase: str) -> list[Part]:
    """One part per band and key range: ids ``<band>-<range>-<ranges>``."""
    sig = tuple(view.files(stage, "sig"))
    n = sum(i.get("documents", 0) for i in view.info.get(stage, {}).get("sig", {}).values())
    ranges = max(1, -(-n // BAND_PART_DOCS))
    return [Part(view.root, stage, phase, f"{j:03d}-{r:05d}-{ranges:05d}", sig)
            for j in range(_lsh(config)[0]) for r in range(ranges)]


def _in_range(keys: np.ndarray, r: int, ranges: int) -> np.ndarray:
    """Keys (uniform uint64 hashes) whose range of ``ranges`` equal ones is ``r``."""
    if ranges == 1:
        return np.ones(keys.size, dtype=bool)
    return ((keys >> np.uint64(32)) * np.uint64(ranges)) >> np.uint64(32) == np.uint64(r)


def band_pairs(config: DedupConfig, part: Part) -> PartResult:
    """Phase ``bands``: one band's candidate pairs among the documents whose key lies in
    the part's key range (int64 ``u < v``, sorted by ``u`` then ``v``). Memory: ~50
    bytes per document of the range (key, index, sort order)."""
    from fastsynth import _native
    from fastsynth.dedup.cluster import MAX_ALL_PAIRS_BUCKET

    paths = part.input_paths()
    offs = _offsets(paths)
    keys, ids = [], []
    band, r, ranges = (int(x) for x in part.id.split("-"))
    col = f"key_{band:03d}"
    for k, p in enumerate(paths):
        t = pq.read_table(p, columns=["live", col])
        key = t.column(col).to_numpy(zero_copy_only=False)
        live = t.column("live").to_numpy(zero_copy_only=False) & _in_range(key, r, ranges)
        keys.append(key[live])
        ids.append(np.flatnonzero(live).astype(np.int64) + offs[k])
    key = np.concatenate(keys) if keys else np.empty(0, np.uint64)
    idx = np.concatenate(ids) if ids else np.empty(0, np.int64)
    order = np.lexsort((idx, key))
    u, v = _native.bucket_pairs(np.ascontiguousarray(key[order]), np.ascontiguousarray(idx[order]),
                                MAX_ALL_PAIRS_BUCKET)
    order = np.lexsort((v, u))
    write_parquet(part.out, pa.table({"u": u[order], "v": v[order]}))
    return PartResult(info={"candidates": int(u.size)})


def verify_parts(config: DedupConfig, view: View, stage: str, phase: str) -> list[Part]:
    sig = view.files(stage, "sig")
    bands = tuple(view.files(stage, "bands"))
    return [Part(view.root, stage, phase, rel.rsplit("/", 1)[-1].removesuffix(".parquet"),
                 tuple(sig) + bands) for rel in sig]


def verify_pairs(config: DedupConfig, part: Part) -> PartResult:
    """Phase ``verify``: the distinct candidate pairs whose ``u`` is in this part, kept if
    their exact Jaccard >= threshold (every one without ``verify``), with both ends' part,
    row, id and score. Reads the shingle sets of this part and of the parts the pairs'
    other ends are in."""
    from fastsynth import _native

    n_sig = sum(1 for p in part.inputs if "/sig/" in p)
    sig_paths, band_paths = part.input_paths()[:n_sig], part.input_paths()[n_sig:]
    names = [p.stem for p in sig_paths]
    k = names.index(part.id)
    offs = _offsets(sig_paths)
    lo, hi = int(offs[k]), int(offs[k + 1])
    us, vs = [], []
    for p in band_paths:
        t = pq.read_table(p, filters=[("u", ">=", lo), ("u", "<", hi)])
        us.append(t.column("u").to_numpy())
        vs.append(t.column("v").to_numpy())
    u = np.concatenate(us) if us else np.empty(0, np.int64)
    v = np.concatenate(vs) if vs else np.empty(0, np.int64)
    if u.size:
        pairs = np.unique(np.stack([u, v], axis=1), axis=0)
        u, v = np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])
    n_candidates = int(u.size)
    nodes = np.unique(np.concatenate([u, v]))
    where = np.searchsorted(offs, nodes, side="right") - 1  # the sig file of each node
    cols = ["id"] + (["shingles"] if config.verify else []) + (["score"] if config.keep == "score" else [])
    ids = np.empty(nodes.size, dtype=object)
    scores = np.full(nodes.size, np.nan)
    sets: list[pa.Array] = []
    for f in np.unique(where):
        sel = np.flatnonzero(where == f)
        t = _read_rows(sig_paths[f], nodes[sel] - offs[f], cols)
        ids[sel] = t.column("id").to_pylist()
        if config.keep == "score":
            scores[sel] = t.column("score").to_numpy(zero_copy_only=False)
        if config.verify:
            sets.append((sel, t.column("shingles").combine_chunks()))
    du, dv = np.searchsorted(nodes, u), np.searchsorted(nodes, v)
    if config.verify and u.size:
        order = np.concatenate([s for s, _ in sets])
        lists = pa.concat_arrays([a for _, a in sets])
        values = lists.values.to_numpy(zero_copy_only=False).astype(np.uint64)
        lens = np.diff(lists.offsets.to_numpy(zero_copy_only=False)).astype(np.int64)
        pos = np.empty(nodes.size, dtype=np.int64)  # node -> its row in `lists`
        pos[order] = np.arange(order.size)
        starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        # the sets again in node order (CSR), as the native pair_jaccard reads them
        node_lens = lens[pos]
        node_offsets = np.concatenate([[0], np.cumsum(node_lens)]).astype(np.int64)
        take = np.repeat(starts[pos] - node_offsets[:-1], node_lens) + np.arange(node_offsets[-1])
        node_values = np.ascontiguousarray(values[take])
        jac = _native.pair_jaccard(node_values, node_offsets, np.ascontiguousarray(du),
                                   np.ascontiguousarray(dv), _threads(config))
        ok = jac >= config.threshold
        du, dv = du[ok], dv[ok]
    pu = np.array(names, dtype=object)[where[du]] if du.size else np.empty(0, object)
    pv = np.array(names, dtype=object)[where[dv]] if dv.size else np.empty(0, object)
    write_parquet(part.out, pa.table({
        "u": nodes[du], "v": nodes[dv],
        "u_part": pa.array(pu.tolist(), pa.string()), "v_part": pa.array(pv.tolist(), pa.string()),
        "u_row": nodes[du] - offs[where[du]], "v_row": nodes[dv] - offs[where[dv]],
        "u_id": pa.array(ids[du].tolist(), pa.string()), "v_id": pa.array(ids[dv].tolist(), pa.string()),
        "u_score": scores[du], "v_score": scores[dv]}))
    return PartResult(info={"verified": n_candidates if config.verify else 0, "matched": int(du.size)})


def cluster(config: DedupConfig, view: View) -> PartResult:
    """Global step ``cluster``: components of the matched pairs (memory: the pairs and
    their endpoints, not the corpus)."""
    from fastsynth import _native

    cols = ["u", "v", "u_part", "v_part", "u_row", "v_row", "u_id", "v_id", "u_score", "v_score"]
    edges = [pq.read_table(view.path(rel), columns=cols) for rel in view.files("dedup", "verify")]
    e = pa.concat_tables(edges) if edges else None
    u = e.column("u").to_numpy() if e is not None else np.empty(0, np.int64)
    v = e.column("v").to_numpy() if e is not None else np.empty(0, np.int64)
    ends = np.concatenate([u, v])
    nodes, first = np.unique(ends, return_index=True)
    label = np.arange(nodes.size, dtype=np.int64)
    du = np.ascontiguousarray(np.searchsorted(nodes, u))
    dv = np.ascontiguousarray(np.searchsorted(nodes, v))
    _native.union_pairs(label, du, dv, None)
    _native.resolve_roots(label)  # a root is its component's lowest index

    def end_col(name: str, type_: pa.DataType) -> pa.Array:
        """Each node's ``name`` (from the first pair end naming it), kept in Arrow."""
        if e is None:
            return pa.array([], type_)
        both = pa.concat_arrays([e.column(f"u_{name}").combine_chunks(), e.column(f"v_{name}").combine_chunks()])
        return both.take(pa.array(first))

    node_ids = end_col("id", pa.string())
    idx = np.arange(nodes.size, dtype=np.int64)
    if config.keep == "score":
        s = end_col("score", pa.float64()).to_numpy(zero_copy_only=False)
        s = np.where(np.isnan(s), -np.inf, s)
        order = np.lexsort((idx, -s, label))  # by component, then best score, then lowest index
        head = np.ones(nodes.size, dtype=bool)
        head[1:] = label[order][1:] != label[order][:-1]
        rep = np.empty(nodes.size, dtype=np.int64)
        rep[label[order][head]] = order[head]
        rep = rep[label]
    else:
        rep = label
    size = np.bincount(label, minlength=nodes.size)[label].astype(np.int64)
    keep = rep == idx
    table = pa.table({"part": end_col("part", pa.string()), "row": end_col("row", pa.int64()),
                      "id": node_ids, "keep": keep, "cluster_id": node_ids.take(pa.array(rep)),
                      "cluster_size": size})
    write_parquet(view.global_dir("dedup") / "clusters.parquet", table)
    sig_info = view.info.get("dedup", {}).get("sig", {})
    n_docs = int(sum(i.get("documents", 0) for i in sig_info.values()))
    vals, counts = np.unique(size[keep], return_counts=True)
    hist = {int(a): int(b) for a, b in zip(vals, counts)}
    if n_docs - nodes.size:
        hist = {1: n_docs - int(nodes.size), **hist}
    verify_info = view.info.get("dedup", {}).get("verify", {}).values()
    bands, rows = _lsh(config)
    return PartResult(info={"documents": n_docs, "removed": int(nodes.size - np.count_nonzero(keep)),
                            "bands": bands, "rows": rows,
                            "cluster_size_histogram": {str(k): c for k, c in sorted(hist.items())},
                            "pairs": {"candidates": int(sum(i.get("candidates", 0) for i in
                                                            view.info.get("dedup", {}).get("bands", {}).values())),
                                      "verified": int(sum(i.get("verified", 0) for i in verify_info)),
                                      "matched": int(u.size)}})


def filter_part(config: DedupConfig, part: Part) -> PartResult:
    (src,) = part.input_paths()
    docs = pq.read_table(src)
    flags = pq.read_table(part.global_dir() / "clusters.parquet", filters=[("part", "=", part.id)])
    flags = flags.sort_by("row")
    rows = flags.column("row").to_numpy()
    ids = docs.column("id").to_pylist()
    if rows.size and (rows[-1] >= len(ids) or [ids[r] for r in rows] != flags.column("id").to_pylist()):
        raise ConfigError(f"{part.global_dir() / 'clusters.parquet'} does not match part {part.id}; "
                          "re-run with --overwrite")
    dropped = flags.filter(pa.compute.invert(flags.column("keep")))
    keep = np.ones(len(ids), dtype=bool)
    keep[dropped.column("row").to_numpy()] = False
    by_reason = write_rejects(part.rejects, reject_table(
        (i, "near_duplicate", f"kept {c} (cluster of {n})") for i, c, n in
        zip(dropped.column("id").to_pylist(), dropped.column("cluster_id").to_pylist(),
            dropped.column("cluster_size").to_pylist())))
    kept = docs.filter(pa.array(keep))
    write_parquet(part.out, kept)
    return PartResult(n_in=docs.num_rows, n_out=kept.num_rows, n_rejected=dropped.num_rows,
                      rejected_by_reason=by_reason)


def stage_over(source: str, *, filter_parts: bool = True) -> Stage:
    """The dedup stage reading ``source``'s output parts. ``filter_parts=False`` stops after
    ``cluster`` (``fastsynth dedup --executor ray`` writes the kept records itself from
    ``clusters.parquet``)."""
    phases = (Map("sig", signatures, one_to_one(source)), Map("bands", band_pairs, band_parts),
              Map("verify", verify_pairs, verify_parts), Global("cluster", cluster))
    if filter_parts:
        phases += (Map("out", filter_part, one_to_one(source), counts=True),)
    return Stage("dedup", DedupConfig, phases, needs=(source,), output="out" if filter_parts else None,
                 description="near-duplicate removal (MinHash + LSH)")


STAGE = stage_over(SOURCE)
