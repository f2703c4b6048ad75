"""The training half of a run: ``tokenize`` (mix -> token shards) and ``train`` (a small
sweep on those shards: every run's held-out eval loss and the law fitted to them).

Each wraps a function of :mod:`fastsynth.train`. Where that function is not in this
fastsynth yet, the stage reports itself **pending** with the reason and runs nothing
(the run's manifest and report say so); when the function lands, the stage runs.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastsynth.run.config import check, option
from fastsynth.run.rundir import PartResult
from fastsynth.run.stage import Global, Stage, View


def _missing(module: str, name: str) -> str | None:
    """None if ``module.name`` exists, else why the stage waits."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return f"{module} is not in this fastsynth yet (the training issues add it)"
        return f"{module} cannot be imported here ({e})"
    except ImportError as e:
        return f"{module} cannot be imported here ({e})"
    try:
        getattr(mod, name)
    except AttributeError:
        return f"{module}.{name} is not in this fastsynth yet (the training issues add it)"
    return None


def shards_dir(root: str | Path) -> Path:
    """The tokenize stage's shard set (docs/token-shards.md) in run directory ``root``."""
    return Path(root) / "tokenize" / "shards"


@dataclass(frozen=True)
class TokenizeConfig:
    # a BPE trained on the mix by default: the train stage's tiny models would be mostly
    # embedding with SmolLM2's 49,152-token vocabulary. Only the documents the train stage
    # trains on teach it (TokenizeJob): its held-out documents stay unseen.
    tokenizer: str = option("bpe:1024", "tokenizer: bpe:N (N tokens trained on the mix's training "
                                        "side), embedded (SmolLM2's), or a tokenizer.json/.gguf path")
    shard_tokens: int = option(1 << 24, "most tokens per shard")

    def __post_init__(self) -> None:
        check(self.shard_tokens >= 1, "tokenize.shard_tokens", f"must be >= 1, got {self.shard_tokens}")


@dataclass(frozen=True)
class TokenizeJob:
    """What the tokenize step runs with: its stage's config and the train stage's
    ``heldout_permille``, so that a ``bpe:N`` tokenizer learns its merges only from the
    documents the sweep will train on (the sweep holds out documents of the shard set by
    :func:`fastsynth.train.sweep.is_heldout`; held-out text must stay unseen, as in the
    stand-alone sweep on a corpus). Built by :func:`fastsynth.run.pipeline.run`."""

    config: TokenizeConfig
    heldout_permille: int


def _bpe_on_training_side(spec_text: str, source: str, permille: int) -> Any:
    """``spec_text`` loaded; a ``bpe:N`` trained on the documents of ``source`` that are
    not held out at ``permille`` (its ``train_documents`` limit counts those)."""
    import itertools

    from fastsynth.corpus import read
    from fastsynth.train.sweep import is_heldout
    from fastsynth.train.vocab import load_tokenizer, parse_tokenizer

    spec = parse_tokenizer(spec_text)
    if spec.kind != "bpe":
        return spec_text
    texts = (r["text"] for r in read(source) if not is_heldout(str(r["id"]), permille))
    if spec.train_documents is not None:
        texts = itertools.islice(texts, spec.train_documents)
    return load_tokenizer(spec, texts)


def tokenize_mix(job: TokenizeJob | TokenizeConfig, view: View) -> PartResult:
    """The mix tokenized into :func:`shards_dir`. Given a bare :class:`TokenizeConfig`
    (no train stage to hold documents out for), a BPE learns from the whole mix."""
    from fastsynth.train.tokenize import tokenize

    config, permille = (job.config, job.heldout_permille) if isinstance(job, TokenizeJob) else (job, 0)
    (rel,) = view.files("mix", "out")
    src = str(view.path(rel))
    out = shards_dir(view.root)
    tokenizer = _bpe_on_training_side(config.tokenizer, src, permille) if permille else config.tokenizer
    s = tokenize(src, out, tokenizer=tokenizer,
                 shard_tokens=config.shard_tokens, overwrite=True, show_progress=False)
    n_rej = int(s.documents_rejected)
    # empty documents hold no tokens: they leave the data here, counted as rejects
    by_reason = dict(s.rejected)
    if s.documents_empty:
        by_reason["empty_after_tokenization"] = int(s.documents_empty)
    return PartResult(n_in=int(s.documents_read), n_out=int(s.documents_tokenized),
                      n_rejected=n_rej + int(s.documents_empty), rejected_by_reason=by_reason,
                      info={"summary": s.as_dict()})


TOKENIZE = Stage("tokenize", TokenizeConfig, (Global("out", tokenize_mix, counts=True),),
                 needs=("mix",), output=None, unit="records",
                 description="tokenize the mix into token shards",
                 pending=lambda: _missing("fastsynth.train.tokenize", "tokenize"))


# The sweep, its held-out evaluation and the law fit are one stage: fastsynth.train.sweep
# does all three in one call (it evaluates every run on fixed held-out batches and fits
# the law with a held-out check), so separate ``evaluate``/``fit`` stages would only
# re-read its files. The stage's settings are the sweep's, declared once here.
def _parse_size(text: str) -> "Any":
    """``"LxH:lr"`` (e.g. ``"2x64:2.5e-3"``) -> a SweepSize."""
    from fastsynth.errors import ConfigError
    from fastsynth.train.sweep import SweepSize
    try:
        shape, lr = text.split(":")
        layers, hidden = shape.lower().split("x")
        return SweepSize(int(layers), int(hidden), float(lr))
    except ValueError:
        raise ConfigError(f"train.sizes: {text!r} is not LAYERSxHIDDEN:LR (e.g. 2x64:2.5e-3)") from None


