"""Training FLOPs per token and the accelerator peak table behind MFU.

Convention (PaLM, Chowdhery et al. 2022, appendix B; docs/training.md, "MFU"):

    flops_per_token = 6 * N_matmul + 12 * L * H * hd * T

``N_matmul`` counts the weights that enter a matrix multiply: every projection of every
layer and the LM head (tied or not: the head's matmul is done either way); not the
embedding lookup (a gather) nor the norm weights. ``6`` = 2 (multiply-add) x 3 (forward,
and backward for activations and for weights). The attention term counts ``QK^T`` and
``PV`` (2 matmuls x 2 FLOPs x 3 passes = 12) over a context of ``T`` tokens **without causal
halving** (the PaLM and torchtitan convention; a kernel that skips the masked half does
less work than counted, so MFU is comparable across kernels). ``causal_halving=True``
counts ``6 * L * H * hd * T`` instead (nanoGPT/llm-foundry style).

MFU = flops_per_token x tokens/s / peak, with the peak from :data:`PEAK_FLOPS` (dense bf16,
no sparsity, vendor datasheets).
"""
from __future__ import annotations

from fastsynth.model.config import LlamaConfig

# Dense bf16 tensor-core peaks, FLOP/s (vendor datasheets; the "with sparsity" figures are
# twice these). Keys are matched as substrings of torch.cuda.get_device_name(), in order.
PEAK_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,          # names without a form factor (e.g. "NVIDIA H100 80GB HBM3") are SXM
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A10G": 70e12,
    "A10": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "V100": 125e12,          # fp16 (V100 has no bf16)
}


def matmul_params(config: LlamaConfig) -> int:
    """Weights that enter a matmul per token: all layer projections plus the LM head."""
    layer = (config.hidden * (config.n_heads + 2 * config.n_kv_heads) * config.head_dim
             + config.n_heads * config.head_dim * config.hidden + 3 * config.hidden * config.ffn)
    return config.n_layers * layer + config.vocab * config.hidden


def flops_per_token(config: LlamaConfig, seq_len: int, *, causal_halving: bool = False) -> float:
    """Training FLOPs per token (forward + backward) at context ``seq_len`` (see module doc)."""
    attn = 12 * config.n_layers * config.n_heads * config.head_dim * seq_len
    if causal_halving:
        attn //= 2
    return float(6 * matmul_params(config) + attn)


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s for a device name (``torch.cuda.get_device_name()``), or None."""
    for key, value in PEAK_FLOPS.items():
        if key.lower() in device_name.lower():
            return value
    return None


def mfu(tokens_per_s: float, config: LlamaConfig, seq_len: int, peak: float | None, *,
        causal_halving: bool = False) -> float | None:
    """Model FLOPs utilisation in [0, 1] (None without a known peak)."""
    if not peak:
        return None
    return flops_per_token(config, seq_len, causal_halving=causal_halving) * tokens_per_s / peak
