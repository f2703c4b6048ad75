"""``fastsynth generate PROMPTS.jsonl -o OUT.jsonl``: completions for a file of prompts."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from fastsynth.cli.local_options import (add_engine_options, add_kernel_options, engine_kwargs,
                                         kernel_kwargs)
from fastsynth.atomic import atomic_path, atomic_write_text
from fastsynth.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="generate completions for a JSONL file of prompts",
        description="Each input line is a JSON object with 'messages' (a chat: a list of "
                    "{role, content}) or 'prompt' (a string, sent as one user message), and "
                    "optionally 'id' and 'seed'. Each output line holds id, text, "
                    "finish_reason, prompt_tokens, completion_tokens (end-of-sequence token "
                    "included) and error.")
    p.add_argument("input", help="PROMPTS.jsonl")
    p.add_argument("-o", "--out", required=True, help="output JSONL file")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="bad input records: stop before generating, naming file and line "
                        "(raise), or write them to --rejects and generate the others (skip)")
    p.add_argument("--rejects", default=None,
                   help="rejects file for --on-error skip (default: OUT with .rejects.jsonl)")
    p.add_argument("--backend", choices=["local", "openai", "vllm"], default="local")
    p.add_argument("--model", default=None, help="local/vllm: model path; openai: model id")
    p.add_argument("--base-url", default=None, help="openai backend: API root, e.g. "
                                                    "http://host:8000/v1")
    p.add_argument("--concurrency", type=int, default=8, help="openai backend: requests in flight")
    p.add_argument("--max-tokens", type=int, default=256, help="most new tokens per completion")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="seed for records without one")
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--batch-size", type=int, default=16, help="local backend: batch size")
    p.add_argument("--threads", type=int, default=None, help="local backend: CPU threads")
    add_kernel_options(p, prefix="local backend: ")
    add_engine_options(p)
    p.add_argument("--cache-dir", default=None, help="response cache folder (re-runs reuse it)")
    p.set_defaults(func=run)


def _rejects_path(out: str) -> str:
    base = out[:-len(".jsonl")] if out.endswith(".jsonl") else out
    return base + ".rejects.jsonl"


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see cli/serve.py
    import fastsynth.llm as llm
    from fastsynth.llm.prompts import read_prompts
    from fastsynth.progress import progress

    prompts = read_prompts(args.input, on_error=args.on_error)
    ids, chats = prompts.ids, prompts.chats
    seeds = [s if s is not None else args.seed for s in prompts.seeds]
    if args.backend == "local":
        opts: dict[str, Any] = {"model": args.model, "batch_size": args.batch_size,
                                "threads": args.threads, **kernel_kwargs(args)}
        chunk = args.batch_size
    elif args.backend == "openai":
        opts = {"model": args.model, "base_url": args.base_url, "concurrency": args.concurrency}
        chunk = 4 * args.concurrency
    else:
        if args.model is None:
            raise ConfigError("--model is required with --backend vllm")
        opts = {"model": args.model}
        chunk = max(len(chats), 1)
    opts.update(engine_kwargs(args))
    gen = llm.generator(args.backend, cache_dir=args.cache_dir, **opts)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    rejects_path = args.rejects or _rejects_path(args.out)
    t0 = time.perf_counter()
    n_tok = n_err = 0
    # The output is renamed into place last, after the rejects file: a finished output
    # always has its rejects beside it (docs/errors.md, "After a crash").
    with atomic_path(args.out) as tmp:
        with gen, open(tmp, "w", encoding="utf-8") as f, \
                progress(total=len(chats), desc="generate", unit="req") as bar:
            for start in range(0, len(chats), chunk):
                part = slice(start, start + chunk)
                comps = gen.generate(chats[part], max_tokens=args.max_tokens,
                                     temperature=args.temperature, top_p=args.top_p,
                                     top_k=args.top_k, seed=seeds[part], stop=args.stop)
                for rid, c in zip(ids[part], comps):
                    n_tok += c.completion_tokens
                    n_err += not c.ok
                    f.write(json.dumps({"id": rid, **c.to_dict()}, ensure_ascii=False) + "\n")
                bar.update(len(comps))
                bar.set_postfix(tok_s=f"{n_tok / max(time.perf_counter() - t0, 1e-9):.1f}")
        if args.on_error == "skip":
            atomic_write_text(rejects_path, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                    for r in prompts.rejects))
    dt = time.perf_counter() - t0
    rej = (f", {len(prompts.rejects)} rejected -> {rejects_path}"
           if args.on_error == "skip" else "")
    print(f"fastsynth generate: {prompts.read} records: {len(chats)} completions ({n_err} "
          f"errors){rej}; {n_tok} new tokens in {dt:.1f} s = {n_tok / max(dt, 1e-9):.1f} "
          f"tokens/s -> {args.out}", file=sys.stderr)
    return 1 if chats and n_err == len(chats) else 0
