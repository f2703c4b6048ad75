"""Export a trained model as an HF checkpoint folder that transformers, vLLM and fastsynth's
own ``local`` generator load: ``config.json`` + ``model.safetensors`` (through
:func:`fastsynth.model.save_hf`) + ``tokenizer.json`` / ``tokenizer_config.json``.

Three sources (docs/training.md, "Export"):

- a model in this process (:func:`export`);
- a model sharded with FSDP2 (``fully_shard``) across a process group: every rank calls
  :func:`export`; the full weights are gathered to rank 0's CPU memory, rank 0 writes, the
  other ranks wait for its outcome;
- a checkpoint folder (``OUT/checkpoints/step_NNNNNN``), offline and without a process group
  (:func:`export_checkpoint`): ``state.pt`` of a one-process run or ``dcp/`` of an FSDP run.

Use: ``fastsynth.llm.generator("local", model=str(folder))`` or
``transformers.AutoModelForCausalLM.from_pretrained(folder)``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from fastsynth.errors import ConfigError, FastsynthError, InputError
from fastsynth.model.hf import save_hf
from fastsynth.model.llama import Llama
from fastsynth.model.tokenizer import END_OF_TURN, Tokenizer


def as_tokenizer(tokenizer: Any) -> Tokenizer:
    """A :class:`fastsynth.model.Tokenizer` from one, from a ``tokenizers.Tokenizer`` (e.g.
    :func:`fastsynth.train.train_bpe`'s) or from a ``tokenizer.json`` path / folder. A bare
    tokenizer gets ChatML as its chat template and its separator (``<|endoftext|>`` or
    another end-of-text token it holds) as end of sequence."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        path = Path(tokenizer)
        if path.is_dir():
            return Tokenizer.from_dir(path)
        import tokenizers
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    if not hasattr(tokenizer, "get_vocab"):
        raise ConfigError(f"tokenizer must be a fastsynth Tokenizer, a tokenizers.Tokenizer or "
                          f"a tokenizer.json path, got {type(tokenizer).__name__}")
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    eos = next((t for t in END_OF_TURN if t in vocab), None)
    return Tokenizer(tokenizer, chat_template=None, bos_token=None, eos_token=eos)


def _is_sharded(model: torch.nn.Module) -> bool:
    """True when any parameter is a DTensor (the model, or a module above it, went through
    ``fully_shard``)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor
    return any(isinstance(p, DTensor) for p in model.parameters())


def _unsharded(model: Llama) -> Llama | None:
    """The full weights of an FSDP2-sharded ``model`` as a plain CPU :class:`Llama` on rank 0
    (None on the other ranks). Collective: every rank of the group must call it.

    ``get_model_state_dict(full_state_dict=True, cpu_offload=True)`` all-gathers one tensor
    at a time and keeps it on rank 0's CPU only, so the peak GPU memory is one full parameter;
    the CPU model is built on ``meta`` and takes the gathered tensors as they are
    (``assign=True``): no second copy of the weights."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))
    if torch.distributed.get_rank() != 0:
        return None
    plain = Llama(model.config, device="meta")
    plain.load_state_dict(full, assign=True)
    return plain


def export(model: torch.nn.Module, out_dir: str | os.PathLike, *, tokenizer: Any = None,
           dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` (a :class:`fastsynth.model.Llama`) and ``tokenizer`` into ``out_dir``.

    ``dtype``: the stored weight dtype (default: the model's). Returns the folder.

    Under FSDP2 (the model's parameters are DTensors) this is collective: call it on every
    rank; rank 0 gathers the full weights into CPU memory and writes, the others wait for
    its outcome, so no rank returns before the folder is complete, and if rank 0 fails every
    rank raises. The files are written as
    :func:`fastsynth.model.save_hf` does: each one to a temporary sibling and renamed,
    ``config.json`` last (a folder without it is an unfinished export).
    """
    out = Path(out_dir)
    tok = as_tokenizer(tokenizer) if tokenizer is not None else None
    if tok is not None and tok.vocab_size > model.config.vocab:
        raise ConfigError(f"tokenizer has {tok.vocab_size} tokens, the model's vocabulary "
                          f"{model.config.vocab}")
    if not _is_sharded(model):
        save_hf(model, out, tokenizer=tok, dtype=dtype)
        return out
    plain = _unsharded(model)
    error: BaseException | None = None
    if plain is not None:
        try:
            save_hf(plain, out, tokenizer=tok, dtype=dtype)
        except Exception as e:      # re-raised below, once the other ranks know
            error = e
    # rank 0's outcome reaches every rank (this is also the barrier): a failed write must
    # neither leave the others waiting nor let them return as if the folder were complete
    outcome = [None if error is None else f"{type(error).__name__}: {error}"]
    torch.distributed.broadcast_object_list(outcome, src=0)
    if error is not None:
        raise error
    if outcome[0] is not None:
        raise FastsynthError(f"rank 0 could not write the export to {out}: {outcome[0]}")
    return out


def load_checkpoint_model(path: str | os.PathLike) -> Llama:
    """The model weights of a training checkpoint folder (``OUT/checkpoints/step_NNNNNN``) as
    a CPU :class:`Llama` (float32), without a process group.

    Reads ``meta.json`` for the model shape, then ``state.pt`` (a one-process run) or the
    model part of ``dcp/`` (an FSDP run, any world size: torch.distributed.checkpoint
    reassembles the shards into the unsharded tensors; the optimizer state is not read).
    """
    from fastsynth.train.checkpoint import read_meta
    from fastsynth.train.config import TrainConfig
    path = Path(path)
    meta = read_meta(path)
    try:
        config = TrainConfig.from_dict(meta["config"]).model
    except (KeyError, TypeError) as e:
        raise InputError(f"checkpoint metadata has no usable config: {e}",
                         source=str(path / "meta.json")) from None
    model = Llama(config, device="cpu")
    if (path / "state.pt").is_file():
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
    elif (path / "dcp").is_dir():
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.api import CheckpointException
        # the sharded run saved the loss wrapper (CausalLMLoss), whose keys are "model.<key>";
        # loading into these tensors fills the model in place
        want = {f"model.{k}": v for k, v in model.state_dict().items()}
        try:
            with warnings.catch_warnings():     # it warns that no_dist is meant, though asked
                warnings.filterwarnings("ignore", message=".*assuming the intent is to load")
                dcp.load({"model": want}, checkpoint_id=str(path / "dcp"), no_dist=True)
        except (CheckpointException, RuntimeError, KeyError, OSError) as e:
            raise InputError(f"cannot read the model from the DCP checkpoint: {e}",
                             source=str(path / "dcp")) from None
    else:
        raise InputError("checkpoint holds neither state.pt nor dcp/", source=str(path))
    return model


def export_checkpoint(path: str | os.PathLike, out_dir: str | os.PathLike, *,
                      tokenizer: Any = None, dtype: torch.dtype | None = None) -> Path:
    """:func:`export` of a checkpoint folder's model (:func:`load_checkpoint_model`), offline:
    no process group, one process, whatever world size wrote it. Returns ``out_dir``."""
    return export(load_checkpoint_model(path), out_dir, tokenizer=tokenizer, dtype=dtype)
