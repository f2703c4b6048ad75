"""`fastsynth plan`: scenario, TOML and flag inputs, fit data, report files, user errors."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastsynth.cli import main
from fastsynth.plan import chinchilla_loss, rectified_law


def _run(capsys, *argv):
    rc = main(["plan", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_scenario_report(tmp_path, capsys):
    rc, out, err = _run(capsys, "--scenario", "seed-5m", "--out", str(tmp_path))
    assert rc == 0, err
    md = (tmp_path / "plan.md").read_text()
    assert "50,556" in md and "7.2e+22" in md                 # 3B x 4T at 40% MFU
    assert "INCONSISTENT" in md and "889x" in md and "SFT" in md
    assert "70B-class generator" in md and "8B generator" in md
    assert "Assumptions" in md
    for png in ("loss_vs_tokens.png", "isoflop.png", "cost_breakdown.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
        assert f"({png})" in md
    page = (tmp_path / "plan.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "budget split B vs A" in page
    assert "FLAG budget split B vs A" in out


def _write_chinchilla_csv(path, m=30):
    rng = np.random.default_rng(0)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e9), m))
    d = np.exp(rng.uniform(np.log(1e8), np.log(5e10), m))
    loss = chinchilla_loss(n, d, "epoch") * np.exp(rng.normal(0, 0.005, m))
    lines = ["n_params,n_tokens,loss"] + [f"{a},{b},{c}" for a, b, c in zip(n, d, loss)]
    path.write_text("\n".join(lines) + "\n")


def test_toml_with_chinchilla_fit_data(tmp_path, capsys):
    _write_chinchilla_csv(tmp_path / "runs.csv")
    (tmp_path / "plan.toml").write_text("""
budget = "2M"
constants = "epoch"
fit_data = "runs.csv"
[hardware]
gpu_hour_usd = 3.0
mfu = 0.35
[synthetic]
generator_params = "8B"
tokens_per_s_per_gpu = 5000
[reserved]
"model development" = 0.3
[[phase]]
name = "small"
params = "500M"
tokens = "20B"
[[phase]]
name = "big"
params = "3B"
tokens = "1T"
synthetic_share = 0.25
""")
    rc, out, err = _run(capsys, "--config", str(tmp_path / "plan.toml"), "--out",
                        str(tmp_path / "r"), "--bootstrap", "10")
    assert rc == 0, err
    md = (tmp_path / "r" / "plan.md").read_text()
    assert "Law fitted to your runs" in md and "converged" in md
    assert "EXTRAPOLATED" in md            # 1T tokens is 20x past the 50B-token data
    assert "within 10x of the data" in md  # 500M x 20B is inside it
    assert "5,000 tokens/s/GPU (measured)" in md and "model development" in md
    assert (tmp_path / "r" / "fit.png").exists()


def test_flags_rectified_fit_and_over_budget(tmp_path, capsys):
    d = np.geomspace(1e8, 4.5e9, 7)
    y = rectified_law(d, 200.0, 500.0, 0.34, 0.2)
    (tmp_path / "synth.csv").write_text(
        "n_tokens,metric\n" + "".join(f"{a},{b}\n" for a, b in zip(d, y)))
    rc, out, err = _run(capsys, "--budget", "1e5", "--phase", "main:3B:4T:0.5",
                        "--synthetic-usd-per-mtok", "1", "--fit-data",
                        str(tmp_path / "synth.csv"), "--bootstrap", "10", "--out",
                        str(tmp_path / "r"))
    assert rc == 0, err
    assert "DOES NOT FIT" in out and "over budget" in out
    md = (tmp_path / "r" / "plan.md").read_text()
    assert "| D_l |" in md and "EXTRAPOLATED" in md


@pytest.mark.parametrize("argv, needle", [
    (["--scenario", "seed-5m", "--mfu", "1.5"], "mfu"),
    (["--scenario", "seed-5m", "--mfu", "0"], "mfu"),
    (["--scenario", "seed-5m", "--budget", "-5"], "budget"),
    (["--budget", "1e6", "--phase", "a:0:1T"], "params"),
    (["--budget", "1e6", "--phase", "a:1B"], "NAME:PARAMS:TOKENS"),
    (["--budget", "1e6"], "at least one phase"),
    (["--scenario", "seed-5m", "--qa-share", "2"], "qa_share"),
    (["--scenario", "seed-5m", "--bootstrap", "-5"], "--bootstrap must be >= 0"),
    ([], "--scenario"),
])
def test_user_errors_exit_2_with_one_line(argv, needle, capsys, tmp_path):
    rc, out, err = _run(capsys, *argv, "--out", str(tmp_path))
    assert rc == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_files_are_named(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text("budget = 5e6\nbudgett = 3\n")
    rc, _, err = _run(capsys, "--config", str(tmp_path / "bad.toml"))
    assert rc == 2 and "bad.toml" in err and "budgett" in err
    (tmp_path / "syntax.toml").write_text("budget = 5e6\n[hardware\n")
    rc, _, err = _run(capsys, "--config", str(tmp_path / "syntax.toml"))
    assert rc == 2 and "syntax.toml:2" in err
    (tmp_path / "runs.csv").write_text("n_params,n_tokens,loss\n1e8,1e9,3.1\n1e8,2e9,nan\n")
    rc, _, err = _run(capsys, "--scenario", "seed-5m", "--fit-data",
                      str(tmp_path / "runs.csv"), "--out", str(tmp_path / "r"))
    assert rc == 2 and "runs.csv:3" in err and "loss" in err
    (tmp_path / "few.csv").write_text("n_params,n_tokens,loss\n1e8,1e9,3.1\n2e8,2e9,3.0\n")
    rc, _, err = _run(capsys, "--scenario", "seed-5m", "--fit-data",
                      str(tmp_path / "few.csv"), "--out", str(tmp_path / "r"))
    assert rc == 2 and "at least 5" in err


def test_console_script_runs(tmp_path):
    script = Path(sys.executable).parent / "fastsynth"      # the installed console script
    exe = [str(script), "plan", "--scenario", "seed-5m", "--out", str(tmp_path)]
    res = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout and (tmp_path / "plan.html").exists()


def test_command_help_shows_docstrings_without_rst_markup():
    from fastsynth.cli import build_parser, plain_text
    assert plain_text("See :class:`fastsynth.train.config.TrainConfig` and ``--out``.") == \
        "See fastsynth.train.config.TrainConfig and --out."
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        text = parser.format_help()
        assert "``" not in text and ":class:" not in text and ":mod:" not in text, name
