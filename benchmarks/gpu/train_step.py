"""Training-step MFU of fastsynth.train.train on one GPU: the llama-3.2-1b and -3b presets at
sequence length 4096 (issue 13 target: MFU >= 40% for 1B on an H100/H200).

Setup: bf16 autocast over fp32 master weights, fused AdamW, the chunked LM head + CE, packed
batches of rows x 4096 tokens of random ids (one document per row: throughput does
not depend on the token values), attention backend ``auto`` (the Triton varlen kernel when it
supports the head dim). 3B uses activation checkpointing (its activations at 2 x 4096 tokens
do not fit beside 51 GB of weights, gradients and Adam moments otherwise).
MFU = flops_per_token x tokens/s / peak with fastsynth.train.flops' convention: 6 N_matmul +
12 L H hd T, no causal halving, bf16 dense peak by device name (H100 SXM / H200: 989 TFLOP/s).
Tokens/s is the median over the steps after ``WARMUP`` warm-up steps.
"""
from __future__ import annotations

import statistics
import time

SEQ, ROWS, STEPS, WARMUP = 4096, 2, 8, 3
# (preset, rows, activation checkpointing, compile): the 1B target line in the configuration a
# user would train with on one card (4 rows, compiled sub-layers), the same step eager at 2 rows
# for comparison, and 3B with checkpointing.
CASES = (("llama-3.2-1b", 4, False, True), ("llama-3.2-1b", 2, False, False),
         ("llama-3.2-3b", 2, True, False))


class _RandomRows:
    """Endless packed batches: ROWS rows of SEQ random tokens, one document per row."""

    def __init__(self, vocab: int, rows: int = ROWS):
        import torch
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (rows, SEQ), generator=g)
        labels = torch.roll(ids, -1, dims=1)
        labels[:, -1] = -100
        self.batch = {"input_ids": ids, "labels": labels,
                      "positions": torch.arange(SEQ).repeat(rows, 1),
                      "cu_seqlens": torch.arange(0, rows + 1, dtype=torch.int32) * SEQ,
                      "max_seqlen": SEQ, "n_tokens": rows * SEQ,
                      "n_target_tokens": rows * (SEQ - 1)}

    def __iter__(self):
        while True:
            yield self.batch

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def measure(device, preset: str, rows: int = ROWS, checkpointing: bool = False,
            compile: bool = False, steps: int = STEPS, attention: str = "auto") -> dict:
    """One training run of ``steps`` steps on random packed rows: a table row with tokens/s
    (median after WARMUP steps), MFU, peak memory and the final loss; an OOM or kernel error
    becomes a row with ``ok: False``."""
    import torch

    from fastsynth.model import LlamaConfig
    from fastsynth.train.config import TrainConfig
    from fastsynth.train.flops import flops_per_token, peak_flops
    from fastsynth.train.loop import train

    name = torch.cuda.get_device_name(device)
    peak = peak_flops(name)
    case = (f"train step {preset} seq {SEQ} x {rows} rows bf16" + (" +act-ckpt" if checkpointing else "")
            + (" +compile" if compile else "") + (f" attention={attention}" if attention != "auto" else ""))
    model = LlamaConfig.preset(preset, max_seq_len=SEQ)
    cfg = TrainConfig(model=model, seq_len=SEQ, micro_batch_rows=rows, steps=steps,
                      warmup_steps=1, log_every=1, lr=1e-4, device=str(device),
                      precision="bf16", activation_checkpointing=checkpointing, compile=compile,
                      attention=attention)
    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.monotonic()
    try:
        res = train(cfg, _RandomRows(model.vocab, rows), show_progress=False)
    except Exception as e:                        # OOM or a kernel error: report, go on
        torch.cuda.empty_cache()
        return {"case": case, "ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
    tps = statistics.median(r["tokens_per_s"] for r in res.metrics
                            if "tokens_per_s" in r and r["step"] > WARMUP)
    fpt = flops_per_token(model, SEQ)
    mfu = fpt * tps / peak if peak else None
    row = {"case": case, "device": name, "tokens_per_s": round(tps),
           "flops_per_token": fpt, "tflops": round(fpt * tps / 1e12, 1),
           "mfu": None if mfu is None else round(mfu, 4),
           "target_mfu_1b": 0.40 if preset.endswith("1b") else None,
           "peak_mem_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 1),
           "final_loss": round(res.losses[-1], 3), "wall_s": round(time.monotonic() - t0, 1)}
    del res
    torch.cuda.empty_cache()
    return row


def run(device, deadline: float | None = None) -> list[dict]:
    rows = []
    for preset, n, ckpt, comp in CASES:
        if deadline is not None and time.monotonic() > deadline - 60:
            rows.append({"case": f"train step {preset}", "note": "skipped: time budget"})
            continue
        rows.append(measure(device, preset, rows=n, checkpointing=ckpt, compile=comp))
    return rows
