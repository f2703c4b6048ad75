"""HF-style checkpoints: ``config.json`` + ``model*.safetensors`` (the layout transformers and
vLLM load as ``LlamaForCausalLM``), read and written without transformers.
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch

from fastsynth.errors import ConfigError, InputError
from fastsynth.model.config import LlamaConfig, RopeScaling

# HF per-layer names -> fastsynth names (q/k/v and gate/up are fused on our side).
_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "mlp_norm.weight",
    "self_attn.o_proj.weight": "attn.wo.weight",
    "mlp.down_proj.weight": "mlp.w_down.weight",
}


def config_to_hf(config: LlamaConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    d: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": config.hidden, "intermediate_size": config.ffn,
        "num_hidden_layers": config.n_layers, "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads, "head_dim": config.head_dim,
        "vocab_size": config.vocab, "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps, "rope_theta": config.rope_theta,
        "tie_word_embeddings": config.tied, "hidden_act": "silu", "attention_bias": False,
        "mlp_bias": False, "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id, "torch_dtype": str(dtype).removeprefix("torch."),
    }
    s = config.rope_scaling
    d["rope_scaling"] = None if s is None else {
        "rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
        "high_freq_factor": s.high_freq_factor,
        "original_max_position_embeddings": s.original_max_position}
    return d


def config_from_hf(d: dict[str, Any], source: str = "config.json") -> LlamaConfig:
    """The :class:`LlamaConfig` an HF ``config.json`` mapping describes; a missing field,
    a value of the wrong type or an invalid value raises InputError naming ``source``."""
    if not isinstance(d, dict):
        raise InputError(f"expected a JSON object, got {type(d).__name__}", source=source)
    try:
        return _config_from_hf(d, source)
    except InputError:
        raise
    except ConfigError as e:
        if str(e).startswith(source):  # unsupported architecture etc.: already named
            raise
        raise InputError(f"invalid model config: {e}", source=source) from None
    except (TypeError, ValueError, AttributeError) as e:
        raise InputError(f"a field has a value of the wrong type: {e}", source=source) from None


def _config_from_hf(d: dict[str, Any], source: str) -> LlamaConfig:
    arch = d.get("model_type")
    if arch not in ("llama", "mistral"):
        raise ConfigError(f"{source}: unsupported model_type {arch!r} (supported: llama)")
    if d.get("attention_bias") or d.get("mlp_bias"):
        raise ConfigError(f"{source}: attention/MLP biases are not supported")
    rope = d.get("rope_parameters") or {}  # transformers >= 5 nests RoPE settings here
    scaling = d.get("rope_scaling") or (rope if rope.get("rope_type") not in (None, "default") else None)
    rs = None
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "llama3":
            raise ConfigError(f"{source}: unsupported rope scaling {kind!r} (supported: llama3)")
        rs = RopeScaling(factor=float(scaling["factor"]),
                         low_freq_factor=float(scaling.get("low_freq_factor", 1.0)),
                         high_freq_factor=float(scaling.get("high_freq_factor", 4.0)),
                         original_max_position=int(scaling.get("original_max_position_embeddings", 8192)))
    eos = d.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    try:
        return LlamaConfig(
            n_layers=d["num_hidden_layers"], hidden=d["hidden_size"],
            n_heads=d["num_attention_heads"],
            n_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
            head_dim=d.get("head_dim") or d["hidden_size"] // d["num_attention_heads"],
            ffn=d["intermediate_size"], vocab=d["vocab_size"],
            rope_theta=float(d.get("rope_theta", rope.get("rope_theta", 10000.0))),
            rope_scaling=rs, max_seq_len=d.get("max_position_embeddings", 2048),
            tied=bool(d.get("tie_word_embeddings", False)), norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            bos_token_id=d.get("bos_token_id"), eos_token_id=eos, name=d.get("_name_or_path", "hf"))
    except KeyError as e:
        raise InputError(f"missing field {e.args[0]!r}", source=source) from None


def state_to_hf(state: dict[str, torch.Tensor], config: LlamaConfig) -> dict[str, torch.Tensor]:
    """fastsynth state dict -> HF names (fused matrices split)."""
    q_out, kv_out = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    out = {"model.embed_tokens.weight": state["embed.weight"], "model.norm.weight": state["norm.weight"]}
    if not config.tied:
        out["lm_head.weight"] = state["lm_head.weight"]
    for i in range(config.n_layers):
        p, h = f"layers.{i}.", f"model.layers.{i}."
        q, k, v = state[p + "attn.wqkv.weight"].split((q_out, kv_out, kv_out))
        gate, up = state[p + "mlp.w_gate_up.weight"].split(config.ffn)
        out.update({h + "self_attn.q_proj.weight": q, h + "self_attn.k_proj.weight": k,
                    h + "self_attn.v_proj.weight": v, h + "mlp.gate_proj.weight": gate,
                    h + "mlp.up_proj.weight": up})
        for hf_name, ours in _LAYER.items():
            out[h + hf_name] = state[p + ours]
    return {k: v.contiguous() for k, v in out.items()}


def state_from_hf(hf: dict[str, torch.Tensor], config: LlamaConfig,
                  source: str = "") -> dict[str, torch.Tensor]:
    """HF names -> fastsynth state dict (q/k/v and gate/up fused)."""
    hf = dict(hf)
    try:
        state = {"embed.weight": hf.pop("model.embed_tokens.weight"),
                 "norm.weight": hf.pop("model.norm.weight")}
        head = hf.pop("lm_head.weight", None)
        if not config.tied:
            if head is None:
                raise KeyError("lm_head.weight")
            state["lm_head.weight"] = head
        for i in range(config.n_layers):
            h, p = f"model.layers.{i}.", f"layers.{i}."
            state[p + "attn.wqkv.weight"] = _fuse(
                [hf.pop(h + f"self_attn.{n}_proj.weight") for n in "qkv"], h + "self_attn", source)
            state[p + "mlp.w_gate_up.weight"] = _fuse(
                [hf.pop(h + "mlp.gate_proj.weight"), hf.pop(h + "mlp.up_proj.weight")],
                h + "mlp", source)
            for hf_name, ours in _LAYER.items():
                state[p + ours] = hf.pop(h + hf_name)
    except KeyError as e:
        raise InputError(f"checkpoint lacks tensor {e.args[0]}", source=source) from None
    hf = {k: v for k, v in hf.items() if not k.endswith("rotary_emb.inv_freq")}
    if hf:
        raise ConfigError(f"{source}: unexpected tensors {sorted(hf)[:5]}")
    return state


def _fuse(parts: list[torch.Tensor], where: str, source: str) -> torch.Tensor:
    shapes = [tuple(t.shape) for t in parts]
    if any(len(sh) != 2 or sh[1] != shapes[0][1] for sh in shapes):
        raise InputError(f"{where} projections have shapes {shapes}, which do not share an "
                         "input width", source=source)
    return torch.cat(parts)


def read_hf_dir(directory: str | os.PathLike) -> tuple[LlamaConfig, dict[str, torch.Tensor]]:
    """Config and fastsynth state dict from an HF checkpoint folder."""
    from safetensors.torch import load_file
    directory = os.fspath(directory)
    cfg_path = os.path.join(directory, "config.json")
    if not os.path.isfile(cfg_path):
        raise InputError("config.json not found in the checkpoint folder", source=cfg_path)
    with open(cfg_path, encoding="utf-8") as f:
        try:
            config = config_from_hf(json.load(f), cfg_path)
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e}", source=cfg_path, line=e.lineno) from None
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8 (byte {e.start})", source=cfg_path) from None
        except RecursionError:
            raise InputError("invalid JSON: nested too deeply", source=cfg_path) from None
    files = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
    if not files:
        raise InputError("no *.safetensors weights in the checkpoint folder", source=directory)
    hf: dict[str, torch.Tensor] = {}
    for name in files:
        try:
            hf.update(load_file(os.path.join(directory, name)))
        except Exception as e:
            raise InputError(f"unreadable safetensors file: {e}",
                             source=os.path.join(directory, name)) from e
    return config, state_from_hf(hf, config, directory)


def save_hf(model: torch.nn.Module, directory: str | os.PathLike, tokenizer: Any = None,
            dtype: torch.dtype | None = None) -> None:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files) for ``model``.

    Crash safety (docs/errors.md): an existing ``config.json`` is removed first, each file
    is written to a temporary sibling and renamed, and ``config.json`` comes last, as the
    commit record: a save killed half-way leaves a folder without ``config.json``, which
    :func:`read_hf_dir` refuses, never new weights beside an old config."""
    from safetensors.torch import save_file

    from fastsynth.atomic import atomic_path, atomic_write_text
    os.makedirs(directory, exist_ok=True)
    config: LlamaConfig = model.config
    state = {k: v.detach() for k, v in model.state_dict().items()}
    dtype = dtype or next(model.parameters()).dtype
    hf = {k: v.to(dtype) for k, v in state_to_hf(state, config).items()}
    cfg_path = os.path.join(directory, "config.json")
    if os.path.exists(cfg_path):
        os.unlink(cfg_path)
    with atomic_path(os.path.join(directory, "model.safetensors")) as tmp:
        save_file(hf, str(tmp), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save(directory)
    atomic_write_text(cfg_path, json.dumps(config_to_hf(config, dtype), indent=2))
