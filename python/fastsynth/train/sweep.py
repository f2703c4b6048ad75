"""Scaling sweeps: train a grid of small models x token budgets, fit L(N, D), check it.

``sweep(SweepConfig(...), out)`` (docs/training.md, "Sweeps"):

1. **Data.** The input is a corpus or a token shard set (docs/token-shards.md). A corpus
   is tokenized once (:func:`fastsynth.train.tokenize`; by default with a byte-level BPE of
   ``vocab`` tokens trained on its training part); a shard set is used as it is (its
   tokenizer and fingerprint come with it). The documents are then split by a hash of each
   record id into a training set and a fixed held-out set (``heldout_permille``), shard
   sets under ``OUT/data`` (:func:`prepare_data`). Unique training tokens are
   counted: every run reports its epochs (tokens trained / unique tokens), and a grid whose
   largest budget exceeds ``max_epochs`` is refused (Muennighoff et al. 2023: past ~4 epochs
   repeated tokens are worth far less than fresh ones, which bends the law being fitted).
2. **Runs.** Every (size, budget) pair trains from scratch with a cosine schedule that ends
   at the budget (Chinchilla's Approach 3 convention: one schedule per run) and records its
   final loss on the fixed held-out batches. ``OUT/runs.jsonl`` gets one line per finished
   run; rerunning the sweep skips the runs already there (same settings).
3. **Fit.** :func:`fastsynth.plan.fit_chinchilla` on (N, D, eval loss) of all runs, with
   ``N`` = **non-embedding** parameters (embedding rows are lookups, not compute; with a
   2,048-token vocabulary they would be most of a tiny model's count — Kaplan et al. 2020
   count N the same way) and ``D`` = real (non-padding) training tokens.
4. **Held-out check.** The law is fitted again without the largest-compute run (C = 6ND)
   and predicts that run's eval loss: the measure-small-extrapolate step, on our own data.
5. ``OUT/fit.json`` and the report ``OUT/sweep.md`` / ``OUT/sweep.html`` (runs, the law with
   R^2 and bootstrap intervals, the held-out check, the compute-optimal point it implies).

The run layer wraps :func:`sweep` as a stage; it takes only the frozen config and the folder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastsynth.errors import ConfigError
from fastsynth.model.config import LlamaConfig
from fastsynth.train.config import check_keys

DEFAULT_CORPUS = "builtin:python-stdlib:train"
DEFAULT_EVAL_CORPUS = "builtin:python-stdlib:eval"


@dataclass(frozen=True)
class SweepSize:
    """One model of the grid: ``n_layers`` x ``hidden`` (heads of 32 dims, MHA, SwiGLU at
    ~8/3 x hidden rounded up to 8) trained at peak learning rate ``lr``."""

    n_layers: int
    hidden: int
    lr: float

    def __post_init__(self) -> None:
        if not isinstance(self.n_layers, int) or self.n_layers < 1:
            raise ConfigError(f"SweepSize.n_layers must be a positive integer, got {self.n_layers!r}")
        if not isinstance(self.hidden, int) or self.hidden < 32 or self.hidden % 32:
            raise ConfigError(f"SweepSize.hidden must be a positive multiple of 32, got {self.hidden!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ConfigError(f"SweepSize.lr must be > 0, got {self.lr!r}")

    def model(self, vocab: int, seq_len: int) -> LlamaConfig:
        heads = self.hidden // 32
        return LlamaConfig(n_layers=self.n_layers, hidden=self.hidden, n_heads=heads,
                           n_kv_heads=heads, head_dim=32, ffn=(self.hidden * 8 // 3 + 7) // 8 * 8,
                           vocab=vocab, max_seq_len=seq_len, tied=True,
                           name=f"sweep-{self.n_layers}x{self.hidden}")


# The default CPU grid (docs/training.md, "The default CPU sweep"): non-embedding N of
# 12.5k, 100k and 332k (27x apart); budgets doubling from 50k to 400k tokens, i.e. 98 to 781
# steps of 512 tokens. Small batches because on 2 cores steps, not tokens, are what lets a
# tiny model leave the unigram plateau (loss ~ the corpus' unigram entropy) within budget;
# a law fitted inside that plateau is noise (R^2 0.5 in our first try, benchmarks/RESULTS.md).
# Peak learning rates: 3e-3 beat 1e-3, 6e-3 and 3e-2 for the 2x64 model over 300 steps;
# larger models take a little less.
DEFAULT_SIZES = (SweepSize(1, 32, 3e-3), SweepSize(2, 64, 2.5e-3), SweepSize(3, 96, 2e-3))
DEFAULT_BUDGETS = (50_000, 100_000, 200_000, 400_000)


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: ``sizes`` x ``budgets`` (training tokens per run) on ``corpus``.

    ``corpus``: anything :func:`fastsynth.corpus.read` accepts, or a token shard set folder
    (used as-is: its tokenizer, vocabulary and fingerprint are the sweep's).
    ``eval_corpus``: the held-out documents, a corpus or a shard set with the training
    data's tokenizer ("" = hold out ``heldout_permille`` of ``corpus`` by a hash of each
    id). ``tokenizer``: for a corpus, any spec :func:`fastsynth.train.tokenize` takes
    ("" = a ``bpe:vocab`` trained on the training part only); ignored for a shard set.
    ``vocab``: that BPE's vocabulary (the model's vocabulary is the tokenizer's size);
    ``seq_len`` / ``micro_batch_rows``: the
    packed batch (one optimizer step = one micro-batch); ``heldout_permille``: share of
    documents held out (by id hash); ``eval_tokens``: held-out token slots evaluated per
    run (the same batches for every run); ``warmup_fraction`` / ``min_lr_ratio``: the
    cosine schedule; ``max_epochs``: largest allowed passes over the unique training
    tokens; ``n_bootstrap``: bootstrap refits for the fit's intervals; ``fit_start_stride``:
    use every k-th start of the fit's 4,500-start grid (1 = all, the published procedure).
    """

    corpus: str = DEFAULT_CORPUS
    eval_corpus: str = DEFAULT_EVAL_CORPUS
    tokenizer: str = ""
    vocab: int = 1024
    sizes: tuple[SweepSize, ...] = DEFAULT_SIZES
    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    seq_len: int = 256
    micro_batch_rows: int = 2
    heldout_permille: int = 20
    eval_tokens: int = 32_768
    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    max_epochs: float = 4.0
    seed: int = 0
    n_bootstrap: int = 200
    fit_start_stride: int = 1

    def __post_init__(self) -> None:
        if not self.sizes or not all(isinstance(s, SweepSize) for s in self.sizes):
            raise ConfigError("SweepConfig.sizes must be a non-empty tuple of SweepSize")
        if not self.budgets or not all(isinstance(b, int) and b > 0 for b in self.budgets):
            raise ConfigError(f"SweepConfig.budgets must be positive token counts, got {self.budgets!r}")
        if len(self.sizes) * len(self.budgets) < 6:
            raise ConfigError(f"SweepConfig: {len(self.sizes)} sizes x {len(self.budgets)} budgets "
                              f"give too few runs: the law has 5 parameters and one run is held "
                              f"out for the check; use at least 6 runs")
        for name in ("vocab", "seq_len", "micro_batch_rows", "eval_tokens", "heldout_permille",
                     "fit_start_stride"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"SweepConfig.{name} must be a positive integer, got {v!r}")
        for name in ("corpus", "eval_corpus", "tokenizer"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"SweepConfig.{name} must be a string, got {getattr(self, name)!r}")
        if not self.corpus:
            raise ConfigError("SweepConfig.corpus must name a corpus or a token shard set folder")
        if self.heldout_permille >= 500:
            raise ConfigError(f"SweepConfig.heldout_permille must be < 500, got {self.heldout_permille}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"SweepConfig.warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if not self.max_epochs > 0:
            raise ConfigError(f"SweepConfig.max_epochs must be > 0, got {self.max_epochs!r}")

    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch_rows

    def train_config(self, size: SweepSize, budget: int, vocab: int | None = None) -> "Any":
        """The :class:`~fastsynth.train.config.TrainConfig` of one run; ``vocab``: the
        model's vocabulary (the data's tokenizer size; default ``self.vocab``)."""
        from fastsynth.train.config import TrainConfig
        steps = max(1, round(budget / self.tokens_per_step()))
        return TrainConfig(model=size.model(vocab or self.vocab, self.seq_len), seq_len=self.seq_len,
                           micro_batch_rows=self.micro_batch_rows, steps=steps, lr=size.lr,
                           warmup_steps=min(steps, max(1, round(self.warmup_fraction * steps))),
                           schedule="cosine", min_lr_ratio=self.min_lr_ratio,
                           weight_decay=self.weight_decay, seed=self.seed, log_every=max(1, steps // 10),
                           device="cpu")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ TOML
_SWEEP_KEYS = {f.name for f in dataclasses.fields(SweepConfig)}


def sweep_config_from_mapping(raw: dict[str, Any], where: str = "config") -> SweepConfig:
    """A :class:`SweepConfig` from a TOML-shaped mapping: top-level fields, ``budgets`` a list
    of token counts, ``[[size]]`` tables of ``n_layers``, ``hidden``, ``lr``. Unknown keys
    raise :class:`ConfigError` naming the key and ``where``."""
    raw = dict(raw)
    check_keys(raw, (_SWEEP_KEYS - {"sizes"}) | {"size"}, where)
    sizes = raw.pop("size", None)
    if sizes is not None:
        parsed = []
        for i, s in enumerate(sizes):
            check_keys(s, {"n_layers", "hidden", "lr"}, where, f" in [[size]] #{i + 1}")
            try:
                parsed.append(SweepSize(**s))
            except TypeError as e:
                raise ConfigError(f"{where}: [[size]] #{i + 1}: {e}") from None
        raw["sizes"] = tuple(parsed)
    if "budgets" in raw:
        raw["budgets"] = tuple(raw["budgets"])
    return SweepConfig(**raw)


def load_sweep_config(path: str | Path) -> SweepConfig:
    from fastsynth.train.config import read_toml
    return sweep_config_from_mapping(read_toml(path), where=str(path))


# ------------------------------------------------------------------ data
@dataclass
class SweepData:
    """The sweep's token data: ``train``/``heldout`` shard set folders, their token and
    document counts, the tokenizer (``tokenizer``: its tokenizer.json; ``fingerprint``:
    its SHA-256, shared by both sets; ``vocab_size``), where the tokens came from
    (``source``: ``"corpus"`` = tokenized by this sweep, ``"shards"`` = an existing shard
    set used as-is; ``source_path``) and ``seconds`` spent preparing them."""

    train: Path                  # shard set folder
    heldout: Path
    unique_tokens: int           # tokens in the training shard set
    heldout_tokens: int
    tokenizer: Path              # tokenizer.json
    seconds: float
    fingerprint: str = ""
    vocab_size: int = 0
    train_documents: int = 0
    heldout_documents: int = 0
    source: str = "corpus"
    source_path: str = ""
    source_key: str = ""         # for a shard set: a hash of its content (_shards_key)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "source_path": self.source_path,
                "tokenizer_fingerprint": self.fingerprint, "vocab_size": self.vocab_size,
                "train": str(self.train), "heldout": str(self.heldout),
                "train_tokens": self.unique_tokens, "heldout_tokens": self.heldout_tokens,
                "train_documents": self.train_documents,
                "heldout_documents": self.heldout_documents}


def is_heldout(record_id: str, permille: int) -> bool:
    """The sweep's split rule: a document is held out if the CRC-32 of its record id
    (UTF-8) mod 1000 is below ``permille``. The run's tokenize stage applies it too, so
    its BPE learns only from the documents the sweep trains on."""
    return zlib.crc32(record_id.encode("utf-8")) % 1000 < permille


def is_shard_set(path: str | Path) -> bool:
    """True if ``path`` is a token shard set folder (docs/token-shards.md: a folder whose
    ``manifest.json`` declares the shard format); the sweep then trains on its tokens as
    they are instead of reading a corpus."""
    from fastsynth.train.shards import FORMAT, MANIFEST
    p = Path(path)
    m = p / MANIFEST
    if not (p.is_dir() and m.is_file()):
        return False
    try:
        return json.loads(m.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# Documents copied per batch when a shard set is split: bounds the memory of a split to a
# few batches of tokens whatever the set's size.
_SPLIT_BATCH = 4096


def split_shards(source: Any, permille: int, train_dir: Path, heldout_dir: Path,
                 show_progress: bool | None = None) -> tuple[int, int]:
    """Copy the documents of the shard set ``source`` (a :class:`ShardSet`) into two shard
    sets with its tokenizer: ``heldout_dir`` gets the documents whose record id hashes
    (CRC-32 of its UTF-8, mod 1000) below ``permille``, ``train_dir`` the others, both in
    the source's document order. Returns (training, held-out) document counts."""
    from fastsynth.progress import progress
    from fastsynth.train.shards import ShardWriter

    held = np.fromiter((is_heldout(source.record_id(i), permille) for i in range(source.n_docs)),
                       dtype=bool, count=source.n_docs)
    n_held = int(held.sum())
    n_train = source.n_docs - n_held
    if not n_held or not n_train:
        raise ConfigError(f"{source.dir}: {n_train} training and {n_held} held-out documents; "
                          f"both parts need documents (change heldout_permille)")
    bar = progress(total=source.n_docs, desc="split", unit="doc", enabled=show_progress)
    for part, mask, folder in (("train", ~held, train_dir), ("heldout", held, heldout_dir)):
        w = ShardWriter(folder, vocab_size=source.vocab_size, tokenizer_json=source.tokenizer_json,
                        fingerprint=source.fingerprint, separator=source.manifest["separator"],
                        separator_id=source.separator_id, overwrite=True)
        try:
            idx = np.flatnonzero(mask)
            for k in range(0, idx.size, _SPLIT_BATCH):
                sel = idx[k:k + _SPLIT_BATCH]
                w.add_flat(np.concatenate([source.doc(int(i)) for i in sel]),
                           source.lengths[sel], [source.record_id(int(i)) for i in sel])
                bar.update(sel.size)
        except BaseException:
            w.abort()
            bar.close()
            raise
        w.close({"made_by": {"split_of": str(source.dir), "part": part,
                             "heldout_permille": permille,
                             "rule": "held out if crc32(record id, UTF-8) % 1000 < heldout_permille"}})
    bar.close()
    return n_train, n_held


def _shards_key(path: Path) -> dict[str, Any]:
    """What identifies a shard set's content: its tokenizer, counts and shard checksums
    (not its path: a run directory resumed under another path, or a copied set, is the
    same data)."""
    m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    return {"fingerprint": m.get("tokenizer_fingerprint"),
            "documents": m.get("documents"), "tokens": m.get("tokens"),
            "shards": [(s.get("name"), s.get("bin_crc32")) for s in m.get("shards", [])]}


def _open_heldout_tokenizer(train_set: Any, where: str) -> Any:
    """The training set's tokenizer, loaded, for tokenizing a held-out corpus with it."""
    from fastsynth.train.vocab import load_tokenizer
    tok = load_tokenizer(str(train_set.dir / "tokenizer.json"))
    if tok.fingerprint != train_set.fingerprint or tok.separator_id != train_set.separator_id:
        raise ConfigError(f"{where}: the tokenizer.json beside the shards loads as fingerprint "
                          f"{tok.fingerprint[:12]} / separator id {tok.separator_id}, the set says "
                          f"{train_set.fingerprint[:12]} / {train_set.separator_id}")
    return tok


def prepare_data(config: SweepConfig, out: Path, show_progress: bool | None = None) -> SweepData:
    """The training and held-out shard sets of the sweep (reused when ``out/data`` already
    holds them for the same inputs; ``out/data/split.json`` records what they were made of).

    * ``config.corpus`` a **shard set** (:func:`is_shard_set`): its tokens are used as they
      are. Without ``eval_corpus`` its documents are split by record id
      (:func:`split_shards`) into ``out/data/train`` and ``out/data/heldout``; with one,
      the set itself is the training data and the held-out data is ``eval_corpus`` — a
      shard set with the same tokenizer fingerprint, or a corpus tokenized with the set's
      tokenizer.
    * ``config.corpus`` a **corpus**: tokenized once into ``out/data/corpus`` (with
      ``tokenizer``, or a ``bpe:vocab`` trained on the training part's documents only, so
      no held-out text shapes the vocabulary) and split like a shard set; with
      ``eval_corpus``, tokenized into ``out/data/train`` and ``eval_corpus`` into
      ``out/data/heldout`` with the same tokenizer.

    Either way the split and everything after it is the same code, so a sweep on a shard
    set equals a sweep on the corpus and tokenizer that produced it.
    """
    from fastsynth.train.shards import ShardSet
    from fastsynth.train.tokenize import tokenize
    from fastsynth.train.vocab import load_tokenizer, parse_tokenizer

    t0 = time.perf_counter()
    data = out / "data"
    from_shards = is_shard_set(config.corpus)
    eval_shards = bool(config.eval_corpus) and is_shard_set(config.eval_corpus)
    key: dict[str, Any] = {"heldout_permille": config.heldout_permille}
    if from_shards:
        key["shards"] = _shards_key(Path(config.corpus))
    else:
        key.update(corpus=config.corpus, tokenizer=config.tokenizer or f"bpe:{config.vocab}")
    key["eval"] = (_shards_key(Path(config.eval_corpus)) if eval_shards else config.eval_corpus)
    stamp = data / "split.json"
    fresh = not (stamp.is_file() and json.loads(stamp.read_text()) == key)
    if fresh:
        stamp.unlink(missing_ok=True)   # the data below is being remade: not valid until restamped
        data.mkdir(parents=True, exist_ok=True)
    train_dir, held_dir = data / "train", data / "heldout"
    if from_shards and config.eval_corpus:
        train_dir = Path(config.corpus)
    elif from_shards:
        if fresh:
            split_shards(ShardSet(config.corpus), config.heldout_permille, train_dir, held_dir,
                         show_progress)
    elif fresh and config.eval_corpus:
        tokenize(config.corpus, train_dir, tokenizer=config.tokenizer or f"bpe:{config.vocab}",
                 overwrite=True, show_progress=show_progress)
    elif fresh:
        if config.tokenizer:
            tok: Any = config.tokenizer
        else:
            # the BPE learns from the training part only: held-out text stays unseen
            from fastsynth.corpus import read
            spec = parse_tokenizer(f"bpe:{config.vocab}")
            tok = load_tokenizer(spec, (r["text"] for r in read(config.corpus)
                                        if not is_heldout(str(r["id"]), config.heldout_permille)))
        tokenize(config.corpus, data / "corpus", tokenizer=tok, overwrite=True,
                 show_progress=show_progress)
        split_shards(ShardSet(data / "corpus"), config.heldout_permille, train_dir, held_dir,
                     show_progress)
    train_set = ShardSet(train_dir, verify=fresh)
    if eval_shards:
        held_dir = Path(config.eval_corpus)
    elif config.eval_corpus and fresh:
        tokenize(config.eval_corpus, held_dir, overwrite=True, show_progress=show_progress,
                 tokenizer=_open_heldout_tokenizer(train_set, config.corpus))
    held_set = ShardSet(held_dir, verify=fresh)
    if held_set.fingerprint != train_set.fingerprint:
        raise ConfigError(f"eval_corpus {config.eval_corpus}: its shards were made with tokenizer "
                          f"{held_set.fingerprint[:12]}, the training shards' is "
                          f"{train_set.fingerprint[:12]}: held-out losses would be in other units")
    if fresh:
        from fastsynth.atomic import atomic_write_text
        atomic_write_text(stamp, json.dumps(key))
    return SweepData(train=train_dir, heldout=held_dir, unique_tokens=train_set.n_tokens,
                     heldout_tokens=held_set.n_tokens, tokenizer=train_dir / "tokenizer.json",
                     seconds=time.perf_counter() - t0, fingerprint=train_set.fingerprint,
                     vocab_size=train_set.vocab_size, train_documents=train_set.n_docs,
                     heldout_documents=held_set.n_docs,
                     source="shards" if from_shards else "corpus",
                     source_path=str(config.corpus),
                     source_key=(hashlib.sha256(json.dumps(key["shards"], sort_keys=True).encode())
                                 .hexdigest()[:16] if from_shards else ""))


def _eval_batches(config: SweepConfig, data: SweepData) -> list[dict[str, Any]]:
    """The fixed held-out batches: the first ``eval_tokens`` slots of one epoch."""
    from fastsynth.train.loader import LoaderConfig, PackedLoader
    rows = 16
    loader = PackedLoader(str(data.heldout), LoaderConfig(seq_len=config.seq_len, batch_rows=rows,
                                                          seed=config.seed, epochs=1))
    out, slots = [], 0
    for b in loader:
        out.append(b)
        slots += b["input_ids"].numel()
        if slots >= config.eval_tokens:
            break
    return out


# ------------------------------------------------------------------ runs
@dataclass
class SweepResult:
    """``runs``: one dict per run (see ``OUT/runs.jsonl``); ``fit``: ``OUT/fit.json``'s
    content; ``report``: paths of the Markdown and HTML report; ``seconds``: wall time."""

    runs: list[dict[str, Any]]
    fit: dict[str, Any]
    report: dict[str, Path]
    seconds: float
    data: SweepData | None = None


def _run_key(config: SweepConfig, size: SweepSize, budget: int, data: SweepData) -> dict[str, Any]:
    # the data's identity (tokenizer fingerprint, token counts), so a run made on other
    # tokens (a re-tokenized corpus, a changed shard set) is redone, not reused
    return {"n_layers": size.n_layers, "hidden": size.hidden, "lr": size.lr, "budget": budget,
            "vocab": data.vocab_size, "seq_len": config.seq_len,
            "micro_batch_rows": config.micro_batch_rows, "seed": config.seed,
            # a shard set by its content, so a set read under another path is the same data
            "corpus": f"shards:{data.source_key}" if data.source == "shards" else config.corpus,
            "eval_corpus": config.eval_corpus,
            "tokenizer_fingerprint": data.fingerprint, "train_tokens": data.unique_tokens,
            "heldout_tokens": data.heldout_tokens,
            "heldout_permille": config.heldout_permille,
            "eval_tokens": config.eval_tokens, "warmup_fraction": config.warmup_fraction,
            "min_lr_ratio": config.min_lr_ratio, "weight_decay": config.weight_decay}


def _previous_runs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break                          # a line cut by a kill: the run is redone
    return out


def run_grid(config: SweepConfig, out: Path, data: SweepData,
             show_progress: bool | None = None) -> list[dict[str, Any]]:
    """Train every (size, budget) run not yet in ``out/runs.jsonl``; return all runs."""
    from fastsynth.progress import progress
    from fastsynth.train.loader import LoaderConfig, PackedLoader
    from fastsynth.train.loop import train

    runs_path = out / "runs.jsonl"
    done = {json.dumps(r["key"], sort_keys=True): r for r in _previous_runs(runs_path)}
    eval_batches = _eval_batches(config, data)
    grid = [(s, b) for s in config.sizes for b in config.budgets]
    bar = progress(total=len(grid), desc="sweep", unit="run", enabled=show_progress)
    runs: list[dict[str, Any]] = []
    keep: list[str] = []
    for size, budget in grid:
        key = _run_key(config, size, budget, data)
        ks = json.dumps(key, sort_keys=True)
        if ks in done:
            runs.append(done[ks])
            keep.append(json.dumps(done[ks]))
            bar.update()
            continue
        tc = config.train_config(size, budget, data.vocab_size)
        loader = PackedLoader(str(data.train), LoaderConfig(
            seq_len=config.seq_len, batch_rows=config.micro_batch_rows, seed=config.seed))
        t0 = time.perf_counter()
        res = train(tc, loader, eval_data=eval_batches, resume=False, show_progress=False)
        model = tc.model
        rec = {"key": key, "name": model.name, "n_layers": size.n_layers, "hidden": size.hidden,
               "lr": size.lr, "steps": tc.steps,
               "n_params": model.num_params(include_embedding=False),
               "n_params_total": model.num_params(), "n_tokens": res.tokens,
               "token_slots": tc.steps * tc.tokens_per_step(),
               "epochs": res.tokens / data.unique_tokens, "eval_loss": res.eval_loss,
               "eval_tokens": res.eval_tokens, "final_train_loss": res.losses[-1],
               "flops": 6.0 * model.num_params(include_embedding=False) * res.tokens,
               "tokens_per_s": res.tokens_per_s, "seconds": time.perf_counter() - t0}
        if not (rec["eval_loss"] is not None and math.isfinite(rec["eval_loss"])):
            raise ConfigError(f"sweep run {model.name} at {budget} tokens gave no finite eval "
                              f"loss ({rec['eval_loss']}); lower its lr")
        runs.append(rec)
        keep.append(json.dumps(rec))
        # rewrite (not append) so lines of runs from other settings do not pile up
        from fastsynth.atomic import atomic_write_text
        atomic_write_text(runs_path, "".join(k + "\n" for k in keep))
        bar.update()
    bar.close()
    return runs


# ------------------------------------------------------------------ fit and check
def fit_runs(runs: list[dict[str, Any]], n_bootstrap: int = 200,
             start_stride: int = 1) -> dict[str, Any]:
    """The law fitted to all runs and the held-out check (fit.json's content)."""
    from fastsynth.plan.fit import fit_chinchilla, start_grid
    starts = start_grid()[::start_stride]
    from fastsynth.plan.laws import chinchilla_optimal

    n = np.array([r["n_params"] for r in runs], dtype=np.float64)
    d = np.array([r["n_tokens"] for r in runs], dtype=np.float64)
    loss = np.array([r["eval_loss"] for r in runs], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        full = fit_chinchilla(n, d, loss, n_bootstrap=n_bootstrap, starts=starts)
    c = full.constants
    intervals = full.param_intervals()
    compute = 6.0 * n * d
    held = int(np.argmax(compute))
    rest = np.arange(len(runs)) != held
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        part = fit_chinchilla(n[rest], d[rest], loss[rest], n_bootstrap=n_bootstrap,
                              starts=starts)
        pred = part.predict(n[held], d[held])
    value, lower, upper = (float(np.asarray(x).reshape(-1)[0])
                           for x in (pred.value, pred.lower, pred.upper))
    predicted = value
    measured = float(loss[held])
    c_max = float(compute.max())
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            n_opt, d_opt = chinchilla_optimal(c_max, c)
        except (OverflowError, ZeroDivisionError):
            n_opt = d_opt = float("nan")
    optimum: dict[str, Any] = {"flops": c_max, "n_params": n_opt, "n_tokens": d_opt}
    if all(np.isfinite(x) and x > 0 for x in (n_opt, d_opt)):
        optimum.update(tokens_per_param=d_opt / n_opt,
                       loss=float(c.E + c.A / n_opt ** c.alpha + c.B / d_opt ** c.beta))
    else:
        # A degenerate fit (e.g. alpha -> large with A -> 1e50) puts the optimum at 0 or
        # infinity: report that it is undefined instead of dividing by zero.
        optimum.update(n_params=None, n_tokens=None, tokens_per_param=None, loss=None,
                       undefined="the fitted constants give no finite compute-optimal point")
    return {
        "E": c.E, "A": c.A, "B": c.B, "alpha": c.alpha, "beta": c.beta, "r2": full.r2,
        "converged": full.converged, "message": full.message, "n_points": full.n_points,
        # the whole fit (optimum in log space, bootstrap rows, search counts): enough to
        # rebuild the ChinchillaFit (fit_from_json) without fitting again
        "fit_state": {"x": full.x.tolist(), "bootstrap": full.bootstrap.tolist(),
                      "objective": full.objective, "n_starts": full.n_starts,
                      "n_starts_at_best": full.n_starts_at_best,
                      "bootstrap_converged": full.bootstrap_converged,
                      "max_n_params": full.max_n_params, "max_n_tokens": full.max_n_tokens},
        "intervals_95": {k: list(v) for k, v in intervals.items()},
        "n_convention": "non-embedding parameters",
        "d_convention": "real (non-padding) training tokens",
        "loss_convention": "held-out cross-entropy, nats/token",
        "heldout": {
            "run": runs[held]["name"], "n_params": float(n[held]), "n_tokens": float(d[held]),
            "flops": float(compute[held]), "measured_eval_loss": measured,
            "predicted_eval_loss": predicted,
            "predicted_interval_95": [lower, upper],
            "relative_error": abs(predicted - measured) / measured,
            "fit_without": {"E": part.constants.E, "A": part.constants.A,
                            "B": part.constants.B, "alpha": part.constants.alpha,
                            "beta": part.constants.beta, "r2": part.r2,
                            "converged": part.converged},
        },
        "compute_optimal": optimum,
        "_fit": full,
    }


# ------------------------------------------------------------------ report
def _fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def write_report(out: Path, config: SweepConfig, runs: list[dict[str, Any]],
                 fit: dict[str, Any], data: SweepData | None, seconds: float) -> dict[str, Path]:
    """``out/sweep.md`` + ``out/sweep.html`` (plots embedded in the HTML)."""
    from fastsynth.plan.figures import fitted_chinchilla
    from fastsynth.report import Document

    doc = Document("Scaling sweep")
    h = fit["heldout"]
    vocab = data.vocab_size if data is not None else config.vocab
    made = ("the token shard set " if data is not None and data.source == "shards" else "")
    doc.p(f"{len(runs)} runs ({len(config.sizes)} sizes x {len(config.budgets)} budgets) on "
          f"{made}{config.corpus} with a {vocab}-token vocabulary, seq_len {config.seq_len}, "
          f"{config.micro_batch_rows} rows per step; wall time {seconds / 60:.1f} min. "
          f"N counts non-embedding parameters; D counts real training tokens; losses are "
          f"held-out cross-entropy in nats/token on the same {runs[0]['eval_tokens']} "
          f"held-out target tokens for every run.")
    if data is not None:
        worst = max(r["epochs"] for r in runs)
        doc.p(f"Data: {data.unique_tokens:,} unique training tokens, {data.heldout_tokens:,} "
              f"held-out tokens. Largest run: {worst:.2f} epochs "
              + ("(within the ~4-epoch range where repeated tokens are worth nearly as much "
                 "as fresh ones, Muennighoff et al. 2023)." if worst <= 4 else
                 "(PAST ~4 epochs: repetition bends the law, Muennighoff et al. 2023)."))
    doc.h("Runs")
    doc.table(["model", "N (non-emb.)", "N (total)", "D tokens", "epochs", "lr", "steps",
               "eval loss", "tokens/s", "seconds"],
              [[r["name"], f"{r['n_params']:,}", f"{r['n_params_total']:,}", f"{r['n_tokens']:,}",
                f"{r['epochs']:.3f}", r["lr"], r["steps"], f"{r['eval_loss']:.4f}",
                f"{r['tokens_per_s']:.0f}", f"{r['seconds']:.0f}"] for r in runs])
    doc.h("Fitted law")
    iv = fit["intervals_95"]
    doc.p(f"L(N, D) = E + A / N^alpha + B / D^beta, fitted with fastsynth.plan.fit_chinchilla "
          f"(Huber on log loss, L-BFGS from the 4,500-start grid), R^2 = {fit['r2']:.4f} on eval "
          f"loss{'' if fit['converged'] else ' (NOT converged: ' + fit['message'] + ')'}.")
    doc.table(["parameter", "value", "95% bootstrap interval"],
              [[k, _fmt(fit[k]), f"[{_fmt(iv[k][0])}, {_fmt(iv[k][1])}]"]
               for k in ("E", "A", "B", "alpha", "beta")])
    doc.h("Held-out check: extrapolating to the largest run")
    doc.p(f"Fitted without {h['run']} at {h['n_tokens']:,.0f} tokens (the largest-compute "
          f"run, {h['flops']:.3g} FLOPs), the law predicts eval loss "
          f"{h['predicted_eval_loss']:.4f} (95% interval {h['predicted_interval_95'][0]:.4f}-"
          f"{h['predicted_interval_95'][1]:.4f}); measured {h['measured_eval_loss']:.4f}: "
          f"{100 * h['relative_error']:.2f}% off (target: within 3%).")
    co = fit["compute_optimal"]
    doc.h("Compute-optimal point")
    if co["n_params"] is None:
        doc.p(f"At the largest run's compute ({co['flops']:.3g} FLOPs) {co['undefined']}: "
              "the fit is degenerate (see the constants above).")
    else:
        doc.p(f"At the largest run's compute ({co['flops']:.3g} FLOPs, C = 6ND) the fitted law's "
              f"optimum is N = {co['n_params']:,.0f} non-embedding parameters on D = "
              f"{co['n_tokens']:,.0f} tokens ({co['tokens_per_param']:.1f} tokens/param), loss "
              f"{co['loss']:.4f}. Constants fitted on models this small are a property of this "
              f"corpus, tokenizer and grid; extrapolating them many decades is not advice.")
    n = np.array([r["n_params"] for r in runs], dtype=np.float64)
    d = np.array([r["n_tokens"] for r in runs], dtype=np.float64)
    lo = np.array([r["eval_loss"] for r in runs], dtype=np.float64)
    try:
        fig = fitted_chinchilla(out / "sweep_fit.png", fit["_fit"], n, d, lo)
        doc.figure(fig, "Eval loss per run and the fitted law per model size (95% band)")
    except ImportError as e:     # matplotlib missing: the report keeps its tables
        doc.p(f"(plots skipped: {e})")
    return doc.write(out, "sweep")


def fit_from_json(fit: dict[str, Any]) -> Any:
    """The :class:`~fastsynth.plan.fit.ChinchillaFit` that ``fit.json``'s content (``fit``)
    was written from, rebuilt from its ``fit_state`` (its predictions and bootstrap
    intervals are the original's); ``None`` for a fit.json without one."""
    from fastsynth.plan.fit import ChinchillaFit
    from fastsynth.plan.constants import ChinchillaConstants
    st = fit.get("fit_state")
    if not st:
        return None
    x = np.array(st["x"], dtype=np.float64)   # (ln A, ln B, ln E, alpha, beta)
    c = ChinchillaConstants(E=float(np.exp(x[2])), A=float(np.exp(x[0])), B=float(np.exp(x[1])),
                            alpha=float(x[3]), beta=float(x[4]), name="fit")
    return ChinchillaFit(constants=c, r2=fit["r2"], objective=st["objective"],
                         converged=fit["converged"], message=fit["message"],
                         n_points=fit["n_points"], n_starts=st["n_starts"],
                         n_starts_at_best=st["n_starts_at_best"],
                         max_n_params=st["max_n_params"], max_n_tokens=st["max_n_tokens"],
                         bootstrap=np.array(st["bootstrap"], dtype=np.float64).reshape(-1, 5),
                         bootstrap_converged=st["bootstrap_converged"], x=x)


def _previous_fit(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def sweep(config: SweepConfig | None = None, out: str | Path = "sweep",
          show_progress: bool | None = None) -> SweepResult:
    """Run the sweep into folder ``out`` (see the module docstring); returns its results.

    Writes ``out/runs.jsonl``, ``out/fit.json``, ``out/sweep.md``/``.html`` and keeps the
    tokenized data in ``out/data``. Rerunning skips finished runs (and the fit, when no
    run changed).
    """
    config = config or SweepConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = prepare_data(config, out, show_progress)
    largest = max(config.budgets)
    if largest / data.unique_tokens > config.max_epochs:
        raise ConfigError(f"the largest budget ({largest:,} tokens) is "
                          f"{largest / data.unique_tokens:.1f} epochs of {config.corpus}'s "
                          f"{data.unique_tokens:,} unique training tokens, over max_epochs = "
                          f"{config.max_epochs} (repetition bends the law; Muennighoff et al. "
                          f"2023): use a larger corpus or smaller budgets")
    runs = run_grid(config, out, data, show_progress)
    # the fit is a function of the runs and the fit settings: a rerun with nothing new
    # (a resumed run whose sweep had finished) takes fit.json and the report as they are
    # instead of refitting (the batched L-BFGS costs seconds to tens of seconds here)
    fit_of = hashlib.sha256(json.dumps(
        [[r["key"], r["n_params"], r["n_tokens"], r["eval_loss"]] for r in runs]
        + [config.n_bootstrap, config.fit_start_stride], sort_keys=True).encode()).hexdigest()
    report_paths = {"markdown": out / "sweep.md", "html": out / "sweep.html"}
    done = _previous_fit(out / "fit.json")
    if done.get("fit_of") == fit_of and all(p.is_file() for p in report_paths.values()):
        return SweepResult(runs=runs, fit=done, report=report_paths, seconds=done["seconds"],
                           data=data)
    fit = fit_runs(runs, config.n_bootstrap, config.fit_start_stride)
    seconds = time.perf_counter() - t0
    public = {k: v for k, v in fit.items() if not k.startswith("_")}
    public["fit_of"] = fit_of
    public["seconds"] = seconds
    public["data_seconds"] = data.seconds
    public["config"] = config.as_dict()
    public["data"] = data.as_dict()
    from fastsynth.atomic import atomic_write_text
    atomic_write_text(out / "fit.json", json.dumps(public, indent=1))
    report = write_report(out, config, runs, fit, data, seconds)
    return SweepResult(runs=runs, fit=public, report=report, seconds=seconds, data=data)
