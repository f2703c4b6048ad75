"""Settings shared by every test module.

scripts/test.sh runs the suite on two pytest-xdist workers with ``--dist loadfile`` (a
module runs whole on one worker, so its module fixtures are built once) and
``--no-loadscope-reorder`` (modules are handed out in collection order). The modules in
``LONGEST_FIRST`` are collected first, longest first: handing the long modules out before
the many short ones lets the short ones fill in around them, so the two workers finish
close together (longest-processing-time-first scheduling). xdist's own order, by number of
tests, left one worker running a module alone for the last ~60 s of an ~8.5-minute run.
"""
from __future__ import annotations

#: Modules taking over ~20 s on the 2-core CI machine (setup + calls, clean-clone runs of
#: 2026-11-27), longest first. A module missing here only runs later; nothing else depends
#: on the order.
LONGEST_FIRST = [
    "test_run_e2e.py",           # 135 s: the e2e run, SIGKILL inside every stage
    "test_run_ray.py",           # 130 s: one Ray session for the module
    "test_synth_e2e.py",         # 68 s
    "test_weights_gguf.py",      # 63 s
    "test_plan_fit.py",          # 44 s
    "test_serve.py",             # 39 s
    "test_quant_matvec.py",      # 37 s
    "test_kernels_attention.py",  # 34 s: the Triton interpreter
    "test_train_compile.py",     # 31 s
    "test_decode_native.py",     # 30 s
    "test_cli_plan.py",          # 29 s
    "test_minhash.py",           # 25 s
    "test_cli_score.py",         # 24 s
    "test_server_openai.py",     # 23 s
    "test_llm_local.py",         # 21 s
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: the rest keep their order
