"""``fastsynth dedup INPUT -o OUT``: remove near-duplicates (MinHash + LSH), with a summary.

The clustering settings are the ``dedup`` stage's config (:class:`fastsynth.run.stages.
dedup.DedupConfig`): its fields become this command's flags. Every input record ends as
kept, removed (near-duplicate) or, with ``--on-error skip``, rejected at input into the
rejects file (``OUT.rejects.jsonl`` unless ``--rejects``); the summary counts all three.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from fastsynth.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    from fastsynth.run.config import add_arguments
    from fastsynth.run.stages.dedup import DedupConfig

    p = sub.add_parser(
        "dedup", help="remove near-duplicate documents (MinHash + LSH)",
        description="Read INPUT (JSONL[.gz|.zst], Parquet, a directory of .txt/.md, or "
                    "builtin:python-docs), cluster near-duplicates (word n-gram MinHash, LSH, "
                    "exact Jaccard verification, union-find) and write the kept records to OUT "
                    "(.jsonl[.gz|.zst] or .parquet). Prints a summary: duplicates removed and "
                    "the cluster-size histogram.")
    p.add_argument("input", help="corpus path, glob, or builtin:python-docs")
    p.add_argument("-o", "--out", required=True, help="output corpus file of the kept records")
    add_arguments(p, DedupConfig)
    p.add_argument("--compat", choices=["datasketch"], default=None,
                   help="datasketch-identical signatures (SHA-1; slower)")
    p.add_argument("--memory-budget-mb", type=float, default=None,
                   help="spill band keys and shingle sets to disk to stay near this budget "
                        "(local executor; a Ray part holds one input part or one band)")
    p.add_argument("--workdir", default=None,
                   help="folder for spill files (default: a temp folder); with --executor ray, the "
                        "folder holding the run's parts (default: .OUT.fastsynth-work beside OUT)")
    p.add_argument("--clusters", default=None, help="also write a per-document table (.parquet/.jsonl): "
                                                  "id, keep, cluster_id, cluster_size")
    p.add_argument("--summary-json", default=None, help="also write the summary as JSON here")
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--id-field", default="id", help="field holding a document id (default: id)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="bad input records: stop with an error, or reject them (with their reason) "
                        "into the rejects file and go on")
    p.add_argument("--rejects", default=None,
                   help="rejects file for --on-error skip (default: OUT.rejects.jsonl)")
    p.add_argument("--batch-size", type=int, default=8192,
                   help="documents per native call (with --executor ray: per part)")
    from fastsynth.run.executor_options import add_executor_arguments

    add_executor_arguments(p)
    p.set_defaults(func=run)


def _scores(args: argparse.Namespace, field: str) -> list[float]:
    from fastsynth.corpus import read

    out = []
    for rec in read(args.input, text_field=args.text_field, id_field=args.id_field, on_error=args.on_error):
        if field not in rec:
            raise ConfigError(f"--score-field {field!r}: record {rec['id']!r} has no such field "
                              f"(fields: {', '.join(k for k in rec if k != 'text')})")
        value = rec[field]
        try:
            out.append(float("nan") if value is None else float(value))
        except (TypeError, ValueError):
            raise ConfigError(f"--score-field {field!r}: record {rec['id']!r} has "
                              f"non-numeric value {value!r}") from None
    return out


def summary_of(result, seconds: float, cfg, compat: str | None, rejected: dict[str, int]) -> dict:
    """The summary of a :func:`fastsynth.dedup.dedup` result."""
    return _summary(n_docs=result.n_docs, kept=int(result.keep.sum()), removed=result.n_removed,
                    hist=result.size_histogram(), bands=result.bands, rows=result.rows,
                    pairs={"candidates": result.candidate_pairs, "verified": result.verified_pairs,
                           "matched": result.matched_pairs},
                    seconds=seconds, cfg=cfg, compat=compat, rejected=rejected)


def _summary(*, n_docs: int, kept: int, removed: int, hist: dict[int, int], bands: int, rows: int,
             pairs: dict[str, int], seconds: float, cfg, compat: str | None, rejected: dict[str, int]) -> dict:
    n_rej = sum(rejected.values())
    return {
        "input_records": n_docs + n_rej,
        "rejected_at_input": n_rej,
        "rejected_at_input_by_reason": rejected,
        "documents": n_docs,
        "kept": kept,
        "duplicates_removed": removed,
        "clusters_with_duplicates": sum(c for s, c in hist.items() if s > 1),
        "cluster_size_histogram": {str(s): c for s, c in sorted(hist.items())},
        "params": {"threshold": cfg.threshold, "num_perm": cfg.num_perm, "ngram": cfg.ngram,
                   "shingle": cfg.shingle, "verify": cfg.verify, "keep": cfg.keep,
                   "bands": bands, "rows": rows, "seed": cfg.seed,
                   "scheme": compat or "fast"},
        "pairs": pairs,
        "seconds": round(seconds, 3),
    }


def _print_summary(s: dict, out: str, rejects: str | None) -> None:
    print(f"dedup: {s['documents']:,} documents, kept {s['kept']:,}, removed {s['duplicates_removed']:,} "
          f"near-duplicates in {s['clusters_with_duplicates']:,} clusters "
          f"({s['seconds']:.1f} s; bands={s['params']['bands']}, rows={s['params']['rows']}) -> {out}")
    if rejects is not None:
        print(f"rejected at input: {s['rejected_at_input']:,} -> {rejects}"
              + "".join(f"; {k} {v:,}" for k, v in s["rejected_at_input_by_reason"].items()))
    print(f"records in {s['input_records']:,} = kept {s['kept']:,} + removed {s['duplicates_removed']:,}"
          f" + rejected {s['rejected_at_input']:,}")
    print("cluster size  clusters")
    for size, count in s["cluster_size_histogram"].items():
        print(f"{int(size):>12}  {count:,}")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from fastsynth.corpus import read_batches
    from fastsynth.dedup import dedup
    from fastsynth.progress import progress
    from fastsynth.run.config import from_args
    from fastsynth.run.executor_options import executor_from_args
    from fastsynth.run.stages.dedup import DedupConfig

    if getattr(args, "keep", "first") == "score" and not getattr(args, "score_field", None):
        raise ConfigError("--keep score needs --score-field")
    cfg = from_args(DedupConfig, args)
    if args.batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    budget = None
    if args.memory_budget_mb is not None:
        if args.memory_budget_mb <= 0:
            raise ConfigError(f"--memory-budget-mb must be positive, got {args.memory_budget_mb}")
        budget = int(args.memory_budget_mb * 2**20)
    rejects = None
    if args.on_error == "skip":
        rejects = args.rejects or f"{args.out}.rejects.jsonl"
    elif args.rejects:
        raise ConfigError("--rejects needs --on-error skip")
    executor = executor_from_args(args)
    if executor.name != "local":
        if args.compat:
            raise ConfigError(f"--compat {args.compat} needs --executor local (the stage on {executor.name} "
                              "computes fastsynth's own signatures)")
        if budget is not None:
            raise ConfigError(f"--memory-budget-mb needs --executor local (on {executor.name} each part "
                              "holds one input part or one LSH band: docs/scale.md)")
    scores = np.asarray(_scores(args, cfg.score_field), dtype=np.float64) if cfg.keep == "score" else None
    t0 = time.perf_counter()
    if executor.name != "local":
        return _run_parts(args, cfg, executor, scores, rejects, t0)
    batches = read_batches(args.input, batch_size=args.batch_size, text_field=args.text_field,
                           id_field=args.id_field, on_error=args.on_error, rejects=rejects)
    ids: list[str] = []

    def texts():
        for batch in batches:
            ids.extend(batch.column("id").to_pylist())
            yield batch.column("text")

    with batches, progress(desc="dedup: minhash", unit="doc") as bar:
        result = dedup(texts(), threshold=cfg.threshold, num_perm=cfg.num_perm, ngram=cfg.ngram,
                       verify=cfg.verify, seed=cfg.seed, compat=args.compat, shingle=cfg.shingle,
                       keep=cfg.keep, scores=scores, batch_size=args.batch_size, memory_budget=budget,
                       workdir=args.workdir, threads=cfg.threads, progress=bar.update)
    stats = batches.stats.as_dict()
    seconds = time.perf_counter() - t0
    summary = summary_of(result, seconds, cfg, args.compat, dict(stats.get("rejected_by_reason", {})))
    cluster_id = [ids[int(c)] for c in result.cluster_id]
    _write_outputs(args, result.keep, ids, cluster_id, result.cluster_size, summary, rejects)
    return 0


def _run_parts(args: argparse.Namespace, cfg, executor, scores, rejects: str | None, t0: float) -> int:
    """The dedup stage's phases (signatures, bands, verify: parts on ``executor``; cluster:
    on this driver) over the input read into parts of ``--batch-size`` documents, in a
    work directory beside OUT (resumable; removed after success). Keeps exactly the
    documents the local path keeps; ``pairs.verified``/``matched`` count per part
    (docs/scale.md, "Distributed dedup")."""
    import dataclasses
    import hashlib
    from pathlib import Path

    import numpy as np
    import pyarrow.parquet as pq

    from fastsynth.run import command_parts as cp
    from fastsynth.run.stages.dedup import stage_over

    out = Path(args.out)
    work = Path(args.workdir) / f".{out.name}{cp.WORK_SUFFIX}" if args.workdir \
        else cp.work_dir_for(out, out_is_dir=False)
    scores_file = None
    if scores is not None:
        work.mkdir(parents=True, exist_ok=True)
        scores_file = str(work.parent / f"{work.name}.scores.npy")
        np.save(scores_file, scores)
    read = cp.ReadConfig(source=str(args.input), text_field=args.text_field, id_field=args.id_field,
                         on_error=args.on_error, part_docs=args.batch_size, rejects=rejects,
                         score_field=cfg.score_field if scores is not None else None, scores_file=scores_file)
    identity = {"command": "dedup", "read": {**dataclasses.asdict(read), **cp.source_identity(str(args.input))},
                "dedup": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "threads"}}
    if scores is not None:
        identity["scores_sha1"] = hashlib.sha1(scores.tobytes()).hexdigest()
    rd = cp.run_in_work_dir(work, identity, [(cp.READ, read), (stage_over("ingest", filter_parts=False), cfg)],
                            executor)
    read_info = rd.parts("ingest", "out")["global"]["info"]
    info = rd.parts("dedup", "cluster")["global"]["info"]
    part_ids = read_info["parts"]
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in cp.part_files(rd, "ingest", "out")]
    offsets = dict(zip(part_ids, np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()))
    n = int(sum(sizes))
    ids: list[str] = []
    for p in cp.part_files(rd, "ingest", "out"):
        ids.extend(pq.read_table(p, columns=["id"]).column("id").to_pylist())
    keep = np.ones(n, dtype=bool)
    cluster_id = list(ids)
    cluster_size = np.ones(n, dtype=np.int64)
    cl = pq.read_table(rd.path("dedup", "global", "clusters.parquet")).to_pydict()
    for part, row, k, cid, size in zip(cl["part"], cl["row"], cl["keep"], cl["cluster_id"], cl["cluster_size"]):
        i = offsets[part] + row
        keep[i], cluster_id[i], cluster_size[i] = k, cid, size
    hist = {int(k): int(v) for k, v in info["cluster_size_histogram"].items()}
    summary = _summary(n_docs=n, kept=int(keep.sum()), removed=int(info["removed"]), hist=hist,
                       bands=info["bands"], rows=info["rows"], pairs=dict(info["pairs"]),
                       seconds=time.perf_counter() - t0, cfg=cfg, compat=None,
                       rejected=dict(read_info["stats"].get("rejected_by_reason", {})))
    summary["executor"] = executor.name
    _write_outputs(args, keep, ids, cluster_id, cluster_size, summary, rejects)
    cp.remove_work_dir(work)
    if scores_file:
        Path(scores_file).unlink(missing_ok=True)
    return 0


def _write_outputs(args: argparse.Namespace, keep, ids: list[str], cluster_id: list[str], cluster_size,
                   summary: dict, rejects: str | None) -> None:
    """The kept records (every field, re-read from INPUT), the clusters table and the summary."""
    from fastsynth.atomic import atomic_write_text
    from fastsynth.corpus import read, write

    def kept_records():
        # the second pass meets the same bad records; they were written to the rejects file above
        for k, rec in enumerate(read(args.input, text_field=args.text_field, id_field=args.id_field,
                                     on_error=args.on_error)):
            if keep[k]:
                yield rec

    write(kept_records(), args.out)
    if args.clusters:
        write(({"id": ids[k], "keep": bool(keep[k]), "cluster_id": cluster_id[k],
                "cluster_size": int(cluster_size[k])} for k in range(len(ids))), args.clusters)
    if args.summary_json:
        atomic_write_text(args.summary_json, json.dumps(summary, indent=2))
    _print_summary(summary, args.out, rejects)
    sys.stdout.flush()
