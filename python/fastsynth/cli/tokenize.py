"""``fastsynth tokenize INPUT -o SHARDS_DIR``: a corpus into token shards, with a summary."""
from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokenize", help="tokenize a corpus into memory-mapped token shards",
        description="Tokenize every document of INPUT (JSONL[.gz|.zst], Parquet, a directory of "
                    ".txt/.md, or a builtin: corpus) into the shard set SHARDS_DIR (see "
                    "docs/token-shards.md), appending the separator token after every document. "
                    "Prints counts, tokens per document, throughput and packing statistics.")
    p.add_argument("input", help="corpus path, glob, or builtin:python-docs / builtin:python-stdlib")
    p.add_argument("-o", "--out", required=True, help="output folder (the shard set)")
    p.add_argument("--tokenizer", default="embedded",
                   help="'embedded' (SmolLM2-135M, default), 'bpe:N' (train an N-token byte-level "
                        "BPE on INPUT), or a tokenizer.json / folder / .gguf path")
    p.add_argument("--separator", default=None,
                   help="token appended after every document (default: the tokenizer's end-of-text)")
    p.add_argument("--bpe-train-documents", type=int, default=None,
                   help="with bpe:N, train on the first this many documents only")
    p.add_argument("--shard-tokens", type=int, default=None, help="tokens per shard (default 2**28)")
    p.add_argument("--batch-size", type=int, default=None, help="documents per encode call (default 2048)")
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="bad input records: stop (raise) or write them to SHARDS_DIR/rejects.jsonl (skip)")
    p.add_argument("--overwrite", action="store_true", help="replace a shard set already in SHARDS_DIR")
    p.add_argument("--seq-len", type=int, default=2048, help="row length for the packing statistics")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    from fastsynth.run.executor_options import add_executor_arguments

    add_executor_arguments(p)  # ray: parts of --batch-size documents in .OUT.fastsynth-work (docs/scale.md)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from fastsynth.run.executor_options import executor_from_args
    from fastsynth.train.packing import _check_seq_len
    from fastsynth.train.shards import DEFAULT_SHARD_TOKENS
    from fastsynth.train.stats import format_table, shard_stats
    from fastsynth.train.tokenize import DEFAULT_BATCH, tokenize
    from fastsynth.train.vocab import TokenizerSpec, parse_tokenizer

    _check_seq_len(args.seq_len)
    spec = parse_tokenizer(args.tokenizer)
    if args.separator is not None or args.bpe_train_documents is not None:
        spec = TokenizerSpec(kind=spec.kind, path=spec.path, vocab_size=spec.vocab_size,
                             separator=args.separator, train_documents=args.bpe_train_documents)
    executor = executor_from_args(args)
    rejects = os.path.join(args.out, "rejects.jsonl") if args.on_error == "skip" else None
    if rejects:
        os.makedirs(args.out, exist_ok=True)
    kw = dict(tokenizer=spec, shard_tokens=args.shard_tokens or DEFAULT_SHARD_TOKENS,
              batch_size=args.batch_size or DEFAULT_BATCH, text_field=args.text_field,
              on_error=args.on_error, rejects=rejects, overwrite=args.overwrite)
    if executor.name == "local":
        s = tokenize(args.input, args.out, **kw)
    else:
        from fastsynth.run.tokenize_job import run_tokenize_parts

        s = run_tokenize_parts(args.input, args.out, executor, **kw)
    stats = shard_stats(args.out, args.seq_len)
    if args.json:
        d = s.as_dict()
        d["packing"] = [st.as_dict() for st in stats]
        json.dump(d, sys.stdout, indent=2)
        print()
        return 0
    pct = s.length_percentiles
    print(f"tokenizer: {s.tokenizer} (vocab {s.vocab_size:,}, fingerprint {s.fingerprint[:12]}, "
          f"separator {s.separator})")
    print(f"documents: {s.documents_read:,} read = {s.documents_tokenized:,} tokenized + "
          f"{s.documents_empty:,} empty + {s.documents_rejected:,} rejected"
          + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(s.rejected.items()))})" if s.rejected else ""))
    print(f"tokens: {s.tokens:,} in {s.shards} shard(s) -> {args.out}/")
    if pct:
        print(f"tokens per document: p50 {pct['p50']:,}  p90 {pct['p90']:,}  p99 {pct['p99']:,}  "
              f"max {pct['max']:,}")
    print(f"time: {s.seconds:.1f} s ({s.tokenizer_seconds:.1f} s loading/training the tokenizer), "
          f"{s.tokens_per_second:,.0f} tokens/s")
    print(f"packing at seq_len {args.seq_len}:")
    print(format_table(stats))
    return 0
