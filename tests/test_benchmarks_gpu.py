"""benchmarks/gpu/run.py, the one-command GPU suite, on the CPU: discovery of the check modules,
the table and JSON it writes, errors and the time budget, argument handling, and the clean
skip without CUDA. (The GPU checks themselves need a GPU; see benchmarks/RESULTS.md.)"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GPU_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_suite_{name}", GPU_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def runner():
    return _load("run")


def _cli(*args, cuda_hidden=True):
    env = dict(os.environ)
    if cuda_hidden:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run([sys.executable, str(GPU_DIR / "run.py"), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_without_cuda_skips_cleanly_and_writes_json(tmp_path):
    out = tmp_path / "sub" / "gpu.json"
    proc = _cli("--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "CUDA" in proc.stdout
    data = json.loads(out.read_text())
    assert data["skipped"] == "no CUDA device"
    assert {"attention", "minhash"} <= set(data["checks"])


def test_lists_checks_and_rejects_bad_arguments():
    proc = _cli("--list")
    assert proc.returncode == 0
    names = proc.stdout.split()
    assert "attention" in names and "minhash" in names and "run" not in names
    bad = _cli("--only", "attention,no-such-check")
    assert bad.returncode == 2 and "no-such-check" in bad.stderr
    bad = _cli("--budget-s", "0")
    assert bad.returncode == 2 and "--budget-s" in bad.stderr


CHECKS = {
    "alpha.py": "def run(device):\n    return [{'case': 'a', 'TFLOP/s': 123.456, 'ok': True}]\n",
    "beta.py": "def run(device):\n    raise RuntimeError('kernel exploded')\n",
    "gamma.py": ("def run(device, deadline=None):\n"
                 "    note = f'device={device} deadline={deadline is not None}'\n"
                 "    return [{'case': 'g', 'ok': False, 'note': note}]\n"),
    "_helper.py": "raise AssertionError('modules starting with _ are not checks')\n",
}


def test_runs_every_discovered_check_and_reports_problems(runner, tmp_path):
    for name, src in CHECKS.items():
        (tmp_path / name).write_text(textwrap.dedent(src))
    checks = runner.discover(tmp_path)
    assert [n for n, _ in checks] == ["alpha", "beta", "gamma"]
    log = []
    rows, problems = runner.run_checks(checks, "cpu", budget_s=60, log=lambda *a, **k: log.append(a))
    assert rows[0] == {"check": "alpha", "case": "a", "TFLOP/s": 123.456, "ok": True}
    assert rows[1]["check"] == "beta" and rows[1]["ok"] is False and "kernel exploded" in rows[1]["note"]
    assert rows[2]["note"] == "device=cpu deadline=True"           # deadline passed when accepted
    assert [p["check"] for p in problems] == ["beta", "gamma"]     # raised; reported ok False
    assert "RuntimeError" in problems[0]["traceback"]
    table = runner.render_table(rows).splitlines()
    assert table[0] == "| check | case | TFLOP/s | ok | note |"
    assert table[2] == "| alpha | a | 123 | yes |  |"
    assert table[3].startswith("| beta |  |  | NO | raised RuntimeError: kernel exploded")
    json.dumps({"rows": rows, "problems": problems})               # what main() writes
    rows, problems = runner.run_checks(checks, "cpu", budget_s=1e-9, log=lambda *a, **k: None)
    assert [p["problem"].startswith("skipped") for p in problems] == [True] * 3


def test_attention_flop_convention():
    attention = _load("attention")
    # 4 * B * H * N^2 * D, half when causal, 3.5x forward for forward+backward
    assert attention.attention_flops(2, 3, 5, 8, False, "fwd") == 4 * 2 * 3 * 25 * 8
    assert attention.attention_flops(2, 3, 5, 8, True, "fwd") == 2 * 2 * 3 * 25 * 8
    assert attention.attention_flops(2, 3, 5, 8, True, "fwd+bwd") == 3.5 * 2 * 2 * 3 * 25 * 8
