"""The llama.cpp reference of the decode benchmarks (issue #16): llama-cpp-python in a venv of
its own (benchmarks/setup_llamacpp.sh builds it from the PyPI sdist, ~10+ minutes), run in a
subprocess of that venv's python that serves one request at a time.

Both sides get the same GGUF file and the same prompt token ids (our chat template and
tokenizer: llama.cpp only decodes them), greedy decoding, the same thread count, at most a
given number of new tokens, stopping at the end-of-turn token. Tokens/s counts generated tokens
over wall time per request, prefill included, on both sides.

llama.cpp's threads synchronise through OpenMP, and the waiting policy decides its speed: with
OpenMP's default (workers spin between ops) it is fastest on an idle machine and collapses on a
loaded one; with ``OMP_WAIT_POLICY=PASSIVE`` (workers sleep) the reverse. The benchmarks run it
BOTH ways (:data:`POLICIES`) and compare against the faster of the two medians, so the anchor
is llama.cpp at its best on that machine at that time — never a handicapped llama.cpp.
"""
from __future__ import annotations

import json
import os
import subprocess

#: name -> OMP_WAIT_POLICY for the llama.cpp worker (None: OpenMP's default, unset)
POLICIES = {"llama.cpp b1 (OpenMP default wait)": None,
            "llama.cpp b1 (OMP_WAIT_POLICY=PASSIVE)": "PASSIVE"}

_WORKER = r'''
import json, sys, time
import llama_cpp
req = json.loads(sys.stdin.readline())
llm = llama_cpp.Llama(model_path=req["model"], n_ctx=2048, n_threads=req["threads"],
                      n_threads_batch=req["threads"], n_batch=512, seed=0, verbose=False)
print(json.dumps({"ready": True, "version": llama_cpp.__version__}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    if job.get("quit"):
        break
    results = []
    for prompt in job["prompts"]:
        llm.reset()    # no KV reuse across requests (llama-cpp-python would reuse a shared prefix)
        t0 = time.perf_counter()
        out = []
        for tok in llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0,
                                reset=True):
            if tok in job["stop"] or len(out) >= job["max_new"]:
                break
            out.append(int(tok))
            if len(out) >= job["max_new"]:
                break
        results.append({"tokens": out, "seconds": time.perf_counter() - t0})
    print(json.dumps(results), flush=True)
'''


def llamacpp_python() -> str | None:
    """The interpreter with llama_cpp: $FASTSYNTH_LLAMACPP_PYTHON, else the venv's python
    ($FASTSYNTH_LLAMACPP_VENV or .llamacpp-venv; built on request, FASTSYNTH_LLAMACPP_SETUP=1)."""
    if os.environ.get("FASTSYNTH_LLAMACPP_PYTHON"):
        return os.environ["FASTSYNTH_LLAMACPP_PYTHON"]
    here = os.path.dirname(os.path.abspath(__file__))
    venv = os.environ.get("FASTSYNTH_LLAMACPP_VENV") or os.path.join(os.path.dirname(here),
                                                                      ".llamacpp-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py) and os.environ.get("FASTSYNTH_LLAMACPP_SETUP") == "1":
        subprocess.run(["bash", os.path.join(here, "setup_llamacpp.sh"), venv], check=True)
    return py if os.path.exists(py) else None


class LlamaCpp:
    """A llama-cpp-python worker process; ``wait_policy``: its OMP_WAIT_POLICY (None: unset,
    OpenMP's default) — the benchmarks' own process may have set PASSIVE for themselves."""

    def __init__(self, python: str, model: str, threads: int, wait_policy: str | None):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if wait_policy is not None:
            env["OMP_WAIT_POLICY"] = wait_policy
        self.proc = subprocess.Popen([python, "-c", _WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.proc.stdin.write(json.dumps({"model": model, "threads": threads}) + "\n")
        self.proc.stdin.flush()
        self.version = json.loads(self.proc.stdout.readline())["version"]

    def run(self, prompts: list[list[int]], stop, max_new: int) -> list[dict]:
        """One request at a time: ``[{"tokens": [...], "seconds": s}, ...]``."""
        self.proc.stdin.write(json.dumps({"prompts": prompts, "stop": list(stop),
                                          "max_new": max_new}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.write('{"quit": true}\n')
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def start_all(python: str, model: str, threads: int) -> dict[str, LlamaCpp]:
    """One worker per :data:`POLICIES` entry, keyed by its name."""
    return {name: LlamaCpp(python, model, threads, policy) for name, policy in POLICIES.items()}
