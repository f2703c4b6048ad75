"""The ``local`` backend: fastsynth's own Llama on this machine's CPU (or a GPU if given).

Requests are rendered with the model's chat template, sorted by prompt length and run in
batches of ``batch_size`` (similar lengths waste less padding). A request whose prompt does
not fit the context comes back as an error completion; ``max_tokens`` is cut to what the
context leaves. ``completion_tokens`` counts the end-of-turn token that ended a completion
(see :mod:`fastsynth.llm.base`).
"""
from __future__ import annotations

import os
import threading

from fastsynth.errors import ConfigError
from fastsynth.llm.base import Completion, Generator, SamplingParams

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}


def model_name_of(model: str | os.PathLike | None = None) -> str:
    """The name a :class:`LocalGenerator` of ``model`` (default: the embedded model) reports,
    without loading it."""
    return _model_name(_model_path(model))


def _model_path(model: str | os.PathLike | None) -> str:
    """``model`` as a path; None is the embedded model."""
    if model is None:
        from fastsynth.model.loading import default_model_path
        return default_model_path()
    return os.fspath(model)


def _model_name(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    stem = base[:-5] if base.endswith(".gguf") else base
    # "SmolLM2-135M-Instruct.Q4_1" -> keep the quantisation suffix: it is part of the model
    return stem


class LocalGenerator(Generator):
    """Generate with :mod:`fastsynth.model` in this process.

    ``model``: a ``.gguf`` file or an HF checkpoint folder (default: the embedded
    SmolLM2-135M-Instruct). ``dtype``: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``.
    ``threads``: torch intra-op threads (default: every core this process may use).
    ``batch_size``: requests decoded together. ``device``: torch device (default ``"cpu"``).
    ``name``: the model name reported in completions (default: the file or folder stem).
    ``quantized``: for a GGUF model on CPU in float32, decode steps of up to 16 rows (64 for a
    tied LM head) read the file's Q4_1/Q8_0 weight blocks directly
    (:mod:`fastsynth.model.quant_linear`; ~5x fewer bytes per token than float32; same products
    up to float32 rounding, decode-step logits within ~4e-5 of transformers'; ~1.9x faster
    batch-1 and ~1.2x faster batch-16 generation here). Larger inputs (prompt prefill) use
    plain torch matmuls, whose logits equal transformers' bit for bit. ``False`` turns it off.
    ``packed``: on CPU in float32, hold the float32 projections in oneDNN's prepacked layout
    (:mod:`fastsynth.model.cpu_linear`; off by default: with the quantised decode path it adds
    no speed here, and its logits differ from the plain path by float32 rounding, ~2e-4). For
    checkpoints without GGUF blocks it speeds batched decoding ~1.5x.
    ``native_decode``: with ``quantized`` blocks, decode steps of up to 16 rows run as one
    native call per step (:mod:`fastsynth.model.native_decode`): ``"float32"`` (default; same
    arithmetic as the torch ops, decode logits within 1e-4), ``"int8"`` (opt-in, ~10% faster at
    batch 1, slower at batch 16:
    activations quantised to 8 bits per block as llama.cpp does; logits move by up to
    ``native_decode.INT8_MAX_LOGIT_ERROR``, greedy text may differ), or ``None`` (torch ops).
    """

    def __init__(self, model: str | os.PathLike | None = None, *, dtype: str = "float32",
                 threads: int | None = None, batch_size: int = 16, device: str = "cpu",
                 name: str | None = None, packed: bool = False, quantized: bool = True,
                 native_decode: str | None = "float32"):
        import torch

        from fastsynth.model.loading import load
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else (os.cpu_count() or 1)
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        if native_decode not in (None, "float32", "int8"):
            raise ConfigError(f"native_decode must be 'float32', 'int8' or None, got "
                              f"{native_decode!r}")
        torch.set_num_threads(threads)
        path = _model_path(model)
        self.model, self.tokenizer = load(path, dtype=getattr(torch, _DTYPES[dtype]))
        self.model.to(device)
        if packed and device == "cpu" and _DTYPES[dtype] == "float32":
            from fastsynth.model.cpu_linear import pack_linears
            pack_linears(self.model)
        if quantized and device == "cpu" and _DTYPES[dtype] == "float32" and \
                os.path.isfile(path) and path.endswith(".gguf"):
            from fastsynth.model.quant_linear import quantize_linears
            if quantize_linears(self.model, path) and native_decode is not None:
                from fastsynth.model.native_decode import attach_native_decode
                try:
                    attach_native_decode(self.model, native_decode)
                except ConfigError:  # a projection without blocks: torch decode steps
                    pass
        self.path = path
        self.model_name = name or _model_name(path)
        self.context_length = self.model.config.max_seq_len
        self.batch_size = batch_size
        # One model, one batch at a time: the server calls generate from several threads.
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def prompt_ids(self, chat: list[dict[str, str]]) -> list[int]:
        return self.tokenizer.encode(self.tokenizer.apply_chat_template(chat))

    def _generate(self, chats: list[list[dict[str, str]]], params: SamplingParams,
                  seeds: list[int | None]) -> list[Completion]:
        from fastsynth.model.generation import generate

        out: list[Completion | None] = [None] * len(chats)
        todo: list[tuple[int, list[int], int]] = []   # (index, prompt ids, max new tokens)
        for i, chat in enumerate(chats):
            try:
                ids = self.prompt_ids(chat)
            except Exception as e:  # a template that rejects this chat
                out[i] = Completion.failed(f"cannot render the chat: {e}", self.model_name)
                continue
            room = self.context_length - len(ids)
            if room < 1:
                out[i] = Completion.failed(
                    f"prompt has {len(ids)} tokens; the model's context is "
                    f"{self.context_length} tokens", self.model_name, len(ids))
                continue
            todo.append((i, ids, min(params.max_tokens, room)))
        todo.sort(key=lambda t: len(t[1]))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            try:
                with self._lock:
                    gens = generate(self.model, self.tokenizer, [b[1] for b in batch],
                                    max_new_tokens=[b[2] for b in batch],
                                    temperature=params.temperature, top_p=params.top_p,
                                    top_k=params.top_k, stop=params.stop,
                                    seeds=[seeds[b[0]] for b in batch])
            except Exception as e:  # keep other batches' results (e.g. out of memory)
                for i, ids, _ in batch:
                    out[i] = Completion.failed(f"generation failed: {type(e).__name__}: {e}",
                                               self.model_name, len(ids))
                continue
            for (i, ids, _), g in zip(batch, gens):
                out[i] = Completion(text=g.text, finish_reason=g.finish_reason,  # type: ignore[arg-type]
                                    prompt_tokens=len(ids),
                                    completion_tokens=g.completion_tokens,
                                    model=self.model_name)
        return out  # type: ignore[return-value]
