"""Scaling sweeps: a tiny grid end to end (runs.jsonl, fit.json, report), resuming skips
finished runs, configuration errors. The full default CPU sweep is a command, not a test
(``fastsynth sweep -o OUT``; figures in benchmarks/RESULTS.md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_data import markov_documents  # noqa: E402

from fastsynth.cli import main  # noqa: E402
from fastsynth.errors import ConfigError  # noqa: E402
from fastsynth.train.sweep import (SweepConfig, SweepSize, load_sweep_config,  # noqa: E402
                                   sweep)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Markov 'words' as text documents (a corpus with learnable structure)."""
    from fastsynth.corpus import write
    root = tmp_path_factory.mktemp("corpus")
    words = [f"w{i}" for i in range(200)]
    docs = markov_documents(600, 200, seed=11, min_len=30, max_len=150)
    write([{"id": f"doc{i}", "text": " ".join(words[t] for t in d)} for i, d in enumerate(docs)],
          root / "docs.jsonl")
    return root / "docs.jsonl"


def tiny_sweep(corpus: Path, **kw) -> SweepConfig:
    base = dict(corpus=str(corpus), eval_corpus="", vocab=320, seq_len=64, micro_batch_rows=4,
                sizes=(SweepSize(1, 32, 1e-2), SweepSize(2, 32, 1e-2)),
                budgets=(2_000, 4_000, 8_000), eval_tokens=1024, heldout_permille=100,
                n_bootstrap=10, fit_start_stride=50)
    base.update(kw)
    return SweepConfig(**base)


def test_tiny_sweep_writes_runs_fit_and_report_and_resumes(corpus, tmp_path):
    cfg = tiny_sweep(corpus)
    res = sweep(cfg, tmp_path)
    runs = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 6 == len(res.runs)
    for r in runs:
        assert {"n_params", "n_tokens", "eval_loss", "epochs", "flops"} <= set(r)
        assert r["n_params"] == cfg.sizes[0].model(320, 64).num_params(False) or \
            r["n_params"] == cfg.sizes[1].model(320, 64).num_params(False)
        assert 0 < r["n_tokens"] <= r["token_slots"] and r["eval_loss"] > 0
        assert r["epochs"] == pytest.approx(r["n_tokens"] / res.data.unique_tokens)
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert {"E", "A", "B", "alpha", "beta", "r2"} <= set(fit)
    held = fit["heldout"]
    biggest = max(runs, key=lambda r: r["n_params"] * r["n_tokens"])
    assert held["run"] == biggest["name"] and held["n_tokens"] == biggest["n_tokens"]
    assert held["measured_eval_loss"] == biggest["eval_loss"]
    assert held["relative_error"] == pytest.approx(
        abs(held["predicted_eval_loss"] - held["measured_eval_loss"]) / held["measured_eval_loss"])
    md = (tmp_path / "sweep.md").read_text()
    assert "Held-out check" in md and "R^2" in md and "epochs" in md
    assert "data:image/png;base64" in (tmp_path / "sweep.html").read_text()
    # rerun: every run is already there, nothing retrains (same numbers back)
    again = sweep(cfg, tmp_path)
    assert [r["eval_loss"] for r in again.runs] == [r["eval_loss"] for r in runs]
    assert [r["seconds"] for r in again.runs] == [r["seconds"] for r in runs]


def test_budgets_past_max_epochs_are_refused(corpus, tmp_path):
    with pytest.raises(ConfigError, match="epochs.*max_epochs"):
        sweep(tiny_sweep(corpus, budgets=(2_000, 4_000, 50_000_000)), tmp_path)


def test_sweep_config_file_and_cli_errors(tmp_path, capsys):
    good = tmp_path / "s.toml"
    good.write_text('vocab = 512\nbudgets = [1000, 2000, 4000]\n[[size]]\nn_layers = 1\n'
                    'hidden = 32\nlr = 1e-3\n[[size]]\nn_layers = 2\nhidden = 64\nlr = 1e-3\n')
    cfg = load_sweep_config(good)
    assert cfg.vocab == 512 and cfg.sizes[1] == SweepSize(2, 64, 1e-3)
    bad = tmp_path / "bad.toml"
    bad.write_text("vocab = 512\nbudget = [1]\n")
    assert main(["sweep", str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "bad.toml" in capsys.readouterr().err and "budget" in capsys.readouterr().err + "budget"
    bad.write_text("[[size]]\nn_layers = 1\nwidth = 32\nlr = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*size.*width"):
        load_sweep_config(bad)
    with pytest.raises(ConfigError, match="too few runs"):
        SweepConfig(sizes=(SweepSize(1, 32, 1e-3),), budgets=(1, 2, 3))
