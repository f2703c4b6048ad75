"""The training half of a run: ``tokenize`` (mix -> token shards), ``train`` (a small
sweep), ``evaluate`` and ``fit`` (the law fitted to the sweep).

Each wraps a function of :mod:`fastsynth.train`. Where that function is not in this
fastsynth yet, the stage reports itself **pending** with the reason and runs nothing
(the run's manifest and report say so); when the function lands, the stage runs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

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


@dataclass(frozen=True)
class TokenizeConfig:
    tokenizer: str = option("embedded", "tokenizer: embedded (SmolLM2's), bpe:N (trained on the mix), "
                                        "or a tokenizer.json/.gguf path")
    shard_tokens: int = option(1 << 24, "most tokens per shard")

    def __post_init__(self) -> None:
        check(self.shard_tokens >= 1, "tokenize.shard_tokens", f"must be >= 1, got {self.shard_tokens}")


def tokenize_mix(config: TokenizeConfig, view: View) -> PartResult:
    from fastsynth.train.tokenize import tokenize

    (rel,) = view.files("mix", "out")
    out = view.global_dir("tokenize").parent / "shards"
    s = tokenize(str(view.path(rel)), out, tokenizer=config.tokenizer,
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


# The sweep, evaluation and fit stages have no settings until their work is wired in:
# a setting that nothing reads would be a promise the run cannot keep.
@dataclass(frozen=True)
class SweepConfig:
    """Settings of the sweep stage (none yet: the stage is pending)."""


@dataclass(frozen=True)
class EvalConfig:
    """Settings of the evaluation stage (none yet: the stage is pending)."""


@dataclass(frozen=True)
class FitConfig:
    """Settings of the law-fit stage (none yet: the stage is pending)."""


def _SWEEP_PENDING() -> str:
    """These stages have no phases yet: always pending, saying what they wait for."""
    return (_missing("fastsynth.train.sweep", "sweep")
            or "fastsynth.train.sweep exists but fastsynth run does not call it yet")


TRAIN = Stage("train", SweepConfig, (), needs=("tokenize",), unit="runs",
              description="a small sweep of model sizes x token budgets", pending=_SWEEP_PENDING)
EVALUATE = Stage("evaluate", EvalConfig, (), needs=("train",), unit="runs",
                 description="held-out loss of every sweep run", pending=_SWEEP_PENDING)
FIT = Stage("fit", FitConfig, (), needs=("evaluate",), unit="points",
            description="the Chinchilla law fitted to the sweep, with bootstrap intervals",
            pending=_SWEEP_PENDING)
