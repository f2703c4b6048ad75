"""Export a trained model as an HF checkpoint folder that transformers, vLLM and fastsynth's
own ``local`` generator load: ``config.json`` + ``model.safetensors`` (through
:func:`fastsynth.model.save_hf`) + ``tokenizer.json`` / ``tokenizer_config.json``.

Use: ``fastsynth.llm.generator("local", model=str(folder))`` or
``transformers.AutoModelForCausalLM.from_pretrained(folder)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fastsynth.errors import ConfigError
from fastsynth.model.hf import save_hf
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


def export(model: torch.nn.Module, out_dir: str | os.PathLike, *, tokenizer: Any = None,
           dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` (a :class:`fastsynth.model.Llama`) and ``tokenizer`` into ``out_dir``.

    ``dtype``: the stored weight dtype (default: the model's). Returns the folder.
    """
    out = Path(out_dir)
    tok = as_tokenizer(tokenizer) if tokenizer is not None else None
    if tok is not None and tok.vocab_size > model.config.vocab:
        raise ConfigError(f"tokenizer has {tok.vocab_size} tokens, the model's vocabulary "
                          f"{model.config.vocab}")
    save_hf(model, out, tokenizer=tok, dtype=dtype)
    return out
