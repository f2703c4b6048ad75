"""``fastsynth dedup INPUT -o OUT``: remove near-duplicates (MinHash + LSH), with a summary."""
from __future__ import annotations

import argparse
import json
import sys
import time

from fastsynth.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dedup", help="remove near-duplicate documents (MinHash + LSH)",
        description="Read INPUT (JSONL[.gz|.zst], Parquet, a directory of .txt/.md, or "
                    "builtin:python-docs), cluster near-duplicates (word n-gram MinHash, LSH, "
                    "exact Jaccard verification, union-find) and write the kept records to OUT "
                    "(.jsonl[.gz|.zst] or .parquet). Prints a summary: duplicates removed and "
                    "the cluster-size histogram.")
    p.add_argument("input", help="corpus path, glob, or builtin:python-docs")
    p.add_argument("-o", "--out", required=True, help="output corpus file of the kept records")
    p.add_argument("--threshold", type=float, default=0.8, help="Jaccard threshold in (0, 1] (default 0.8)")
    p.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
    p.add_argument("--ngram", type=int, default=5, help="shingle size in words (or characters) (default 5)")
    p.add_argument("--shingle", choices=["word", "char"], default="word", help="word or character n-grams")
    p.add_argument("--no-verify", action="store_true",
                   help="accept LSH candidates without checking their exact Jaccard")
    p.add_argument("--keep", choices=["first", "score"], default="first",
                   help="which document of a cluster to keep: the first in input order, or the "
                        "highest --score-field value")
    p.add_argument("--score-field", default=None, help="numeric field for --keep score")
    p.add_argument("--compat", choices=["datasketch"], default=None,
                   help="datasketch-identical signatures (SHA-1; slower)")
    p.add_argument("--seed", type=int, default=1, help="permutation seed (default 1)")
    p.add_argument("--memory-budget-mb", type=float, default=None,
                   help="spill band keys and shingle sets to disk to stay near this budget")
    p.add_argument("--workdir", default=None, help="folder for spill files (default: a temp folder)")
    p.add_argument("--clusters", default=None, help="also write a per-document table (.parquet/.jsonl): "
                                                  "id, keep, cluster_id, cluster_size")
    p.add_argument("--summary-json", default=None, help="also write the summary as JSON here")
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--id-field", default="id", help="field holding a document id (default: id)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="bad input records: stop with an error, or skip them")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--batch-size", type=int, default=8192, help="documents per native call")
    p.set_defaults(func=run)


def _scores(args: argparse.Namespace) -> list[float]:
    from fastsynth.corpus import read

    out = []
    for rec in read(args.input, text_field=args.text_field, id_field=args.id_field, on_error=args.on_error):
        value = rec.get(args.score_field)
        try:
            out.append(float("nan") if value is None else float(value))
        except (TypeError, ValueError):
            raise ConfigError(f"--score-field {args.score_field!r}: record {rec['id']!r} has "
                              f"non-numeric value {value!r}") from None
    return out


def summary_of(result, seconds: float, args: argparse.Namespace) -> dict:
    hist = result.size_histogram()
    return {
        "documents": result.n_docs,
        "kept": int(result.keep.sum()),
        "duplicates_removed": result.n_removed,
        "clusters_with_duplicates": sum(c for s, c in hist.items() if s > 1),
        "cluster_size_histogram": {str(s): c for s, c in sorted(hist.items())},
        "params": {"threshold": args.threshold, "num_perm": args.num_perm, "ngram": args.ngram,
                   "shingle": args.shingle, "verify": not args.no_verify, "keep": args.keep,
                   "bands": result.bands, "rows": result.rows, "seed": args.seed,
                   "scheme": args.compat or "fast"},
        "pairs": {"candidates": result.candidate_pairs, "verified": result.verified_pairs,
                  "matched": result.matched_pairs},
        "seconds": round(seconds, 3),
    }


def _print_summary(s: dict, out: str) -> None:
    print(f"dedup: {s['documents']:,} documents, kept {s['kept']:,}, removed {s['duplicates_removed']:,} "
          f"near-duplicates in {s['clusters_with_duplicates']:,} clusters "
          f"({s['seconds']:.1f} s; bands={s['params']['bands']}, rows={s['params']['rows']}) -> {out}")
    print("cluster size  clusters")
    for size, count in s["cluster_size_histogram"].items():
        print(f"{int(size):>12}  {count:,}")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from fastsynth.corpus import read, read_batches, write
    from fastsynth.dedup import dedup
    from fastsynth.progress import progress

    if args.keep == "score" and not args.score_field:
        raise ConfigError("--keep score needs --score-field")
    if args.batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    budget = None
    if args.memory_budget_mb is not None:
        if args.memory_budget_mb <= 0:
            raise ConfigError(f"--memory-budget-mb must be positive, got {args.memory_budget_mb}")
        budget = int(args.memory_budget_mb * 2**20)
    scores = np.asarray(_scores(args), dtype=np.float64) if args.keep == "score" else None
    t0 = time.perf_counter()
    batches = read_batches(args.input, batch_size=args.batch_size, text_field=args.text_field,
                           id_field=args.id_field, on_error=args.on_error)
    ids: list[str] = []

    def texts():
        for batch in batches:
            ids.extend(batch.column("id").to_pylist())
            yield batch.column("text")

    with progress(desc="dedup: minhash", unit="doc") as bar:
        result = dedup(texts(), threshold=args.threshold, num_perm=args.num_perm, ngram=args.ngram,
                       verify=not args.no_verify, seed=args.seed, compat=args.compat, shingle=args.shingle,
                       keep=args.keep, scores=scores, batch_size=args.batch_size, memory_budget=budget,
                       workdir=args.workdir, threads=args.threads, progress=bar.update)
    seconds = time.perf_counter() - t0
    keep = result.keep

    def kept_records():
        for k, rec in enumerate(read(args.input, text_field=args.text_field, id_field=args.id_field,
                                     on_error=args.on_error)):
            if keep[k]:
                yield rec

    write(kept_records(), args.out)
    if args.clusters:
        write(({"id": ids[k], "keep": bool(keep[k]), "cluster_id": ids[int(result.cluster_id[k])],
                "cluster_size": int(result.cluster_size[k])} for k in range(result.n_docs)), args.clusters)
    summary = summary_of(result, seconds, args)
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    _print_summary(summary, args.out)
    sys.stdout.flush()
    return 0
