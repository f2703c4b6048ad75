"""``fastsynth score INPUT -o OUT``: quality scores, filter decisions and a summary."""
from __future__ import annotations

import argparse
import json
import sys

from fastsynth.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="score a corpus: gzip ratio, Gopher heuristics, quality filter",
        description="Score every document of INPUT (JSONL[.gz|.zst], Parquet, a directory of "
                    ".txt/.md, or builtin:python-docs) and write OUT/scores.parquet, "
                    "OUT/summary.{json,md} and OUT/gzip_ratio_hist.png. gzip ratio = "
                    "compressed/original size (zlib), lower = more compressible.")
    p.add_argument("input", help="corpus path, glob, or builtin:python-docs")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--id-field", default="id", help="field holding a document id (default: id)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="bad input records: stop with an error (raise) or write them to "
                        "OUT/rejects.jsonl and go on (skip)")
    p.add_argument("--level", type=int, default=6, help="compression level (default 6)")
    p.add_argument("--backend", choices=["zlib", "libdeflate"], default="zlib",
                   help="zlib (bit-identical to Python's zlib) or libdeflate (faster, sizes differ)")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--batch-size", type=int, default=4096, help="documents per native call")
    p.add_argument("--gzip-band", nargs=2, type=float, metavar=("LOW", "HIGH"), default=None,
                   help="keep documents with LOW <= gzip_ratio <= HIGH (default 0.3 0.5)")
    p.add_argument("--no-gzip-band", action="store_true", help="do not filter on gzip ratio")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a filter threshold, e.g. --set min_words=20 or "
                        "--set max_dup_line_frac=none (repeatable; names as in QualityFilter)")
    p.add_argument("--write-kept", action="store_true", help="also write OUT/kept.parquet (id, text)")
    p.add_argument("--no-histogram", action="store_true", help="skip the PNG")
    from fastsynth.run.executor_options import add_executor_arguments

    add_executor_arguments(p)  # ray: parts of --batch-size documents in OUT/.fastsynth-work (docs/scale.md)
    p.set_defaults(func=run)


def _parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise ConfigError(f"--set expects NAME=VALUE, got {item!r}")
    name, raw = item.split("=", 1)
    raw = raw.strip()
    if raw.lower() == "none":
        return name.strip(), None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(f"--set {name}: value {raw!r} is not a number, list or none") from None
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, dict):
        value = {int(k): v for k, v in value.items()}
    return name.strip(), value


def run(args: argparse.Namespace) -> int:
    from fastsynth.run.executor_options import executor_from_args
    from fastsynth.run.score_job import run_score, run_score_parts
    from fastsynth.quality import QualityFilter

    if args.batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    changes = dict(_parse_override(item) for item in args.set)
    if args.gzip_band is not None:
        changes["gzip_band"] = tuple(args.gzip_band)
    if args.no_gzip_band:
        changes["gzip_band"] = None
    quality_filter = QualityFilter().replace(**changes)
    kw = dict(text_field=args.text_field, id_field=args.id_field, on_error=args.on_error, level=args.level,
              backend=args.backend, threads=args.threads, quality_filter=quality_filter,
              batch_size=args.batch_size, write_kept=args.write_kept, histogram=not args.no_histogram)
    executor = executor_from_args(args)
    if executor.name == "local":  # one streaming pass, no parts to keep (docs/scale.md)
        summary = run_score(args.input, args.out, **kw)
    else:
        summary = run_score_parts(args.input, args.out, executor, **kw)
    c = summary["counts"]
    print(f"scored {c['scored']:,} documents: kept {c['kept']:,}, rejected by filter "
          f"{c['rejected_by_filter']:,}, rejected at input {c['rejected_at_input']:,} -> {args.out}/",
          file=sys.stderr)
    if summary.get("histogram_skipped"):
        print(f"note: {summary['histogram_skipped']}", file=sys.stderr)
    return 0