@dataclass(frozen=True)
class SweepConfig:
    """Settings of the sweep stage (:class:`fastsynth.train.sweep.SweepConfig`, whose
    defaults are the default CPU sweep of docs/training.md)."""

    sizes: tuple[str, ...] = option(("1x32:3e-3", "2x64:2.5e-3", "3x96:2e-3"),
                                    "model sizes LAYERSxHIDDEN:PEAK_LR (heads of 32 dims)")
    budgets: tuple[int, ...] = option((50_000, 100_000, 200_000, 400_000), "training tokens per run")
    seq_len: int = option(256, "packed sequence length")
    micro_batch_rows: int = option(2, "rows per optimizer step")
    heldout_permille: int = option(20, "documents of the mix held out for eval loss (by id hash), per mille")
    eval_tokens: int = option(32_768, "held-out token slots evaluated per run")
    max_epochs: float = option(4.0, "largest allowed passes over the unique training tokens")
    n_bootstrap: int = option(200, "bootstrap refits for the law's intervals")
    fit_start_stride: int = option(1, "use every k-th start of the fit's start grid")

    def __post_init__(self) -> None:
        self.sweep_config("check")   # the sweep's own checks, once

    def sweep_config(self, corpus: str) -> "Any":
        """The sweep on ``corpus`` (here: the tokenize stage's shard set, whose tokenizer
        sets the models' vocabulary)."""
        from fastsynth.train.sweep import SweepConfig as TrainSweepConfig
        return TrainSweepConfig(corpus=corpus, eval_corpus="",
                                sizes=tuple(_parse_size(s) for s in self.sizes),
                                budgets=tuple(self.budgets), seq_len=self.seq_len,
                                micro_batch_rows=self.micro_batch_rows,
                                heldout_permille=self.heldout_permille, eval_tokens=self.eval_tokens,
                                max_epochs=self.max_epochs, n_bootstrap=self.n_bootstrap,
                                fit_start_stride=self.fit_start_stride)


def run_dir_name(n_layers: int, hidden: int, budget: int) -> str:
    return f"{n_layers}x{hidden}-{budget}"


def _curve_config(base: "Any", curves: Path) -> "Any":
    """``base`` (a train.sweep.SweepConfig) whose runs write their metrics (loss vs tokens)
    to ``curves/LxH-BUDGET/metrics.jsonl``: the sweep keeps only final losses and
    fastsynth.train is not this stage's to change, so the per-run TrainConfig gets an
    ``out_dir`` here. The sweep asks for a run's TrainConfig just before training it (and
    only for runs not yet in runs.jsonl), so a folder left by a killed run is cleared then."""
    from fastsynth.train.sweep import SweepConfig as TrainSweepConfig

    @dataclass(frozen=True)
    class _WithCurves(TrainSweepConfig):
        def train_config(self, size: Any, budget: int, vocab: int | None = None) -> Any:
            tc = super().train_config(size, budget, vocab)
            d = curves / run_dir_name(size.n_layers, size.hidden, budget)
            shutil.rmtree(d, ignore_errors=True)
            return dataclasses.replace(tc, out_dir=str(d), keep_checkpoints=1)

    return _WithCurves(**{f.name: getattr(base, f.name) for f in dataclasses.fields(TrainSweepConfig)})


def sweep_mix(config: SweepConfig, view: View) -> PartResult:
    """The sweep on the tokenize stage's shards (the mix, tokenized once): the sweep splits
    their documents by a hash of each record id into training and held-out sets, trains
    the grid, evaluates every run on the same held-out batches and fits the law."""
    from fastsynth.train.sweep import sweep

    gdir = view.global_dir("train")
    out = gdir / "sweep"
    cfg = _curve_config(config.sweep_config(str(shards_dir(view.root))), gdir / "runs")
    try:
        res = sweep(cfg, out, show_progress=False)
    except (ZeroDivisionError, OverflowError) as e:
        # the law's optimum came out degenerate (e.g. an exponent so large that N^alpha
        # overflows); the runs stay in runs.jsonl, so a re-run only refits
        from fastsynth.errors import ConfigError
        raise ConfigError(f"train: the law fitted to the sweep is degenerate ({e}); use more "
                          "starts (fit_start_stride = 1) or more runs, then re-run") from None
    n = len(config.sizes) * len(config.budgets)
    fit = {k: v for k, v in res.fit.items() if k != "config"}
    info = {"runs": [{k: v for k, v in r.items() if k != "key"} for r in res.runs], "fit": fit,
            "unique_tokens": res.data.unique_tokens if res.data else None,
            "heldout_tokens": res.data.heldout_tokens if res.data else None,
            "data": res.data.as_dict() if res.data else None,
            "files": {"runs": str((out / "runs.jsonl").relative_to(view.root)),
                      "fit": str((out / "fit.json").relative_to(view.root)),
                      **{k: str(Path(v).relative_to(view.root)) for k, v in res.report.items()}},
            "curves": str((gdir / "runs").relative_to(view.root))}
    json.dumps(info)  # the manifest must be able to hold it
    return PartResult(n_in=n, n_out=len(res.runs), n_rejected=n - len(res.runs), info=info)


TRAIN = Stage("train", SweepConfig, (Global("sweep", sweep_mix, counts=True),), needs=("tokenize",),
              unit="runs",
              description="a small sweep of model sizes x token budgets on the mix, each run's "
                          "held-out eval loss, and the law fitted to them (with a held-out check)",
              pending=lambda: _missing("fastsynth.train.sweep", "sweep"))
