"""The issue-6 synthesis target, as a script (far too long for CI):

    100 built-in documents -> >= 150 valid question-answer pairs across Levels 1-3
    in under 30 minutes on 2 cores, with the embedded CPU model (SmolLM2-135M-Instruct).

Usage:
    .venv/bin/python benchmarks/run_synth_target.py [--docs 100] [--out runs/synth-target]
        [--threads 2] [--backend local] [--questions-per-doc 6] [--fresh]

Runs :func:`fastsynth.synth.synthesize` on the first ``--docs`` documents of
``builtin:python-docs`` and prints one JSON line: wall seconds, yields per level, total,
completion tokens/s, pass/fail against the target (scaled to ``--docs``: 1.5 valid pairs
per document, 18 s per document), plus the diversity figures of Level-1 vs Level-2
questions from the same documents. A run with fewer documents is a *reduced* run and is
reported as such. ``--fresh`` discards an earlier run in ``--out`` (otherwise the run
resumes, and the wall time then covers only this invocation).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time

TARGET_DOCS = 100
TARGET_PAIRS = 150
TARGET_SECONDS = 30 * 60


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=TARGET_DOCS)
    ap.add_argument("--out", default="runs/synth-target")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the local backend")
    ap.add_argument("--backend", default="local")
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--questions-per-doc", type=float, default=6.0)
    ap.add_argument("--batch-size", type=int, default=8, help="requests per generate() call")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--no-embeddings", action="store_true")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import fastsynth as fs
    from fastsynth.synth.config import SynthConfig
    from fastsynth.synth.pipeline import synthesize

    opts = {"base_url": args.base_url} if args.base_url else {}
    t_load = time.perf_counter()
    gen = fs.llm.generator(args.backend, **opts)
    load_s = time.perf_counter() - t_load
    with fs.corpus.read("builtin:python-docs") as r:
        docs = list(itertools.islice(r, args.docs))
    cfg = SynthConfig(questions_per_doc=args.questions_per_doc, max_doc_chars=1500, max_chunks=1,
                      question_max_tokens=64, concept_max_tokens=96, answer_max_tokens=80,
                      gen_batch_size=args.batch_size, batch_docs=10,
                      diversity_embeddings=not args.no_embeddings)
    t0 = time.perf_counter()
    s = synthesize(docs, args.out, generator=gen, config=cfg, overwrite=args.fresh, show_progress=True)
    wall = time.perf_counter() - t0
    scale = args.docs / TARGET_DOCS
    need_pairs, need_s = TARGET_PAIRS * scale, TARGET_SECONDS * scale
    sd = s["diversity"]["same_docs"]
    report = {
        "reduced": args.docs != TARGET_DOCS,
        "docs": args.docs, "wall_s": round(wall, 1), "model_load_s": round(load_s, 1),
        "yield": s["yield"], "total": s["total"], "requested": s["requested_questions"],
        "completion_tokens": s["tokens"]["completion"], "prompt_tokens": s["tokens"]["prompt"],
        "completion_tokens_per_s_in_generate": round(s["tokens"]["completion_tokens_per_s"], 1),
        "completion_tokens_per_wall_s": round(s["tokens"]["completion"] / wall, 1) if wall else None,
        "target": {"pairs": need_pairs, "seconds": need_s,
                   "met": s["total"] >= need_pairs and wall < need_s},
        "level1_vs_level2_same_docs": {
            k: {m: sd[k][m] for m in ("n", "mean_pairwise_similarity", "coverage", "entropy_bits", "set_gzip_ratio")}
            for k in ("level1", "level2")},
        "rejections": s["rejections"],
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "python": platform.python_version(),
                    "load_avg_1m": os.getloadavg()[0], "backend": args.backend},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
