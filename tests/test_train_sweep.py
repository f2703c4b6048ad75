"""Scaling sweeps: a tiny grid end to end (runs.jsonl, fit.json, report), resuming skips
finished runs, a sweep on a token shard set equals the sweep on the corpus and tokenizer
that made it, configuration errors. The full default CPU sweep is a command, not a test
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


@pytest.fixture(scope="module")
def shards(corpus, tmp_path_factory) -> Path:
    """The corpus tokenized once by fastsynth.train.tokenize (as the run's tokenize stage
    does), with a BPE trained on all of it."""
    from fastsynth.train.tokenize import tokenize
    out = tmp_path_factory.mktemp("shards") / "set"
    tokenize(str(corpus), out, tokenizer="bpe:320", show_progress=False)
    return out


@pytest.fixture(scope="module")
def corpus_sweep(corpus, shards, tmp_path_factory):
    """The tiny sweep on the corpus, tokenized by the sweep with the shards' tokenizer."""
    out = tmp_path_factory.mktemp("sweep-corpus")
    cfg = tiny_sweep(corpus, tokenizer=str(shards / "tokenizer.json"))
    return cfg, out, sweep(cfg, out)


def test_tiny_sweep_writes_runs_fit_and_report_and_resumes(corpus_sweep):
    cfg, tmp_path, res = corpus_sweep
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
    # fit.json carries the whole fit: rebuilt, it has the same constants and the same
    # bootstrap intervals (what the run's plan stage uses instead of fitting again)
    from fastsynth.train.sweep import fit_from_json
    rebuilt = fit_from_json(fit)
    assert {k: getattr(rebuilt.constants, k) for k in ("E", "A", "B", "alpha", "beta")} == \
           pytest.approx({k: fit[k] for k in ("E", "A", "B", "alpha", "beta")}, rel=1e-12)
    assert {k: list(v) for k, v in rebuilt.param_intervals().items()} == fit["intervals_95"]
    assert rebuilt.r2 == fit["r2"] and rebuilt.bootstrap.shape == (cfg.n_bootstrap, 5)
    md = (tmp_path / "sweep.md").read_text()
    assert "Held-out check" in md and "R^2" in md and "epochs" in md
    assert "data:image/png;base64" in (tmp_path / "sweep.html").read_text()
    # rerun: every run is already there, nothing retrains (same numbers back) and the
    # fit is not redone (fit.json untouched)
    stamp = (tmp_path / "fit.json").stat().st_mtime_ns
    again = sweep(cfg, tmp_path)
    assert [r["eval_loss"] for r in again.runs] == [r["eval_loss"] for r in runs]
    assert [r["seconds"] for r in again.runs] == [r["seconds"] for r in runs]
    assert again.fit == fit and (tmp_path / "fit.json").stat().st_mtime_ns == stamp
    # one run lost from runs.jsonl (as if killed while writing it): only that run trains
    # again, to the same loss (same seed); the law fitted to the same losses is kept
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    (tmp_path / "runs.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    third = sweep(cfg, tmp_path)
    assert [r["seconds"] for r in third.runs[:-1]] == [r["seconds"] for r in runs[:-1]]
    assert third.runs[-1]["seconds"] != runs[-1]["seconds"]
    assert third.runs[-1]["eval_loss"] == runs[-1]["eval_loss"] and third.fit == fit
    # a run whose loss differs (here: edited) is another set of points: the law is refitted
    edited = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    edited[0]["eval_loss"] += 0.25
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in edited))
    refit = sweep(cfg, tmp_path)
    assert refit.fit["fit_of"] != fit["fit_of"] and refit.fit["seconds"] != fit["seconds"]
    assert json.loads((tmp_path / "fit.json").read_text())["fit_of"] == refit.fit["fit_of"]


