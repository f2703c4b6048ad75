"""Per-part costs (seconds, peak memory) of the score and dedup stages: the measured
base of docs/scale.md's extrapolation.

    .venv/bin/python benchmarks/run_scale_costs.py [--parts 4] [--part-docs 5000] [--threads 1]

Corpus: ``parts x part_docs`` English documents of ~300 words, each three random
100-word windows of Python's help topics (one sentence a line), 5% of them a near copy
of an earlier one (one word appended). Every part (and the dedup cluster step) runs in a
fresh spawned process with ``threads`` native threads, so its peak RSS is its own; the
RSS of a process that only imports the stage code is printed as the baseline. Prints
one line per phase: median CPU seconds per part (all threads; wall time on the shared,
loaded machine this was written on was several times higher and says little), per 1,000
documents, and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _corpus(path: Path, n: int, seed: int = 3) -> int:
    from pydoc_data.topics import topics

    words = [w for name in sorted(topics) for w in topics[name].split()]
    rng = random.Random(seed)
    docs: list[str] = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            if docs and rng.random() < 0.05:
                text = rng.choice(docs) + " again"
            else:
                pieces = []
                for _ in range(3):
                    s = rng.randrange(len(words) - 100)
                    pieces.append(" ".join(words[s:s + 100]))
                text = " ".join(pieces).replace(". ", ".\n")
            docs.append(text)
            f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    return n


def _warm() -> None:
    """Import what the phases import lazily, so a part's time is its work, not imports."""
    import pyarrow.parquet  # noqa: F401

    import fastsynth._native  # noqa: F401
    import fastsynth.dedup  # noqa: F401
    import fastsynth.dedup.cluster  # noqa: F401
    import fastsynth.quality  # noqa: F401
    import fastsynth.run.stages.dedup  # noqa: F401
    import fastsynth.run.stages.score  # noqa: F401


def _measured(fn, config, arg):
    import resource

    _warm()
    t = time.process_time()  # CPU seconds of all threads: what the part costs on a quiet core
    res = fn(config, arg)
    return res, time.process_time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _baseline():
    import resource

    _warm()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SpawnExecutor:
    """Each part in a fresh spawned process; records (phase, seconds, peak MiB, docs)."""

    name = "spawn"

    def __init__(self):
        self.rows: list[tuple[str, float, float, int]] = []

    def map_parts(self, fn, config, parts, record, phase=None):
        for part in parts:
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                res, secs, rss = pool.submit(_measured, fn, config, part).result()
            record(part, res)
            self.rows.append((f"{part.stage}/{part.phase}", secs, rss, res.n_in or res.info.get("documents", 0)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--part-docs", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from fastsynth.run import executor as ex_mod
    from fastsynth.run.executor import run_stage
    from fastsynth.run.rundir import RunDir
    from fastsynth.run.stages import dedup, ingest, score

    work = Path(tempfile.mkdtemp(prefix="fssc-", dir="/tmp"))
    n = _corpus(work / "corpus.jsonl", args.parts * args.part_docs)
    configs = [(ingest.STAGE, ingest.IngestConfig(source=str(work / "corpus.jsonl"), part_docs=args.part_docs)),
               (score.STAGE, score.ScoreConfig(threads=args.threads)),
               (dedup.STAGE, dedup.DedupConfig(threads=args.threads))]
    rd = RunDir(work / "run", {s.name: str(c) for s, c in configs})
    spawn = SpawnExecutor()
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        base = pool.submit(_baseline).result()
    original_call = ex_mod._call

    def timed_call(fn, config, arg, where):  # the global steps, in a spawned process too
        if not where.startswith("stage ingest"):
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                res, secs, rss = pool.submit(_measured, fn, config, arg).result()
            spawn.rows.append((where.replace("stage ", "").replace(", step ", "/"), secs, rss,
                               res.info.get("documents", 0)))
            return res
        return original_call(fn, config, arg, where)

    ex_mod._call = timed_call
    for stage, config in configs:
        run_stage(rd, stage, config, spawn)
    ex_mod._call = original_call
    st = rd.manifest["stages"]
    print(f"{n:,} documents in {args.parts} parts of {args.part_docs:,}; threads {args.threads}; "
          f"score kept {st['score']['counts']['out']:,}, dedup removed {st['dedup']['counts']['rejected']:,}")
    info = st["dedup"]["phases"]["cluster"]["global"]["info"]
    print(f"dedup: {info['bands']} bands x {info['rows']} rows, pairs {info['pairs']}")
    print(f"baseline RSS of a process importing the stages: {base:.0f} MiB")
    print(f"{'phase':<16} {'parts':>5} {'cpu s/part':>10} {'cpu s/1k docs':>13} {'peak MiB':>9}")
    by: dict[str, list] = {}
    for name, secs, rss, docs in spawn.rows:
        if not docs:  # a band part and the cluster step see every document; verify ~ one part's
            docs = n if name.endswith(("/bands", "/cluster")) else args.part_docs
        by.setdefault(name, []).append((secs, rss, docs))
    for name, rows in by.items():
        secs = statistics.median(r[0] for r in rows)
        per_k = statistics.median(r[0] / max(r[2], 1) * 1000 for r in rows)
        print(f"{name:<16} {len(rows):>5} {secs:>10.2f} {per_k:>13.3f} {max(r[1] for r in rows):>9.0f}")
    sizes = {p.name: p.stat().st_size for p in (work / "run" / "dedup" / "sig").glob("*.parquet")}
    print(f"dedup/sig bytes per document: {sum(sizes.values()) / max(n, 1):.0f}")


if __name__ == "__main__":
    main()
