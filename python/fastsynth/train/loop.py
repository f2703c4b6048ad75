"""The compact training loop: the fastsynth Llama on packed batches.

``train(config, data, eval_data=...)`` runs ``config.steps`` optimizer steps of AdamW on
batches in the packed-batch layout (docs/training.md, "Batches"): gradient accumulation over
``grad_accum`` micro-batches with every target token weighted alike, global-norm clipping,
warm-up + cosine / WSD schedules, bf16 autocast on CUDA (fp32 on the CPU), optional
``torch.compile`` and activation checkpointing per attention and MLP sub-layer, FSDP2
(``fully_shard``) when started by ``torchrun`` with several processes, a chunked LM head +
cross-entropy (:mod:`fastsynth.train.loss`), metrics JSONL, atomic checkpoints and bit-exact
resume (:mod:`fastsynth.train.checkpoint`).

The loss calls the model with ``head=False`` (final-norm hidden states) and computes the LM
head from ``model.lm_head.weight`` in chunks; the model itself is never modified.
"""
from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import torch
import torch.nn as nn

from fastsynth.errors import ConfigError, FastsynthError
from fastsynth.model import attention as attention_dispatch
from fastsynth.model.llama import Llama
from fastsynth.train import checkpoint as ckpt
from fastsynth.train.config import TrainConfig
from fastsynth.train.flops import flops_per_token, peak_flops
from fastsynth.train.loss import chunked_cross_entropy
from fastsynth.train.metrics import MetricsLog
from fastsynth.train.schedule import lr_factor

Batch = dict[str, Any]


class TrainingDiverged(FastsynthError):
    """The loss or the gradient norm became NaN/inf; ``step`` is the failing step (1-based),
    ``checkpoint`` the last good checkpoint folder (None if none was written)."""

    def __init__(self, message: str, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


class BatchSource(Protocol):
    """What the loop reads: an iterable of packed batches with a resumable position
    (``fastsynth.train.PackedLoader`` is one)."""

    def __iter__(self) -> Iterator[Batch]: ...
    def state_dict(self) -> Any: ...
    def load_state_dict(self, state: Any) -> None: ...


@dataclass
class TrainResult:
    """What a finished run returns. ``losses``: per-step mean train loss (nats/token) of
    every step this call ran; ``eval_loss``: final held-out loss (None without eval data);
    ``tokens``: real tokens trained on over the whole run (resumed steps included);
    ``tokens_per_s``: this call's training throughput (eval and checkpoints excluded)."""

    model: Llama
    steps: int
    start_step: int
    tokens: int
    losses: list[float]
    eval_loss: float | None
    eval_tokens: int
    tokens_per_s: float
    wall_s: float
    flops_per_token: float
    mfu: float | None
    checkpoint: Path | None
    metrics: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------ model wrapping
class CausalLMLoss(nn.Module):
    """``forward(input_ids, positions, labels, cu_seqlens, max_seqlen)`` -> summed
    cross-entropy (float32 scalar, nats) of a packed batch (flat ``(R*S,)`` tensors)."""

    def __init__(self, model: Llama, chunk_rows: int):
        super().__init__()
        self.model = model
        self.chunk_rows = chunk_rows

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, labels: torch.Tensor,
                cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        hidden = self.model(input_ids, positions, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen,
                            head=False)
        weight = self.model.lm_head.weight
        kind = hidden.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else weight.dtype
        with torch.autocast(kind, enabled=False):
            return chunked_cross_entropy(hidden.to(dtype), weight.to(dtype), labels,
                                         chunk_rows=self.chunk_rows)


# ------------------------------------------------------------------ set-up helpers
def resolve_device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def resolve_attention(config: TrainConfig, device: torch.device) -> str:
    """``config.attention`` as given: a backend name, or ``auto`` = the dispatcher's own
    choice (``fastsynth.model.attention``: ``sdpa``, whose varlen path uses the per-segment
    layout, on the CPU; the Triton varlen kernel, then flash-attn, then SDPA on CUDA)."""
    return config.attention


def _batches_for_rank(data: Any, world: int) -> bool:
    """True when ``data`` already yields only this rank's batches (a loader built with
    ``world_size`` = the process group's size, like ``PackedLoader``)."""
    return world > 1 and getattr(getattr(data, "config", None), "world_size", 1) == world


def _distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _checkpoint_sublayers(model: Llama) -> None:
    """Recompute each attention and MLP sub-layer in backward (saves its activations).

    ``Llama.forward`` calls ``block.attn`` and ``block.mlp`` (never ``block``), so those are
    the units; overriding the instance's ``forward`` keeps the state-dict keys unchanged.
    """
    from torch.utils.checkpoint import checkpoint
    for block in model.layers:
        for sub in (block.attn, block.mlp):
            sub.forward = functools.partial(checkpoint, sub.forward, use_reentrant=False)


def _shard(module: CausalLMLoss, bf16: bool) -> None:
    """FSDP2: one unit per attention and per MLP sub-layer (the modules ``Llama.forward``
    calls), the root holding the embedding, the norms and the (tied) head."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if bf16 else MixedPrecisionPolicy()
    for block in module.model.layers:
        fully_shard(block.attn, mp_policy=mp)
        fully_shard(block.mlp, mp_policy=mp)
    fully_shard(module, mp_policy=mp)


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device
                    ) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only; the fused kernel where torch has one."""
    decay, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else plain).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": plain, "weight_decay": 0.0}]
    kw = dict(lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)
    try:
        return torch.optim.AdamW(groups, fused=True, **kw)
    except (RuntimeError, ValueError):       # no fused kernel for this device/dtype
        return torch.optim.AdamW(groups, foreach=device.type == "cuda", **kw)