def test_sweep_on_shards_equals_sweep_on_the_corpus_that_made_them(corpus, shards, corpus_sweep,
                                                                  tmp_path):
    """The shard set is used as-is (not re-tokenized): same split, same batches, the same
    losses bit for bit on the CPU as the sweep that tokenized the corpus itself."""
    from fastsynth.train.shards import ShardSet
    _, _, ref = corpus_sweep
    src = ShardSet(shards)
    toml = tmp_path / "s.toml"
    toml.write_text(f'corpus = "{shards}"\neval_corpus = ""\nvocab = 999\nseq_len = 64\n'
                    'micro_batch_rows = 4\nbudgets = [2000, 4000, 8000]\neval_tokens = 1024\n'
                    'heldout_permille = 100\nn_bootstrap = 10\nfit_start_stride = 50\n'
                    '[[size]]\nn_layers = 1\nhidden = 32\nlr = 1e-2\n'
                    '[[size]]\nn_layers = 2\nhidden = 32\nlr = 1e-2\n')
    assert main(["sweep", str(toml), "-o", str(tmp_path / "o")]) == 0
    runs = [json.loads(x) for x in (tmp_path / "o" / "runs.jsonl").read_text().splitlines()]
    fit = json.loads((tmp_path / "o" / "fit.json").read_text())
    # trained on the shards' tokens: their tokenizer (vocab = 999 is a corpus-only setting),
    # every document in the training or the held-out set, nothing tokenized again
    d = fit["data"]
    assert d["source"] == "shards" and d["tokenizer_fingerprint"] == src.fingerprint
    assert d["vocab_size"] == src.vocab_size and not (tmp_path / "o" / "data" / "corpus").exists()
    assert d["train_tokens"] + d["heldout_tokens"] == src.n_tokens
    assert d["train_documents"] + d["heldout_documents"] == src.n_docs
    assert all(r["key"]["tokenizer_fingerprint"] == src.fingerprint for r in runs)
    assert ref.data.fingerprint == src.fingerprint and ref.data.source == "corpus"
    # the same runs, bit for bit
    assert [(r["name"], r["n_tokens"], r["eval_loss"], r["final_train_loss"]) for r in runs] == \
           [(r["name"], r["n_tokens"], r["eval_loss"], r["final_train_loss"]) for r in ref.runs]
    assert fit["heldout"]["predicted_eval_loss"] == ref.fit["heldout"]["predicted_eval_loss"]
    # the same shard set under another path (a run directory resumed from elsewhere) is the
    # same data: nothing retrains or refits
    import shutil
    moved = shutil.copytree(shards, tmp_path / "moved")
    again = sweep(tiny_sweep(moved), tmp_path / "o")
    assert [r["seconds"] for r in again.runs] == [r["seconds"] for r in runs]
    assert again.fit["fit_of"] == fit["fit_of"] and again.fit["seconds"] == fit["seconds"]


def test_shard_inputs_are_checked(corpus, shards, tmp_path):
    """An eval shard set made with another tokenizer is refused, naming both; a folder of
    shards whose tokenizer.json was swapped is refused by the shard set's own check."""
    from fastsynth.errors import InputError
    from fastsynth.train.tokenize import tokenize
    other = tmp_path / "other"
    tokenize(str(corpus), other, tokenizer="bpe:300", show_progress=False)
    with pytest.raises(ConfigError, match="eval_corpus .*tokenizer"):
        sweep(tiny_sweep(shards, eval_corpus=str(other)), tmp_path / "o1")
    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(shards, broken)
    shutil.copy(other / "tokenizer.json", broken / "tokenizer.json")
    with pytest.raises(InputError, match="fingerprint"):
        sweep(tiny_sweep(broken), tmp_path / "o2")


def test_budgets_past_max_epochs_are_refused(shards, tmp_path):
    with pytest.raises(ConfigError, match="epochs.*max_epochs"):
        sweep(tiny_sweep(shards, budgets=(2_000, 4_000, 50_000_000)), tmp_path)


def test_sweep_config_file_and_cli_errors(tmp_path, capsys):
    good = tmp_path / "s.toml"
    good.write_text('vocab = 512\nbudgets = [1000, 2000, 4000]\n[[size]]\nn_layers = 1\n'
                    'hidden = 32\nlr = 1e-3\n[[size]]\nn_layers = 2\nhidden = 64\nlr = 1e-3\n')
    cfg = load_sweep_config(good)
    assert cfg.vocab == 512 and cfg.sizes[1] == SweepSize(2, 64, 1e-3)
    bad = tmp_path / "bad.toml"
    bad.write_text("vocab = 512\nbudget = [1]\n")
    assert main(["sweep", str(bad), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "unknown key(s): budget" in err
    bad.write_text("[[size]]\nn_layers = 1\nwidth = 32\nlr = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*size.*width"):
        load_sweep_config(bad)
    with pytest.raises(ConfigError, match="too few runs"):
        SweepConfig(sizes=(SweepSize(1, 32, 1e-3),), budgets=(1, 2, 3))
