"""Time and peak memory of LSH + clustering for 1M signatures (issue 3: < 2 GB).

Usage: python benchmarks/run_dedup_memory.py [N] [--budget-mb MB]

Writes N planted signatures (see bench_dedup.planted_signatures) to a SIGS spill file in
a temp folder in chunks, then clusters them in a fresh child process that memory-maps
the file, and reports the child's wall time and peak RSS (ru_maxrss, which counts the
mapped signature pages it touched). Run it alone: timings are shared-CPU sensitive.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from fastsynth.dedup import cluster_signatures
from fastsynth.dedup.spill import SpillParams, read_signatures
path, budget = sys.argv[1], sys.argv[2]
budget = None if budget == "none" else int(float(budget) * 2**20)
sigs = read_signatures(path, SpillParams(128, 1))
t0 = time.perf_counter()
res = cluster_signatures(sigs, 0.8, memory_budget=budget)
dt = time.perf_counter() - t0
print(json.dumps({"signatures": int(sigs.shape[0]), "seconds": round(dt, 2), "budget_mb": sys.argv[2],
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "removed": res.n_removed, "bands": res.bands, "rows": res.rows,
                  "candidate_pairs": res.candidate_pairs}))
"""


def main(argv: list[str]) -> int:

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_dedup import planted_signatures
    from fastsynth.dedup.spill import SpillParams, SpillWriter

    n = int(argv[0]) if argv and not argv[0].startswith("-") else 1_000_000
    budgets = ["none"]
    if "--budget-mb" in argv:
        budgets.append(argv[argv.index("--budget-mb") + 1])
    with tempfile.TemporaryDirectory(prefix="fastsynth-memory-") as tmp:
        path = Path(tmp) / "sigs.fsdd"
        w = SpillWriter(path, b"SIGS", SpillParams(128, 1))
        chunk = 100_000
        for i in range(0, n, chunk):
            part = planted_signatures(min(chunk, n - i), seed=i)
            w.append(part, part.shape[0])
        w.close()
        for b in budgets:
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), b], capture_output=True, text=True)
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
            print(json.dumps(json.loads(out.stdout)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
