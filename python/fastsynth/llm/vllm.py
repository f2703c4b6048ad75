"""The ``vllm`` backend: an in-process ``vllm.LLM`` engine (GPU machines, or vLLM's CPU build).

vLLM pins its own torch build, so it is an optional extra (``fastsynth[vllm]``) and is not
installed on CPU-only machines; there, ``vllm serve`` (or ``python -m
vllm.entrypoints.openai.api_server``) + the ``openai`` backend is the usual route, and
``scripts/test-vllm.sh`` sets vLLM's CPU build up in its own venv to check both routes. A
fastsynth checkpoint written by :func:`fastsynth.model.save_hf` loads here directly.

Conventions shared with the other backends: ``dtype`` defaults to float32 (as the local backend:
vLLM's own default, "auto", runs a float32 checkpoint in bfloat16, which changes greedy answers
of small models); ``completion_tokens`` counts the end-of-sequence token (vLLM's count, which
the local backend follows); a prompt longer than the context is an error completion found
before the batch is sent.
"""
from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

from fastsynth.errors import DependencyError
from fastsynth.llm.base import Completion, Generator, SamplingParams


def prompt_token_count(tokenizer: Any, chat: list[dict[str, str]]) -> int:
    """Tokens of ``chat`` rendered with ``tokenizer``'s chat template (generation prompt
    included), for a ``transformers`` tokenizer (what ``vllm.LLM.get_tokenizer()`` returns).

    ``apply_chat_template(tokenize=True)`` returns a dict-like ``BatchEncoding`` in recent
    transformers (``len`` of it counts its keys, not tokens); ``return_dict=False`` asks for the
    ids, and a mapping that still comes back is read through its ``input_ids``.
    """
    ids = tokenizer.apply_chat_template(chat, tokenize=True, add_generation_prompt=True,
                                        return_dict=False)
    if isinstance(ids, Mapping) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    if len(ids) and isinstance(ids[0], (list, tuple)):   # a batch of one
        ids = ids[0]
    return len(ids)


def model_name_of(model: str, name: str | None = None) -> str:
    """The name a :class:`VLLMGenerator` of ``model`` reports, without starting an engine."""
    return name or str(model)


class VLLMGenerator(Generator):
    """Generate with ``vllm.LLM(model, dtype=dtype, **engine_args)`` in this process.

    ``model``: an HF model id or checkpoint folder (or a GGUF file vLLM accepts).
    ``dtype``: weights and activations (default ``"float32"``, see the module docstring;
    ``"auto"`` for vLLM's choice, ``"bfloat16"`` for speed on GPUs).
    ``engine_args``: passed to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``,
    ``max_model_len``, ``tensor_parallel_size``; from the CLI: ``--engine-arg KEY=VALUE``).
    :meth:`close` shuts the engine (and its worker processes) down.
    """

    def __init__(self, model: str, *, name: str | None = None, dtype: str = "float32",
                 **engine_args: Any):
        try:
            import vllm
        except ImportError as e:
            raise DependencyError("vllm", "vllm", "the vllm backend") from e
        self._vllm = vllm
        self.llm: Any = vllm.LLM(model=model, dtype=dtype, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self.model_name = model_name_of(model, name)
        try:
            self.context_length = int(self.llm.llm_engine.model_config.max_model_len)
        except AttributeError:  # engine internals moved between vLLM versions
            self.context_length = None

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _sampling(self, params: SamplingParams, seed: int | None, max_tokens: int) -> Any:
        return self._vllm.SamplingParams(
            n=1, max_tokens=max_tokens, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k if params.top_k else -1, seed=seed,
            stop=list(params.stop) or None)

    def _generate(self, chats: list[list[dict[str, str]]], params: SamplingParams,
                  seeds: list[int | None]) -> list[Completion]:
        if self.llm is None:
            return [Completion.failed("the vllm engine was closed", self.model_name)
                    for _ in chats]
        out: list[Completion | None] = [None] * len(chats)
        todo, sps = [], []
        for i, chat in enumerate(chats):
            try:
                n = prompt_token_count(self.tokenizer, chat)
            except Exception as e:  # a template that rejects this chat
                out[i] = Completion.failed(f"cannot render the chat: {e}", self.model_name)
                continue
            room = (self.context_length or n + params.max_tokens) - n
            if room < 1:
                out[i] = Completion.failed(f"prompt has {n} tokens; the model's context is "
                                           f"{self.context_length} tokens", self.model_name, n)
                continue
            todo.append(i)
            sps.append(self._sampling(params, seeds[i], min(params.max_tokens, room)))
        try:
            results = self.llm.chat([chats[i] for i in todo], sampling_params=sps,
                                    use_tqdm=False) if todo else []
        except Exception:  # isolate the failing request: retry one by one
            results = []
            for i, sp in zip(todo, sps):
                try:
                    results.extend(self.llm.chat([chats[i]], sampling_params=[sp], use_tqdm=False))
                except Exception as e:
                    results.append(e)
        for i, r in zip(todo, results):
            if isinstance(r, Exception):
                out[i] = Completion.failed(f"{type(r).__name__}: {r}", self.model_name)
                continue
            o = r.outputs[0]
            # token_ids include the end-of-sequence token when one ended the output: the
            # convention of every backend (fastsynth.llm.base)
            out[i] = Completion(text=o.text,
                                finish_reason="length" if o.finish_reason == "length" else "stop",
                                prompt_tokens=len(r.prompt_token_ids or []),
                                completion_tokens=len(o.token_ids), model=self.model_name)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Shut the engine down: its engine-core and worker processes exit (vLLM V1 runs them
        as child processes that outlive a merely dropped ``LLM`` object). Safe to call twice."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        for owner in (getattr(engine, "engine_core", None), engine):
            shutdown = getattr(owner, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:  # a half-started engine: the collection below still runs
                    pass
                break
        del llm, engine
        gc.collect()
        try:
            from vllm.distributed.parallel_state import (destroy_distributed_environment,
                                                         destroy_model_parallel)
            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # not initialised (single process) or moved in this vLLM version
            pass