def _batches(source: Iterable[Batch], rank: int, world: int) -> Iterator[Batch]:
    """Rank ``r`` of ``w`` takes batches ``r, r+w, ...`` of the one stream every rank reads,
    so the loader position (and its checkpointed state) is the same on every rank."""
    it = iter(source)
    while True:
        mine = None
        for r in range(world):
            b = next(it, None)
            if b is None:
                return
            if r == rank:
                mine = b
        yield mine


def _to_device(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    nb = device.type == "cuda"
    ids = batch["input_ids"].reshape(-1).to(device, non_blocking=nb)
    pos = batch["positions"].reshape(-1).to(device, non_blocking=nb)
    labels = batch["labels"].reshape(-1).to(device, non_blocking=nb)
    cu = batch["cu_seqlens"].to(device=device, dtype=torch.int32, non_blocking=nb)
    return ids, pos, labels, cu


def _n_targets(batch: Batch) -> int:
    n = batch.get("n_target_tokens")
    return int(n) if n is not None else int((batch["labels"] != -100).sum())


def evaluate(module: nn.Module, batches: Iterable[Batch], *, device: torch.device,
             bf16: bool = False, max_batches: int = 0) -> tuple[float, int]:
    """Mean cross-entropy (nats/token) over the held-out ``batches`` and the target count.

    Under FSDP every rank evaluates every batch: each forward all-gathers the weights, so the
    ranks must run the same number of forwards (splitting an uneven batch count deadlocks).
    """
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i, batch in enumerate(batches):
            if max_batches and i >= max_batches:
                break
            ids, pos, labels, cu = _to_device(batch, device)
            total += module(ids, pos, labels, cu, int(batch["max_seqlen"])).double()
            count += _n_targets(batch)
    return (float(total.item()) / count if count else float("nan")), count


def _oom_message(config: TrainConfig) -> str:
    half = max(1, config.micro_batch_rows // 2)
    return (f"GPU out of memory with micro_batch_rows={config.micro_batch_rows} x seq_len="
            f"{config.seq_len}; try micro_batch_rows={half} with grad_accum="
            f"{config.grad_accum * max(1, config.micro_batch_rows // half)} (the same tokens per "
            f"step)" + ("" if config.activation_checkpointing else
                        ", or activation_checkpointing = true") + ".")


# ------------------------------------------------------------------ the loop
def train(config: TrainConfig, data: BatchSource, *,
          eval_data: Iterable[Batch] | None = None, resume: bool = True,
          on_step: Callable[[int, float], None] | None = None,
          show_progress: bool | None = None) -> TrainResult:
    """Train ``config.model`` from scratch (or resume ``config.out_dir``'s newest checkpoint).

    ``data``: packed batches (see :class:`BatchSource`); ``eval_data``: the fixed held-out
    batches (re-iterable, e.g. a list), evaluated every ``eval_every`` steps and at the end.
    ``on_step(step, loss)`` is called after every optimizer step (1-based step, mean loss).
    Raises :class:`TrainingDiverged` on a NaN/inf loss or gradient norm (nothing is saved for
    that step) and :class:`ConfigError` on GPU out-of-memory (with a smaller micro-batch
    suggestion) or when ``data`` runs out.
    """
    device = resolve_device(config)
    rank, world = _distributed(device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    attention_dispatch.set_backend(resolve_attention(config, device))

    torch.manual_seed(config.seed)
    model = Llama(config.model, device=device).reset_parameters(std=config.init_std,
                                                                seed=config.seed)
    module = CausalLMLoss(model, config.loss_chunk_rows)
    if config.activation_checkpointing:
        _checkpoint_sublayers(model)
    if config.compile:
        for block in model.layers:
            block.attn.compile()
            block.mlp.compile()
    if world > 1:
        _shard(module, bf16)
    optimizer = build_optimizer(module, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))

    out = Path(config.out_dir) if config.out_dir else None
    start, tokens_seen, last_ckpt = 0, 0, None
    if out is not None and resume and (found := ckpt.latest(out)) is not None:
        meta, loader_state = ckpt.load(found, config=config, model=module.model if world == 1
                                       else module, optimizer=optimizer, scheduler=scheduler)
        data.load_state_dict(loader_state)
        start, tokens_seen, last_ckpt = meta["step"], meta["metrics"].get("tokens", 0), found
    log = MetricsLog(out / "metrics.jsonl" if out else None, config.steps, start_step=start,
                     show_progress=show_progress, enabled=rank == 0)

    fpt = flops_per_token(config.model, config.seq_len)
    peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    stream = iter(data) if _batches_for_rank(data, world) else _batches(data, rank, world)
    losses: list[float] = []
    train_time, run_tokens = 0.0, 0
    interval_tokens, interval_start = 0, time.perf_counter()
    params = [p for p in module.parameters() if p.requires_grad]
    eval_loss, eval_tokens = None, 0
    t_begin = time.perf_counter()

    def save(step: int, metrics: dict[str, Any]) -> Path:
        return ckpt.save(out, step, config=config, model=module.model if world == 1 else module,
                         optimizer=optimizer, scheduler=scheduler,
                         loader_state=data.state_dict(), metrics=metrics,
                         keep=config.keep_checkpoints)

    try:
        for step in range(start, config.steps):
            t0 = time.perf_counter()
            micro = []
            for _ in range(config.grad_accum):
                b = next(stream, None)
                if b is None:
                    raise ConfigError(f"the training data ran out at step {step + 1} of "
                                      f"{config.steps}; give more data or fewer steps")
                micro.append(b)
            n_tgt = torch.tensor(float(sum(_n_targets(b) for b in micro)), device=device)
            if world > 1:
                torch.distributed.all_reduce(n_tgt)
            # FSDP averages gradients over ranks: scale so the result is the global token mean
            scale = world / max(float(n_tgt.item()), 1.0)
            loss_sum = torch.zeros((), dtype=torch.float32, device=device)
            for i, b in enumerate(micro):
                ids, pos, labels, cu = _to_device(b, device)
                if world > 1:
                    module.set_requires_gradient_sync(i == len(micro) - 1)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    part = module(ids, pos, labels, cu, int(b["max_seqlen"]))
                (part * scale).backward()
                loss_sum += part.detach()
            if world > 1:
                torch.distributed.all_reduce(loss_sum)
            norm = torch.nn.utils.clip_grad_norm_(
                params, config.grad_clip if config.grad_clip > 0 else float("inf"))
            loss = float(loss_sum.item()) / max(float(n_tgt.item()), 1.0)
            norm_f = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
            if not (math.isfinite(loss) and math.isfinite(norm_f)):
                what = f"loss is {loss}" if not math.isfinite(loss) else \
                    f"gradient norm is {norm_f}"
                log.write({"step": step + 1, "loss": loss, "grad_norm": norm_f,
                           "diverged": True})
                raise TrainingDiverged(
                    f"{what} at step {step + 1}; training stopped, nothing saved for this "
                    f"step; the last good checkpoint is "
                    f"{last_ckpt if last_ckpt else 'none (no checkpoint was written)'}",
                    step + 1, last_ckpt)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_time += time.perf_counter() - t0
            real = sum(int(b.get("n_tokens", b["input_ids"].numel())) for b in micro) * world
            tokens_seen += real
            run_tokens += real
            interval_tokens += real
            losses.append(loss)
            done = step + 1
            log.advance()
            if on_step is not None:
                on_step(done, loss)
            if done % config.log_every == 0 or done == config.steps:
                now = time.perf_counter()
                tps = interval_tokens / max(now - interval_start, 1e-9)
                log.write({"step": done, "loss": loss, "lr": lr, "grad_norm": norm_f,
                           "tokens": tokens_seen, "tokens_per_s": tps, "flops_per_token": fpt,
                           "mfu": fpt * tps / peak if peak else None,
                           "elapsed_s": now - t_begin})
                interval_tokens, interval_start = 0, now
            is_eval = eval_data is not None and (
                done == config.steps or (config.eval_every and done % config.eval_every == 0))
            if is_eval:
                eval_loss, eval_tokens = evaluate(module, eval_data, device=device, bf16=bf16,
                                                  max_batches=config.eval_batches)
                log.write({"step": done, "eval_loss": eval_loss, "eval_tokens": eval_tokens})
                interval_start = time.perf_counter()
            if out is not None and (done == config.steps or (
                    config.checkpoint_every and done % config.checkpoint_every == 0)):
                last_ckpt = save(done, {"loss": loss, "tokens": tokens_seen,
                                        "eval_loss": eval_loss if is_eval else None})
                interval_start = time.perf_counter()
    except torch.OutOfMemoryError:
        raise ConfigError(_oom_message(config)) from None
    finally:
        log.close()
    if eval_data is not None and start >= config.steps:    # resumed a finished run
        eval_loss, eval_tokens = evaluate(module, eval_data, device=device, bf16=bf16,
                                          max_batches=config.eval_batches)
    run_tps = run_tokens / train_time if train_time > 0 else 0.0
    return TrainResult(model=model, steps=config.steps,
                       start_step=start, tokens=tokens_seen, losses=losses,
                       eval_loss=eval_loss, eval_tokens=eval_tokens, tokens_per_s=run_tps,
                       wall_s=time.perf_counter() - t_begin, flops_per_token=fpt,
                       mfu=fpt * run_tps / peak if peak else None,
                       checkpoint=last_ckpt, metrics=log.records)
