"""``fastsynth sweep [CONFIG.toml] -o OUT``: a scaling sweep and the law fitted to it.

Trains a grid of small models x token budgets (default: 3 sizes x 4 budgets on
``builtin:python-stdlib`` with a 2,048-token BPE, about 15-20 minutes on 2 CPU cores), fits
L(N, D) = E + A/N^alpha + B/D^beta to the held-out losses and checks it by predicting the
largest-compute run from the others. Writes ``OUT/runs.jsonl``, ``OUT/fit.json`` and the
report ``OUT/sweep.md`` / ``OUT/sweep.html``. Rerunning skips finished runs.

``corpus`` is a corpus (tokenized once, into ``OUT/data``) or a token shard set folder
written by ``fastsynth tokenize`` (used as it is, with its own tokenizer: ``vocab`` and
``tokenizer`` then do not apply); its documents are split by record id into training and
held-out sets unless ``eval_corpus`` names the held-out data.

TOML layout (every key optional; see :class:`fastsynth.train.sweep.SweepConfig`)::

    corpus = "docs.jsonl"         # or a shard set folder: corpus = "shards/"
    vocab = 2048
    budgets = [40000, 80000, 160000, 320000]
    [[size]]
    n_layers = 2
    hidden = 64
    lr = 4e-3
"""
from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("sweep", help="scaling sweep: train a grid of small models, fit L(N, D)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", metavar="CONFIG.toml",
                   help="sweep configuration (default: the CPU sweep on the built-in corpus)")
    p.add_argument("-o", "--out", default="sweep", help="output folder (default: sweep)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from fastsynth.train.sweep import SweepConfig, load_sweep_config, sweep

    config = load_sweep_config(args.config) if args.config else SweepConfig()
    res = sweep(config, args.out)
    f, h = res.fit, res.fit["heldout"]
    print(f"{len(res.runs)} runs in {res.seconds / 60:.1f} min; L = {f['E']:.3f} + "
          f"{f['A']:.4g}/N^{f['alpha']:.3f} + {f['B']:.4g}/D^{f['beta']:.3f}, "
          f"R^2 = {f['r2']:.4f}; held-out {h['run']}: predicted {h['predicted_eval_loss']:.4f}, "
          f"measured {h['measured_eval_loss']:.4f} ({100 * h['relative_error']:.2f}% off); "
          f"report: {res.report['html']}", file=sys.stderr)
    return 0
