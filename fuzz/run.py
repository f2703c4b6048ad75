"""Run every fuzz target for a bounded time with atheris; exit 1 on any finding.

    .venv/bin/python fuzz/run.py --total 50           # CI: 50 s shared by all targets
    .venv/bin/python fuzz/run.py --total 3600 --keep fuzz-work   # a longer campaign
    .venv/bin/python fuzz/run.py --targets gguf,spill --total 600
    .venv/bin/python fuzz/run.py --native build/sanitize/_native...so --only-native
    bash scripts/fuzz-native.sh        # clang build with coverage of the C++ (see below)

Each target runs in its own process (``fuzz/fuzz_<target>.py``, libFuzzer flags from
here) over its seed corpus ``fuzz/corpus/<target>/``; inputs the fuzzer finds new
coverage with go to a scratch folder (or ``--keep DIR/<target>``), never into the seeds.
A crash (an exception escaping the target, a violated invariant, a sanitizer report, a
timeout or running out of memory) leaves its input as ``<artifacts>/<target>-crash-*``:
replay it with ``python fuzz/fuzz_<target>.py <file>``, then turn it into a regression
test. See docs/fuzzing.md.

Coverage of the C++: when ``build/fuzz-native/`` holds a ``_native`` built by
``scripts/fuzz-native.sh`` (clang, ``-fsanitize=fuzzer-no-link,address,undefined``) that
is newer than every file in ``csrc/``, the native targets load it with atheris'
libFuzzer+ASan runtime preloaded, so the fuzzer learns from the C++'s edges too. A build older
than ``csrc/`` is skipped with a note (it would fuzz old code); ``--no-coverage-build``
skips it always.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Every target, in the order CI runs them. NATIVE: targets whose entry point is C++
# (these are also run against the sanitized build by scripts/sanitize.sh).
TARGETS = ["gzip_ratio", "heuristics", "minhash", "lsh", "quant_matmul", "pack", "corpus_jsonl",
           "corpus_parquet", "corpus_text", "gguf", "spill", "shards", "server_request"]
NATIVE = ["gzip_ratio", "heuristics", "minhash", "lsh", "quant_matmul", "pack"]
MAX_LEN = 8192  # bytes per input: the seeds' largest is ~3 KiB
COVERAGE_BUILD = HERE.parent / "build" / "fuzz-native"


def coverage_build() -> tuple[Path | None, str]:
    """``(the _native .so of build/fuzz-native, "")`` when it is usable, else ``(None, why)``."""
    found = sorted(COVERAGE_BUILD.glob("_native*.so"))
    if not found:
        return None, ""
    so = found[0]
    sources = [p for p in (HERE.parent / "csrc").rglob("*") if p.is_file()]
    newest = max((p.stat().st_mtime for p in sources), default=0.0)
    if so.stat().st_mtime < newest:
        return None, f"{so} is older than csrc/ (rerun scripts/fuzz-native.sh); not used"
    if not runtime_preload():
        return None, f"{so}: atheris' asan_with_fuzzer.so was not found; not used"
    return so, ""


def runtime_preload() -> str:
    """``LD_PRELOAD`` for the coverage build: atheris' libFuzzer with ASan (the build's
    sanitizer and coverage callbacks resolve to it) and libstdc++ (ASan must find the real
    ``__cxa_throw`` when it starts, docs/fuzzing.md); "" when atheris ships no such runtime."""
    import importlib.util

    spec = importlib.util.find_spec("atheris")
    if spec is None or not spec.origin:
        return ""
    runtime = Path(spec.origin).parent.parent / "asan_with_fuzzer.so"
    if not runtime.exists():
        return ""
    stdcxx = subprocess.run(["g++", "-print-file-name=libstdc++.so"], capture_output=True,
                            text=True).stdout.strip()
    return " ".join(p for p in (str(runtime), stdcxx) if p and os.path.isabs(p))


def _targets_present() -> list[str]:
    return [t for t in TARGETS if (HERE / f"fuzz_{t}.py").exists()]


def run_target(name: str, seconds: float, work: Path, artifacts: Path, env: dict[str, str]
               ) -> tuple[bool, int, float, str]:
    """Fuzz one target; returns (ok, executions, wall seconds, output tail)."""
    corpus = work / name
    corpus.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / f"fuzz_{name}.py"), str(corpus), str(HERE / "corpus" / name),
           f"-max_total_time={max(1, int(seconds))}", f"-max_len={MAX_LEN}", "-timeout=30",
           "-rss_limit_mb=4096", f"-artifact_prefix={artifacts}/{name}-", "-print_final_stats=1",
           "-keep_seed=1"]  # every seed stays a starting point, new coverage or not
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE.parent,
                          errors="replace")
    wall = time.monotonic() - start
    out = proc.stdout + proc.stderr
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    execs = int(m.group(1)) if m else 0
    return proc.returncode == 0, execs, wall, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--total", type=float, default=50.0,
                    help="fuzzing seconds shared by the targets (start-up comes on top)")
    ap.add_argument("--targets", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--only-native", action="store_true", help="only the C++ entry points")
    ap.add_argument("--native", default="", help="load fastsynth._native from this file "
                    "(the sanitized build; LD_PRELOAD must name the ASan runtime)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="targets fuzzed at once (one core each; default 2, CI's cores)")
    ap.add_argument("--no-coverage-build", action="store_true",
                    help="do not load build/fuzz-native (scripts/fuzz-native.sh) even if present")
    ap.add_argument("--keep", default="", help="keep the grown corpus in this folder")
    ap.add_argument("--artifacts", default="", help="folder for crash inputs (default: a temp dir)")
    args = ap.parse_args(argv)

    names = [t for t in args.targets.split(",") if t] or _targets_present()
    if args.only_native:
        names = [t for t in names if t in NATIVE]
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {unknown}; known: {TARGETS}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    if args.native:
        env["FASTSYNTH_NATIVE"] = str(Path(args.native).resolve())
    # The coverage build serves the native targets only: the others' entry points are
    # Python, and loading pyarrow or torch under ASan costs time for no native edge.
    native_env = env
    if not args.native and not args.no_coverage_build and any(t in NATIVE for t in names):
        so, why = coverage_build()
        if why:
            print(f"note: {why}", flush=True)
        if so is not None:
            native_env = {**env, "FASTSYNTH_NATIVE": str(so), "LD_PRELOAD": runtime_preload(),
                          "ASAN_OPTIONS": env.get("ASAN_OPTIONS", "detect_leaks=0")}
    scratch = Path(tempfile.mkdtemp(prefix="fastsynth-fuzz-"))
    work = Path(args.keep) if args.keep else scratch / "corpus"
    artifacts = Path(args.artifacts) if args.artifacts else scratch / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(args.jobs, len(names)))
    # --total is the fuzzing time of the whole run: with `jobs` targets at once, each
    # target gets jobs * total / len(names) seconds.
    per = args.total * jobs / max(1, len(names))
    failed = []
    print(f"fuzzing {len(names)} target(s), {per:.0f} s each, {jobs} at a time"
          + (f", native module {args.native}" if args.native else "")
          + (f"; native targets on {native_env['FASTSYNTH_NATIVE']} with coverage of the C++"
             if native_env is not env else ""), flush=True)
    pool = concurrent.futures.ThreadPoolExecutor(jobs)
    futures = [pool.submit(run_target, name, per, work, artifacts,
                           native_env if name in NATIVE else env) for name in names]
    try:
        for name, fut in zip(names, futures):
            ok, execs, wall, out = fut.result()
            known = sorted(set(re.findall(r"known open defect (\S+)", out)))
            cov = re.findall(r"cov: (\d+) ft: (\d+)", out)  # libFuzzer's edges, features
            print(f"  {name:15s} {'ok' if ok else 'FAILED':6s} {execs:8d} executions "
                  f"in {wall:5.1f} s" + (f", cov {cov[-1][0]} ft {cov[-1][1]}" if cov else "")
                  + (f"  (known open defects hit: {', '.join(known)})"
                                         if known else ""), flush=True)
            if not ok:
                failed.append(name)
                print("\n".join(out.splitlines()[-60:]), flush=True)
                crashes = sorted(artifacts.glob(f"{name}-*"))
                saved = Path.cwd() / "fuzz-crashes"
                saved.mkdir(exist_ok=True)
                for c in crashes:
                    keep = saved / c.name
                    shutil.copy(c, keep)
                    print(f"  crash input saved as {keep}: replay with "
                          f"python fuzz/fuzz_{name}.py {keep}", flush=True)
    finally:
        pool.shutdown(wait=True)
        shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print(f"fuzzing found problems in: {', '.join(failed)}")
        return 1
    print("fuzzing: no findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
