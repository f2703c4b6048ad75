"""The training run's configuration: one frozen dataclass, validated once, read from TOML.

TOML layout (``fastsynth train CONFIG.toml``; every key optional except ``data``)::

    data = "shards/train"        # token shards (fastsynth.train.tokenize output)
    eval_data = "shards/eval"    # held-out shards for eval loss
    steps = 2000
    lr = 3e-3
    [model]                      # a preset plus field overrides (fastsynth.model.LlamaConfig)
    preset = "tiny"
    hidden = 128

Unknown keys are errors naming the key and the file. Relative paths are taken from the TOML
file's folder.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastsynth.errors import ConfigError, InputError
from fastsynth.model.config import LlamaConfig, RopeScaling

Schedule = Literal["cosine", "wsd", "constant"]
Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Units: steps are optimizer steps; a step consumes
    ``micro_batch_rows * grad_accum * world_size`` rows of ``seq_len`` tokens.

    - ``model``: the model shape (``[model]`` table: ``preset`` + overrides).
    - ``data`` / ``eval_data``: token-shard paths for training / the fixed held-out set.
    - ``tokenizer``: tokenizer file or folder saved with exported models ("" = none).
    - ``seq_len``: tokens per packed row; ``micro_batch_rows``: rows per forward pass;
      ``grad_accum``: micro-batches per optimizer step.
    - ``steps``: optimizer steps; ``lr``: peak learning rate; ``warmup_steps``: linear
      warm-up from 0; ``schedule``: ``cosine`` (to ``min_lr_ratio * lr`` at the last step),
      ``wsd`` (warm-up, stable, linear decay over the last ``decay_fraction`` of steps to
      ``min_lr_ratio * lr``) or ``constant``.
    - ``weight_decay`` (matrices only; norms are not decayed), ``beta1``, ``beta2``, ``eps``:
      AdamW; ``grad_clip``: global gradient-norm clip (0 = off).
    - ``seed``: initialisation and data order; ``init_std``: Normal init of matrices.
    - ``precision``: ``auto`` = bf16 autocast on CUDA, fp32 on the CPU.
    - ``device``: ``auto`` = CUDA when present. ``compile``: ``torch.compile`` the model.
    - ``activation_checkpointing``: recompute each layer's activations in backward.
    - ``loss_chunk_rows``: tokens per chunk of the LM head + cross-entropy.
    - ``attention``: backend name, or ``auto`` (``sdpa`` on the CPU; ``triton``,
      then ``flash-attn``, then ``sdpa`` on CUDA).
    - ``eval_every``: steps between evals (0 = only at the end); ``eval_batches``: batches of
      the held-out set per eval (0 = all).
    - ``log_every``: steps per metrics line; ``checkpoint_every``: steps per checkpoint (0 =
      only at the end when ``out_dir`` is set); ``keep_checkpoints``: newest kept.
    - ``out_dir``: metrics, checkpoints and the exported model go here ("" = nothing written).
    """

    model: LlamaConfig = field(default_factory=lambda: LlamaConfig.preset("tiny"))
    data: str = ""
    eval_data: str = ""
    tokenizer: str = ""
    seq_len: int = 256
    micro_batch_rows: int = 16
    grad_accum: int = 1
    steps: int = 100
    lr: float = 3e-3
    warmup_steps: int = 10
    schedule: Schedule = "cosine"
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0
    init_std: float = 0.02
    precision: Precision = "auto"
    device: str = "auto"
    compile: bool = False
    activation_checkpointing: bool = False
    loss_chunk_rows: int = 4096
    attention: str = "auto"
    eval_every: int = 0
    eval_batches: int = 0
    log_every: int = 10
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    out_dir: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.model, LlamaConfig):
            raise ConfigError(f"TrainConfig.model must be a LlamaConfig, got {type(self.model).__name__}")
        for name in ("seq_len", "micro_batch_rows", "grad_accum", "steps", "loss_chunk_rows",
                     "keep_checkpoints"):
            _positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "eval_every", "eval_batches", "checkpoint_every", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"TrainConfig.{name} must be an integer >= 0, got {v!r}")
        _positive_int("log_every", self.log_every)
        for name in ("lr", "eps", "init_std"):
            if not _number(getattr(self, name)) or not getattr(self, name) > 0:
                raise ConfigError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "grad_clip"):
            if not _number(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("beta1", "beta2", "min_lr_ratio"):
            if not _number(getattr(self, name)) or not 0 <= getattr(self, name) < 1 + (name == "min_lr_ratio"):
                raise ConfigError(f"TrainConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not _number(self.decay_fraction) or not 0 < self.decay_fraction <= 1:
            raise ConfigError(f"TrainConfig.decay_fraction must be in (0, 1], got {self.decay_fraction!r}")
        if self.schedule not in ("cosine", "wsd", "constant"):
            raise ConfigError(f"TrainConfig.schedule must be cosine, wsd or constant, got {self.schedule!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"TrainConfig.precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.warmup_steps > self.steps:
            raise ConfigError(f"TrainConfig.warmup_steps ({self.warmup_steps}) exceeds steps ({self.steps})")
        if self.seq_len > self.model.max_seq_len:
            raise ConfigError(f"TrainConfig.seq_len ({self.seq_len}) exceeds the model's "
                              f"max_seq_len ({self.model.max_seq_len})")

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def tokens_per_step(self, world_size: int = 1) -> int:
        """Token slots (rows x seq_len, padding included) consumed per optimizer step."""
        return self.micro_batch_rows * self.grad_accum * self.seq_len * world_size

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the model as its fields)."""
        d = dataclasses.asdict(self)
        d["model"] = dataclasses.asdict(self.model)
        d["model"]["name"] = self.model.name
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """The inverse of :meth:`as_dict` (e.g. a checkpoint's ``meta.json`` config)."""
        d = dict(d)
        m = dict(d.pop("model"))
        if isinstance(m.get("rope_scaling"), dict):
            m["rope_scaling"] = RopeScaling(**m["rope_scaling"])
        return cls(model=LlamaConfig(**m), **d)


# Fields that may change between a checkpoint and the run resuming from it: where things
# are written and how often, and paths (data may move). Everything else must match.
RESUMABLE_CHANGES = frozenset({"out_dir", "log_every", "eval_every", "eval_batches",
                               "checkpoint_every", "keep_checkpoints", "compile", "data",
                               "eval_data", "tokenizer", "device", "attention"})


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive_int(name: str, v: Any) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {v!r}")


_MODEL_FIELDS = {f.name for f in dataclasses.fields(LlamaConfig)} - {"name"}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
_PATH_FIELDS = ("data", "eval_data", "tokenizer", "out_dir")


def check_keys(raw: dict[str, Any], allowed: set[str] | frozenset[str], where: str,
                table: str = "") -> None:
    """:class:`ConfigError` naming ``where`` (the file), the ``table`` and every key of
    ``raw`` that is not ``allowed``, with the allowed keys."""
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s){table}: {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(allowed))}")


def model_from_mapping(raw: dict[str, Any], where: str) -> LlamaConfig:
    """A :class:`LlamaConfig` from a ``[model]`` table: ``preset`` (default ``tiny``) plus
    field overrides; unknown keys raise :class:`ConfigError` naming the key and ``where``."""
    raw = dict(raw)
    check_keys(raw, _MODEL_FIELDS | {"preset"}, where, " in [model]")
    preset = raw.pop("preset", "tiny")
    if isinstance(raw.get("rope_scaling"), dict):
        try:
            raw["rope_scaling"] = RopeScaling(**raw["rope_scaling"])
        except TypeError as e:
            raise ConfigError(f"{where}: [model.rope_scaling]: {e}") from None
    return LlamaConfig.preset(preset, **raw)


def config_from_mapping(raw: dict[str, Any], where: str = "config",
                        base: Path | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML-shaped mapping; relative paths resolve against
    ``base``. Unknown keys raise :class:`ConfigError` naming the key and ``where``."""
    raw = dict(raw)
    check_keys(raw, _TRAIN_FIELDS, where)
    if "model" in raw:
        if not isinstance(raw["model"], dict):
            raise ConfigError(f"{where}: 'model' must be a table ([model])")
        raw["model"] = model_from_mapping(raw["model"], where)
    if base is not None:
        for name in _PATH_FIELDS:
            if raw.get(name) and not str(raw[name]).startswith("builtin:"):
                raw[name] = str((base / raw[name]).resolve())
    try:
        return TrainConfig(**raw)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; syntax errors name the file and line."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        found = re.search(r"at line (\d+)", str(e))
        line = getattr(e, "lineno", None) or (int(found.group(1)) if found else None)
        raise InputError(f"not valid TOML: {e}", source=str(p), line=line) from None


def load_config(path: str | Path) -> TrainConfig:
    """:class:`TrainConfig` from a TOML file (see the module docstring)."""
    p = Path(path)
    return config_from_mapping(read_toml(p), where=str(p), base=p.parent)


def config_differences(saved: dict[str, Any], current: dict[str, Any],
                       ignore: frozenset[str] = RESUMABLE_CHANGES) -> list[str]:
    """``"key: saved -> current"`` for every differing field of two :meth:`as_dict` mappings
    (nested model fields as ``model.field``), skipping ``ignore``."""
    out: list[str] = []
    for key in sorted(set(saved) | set(current)):
        if key in ignore:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{d}" for d in config_differences(a, b, frozenset({"name"}))]
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out
