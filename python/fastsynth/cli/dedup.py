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
                   help="spill band keys and shingle sets to disk to stay near this budget")
    p.add_argument("--workdir", default=None, help="folder for spill files (default: a temp folder)")
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
    p.add_argument("--batch-size", type=int, default=8192, help="documents per native call")
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
    hist = result.size_histogram()
    n_rej = sum(rejected.values())
    return {
        "input_records": result.n_docs + n_rej,
        "rejected_at_input": n_rej,
        "rejected_at_input_by_reason": rejected,
        "documents": result.n_docs,
        "kept": int(result.keep.sum()),
        "duplicates_removed": result.n_removed,
        "clusters_with_duplicates": sum(c for s, c in hist.items() if s > 1),
        "cluster_size_histogram": {str(s): c for s, c in sorted(hist.items())},
        "params": {"threshold": cfg.threshold, "num_perm": cfg.num_perm, "ngram": cfg.ngram,
                   "shingle": cfg.shingle, "verify": cfg.verify, "keep": cfg.keep,
                   "bands": result.bands, "rows": result.rows, "seed": cfg.seed,
                   "scheme": compat or "fast"},
        "pairs": {"candidates": result.candidate_pairs, "verified": result.verified_pairs,
                  "matched": result.matched_pairs},
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

    from fastsynth.atomic import atomic_write_text
    from fastsynth.corpus import read, read_batches, write
    from fastsynth.dedup import dedup
    from fastsynth.progress import progress
    from fastsynth.run.config import from_args
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
    scores = np.asarray(_scores(args, cfg.score_field), dtype=np.float64) if cfg.keep == "score" else None
    t0 = time.perf_counter()
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
    keep = result.keep

    def kept_records():
        # the second pass meets the same bad records; they were written to the rejects file above
        for k, rec in enumerate(read(args.input, text_field=args.text_field, id_field=args.id_field,
                                     on_error=args.on_error)):
            if keep[k]:
                yield rec

    write(kept_records(), args.out)
    if args.clusters:
        write(({"id": ids[k], "keep": bool(keep[k]), "cluster_id": ids[int(result.cluster_id[k])],
                "cluster_size": int(result.cluster_size[k])} for k in range(result.n_docs)), args.clusters)
    summary = summary_of(result, seconds, cfg, args.compat, dict(stats.get("rejected_by_reason", {})))
    if args.summary_json:
        atomic_write_text(args.summary_json, json.dumps(summary, indent=2))
    _print_summary(summary, args.out, rejects)
    sys.stdout.flush()
    return 0
